/**
 * Resolve a Hugging Face Hub model id (`org/name` or `org/name@revision`) to a local folder in
 * the standard Hugging Face cache layout, so runners reuse weights between runs and with the
 * Python tools:
 *
 *   $HF_HUB_CACHE (default $HF_HOME/hub, default ~/.cache/huggingface/hub)
 *     models--org--name/
 *       blobs/<etag>                      file contents (etag = LFS sha256, else git blob sha1)
 *       refs/<revision>                   the commit sha the revision pointed at
 *       snapshots/<commit>/<path>         relative symlink to ../../blobs/<etag>
 *
 * Only safetensors, config and tokenizer files are fetched (never pickles), each blob is
 * verified against its hash before it is renamed into place, and progress is reported.
 * Network access goes through @huggingface/hub with an injectable `fetch` and hub URL
 * (HF_ENDPOINT), so tests run it against a local server that answers like the Hub.
 */
import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { lstat, mkdir, readFile, readlink, rename, rm, stat, symlink, writeFile, copyFile } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, relative } from "node:path";
import { downloadFile, listFiles, modelInfo, type ListFileEntry } from "@huggingface/hub";
import { BackendError, InputError } from "../errors";
import { progress as makeProgress, log } from "../progress";

/** The public Hub; HF_ENDPOINT overrides it (mirrors, private hubs, tests). */
export const DEFAULT_HUB_URL = "https://huggingface.co";

/**
 * Files a checkpoint needs for delta-audit: weights as safetensors (and their shard index),
 * the model config, and tokenizer/chat-template files. Everything else (pickled .bin/.pt,
 * ONNX/GGUF exports, README images) is skipped: pickles can execute code when loaded, and the
 * rest is dead weight on a CI runner.
 */
const WANTED_FILE = /^(?:[^/]*\.safetensors|model\.safetensors\.index\.json|config\.json|generation_config\.json|tokenizer\.json|tokenizer_config\.json|special_tokens_map\.json|tokenizer\.model|chat_template\.jinja|chat_template\.json|added_tokens\.json|vocab\.json|merges\.txt|adapter_config\.json)$/;

/** Hub repo names: `org/name`, letters, digits, `-`, `_`, `.`; at most 96 characters each (Hub rule). */
const REPO_PART = /^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$/;
/** Git revisions we accept: branch/tag names and commit shas, no path tricks. */
const REVISION = /^[A-Za-z0-9][A-Za-z0-9._\/-]{0,254}$/;
const COMMIT_SHA = /^[0-9a-f]{40}$/;

export interface HubId {
  /** `org/name` */
  repo: string;
  /** branch, tag or commit; "main" when not given */
  revision: string;
}

/** True when `s` has the shape of a Hub model id rather than a local path. */
export function looksLikeHubId(s: string): boolean {
  try {
    parseHubId(s);
    return true;
  } catch {
    return false;
  }
}

/**
 * Parse `org/name` or `org/name@revision`. Throws InputError naming the value and the
 * expected form. The Hub also has single-segment legacy ids (`gpt2`); those are accepted too.
 */
export function parseHubId(spec: string, what = "base"): HubId {
  const s = spec.trim();
  const at = s.indexOf("@");
  const repo = at < 0 ? s : s.slice(0, at);
  const revision = at < 0 ? "main" : s.slice(at + 1);
  const parts = repo.split("/");
  const okRepo = parts.length >= 1 && parts.length <= 2 && parts.every((p) => REPO_PART.test(p) && !p.includes(".."));
  const okRev = REVISION.test(revision) && !revision.split("/").includes("..") && !revision.endsWith(".lock");
  if (!okRepo || !okRev) {
    throw new InputError(`invalid Hub model id '${spec}'. Expected format {org}/{name} or {org}/{name}@{revision}`, what);
  }
  return { repo, revision };
}

/** The cache root: HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub (same order as huggingface_hub). */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  return join(home, "hub");
}

/** `models--org--name`, the folder name huggingface_hub uses. */
export function repoFolderName(repo: string): string {
  return ["models", ...repo.split("/")].join("--");
}

export interface ResolveHubOptions {
  /** cache root; default hubCacheDir() */
  cacheDir?: string;
  /** default HF_ENDPOINT or https://huggingface.co */
  hubUrl?: string;
  /** default HF_TOKEN (gated and private models) */
  accessToken?: string;
  fetch?: typeof fetch;
  /** don't touch the network: use what the cache has (HF_HUB_OFFLINE=1) */
  offline?: boolean;
  quiet?: boolean;
}

