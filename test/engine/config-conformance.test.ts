/**
 * Conformance on configs and checkpoints beyond the common case: every config.json field the
 * transformers Llama / Mistral / Qwen2 / Qwen3 config classes define is either computed as
 * transformers computes it (checked against the float64 reference) or refused by name.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Matrix, SingularValueDecomposition } from "ml-matrix";
import { loadModel } from "../../src/engine/index";
import { parseModelConfig } from "../../src/engine/config";
import { loadSubject } from "../../src/engine/variants";
import { writeSafetensors } from "../../src/io/safetensors";
import type { LoraModule } from "../../src/io/types";
import { referenceLogits } from "../reference/llama-reference";
import { TINY_BASE, compareLogits, randomArray, randomWeights, rng, writeModel, type WrittenModel } from "./fixtures";

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanups) await c();
});

const IDS = [3, 17, 42, 8, 96, 0, 55, 23, 71, 9, 12, 40, 41, 90, 2, 66];

async function written(config: Record<string, unknown>, weights: Map<string, Float32Array>, opts: Parameters<typeof writeModel>[2] = {}): Promise<WrittenModel> {
  const m = await writeModel(config, weights, opts);
  cleanups.push(m.cleanup);
  return m;
}

function maxGap(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let g = 0;
  for (let p = 0; p < a.length; p++) g = Math.max(g, compareLogits(a[p]!, b[p]!).maxDiff);
  return g;
}

function expectMatches(engine: Float32Array[], ref: Float64Array[]): void {
  expect(engine.length).toBe(ref.length);
  for (let p = 0; p < ref.length; p++) {
    const { maxDiff, tol } = compareLogits(engine[p]!, ref[p]!);
    expect(maxDiff, `position ${p}`).toBeLessThanOrEqual(tol);
  }
}

/** Engine logits of a written checkpoint vs the reference on the same config and stored values. */
async function engineVsReference(config: Record<string, unknown>, m: WrittenModel, ids = IDS): Promise<{ engine: Float32Array[]; ref: Float64Array[] }> {
  const model = await loadModel(m.dir, { threads: 1 });
  try {
    const engine = await model.logits(ids);
    const ref = referenceLogits({ config, weights: m.weights }, ids);
    expectMatches(engine, ref);
    return { engine, ref };
  } finally {
    await model.close();
  }
}

/** A gap far above the conformance tolerance (~0.005 here): the field really changed the logits. */
const FIELD_MATTERS = 0.05;

/** rope_theta large enough that positions 0..15 rotate measurably differently per setting. */
const LONG_ROPE = { max_position_embeddings: 256 };

