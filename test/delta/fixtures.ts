/**
 * Real files in temp folders for the delta tests: PEFT adapters written by hand (config JSON +
 * safetensors with PEFT's key names) and small HF checkpoint pairs.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { openCheckpoint } from "../../src/io/checkpoint";
import { writeSafetensors } from "../../src/io/safetensors";
import type { Checkpoint, LoraModule } from "../../src/io/types";
import { bestRankK, denseDelta as refDelta, diffFrob, frob, lcg, randomF32, referenceSvd } from "../linalg/reference";

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `delta-audit-${tag}-`));
}

export interface FixtureModule {
  name: string;
  out: number;
  inf: number;
  r: number;
  A: Float32Array;
  B: Float32Array;
}

/** Llama-style module names. */
export const Q0 = "model.layers.0.self_attn.q_proj";
export const V0 = "model.layers.0.self_attn.v_proj";
export const DOWN1 = "model.layers.1.mlp.down_proj";

export function makeModules(specs: Array<[string, number, number, number]>, seed: number): FixtureModule[] {
  const next = lcg(seed);
  return specs.map(([name, out, inf, r]) => ({ name, out, inf, r, A: randomF32(r * inf, next), B: randomF32(out * r, next) }));
}

/** Write an adapter folder; `config` is merged over a plain LoRA config. */
export async function writeAdapterDir(dir: string, modules: FixtureModule[], config: Record<string, unknown>): Promise<string> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "adapter_config.json"),
    JSON.stringify({ peft_type: "LORA", task_type: "CAUSAL_LM", target_modules: ["q_proj", "v_proj", "down_proj"], ...config }),
  );
  const tensors = modules.flatMap((m) => [
    { name: `base_model.model.${m.name}.lora_A.weight`, dtype: "F32" as const, shape: [m.r, m.inf], data: m.A },
    { name: `base_model.model.${m.name}.lora_B.weight`, dtype: "F32" as const, shape: [m.out, m.r], data: m.B },
  ]);
  await writeSafetensors(join(dir, "adapter_model.safetensors"), tensors);
  return dir;
}

export interface Tensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export async function writeCheckpointDir(dir: string, tensors: Tensor[]): Promise<string> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "llama", _name_or_path: "test/base" }));
  await writeSafetensors(
    join(dir, "model.safetensors"),
    tensors.map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape, data: t.data })),
  );
  return dir;
}

/**
 * A base checkpoint and a full fine-tune of it: three decoder linears changed by a low-rank
 * part plus small noise, one linear unchanged, a norm and the embedding changed, lm_head not.
 */
export function fullPair(seed: number, noise = 0.001): { base: Tensor[]; ft: Tensor[]; linear: string[] } {
  const next = lcg(seed);
  const shapes: Array<[string, number[]]> = [
    ["model.embed_tokens.weight", [50, 16]],
    [`${Q0}.weight`, [24, 16]],
    ["model.layers.0.self_attn.k_proj.weight", [8, 16]],
    [`${V0}.weight`, [8, 16]],
    ["model.layers.0.input_layernorm.weight", [16]],
    [`${DOWN1}.weight`, [16, 40]],
    ["lm_head.weight", [50, 16]],
  ];
  const base: Tensor[] = [];
  const ft: Tensor[] = [];
  for (const [name, shape] of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const b = randomF32(n, next);
    const f = Float32Array.from(b);
    if (name.endsWith("_proj.weight") && !name.includes("k_proj")) {
      const [out, inf] = shape as [number, number];
      // a rank-3 update with distinct strengths, plus noise
      for (const s of [3, 1.5, 0.7]) {
        const u = Array.from({ length: out }, next);
        const v = Array.from({ length: inf }, next);
        for (let i = 0; i < out; i++) for (let j = 0; j < inf; j++) f[i * inf + j]! += s * u[i]! * v[j]!;
      }
      for (let i = 0; i < n; i++) f[i]! += noise * next();
    } else if (name.includes("layernorm") || name.includes("embed")) {
      for (let i = 0; i < n; i++) f[i]! += 0.01 * next();
    }
    base.push({ name, shape, data: b });
    ft.push({ name, shape, data: f });
  }
  return { base, ft, linear: [Q0, "model.layers.0.self_attn.k_proj", V0, DOWN1] };
}

/** A fixture pair written into `root` (base/, ft/) and opened; `close` closes both. */
export async function openFullPair(root: string, pair: { base: Tensor[]; ft: Tensor[] }): Promise<{ base: Checkpoint; ft: Checkpoint; close: () => Promise<void> }> {
  const base = await openCheckpoint(await writeCheckpointDir(join(root, "base"), pair.base));
  const ft = await openCheckpoint(await writeCheckpointDir(join(root, "ft"), pair.ft));
  return { base, ft, close: async () => void (await Promise.all([base.close(), ft.close()])) };
}

/** The float64 ΔW = W_ft − W_base of one module of a fixture pair (the independent reference). */
export function pairDelta(pair: { base: Tensor[]; ft: Tensor[] }, module: string): Float64Array {
  const b = pair.base.find((t) => t.name === `${module}.weight`)!;
  const f = pair.ft.find((t) => t.name === `${module}.weight`)!;
  return Float64Array.from(f.data, (x, i) => x - b.data[i]!);
}

/**
 * Check a rank-k module (scale 1) against the dense float64 SVD of the ΔW it truncates: r = k,
 * its error is the energy Eckart–Young says the best rank-k drops, and where σ_k > σ_{k+1} (the
 * best approximation is unique) it is that approximation, all to `tol`·‖ΔW‖_F.
 */
/** Rank-k factors vs the dense best rank-k, relative to ‖ΔW‖_F: float32 factors of a LoRA (Gram core) and of a full fine-tune (randomized top-k). */
export const LORA_TOL = 1e-5;
export const FULL_TOL = 1e-4;

export function expectBestRankK(m: LoraModule, D: Float64Array, k: number, tol: number): void {
  expect(m).toMatchObject({ rank: k, scale: 1 });
  const approx = refDelta(m.B, m.A, m.outFeatures, k, m.inFeatures, 1);
  const norm = frob(D);
  if (norm === 0) {
    expect(frob(approx)).toBe(0);
    return;
  }
  const ref = referenceSvd(D, m.outFeatures, m.inFeatures);
  const tail = Math.sqrt(ref.s.slice(k).reduce((a, s) => a + s * s, 0));
  expect(Math.abs(diffFrob(approx, D) - tail), `${m.name}: error vs the dropped energy`).toBeLessThan(tol * norm);
  if (ref.s[k - 1]! - (ref.s[k] ?? 0) > 1e-3 * ref.s[0]!) {
    expect(diffFrob(approx, bestRankK(ref, k, m.outFeatures, m.inFeatures)), `${m.name}: vs the dense best rank-${k}`).toBeLessThan(tol * norm);
  }
}
