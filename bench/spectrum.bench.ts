/**
 * Spectrum / truncate benchmark on a synthetic adapter with the exact shapes of the AuditBench
 * organisms (Llama-3.3-70B: 80 layers, hidden 8192, intermediate 28672, 8 KV heads × 128,
 * rank 64 on q,k,v,o,gate,up,down, F32, ≈3.3 GB), generated once into .cache/bench/ by a
 * streaming writer. Measures in one run, each phase in a fresh process (its own peak RSS):
 *   (a) the I/O floor: every byte of adapter_model.safetensors read once, from the page cache
 *       (hot) and, where the file can be evicted, from disk (cold, with spectrum also cold);
 *   (b) `spectrum` of the whole adapter;  (c) `truncate --rank 1`;
 *   (d) the naive baseline: ml-matrix SVD of dense n×n matrices, extrapolated (n³) to one
 *       8192×8192 module and (m·n·min(m,n)) to every module of the adapter;
 *   (e) the torch factored method (bench/torch_factored_spectrum.py: QR of B and Aᵀ, SVD of the
 *       r×r core) on the same file in a fresh python3 with as many torch threads as cores; skipped
 *       with a line saying why where no python3 can import torch (Debian: apt-get install
 *       python3-torch; BENCH_PYTHON names the interpreter, else python3 then /usr/bin/python3).
 * Targets (issue 2): (b) ≤ 2× (a) and < 15 s on 2 cores; peak RSS < 1.5 GB; ≥ 1000× (d).
 * Targets (issue 14): (b) ≤ 8× (a) and ≥ 4× faster than (e).
 *
 * Run: `npm run bench -- spectrum` (BENCH_QUICK=1: 4 layers, small baseline).
 */
import { spawnSync } from "node:child_process";
import { existsSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { Matrix, SingularValueDecomposition } from "ml-matrix";
import { QUICK, bestOfPhase, evict, startPhaseCpu, gb, readFloor, reportPhase, runPhase, secs, summariseTargets, verdict, writeRandomAdapter, type PhaseResult } from "./spectrum-common";

const SCRIPT = fileURLToPath(import.meta.url);

/** Llama-3.3-70B shapes. */
export const LLAMA70B = Object.freeze({ layers: 80, hidden: 8192, intermediate: 28672, kvDim: 8 * 128, rank: 64, alpha: 128 });
const LAYERS = QUICK ? 4 : LLAMA70B.layers;
export const ADAPTER_DIR = join(".cache", "bench", QUICK ? "llama70b-r64-adapter-quick" : "llama70b-r64-adapter");
const WEIGHTS = join(ADAPTER_DIR, "adapter_model.safetensors");
const RANK1_OUT = join(".cache", "bench", "llama70b-rank1-out");

export const TARGETS = Object.freeze({ overFloor: 2, seconds: 15, peakRssBytes: 1.5e9, speedup: 1000 });
/** Issue 14's targets: against the page-cache floor, and against the torch factored method. */
export const TARGETS_14 = Object.freeze({ overFloor: 8, overTorch: 4 });
const TORCH_SCRIPT = fileURLToPath(new URL("./torch_factored_spectrum.py", import.meta.url));
/** The script's exit status when torch cannot be imported. */
const NO_TORCH_EXIT = 3;
/** Hot spectrum runs per bench (the fastest counts, like the faster of the two floor runs). */
const MEASURED_RUNS = 2;
/** Dense SVD sizes timed for the baseline (seconds each in ml-matrix: ~0.8 and ~7). */
const BASELINE_SIZES = QUICK ? [128, 256] : [512, 1024];

interface Shape {
  name: string;
  out: number;
  inf: number;
}

export function adapterShapes(layers = LAYERS): Shape[] {
  const { hidden: h, intermediate: i, kvDim: kv } = LLAMA70B;
  const out: Shape[] = [];
  for (let l = 0; l < layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      { name: `${p}.self_attn.q_proj`, out: h, inf: h },
      { name: `${p}.self_attn.k_proj`, out: kv, inf: h },
      { name: `${p}.self_attn.v_proj`, out: kv, inf: h },
      { name: `${p}.self_attn.o_proj`, out: h, inf: h },
      { name: `${p}.mlp.gate_proj`, out: i, inf: h },
      { name: `${p}.mlp.up_proj`, out: i, inf: h },
      { name: `${p}.mlp.down_proj`, out: h, inf: i },
    );
  }
  return out;
}

