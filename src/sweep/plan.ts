/**
 * `sweep plan`: expand the registry (its models and its sources), give every model its audit
 * key (its revision, its base's revision, the delta-audit version, the policy's digest) and
 * choose the models to audit this run: those whose key changed since their last completed
 * audit (all of them with `all`), previously pending ones first, at most `maxJobs` (a GitHub
 * matrix holds 256 jobs); the rest are pending and go first next run.
 *
 * The plan file pins what each job audits (Hub ids at the commit found now, local paths
 * relative to the working directory), so `sweep run` audits exactly what was planned and
 * `sweep collect` knows every model of the run, audited or not.
 */
import { createHash } from "node:crypto";
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
import { InputError } from "../errors";
import { writeFileAtomic } from "../io/atomic";
import { isDirectory, pathExists } from "../io/fs-util";
import { looksLikeHubId, parseHubId } from "../io/hub";
import { isHubIdShaped } from "../io/model-ref";
import { parseJsonText, readTextFile } from "../io/read-text";
import { defaultConfig, loadConfig, type ScanConfig } from "../config";
import { SEVERITIES } from "../judge/types";
import { TOOL_NAME, VERSION } from "../version";
import { boolean, fileOrigin, integer, itemPath, list, mapping, number, oneOf, required, text, type Origin } from "../validate";
import { MAX_DIRECTIONS_K } from "../delta/directions";
import { HubAccessProblem, hubAdapterBase, hubCommit, listHubSource, type HubAccess } from "./hub-source";
import { expandGlob, folderKind, folderModelName, folderRevision, localAdapterBase } from "./local-source";
import { isValidModelName, MAX_MATRIX_JOBS, type DriftSettings, type Registry, type Source } from "./registry";
import { auditKey, type AuditKey, type SweepState } from "./state";

export const PLAN_SCHEMA_VERSION = 1;
/** Plans list every model of a registry: generous, but bounded. */
const MAX_PLAN_BYTES = 64 << 20;
const MAX_PLAN_MODELS = 100_000;

/** A model a job reads: a Hub id pinned to a commit, or a folder relative to the working directory. */
export type ModelRef = { hub: string } | { path: string };

export interface PlannedModel {
  name: string;
  /** where it came from: `models[2]`, `sources[0].hub` */
  source: string;
  kind: "lora" | "full";
  base: ModelRef;
  adapter?: ModelRef;
  finetuned?: ModelRef;
  /** delta-audit.yml, relative to the working directory */
  config?: string;
  key: AuditKey;
  /** why it is audited this run; absent: unchanged since its last audit */
  change?: string;
}

/** A model a source found that cannot be audited as it is, with the reason (the index shows it). */
export interface SkippedModel {
  name: string;
  source: string;
  reason: string;
}

export interface SweepPlan {
  schemaVersion: typeof PLAN_SCHEMA_VERSION;
  tool: { name: string; version: string };
  createdAt: string;
  all: boolean;
  maxJobs: number;
  drift: DriftSettings;
  /** every auditable model found this run */
  models: PlannedModel[];
  /** audited this run (the matrix), in order */
  jobs: string[];
  /** changed, but beyond maxJobs: first in the next run */
  pending: string[];
  skipped: SkippedModel[];
}

export interface PlanOptions {
  /** state of earlier runs (default: none, so every model is new) */
  state?: SweepState;
  /** audit every model, changed or not */
  all?: boolean;
  /** jobs in this run's matrix, 1..MAX_MATRIX_JOBS (default MAX_MATRIX_JOBS) */
  maxJobs?: number;
  hub?: HubAccess;
  /** local paths in the plan are relative to this (default: the process's working directory) */
  cwd?: string;
  /** plan only this model (sweep run without a plan file) */
  only?: string;
  now?: Date;
}

/** A model as a source found it, before its revisions are known. */
interface Candidate {
  name: string;
  source: string;
  kind: "lora" | "full";
  /** folder (absolute) or Hub id */
  base?: string;
  adapter?: string;
  finetuned?: string;
  config?: string;
  /** the Hub commit the listing gave */
  revision?: string;
  problem?: string;
}

/** The revision of a listed folder that does not exist (yet). */
export const ABSENT_REVISION = "absent";

const short = (rev: string) => (rev.startsWith("sha256:") ? rev.slice(7, 19) : rev.slice(0, 12));

