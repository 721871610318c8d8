/**
 * Tiny random checkpoints for engine tests: every tensor a Llama-family config needs,
 * seeded, written with io/'s writeSafetensors (single file or sharded).
 */
import { mkdtemp, mkdir, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeSafetensors } from "../../src/io/safetensors";
import type { DType, LoraModule } from "../../src/io/types";

/** the same seeded PRNG as the io tests (mulberry32) */
import { rng } from "../io/helpers";
export { rng };

/** Uniform in [-scale, scale]. */
export function randomArray(n: number, scale: number, r: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (2 * r() - 1) * scale;
  return a;
}

export const TINY_BASE: Record<string, unknown> = {
  model_type: "llama",
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 97,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 256,
  tie_word_embeddings: false,
  hidden_act: "silu",
};

/** The subject tests' model (TINY_BASE as a Llama with grouped KV heads), prompt and adapted modules. */
export const SUBJECT_CONFIG: Record<string, unknown> = { ...TINY_BASE, model_type: "llama", num_key_value_heads: 2 };
export const SUBJECT_IDS = [4, 8, 15, 16, 23, 42];
export const SUBJECT_MODULES = [0, 1].flatMap((l) => ["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"].map((t) => `model.layers.${l}.${t}`));

/** Cleanups (written models, temp folders) a test file registers and runs in its `afterAll(runCleanups)`. */
const cleanups: Array<() => Promise<void>> = [];
export function onCleanup(cleanup: () => Promise<void>): void {
  cleanups.push(cleanup);
}
export async function runCleanups(): Promise<void> {
  for (const c of cleanups.splice(0)) await c();
}

/** Every tensor of a checkpoint for `config`, random with the given seed. */
export function randomWeights(config: Record<string, unknown>, seed: number): Map<string, Float32Array> {
  const r = rng(seed);
  const H = config.hidden_size as number;
  const nH = config.num_attention_heads as number;
  const nKV = (config.num_key_value_heads as number) ?? nH;
  const D = (config.head_dim as number) ?? H / nH;
  const I = config.intermediate_size as number;
  const V = config.vocab_size as number;
  const mt = config.model_type as string;
  const qkvBias = mt === "qwen2" || config.attention_bias === true;
  const oBias = mt !== "qwen2" && config.attention_bias === true;
  const w = new Map<string, Float32Array>();
  // weights scaled like 1/sqrt(fan_in) so activations stay O(1) and logits are informative
  const lin = (name: string, out: number, inF: number, bias = false) => {
    w.set(`${name}.weight`, randomArray(out * inF, 1.5 / Math.sqrt(inF), r));
    if (bias) w.set(`${name}.bias`, randomArray(out, 0.5, r));
  };
  const norm = (name: string, n: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = 0.6 + 0.8 * r();
    w.set(name, a);
  };
  w.set("model.embed_tokens.weight", randomArray(V * H, 1, r));
  for (let l = 0; l < (config.num_hidden_layers as number); l++) {
    const p = `model.layers.${l}`;
    norm(`${p}.input_layernorm.weight`, H);
    norm(`${p}.post_attention_layernorm.weight`, H);
    lin(`${p}.self_attn.q_proj`, nH * D, H, qkvBias);
    lin(`${p}.self_attn.k_proj`, nKV * D, H, qkvBias);
    lin(`${p}.self_attn.v_proj`, nKV * D, H, qkvBias);
    lin(`${p}.self_attn.o_proj`, H, nH * D, oBias);
    if (mt === "qwen3") {
      norm(`${p}.self_attn.q_norm.weight`, D);
      norm(`${p}.self_attn.k_norm.weight`, D);
    }
    lin(`${p}.mlp.gate_proj`, I, H, config.mlp_bias === true);
    lin(`${p}.mlp.up_proj`, I, H, config.mlp_bias === true);
    lin(`${p}.mlp.down_proj`, H, I, config.mlp_bias === true);
  }
  norm("model.norm.weight", H);
  if (config.tie_word_embeddings === false) lin("lm_head", V, H);
  return w;
}

