/**
 * Atomic output: a folder (writeDirAtomic) or a single file (writeFileAtomic) is built under a
 * temp name next to the destination, then renamed into place, so a failure never leaves a
 * half-written adapter, report or badge.
 */
import { lstat, mkdir, open, readdir, realpath, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve, sep } from "node:path";
import { randomBytes } from "node:crypto";
import { InputError } from "../errors";

/**
 * Random bytes in a temp name. The name only has to be unguessable enough that nobody can
 * plant it in advance; O_EXCL ("wx") is what stops a write through a planted link.
 */
const TEMP_NAME_RANDOM_BYTES = 6;

/**
 * Staging folders and files of the atomic writes now in flight, each with the function that
 * removes it. A SIGTERM (a cancelled CI job) or Ctrl-C would otherwise leave a `.out.tmp-…`
 * sibling behind; the edge's signal handler (edge.ts exitOnSignals) calls removeStaging() before it exits.
 */
const staging = new Set<() => Promise<void>>();

/** Track a cleanup while `work` runs. */
async function staged<T>(cleanup: () => Promise<void>, work: () => Promise<T>): Promise<T> {
  staging.add(cleanup);
  try {
    return await work();
  } finally {
    staging.delete(cleanup);
  }
}

/**
 * Remove every staging folder and file of the atomic writes in flight (and put back an output
 * moved aside mid-replace). For a signal handler that exits right after: the writers themselves
 * may still be running and fail, which no longer matters. Never throws.
 */
export async function removeStaging(): Promise<void> {
  const cleanups = [...staging];
  staging.clear();
  await Promise.allSettled(cleanups.map((c) => c()));
}

/**
 * Track a temporary path made outside the writers below (a copy of an adapter a server loads
 * from, say): removeStaging removes it too, so a signal leaves it behind no more than a staging
 * folder. Returns the function that stops tracking it (once it is removed, or kept on purpose).
 */
export function trackTemporary(path: string): () => void {
  const cleanup = () => removeTree(path);
  staging.add(cleanup);
  return () => void staging.delete(cleanup);
}

/**
 * `work`'s result, or `signal`'s reason as soon as it aborts (a signal already aborted rejects
 * at once). For work that cannot stop itself mid-way — a delta walk filling a staging folder, an
 * engine's batch, a backend an embedder built: the caller moves on (writes its partial report,
 * lets removeStaging clear the folder) and the work's late result or error is dropped; the
 * process exits soon after.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  // a late failure of abandoned work is no unhandled rejection
  work.catch(() => undefined);
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => (signal.removeEventListener("abort", onAbort), resolve(value)),
      (err) => (signal.removeEventListener("abort", onAbort), reject(err)),
    );
  });
}

/** `rm -rf`, retried: a writer still running may add a file while the folder is being removed. */
const removeTree = (path: string) => rm(path, { recursive: true, force: true, maxRetries: 3, retryDelay: 10 });

function sibling(path: string, tag: string): string {
  return join(dirname(path), `.${basename(path)}.${tag}-${process.pid}-${randomBytes(TEMP_NAME_RANDOM_BYTES).toString("hex")}`);
}

async function statOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/** The real path of `path`, or of its nearest existing ancestor joined with the rest (for a folder not yet created). */
async function realOrPlanned(path: string): Promise<string> {
  const abs = resolve(path);
  try {
    return await realpath(abs);
  } catch {
    const parent = dirname(abs);
    if (parent === abs) return abs;
    return join(await realOrPlanned(parent), basename(abs));
  }
}

function within(child: string, parent: string): boolean {
  return child === parent || child.startsWith(parent.endsWith(sep) ? parent : parent + sep);
}

export interface OutputCheck {
  /** the command's input files and folders: the output may not be one of them, nor hold one */
  inputs?: ReadonlyArray<string | undefined>;
  /**
   * A file every earlier output of this command holds (e.g. report.json). An existing,
   * non-empty folder without it is refused before any work is done, not after.
   */
  marker?: string;
  /** the flag that named the output, quoted in messages (default: the path itself) */
  flag?: string;
}

/**
 * Refuse an output folder before the work starts: the filesystem root, an existing file, one
 * of the inputs (or a folder holding one — replacing it would delete the input: `truncate
 * --adapter a --out a` once overwrote the adapter it read), or a non-empty folder that is not
 * an earlier output of the same command. writeDirAtomic checks again after the work.
 */
