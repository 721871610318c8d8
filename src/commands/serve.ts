/**
 * `delta-audit serve`: the embedded engine as an OpenAI-compatible server, so a CPU runner can
 * serve a small model to several jobs and the `openai` backend can be tested end to end.
 *
 *   delta-audit serve --model DIR [--adapter NAME=DIR[@rankK] ...] [--finetuned NAME=DIR[@rankK] ...]
 *                     [--port P] [--host 127.0.0.1]
 *
 * The base model is served as `base`; each adapter or fine-tune under its NAME. `@rankK` serves
 * the adapter (or the fine-tune's ΔW) truncated to rank K — the audit's `rank1` variant.
 */
import type { Command } from "commander";
import { isAbsolute, resolve } from "node:path";
import { InputError } from "../errors";
import { log } from "../progress";
import { integerFlag, type Bounds } from "../validate";
import type { ChatMessage } from "../chat/types";
import type { LoraModule } from "../io/types";
import {
  DEFAULT_MAX_BATCH,
  DEFAULT_MAX_TOKENS_LIMIT,
  SHUTDOWN_GRACE_MS,
  startOpenAIServer,
  type EngineItem,
  type EngineOutput,
  type ServeEngine,
  type TokenLogprob,
} from "../serve/openai-server";

/** vLLM's default port, so client configs carry over. */
export const DEFAULT_PORT = 8000;
/** The API key for clients, when set (kept out of argv so it does not show in `ps`). */
export const SERVE_API_KEY_ENV = "DELTA_AUDIT_SERVE_API_KEY";
/** Variant names become model ids in URLs and JSON: keep them plain. */
const VARIANT_NAME = /^[A-Za-z0-9_.\-]{1,128}$/;

/** One `NAME=DIR[@rankK]` flag value. */
export interface VariantSpec {
  name: string;
  dir: string;
  rank?: number;
}

/** Parse `NAME=DIR`, `NAME=DIR@rank1`, `NAME=DIR@rankK` (K ≥ 1). */
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

/** 0 asks the system for any free port. */
const PORT: Bounds = { min: 0, max: 65535, expected: "a port number 0-65535" };
const POSITIVE: Bounds = { min: 1, max: Number.MAX_SAFE_INTEGER, expected: "a positive integer" };

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

