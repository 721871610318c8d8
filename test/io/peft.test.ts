import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { openCheckpoint } from "../../src/io/checkpoint";
import { PeftPattern, adapterKey, openAdapter, writeAdapter } from "../../src/io/peft";
import { writeSafetensors } from "../../src/io/safetensors";
import type { DType, LoraModule } from "../../src/io/types";
import { denseDelta, maxAbs, maxAbsDiff, randomFloats, rng, withTempDir, writeJson, expectInputError } from "./helpers";

interface FixtureModule {
  name: string;
  r: number;
  out: number;
  in: number;
}

interface Fixture {
  A: Map<string, Float32Array>;
  B: Map<string, Float32Array>;
}

const BASE_CONFIG = { peft_type: "LORA", task_type: "CAUSAL_LM", r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj"] };

/** Write an adapter folder by hand: config as given, factors as PEFT stores them ([r,in] / [out,r]). */
async function writeFixture(
  dir: string,
  config: Record<string, unknown>,
  modules: FixtureModule[],
  opts: { seed?: number; keyOf?: (m: string, f: "A" | "B") => string; extra?: Array<{ name: string; shape: number[] }>; dtype?: DType } = {},
): Promise<Fixture> {
  const rand = rng(opts.seed ?? 11);
  const keyOf = opts.keyOf ?? ((m, f) => `base_model.model.${m}.lora_${f}.weight`);
  const A = new Map<string, Float32Array>();
  const B = new Map<string, Float32Array>();
  const tensors = [];
  for (const m of modules) {
    const a = randomFloats(m.r * m.in, rand);
    const b = randomFloats(m.out * m.r, rand);
    A.set(m.name, a);
    B.set(m.name, b);
    tensors.push({ name: keyOf(m.name, "A"), dtype: opts.dtype ?? ("F32" as const), shape: [m.r, m.in], data: a });
    tensors.push({ name: keyOf(m.name, "B"), dtype: opts.dtype ?? ("F32" as const), shape: [m.out, m.r], data: b });
  }
  for (const e of opts.extra ?? []) tensors.push({ name: e.name, dtype: "F32" as const, shape: e.shape, data: new Float32Array(e.shape.reduce((x, y) => x * y, 1)) });
  await writeJson(join(dir, "adapter_config.json"), config);
  await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors);
  return { A, B };
}

/** ΔW of a module as the adapter reports it (A, B, scale), in float64. */
async function deltaOf(mod: LoraModule): Promise<Float64Array> {
  return denseDelta(mod.A, mod.B, mod.outFeatures, mod.rank, mod.inFeatures, mod.scale);
}

/** Check the adapter's ΔW for `m` against the dense float64 ΔW from the raw factors and the expected scale. */
async function expectDelta(dir: string, fx: Fixture, m: FixtureModule, expectedScale: number) {
  const ad = await openAdapter(dir);
  try {
    const mod = await ad.readModule(m.name);
    expect(ad.moduleInfo(m.name)).toEqual({ rank: m.r, scale: mod.scale, outFeatures: m.out, inFeatures: m.in });
    const ref = denseDelta(fx.A.get(m.name)!, fx.B.get(m.name)!, m.out, m.r, m.in, expectedScale);
    const got = await deltaOf(mod);
    expect(maxAbsDiff(got, ref)).toBeLessThanOrEqual(1e-12 * maxAbs(ref));
  } finally {
    await ad.close();
  }
}

const Q0: FixtureModule = { name: "model.layers.0.self_attn.q_proj", r: 4, out: 6, in: 5 };
const V0: FixtureModule = { name: "model.layers.0.self_attn.v_proj", r: 4, out: 3, in: 5 };

