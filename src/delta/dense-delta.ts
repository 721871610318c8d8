/**
 * Dense fine-tuning deltas ΔW = W_ft − W_base, streamed in row blocks from two checkpoints: the
 * pairing check, one module's ΔW with its exact Frobenius norm, its randomized top-k SVD, and
 * the change of a tensor that is not a decoder linear.
 */
import { InputError } from "../errors";
import type { Checkpoint, TensorSource } from "../io/types";
import { topKSvd, type TopKResult } from "../linalg/randomized-svd";
import type { OtherChange } from "./types";
import { TensorBlockReader } from "./block-reader";

/** Dense deltas are formed from row blocks of about this size, so peak memory is ΔW plus two blocks. */
const ROW_BLOCK_BYTES = 16 * 1024 * 1024;

/**
 * Iterate `items`, starting the read of item i+1 before item i is processed, so the disk (or
 * page-cache copy) and ONNX Runtime work overlap.
 */
async function* prefetched<T, R>(items: readonly T[], read: (item: T) => Promise<R>): AsyncGenerator<[T, R]> {
  let next: Promise<R> | undefined = items.length > 0 ? read(items[0]!) : undefined;
  try {
    for (let i = 0; i < items.length; i++) {
      const current = next!;
      next = i + 1 < items.length ? read(items[i + 1]!) : undefined;
      // a prefetch that fails while we are still busy must not be an unhandled rejection
      next?.catch(() => undefined);
      yield [items[i]!, await current];
    }
  } finally {
    next = undefined;
  }
}

/** A source that can read a slice of rows (io's SafetensorsFile and checkpoints can). */
type RowSource = TensorSource & { readRows?: (name: string, rowStart: number, rowCount: number) => Promise<Float32Array> };

function rowsPerBlock(shape: number[]): { rows: number; perRow: number } {
  const rows = shape.length === 0 ? 1 : shape[0]!;
  const perRow = shape.slice(1).reduce((a, b) => a * b, 1);
  return { rows, perRow: Math.max(perRow, 1) };
}

/**
 * Stream two same-shaped tensors in row blocks: `visit(baseBlock, ftBlock, firstElement)`.
 * Falls back to whole-tensor reads when a source cannot read rows.
 */
async function forEachBlock(
  base: RowSource,
  ft: RowSource,
  name: string,
  shape: number[],
  visit: (b: Float32Array, f: Float32Array, offset: number) => void,
  blocks?: TensorBlockReader,
): Promise<void> {
  const { rows, perRow } = rowsPerBlock(shape);
  const baseInfo = base.info(name);
  const ftInfo = ft.info(name);
  if (blocks && baseInfo && ftInfo && shape.length > 0) {
    const block = Math.max(1, Math.floor(ROW_BLOCK_BYTES / 4 / perRow));
    const starts: number[] = [];
    for (let s = 0; s < rows; s += block) starts.push(s);
    const readPair = (start: number) => {
      const n = Math.min(block, rows - start);
      return Promise.all([blocks.readRows(baseInfo, start, n), blocks.readRows(ftInfo, start, n)]);
    };
    for await (const [start, [b, f]] of prefetched(starts, readPair)) {
      try {
        visit(b.data, f.data, start * perRow);
      } finally {
        b.release();
        f.release();
      }
    }
    return;
  }
  if (!base.readRows || !ft.readRows || shape.length === 0) {
    const [b, f] = await Promise.all([base.read(name), ft.read(name)]);
    visit(b, f, 0);
    return;
  }
  const block = Math.max(1, Math.floor(ROW_BLOCK_BYTES / 4 / perRow));
  const readPair = (start: number) => {
    const n = Math.min(block, rows - start);
    return Promise.all([base.readRows!(name, start, n), ft.readRows!(name, start, n)]);
  };
  const starts: number[] = [];
  for (let s = 0; s < rows; s += block) starts.push(s);
  for await (const [start, [b, f]] of prefetched(starts, readPair)) visit(b, f, start * perRow);
}

/** Names and shapes of the two checkpoints must agree tensor for tensor. */
export function checkPairing(base: Checkpoint, ft: Checkpoint): string[] {
  const baseNames = new Set(base.names());
  const ftNames = ft.names();
  for (const n of ftNames) {
    if (!baseNames.has(n)) throw new InputError(`has tensor ${JSON.stringify(n)} that the base checkpoint ${base.dir} lacks`, ft.dir);
    const a = base.info(n)!.shape;
    const b = ft.info(n)!.shape;
    if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
      throw new InputError(`tensor ${JSON.stringify(n)} has shape ${JSON.stringify(b)} but the base has ${JSON.stringify(a)}`, ft.dir);
    }
  }
  const ftSet = new Set(ftNames);
  for (const n of baseNames) {
    if (!ftSet.has(n)) throw new InputError(`lacks tensor ${JSON.stringify(n)} of the base checkpoint ${base.dir}`, ft.dir);
  }
  return ftNames;
}

