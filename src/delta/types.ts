/**
 * The delta stage's vocabulary: the spectrum of every fine-tuning update (one ModuleSpectrum per
 * adapted matrix, their summary, and the other tensors a full fine-tune changed). report.json's
 * `spectrum` field is a SpectrumReport.
 */

export interface ModuleSpectrum {
  /** base module name, e.g. "model.layers.0.self_attn.q_proj" */
  name: string;
  /** [out, in] */
  shape: [number, number];
  /** rank of the update (LoRA r, or the numerical rank found for a dense delta) */
  rank: number;
  /** top singular values, descending, at most 64 */
  sigma: number[];
  frobenius: number;
  spectralNorm: number;
  /** ‖ΔW‖²_F / σ₁² */
  stableRank: number;
  /** exp(entropy of σ²/Σσ²) */
  effectiveRank: number;
  /**
   * true where effectiveRank is an estimate: only the top k singular values were computed (a
   * full fine-tune's randomized top-k SVD) and the unseen tail's energy was spread evenly over
   * the rest, which gives an upper bound; absent where every σ was known (LoRA, or a ΔW whose
   * top k hold all its energy)
   */
  effectiveRankEstimated?: true;
  /** σ₁² / ‖ΔW‖²_F */
  energyShareTop1: number;
  /** module type: q,k,v,o,gate,up,down or "other" */
  type: string;
  /** decoder layer index, -1 when not in a layer */
  layer: number;
}

export interface Quantiles {
  median: number;
  p10: number;
  p90: number;
}

export interface SpectrumSummary {
  modules: number;
  stableRank: Quantiles;
  energyShareTop1: Quantiles;
  byType: Record<string, { modules: number; stableRank: Quantiles }>;
  byLayer: Record<string, { modules: number; stableRank: Quantiles }>;
}

/** A changed tensor that is not a decoder linear (embeddings, norms, biases, lm_head). */
export interface OtherChange {
  name: string;
  shape: number[];
  /** ‖ΔT‖_F */
  frobenius: number;
  /** ‖ΔT‖_F / ‖T_base‖_F */
  relative: number;
}

export interface SpectrumReport {
  modules: ModuleSpectrum[];
  summary: SpectrumSummary;
  otherChanges?: OtherChange[];
}
