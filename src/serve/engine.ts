/**
 * The engine behind `delta-audit serve`: a loaded engine model (src/engine) bound to the
 * server's ServeEngine surface, and the variant sources serve accepts (`NAME=DIR[@rankK]`,
 * LoRA adapters, rank-K truncations of adapters and of full fine-tunes).
 *
 * Every request decodes on the engine's KV-cached DecodeStream, one token per `step()`, so the
 * server can interleave requests step by step (see openai-server.ts) and a request that asks
 * for logprobs costs one decode step per token, as a plain one does.
 */
import { InputError } from "../errors";
import { log } from "../progress";
import type { ChatMessage } from "../chat/types";
import type { LoraModule } from "../io/types";
import { logSoftmax, sampleToken, seededRandom, topKIndices } from "../chat/sampling";
import type { DecodeJob, EngineItem, EngineOutput, ServeEngine, TokenLogprob } from "./openai-server";

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
    if (!Number.isSafeInteger(rank) || rank < 1) throw new InputError(`rank in '${value}' must be a positive integer`, flag);
    dir = dir.slice(0, m.index);
  }
  if (dir === "") throw new InputError(`no folder in '${value}'`, flag);
  return { name, dir, rank };
}

/** Step-wise decoding as the engine offers it (src/engine's DecodeStream). */
export interface EngineStream {
  readonly logits: Float32Array[];
  next(tokens: number[]): Promise<Float32Array[]>;
  retain(rows: number[]): void;
}

/** The engine surface serve uses (src/engine's LoadedModel). */
export interface EngineModel {
  config: { maxPositionEmbeddings: number; maxContext?: number; vocabSize: number };
  tokenizer: {
    renderChat(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): string;
    encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
    decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
    eosTokenIds: number[];
    hasChatTemplate: boolean;
  };
  variants(): string[];
  addLoraVariant(name: string, modules: LoraModule[]): void;
  openStream(prompts: number[][], variant?: string): Promise<EngineStream>;
  removeVariant?(name: string): void;
}

/** Read a LoRA adapter's modules, truncated to rank K when asked. */
export async function readAdapterModules(dir: string, rank?: number): Promise<LoraModule[]> {
  const { openAdapter } = await import("../io/peft");
  const adapter = await openAdapter(dir);
  try {
    const modules: LoraModule[] = [];
    if (rank === undefined) {
      for (const name of adapter.moduleNames()) modules.push(await adapter.readModule(name));
    } else {
      const { truncateAdapter } = await import("../delta/truncate");
      for await (const m of truncateAdapter(adapter, rank, { quiet: true })) modules.push(m);
    }
    return modules;
  } finally {
    await adapter.close();
  }
}

/** The rank-K LoRA of a full fine-tune's ΔW (top-K SVD per decoder linear). */
export async function readFinetuneLowRank(baseDir: string, dir: string, rank: number): Promise<LoraModule[]> {
  const { openCheckpoint } = await import("../io/checkpoint");
  const { lowRankFromFull } = await import("../delta/truncate");
  const base = await openCheckpoint(baseDir);
  try {
    const ft = await openCheckpoint(dir);
    try {
      const modules: LoraModule[] = [];
      for await (const m of lowRankFromFull(base, ft, rank, { quiet: true, onWarning: (w) => log(`serve: ${w}`) })) modules.push(m);
      return modules;
    } finally {
      await ft.close();
    }
  } finally {
    await base.close();
  }
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
  dropped: boolean;
}

/**
 * Wrap a loaded engine model as a ServeEngine. A job is one KV-cached DecodeStream over
 * requests for one variant (prompts left-padded); each step chooses every live row's next
 * token from the cached logits (and, when asked, its logprobs from the same row), drops rows
 * that finished or were cancelled, and runs one decode step. Sampling is the engine's own
 * (seeded per request), so a request's tokens are those of the engine's generate.
 */
export function serveEngineFromModel(model: EngineModel): ServeEngine {
  const tok = model.tokenizer;
  const eos = new Set(tok.eosTokenIds);
  const maxContext = model.config.maxContext ?? model.config.maxPositionEmbeddings;
  const special = new Map<number, boolean>();
  const isSpecial = (id: number) => {
    let v = special.get(id);
    if (v === undefined) special.set(id, (v = tok.decode([id], { skipSpecialTokens: true }) === ""));
    return v;
  };
  // the tokenizer rejects an empty id list (a reply that is only the end-of-turn token)
  const text = (ids: number[]) => (ids.length > 0 ? tok.decode(ids, { skipSpecialTokens: true }) : "");

  const open = async (variant: string, items: EngineItem[]): Promise<DecodeJob> => {
    const outputs: (EngineOutput | undefined)[] = new Array(items.length);
    let rows: Row[] = [];
    const finish = (r: Row, finishReason: "stop" | "length") => {
      outputs[r.k] = { ids: r.ids, text: text(r.ids), finishReason, ...(r.lps ? { logprobs: r.lps } : {}) };
    };
    items.forEach((item, k) => {
      const r: Row = { k, item, rand: seededRandom(item.sampling.seed), limit: Math.max(0, Math.min(item.sampling.maxNewTokens, maxContext - item.promptIds.length)), ids: [], lps: item.logprobs ? [] : undefined, dropped: false };
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
          if (r.lps) {
            const lp = logSoftmax(logits);
            const n = r.item.topLogprobs ?? 0;
            r.lps.push({ id: t, logprob: lp[t]!, top: n > 0 ? topKIndices(lp, n).map((i) => ({ id: i, logprob: lp[i]! })) : [] });
          }
          if (eos.has(t)) return finish(r, "stop");
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
    // the same tokenization as the engine's own chat path: a template writes its own specials
    encodePrompt: (text) => tok.encode(text, { addSpecialTokens: !tok.hasChatTemplate }),
    tokenText: (id, context) => {
      const alone = tok.decode([id], { skipSpecialTokens: true });
      // a special token decodes to nothing when specials are skipped: show its literal text
      if (alone === "") return tok.decode([id], { skipSpecialTokens: false });
      // the reply starts after the template's last special token (the role tag), so the
      // context stops there: the first word of a reply gets no separating space
      let from = context.length;
      while (from > 0 && !isSpecial(context[from - 1]!)) from--;
      const ctx = context.slice(from);
      if (ctx.length === 0) return alone;
      const before = tok.decode(ctx, { skipSpecialTokens: true });
      const after = tok.decode([...ctx, id], { skipSpecialTokens: true });
      return after.startsWith(before) ? after.slice(before.length) : alone;
    },
    maxContext,
    open,
    async loadAdapter(name, dir, rank) {
      model.addLoraVariant(name, await readAdapterModules(dir, rank));
    },
    unloadAdapter: model.removeVariant ? async (name) => model.removeVariant!(name) : undefined,
  };
}
