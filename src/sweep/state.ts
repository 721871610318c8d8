/**
 * The sweep's memory between scheduled runs: a folder (committed to a branch, or kept as a
 * workflow artifact) holding
 *
 *   state.json                       what was seen and audited, per model (this file's types)
 *   directions/<model>-<hash>.safetensors   the top singular directions of each model's last
 *                                    audit, for the next drift comparison (delta/directions.ts)
 *
 * `sweep plan` reads it to audit only what changed; `sweep collect` is its only writer (the
 * directions first, state.json last: state.json is the commit point, and directions files it
 * no longer names are removed after it is written). It arrives from an earlier run, so it is
 * validated like any input: a bad one is exit 2 naming the key.
 */
import { mkdir, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "../errors";
import { writeFileAtomic } from "../io/atomic";
import { isDirectory, pathExists } from "../io/fs-util";
import { parseJsonText, readTextFile } from "../io/read-text";
import { SEVERITIES, type Severity } from "../judge/types";
import { FAIL_ON, type FailOn } from "../policy/severity";
import type { Conclusion } from "../policy/verdict";
import { TOOL_NAME, VERSION } from "../version";
import { fileOrigin, integer, itemPath, list, mapping, number, oneOf, required, text, type Origin } from "../validate";
import { isValidModelName } from "./registry";

export const STATE_FILE = "state.json";
export const DIRECTIONS_DIR = "directions";
export const STATE_SCHEMA_VERSION = 1;
/** Verdicts over time: two years of weekly runs. Older entries are dropped first. */
export const MAX_HISTORY = 104;
/** Findings remembered per audit for the next drift comparison. */
export const MAX_REMEMBERED_FINDINGS = 100;
/** Thousands of models with a hundred history entries each fit; more is not a state file. */
const MAX_STATE_BYTES = 256 << 20;
const MAX_TEXT = 2000;
/** What a directions file is called inside the state folder: only names this writer makes are followed. */
const DIRECTIONS_NAME = /^directions\/[A-Za-z0-9][A-Za-z0-9._-]{0,99}-[0-9a-f]{12}\.safetensors$/;

/** What an audit was of: plan audits a model again when any part of it changes. */
export interface AuditKey {
  /** the model's revision: the Hub commit sha, or `sha256:…` of a local folder's weight files */
  revision: string;
  /** the base model's revision, the same way */
  baseRevision: string;
  /** the delta-audit version that audited it */
  toolVersion: string;
  /** sha256 of the resolved policy (delta-audit.yml with every default applied, and the drift settings) */
  policyDigest: string;
}

/** A finding as remembered: enough to tell a new one from an old one, and to badge. */
export interface FindingSummary {
  /** source and lead term (finding ids are per report, not stable across audits) */
  key: string;
  severity: Severity;
  title: string;
}

/** The drift of one audit against the one before (sweep/drift.ts). */
export interface DriftSummary {
  /** revisions compared */
  from: string;
  to: string;
  /** modules present in both with the same shape */
  compared: number;
  /** of those, how many turned by at least the configured angle */
  rotated: number;
  share: number;
  /** degrees, largest principal angle per module: the maximum and the median over modules */
  maxRotation: number;
  medianRotation: number;
  /** median over compared modules of σ₁(new) / σ₁(old) */
  sigma1Ratio: number;
  /** median stable rank, before and after */
  stableRankBefore: number;
  stableRankAfter: number;
  newFindings: FindingSummary[];
  vanishedFindings: FindingSummary[];
  /** a large rotation with a changed finding: the drift finding, at the configured severity */
  finding?: FindingSummary;
}

/** One run's outcome for a model. */
export interface HistoryEntry {
  at: string;
  /**
   * audited: a report without a fault; failed: the audit could not run to the end (download,
   * backend), a neutral entry with the reason; missing: a planned job left nothing behind;
   * skipped: found but not auditable (no base, no access), with the reason
   */
  outcome: "audited" | "failed" | "missing" | "skipped";
  conclusion: Conclusion | "missing";
  revision?: string;
  key?: AuditKey;
  reason?: string;
  failOn?: FailOn;
  findings?: Record<Severity, number>;
  topFinding?: { severity: Severity; title: string; confidence: number };
  stableRank?: { median: number; p10: number; p90: number };
  drift?: DriftSummary;
}

export interface ModelState {
  /** where the model came from: `models[2]`, `sources[0].hub` */
  source: string;
  kind?: "lora" | "full";
  firstSeen: string;
  lastSeen: string;
  lastAudited?: string;
  /** the key of the last audit that ran to the end: plan skips the model while it still matches */
  audited?: AuditKey;
  /** that audit's findings, for the next drift comparison and the badge */
  findings?: FindingSummary[];
  /** that audit's directions file, relative to the state folder */
  directions?: string;
  /** changed, but beyond a run's matrix: audited first by a later run */
  pending?: { since: string; reason: string };
  /** oldest first, at most MAX_HISTORY */
  history: HistoryEntry[];
}

export interface SweepState {
  schemaVersion: typeof STATE_SCHEMA_VERSION;
  tool: { name: string; version: string };
  updatedAt: string;
  models: Record<string, ModelState>;
}

export function emptyState(now = new Date()): SweepState {
  return { schemaVersion: STATE_SCHEMA_VERSION, tool: { name: TOOL_NAME, version: VERSION }, updatedAt: now.toISOString(), models: {} };
}

// ---------------------------------------------------------------- validation

const str = (o: Origin, v: unknown, p: string) => text(o, v, p, MAX_TEXT);
const opt = <T>(v: unknown, f: (v: unknown) => T): T | undefined => (v === undefined ? undefined : f(v));
const CONCLUSIONS = ["pass", "fail", "neutral", "missing"] as const;
const OUTCOMES = ["audited", "failed", "missing", "skipped"] as const;

export function auditKey(o: Origin, v: unknown, p: string): AuditKey {
  const m = mapping(o, v, p, ["revision", "baseRevision", "toolVersion", "policyDigest"]);
  return {
    revision: str(o, required(o, m.revision, `${p}.revision`), `${p}.revision`),
    baseRevision: str(o, required(o, m.baseRevision, `${p}.baseRevision`), `${p}.baseRevision`),
    toolVersion: str(o, required(o, m.toolVersion, `${p}.toolVersion`), `${p}.toolVersion`),
    policyDigest: str(o, required(o, m.policyDigest, `${p}.policyDigest`), `${p}.policyDigest`),
  };
}

function findingSummary(o: Origin, v: unknown, p: string): FindingSummary {
  const m = mapping(o, v, p, ["key", "severity", "title"]);
  return { key: str(o, m.key, `${p}.key`), severity: oneOf(o, m.severity, `${p}.severity`, SEVERITIES), title: str(o, m.title, `${p}.title`) };
}

const findingList = (o: Origin, v: unknown, p: string) => list(o, v, p, { max: MAX_REMEMBERED_FINDINGS }).map((f, i) => findingSummary(o, f, itemPath(p, i)));
const finite = (o: Origin, v: unknown, p: string) => number(o, v, p, { min: -Number.MAX_VALUE, max: Number.MAX_VALUE });
const count = (o: Origin, v: unknown, p: string) => integer(o, v, p, { min: 0, max: Number.MAX_SAFE_INTEGER });

function driftSummary(o: Origin, v: unknown, p: string): DriftSummary {
  const keys = ["from", "to", "compared", "rotated", "share", "maxRotation", "medianRotation", "sigma1Ratio", "stableRankBefore", "stableRankAfter", "newFindings", "vanishedFindings", "finding"];
  const m = mapping(o, v, p, keys);
  const d: DriftSummary = {
    from: str(o, m.from, `${p}.from`),
    to: str(o, m.to, `${p}.to`),
    compared: count(o, m.compared, `${p}.compared`),
    rotated: count(o, m.rotated, `${p}.rotated`),
    share: finite(o, m.share, `${p}.share`),
    maxRotation: finite(o, m.maxRotation, `${p}.maxRotation`),
    medianRotation: finite(o, m.medianRotation, `${p}.medianRotation`),
    sigma1Ratio: finite(o, m.sigma1Ratio, `${p}.sigma1Ratio`),
    stableRankBefore: finite(o, m.stableRankBefore, `${p}.stableRankBefore`),
    stableRankAfter: finite(o, m.stableRankAfter, `${p}.stableRankAfter`),
    newFindings: findingList(o, m.newFindings, `${p}.newFindings`),
    vanishedFindings: findingList(o, m.vanishedFindings, `${p}.vanishedFindings`),
  };
  if (m.finding !== undefined) d.finding = findingSummary(o, m.finding, `${p}.finding`);
  return d;
}

function historyEntry(o: Origin, v: unknown, p: string): HistoryEntry {
  const keys = ["at", "outcome", "conclusion", "revision", "key", "reason", "failOn", "findings", "topFinding", "stableRank", "drift"];
  const m = mapping(o, v, p, keys);
  const h: HistoryEntry = {
    at: str(o, required(o, m.at, `${p}.at`), `${p}.at`),
    outcome: oneOf(o, m.outcome, `${p}.outcome`, OUTCOMES),
    conclusion: oneOf(o, m.conclusion, `${p}.conclusion`, CONCLUSIONS),
  };
  const revision = opt(m.revision, (x) => str(o, x, `${p}.revision`));
  if (revision !== undefined) h.revision = revision;
  if (m.key !== undefined) h.key = auditKey(o, m.key, `${p}.key`);
  const reason = opt(m.reason, (x) => str(o, x, `${p}.reason`));
  if (reason !== undefined) h.reason = reason;
  if (m.failOn !== undefined) h.failOn = oneOf(o, m.failOn, `${p}.failOn`, FAIL_ON);
  if (m.findings !== undefined) {
    const f = mapping(o, m.findings, `${p}.findings`, SEVERITIES);
    h.findings = { high: count(o, f.high ?? 0, `${p}.findings.high`), medium: count(o, f.medium ?? 0, `${p}.findings.medium`), low: count(o, f.low ?? 0, `${p}.findings.low`), info: count(o, f.info ?? 0, `${p}.findings.info`) };
  }
  if (m.topFinding !== undefined) {
    const t = mapping(o, m.topFinding, `${p}.topFinding`, ["severity", "title", "confidence"]);
    h.topFinding = { severity: oneOf(o, t.severity, `${p}.topFinding.severity`, SEVERITIES), title: str(o, t.title, `${p}.topFinding.title`), confidence: number(o, t.confidence, `${p}.topFinding.confidence`, { min: 0, max: 1 }) };
  }
  if (m.stableRank !== undefined) {
    const q = mapping(o, m.stableRank, `${p}.stableRank`, ["median", "p10", "p90"]);
    h.stableRank = { median: finite(o, q.median, `${p}.stableRank.median`), p10: finite(o, q.p10, `${p}.stableRank.p10`), p90: finite(o, q.p90, `${p}.stableRank.p90`) };
  }
  if (m.drift !== undefined) h.drift = driftSummary(o, m.drift, `${p}.drift`);
  return h;
}

function modelState(o: Origin, v: unknown, p: string): ModelState {
  const keys = ["source", "kind", "firstSeen", "lastSeen", "lastAudited", "audited", "findings", "directions", "pending", "history"];
  const m = mapping(o, v, p, keys);
  const s: ModelState = {
    source: str(o, required(o, m.source, `${p}.source`), `${p}.source`),
    firstSeen: str(o, required(o, m.firstSeen, `${p}.firstSeen`), `${p}.firstSeen`),
    lastSeen: str(o, required(o, m.lastSeen, `${p}.lastSeen`), `${p}.lastSeen`),
    history: list(o, m.history ?? [], `${p}.history`, { max: MAX_HISTORY }).map((h, i) => historyEntry(o, h, itemPath(`${p}.history`, i))),
  };
  if (m.kind !== undefined) s.kind = oneOf(o, m.kind, `${p}.kind`, ["lora", "full"] as const);
  if (m.lastAudited !== undefined) s.lastAudited = str(o, m.lastAudited, `${p}.lastAudited`);
  if (m.audited !== undefined) s.audited = auditKey(o, m.audited, `${p}.audited`);
  if (m.findings !== undefined) s.findings = findingList(o, m.findings, `${p}.findings`);
  if (m.directions !== undefined) {
    const d = str(o, m.directions, `${p}.directions`);
    // a path read from a downloaded file must not lead out of the state folder
    if (!DIRECTIONS_NAME.test(d)) o.mismatch(`${p}.directions`, "directions/<model>-<hash>.safetensors", d);
    s.directions = d;
  }
  if (m.pending !== undefined) {
    const q = mapping(o, m.pending, `${p}.pending`, ["since", "reason"]);
    s.pending = { since: str(o, q.since, `${p}.pending.since`), reason: str(o, q.reason, `${p}.pending.reason`) };
  }
  return s;
}

/** Validate a parsed state.json. */
export function validateState(raw: unknown, file: string): SweepState {
  const o = fileOrigin(file);
  const m = mapping(o, raw, "", ["schemaVersion", "tool", "updatedAt", "models"]);
  if (m.schemaVersion !== STATE_SCHEMA_VERSION) o.mismatch("schemaVersion", String(STATE_SCHEMA_VERSION), m.schemaVersion);
  const models = mapping(o, m.models, "models", Object.keys((m.models as object | null) ?? {}));
  const out: Record<string, ModelState> = {};
  for (const [name, v] of Object.entries(models)) {
    if (!isValidModelName(name)) o.fail(`models.${name.slice(0, 100)}`, "is not a model name (letters, digits, '.', '_', '-')");
    out[name] = modelState(o, v, `models.${name}`);
  }
  const tool = mapping(o, m.tool ?? {}, "tool", ["name", "version"]);
  return {
    schemaVersion: STATE_SCHEMA_VERSION,
    tool: { name: typeof tool.name === "string" ? tool.name : TOOL_NAME, version: typeof tool.version === "string" ? tool.version : "unknown" },
    updatedAt: str(o, m.updatedAt, "updatedAt"),
    models: out,
  };
}

/**
 * The state in `dir` (an empty state when the folder or its state.json does not exist yet: the
 * first run). A path that exists but is not a folder is refused: `--state .sweep-state/state.json`
 * read as "no state" would re-audit every model, and collect could not write there.
 */
export async function loadState(dir: string): Promise<SweepState> {
  if ((await pathExists(dir)) && !(await isDirectory(dir))) throw new InputError(`is not a folder: --state takes the folder that holds ${STATE_FILE} and ${DIRECTIONS_DIR}/`, dir);
  const file = join(dir, STATE_FILE);
  if (!(await pathExists(file))) return emptyState();
  return validateState(parseJsonText(await readTextFile(file, MAX_STATE_BYTES), file), file);
}

/** The file name a model's directions get in the state folder. */
export function directionsName(model: string, contentSha256: string): string {
  return `${DIRECTIONS_DIR}/${model}-${contentSha256.slice(0, 12)}.safetensors`;
}

/**
 * Write the state: `directions` (name → bytes, from directionsName) first, then state.json
 * atomically; then remove directions files the new state no longer names.
 */
export async function saveState(dir: string, state: SweepState, directions: ReadonlyMap<string, Uint8Array>, now = new Date()): Promise<void> {
  try {
    await mkdir(join(dir, DIRECTIONS_DIR), { recursive: true });
  } catch (e) {
    throw new InputError(`cannot create the state folder (${(e as NodeJS.ErrnoException).code ?? String(e)})`, dir);
  }
  for (const [name, bytes] of directions) await writeFileAtomic(join(dir, name), bytes);
  const out: SweepState = { ...state, tool: { name: TOOL_NAME, version: VERSION }, updatedAt: now.toISOString() };
  await writeFileAtomic(join(dir, STATE_FILE), `${JSON.stringify(out, null, 2)}\n`);
  const named = new Set(Object.values(out.models).flatMap((m) => (m.directions ? [m.directions] : [])));
  for (const f of await readdir(join(dir, DIRECTIONS_DIR))) {
    const rel = `${DIRECTIONS_DIR}/${f}`;
    if (DIRECTIONS_NAME.test(rel) && !named.has(rel)) await rm(join(dir, rel), { force: true });
  }
}

/** Append to a model's history, dropping the oldest entries beyond MAX_HISTORY. */
export function appendHistory(model: ModelState, entry: HistoryEntry): void {
  model.history.push(entry);
  if (model.history.length > MAX_HISTORY) model.history.splice(0, model.history.length - MAX_HISTORY);
}