describe("openAdapter: scale", () => {
  it("scale = lora_alpha / r; modules in file order; ΔW matches the dense reference", async () => {
    await withTempDir(async (dir) => {
      const fx = await writeFixture(dir, BASE_CONFIG, [Q0, V0]);
      const ad = await openAdapter(dir);
      expect(ad.moduleNames()).toEqual([Q0.name, V0.name]);
      expect(ad.config.r).toBe(4);
      expect(ad.config.use_rslora).toBe(false);
      await ad.close();
      await expectDelta(dir, fx, Q0, 8 / 4);
      await expectDelta(dir, fx, V0, 8 / 4);
    });
  });

  it("use_rslora: scale = lora_alpha / √r", async () => {
    await withTempDir(async (dir) => {
      const fx = await writeFixture(dir, { ...BASE_CONFIG, lora_alpha: 16, use_rslora: true }, [Q0]);
      await expectDelta(dir, fx, Q0, 16 / 2);
    });
  });

  it("rank_pattern / alpha_pattern follow PEFT's (.*\\.)?(key)$ match, first key wins", async () => {
    await withTempDir(async (dir) => {
      const mods: FixtureModule[] = [
        { name: "model.layers.0.self_attn.q_proj", r: 2, out: 4, in: 3 },
        { name: "model.layers.1.self_attn.q_proj", r: 2, out: 4, in: 3 },
        { name: "model.layers.1.self_attn.v_proj", r: 3, out: 2, in: 3 },
        { name: "model.layers.11.self_attn.v_proj", r: 4, out: 2, in: 3 },
        { name: "model.layers.1.mlp.down_proj", r: 4, out: 3, in: 5 },
      ];
      const config = {
        ...BASE_CONFIG,
        r: 4,
        lora_alpha: 8,
        // PEFT loads only targeted modules: down_proj must be listed for its factors to count
        target_modules: ["q_proj", "v_proj", "down_proj"],
        // "layers.1.self_attn.v_proj" must not catch layers.11; "proj" must not catch "*_proj"
        rank_pattern: { q_proj: 2, "layers.1.self_attn.v_proj": 3, proj: 7 },
        alpha_pattern: { "^model.layers.0.self_attn.q_proj": 6, q_proj: 10, "mlp\\.down_proj": 1 },
      };
      const fx = await writeFixture(dir, config, mods);
      await expectDelta(dir, fx, mods[0]!, 6 / 2);
      await expectDelta(dir, fx, mods[1]!, 10 / 2);
      await expectDelta(dir, fx, mods[2]!, 8 / 3);
      await expectDelta(dir, fx, mods[3]!, 8 / 4);
      await expectDelta(dir, fx, mods[4]!, 1 / 4);
    });
  });

  it("PeftPattern matches like re.match(rf'(.*\\.)?({key})$')", () => {
    const p = new PeftPattern({ "self_attn.q_proj": 1, "^lm_head": 2, "layers\\.[0-3]\\.mlp\\..*": 3 }, "x");
    expect(p.resolve("model.layers.9.self_attn.q_proj")).toBe(1);
    expect(p.resolve("self_attn.q_proj")).toBe(1);
    expect(p.resolve("model.layers.9.xself_attn.q_proj")).toBeUndefined();
    expect(p.resolve("lm_head")).toBe(2);
    expect(p.resolve("model.lm_head")).toBeUndefined();
    expect(p.resolve("model.layers.2.mlp.up_proj")).toBe(3);
    expect(p.resolve("model.layers.5.mlp.up_proj")).toBeUndefined();
    expect(() => new PeftPattern({ "(a+)+$": 1 }, "rank_pattern")).toThrow(InputError);
    expect(() => new PeftPattern({ "q_proj(": 1 }, "rank_pattern")).toThrow(/not a valid regular expression/);
  });

  it("accepts the `.lora_A.default.weight` key form", async () => {
    await withTempDir(async (dir) => {
      const fx = await writeFixture(dir, BASE_CONFIG, [Q0], { keyOf: (m, f) => `base_model.model.${m}.lora_${f}.default.weight` });
      await expectDelta(dir, fx, Q0, 2);
    });
  });

  it("reads F16 / BF16 factors", async () => {
    await withTempDir(async (dir) => {
      await writeFixture(dir, BASE_CONFIG, [Q0], { dtype: "BF16" });
      const ad = await openAdapter(dir);
      const m = await ad.readModule(Q0.name);
      expect(m.A.length).toBe(Q0.r * Q0.in);
      await ad.close();
    });
  });
});

