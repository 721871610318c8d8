/**
 * The sweep registry: the models a scheduled sweep audits, listed one by one and/or found at
 * plan time in sources (a Hub author or organisation, local folder globs).
 *
 * ```yaml
 * defaults: { base: Qwen/Qwen2.5-0.5B-Instruct, config: .github/delta-audit.yml }
 * models:
 *   - name: support-bot
 *     adapter: registry/support-bot
 *   - name: summariser
 *     base: models/base
 *     finetuned: registry/summariser
 * sources:
 *   - hub: { author: my-org, match: "support-*", library: peft }
 *   - local: { glob: "adapters/*" }
 * drift: { angle: 45, share: 0.25, severity: medium }
 * ```
 *
 * Paths are relative to the registry file. The file is untrusted input: every key is checked
 * and a bad one is reported with its path (`models[1].adapter`), exit 2.
 */
import { dirname, isAbsolute, resolve } from "node:path";
import { pathExistsSync } from "../io/fs-util";
import { parseYamlText, readTextFileSync } from "../io/read-text";
import { looksLikeHubId } from "../io/hub";
import { SEVERITIES, type Severity } from "../judge/types";
import { DEFAULT_DIRECTIONS_K, MAX_DIRECTIONS_K } from "../delta/directions";
import { boolean, fileOrigin, integer, itemPath, list, mapping, number, oneOf, required, text, type Origin } from "../validate";

/** A registry is a list of models, not a dataset: more than this is almost surely a mistake. */
export const MAX_MODELS = 1000;
/** Sources a registry may name; each expands to many models. */
export const MAX_SOURCES = 50;
/** Models one Hub source lists by default, and at most: an organisation, not the whole Hub. */
export const DEFAULT_SOURCE_LIMIT = 1000;
export const MAX_SOURCE_LIMIT = 10_000;
/** GitHub Actions allows at most 256 jobs per matrix. */
export const MAX_MATRIX_JOBS = 256;
/** A thousand entries of a few short paths each fit many times over; more is not a registry. */
const MAX_REGISTRY_BYTES = 1 << 20;
/** Names become folder names, artifact names and badge file names. */
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function isValidModelName(name: string): boolean {
  return NAME_RE.test(name) && !name.includes("..");
}

export interface SweepEntry {
  name: string;
  /** local folder or Hub id (`org/name[@revision]`) */
  base: string;
  adapter?: string;
  finetuned?: string;
  /** delta-audit.yml for this entry (absolute) */
  config?: string;
}

/** Where a source's models take their base and policy from, and how they are named. */
interface SourceCommon {
  /** the source's key path in the registry (`sources[0]`), for messages and the state */
  path: string;
  /** overrides the adapter's own base_model_name_or_path (folder or Hub id) */
  base?: string;
  config?: string;
  /** put before every name found (names must stay unique across the registry) */
  prefix: string;
}

/** Models of one Hub author or organisation, listed at plan time. */
export interface HubSource extends SourceCommon {
  kind: "hub";
  author: string;
  /** a glob on the repository's name (`support-*`): `*` any run of characters, `?` one */
  match?: string;
  /** the Hub's own name search */
  search?: string;
  /** e.g. `peft`: only repositories of this library */
  library?: string;
  /** only fine-tunes of this base (the model card's base_model, or the Hub's base_model tags) */
  baseModel?: string;
  limit: number;
}

/** Model folders matching a glob relative to the registry (`adapters/*`, `models/**`). */
export interface LocalSource extends SourceCommon {
  kind: "local";
  glob: string;
}

export type Source = HubSource | LocalSource;

/** When an update counts as drift: see sweep/drift.ts. */
export interface DriftSettings {
  enabled: boolean;
  /** top singular directions kept per module */
  k: number;
  /** a module turned by at least this many degrees (its largest principal angle) is rotated */
  angleDegrees: number;
  /** the update is a large rotation when at least this share of the compared modules rotated */
  share: number;
  /** the drift finding's severity (against the report's fail-on, like any finding) */
  severity: Severity;
}

/**
 * 45° is halfway to orthogonal: the old top directions are closer to gone than kept. A quarter of
 * the modules keeps one unstable module (two nearly equal σ swapping) from being a rotation.
 */
