/**
 * transcripts.jsonl: one JSON line per attempt (probe × sample × variant), a view of
 * report.json's elicitation in the order it holds them (probe, then variant, then sample), for
 * reading every transcript with jq or loading it into a notebook. The answers are the model's
 * text as report.json keeps it: JSON escapes what JSON needs, nothing is trimmed or sanitised,
 * so a reader must treat them as untrusted text. A v1 report (no attempts, no per-probe system
 * prompt) gives null tokens, finish reason and seconds, and the system prompt the scan's
 * settings imply (elicit/probes.ts systemPromptFor).
 */
import type { ElicitationReport, ProbeRecord } from "../elicit/types";
import { systemPromptFor } from "../elicit/probes";
import type { Report } from "./types";

/** One line of transcripts.jsonl; field names are the file's schema. */
export interface TranscriptLine {
  probeId: string;
  /** "probe" (interrogation) or "ordinary" */
  kind: "probe" | "ordinary";
  variant: string;
  /** 0-based sample index */
  sample: number;
  /** the system prompt the request carried ("" = none) */
  systemPrompt: string;
  prompt: string;
  answer: string;
  tokens: number | null;
  finishReason: "stop" | "length" | null;
  /** the variant's batch wall time divided evenly among its attempts (elicit/types.ts Attempt) */
  seconds: number | null;
}

/**
 * The system prompt `probe` was sent with: the one a v2 report recorded, or, for a v1 report
 * (which did not record it), the rule that chose it applied to the configured one — ordinary
 * prompts go with ORDINARY_SYSTEM_PROMPT when the configured prompt is the default.
 */
export function probeSystemPrompt(e: Pick<ElicitationReport, "systemPrompt">, probe: Pick<ProbeRecord, "kind" | "systemPrompt">): string {
  return probe.systemPrompt ?? systemPromptFor(probe.kind, e.systemPrompt);
}

/** Every attempt of the report's elicitation, in report.json's order. */
function transcriptLines(report: Report): TranscriptLine[] {
  const e = report.elicitation;
  if (!e) return [];
  const out: TranscriptLine[] = [];
  for (const p of e.probes) {
    const systemPrompt = probeSystemPrompt(e, p);
    for (const [variant, answers] of Object.entries(p.responses)) {
      const attempts = p.attempts?.[variant];
      answers.forEach((answer, sample) => {
        const a = attempts?.[sample];
        out.push({
          probeId: p.id,
          kind: p.kind,
          variant,
          sample,
          systemPrompt,
          prompt: p.prompt,
          answer,
          tokens: a?.tokens ?? null,
          finishReason: a?.finishReason ?? null,
          seconds: a?.seconds ?? null,
        });
      });
    }
  }
  return out;
}

/** transcripts.jsonl: one line per attempt, "" when nothing was elicited. */
export function renderTranscripts(report: Report): string {
  return transcriptLines(report)
    .map((l) => `${JSON.stringify(l)}\n`)
    .join("");
}