describe("openAdapter: base checks and fan_in_fan_out", () => {
  async function writeBase(dir: string, weights: Array<{ name: string; shape: number[] }>) {
    await writeJson(join(dir, "config.json"), { model_type: "llama" });
    await writeSafetensors(
      join(dir, "model.safetensors"),
      weights.map((w) => ({ name: w.name, dtype: "F32" as const, shape: w.shape, data: new Float32Array(w.shape[0]! * w.shape[1]!) })),
    );
    return openCheckpoint(dir);
  }

  it("accepts matching [out, in] base weights; names module and both shapes on mismatch; refuses missing modules", async () => {
    await withTempDir(async (dir) => {
      const ad = join(dir, "ad");
      const b = join(dir, "base");
      await Promise.all([import("node:fs/promises").then((fs) => fs.mkdir(ad)), import("node:fs/promises").then((fs) => fs.mkdir(b))]);
      await writeFixture(ad, BASE_CONFIG, [Q0, V0]);
      const good = await writeBase(b, [
        { name: `${Q0.name}.weight`, shape: [6, 5] },
        { name: `${V0.name}.weight`, shape: [3, 5] },
      ]);
      await (await openAdapter(ad, { base: good })).close();
      await good.close();
      const wrong = await writeBase(b, [
        { name: `${Q0.name}.weight`, shape: [6, 5] },
        { name: `${V0.name}.weight`, shape: [5, 3] },
      ]);
      await expectInputError(openAdapter(ad, { base: wrong }), V0.name, "[3,5]", "[5,3]");
      await wrong.close();
      const missing = await writeBase(b, [{ name: `${Q0.name}.weight`, shape: [6, 5] }]);
      await expectInputError(openAdapter(ad, { base: missing }), V0.name, "no ");
      await missing.close();
    });
  });

  it("fan_in_fan_out: factors stay [r,in]/[out,r] (PEFT layout); the Conv1D base weight is [in, out]", async () => {
    await withTempDir(async (dir) => {
      const fs = await import("node:fs/promises");
      const ad = join(dir, "ad");
      const b = join(dir, "base");
      await fs.mkdir(ad);
      await fs.mkdir(b);
      const C: FixtureModule = { name: "transformer.h.0.attn.c_attn", r: 2, out: 9, in: 3 };
      const fx = await writeFixture(ad, { ...BASE_CONFIG, r: 2, lora_alpha: 4, fan_in_fan_out: true, target_modules: ["c_attn"] }, [C]);
      const conv1d = await writeBase(b, [{ name: `${C.name}.weight`, shape: [3, 9] }]);
      const adapter = await openAdapter(ad, { base: conv1d });
      expect(adapter.config.fan_in_fan_out).toBe(true);
      const m = await adapter.readModule(C.name);
      expect([m.outFeatures, m.inFeatures]).toEqual([9, 3]);
      await adapter.close();
      await expectDelta(ad, fx, C, 2);
      await conv1d.close();
      const linear = await writeBase(b, [{ name: `${C.name}.weight`, shape: [9, 3] }]);
      await expectInputError(openAdapter(ad, { base: linear }), C.name, "fan_in_fan_out", "[9,3]");
      await linear.close();
    });
  });
});

