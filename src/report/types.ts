/**
 * The Report object (report.json, schemaVersion 2) — DESIGN.md "Report". It only composes the
 * stages' own vocabularies: delta/types (spectrum), elicit/types (transcripts), judge/types
 * (findings), policy/verdict (verdict). Fields marked optional may be absent in partial
 * reports (verdict neutral).
 */
import type { SpectrumReport } from "../delta/types";
import type { ElicitationReport } from "../elicit/types";
import type { Finding } from "../judge/types";
import type { Verdict } from "../policy/verdict";
import type { Precision } from "../engine/precision";

/**
 * The version a scan writes. 2 adds finding.statistics and, per probe of the elicitation,
 * systemPrompt and attempts (tokens, finish reason, seconds); a v1 report lacks them and is
 * otherwise the same, so readers accept both (READABLE_SCHEMA_VERSIONS).
 */
export const REPORT_SCHEMA_VERSION = 2;

/** Versions a reader (sweep collect, the views) accepts: every field of 1 is in 2 unchanged. */
export const READABLE_SCHEMA_VERSIONS: readonly ReportSchemaVersion[] = Object.freeze([1, 2]);
type ReportSchemaVersion = 1 | 2;

export interface Subject {
  base: string;
  adapter?: string;
  finetuned?: string;
  kind: "lora" | "full";
  /** sha256 over the subject's weight files */
  digest: string;
}

export interface Report {
  /** REPORT_SCHEMA_VERSION when written; 1 in a report read back from an older scan */
  schemaVersion: ReportSchemaVersion;
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
  /**
   * how the embedded engine stored the base weights every variant ran on (engine/precision.ts):
   * f32, int8 or int4; absent for a server backend, a run that never loaded the engine, and
   * reports written before the field existed (readers must not require it)
   */
  engine?: { precision: Precision };
}
