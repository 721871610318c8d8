import { lstat, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { writeDirAtomic, writeFileAtomic } from "../../src/io/atomic";
import { expectInputError, withTempDir } from "./helpers";

describe("writeDirAtomic", () => {
  it("creates the folder (and missing parents) only once fill succeeds", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "a", "b", "out");
      let seenDuringFill: string[] = [];
      await writeDirAtomic(out, async (tmp) => {
        await writeFile(join(tmp, "report.json"), "{}");
        await mkdir(join(tmp, "rank1-adapter"));
        seenDuringFill = await readdir(join(dir, "a", "b"));
      });
      expect(seenDuringFill).toHaveLength(1);
      expect(seenDuringFill[0]).not.toBe("out"); // the destination does not exist while filling
      expect((await readdir(out)).sort()).toEqual(["rank1-adapter", "report.json"]);
      expect(await readdir(join(dir, "a", "b"))).toEqual(["out"]);
    });
  });

  it("on failure removes the temp folder and leaves an existing destination untouched", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "out");
      await writeDirAtomic(out, async (tmp) => writeFile(join(tmp, "report.json"), "v1"));
      await expect(
        writeDirAtomic(out, async (tmp) => {
          await writeFile(join(tmp, "report.json"), "v2-partial");
          throw new Error("disk full");
        }),
      ).rejects.toThrow("disk full");
      expect(await readFile(join(out, "report.json"), "utf8")).toBe("v1");
      expect(await readdir(dir)).toEqual(["out"]);
    });
  });

  it("replaces a previous output of the same shape", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "out");
      await writeDirAtomic(out, async (tmp) => {
        await writeFile(join(tmp, "report.json"), "v1");
        await writeFile(join(tmp, "badge.json"), "b1");
      });
      await writeDirAtomic(out, async (tmp) => {
        await writeFile(join(tmp, "report.json"), "v2");
        await writeFile(join(tmp, "badge.json"), "b2");
        await writeFile(join(tmp, "report.md"), "new");
      });
      expect(await readFile(join(out, "report.json"), "utf8")).toBe("v2");
      expect((await readdir(out)).sort()).toEqual(["badge.json", "report.json", "report.md"]);
      expect(await readdir(dir)).toEqual(["out"]);
    });
  });

  it("refuses to replace a folder with files it would not write, or a file", async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, "notes.txt"), "mine");
      const err = await writeDirAtomic(dir, async (tmp) => writeFile(join(tmp, "report.json"), "{}")).catch((e) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).toContain("notes.txt");
      expect(await readdir(dir)).toEqual(["notes.txt"]);
      const file = join(dir, "notes.txt");
      await expect(writeDirAtomic(file, async () => undefined)).rejects.toBeInstanceOf(InputError);
    });
  });
});

describe("writeFileAtomic", () => {
  it("writes a new file and replaces an old one, leaving nothing else behind", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "badge.json");
      await writeFileAtomic(path, "v1");
      await writeFileAtomic(path, new TextEncoder().encode("v2"));
      expect(await readFile(path, "utf8")).toBe("v2");
      expect(await readdir(dir)).toEqual(["badge.json"]);
    });
  });

  it("never writes through a planted symlink, at the destination or at any predictable temp name", async () => {
    await withTempDir(async (dir) => {
      const victim = join(dir, "victim.txt");
      await writeFile(victim, "do not touch\n");
      const out = join(dir, "out");
      await mkdir(out);
      const path = join(out, "comment.md");
      // what a pull request could commit: the file itself and the temp names a writer might guess
      const planted = ["comment.md", "comment.md.tmp", `comment.md.tmp-${process.pid}`, `.comment.md.tmp-${process.pid}`];
      for (const name of planted) await symlink(victim, join(out, name));
      await writeFileAtomic(path, "ours");
      expect(await readFile(victim, "utf8")).toBe("do not touch\n");
      expect((await lstat(path)).isSymbolicLink()).toBe(false);
      expect(await readFile(path, "utf8")).toBe("ours");
      // the link at the destination was replaced; the other planted links are left alone, and no temp file remains
      expect((await readdir(out)).sort()).toEqual(planted.sort());
    });
  });

  it("on failure removes its temp file and leaves the destination as it was", async () => {
    await withTempDir(async (dir) => {
      // a folder where the file should go: the rename fails after the temp file was written
      const path = join(dir, "report.md");
      await mkdir(path);
      await writeFile(join(path, "keep.txt"), "mine");
      await expect(writeFileAtomic(path, "x".repeat(100_000))).rejects.toThrow();
      expect(await readdir(dir)).toEqual(["report.md"]);
      expect(await readdir(path)).toEqual(["keep.txt"]);
    });
  });

  it("a folder it cannot create a file in is an input error naming the path", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "missing", "badge.json");
      await expectInputError(writeFileAtomic(path, "{}"), path, "cannot write here (ENOENT)");
      expect(await readdir(dir)).toEqual([]);
    });
  });
});
