/**
 * Full-fine-tune spectrum benchmark: one Llama-3-8B-shaped down_proj pair (4096×14336, F32,
 * 235 MB per side) in two checkpoint folders generated once into .cache/bench/. The fine-tune
 * is the base plus a power-law rank-64 update plus small dense noise (a few strong directions
 * over a full-rank floor; see UPDATE_RANK). Measures, each in a fresh process:
 *   the I/O floor (both files' bytes read once) and `spectrum --base --finetuned` with the
 *   default top-8 (reads both, forms ΔW, exact Frobenius, randomized top-8 with convergence).
 * Target (issue 2): top-8 within 4× of reading both matrices once.
 *
 * Run: `npm run bench -- spectrum-full` (BENCH_QUICK=1: 1024×3584).
 */
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cpus, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { QUICK, bestOfPhase, evict, startPhaseCpu, fillUniform, gb, readFloor, reportPhase, runPhase, secs, summariseTargets, verdict } from "./spectrum-common";

const SCRIPT = fileURLToPath(import.meta.url);
const [ROWS, COLS] = QUICK ? [1024, 3584] : [4096, 14336];
const ROOT = join(".cache", "bench", `fullft-powerlaw-${ROWS}x${COLS}`);
const MODULE = "model.layers.0.mlp.down_proj";
/**
 * ΔW = Σ_{i≤64} (σ₁/i)·uᵢvᵢᵀ + uniform noise: a power-law spectrum (like measured full
 * fine-tunes) over a noise floor well below σ₆₄. A spectrum whose top-8 sits at the dense edge
 * of a noise floor (Marchenko–Pastur) has near-zero gaps and needs far more iterations.
 */
const UPDATE_RANK = 64;
const SIGMA1 = 0.05;
const NOISE = 1e-6;

export const TARGET_OVER_FLOOR = 4;
/** Hot top-8 runs per bench (the fastest counts, like the faster of the two floor runs). */
const MEASURED_RUNS = 3;

async function generate(): Promise<void> {
  const { writeSafetensors } = await import("../src/io/safetensors");
  const base = new Float32Array(ROWS * COLS);
  let seed = fillUniform(base, 0x1234567, 0.02);
  const ft = new Float32Array(ROWS * COLS);
  seed = fillUniform(ft, seed, NOISE);
  for (let i = 0; i < ft.length; i++) ft[i]! += base[i]!;
  // the low-rank part as one ORT product: U·diag(σ) [ROWS, r] times Vᵀ [r, COLS]
  const { matmul } = await import("../src/linalg/kernels");
  const U = new Float32Array(ROWS * UPDATE_RANK);
  const Vt = new Float32Array(UPDATE_RANK * COLS);
  seed = fillUniform(U, seed, 1);
  seed = fillUniform(Vt, seed, 1);
  // uniform(±1) vectors have norm ≈ √(len/3); scale so each term has singular value ≈ σ₁/i
  const norm = Math.sqrt((ROWS * COLS) / 9);
  for (let row = 0; row < ROWS; row++) for (let i = 0; i < UPDATE_RANK; i++) U[row * UPDATE_RANK + i]! *= SIGMA1 / (i + 1) / norm;
  const low = await matmul({ data: U, rows: ROWS, cols: UPDATE_RANK }, { data: Vt, rows: UPDATE_RANK, cols: COLS });
  for (let i = 0; i < ft.length; i++) ft[i]! += low.data[i]!;
  for (const [name, data] of [["base", base], ["ft", ft]] as const) {
    const dir = join(ROOT, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "llama", _name_or_path: `bench/${name}` }));
    await writeSafetensors(join(dir, "model.safetensors"), [{ name: `${MODULE}.weight`, dtype: "F32", shape: [ROWS, COLS], data }]);
  }
}

