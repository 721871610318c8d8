/** Fixtures for the io tests: hand-built safetensors bytes, temp folders, a seeded PRNG, dense float64 references. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InputError } from "../../src/errors";
import { mulberry32 } from "../../src/linalg/random";

/** mulberry32 (the project's generator): small seeded PRNG so fuzz cases are reproducible. */
export function rng(seed: number): () => number {
  return mulberry32(seed);
}

export function randomFloats(n: number, rand: () => number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

/**
 * A safetensors file built by hand: 8-byte LE length (or `length` when given), the header text
 * as-is, then `buffer`. Independent of the writer under test.
 */
export function rawSafetensors(headerText: string, buffer: Uint8Array = new Uint8Array(0), length?: bigint): Uint8Array {
  const header = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + header.byteLength + buffer.byteLength);
  new DataView(out.buffer).setBigUint64(0, length ?? BigInt(header.byteLength), true);
  out.set(header, 8);
  out.set(buffer, 8 + header.byteLength);
  return out;
}

/** Little-endian float32 bytes of `values` via DataView (not the typed-array path under test). */
export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setFloat32(4 * i, values[i]!, true);
  return out;
}

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "delta-audit-io-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, JSON.stringify(value, null, 2));
}

/** Dense float64 ΔW = scale · B[out,r] · A[r,in], row-major [out, in]. */
export function denseDelta(A: ArrayLike<number>, B: ArrayLike<number>, out: number, r: number, inF: number, scale: number): Float64Array {
  const d = new Float64Array(out * inF);
  for (let i = 0; i < out; i++) {
    for (let k = 0; k < r; k++) {
      const b = B[i * r + k]! * scale;
      for (let j = 0; j < inF; j++) d[i * inF + j]! += b * A[k * inF + j]!;
    }
  }
  return d;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!));
  return m;
}

/** Await `p`, expect an InputError whose one-line message contains every part; return it. */
export async function expectInputError(p: Promise<unknown>, ...parts: (string | RegExp)[]): Promise<InputError> {
  // settle `p` before anything else is awaited, or a fast rejection is briefly unhandled
  const settled = p.then(
    (v) => v,
    (e) => e,
  );
  // imported here, not at the top: benchmarks reuse this module's fixture writers outside vitest
  const { expect } = await import("vitest");
  const err = await settled;
  expect(err).toBeInstanceOf(InputError);
  const msg = (err as Error).message;
  expect(msg).not.toContain("\n");
  for (const part of parts) {
    if (typeof part === "string") expect(msg).toContain(part);
    else expect(msg).toMatch(part);
  }
  return err as InputError;
}
