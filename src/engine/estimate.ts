/**
 * What running a model needs on this machine, before loading anything: memory per precision
 * from config.json alone, time from a short measurement of this machine's matrix-vector speed
 * at each precision, and the choice `--precision auto` makes from both.
 *
 * Memory is what the engine holds (see model.ts, graph.ts): each linear weight once at its
 * precision (quantize.ts sizes), the head slices, float32 norms and biases; LoRA factors; a
 * fine-tune's own copy of its changed segments; the KV cache of a full batch at the longest
 * context the work asks for; a prefill chunk's activations; the load's transient (one segment
 * staged while ORT copies it); and the runtime itself. Embedding rows are read from the file on
 * demand and are not counted (the page cache may hold them; the kernel can drop them).
 */
import { freemem, totalmem } from "node:os";
import { InputError } from "../errors";
import { createSession, ort, type Device } from "../linalg/ort";
import type { ModelConfig } from "./config";
import { AUTO_ORDER, checkPrecision, unsupportedReason, weightPlan, type Precision, type PrecisionChoice } from "./precision";
import { fillerMatrix } from "./quantize";
import { buildLinearGraph, type BuiltGraph } from "./graph";
import { MAX_BATCH, PREFILL_CHUNK } from "./model";
import { SEGMENT_SHARE, headBytes, layerBytes, matrixBytes, segmentBudget } from "./sizes";

export { headBytes, layerBytes, linearParams } from "./sizes";

/**
 * Node, V8 and ONNX Runtime themselves, the tokenizer and the JS heap of a scan: a tiny model's
 * `generate` peaks at 0.16 GB RSS here; a 128k-token tokenizer and a scan's transcripts add
 * ~100 MB more.
 */
export const RUNTIME_BYTES = 300 * 2 ** 20;
/**
 * `auto` keeps this share of the available memory free: the page cache of the weight files,
 * allocator fragmentation and other processes on a runner must not push the scan into the
 * kernel's OOM killer.
 */
export const AUTO_HEADROOM = 0.85;
/**
 * Copies of one segment alive beside the loaded weights at load (model.ts session()): float32,
 * the staging array and ORT's copy being pre-packed (2); quantized, ORT replaces its copy of
 * the codes by the packed form and the staging is small (1). Calibrated against VmHWM of the
 * Qwen2.5-0.5B-shaped load: f32 2.49 GB estimated / 2.51 measured, int8 1.09 / 1.11.
 */
const LOAD_TRANSIENT_COPIES = { float: 2, quantized: 1 };
/** weights.ts planSegments' smallest float32 segment. */
const MIN_SEGMENT_BYTES = 64 << 20;

/** The work a run will do, for the KV cache and time estimates. */
export interface Workload {
  /** prompts decoded together (≤ MAX_BATCH) */
  batch: number;
  /** longest prompt + reply, tokens */
  context: number;
  /** decode steps of the whole run, per variant (batches × max new tokens) */
  steps?: number;
  /** prompt tokens of the whole run, per variant */
  promptTokens?: number;
  /** variants each prompt runs on (base, full, rank-k: 3; contrastive decoding adds full+base once more) */
  variantRuns?: number;
}

/** The subject beside the base weights. */
export interface SubjectShape {
  kind: "base" | "lora" | "full";
  /** float32 parameters of the LoRA factors of every LoRA variant together (full + rank-k) */
  loraParams?: number;
  /** fine-tunes run whole, each at worst a second copy of the weights (default: 1 for kind full) */
  fullCopies?: number;
}

export interface MemoryEstimate {
  precision: Precision;
  /** peak bytes while running, all parts together */
  bytes: number;
  parts: { weights: number; head: number; variants: number; kvCache: number; activations: number; loadTransient: number; runtime: number };
}

