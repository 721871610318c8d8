/**
 * What a subject needs before anything loads (engine/estimate.ts, `delta-audit estimate`, the
 * scan's first line): memory per precision from config.json, the choice `auto` makes from the
 * available memory, exit 2 when nothing fits, and the --precision flag on the commands.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseModelConfig } from "../../src/engine/config";
import { decidePrecision, estimateMemory, estimateTime, headBytes, layerBytes, linearParams, measureSpeed, scanWorkload } from "../../src/engine/estimate";
import { buildSafetensorsHeader } from "../../src/io/safetensors";
import { InputError } from "../../src/errors";
import { TINY_BASE, onCleanup, randomWeights, runCleanups, writeModel } from "./fixtures";

afterAll(runCleanups);

const root = new URL("../..", import.meta.url).pathname;
const cli = (...args: string[]) => spawnSync(process.execPath, [`${root}bin/delta-audit.js`, ...args], { encoding: "utf8", maxBuffer: 1 << 26});

/** Llama-3.1-8B's config.json (the fields the engine reads). */
const LLAMA_31_8B = {
  model_type: "llama",
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  vocab_size: 128256,
  rms_norm_eps: 1e-5,
  rope_theta: 500000,
  max_position_embeddings: 131072,
  tie_word_embeddings: false,
  hidden_act: "silu",
};
const GiB = 2 ** 30;
const SCAN = scanWorkload({ prompts: 40, samples: 1, maxNewTokens: 64, promptChars: 40 * 200, longestPromptChars: 400, variants: 3, contrast: true });

describe("memory per precision, from config.json", () => {
  const c = parseModelConfig(LLAMA_31_8B);

  it("counts each weight once at its precision: the 8B's linears are 7.0 B parameters, 4 bytes at f32, ~1.00 at int8 (one scale per output channel), ~0.64 at int4", () => {
    expect(linearParams(c)).toBe(32 * (4096 * 6144 + 4096 * 4096 + 3 * 4096 * 14336));
    const params = linearParams(c);
    expect(c.numLayers * layerBytes(c, "f32")).toBeCloseTo(4 * params + 32 * 2 * 4096 * 4, -3);
    // int8: one byte per weight plus one float32 scale per output channel (q/k/v 6144, o 4096, gate/up 28672, down 4096)
    expect(c.numLayers * layerBytes(c, "int8")).toBeCloseTo(params + 32 * 4 * (6144 + 4096 + 28672 + 4096) + 32 * 2 * 4096 * 4, -3);
    expect((c.numLayers * layerBytes(c, "int4")) / params).toBeCloseTo(0.5 + 4 / 32 + 0.5 / 32, 2);
    // the head stays 8-bit under int4
    expect(headBytes(c, "int4")).toBe(headBytes(c, "int8"));
  });

  it("an 8B LoRA at int8 fits a 16 GB runner; at f32 it does not", () => {
    const shape = { kind: "lora" as const, loraParams: 42e6 };
    const f32 = estimateMemory(c, "f32", shape, SCAN);
    const int8 = estimateMemory(c, "int8", shape, SCAN);
    const int4 = estimateMemory(c, "int4", shape, SCAN);
    expect(f32.bytes).toBeGreaterThan(30 * GiB);
    expect(int8.bytes).toBeLessThan(12 * GiB);
    expect(int4.bytes).toBeLessThan(int8.bytes);
    // the parts add up to the peak (the load's transient and the run's cache are not held together)
    const p = int8.parts;
    expect(int8.bytes).toBe(p.weights + p.head + p.variants + p.runtime + Math.max(p.loadTransient, p.kvCache + p.activations));
  });

  it("a full fine-tune counts, at worst, a second copy of every weight", () => {
    const lora = estimateMemory(c, "int8", { kind: "lora", loraParams: 0 }, SCAN);
    const full = estimateMemory(c, "int8", { kind: "full", loraParams: 0 }, SCAN);
    expect(full.bytes - lora.bytes).toBe(lora.parts.weights + lora.parts.head);
  });
});

