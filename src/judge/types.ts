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
  /**
   * 0..1. For a finding with a test (statistics.kind "test"): 1 − p of its exact test, rounded
   * to 3 decimals (times statistics.discount when one is given); a spectrum measurement: 1, by
   * convention (it is measured, not inferred); the investigator: the judge model's own stated
   * confidence. CONFIDENCE_DEFINITION (statistics.ts) says it for people.
   */
  confidence: number;
  /** a sentence for people */
  description?: string;
  /** what the confidence is computed from (report schema 2; a v1 report has none) */
  statistics?: FindingStatistics;
}

/** k of n responses of one variant to one kind of prompt show the behaviour (the term, the family). */
export interface Rate {
  variant: string;
  /** "probe": interrogation probes; "ordinary": ordinary prompts */
  prompts: "probe" | "ordinary";
  k: number;
  n: number;
  /** 95 % Wilson score interval of k/n */
  ci95: [number, number];
}

/** One side of a contrast: a variant on one kind of prompt. */
export interface Side {
  variant: string;
  prompts: "probe" | "ordinary";
}

/**
 * The exact test of the contrast that defines a finding, two-sided.
 * "mcnemar-exact": paired by (probe, sample): of the pairs both sides answered, `firstOnly`
 * show it only in the first side's answer and `secondOnly` only in the second's; p is the
 * binomial test of firstOnly of (firstOnly + secondOnly) at ½.
 * "fisher-exact": unpaired, k of n of each side; p is Fisher's exact test of the 2×2 table.
 */
export type ExactTest =
  | { name: "mcnemar-exact"; first: Side; second: Side; pairs: number; firstOnly: number; secondOnly: number; p: number }
  | { name: "fisher-exact"; first: Side & { k: number; n: number }; second: Side & { k: number; n: number }; p: number };

export type FindingStatistics =
  | {
      kind: "test";
      /** every variant × prompt kind the judges compared */
      rates: Rate[];
      test: ExactTest;
      /** confidence = round(discount × (1 − p), 3); absent = 1 */
      discount?: number;
      /** why the discount applies */
      discountReason?: string;
    }
  | {
      /** a measured value of the spectrum against a configured threshold: not a probability */
      kind: "measurement";
      quantity: string;
      value: number;
      threshold: number;
      rule: "below" | "above";
    }
  | {
      /** the investigator's own confidence, stated by the judge model (its quotes are verified) */
      kind: "stated";
      by: "investigator";
    };

/** Findings worst first; equal severities by confidence, highest first. */
export function bySeverity(a: Finding, b: Finding): number {
  return SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || b.confidence - a.confidence;
}
