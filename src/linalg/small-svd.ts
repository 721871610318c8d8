/**
 * Small dense decompositions in float64 through ml-matrix: the r×r cores of factored SVDs and
 * the l×l Gram matrices of randomized iterations. Inputs and outputs are row-major
 * Float64Arrays so callers never handle ml-matrix objects.
 */
import { EigenvalueDecomposition, Matrix, SingularValueDecomposition } from "ml-matrix";

/** A thin SVD M = U·diag(s)·Vᵀ with s descending. */
export interface SmallSvd {
  /** [rows, p] row-major, p = min(rows, cols) */
  U: Float64Array;
  s: Float64Array;
  /** [cols, p] row-major */
  V: Float64Array;
  rows: number;
  cols: number;
  p: number;
}

function toMatrix(data: ArrayLike<number>, rows: number, cols: number): Matrix {
  const m = new Matrix(rows, cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) m.set(i, j, data[i * cols + j]!);
  return m;
}

function fromMatrix(m: Matrix, cols = m.columns): Float64Array {
  const out = new Float64Array(m.rows * cols);
  for (let i = 0; i < m.rows; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = m.get(i, j);
  return out;
}

/** Thin SVD of a small dense matrix (numpy.linalg.svd(full_matrices=False)). */
export function smallSvd(data: ArrayLike<number>, rows: number, cols: number): SmallSvd {
  if (data.length !== rows * cols) throw new Error(`smallSvd: expected ${rows * cols} values, got ${data.length}`);
  const p = Math.min(rows, cols);
  if (p === 0) return { U: new Float64Array(0), s: new Float64Array(0), V: new Float64Array(0), rows, cols, p };
  const svd = new SingularValueDecomposition(toMatrix(data, rows, cols), {
    computeLeftSingularVectors: true,
    computeRightSingularVectors: true,
    autoTranspose: true,
  });
  const s = Float64Array.from(svd.diagonal.slice(0, p));
  return { U: fromMatrix(svd.leftSingularVectors, p), s, V: fromMatrix(svd.rightSingularVectors, p), rows, cols, p };
}

/** Eigen-decomposition of a symmetric matrix, eigenvalues descending (numpy.linalg.eigh, reversed). */
export interface SymmetricEigen {
  values: Float64Array;
  /** [n, n] row-major; column j is the eigenvector of values[j] */
  vectors: Float64Array;
  n: number;
}

export function symmetricEigen(data: ArrayLike<number>, n: number): SymmetricEigen {
  if (data.length !== n * n) throw new Error(`symmetricEigen: expected ${n * n} values, got ${data.length}`);
  if (n === 0) return { values: new Float64Array(0), vectors: new Float64Array(0), n };
  // symmetrise: a Gram from a GEMM can differ from its transpose in the last bit
  const m = new Matrix(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m.set(i, j, 0.5 * (data[i * n + j]! + data[j * n + i]!));
  const evd = new EigenvalueDecomposition(m, { assumeSymmetric: true });
  const vals = evd.realEigenvalues;
  const vecs = evd.eigenvectorMatrix;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => vals[b]! - vals[a]!);
  const values = new Float64Array(n);
  const vectors = new Float64Array(n * n);
  order.forEach((src, dst) => {
    values[dst] = vals[src]!;
    for (let i = 0; i < n; i++) vectors[i * n + dst] = vecs.get(i, src);
  });
  return { values, vectors, n };
}
