/**
 * The one walk over a fine-tune's updates: every module's ΔW is read and decomposed once, and
 * that one decomposition gives both its spectrum and, when a rank k is asked for, its best
 * rank-k factors. Spectra (spectrum.ts), truncations (truncate.ts) and scan's delta phase
 * (pass.ts, both at once) are all this walk, so the rank-k adapter a report ships and the
 * spectrum it reports come from the same numbers.
 * - LoRA ΔW = s·B·A: one Gram core per module (linalg/factored-svd.ts) holds all r singular
 *   values and, with a rank, the top-k vectors (factoredTruncation); without one, only the
 *   values are computed (factoredSingularValues, no vectors).
 * - Full fine-tune: each dense ΔW = W_ft − W_base formed once, and one randomized top-k SVD.
 *   Measuring (tensors "all"), k = max(topK, rank) gives the top topK values for the spectrum
 *   and the top-rank triples for the factors; truncating only (tensors "linear"), k = rank.
 */
import { InputError } from "../errors";
import { linearModuleNames, moduleType } from "../io/checkpoint";
import type { Checkpoint, LoraAdapter, LoraModule } from "../io/types";
import type { GramPrecision } from "../linalg/factor-basis";
import { factoredSingularValues, factoredTruncation, type TopVectors } from "../linalg/factored-svd";
import type { TopKResult } from "../linalg/randomized-svd";
import { log, progress } from "../progress";
import { mapAdapterModules } from "./adapter-modules";
import { TensorBlockReader } from "./block-reader";
import { checkModulePair, checkPairing, denseDelta, denseTopK, tensorChange } from "./dense-delta";
import { MAX_RANK } from "./limits";
import { moduleSpectrum } from "./stats";
import type { ModuleSpectrum, OtherChange, VocabularyGrowth } from "./types";
import { sharedRows, vocabularyGrowth } from "./vocab-growth";

/** Singular values computed per dense module by default (the k = 8). */
export const DEFAULT_TOP_K = 8;

/** Called after each module (or tensor) with the count done, the total and what was just done. */
export type ProgressFn = (done: number, total: number, name: string) => void;

/**
 * What the walk yields: a module's spectrum (with its rank-k factors when a rank was asked for,
 * except for a full fine-tune's unchanged module: ΔW = 0 has no factors worth writing), or a
 * changed non-linear tensor.
 */
export type DeltaStep =
  | { kind: "module"; spectrum: ModuleSpectrum; truncated?: LoraModule }
  | { kind: "other"; change: OtherChange }
  /** first, where a full fine-tune added tokens: its added vocabulary rows (the other steps cover the shared rows) */
  | { kind: "vocabulary"; growth: VocabularyGrowth };

/**
 * What callers of the walk may set; every user of the walk (spectrum.ts, truncate.ts, pass.ts)
 * takes these, or the part of them that applies to it.
 */
export interface WalkOptions {
  onProgress?: ProgressFn;
  /** no default progress bar (when onProgress is absent) */
  quiet?: boolean;
  /** LoRA: Gram precision (default auto) */
  precision?: GramPrecision;
  /** full fine-tune: singular values per module reported in the spectrum (default DEFAULT_TOP_K) */
  topK?: number;
  /**
   * full fine-tune: called when a module's top-k iteration stops without meeting its tolerance
   * (default: a `warning:` line through progress.ts's log, silent until an edge configures it)
   */
  onWarning?: (message: string) => void;
}

/** The walk's own settings on top of its callers' options. */
export interface WalkRequest extends WalkOptions {
  /** also the best rank-k approximation of every ΔW, as a LoraModule with r = k and scale 1; undefined: spectrum only */
  rank?: number;
  /** label of the default progress bar (when onProgress is absent) */
  label: string;
}

/**
 * A full fine-tune's walk. "all" (default): every tensor of the pair, whose names and shapes
 * must agree, with the changed non-linear tensors as steps (what a spectrum reports); a
 * fine-tune that added tokens is compared on the rows its vocabulary matrices share with the
 * base, and its added rows are the first step (vocab-growth.ts). "linear":
 * a truncation only, which needs a rank: only the decoder linears, each checked against the base
 * (the other tensors are not read), and a top-`rank` SVD each, so the steps' spectra hold only
 * those `rank` values.
 */
