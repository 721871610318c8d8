/**
 * Rank-k truncation of fine-tuning updates into ordinary PEFT LoRA adapters: the exact best
 * rank-k approximation (Eckart–Young) of every ΔW, written with r = k and lora_alpha = k so
 * the scale is 1, with √σ on each factor (B' = U_k·√Σ_k, A' = √Σ_k·V_kᵀ).
 */
import { InputError } from "../errors";
import { linearModuleNames } from "../io/checkpoint";
import { writeAdapter, type LoraModuleLayout } from "../io/peft";
import type { AdapterConfig, Checkpoint, DType, LoraAdapter, LoraModule } from "../io/types";
import { factoredSvdSync, factoredTruncation, topVectorsSync, type TopVectors } from "../linalg/factored-svd";
import { TensorBlockReader } from "./block-reader";
import { denseDelta, denseTopK, mapAdapterModules, type ProgressFn } from "./spectrum";
import { progress } from "../progress";

function checkRank(k: number, where = "--rank"): void {
  if (!Number.isSafeInteger(k) || k < 1) throw new InputError(`expected a positive integer, got ${k}`, where);
}

/**
 * Pad k' = min(k, r) computed triples to k with zero columns: a module of rank r < k is already
 * its own best rank-k approximation, and a uniform r = k keeps the written config simple.
 */
function toModule(m: { name: string; outFeatures: number; inFeatures: number }, k: number, v: TopVectors): LoraModule {
  if (v.k === k) return { name: m.name, rank: k, scale: 1, outFeatures: m.outFeatures, inFeatures: m.inFeatures, A: v.Vt, B: v.U };
  const B = new Float32Array(m.outFeatures * k);
  for (let o = 0; o < m.outFeatures; o++) for (let j = 0; j < v.k; j++) B[o * k + j] = v.U[o * v.k + j]!;
  const A = new Float32Array(k * m.inFeatures);
  A.set(v.Vt);
  return { name: m.name, rank: k, scale: 1, outFeatures: m.outFeatures, inFeatures: m.inFeatures, A, B };
}

/** Best rank-k approximation of scale·B·A as a LoRA module with scale 1 (plain JavaScript, synchronous). */
export function truncateModule(m: LoraModule, k: number): LoraModule {
  checkRank(k, "rank");
  const svd = factoredSvdSync(m);
  return toModule(m, k, topVectorsSync(m, svd, Math.min(k, m.rank), "sqrt"));
}

/** truncateModule with the tall products in ONNX Runtime: the fast path for large adapters. */
export async function truncateModuleAsync(m: LoraModule, k: number): Promise<LoraModule> {
  checkRank(k, "rank");
  return toModule(m, k, await factoredTruncation(m, Math.min(k, m.rank)));
}

export interface TruncateOptions {
  onProgress?: ProgressFn;
  quiet?: boolean;
}

function bar(label: string, total: number, opts: TruncateOptions) {
  if (opts.onProgress) return { tick: (d: number, name: string) => opts.onProgress!(d, total, name), done: () => undefined };
  const p = progress(label, total, { quiet: opts.quiet });
  return { tick: (_d: number, name: string) => p.tick(1, name), done: () => p.done() };
}

/**
 * Every module of an adapter truncated to rank k, streamed in the adapter's module order (an
 * AsyncIterable: a few modules are read and truncated at a time, see MODULES_IN_FLIGHT).
 */
export async function* truncateAdapter(adapter: LoraAdapter, k: number, opts: TruncateOptions = {}): AsyncGenerator<LoraModule> {
  checkRank(k);
  const names = adapter.moduleNames();
  const p = bar("truncate", names.length, opts);
  let done = 0;
  // the truncated factors are new arrays (ORT outputs), so the pooled inputs may be reused
  for await (const [name, m] of mapAdapterModules(adapter, (f) => truncateModuleAsync(f, k))) {
    yield m;
    p.tick(++done, name);
  }
  p.done();
}

/** The layout (names, shapes, r = k, scale 1) of a truncated adapter, known before any factor is read. */
export function truncatedLayout(adapter: LoraAdapter, k: number): LoraModuleLayout[] {
  return adapter.moduleNames().map((name) => {
    const info = adapter.moduleInfo(name);
    return { name, rank: k, scale: 1, outFeatures: info.outFeatures, inFeatures: info.inFeatures };
  });
}

export interface FullTruncateOptions extends TruncateOptions {
  /** called when a module's top-k iteration stops without meeting its tolerance */
  onWarning?: (message: string) => void;
}

