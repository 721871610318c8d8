/**
 * `sweep collect`: merge the report.json of every audited model into one index (JSON and
 * markdown) and one shields endpoint badge per model plus one for the whole sweep.
 *
 * Reports arrive as downloaded CI artifacts, so they are untrusted: each is validated before
 * use and a broken one stops the collection with exit 2 naming the file.
 */
import { readdir, readFile, stat, writeFile, mkdir } from "node:fs/promises";
import { basename, dirname, join, relative } from "node:path";
import { InputError } from "../errors";
import { writeDirAtomic } from "../io/atomic";
import { BADGE_WORD, badgeFor, missingBadge, sweepBadge, type SweepSummary } from "../report/badge";
import { neutraliseInline } from "../report/sanitize";
import { READABLE_SCHEMA_VERSIONS, type Report } from "../report/types";
import type { Conclusion } from "../policy/verdict";
import { FAIL_ON, type FailOn } from "../policy/severity";
import { bySeverity, SEVERITIES, type Severity } from "../judge/types";
import { isValidModelName, type Registry } from "./registry";

/** The whole sweep's badge; model names start with a letter or digit, so this cannot clash. */
export const SWEEP_BADGE_FILE = "_sweep.json";

/** Artifacts nest a report at most this deep below the collected folder (artifact/model/report.json). */
const MAX_DEPTH = 3;
const MAX_REPORT_BYTES = 64 << 20;

export interface IndexEntry {
  name: string;
  conclusion: Conclusion | "missing";
  findings: Record<Severity, number>;
  topFinding?: { severity: Severity; title: string; confidence: number };
  stableRankMedian?: number;
  subject?: Report["subject"];
  createdAt?: string;
  /** report.json, relative to the index */
  report?: string;
}

export interface SweepIndex {
  schemaVersion: 1;
  generatedAt: string;
  summary: SweepSummary;
  models: IndexEntry[];
}