export type FullWalkRequest = WalkRequest & ({ tensors?: "all" } | { tensors: "linear"; rank: number });

const printWarning = (message: string): void => log(`warning: ${message}`);

/** A truncation rank the walk accepts: 1 ≤ k ≤ MAX_RANK (each module's factors are padded to out × k). */
export function checkRank(k: number, where = "--rank"): void {
  if (!Number.isSafeInteger(k) || k < 1 || k > MAX_RANK) throw new InputError(`expected an integer from 1 to ${MAX_RANK}, got ${k}`, where);
}

function progressOf(total: number, opts: WalkRequest): { tick: (done: number, name: string) => void; done: () => void } {
  if (opts.onProgress) return { tick: (d, name) => opts.onProgress!(d, total, name), done: () => undefined };
  const bar = progress(opts.label, total, { quiet: opts.quiet });
  return { tick: (_d, name) => bar.tick(1, name), done: () => bar.done() };
}

/**
 * A rank-k LoraModule (scale 1) from k' ≤ k top triples with √σ folded into each side, padded
 * with zero columns: a module of rank r < k is already its own best rank-k approximation, and a
 * uniform r = k keeps the written config simple.
 */
export function rankKModule(m: { name: string; outFeatures: number; inFeatures: number }, k: number, v: TopVectors): LoraModule {
  if (v.k === k) return { name: m.name, rank: k, scale: 1, outFeatures: m.outFeatures, inFeatures: m.inFeatures, A: v.Vt, B: v.U };
  const B = new Float32Array(m.outFeatures * k);
  for (let o = 0; o < m.outFeatures; o++) for (let j = 0; j < v.k; j++) B[o * k + j] = v.U[o * v.k + j]!;
  const A = new Float32Array(k * m.inFeatures);
  A.set(v.Vt);
  return { name: m.name, rank: k, scale: 1, outFeatures: m.outFeatures, inFeatures: m.inFeatures, A, B };
}

/** The ModuleSpectrum of a LoRA module from all r of its singular values (exact). */
function loraSpectrum(m: LoraModule, sigma: Float64Array): ModuleSpectrum {
  let f2 = 0;
  for (const s of sigma) f2 += s * s;
  const { type, layer } = moduleType(m.name);
  return moduleSpectrum({
    name: m.name,
    shape: [m.outFeatures, m.inFeatures],
    rank: m.rank,
    sigma,
    frobenius: Math.sqrt(f2),
    totalValues: Math.min(m.outFeatures, m.inFeatures),
    type,
    layer,
  });
}

/**
 * One LoRA module's step: the values alone (exact: all r; no vectors computed), or values and
 * top vectors from the same Gram core.
 */
export async function loraModuleStep(m: LoraModule, rank: number | undefined, precision?: GramPrecision): Promise<DeltaStep & { kind: "module" }> {
  if (rank === undefined) return { kind: "module", spectrum: loraSpectrum(m, (await factoredSingularValues(m, { precision })).sigma) };
  // the truncated factors are new arrays (ORT outputs), so the pooled inputs may be reused
  const t = await factoredTruncation(m, Math.min(rank, m.rank), { precision });
  return { kind: "module", spectrum: loraSpectrum(m, t.sigma), truncated: rankKModule(m, rank, t) };
}

/**
 * Every module of a LoRA adapter in file order, a few in memory at a time (MODULES_IN_FLIGHT).
 * Flags are checked now, before any factor is read.
 */
export function walkAdapter(adapter: LoraAdapter, opts: WalkRequest): AsyncGenerator<DeltaStep> {
  if (opts.rank !== undefined) checkRank(opts.rank);
  const names = adapter.moduleNames();
  return (async function* () {
    const p = progressOf(names.length, opts);
    let done = 0;
    for await (const [name, step] of mapAdapterModules(adapter, (m) => loraModuleStep(m, opts.rank, opts.precision))) {
      yield step;
      p.tick(++done, name);
    }
    p.done();
  })();
}

