import { mkdir, readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { writeDirAtomic } from "../../src/io/atomic";
import { withTempDir } from "./helpers";

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
