/**
 * A full fine-tune at a quantized precision: which of its changed decoder linears run as the
 * shared quantized base plus their exact ΔW (float32 factors on the LoRA side path), and which
 * need a second quantized copy of the fine-tune's weights.
 *
 * A ΔW of numerical rank r (a merged LoRA, a fine-tune of few directions) is held exactly by
 * factors of 4·r·(in+out) bytes; a second int8 copy costs ~in·out bytes and, worse, makes
 * full − base the difference of two independent roundings (each up to half a step of W's block
 * maximum, typically far larger than ΔW itself).
 *
 * So a module runs as base + ΔW factors when they are smaller than its quantized copy and hold
 * ΔW itself: one randomized range-finder pass (linalg/randomized-svd.ts, a single iteration,
 * three passes over ΔW) gives the top LOW_RANK_PROBE triples, and the smallest r ≥ 1 whose
 * factors leave out at most RESIDUAL_SHARE of ‖ΔW‖_F — and no more than the copy would round
 * away, ‖W_ft − dequant(quant(W_ft))‖_F, measured — is taken when 4·r·(in+out) bytes are fewer
 * than the copy's. The share keeps the full variant a full fine-tune: were most of a small ΔW
 * dropped, `full` would drift towards `base` or `rank1`, the very contrast the audit reads. A
 * merged LoRA saved in float32 passes (r = its rank, residual ~1e-7); a full-rank ΔW (a real
 * full fine-tune, or a merge whose bf16 rounding noise is a large share of ΔW), a changed norm,
 * bias or head keeps the fine-tune's own weights for its segment, quantized like the base.
 */
import type { Checkpoint, LoraModule } from "../io/types";
import { linearModuleNames, openCheckpoint } from "../io/checkpoint";
import { checkModulePair, denseDelta } from "../delta/dense-delta";
import { topKSvd } from "../linalg/randomized-svd";
import { log, progress } from "../progress";
import { quantizationErrorSquared, quantizedBytes, type QuantScheme } from "./quantize";
import { weightPlan, type Precision } from "./precision";
import type { LoadedModel } from "./model";
import { withModelPrefix } from "./names";

/**
 * The rank the walk computes per changed module to find exact low-rank deltas: LoRA fine-tunes
 * are merged from r ≤ 64 (r 8–32 is the common range); 64 triples per module keep the load's
 * extra work near one spectrum pass at k = 64 while catching every such merge.
 */
export const LOW_RANK_PROBE = 64;
/** Share of ‖ΔW‖_F the factors may leave out (see the file comment). */
export const RESIDUAL_SHARE = 0.01;
/** Sketch columns beyond the probe's rank: one pass must capture the range, not converge on it. */
const PROBE_OVERSAMPLE = 16;
/** Rows of W_ft read per chunk to measure its rounding. */
const ERROR_CHUNK_BYTES = 8 << 20;

export interface FullDeltaPlan {
  /** exact ΔW factors (scale 1, B = U·√Σ, A = √Σ·Vᵀ, trimmed to the numerical rank) */
  deltas: LoraModule[];
  /** changed linears whose ΔW no factors smaller than a quantized copy hold: their segments hold that copy */
  dense: string[];
  /** float32 bytes of the factors */
  factorBytes: number;
  /** linears found equal to the base's (ΔW = 0): the variant need not compare them again */
  unchanged: string[];
}

/**
 * Plan how a full fine-tune runs at `precision` (int8 / int4; at f32 a copy of the changed
 * segments is exact already and nothing is decomposed). Streams one ΔW at a time.
 */
export async function planFullDelta(base: Checkpoint, ft: Checkpoint, precision: Precision, opts: { quiet?: boolean } = {}): Promise<FullDeltaPlan> {
  const scheme = weightPlan(precision).linear;
  const plan: FullDeltaPlan = { deltas: [], dense: [], factorBytes: 0, unchanged: [] };
  if (!scheme) return plan;
  const modules = linearModuleNames(ft);
  const bar = progress("ΔW rank", modules.length, { quiet: opts.quiet });
  let buffer: Float32Array | undefined;
  try {
    for (const module of modules) {
      checkModulePair(base, ft, module);
      const { delta, rows, cols, frobenius } = await denseDelta(base, ft, module, { into: buffer });
      if (!buffer || delta.buffer !== buffer.buffer) buffer = delta;
      bar.tick(1, module);
      if (frobenius === 0) {
        plan.unchanged.push(module); // runs on the base as it is
        continue;
      }
      const copyBytes = quantizedBytes(cols, rows, scheme);
      const maxRank = Math.min(LOW_RANK_PROBE, rows, cols, Math.floor(copyBytes / (4 * (rows + cols))) - 1);
      if (maxRank < 1) {
        plan.dense.push(module);
        continue;
      }
      const top = await topKSvd({ data: delta, rows, cols }, maxRank, { maxIterations: 1, oversample: PROBE_OVERSAMPLE });
      const copyError2 = await roundingError2(ft, `${module}.weight`, rows, cols, scheme);
      // ‖ΔW − B_r·A_r‖² = ‖ΔW‖² − Σ_{j<r} σ_j² for the Ritz triples of one pass (a projection)
      const allowed = Math.min(copyError2, (RESIDUAL_SHARE * frobenius) ** 2);
      let left = frobenius * frobenius;
      let r = 0;
      while (r < maxRank && (r === 0 || left > allowed) && top.sigma[r]! > 0) left -= top.sigma[r++]! ** 2;
      if (r === 0 || left > allowed) {
        plan.dense.push(module);
        continue;
      }
      plan.deltas.push(sqrtFactors(module, top, rows, cols, r));
      plan.factorBytes += 4 * r * (rows + cols);
    }
  } finally {
    bar.done();
  }
  return plan;
}

