/**
 * Contrastive decoding (full vs base) over an OpenAI-compatible server, with the embedded
 * engine's choice rule: at each position, full's top-k candidates scored
 * (1+α)·log p_full − α·log p_base (contrastScores), chosen greedily or sampled with the
 * request's seeded generator. The answer is a list of token ids, decoded once.
 *
 * Two ways to talk to the server, chosen once per backend (probeTokenTransport):
 *
 * - "tokens" (vLLM, `delta-audit serve`): the conversation is tokenized once (`/tokenize`), every
 *   request is a `/v1/completions` prompt of token ids with `return_tokens_as_token_ids`, and
 *   the answer is decoded by the subject's tokenizer or `/detokenize`. Two strategies:
 *   - "draft" (draft-and-verify, the default): full proposes DRAFT_TOKENS tokens greedily in one
 *     request, with its top-k at each; base scores the proposal in one request (vLLM's
 *     `prompt_logprobs`, its top-N at every prompt position, and the one generated position
 *     after it). The contrastive choice is made position by position; the prefix where it equals
 *     the proposal is kept, and the first disagreement is replaced by the contrastive token and
 *     ends the round. Each position sees the same candidates, scores and random draw as
 *     token-by-token decoding, so the text is the same, in two requests per round instead of
 *     two per token.
 *   - "step": one full and one base request per token (the comparison the bench measures).
 * - "chat" (servers without those endpoints): chat completions continuing the assistant's
 *   text, two per token. Candidates arrive as texts; the chosen token is mapped to its id by the
 *   subject's tokenizer (token-ids.ts) and the answer decoded from the ids. Where no tokenizer
 *   is at hand, or a text names tokens that read differently, the texts are joined as before and
 *   the answer is marked unreliable: judge/ does not judge it.
 */
import { BackendError } from "../errors";
import type { ChatMessage, ContrastOptions, GenerationRequest, VariantName } from "../chat/types";
import type { ContrastResult } from "./backend";
import { argmax, sampleToken, seededRandom } from "../chat/sampling";
import { HttpError } from "./http";
import { parseTokenId, type LocalTokenizer } from "./token-ids";

/** vLLM's default `--max-logprobs` is 20; asking for more is rejected with HTTP 400. */
export const MAX_TOP_LOGPROBS = 20;
/**
 * Tokens full proposes per draft-and-verify round. The contrastive choice agrees with full's
 * greedy token at most positions of an answer, so a round usually keeps most of its proposal;
 * a longer one costs the server decode steps past the first disagreement for nothing.
 */
export const DRAFT_TOKENS = 16;
/** One token decodes to a few bytes; a reply far longer than max_tokens allows is malformed. */
const MAX_CHARS_PER_TOKEN = 64;

/** A candidate for the next token: its key (the id as text where known, else the token's text) and logprob. */
export interface TopLogprob {
  token: string;
  logprob: number;
  /** the token id, when the server gave it */
  id?: number;
}

/** Tokens that end a turn when they show up as a logprob candidate (rendered special tokens). */
export const END_OF_TURN_TOKEN = /^(<\|[a-z_]*(eot|end|im_end|endoftext)[a-z_]*\|>|<\/s>|<eos>|<end_of_turn>)$/i;

/**
 * Contrastive scores of `full`'s candidates: (1+α)·log p_full − α·log p_base. The server reports
 * only base's top-N, so a candidate outside it gets base's N-th logprob: an upper bound on its
 * real log p_base, which makes its score a lower bound — the choice leans towards tokens both
 * models know rather than inventing any.
 */
export function contrastScores(full: TopLogprob[], base: TopLogprob[], alpha: number): number[] {
  if (full.length === 0) throw new BackendError("contrastive decoding: the server returned no candidates");
  const baseLp = new Map<string, number>();
  for (const b of base) baseLp.set(b.token, Math.max(baseLp.get(b.token) ?? -Infinity, b.logprob));
  const floor = base.length > 0 ? Math.min(...base.map((b) => b.logprob)) : 0;
  return full.map((c) => (1 + alpha) * c.logprob - alpha * (baseLp.get(c.token) ?? floor));
}

