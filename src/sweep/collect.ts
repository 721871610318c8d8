/**
 * `sweep collect`: merge what this run's jobs left (`<reports>/<model>/report.json`,
 * sweep-job.json, directions.safetensors) with the state of earlier runs into one published
 * site — index.json, index.md, a self-contained index.html, one shields endpoint badge per model
 * plus one for the whole sweep, and each model's last report — and, given a state folder, write
 * the new state: the audit keys plan compares, verdicts over time, pending models, the
 * directions the next drift comparison needs.
 *
 * Job folders arrive as downloaded CI artifacts, the state and the previous site from a branch:
 * all untrusted, each validated before use; a broken one stops the collection with exit 2
 * naming the file, and nothing is written.
 */
import { createHash } from "node:crypto";
import { copyFile, lstat, mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { InputError } from "../errors";
import { writeDirAtomic } from "../io/atomic";
import { badgeFor, BADGE_WORD, missingBadge, sweepBadge, type SweepSummary } from "../report/badge";
import { REPORT_FILES } from "../report/build";
import { neutraliseInline } from "../report/sanitize";
import { READABLE_SCHEMA_VERSIONS, type Report } from "../report/types";
import type { Conclusion } from "../policy/verdict";
import { FAIL_ON, findingsAtOrAbove, type FailOn } from "../policy/severity";
import { bySeverity, SEVERITIES, type Finding, type Severity } from "../judge/types";
import { DIRECTIONS_FILE, readDirections } from "../delta/directions";
import { fileOrigin, integer, mapping, oneOf, text } from "../validate";
import { computeDrift, DRIFT_FILE, summariseFindings, type DriftReport } from "./drift";
import { renderIndexHtml } from "./index-html";
import type { SweepPlan } from "./plan";
import { DEFAULT_DRIFT, isValidModelName, type DriftSettings, type Registry } from "./registry";
import { JOB_FILE, JOB_SCHEMA_VERSION, type SweepJob } from "./run";
import { appendHistory, auditKey, directionsName, emptyState, loadState, saveState, type DriftSummary, type HistoryEntry, type ModelState, type SweepState } from "./state";

/** The whole sweep's badge; model names start with a letter or digit, so this cannot clash. */
export const SWEEP_BADGE_FILE = "_sweep.json";
/** Each model's last report in the site: reports/<model>/. */
export const SITE_REPORTS_DIR = "reports";
export const INDEX_SCHEMA_VERSION = 2;

/** Artifacts nest a report at most this deep below the collected folder (artifact/model/report.json). */
const MAX_DEPTH = 3;
const MAX_REPORT_BYTES = 64 << 20;
const MAX_JOB_BYTES = 1 << 20;
/** A directions file is Σ(out+in)·k·2 bytes: 70B-parameter models stay well below this. */
const MAX_DIRECTIONS_BYTES = 1 << 30;
/** The report files a site publishes: readable views, never weights, transcripts or directions. */
const PUBLISHED_FILES = [REPORT_FILES.json, REPORT_FILES.markdown, REPORT_FILES.html, REPORT_FILES.badge, DRIFT_FILE];
/** Verdicts over time shown per model in the index. */
const INDEX_HISTORY = 12;
export const NO_REPORT_REASON = "no report was collected: the job failed before writing one, or was cancelled";

export interface IndexEntry {
  name: string;
  conclusion: Conclusion | "missing";
  /** why the model has no verdict for its current revision (an audit that could not run, skipped, pending) */
  reason?: string;
  source?: string;
  kind?: "lora" | "full";
  /** the revision the entry is about: Hub commit or `sha256:` of a local folder */
  revision?: string;
  findings: Record<Severity, number>;
  topFinding?: { severity: Severity; title: string; confidence: number };
  stableRankMedian?: number;
  stableRank?: { median: number; p10: number; p90: number };
  drift?: DriftSummary;
  subject?: Report["subject"];
  createdAt?: string;
  lastAudited?: string;
  /** the last outcomes, oldest first */
  history?: Array<{ at: string; conclusion: Conclusion | "missing"; revision?: string }>;
  /** reports/<model>/report.json, relative to the index */
  report?: string;
  /** reports/<model>/report.html */
  html?: string;
}

export interface SweepIndex {
  schemaVersion: typeof INDEX_SCHEMA_VERSION;
  generatedAt: string;
  summary: SweepSummary;
  models: IndexEntry[];
}

export interface CollectOptions {
  /** models not in this registry are refused; its models without a report are listed as missing */
  registry?: Registry;
  /** this run's plan: every model of the run, its audit key, what was pending or skipped */
  plan?: SweepPlan;
  /** the state folder: read, and written with this run's outcomes */
  stateDir?: string;
  /** the site published last time: unchanged models keep their report from it */
  previous?: string;
  now?: Date;
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
  if (raw.error !== undefined && typeof raw.error !== "string") bad("error must be a string");
  return raw as unknown as Report;
}

/** Validate a parsed sweep-job.json. */
export function validateJob(raw: unknown, file: string): SweepJob {
  const o = fileOrigin(file);
  const m = mapping(o, raw, "", ["schemaVersion", "name", "key", "status", "exitCode", "reason", "startedAt", "finishedAt", "directions"]);
  if (m.schemaVersion !== JOB_SCHEMA_VERSION) o.mismatch("schemaVersion", String(JOB_SCHEMA_VERSION), m.schemaVersion);
  const job: SweepJob = {
    schemaVersion: JOB_SCHEMA_VERSION,
    name: text(o, m.name, "name", 100),
    key: auditKey(o, m.key, "key"),
    status: oneOf(o, m.status, "status", ["audited", "fault", "error"] as const),
    exitCode: integer(o, m.exitCode, "exitCode", { min: 0, max: 255 }),
    startedAt: text(o, m.startedAt, "startedAt", 100),
    finishedAt: text(o, m.finishedAt, "finishedAt", 100),
  };
  if (m.reason !== undefined) job.reason = text(o, m.reason, "reason", 2000);
  if (m.directions !== undefined) {
    const d = mapping(o, m.directions, "directions", ["file", "k", "modules"]);
    job.directions = { file: text(o, d.file, "directions.file", 100), k: integer(o, d.k, "directions.k", { min: 1, max: 64 }), modules: integer(o, d.modules, "directions.modules", { min: 0, max: 1e6 }) };
  }
  return job;
}

async function readJson(file: string, maxBytes: number): Promise<unknown> {
  const size = (await stat(file)).size;
  if (size > maxBytes) throw new InputError(`${size} bytes; at most ${maxBytes} expected here`, file);
  try {
    return JSON.parse(await readFile(file, "utf8"));
  } catch (e) {
    throw new InputError(`not valid JSON: ${(e as Error).message.split("\n")[0]}`, file);
  }
}

/** A job's folder: named by the model, holding report.json and/or sweep-job.json. */
interface JobFolder {
  name: string;
  dir: string;
  report?: Report;
  job?: SweepJob;
  directions?: string;
}

async function findJobFolders(dir: string, depth = 0): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw new InputError(`cannot read folder: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, dir);
  }
  const out: string[] = [];
  // symlinks are not followed: an artifact must not point the collector elsewhere
  if (depth > 0 && entries.some((e) => e.isFile() && (e.name === REPORT_FILES.json || e.name === JOB_FILE))) out.push(dir);
  for (const e of entries) if (e.isDirectory() && depth < MAX_DEPTH) out.push(...(await findJobFolders(join(dir, e.name), depth + 1)));
  return out.sort();
}

/**
 * A regular file, not a link: artifacts and a checked-out gh-pages branch are written by others,
 * and a committed link must not publish or read a file from elsewhere on the runner.
 */
async function isFile(p: string): Promise<boolean> {
  try {
    return (await lstat(p)).isFile();
  } catch {
    return false;
  }
}

async function isRealDir(p: string): Promise<boolean> {
  return (await lstat(p).catch(() => undefined))?.isDirectory() ?? false;
}

async function readJobFolder(dir: string): Promise<JobFolder> {
  const name = basename(dir);
  if (!isValidModelName(name)) throw new InputError(`the folder name '${name.slice(0, 100)}' is not a model name (letters, digits, '.', '_', '-')`, dir);
  const f: JobFolder = { name, dir };
  const reportFile = join(dir, REPORT_FILES.json);
  if (await isFile(reportFile)) f.report = validateReport(await readJson(reportFile, MAX_REPORT_BYTES), reportFile);
  const jobFile = join(dir, JOB_FILE);
  if (await isFile(jobFile)) {
    f.job = validateJob(await readJson(jobFile, MAX_JOB_BYTES), jobFile);
    if (f.job.name !== name) throw new InputError(`names model '${f.job.name.slice(0, 100)}', but its folder is '${name}'`, jobFile);
  }
  if (await isFile(join(dir, DIRECTIONS_FILE))) f.directions = join(dir, DIRECTIONS_FILE);
  return f;
}

/** The report as the index and the badge count it: the drift finding added, a fail-worthy one failing it. */
export function withDriftFinding(report: Pick<Report, "findings" | "verdict">, finding: Finding | undefined): Pick<Report, "findings" | "verdict"> {
  if (!finding) return report;
  const fails = findingsAtOrAbove([finding], report.verdict.failOn).length > 0;
  return {
    findings: [...report.findings, finding],
    verdict: fails ? { ...report.verdict, conclusion: "fail", reasons: [...report.verdict.reasons, `drift: ${finding.title}`] } : report.verdict,
  };
}

const zeroCounts = (): Record<Severity, number> => ({ high: 0, medium: 0, low: 0, info: 0 });

function countFindings(findings: ReadonlyArray<{ severity: Severity }>): Record<Severity, number> {
  const c = zeroCounts();
  for (const f of findings) c[f.severity]++;
  return c;
}

function quantiles(report: Report): HistoryEntry["stableRank"] {
  const q = report.spectrum.summary?.stableRank;
  const ok = (x: unknown) => typeof x === "number" && Number.isFinite(x);
  return q && ok(q.median) && ok(q.p10) && ok(q.p90) ? { median: q.median, p10: q.p10, p90: q.p90 } : undefined;
}

function newModelState(source: string, at: string): ModelState {
  return { source, firstSeen: at, lastSeen: at, history: [] };
}

/** What one run did to one model's state; the site's report folder and drift.json come back too. */
interface Outcome {
  /** the folder whose published files the site takes for this model */
  reportDir?: string;
  drift?: DriftReport;
  /** the validated report, for the index's subject and createdAt */
  report?: Report;
}

/**
 * Record an audited job: its history entry, its key (plan compares it next time), its findings
 * and directions (drift compares them next time), and the drift against the last audit.
 */
async function recordAudit(s: ModelState, f: JobFolder, report: Report, key: SweepJob["key"] | undefined, at: string, drift: DriftSettings, directions: Map<string, Uint8Array>, stateDir: string | undefined): Promise<DriftReport | undefined> {
  const findings = summariseFindings(report.findings);
  let driftReport: DriftReport | undefined;
  let newDirections: Awaited<ReturnType<typeof readDirections>> | undefined;
  if (f.directions) newDirections = await readDirections(f.directions);
  if (drift.enabled && newDirections && s.directions && stateDir && s.audited) {
    const old = await readDirections(join(stateDir, s.directions));
    driftReport = computeDrift({ revision: s.audited.revision, directions: old, findings: s.findings ?? [] }, { revision: key?.revision ?? report.subject.digest, directions: newDirections, findings }, drift);
  }
  const driftFinding = driftReport?.summary.finding;
  const finding: Finding | undefined = driftFinding
    ? { id: "drift-1", title: driftFinding.title, severity: driftFinding.severity, source: "drift", terms: [], evidence: [], confidence: 1 }
    : undefined;
  const effective = withDriftFinding(report, finding);
  const top = [...effective.findings].sort(bySeverity)[0];
  const entry: HistoryEntry = {
    at,
    outcome: "audited",
    conclusion: effective.verdict.conclusion,
    failOn: report.verdict.failOn,
    findings: countFindings(effective.findings),
  };
  if (key) {
    entry.key = key;
    entry.revision = key.revision;
  }
  if (top) entry.topFinding = { severity: top.severity, title: String(top.title).slice(0, 300), confidence: Math.min(1, Math.max(0, Number(top.confidence) || 0)) };
  const sr = quantiles(report);
  if (sr) entry.stableRank = sr;
  if (driftReport) entry.drift = driftReport.summary;
  appendHistory(s, entry);
  if (key) s.audited = key;
  else delete s.audited;
  s.findings = findings;
  s.lastAudited = at;
  delete s.pending;
  if (newDirections && f.directions) {
    const bytes = await readFile(f.directions);
    if (bytes.byteLength > MAX_DIRECTIONS_BYTES) throw new InputError(`${bytes.byteLength} bytes; at most ${MAX_DIRECTIONS_BYTES}`, f.directions);
    const name = directionsName(f.name, createHash("sha256").update(bytes).digest("hex"));
    directions.set(name, bytes);
    s.directions = name;
  } else {
    delete s.directions;
  }
  return driftReport;
}

/** The history entry of a run that changed nothing since the last one is not repeated. */
function appendUnlessRepeated(s: ModelState, entry: HistoryEntry): void {
  const last = s.history.at(-1);
  if (last && last.outcome === entry.outcome && last.reason === entry.reason && last.revision === entry.revision) {
    last.at = entry.at;
    return;
  }
  appendHistory(s, entry);
}

/** The last audit that ran to the end. */
function lastAudit(s: ModelState | undefined): HistoryEntry | undefined {
  return s ? [...s.history].reverse().find((h) => h.outcome === "audited") : undefined;
}

/**
 * A model's badge, from what its state remembers and the one badge builder (report/badge.ts):
 * the last audit's verdict and findings (with its drift finding) while it stands, "inconclusive"
 * when the latest attempt could not run, "no report" when there never was one.
 */
function badgeOf(name: string, s: ModelState | undefined, entry: IndexEntry) {
  if (!s || entry.conclusion === "missing") return missingBadge(name);
  const audit = lastAudit(s);
  const standing = audit && (s.history.at(-1) === audit || s.pending);
  const findings = standing ? [...(s.findings ?? []), ...(audit.drift?.finding ? [audit.drift.finding] : [])] : [];
  const shown = { verdict: { conclusion: entry.conclusion, reasons: [], failOn: (standing && audit.failOn) || "high" }, findings: findings.map((f) => ({ ...f, confidence: 1 })) };
  return badgeFor(shown as unknown as Report, name);
}

function entryOf(name: string, s: ModelState | undefined, outcome: Outcome | undefined, hasReport: boolean): IndexEntry {
  const last = s?.history.at(-1);
  const audit = lastAudit(s);
  const e: IndexEntry = { name, conclusion: last?.conclusion ?? "missing", findings: audit?.findings ?? zeroCounts() };
  if (s) {
    e.source = s.source;
    if (s.kind) e.kind = s.kind;
    if (s.lastAudited) e.lastAudited = s.lastAudited;
    e.history = s.history.slice(-INDEX_HISTORY).map((h) => ({ at: h.at, conclusion: h.conclusion, ...(h.revision ? { revision: h.revision } : {}) }));
  }
  if (last && last.outcome !== "audited") e.reason = last.reason ?? NO_REPORT_REASON;
  if (!last) e.reason = NO_REPORT_REASON;
  if (s?.pending) {
    if (audit) {
      // the last verdict stands for its revision until the update's audit comes
      e.conclusion = audit.conclusion;
      e.reason = `update pending (${s.pending.reason}); the verdict is the last audit's`;
    } else {
      e.conclusion = "missing";
      e.reason = `pending since ${s.pending.since}: more models changed than one run audits`;
    }
  }
  const revision = last?.revision ?? audit?.revision;
  if (revision) e.revision = revision;
  if (audit) {
    if (audit.topFinding) e.topFinding = audit.topFinding;
    if (audit.stableRank) {
      e.stableRank = audit.stableRank;
      e.stableRankMedian = audit.stableRank.median;
    }
    if (audit.drift) e.drift = audit.drift;
  }
  const report = outcome?.report;
  if (report) {
    e.subject = report.subject;
    if (typeof report.createdAt === "string") e.createdAt = report.createdAt;
  }
  if (hasReport) {
    e.report = `${SITE_REPORTS_DIR}/${name}/${REPORT_FILES.json}`;
    e.html = `${SITE_REPORTS_DIR}/${name}/${REPORT_FILES.html}`;
  }
  return e;
}

