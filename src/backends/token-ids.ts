/**
 * Token ids from what a server says about its tokens. vLLM writes a logprob entry's token as
 * "token_id:123" when asked (`return_tokens_as_token_ids`); otherwise as text, and how that text
 * was made differs by server: current vLLM decodes each token on its own ("per-token": word-piece
 * and sentencepiece pieces lose their leading space, so joined texts run words together —
 * "gladgladglad"), others decode it after the tokens before it ("in-context": the texts join into
 * the answer). An answer is built from ids and decoded once; from texts only through the
 * subject's own tokenizer (TokenTextIndex), and only where the text names one rendering.
 */
import { join } from "node:path";
import type { TextTokenizer } from "../engine/tokenizer";

const TOKEN_ID = /^token_id:(\d{1,9})$/;

/** The id in vLLM's "token_id:123", or undefined for a token written as text. */
export function parseTokenId(token: string): number | undefined {
  const m = TOKEN_ID.exec(token);
  return m ? Number(m[1]) : undefined;
}

/**
 * Preceding tokens a token's in-context text is decoded after: enough for any merge (spaces,
 * multi-byte characters); the same window `delta-audit serve` uses (serve/engine.ts).
 */
const CONTEXT_TOKENS = 8;

/**
 * Every token's text, for mapping the texts a server returns back to ids. Built once per
 * tokenizer (one decode per vocabulary entry: about a second for 128k tokens).
 */
export class TokenTextIndex {
  private readonly byText = new Map<string, number[]>();
  private readonly aloneText: string[] = [];
  private readonly special = new Set<number>();

  constructor(
    readonly tokenizer: TextTokenizer,
    vocabSize: number,
  ) {
    for (let id = 0; id < vocabSize; id++) {
      let text: string;
      try {
        text = tokenizer.decode([id], { skipSpecialTokens: false });
        // a special token decodes to nothing when specials are skipped
        if (tokenizer.decode([id], { skipSpecialTokens: true }) === "" && text !== "") this.special.add(id);
      } catch {
        continue; // an id past the tokenizer's vocabulary (padded embedding rows)
      }
      this.aloneText[id] = text;
      const list = this.byText.get(text);
      if (list) list.push(id);
      else this.byText.set(text, [id]);
    }
  }

  /** The text `id` adds after `before` (the answer's ids so far), decoded as a sequence. */
  inContext(id: number, before: readonly number[]): string {
    if (this.special.has(id)) return this.aloneText[id] ?? "";
    // the context starts after the last special token (a role tag decodes to nothing)
    let from = before.length;
    while (from > 0 && before.length - from < CONTEXT_TOKENS && !this.special.has(before[from - 1]!)) from--;
    const ctx = before.slice(from);
    const head = this.tokenizer.decode(ctx, { skipSpecialTokens: true });
    const all = this.tokenizer.decode([...ctx, id], { skipSpecialTokens: true });
    return all.startsWith(head) ? all.slice(head.length) : (this.aloneText[id] ?? "");
  }

  /**
   * The id of the token a server wrote as `text` after `before`, under either convention, or
   * undefined when the text names no token or tokens that read differently in this place (a
   * sentencepiece "glad" is "glad" or "▁glad" when decoded alone). Tokens that read the same
   * in context ("." and " ." under clean-up) are interchangeable for the answer's text: the
   * first is taken.
   */
  resolve(text: string, before: readonly number[]): number | undefined {
    const readings = new Map<string, number>();
    // per-token: the text is the token decoded alone
    for (const id of this.byText.get(text) ?? []) {
      const r = this.inContext(id, before);
      if (!readings.has(r)) readings.set(r, id);
    }
    // in-context: the text is what the token adds here (a word-piece's space or "##" is not part of its own text)
    const related = [...(text.startsWith(" ") ? (this.byText.get(text.slice(1)) ?? []) : []), ...(this.byText.get(`##${text}`) ?? []), ...(this.byText.get(text) ?? [])];
    for (const id of related) if (this.inContext(id, before) === text && !readings.has(text)) readings.set(text, id);
    return readings.size === 1 ? [...readings.values()][0] : undefined;
  }
}

/** The subject's own tokenizer, for decoding ids and (built on first use) mapping texts to ids. */
export interface LocalTokenizer {
  tokenizer: TextTokenizer;
  /** the text → id index over the vocabulary, built on first call */
  index(): TokenTextIndex;
}

/**
 * The subject's tokenizer when `dir` is a local checkpoint folder with tokenizer.json (its
 * config.json's vocab_size bounds the index); undefined otherwise (a Hub id the server resolves).
 */
export async function loadLocalTokenizer(dir: string | undefined): Promise<LocalTokenizer | undefined> {
  if (!dir) return undefined;
  const { pathExists } = await import("../io/fs-util");
  if (!(await pathExists(join(dir, "tokenizer.json")))) return undefined;
  const { loadTokenizer } = await import("../engine/tokenizer");
  const { readJsonFile } = await import("../io/checkpoint");
  const tokenizer = await loadTokenizer(dir);
  const config = (await pathExists(join(dir, "config.json"))) ? await readJsonFile(join(dir, "config.json")) : undefined;
  const size = (config as { vocab_size?: unknown } | undefined)?.vocab_size;
  const vocabSize = typeof size === "number" && Number.isInteger(size) && size > 0 ? size : 0;
  let index: TokenTextIndex | undefined;
  return { tokenizer, index: () => (index ??= new TokenTextIndex(tokenizer, vocabSize)) };
}