async function findReports(dir: string, depth = 0): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new InputError(`cannot read folder: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, dir);
  }
  const out: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    // symlinks are not followed: an artifact must not point the collector elsewhere
    if (e.isFile() && e.name === "report.json" && depth > 0) out.push(p);
    else if (e.isDirectory() && depth < MAX_DEPTH) out.push(...(await findReports(p, depth + 1)));
  }
  return out.sort();
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Check the fields the index reads; anything else in the report is carried, not trusted. */
export function validateReport(raw: unknown, file: string): Report {
  const bad = (what: string): never => {
    throw new InputError(`not a delta-audit report: ${what}`, file);
  };
  if (!isObj(raw)) return bad("expected a JSON object");
  if (!READABLE_SCHEMA_VERSIONS.includes(raw.schemaVersion as 1 | 2)) bad(`schemaVersion ${JSON.stringify(raw.schemaVersion)}, expected ${READABLE_SCHEMA_VERSIONS.join(" or ")}`);
  const v = raw.verdict;
  if (!isObj(v) || !["pass", "fail", "neutral"].includes(v.conclusion as string)) bad("verdict.conclusion must be pass, fail or neutral");
  // the badge counts the findings that failed the verdict at this threshold
  if (!FAIL_ON.includes((v as Record<string, unknown>).failOn as FailOn)) bad(`verdict.failOn must be one of ${FAIL_ON.join(", ")}`);
  if (!isObj(raw.subject)) bad("subject must be an object");
  if (!Array.isArray(raw.findings)) bad("findings must be a list");
  (raw.findings as unknown[]).forEach((f, i) => {
    if (!isObj(f) || !SEVERITIES.includes(f.severity as Severity) || typeof f.title !== "string") bad(`findings[${i}] needs a severity and a title`);
  });
  if (!isObj(raw.spectrum) || !isObj((raw.spectrum as Record<string, unknown>).summary)) bad("spectrum.summary must be an object");
  return raw as unknown as Report;
}

function entryOf(name: string, report: Report, reportPath: string): IndexEntry {
  const findings = { high: 0, medium: 0, low: 0, info: 0 } as Record<Severity, number>;
  for (const f of report.findings) findings[f.severity]++;
  const top = [...report.findings].sort(bySeverity)[0];
  const median = report.spectrum.summary?.stableRank?.median;
  return {
    name,
    conclusion: report.verdict.conclusion,
    findings,
    topFinding: top ? { severity: top.severity, title: String(top.title).slice(0, 300), confidence: Number(top.confidence) || 0 } : undefined,
    stableRankMedian: typeof median === "number" && Number.isFinite(median) ? median : undefined,
    subject: report.subject,
    createdAt: typeof report.createdAt === "string" ? report.createdAt : undefined,
    report: reportPath,
  };
}

const ICON: Readonly<Record<IndexEntry["conclusion"], string>> = Object.freeze({ pass: "✅", fail: "❌", neutral: "⚪", missing: "⚪" });

export function renderIndexMarkdown(index: SweepIndex): string {
  const s = index.summary;
  const lines = [
    "# delta-audit sweep",
    "",
    `${index.models.length} models · ${s.pass} ${BADGE_WORD.pass} · ${s.fail} ${BADGE_WORD.fail} · ${s.neutral} ${BADGE_WORD.neutral} · ${s.missing} without a report · ${index.generatedAt}`,
    "",
    "| model | verdict | high | medium | low | stable rank (median) | top finding |",
    "|---|---|---:|---:|---:|---:|---|",
  ];
  for (const m of index.models) {
    const top = m.topFinding ? `${m.topFinding.severity}: ${neutraliseInline(m.topFinding.title, 200)}` : "";
    const sr = m.stableRankMedian === undefined ? "" : m.stableRankMedian.toFixed(2);
    lines.push(`| ${neutraliseInline(m.name, 100)} | ${ICON[m.conclusion]} ${BADGE_WORD[m.conclusion]} | ${m.findings.high} | ${m.findings.medium} | ${m.findings.low} | ${sr} | ${top} |`);
  }
  lines.push("", "_Findings are evidence with a confidence, not a certification._", "");
  return lines.join("\n");
}

/**
 * Collect every `<model>/report.json` below `reportsDir` into `outDir`: index.json, index.md,
 * badges/<model>.json and badges/_sweep.json, written atomically. The model's name is the
 * folder holding its report. With a registry, models without a report are listed as missing
 * and reports of unknown models are refused.
 */
export async function collectSweep(reportsDir: string, outDir: string, opts: { registry?: Registry; now?: Date } = {}): Promise<SweepIndex> {
  const files = await findReports(reportsDir);
  const byName = new Map<string, IndexEntry>();
  /** the validated reports, for the badges: each file is read and checked once */
  const reports = new Map<string, Report>();
  for (const file of files) {
    const name = basename(dirname(file));
    if (!isValidModelName(name)) throw new InputError(`the folder name '${name.slice(0, 100)}' is not a model name (letters, digits, '.', '_', '-')`, file);
    const size = (await stat(file)).size;
    if (size > MAX_REPORT_BYTES) throw new InputError(`${size} bytes; a report is at most ${MAX_REPORT_BYTES}`, file);
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(file, "utf8"));
    } catch (e) {
      throw new InputError(`not valid JSON: ${(e as Error).message.split("\n")[0]}`, file);
    }
    const report = validateReport(raw, file);
    if (byName.has(name)) throw new InputError(`a second report for model '${name}' (folder names must be unique)`, file);
    if (opts.registry && !opts.registry.entries.some((e) => e.name === name)) {
      throw new InputError(`model '${name}' is not in the registry ${opts.registry.file}`, file);
    }
    byName.set(name, entryOf(name, report, file));
    reports.set(name, report);
  }
  const names = opts.registry ? opts.registry.entries.map((e) => e.name) : [...byName.keys()].sort();
  if (names.length === 0) throw new InputError("no <model>/report.json found below this folder", reportsDir);
  const models: IndexEntry[] = names.map(
    (name) => byName.get(name) ?? { name, conclusion: "missing", findings: { high: 0, medium: 0, low: 0, info: 0 } },
  );
  const summary = { pass: 0, fail: 0, neutral: 0, missing: 0 };
  for (const m of models) summary[m.conclusion]++;
  const index: SweepIndex = { schemaVersion: 1, generatedAt: (opts.now ?? new Date()).toISOString(), summary, models };

  await writeDirAtomic(outDir, async (tmp) => {
    await mkdir(join(tmp, "badges"));
    const forJson = models.map((m) => ({ ...m, report: m.report ? relative(outDir, m.report) : undefined }));
    await writeFile(join(tmp, "index.json"), `${JSON.stringify({ ...index, models: forJson }, null, 2)}\n`);
    await writeFile(join(tmp, "index.md"), renderIndexMarkdown(index));
    for (const m of models) {
      const report = reports.get(m.name);
      const badge = report ? badgeFor(report, m.name) : missingBadge(m.name);
      await writeFile(join(tmp, "badges", `${m.name}.json`), `${JSON.stringify(badge)}\n`);
    }
    await writeFile(join(tmp, "badges", SWEEP_BADGE_FILE), `${JSON.stringify(sweepBadge(summary))}\n`);
  });
  return index;
}