/** JSON with object keys sorted, so equal policies hash equal however they were written. */
function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]));
  return v;
}

/** The policy's digest: the resolved config (every default applied) and the drift settings. */
export function policyDigest(config: ScanConfig, drift: DriftSettings): string {
  return `sha256:${createHash("sha256").update(JSON.stringify(canonical({ config, drift }))).digest("hex")}`;
}

function describeProblem(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split("\n")[0]!.slice(0, 500);
}

/** The candidates of one source. Access problems of single models become `problem`s. */
async function expandSource(src: Source, reg: Registry, access: HubAccess): Promise<Candidate[]> {
  const dir = resolve(reg.file, "..");
  const config = src.config ?? reg.defaults.config;
  const withConfig = (c: Candidate): Candidate => (config ? { ...c, config } : c);
  if (src.kind === "local") {
    const out: Candidate[] = [];
    // `models/**` matches every folder on the way down (models/, models/team/): only those holding
    // a model are the registry's; a glob that names the folders themselves reports the others
    const descends = src.glob.split("/").filter((s) => s !== "").at(-1) === "**";
    for (const folder of await expandGlob(dir, src.glob)) {
      const name = folderModelName(src.prefix, folder);
      const kind = await folderKind(folder);
      const c: Candidate = { name, source: src.path, kind: kind ?? "lora" };
      if (!kind && descends) continue;
      if (!kind) {
        // relative to the registry, as its glob is: the index is published, the runner's paths are not its business
        out.push({ ...c, problem: `${relative(dir, folder) || "."} is neither a PEFT adapter (adapter_config.json) nor a checkpoint (config.json + *.safetensors)` });
        continue;
      }
      if (kind === "lora") c.adapter = folder;
      else c.finetuned = folder;
      c.base = src.base ?? (kind === "lora" ? await localAdapterBase(folder) : undefined) ?? reg.defaults.base;
      if (!c.base) c.problem = kind === "lora" ? "adapter_config.json names no base model found here; set base in the source" : "a full fine-tune needs a base: set base in the source or defaults.base";
      out.push(withConfig(c));
    }
    return out;
  }
  const out: Candidate[] = [];
  for (const found of await listHubSource(src, access)) {
    const name = `${src.prefix}${found.repo.split("/")[1]}`;
    const c: Candidate = { name, source: src.path, kind: found.kind, revision: found.sha };
    const pinned = `${found.repo}@${found.sha}`;
    if (found.kind === "lora") c.adapter = pinned;
    else c.finetuned = pinned;
    if (found.problem) {
      out.push({ ...c, problem: found.problem });
      continue;
    }
    try {
      c.base = src.base ?? (found.kind === "lora" ? await hubAdapterBase(found.repo, found.sha, access) : found.cardBase) ?? reg.defaults.base;
      if (!c.base) c.problem = found.kind === "lora" ? "adapter_config.json names no Hub base model; set base in the source" : "the model card names no base_model; set base in the source";
    } catch (e) {
      if (!(e instanceof HubAccessProblem)) throw e;
      c.problem = e.message;
    }
    out.push(withConfig(c));
  }
  return out;
}

/** Revisions, looked up once per plan however many models share a base. */
class RevisionCache {
  private readonly cache = new Map<string, Promise<string>>();
  constructor(private readonly access: HubAccess) {}
  /**
   * A folder's digest, or a Hub id's commit. A listed folder that does not exist is ABSENT, not
   * skipped: its job fails with the scan's own message and the index shows it (the registry
   * asked for that model; the plan is not the place to guess why it is missing).
   */
  of(spec: string, isFolder: boolean): Promise<string> {
    const key = `${isFolder ? "dir" : "hub"}:${spec}`;
    let p = this.cache.get(key);
    if (!p) {
      p = isFolder ? isDirectory(spec).then((d) => (d ? folderRevision(spec) : ABSENT_REVISION)) : hubCommit(spec, this.access);
      this.cache.set(key, p);
    }
    return p;
  }
}

/** A path relative to `cwd` when it lies below it (jobs run in the same checkout, at other absolute paths). */
function cwdRelative(path: string, cwd: string): string {
  const rel = relative(cwd, path);
  return rel === "" ? "." : rel.startsWith(`..${sep}`) || rel === ".." || isAbsolute(rel) ? path : rel;
}

function refOf(spec: string, isFolder: boolean, cwd: string, commit: string): ModelRef {
  return isFolder ? { path: cwdRelative(spec, cwd) } : { hub: `${parseHubId(spec).repo}@${commit}` };
}

