/**
 * The engine behind `delta-audit serve`: a loaded engine model (src/engine) bound to the
 * server's ServeEngine surface, and the `NAME=DIR[@rankK]` flag values naming its variants
 * (read by src/engine/variants.ts, as a scan's are).
 *
 * Every request decodes on the engine's KV-cached DecodeStream, one token per `step()`, so the
 * server can interleave requests step by step (see openai-server.ts) and a request that asks
 * for logprobs costs one decode step per token, as a plain one does.
 */
import { InputError } from "../errors";
import type { LoadedModel } from "../engine/index";
import { MAX_RANK } from "../delta/limits";
import { logSoftmax, sampleToken, seededRandom, topKIndices } from "../chat/sampling";
import type { DecodeJob, EngineItem, EngineOutput, PromptLogprob, ServeEngine, TokenLogprob } from "./openai-server";

/** Variant names become model ids in URLs and JSON: keep them plain. */
const VARIANT_NAME = /^[A-Za-z0-9_.\-]{1,128}$/;

/** One `NAME=DIR[@rankK]` flag value. */
export interface VariantSpec {
  name: string;
  dir: string;
  rank?: number;
}

/** Parse `NAME=DIR`, `NAME=DIR@rank1`, `NAME=DIR@rankK` (K ≥ 1); `flag` names the source in errors. */
export function parseVariantSpec(value: string, flag: string): VariantSpec {
  const eq = value.indexOf("=");
  if (eq <= 0) throw new InputError(`expected NAME=DIR or NAME=DIR@rankK, got '${value}'`, flag);
  const name = value.slice(0, eq);
  let dir = value.slice(eq + 1);
  if (!VARIANT_NAME.test(name)) throw new InputError(`variant name '${name}' must be 1-128 characters of [A-Za-z0-9_.-]`, flag);
  if (name === "base") throw new InputError("'base' is the name of the base model; pick another name", flag);
  let rank: number | undefined;
  const m = /@rank(\d+)$/.exec(dir);
  if (m) {
    rank = Number(m[1]);
    if (!Number.isSafeInteger(rank) || rank < 1 || rank > MAX_RANK) throw new InputError(`rank in '${value}' must be an integer from 1 to ${MAX_RANK}`, flag);
    dir = dir.slice(0, m.index);
  }
  if (dir === "") throw new InputError(`no folder in '${value}'`, flag);
  return { name, dir, rank };
}

/** Preceding tokens a token's text is decoded after: enough for any merge (multi-byte characters, spaces). */
const TOKEN_TEXT_CONTEXT = 8;

/**
 * How a logprob entry's token text is written. "in-context": what the token adds after the
 * tokens before it, so the texts of an answer join into its text. "per-token": each token
 * decoded on its own, as current vLLM does — word-piece and sentencepiece pieces then carry no
 * leading space, and joined texts run words together (a client must work from token ids).
 */
export type TokenTextConvention = "in-context" | "per-token";

export interface ServeEngineOptions {
  /** default "in-context" */
  tokenText?: TokenTextConvention;
}

/** One request's decoding state inside a job. */
interface Row {
  /** index of the request in the job's items */
  k: number;
  item: EngineItem;
  rand: () => number;
  limit: number;
  ids: number[];
  lps?: TokenLogprob[];
  /** the text each generated token adds, when asked */
  texts?: string[];
  dropped: boolean;
}

/**
 * Wrap a loaded engine model as a ServeEngine. A job is one KV-cached DecodeStream over
 * requests for one variant (prompts left-padded); each step chooses every live row's next
 * token from the cached logits (and, when asked, its logprobs from the same row), drops rows
 * that finished or were cancelled, and runs one decode step. Sampling is the engine's own
 * (seeded per request), so a request's tokens are those of the engine's generate.
 */