/** One linear module's weight must exist in the base with the fine-tune's shape (a truncation reads nothing else). */
export function checkModulePair(base: Checkpoint, ft: Checkpoint, module: string): void {
  const bInfo = base.info(`${module}.weight`);
  const fInfo = ft.info(`${module}.weight`)!;
  if (!bInfo || bInfo.shape.join("x") !== fInfo.shape.join("x")) {
    throw new InputError(`module ${module}: the base ${base.dir} has ${bInfo ? `shape ${JSON.stringify(bInfo.shape)}` : "no such weight"}, the fine-tune ${JSON.stringify(fInfo.shape)}`, ft.dir);
  }
}

/**
 * out[off + i] = f[i] − b[i] for the whole block; returns Σ (f[i] − b[i])² in float64.
 * A separate function with a local accumulator: summing into a variable captured by the
 * visiting closure makes V8 box every partial sum (~20 ns per element instead of ~1).
 */
function subtractInto(f: Float32Array, b: Float32Array, out: Float32Array, off: number): number {
  let acc = 0;
  const n = b.length;
  for (let i = 0; i < n; i++) {
    const d = f[i]! - b[i]!;
    out[off + i] = d;
    acc += d * d;
  }
  return acc;
}

/** Sums of squares of f − b and of b over a block, in float64 (see subtractInto). */
function changeSums(f: Float32Array, b: Float32Array): { d2: number; b2: number } {
  let d2 = 0;
  let b2 = 0;
  const n = b.length;
  for (let i = 0; i < n; i++) {
    const bi = b[i]!;
    const d = f[i]! - bi;
    d2 += d * d;
    b2 += bi * bi;
  }
  return { d2, b2 };
}

/**
 * ΔW is non-finite when either side holds NaN/Inf (float32 differences cannot overflow a float64
 * square): the error names the base's folder when its block does, else the fine-tune's.
 */
function nonFinite(name: string, base: Checkpoint, ft: Checkpoint, baseBlock: Float32Array): InputError {
  const tensor = JSON.stringify(name);
  if (!baseBlock.every(Number.isFinite)) return new InputError(`tensor ${tensor} holds NaN or Inf weights`, base.dir);
  return new InputError(`tensor ${tensor} differs from the base by a non-finite amount (NaN or Inf weights)`, ft.dir);
}

interface DenseDeltaOptions {
  /** reused block buffers for the reads (the walk keeps one for the whole pass) */
  blocks?: TensorBlockReader;
  /** a buffer to form ΔW in when it is large enough (ΔW is then a view of it) */
  into?: Float32Array;
}

/** The dense ΔW of one linear module and its exact Frobenius norm (float64 accumulation). */
export async function denseDelta(base: Checkpoint, ft: Checkpoint, module: string, opts: DenseDeltaOptions = {}): Promise<{ delta: Float32Array; rows: number; cols: number; frobenius: number }> {
  const name = `${module}.weight`;
  const shape = ft.info(name)?.shape;
  if (!shape || shape.length !== 2) throw new InputError(`has no 2-D tensor ${JSON.stringify(name)}`, ft.dir);
  const [rows, cols] = shape as [number, number];
  const delta = opts.into && opts.into.length >= rows * cols ? opts.into.subarray(0, rows * cols) : new Float32Array(rows * cols);
  let f2 = 0;
  let bad: InputError | undefined;
  await forEachBlock(base as RowSource, ft as RowSource, name, shape, (b, f, off) => {
    f2 += subtractInto(f, b, delta, off);
    if (!bad && !Number.isFinite(f2)) bad = nonFinite(name, base, ft, b);
  }, opts.blocks);
  if (bad) throw bad;
  return { delta, rows, cols, frobenius: Math.sqrt(f2) };
}

/** Top-k of a dense delta, with the all-zero case answered without iterating. */
export async function denseTopK(delta: Float32Array, rows: number, cols: number, frobenius: number, k: number): Promise<TopKResult> {
  if (frobenius === 0) {
    return { sigma: new Float64Array(k), U: new Float32Array(rows * k), V: new Float32Array(cols * k), k, iterations: 0, converged: true, residual: 0, rank: 0 };
  }
  return topKSvd({ data: delta, rows, cols }, k);
}

/** ‖ΔT‖_F and ‖ΔT‖_F/‖T_base‖_F of a non-linear tensor, or undefined when unchanged. */
export async function tensorChange(base: Checkpoint, ft: Checkpoint, name: string, blocks?: TensorBlockReader): Promise<OtherChange | undefined> {
  const shape = ft.info(name)!.shape;
  let d2 = 0;
  let b2 = 0;
  let bad: InputError | undefined;
  await forEachBlock(base as RowSource, ft as RowSource, name, shape, (b, f) => {
    const s = changeSums(f, b);
    d2 += s.d2;
    b2 += s.b2;
    if (!bad && !Number.isFinite(d2)) bad = nonFinite(name, base, ft, b);
  }, blocks);
  if (bad) throw bad;
  if (d2 === 0) return undefined;
  const frobenius = Math.sqrt(d2);
  // a tensor that is zero in the base (a bias initialised to 0) changed by 100% of itself
  const relative = b2 > 0 ? frobenius / Math.sqrt(b2) : 1;
  return { name, shape: [...shape], frobenius, relative };
}
