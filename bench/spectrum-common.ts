/**
 * Helpers shared by the spectrum benches: cached fixture folders, phases run in child processes
 * (so each phase's peak RSS is its own), and the I/O floor.
 */
import { spawnSync } from "node:child_process";
import { open } from "node:fs/promises";

export const QUICK = process.env.BENCH_QUICK === "1";

/** Bytes per positional read of the I/O floor: large enough that syscall cost vanishes. */
const FLOOR_CHUNK_BYTES = 16 * 1024 * 1024;

/** Read every byte of the files once, sequentially (the I/O floor). Returns seconds. */
export async function readFloor(paths: string[]): Promise<{ seconds: number; bytes: number }> {
  const buf = new Uint8Array(FLOOR_CHUNK_BYTES);
  let bytes = 0;
  startPhaseCpu();
  const t0 = performance.now();
  for (const p of paths) {
    const fh = await open(p, "r");
    try {
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.byteLength, null);
        if (bytesRead === 0) break;
        bytes += bytesRead;
      }
    } finally {
      await fh.close();
    }
  }
  return { seconds: (performance.now() - t0) / 1000, bytes };
}

export interface PhaseResult {
  seconds: number;
  peakRssBytes: number;
  cpuSeconds: number;
  [key: string]: unknown;
}

/** Run `script --phase name ...args` in a fresh Node process and parse its last stdout line as JSON. */
export function runPhase(script: string, phase: string, args: string[] = []): PhaseResult {
  const r = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", script, "--phase", phase, ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, DELTA_AUDIT_QUIET: "1" },
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`phase ${phase} failed (exit ${r.status}): ${r.stdout.slice(-2000)}`);
  const last = r.stdout.trim().split("\n").pop() ?? "";
  return JSON.parse(last) as PhaseResult;
}

/**
 * Run a phase `times` times and keep the fastest (its wall and CPU time; the largest peak RSS of
 * all runs), with every run's wall time for the record.
 * The I/O floor is also the faster of two runs, so the measured work gets the same treatment:
 * on a shared machine the fastest run is the one least stretched by other processes.
 */
export function bestOfPhase(script: string, phase: string, times: number): PhaseResult & { runs: number[] } {
  return fastestOf(Array.from({ length: Math.max(1, times) }, () => runPhase(script, phase)));
}

/** The fastest of a phase's runs (its wall and CPU time), with the largest peak RSS of all and every run's wall time. */
export function fastestOf(results: readonly PhaseResult[]): PhaseResult & { runs: number[] } {
  const best = results.reduce((a, b) => (b.seconds < a.seconds ? b : a));
  // memory is not helped by a quiet machine: report the largest peak of all runs
  return { ...best, peakRssBytes: Math.max(...results.map((r) => r.peakRssBytes)), runs: results.map((r) => r.seconds) };
}

/**
 * Print a phase result from inside the child: one JSON line with the peak RSS and the CPU
 * seconds (user + system, all threads) added. On a shared machine wall time depends on what
 * else runs; CPU time shows the work itself (÷ cores for the wall time it would take alone).
 */
export function reportPhase(result: Record<string, unknown>): void {
  const peakRssBytes = process.resourceUsage().maxRSS * 1024;
  const u = process.cpuUsage(phaseCpuStart);
  process.stdout.write(`${JSON.stringify({ ...result, peakRssBytes, cpuSeconds: (u.user + u.system) / 1e6 })}\n`);
}

let phaseCpuStart: NodeJS.CpuUsage | undefined;
/** Start the CPU clock of a phase (after its imports, like its wall clock). */
export function startPhaseCpu(): void {
  phaseCpuStart = process.cpuUsage();
}

export const gb = (b: number) => (b / 1e9).toFixed(2);
export const secs = (s: number) => `${s.toFixed(2)} s`;
export const verdict = (ok: boolean) => (ok ? "ok" : "MISSES TARGET");

/**
 * One plain closing line per bench: which issue targets this run met and which it missed
 * (wall-time ratios on a shared machine depend on its load: the load average is printed above).
 */
export function summariseTargets(checks: ReadonlyArray<readonly [string, boolean]>): void {
  const met = checks.filter(([, ok]) => ok).map(([what]) => what);
  const missed = checks.filter(([, ok]) => !ok).map(([what]) => what);
  console.log(`  targets met (${met.length}/${checks.length}): ${met.join("; ") || "none"}`);
  if (missed.length > 0) console.log(`  targets MISSED (${missed.length}/${checks.length}): ${missed.join("; ")}`);
}

/** A fast uniform generator in [-1, 1) for bulk fixture data (xorshift32; quality is not the point). */
export function fillUniform(out: Float32Array, seed: number, scale: number): number {
  let s = seed >>> 0 || 1;
  const k = scale / 2147483648;
  for (let i = 0; i < out.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s | 0) * k;
  }
  return s;
}

/**
 * Write a random PEFT adapter over `shapes`, streamed module by module, with PEFT-like
 * magnitudes: A ~ U(±1/√in) (Kaiming), B small after training; `seed` starts fillUniform's stream.
 */
export async function writeRandomAdapter(
  dir: string,
  shapes: ReadonlyArray<{ name: string; out: number; inf: number }>,
  opts: { rank: number; alpha: number; seed: number; baseModel: string },
): Promise<void> {
  const { writeAdapter } = await import("../src/io/peft");
  const { rank: r, alpha } = opts;
  const scale = alpha / r;
  const layout = shapes.map((s) => ({ name: s.name, rank: r, scale, outFeatures: s.out, inFeatures: s.inf }));
  let seed = opts.seed;
  async function* modules() {
    for (const s of shapes) {
      const A = new Float32Array(r * s.inf);
      const B = new Float32Array(s.out * r);
      seed = fillUniform(A, seed, 1 / Math.sqrt(s.inf));
      seed = fillUniform(B, seed, 0.01);
      yield { name: s.name, rank: r, scale, outFeatures: s.out, inFeatures: s.inf, A, B };
    }
  }
  await writeAdapter(dir, { r, lora_alpha: alpha, base_model_name_or_path: opts.baseModel, task_type: "CAUSAL_LM" }, modules(), { layout });
}

/**
 * Drop the files' pages from the OS page cache (GNU dd `iflag=nocache` = posix_fadvise
 * DONTNEED on just these files), so a following read comes from the disk. Returns false where
 * that is not possible; the cold measurements are then skipped.
 */
export function evict(paths: string[]): boolean {
  for (const p of paths) {
    const r = spawnSync("dd", [`if=${p}`, "iflag=nocache", "count=0"], { stdio: "ignore" });
    if (r.status !== 0) return false;
  }
  return true;
}
