/**
 * The Report object (report.json, schemaVersion 1) — DESIGN.md "Report". It only composes the
 * stages' own vocabularies: delta/types (spectrum), elicit/types (transcripts), judge/types
 * (findings), policy/verdict (verdict). Fields marked optional may be absent in partial
 * reports (verdict neutral).
 */
import type { SpectrumReport } from "../delta/types";
import type { ElicitationReport } from "../elicit/types";
import type { Finding } from "../judge/types";
import type { Verdict } from "../policy/verdict";

export const REPORT_SCHEMA_VERSION = 1;

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