/** The greedy contrastive choice: the candidate with the highest score (the first on ties). */
export function contrastStep(full: TopLogprob[], base: TopLogprob[], alpha: number): TopLogprob & { score: number } {
  const scores = contrastScores(full, base, alpha);
  const i = argmax(scores);
  return { ...full[i]!, score: scores[i]! };
}

export type ContrastStrategy = "draft" | "step";

/** What the decoder needs from the backend's connection (openai.ts). */
export interface ContrastServer {
  /** POST JSON under the concurrency limit: "/v1/…" under the API base, "/tokenize" and the like under the server root */
  post(path: string, body: Record<string, unknown>, signal: AbortSignal): Promise<unknown>;
  /** `variant`'s model name and the config's extra fields for it */
  fields(variant: VariantName): Record<string, unknown>;
  /** the server, for messages (credentials redacted) */
  where: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function finishOf(c: Record<string, unknown>, where: string): "stop" | "length" {
  const fr = c.finish_reason;
  if (fr === "abort" || fr === "error") throw new BackendError(`${where}: the server aborted the generation (finish_reason "${fr}")`);
  return fr === "length" ? "length" : "stop";
}

/** -Infinity arrives as a very negative number (vLLM clamps to -9999) or null. */
function logprobOf(v: unknown, where: string): number {
  if (v === null) return -Infinity;
  if (typeof v !== "number" || Number.isNaN(v) || v > 1e-6) throw new BackendError(`${where}: malformed logprob`);
  return v;
}

function idOf(token: unknown, where: string): number {
  const id = typeof token === "string" ? parseTokenId(token) : undefined;
  if (id === undefined) throw new BackendError(`${where}: expected a token written "token_id:N" (return_tokens_as_token_ids)`);
  return id;
}

/** Candidates from a `{"token_id:N": logprob}` map, most likely first (the server's order on ties), at most `n`. */
function topFromMap(m: unknown, n: number, where: string): TopLogprob[] {
  if (!isObject(m)) throw new BackendError(`${where}: "top_logprobs" entry is not an object`);
  const keys = Object.keys(m);
  if (keys.length > 4 * MAX_TOP_LOGPROBS) throw new BackendError(`${where}: ${keys.length} top_logprobs entries`);
  const list = keys.map((k) => {
    const id = idOf(k, where);
    return { token: String(id), id, logprob: logprobOf(m[k], where) };
  });
  return list.sort((a, b) => b.logprob - a.logprob).slice(0, n);
}

/** One generated position of a completion: the token and full's (or base's) top candidates there. */
interface Position {
  id: number;
  top: TopLogprob[];
}

interface ParsedCompletion {
  positions: Position[];
  finishReason: "stop" | "length";
  /** the server said it stopped on its last token (finish_reason "stop", not a missing or odd one) */
  stoppedOnLast: boolean;
  /** per prompt position: the top-N there (rank ≤ N) and every id the server listed (the prompt's own among them); null for the first */
  prompt?: ({ top: TopLogprob[]; ids: number[] } | null)[];
}

/**
 * A `/v1/completions` body with `return_tokens_as_token_ids`: the legacy logprobs lists (the
 * chosen token and up to `n` alternatives per position) and, when asked, vLLM's
 * `prompt_logprobs` (`{id: {logprob, rank}}` per position, the prompt's own token included
 * whatever its rank — only ranks ≤ `n` are kept, so the list is base's top-N as a generated
 * position's is).
 */
export function parseTokenCompletion(body: unknown, maxTokens: number, n: number, where: string, promptLength?: number): ParsedCompletion {
  if (!isObject(body) || !Array.isArray(body.choices) || body.choices.length === 0) throw new BackendError(`${where}: the response has no "choices"`);
  const c = body.choices[0];
  if (!isObject(c)) throw new BackendError(`${where}: choices[0] is not an object`);
  const finishReason = finishOf(c, where);
  const lp = c.logprobs;
  if (!isObject(lp) || !Array.isArray(lp.tokens) || !Array.isArray(lp.top_logprobs)) throw new BackendError(`${where}: no logprobs in the response`);
  if (lp.tokens.length > maxTokens + 1 || lp.top_logprobs.length !== lp.tokens.length) throw new BackendError(`${where}: ${lp.tokens.length} logprob entries for max_tokens ${maxTokens}`);
  const tops = lp.top_logprobs as unknown[];
  const positions = lp.tokens.map((t, i) => ({ id: idOf(t, where), top: topFromMap(tops[i], n, where) }));
  const out: ParsedCompletion = { positions, finishReason, stoppedOnLast: c.finish_reason === "stop" && positions.length > 0 };
  if (promptLength !== undefined) {
    const pl = c.prompt_logprobs ?? body.prompt_logprobs;
    if (!Array.isArray(pl) || pl.length !== promptLength) throw new BackendError(`${where}: expected prompt_logprobs for ${promptLength} prompt tokens`);
    out.prompt = pl.map((entry, j) => {
      if (entry === null && j === 0) return null;
      if (!isObject(entry)) throw new BackendError(`${where}: malformed prompt_logprobs entry ${j}`);
      const all = Object.entries(entry).map(([k, v]) => {
        if (!/^\d{1,9}$/.test(k) || !isObject(v)) throw new BackendError(`${where}: malformed prompt_logprobs entry ${j}`);
        const rank = v.rank;
        return { id: Number(k), logprob: logprobOf(v.logprob, where), rank: typeof rank === "number" && Number.isInteger(rank) && rank >= 1 ? rank : undefined };
      });
      if (all.length > 4 * MAX_TOP_LOGPROBS) throw new BackendError(`${where}: ${all.length} prompt_logprobs entries at ${j}`);
      // the top-N by rank where the server says it, else by logprob
      const ranked = all.every((a) => a.rank !== undefined) ? all.filter((a) => a.rank! <= n).sort((a, b) => a.rank! - b.rank!) : [...all].sort((a, b) => b.logprob - a.logprob).slice(0, n);
      return { top: ranked.map((a) => ({ token: String(a.id), id: a.id, logprob: a.logprob })), ids: all.map((a) => a.id) };
    });
  }
  return out;
}

/** A `/tokenize` body: `{tokens: [ids]}`. */
function parseTokens(body: unknown, where: string): number[] {
  if (!isObject(body) || !Array.isArray(body.tokens) || body.tokens.length === 0 || !body.tokens.every((t) => Number.isInteger(t) && t >= 0)) {
    throw new BackendError(`${where}: /tokenize returned no token ids`);
  }
  return body.tokens as number[];
}

/** A `/detokenize` body: `{prompt: text}`. */
function parseDetokenized(body: unknown, maxChars: number, where: string): string {
  if (!isObject(body) || typeof body.prompt !== "string") throw new BackendError(`${where}: /detokenize returned no text`);
  if (body.prompt.length > maxChars) throw new BackendError(`${where}: /detokenize returned ${body.prompt.length} characters`);
  return body.prompt;
}

/** How contrastive requests reach this server (probeTokenTransport decides once per backend). */
export interface ContrastSetup {
  transport: "tokens" | "chat";
  /** tokens transport: base can score a proposal (`prompt_logprobs`), so draft-and-verify is possible */
  promptLogprobs: boolean;
  /** tokens transport: "draft" (default where possible) or "step" */
  strategy: ContrastStrategy;
  draftTokens: number;
  /** the subject's tokenizer: decodes answers, maps chat texts to ids, knows the EOS ids */
  tokenizer?: LocalTokenizer;
}

/** Failures that mean "the server does not offer this" rather than "the server is broken". */
function refused(err: unknown): boolean {
  if (err instanceof HttpError) return err.status !== undefined && err.status >= 400 && err.status < 500 && err.status !== 429;
  return err instanceof BackendError;
}

/**
 * Whether the server speaks the tokens transport: `/tokenize` a conversation, a `/v1/completions`
 * prompt of token ids answered with "token_id:N" tokens, and (for draft-and-verify)
 * `prompt_logprobs`; answers are decoded by `tokenizer` or `/detokenize`. A refusal (4xx, an
 * unusable answer) is a reason; a failing server throws.
 */
export async function probeTokenTransport(
  server: ContrastServer,
  tokenizer: LocalTokenizer | undefined,
  signal: AbortSignal,
): Promise<{ ok: true; promptLogprobs: boolean } | { ok: false; reason: string }> {
  const where = server.where;
  try {
    const ids = parseTokens(await server.post("/tokenize", { ...server.fields("base"), messages: [{ role: "user", content: "Say hello." }], add_generation_prompt: true }, signal), where);
    const ask = (promptLogprobs: boolean) =>
      server.post(
        "/v1/completions",
        { ...server.fields("full"), prompt: ids, max_tokens: 1, temperature: 0, logprobs: 2, return_tokens_as_token_ids: true, ...(promptLogprobs ? { prompt_logprobs: 2 } : {}) },
        signal,
      );
    let promptLogprobs = true;
    let body: unknown;
    try {
      body = await ask(true);
      parseTokenCompletion(body, 1, 2, where, ids.length);
    } catch (err) {
      if (!refused(err)) throw err;
      promptLogprobs = false;
      body = await ask(false);
    }
    const p = parseTokenCompletion(body, 1, 2, where);
    if (p.positions.length === 0) return { ok: false, reason: "the server returned no logprobs for a token-id prompt" };
    if (!tokenizer) parseDetokenized(await server.post("/detokenize", { ...server.fields("base"), tokens: ids }, signal), 1_000_000, where);
    return { ok: true, promptLogprobs };
  } catch (err) {
    if (!refused(err)) throw err;
    return { ok: false, reason: (err as Error).message };
  }
}

/**
 * One contrastive decoder per backend: it learns which ids end a turn (the tokenizer's EOS ids,
 * and every id a server stopped on) and caches what `/detokenize` says about single tokens.
 */
export class HttpContrast {
  /** ids that end the answer: the tokenizer's EOS ids and every id a generation stopped on */
  private readonly stopIds = new Set<number>();
  private readonly endsTurn = new Map<number, Promise<boolean>>();

