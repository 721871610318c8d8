/**
 * Scan's delta phase before and after the one-pass change, on two generated subjects cached in
 * .cache/bench/: a LoRA adapter with TinyLlama-1.1B shapes (22 layers, hidden 2048,
 * intermediate 5632, 4 KV heads × 64, rank 64 on q,k,v,o,gate,up,down, F32, ≈ 0.2 GB) and a
 * full fine-tune pair (4 layers, hidden 1024, intermediate 2816, F32, ≈ 0.18 GB per side) whose
 * ΔW is a power-law rank-16 update over a small noise floor.
 *   (a) old: the spectrum, then the rank-1 adapter written, then the engine's own second
 *       truncation (loadSubject ignored the folder scan had just written): every module read
 *       and decomposed three times (for a full fine-tune, every ΔW formed three times);
 *   (b) new: deltaPass (one walk: spectrum and rank-1 folder together), then the written folder
 *       read back as the engine now loads it.
 * Each side runs in a fresh process (its own peak RSS), alternating, fastest of MEASURED_RUNS.
 *
 * Run: `npm run bench -- scan-delta` (BENCH_QUICK=1: a quarter of the layers).
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { QUICK, fastestOf, fillUniform, reportPhase, runPhase, secs, startPhaseCpu, writeRandomAdapter, type PhaseResult } from "./spectrum-common";
import type { LoraModule } from "../src/io/types";

const SCRIPT = fileURLToPath(import.meta.url);
/** The rank scan truncates to by default. */
const RANK = 1;
/** Old/new pairs run per subject; the fastest of each side counts (on a shared machine it is the least disturbed). */
const MEASURED_RUNS = 3;

/** TinyLlama-1.1B shapes for the adapter. */
const LORA = Object.freeze({ layers: QUICK ? 6 : 22, hidden: 2048, intermediate: 5632, kvDim: 4 * 64, rank: 64, alpha: 128 });
/** A small decoder for the full fine-tune (dense ΔW: memory is layers × 45 MB per side). */
const FULL = Object.freeze({ layers: QUICK ? 1 : 4, hidden: 1024, intermediate: 2816, kvDim: 4 * 64, updateRank: 16, sigma1: 0.05, noise: 1e-6 });

const CACHE = join(".cache", "bench");
const LORA_DIR = join(CACHE, `scan-delta-lora-${LORA.layers}l`);
const FULL_DIR = join(CACHE, `scan-delta-full-${FULL.layers}l`);
const OUT_DIR = join(CACHE, "scan-delta-out");

function shapes(c: { layers: number; hidden: number; intermediate: number; kvDim: number }): Array<{ name: string; out: number; inf: number }> {
  const out: Array<{ name: string; out: number; inf: number }> = [];
  for (let l = 0; l < c.layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      { name: `${p}.self_attn.q_proj`, out: c.hidden, inf: c.hidden },
      { name: `${p}.self_attn.k_proj`, out: c.kvDim, inf: c.hidden },
      { name: `${p}.self_attn.v_proj`, out: c.kvDim, inf: c.hidden },
      { name: `${p}.self_attn.o_proj`, out: c.hidden, inf: c.hidden },
      { name: `${p}.mlp.gate_proj`, out: c.intermediate, inf: c.hidden },
      { name: `${p}.mlp.up_proj`, out: c.intermediate, inf: c.hidden },
      { name: `${p}.mlp.down_proj`, out: c.hidden, inf: c.intermediate },
    );
  }
  return out;
}

async function generateLora(): Promise<void> {
  await writeRandomAdapter(LORA_DIR, shapes(LORA), { rank: LORA.rank, alpha: LORA.alpha, seed: 0x5ca11ab1, baseModel: "bench/tinyllama" });
}