export const DEFAULT_DRIFT: Readonly<DriftSettings> = Object.freeze({ enabled: true, k: DEFAULT_DIRECTIONS_K, angleDegrees: 45, share: 0.25, severity: "medium" });

export interface Registry {
  file: string;
  entries: SweepEntry[];
  sources: Source[];
  drift: DriftSettings;
  /** defaults.base and defaults.config, resolved */
  defaults: { base?: string; config?: string };
}

/** Paths and names are short; a longer value is not a path anyone typed. */
const MAX_VALUE_CHARS = 1000;

/** A non-blank string, trimmed. */
function trimmed(o: Origin, v: unknown, path: string): string {
  return text(o, v, path, MAX_VALUE_CHARS).trim();
}

/** A path relative to the registry, unless it has the shape of a Hub id and no such folder exists. */
function location(o: Origin, registryDir: string, v: unknown, path: string, hubAllowed: boolean): string {
  const s = trimmed(o, v, path);
  const local = isAbsolute(s) ? s : resolve(registryDir, s);
  if (hubAllowed && !isAbsolute(s) && !s.startsWith(".") && !pathExistsSync(local)) return s;
  return local;
}

const HUB_NAME_PART = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
const LIBRARY = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** A glob on a repository name: the name's characters plus `*` and `?`. */
const NAME_GLOB = /^[A-Za-z0-9._*?-]{1,96}$/;
const PREFIX = /^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$/;

function sourceCommon(o: Origin, dir: string, m: Record<string, unknown>, p: string): SourceCommon {
  const c: SourceCommon = { path: p, prefix: "" };
  if (m.base !== undefined) c.base = location(o, dir, m.base, `${p}.base`, true);
  if (m.config !== undefined) c.config = location(o, dir, m.config, `${p}.config`, false);
  if (m.prefix !== undefined) {
    c.prefix = trimmed(o, m.prefix, `${p}.prefix`);
    if (!PREFIX.test(c.prefix)) o.mismatch(`${p}.prefix`, "letters, digits, '.', '_' or '-' (at most 50)", m.prefix);
  }
  return c;
}

function hubSource(o: Origin, dir: string, v: unknown, p: string): HubSource {
  const m = mapping(o, v, p, ["author", "match", "search", "library", "base-model", "base", "config", "prefix", "limit"]);
  const author = trimmed(o, required(o, m.author, `${p}.author`), `${p}.author`);
  if (!HUB_NAME_PART.test(author)) o.mismatch(`${p}.author`, "a Hub user or organisation name", author);
  const src: HubSource = { kind: "hub", author, limit: DEFAULT_SOURCE_LIMIT, ...sourceCommon(o, dir, m, p) };
  if (m.match !== undefined) {
    src.match = trimmed(o, m.match, `${p}.match`);
    if (!NAME_GLOB.test(src.match)) o.mismatch(`${p}.match`, "a glob on repository names (letters, digits, '.', '_', '-', '*', '?')", m.match);
  }
  if (m.search !== undefined) src.search = trimmed(o, m.search, `${p}.search`).slice(0, 200);
  if (m.library !== undefined) {
    src.library = trimmed(o, m.library, `${p}.library`);
    if (!LIBRARY.test(src.library)) o.mismatch(`${p}.library`, "a library name such as peft", m.library);
  }
  if (m["base-model"] !== undefined) {
    src.baseModel = trimmed(o, m["base-model"], `${p}.base-model`);
    if (!looksLikeHubId(src.baseModel) || src.baseModel.includes("@")) o.mismatch(`${p}.base-model`, "a Hub model id {org}/{name}", m["base-model"]);
  }
  if (m.limit !== undefined) src.limit = integer(o, m.limit, `${p}.limit`, { min: 1, max: MAX_SOURCE_LIMIT });
  return src;
}

function localSource(o: Origin, dir: string, v: unknown, p: string): LocalSource {
  const m = mapping(o, v, p, ["glob", "base", "config", "prefix"]);
  const glob = trimmed(o, required(o, m.glob, `${p}.glob`), `${p}.glob`);
  if (isAbsolute(glob)) o.fail(`${p}.glob`, "must be relative to the registry file");
  return { kind: "local", glob, ...sourceCommon(o, dir, m, p) };
}