describe("openAdapter: refusals", () => {
  const cases: Array<{ title: string; config?: Record<string, unknown>; extra?: Array<{ name: string; shape: number[] }>; expect: (string | RegExp)[] }> = [
    { title: "DoRA", config: { ...BASE_CONFIG, use_dora: true }, expect: ["adapter_config.json", "DoRA"] },
    { title: "DoRA magnitude vector without the flag", extra: [{ name: `base_model.model.${Q0.name}.lora_magnitude_vector`, shape: [6] }], expect: ["lora_magnitude_vector", "DoRA"] },
    { title: "LoHa", config: { peft_type: "LOHA", r: 4 }, expect: ["LOHA", "LoHa", "LoRA adapters only"] },
    { title: "IA3", config: { peft_type: "IA3" }, expect: ["IA3"] },
    { title: "prompt tuning", config: { peft_type: "PROMPT_TUNING" }, expect: ["prompt tuning"] },
    { title: "missing peft_type", config: { r: 4, lora_alpha: 8 }, expect: ["peft_type is missing"] },
    { title: "lora_bias", config: { ...BASE_CONFIG, lora_bias: true }, expect: ["lora_bias"] },
    { title: "embedding LoRA", extra: [{ name: "base_model.model.model.embed_tokens.lora_embedding_A", shape: [4, 10] }], expect: ["lora_embedding_A", "embedding"] },
    { title: "modules_to_save", extra: [{ name: "base_model.model.lm_head.weight", shape: [10, 5] }], expect: ["lm_head", "modules_to_save"] },
    { title: "bad r", config: { ...BASE_CONFIG, r: 2.5 }, expect: ["r = 2.5"] },
    { title: "bad lora_alpha", config: { ...BASE_CONFIG, lora_alpha: "8" }, expect: ["lora_alpha"] },
    { title: "bad rank_pattern", config: { ...BASE_CONFIG, rank_pattern: { q_proj: 0 } }, expect: ["rank_pattern", "positive integer"] },
    { title: "bad use_rslora", config: { ...BASE_CONFIG, use_rslora: "yes" }, expect: ["use_rslora"] },
    { title: "rank disagrees with config", config: { ...BASE_CONFIG, r: 8 }, expect: ["r = 8", "rank 4", Q0.name] },
    { title: "rank_pattern disagrees with factors", config: { ...BASE_CONFIG, rank_pattern: { v_proj: 2 } }, expect: [V0.name, "r = 2"] },
  ];
  for (const c of cases) {
    it(`refuses ${c.title}`, async () => {
      await withTempDir(async (dir) => {
        await writeFixture(dir, c.config ?? BASE_CONFIG, [Q0, V0], { extra: c.extra });
        await expectInputError(openAdapter(dir), ...c.expect);
      });
    });
  }

  it("refuses unpaired factors, rank disagreement between A and B, mixed adapter names", async () => {
    await withTempDir(async (dir) => {
      await writeJson(join(dir, "adapter_config.json"), BASE_CONFIG);
      const t = (name: string, shape: number[]) => ({ name, dtype: "F32" as const, shape, data: new Float32Array(shape[0]! * shape[1]!) });
      await writeSafetensors(join(dir, "adapter_model.safetensors"), [t(adapterKey(Q0.name, "A"), [4, 5])]);
      await expectInputError(openAdapter(dir), Q0.name, "no lora_B");
      await writeSafetensors(join(dir, "adapter_model.safetensors"), [t(adapterKey(Q0.name, "A"), [4, 5]), t(adapterKey(Q0.name, "B"), [6, 3])]);
      await expectInputError(openAdapter(dir), Q0.name, "disagree on the rank");
      await writeSafetensors(join(dir, "adapter_model.safetensors"), [
        t(`base_model.model.${Q0.name}.lora_A.default.weight`, [4, 5]),
        t(`base_model.model.${Q0.name}.lora_B.other.weight`, [6, 4]),
      ]);
      await expectInputError(openAdapter(dir), "different adapter name");
      await writeSafetensors(join(dir, "adapter_model.safetensors"), []);
      await expectInputError(openAdapter(dir), "no LoRA factors");
    });
  });

  it("refuses non-finite factor values when the module is read", async () => {
    await withTempDir(async (dir) => {
      await writeJson(join(dir, "adapter_config.json"), BASE_CONFIG);
      const a = new Float32Array(20);
      a[7] = NaN;
      await writeSafetensors(join(dir, "adapter_model.safetensors"), [
        { name: adapterKey(Q0.name, "A"), dtype: "F32", shape: [4, 5], data: a },
        { name: adapterKey(Q0.name, "B"), dtype: "F32", shape: [6, 4], data: new Float32Array(24) },
      ]);
      const ad = await openAdapter(dir);
      await expectInputError(ad.readModule(Q0.name), "non-finite", "index 7");
      // callers that validate downstream may skip the check
      expect(Number.isNaN((await ad.readModule(Q0.name, { checkFinite: false })).A[7])).toBe(true);
      const b = new Float32Array(24);
      b[23] = -Infinity;
      await writeSafetensors(join(dir, "adapter_model.safetensors"), [
        { name: adapterKey(Q0.name, "A"), dtype: "F32", shape: [4, 5], data: new Float32Array(20) },
        { name: adapterKey(Q0.name, "B"), dtype: "F32", shape: [6, 4], data: b },
      ]);
      const ad2 = await openAdapter(dir);
      await expectInputError(ad2.readModule(Q0.name), "lora_B", "-Infinity", "index 23");
      await ad2.close();
      await ad.close();
    });
  });

  it("refuses pickled adapters with a safetensors hint; explains missing files", async () => {
    await withTempDir(async (dir) => {
      await expectInputError(openAdapter(join(dir, "nope")), "nope: does not exist");
      await expectInputError(openAdapter(join(dir, "nope", "deeper")), "does not exist");
      await expectInputError(openAdapter(dir), "adapter_config.json");
      await writeJson(join(dir, "adapter_config.json"), BASE_CONFIG);
      await expectInputError(openAdapter(dir), "no adapter_model.safetensors");
      await writeFile(join(dir, "adapter_model.bin"), "\x80\x04not a pickle");
      await expectInputError(openAdapter(dir), "adapter_model.bin", "safe_serialization", "never unpickles");
      await writeFile(join(dir, "adapter_config.json"), "{oops");
      await expectInputError(openAdapter(dir), "adapter_config.json", "not valid JSON");
    });
  });
});