export function serveEngineFromModel(model: LoadedModel, opts: ServeEngineOptions = {}): ServeEngine {
  const tok = model.tokenizer;
  const perToken = opts.tokenText === "per-token";
  const eos = new Set(tok.eosTokenIds);
  const maxContext = model.config.maxContext;
  const skip = { skipSpecialTokens: true };
  /** each token's text on its own ("" for a special token): asked for every step's candidates */
  const aloneText = new Map<number, string>();
  const alone = (id: number) => {
    let v = aloneText.get(id);
    if (v === undefined) aloneText.set(id, (v = tok.decode([id], skip)));
    return v;
  };
  const text = (ids: number[]) => tok.decode(ids, skip);

  /**
   * The text each of `ids` adds after `context` (the ids before it), the context decoded once.
   * Word-piece and sentencepiece tokenizers put spaces between tokens when decoding a sequence,
   * so a token's text depends on what precedes it; concatenating these texts gives the decoded
   * sequence. Special tokens come back as their literal text ("<|eot_id|>").
   */
  const tokenTexts = (ids: number[], context: readonly number[]): string[] => {
    if (perToken) return ids.map((id) => (alone(id) === "" ? tok.decode([id], { skipSpecialTokens: false }) : alone(id)));
    return inContextTexts(ids, context);
  };
  const inContextTexts = (ids: number[], context: readonly number[]): string[] => {
    // the reply starts after the template's last special token (the role tag), so the
    // context stops there: the first word of a reply gets no separating space
    let from = context.length;
    while (from > 0 && alone(context[from - 1]!) !== "") from--;
    const ctx = context.slice(from);
    const before = text(ctx);
    return ids.map((id) => {
      const a = alone(id);
      // a special token decodes to nothing when specials are skipped: show its literal text
      if (a === "") return tok.decode([id], { skipSpecialTokens: false });
      if (ctx.length === 0) return a;
      const after = text([...ctx, id]);
      return after.startsWith(before) ? after.slice(before.length) : a;
    });
  };

  /**
   * Each prompt position's logprob under `variant` with the `n` most likely tokens there (vLLM's
   * `prompt_logprobs`): one prefill over the whole prompt. The first position has no context: null.
   */
  const promptLogprobs = async (variant: string, ids: number[], n: number): Promise<(PromptLogprob | null)[]> => {
    const rows = await model.logits(ids, variant);
    const out: (PromptLogprob | null)[] = [null];
    for (let j = 1; j < ids.length; j++) {
      // log-softmax of the few entries reported: one pass for the normaliser, none for the rest of the row
      const row = rows[j - 1]!;
      let max = -Infinity;
      for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
      let z = 0;
      for (let i = 0; i < row.length; i++) z += Math.exp(row[i]! - max);
      const lz = max + Math.log(z);
      const id = ids[j]!;
      let rank = 1;
      for (let i = 0; i < row.length; i++) if (row[i]! > row[id]!) rank++;
      const top = n > 0 ? topKIndices(row, n) : [];
      const texts = tokenTexts([id, ...top], ids.slice(Math.max(0, j - TOKEN_TEXT_CONTEXT), j));
      out.push({ id, logprob: row[id]! - lz, rank, text: texts[0]!, top: top.map((t, i) => ({ id: t, logprob: row[t]! - lz, rank: i + 1, text: texts[i + 1]! })) });
    }
    return out;
  };

  const open = async (variant: string, items: EngineItem[]): Promise<DecodeJob> => {
    const outputs: (EngineOutput | undefined)[] = new Array(items.length);
    let rows: Row[] = [];
    // prompt logprobs are a prefill of their own, before the job decodes (vLLM returns them with the answer)
    const prompts: ((PromptLogprob | null)[] | undefined)[] = [];
    for (const item of items) prompts.push(item.promptLogprobs !== undefined ? await promptLogprobs(variant, item.promptIds, item.promptLogprobs) : undefined);
    const finish = (r: Row, finishReason: "stop" | "length") => {
      const pl = prompts[r.k];
      outputs[r.k] = { ids: r.ids, text: text(r.ids), finishReason, ...(r.lps ? { logprobs: r.lps } : {}), ...(r.texts ? { tokenTexts: r.texts } : {}), ...(pl ? { promptLogprobs: pl } : {}) };
    };
    items.forEach((item, k) => {
      const r: Row = { k, item, rand: seededRandom(item.sampling.seed), limit: Math.max(0, Math.min(item.sampling.maxNewTokens, maxContext - item.promptIds.length)), ids: [], lps: item.logprobs ? [] : undefined, texts: item.tokenTexts ? [] : undefined, dropped: false };
      // a row that may not generate anything finishes before any compute
      if (r.limit > 0) rows.push(r);
      else finish(r, "length");
    });
    const stream = rows.length > 0 ? await model.openStream(rows.map((r) => r.item.promptIds), variant) : undefined;

    return {
      outputs,
      get live() {
        return rows.length;
      },
      get remaining() {
        return rows.reduce((m, r) => Math.max(m, r.limit - r.ids.length), 0);
      },
      cancel(k) {
        const r = rows.find((x) => x.k === k);
        if (r) r.dropped = true;
      },
      async step() {
        if (!stream || rows.length === 0) return;
        const keep: number[] = [];
        const next: number[] = [];
        rows.forEach((r, b) => {
          if (r.dropped) return;
          const logits = stream.logits[b]!;
          const t = sampleToken(logits, r.item.sampling, r.rand);
          // token texts are worked out here, a step at a time, so a long logprobs request never
          // holds the worker for its whole answer's formatting at the end
          const context = () => [...r.item.promptIds.slice(-TOKEN_TEXT_CONTEXT), ...r.ids.slice(-TOKEN_TEXT_CONTEXT)].slice(-TOKEN_TEXT_CONTEXT);
          let own: string | undefined;
          if (r.lps) {
            const lp = logSoftmax(logits);
            const n = r.item.topLogprobs ?? 0;
            const top = n > 0 ? topKIndices(lp, n) : [];
            const texts = tokenTexts([t, ...top], context());
            if (!perToken) own = texts[0]!;
            r.lps.push({ id: t, logprob: lp[t]!, text: texts[0]!, top: top.map((i, j) => ({ id: i, logprob: lp[i]!, text: texts[j + 1]! })) });
          }
          if (eos.has(t)) return finish(r, "stop");
          // streamed chunks follow the answer's text, whatever the logprob convention
          r.texts?.push(own ?? inContextTexts([t], context())[0]!);
          r.ids.push(t);
          if (r.ids.length >= r.limit) return finish(r, "length");
          keep.push(b);
          next.push(t);
        });
        if (keep.length === 0) {
          rows = [];
          return;
        }
        if (keep.length < rows.length) {
          stream.retain(keep);
          rows = keep.map((b) => rows[b]!);
        }
        await stream.next(next);
      },
    };
  };

  return {
    variants: () => model.variants(),
    renderChat: (messages, opts) => tok.renderChat(messages, opts),
    encodePrompt: (text) => tok.encodeChat(text),
    encodeText: (s) => tok.encode(s, { addSpecialTokens: true }),
    decode: (ids, skipSpecialTokens = true) => tok.decode(ids, { skipSpecialTokens }),
    vocabSize: model.config.vocabSize,
    maxContext,
    open,
    async loadAdapter(name, dir, rank) {
      // read as `--adapter` is: checked against the base model, truncated when asked
      const { readAdapterModules } = await import("../engine/variants");
      model.addLoraVariant(name, await readAdapterModules(model.dir, dir, { rank, quiet: true }));
    },
    async unloadAdapter(name) {
      model.removeVariant(name);
    },
  };
}
