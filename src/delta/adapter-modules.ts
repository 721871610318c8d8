/**
 * A LoRA adapter's modules streamed in file order, a few at a time: factors read once per
 * module into pooled buffers (factor-reader.ts) and handed to the caller's work, with linalg's
 * non-finite-factor error turned into an InputError naming the module.
 */
import { InputError } from "../errors";
import type { LoraAdapter, LoraModule } from "../io/types";
import { NonFiniteFactorError } from "../linalg/factored-svd";
import { PooledFactorReader } from "./factor-reader";

/**
 * Read a module's factors without io's per-value finiteness scan (a full extra pass over the
 * bytes): the Gram diagonals checked in linalg catch every NaN/Inf instead (see
 * NonFiniteFactorError). io's PeftAdapter.readModule takes the option; other LoraAdapter
 * implementations ignore the extra argument and check as they like.
 */
function readFactors(adapter: LoraAdapter, name: string): Promise<LoraModule> {
  const read = adapter.readModule as (this: LoraAdapter, n: string, o?: { checkFinite?: boolean }) => Promise<LoraModule>;
  return read.call(adapter, name, { checkFinite: false });
}

/** Re-throw a linalg NonFiniteFactorError as the InputError (exit 2) it is, naming the module. */
async function withModuleErrors<T>(adapter: LoraAdapter, name: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (err instanceof NonFiniteFactorError) throw new InputError(`module ${name}: ${err.message}`, adapter.dir);
    throw err;
  }
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
async function* mapOrdered<T, R>(items: readonly T[], concurrency: number, fn: (item: T) => Promise<R>): AsyncGenerator<[T, R]> {
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