describe("computed config fields match the reference (and the field changes the result)", () => {
  const cases: { name: string; config: Record<string, unknown>; without: Record<string, unknown> }[] = [
    {
      name: "rope_scaling linear (type spelling)",
      config: { ...TINY_BASE, ...LONG_ROPE, rope_scaling: { type: "linear", factor: 4 } },
      without: { ...TINY_BASE, ...LONG_ROPE },
    },
    {
      name: "rope_scaling linear (rope_type spelling) on qwen2",
      config: { ...TINY_BASE, model_type: "qwen2", rope_scaling: { rope_type: "linear", factor: 2.5 } },
      without: { ...TINY_BASE, model_type: "qwen2" },
    },
    {
      name: "transformers 5 rope_parameters: rope_theta only there",
      config: { ...TINY_BASE, rope_theta: undefined, rope_parameters: { rope_type: "default", rope_theta: 3 } },
      without: { ...TINY_BASE, rope_theta: undefined },
    },
    {
      name: "transformers 5 rope_parameters: llama3 scaling",
      config: {
        ...TINY_BASE,
        rope_theta: undefined,
        rope_parameters: { rope_type: "llama3", rope_theta: 500000, factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 256 },
      },
      without: { ...TINY_BASE, rope_theta: 500000 },
    },
    { name: "hidden_act gelu (erf)", config: { ...TINY_BASE, hidden_act: "gelu" }, without: { ...TINY_BASE } },
    { name: "hidden_act gelu_pytorch_tanh", config: { ...TINY_BASE, model_type: "qwen3", hidden_act: "gelu_pytorch_tanh", head_dim: 8 }, without: { ...TINY_BASE, model_type: "qwen3", head_dim: 8 } },
    { name: "hidden_act gelu_new", config: { ...TINY_BASE, hidden_act: "gelu_new" }, without: { ...TINY_BASE } },
    { name: "hidden_act relu", config: { ...TINY_BASE, model_type: "mistral", sliding_window: null, hidden_act: "relu" }, without: { ...TINY_BASE, model_type: "mistral", sliding_window: null } },
    { name: "hidden_act quick_gelu", config: { ...TINY_BASE, hidden_act: "quick_gelu" }, without: { ...TINY_BASE } },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const config = JSON.parse(JSON.stringify(c.config)) as Record<string, unknown>; // drops undefined keys, as a file would
      const m = await written(config, randomWeights(config, 21));
      const { engine } = await engineVsReference(config, m);
      // the field matters: the reference without it is far from what the engine computed
      const without = JSON.parse(JSON.stringify(c.without)) as Record<string, unknown>;
      const other = referenceLogits({ config: without, weights: m.weights }, IDS);
      expect(maxGap(engine, other)).toBeGreaterThan(FIELD_MATTERS);
    });
  }
});