/** Σ of squared rounding errors of a [rows, cols] tensor stored at `s`, read in row chunks. */
async function roundingError2(src: Checkpoint, name: string, rows: number, cols: number, s: QuantScheme): Promise<number> {
  const chunk = Math.max(1, Math.floor(ERROR_CHUNK_BYTES / (4 * cols)));
  let e2 = 0;
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    const part = src.readRows ? await src.readRows(name, r0, n) : (await src.read(name)).subarray(r0 * cols, (r0 + n) * cols);
    e2 += quantizationErrorSquared(part, n, cols, s);
  }
  return e2;
}

/** ΔW = B·A with B = U_r·√Σ_r [rows, r] and A = √Σ_r·V_rᵀ [r, cols] (scale 1), from a top-k result. */
function sqrtFactors(name: string, top: { sigma: Float64Array; U: Float32Array; V: Float32Array; k: number }, rows: number, cols: number, r: number): LoraModule {
  const B = new Float32Array(rows * r);
  const A = new Float32Array(r * cols);
  for (let j = 0; j < r; j++) {
    const w = Math.sqrt(top.sigma[j]!);
    for (let i = 0; i < rows; i++) B[i * r + j] = top.U[i * top.k + j]! * w;
    for (let i = 0; i < cols; i++) A[j * cols + i] = top.V[i * top.k + j]! * w;
  }
  return { name, rank: r, scale: 1, outFeatures: rows, inFeatures: cols, A, B };
}

/** One line saying how the full fine-tune runs (the issue asks the tool to say which). */
export function describeFullDelta(precision: Precision, plan: FullDeltaPlan, layout: { segments: number; ownSegments: number; ownHead: boolean }): string {
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  const parts: string[] = [];
  parts.push(
    plan.deltas.length > 0
      ? `${plan.deltas.length} changed linear(s) run as the shared ${precision} base + float32 ΔW factors (rank ≤ ${Math.max(...plan.deltas.map((d) => d.rank))}, ${mb(plan.factorBytes)}; each within ${RESIDUAL_SHARE * 100} % of its ΔW and closer than a ${precision} copy)`
      : "no changed linear is low-rank enough to run as factors",
  );
  parts.push(
    layout.ownSegments > 0 || layout.ownHead
      ? `${layout.ownSegments} of ${layout.segments} layer segment(s)${layout.ownHead ? " and the head" : ""} hold a second ${precision} copy of the fine-tune's weights${plan.dense.length > 0 ? ` (${plan.dense.length} ΔW that few enough factors do not hold to ${RESIDUAL_SHARE * 100} %, e.g. ${plan.dense[0]})` : " (changed norms or biases)"}`
      : "no second copy of any weights",
  );
  return `full fine-tune at ${precision}: ${parts.join("; ")}`;
}

/**
 * Register a full fine-tune (opened as the engine names it) as variant `name`: at f32 its
 * changed segments as they are; quantized, as planned above, with the layout logged.
 */
export async function addFullVariant(model: LoadedModel, name: string, baseDir: string, ft: Checkpoint, opts: { quiet?: boolean } = {}): Promise<void> {
  // a changed embedding table streams from a handle the model keeps, as the base's does
  const reopen = ft.dir ? async () => withModelPrefix(await openCheckpoint(ft.dir)) : undefined;
  if (!weightPlan(model.precision).linear) {
    await model.addCheckpointVariant(name, ft, { reopen });
    return;
  }
  const base = withModelPrefix(await openCheckpoint(baseDir));
  let plan: FullDeltaPlan;
  try {
    plan = await planFullDelta(base, ft, model.precision, opts);
  } finally {
    await base.close();
  }
  const sameAsBase = new Set(plan.unchanged.map((m) => `${m}.weight`));
  const layout = await model.addCheckpointVariant(name, ft, { deltas: plan.deltas, reopen, sameAsBase });
  log(describeFullDelta(model.precision, plan, layout));
}
