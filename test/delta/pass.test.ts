/**
 * The one delta pass (delta/walk.ts, delta/pass.ts) on real adapter and checkpoint folders: its
 * spectrum is what adapterSpectrum (a separate linalg entry point) and a dense float64 SVD
 * report, its rank-k folder holds the dense best rank-k of every ΔW, and every module is read
 * and decomposed once. The linalg entry points are wrapped by call-through spies only to count
 * calls and see their arguments: the math runs.
 */
import { afterAll, beforeEach, describe, expect, it, vi } from "vitest";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { openAdapter } from "../../src/io/peft";
import type { LoraAdapter, LoraModule } from "../../src/io/types";
import * as factored from "../../src/linalg/factored-svd";
import * as randomized from "../../src/linalg/randomized-svd";
import { releaseKernels } from "../../src/linalg/kernels";
import { PooledFactorReader } from "../../src/delta/factor-reader";
import { adapterSpectrum, fullSpectrum } from "../../src/delta/spectrum";
import { lowRankFromFull } from "../../src/delta/truncate";
import { deltaPass } from "../../src/delta/pass";
import { DEFAULT_TOP_K, walkAdapter } from "../../src/delta/walk";
import { SIGMA_REPORT_LIMIT } from "../../src/delta/stats";
import { denseDelta, frob, referenceSvd } from "../linalg/reference";
import { DOWN1, expectBestRankK, FULL_TOL, fullPair, LORA_TOL, makeModules, openFullPair, pairDelta, Q0, tempDir, V0, writeAdapterDir } from "./fixtures";

vi.mock("../../src/linalg/factored-svd", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../src/linalg/factored-svd")>();
  return { ...real, factoredTruncation: vi.fn(real.factoredTruncation), factoredSingularValues: vi.fn(real.factoredSingularValues) };
});
vi.mock("../../src/linalg/randomized-svd", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../src/linalg/randomized-svd")>();
  return { ...real, topKSvd: vi.fn(real.topKSvd) };
});

/** σ of the randomized top-k vs the dense SVD, relative to σ₁ (the iteration's tolerance). */
const SIGMA_TOL = 1e-4;