/** Why a model is audited this run, or undefined when its last audit still stands. */
export function changeOf(key: AuditKey, state: SweepState | undefined, name: string, all: boolean): string | undefined {
  if (all) return "--all";
  const s = state?.models[name];
  const last = s?.history.at(-1);
  if (!s || !s.audited) return last && last.outcome !== "skipped" ? "no audit of it has completed yet" : "new";
  if (last && (last.outcome === "failed" || last.outcome === "missing")) return `the last audit did not complete${last.reason ? `: ${last.reason.slice(0, 200)}` : ""}`;
  const a = s.audited;
  if (a.revision !== key.revision) return `revision ${short(a.revision)} → ${short(key.revision)}`;
  if (a.baseRevision !== key.baseRevision) return `base revision ${short(a.baseRevision)} → ${short(key.baseRevision)}`;
  if (a.toolVersion !== key.toolVersion) return `delta-audit ${a.toolVersion} → ${key.toolVersion}`;
  if (a.policyDigest !== key.policyDigest) return "the policy changed";
  return undefined;
}

/** Expand, key and choose. Network and filesystem reads only; nothing is written. */
export async function planSweep(reg: Registry, opts: PlanOptions = {}): Promise<SweepPlan> {
  const now = opts.now ?? new Date();
  const cwd = resolve(opts.cwd ?? process.cwd());
  const access = opts.hub ?? {};
  const maxJobs = opts.maxJobs ?? MAX_MATRIX_JOBS;
  if (!Number.isInteger(maxJobs) || maxJobs < 1 || maxJobs > MAX_MATRIX_JOBS) throw new InputError(`expected 1..${MAX_MATRIX_JOBS}, got ${maxJobs}`, "--max-jobs");

  // the registry reads an entry's adapter or fine-tune as a path relative to it; one that does
  // not exist there and was written as a Hub id ({org}/{name}[@rev]) is one (io/model-ref.ts's rule)
  const regDir = dirname(reg.file);
  const asWritten = async (p: string) => {
    const rel = relative(regDir, p);
    return !(await pathExists(p)) && isHubIdShaped(rel) ? rel : p;
  };
  const candidates: Candidate[] = [];
  for (const [i, e] of reg.entries.entries()) {
    candidates.push({
      name: e.name,
      source: itemPath("models", i),
      kind: e.adapter ? "lora" : "full",
      base: e.base,
      ...(e.adapter ? { adapter: await asWritten(e.adapter) } : { finetuned: await asWritten(e.finetuned!) }),
      ...(e.config ? { config: e.config } : {}),
    });
  }
  for (const src of reg.sources) candidates.push(...(await expandSource(src, reg, access)));

  const skipped: SkippedModel[] = [];
  const taken = new Map<string, string>();
  const unique: Candidate[] = [];
  for (const c of candidates) {
    if (opts.only !== undefined && c.name !== opts.only) continue;
    if (!isValidModelName(c.name)) {
      skipped.push({ name: c.name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^[^A-Za-z0-9]/, "x").slice(0, 100), source: c.source, reason: `'${c.name.slice(0, 100)}' is not a usable model name (letters, digits, '.', '_', '-')` });
      continue;
    }
    const first = taken.get(c.name);
    if (first !== undefined) {
      // a new repository elsewhere must not stop an unattended sweep: it is reported, not audited
      skipped.push({ name: `${c.name}`, source: c.source, reason: `the name '${c.name}' is already taken by ${first}; give ${c.source} a prefix` });
      continue;
    }
    taken.set(c.name, c.source);
    if (c.problem) skipped.push({ name: c.name, source: c.source, reason: c.problem });
    else unique.push(c);
  }

  const revisions = new RevisionCache(access);
  const digests = new Map<string, string>();
  const digestFor = (config: string | undefined): string => {
    const k = config ?? "";
    if (!digests.has(k)) digests.set(k, policyDigest(config ? loadConfig(config) : defaultConfig(), reg.drift));
    return digests.get(k)!;
  };
  const models: PlannedModel[] = [];
  for (const c of unique) {
    // a broken policy file is the registry's problem, for every model: exit 2
    const policy = digestFor(c.config);
    try {
      const subject = (c.adapter ?? c.finetuned)!;
      const subjectIsFolder = c.revision === undefined && !isHubIdShaped(subject);
      const revision = c.revision ?? (await revisions.of(subject, subjectIsFolder));
      const base = c.base!;
      const baseIsFolder = (await isDirectory(base)) || !looksLikeHubId(base);
      const baseRevision = await revisions.of(base, baseIsFolder);
      const key: AuditKey = { revision, baseRevision, toolVersion: VERSION, policyDigest: policy };
      const m: PlannedModel = {
        name: c.name,
        source: c.source,
        kind: c.kind,
        base: refOf(base, baseIsFolder, cwd, baseRevision),
        ...(c.adapter ? { adapter: refOf(c.adapter, subjectIsFolder, cwd, revision) } : { finetuned: refOf(c.finetuned!, subjectIsFolder, cwd, revision) }),
        ...(c.config ? { config: cwdRelative(c.config, cwd) } : {}),
        key,
      };
      const change = changeOf(key, opts.state, c.name, opts.all ?? false);
      if (change) m.change = change;
      models.push(m);
    } catch (e) {
      // one model's folder or Hub access: that model is skipped with the reason, the sweep goes on
      if (!(e instanceof HubAccessProblem || e instanceof InputError)) throw e;
      skipped.push({ name: c.name, source: c.source, reason: describeProblem(e) });
    }
  }

  // pending models first (longest waiting first), then the registry's order
  const changed = models.filter((m) => m.change);
  const since = (m: PlannedModel) => opts.state?.models[m.name]?.pending?.since;
  const order = changed.map((m, i) => ({ m, i, s: since(m) })).sort((a, b) => (a.s && b.s ? a.s.localeCompare(b.s) : a.s ? -1 : b.s ? 1 : 0) || a.i - b.i);
  const jobs = order.slice(0, maxJobs).map((x) => x.m.name);
  const pending = order.slice(maxJobs).map((x) => x.m.name);
  return { schemaVersion: PLAN_SCHEMA_VERSION, tool: { name: TOOL_NAME, version: VERSION }, createdAt: now.toISOString(), all: opts.all ?? false, maxJobs, drift: reg.drift, models, jobs, pending, skipped };
}