  constructor(
    private readonly server: ContrastServer,
    readonly setup: ContrastSetup,
    /** one chat step (chat transport): the next token's candidates on `variant` after `prefix` */
    private readonly chatStep: (variant: VariantName, r: GenerationRequest, prefix: string, topK: number, signal: AbortSignal) => Promise<{ top: TopLogprob[]; greedy?: string; endsTurn: boolean }>,
  ) {
    for (const id of setup.tokenizer?.tokenizer.eosTokenIds ?? []) this.stopIds.add(id);
  }

  async generate(r: GenerationRequest, opts: ContrastOptions, signal: AbortSignal): Promise<ContrastResult> {
    const topK = Math.max(1, Math.min(MAX_TOP_LOGPROBS, Math.floor(opts.topK)));
    if (this.setup.transport === "chat") return this.chat(r, opts.alpha, topK, signal);
    const prompt = parseTokens(await this.server.post("/tokenize", { ...this.server.fields("base"), messages: r.messages, add_generation_prompt: true }, signal), this.where(r));
    const draft = this.setup.strategy === "draft" && this.setup.promptLogprobs;
    const { ids, finishReason } = await (draft ? this.draft(r, prompt, opts.alpha, topK, signal) : this.step(r, prompt, opts.alpha, topK, signal));
    return { id: r.id, text: await this.decode(ids, r, signal), tokens: ids.length, finishReason };
  }

