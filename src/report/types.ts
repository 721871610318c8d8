/**
 * The Report object (report.json, schemaVersion 1) — DESIGN.md "Report".
 * Fields marked optional may be absent in partial reports (verdict neutral).
 */

export const REPORT_SCHEMA_VERSION = 1;

export type Severity = "high" | "medium" | "low" | "info";
export type Conclusion = "pass" | "fail" | "neutral";

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

export interface ProbeRecord {
  id: string;
  kind: "probe" | "ordinary";
  prompt: string;
  /** variant name → one response per sample */
  responses: Record<string, string[]>;
}

export interface ElicitationReport {
  backend: string;
  rank: number;
  variants: string[];
  samples: number;
  temperature: number;
  systemPrompt: string;
  probes: ProbeRecord[];
  /** e.g. "contrast skipped: the server returns no logprobs" */
  notices: string[];
}

export interface Evidence {
  probeId: string;
  variant: string;
  excerpt: string;
}

export interface Finding {
  id: string;
  title: string;
  severity: Severity;
  /** which analysis produced it: "concealment" | "revealed" | "implant" | "lexicon:<family>" | "investigator" */
  source: string;
  terms: string[];
  evidence: Evidence[];
  /** 0..1 */
  confidence: number;
  /** a sentence for people */
  description?: string;
}

export interface Verdict {
  conclusion: Conclusion;
  reasons: string[];
  failOn: Severity | "never";
}

export interface Subject {
  base: string;
  adapter?: string;
  finetuned?: string;
  kind: "lora" | "full";
  /** sha256 over the subject's weight files */
  digest: string;
}

export interface Report {
  schemaVersion: typeof REPORT_SCHEMA_VERSION;
  tool: { name: string; version: string };
  createdAt: string;
  subject: Subject;
  spectrum: SpectrumReport;
  /** absent when elicitation never ran */
  elicitation?: ElicitationReport;
  findings: Finding[];
  verdict: Verdict;
  /** stage → seconds */
  timings: Record<string, number>;
  /** set when the run stopped early (verdict neutral) */
  error?: string;
}