async function generate(): Promise<void> {
  await writeRandomAdapter(ADAPTER_DIR, adapterShapes(), { rank: LLAMA70B.rank, alpha: LLAMA70B.alpha, seed: 0x9e3779b9, baseModel: "meta-llama/Llama-3.3-70B-Instruct" });
}

async function phase(name: string): Promise<void> {
  if (name === "generate") {
    await generate();
    reportPhase({ seconds: 0 });
  } else if (name === "floor") {
    const f = await readFloor([WEIGHTS]);
    reportPhase({ seconds: f.seconds, bytes: f.bytes });
  } else if (name === "spectrum") {
    const { openAdapter } = await import("../src/io/peft");
    const { adapterSpectrum } = await import("../src/delta/spectrum");
    startPhaseCpu();
    const t0 = performance.now();
    const adapter = await openAdapter(ADAPTER_DIR);
    const report = await adapterSpectrum(adapter, { quiet: true });
    await adapter.close();
    const seconds = (performance.now() - t0) / 1000;
    // Σσ₁ and Σσ² over modules, to check the torch baseline computed the same spectrum
    const sumSigma1 = report.modules.reduce((a, m) => a + (m.sigma[0] ?? 0), 0);
    const sumSigma2 = report.modules.reduce((a, m) => a + m.frobenius ** 2, 0);
    reportPhase({ seconds, modules: report.modules.length, medianStableRank: report.summary.stableRank.median, sumSigma1, sumSigma2 });
  } else if (name === "truncate") {
    const { runTruncate } = await import("../src/commands/truncate");
    rmSync(RANK1_OUT, { recursive: true, force: true });
    startPhaseCpu();
    const t0 = performance.now();
    await runTruncate({ adapter: ADAPTER_DIR, rank: "1", out: RANK1_OUT });
    const seconds = (performance.now() - t0) / 1000;
    const bytes = statSync(join(RANK1_OUT, "adapter_model.safetensors")).size;
    rmSync(RANK1_OUT, { recursive: true, force: true });
    reportPhase({ seconds, outBytes: bytes });
  } else if (name === "dense") {
    const times: Array<{ n: number; seconds: number }> = [];
    for (const n of BASELINE_SIZES) {
      const m = Matrix.rand(n, n);
      const t0 = performance.now();
      // singular values only: the cheapest dense path, so the speedup claimed is conservative
      new SingularValueDecomposition(m, { computeLeftSingularVectors: false, computeRightSingularVectors: false });
      times.push({ n, seconds: (performance.now() - t0) / 1000 });
    }
    reportPhase({ seconds: times.reduce((a, t) => a + t.seconds, 0), times });
  } else {
    throw new Error(`unknown phase ${name}`);
  }
}

/**
 * The torch factored method on the adapter, in a fresh python3 with one torch thread per core;
 * the reason instead where no interpreter can import torch (the bench goes on without it).
 */
function torchPhase(): PhaseResult | { skipped: string } {
  const candidates = process.env.BENCH_PYTHON ? [process.env.BENCH_PYTHON] : ["python3", "/usr/bin/python3"];
  const reasons: string[] = [];
  for (const python of candidates) {
    const r = spawnSync(python, [TORCH_SCRIPT, ADAPTER_DIR, String(cpus().length)], { encoding: "utf8", maxBuffer: 1024 * 1024 });
    if (r.error) {
      reasons.push(`${python}: ${r.error.message}`);
      continue;
    }
    if (r.status === NO_TORCH_EXIT) {
      reasons.push(`${python}: ${r.stderr.trim()}`);
      continue;
    }
    if (r.status !== 0) throw new Error(`torch baseline failed (${python}, exit ${r.status}): ${r.stderr.slice(-2000)}`);
    return JSON.parse(r.stdout.trim().split("\n").pop() ?? "") as PhaseResult;
  }
  return { skipped: reasons.join("; ") };
}

