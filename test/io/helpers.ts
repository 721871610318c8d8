/** Fixtures for the io tests: hand-built safetensors bytes, temp folders, a seeded PRNG, dense float64 references. */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** mulberry32: small seeded PRNG so fuzz cases are reproducible. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
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