describe("auto: the most exact precision that fits", () => {
  const c = parseModelConfig(LLAMA_31_8B);
  const shape = { kind: "lora" as const, loraParams: 42e6 };
  const at = (gib: number) => ({ bytes: gib * GiB, source: "test" });

  it("picks by the available memory, and says why", async () => {
    expect((await decidePrecision("auto", c, shape, SCAN, { available: at(64) })).precision).toBe("f32");
    const d = await decidePrecision("auto", c, shape, SCAN, { available: at(15) });
    expect(d.precision).toBe("int8");
    expect(d.reason).toMatch(/^precision auto → int8: f32 would not fit \(needs f32 \d+\.\d GiB, int8 \d+\.\d GiB, int4 \d+\.\d GiB; 15\.0 GiB test, 85 % of it usable\)$/);
    expect((await decidePrecision("auto", c, shape, SCAN, { available: at(9) })).precision).toBe("int4");
  });

  it("nothing fits: an InputError (exit 2) before anything loads, naming the sizes", async () => {
    await expect(decidePrecision("auto", c, shape, SCAN, { available: at(3) })).rejects.toThrow(InputError);
    await expect(decidePrecision("auto", c, shape, SCAN, { available: at(3) })).rejects.toThrow(/cannot fit at any precision: it needs f32 .* int4 \d+\.\d GiB, and 3\.0 GiB is available/);
  });

  it("an explicit precision is checked against the installed ONNX Runtime, not the memory", async () => {
    expect((await decidePrecision("int4", c, shape, SCAN, { available: at(1) })).precision).toBe("int4");
    await expect(decidePrecision("bf16", c, shape, SCAN, { available: at(64), where: "engine.precision" })).rejects.toThrow(/engine\.precision: bf16 is not available: .*bfloat16 MatMul/);
  });
});

describe("time, from a short measurement", () => {
  it("int8 streams fewer bytes per token than f32, and the scan estimate grows with the work", async () => {
    const c = parseModelConfig({ ...TINY_BASE, hidden_size: 512, intermediate_size: 1024, num_hidden_layers: 4, num_attention_heads: 8, num_key_value_heads: 2, vocab_size: 4096 });
    for (const p of ["f32", "int8"] as const) {
      const speed = await measureSpeed(p, c, { threads: 1 });
      expect(speed.bytesPerSecond).toBeGreaterThan(1e8);
      expect(speed.batchSpeedup).toBeGreaterThan(1);
      const small = estimateTime(c, speed, { ...SCAN, steps: 10 }, 1e6);
      const big = estimateTime(c, speed, { ...SCAN, steps: 100 }, 1e6);
      expect(big.runSeconds).toBeGreaterThan(small.runSeconds);
    }
  });
});

