/**
 * Top-k singular triples of a dense matrix by randomized subspace iteration (Halko, Martinsson
 * & Tropp 2011, Alg. 4.4) with a Rayleigh–Ritz step and a residual-based convergence check.
 * The passes over the matrix (A·V and Qᵀ·A) run in ONNX Runtime; everything of width l = k +
 * oversampling is float64 JavaScript. Used for dense fine-tuning deltas, where ΔW is already in
 * memory but its full SVD (O(mn·min(m,n))) is out of reach.
 */
import { gemm, gram, gram64, matmul, type Mat } from "./kernels";
import { rng } from "./random";
import { symmetricEigen } from "./small-svd";

/**
 * Converged when every top-k residual ‖A·vᵢ − σᵢ·uᵢ‖ ≤ tol·σ₁. The error of each σᵢ is at most
 * the residual and typically residual²/gap, so 1e-4 gives σ to ~1e-4·σ₁ or better; a float32
 * matrix product has noise near 1e-6·σ₁, so much tighter tolerances may never be met.
 */
export const DEFAULT_RESIDUAL_TOL = 1e-4;
/** Each iteration is two passes over A; 40 is far past what separated spectra need (≤ 10). */
export const DEFAULT_MAX_ITERATIONS = 40;
/**
 * Extra sketch columns beyond k: max(8, 3k). σᵢ converges like (σ_{l+1}/σᵢ)^(2q), and a pass over a
 * large ΔW is memory-bound, so a wider block costs little per pass and saves whole iterations
 * (4096×14336 power-law ΔW, k = 8: 7 iterations with l = 16, 4 with l = 32; wider was slower,
 * as the l² work of the small steps grows).
 */
export const DEFAULT_OVERSAMPLE = 8;
const OVERSAMPLE_PER_K = 3;
/** Gram eigenvalues below this fraction of the largest are null directions of the sketch. */
const SKETCH_RANK_RTOL2 = 1e-24;

export interface TopKOptions {
  oversample?: number;
  maxIterations?: number;
  tol?: number;
  seed?: number;
}

export interface TopKResult {
  /** top-k singular values, descending (zeros past the rank of A) */
  sigma: Float64Array;
  /** [m, k] row-major left singular vectors */
  U: Float32Array;
  /** [n, k] row-major right singular vectors */
  V: Float32Array;
  k: number;
  iterations: number;
  converged: boolean;
  /** max over the top k of ‖A·vᵢ − σᵢ·uᵢ‖ / σ₁ at exit */
  residual: number;
  /**
   * The numerical rank of A, when the sketch reveals it: fewer Ritz values above
   * max(m, n)·ε_f32·σ₁ (numpy.linalg.matrix_rank's tolerance for float32) than the sketch
   * has columns means the sketch spans A's whole range. Undefined when A may have more.
   */
  rank?: number;
}

/** float32 machine epsilon, for the numerical-rank tolerance. */
const F32_EPS = 2 ** -23;

/**
 * Orthonormal basis of the columns of Y [rows, c] (float64), by CholeskyQR2 with eigen-based
 * square roots (the second pass restores orthogonality lost to the squared condition number).
 * The tall products (the Gram YᵀY and Y·coef) run in ORT's float64 GEMM: in JavaScript they
 * were a third of the iteration's time.
 */
async function orthonormalise(y: Float64Array, rows: number, c: number): Promise<{ Q: Float64Array; cols: number }> {
  let q = y;
  let cols = c;
  for (let pass = 0; pass < 2; pass++) {
    const G = (await gram({ data: q, rows, cols })).data;
    const { values, vectors } = symmetricEigen(G, cols);
    const lmax = Math.max(values[0] ?? 0, 0);
    let keep = 0;
    while (keep < cols && values[keep]! > lmax * SKETCH_RANK_RTOL2 && values[keep]! > 0) keep++;
    if (keep === 0) return { Q: new Float64Array(0), cols: 0 };
    const coef = new Float64Array(cols * keep);
    for (let j = 0; j < keep; j++) {
      const inv = 1 / Math.sqrt(values[j]!);
      for (let i = 0; i < cols; i++) coef[i * keep + j] = vectors[i * cols + j]! * inv;
    }
    q = (await matmul({ data: q, rows, cols }, { data: coef, rows: cols, cols: keep })).data;
    cols = keep;
  }
  return { Q: q, cols };
}