describe("transformers' defaults for absent fields", () => {
  it("tie_word_embeddings absent means untied: lm_head.weight is the head", async () => {
    const config = { ...TINY_BASE };
    delete (config as Record<string, unknown>).tie_word_embeddings;
    const weights = randomWeights({ ...config, tie_word_embeddings: false }, 31);
    const m = await written(config, weights);
    const { engine } = await engineVsReference(config, m);
    // and not the embedding (what a tied head would give)
    const tied = referenceLogits({ config: { ...config, tie_word_embeddings: true }, weights: m.weights }, IDS);
    expect(maxGap(engine, tied)).toBeGreaterThan(1);
  });

  it("tie_word_embeddings absent and no lm_head.weight: refused naming both", async () => {
    const config = { ...TINY_BASE, model_type: "qwen2" };
    delete (config as Record<string, unknown>).tie_word_embeddings;
    const m = await written(config, randomWeights({ ...config, tie_word_embeddings: true }, 32));
    await expect(loadModel(m.dir, { threads: 1 })).rejects.toThrow(/missing tensor 'lm_head\.weight' \(tie_word_embeddings is false or absent/);
  });

  it("tie_word_embeddings true with a stored lm_head.weight: the embedding is the head, as tie_weights() makes it", async () => {
    const config = { ...TINY_BASE, tie_word_embeddings: true };
    const weights = randomWeights({ ...config, tie_word_embeddings: false }, 33); // includes a different lm_head.weight
    const m = await written(config, weights);
    const { engine } = await engineVsReference(config, m);
    const untied = referenceLogits({ config: { ...config, tie_word_embeddings: false }, weights: m.weights }, IDS);
    expect(maxGap(engine, untied)).toBeGreaterThan(1);
  });

  it("qwen3 head_dim absent is 128 (Qwen3Config's default), not hidden/heads", async () => {
    const config = { ...TINY_BASE, model_type: "qwen3" };
    expect(parseModelConfig(config).headDim).toBe(128);
    const m = await written(config, randomWeights({ ...config, head_dim: 128 }, 34));
    await engineVsReference(config, m);
    // a llama config without head_dim uses hidden/heads
    expect(parseModelConfig({ ...TINY_BASE }).headDim).toBe(8);
  });

  it("num_key_value_heads, rope_theta, rms_norm_eps, hidden_act absent take the class defaults", async () => {
    const config: Record<string, unknown> = { ...TINY_BASE };
    for (const k of ["num_key_value_heads", "rope_theta", "rms_norm_eps", "hidden_act", "max_position_embeddings"]) delete config[k];
    const cfg = parseModelConfig(config);
    expect([cfg.numKvHeads, cfg.ropeTheta, cfg.rmsNormEps, cfg.hiddenAct, cfg.maxPositionEmbeddings]).toEqual([4, 10000, 1e-6, "silu", 2048]);
    const m = await written(config, randomWeights({ ...config, num_key_value_heads: 4 }, 35));
    await engineVsReference(config, m);
  });

  it("mistral without sliding_window uses MistralConfig's 4096 window; null disables it", () => {
    expect(parseModelConfig({ ...TINY_BASE, model_type: "mistral", max_position_embeddings: 32768 }).maxContext).toBe(4096);
    expect(parseModelConfig({ ...TINY_BASE, model_type: "mistral", max_position_embeddings: 32768, sliding_window: null }).maxContext).toBe(32768);
  });
});

describe("biases follow each architecture, not the config keys alone", () => {
  it("mistral ignores attention_bias / mlp_bias (and any stored bias tensors)", async () => {
    const config = { ...TINY_BASE, model_type: "mistral", sliding_window: null, attention_bias: true, mlp_bias: true };
    const weights = randomWeights({ ...config, model_type: "llama" }, 41); // llama recipe: bias tensors present
    const m = await written(config, weights);
    await engineVsReference(config, m);
    const cfg = parseModelConfig(config);
    expect([cfg.qkvBias, cfg.oBias, cfg.mlpBias]).toEqual([false, false, false]);
  });

  it("qwen2: q/k/v biases always, o_proj and MLP never (attention_bias / mlp_bias ignored)", async () => {
    const config = { ...TINY_BASE, model_type: "qwen2", attention_bias: true, mlp_bias: true };
    const weights = randomWeights({ ...config, model_type: "llama" }, 42); // has o_proj and MLP biases too
    const m = await written(config, weights);
    await engineVsReference(config, m);
    const cfg = parseModelConfig(config);
    expect([cfg.qkvBias, cfg.oBias, cfg.mlpBias]).toEqual([true, false, false]);
  });

  it("qwen3 attention_bias: q/k/v/o biases; mlp_bias ignored", async () => {
    const config = { ...TINY_BASE, model_type: "qwen3", head_dim: 8, attention_bias: true, mlp_bias: true };
    const m = await written(config, randomWeights(config, 43));
    const { engine } = await engineVsReference(config, m);
    const noBias = referenceLogits({ config: { ...config, attention_bias: false }, weights: m.weights }, IDS);
    expect(maxGap(engine, noBias)).toBeGreaterThan(0.05);
    expect(parseModelConfig(config).mlpBias).toBe(false);
  });
});

describe("harmless fields and checkpoint layouts", () => {
  it("unknown and informational fields are accepted; eos/bos as ints or lists", async () => {
    const config = {
      ...TINY_BASE,
      architectures: ["LlamaForCausalLM"],
      torch_dtype: "bfloat16",
      dtype: "float16",
      transformers_version: "4.99.0",
      use_cache: true,
      attention_dropout: 0.0,
      initializer_range: 0.02,
      pretraining_tp: 2,
      rope_scaling: null,
      partial_rotary_factor: 1.0,
      bos_token_id: [1, 2],
      eos_token_id: [5, 6],
      pad_token_id: null,
      some_future_field: { nested: [1, 2, 3] },
    };
    const cfg = parseModelConfig(config);
    expect(cfg.eosTokenIds).toEqual([5, 6]);
    expect(cfg.bosTokenId).toBe(1);
    expect(parseModelConfig({ ...TINY_BASE, eos_token_id: 7 }).eosTokenIds).toEqual([7]);
    const weights = randomWeights(config, 51);
    // older transformers saved the rotary buffer; it is not a weight and must be ignored
    weights.set("model.layers.0.self_attn.rotary_emb.inv_freq", new Float32Array(TINY_BASE.hidden_size as number).fill(0.5));
    const m = await written(config, weights, { dtype: "BF16", shards: 2 });
    await engineVsReference(config, m);
  });

  it("multi-query attention (one KV head), one layer, head_dim above hidden/heads", async () => {
    const config = { ...TINY_BASE, model_type: "qwen2", num_key_value_heads: 1, num_hidden_layers: 1, head_dim: 24 };
    const m = await written(config, randomWeights(config, 55));
    await engineVsReference(config, m);
  });

  it("vocab_size larger than any tokenizer: every row has vocab_size logits and the last id is valid", async () => {
    const config = { ...TINY_BASE, vocab_size: 131 };
    const m = await written(config, randomWeights(config, 52));
    const { engine } = await engineVsReference(config, m, [130, 0, 129, 64]);
    expect(engine.every((r) => r.length === 131)).toBe(true);
  });

  it("safetensors with __metadata__ {format: pt}", async () => {
    const config = { ...TINY_BASE, model_type: "qwen2", tie_word_embeddings: true };
    const weights = randomWeights(config, 53);
    const dir = await mkdtemp(join(tmpdir(), "da-conf-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const m = await written(config, weights, { dir });
    // rewrite the same tensors with the metadata transformers' save_pretrained writes
    const H = TINY_BASE.hidden_size as number;
    const shape = (n: string, len: number) => (n.endsWith(".bias") || n.endsWith("norm.weight") ? [len] : n.endsWith("o_proj.weight") || n.endsWith("down_proj.weight") ? [H, len / H] : [len / H, H]);
    await writeSafetensors(
      join(dir, "model.safetensors"),
      [...m.weights].map(([name, data]) => ({ name, dtype: "F32" as const, shape: shape(name, data.length), data })),
      { format: "pt" },
    );
    await engineVsReference(config, m);
  });

  it("tensor names without the model. prefix (a bare decoder's state dict), tied and untied", async () => {
    for (const tie of [true, false]) {
      const config = { ...TINY_BASE, tie_word_embeddings: tie };
      const weights = randomWeights(config, 54);
      const bare = new Map([...weights].map(([n, v]) => [n.startsWith("model.") ? n.slice(6) : n, v]));
      const m = await written(config, bare);
      const stored = new Map([...m.weights].map(([n, v]) => [n === "lm_head.weight" ? n : `model.${n}`, v]));
      const model = await loadModel(m.dir, { threads: 1 });
      try {
        expectMatches(await model.logits(IDS), referenceLogits({ config, weights: stored }, IDS));
      } finally {
        await model.close();
      }
    }
  });
});

describe("refused config fields are named", () => {
  const refused: [string, Record<string, unknown>, RegExp][] = [
    ["rope_scaling dynamic", { rope_scaling: { type: "dynamic", factor: 2 } }, /rope_scaling type "dynamic"/],
    ["rope_scaling yarn", { rope_scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 64 } }, /rope_scaling type "yarn"/],
    ["rope_scaling longrope", { rope_scaling: { rope_type: "longrope", short_factor: [1], long_factor: [1] } }, /rope_scaling type "longrope"/],
    ["rope_scaling unknown type", { rope_scaling: { type: "mystery" } }, /rope_scaling type "mystery"/],
    ["rope_scaling linear without factor", { rope_scaling: { type: "linear" } }, /rope_scaling\.factor/],
    ["rope_scaling llama3 missing a field", { rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4 } }, /rope_scaling\.original_max_position_embeddings/],
    ["rope_parameters yarn (transformers 5)", { rope_parameters: { rope_type: "yarn", rope_theta: 10000, factor: 4 } }, /rope_parameters type "yarn"/],
    ["rope_parameters per layer type", { rope_parameters: { full_attention: { rope_type: "default" }, sliding_attention: { rope_type: "default" } } }, /rope_parameters per layer type/],
    ["rope_parameters partial_rotary_factor", { rope_parameters: { rope_type: "default", rope_theta: 10000, partial_rotary_factor: 0.5 } }, /partial_rotary_factor/],
    ["partial_rotary_factor", { partial_rotary_factor: 0.5 }, /partial_rotary_factor/],
    ["rope_parameters partial_rotary_factor beside rope_scaling", { rope_scaling: { type: "linear", factor: 2 }, rope_parameters: { rope_type: "linear", factor: 2, partial_rotary_factor: 0.25 } }, /rope_parameters\.partial_rotary_factor/],
    ["rope_scaling and rope_parameters of different types", { rope_scaling: { type: "linear", factor: 2 }, rope_parameters: { rope_type: "yarn", factor: 2 } }, /disagrees with rope_parameters type "yarn"/],
    ["rope_theta disagreeing with rope_parameters", { rope_theta: 10000, rope_parameters: { rope_theta: 500000 } }, /rope_theta 10000 disagrees with rope_parameters\.rope_theta 500000/],
    ["hidden_act gelu_10", { hidden_act: "gelu_10" }, /hidden_act "gelu_10"/],
    ["hidden_act tanh", { hidden_act: "tanh" }, /hidden_act "tanh"/],
    ["rope_theta negative", { rope_theta: -1 }, /rope_theta/],
  ];
  for (const [name, extra, re] of refused) {
    it(name, () => {
      expect(() => parseModelConfig({ ...TINY_BASE, ...extra })).toThrow(re);
    });
  }
});

/** PEFT's adapter file layout, written here by hand (not by io/'s writer). */
async function writePeftAdapter(config: Record<string, unknown>, modules: { name: string; A: Float32Array; B: Float32Array; r: number; inF: number; outF: number }[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "da-conf-peft-"));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", task_type: "CAUSAL_LM", bias: "none", lora_dropout: 0, fan_in_fan_out: false, ...config }));
  const tensors = modules.flatMap((m) => [
    { name: `base_model.model.${m.name}.lora_A.weight`, dtype: "F32" as const, shape: [m.r, m.inF], data: m.A },
    { name: `base_model.model.${m.name}.lora_B.weight`, dtype: "F32" as const, shape: [m.outF, m.r], data: m.B },
  ]);
  await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors, { format: "pt" });
  return dir;
}