/** A checkpoint folder whose safetensors header describes `config`'s tensors in BF16, the data a sparse hole (no disk, no RAM). */
async function sparseCheckpoint(config: Record<string, unknown>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "da-sparse-"));
  onCleanup(() => rm(dir, { recursive: true, force: true }));
  const H = config.hidden_size as number;
  const I = config.intermediate_size as number;
  const nH = config.num_attention_heads as number;
  const nKV = config.num_key_value_heads as number;
  const D = H / nH;
  const V = config.vocab_size as number;
  const specs: { name: string; dtype: "BF16"; shape: number[] }[] = [{ name: "model.embed_tokens.weight", dtype: "BF16", shape: [V, H] }];
  for (let l = 0; l < (config.num_hidden_layers as number); l++) {
    const p = `model.layers.${l}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, dtype: "BF16", shape: [H] },
      { name: `${p}.post_attention_layernorm.weight`, dtype: "BF16", shape: [H] },
      { name: `${p}.self_attn.q_proj.weight`, dtype: "BF16", shape: [nH * D, H] },
      { name: `${p}.self_attn.k_proj.weight`, dtype: "BF16", shape: [nKV * D, H] },
      { name: `${p}.self_attn.v_proj.weight`, dtype: "BF16", shape: [nKV * D, H] },
      { name: `${p}.self_attn.o_proj.weight`, dtype: "BF16", shape: [H, nH * D] },
      { name: `${p}.mlp.gate_proj.weight`, dtype: "BF16", shape: [I, H] },
      { name: `${p}.mlp.up_proj.weight`, dtype: "BF16", shape: [I, H] },
      { name: `${p}.mlp.down_proj.weight`, dtype: "BF16", shape: [H, I] },
    );
  }
  specs.push({ name: "model.norm.weight", dtype: "BF16", shape: [H] }, { name: "lm_head.weight", dtype: "BF16", shape: [V, H] });
  const { prefix, byteLengths } = buildSafetensorsHeader(specs);
  const fh = await open(join(dir, "model.safetensors"), "w");
  await fh.write(prefix, 0, prefix.byteLength, 0);
  await fh.truncate(prefix.byteLength + byteLengths.reduce((a, b) => a + b, 0));
  await fh.close();
  await writeFile(join(dir, "config.json"), JSON.stringify(config));
  return dir;
}

describe("delta-audit estimate", () => {
  it("an 8B-shaped checkpoint (header only): the table, and --json with every precision's bytes", async () => {
    const dir = await sparseCheckpoint(LLAMA_31_8B);
    const r = cli("estimate", "--base", dir, "--json", "--threads", "1");
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { precisions: { precision: string; memoryBytes: number; fits: boolean }[]; choice: { precision: string; reason: string } };
    const bytes = Object.fromEntries(out.precisions.map((p) => [p.precision, p.memoryBytes / GiB]));
    expect(bytes.f32).toBeGreaterThan(30);
    expect(bytes.int8).toBeLessThan(12);
    expect(bytes.int4).toBeLessThan(bytes.int8!);
    expect(out.choice.reason).toMatch(/^precision auto → /);
    const table = cli("estimate", "--base", dir, "--threads", "1");
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^subject: .* \(llama, 8\.03 B parameters, 1[45]\.\d GiB of weights on disk\)$/m);
    expect(table.stdout).toMatch(/^int8 {6}\d+\.\d GiB/m);
  });

  it("a tiny model: every precision fits and auto keeps f32; bf16 is exit 2 with the reason", async () => {
    const m = await writeModel(TINY_BASE, randomWeights(TINY_BASE, 3));
    onCleanup(m.cleanup);
    const r = cli("estimate", "--base", m.dir, "--threads", "1");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^precision auto → f32: the most exact precision fits/m);
    const bad = cli("estimate", "--base", m.dir, "--precision", "bf16");
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(bad.stderr).toMatch(/--precision: bf16 is not available: the installed ONNX Runtime .* has no bfloat16 MatMul kernel on cpu/);
  });
});

describe("--precision on logits and generate", () => {
  it("logits at int8 and int4 run; bf16 and unknown words are exit 2 with one line", async () => {
    const m = await writeModel(TINY_BASE, randomWeights(TINY_BASE, 4));
    onCleanup(m.cleanup);
    for (const p of ["int8", "int4"]) {
      const r = cli("logits", "--model", m.dir, "--ids", "1,2,3", "--precision", p);
      expect(r.status, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as { logits: number[][] }).logits).toHaveLength(3);
    }
    for (const [p, msg] of [
      ["bf16", /--precision: bf16 is not available: .*bfloat16 MatMul.*use --precision int8/],
      ["int3", /--precision: expected one of auto, f32, bf16, int8, int4, got 'int3'/],
    ] as const) {
      const r = cli("logits", "--model", m.dir, "--ids", "1", "--precision", p);
      expect(r.status, p).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
    }
  });
});

describe("engine.precision in delta-audit.yml and the Action's precision input", () => {
  it("the config key is validated; flags and inputs override it", async () => {
    const { parseConfig, applyOverrides } = await import("../../src/config");
    expect(parseConfig("").engine).toEqual({ precision: "auto" });
    const c = parseConfig("engine:\n  precision: int4\n");
    expect(c.engine.precision).toBe("int4");
    expect(() => parseConfig("engine: {precision: fp8}\n")).toThrow(/delta-audit\.yml: engine\.precision: expected one of auto, f32, bf16, int8, int4/);
    expect(() => parseConfig("engine: {dtype: int8}\n")).toThrow(/engine\.dtype: unknown key/);
    expect(applyOverrides(c, { precision: "int8" }).engine.precision).toBe("int8");
    expect(applyOverrides(c, {}).engine.precision).toBe("int4");
  });

  it("the Action input: empty = the config's, else one of the choices", async () => {
    const { getSettings } = await import("../../src/github/input-helper");
    const dir = await mkdtemp(join(tmpdir(), "da-precision-input-"));
    onCleanup(() => rm(dir, { recursive: true, force: true }));
    const env = { INPUT_ADAPTER: "a" };
    expect(getSettings({ env, workspace: dir, isPullRequest: false }).precision).toBeUndefined();
    expect(getSettings({ env: { ...env, INPUT_PRECISION: "int8" }, workspace: dir, isPullRequest: false }).precision).toBe("int8");
    expect(() => getSettings({ env: { ...env, INPUT_PRECISION: "fp8" }, workspace: dir, isPullRequest: false })).toThrow(/input 'precision'/);
  });
});

describe("a scan that cannot fit at any precision", () => {
  it("stops with exit 2 before the delta pass, naming every precision's size, and writes nothing", async () => {
    // ~1 T parameters (a sparse file: the header is real, the data a hole): no machine holds it at int4
    const huge = { ...LLAMA_31_8B, hidden_size: 32768, intermediate_size: 131072, num_hidden_layers: 64, num_attention_heads: 64, num_key_value_heads: 8, vocab_size: 32000 };
    const base = await sparseCheckpoint(huge);
    const { writeAdapter } = await import("../../src/io/peft");
    const adapter = join(base, "..", `${base.split("/").pop()}-adapter`);
    onCleanup(() => rm(adapter, { recursive: true, force: true }));
    const H = huge.hidden_size;
    await writeAdapter(adapter, { r: 1, lora_alpha: 1 }, [{ name: "model.layers.0.self_attn.q_proj", rank: 1, scale: 1, outFeatures: H, inFeatures: H, A: new Float32Array(H).fill(0.01), B: new Float32Array(H).fill(0.01) }]);
    const { runScan } = await import("../../src/scan");
    const out = join(base, "..", `${base.split("/").pop()}-report`);
    const t0 = Date.now();
    await expect(runScan({ base, adapter, outDir: out })).rejects.toThrow(/^engine\.precision: the model cannot fit at any precision: it needs f32 \d+\.\d GiB.*int4 \d+\.\d GiB/);
    expect(Date.now() - t0).toBeLessThan(60_000);
    const { existsSync } = await import("node:fs");
    expect(existsSync(out)).toBe(false);
    const cliRun = cli("scan", "--base", base, "--adapter", adapter, "--out", out, "--precision", "auto");
    expect(cliRun.status).toBe(2);
    expect(cliRun.stderr).toMatch(/--precision: the model cannot fit at any precision/);
  });
});

describe("serve: every variant it holds counts toward the choice", () => {
  it("adapters at their (truncated) rank, a fine-tune's rank-k factors, a whole fine-tune as a second copy at worst", async () => {
    const { subjectShape } = await import("../../src/engine/subject-precision");
    const { writeAdapter } = await import("../../src/io/peft");
    const { randomLora } = await import("./fixtures");
    const config = { ...TINY_BASE };
    const m = await writeModel(config, randomWeights(config, 91));
    onCleanup(m.cleanup);
    const adapter = `${m.dir}-serve-adapter`;
    onCleanup(() => rm(adapter, { recursive: true, force: true }));
    const lora = randomLora(m.weights, config, ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"], 4, 5);
    await writeAdapter(adapter, { r: 4, lora_alpha: 8 }, lora);
    const c = parseModelConfig(config);
    const perRank = lora.reduce((a, l) => a + l.inFeatures + l.outFeatures, 0);
    const { hiddenSize: H, numHeads: nH, numKvHeads: nKV, headDim: D, intermediateSize: I } = c;
    const rankParams = (k: number) => c.numLayers * k * (H + nH * D + 2 * (H + nKV * D) + nH * D + H + 2 * (H + I) + I + H);

    const none = await subjectShape({ model: m.dir, served: [] });
    expect(none.shape).toEqual({ kind: "base" });
    const two = await subjectShape({ model: m.dir, served: [{ kind: "adapter", dir: adapter }, { kind: "adapter", dir: adapter, rank: 1 }] });
    expect(two.shape).toEqual({ kind: "lora", loraParams: 4 * perRank + 1 * perRank, fullCopies: 0 });
    // @rank above the adapter's own rank holds the adapter's rank, not more
    const over = await subjectShape({ model: m.dir, served: [{ kind: "adapter", dir: adapter, rank: 16 }] });
    expect(over.shape.loraParams).toBe(4 * perRank);
    const ft = await subjectShape({ model: m.dir, served: [{ kind: "finetuned", dir: m.dir, rank: 2 }, { kind: "finetuned", dir: m.dir }, { kind: "finetuned", dir: m.dir }] });
    expect(ft.shape).toEqual({ kind: "full", loraParams: rankParams(2), fullCopies: 2 });

    const work = { batch: 8, context: 2048 };
    const baseOnly = estimateMemory(c, "int8", none.shape, work);
    const withTwo = estimateMemory(c, "int8", two.shape, work);
    expect(withTwo.bytes - baseOnly.bytes).toBe(4 * 5 * perRank);
    const withFt = estimateMemory(c, "int8", ft.shape, work);
    expect(withFt.parts.variants).toBe(4 * rankParams(2) + 2 * (baseOnly.parts.weights + baseOnly.parts.head));
  });
});