async function phase(name: string): Promise<void> {
  if (name === "generate") {
    await generate();
    reportPhase({ seconds: 0 });
  } else if (name === "floor") {
    const f = await readFloor([join(ROOT, "base", "model.safetensors"), join(ROOT, "ft", "model.safetensors")]);
    reportPhase({ seconds: f.seconds, bytes: f.bytes });
  } else if (name === "full") {
    const { openCheckpoint } = await import("../src/io/checkpoint");
    const { fullSpectrum } = await import("../src/delta/spectrum");
    const warnings: string[] = [];
    startPhaseCpu();
    const t0 = performance.now();
    const base = await openCheckpoint(join(ROOT, "base"));
    const ft = await openCheckpoint(join(ROOT, "ft"));
    const report = await fullSpectrum(base, ft, { quiet: true, onWarning: (m) => warnings.push(m) });
    await base.close();
    await ft.close();
    const seconds = (performance.now() - t0) / 1000;
    const m = report.modules[0]!;
    reportPhase({ seconds, sigma: m.sigma, stableRank: m.stableRank, warnings });
  } else {
    throw new Error(`unknown phase ${name}`);
  }
}

export async function run(): Promise<{ floorSeconds: number; fullSeconds: number; peakRssBytes: number }> {
  if (!existsSync(join(ROOT, "ft", "model.safetensors"))) {
    console.log(`generating ${ROOT} (once) …`);
    runPhase(SCRIPT, "generate");
  }
  const f1 = runPhase(SCRIPT, "floor");
  const full = bestOfPhase(SCRIPT, "full", MEASURED_RUNS);
  const f2 = runPhase(SCRIPT, "floor");
  const files = [join(ROOT, "base", "model.safetensors"), join(ROOT, "ft", "model.safetensors")];
  const cold = evict(files) ? { floor: runPhase(SCRIPT, "floor"), full: (evict(files), runPhase(SCRIPT, "full")) } : undefined;
  const floor = Math.min(f1.seconds, f2.seconds);
  const bytes = f1.bytes as number;
  const ratio = full.seconds / floor;
  const sigma = full.sigma as number[];
  console.log(`full fine-tune bench (one ${ROWS}×${COLS} F32 pair, ${gb(bytes)} GB both sides)`);
  console.log(`  I/O floor (both read once)  : ${secs(floor)}  (${gb(bytes / floor)} GB/s; runs ${secs(f1.seconds)}, ${secs(f2.seconds)}; CPU ${secs(Math.min(f1.cpuSeconds, f2.cpuSeconds))})`);
  console.log(`  load average at the end     : ${loadavg().map((x) => x.toFixed(1)).join(" ")} on ${cpus().length} cores`);
  console.log(`  spectrum top-8              : ${secs(full.seconds)}  (runs ${full.runs.map(secs).join(", ")}; CPU ${secs(full.cpuSeconds)})  peak RSS ${gb(full.peakRssBytes)} GB; σ₁..σ₃ ${sigma.slice(0, 3).map((s) => s.toPrecision(4)).join(", ")}; stable rank ${(full.stableRank as number).toFixed(2)}`);
  for (const w of full.warnings as string[]) console.log(`  warning: ${w}`);
  console.log(`  top-8 / I/O floor (hot)     : ${ratio.toFixed(2)}× (target ≤ ${TARGET_OVER_FLOOR}×) ${verdict(ratio <= TARGET_OVER_FLOOR)}`);
  if (cold) {
    const r = cold.full.seconds / cold.floor.seconds;
    console.log(`  cold page cache: I/O floor ${secs(cold.floor.seconds)}, top-8 ${secs(cold.full.seconds)} → ${r.toFixed(2)}× (target ≤ ${TARGET_OVER_FLOOR}×) ${verdict(r <= TARGET_OVER_FLOOR)}`);
  }
  summariseTargets([[`top-8 ≤ ${TARGET_OVER_FLOOR}× reading both matrices once (hot page cache)`, ratio <= TARGET_OVER_FLOOR]]);
  return { floorSeconds: floor, fullSeconds: full.seconds, peakRssBytes: full.peakRssBytes };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const i = process.argv.indexOf("--phase");
  if (i > 0) await phase(process.argv[i + 1]!);
  else await run();
}