describe("LoRA adapters as PEFT writes them", () => {
  const H = TINY_BASE.hidden_size as number;
  const I = TINY_BASE.intermediate_size as number;
  const shapeOf = (name: string): [number, number] => (name.endsWith("down_proj") ? [H, I] : name.endsWith("up_proj") || name.endsWith("gate_proj") ? [I, H] : name.endsWith("q_proj") || name.endsWith("o_proj") ? [H, H] : [16, H]);

  it("layers_to_transform, rank_pattern / alpha_pattern, rslora; --rank K above a module's rank is exact", async () => {
    const config = { ...TINY_BASE, model_type: "qwen2" };
    const m = await written(config, randomWeights(config, 61));
    const r = rng(62);
    // only layer 1 is adapted (layers_to_transform), q_proj at rank 2 (rank_pattern), down_proj at rank 5
    const spec = [
      { name: "model.layers.1.self_attn.q_proj", r: 2 },
      { name: "model.layers.1.self_attn.v_proj", r: 5 },
      { name: "model.layers.1.mlp.down_proj", r: 5 },
    ];
    const modules = spec.map((s) => {
      const [outF, inF] = shapeOf(s.name);
      return { ...s, outF, inF, A: randomArray(s.r * inF, 1 / Math.sqrt(inF), r), B: randomArray(outF * s.r, 0.7, r) };
    });
    const adapterCfg = {
      r: 5,
      lora_alpha: 10,
      use_rslora: true,
      target_modules: ["q_proj", "v_proj", "down_proj"],
      layers_to_transform: [1],
      rank_pattern: { q_proj: 2 },
      alpha_pattern: { down_proj: 3 },
    };
    const dir = await writePeftAdapter(adapterCfg, modules);
    // scales as PEFT computes them: alpha / sqrt(r) with rslora, per-module alpha and r
    const scale: Record<string, number> = {
      "model.layers.1.self_attn.q_proj": 10 / Math.sqrt(2),
      "model.layers.1.self_attn.v_proj": 10 / Math.sqrt(5),
      "model.layers.1.mlp.down_proj": 3 / Math.sqrt(5),
    };
    const lora: LoraModule[] = modules.map((x) => ({ name: x.name, rank: x.r, scale: scale[x.name]!, outFeatures: x.outF, inFeatures: x.inF, A: x.A, B: x.B }));
    const ref = referenceLogits({ config, weights: m.weights, lora }, IDS);
    const base = referenceLogits({ config, weights: m.weights }, IDS);
    expect(maxGap(ref, base)).toBeGreaterThan(0.05); // the adapter changes the logits

    // --rank 8 exceeds every module's rank: the truncation is the adapter itself
    const model = await loadSubject({ model: m.dir, adapter: dir, rank: 8, threads: 1, quiet: true });
    try {
      expectMatches(await model.logits(IDS, "full"), ref);
      expectMatches(await model.logits(IDS, "rank8"), ref);
      expectMatches(await model.logits(IDS, "base"), base);
    } finally {
      await model.close();
    }
  });

  it("rank_pattern / alpha_pattern keyed per layer, plain scale alpha/r", async () => {
    const config = { ...TINY_BASE, model_type: "qwen3", head_dim: 8 };
    const m = await written(config, randomWeights(config, 63));
    const r = rng(64);
    const spec = [
      { name: "model.layers.0.self_attn.v_proj", r: 3, scale: 7 / 3 }, // rank_pattern + alpha_pattern by layer
      { name: "model.layers.1.self_attn.v_proj", r: 4, scale: 8 / 4 }, // r / lora_alpha
      { name: "model.layers.1.self_attn.o_proj", r: 4, scale: 8 / 4 },
    ];
    const modules = spec.map((x) => {
      const [outF, inF] = shapeOf(x.name);
      return { ...x, outF, inF, A: randomArray(x.r * inF, 1 / Math.sqrt(inF), r), B: randomArray(outF * x.r, 0.7, r) };
    });
    const dir = await writePeftAdapter(
      { r: 4, lora_alpha: 8, target_modules: ["v_proj", "o_proj"], rank_pattern: { "model.layers.0.self_attn.v_proj": 3 }, alpha_pattern: { "layers.0.self_attn.v_proj": 7 } },
      modules,
    );
    const lora: LoraModule[] = modules.map((x) => ({ name: x.name, rank: x.r, scale: x.scale, outFeatures: x.outF, inFeatures: x.inF, A: x.A, B: x.B }));
    // rank 1, independently: the top singular triple of each dense ΔW = s·B·A (ml-matrix, float64) added to W
    const truncated = new Map(m.weights);
    for (const x of lora) {
      const dense = new Matrix(x.outFeatures, x.inFeatures);
      for (let o = 0; o < x.outFeatures; o++) {
        for (let i = 0; i < x.inFeatures; i++) {
          let v = 0;
          for (let k = 0; k < x.rank; k++) v += x.B[o * x.rank + k]! * x.A[k * x.inFeatures + i]!;
          dense.set(o, i, x.scale * v);
        }
      }
      const svd = new SingularValueDecomposition(dense, { autoTranspose: true });
      const [u, v, s1] = [svd.leftSingularVectors, svd.rightSingularVectors, svd.diagonal[0]!];
      const w = Float32Array.from(m.weights.get(`${x.name}.weight`)!);
      for (let o = 0; o < x.outFeatures; o++) for (let i = 0; i < x.inFeatures; i++) w[o * x.inFeatures + i] += s1 * u.get(o, 0) * v.get(i, 0);
      truncated.set(`${x.name}.weight`, w);
    }
    const model = await loadSubject({ model: m.dir, adapter: dir, rank: 1, threads: 1, quiet: true });
    try {
      const full = referenceLogits({ config, weights: m.weights, lora }, IDS);
      expectMatches(await model.logits(IDS, "full"), full);
      const rank1 = referenceLogits({ config, weights: truncated }, IDS);
      expectMatches(await model.logits(IDS, "rank1"), rank1);
      expect(maxGap(rank1, full)).toBeGreaterThan(FIELD_MATTERS); // truncation is not the identity here
    } finally {
      await model.close();
    }
  });

  it("an adapter on a base whose tensors lack the model. prefix", async () => {
    const config = { ...TINY_BASE, tie_word_embeddings: true };
    const weights = randomWeights(config, 71);
    const bare = new Map([...weights].map(([n, v]) => [n.slice("model.".length), v]));
    const m = await written(config, bare);
    const stored = new Map([...m.weights].map(([n, v]) => [`model.${n}`, v]));
    const r = rng(72);
    const mods = ["model.layers.0.self_attn.k_proj", "model.layers.1.mlp.gate_proj"].map((name) => {
      const [outF, inF] = shapeOf(name);
      return { name, r: 3, outF, inF, A: randomArray(3 * inF, 1 / Math.sqrt(inF), r), B: randomArray(outF * 3, 0.7, r) };
    });
    const dir = await writePeftAdapter({ r: 3, lora_alpha: 6, target_modules: ["k_proj", "gate_proj"] }, mods);
    const lora: LoraModule[] = mods.map((x) => ({ name: x.name, rank: 3, scale: 2, outFeatures: x.outF, inFeatures: x.inF, A: x.A, B: x.B }));
    const model = await loadSubject({ model: m.dir, adapter: dir, threads: 1, quiet: true });
    try {
      expectMatches(await model.logits(IDS, "full"), referenceLogits({ config, weights: stored, lora }, IDS));
    } finally {
      await model.close();
    }
  });
});