/** Top-k singular triples of A [m, n] (float32, row-major). */
export async function topKSvd(a: Mat<Float32Array>, k: number, opts: TopKOptions = {}): Promise<TopKResult> {
  const { rows: m, cols: n } = a;
  if (a.data.length !== m * n) throw new Error(`topKSvd: expected ${m}×${n} values, got ${a.data.length}`);
  const kk = Math.min(k, m, n);
  if (!Number.isInteger(k) || k < 1) throw new Error(`topKSvd: k must be a positive integer, got ${k}`);
  const l = Math.min(kk + (opts.oversample ?? Math.max(DEFAULT_OVERSAMPLE, OVERSAMPLE_PER_K * kk)), m, n);
  const tol = opts.tol ?? DEFAULT_RESIDUAL_TOL;
  const maxIter = opts.maxIterations ?? DEFAULT_MAX_ITERATIONS;
  const random = rng(opts.seed ?? 0x5eed);

  const omega = new Float32Array(n * l);
  for (let i = 0; i < omega.length; i++) omega[i] = random.normal();
  // new Float64Array(typed array) converts natively; Float64Array.from walks an iterator
  let Y = new Float64Array((await matmul(a, { data: omega, rows: n, cols: l })).data);
  let yCols = l;

  const sigma = new Float64Array(k);
  let U = new Float32Array(m * k);
  let V = new Float32Array(n * k);
  let residual = Infinity;
  let iterations = 0;
  let converged = false;
  let rank: number | undefined;

  while (iterations < maxIter) {
    iterations++;
    const { Q, cols: c } = await orthonormalise(Y, m, yCols);
    if (c === 0) {
      // A is zero: every singular value is 0 and any orthonormal vectors will do
      sigma.fill(0);
      residual = 0;
      converged = true;
      rank = 0;
      break;
    }
    // Zt = Qᵀ·A  [c, n]  (one pass)
    const Zt = await gemm({ data: new Float32Array(Q), rows: m, cols: c }, a, { transA: true });
    // Rayleigh–Ritz: Zt = W·S·Vᵀ through the c×c Gram Zt·Ztᵀ (ORT, accumulated in float64)
    const G = (await gram64(Zt, "rows")).data;
    const { values, vectors: W } = symmetricEigen(G, c);
    const S = Array.from(values, (v) => Math.sqrt(Math.max(v, 0)));
    const s1 = S[0]!;
    let d = 0;
    while (d < c && S[d]! > s1 * 1e-12) d++;
    // V_ritz = Ztᵀ·W·S⁻¹  [n, d] (ORT);  U_ritz = Q·W  [m, d]
    const WS = new Float32Array(c * d);
    for (let i = 0; i < c; i++) for (let j = 0; j < d; j++) WS[i * d + j] = W[i * c + j]! / S[j]!;
    const Vr = (await gemm(Zt, { data: WS, rows: c, cols: d }, { transA: true })).data;
    const Ur = (await matmul({ data: Q, rows: m, cols: c }, { data: W, rows: c, cols: c })).data;
    // Y = A·V_ritz  (the second pass: both the residual check and the next power step)
    Y = new Float64Array((await matmul(a, { data: Vr, rows: n, cols: d })).data);
    yCols = d;
    residual = 0;
    for (let j = 0; j < Math.min(kk, d); j++) {
      let ss = 0;
      for (let t = 0; t < m; t++) {
        const e = Y[t * d + j]! - S[j]! * Ur[t * c + j]!;
        ss += e * e;
      }
      residual = Math.max(residual, Math.sqrt(ss) / s1);
    }
    sigma.fill(0);
    U = new Float32Array(m * k);
    V = new Float32Array(n * k);
    for (let j = 0; j < Math.min(kk, d); j++) {
      sigma[j] = S[j]!;
      for (let t = 0; t < m; t++) U[t * k + j] = Ur[t * c + j]!;
      for (let t = 0; t < n; t++) V[t * k + j] = Vr[t * d + j]!;
    }
    const rankTol = Math.max(m, n) * F32_EPS * s1;
    const significant = S.filter((x) => x > rankTol).length;
    rank = significant < c ? significant : undefined;
    if (residual <= tol || d < Math.min(kk, c)) {
      // d < k: A has rank d, the Ritz triples are exact
      converged = true;
      break;
    }
  }
  return { sigma, U, V, k, iterations, converged, residual, rank };
}