const dirs: string[] = [];
afterAll(async () => {
  await releaseKernels();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
beforeEach(() => {
  vi.mocked(factored.factoredTruncation).mockClear();
  vi.mocked(factored.factoredSingularValues).mockClear();
  vi.mocked(randomized.topKSvd).mockClear();
});

async function collect(it: AsyncIterable<LoraModule>): Promise<LoraModule[]> {
  const out: LoraModule[] = [];
  for await (const m of it) out.push(m);
  return out;
}

async function readFolder(dir: string): Promise<LoraModule[]> {
  const a = await openAdapter(dir);
  try {
    return await Promise.all(a.moduleNames().map((n) => a.readModule(n)));
  } finally {
    await a.close();
  }
}

/** The same adapter seen through a wrapper the pooled reader declines, counting readModule calls. */
function counting(adapter: LoraAdapter, reads: string[]): LoraAdapter {
  return {
    dir: join(adapter.dir, "elsewhere"),
    config: adapter.config,
    moduleNames: () => adapter.moduleNames(),
    moduleInfo: (n) => adapter.moduleInfo(n),
    readModule: (n, o) => (reads.push(n), adapter.readModule(n, o)),
    close: async () => undefined,
  };
}

describe("deltaPass on a LoRA adapter", () => {
  // well-conditioned modules take the fast Gram path; one with two equal B columns the rank-revealing one
  const mods = makeModules([[Q0, 24, 16, 4], [V0, 8, 16, 4], [DOWN1, 16, 40, 6]], 41);
  for (let o = 0; o < 16; o++) mods[2]!.B[o * 6 + 5] = mods[2]!.B[o * 6 + 2]!;

  it("reports adapterSpectrum's σ to the bit and writes the dense best rank-k, reading and decomposing each module once", async () => {
    const root = tempDir("pass-lora");
    dirs.push(root);
    const src = await writeAdapterDir(join(root, "src"), mods, { r: 4, lora_alpha: 8, rank_pattern: { down_proj: 6 }, base_model_name_or_path: "org/base" });
    const adapter = await openAdapter(src);
    try {
      // adapterSpectrum takes the values alone (factoredSingularValues), the pass takes them from its truncation's core
      const spectrum = await adapterSpectrum(adapter, { quiet: true });
      expect(factored.factoredSingularValues).toHaveBeenCalledTimes(mods.length);
      // the reference: each module's dense float64 ΔW with the scale io reads from the config
      const refs = await Promise.all(adapter.moduleNames().map(async (n) => {
        const m = await adapter.readModule(n);
        return denseDelta(m.B, m.A, m.outFeatures, m.rank, m.inFeatures, m.scale);
      }));
      vi.mocked(factored.factoredTruncation).mockClear();
      vi.mocked(factored.factoredSingularValues).mockClear();
      const reads: string[] = [];
      const out = join(root, "rank2");
      const report = await deltaPass({ kind: "lora", adapter: counting(adapter, reads) }, 2, out, { quiet: true });
      expect(report).toEqual(spectrum);
      expect("otherChanges" in report).toBe(false);
      const written = await readFolder(out);
      expect(written.map((m) => m.name)).toEqual([Q0, V0, DOWN1]);
      written.forEach((m, i) => expectBestRankK(m, refs[i]!, 2, LORA_TOL));
      // one read and one decomposition per module; no separate singular-value pass
      expect(reads).toEqual([Q0, V0, DOWN1]);
      expect(vi.mocked(factored.factoredTruncation).mock.calls.map(([f]) => f.outFeatures)).toEqual([24, 8, 16]);
      expect(factored.factoredSingularValues).not.toHaveBeenCalled();
      const paths = await Promise.all(vi.mocked(factored.factoredTruncation).mock.results.map((r) => r.value as Promise<{ path: string }>));
      expect(paths.map((p) => p.path)).toEqual(["float32", "float32", "rank-revealing"]);
    } finally {
      await adapter.close();
    }
  });

  it("reads each module once through the pooled reader too", async () => {
    const root = tempDir("pass-pool");
    dirs.push(root);
    const src = await writeAdapterDir(join(root, "src"), mods, { r: 4, lora_alpha: 8, rank_pattern: { down_proj: 6 } });
    const adapter = await openAdapter(src);
    const read = vi.spyOn(PooledFactorReader.prototype, "read");
    try {
      await deltaPass({ kind: "lora", adapter }, 1, join(root, "rank1"), { quiet: true });
      expect(read.mock.calls.map(([n]) => n)).toEqual([Q0, V0, DOWN1]);
    } finally {
      read.mockRestore();
      await adapter.close();
    }
  });

  it("the walk's spectrum is the same with and without a rank (one Gram core gives every σ)", async () => {
    const root = tempDir("pass-walk");
    dirs.push(root);
    const adapter = await openAdapter(await writeAdapterDir(join(root, "src"), mods, { r: 4, lora_alpha: 8, rank_pattern: { down_proj: 6 } }));
    try {
      const spectra = async (rank?: number) => {
        const out = [];
        for await (const step of walkAdapter(adapter, { rank, label: "test", quiet: true })) if (step.kind === "module") out.push(step.spectrum);
        return out;
      };
      const alone = await spectra();
      for (const k of [1, 3, 6, 9]) expect(await spectra(k)).toEqual(alone);
    } finally {
      await adapter.close();
    }
  });

  it("refuses non-finite factors as an input error and writes nothing", async () => {
    const root = tempDir("pass-nan");
    dirs.push(root);
    const bad = makeModules([[Q0, 24, 16, 4], [V0, 8, 16, 4]], 5);
    bad[1]!.A[2] = Number.NaN;
    const adapter = await openAdapter(await writeAdapterDir(join(root, "src"), bad, { r: 4, lora_alpha: 8 }));
    const out = join(root, "rank1");
    try {
      await expect(deltaPass({ kind: "lora", adapter }, 1, out, { quiet: true })).rejects.toThrow(/module model\.layers\.0\.self_attn\.v_proj: lora_A holds non-finite/);
      expect(existsSync(out)).toBe(false);
    } finally {
      await adapter.close();
    }
  });
});

describe("deltaPass on a full fine-tune", () => {
  it("reports the dense SVD's spectrum and the other changes (as fullSpectrum does) and writes the dense best rank-k", async () => {
    const root = tempDir("pass-full");
    dirs.push(root);
    const pair = fullPair(13);
    const { base, ft, close } = await openFullPair(root, pair);
    /** the pass's spectrum against the dense float64 SVD of each ΔW: the top DEFAULT_TOP_K values and the exact norm */
    const expectDenseSpectrum = (report: Awaited<ReturnType<typeof deltaPass>>) => {
      expect(report.modules.map((m) => m.name)).toEqual(pair.linear);
      for (const m of report.modules) {
        const D = pairDelta(pair, m.name);
        const ref = referenceSvd(D, m.shape[0], m.shape[1]);
        expect(m.sigma.length).toBe(Math.min(DEFAULT_TOP_K, SIGMA_REPORT_LIMIT, ...m.shape));
        m.sigma.forEach((s, j) => expect(Math.abs(s - ref.s[j]!), `${m.name} σ${j + 1}`).toBeLessThanOrEqual(SIGMA_TOL * (ref.s[0] ?? 0)));
        expect(Math.abs(m.frobenius - frob(D))).toBeLessThanOrEqual(1e-6 * frob(D));
      }
    };
    try {
      const out = join(root, "rank1");
      const report = await deltaPass({ kind: "full", base, finetuned: ft }, 1, out, { quiet: true });
      expectDenseSpectrum(report);
      // what scan reports is what `spectrum` prints for the same pair
      expect(report).toEqual(await fullSpectrum(base, ft, { quiet: true }));
      expect(report.otherChanges!.map((o) => o.name).sort()).toEqual(["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"]);
      const written = await readFolder(out);
      // the unchanged k_proj is in the spectrum, but its truncation has no factors to write
      expect(written.map((m) => m.name)).toEqual(pair.linear.filter((n) => !n.includes("k_proj")));
      for (const m of written) expectBestRankK(m, pairDelta(pair, m.name), 1, FULL_TOL);

      // rank 10 > DEFAULT_TOP_K: one wider SVD per module; the report still carries the top 8 (clamped to the shape)
      const wide = await deltaPass({ kind: "full", base, finetuned: ft }, 10, join(root, "rank10"), { quiet: true });
      expectDenseSpectrum(wide);
      for (const m of await readFolder(join(root, "rank10"))) expectBestRankK(m, pairDelta(pair, m.name), 10, FULL_TOL);
    } finally {
      await close();
    }
  });

  it("a truncation alone computes only the rank's singular values; a pass also the spectrum's", async () => {
    const root = tempDir("pass-full-k");
    dirs.push(root);
    const pair = fullPair(15);
    const { base, ft, close } = await openFullPair(root, pair);
    // the unchanged k_proj is answered without an SVD
    const changed = [[24, 16], [8, 16], [16, 40]];
    const ks = () => vi.mocked(randomized.topKSvd).mock.calls.map(([, k]) => k);
    try {
      for (const m of await collect(lowRankFromFull(base, ft, 2, { quiet: true }))) expectBestRankK(m, pairDelta(pair, m.name), 2, FULL_TOL);
      expect(ks()).toEqual(changed.map(() => 2));
      vi.mocked(randomized.topKSvd).mockClear();
      await deltaPass({ kind: "full", base, finetuned: ft }, 2, join(root, "rank2"), { quiet: true });
      expect(ks()).toEqual(changed.map((shape) => Math.min(DEFAULT_TOP_K, ...shape)));
    } finally {
      await close();
    }
  });

  it("where no decoder linear changed, writes one zero module so the rank adapter still loads (as the base)", async () => {
    const root = tempDir("pass-full-frozen");
    dirs.push(root);
    const pair = fullPair(16);
    // only the norm and the embedding were trained
    const ft = pair.ft.map((t) => (t.name.endsWith("_proj.weight") ? pair.base.find((b) => b.name === t.name)! : t));
    const opened = await openFullPair(root, { base: pair.base, ft });
    const out = join(root, "rank1");
    try {
      const report = await deltaPass({ kind: "full", base: opened.base, finetuned: opened.ft }, 1, out, { quiet: true });
      expect(report.summary.modules).toBe(0);
      const written = await readFolder(out);
      expect(written.map((m) => m.name)).toEqual([pair.linear[0]]);
      expect(written[0]!.A.every((x) => x === 0) && written[0]!.B.every((x) => x === 0)).toBe(true);
    } finally {
      await opened.close();
    }
  });

  it("refuses a pair that does not match before writing anything", async () => {
    const root = tempDir("pass-full-bad");
    dirs.push(root);
    const pair = fullPair(14);
    const { base, ft, close } = await openFullPair(root, { base: pair.base, ft: pair.ft.slice(1) });
    const out = join(root, "rank1");
    try {
      await expect(deltaPass({ kind: "full", base, finetuned: ft }, 1, out, { quiet: true })).rejects.toThrow(/lacks tensor "model.embed_tokens.weight"/);
      expect(existsSync(out)).toBe(false);
    } finally {
      await close();
    }
  });
});