/** Peak memory of running the subject at a precision (see the file comment for what is counted). */
export function estimateMemory(c: ModelConfig, p: Precision, subject: SubjectShape, work: Workload): MemoryEstimate {
  const weights = c.numLayers * layerBytes(c, p);
  const head = headBytes(c, p);
  let variants = 4 * (subject.loraParams ?? 0);
  // a full fine-tune, at worst: every segment and the head with weights of their own
  // (full-delta.ts runs a low-rank ΔW as float32 factors instead, which is far smaller)
  variants += (subject.fullCopies ?? (subject.kind === "full" ? 1 : 0)) * (weights + head);
  const rows = Math.max(1, work.batch);
  const kvPerToken = 2 * c.numLayers * c.numKvHeads * c.headDim * 4;
  // contrastive decoding keeps two variants' caches
  const caches = (work.variantRuns ?? 1) > 3 ? 2 : 1;
  const kvCache = caches * rows * Math.min(work.context, c.maxContext) * kvPerToken;
  // one prefill chunk: the layer's widest activations (gate/up, q/k/v, attention scores), a few alive at once
  const S = Math.min(PREFILL_CHUNK, work.context);
  const T = Math.min(work.context, c.maxContext);
  const activations = 4 * rows * S * (3 * 2 * c.intermediateSize + 4 * c.hiddenSize + 2 * c.numHeads * T) + 4 * rows * c.vocabSize;
  const quantSegment = segmentBudget(c, p);
  const segment = quantSegment !== undefined ? quantSegment * (layerBytes(c, p) / layerBytes(c, "f32")) : Math.max(MIN_SEGMENT_BYTES, SEGMENT_SHARE * (weights + head));
  const loadTransient = (quantSegment !== undefined ? LOAD_TRANSIENT_COPIES.quantized : LOAD_TRANSIENT_COPIES.float) * Math.min(segment, weights + head);
  const parts = { weights, head, variants, kvCache, activations, loadTransient, runtime: RUNTIME_BYTES };
  const bytes = weights + head + variants + RUNTIME_BYTES + Math.max(loadTransient, kvCache + activations);
  return { precision: p, bytes, parts };
}

/**
 * Memory this process may still take: the kernel's MemAvailable (os.freemem) and, under a
 * cgroup limit (a container, a CI job), what is left of that limit.
 */
export function availableMemory(): { bytes: number; source: string } {
  const free = freemem();
  const limit = typeof process.constrainedMemory === "function" ? process.constrainedMemory() : 0;
  if (limit && limit > 0 && limit < totalmem()) {
    const left = Math.max(0, limit - process.memoryUsage().rss);
    if (left < free) return { bytes: left, source: `the cgroup limit of ${gib(limit)}` };
  }
  return { bytes: free, source: "free memory" };
}

export const gib = (b: number) => `${(b / 2 ** 30).toFixed(b < 2 ** 30 ? 2 : 1)} GiB`;

export interface PrecisionDecision {
  precision: Precision;
  /** one line: the choice and why */
  reason: string;
  estimates: MemoryEstimate[];
  available: { bytes: number; source: string };
}

/**
 * Resolve `--precision`: an explicit precision is checked against the installed ONNX Runtime
 * (InputError naming why not); `auto` takes the most exact precision this build runs whose
 * estimated peak fits in AUTO_HEADROOM of the available memory. When none fits, InputError
 * (exit 2) before anything is loaded.
 */
export async function decidePrecision(
  choice: PrecisionChoice,
  c: ModelConfig,
  subject: SubjectShape,
  work: Workload,
  opts: { device?: Device; where?: string; available?: { bytes: number; source: string } } = {},
): Promise<PrecisionDecision> {
  const available = opts.available ?? availableMemory();
  const where = opts.where ?? "--precision";
  const estimates = (["f32", "int8", "int4"] as Precision[]).map((p) => estimateMemory(c, p, subject, work));
  const est = (p: Precision) => estimates.find((e) => e.precision === p)!;
  if (choice !== "auto") {
    await checkPrecision(choice, opts.device, where);
    return { precision: choice, reason: `precision ${choice} (asked for)`, estimates, available };
  }
  const budget = AUTO_HEADROOM * available.bytes;
  const sizes = estimates.map((e) => `${e.precision} ${gib(e.bytes)}`).join(", ");
  for (const p of AUTO_ORDER) {
    if (est(p).bytes > budget) continue;
    if ((await unsupportedReason(p, opts.device)) !== null) continue;
    const why = p === "f32" ? "the most exact precision fits" : `${AUTO_ORDER.slice(0, AUTO_ORDER.indexOf(p)).join(" and ")} would not fit`;
    return {
      precision: p,
      reason: `precision auto → ${p}: ${why} (needs ${sizes}; ${gib(available.bytes)} ${available.source}, ${Math.round(AUTO_HEADROOM * 100)} % of it usable)`,
      estimates,
      available,
    };
  }
  throw new InputError(
    `the model cannot fit at any precision: it needs ${sizes}, and ${gib(available.bytes)} is available (${available.source}; ${Math.round(AUTO_HEADROOM * 100)} % of it usable). Use a machine with more memory or an OpenAI-compatible server (--backend openai)`,
    where,
  );
}