  private where(r: GenerationRequest): string {
    return `${this.server.where} (contrast ${r.id})`;
  }

  /** the request's seeded choice among full's candidates, as the embedded engine makes it */
  private chooser(r: GenerationRequest, alpha: number) {
    const rand = seededRandom(r.sampling.seed);
    return (full: TopLogprob[], base: TopLogprob[]) => full[sampleToken(contrastScores(full, base, alpha), r.sampling, rand)]!;
  }

  /** one `/v1/completions` request on a token-id prompt */
  private async complete(variant: VariantName, prompt: number[], maxTokens: number, n: number, r: GenerationRequest, signal: AbortSignal, promptLogprobs = false): Promise<ParsedCompletion> {
    const body = await this.server.post(
      "/v1/completions",
      {
        ...this.server.fields(variant),
        prompt,
        max_tokens: maxTokens,
        // the proposal is full's greedy run: the contrastive choice agrees with full's most likely token most often
        temperature: 0,
        seed: r.sampling.seed,
        logprobs: n,
        return_tokens_as_token_ids: true,
        ...(promptLogprobs ? { prompt_logprobs: n } : {}),
      },
      signal,
    );
    const p = parseTokenCompletion(body, maxTokens, n, `${this.where(r)} on ${variant}`, promptLogprobs ? prompt.length : undefined);
    // the server stopped on its last token: an end of turn (delta-audit sends no stop strings;
    // vLLM and `delta-audit serve` list the stop token among the logprobs)
    if (p.stoppedOnLast) this.stopIds.add(p.positions[p.positions.length - 1]!.id);
    return p;
  }

