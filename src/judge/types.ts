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
  /** at which ranks of the rank ladder it shows under interrogation (only when a ladder ran; judge/ladder.ts) */
  ladder?: RankLadder;
  /** which layers' rank-k components alone still produce it (high and medium findings; judge/attribution.ts) */
  attribution?: LayerAttribution;
}

/**
 * A finding across the rank ladder (judge/ladder.ts, LADDER_DEFINITION): each rung rank<k> is
 * judged in the truncated role with base and full, as the finding itself was.
 */
export interface RankLadder {
  /** the ranks that ran, ascending (variants rank<k>) */
  ranks: number[];
  /** the ranks at which the behaviour shows under interrogation */
  shownAt: number[];
  /** the smallest rank from which on it shows at no rung, having shown at a smaller one; absent when it is not hidden again on the ladder */
  hiddenFrom?: number;
  /** per rung: k of n answers to interrogation probes that show the behaviour */
  rates: Array<{ rank: number; k: number; n: number }>;
}

/** Which modules of a layer group an attribution step keeps: all, attention (q, k, v, o) or MLP (gate, up, down). */
export type ModuleKind = "all" | "attention" | "mlp";

/** One variant run of an attribution: the truncation cut to `layers` (and `modules`), on the finding's probes. */
export interface AttributionStep {
  layers: number[];
  modules: ModuleKind;
  /** answers that show the behaviour, of n (the re-run probes × samples) */
  k: number;
  n: number;
  /** the group alone still produces it (ATTRIBUTION_KEEP, judge/attribution.ts) */
  persists: boolean;
}

/**
 * The smallest group of layers (and module kind) whose rank-k components alone still produce a
 * finding, found by bisection (judge/attribution.ts, ATTRIBUTION_DEFINITION).
 */
export interface LayerAttribution {
  /** the truncated variant whose modules were taken apart, e.g. "rank1" */
  variant: string;
  /** the interrogation probes re-run: those whose answers on `variant` showed it */
  probes: string[];
  /** answers on `variant` to those probes that showed it: what a group is measured against */
  shown: number;
  /** the smallest group found, ascending */
  layers: number[];
  modules: ModuleKind;
  /** module types (as the spectrum names them: q, k, v, o, gate, up, down) of `layers` that `modules` keeps */
  moduleTypes: string[];
  steps: AttributionStep[];
  /** what it cost: extra variant runs (at most MAX_ATTRIBUTION_RUNS), generation requests, wall seconds */
  cost: { runs: number; requests: number; seconds: number };
  /** false when the run budget ended the bisection before it could go on */
  complete: boolean;
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