/** Round every value through a half dtype, so the reference sees exactly what the file holds. */
export function roundTo(dtype: DType, a: Float32Array): Float32Array {
  if (dtype === "F32" || dtype === "F64") return a;
  const out = new Float32Array(a.length);
  const u = new Uint32Array(out.buffer);
  const tmp = new Float32Array(1);
  const tu = new Uint32Array(tmp.buffer);
  for (let i = 0; i < a.length; i++) {
    tmp[0] = a[i]!;
    if (dtype === "BF16") {
      const x = tu[0]!;
      const rounded = (x + 0x7fff + ((x >>> 16) & 1)) & 0xffff0000; // round to nearest even
      u[i] = rounded >>> 0;
    } else {
      out[i] = Math.fround(f16Round(a[i]!));
    }
  }
  return out;
}

function f16Round(v: number): number {
  // float16 has 11 significant bits; values here are far from the subnormal/overflow ranges
  if (v === 0) return 0;
  const e = Math.floor(Math.log2(Math.abs(v)));
  const q = Math.pow(2, e - 10);
  const n = v / q;
  const fl = Math.floor(n);
  const diff = n - fl;
  const r = diff > 0.5 || (diff === 0.5 && fl % 2 !== 0) ? fl + 1 : fl;
  return r * q;
}

export interface WrittenModel {
  dir: string;
  /** the values as stored (after dtype rounding) */
  weights: Map<string, Float32Array>;
  cleanup(): Promise<void>;
}

/** Write a checkpoint folder: config.json + model.safetensors (or shards with an index). */
export async function writeModel(
  config: Record<string, unknown>,
  weights: Map<string, Float32Array>,
  opts: { dtype?: DType; shards?: number; dir?: string; files?: Record<string, string> } = {},
): Promise<WrittenModel> {
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), "da-engine-")));
  await mkdir(dir, { recursive: true });
  const dtype = opts.dtype ?? "F32";
  const stored = new Map<string, Float32Array>();
  const shapes = shapesOf(config);
  const entries = [...weights].map(([name, data]) => {
    const v = roundTo(dtype, data);
    stored.set(name, v);
    return { name, dtype, shape: shapes(name, data.length), data: v };
  });
  await writeFile(join(dir, "config.json"), JSON.stringify(config, null, 2));
  for (const [name, text] of Object.entries(opts.files ?? {})) await writeFile(join(dir, name), text);
  const shards = opts.shards ?? 1;
  if (shards <= 1) await writeSafetensors(join(dir, "model.safetensors"), entries);
  else {
    const weightMap: Record<string, string> = {};
    for (let s = 0; s < shards; s++) {
      const file = `model-${String(s + 1).padStart(5, "0")}-of-${String(shards).padStart(5, "0")}.safetensors`;
      const part = entries.filter((_, i) => i % shards === s);
      for (const e of part) weightMap[e.name] = file;
      await writeSafetensors(join(dir, file), part);
    }
    await writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  }
  return { dir, weights: stored, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

function shapesOf(config: Record<string, unknown>) {
  const H = config.hidden_size as number;
  return (name: string, n: number): number[] => {
    if (name.endsWith(".bias") || name.endsWith("norm.weight") || name.endsWith("layernorm.weight")) return [n];
    if (name === "model.embed_tokens.weight" || name === "lm_head.weight") return [n / H, H];
    if (name.endsWith("down_proj.weight") || name.endsWith("o_proj.weight")) return [H, n / H];
    return [n / H, H];
  };
}

/** A random LoRA on the given modules (names without ".weight"). */
export function randomLora(weights: Map<string, Float32Array>, config: Record<string, unknown>, modules: string[], rank: number, seed: number, scale = 2): LoraModule[] {
  const r = rng(seed);
  const shapes = shapesOf(config);
  return modules.map((name) => {
    const w = weights.get(`${name}.weight`)!;
    const [outF, inF] = shapes(`${name}.weight`, w.length) as [number, number];
    return { name, rank, scale, outFeatures: outF, inFeatures: inF, A: randomArray(rank * inF, 1 / Math.sqrt(inF), r), B: randomArray(outF * rank, 0.7, r) };
  });
}

/** max |a−b| and the tolerance 1e-3·(1 + max|ref|) of the conformance criterion. */
export function compareLogits(engine: ArrayLike<number>, ref: ArrayLike<number>): { maxDiff: number; tol: number } {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(engine[i]! - ref[i]!));
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
  }
  return { maxDiff, tol: 1e-3 * (1 + maxRef) };
}
