/**
 * The elicitation stage's vocabulary: the transcripts of every probe on every variant.
 * report.json's `elicitation` field is an ElicitationReport.
 */

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