async function generateFull(): Promise<void> {
  const { writeSafetensors } = await import("../src/io/safetensors");
  const { matmul } = await import("../src/linalg/kernels");
  const base: Array<{ name: string; dtype: "F32"; shape: number[]; data: Float32Array }> = [];
  const ft: typeof base = [];
  let seed = 0xf011;
  // a changed norm: one of the "other changes" the spectrum lists
  const norm = new Float32Array(FULL.hidden).fill(1);
  base.push({ name: "model.norm.weight", dtype: "F32", shape: [FULL.hidden], data: norm });
  ft.push({ name: "model.norm.weight", dtype: "F32", shape: [FULL.hidden], data: Float32Array.from(norm, (x, i) => x + (i % 7) * 1e-3) });
  for (const s of shapes(FULL)) {
    const w = new Float32Array(s.out * s.inf);
    seed = fillUniform(w, seed, 0.02);
    const f = new Float32Array(w.length);
    seed = fillUniform(f, seed, FULL.noise);
    // ΔW = Σ_{i≤r} (σ₁/i)·uᵢvᵢᵀ + noise: a power-law spectrum like measured full fine-tunes
    const U = new Float32Array(s.out * FULL.updateRank);
    const Vt = new Float32Array(FULL.updateRank * s.inf);
    seed = fillUniform(U, seed, 1);
    seed = fillUniform(Vt, seed, 1);
    const norm2 = Math.sqrt((s.out * s.inf) / 9);
    for (let o = 0; o < s.out; o++) for (let i = 0; i < FULL.updateRank; i++) U[o * FULL.updateRank + i]! *= FULL.sigma1 / (i + 1) / norm2;
    const low = await matmul({ data: U, rows: s.out, cols: FULL.updateRank }, { data: Vt, rows: FULL.updateRank, cols: s.inf });
    for (let i = 0; i < f.length; i++) f[i]! += w[i]! + low.data[i]!;
    base.push({ name: `${s.name}.weight`, dtype: "F32", shape: [s.out, s.inf], data: w });
    ft.push({ name: `${s.name}.weight`, dtype: "F32", shape: [s.out, s.inf], data: f });
  }
  for (const [side, tensors] of [["base", base], ["ft", ft]] as const) {
    const dir = join(FULL_DIR, side);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "llama", _name_or_path: `bench/${side}` }));
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
  }
}

async function collect(it: AsyncIterable<LoraModule>): Promise<LoraModule[]> {
  const out: LoraModule[] = [];
  for await (const m of it) out.push(m);
  return out;
}

/** Σσ over every module: old and new must report the same spectrum. */
const sigmaSum = (r: { modules: Array<{ sigma: number[] }> }) => r.modules.reduce((a, m) => a + m.sigma.reduce((x, s) => x + s, 0), 0);

