/**
 * The Report object (report.json, schemaVersion 1) and the files `scan --out` writes from it.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { TOOL_NAME, VERSION } from "../version";
import { badgeFor } from "./badge";
import { renderMarkdown } from "./markdown";
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
  return report;
}

/** The file names of DESIGN.md: other tools (the Action, sweeps) read them. */
export const REPORT_FILES = Object.freeze({ json: "report.json", markdown: "report.md", badge: "badge.json" });

/** Write report.json, report.md and badge.json into `dir` (a staging folder: the caller renames it). */
export async function writeReportFiles(dir: string, report: Report): Promise<void> {
  await writeFile(join(dir, REPORT_FILES.json), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(join(dir, REPORT_FILES.markdown), renderMarkdown(report));
  await writeFile(join(dir, REPORT_FILES.badge), `${JSON.stringify(badgeFor(report))}\n`);
}