export interface ResolvedModel {
  repo: string;
  revision: string;
  commit: string;
  /** snapshots/<commit>: a Hugging Face checkpoint folder */
  dir: string;
  /** files fetched this time (the rest came from the cache) */
  downloaded: string[];
}

/** Options filled from the environment the way huggingface_hub reads it. */
export function hubOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): ResolveHubOptions {
  const offline = env.HF_HUB_OFFLINE;
  return {
    cacheDir: hubCacheDir(env),
    hubUrl: env.HF_ENDPOINT || DEFAULT_HUB_URL,
    accessToken: env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined,
    offline: offline === "1" || offline?.toLowerCase() === "true",
  };
}

/**
 * Resolve `spec` (a Hub id) to a local checkpoint folder, downloading what the cache lacks.
 * Network and server faults → BackendError (exit 3); a bad id or a repo without a
 * config.json → InputError (exit 2).
 */
export async function resolveHubModel(spec: string, opts: ResolveHubOptions = {}): Promise<ResolvedModel> {
  const { repo, revision } = parseHubId(spec);
  const env = hubOptionsFromEnv();
  const cacheDir = opts.cacheDir ?? env.cacheDir!;
  const hubUrl = (opts.hubUrl ?? env.hubUrl!).replace(/\/+$/, "");
  const accessToken = opts.accessToken ?? env.accessToken;
  const storage = join(cacheDir, repoFolderName(repo));
  const common = { repo: { type: "model" as const, name: repo }, hubUrl, fetch: opts.fetch, ...(accessToken ? { accessToken } : {}) };

  if (opts.offline ?? env.offline) {
    const commit = await cachedCommit(storage, revision);
    const dir = commit ? join(storage, "snapshots", commit) : undefined;
    if (!commit || !dir || !(await exists(join(dir, "config.json")))) {
      throw new InputError(`'${spec}' is not in the Hugging Face cache at ${cacheDir} and HF_HUB_OFFLINE is set`, "base");
    }
    return { repo, revision, commit, dir, downloaded: [] };
  }

  let commit: string;
  let entries: ListFileEntry[];
  try {
    const info = await modelInfo({ ...common, name: repo, revision, additionalFields: ["sha"] });
    const sha = (info as { sha?: unknown }).sha;
    if (typeof sha !== "string" || !COMMIT_SHA.test(sha)) throw new BackendError(`the Hub returned no commit sha for '${spec}'`);
    commit = sha;
    entries = [];
    for await (const e of listFiles({ ...common, recursive: true, revision: commit })) entries.push(e);
  } catch (err) {
    const status = (err as { statusCode?: unknown })?.statusCode;
    if (typeof status === "number" && status >= 400 && status < 500) throw hubError(err, spec);
    // a cached snapshot of this revision keeps the audit going when the Hub is unreachable
    const cached = await cachedCommit(storage, revision);
    if (cached && (await exists(join(storage, "snapshots", cached, "config.json")))) {
      log(`hub: ${describe(err)}; using the cached snapshot ${cached.slice(0, 12)} of ${repo}`);
      return { repo, revision, commit: cached, dir: join(storage, "snapshots", cached), downloaded: [] };
    }
    throw hubError(err, spec);
  }

  const wanted = entries.filter((e) => e.type === "file" && WANTED_FILE.test(e.path));
  if (!wanted.some((e) => e.path === "config.json")) {
    throw new InputError(`Hub model '${spec}' has no config.json at its top level`, "base");
  }
  if (!wanted.some((e) => e.path.endsWith(".safetensors"))) {
    throw new InputError(`Hub model '${spec}' has no .safetensors weights (pickled weights are never loaded)`, "base");
  }

  const snapshot = join(storage, "snapshots", commit);
  if (revision !== commit) {
    await mkdir(join(storage, "refs", dirname(revision)), { recursive: true });
    await writeFile(join(storage, "refs", revision), commit);
  }
  const totalBytes = wanted.reduce((n, e) => n + (e.lfs?.size ?? e.size ?? 0), 0);
  const bar = makeProgress(`hub ${repo}`, totalBytes, { quiet: opts.quiet });
  const downloaded: string[] = [];
  for (const entry of wanted) {
    const fetched = await ensureFile(storage, snapshot, entry, { ...common, revision: commit }, (n) => bar.tick(n, entry.path), spec);
    if (fetched) downloaded.push(entry.path);
    else bar.tick(entry.lfs?.size ?? entry.size ?? 0, entry.path);
  }
  bar.done(`${downloaded.length} downloaded, ${wanted.length - downloaded.length} cached`);
  return { repo, revision, commit, dir: snapshot, downloaded };
}