describe("writeAdapter", () => {
  function makeModules(seed: number, specs: Array<{ name: string; rank: number; scale: number; out: number; in: number }>): LoraModule[] {
    const rand = rng(seed);
    return specs.map((s) => ({
      name: s.name, rank: s.rank, scale: s.scale, outFeatures: s.out, inFeatures: s.in,
      A: randomFloats(s.rank * s.in, rand), B: randomFloats(s.out * s.rank, rand),
    }));
  }
  const SPECS = [
    { name: "model.layers.0.self_attn.q_proj", rank: 4, scale: 2, out: 8, in: 6 },
    { name: "model.layers.0.self_attn.v_proj", rank: 4, scale: 0.37, out: 4, in: 6 },
    { name: "model.layers.1.self_attn.q_proj", rank: 2, scale: 2, out: 8, in: 6 },
    { name: "model.layers.1.mlp.down_proj", rank: 4, scale: 1e-3, out: 6, in: 10 },
    { name: "model.layers.11.mlp.down_proj", rank: 1, scale: 3.5, out: 6, in: 10 },
  ];

  async function expectSameDeltas(dir: string, modules: LoraModule[], relTol: number) {
    const ad = await openAdapter(dir);
    expect(ad.moduleNames()).toEqual(modules.map((m) => m.name));
    for (const m of modules) {
      const got = await deltaOf(await ad.readModule(m.name));
      const ref = denseDelta(m.A, m.B, m.outFeatures, m.rank, m.inFeatures, m.scale);
      expect(maxAbsDiff(got, ref), m.name).toBeLessThanOrEqual(relTol * maxAbs(ref));
      expect(ad.moduleInfo(m.name).rank).toBe(m.rank);
    }
    await ad.close();
  }

  it("round-trips every module's ΔW through rank_pattern / alpha_pattern", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "adapter");
      const modules = makeModules(21, SPECS);
      await writeAdapter(out, { base_model_name_or_path: "meta-llama/Llama-3.2-1B", modules_to_save: ["lm_head"], bias: "all", use_dora: false, rank_pattern: { x: 9 } }, modules);
      await expectSameDeltas(out, modules, 1e-12);
      const cfg = JSON.parse(await readFile(join(out, "adapter_config.json"), "utf8"));
      expect(cfg.peft_type).toBe("LORA");
      expect(cfg.task_type).toBe("CAUSAL_LM");
      expect(cfg.r).toBe(4);
      expect(cfg.base_model_name_or_path).toBe("meta-llama/Llama-3.2-1B");
      expect(cfg.target_modules).toEqual(["down_proj", "q_proj", "v_proj"]);
      expect([cfg.modules_to_save, cfg.bias, cfg.use_dora, cfg.rank_pattern.x]).toEqual([null, "none", undefined, undefined]);
      expect(Object.keys(cfg.rank_pattern).sort()).toEqual(["model.layers.1.self_attn.q_proj", "model.layers.11.mlp.down_proj"]);
      expect((await readdir(dir)).sort()).toEqual(["adapter"]);
      expect((await readdir(out)).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    });
  });

  it("uniform scale-1 rank-k output needs no patterns (what truncate writes)", async () => {
    await withTempDir(async (dir) => {
      const modules = makeModules(22, SPECS.map((s) => ({ ...s, rank: 1, scale: 1 })));
      await writeAdapter(join(dir, "a"), {}, modules);
      const cfg = JSON.parse(await readFile(join(dir, "a", "adapter_config.json"), "utf8"));
      expect([cfg.r, cfg.lora_alpha, cfg.rank_pattern, cfg.alpha_pattern]).toEqual([1, 1, {}, {}]);
      await expectSameDeltas(join(dir, "a"), modules, 1e-15);
    });
  });

  it("round-trips with use_rslora, F16 storage, async iterables and a streaming layout", async () => {
    await withTempDir(async (dir) => {
      const modules = makeModules(23, SPECS);
      await writeAdapter(join(dir, "rs"), { use_rslora: true }, modules);
      expect(JSON.parse(await readFile(join(dir, "rs", "adapter_config.json"), "utf8")).use_rslora).toBe(true);
      await expectSameDeltas(join(dir, "rs"), modules, 1e-12);

      async function* gen() {
        for (const m of modules) yield m;
      }
      await writeAdapter(join(dir, "async"), {}, gen());
      await expectSameDeltas(join(dir, "async"), modules, 1e-12);

      await writeAdapter(join(dir, "f16"), {}, modules, { dtype: "F16" });
      await expectSameDeltas(join(dir, "f16"), modules, 4e-3); // two half-precision roundings per product term

      const layout = modules.map(({ name, rank, scale, outFeatures, inFeatures }) => ({ name, rank, scale, outFeatures, inFeatures }));
      await writeAdapter(join(dir, "stream"), {}, gen(), { layout });
      await expectSameDeltas(join(dir, "stream"), modules, 1e-12);
      const a = await readFile(join(dir, "async", "adapter_model.safetensors"));
      const s = await readFile(join(dir, "stream", "adapter_model.safetensors"));
      expect(a.equals(s)).toBe(true);
    });
  });

  it("is atomic: a failing module stream leaves the previous adapter intact and no temp folders", async () => {
    await withTempDir(async (dir) => {
      const out = join(dir, "adapter");
      const first = makeModules(24, SPECS);
      await writeAdapter(out, {}, first);
      const before = await readFile(join(out, "adapter_model.safetensors"));
      async function* failing() {
        yield first[0]!;
        throw new Error("boom");
      }
      await expect(writeAdapter(out, {}, failing())).rejects.toThrow("boom");
      await expect(writeAdapter(out, {}, [{ ...first[0]!, A: new Float32Array(1) }])).rejects.toThrow(/A has 1 values/);
      expect((await readFile(join(out, "adapter_model.safetensors"))).equals(before)).toBe(true);
      expect(await readdir(dir)).toEqual(["adapter"]);
      // a second successful write replaces the first
      const second = makeModules(25, SPECS.slice(0, 2));
      await writeAdapter(out, {}, second);
      await expectSameDeltas(out, second, 1e-12);
      expect(await readdir(dir)).toEqual(["adapter"]);
    });
  });

  it("refuses to replace a folder holding files it did not write", async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, "precious.txt"), "keep me");
      await expectInputError(writeAdapter(dir, {}, makeModules(26, SPECS.slice(0, 1))), "precious.txt");
      expect(await readFile(join(dir, "precious.txt"), "utf8")).toBe("keep me");
      expect(await readdir(dir)).toEqual(["precious.txt"]);
    });
  });
});
