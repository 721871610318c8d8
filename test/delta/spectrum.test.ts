import { afterAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { rmSync } from "node:fs";
import { openAdapter } from "../../src/io/peft";
import { openCheckpoint } from "../../src/io/checkpoint";
import { adapterSpectrum, fullSpectrum } from "../../src/delta/spectrum";
import { releaseKernels } from "../../src/linalg/kernels";
import { denseDelta, diffFrob, frob, referenceSvd } from "../linalg/reference";
import { DOWN1, fullPair, makeModules, Q0, tempDir, V0, writeAdapterDir, writeCheckpointDir } from "./fixtures";

const SIGMA_RTOL = 1e-4;
const dirs: string[] = [];
afterAll(async () => {
  await releaseKernels();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function expectCloseRel(got: number, want: number, rtol = SIGMA_RTOL) {
  expect(Math.abs(got - want)).toBeLessThanOrEqual(rtol * Math.abs(want) + 1e-12);
}

describe("adapterSpectrum", () => {
  it("matches dense SVDs with rslora, rank_pattern and alpha_pattern scales", async () => {
    const dir = tempDir("spec");
    dirs.push(dir);
    const mods = makeModules([[Q0, 24, 16, 4], [V0, 8, 16, 4], [DOWN1, 16, 40, 6]], 21);
    await writeAdapterDir(dir, mods, {
      r: 4,
      lora_alpha: 8,
      use_rslora: true,
      rank_pattern: { down_proj: 6 },
      alpha_pattern: { "layers\\.0\\.self_attn\\.v_proj": 2 },
    });
    const adapter = await openAdapter(dir);
    const report = await adapterSpectrum(adapter, { quiet: true });
    await adapter.close();
    // the scales PEFT would use, computed here from the config by hand
    const scales: Record<string, number> = { [Q0]: 8 / Math.sqrt(4), [V0]: 2 / Math.sqrt(4), [DOWN1]: 8 / Math.sqrt(6) };
    expect(report.modules.map((m) => m.name)).toEqual([Q0, V0, DOWN1]);
    for (const m of mods) {
      const got = report.modules.find((x) => x.name === m.name)!;
      const D = denseDelta(m.B, m.A, m.out, m.r, m.inf, scales[m.name]!);
      const ref = referenceSvd(D, m.out, m.inf);
      expect(got.shape).toEqual([m.out, m.inf]);
      expect(got.rank).toBe(m.r);
      expect(got.sigma.length).toBe(m.r);
      got.sigma.forEach((s, i) => expectCloseRel(s, ref.s[i]!));
      expectCloseRel(got.frobenius, frob(D), 1e-6);
      expectCloseRel(got.spectralNorm, ref.s[0]!);
      expectCloseRel(got.stableRank, frob(D) ** 2 / ref.s[0]! ** 2);
    }
    expect(report.modules[0]!.type).toBe("q");
    expect(report.modules[2]).toMatchObject({ type: "down", layer: 1 });
    expect(report.summary.modules).toBe(3);
    expect(Object.keys(report.summary.byType).sort()).toEqual(["down", "q", "v"]);
  });

  it("reports progress once per module", async () => {
    const dir = tempDir("prog");
    dirs.push(dir);
    await writeAdapterDir(dir, makeModules([[Q0, 24, 16, 2], [V0, 8, 16, 2]], 3), { r: 2, lora_alpha: 4 });
    const adapter = await openAdapter(dir);
    const seen: string[] = [];
    await adapterSpectrum(adapter, { onProgress: (d, t, n) => seen.push(`${d}/${t} ${n}`) });
    await adapter.close();
    expect(seen).toEqual([`1/2 ${Q0}`, `2/2 ${V0}`]);
  });
});

describe("fullSpectrum", () => {
  it("gives exact Frobenius norms, dense-SVD top-k and the changed non-linear tensors", async () => {
    const root = tempDir("full");
    dirs.push(root);
    const pair = fullPair(5);
    const base = await openCheckpoint(await writeCheckpointDir(join(root, "base"), pair.base));
    const ft = await openCheckpoint(await writeCheckpointDir(join(root, "ft"), pair.ft));
    const report = await fullSpectrum(base, ft, { topK: 4, quiet: true });
    await base.close();
    await ft.close();
    expect(report.modules.map((m) => m.name)).toEqual(pair.linear);
    for (const m of report.modules) {
      const b = pair.base.find((t) => t.name === `${m.name}.weight`)!;
      const f = pair.ft.find((t) => t.name === `${m.name}.weight`)!;
      const D = Float64Array.from(f.data, (x, i) => x - b.data[i]!);
      const [out, inf] = b.shape as [number, number];
      expect(m.shape).toEqual([out, inf]);
      expectCloseRel(m.frobenius, frob(D), 1e-6);
      if (m.name.includes("k_proj")) {
        expect(m.frobenius).toBe(0);
        expect(m.stableRank).toBe(0);
        continue;
      }
      const ref = referenceSvd(D, out, inf);
      expect(m.sigma.length).toBe(4);
      m.sigma.forEach((s, i) => expect(Math.abs(s - ref.s[i]!)).toBeLessThanOrEqual(SIGMA_RTOL * ref.s[0]!));
      expectCloseRel(m.stableRank, frob(D) ** 2 / ref.s[0]! ** 2);
      // noise makes ΔW full rank, so the rank is min(out, in)
      expect(m.rank).toBe(Math.min(out, inf));
    }
    // the unchanged k_proj is listed but left out of the summary
    expect(report.summary.modules).toBe(3);
    const other = report.otherChanges!;
    expect(other.map((o) => o.name).sort()).toEqual(["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"]);
    for (const o of other) {
      const b = pair.base.find((t) => t.name === o.name)!;
      const f = pair.ft.find((t) => t.name === o.name)!;
      expectCloseRel(o.frobenius, diffFrob(f.data, b.data), 1e-6);
      expectCloseRel(o.relative, diffFrob(f.data, b.data) / frob(b.data), 1e-6);
      expect(o.shape).toEqual(b.shape);
    }
  });

  it("finds the numerical rank of an exactly low-rank ΔW", async () => {
    const root = tempDir("lowrank");
    dirs.push(root);
    const pair = fullPair(7, 0);
    const base = await openCheckpoint(await writeCheckpointDir(join(root, "base"), pair.base));
    const ft = await openCheckpoint(await writeCheckpointDir(join(root, "ft"), pair.ft));
    const report = await fullSpectrum(base, ft, { topK: 2, quiet: true });
    await base.close();
    await ft.close();
    expect(report.modules.map((m) => m.rank)).toEqual([3, 0, 3, 3]);
  });

  it("refuses checkpoints whose tensors do not pair up", async () => {
    const root = tempDir("mismatch");
    dirs.push(root);
    const pair = fullPair(6);
    const base = await openCheckpoint(await writeCheckpointDir(join(root, "base"), pair.base));
    const ft = await openCheckpoint(await writeCheckpointDir(join(root, "ft"), pair.ft.slice(1)));
    await expect(fullSpectrum(base, ft, { quiet: true })).rejects.toThrow(/lacks tensor "model.embed_tokens.weight"/);
    await base.close();
    await ft.close();
  });
});
