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

/** One token a fine-tune added, as its own tokenizer decodes it (report.json, spectrum.addedTokens.tokens). */
export interface AddedToken {
  id: number;
  /**
   * The decoded text made safe to show (engine/added-tokens.ts): tabs and line breaks written
   * as `\t` `\n` `\r`, characters that hide or reorder text (errors.ts HIDDEN_CHARS) as
   * `\u{202E}`-style escapes, a backslash as `\\`, spaces at either end as `␣`; cut to
   * MAX_ADDED_TOKEN_CHARS characters (with `…`)
   */
  text: string;
  /** the decoded text's length in characters, where `text` was cut */
  length?: number;
  /** true when the text held characters that hide or reorder text */
  hidden?: true;
}

/**
 * Rows a full fine-tune added to its vocabulary-indexed matrices (embed_tokens, lm_head):
 * ΔW and otherChanges cover the shared rows [0, baseRows); rows [baseRows, rows) have no base
 * counterpart and are carried as they are (the engine pads every variant with them; the rank-k
 * adapter folder holds them in ADDED_ROWS_FILE, delta/vocab-growth.ts). The token fields are
 * filled in by scan from the fine-tune's tokenizer (engine/added-tokens.ts).
 */
export interface VocabularyGrowth {
  /** the base's vocabulary rows, shared with the fine-tune */
  baseRows: number;
  /** the fine-tune's vocabulary rows */
  rows: number;
  /** the grown tensors under the fine-tune's own names */
  tensors: string[];
  /**
   * the added tokens (rows that decode to some text), those with hidden characters first, then
   * by id; at most MAX_LISTED_ADDED_TOKENS
   */
  tokens?: AddedToken[];
  /** added rows decoded: the first MAX_DECODED_ROWS (a larger growth is summarised, not listed) */
  decodedRows?: number;
  /** decoded rows no token maps to (padding to a round vocabulary size) */
  emptyRows?: number;
  /** decoded tokens whose text holds characters that hide or reorder text (listed or not) */
  hiddenTokens?: number;
  /** why the rows could not be decoded (no tokenizer.json, or one the engine cannot read) */
  tokenizerProblem?: string;
}

export interface SpectrumReport {
  modules: ModuleSpectrum[];
  summary: SpectrumSummary;
  otherChanges?: OtherChange[];
  /** a full fine-tune that added tokens: its added vocabulary rows (absent otherwise) */
  addedTokens?: VocabularyGrowth;
}
