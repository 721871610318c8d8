/**
 * The rank ladder's part of the delta pass (delta/ladder.ts, pass.ts deltaPass with `ladder`):
 * one walk, decomposing each module once at the top rung, writes every rung's folder, and each
 * holds the dense best rank-k of every ΔW; a rung above an adapter's rank is refused before
 * anything is written. The linalg entry points are call-through spies that only count calls.
 */
import { afterAll, beforeEach, describe, expect, it, vi } from "vitest";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { InputError } from "../../src/errors";
import { openAdapter } from "../../src/io/peft";
import type { LoraModule } from "../../src/io/types";
import * as factored from "../../src/linalg/factored-svd";
import * as randomized from "../../src/linalg/randomized-svd";
import { releaseKernels } from "../../src/linalg/kernels";
import { deltaPass } from "../../src/delta/pass";
import { leadingComponents, ModuleFeed } from "../../src/delta/ladder";
import { denseDelta } from "../linalg/reference";
import { DOWN1, expectBestRankK, FULL_TOL, fullPair, LORA_TOL, makeModules, openFullPair, pairDelta, Q0, tempDir, V0, writeAdapterDir } from "./fixtures";

vi.mock("../../src/linalg/factored-svd", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../src/linalg/factored-svd")>();
  return { ...real, factoredTruncation: vi.fn(real.factoredTruncation) };
});
vi.mock("../../src/linalg/randomized-svd", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../src/linalg/randomized-svd")>();
  return { ...real, topKSvd: vi.fn(real.topKSvd) };
});


const dirs: string[] = [];
afterAll(async () => {
  await releaseKernels();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
beforeEach(() => {
  vi.mocked(factored.factoredTruncation).mockClear();
  vi.mocked(randomized.topKSvd).mockClear();
});

async function readFolder(dir: string): Promise<LoraModule[]> {
  const a = await openAdapter(dir);
  try {
    return await Promise.all(a.moduleNames().map((n) => a.readModule(n)));
  } finally {
    await a.close();
  }
}

describe("deltaPass with a rank ladder", () => {
  const mods = makeModules([[Q0, 24, 16, 8], [V0, 12, 16, 8], [DOWN1, 16, 40, 8]], 7);

  it("LoRA: one decomposition per module at the top rung; the scan's rank and every rung hold the dense best rank-k", async () => {
    const root = tempDir("ladder-lora");
    dirs.push(root);
    const src = await writeAdapterDir(join(root, "src"), mods, { r: 8, lora_alpha: 16 });
    const adapter = await openAdapter(src);
    try {
      const refs = await Promise.all(adapter.moduleNames().map(async (n) => {
        const m = await adapter.readModule(n);
        return denseDelta(m.B, m.A, m.outFeatures, m.rank, m.inFeatures, m.scale);
      }));
      const single = await deltaPass({ kind: "lora", adapter }, 1, join(root, "single"), { quiet: true });
      vi.mocked(factored.factoredTruncation).mockClear();
      const ladder = [2, 4, 8].map((rank) => ({ rank, dir: join(root, `rank${rank}`) }));
      const report = await deltaPass({ kind: "lora", adapter }, 1, join(root, "rank1"), { quiet: true, ladder });
      // the spectrum is the pass's as without a ladder
      expect(report).toEqual(single);
      // one decomposition per module, at the top rung's rank
      expect(vi.mocked(factored.factoredTruncation).mock.calls.map(([, k]) => k)).toEqual([8, 8, 8]);
      for (const [rank, dir] of [[1, join(root, "rank1")], ...ladder.map((r) => [r.rank, r.dir] as const)] as const) {
        const written = await readFolder(dir);
        expect(written.map((m) => m.name)).toEqual([Q0, V0, DOWN1]);
        written.forEach((m, i) => expectBestRankK(m, refs[i]!, rank, LORA_TOL));
      }
    } finally {
      await adapter.close();
    }
  });

  it("a full fine-tune: one top-k SVD per changed linear for every rung", async () => {
    const root = tempDir("ladder-full");
    dirs.push(root);
    const pair = fullPair(5);
    const { base, ft, close } = await openFullPair(root, pair);
    try {
      const ladder = [2, 3].map((rank) => ({ rank, dir: join(root, `rank${rank}`) }));
      await deltaPass({ kind: "full", base, finetuned: ft }, 1, join(root, "rank1"), { quiet: true, ladder });
      // one SVD per changed linear (the fixture's k_proj is unchanged: no decomposition at all)
      const changed = pair.linear.filter((n) => pairDelta(pair, n).some((x) => x !== 0));
      expect(vi.mocked(randomized.topKSvd).mock.calls.length).toBe(changed.length);
      for (const [rank, dir] of [[1, join(root, "rank1")], [2, ladder[0]!.dir], [3, ladder[1]!.dir]] as const) {
        for (const m of await readFolder(dir)) expectBestRankK(m, pairDelta(pair, m.name), rank, FULL_TOL);
      }
    } finally {
      await close();
    }
  });

  it("a rung above the adapter's rank is refused before anything is read or written", async () => {
    const root = tempDir("ladder-over");
    dirs.push(root);
    const src = await writeAdapterDir(join(root, "src"), mods, { r: 8, lora_alpha: 16 });
    const adapter = await openAdapter(src);
    try {
      const run = deltaPass({ kind: "lora", adapter }, 1, join(root, "rank1"), { quiet: true, ladder: [{ rank: 16, dir: join(root, "rank16") }] });
      await expect(run).rejects.toThrow(InputError);
      await expect(run).rejects.toThrow(/16 is above the adapter's rank \(8\)/);
      expect(vi.mocked(factored.factoredTruncation)).not.toHaveBeenCalled();
      expect(readdirSync(root)).toEqual(["src"]);
      expect(existsSync(join(root, "rank1"))).toBe(false);
    } finally {
      await adapter.close();
    }
  });
});

describe("ladder pieces", () => {
  it("leadingComponents keeps the first k columns of B and rows of A", () => {
    const m: LoraModule = { name: "x", rank: 3, scale: 1, outFeatures: 2, inFeatures: 2, A: Float32Array.from([1, 2, 3, 4, 5, 6]), B: Float32Array.from([1, 2, 3, 4, 5, 6]) };
    const k2 = leadingComponents(m, 2);
    expect([...k2.A]).toEqual([1, 2, 3, 4]);
    expect([...k2.B]).toEqual([1, 2, 4, 5]);
    expect(k2.rank).toBe(2);
    expect(leadingComponents(m, 3)).toBe(m);
    expect(() => leadingComponents(m, 4)).toThrow();
  });

  it("a feed ends with the walk, and a failed walk fails its readers (no rung ends as if complete)", async () => {
    const m: LoraModule = { name: "x", rank: 1, scale: 1, outFeatures: 1, inFeatures: 1, A: Float32Array.of(1), B: Float32Array.of(1) };
    const ok = new ModuleFeed();
    const read = (async () => {
      const got: string[] = [];
      for await (const x of ok) got.push(x.name);
      return got;
    })();
    ok.push(m);
    ok.push({ ...m, name: "y" });
    ok.end();
    expect(await read).toEqual(["x", "y"]);
    const bad = new ModuleFeed();
    const failing = (async () => {
      for await (const _ of bad) void _;
    })();
    bad.push(m);
    bad.fail(new Error("walk broke"));
    await expect(failing).rejects.toThrow("walk broke");
  });
});