// ------------------------------------------------------------------ time

/** Measured speed of one precision on this machine. */
export interface PrecisionSpeed {
  precision: Precision;
  /** weight bytes a batch-1 matrix-vector product streams per second */
  bytesPerSecond: number;
  /** tokens/s of a batch of MAX_BATCH rows over that of one row, on the same matrix */
  batchSpeedup: number;
  /** fixed cost of one session run (a segment or head slice), seconds */
  runOverhead: number;
}

/**
 * The measurement multiplies by the model's own gate/up matrix [hidden, 2·intermediate], cut
 * to at most this many bytes at the precision: 48 MiB leaves a server core's L3 (so a large
 * model's speed is memory-bound, as it will be) while the session builds in a fraction of a
 * second; a small model is measured at its own, cache-resident size, as it will run.
 */
const MEASURE_MAX_BYTES = 48 * 2 ** 20;
/** Timed runs per measurement (after two warm-up runs): the median is taken. */
const MEASURE_RUNS = 5;


/** The engine's own linear (graph.ts) multiplying by a K×N weight at the precision, with arbitrary values (speed does not depend on them). */
function speedModel(p: Precision, K: number, N: number): BuiltGraph {
  const s = weightPlan(p).linear;
  if (!s) return buildLinearGraph(K, N, { data: new Float32Array(K * N).fill(1 / 64), dims: [K, N] });
  return buildLinearGraph(K, N, { quant: fillerMatrix(K, N, s), dims: [K, N] });
}

