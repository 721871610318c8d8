/**
 * Engine benchmark on a synthetic checkpoint shaped like Qwen2.5-0.5B (hidden 896, 24 layers,
 * 14 heads, 2 KV heads, intermediate 4864, vocab 151936, tied embeddings; random BF16 weights
 * generated once into .cache/bench/). Measures in one run: memory read bandwidth, decode
 * tokens/s at batch 1 and 8, prefill tokens/s, peak memory, and the roofline ratio.
 *
 * Run: `node --expose-gc --import tsx bench/engine.bench.ts` (or through `npm run bench`).
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { measureReadBandwidth } from "./bandwidth";
import { loadModel } from "../src/engine/index";

export const BENCH_DIR = join(".cache", "bench", "qwen2.5-0.5b-synthetic");
export const QWEN25_05B_CONFIG = Object.freeze({
  model_type: "qwen2",
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  vocab_size: 151936,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: true,
  hidden_act: "silu",
  use_sliding_window: false,
  eos_token_id: 151643,
});

/** Targets from issue 3. */
export const TARGETS = Object.freeze({ rooflineBatch1: 0.5, batch8OverBatch1: 4, peakOverWeights: 1.3 });

/** Bytes read by the bandwidth probe: far larger than any CPU cache. */
const BANDWIDTH_BYTES = 1 << 30;
const PROMPT_TOKENS = 128;
const DECODE_STEPS = 16;

async function ensureCheckpoint(): Promise<void> {
  if (existsSync(join(BENCH_DIR, "model.safetensors"))) return;
  // generated in a child process so its memory does not count toward this process's peak
  const r = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--generate"], { stdio: "inherit" });
  if (r.status !== 0) throw new Error("generating the benchmark checkpoint failed");
}

