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
 *
 * Failures, each one line naming the id (and never the token):
 *   HF_HUB_OFFLINE with nothing cached, 401/403 (gated or private), 404 (no such repository),
 *   an unknown revision, a repository without config.json / adapter_config.json or safetensors
 *     → InputError (exit 2): the user can fix the id, the token or the setting;
 *   the Hub unreachable (connection refused, host not found, timeout) with nothing cached, a 5xx,
 *   a corrupt download → BackendError (exit 3): the input may be fine, and a retry may pass.
 */
import { createHash } from "node:crypto";
import { createWriteStream, readFileSync } from "node:fs";
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
  /** default HF_TOKEN, else the token `huggingface-cli login` stored (gated and private models) */
  accessToken?: string;
  fetch?: typeof fetch;
  /** don't touch the network: use what the cache has (HF_HUB_OFFLINE=1) */
  offline?: boolean;
  /**
   * how long one request may wait for the Hub's answer (its status and headers; a download's
   * body may take longer) before the run gives up on it: HF_HUB_DOWNLOAD_TIMEOUT seconds, as
   * huggingface_hub reads it; default DEFAULT_HUB_TIMEOUT_MS
   */
  timeoutMs?: number;
  quiet?: boolean;
}

/** A Hub that accepts the connection and never answers must not hang a CI job. */
export const DEFAULT_HUB_TIMEOUT_MS = 60_000;

/** Thrown inside fetch when the Hub did not answer within the timeout (mapped to one line). */
class HubTimeout extends Error {}

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
  const offline = env.HF_HUB_OFFLINE?.trim().toLowerCase();
  return {
    cacheDir: hubCacheDir(env),
    hubUrl: env.HF_ENDPOINT || DEFAULT_HUB_URL,
    accessToken: env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || storedToken(env),
    offline: offline === "1" || offline === "true" || offline === "yes" || offline === "on",
    timeoutMs: timeoutFromEnv(env.HF_HUB_DOWNLOAD_TIMEOUT),
  };
}

/** HF_HUB_DOWNLOAD_TIMEOUT in seconds (a positive number, at most a day); unset: the default. */
function timeoutFromEnv(raw: string | undefined): number | undefined {
  if (raw === undefined || raw.trim() === "") return undefined;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400) {
    throw new InputError(`expected a number of seconds between 0 and 86400, got '${raw.slice(0, 40)}'`, "HF_HUB_DOWNLOAD_TIMEOUT");
  }
  return Math.round(seconds * 1000);
}

/** A token file is one line; anything longer is not one `huggingface-cli login` wrote. */
const MAX_TOKEN_FILE_BYTES = 4096;

/**
 * The token `huggingface-cli login` (`hf auth login`) stored: HF_TOKEN_PATH, else $HF_HOME/token,
 * read as huggingface_hub reads it, so a local rerun of a CI job needs no extra setting.
 */
