/**
 * The one delta pass (delta/walk.ts, delta/pass.ts) on real adapter and checkpoint folders: its
 * spectrum is what adapterSpectrum / fullSpectrum report, its rank-k folder holds what
 * truncateAdapter / lowRankFromFull compute, and every module is read and decomposed once.
 * The linalg entry points are wrapped by call-through spies only to count calls: the math runs.
 */
import { afterAll, beforeEach, describe, expect, it, vi } from "vitest";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { openAdapter } from "../../src/io/peft";
import { openCheckpoint } from "../../src/io/checkpoint";
import type { LoraAdapter, LoraModule } from "../../src/io/types";
import * as factored from "../../src/linalg/factored-svd";
import { releaseKernels } from "../../src/linalg/kernels";
import { PooledFactorReader } from "../../src/delta/factor-reader";
import { adapterSpectrum, fullSpectrum } from "../../src/delta/spectrum";
import { lowRankFromFull, truncateAdapter } from "../../src/delta/truncate";
import { deltaPass } from "../../src/delta/pass";
import { walkAdapter } from "../../src/delta/walk";
import { DOWN1, fullPair, makeModules, Q0, tempDir, V0, writeAdapterDir, writeCheckpointDir } from "./fixtures";

vi.mock("../../src/linalg/factored-svd", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../src/linalg/factored-svd")>();
  return { ...real, factoredTruncation: vi.fn(real.factoredTruncation), factoredSingularValues: vi.fn(real.factoredSingularValues) };
});

const dirs: string[] = [];
afterAll(async () => {
  await releaseKernels();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
beforeEach(() => {
  vi.mocked(factored.factoredTruncation).mockClear();
  vi.mocked(factored.factoredSingularValues).mockClear();
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

const factorsOf = (ms: LoraModule[]) => ms.map((m) => ({ name: m.name, rank: m.rank, scale: m.scale, A: Array.from(m.A), B: Array.from(m.B) }));

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

  it("reports adapterSpectrum's σ to the bit and writes truncateAdapter's factors, reading and decomposing each module once", async () => {
    const root = tempDir("pass-lora");
    dirs.push(root);
    const src = await writeAdapterDir(join(root, "src"), mods, { r: 4, lora_alpha: 8, rank_pattern: { down_proj: 6 }, base_model_name_or_path: "org/base" });
    const adapter = await openAdapter(src);
    try {
      const spectrum = await adapterSpectrum(adapter, { quiet: true });
      const truncated = await collect(truncateAdapter(adapter, 2, { quiet: true }));
      vi.mocked(factored.factoredTruncation).mockClear();
      vi.mocked(factored.factoredSingularValues).mockClear();
      const reads: string[] = [];
      const out = join(root, "rank2");
      const report = await deltaPass({ kind: "lora", adapter: counting(adapter, reads) }, 2, out, { quiet: true });
      expect(report).toEqual(spectrum);
      expect("otherChanges" in report).toBe(false);
      expect(factorsOf(await readFolder(out))).toEqual(factorsOf(truncated));
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
  it("reports fullSpectrum's spectrum and other changes and writes lowRankFromFull's factors", async () => {
    const root = tempDir("pass-full");
    dirs.push(root);
    const pair = fullPair(13);
    const base = await openCheckpoint(await writeCheckpointDir(join(root, "base"), pair.base));
    const ft = await openCheckpoint(await writeCheckpointDir(join(root, "ft"), pair.ft));
    try {
      // rank 1: the pass's top-k is the spectrum's own k = 8, so the numbers are the same to the bit
      const spectrum = await fullSpectrum(base, ft, { quiet: true });
      const low = await collect(lowRankFromFull(base, ft, 1, { quiet: true }));
      const out = join(root, "rank1");
      const report = await deltaPass({ kind: "full", base, finetuned: ft }, 1, out, { quiet: true });
      expect(report).toEqual(spectrum);
      expect(report.otherChanges!.map((o) => o.name).sort()).toEqual(["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"]);
      const written = await readFolder(out);
      expect(written.map((m) => m.name)).toEqual(pair.linear);
      expect(factorsOf(written)).toEqual(factorsOf(low));

      // rank 10 > DEFAULT_TOP_K: one wider SVD; the report still carries the top 8 (clamped to the shape), the same values up to the iteration's tolerance
      const wide = await deltaPass({ kind: "full", base, finetuned: ft }, 10, join(root, "rank10"), { quiet: true });
      expect(wide.modules.map((m) => m.sigma.length)).toEqual(spectrum.modules.map((m) => m.sigma.length));
      wide.modules.forEach((m, i) => {
        const want = spectrum.modules[i]!;
        m.sigma.forEach((s, j) => expect(Math.abs(s - want.sigma[j]!)).toBeLessThanOrEqual(1e-4 * (want.sigma[0] ?? 0)));
      });
      expect(factorsOf(await readFolder(join(root, "rank10")))).toEqual(factorsOf(await collect(lowRankFromFull(base, ft, 10, { quiet: true }))));
    } finally {
      await base.close();
      await ft.close();
    }
  });

  it("refuses a pair that does not match before writing anything", async () => {
    const root = tempDir("pass-full-bad");
    dirs.push(root);
    const pair = fullPair(14);
    const base = await openCheckpoint(await writeCheckpointDir(join(root, "base"), pair.base));
    const ft = await openCheckpoint(await writeCheckpointDir(join(root, "ft"), pair.ft.slice(1)));
    const out = join(root, "rank1");
    try {
      await expect(deltaPass({ kind: "full", base, finetuned: ft }, 1, out, { quiet: true })).rejects.toThrow(/lacks tensor "model.embed_tokens.weight"/);
      expect(existsSync(out)).toBe(false);
    } finally {
      await base.close();
      await ft.close();
    }
  });
});
