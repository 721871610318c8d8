/**
 * Cholesky factorisation G = L·Lᵀ of a small symmetric positive-definite float64 matrix
 * (numpy.linalg.cholesky). Returns undefined instead of throwing when G is not numerically
 * positive definite, so callers can fall back to a rank-revealing method.
 */

/**
 * A pivot below this fraction of the largest diagonal entry means G is singular to working
 * precision (its smallest eigenvalue is at most the smallest pivot).
 */
export const CHOLESKY_MIN_PIVOT_RATIO = 1e-13;

/** Lower-triangular L [n, n] row-major, or undefined when G is not positive definite. */
export function cholesky(G: ArrayLike<number>, n: number): Float64Array | undefined {
  let maxDiag = 0;
  for (let i = 0; i < n; i++) maxDiag = Math.max(maxDiag, G[i * n + i]!);
  if (!(maxDiag > 0)) return undefined;
  const floor = CHOLESKY_MIN_PIVOT_RATIO * maxDiag;
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    let s = G[j * n + j]!;
    for (let k = 0; k < j; k++) s -= L[j * n + k]! * L[j * n + k]!;
    if (!(s > floor)) return undefined;
    const ljj = Math.sqrt(s);
    L[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let t = G[i * n + j]!;
      for (let k = 0; k < j; k++) t -= L[i * n + k]! * L[j * n + k]!;
      L[i * n + j] = t / ljj;
    }
  }
  return L;
}