async function medianRun(s: ort.InferenceSession, feeds: Record<string, ort.Tensor>): Promise<number> {
  for (let i = 0; i < 2; i++) await s.run(feeds);
  const t: number[] = [];
  for (let i = 0; i < MEASURE_RUNS; i++) {
    const t0 = performance.now();
    await s.run(feeds);
    t.push((performance.now() - t0) / 1000);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}

const speedCache = new Map<string, Promise<PrecisionSpeed>>();

/**
 * Measure one precision (cached per process): a batch-1 and a batch-MAX_BATCH product with a
 * MEASURE_SHAPE weight, and a tiny graph's run for the per-session overhead. About 0.1–0.5 s.
 */
export function measureSpeed(p: Precision, c: Pick<ModelConfig, "hiddenSize" | "intermediateSize">, opts: { device?: Device; threads?: number } = {}): Promise<PrecisionSpeed> {
  const K = c.hiddenSize;
  const perRow = matrixBytes(K, 1, weightPlan(p).linear);
  const N = Math.max(1, Math.min(2 * c.intermediateSize, Math.floor(MEASURE_MAX_BYTES / perRow)));
  const key = `${p}/${K}x${N}/${opts.device ?? "cpu"}/${opts.threads ?? 0}`;
  let m = speedCache.get(key);
  if (!m) {
    m = (async () => {
      const so = { device: opts.device, threads: opts.threads, cpuMemArena: false, spinning: false };
      const bigGraph = speedModel(p, K, N);
      const tinyGraph = speedModel("f32", 64, 64);
      const big = await createSession(bigGraph.model, { ...so, externalData: bigGraph.externalData });
      const tiny = await createSession(tinyGraph.model, { ...so, externalData: tinyGraph.externalData });
      try {
        const row = (m: number, k: number) => ({ A: new ort.Tensor("float32", new Float32Array(m * k).fill(0.5), [m, k]) });
        const one = await medianRun(big, row(1, K));
        const eight = await medianRun(big, row(MAX_BATCH, K));
        const overhead = await medianRun(tiny, row(1, 64));
        const bytes = matrixBytes(K, N, weightPlan(p).linear);
        return { precision: p, bytesPerSecond: bytes / Math.max(1e-6, one - overhead), batchSpeedup: (MAX_BATCH * one) / eight, runOverhead: overhead };
      } finally {
        await big.release().catch(() => undefined);
        await tiny.release().catch(() => undefined);
      }
    })();
    speedCache.set(key, m);
    m.catch(() => speedCache.delete(key));
  }
  return m;
}

/**
 * The work of a scan's elicitation from its settings: every prompt × sample on each variant
 * run (base, full, rank-k, plus full and base again under contrastive decoding), in batches of
 * MAX_BATCH, each batch decoding up to `maxNewTokens` steps. Prompt tokens are estimated from
 * their characters (≈ 4 per token for English under BPE vocabularies).
 */
export function scanWorkload(s: { prompts: number; samples: number; maxNewTokens: number; promptChars: number; longestPromptChars: number; variants: number; contrast: boolean }): Workload {
  const rows = s.prompts * s.samples;
  const batches = Math.ceil(rows / MAX_BATCH);
  return {
    batch: Math.min(MAX_BATCH, rows),
    context: Math.ceil(s.longestPromptChars / CHARS_PER_TOKEN) + s.maxNewTokens,
    steps: batches * s.maxNewTokens,
    promptTokens: Math.ceil((s.promptChars * s.samples) / CHARS_PER_TOKEN),
    variantRuns: s.variants + (s.contrast ? 2 : 0),
  };
}

/** Characters per token of chat text under the BPE vocabularies of Llama / Qwen / Mistral. */
const CHARS_PER_TOKEN = 4;

export interface TimeEstimate {
  precision: Precision;
  /** seconds per decode step of one row (all weights streamed once) */
  secondsPerToken: number;
  /** tokens/s of a full batch */
  batchTokensPerSecond: number;
  /** seconds to load (read, quantize, hand to ORT): from the file bytes at a conservative read rate */
  loadSeconds: number;
  /** seconds of generation for the workload (decode steps + prefill), all variants */
  runSeconds: number;
}

/**
 * File bytes per second the load reads, decodes and quantizes (or transposes) at: measured
 * 145 MB/s for the 8B-shaped BF16 checkpoint at int8 on 2 cores (16.1 GB in 111 s,
 * bench/precision.bench.ts; about 45 % quantizing in JavaScript, a quarter ONNX Runtime's
 * pre-packing, an eighth decoding BF16), single-threaded, so about the same on more cores.
 */
const LOAD_BYTES_PER_SECOND = 140e6;

/** Session runs per decode step: the layer segments and head slices (weights.ts planSegments). */
function runsPerStep(c: ModelConfig, p: Precision): number {
  const f32Total = c.numLayers * layerBytes(c, "f32") + headBytes(c, "f32");
  const budget = segmentBudget(c, p) ?? Math.max(MIN_SEGMENT_BYTES, SEGMENT_SHARE * f32Total);
  const perSeg = Math.max(1, Math.floor(budget / layerBytes(c, "f32")));
  return Math.ceil(c.numLayers / perSeg) + Math.max(1, Math.ceil(headBytes(c, "f32") / budget));
}

/** Time of the workload at a precision from a measured speed; `fileBytes` is what the load reads. */
export function estimateTime(c: ModelConfig, speed: PrecisionSpeed, work: Workload, fileBytes: number): TimeEstimate {
  const p = speed.precision;
  const streamed = c.numLayers * layerBytes(c, p) + headBytes(c, p);
  const secondsPerToken = streamed / speed.bytesPerSecond + runsPerStep(c, p) * speed.runOverhead;
  const batch = Math.max(1, Math.min(MAX_BATCH, work.batch));
  // batching: measured speedup at MAX_BATCH rows, interpolated linearly for smaller batches
  const speedup = 1 + ((speed.batchSpeedup - 1) * (batch - 1)) / (MAX_BATCH - 1);
  const batchTokensPerSecond = speedup / secondsPerToken;
  const stepSeconds = batch / batchTokensPerSecond;
  const runs = work.variantRuns ?? 1;
  // prefill multiplies PREFILL_CHUNK-token chunks: at least as efficient per token as a full
  // decode batch, so the batch rate bounds its time from above
  const fullBatchRate = speed.batchSpeedup / secondsPerToken;
  const prefill = ((work.promptTokens ?? 0) * runs) / fullBatchRate;
  const runSeconds = (work.steps ?? 0) * runs * stepSeconds + prefill;
  return { precision: p, secondsPerToken, batchTokensPerSecond, loadSeconds: fileBytes / LOAD_BYTES_PER_SECOND, runSeconds };
}