export async function checkOutputDir(outDir: string, check: OutputCheck = {}): Promise<void> {
  const where = check.flag ? `${check.flag} ${outDir}` : outDir;
  const target = await realOrPlanned(outDir);
  if (dirname(target) === target) throw new InputError("is the filesystem root; choose a new folder for the output", where);
  for (const input of check.inputs ?? []) {
    if (!input) continue;
    const real = await realOrPlanned(input);
    if (within(real, target)) {
      throw new InputError(`${real === target ? "is" : "holds"} the input ${input}; writing here would destroy it — choose a new folder`, where);
    }
  }
  let existing;
  try {
    existing = await lstat(target);
  } catch {
    return;
  }
  if (!existing.isDirectory()) throw new InputError("exists and is not a folder", where);
  if (check.marker) {
    const entries = await readdir(target).catch(() => [] as string[]);
    if (entries.length > 0 && !entries.includes(check.marker)) {
      const shown = entries.slice(0, 3).join(", ") + (entries.length > 3 ? ", …" : "");
      throw new InputError(`is a folder that is not an earlier ${check.marker} output (holds ${shown}); choose an empty or new folder`, where);
    }
  }
}

function cannotCreate(err: unknown, outDir: string): never {
  if (err instanceof InputError) throw err;
  const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
  throw new InputError(`cannot create the output folder here (${code})`, outDir);
}

/**
 * Create `outDir` atomically: `fill(tmpDir)` writes the contents into a fresh temp folder
 * next to `outDir`; when it resolves the folder is renamed into place. On any error the temp
 * folder is removed and `outDir` is untouched.
 *
 * An existing `outDir` is replaced only when everything in it is also in the new output (a
 * previous run of the same command): we never delete files we did not write, so a mistaken
 * `--out .` or `--out ~` fails with InputError instead of wiping a folder.
 */
export async function writeDirAtomic(outDir: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  const target = resolve(outDir);
  if (dirname(target) === target) throw new InputError("is the filesystem root; choose a new folder for the output", outDir);
  const existing = await statOrNull(target).catch((err) => cannotCreate(err, outDir));
  if (existing && !existing.isDirectory()) throw new InputError("exists and is not a folder", outDir);
  const tmp = sibling(target, "tmp");
  const old = sibling(target, "old");
  // on a signal: drop the staging folder; an old output moved aside goes back if the new one is
  // not in place yet, and away if it is
  const cleanup = async () => {
    await removeTree(tmp);
    if (!(await statOrNull(old).catch(() => null))) return;
    if (await statOrNull(target).catch(() => null)) await removeTree(old);
    else await rename(old, target).catch(() => undefined);
  };
  await staged(cleanup, async () => {
    try {
      await mkdir(dirname(target), { recursive: true });
      await mkdir(tmp);
    } catch (err) {
      cannotCreate(err, outDir);
    }
    try {
      await fill(tmp);
      if (existing) {
        const newEntries = new Set(await readdir(tmp));
        const foreign = (await readdir(target)).filter((e) => !newEntries.has(e));
        if (foreign.length > 0) {
          const shown = foreign.slice(0, 3).join(", ") + (foreign.length > 3 ? ", …" : "");
          throw new InputError(`refusing to replace an existing folder that holds files this output does not (${shown}); choose an empty or new folder`, outDir);
        }
        // two renames: a crash in between leaves the old output in the `.old-` sibling, never a mix
        await rename(target, old);
        try {
          await rename(tmp, target);
        } catch (err) {
          await rename(old, target).catch(() => undefined);
          throw err;
        }
        await removeTree(old);
      } else {
        await rename(tmp, target);
      }
    } catch (err) {
      await removeTree(tmp);
      throw err;
    }
  });
}

/**
 * Write one file atomically: a fresh temp file next to `path`, then rename over it. The temp
 * name is random and created with O_EXCL ("wx"), so it never opens an existing file or follows
 * a symlink: output folders can sit in a pull request's checkout, where any predictable name
 * (the destination itself, `path.tmp`) may be a committed symlink pointing out of the workspace.
 * The rename replaces a link at `path` itself rather than writing through it. On any error the
 * temp file is removed and `path` is left as it was.
 */
export async function writeFileAtomic(path: string, content: string | Uint8Array): Promise<void> {
  const tmp = sibling(resolve(path), "tmp");
  await staged(
    () => rm(tmp, { force: true }),
    async () => {
      let fh;
      try {
        fh = await open(tmp, "wx");
      } catch (err) {
        throw new InputError(`cannot write here (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, path);
      }
      try {
        await fh.writeFile(content);
        await fh.close();
        fh = undefined;
        await rename(tmp, path);
      } catch (err) {
        await fh?.close().catch(() => undefined);
        await rm(tmp, { force: true });
        throw err;
      }
    },
  );
}
