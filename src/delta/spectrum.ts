/**
 * Spectra of fine-tuning updates, streamed module by module:
 * - adapterSpectrum: LoRA ΔW = s·B·A from its factors (never materialised), all r values;
 * - fullSpectrum: dense ΔW = W_ft − W_base of every decoder linear, exact Frobenius norm and
 *   top-k singular values by randomized subspace iteration, plus the other changed tensors.
 */
import { InputError } from "../errors";
import { linearModuleNames, moduleType } from "../io/checkpoint";
import type { Checkpoint, LoraAdapter, LoraModule, TensorSource } from "../io/types";
import { progress } from "../progress";
import type { GramPrecision } from "../linalg/factor-basis";
import { factoredSingularValues, NonFiniteFactorError } from "../linalg/factored-svd";
import { topKSvd, type TopKResult } from "../linalg/randomized-svd";
import type { ModuleSpectrum, OtherChange, SpectrumReport } from "./types";
import { TensorBlockReader } from "./block-reader";
import { PooledFactorReader } from "./factor-reader";
import { moduleSpectrum, summarise } from "./stats";

export { summarise } from "./stats";

/** Singular values computed per dense module by default (the k = 8). */
export const DEFAULT_TOP_K = 8;
/** Dense deltas are formed from row blocks of about this size, so peak memory is ΔW plus two blocks. */
const ROW_BLOCK_BYTES = 16 * 1024 * 1024;

/** Called after each module (or tensor) with the count done, the total and what was just done. */
export type ProgressFn = (done: number, total: number, name: string) => void;

export interface AdapterSpectrumOptions {
  onProgress?: ProgressFn;
  /** no default progress bar (when onProgress is absent) */
  quiet?: boolean;
  precision?: GramPrecision;
}

export interface FullSpectrumOptions {
  topK?: number;
  onProgress?: ProgressFn;
  quiet?: boolean;
  /** called when a module's top-k iteration stops without meeting its tolerance */
  onWarning?: (message: string) => void;
}

function defaultProgress(label: string, total: number, quiet?: boolean): { fn: ProgressFn; done: () => void } {
  const bar = progress(label, total, { quiet });
  return { fn: (_d, _t, name) => bar.tick(1, name), done: () => bar.done() };
}

/**
 * Iterate `items`, starting the read of item i+1 before item i is processed, so the disk (or
 * page-cache copy) and ONNX Runtime work overlap.
 */
export async function* prefetched<T, R>(items: readonly T[], read: (item: T) => Promise<R>): AsyncGenerator<[T, R]> {
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

/**
 * Read a module's factors without io's per-value finiteness scan (a full extra pass over the
 * bytes): the Gram diagonals checked in linalg catch every NaN/Inf instead (see
 * NonFiniteFactorError). io's PeftAdapter.readModule takes the option; other LoraAdapter
 * implementations ignore the extra argument and check as they like.
 */
export function readFactors(adapter: LoraAdapter, name: string): Promise<LoraModule> {
  const read = adapter.readModule as (this: LoraAdapter, n: string, o?: { checkFinite?: boolean }) => Promise<LoraModule>;
  return read.call(adapter, name, { checkFinite: false });
}

/** Re-throw a linalg NonFiniteFactorError as the InputError (exit 2) it is, naming the module. */
export async function withModuleErrors<T>(adapter: LoraAdapter, name: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof NonFiniteFactorError) throw new InputError(`module ${name}: ${err.message}`, adapter.dir);
    throw err;
  }
}

/** The ModuleSpectrum of one LoRA module (exact: all r singular values). */
export async function loraModuleSpectrum(m: LoraModule, precision?: GramPrecision): Promise<ModuleSpectrum> {
  const { sigma } = await factoredSingularValues(m, { precision });
  let f2 = 0;
  for (const s of sigma) f2 += s * s;
  const { type, layer } = moduleType(m.name);
  return moduleSpectrum({
    name: m.name,
    shape: [m.outFeatures, m.inFeatures],
    rank: m.rank,
    sigma,
    frobenius: Math.sqrt(f2),
    totalValues: Math.min(m.outFeatures, m.inFeatures),
    type,
    layer,
  });
}