/** The GitHub Actions job matrix of a plan: `{include: [{name, kind}, …]}`, the jobs in order. */
export function planMatrix(plan: SweepPlan): { include: Array<{ name: string; kind: "lora" | "full" }> } {
  const kinds = new Map(plan.models.map((m) => [m.name, m.kind]));
  return { include: plan.jobs.map((name) => ({ name, kind: kinds.get(name)! })) };
}

export async function writePlan(file: string, plan: SweepPlan): Promise<void> {
  await writeFileAtomic(file, `${JSON.stringify(plan, null, 2)}\n`);
}

// ---------------------------------------------------------------- reading a plan back

const MAX_TEXT = 4000;
const str = (o: Origin, v: unknown, p: string) => text(o, v, p, MAX_TEXT);

function modelRef(o: Origin, v: unknown, p: string): ModelRef {
  const m = mapping(o, v, p, ["hub", "path"]);
  if ((m.hub === undefined) === (m.path === undefined)) o.fail(p, "needs exactly one of hub or path");
  if (m.hub !== undefined) {
    const hub = str(o, m.hub, `${p}.hub`);
    if (!looksLikeHubId(hub)) o.mismatch(`${p}.hub`, "a Hub id {org}/{name}@{revision}", hub);
    return { hub };
  }
  return { path: str(o, m.path, `${p}.path`) };
}

function plannedModel(o: Origin, v: unknown, p: string): PlannedModel {
  const m = mapping(o, v, p, ["name", "source", "kind", "base", "adapter", "finetuned", "config", "key", "change"]);
  const name = str(o, required(o, m.name, `${p}.name`), `${p}.name`);
  if (!isValidModelName(name)) o.mismatch(`${p}.name`, "a model name", name);
  if ((m.adapter === undefined) === (m.finetuned === undefined)) o.fail(p, "needs exactly one of adapter or finetuned");
  const out: PlannedModel = {
    name,
    source: str(o, required(o, m.source, `${p}.source`), `${p}.source`),
    kind: oneOf(o, m.kind, `${p}.kind`, ["lora", "full"] as const),
    base: modelRef(o, required(o, m.base, `${p}.base`), `${p}.base`),
    key: auditKey(o, required(o, m.key, `${p}.key`), `${p}.key`),
  };
  if (m.adapter !== undefined) out.adapter = modelRef(o, m.adapter, `${p}.adapter`);
  if (m.finetuned !== undefined) out.finetuned = modelRef(o, m.finetuned, `${p}.finetuned`);
  if (m.config !== undefined) out.config = str(o, m.config, `${p}.config`);
  if (m.change !== undefined) out.change = str(o, m.change, `${p}.change`);
  return out;
}