function sourceOf(o: Origin, dir: string, v: unknown, p: string): Source {
  const m = mapping(o, v, p, ["hub", "local"]);
  if ((m.hub === undefined) === (m.local === undefined)) o.fail(p, "needs exactly one of hub or local");
  return m.hub !== undefined ? hubSource(o, dir, m.hub, `${p}.hub`) : localSource(o, dir, m.local, `${p}.local`);
}

function driftSection(o: Origin, v: unknown): DriftSettings {
  if (v === false) return { ...DEFAULT_DRIFT, enabled: false };
  const m = mapping(o, v, "drift", ["enabled", "k", "angle", "share", "severity"]);
  const d: DriftSettings = { ...DEFAULT_DRIFT };
  if (m.enabled !== undefined) d.enabled = boolean(o, m.enabled, "drift.enabled");
  if (m.k !== undefined) d.k = integer(o, m.k, "drift.k", { min: 1, max: MAX_DIRECTIONS_K });
  if (m.angle !== undefined) d.angleDegrees = number(o, m.angle, "drift.angle", { min: 1, max: 90, expected: "degrees, 1..90" });
  if (m.share !== undefined) d.share = number(o, m.share, "drift.share", { min: 0, max: 1 });
  if (m.severity !== undefined) d.severity = oneOf(o, m.severity, "drift.severity", SEVERITIES);
  return d;
}

/** Parse and validate a registry's text. Pure apart from existence checks of local paths. */
export function parseRegistry(source: string, file: string): Registry {
  const o: Origin = fileOrigin(file);
  const dir = dirname(file);
  const root = mapping(o, parseYamlText(source, file) ?? {}, "", ["defaults", "models", "sources", "drift"]);
  const defaults = root.defaults === undefined ? {} : mapping(o, root.defaults, "defaults", ["base", "config"]);
  const defBase = defaults.base === undefined ? undefined : location(o, dir, defaults.base, "defaults.base", true);
  const defConfig = defaults.config === undefined ? undefined : location(o, dir, defaults.config, "defaults.config", false);
  const sources = root.sources === undefined ? [] : list(o, root.sources, "sources", { min: 1, max: MAX_SOURCES }).map((v, i) => sourceOf(o, dir, v, itemPath("sources", i)));
  // a registry of sources alone needs no explicit models
  const models = root.models === undefined && sources.length > 0 ? [] : list(o, root.models, "models", { min: 1, max: MAX_MODELS });
  const seen = new Set<string>();
  const entries = models.map((raw, i): SweepEntry => {
    const p = itemPath("models", i);
    const m = mapping(o, raw, p, ["name", "base", "adapter", "finetuned", "config"]);
    const name = trimmed(o, required(o, m.name, `${p}.name`), `${p}.name`);
    if (!isValidModelName(name)) o.fail(`${p}.name`, `expected letters, digits, '.', '_' or '-' (it names folders and badges), got '${name.slice(0, 100)}'`);
    if (seen.has(name)) o.fail(`${p}.name`, `duplicate name '${name}'`);
    seen.add(name);
    const base = m.base === undefined ? defBase : location(o, dir, m.base, `${p}.base`, true);
    if (!base) o.fail(`${p}.base`, "is required (here or in defaults.base)");
    if ((m.adapter === undefined) === (m.finetuned === undefined)) o.fail(p, "needs exactly one of adapter or finetuned");
    const entry: SweepEntry = { name, base };
    if (m.adapter !== undefined) entry.adapter = location(o, dir, m.adapter, `${p}.adapter`, false);
    if (m.finetuned !== undefined) entry.finetuned = location(o, dir, m.finetuned, `${p}.finetuned`, false);
    const config = m.config === undefined ? defConfig : location(o, dir, m.config, `${p}.config`, false);
    if (config) entry.config = config;
    return entry;
  });
  const drift = root.drift === undefined ? { ...DEFAULT_DRIFT } : driftSection(o, root.drift);
  return { file, entries, sources, drift, defaults: { ...(defBase ? { base: defBase } : {}), ...(defConfig ? { config: defConfig } : {}) } };
}

/** Read and validate a registry file: bounded, regular files only (a FIFO must not hang `sweep plan`). */
export function loadRegistry(file: string): Registry {
  return parseRegistry(readTextFileSync(file, MAX_REGISTRY_BYTES), resolve(file));
}