  /**
   * Whether choosing `id` ends the answer: a known stop id. A token the server generated without
   * stopping (`generated`) is none; otherwise, without a tokenizer, one the server renders as an
   * end-of-turn marker (asked once per id).
   */
  private async stops(id: number, generated: boolean, signal: AbortSignal): Promise<boolean> {
    if (this.stopIds.has(id)) return true;
    if (generated || this.setup.tokenizer) return false;
    let known = this.endsTurn.get(id);
    if (!known) {
      known = this.server
        .post("/detokenize", { ...this.server.fields("base"), tokens: [id] }, signal)
        .then((b) => END_OF_TURN_TOKEN.test(parseDetokenized(b, 256, this.server.where)));
      known.catch(() => this.endsTurn.delete(id));
      this.endsTurn.set(id, known);
    }
    return known;
  }

  private async decode(ids: number[], r: GenerationRequest, signal: AbortSignal): Promise<string> {
    const tok = this.setup.tokenizer?.tokenizer;
    if (tok) return tok.decode(ids, { skipSpecialTokens: true });
    if (ids.length === 0) return "";
    return parseDetokenized(await this.server.post("/detokenize", { ...this.server.fields("base"), tokens: ids }, signal), Math.max(1, ids.length) * MAX_CHARS_PER_TOKEN + 256, this.where(r));
  }

  /** token by token: full's top-k and base's top-N after the answer so far, two requests per token */
  private async step(r: GenerationRequest, prompt: number[], alpha: number, topK: number, signal: AbortSignal): Promise<{ ids: number[]; finishReason: "stop" | "length" }> {
    const choose = this.chooser(r, alpha);
    const ids: number[] = [];
    for (;;) {
      if (ids.length >= r.sampling.maxNewTokens) return { ids, finishReason: "length" };
      const context = [...prompt, ...ids];
      const [f, b] = await Promise.all([this.complete("full", context, 1, topK, r, signal), this.complete("base", context, 1, MAX_TOP_LOGPROBS, r, signal)]);
      const at = f.positions[0];
      if (!at || at.top.length === 0) {
        if (f.finishReason === "stop") return { ids, finishReason: "stop" };
        throw new BackendError(`${this.where(r)}: no top logprobs from full`);
      }
      const pick = choose(at.top, b.positions[0]?.top ?? []);
      // full's greedy token, when it did not stop there, is no stop token (complete() learns the ones it stops on)
      if (await this.stops(pick.id!, pick.id === at.id, signal)) return { ids, finishReason: "stop" };
      ids.push(pick.id!);
    }
  }

