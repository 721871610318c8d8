/**
 * The Report object (report.json, schemaVersion 2) and the files `scan --out` writes from it.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { TOOL_NAME, VERSION } from "../version";
import { badgeFor } from "./badge";
import { renderHtml } from "./html";
import { renderMarkdown } from "./markdown";
import { buildSarif, SARIF_FILE, subjectConfigFile } from "./sarif";
import { renderTranscripts } from "./transcripts";
import { REPORT_SCHEMA_VERSION, type Report } from "./types";

/** What a scan measured; buildReport adds the schema version, the tool and the time. */
export type ReportParts = Omit<Report, "schemaVersion" | "tool" | "createdAt"> & { createdAt?: Date };

export function buildReport(p: ReportParts): Report {
  const report: Report = {
    schemaVersion: REPORT_SCHEMA_VERSION,
    tool: { name: TOOL_NAME, version: VERSION },
    createdAt: (p.createdAt ?? new Date()).toISOString(),
    subject: p.subject,
    spectrum: p.spectrum,
    findings: p.findings,
    verdict: p.verdict,
    timings: p.timings,
  };
  if (p.elicitation) report.elicitation = p.elicitation;
  if (p.error) report.error = p.error;
  if (p.engine) report.engine = p.engine;
  return report;
}

/** The file names of DESIGN.md: other tools (the Action, sweeps) read them. */
export const REPORT_FILES = Object.freeze({ json: "report.json", markdown: "report.md", badge: "badge.json", html: "report.html", sarif: SARIF_FILE, transcripts: "transcripts.jsonl" });

/**
 * Write every file of REPORT_FILES (report.json, report.md, badge.json, report.html,
 * report.sarif, transcripts.jsonl) into `dir` (a staging folder: the caller renames it).
 * `cwd` is the directory the subject's paths are relative to — the scan's working directory,
 * passed in by the scan so this stage stays pure: report.sarif locates its findings on the
 * subject's config file relative to it.
 */
export async function writeReportFiles(dir: string, report: Report, cwd: string): Promise<void> {
  await writeFile(join(dir, REPORT_FILES.json), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(dir, REPORT_FILES.markdown), renderMarkdown(report));
  await writeFile(join(dir, REPORT_FILES.badge), `${JSON.stringify(badgeFor(report))}\n`);
  await writeFile(join(dir, REPORT_FILES.html), renderHtml(report));
  await writeFile(join(dir, REPORT_FILES.transcripts), renderTranscripts(report));
  // located on the subject's config file relative to `cwd`; the Action writes its own, workspace-relative
  await writeFile(join(dir, REPORT_FILES.sarif), `${JSON.stringify(buildSarif([{ report, configFile: subjectConfigFile(report, cwd) }]), null, 2)}\n`);
}