/**
 * Modules in flight at once. Each module's work is a read (libuv thread), Grams (ORT's threads)
 * and r×r float64 work (the JS thread); with three in flight the three stages of neighbouring
 * modules overlap, at a cost of three modules' factors in memory (≈ 60 MB at 70B shapes).
 */
export const MODULES_IN_FLIGHT = 3;

/**
 * Map `fn` over `items` with up to `concurrency` calls running, yielding results in input
 * order (so streaming writers and progress see the modules in file order).
 */
export async function* mapOrdered<T, R>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<R>): AsyncGenerator<[T, R]> {
  const running: Promise<R>[] = [];
  let next = 0;
  const launch = () => {
    const p = fn(items[next++]!);
    // a later item failing while an earlier one is awaited must not be an unhandled rejection
    p.catch(() => undefined);
    running.push(p);
  };
  while (next < items.length && running.length < concurrency) launch();
  for (let i = 0; i < items.length; i++) {
    const result = await running.shift()!;
    if (next < items.length) launch();
    yield [items[i]!, result];
  }
}

/**
 * `work` applied to every module's factors in file order, MODULES_IN_FLIGHT at a time. Factors
 * come through the pooled reader (factor-reader.ts: one read per module into reused buffers)
 * when it can locate them, else through readModule; either way a NaN/Inf is left to linalg's
 * Gram check (see readFactors). `work` must not keep the factors past its promise: their
 * buffer is reused for a later module.
 */
export async function* mapAdapterModules<R>(adapter: LoraAdapter, work: (m: LoraModule) => Promise<R>): AsyncGenerator<[string, R]> {
  const names = adapter.moduleNames();
  const reader = await PooledFactorReader.open(adapter, MODULES_IN_FLIGHT);
  const one = reader
    ? (n: string) =>
        withModuleErrors(adapter, n, async () => {
          const held = await reader.read(n);
          try {
            return await work(held.module);
          } finally {
            held.release();
          }
        })
    : (n: string) => withModuleErrors(adapter, n, async () => work(await readFactors(adapter, n)));
  try {
    yield* mapOrdered(names, MODULES_IN_FLIGHT, one);
  } finally {
    await reader?.close();
  }
}

