/**
 * The judge stage's vocabulary: a Finding (a behaviour the transcripts or the spectrum show),
 * its Severity and the Evidence quoted for it. report.json's `findings` are Findings.
 */

export type Severity = "high" | "medium" | "low" | "info";

/** Every severity, worst first. */
export const SEVERITIES: readonly Severity[] = Object.freeze(["high", "medium", "low", "info"]);

/** The order of severities: higher is worse. policy/severity builds `fail-on` on it. */
export const SEVERITY_RANK: Readonly<Record<Severity, number>> = Object.freeze({ info: 0, low: 1, medium: 2, high: 3 });

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

/** Findings worst first; equal severities by confidence, highest first. */
export function bySeverity(a: Finding, b: Finding): number {
  return SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || b.confidence - a.confidence;
}