function storedToken(env: NodeJS.ProcessEnv): string | undefined {
  const home = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  try {
    const text = readFileSync(env.HF_TOKEN_PATH || join(home, "token"));
    if (text.length > MAX_TOKEN_FILE_BYTES) return undefined;
    return text.toString("utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}

/** What a snapshot must hold to be a model (config.json) or a PEFT adapter (adapter_config.json). */
const MARKER_FILES = ["config.json", "adapter_config.json"];

/**
 * Resolve `spec` (a Hub id) to a local checkpoint or adapter folder, downloading what the cache
 * lacks. Errors name `spec` and say what to do (see the top of this file for their exit codes).
 */
export async function resolveHubModel(spec: string, opts: ResolveHubOptions = {}): Promise<ResolvedModel> {
  const { repo, revision } = parseHubId(spec);
  const env = hubOptionsFromEnv();
  const cacheDir = opts.cacheDir ?? env.cacheDir!;
  const hubUrl = (opts.hubUrl ?? env.hubUrl!).replace(/\/+$/, "");
  if (!/^https?:\/\/[^/]/i.test(hubUrl)) throw new InputError(`expected an http(s) URL, got '${hubUrl}'`, "HF_ENDPOINT");
  const accessToken = opts.accessToken ?? env.accessToken;
  const storage = join(cacheDir, repoFolderName(repo));
  // the Hub says which 4xx it is in X-Error-Code (RepoNotFound, RevisionNotFound, GatedRepo…);
  // @huggingface/hub drops the headers, so the last failed response's code is kept here
  const seen: HubFailure = {};
  const baseFetch = opts.fetch ?? fetch;
  const timeoutMs = opts.timeoutMs ?? env.timeoutMs ?? DEFAULT_HUB_TIMEOUT_MS;
  const fetchKeepingErrorCode: typeof fetch = async (input, init) => {
    // the timer covers the wait for the answer only: a large blob's body streams on after it
    const waiting = new AbortController();
    const timer = setTimeout(() => waiting.abort(new HubTimeout(`no answer within ${timeoutMs / 1000} s`)), timeoutMs);
    const signal = init?.signal ? AbortSignal.any([init.signal, waiting.signal]) : waiting.signal;
    let res: Response;
    try {
      res = await baseFetch(input, { ...init, signal });
    } catch (err) {
      throw waiting.signal.aborted ? waiting.signal.reason : err;
    } finally {
      clearTimeout(timer);
    }
    seen.errorCode = res.ok ? undefined : (res.headers.get("x-error-code") ?? undefined);
    return res;
  };
  const common = { repo: { type: "model" as const, name: repo }, hubUrl, fetch: fetchKeepingErrorCode, ...(accessToken ? { accessToken } : {}) };
  const context: HubContext = { spec, repo, revision, hubUrl, token: accessToken !== undefined, seen };

  if (opts.offline ?? env.offline) {
    const cached = await cachedSnapshot(storage, revision);
    if (!cached) throw new InputError(`not in the Hugging Face cache (${cacheDir}) and HF_HUB_OFFLINE is set; run once online or unset HF_HUB_OFFLINE`, spec);
    return { repo, revision, commit: cached.commit, dir: cached.dir, downloaded: [] };
  }

  let commit: string;
  let entries: ListFileEntry[];
  try {
    const info = await modelInfo({ ...common, name: repo, revision, additionalFields: ["sha"] });
    const sha = (info as { sha?: unknown }).sha;
    if (typeof sha !== "string" || !COMMIT_SHA.test(sha)) throw new BackendError(`${spec}: the Hub at ${hubUrl} returned no commit sha`);
    commit = sha;
    entries = [];
    for await (const e of listFiles({ ...common, recursive: true, revision: commit })) entries.push(e);
  } catch (err) {
    const status = (err as { statusCode?: unknown })?.statusCode;
    if (typeof status === "number" && status >= 400 && status < 500) throw hubError(err, context);
    // a cached snapshot of this revision keeps the audit going when the Hub is unreachable
    const cached = await cachedSnapshot(storage, revision);
    if (cached) {
      log(`hub: ${describe(err)}; using the cached snapshot ${cached.commit.slice(0, 12)} of ${repo}`);
      return { repo, revision, commit: cached.commit, dir: cached.dir, downloaded: [] };
    }
    throw hubError(err, context);
  }

  // the marker (config.json / adapter_config.json) is fetched last: a snapshot that has it is complete
  const wanted = entries
    .filter((e) => e.type === "file" && WANTED_FILE.test(e.path))
    .sort((a, b) => Number(MARKER_FILES.includes(a.path)) - Number(MARKER_FILES.includes(b.path)));
  if (!wanted.some((e) => MARKER_FILES.includes(e.path))) {
    throw new InputError(`${repo}@${commit.slice(0, 12)} has neither config.json (a model) nor adapter_config.json (a PEFT adapter) at its top level`, spec);
  }
  if (!wanted.some((e) => e.path.endsWith(".safetensors"))) {
    throw new InputError(`${repo}@${commit.slice(0, 12)} has no .safetensors weights (pickled weights are never downloaded)`, spec);
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
    const fetched = await ensureFile(storage, snapshot, entry, { ...common, revision: commit }, (n) => bar.tick(n, entry.path), context);
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
  context: HubContext,
): Promise<boolean> {
  const { spec } = context;
  const etag = entry.lfs?.oid ?? entry.oid;
  if (!etag || !/^[0-9a-f]{40}(?:[0-9a-f]{24})?$/.test(etag)) {
    throw new BackendError(`${spec}: the Hub's listing has no usable hash for ${entry.path}`);
  }
  const pointer = join(snapshot, entry.path);
  const blob = join(storage, "blobs", etag);
  if (await exists(pointer)) return false;
  await mkdir(dirname(blob), { recursive: true });
  await mkdir(dirname(pointer), { recursive: true });
  let fetched = false;
  if (!(await exists(blob))) {
    await downloadBlob(blob, entry, params, onBytes, context);
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
  context: HubContext,
): Promise<void> {
  const { spec } = context;
  const incomplete = `${blobPath}.incomplete`;
  // LFS files are named by the sha256 of their content; small git files by the git blob sha1
  const lfs = entry.lfs;
  const hash = lfs ? createHash("sha256") : createHash("sha1");
  const expectedSize = lfs?.size ?? entry.size;
  if (!lfs) hash.update(`blob ${expectedSize}\0`);
  let size = 0;
  try {
    const file = await downloadFile({ ...params, path: entry.path } as DownloadParams);
    if (!file) throw new BackendError(`${spec}: the Hub listed ${entry.path} but has no such file`);
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
    throw hubError(err, context);
  }
  const digest = hash.digest("hex");
  const expected = lfs ? lfs.oid : entry.oid;
  if (size !== expectedSize || digest !== expected) {
    await rm(incomplete, { force: true });
    throw new BackendError(`${spec}: the download of ${entry.path} is corrupt (got ${size} bytes, hash ${digest.slice(0, 12)}; expected ${expectedSize} bytes, ${String(expected).slice(0, 12)})`);
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

/** The cached snapshot of `revision`, when it is complete (its marker file is fetched last). */
async function cachedSnapshot(storage: string, revision: string): Promise<{ commit: string; dir: string } | undefined> {
  const commit = await cachedCommit(storage, revision);
  if (!commit) return undefined;
  const dir = join(storage, "snapshots", commit);
  for (const marker of MARKER_FILES) if (await exists(join(dir, marker))) return { commit, dir };
  return undefined;
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

/** What a failure message needs to know about the request. */
interface HubContext {
  spec: string;
  repo: string;
  revision: string;
  hubUrl: string;
  /** a token was sent (HF_TOKEN or the stored login) */
  token: boolean;
  seen: HubFailure;
}

interface HubFailure {
  /** X-Error-Code of the last failed response */
  errorCode?: string;
}

/** Network error codes (undici puts them on the error's cause), in words. */
const NETWORK_REASONS: Readonly<Record<string, string>> = Object.freeze({
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found",
  ETIMEDOUT: "timed out",
  UND_ERR_CONNECT_TIMEOUT: "timed out",
  ECONNRESET: "connection reset",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  CERT_HAS_EXPIRED: "TLS certificate expired",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "TLS certificate not trusted",
  DEPTH_ZERO_SELF_SIGNED_CERT: "self-signed TLS certificate",
});

/**
 * The network reason behind a failed fetch, if it is one: undici's `fetch failed` TypeError
 * hides it in its cause chain, as an error code or, without one (`bad port`), a message.
 */
function networkReason(err: unknown): string | undefined {
  if (!(err instanceof TypeError) || !(err as { cause?: unknown }).cause) return undefined;
  let last: string | undefined;
  for (let e: unknown = (err as { cause?: unknown }).cause, depth = 0; e && typeof e === "object" && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return NETWORK_REASONS[code] ?? code;
    const inner = (e as { errors?: unknown }).errors; // AggregateError: one per address tried
    if (Array.isArray(inner) && inner.length > 0) return networkReason(new TypeError("fetch failed", { cause: inner[0] }));
    if (e instanceof Error && e.message) last = e.message.split("\n")[0];
  }
  return last;
}

const LOGIN_HINT = "set HF_TOKEN or run `huggingface-cli login`";

/**
 * Map a Hub failure to one line naming the id: 401/403/404 and bad revisions are the user's to
 * fix (InputError, exit 2); an unreachable Hub or a server fault is not (BackendError, exit 3).
 */
function hubError(err: unknown, c: HubContext): Error {
  if (err instanceof InputError || err instanceof BackendError) return err;
  const { spec, repo, revision } = c;
  const status = (err as { statusCode?: unknown })?.statusCode;
  const code = c.seen.errorCode;
  const message = err instanceof Error ? err.message : String(err);
  if (code === "RevisionNotFound" || (status === 404 && /invalid rev id|revision not found/i.test(message))) {
    return new InputError(`revision '${revision}' not found in ${repo} on the Hugging Face Hub (HTTP ${status ?? 404})`, spec);
  }
  if (status === 404 || (code === "RepoNotFound" && !c.token)) {
    // the Hub answers 401 RepoNotFound for a private repository when no token is sent
    const hint = status === 404 ? "" : `, or it is private: ${LOGIN_HINT}`;
    return new InputError(`repository not found on the Hugging Face Hub (HTTP ${status})${hint}`, spec);
  }
  if (status === 401 || status === 403) {
    const fix = c.token ? "the token sent (HF_TOKEN or `huggingface-cli login`) cannot read it: request access on its Hub page or use another token" : LOGIN_HINT;
    return new InputError(`the repository is gated or private (HTTP ${status}): ${fix}`, spec);
  }
  if (err instanceof TypeError && /access token/i.test(message)) return new InputError(`${message} (it is read from HF_TOKEN or \`huggingface-cli login\`)`, "HF_TOKEN");
  if (typeof status === "number") return new BackendError(`${spec}: the Hugging Face Hub answered HTTP ${status}; try again later`, { cause: err });
  const reason = err instanceof HubTimeout ? err.message : networkReason(err);
  if (reason) {
    return new BackendError(`${spec}: cannot reach the Hugging Face Hub at ${c.hubUrl} (${reason}) and it is not cached; check the network or HF_ENDPOINT`, { cause: err });
  }
  return new BackendError(`${spec}: download from the Hugging Face Hub failed: ${describe(err)}`, { cause: err });
}