async function generateCheckpoint(): Promise<void> {
  const { writeSafetensors } = await import("../src/io/safetensors");
  const { writeFile } = await import("node:fs/promises");
  const c = QWEN25_05B_CONFIG;
  const H = c.hidden_size, I = c.intermediate_size, nH = c.num_attention_heads, nKV = c.num_key_value_heads, V = c.vocab_size;
  const D = H / nH;
  let s = 12345;
  const rand = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      a[i] = ((s / 4294967296) * 2 - 1) * scale;
    }
    return a;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);
  const t: { name: string; dtype: "BF16"; shape: number[]; data: Float32Array }[] = [];
  const add = (name: string, shape: number[], data: Float32Array) => t.push({ name, dtype: "BF16", shape, data });
  add("model.embed_tokens.weight", [V, H], rand(V * H, 0.05));
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [H], ones(H));
    add(`${p}.post_attention_layernorm.weight`, [H], ones(H));
    for (const [n, o] of [["q_proj", nH * D], ["k_proj", nKV * D], ["v_proj", nKV * D]] as const) {
      add(`${p}.self_attn.${n}.weight`, [o, H], rand(o * H, 1 / Math.sqrt(H)));
      add(`${p}.self_attn.${n}.bias`, [o], rand(o, 0.1));
    }
    add(`${p}.self_attn.o_proj.weight`, [H, H], rand(H * H, 1 / Math.sqrt(H)));
    add(`${p}.mlp.gate_proj.weight`, [I, H], rand(I * H, 1 / Math.sqrt(H)));
    add(`${p}.mlp.up_proj.weight`, [I, H], rand(I * H, 1 / Math.sqrt(H)));
    add(`${p}.mlp.down_proj.weight`, [H, I], rand(H * I, 1 / Math.sqrt(I)));
  }
  add("model.norm.weight", [H], ones(H));
  const tmp = `${BENCH_DIR}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await writeFile(join(tmp, "config.json"), JSON.stringify(c, null, 2));
  await writeSafetensors(join(tmp, "model.safetensors"), t);
  await rm(BENCH_DIR, { recursive: true, force: true });
  await rename(tmp, BENCH_DIR);
}

/** Read bandwidth of every core (bench/bandwidth.ts) over 1 GiB, in a child process. */
function measureBandwidthInChild(): number {
  // a separate process, so the probe's 1 GiB buffer does not count toward the engine's peak memory
  const r = spawnSync(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "--bandwidth"], { encoding: "utf8" });
  const v = Number(r.stdout.trim().split("\n").pop());
  if (r.status !== 0 || !(v > 0)) throw new Error(`bandwidth probe failed: ${r.stderr}`);
  return v;
}

async function measureBandwidth(): Promise<number> {
  return (await measureReadBandwidth(BANDWIDTH_BYTES)).bytesPerSecond;
}

function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

export interface EngineBenchResult {
  bandwidthBytesPerS: number;
  weightBytes: number;
  decodeTokPerSBatch1: number;
  decodeTokPerSBatch8: number;
  prefillTokPerS: number;
  peakRssBytes: number;
  rooflineRatio: number;
  batch8OverBatch1: number;
  peakOverWeights: number;
}

export async function run(): Promise<EngineBenchResult> {
  await ensureCheckpoint();
  const t0 = performance.now();
  const model = await loadModel(BENCH_DIR);
  const loadS = (performance.now() - t0) / 1000;
  const c = QWEN25_05B_CONFIG;
  const H = c.hidden_size, I = c.intermediate_size, V = c.vocab_size, L = c.num_hidden_layers;
  const D = H / c.num_attention_heads;
  const params = V * H + L * (H * (H + 2 * c.num_key_value_heads * D) + H * H + 3 * H * I + 2 * H + (H + 2 * c.num_key_value_heads * D)) + H;
  const weightBytes = params * 4;
  const prompt = (k: number, n = PROMPT_TOKENS) => Array.from({ length: n }, (_, i) => (i * 7919 + k * 104729) % V);
  // warm-up (session creation, arena growth)
  await model.logits(prompt(0, 8));

  // prefill: one prompt's forward pass with a fresh KV cache (next-token logits, as generation does)
  let best = Infinity;
  for (let r = 0; r < 2; r++) {
    const t = performance.now();
    await model.openStream([prompt(1)]);
    best = Math.min(best, performance.now() - t);
  }
  const prefillTokPerS = PROMPT_TOKENS / (best / 1000);

  // decode: median KV-cached step time after a 32-token prompt per row
  const decode = async (batch: number) => {
    const stream = await model.openStream(Array.from({ length: batch }, (_, k) => prompt(k + 2, 32)));
    const times: number[] = [];
    for (let i = 0; i < DECODE_STEPS; i++) {
      const t = performance.now();
      await stream.next(Array.from({ length: batch }, (_, k) => (k * 131 + i * 17) % V));
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const stepS = times[times.length >> 1]! / 1000;
    return { tokPerS: batch / stepS, stepS };
  };
  const d1 = await decode(1);
  const d8 = await decode(8);
  // variants are views: a rank-16 "full" LoRA on every linear and its rank-1 truncation add only
  // their factors; decoding on them must not raise the peak beyond base + adapters
  const loraModules = (rank: number) => {
    const mods = [];
    const nKV = c.num_key_value_heads;
    const shapes: Record<string, [number, number]> = {
      "self_attn.q_proj": [H, H], "self_attn.k_proj": [nKV * D, H], "self_attn.v_proj": [nKV * D, H], "self_attn.o_proj": [H, H],
      "mlp.gate_proj": [I, H], "mlp.up_proj": [I, H], "mlp.down_proj": [H, I],
    };
    for (let l = 0; l < L; l++) {
      for (const [m, [o, i]] of Object.entries(shapes)) {
        mods.push({ name: `model.layers.${l}.${m}`, rank, scale: 1, outFeatures: o, inFeatures: i, A: new Float32Array(rank * i).fill(1e-3), B: new Float32Array(o * rank).fill(1e-3) });
      }
    }
    return mods;
  };
  model.addLoraVariant("full", loraModules(16));
  model.addLoraVariant("rank1", loraModules(1));
  const adapterBytes = loraModules(16).reduce((a, m) => a + 4 * (m.A.length + m.B.length), 0) + loraModules(1).reduce((a, m) => a + 4 * (m.A.length + m.B.length), 0);
  for (const variant of ["full", "rank1"]) {
    const s = await model.openStream([prompt(9, 32)], variant);
    for (let i = 0; i < 4; i++) await s.next([i + 1]);
  }
  await model.close();
  const bandwidth = measureBandwidthInChild();
  const peak = peakRssBytes();
  const rooflineStepS = weightBytes / bandwidth;
  const res: EngineBenchResult = {
    bandwidthBytesPerS: bandwidth,
    weightBytes,
    decodeTokPerSBatch1: d1.tokPerS,
    decodeTokPerSBatch8: d8.tokPerS,
    prefillTokPerS,
    peakRssBytes: peak,
    rooflineRatio: rooflineStepS / d1.stepS,
    batch8OverBatch1: d8.tokPerS / d1.tokPerS,
    peakOverWeights: peak / weightBytes,
  };
  const gb = (b: number) => (b / 1e9).toFixed(2);
  const pass = (ok: boolean) => (ok ? "ok" : "BELOW TARGET");
  console.log(`engine bench (Qwen2.5-0.5B-shaped, ${params.toLocaleString()} params, load ${loadS.toFixed(1)}s)`);
  console.log(`  memory read bandwidth : ${gb(bandwidth)} GB/s`);
  console.log(`  weights (float32)     : ${gb(weightBytes)} GB → roofline step ${(rooflineStepS * 1000).toFixed(1)} ms`);
  console.log(`  decode batch 1        : ${d1.tokPerS.toFixed(2)} tok/s (step ${(d1.stepS * 1000).toFixed(1)} ms)`);
  console.log(`  decode batch 8        : ${d8.tokPerS.toFixed(2)} tok/s`);
  console.log(`  prefill               : ${prefillTokPerS.toFixed(1)} tok/s (${PROMPT_TOKENS} tokens)`);
  console.log(`  peak RSS              : ${gb(peak)} GB (with base + full r16 + rank1 LoRA variants, adapters ${gb(adapterBytes)} GB)`);
  console.log(`  roofline ratio b=1    : ${res.rooflineRatio.toFixed(2)} (target ≥ ${TARGETS.rooflineBatch1}) ${pass(res.rooflineRatio >= TARGETS.rooflineBatch1)}`);
  console.log(`  batch 8 / batch 1     : ${res.batch8OverBatch1.toFixed(2)}× (target ≥ ${TARGETS.batch8OverBatch1}) ${pass(res.batch8OverBatch1 >= TARGETS.batch8OverBatch1)}`);
  console.log(`  peak / f32 weights    : ${res.peakOverWeights.toFixed(2)} (target ≤ ${TARGETS.peakOverWeights}) ${pass(res.peakOverWeights <= TARGETS.peakOverWeights)}`);
  return res;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv.includes("--generate")) await generateCheckpoint();
  else if (process.argv.includes("--bandwidth")) console.log(await measureBandwidth());
  else await run();
}