type DownloadParams = Parameters<typeof downloadFile>[0];

/** Put one file into blobs/ and link it from the snapshot. Returns true when it was downloaded. */
async function ensureFile(
  storage: string,
  snapshot: string,
  entry: ListFileEntry,
  params: Omit<DownloadParams, "path">,
  onBytes: (n: number) => void,
  spec: string,
): Promise<boolean> {
  const etag = entry.lfs?.oid ?? entry.oid;
  if (!etag || !/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(etag)) {
    throw new BackendError(`Hub listing for '${spec}' has no usable hash for ${entry.path}`);
  }
  const pointer = join(snapshot, entry.path);
  const blob = join(storage, "blobs", etag);
  if (await exists(pointer)) return false;
  await mkdir(dirname(blob), { recursive: true });
  await mkdir(dirname(pointer), { recursive: true });
  let fetched = false;
  if (!(await exists(blob))) {
    await downloadBlob(blob, entry, params, onBytes, spec);
    fetched = true;
  }
  await linkInto(blob, pointer);
  return fetched;
}

/** Stream to `<blob>.incomplete`, verify the hash, then rename: a crash never leaves a bad blob. */
async function downloadBlob(
  blobPath: string,
  entry: ListFileEntry,
  params: Omit<DownloadParams, "path">,
  onBytes: (n: number) => void,
  spec: string,
): Promise<void> {
  const incomplete = `${blobPath}.incomplete`;
  // LFS files are named by the sha256 of their content; small git files by the git blob sha1
  const lfs = entry.lfs;
  const hash = lfs ? createHash("sha256") : createHash("sha1");
  const expectedSize = lfs?.size ?? entry.size;
  if (!lfs) hash.update(`blob ${expectedSize}\0`);
  let size = 0;
  try {
    const file = await downloadFile({ ...params, path: entry.path } as DownloadParams);
    if (!file) throw new BackendError(`the Hub has no file ${entry.path} in '${spec}'`);
    const out = createWriteStream(incomplete);
    const done = new Promise<void>((resolve, reject) => {
      out.on("error", reject);
      out.on("finish", resolve);
    });
    const reader = file.stream().getReader();
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      size += value.byteLength;
      hash.update(value);
      if (!out.write(value)) await new Promise<void>((r) => out.once("drain", () => r()));
      onBytes(value.byteLength);
    }
    out.end();
    await done;
  } catch (err) {
    await rm(incomplete, { force: true });
    throw hubError(err, spec);
  }
  const digest = hash.digest("hex");
  const expected = lfs ? lfs.oid : entry.oid;
  if (size !== expectedSize || digest !== expected) {
    await rm(incomplete, { force: true });
    throw new BackendError(`download of ${entry.path} from '${spec}' is corrupt (got ${size} bytes, hash ${digest.slice(0, 12)}; expected ${expectedSize} bytes, ${String(expected).slice(0, 12)})`);
  }
  await rename(incomplete, blobPath);
}

/** Relative symlink like huggingface_hub; a plain copy where symlinks are not allowed. */
async function linkInto(blob: string, pointer: string): Promise<void> {
  await rm(pointer, { force: true });
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch {
    await copyFile(blob, pointer);
  }
}

async function cachedCommit(storage: string, revision: string): Promise<string | undefined> {
  if (COMMIT_SHA.test(revision)) return revision;
  try {
    const sha = (await readFile(join(storage, "refs", revision), "utf8")).trim();
    return COMMIT_SHA.test(sha) ? sha : undefined;
  } catch {
    return undefined;
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    // a dangling symlink counts as missing; remove it so it can be recreated
    try {
      await lstat(p);
      await readlink(p);
      await rm(p, { force: true });
    } catch {
      /* not there at all */
    }
    return false;
  }
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message.split("\n")[0]! : String(err);
}

/** Map a Hub failure to our errors: 401/403/404 are the user's id or token; the rest is a fault. */
function hubError(err: unknown, spec: string): Error {
  if (err instanceof InputError || err instanceof BackendError) return err;
  const status = (err as { statusCode?: unknown })?.statusCode;
  if (status === 401 || status === 403) {
    return new InputError(`Hub model '${spec}' needs access: set HF_TOKEN to a token that can read it (HTTP ${status})`, "base");
  }
  if (status === 404) return new InputError(`Hub model '${spec}' was not found (HTTP 404)`, "base");
  if (err instanceof TypeError && /access token/i.test(err.message)) return new InputError(`HF_TOKEN: ${err.message}`, "HF_TOKEN");
  return new BackendError(`Hub download of '${spec}' failed: ${describe(err)}`, { cause: err });
}
