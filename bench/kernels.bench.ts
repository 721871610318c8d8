/**
 * Which operator the int8 engine multiplies with (issue 14): the engine's own linear
 * (graph.ts buildLinearGraph) on Llama-3.1-8B-shaped layers — fused q/k/v [4096→6144], o
 * [4096→4096], fused gate/up [4096→28672], down [14336→4096] — with distinct weights per layer
 * so the pass streams from memory as a real decode step does, at batch 1 and batch 8, for:
 *   - per-channel int8 on MatMulInteger (the engine's int8),
 *   - 8-bit blocks of 128 on MatMulNBits at accuracy level 4 (the int8 it replaced),
 *   - 4-bit blocks of 32 with zero points on MatMulNBits (the engine's int4),
 *   - float32 MatMul (one layer only: 8B at float32 does not fit a runner).
 * Printed per route: bytes streamed per second at batch 1 against the read bandwidth measured
 * in the same run, and batch-8 over batch-1 tokens/s. Rounds alternate between routes so a
 * noisy neighbour hits all of them; medians are taken.
 *
 *   node --expose-gc --import tsx bench/kernels.bench.ts      (or npm run bench -- kernels)
 */
import { fileURLToPath } from "node:url";
import { buildLinearGraph } from "../src/engine/graph";
import { fillerMatrix, quantizedBytes, type QuantScheme } from "../src/engine/quantize";
import { INT4_SCHEME, INT8_SCHEME } from "../src/engine/precision";
import { createSession, ort } from "../src/linalg/ort";
import { measureReadBandwidth } from "./bandwidth";

const QUICK = process.env.BENCH_QUICK === "1";
/** Layers per pass: 4 × ~218 MB at int8, far beyond any L3. */
const LAYERS = QUICK ? 2 : 4;
const ROUNDS = QUICK ? 3 : 7;
const RUNS_PER_ROUND = 3;
const H = QUICK ? 1024 : 4096;
const SHAPES: [number, number][] = QUICK
  ? [[H, 1536], [H, H], [H, 7168], [3584, H]]
  : [[H, 6144], [H, H], [H, 28672], [14336, H]];

interface Route {
  label: string;
  scheme?: QuantScheme;
  layers: number;
}

const ROUTES: Route[] = [
  { label: "int8 per channel, MatMulInteger (engine int8)", scheme: INT8_SCHEME, layers: LAYERS },
  { label: "int8 blocks of 128, MatMulNBits level 4", scheme: { layout: "blocks", bits: 8, blockSize: 128, zeroPoints: false }, layers: LAYERS },
  { label: "int4 blocks of 32 + zero points, MatMulNBits (engine int4)", scheme: INT4_SCHEME, layers: LAYERS },
  { label: "float32 MatMul", layers: 1 },
];

/** The float32 weight, or arbitrary codes in the scheme's layout (speed does not depend on the values). */
const weight = (K: number, N: number, s: QuantScheme | undefined) => (s ? { quant: fillerMatrix(K, N, s), dims: [K, N] } : { data: new Float32Array(K * N).fill(1 / 64), dims: [K, N] });

async function openRoute(r: Route) {
  const sessions: { s: ort.InferenceSession; K: number }[] = [];
  let bytes = 0;
  for (let l = 0; l < r.layers; l++) {
    for (const [K, N] of SHAPES) {
      const g = buildLinearGraph(K, N, weight(K, N, r.scheme));
      sessions.push({ s: await createSession(g.model, { externalData: g.externalData, cpuMemArena: false, spinning: false }), K });
      bytes += r.scheme ? quantizedBytes(K, N, r.scheme) : 4 * K * N;
    }
  }
  const feeds = (m: number) => sessions.map(({ K }) => ({ A: new ort.Tensor("float32", new Float32Array(m * K).map((_, i) => Math.sin(i) * 0.5), [m, K]) }));
  const f1 = feeds(1);
  const f8 = feeds(8);
  const pass = async (f: Record<string, ort.Tensor>[]) => {
    const t0 = performance.now();
    for (let i = 0; i < sessions.length; i++) await sessions[i]!.s.run(f[i]!);
    return (performance.now() - t0) / 1000;
  };
  await pass(f1);
  await pass(f8);
  return {
    bytes,
    time: async (m: 1 | 8) => {
      const t: number[] = [];
      for (let i = 0; i < RUNS_PER_ROUND; i++) t.push(await pass(m === 1 ? f1 : f8));
      return Math.min(...t);
    },
    close: async () => Promise.all(sessions.map(({ s }) => s.release())),
  };
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;

export interface KernelRow {
  label: string;
  batch1Seconds: number;
  batch8Seconds: number;
  /** weight bytes per second at batch 1 */
  batch1BytesPerSecond: number;
  batch8OverBatch1: number;
}

export async function run(): Promise<{ bandwidth: number; rows: KernelRow[] }> {
  const bw = await measureReadBandwidth(QUICK ? 256 * 2 ** 20 : 2 ** 30);
  const opened = [];
  for (const r of ROUTES) opened.push({ r, o: await openRoute(r), t1: [] as number[], t8: [] as number[] });
  for (let round = 0; round < ROUNDS; round++) {
    for (const x of opened) {
      x.t1.push(await x.o.time(1));
      x.t8.push(await x.o.time(8));
    }
  }
  const bwAfter = await measureReadBandwidth(QUICK ? 256 * 2 ** 20 : 2 ** 30);
  const bandwidth = Math.max(bw.bytesPerSecond, bwAfter.bytesPerSecond);
  const rows: KernelRow[] = [];
  for (const x of opened) {
    await x.o.close();
    const t1 = median(x.t1);
    const t8 = median(x.t8);
    rows.push({ label: x.r.label, batch1Seconds: t1, batch8Seconds: t8, batch1BytesPerSecond: x.o.bytes / t1, batch8OverBatch1: (8 * t1) / t8 });
  }
  console.log(`kernels on ${LAYERS} Llama-3.1-8B-shaped layers (${QUICK ? "quick shapes" : "4096/14336"}), median of ${ROUNDS} alternating rounds`);
  console.log(`  read bandwidth (every core, best before/after): ${(bandwidth / 1e9).toFixed(1)} GB/s`);
  for (const r of rows) {
    console.log(
      `  ${r.label.padEnd(60)} batch 1 ${(r.batch1Seconds * 1000).toFixed(1).padStart(7)} ms (${(r.batch1BytesPerSecond / 1e9).toFixed(1)} GB/s = ${(r.batch1BytesPerSecond / bandwidth).toFixed(2)} of bandwidth)  batch 8 ${(r.batch8Seconds * 1000).toFixed(1).padStart(7)} ms  batch 8 / batch 1 tokens/s ${r.batch8OverBatch1.toFixed(2)}×`,
    );
  }
  const [mi, nb] = rows;
  console.log(`  MatMulInteger ÷ MatMulNBits int8 time: batch 1 ${(mi!.batch1Seconds / nb!.batch1Seconds).toFixed(2)}×, batch 8 ${(mi!.batch8Seconds / nb!.batch8Seconds).toFixed(2)}×`);
  return { bandwidth, rows };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run();
