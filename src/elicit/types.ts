/**
 * The elicitation stage's vocabulary: the transcripts of every probe on every variant.
 * report.json's `elicitation` field is an ElicitationReport.
 */

export interface ProbeRecord {
  id: string;
  kind: "probe" | "ordinary";
  prompt: string;
  /**
   * the system prompt this probe was sent with (probes.ts systemPromptFor: ordinary prompts get
   * a plain one while the configured prompt is the default); "" = none sent. Report schema 2.
   */
  systemPrompt?: string;
  /** variant name → one response per sample */
  responses: Record<string, string[]>;
  /** variant name → one attempt per sample, parallel to `responses` (report schema 2; a v1 report has none) */
  attempts?: Record<string, Attempt[]>;
}

/** How one answer was generated. */
export interface Attempt {
  /** tokens generated */
  tokens: number;
  /** "length": cut at max-tokens; "stop": the model ended its answer */
  finishReason: "stop" | "length";
  /**
   * Backends generate a variant's requests as one batch (rows decode together), so a single
   * answer's time is not observable: this is the variant's batch wall time divided evenly among
   * its attempts (run.ts attemptSeconds). Summed over a variant it is the batch's time.
   */
  seconds: number;
}

export interface ElicitationReport {
  backend: string;
  rank: number;
  /**
   * the rank ladder that ran, ascending, `rank` among them: one variant rank<k> per rank, over the
   * whole suite (config `ranks`); absent when only `rank` ran
   */
  ranks?: number[];
  variants: string[];
  samples: number;
  temperature: number;
  systemPrompt: string;
  probes: ProbeRecord[];
  /** e.g. "contrast skipped: the server returns no logprobs" */
  notices: string[];
  /**
   * variant → why its answers cannot be trusted (a server's token texts that could not be mapped
   * back to ids): they stay in the transcripts, judge/ does not judge them, and `notices` says so
   */
  unreliable?: Record<string, string>;
}