export interface SpectrumBenchResult {
  floorSeconds: number;
  spectrumSeconds: number;
  truncateSeconds: number;
  denseModuleSeconds: number;
  denseAdapterSeconds: number;
  spectrumPeakRssBytes: number;
  truncatePeakRssBytes: number;
  /** the torch factored method's wall time; undefined where torch was not available */
  torchSeconds?: number;
}

export async function run(): Promise<SpectrumBenchResult> {
  if (!existsSync(WEIGHTS)) {
    console.log(`generating ${ADAPTER_DIR} (once; streamed) …`);
    const g0 = performance.now();
    runPhase(SCRIPT, "generate");
    console.log(`  generated in ${secs((performance.now() - g0) / 1000)}`);
  }
  const bytes = statSync(WEIGHTS).size;
  const shapes = adapterShapes();
  // the floor is taken twice (around the measured phases) and the faster one kept: a
  // conservative floor makes the ratio harder to meet, not easier
  const floor1 = runPhase(SCRIPT, "floor");
  const spectrum = bestOfPhase(SCRIPT, "spectrum", MEASURED_RUNS);
  const torch = torchPhase();
  const truncate = runPhase(SCRIPT, "truncate");
  const floor2 = runPhase(SCRIPT, "floor");
  const floor = Math.min(floor1.seconds, floor2.seconds);
  // cold: the file evicted from the page cache before each run, so both read the disk
  const cold = evict([WEIGHTS]) ? { floor: runPhase(SCRIPT, "floor"), spectrum: (evict([WEIGHTS]), runPhase(SCRIPT, "spectrum")) } : undefined;
  const dense = runPhase(SCRIPT, "dense");
  const times = dense.times as Array<{ n: number; seconds: number }>;
  const big = times[times.length - 1]!;
  const small = times[0]!;
  const exponent = Math.log(big.seconds / small.seconds) / Math.log(big.n / small.n);
  // Golub–Kahan SVD costs ∝ m·n·min(m,n); the constant comes from the largest size timed
  const c = big.seconds / big.n ** 3;
  const denseModule = c * 8192 ** 3;
  const denseAdapter = shapes.reduce((a, s) => a + c * s.out * s.inf * Math.min(s.out, s.inf), 0);

  const res: SpectrumBenchResult = {
    floorSeconds: floor,
    spectrumSeconds: spectrum.seconds,
    truncateSeconds: truncate.seconds,
    denseModuleSeconds: denseModule,
    denseAdapterSeconds: denseAdapter,
    spectrumPeakRssBytes: spectrum.peakRssBytes,
    truncatePeakRssBytes: truncate.peakRssBytes,
    torchSeconds: "skipped" in torch ? undefined : torch.seconds,
  };
  const overFloor = spectrum.seconds / floor;
  const speedup = denseAdapter / spectrum.seconds;
  console.log(`spectrum bench (Llama-3.3-70B-shaped rank-64 F32 adapter: ${shapes.length} modules, ${gb(bytes)} GB)`);
  console.log(`  (a) I/O floor (read once)   : ${secs(floor)}  (${gb(bytes / floor)} GB/s; runs ${secs(floor1.seconds)}, ${secs(floor2.seconds)}; CPU ${secs(Math.min(floor1.cpuSeconds, floor2.cpuSeconds))})`);
  console.log(`  (b) spectrum, whole adapter : ${secs(spectrum.seconds)}  (runs ${spectrum.runs.map(secs).join(", ")}; CPU ${secs(spectrum.cpuSeconds)})  peak RSS ${gb(spectrum.peakRssBytes)} GB`);
  console.log(`  (c) truncate --rank 1       : ${secs(truncate.seconds)}  (CPU ${secs(truncate.cpuSeconds)})  peak RSS ${gb(truncate.peakRssBytes)} GB`);
  console.log(`  load average at the end     : ${loadavg().map((x) => x.toFixed(1)).join(" ")} on ${cpus().length} cores (wall times stretch when others run)`);
  if (cold) {
    console.log(`  cold page cache: I/O floor ${secs(cold.floor.seconds)} (${gb(bytes / cold.floor.seconds)} GB/s), spectrum ${secs(cold.spectrum.seconds)} → ${(cold.spectrum.seconds / cold.floor.seconds).toFixed(2)}× (target ≤ ${TARGETS.overFloor}×) ${verdict(cold.spectrum.seconds / cold.floor.seconds <= TARGETS.overFloor)}`);
  }
  console.log(
    `  (d) dense baseline (ml-matrix SVD, values only): ${times.map((t) => `${t.n}² ${secs(t.seconds)}`).join(", ")} (fitted exponent ${exponent.toFixed(2)}); ` +
      `extrapolated n³: one 8192×8192 module ${(denseModule / 3600).toFixed(1)} h, whole adapter ${(denseAdapter / 86400).toFixed(0)} days`,
  );
  if ("skipped" in torch) console.log(`  (e) torch factored method   : skipped (${torch.skipped})`);
  else {
    const agree = Math.abs((spectrum.sumSigma1 as number) / (torch.sumSigma1 as number) - 1);
    console.log(
      `  (e) torch factored method   : ${secs(torch.seconds)}  (torch ${torch.torch}, ${torch.threads} threads; CPU ${secs(torch.cpuSeconds)})  peak RSS ${gb(torch.peakRssBytes)} GB; ` +
        `Σσ₁ agrees to ${agree.toExponential(1)}`,
    );
    console.log(`  spectrum vs torch           : ${(torch.seconds / spectrum.seconds).toFixed(2)}× faster (CPU ${(torch.cpuSeconds / spectrum.cpuSeconds).toFixed(2)}×) (target ≥ ${TARGETS_14.overTorch}×) ${verdict(torch.seconds / spectrum.seconds >= TARGETS_14.overTorch)}`);
  }
  console.log(`  spectrum / I/O floor (hot)  : ${overFloor.toFixed(2)}× (target ≤ ${TARGETS.overFloor}×; issue 14: ≤ ${TARGETS_14.overFloor}×) ${verdict(overFloor <= TARGETS.overFloor)}`);
  console.log(`  truncate / I/O floor        : ${(truncate.seconds / floor).toFixed(2)}×`);
  if (!QUICK) console.log(`  spectrum wall time          : ${secs(spectrum.seconds)} (target < ${TARGETS.seconds} s) ${verdict(spectrum.seconds < TARGETS.seconds)}`);
  const peak = Math.max(spectrum.peakRssBytes, truncate.peakRssBytes);
  console.log(`  peak RSS                    : ${gb(peak)} GB (target < ${gb(TARGETS.peakRssBytes)} GB) ${verdict(peak < TARGETS.peakRssBytes)}`);
  console.log(`  speedup vs dense baseline   : ${speedup.toExponential(2)}× (target ≥ ${TARGETS.speedup}×) ${verdict(speedup >= TARGETS.speedup)}`);
  const checks: Array<[string, boolean]> = [
    [`spectrum ≤ ${TARGETS.overFloor}× I/O floor (hot page cache)`, overFloor <= TARGETS.overFloor],
    ...(QUICK ? [] : [[`spectrum < ${TARGETS.seconds} s`, spectrum.seconds < TARGETS.seconds] as [string, boolean]]),
    [`peak RSS < ${gb(TARGETS.peakRssBytes)} GB`, peak < TARGETS.peakRssBytes],
    [`≥ ${TARGETS.speedup}× the dense baseline`, speedup >= TARGETS.speedup],
    [`spectrum ≤ ${TARGETS_14.overFloor}× I/O floor (issue 14)`, overFloor <= TARGETS_14.overFloor],
    ...("skipped" in torch ? [] : [[`≥ ${TARGETS_14.overTorch}× the torch factored method`, torch.seconds / spectrum.seconds >= TARGETS_14.overTorch] as [string, boolean]]),
  ];
  summariseTargets(checks);
  return res;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf("--phase");
  if (i > 0) await phase(process.argv[i + 1]!);
  else await run();
}