describe("full fine-tunes", () => {
  it("a fine-tune whose config.json changes the computation is refused by field; informational changes are fine", async () => {
    const config = { ...TINY_BASE };
    const weights = randomWeights(config, 81);
    const base = await written(config, weights);
    const same = await written({ ...config, torch_dtype: "bfloat16", eos_token_id: [3, 4], max_position_embeddings: 512 }, weights);
    const model = await loadSubject({ model: base.dir, finetuned: same.dir, threads: 1, quiet: true });
    try {
      expectMatches(await model.logits(IDS, "full"), referenceLogits({ config, weights: base.weights }, IDS));
    } finally {
      await model.close();
    }
    const theta = await written({ ...config, rope_theta: 500000 }, weights);
    await expect(loadSubject({ model: base.dir, finetuned: theta.dir, threads: 1, quiet: true })).rejects.toThrow(/differs from the base model's in ropeTheta/);
    const act = await written({ ...config, hidden_act: "gelu" }, weights);
    await expect(loadSubject({ model: base.dir, finetuned: act.dir, threads: 1, quiet: true })).rejects.toThrow(/hiddenAct/);
  });
});

describe("config.json that disagrees with the tensors", () => {
  it("absurd or mismatched sizes are an input error naming the tensor, before any large allocation", async () => {
    const weights = randomWeights({ ...TINY_BASE }, 91);
    for (const [key, value] of [
      ["intermediate_size", 1e9],
      ["hidden_size", 1 << 20],
      ["num_attention_heads", 8],
      ["vocab_size", 1e12],
      ["num_hidden_layers", 1e15],
    ] as const) {
      const config = { ...TINY_BASE, [key]: value };
      const m = await written(TINY_BASE, weights);
      await writeFile(join(m.dir, "config.json"), JSON.stringify(config));
      await expect(loadModel(m.dir, { threads: 1 }), key).rejects.toThrow(/tensor '[^']+' has shape \[[\d,]+\], expected|missing tensor 'model\.layers\.999999999999999\.input_layernorm\.weight'/);
    }
  });
});
