/**
 * Local model folders for a sweep: folder globs relative to the registry (`adapters/*`,
 * `models/**`), what kind of model a folder holds, and its revision — a sha256 over the names
 * and bytes of the files an audit reads, so a folder is audited again exactly when they change
 * (a fresh checkout's new mtimes change nothing).
 */
import { createHash } from "node:crypto";
import { createReadStream, type Dirent } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { InputError } from "../errors";
import { readTextFile } from "../io/read-text";
import { looksLikeHubId } from "../io/hub";
import { nameGlob } from "./hub-source";

/** `**` descends at most this deep: a registry of folders, not a filesystem walk. */
const MAX_GLOB_DEPTH = 8;
/** Folders one glob may match: more is a glob that matched far more than a registry. */
export const MAX_GLOB_MATCHES = 10_000;
/** The files an audit reads (weights, configs, tokenizer, chat template): what a revision covers. */
const REVISION_FILE = /(?:\.safetensors|\.json|\.jinja|^tokenizer\.model|^merges\.txt)$/;
const MAX_ADAPTER_CONFIG_BYTES = 1 << 20;

async function entriesOf(dir: string): Promise<Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isDirectory() ?? false;
}

/** Every folder at or below `dir`, at most `depth` levels down (symlinked folders are not entered). */
async function descendants(dir: string, depth: number): Promise<string[]> {
  const out = [dir];
  if (depth === 0) return out;
  for (const e of await entriesOf(dir)) {
    if (e.isDirectory() && !e.name.startsWith(".")) out.push(...(await descendants(join(dir, e.name), depth - 1)));
  }
  return out;
}

/**
 * The folders matching `pattern` below `root`, sorted: `*` and `?` within one path segment,
 * `**` any number of segments; names starting with `.` only where the pattern spells the dot.
 */
export async function expandGlob(root: string, pattern: string): Promise<string[]> {
  let current = [resolve(root)];
  for (const seg of pattern.split("/").filter((s) => s !== "" && s !== ".")) {
    const next: string[] = [];
    if (seg === "**") {
      for (const d of current) next.push(...(await descendants(d, MAX_GLOB_DEPTH)));
    } else if (!/[*?]/.test(seg)) {
      for (const d of current) if (await isDir(join(d, seg))) next.push(join(d, seg));
    } else {
      const re = nameGlob(seg);
      for (const d of current) {
        for (const e of await entriesOf(d)) {
          if (e.name.startsWith(".") && !seg.startsWith(".")) continue;
          if (re.test(e.name) && (await isDir(join(d, e.name)))) next.push(join(d, e.name));
        }
      }
    }
    current = [...new Set(next)];
    if (current.length > MAX_GLOB_MATCHES) throw new InputError(`matches more than ${MAX_GLOB_MATCHES} folders`, pattern);
  }
  return current.sort();
}

/** What a folder holds: a PEFT adapter, a checkpoint, or neither. */
export async function folderKind(dir: string): Promise<"lora" | "full" | undefined> {
  const names = (await entriesOf(dir)).map((e) => e.name);
  if (names.includes("adapter_config.json")) return "lora";
  if (names.includes("config.json") && names.some((n) => n.endsWith(".safetensors"))) return "full";
  return undefined;
}

/** A local adapter's base_model_name_or_path: an existing folder (absolute) or a Hub id; undefined otherwise. */
export async function localAdapterBase(dir: string): Promise<string | undefined> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readTextFile(join(dir, "adapter_config.json"), MAX_ADAPTER_CONFIG_BYTES));
  } catch {
    return undefined;
  }
  const b = (raw as { base_model_name_or_path?: unknown } | null)?.base_model_name_or_path;
  if (typeof b !== "string" || b.trim() === "") return undefined;
  const s = b.trim();
  if (s.startsWith("/") && (await isDir(s))) return s;
  return looksLikeHubId(s) && !s.startsWith(".") ? s : undefined;
}

/**
 * A local folder's revision: `sha256:` + the hash of the names and bytes of its top-level
 * files an audit reads (REVISION_FILE), in name order. Links are followed to regular files;
 * anything else under such a name is refused (a FIFO must not hang the plan).
 */
export async function folderRevision(dir: string): Promise<string> {
  const h = createHash("sha256");
  const names = (await readdir(dir).catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot read folder: ${e.code ?? String(e)}`, dir);
  }))
    .filter((n) => REVISION_FILE.test(n))
    .sort();
  for (const name of names) {
    const p = join(dir, name);
    const st = await stat(p).catch(() => undefined);
    if (!st?.isFile()) throw new InputError(`${name} is not a regular file`, dir);
    h.update(`${name}\0`);
    await new Promise<void>((ok, fail) => {
      const s = createReadStream(p);
      s.on("data", (c) => h.update(c));
      s.on("end", () => ok());
      s.on("error", fail);
    });
    h.update("\0");
  }
  return `sha256:${h.digest("hex")}`;
}

/** The model name a folder gets: the source's prefix and the folder's own name. */
export function folderModelName(prefix: string, dir: string): string {
  return `${prefix}${basename(dir)}`;
}
