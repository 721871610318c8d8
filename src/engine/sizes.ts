/**
 * Bytes the engine holds for a model's weights at a precision, from its config alone: each
 * linear at its scheme (quantize.ts sizes), norms and biases in float32, the head. Shared by the
 * memory estimate (estimate.ts) and the segment plan of a quantized load (model.ts).
 */
import type { ModelConfig } from "./config";
import { weightPlan, type Precision } from "./precision";
import { quantizedBytes, type QuantScheme } from "./quantize";

/** The fused linear weights of one layer as the graph holds them, [in, out]. */
export const linearShapes = (c: ModelConfig): [number, number][] => [
  [c.hiddenSize, c.numHeads * c.headDim + 2 * c.numKvHeads * c.headDim], // qkv
  [c.numHeads * c.headDim, c.hiddenSize], // o
  [c.hiddenSize, 2 * c.intermediateSize], // gate/up
  [c.intermediateSize, c.hiddenSize], // down
];

export const matrixBytes = (K: number, N: number, s: QuantScheme | undefined) => (s ? quantizedBytes(K, N, s) : 4 * K * N);

/** Bytes of one decoder layer's weights at a precision (linears at their scheme, norms and biases float32). */
export function layerBytes(c: ModelConfig, p: Precision): number {
  const plan = weightPlan(p);
  let b = 0;
  for (const [K, N] of linearShapes(c)) b += matrixBytes(K, N, plan.linear);
  b += 4 * 2 * c.hiddenSize;
  if (c.qkvBias) b += 4 * (c.numHeads + 2 * c.numKvHeads) * c.headDim;
  if (c.oBias) b += 4 * c.hiddenSize;
  if (c.mlpBias) b += 4 * (2 * c.intermediateSize + c.hiddenSize);
  if (c.qkNorm) b += 4 * 2 * c.headDim;
  return b;
}

/** Bytes of the head (every vocabulary slice, plus the final norm). */
export function headBytes(c: ModelConfig, p: Precision): number {
  return matrixBytes(c.hiddenSize, c.vocabSize, weightPlan(p).head) + 4 * c.hiddenSize;
}

/** Linear parameters of the decoder (what a full fine-tune's ΔW spans). */
export function linearParams(c: ModelConfig): number {
  return c.numLayers * linearShapes(c).reduce((a, [K, N]) => a + K * N, 0);
}

/**
 * Segment budget of a quantized load. Each segment is a session run per decode step (~0.4 ms of
 * ORT and thread wake-up measured on 2 cores), so a quantized model is cut by its own bytes, not
 * its float32 ones: 5 % of the quantized model (the load's transient, one segment staged while
 * ORT copies it, stays that share of the footprint), at least QUANT_MIN_SEGMENT_BYTES, so a
 * small model runs in a few sessions. Returned in the float32 bytes weights.ts planSegments
 * counts in; undefined at f32 (planSegments' own default).
 */
export function segmentBudget(c: ModelConfig, p: Precision): number | undefined {
  if (!weightPlan(p).linear) return undefined;
  const total = c.numLayers * layerBytes(c, p) + headBytes(c, p);
  const bytes = Math.max(QUANT_MIN_SEGMENT_BYTES, SEGMENT_SHARE * total);
  return bytes * (layerBytes(c, "f32") / layerBytes(c, p));
}

/** Share of the model one load segment holds (as weights.ts SEGMENT_FRACTION). */
export const SEGMENT_SHARE = 0.05;
/** Smallest quantized segment: 256 MiB keeps a model up to ~5 GB in few sessions. */
export const QUANT_MIN_SEGMENT_BYTES = 256 * 2 ** 20;
