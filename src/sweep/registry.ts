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
import { dirname, isAbsolute, resolve } from "node:path";
import { InputError } from "../errors";
import { pathExistsSync } from "../io/fs-util";
import { parseYamlText, readTextFileSync } from "../io/read-text";
import { fileOrigin, itemPath, list, mapping, required, text, type Origin } from "../validate";

/** A registry is a list of models, not a dataset: more than this is almost surely a mistake. */
export const MAX_MODELS = 1000;
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

export interface Registry {
  file: string;
  entries: SweepEntry[];
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

/** Parse and validate a registry's text. Pure apart from existence checks of local paths. */
export function parseRegistry(source: string, file: string): Registry {
  const o: Origin = fileOrigin(file);
  const dir = dirname(file);
  const root = mapping(o, parseYamlText(source, file) ?? {}, "", ["defaults", "models"]);
  const defaults = root.defaults === undefined ? {} : mapping(o, root.defaults, "defaults", ["base", "config"]);
  const defBase = defaults.base === undefined ? undefined : location(o, dir, defaults.base, "defaults.base", true);
  const defConfig = defaults.config === undefined ? undefined : location(o, dir, defaults.config, "defaults.config", false);
  const models = list(o, root.models, "models", { min: 1, max: MAX_MODELS });
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
  return { file, entries };
}

/** Read and validate a registry file: bounded, regular files only (a FIFO must not hang `sweep plan`). */
export function loadRegistry(file: string): Registry {
  return parseRegistry(readTextFileSync(file, MAX_REGISTRY_BYTES), resolve(file));
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