async function phase(name: string): Promise<void> {
  const { openAdapter } = await import("../src/io/peft");
  const { openCheckpoint } = await import("../src/io/checkpoint");
  const { adapterSpectrum, fullSpectrum } = await import("../src/delta/spectrum");
  const { fullLayout, fullSourceConfig, lowRankFromFull, truncateAdapter, truncatedLayout, writeTruncatedAdapter } = await import("../src/delta/truncate");
  const { deltaPass } = await import("../src/delta/pass");
  const out = join(OUT_DIR, name);
  rmSync(out, { recursive: true, force: true });
  const warnings: string[] = [];
  const onWarning = (m: string) => warnings.push(m);
  // reads the written folder back as the engine loads a rank variant (openAdapter + readModule)
  const readFolder = async (dir: string) => {
    const a = await openAdapter(dir);
    try {
      return await Promise.all(a.moduleNames().map((n) => a.readModule(n)));
    } finally {
      await a.close();
    }
  };
  startPhaseCpu();
  const t0 = performance.now();
  let sum = 0;
  let modules = 0;
  if (name === "generate") {
    if (!existsSync(join(LORA_DIR, "adapter_model.safetensors"))) await generateLora();
    if (!existsSync(join(FULL_DIR, "ft", "model.safetensors"))) await generateFull();
  } else if (name === "lora-old") {
    const adapter = await openAdapter(LORA_DIR);
    const spectrum = await adapterSpectrum(adapter, { quiet: true });
    await writeTruncatedAdapter(out, truncateAdapter(adapter, RANK, { quiet: true }), adapter.config, { layout: truncatedLayout(adapter, RANK) });
    await adapter.close();
    // the engine's loadSubject reopened the adapter and truncated it again
    const again = await openAdapter(LORA_DIR);
    modules = (await collect(truncateAdapter(again, RANK, { quiet: true }))).length;
    await again.close();
    sum = sigmaSum(spectrum);
  } else if (name === "lora-new") {
    const adapter = await openAdapter(LORA_DIR);
    const spectrum = await deltaPass({ kind: "lora", adapter }, RANK, out, { quiet: true });
    await adapter.close();
    modules = (await readFolder(out)).length;
    sum = sigmaSum(spectrum);
  } else if (name === "full-old") {
    // lowRankFromFull runs a top-`rank` SVD of its own (only the linear tensors), as it did before the pass
    const oldLowRank = (b: Awaited<ReturnType<typeof openCheckpoint>>, f: typeof b) => lowRankFromFull(b, f, RANK, { quiet: true, onWarning });
    const base = await openCheckpoint(join(FULL_DIR, "base"));
    const ft = await openCheckpoint(join(FULL_DIR, "ft"));
    const spectrum = await fullSpectrum(base, ft, { quiet: true, onWarning });
    await writeTruncatedAdapter(out, oldLowRank(base, ft), fullSourceConfig(base), { layout: fullLayout(ft, RANK) });
    await base.close();
    await ft.close();
    const base2 = await openCheckpoint(join(FULL_DIR, "base"));
    const ft2 = await openCheckpoint(join(FULL_DIR, "ft"));
    modules = (await collect(oldLowRank(base2, ft2))).length;
    await base2.close();
    await ft2.close();
    sum = sigmaSum(spectrum);
  } else if (name === "full-new") {
    const base = await openCheckpoint(join(FULL_DIR, "base"));
    const ft = await openCheckpoint(join(FULL_DIR, "ft"));
    const spectrum = await deltaPass({ kind: "full", base, finetuned: ft }, RANK, out, { quiet: true, onWarning });
    await base.close();
    await ft.close();
    modules = (await readFolder(out)).length;
    sum = sigmaSum(spectrum);
  } else {
    throw new Error(`unknown phase ${name}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  rmSync(out, { recursive: true, force: true });
  reportPhase({ seconds, sigmaSum: sum, modules, warnings });
}

export interface ScanDeltaBenchResult {
  lora: { oldSeconds: number; newSeconds: number; ratio: number };
  full: { oldSeconds: number; newSeconds: number; ratio: number };
}

export async function run(): Promise<ScanDeltaBenchResult> {
  const g0 = performance.now();
  runPhase(SCRIPT, "generate");
  console.log(`subjects ready in ${secs((performance.now() - g0) / 1000)} (generated once into ${CACHE})`);
  const result = {} as ScanDeltaBenchResult;
  for (const kind of ["lora", "full"] as const) {
    const olds: PhaseResult[] = [];
    const news: PhaseResult[] = [];
    // alternate, so drifting load on a shared machine hits both sides alike
    for (let i = 0; i < MEASURED_RUNS; i++) {
      olds.push(runPhase(SCRIPT, `${kind}-old`));
      news.push(runPhase(SCRIPT, `${kind}-new`));
    }
    const o = fastestOf(olds);
    const n = fastestOf(news);
    const ratio = o.seconds / n.seconds;
    result[kind] = { oldSeconds: o.seconds, newSeconds: n.seconds, ratio };
    const drift = Math.abs((n.sigmaSum as number) - (o.sigmaSum as number)) / (o.sigmaSum as number);
    const label = kind === "lora" ? `LoRA (${shapes(LORA).length} modules, r = ${LORA.rank})` : `full fine-tune (${shapes(FULL).length} dense modules)`;
    console.log(`${label}, rank-${RANK} truncation:`);
    console.log(`  (a) old: spectrum + truncate written + engine's 2nd truncation : ${secs(o.seconds)}  (runs ${o.runs.map(secs).join(", ")}; CPU ${secs(o.cpuSeconds)}; peak RSS ${(o.peakRssBytes / 1e9).toFixed(2)} GB)`);
    console.log(`  (b) new: one pass (spectrum + folder) + folder read back        : ${secs(n.seconds)}  (runs ${n.runs.map(secs).join(", ")}; CPU ${secs(n.cpuSeconds)}; peak RSS ${(n.peakRssBytes / 1e9).toFixed(2)} GB)`);
    console.log(`  old / new: ${ratio.toFixed(2)}× wall, ${(o.cpuSeconds / n.cpuSeconds).toFixed(2)}× CPU; Σσ old vs new differ by ${drift.toExponential(1)} (relative)`);
    for (const w of [...(o.warnings as string[]), ...(n.warnings as string[])]) console.log(`  warning: ${w}`);
  }
  console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(1)).join(" ")} on ${cpus().length} cores (wall times stretch when others run)`);
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf("--phase");
  if (i > 0) await phase(process.argv[i + 1]!);
  else await run();
}