/** Spectrum of every module of a LoRA adapter, streamed: a few modules in memory at a time. */
export async function adapterSpectrum(adapter: LoraAdapter, opts: AdapterSpectrumOptions = {}): Promise<SpectrumReport> {
  const names = adapter.moduleNames();
  const bar = opts.onProgress ? undefined : defaultProgress("spectrum", names.length, opts.quiet);
  const report = opts.onProgress ?? bar!.fn;
  const modules: ModuleSpectrum[] = [];
  for await (const [name, spectrum] of mapAdapterModules(adapter, (m) => loraModuleSpectrum(m, opts.precision))) {
    modules.push(spectrum);
    report(modules.length, names.length, name);
  }
  bar?.done();
  return { modules, summary: summarise(modules) };
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
function checkPairing(base: Checkpoint, ft: Checkpoint): string[] {
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

export interface DenseDeltaOptions {
  /** reused block buffers for the reads (fullSpectrum keeps one for the whole pass) */
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
  await forEachBlock(base as RowSource, ft as RowSource, name, shape, (b, f, off) => {
    f2 += subtractInto(f, b, delta, off);
  }, opts.blocks);
  if (!Number.isFinite(f2)) throw new InputError(`tensor ${JSON.stringify(name)} differs from the base by a non-finite amount (NaN or Inf weights)`, ft.dir);
  return { delta, rows, cols, frobenius: Math.sqrt(f2) };
}

/** Top-k of a dense delta, with the all-zero case answered without iterating. */
export async function denseTopK(delta: Float32Array, rows: number, cols: number, frobenius: number, k: number): Promise<TopKResult> {
  if (frobenius === 0) {
    return { sigma: new Float64Array(k), U: new Float32Array(rows * k), V: new Float32Array(cols * k), k, iterations: 0, converged: true, residual: 0, rank: 0 };
  }
  return topKSvd({ data: delta, rows, cols }, k);
}

/** Spectrum of a full fine-tune against its base, streaming tensor pairs. */
export async function fullSpectrum(base: Checkpoint, finetuned: Checkpoint, opts: FullSpectrumOptions = {}): Promise<SpectrumReport> {
  const k = opts.topK ?? DEFAULT_TOP_K;
  if (!Number.isInteger(k) || k < 1) throw new InputError(`expected a positive integer, got ${k}`, "--top-k");
  const all = checkPairing(base, finetuned);
  const linear = new Set(linearModuleNames(finetuned).map((m) => `${m}.weight`));
  if (linear.size === 0) throw new InputError("has no linear modules under model.layers.N (is it a decoder checkpoint?)", finetuned.dir);
  const bar = opts.onProgress ? undefined : defaultProgress("spectrum", all.length, opts.quiet);
  const report = opts.onProgress ?? bar!.fn;
  const modules: ModuleSpectrum[] = [];
  const otherChanges: OtherChange[] = [];
  let done = 0;
  // two tensors × (the block being visited + the one being prefetched)
  const blocks = TensorBlockReader.open([base, finetuned], 4);
  // ΔW is formed in one buffer reused by every module (topKSvd keeps nothing of it)
  let deltaBuffer: Float32Array | undefined;
  try {
    for (const name of all) {
      if (linear.has(name)) {
        const module = name.slice(0, -".weight".length);
        const { delta, rows, cols, frobenius } = await denseDelta(base, finetuned, module, { blocks, into: deltaBuffer });
        if (!deltaBuffer || delta.buffer !== deltaBuffer.buffer) deltaBuffer = delta;
        const kk = Math.min(k, rows, cols);
        const top = await denseTopK(delta, rows, cols, frobenius, kk);
        if (!top.converged) {
          const msg = `${module}: top-${kk} iteration stopped after ${top.iterations} iterations with residual ${top.residual.toExponential(1)}·σ₁`;
          (opts.onWarning ?? ((m: string) => process.stderr.write(`warning: ${m}\n`)))(msg);
        }
        const { type, layer } = moduleType(module);
        // the numerical rank when the sketch revealed it (a low-rank ΔW), else full
        const rank = top.rank ?? Math.min(rows, cols);
        modules.push(
          moduleSpectrum({ name: module, shape: [rows, cols], rank, sigma: top.sigma, frobenius, totalValues: Math.min(rows, cols), type, layer }),
        );
      } else {
        const change = await tensorChange(base, finetuned, name, blocks);
        if (change) otherChanges.push(change);
      }
      report(++done, all.length, name);
    }
  } finally {
    await blocks?.close();
  }
  bar?.done();
  return { modules, summary: summarise(modules), otherChanges };
}

/** ‖ΔT‖_F and ‖ΔT‖_F/‖T_base‖_F of a non-linear tensor, or undefined when unchanged. */
async function tensorChange(base: Checkpoint, ft: Checkpoint, name: string, blocks?: TensorBlockReader): Promise<OtherChange | undefined> {
  const shape = ft.info(name)!.shape;
  let d2 = 0;
  let b2 = 0;
  await forEachBlock(base as RowSource, ft as RowSource, name, shape, (b, f) => {
    const s = changeSums(f, b);
    d2 += s.d2;
    b2 += s.b2;
  }, blocks);
  if (!Number.isFinite(d2)) throw new InputError(`tensor ${JSON.stringify(name)} differs from the base by a non-finite amount (NaN or Inf weights)`, ft.dir);
  if (d2 === 0) return undefined;
  const frobenius = Math.sqrt(d2);
  // a tensor that is zero in the base (a bias initialised to 0) changed by 100% of itself
  const relative = b2 > 0 ? frobenius / Math.sqrt(b2) : 1;
  return { name, shape: [...shape], frobenius, relative };
}