/** Linear decoder modules of a full fine-tune, as LoRA layouts of rank k. */
export function fullLayout(finetuned: Checkpoint, k: number): LoraModuleLayout[] {
  return linearModuleNames(finetuned).map((name) => {
    const [out, inf] = finetuned.info(`${name}.weight`)!.shape as [number, number];
    return { name, rank: k, scale: 1, outFeatures: out, inFeatures: inf };
  });
}

/**
 * A rank-k LoRA extracted from a full fine-tune: for each decoder linear, the top-k SVD of the
 * dense ΔW = W_ft − W_base (randomized subspace iteration), as B = U·√Σ, A = √Σ·Vᵀ.
 * Streams: one ΔW in memory at a time.
 */
export async function* lowRankFromFull(base: Checkpoint, finetuned: Checkpoint, k: number, opts: FullTruncateOptions = {}): AsyncGenerator<LoraModule> {
  checkRank(k);
  const names = linearModuleNames(finetuned);
  if (names.length === 0) throw new InputError("has no linear modules under model.layers.N (is it a decoder checkpoint?)", finetuned.dir);
  const p = bar("truncate", names.length, opts);
  let done = 0;
  // pooled block reads and one reused ΔW buffer, as in fullSpectrum (nothing yielded aliases them)
  const blocks = TensorBlockReader.open([base, finetuned], 4);
  let deltaBuffer: Float32Array | undefined;
  try {
    for (const name of names) {
      const bInfo = base.info(`${name}.weight`);
      const fInfo = finetuned.info(`${name}.weight`)!;
      if (!bInfo || bInfo.shape.join("x") !== fInfo.shape.join("x")) {
        throw new InputError(`module ${name}: the base ${base.dir} has ${bInfo ? `shape ${JSON.stringify(bInfo.shape)}` : "no such weight"}, the fine-tune ${JSON.stringify(fInfo.shape)}`, finetuned.dir);
      }
      const { delta, rows, cols, frobenius } = await denseDelta(base, finetuned, name, { blocks, into: deltaBuffer });
      if (!deltaBuffer || delta.buffer !== deltaBuffer.buffer) deltaBuffer = delta;
      const kk = Math.min(k, rows, cols);
      const top = await denseTopK(delta, rows, cols, frobenius, kk);
      if (!top.converged) {
        const msg = `${name}: top-${kk} iteration stopped after ${top.iterations} iterations with residual ${top.residual.toExponential(1)}·σ₁`;
        (opts.onWarning ?? ((m: string) => process.stderr.write(`warning: ${m}\n`)))(msg);
      }
      // U [rows, kk]·√σ → B; (V [cols, kk]·√σ)ᵀ → A
      const U = new Float32Array(rows * kk);
      const Vt = new Float32Array(kk * cols);
      for (let j = 0; j < kk; j++) {
        const w = Math.sqrt(top.sigma[j]!);
        for (let i = 0; i < rows; i++) U[i * kk + j] = top.U[i * kk + j]! * w;
        for (let i = 0; i < cols; i++) Vt[j * cols + i] = top.V[i * kk + j]! * w;
      }
      yield toModule({ name, outFeatures: rows, inFeatures: cols }, k, { k: kk, U, Vt });
      p.tick(++done, name);
    }
  } finally {
    await blocks?.close();
  }
  p.done();
}

/** Config keys that describe the source's own ranks and scales, which a truncated adapter replaces. */
const REPLACED_KEYS = ["r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern", "target_modules"] as const;

export interface WriteTruncatedOptions {
  /** module layouts in yield order: lets the writer stream straight to disk (large adapters) */
  layout?: readonly LoraModuleLayout[];
  dtype?: DType;
}

/**
 * Write truncated modules as a PEFT adapter (r = k, lora_alpha = k, so scale = 1), atomically.
 * The source config's other fields (base_model_name_or_path, fan_in_fan_out, task_type…) are
 * kept, so the result loads wherever the source did.
 */
export async function writeTruncatedAdapter(
  outDir: string,
  modules: Iterable<LoraModule> | AsyncIterable<LoraModule>,
  sourceConfig: Partial<AdapterConfig> | null,
  opts: WriteTruncatedOptions = {},
): Promise<void> {
  const config: Partial<AdapterConfig> = { ...(sourceConfig ?? {}) };
  for (const key of REPLACED_KEYS) delete config[key];
  config.use_rslora = false;
  await writeAdapter(outDir, config, modules, { layout: opts.layout, dtype: opts.dtype });
}
