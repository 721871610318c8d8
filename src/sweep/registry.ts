/**
 * The sweep registry: the models a scheduled sweep audits, one entry each.
 *
 * ```yaml
 * defaults: { base: Qwen/Qwen2.5-0.5B-Instruct, config: .github/delta-audit.yml }
 * models:
 *   - name: support-bot
 *     adapter: registry/support-bot
 *   - name: summariser
 *     base: models/base
 *     finetuned: registry/summariser
 * ```
 *
 * Paths are relative to the registry file. The file is untrusted input: every key is checked
 * and a bad one is reported with its path (`models[1].adapter`), exit 2.
 */
import { readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parseDocument } from "yaml";
import { InputError } from "../errors";
import { pathExistsSync } from "../io/fs-util";

/** A registry is a list of models, not a dataset: more than this is almost surely a mistake. */
export const MAX_MODELS = 1000;
/** GitHub Actions allows at most 256 jobs per matrix. */
export const MAX_MATRIX_JOBS = 256;
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

export interface Registry {
  file: string;
  entries: SweepEntry[];
}

type Obj = Record<string, unknown>;

function fail(file: string, path: string, what: string): never {
  throw new InputError(`${path}: ${what}`, file);
}

function mapping(file: string, v: unknown, path: string, allowed: readonly string[]): Obj {
  if (v === null || typeof v !== "object" || Array.isArray(v)) fail(file, path, "expected a mapping");
  for (const k of Object.keys(v as Obj)) {
    if (!allowed.includes(k)) fail(file, path ? `${path}.${k}` : k, `unknown key (allowed: ${allowed.join(", ")})`);
  }
  return v as Obj;
}

function text(file: string, v: unknown, path: string): string {
  if (typeof v !== "string" || v.trim() === "") fail(file, path, "expected a non-empty string");
  if (v.length > 1000) fail(file, path, "longer than 1000 characters");
  return v.trim();
}

/** A path relative to the registry, unless it has the shape of a Hub id and no such folder exists. */
function location(file: string, v: unknown, path: string, hubAllowed: boolean): string {
  const s = text(file, v, path);
  const local = isAbsolute(s) ? s : resolve(dirname(file), s);
  if (hubAllowed && !isAbsolute(s) && !s.startsWith(".") && !pathExistsSync(local)) return s;
  return local;
}

/** Parse and validate a registry's text. Pure apart from existence checks of local paths. */
export function parseRegistry(source: string, file: string): Registry {
  const doc = parseDocument(source, { uniqueKeys: true });
  if (doc.errors.length > 0) throw new InputError(`not valid YAML: ${doc.errors[0]!.message.split("\n")[0]}`, file);
  const root = mapping(file, doc.toJS({ maxAliasCount: 100 }) ?? {}, "", ["defaults", "models"]);
  const defaults = root.defaults === undefined ? {} : mapping(file, root.defaults, "defaults", ["base", "config"]);
  const defBase = defaults.base === undefined ? undefined : location(file, defaults.base, "defaults.base", true);
  const defConfig = defaults.config === undefined ? undefined : location(file, defaults.config, "defaults.config", false);
  if (!Array.isArray(root.models) || root.models.length === 0) fail(file, "models", "expected a non-empty list");
  if (root.models.length > MAX_MODELS) fail(file, "models", `at most ${MAX_MODELS} entries, got ${root.models.length}`);
  const seen = new Set<string>();
  const entries = root.models.map((raw, i): SweepEntry => {
    const p = `models[${i}]`;
    const o = mapping(file, raw, p, ["name", "base", "adapter", "finetuned", "config"]);
    const name = text(file, o.name, `${p}.name`);
    if (!isValidModelName(name)) fail(file, `${p}.name`, `expected letters, digits, '.', '_' or '-' (it names folders and badges), got '${name.slice(0, 100)}'`);
    if (seen.has(name)) fail(file, `${p}.name`, `duplicate name '${name}'`);
    seen.add(name);
    const base = o.base === undefined ? defBase : location(file, o.base, `${p}.base`, true);
    if (!base) fail(file, `${p}.base`, "is required (here or in defaults.base)");
    if ((o.adapter === undefined) === (o.finetuned === undefined)) fail(file, p, "needs exactly one of adapter or finetuned");
    const entry: SweepEntry = { name, base };
    if (o.adapter !== undefined) entry.adapter = location(file, o.adapter, `${p}.adapter`, false);
    if (o.finetuned !== undefined) entry.finetuned = location(file, o.finetuned, `${p}.finetuned`, false);
    const config = o.config === undefined ? defConfig : location(file, o.config, `${p}.config`, false);
    if (config) entry.config = config;
    return entry;
  });
  return { file, entries };
}

export function loadRegistry(file: string): Registry {
  let size: number;
  try {
    size = statSync(file).size;
  } catch (e) {
    throw new InputError(`cannot read the registry: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, file);
  }
  if (size > MAX_REGISTRY_BYTES) throw new InputError(`the registry is ${size} bytes; at most ${MAX_REGISTRY_BYTES}`, file);
  return parseRegistry(readFileSync(file, "utf8"), resolve(file));
}

export function entryNamed(reg: Registry, name: string): SweepEntry {
  const e = reg.entries.find((x) => x.name === name);
  if (!e) throw new InputError(`no model named '${name}' (the registry has: ${reg.entries.map((x) => x.name).slice(0, 20).join(", ")})`, reg.file);
  return e;
}

/** The GitHub Actions job matrix: `{include: [{name}, ...]}`, one job per model. */
export function planMatrix(reg: Registry): { include: Array<{ name: string; kind: "lora" | "full" }> } {
  if (reg.entries.length > MAX_MATRIX_JOBS) {
    throw new InputError(`${reg.entries.length} models exceed GitHub's ${MAX_MATRIX_JOBS} jobs per matrix; split the registry`, reg.file);
  }
  return { include: reg.entries.map((e) => ({ name: e.name, kind: e.adapter ? "lora" : "full" })) };
}