const ICON: Readonly<Record<IndexEntry["conclusion"], string>> = Object.freeze({ pass: "✅", fail: "❌", neutral: "⚪", missing: "⚪" });

/** A revision as shown: 12 characters of the commit or digest. */
export function shortRevision(rev: string | undefined): string {
  if (!rev) return "";
  return rev.startsWith("sha256:") ? rev.slice(7, 19) : rev.slice(0, 12);
}

/** Drift in words: `3/40 modules ≥ 45°, max 80.1°`, with the drift finding's severity first when there is one. */
export function driftText(d: DriftSummary | undefined): string {
  if (!d) return "";
  const text = `${d.rotated}/${d.compared} modules turned, max ${d.maxRotation.toFixed(1)}°`;
  return d.finding ? `${d.finding.severity}: drift; ${text}` : text;
}

export function renderIndexMarkdown(index: SweepIndex): string {
  const s = index.summary;
  const lines = [
    "# delta-audit sweep",
    "",
    `${index.models.length} models · ${s.pass} ${BADGE_WORD.pass} · ${s.fail} ${BADGE_WORD.fail} · ${s.neutral} ${BADGE_WORD.neutral} · ${s.missing} without a report · ${index.generatedAt}`,
    "",
    "| model | verdict | high | medium | low | stable rank (median) | top finding | revision | drift | last audited | note |",
    "|---|---|---:|---:|---:|---:|---|---|---|---|---|",
  ];
  for (const m of index.models) {
    const top = m.topFinding ? `${m.topFinding.severity}: ${neutraliseInline(m.topFinding.title, 200)}` : "";
    const sr = m.stableRankMedian === undefined ? "" : m.stableRankMedian.toFixed(2);
    const cells = [
      neutraliseInline(m.name, 100),
      `${ICON[m.conclusion]} ${BADGE_WORD[m.conclusion]}`,
      String(m.findings.high),
      String(m.findings.medium),
      String(m.findings.low),
      sr,
      top,
      neutraliseInline(shortRevision(m.revision), 20),
      neutraliseInline(driftText(m.drift), 100),
      m.lastAudited ? neutraliseInline(m.lastAudited.slice(0, 10), 20) : "",
      m.reason ? neutraliseInline(m.reason, 200) : "",
    ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("", "_Findings are evidence with a confidence, not a certification._", "");
  return lines.join("\n");
}

/** Copy a model's published report files (regular files only, size-capped) into the site. */
async function publishReport(from: string, to: string, drift: DriftReport | undefined): Promise<boolean> {
  let any = false;
  await mkdir(to, { recursive: true });
  for (const f of PUBLISHED_FILES) {
    if (f === DRIFT_FILE && drift) continue;
    const p = join(from, f);
    const st = await lstat(p).catch(() => undefined);
    if (!st?.isFile() || st.size > MAX_REPORT_BYTES) continue;
    await copyFile(p, join(to, f));
    any ||= f === REPORT_FILES.json;
  }
  if (drift) await writeFile(join(to, DRIFT_FILE), `${JSON.stringify(drift, null, 2)}\n`);
  return any;
}

/**
 * Collect one run into `outDir` (written atomically) and, with a state folder, update it. The
 * model's name is the folder holding its job's files. With a plan, the plan's models are the
 * sweep; with a registry alone, its models (those without a report are missing, reports of
 * models it lacks are refused); with neither, the folders found and the state's models.
 */
export async function collectSweep(reportsDir: string, outDir: string, opts: CollectOptions = {}): Promise<SweepIndex> {
  const now = (opts.now ?? new Date()).toISOString();
  const folders = new Map<string, JobFolder>();
  for (const dir of await findJobFolders(reportsDir)) {
    const f = await readJobFolder(dir);
    if (folders.has(f.name)) throw new InputError(`a second report for model '${f.name}' (folder names must be unique)`, join(dir, REPORT_FILES.json));
    folders.set(f.name, f);
  }
  const plan = opts.plan;
  const registry = opts.registry;
  const state: SweepState = opts.stateDir ? await loadState(opts.stateDir) : emptyState(opts.now);
  const drift = plan?.drift ?? registry?.drift ?? DEFAULT_DRIFT;

  let names: string[];
  if (plan) names = [...plan.models.map((m) => m.name), ...plan.skipped.map((s) => s.name).filter((n) => !plan.models.some((m) => m.name === n))];
  else if (registry && registry.sources.length === 0) names = registry.entries.map((e) => e.name);
  else names = [...new Set([...(registry?.entries.map((e) => e.name) ?? []), ...folders.keys(), ...Object.keys(state.models)])].sort();
  const known = new Set(names);
  for (const f of folders.values()) {
    if (known.has(f.name)) continue;
    const where = plan ? "the plan" : registry ? `the registry ${registry.file}` : "";
    if (where) throw new InputError(`model '${f.name}' is not in ${where}`, join(f.dir, f.report ? REPORT_FILES.json : JOB_FILE));
  }
  // a plan that found no model (a Hub organisation without matching repositories yet) is an
  // empty index, not an error: the unattended sweep keeps publishing
  if (names.length === 0 && !plan) throw new InputError("no <model>/report.json found below this folder", reportsDir);

  const newDirections = new Map<string, Uint8Array>();
  const outcomes = new Map<string, Outcome>();
  const planned = new Map(plan?.models.map((m) => [m.name, m]) ?? []);
  const skipped = new Map(plan?.skipped.map((s) => [s.name, s]) ?? []);
  const jobs = new Set(plan?.jobs ?? []);
  const pending = new Set(plan?.pending ?? []);
  for (const name of names) {
    const p = planned.get(name);
    const inRegistry = registry?.entries.findIndex((e) => e.name === name) ?? -1;
    const source = p?.source ?? skipped.get(name)?.source ?? (inRegistry >= 0 ? `models[${inRegistry}]` : "reports");
    const s = (state.models[name] ??= newModelState(source, now));
    s.lastSeen = now;
    if (p) {
      s.source = p.source;
      s.kind = p.kind;
    }
    const f = folders.get(name);
    if (f) {
      const key = f.job?.key ?? p?.key;
      const report = f.report;
      if (report && f.job?.status !== "error" && !report.error) {
        if (!s.kind) s.kind = report.subject.kind;
        const d = await recordAudit(s, f, report, key, now, drift, newDirections, opts.stateDir);
        outcomes.set(name, { reportDir: f.dir, drift: d, report });
      } else {
        const entry: HistoryEntry = { at: now, outcome: "failed", conclusion: "neutral", reason: report?.error ?? f.job?.reason ?? "the audit did not complete" };
        if (key) {
          entry.key = key;
          entry.revision = key.revision;
        }
        appendHistory(s, entry);
        // a partial report (a backend fault after the spectrum) still shows what was measured
        outcomes.set(name, report ? { reportDir: f.dir, report } : {});
      }
    } else if (plan ? jobs.has(name) : !p) {
      if (!plan && s.history.some((h) => h.outcome === "audited")) continue;
      appendUnlessRepeated(s, { at: now, outcome: "missing", conclusion: "missing", reason: NO_REPORT_REASON, ...(p ? { revision: p.key.revision } : {}) });
    }
    const sk = skipped.get(name);
    if (sk && !p) appendUnlessRepeated(s, { at: now, outcome: "skipped", conclusion: "neutral", reason: sk.reason });
    if (pending.has(name) && !f) s.pending ??= { since: now, reason: p?.change ?? "changed" };
    // planned as unchanged (an update reverted, a registry edited back): nothing waits any more
    else if (p && !p.change) delete s.pending;
  }

  const index: SweepIndex = { schemaVersion: INDEX_SCHEMA_VERSION, generatedAt: now, summary: { pass: 0, fail: 0, neutral: 0, missing: 0 }, models: [] };
  await writeDirAtomic(outDir, async (tmp) => {
    await mkdir(join(tmp, "badges"));
    for (const name of names) {
      const o = outcomes.get(name);
      const to = join(tmp, SITE_REPORTS_DIR, name);
      let hasReport = false;
      if (o?.reportDir) hasReport = await publishReport(o.reportDir, to, o.drift);
      else if (opts.previous && (await isRealDir(join(opts.previous, SITE_REPORTS_DIR))) && (await isRealDir(join(opts.previous, SITE_REPORTS_DIR, name))) && (await isFile(join(opts.previous, SITE_REPORTS_DIR, name, REPORT_FILES.json)))) {
        // unchanged (or not audited this time): the last published report stays
        hasReport = await publishReport(join(opts.previous, SITE_REPORTS_DIR, name), to, undefined);
      }
      const entry = entryOf(name, state.models[name], o, hasReport);
      index.models.push(entry);
      index.summary[entry.conclusion]++;
      await writeFile(join(tmp, "badges", `${name}.json`), `${JSON.stringify(badgeOf(name, state.models[name], entry))}\n`);
    }
    await writeFile(join(tmp, "index.json"), `${JSON.stringify(index, null, 2)}\n`);
    await writeFile(join(tmp, "index.md"), renderIndexMarkdown(index));
    await writeFile(join(tmp, "index.html"), renderIndexHtml(index));
    await writeFile(join(tmp, "badges", SWEEP_BADGE_FILE), `${JSON.stringify(sweepBadge(index.summary))}\n`);
  });
  // the state after the site: a failed collection leaves the state as it was, so the next run redoes it
  if (opts.stateDir) await saveState(opts.stateDir, state, newDirections, opts.now);
  return index;
}