function driftOf(o: Origin, v: unknown): DriftSettings {
  const m = mapping(o, v, "drift", ["enabled", "k", "angleDegrees", "share", "severity"]);
  return {
    enabled: boolean(o, m.enabled, "drift.enabled"),
    k: integer(o, m.k, "drift.k", { min: 1, max: MAX_DIRECTIONS_K }),
    angleDegrees: number(o, m.angleDegrees, "drift.angleDegrees", { min: 1, max: 90 }),
    share: number(o, m.share, "drift.share", { min: 0, max: 1 }),
    severity: oneOf(o, m.severity, "drift.severity", SEVERITIES),
  };
}

/** Validate a parsed plan file (it travels between jobs as an artifact). */
export function validatePlan(raw: unknown, file: string): SweepPlan {
  const o = fileOrigin(file);
  const m = mapping(o, raw, "", ["schemaVersion", "tool", "createdAt", "all", "maxJobs", "drift", "models", "jobs", "pending", "skipped"]);
  if (m.schemaVersion !== PLAN_SCHEMA_VERSION) o.mismatch("schemaVersion", String(PLAN_SCHEMA_VERSION), m.schemaVersion);
  const models = list(o, m.models, "models", { max: MAX_PLAN_MODELS }).map((x, i) => plannedModel(o, x, itemPath("models", i)));
  const known = new Set(models.map((x) => x.name));
  if (known.size !== models.length) o.fail("models", "names a model twice");
  const names = (key: "jobs" | "pending") =>
    list(o, m[key], key, { max: MAX_PLAN_MODELS }).map((x, i) => {
      const n = str(o, x, itemPath(key, i));
      if (!known.has(n)) o.fail(itemPath(key, i), `'${n.slice(0, 100)}' is not one of the plan's models`);
      return n;
    });
  const jobs = names("jobs");
  if (jobs.length > MAX_MATRIX_JOBS) o.fail("jobs", `at most ${MAX_MATRIX_JOBS} (one matrix)`);
  const skipped = list(o, m.skipped ?? [], "skipped", { max: MAX_PLAN_MODELS }).map((x, i) => {
    const p = itemPath("skipped", i);
    const s = mapping(o, x, p, ["name", "source", "reason"]);
    const name = str(o, s.name, `${p}.name`);
    if (!isValidModelName(name)) o.mismatch(`${p}.name`, "a model name", name);
    return { name, source: str(o, s.source, `${p}.source`), reason: str(o, s.reason, `${p}.reason`) };
  });
  const tool = mapping(o, m.tool ?? {}, "tool", ["name", "version"]);
  return {
    schemaVersion: PLAN_SCHEMA_VERSION,
    tool: { name: String(tool.name ?? TOOL_NAME), version: String(tool.version ?? "unknown") },
    createdAt: str(o, m.createdAt, "createdAt"),
    all: boolean(o, m.all, "all"),
    maxJobs: integer(o, m.maxJobs, "maxJobs", { min: 1, max: MAX_MATRIX_JOBS }),
    drift: driftOf(o, m.drift),
    models,
    jobs,
    pending: names("pending"),
    skipped,
  };
}

export async function loadPlan(file: string): Promise<SweepPlan> {
  if (!(await pathExists(file))) throw new InputError("file not found (the plan `sweep plan --out` wrote)", file);
  return validatePlan(parseJsonText(await readTextFile(file, MAX_PLAN_BYTES), file), file);
}

/** The planned model named `name`, or exit 2 listing what the plan has. */
export function plannedNamed(plan: SweepPlan, name: string, file: string): PlannedModel {
  const m = plan.models.find((x) => x.name === name);
  if (!m) {
    const skipped = plan.skipped.find((x) => x.name === name);
    if (skipped) throw new InputError(`model '${name}' was skipped by the plan: ${skipped.reason}`, file);
    throw new InputError(`no model named '${name}' (the plan has: ${plan.models.map((x) => x.name).slice(0, 20).join(", ")})`, file);
  }
  return m;
}
