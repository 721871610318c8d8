/**
 * Independent float64 references for the linalg and delta tests: dense products in plain
 * loops and ml-matrix's dense SVD of the explicitly formed ΔW (which the code under test never
 * forms).
 */
import { Matrix, SingularValueDecomposition } from "ml-matrix";

/** Deterministic generator for fixtures (a different algorithm from src/linalg/random.ts). */
export function lcg(seed: number): () => number {
  let s = BigInt(seed) & 0xffffffffffffn;
  return () => {
    s = (s * 0x5deece66dn + 0xbn) & 0xffffffffffffn;
    return Number(s >> 16n) / 2 ** 32 - 0.5;
  };
}

export function randomF32(n: number, next: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = next() * scale;
  return a;
}

/** Dense ΔW = scale·B·A in float64, [out, in]. */
export function denseDelta(B: ArrayLike<number>, A: ArrayLike<number>, out: number, r: number, inf: number, scale: number): Float64Array {
  const d = new Float64Array(out * inf);
  for (let o = 0; o < out; o++)
    for (let t = 0; t < r; t++) {
      const b = B[o * r + t]! * scale;
      for (let i = 0; i < inf; i++) d[o * inf + i]! += b * A[t * inf + i]!;
    }
  return d;
}

export interface RefSvd {
  s: number[];
  U: Matrix;
  V: Matrix;
}

export function referenceSvd(data: ArrayLike<number>, rows: number, cols: number): RefSvd {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, data[i * cols + j]!);
  const svd = new SingularValueDecomposition(m, { autoTranspose: true });
  return { s: svd.diagonal, U: svd.leftSingularVectors, V: svd.rightSingularVectors };
}

/** Best rank-k approximation from the reference SVD, dense [rows, cols]. */
export function bestRankK(ref: RefSvd, k: number, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let j = 0; j < k; j++) {
    const s = ref.s[j]!;
    for (let i = 0; i < rows; i++) {
      const u = ref.U.get(i, j) * s;
      for (let c = 0; c < cols; c++) out[i * cols + c]! += u * ref.V.get(c, j);
    }
  }
  return out;
}

export function frob(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s);
}

export function diffFrob(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += (a[i]! - b[i]!) ** 2;
  return Math.sqrt(s);
}

/** Dense product U [rows, k] · Vt [k, cols]. */
export function product(U: ArrayLike<number>, Vt: ArrayLike<number>, rows: number, k: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++)
    for (let t = 0; t < k; t++) {
      const u = U[i * k + t]!;
      for (let c = 0; c < cols; c++) out[i * cols + c]! += u * Vt[t * cols + c]!;
    }
  return out;
}

/** max |XᵀX − I| for X [rows, k] (columns) */
export function orthoError(X: ArrayLike<number>, rows: number, k: number): number {
  let worst = 0;
  for (let a = 0; a < k; a++)
    for (let b = 0; b < k; b++) {
      let s = 0;
      for (let i = 0; i < rows; i++) s += X[i * k + a]! * X[i * k + b]!;
      worst = Math.max(worst, Math.abs(s - (a === b ? 1 : 0)));
    }
  return worst;
}

/** Transpose a row-major [rows, cols] array. */
export function transpose(X: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) out[j * rows + i] = X[i * cols + j]!;
  return out;
}
