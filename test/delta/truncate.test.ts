import { afterAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { openAdapter } from "../../src/io/peft";
import { lowRankFromFull, truncateAdapter, truncatedLayout, truncateModule, writeTruncatedAdapter } from "../../src/delta/truncate";
import { deltaPass } from "../../src/delta/pass";
import { MAX_RANK } from "../../src/delta/limits";
import { loraModuleStep } from "../../src/delta/walk";
import { releaseKernels } from "../../src/linalg/kernels";
import type { Checkpoint, LoraAdapter, LoraModule } from "../../src/io/types";
import { bestRankK, denseDelta, diffFrob, frob, referenceSvd } from "../linalg/reference";
import { DOWN1, expectBestRankK, fullPair, makeModules, openFullPair, pairDelta, Q0, tempDir, V0, writeAdapterDir } from "./fixtures";

/** Truncation error vs the dense best rank-k, relative to ‖ΔW‖_F (float32 factors). */
const RECON_TOL = 1e-5;
const dirs: string[] = [];
afterAll(async () => {
  await releaseKernels();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function moduleOf(name: string, out: number, inf: number, r: number, scale: number, seed: number): LoraModule {
  const [m] = makeModules([[name, out, inf, r]], seed);
  return { name, rank: r, scale, outFeatures: out, inFeatures: inf, A: m!.A, B: m!.B };
}

function dense(m: LoraModule) {
  return denseDelta(m.B, m.A, m.outFeatures, m.rank, m.inFeatures, m.scale);
}

describe("truncateModule", () => {
  it("is the dense best rank-k approximation, with scale 1 and √σ on each side (sync and ORT)", async () => {
    const m = moduleOf(Q0, 30, 20, 6, 1.75, 8);
    const D = dense(m);
    const ref = referenceSvd(D, 30, 20);
    for (const k of [1, 2, 6]) {
      for (const t of [truncateModule(m, k), (await loraModuleStep(m, k)).truncated!]) {
        expect(t).toMatchObject({ name: Q0, rank: k, scale: 1, outFeatures: 30, inFeatures: 20 });
        expect(t.B.length).toBe(30 * k);
        expect(t.A.length).toBe(k * 20);
        expect(diffFrob(dense(t), bestRankK(ref, k, 30, 20))).toBeLessThan(RECON_TOL * frob(D));
        // √σ split: column j of B and row j of A both have norm √σⱼ
        for (let j = 0; j < k; j++) {
          let b2 = 0;
          let a2 = 0;
          for (let i = 0; i < 30; i++) b2 += t.B[i * k + j]! ** 2;
          for (let i = 0; i < 20; i++) a2 += t.A[j * 20 + i]! ** 2;
          expect(Math.sqrt(b2)).toBeCloseTo(Math.sqrt(ref.s[j]!), 4);
          expect(Math.sqrt(a2)).toBeCloseTo(Math.sqrt(ref.s[j]!), 4);
        }
      }
    }
  });

  it("pads with zero columns when k exceeds the module's rank", () => {
    const m = moduleOf(V0, 12, 9, 2, 1, 4);
    const t = truncateModule(m, 5);
    expect(t.rank).toBe(5);
    expect(diffFrob(dense(t), dense(m))).toBeLessThan(RECON_TOL * frob(dense(m)));
  });
});

describe("truncateAdapter + writeTruncatedAdapter", () => {
  it("round-trips through openAdapter as the rank-k ΔW of an rslora / rank_pattern adapter", async () => {
    const root = tempDir("trunc");
    dirs.push(root);
    const mods = makeModules([[Q0, 24, 16, 4], [V0, 8, 16, 4], [DOWN1, 16, 40, 6]], 31);
    const src = await writeAdapterDir(join(root, "src"), mods, {
      r: 4,
      lora_alpha: 16,
      use_rslora: true,
      rank_pattern: { down_proj: 6 },
      alpha_pattern: { v_proj: 3 },
      base_model_name_or_path: "org/base",
    });
    const adapter = await openAdapter(src);
    const refs = new Map<string, Float64Array>();
    for (const n of adapter.moduleNames()) refs.set(n, dense(await adapter.readModule(n)));
    const out = join(root, "rank2");
    await writeTruncatedAdapter(out, truncateAdapter(adapter, 2, { quiet: true }), adapter.config, { layout: truncatedLayout(adapter, 2) });
    await adapter.close();

    const cfg = JSON.parse(readFileSync(join(out, "adapter_config.json"), "utf8"));
    expect(cfg).toMatchObject({ peft_type: "LORA", r: 2, lora_alpha: 2, use_rslora: false, rank_pattern: {}, alpha_pattern: {}, base_model_name_or_path: "org/base" });
    const back = await openAdapter(out);
    expect(back.moduleNames()).toEqual([Q0, V0, DOWN1]);
    for (const n of back.moduleNames()) expectBestRankK(await back.readModule(n), refs.get(n)!, 2, RECON_TOL);
    await back.close();
  });
});

describe("lowRankFromFull", () => {
  it("extracts the dense best rank-k of each linear ΔW", async () => {
    const root = tempDir("lowrank");
    dirs.push(root);
    const pair = fullPair(9);
    const { base, ft, close } = await openFullPair(root, pair);
    const got: LoraModule[] = [];
    try {
      for await (const m of lowRankFromFull(base, ft, 2, { quiet: true })) got.push(m);
    } finally {
      await close();
    }
    // k_proj is unchanged (ΔW = 0): no factors
    expect(got.map((m) => m.name)).toEqual(pair.linear.filter((n) => !n.includes("k_proj")));
    for (const m of got) expectBestRankK(m, pairDelta(pair, m.name), 2, 1e-4);
  });

  it("refuses a checkpoint without decoder linears when called, before anything is pulled", async () => {
    const root = tempDir("lowrank-none");
    dirs.push(root);
    const pair = fullPair(10);
    const { base, ft, close } = await openFullPair(root, { base: pair.base, ft: pair.ft.filter((t) => !t.name.endsWith("_proj.weight")) });
    try {
      expect(() => lowRankFromFull(base, ft, 1)).toThrow(/has no linear modules under model\.layers\.N/);
    } finally {
      await close();
    }
  });
});

/** A subject that fails any use at all: a refusal that comes back instead of "touched" came before any reading. */
const untouchable = <T extends object>(): T =>
  new Proxy({} as T, {
    get: (_t, key) => {
      throw new Error(`touched ${String(key)}`);
    },
  });

describe("the rank limit", () => {
  const tooLarge = MAX_RANK + 1;
  const refusal = new RegExp(`--rank: expected an integer from 1 to ${MAX_RANK}, got ${tooLarge}`);

  it("truncateAdapter, lowRankFromFull and truncateModule refuse k = MAX_RANK + 1 when called, before reading", () => {
    expect(() => truncateAdapter(untouchable<LoraAdapter>(), tooLarge)).toThrow(refusal);
    expect(() => lowRankFromFull(untouchable<Checkpoint>(), untouchable<Checkpoint>(), tooLarge)).toThrow(refusal);
    expect(() => truncateModule(moduleOf(Q0, 4, 3, 1, 1, 1), tooLarge)).toThrow(new RegExp(`rank: expected an integer from 1 to ${MAX_RANK}`));
  });

  it("deltaPass refuses it before reading or writing anything", async () => {
    const root = tempDir("rank-limit");
    dirs.push(root);
    const out = join(root, "out");
    await expect(deltaPass({ kind: "lora", adapter: untouchable<LoraAdapter>() }, tooLarge, out)).rejects.toThrow(refusal);
    await expect(deltaPass({ kind: "full", base: untouchable<Checkpoint>(), finetuned: untouchable<Checkpoint>() }, tooLarge, out)).rejects.toThrow(refusal);
    expect(existsSync(out)).toBe(false);
  });
});
