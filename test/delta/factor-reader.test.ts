import { afterAll, describe, expect, it } from "vitest";
import { rmSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { openAdapter } from "../../src/io/peft";
import { writeSafetensors } from "../../src/io/safetensors";
import type { DType, LoraAdapter } from "../../src/io/types";
import { PooledFactorReader } from "../../src/delta/factor-reader";
import { adapterSpectrum } from "../../src/delta/spectrum";
import { mapAdapterModules } from "../../src/delta/adapter-modules";
import { truncateAdapter } from "../../src/delta/truncate";
import { releaseKernels } from "../../src/linalg/kernels";
import { DOWN1, makeModules, Q0, tempDir, V0, writeAdapterDir, type FixtureModule } from "./fixtures";

const dirs: string[] = [];
afterAll(async () => {
  await releaseKernels();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function bf16(x: Float32Array): Float32Array {
  // values exactly representable in bfloat16, so the decoded factors equal these
  const u = new Uint32Array(Float32Array.from(x).buffer);
  for (let i = 0; i < u.length; i++) u[i] = u[i]! & 0xffff0000;
  return new Float32Array(u.buffer);
}

/** An adapter file with the tensors in the given order and dtypes (PEFT key names). */
async function writeOrdered(dir: string, mods: FixtureModule[], order: Array<[number, "A" | "B", DType]>, key = (m: string, f: string) => `base_model.model.${m}.lora_${f}.weight`) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj", "down_proj"] }));
  await writeSafetensors(
    join(dir, "adapter_model.safetensors"),
    order.map(([i, f, dtype]) => {
      const m = mods[i]!;
      return { name: key(m.name, f), dtype, shape: f === "A" ? [m.r, m.inf] : [m.out, m.r], data: f === "A" ? m.A : m.B };
    }),
  );
  return dir;
}

/** Every module through the pooled reader and through readModule: the same values. */
async function expectSameAsReadModule(adapter: LoraAdapter, buffers: number) {
  const reader = await PooledFactorReader.open(adapter, buffers);
  expect(reader).toBeDefined();
  // all modules requested at once with fewer buffers than modules: reads wait for releases
  const held = adapter.moduleNames().map((n) => reader!.read(n));
  for (const [i, name] of adapter.moduleNames().entries()) {
    const got = await held[i]!;
    const want = await adapter.readModule(name);
    expect(Array.from(got.module.A)).toEqual(Array.from(want.A));
    expect(Array.from(got.module.B)).toEqual(Array.from(want.B));
    expect([got.module.rank, got.module.scale, got.module.outFeatures, got.module.inFeatures]).toEqual([want.rank, want.scale, want.outFeatures, want.inFeatures]);
    got.release();
    got.release(); // idempotent: a buffer is never handed out twice
  }
  await reader!.close();
  await expect(reader!.read(adapter.moduleNames()[0]!)).rejects.toThrow(/after close/);
}

describe("PooledFactorReader", () => {
  it("reads adjacent float32 factors in place, BF16/F16 and far-apart factors through staging", async () => {
    const BIG = "model.layers.1.self_attn.q_proj";
    const mods = makeModules([[Q0, 24, 16, 4], [V0, 8, 16, 4], [DOWN1, 16, 40, 4], [BIG, 4096, 16, 4]], 5);
    mods[1]!.A = bf16(mods[1]!.A);
    mods[1]!.B = bf16(mods[1]!.B);
    const f16 = (x: Float32Array) => Float32Array.from(x, (v) => Math.round(v * 1024) / 1024);
    mods[2]!.A = f16(mods[2]!.A);
    const dir = tempDir("pool");
    dirs.push(dir);
    // Q0: adjacent F32, in place; BIG: B before A, adjacent, in place; V0: adjacent BF16, staged;
    // DOWN1: B, then BIG and V0 (> MAX_JOINED_GAP_BYTES), then A in F16: two reads
    await writeOrdered(dir, mods, [[0, "A", "F32"], [0, "B", "F32"], [2, "B", "F32"], [3, "B", "F32"], [3, "A", "F32"], [1, "A", "BF16"], [1, "B", "BF16"], [2, "A", "F16"]]);
    const adapter = await openAdapter(dir);
    await expectSameAsReadModule(adapter, 1);
    await expectSameAsReadModule(adapter, 2);
    await adapter.close();
  });

  it("handles a BF16 tensor that leaves the next float32 tensor misaligned", async () => {
    // A is 4×3 BF16 = 24 bytes, B is 5×4 F32: fine; make A 3×3 BF16 (18 bytes) so B starts at +2
    const mods = makeModules([[Q0, 5, 3, 3]], 8);
    mods[0]!.A = bf16(mods[0]!.A);
    const dir = tempDir("pool-misaligned");
    dirs.push(dir);
    await writeOrdered(dir, mods, [[0, "A", "BF16"], [0, "B", "F32"]]);
    writeFileSync(join(dir, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 3, lora_alpha: 3, target_modules: ["q_proj"] }));
    const adapter = await openAdapter(dir);
    await expectSameAsReadModule(adapter, 1);
    await adapter.close();
  });

  it("reads adapter-named keys, and declines adapters it cannot locate exactly", async () => {
    const mods = makeModules([[Q0, 6, 5, 4]], 9);
    const named = tempDir("pool-named");
    dirs.push(named);
    await writeOrdered(named, mods, [[0, "A", "F32"], [0, "B", "F32"]], (m, f) => `base_model.model.${m}.lora_${f}.default.weight`);
    const adapter = await openAdapter(named);
    await expectSameAsReadModule(adapter, 1);
    // an adapter that is not a PEFT folder on disk (in-memory implementation): no pooled reads
    const fake: LoraAdapter = { ...adapter, dir: join(named, "missing"), moduleNames: () => adapter.moduleNames(), moduleInfo: (n) => adapter.moduleInfo(n), readModule: (n, o) => adapter.readModule(n, o), close: async () => undefined };
    expect(await PooledFactorReader.open(fake, 1)).toBeUndefined();
    // one that reports other shapes than the file holds (e.g. a transforming wrapper): declined too
    const reshaped: LoraAdapter = { ...fake, dir: named, moduleInfo: (n) => ({ ...adapter.moduleInfo(n), inFeatures: 99 }) };
    expect(await PooledFactorReader.open(reshaped, 1)).toBeUndefined();
    await adapter.close();
  });

  it("gives the same spectrum and truncation as readModule, and reports NaN factors as input errors", async () => {
    const mods = makeModules([[Q0, 24, 16, 4], [V0, 8, 16, 4], [DOWN1, 16, 40, 4]], 12);
    const dir = await writeAdapterDir(tempDir("pool-spec"), mods, { r: 4, lora_alpha: 8 });
    dirs.push(dir);
    const adapter = await openAdapter(dir);
    const pooled = await adapterSpectrum(adapter, { quiet: true });
    // the same adapter seen through a wrapper the reader declines: readModule path
    const wrapped: LoraAdapter = { dir: join(dir, "elsewhere"), config: adapter.config, moduleNames: () => adapter.moduleNames(), moduleInfo: (n) => adapter.moduleInfo(n), readModule: (n, o) => adapter.readModule(n, o), close: async () => undefined };
    const plain = await adapterSpectrum(wrapped, { quiet: true });
    expect(pooled.modules.map((m) => Array.from(m.sigma))).toEqual(plain.modules.map((m) => Array.from(m.sigma)));
    const t1: Float32Array[] = [];
    for await (const m of truncateAdapter(adapter, 2, { quiet: true })) t1.push(m.A, m.B);
    const t2: Float32Array[] = [];
    for await (const m of truncateAdapter(wrapped, 2, { quiet: true })) t2.push(m.A, m.B);
    // truncated factors must not alias the pooled buffers (they outlive the read)
    expect(t1.map((x) => Array.from(x))).toEqual(t2.map((x) => Array.from(x)));
    await adapter.close();

    mods[1]!.B[3] = Number.NaN;
    const bad = await writeAdapterDir(tempDir("pool-nan"), mods, { r: 4, lora_alpha: 8 });
    dirs.push(bad);
    const badAdapter = await openAdapter(bad);
    await expect(adapterSpectrum(badAdapter, { quiet: true })).rejects.toThrow(new RegExp(`module ${V0.replace(/\./g, "\\.")}: lora_B holds non-finite`));
    // the pool is closed after a failure: a later full pass still works on a good adapter
    const again = await openAdapter(dir);
    const names: string[] = [];
    for await (const [name] of mapAdapterModules(again, async (m) => m.A.length)) names.push(name);
    expect(names).toEqual([Q0, V0, DOWN1]);
    await again.close();
    await badAdapter.close();
  });
});
