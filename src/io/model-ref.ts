/**
 * One way to name a model, everywhere. Every model argument — the CLI's `--base`, `--model`,
 * `--adapter`, `--finetuned` (scan, spectrum, truncate, logits, generate, estimate, serve's NAME=…,
 * a sweep registry's entries) and the Action's `base` input — is a local path or a Hugging Face Hub id
 * `{org}/{name}[@{revision}]`, decided here by one rule:
 *
 *   1. an existing local path wins (a folder that happens to be named like an id is a folder);
 *   2. otherwise a string shaped like a Hub id is resolved by io/hub.ts into the standard Hugging
 *      Face cache (HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE, HF_TOKEN, HF_ENDPOINT honoured);
 *   3. otherwise it stays a path, and the folder's opener says `<arg>: does not exist; …`.
 *
 * A Hub model is named `{org}/{name}@{commit}` in outputs: the exact revision a result is about,
 * and a value every command accepts again, so a CI run can be repeated locally with its inputs.
 */
import { resolve } from "node:path";
import { BackendError, InputError } from "../errors";
import { log } from "../progress";
import { pathExists } from "./fs-util";
import { looksLikeHubId, parseHubId, resolveHubModel, type ResolvedModel } from "./hub";

export interface ModelRef {
  /** the folder to read: the path as given (or against `cwd`), or the Hub snapshot in the cache */
  dir: string;
  /** how outputs name it: the path as given, or `{org}/{name}@{commit}` */
  label: string;
  /** set when the argument was a Hub id */
  hub?: ResolvedModel;
}

/** Fetches a Hub id into the cache (default io/hub.ts resolveHubModel with the HF_* settings). */
export type HubResolver = (spec: string) => Promise<ResolvedModel>;

export interface ResolveModelOptions {
  /** what names the argument in errors: a flag (`--base`), an Action input (`input 'base'`) */
  what: string;
  /** relative paths are looked up against this folder (default: as given, the working directory) */
  cwd?: string;
  /**
   * false: only a Hub id is accepted (a name read from a file someone else controls, such as an
   * adapter's base_model_name_or_path in a pull request, must not pick a folder on the runner)
   */
  local?: boolean;
  hub?: HubResolver;
}

/**
 * True for `{org}/{name}` or `{org}/{name}@{revision}`. A single word (`gpt2`) is not taken as
 * an id here: as a command-line argument it is far more often a folder name with a typo, and a
 * typo must say "does not exist" rather than ask the Hub.
 */
export function isHubIdShaped(arg: string): boolean {
  if (arg !== arg.trim()) return false;
  try {
    return parseHubId(arg).repo.includes("/");
  } catch {
    return false;
  }
}

/** The label outputs use for a resolved Hub model. */
export function hubLabel(model: ResolvedModel): string {
  return `${model.repo}@${model.commit}`;
}

/** Resolve one model argument by the rule at the top of this file. */
export async function resolveModelRef(arg: string, opts: ResolveModelOptions): Promise<ModelRef> {
  const { what } = opts;
  if (opts.local !== false) {
    const dir = opts.cwd === undefined ? arg : resolve(opts.cwd, arg);
    if (arg === "" || (await pathExists(dir)) || !isHubIdShaped(arg)) return { dir, label: arg };
  } else if (!looksLikeHubId(arg)) {
    // no folder to mistype here: a legacy single-word id (`gpt2`) is an id
    throw new InputError(`'${arg}' is not a Hub model id ({org}/{name}[@{revision}])`, what);
  }
  let model: ResolvedModel;
  try {
    model = await (opts.hub ?? ((spec: string) => resolveHubModel(spec)))(arg);
  } catch (err) {
    // the Hub's errors name the id; this names the argument it came from too
    if (err instanceof InputError) throw new InputError(err.message, what);
    if (err instanceof BackendError) throw new BackendError(`${what}: ${err.message}`, { cause: err.cause ?? err });
    throw err;
  }
  const label = hubLabel(model);
  log(`hub: ${what} ${arg} is ${label}`);
  return { dir: model.dir, label, hub: model };
}

/**
 * A command's model flags resolved in order (one download at a time, one progress bar): each
 * key of `flags` present in `args` is replaced by its folder. Call it after every other flag is
 * checked, so a typo in one does not wait for a download. `labels`, when given, receives how
 * outputs name each resolved flag (the path as given, or `{org}/{name}@{commit}`).
 */
export async function resolveModelFlags<T extends object>(
  args: T,
  flags: { [K in keyof T]?: string },
  opts: Omit<ResolveModelOptions, "what"> = {},
  labels?: { [K in keyof T]?: string },
): Promise<T> {
  const out = { ...args };
  for (const key of Object.keys(flags) as Array<keyof T>) {
    const value = args[key];
    if (typeof value !== "string") continue;
    const ref = await resolveModelRef(value, { ...opts, what: flags[key]! });
    (out as Record<keyof T, unknown>)[key] = ref.dir;
    if (labels) labels[key] = ref.label;
  }
  return out;
}
