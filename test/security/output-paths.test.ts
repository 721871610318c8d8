/**
 * Hostile and careless output paths, through the real CLI: an output folder must never be (or
 * hold) an input, never be `/`, and a wrong one is refused before any work with exit 2 and one
 * line naming it — leaving every file as it was.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism } from "../../src/organisms/index";
import { cli, oneLineError, snapshot } from "./helpers";

let dir: string;
let org: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-sec-out-"));
  org = join(dir, "org");
  await generateOrganism({ kind: "quirk", outDir: org, seed: 3 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("output folders", () => {
  it("truncate --out <the input adapter> is refused and the adapter is left byte-for-byte", async () => {
    const before = snapshot(org);
    const r = await cli(["truncate", "--adapter", join(org, "adapter"), "--rank", "1", "--out", join(org, "adapter")]);
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/--out .*adapter: is the input/);
    expect(snapshot(org)).toEqual(before);
  });

  it("truncate --out <a folder holding the input> is refused", async () => {
    const before = snapshot(org);
    const r = await cli(["truncate", "--adapter", join(org, "adapter"), "--rank", "1", "--out", org]);
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/holds the input/);
    expect(snapshot(org)).toEqual(before);
  });

  it("scan --out <the base folder> or <the adapter> is refused before any work", async () => {
    const before = snapshot(org);
    for (const out of [join(org, "base"), join(org, "adapter"), org]) {
      const r = await cli(["scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--out", out], { env: { DELTA_AUDIT_QUIET: "0" } });
      expect(r.status).toBe(2);
      expect(oneLineError(r.stderr)).toContain(out);
      expect(r.stderr).not.toMatch(/spectrum:|elicit/); // refused before measuring, not after minutes of work
    }
    expect(snapshot(org)).toEqual(before);
    expect((await readdir(dir)).filter((e) => e.startsWith("."))).toEqual([]); // no staging folder left behind
  });

  it("scan --out <a folder of someone else's files> is refused up front and the folder is unchanged", async () => {
    const mine = join(dir, "mine");
    await mkdir(mine);
    await writeFile(join(mine, "notes.txt"), "keep me");
    const r = await cli(["scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--out", mine], { env: { DELTA_AUDIT_QUIET: "0" } });
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/mine: is a folder that is not an earlier report\.json output/);
    expect(r.stderr).not.toMatch(/elicit/);
    expect(await readdir(mine)).toEqual(["notes.txt"]);
  });

  it("--out / is refused for scan, truncate and organism", async () => {
    for (const args of [
      ["scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--out", "/"],
      ["truncate", "--adapter", join(org, "adapter"), "--rank", "1", "--out", "/"],
      ["organism", "--kind", "benign", "--out", "/"],
    ]) {
      const r = await cli(args);
      expect(r.status, args.join(" ")).toBe(2);
      expect(oneLineError(r.stderr)).toMatch(/filesystem root/);
    }
  });

  it("an output folder that cannot be created is exit 2 naming it, not a raw errno with exit 3", async () => {
    const file = join(dir, "a-file");
    await writeFile(file, "x");
    const r = await cli(["truncate", "--adapter", join(org, "adapter"), "--rank", "1", "--out", join(file, "sub")]);
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toContain(join(file, "sub"));
    expect(await readFile(file, "utf8")).toBe("x");
  });

  it("spectrum --json never overwrites an input file, a folder or someone else's file, and checks before measuring", async () => {
    const before = snapshot(org);
    const other = join(dir, "other.json");
    await writeFile(other, '{"mine": true}\n');
    for (const json of [join(org, "adapter", "adapter_config.json"), join(org, "adapter"), other, join(dir, "missing-folder", "x.json")]) {
      const r = await cli(["spectrum", "--adapter", join(org, "adapter"), "--json", json], { env: { DELTA_AUDIT_QUIET: "0" } });
      expect(r.status, json).toBe(2);
      expect(oneLineError(r.stderr)).toContain(`--json ${json}`);
      expect(r.stderr).not.toMatch(/spectrum: \d/);
    }
    expect(snapshot(org)).toEqual(before);
    expect(await readFile(other, "utf8")).toBe('{"mine": true}\n');
    // its own earlier output is replaced as before
    const ours = join(dir, "spectrum.json");
    for (let i = 0; i < 2; i++) {
      const r = await cli(["spectrum", "--adapter", join(org, "adapter"), "--json", ours]);
      expect(r.status).toBe(0);
    }
    expect(JSON.parse(await readFile(ours, "utf8")).spectrum.modules.length).toBeGreaterThan(0);
  });
});