  /**
   * Draft-and-verify: full proposes a greedy run with its top-k at each position; base scores
   * the proposal in one request — `prompt_logprobs` for the positions inside the prompt, the
   * generated position for the last one. Positions are decided in order with the same draws as
   * `step`; the round ends at the first position whose choice differs from the proposal.
   */
  private async draft(r: GenerationRequest, prompt: number[], alpha: number, topK: number, signal: AbortSignal): Promise<{ ids: number[]; finishReason: "stop" | "length" }> {
    const choose = this.chooser(r, alpha);
    const ids: number[] = [];
    for (;;) {
      if (ids.length >= r.sampling.maxNewTokens) return { ids, finishReason: "length" };
      const context = [...prompt, ...ids];
      const n = Math.min(this.setup.draftTokens, r.sampling.maxNewTokens - ids.length);
      const proposal = await this.complete("full", context, n, topK, r, signal);
      const m = proposal.positions.length;
      if (m === 0 || proposal.positions.some((p) => p.top.length === 0)) {
        if (m === 0 && proposal.finishReason === "stop") return { ids, finishReason: "stop" };
        throw new BackendError(`${this.where(r)}: no top logprobs in full's proposal`);
      }
      const drafted = proposal.positions.map((p) => p.id);
      // base's prompt ends before the proposal's last token: its generated position scores that one
      const scored = [...context, ...drafted.slice(0, m - 1)];
      const base = await this.complete("base", scored, 1, MAX_TOP_LOGPROBS, r, signal, m > 1);
      const baseTop = (i: number): TopLogprob[] => {
        if (i === m - 1) return base.positions[0]?.top ?? [];
        const at = base.prompt?.[context.length + i];
        // the server tokenized nothing itself, so position context.length + i holds drafted[i]
        if (!at || !at.ids.includes(drafted[i]!)) throw new BackendError(`${this.where(r)}: base's prompt_logprobs do not line up with the proposal`);
        return at.top;
      };
      for (let i = 0; i < m; i++) {
        const pick = choose(proposal.positions[i]!.top, baseTop(i));
        if (await this.stops(pick.id!, pick.id === drafted[i], signal)) return { ids, finishReason: "stop" };
        ids.push(pick.id!);
        if (ids.length >= r.sampling.maxNewTokens) return { ids, finishReason: "length" };
        if (pick.id !== drafted[i]) break;
      }
    }
  }

  /**
   * Token by token over chat completions, continuing the assistant's text. The choice rule is
   * the one above with candidates keyed by their text (what this transport has); the chosen
   * token's id comes from the tokenizer, and the answer so far is sent as the decoded ids.
   */
  private async chat(r: GenerationRequest, alpha: number, topK: number, signal: AbortSignal): Promise<ContrastResult> {
    const choose = this.chooser(r, alpha);
    const index = this.setup.tokenizer?.index();
    let unreliable: string | undefined = index ? undefined : "the server returns token texts, not ids, and the subject's tokenizer is not at hand to map them (joined texts can run words together)";
    const ids: number[] = [];
    // the texts joined after the point where ids could no longer be told (all of them without a tokenizer)
    let tail = "";
    const text = () => (index && ids.length > 0 ? index.tokenizer.decode(ids, { skipSpecialTokens: true }) : "") + tail;
    let steps = 0;
    const done = (finishReason: "stop" | "length"): ContrastResult => ({ id: r.id, text: text(), tokens: steps, finishReason, ...(unreliable ? { unreliable } : {}) });
    for (;;) {
      if (steps >= r.sampling.maxNewTokens) return done("length");
      const prefix = text();
      const [f, b] = await Promise.all([this.chatStep("full", r, prefix, topK, signal), this.chatStep("base", r, prefix, MAX_TOP_LOGPROBS, signal)]);
      if (f.top.length === 0) {
        if (f.endsTurn) return done("stop");
        throw new BackendError(`${this.where(r)}: no top_logprobs`);
      }
      const pick = choose(f.top, b.top);
      if ((f.endsTurn && pick.token === f.greedy) || pick.token === "" || END_OF_TURN_TOKEN.test(pick.token)) return done("stop");
      const id = index && !unreliable ? index.resolve(pick.token, ids) : undefined;
      if (id !== undefined && this.stopIds.has(id)) return done("stop");
      if (id !== undefined) ids.push(id);
      else {
        unreliable ??= `the server wrote a token as ${JSON.stringify(pick.token.slice(0, 16))}, which the subject's tokenizer reads as different tokens here`;
        tail += pick.token;
      }
      steps++;
    }
  }
}

/** The chat messages of a contrast step: the conversation, continued by the answer so far when there is one. */
export function continuation(messages: ChatMessage[], prefix: string): ChatMessage[] {
  return prefix.length > 0 ? [...messages, { role: "assistant", content: prefix }] : messages;
}
