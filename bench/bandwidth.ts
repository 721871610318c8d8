/**
 * Memory read bandwidth as the roofline's denominator, shared by engine.bench.ts and
 * precision.bench.ts.
 *
 * ORT's ReduceSum over one flat tensor runs on one thread (24.5 GB/s on this machine, about
 * half of what two cores read), so a roofline computed on it flatters every kernel by ~2×. The
 * probe instead reduces a [rows, n/rows] tensor along its last axis, which ORT splits across its
 * threads by row, for several row counts (the partition that keeps every core streaming
 * differs between machines), and takes the fastest: the highest read rate observed is the
 * honest ceiling a decode step can be compared with.
 */
import { availableParallelism } from "node:os";
import { createSession, ort } from "../src/linalg/ort";
import { OnnxType, int64Tensor } from "../src/linalg/onnx-proto";

export interface BandwidthProbe {
  /** bytes per second, the best over row counts and repeats */
  bytesPerSecond: number;
  /** rows of the best run (1 = single-threaded full reduction) */
  rows: number;
  /** the single-threaded full reduction's rate, for comparison */
  oneThreadBytesPerSecond: number;
}

/** Read `bytes` (≥ 4× any L3) as float32 through ReduceSum with every core. */
export async function measureReadBandwidth(bytes: number, threads = availableParallelism()): Promise<BandwidthProbe> {
  const n = Math.floor(bytes / 4 / 1024) * 1024;
  const data = new Float32Array(n).fill(1);
  const rowCounts = [...new Set([1, threads, 2 * threads, 4 * threads])];
  let best = { bytesPerSecond: 0, rows: 1 };
  let one = 0;
  for (const rows of rowCounts) {
    const shape = rows === 1 ? [n] : [rows, n / rows];
    const session = await createSession(
      {
        opsets: { "": 17 },
        graph: {
          name: "bw",
          nodes: [{ op: "ReduceSum", inputs: ["x", "axis"], outputs: ["y"], attrs: { keepdims: 0 } }],
          initializers: [int64Tensor("axis", [1], [shape.length - 1])],
          inputs: [{ name: "x", type: OnnxType.FLOAT, shape }],
          outputs: [{ name: "y", type: OnnxType.FLOAT }],
        },
      },
      { threads },
    );
    const x = new ort.Tensor("float32", data, shape);
    await session.run({ x });
    let t = Infinity;
    for (let i = 0; i < 5; i++) {
      const t0 = performance.now();
      await session.run({ x });
      t = Math.min(t, performance.now() - t0);
    }
    await session.release();
    const rate = (n * 4) / (t / 1000);
    if (rows === 1) one = rate;
    if (rate > best.bytesPerSecond) best = { bytesPerSecond: rate, rows };
  }
  return { ...best, oneThreadBytesPerSecond: one };
}