/** The engine surface serve uses (src/engine's LoadedModel). */
interface EngineModel {
  config: { maxPositionEmbeddings: number; vocabSize: number };
  tokenizer: {
    renderChat(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): string;
    encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
    decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
    eosTokenIds: number[];
    hasChatTemplate: boolean;
  };
  variants(): string[];
  addLoraVariant(name: string, modules: LoraModule[]): void;
  logits(ids: number[], variant?: string): Promise<Float32Array[]>;
  generate(
    requests: { promptIds: number[]; sampling: EngineItem["sampling"] }[],
    variant: string,
  ): Promise<{ text: string; ids: number[]; finishReason: "stop" | "length" }[]>;
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

/**
 * Wrap a loaded engine model as a ServeEngine. Plain requests go through the engine's batched
 * generate; requests that want logprobs are decoded step by step from full logits, since the
 * engine's generate does not report them (the contrast client asks for one token at a time,
 * so this costs one forward pass per request there).
 */
export function serveEngineFromModel(model: EngineModel): ServeEngine {
  const tok = model.tokenizer;
  const eos = new Set(tok.eosTokenIds);
  const special = new Map<number, boolean>();
  const isSpecial = (id: number) => {
    let v = special.get(id);
    if (v === undefined) special.set(id, (v = tok.decode([id], { skipSpecialTokens: true }) === ""));
    return v;
  };

  const withLogprobs = async (variant: string, item: EngineItem): Promise<EngineOutput> => {
    const { logSoftmax, sampleToken, seededRandom, topKIndices } = await import("../chat/sampling");
    const rand = seededRandom(item.sampling.seed);
    const ids: number[] = [];
    const lps: TokenLogprob[] = [];
    const limit = Math.min(item.sampling.maxNewTokens, model.config.maxPositionEmbeddings - item.promptIds.length);
    let finishReason: "stop" | "length" = "length";
    for (let step = 0; step < limit; step++) {
      const rows = await model.logits([...item.promptIds, ...ids], variant);
      const last = rows[rows.length - 1]!;
      const lp = logSoftmax(last);
      const t = sampleToken(last, item.sampling, rand);
      const k = item.topLogprobs ?? 0;
      lps.push({ id: t, logprob: lp[t]!, top: k > 0 ? topKIndices(lp, k).map((i) => ({ id: i, logprob: lp[i]! })) : [] });
      if (eos.has(t)) {
        finishReason = "stop";
        break;
      }
      ids.push(t);
    }
    // the tokenizer rejects an empty id list (a reply that is only the end-of-turn token)
    return { ids, text: ids.length > 0 ? tok.decode(ids, { skipSpecialTokens: true }) : "", finishReason, logprobs: lps };
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
    maxContext: model.config.maxPositionEmbeddings,
    async generate(variant, items) {
      const out: EngineOutput[] = new Array(items.length);
      const plain = items.map((it, i) => [it, i] as const).filter(([it]) => !it.logprobs);
      if (plain.length > 0) {
        const res = await model.generate(
          plain.map(([it]) => ({ promptIds: it.promptIds, sampling: it.sampling })),
          variant,
        );
        plain.forEach(([, i], k) => (out[i] = res[k]!));
      }
      for (let i = 0; i < items.length; i++) if (items[i]!.logprobs) out[i] = await withLogprobs(variant, items[i]!);
      return out;
    },
    async loadAdapter(name, dir, rank) {
      model.addLoraVariant(name, await readAdapterModules(dir, rank));
    },
    unloadAdapter: model.removeVariant ? async (name) => model.removeVariant!(name) : undefined,
  };
}

interface ServeFlags {
  model: string;
  adapter: string[];
  finetuned: string[];
  port: string;
  host: string;
  device: string;
  maxTokens: string;
  maxBatch: string;
  runtimeAdapters?: boolean;
}

export function register(program: Command): void {
  program
    .command("serve")
    .description("serve the embedded engine as an OpenAI-compatible server (base + adapters by name)")
    .requiredOption("--model <dir>", "base model checkpoint folder (served as 'base')")
    .option("--adapter <name=dir[@rankK]>", "LoRA adapter served as NAME; @rankK truncates it to rank K (repeatable)", (v: string, acc: string[]) => [...acc, v], [])
    .option("--finetuned <name=dir[@rankK]>", "full fine-tuned checkpoint served as NAME; @rankK serves its ΔW truncated to rank K (repeatable)", (v: string, acc: string[]) => [...acc, v], [])
    .option("--port <p>", "port (0 = any free port)", String(DEFAULT_PORT))
    .option("--host <addr>", "address to bind", "127.0.0.1")
    .option("--device <cpu|cuda>", "where the engine runs", "cpu")
    .option("--max-tokens <n>", "largest max_tokens a request may ask for", String(DEFAULT_MAX_TOKENS_LIMIT))
    .option("--max-batch <n>", "most requests run together in one engine batch", String(DEFAULT_MAX_BATCH))
    .option("--runtime-adapters", "allow POST /v1/load_lora_adapter (on by default when bound to loopback)")
    .action(async (flags: ServeFlags) => {
      const port = integerFlag(flags.port, "--port", PORT);
      const maxTokensLimit = integerFlag(flags.maxTokens, "--max-tokens", POSITIVE);
      const maxBatch = integerFlag(flags.maxBatch, "--max-batch", POSITIVE);
      const adapters = flags.adapter.map((v) => parseVariantSpec(v, "--adapter"));
      const finetuned = flags.finetuned.map((v) => parseVariantSpec(v, "--finetuned"));
      const names = [...adapters, ...finetuned].map((s) => s.name);
      const dup = names.find((n, i) => names.indexOf(n) !== i);
      if (dup) throw new InputError(`variant name '${dup}' is given twice`, "--adapter/--finetuned");
      const loopback = LOOPBACK.has(flags.host);
      // runtime loading reads any folder the server can see: only by default on loopback
      const runtimeAdapters = flags.runtimeAdapters ?? loopback;
      if (!loopback) log(`serve: binding ${flags.host}: the server is reachable from other machines${process.env[SERVE_API_KEY_ENV] ? "" : ` and has no API key (set ${SERVE_API_KEY_ENV})`}`);

      const { parseDevice } = await import("../linalg/device");
      const device = parseDevice(flags.device);
      const { loadModel } = await import("../engine/index");
      log(`serve: loading ${flags.model}`);
      const model = (await loadModel(flags.model, { device, maxBatch })) as unknown as EngineModel & { close(): Promise<void>; addCheckpointVariant(name: string, ckpt: unknown): Promise<void> };
      void model.tokenizer; // fail now (exit 2) when the folder has no tokenizer
      for (const a of adapters) {
        log(`serve: adapter ${a.name} from ${a.dir}${a.rank ? ` truncated to rank ${a.rank}` : ""}`);
        model.addLoraVariant(a.name, await readAdapterModules(a.dir, a.rank));
      }
      if (finetuned.length > 0) {
        const { openCheckpoint } = await import("../io/checkpoint");
        for (const f of finetuned) {
          if (f.rank !== undefined) {
            log(`serve: fine-tune ${f.name} from ${f.dir}, ΔW truncated to rank ${f.rank}`);
            model.addLoraVariant(f.name, await readFinetuneLowRank(flags.model, f.dir, f.rank));
            continue;
          }
          log(`serve: fine-tune ${f.name} from ${f.dir}`);
          const ckpt = await openCheckpoint(f.dir);
          try {
            await model.addCheckpointVariant(f.name, ckpt);
          } finally {
            await ckpt.close();
          }
        }
      }

      const apiKey = process.env[SERVE_API_KEY_ENV] || undefined;
      const server = await startOpenAIServer(serveEngineFromModel(model), {
        host: flags.host,
        port,
        modelId: isAbsolute(flags.model) ? flags.model : resolve(flags.model),
        maxTokensLimit,
        maxBatch,
        apiKey,
        runtimeAdapters,
        log: (line) => log(`serve: ${line}`),
      });
      // the URL goes to stdout, alone on its line, so scripts and tests can read it
      process.stdout.write(`listening on ${server.url}\n`);
      log(`serve: variants ${model.variants().join(", ")}; OpenAI base URL ${server.url}/v1`);

      await new Promise<void>((done) => {
        let stopping = false;
        const stop = (sig: string) => {
          if (stopping) {
            log(`serve: ${sig} again, exiting now`);
            process.exit(130);
          }
          stopping = true;
          log(`serve: ${sig}: finishing queued requests (up to ${SHUTDOWN_GRACE_MS / 1000}s), then stopping`);
          void server
            .close()
            .then(() => model.close())
            .finally(() => {
              process.off("SIGINT", onInt);
              process.off("SIGTERM", onTerm);
              done();
            });
        };
        const onInt = () => stop("SIGINT");
        const onTerm = () => stop("SIGTERM");
        process.on("SIGINT", onInt);
        process.on("SIGTERM", onTerm);
      });
    });
}