/** U·√Σ and √Σ·Vᵀ of the top k triples of a dense top-k result (its U and V are [·, top.k]). */
function sqrtSplit(top: TopKResult, rows: number, cols: number, k: number): TopVectors {
  const stride = top.k;
  const U = new Float32Array(rows * k);
  const Vt = new Float32Array(k * cols);
  for (let j = 0; j < k; j++) {
    const w = Math.sqrt(top.sigma[j]!);
    for (let i = 0; i < rows; i++) U[i * k + j] = top.U[i * stride + j]! * w;
    for (let i = 0; i < cols; i++) Vt[j * cols + i] = top.V[i * stride + j]! * w;
  }
  return { k, U, Vt };
}

/**
 * Every decoder linear of a full fine-tune (and, with tensors "all", every other changed
 * tensor) in the fine-tune's tensor order, streaming: one ΔW in memory at a time, formed in one
 * reused buffer (nothing yielded aliases it). Flags and the pairing are checked now, before any
 * weight is read.
 */
export function walkFull(base: Checkpoint, finetuned: Checkpoint, opts: FullWalkRequest): AsyncGenerator<DeltaStep> {
  const topK = opts.topK ?? DEFAULT_TOP_K;
  if (!Number.isInteger(topK) || topK < 1) throw new InputError(`expected a positive integer, got ${topK}`, "--top-k");
  const rank = opts.rank;
  if (rank !== undefined) checkRank(rank);
  const onWarning = opts.onWarning ?? printWarning;
  const everything = (opts.tensors ?? "all") === "all";
  const linear = new Set(linearModuleNames(finetuned).map((m) => `${m}.weight`));
  // added tokens: the vocabulary matrices are compared on the rows the base has (vocab-growth.ts)
  const growth = everything ? vocabularyGrowth(base, finetuned) : undefined;
  const ft = growth ? sharedRows(finetuned, growth) : finetuned;
  const tensors = everything ? checkPairing(base, ft) : [...linear];
  if (linear.size === 0) throw new InputError("has no linear modules under model.layers.N (is it a decoder checkpoint?)", finetuned.dir);
  return (async function* () {
    if (growth) yield { kind: "vocabulary", growth };
    const p = progressOf(tensors.length, opts);
    let done = 0;
    // two tensors × (the block being visited + the one being prefetched)
    const blocks = TensorBlockReader.open([base, ft], 4);
    let deltaBuffer: Float32Array | undefined;
    try {
      for (const name of tensors) {
        const module = name.slice(0, -".weight".length);
        if (linear.has(name)) {
          if (!everything) checkModulePair(base, ft, module);
          const { delta, rows, cols, frobenius } = await denseDelta(base, ft, module, { blocks, into: deltaBuffer });
          if (!deltaBuffer || delta.buffer !== deltaBuffer.buffer) deltaBuffer = delta;
          // measuring, one SVD serves both: its top topK values for the spectrum, its top-rank triples
          // for the factors; truncating only, no value past the rank is computed
          const k = Math.min(everything ? Math.max(topK, rank ?? 0) : rank!, rows, cols);
          const top = await denseTopK(delta, rows, cols, frobenius, k);
          if (!top.converged) {
            onWarning(`${module}: top-${k} iteration stopped after ${top.iterations} iterations with residual ${top.residual.toExponential(1)}·σ₁`);
          }
          const { type, layer } = moduleType(module);
          const spectrum = moduleSpectrum({
            name: module,
            shape: [rows, cols],
            // the numerical rank when the sketch revealed it (a low-rank ΔW), else full
            rank: top.rank ?? Math.min(rows, cols),
            sigma: top.sigma.subarray(0, Math.min(topK, rows, cols)),
            frobenius,
            totalValues: Math.min(rows, cols),
            type,
            layer,
          });
          // an unchanged module (frozen in training) is left out of the truncation: its best rank-k is zero
          const truncated = rank === undefined || frobenius === 0 ? undefined : rankKModule({ name: module, outFeatures: rows, inFeatures: cols }, rank, sqrtSplit(top, rows, cols, Math.min(rank, rows, cols)));
          yield { kind: "module", spectrum, truncated };
        } else {
          const change = await tensorChange(base, ft, name, blocks);
          if (change) yield { kind: "other", change };
        }
        p.tick(++done, everything ? name : module);
      }
    } finally {
      await blocks?.close();
    }
    p.done();
  })();
}
