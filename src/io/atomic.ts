/**
 * Whole-folder atomic output: build everything in a temp folder next to the destination,
 * then rename it into place, so a failure never leaves a half-written adapter or report.
 */
import { lstat, mkdir, readdir, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { InputError } from "../errors";

function sibling(path: string, tag: string): string {
  return join(dirname(path), `.${basename(path)}.${tag}-${process.pid}-${randomBytes(4).toString("hex")}`);
}

async function statOrNull(path: string) {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
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
  const existing = await statOrNull(target);
  if (existing && !existing.isDirectory()) throw new InputError("exists and is not a folder", outDir);
  await mkdir(dirname(target), { recursive: true });
  const tmp = sibling(target, "tmp");
  await mkdir(tmp);
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
      const old = sibling(target, "old");
      await rename(target, old);
      try {
        await rename(tmp, target);
      } catch (err) {
        await rename(old, target).catch(() => undefined);
        throw err;
      }
      await rm(old, { recursive: true, force: true });
    } else {
      await rename(tmp, target);
    }
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}
