/**
 * SVD of a factored update ΔW = s·B·A (B [out, r], A [r, in]) without forming ΔW:
 * B = Q_B·R_B and Aᵀ = Q_A·R_A (factor-basis.ts), so ΔW = Q_B·(s·R_B·R_Aᵀ)·Q_Aᵀ and the
 * singular values are those of the small core s·R_B·R_Aᵀ, decomposed in float64 by ml-matrix.
 * Singular vectors are never formed unless asked for, and then only the top k, as
 * U = B·leftCoef and V = Aᵀ·rightCoef (tall products in ORT, or JavaScript in the sync path).
 */
import { congruence, gram64, loraGrams, matmul } from "./kernels";
import { factorBasis, factorBasisSync, type FactorBasis, type GramPrecision } from "./factor-basis";
import { smallSvd, symmetricEigen } from "./small-svd";
import { cholesky } from "./cholesky";
import { symmetricEigenvalues } from "./symmetric-eigenvalues";
import type { LoraModule } from "../io/types";

/** Core singular values below this fraction of |s|·‖B‖₂·‖A‖₂ are zero (float64 rounding). */
export const CORE_RANK_RTOL = 1e-12;

/** The factors of ΔW = scale·B·A (A [rank, in], B [out, rank], row-major): a LoraModule without its name. */
export type Factors = Omit<LoraModule, "name">;

export interface FactoredSvd {
  /** all r singular values of ΔW, descending; zeros past the numerical rank */
  sigma: Float64Array;
  /** numerical rank of ΔW (≤ r): how many singular triples leftCoef/rightCoef hold */
  p: number;
  r: number;
  /** [r, p] row-major: U = B·leftCoef */
  leftCoef: Float64Array;
  /** [r, p] row-major: V = Aᵀ·rightCoef */
  rightCoef: Float64Array;
  /** the Gram precision each factor needed (factor-basis.ts) */
  precision: { B: "float32" | "float64"; A: "float32" | "float64" };
}

export interface FactoredSvdOptions {
  precision?: GramPrecision;
}

function checkFactors(f: Factors): void {
  const { rank: r, outFeatures: out, inFeatures: inf } = f;
  if (f.B.length !== out * r) throw new Error(`factored SVD: B has ${f.B.length} values, expected ${out}×${r}`);
  if (f.A.length !== r * inf) throw new Error(`factored SVD: A has ${f.A.length} values, expected ${r}×${inf}`);
}

/** Core SVD from the two bases: everything here is r×r float64 work. */
function coreSvd(f: Factors, bB: FactorBasis, bA: FactorBasis): FactoredSvd {
  const r = f.rank;
  const kB = bB.rank;
  const kA = bA.rank;
  const sigma = new Float64Array(r);
  const precision = { B: bB.precision, A: bA.precision };
  if (kB === 0 || kA === 0 || f.scale === 0) {
    return { sigma, p: 0, r, leftCoef: new Float64Array(0), rightCoef: new Float64Array(0), precision };
  }
  // M = s·R_B·R_Aᵀ  [kB, kA]
  const M = new Float64Array(kB * kA);
  for (let i = 0; i < kB; i++) {
    for (let j = 0; j < kA; j++) {
      let acc = 0;
      for (let t = 0; t < r; t++) acc += bB.R[i * r + t]! * bA.R[j * r + t]!;
      M[i * kA + j] = f.scale * acc;
    }
  }
  const svd = smallSvd(M, kB, kA);
  // The core is float64 from exact-rank factors, so a singular value this far below
  // |s|·‖B‖·‖A‖ is rounding of an exact zero (e.g. a factor column paired with a zero row).
  const floor = CORE_RANK_RTOL * Math.abs(f.scale) * bB.sigma[0]! * bA.sigma[0]!;
  let p = 0;
  while (p < svd.p && svd.s[p]! > floor) p++;
  // Fix each triple's sign (ΔW is unchanged by flipping u and v together) so results are
  // reproducible: the largest-magnitude entry of each core left vector is positive.
  const sp = svd.p;
  for (let j = 0; j < p; j++) {
    let best = 0;
    for (let i = 0; i < kB; i++) if (Math.abs(svd.U[i * sp + j]!) > Math.abs(best)) best = svd.U[i * sp + j]!;
    if (best < 0) {
      for (let i = 0; i < kB; i++) svd.U[i * sp + j] = -svd.U[i * sp + j]!;
      for (let i = 0; i < kA; i++) svd.V[i * sp + j] = -svd.V[i * sp + j]!;
    }
  }
  for (let j = 0; j < p; j++) sigma[j] = svd.s[j]!;
  const leftCoef = new Float64Array(r * p);
  const rightCoef = new Float64Array(r * p);
  for (let i = 0; i < r; i++) {
    for (let j = 0; j < p; j++) {
      let l = 0;
      for (let t = 0; t < kB; t++) l += bB.coef[i * kB + t]! * svd.U[t * sp + j]!;
      leftCoef[i * p + j] = l;
      let rr = 0;
      for (let t = 0; t < kA; t++) rr += bA.coef[i * kA + t]! * svd.V[t * sp + j]!;
      rightCoef[i * p + j] = rr;
    }
  }
  return { sigma, p, r, leftCoef, rightCoef, precision };
}

/** Singular values (and the coefficients of the vectors) of scale·B·A, Grams in ORT. */
export async function factoredSvd(f: Factors, opts: FactoredSvdOptions = {}): Promise<FactoredSvd> {
  checkFactors(f);
  const bB = await factorBasis({ data: f.B, rows: f.outFeatures, cols: f.rank }, "tall", opts.precision);
  const bA = await factorBasis({ data: f.A, rows: f.rank, cols: f.inFeatures }, "wide", opts.precision);
  return coreSvd(f, bB, bA);
}

/** The same in plain JavaScript float64, for synchronous callers and small modules. */
export function factoredSvdSync(f: Factors): FactoredSvd {
  checkFactors(f);
  const bB = factorBasisSync({ data: f.B, rows: f.outFeatures, cols: f.rank }, "tall");
  const bA = factorBasisSync({ data: f.A, rows: f.rank, cols: f.inFeatures }, "wide");
  return coreSvd(f, bB, bA);
}

/** How the singular values are folded into the returned vectors. */
export type SigmaSplit = "none" | "sqrt";

/** Top-k vectors: U [out, k] and Vᵀ [k, in], optionally with √σ folded into each side. */
export interface TopVectors {
  k: number;
  U: Float32Array;
  Vt: Float32Array;
}

/** The r×k coefficient blocks (float32, ready for the tall products), with weights folded in. */
function coefBlocks(svd: FactoredSvd, k: number, split: SigmaSplit): { left: Float32Array; rightT: Float32Array } {
  const { r, p } = svd;
  const left = new Float32Array(r * k);
  const rightT = new Float32Array(k * r);
  for (let j = 0; j < Math.min(k, p); j++) {
    const w = split === "sqrt" ? Math.sqrt(svd.sigma[j]!) : 1;
    for (let i = 0; i < r; i++) {
      left[i * k + j] = svd.leftCoef[i * p + j]! * w;
      rightT[j * r + i] = svd.rightCoef[i * p + j]! * w;
    }
  }
  return { left, rightT };
}

function checkK(k: number, r: number): void {
  if (!Number.isInteger(k) || k < 1) throw new Error(`singular vectors: k must be a positive integer, got ${k}`);
  if (k > r) throw new Error(`singular vectors: k = ${k} exceeds the factor rank ${r}`);
}

/**
 * U = B·leftCoef and Vᵀ = rightCoefᵀ·A for the top k triples (ORT). Triples past the
 * numerical rank come back as zero columns. With split "sqrt", U·Vᵀ is the best rank-k
 * approximation of ΔW (Eckart–Young), with √σ on each side.
 */
export async function topVectors(f: Factors, svd: FactoredSvd, k: number, split: SigmaSplit = "none"): Promise<TopVectors> {
  checkK(k, f.rank);
  const { left, rightT } = coefBlocks(svd, k, split);
  const U = await matmul({ data: f.B, rows: f.outFeatures, cols: f.rank }, { data: left, rows: f.rank, cols: k });
  const Vt = await matmul({ data: rightT, rows: k, cols: f.rank }, { data: f.A, rows: f.rank, cols: f.inFeatures });
  return { k, U: U.data, Vt: Vt.data };
}

/** topVectors in plain JavaScript (float64 accumulation). */
export function topVectorsSync(f: Factors, svd: FactoredSvd, k: number, split: SigmaSplit = "none"): TopVectors {
  checkK(k, f.rank);
  const { left, rightT } = coefBlocks(svd, k, split);
  const r = f.rank;
  const U = new Float32Array(f.outFeatures * k);
  for (let o = 0; o < f.outFeatures; o++) {
    for (let j = 0; j < k; j++) {
      let acc = 0;
      for (let t = 0; t < r; t++) acc += f.B[o * r + t]! * left[t * k + j]!;
      U[o * k + j] = acc;
    }
  }
  const Vt = new Float32Array(k * f.inFeatures);
  const acc = new Float64Array(f.inFeatures);
  for (let j = 0; j < k; j++) {
    acc.fill(0);
    for (let t = 0; t < r; t++) {
      const c = rightT[j * r + t]!;
      if (c === 0) continue;
      const off = t * f.inFeatures;
      for (let c2 = 0; c2 < f.inFeatures; c2++) acc[c2]! += c * f.A[off + c2]!;
    }
    Vt.set(acc, j * f.inFeatures);
  }
  return { k, U, Vt };
}

// ---------------------------------------------------------------------------------------------
// singular values only: the fast path for spectra

/**
 * Relative error of a float32 Gram of n-long columns, as a multiple of ε_f32·√n: MLAS
 * accumulates in blocks, so errors grow like a random walk; measured ≈ 0.065·ε_f32·√n on
 * 70B-shaped factors (6e-7 at n = 28672), this allows four times that.
 */
const F32_GRAM_ERROR_PER_SQRT_N = 0.25 * 2 ** -23;
/** Gram accumulated in float64 from float32 data: rounding at ~n·ε_f64 at worst. */
const F64_GRAM_ERROR_PER_N = Number.EPSILON;
/**
 * The fast path is accepted when its worst-case perturbation of every σᵢ² is within this
 * fraction of σᵢ², i.e. every singular value within 1e-4 relative (the target).
 */
const FAST_PATH_SIGMA2_RTOL = 2e-4;

/** An upper bound on ‖G‖₂ (Gershgorin: the largest absolute row sum). */
function normBound(G: Float64Array, n: number): number {
  let best = 0;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += Math.abs(G[i * n + j]!);
    best = Math.max(best, s);
  }
  return best;
}

/** The Cholesky-reduced core: G_B = L·Lᵀ and C = s²·Lᵀ·G_A·L (symmetric, r×r). */
interface GramCore {
  L: Float64Array;
  C: Float64Array;
  /** eigenvalues of C = σ(s·B·A)², descending */
  lambda: Float64Array;
}

/**
 * σ(s·B·A)² are the eigenvalues of s²·G_B·G_A, and with G_B = L·Lᵀ those of the symmetric
 * s²·Lᵀ·G_A·L: one Cholesky and one symmetric eigenvalue problem of size r. Returns undefined
 * when G_B is not positive definite or when the Gram errors (relErr·‖G‖) could move some σᵢ by
 * more than the target: then a more careful path is needed.
 */
async function gramCore(GB: Float64Array, GA: Float64Array, r: number, scale: number, errB: number, errA: number): Promise<GramCore | undefined> {
  const L = cholesky(GB, r);
  if (!L) return undefined;
  // C = s²·Lᵀ·G_A·L: the r×r products in ORT's float64 GEMM (≈ 5× faster than JS loops here)
  const C = await congruence(GA, L, r);
  const s2 = scale * scale;
  for (let i = 0; i < r * r; i++) C[i] = s2 * C[i]!;
  const lambda = symmetricEigenvalues(C, r);
  // Weyl: perturbing G_A by δA and G_B by δB moves each σ² by at most s²(‖δA‖‖G_B‖ + ‖G_A‖‖δB‖)
  const perturbation = s2 * normBound(GA, r) * normBound(GB, r) * (errA + errB);
  const smallest = lambda[r - 1]!;
  if (!(smallest > 0) || perturbation > FAST_PATH_SIGMA2_RTOL * smallest) return undefined;
  return { L, C, lambda };
}

/** All r singular values from the core's eigenvalues (one function, so spectra and truncations agree to the bit). */
function coreSigma(core: GramCore): Float64Array {
  return Float64Array.from(core.lambda, (l) => Math.sqrt(l));
}

/** A factor holds NaN or ±Inf (every such value makes its Gram's diagonal non-finite). */
export class NonFiniteFactorError extends Error {
  constructor(readonly factor: "A" | "B") {
    super(`lora_${factor} holds non-finite values (NaN or Inf)`);
    this.name = "NonFiniteFactorError";
  }
}

function diagonalFinite(G: ArrayLike<number>, r: number): boolean {
  let acc = 0;
  for (let i = 0; i < r; i++) acc += G[i * r + i]!;
  return Number.isFinite(acc);
}

/**
 * The Grams in float32 (when the bound accepts them) or float64, reduced to a core; undefined
 * when neither will do. A float32 Gram that overflowed is retried in float64; a non-finite
 * float64 Gram means non-finite factors, reported as NonFiniteFactorError, so readers may skip
 * their own per-value finiteness scan.
 */
async function coreOf(f: Factors, precision: GramPrecision): Promise<{ core: GramCore; path: "float32" | "float64" } | undefined> {
  const r = f.rank;
  const B = { data: f.B, rows: f.outFeatures, cols: r };
  const A = { data: f.A, rows: r, cols: f.inFeatures };
  if (precision !== "float64") {
    const grams = await loraGrams(B, A);
    const GB = new Float64Array(grams.GB);
    const GA = new Float64Array(grams.GA);
    if (diagonalFinite(GB, r) && diagonalFinite(GA, r)) {
      const core = await gramCore(GB, GA, r, f.scale, F32_GRAM_ERROR_PER_SQRT_N * Math.sqrt(f.outFeatures), F32_GRAM_ERROR_PER_SQRT_N * Math.sqrt(f.inFeatures));
      if (core) return { core, path: "float32" };
    }
  }
  {
    const GB = (await gram64(B, "cols")).data;
    const GA = (await gram64(A, "rows")).data;
    if (!diagonalFinite(GB, r)) throw new NonFiniteFactorError("B");
    if (!diagonalFinite(GA, r)) throw new NonFiniteFactorError("A");
    if (precision === "float32") return undefined;
    const core = await gramCore(GB, GA, r, f.scale, F64_GRAM_ERROR_PER_N * f.outFeatures, F64_GRAM_ERROR_PER_N * f.inFeatures);
    if (core) return { core, path: "float64" };
  }
  return undefined;
}

/**
 * All r singular values of scale·B·A, descending, as cheaply as the accuracy target allows:
 * float32 Grams in ORT when the error bound permits, else float64 Grams, else (rank-deficient
 * or badly conditioned factors) the rank-revealing factoredSvd. Used for spectra, where the
 * vectors are not needed.
 */
export async function factoredSingularValues(f: Factors, opts: FactoredSvdOptions = {}): Promise<{ sigma: Float64Array; path: "float32" | "float64" | "rank-revealing" }> {
  checkFactors(f);
  const fast = await coreOf(f, opts.precision ?? "auto");
  if (fast) return { sigma: coreSigma(fast.core), path: fast.path };
  return { sigma: (await factoredSvd(f, { precision: "float64" })).sigma, path: "rank-revealing" };
}

/** Above this k, top eigenvectors come from a full eigen-decomposition instead of inverse iteration. */
const INVERSE_ITERATION_MAX_K = 8;
/** Inverse-iteration solves per vector: the shift is an eigenvalue to ~ε, so one or two suffice. */
const INVERSE_ITERATIONS = 3;

/** LU with partial pivoting of an r×r matrix, in place; returns the pivot order. */
function luFactor(M: Float64Array, n: number): Int32Array {
  const piv = new Int32Array(n);
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(M[i * n + k]!) > Math.abs(M[p * n + k]!)) p = i;
    piv[k] = p;
    if (p !== k) for (let j = 0; j < n; j++) [M[k * n + j], M[p * n + j]] = [M[p * n + j]!, M[k * n + j]!];
    const d = M[k * n + k]!;
    if (d === 0) continue;
    for (let i = k + 1; i < n; i++) {
      const l = (M[i * n + k]! /= d);
      if (l !== 0) for (let j = k + 1; j < n; j++) M[i * n + j]! -= l * M[k * n + j]!;
    }
  }
  return piv;
}

function luSolve(M: Float64Array, piv: Int32Array, n: number, b: Float64Array, tiny: number): void {
  for (let k = 0; k < n; k++) {
    const p = piv[k]!;
    if (p !== k) [b[k], b[p]] = [b[p]!, b[k]!];
    for (let i = k + 1; i < n; i++) b[i]! -= M[i * n + k]! * b[k]!;
  }
  for (let i = n - 1; i >= 0; i--) {
    let s = b[i]!;
    for (let j = i + 1; j < n; j++) s -= M[i * n + j]! * b[j]!;
    // an exactly singular pivot (the shift hit the eigenvalue) is nudged: the solve then
    // returns a huge multiple of the eigenvector, which is what inverse iteration wants
    const d = M[i * n + i]! || tiny;
    b[i] = s / d;
  }
}

/** Top-k eigenvectors [r, k] of the symmetric C with known eigenvalues (descending). */
function topEigenvectors(C: Float64Array, lambda: Float64Array, r: number, k: number): Float64Array {
  const W = new Float64Array(r * k);
  if (k > INVERSE_ITERATION_MAX_K) {
    const { vectors } = symmetricEigen(C, r);
    for (let i = 0; i < r; i++) for (let j = 0; j < k; j++) W[i * k + j] = vectors[i * r + j]!;
    return W;
  }
  const tiny = Number.EPSILON * Math.max(lambda[0]!, Number.MIN_VALUE);
  const x = new Float64Array(r);
  for (let j = 0; j < k; j++) {
    const M = Float64Array.from(C);
    for (let i = 0; i < r; i++) M[i * r + i]! -= lambda[j]!;
    const piv = luFactor(M, r);
    // a deterministic start, different for each j, with weight on every coordinate
    let seed = 0x2545f491 ^ (j * 0x9e3779b9);
    for (let i = 0; i < r; i++) {
      seed = (Math.imul(seed, 1103515245) + 12345) | 0;
      x[i] = 1 + ((seed >>> 8) & 0xffff) / 65536;
    }
    const orthonormalise = () => {
      // orthogonal to the vectors already found, before and after each solve: within a cluster
      // of equal eigenvalues the solve scales every cluster direction alike, so a start
      // orthogonal to the earlier vectors stays orthogonal to them
      for (let pass = 0; pass < 2; pass++) {
        for (let q = 0; q < j; q++) {
          let dot = 0;
          for (let i = 0; i < r; i++) dot += x[i]! * W[i * k + q]!;
          for (let i = 0; i < r; i++) x[i]! -= dot * W[i * k + q]!;
        }
      }
      let nrm = 0;
      for (let i = 0; i < r; i++) nrm += x[i]! * x[i]!;
      nrm = Math.sqrt(nrm);
      for (let i = 0; i < r; i++) x[i] = x[i]! / nrm;
    };
    orthonormalise();
    for (let it = 0; it < INVERSE_ITERATIONS; it++) {
      luSolve(M, piv, r, x, tiny);
      orthonormalise();
    }
    // sign convention as in coreSvd: the largest-magnitude entry is positive
    let best = 0;
    for (let i = 0; i < r; i++) if (Math.abs(x[i]!) > Math.abs(best)) best = x[i]!;
    const sign = best < 0 ? -1 : 1;
    for (let i = 0; i < r; i++) W[i * k + j] = sign * x[i]!;
  }
  return W;
}

/** factoredTruncation's result: the top-k factors and every singular value. */
export interface FactoredTruncation extends TopVectors {
  /** all r singular values of ΔW, descending (zeros past the numerical rank) */
  sigma: Float64Array;
  path: "float32" | "float64" | "rank-revealing";
}

/**
 * The best rank-k approximation of scale·B·A as factors U [out, k] and Vᵀ [k, in] with √σ
 * folded into each (U·Vᵀ ≈ ΔW_k), plus all r singular values: the core that gives the vectors
 * gives every σ (exactly factoredSingularValues' values, the same Gram core on the same path),
 * so a spectrum taken together with a truncation needs no second decomposition. Fast path: with G_B = L·Lᵀ and
 * C = s²·Lᵀ·G_A·L = W·Λ·Wᵀ, the left vectors are B·L⁻ᵀ·W and the right ones s·Aᵀ·L·W·Λ^{-1/2},
 * so U = B·(L⁻ᵀ·W_k·Σ_k^{1/2}) and Vᵀ = (s·Σ_k^{-1/2}·W_kᵀ·Lᵀ)·A: two tall products in ORT.
 * Falls back to the rank-revealing factoredSvd for rank-deficient or badly conditioned factors.
 */
export async function factoredTruncation(f: Factors, k: number, opts: FactoredSvdOptions = {}): Promise<FactoredTruncation> {
  checkFactors(f);
  checkK(k, f.rank);
  const r = f.rank;
  const fast = await coreOf(f, opts.precision ?? "auto");
  if (!fast) {
    const svd = await factoredSvd(f, { precision: "float64" });
    const tv = await topVectors(f, svd, k, "sqrt");
    return { ...tv, sigma: svd.sigma, path: "rank-revealing" };
  }
  const { L, C, lambda } = fast.core;
  const W = topEigenvectors(C, lambda, r, k);
  const sigma = coreSigma(fast.core);
  // P = L⁻ᵀ·W_k·Σ^{1/2}: back substitution with the upper-triangular Lᵀ, column by column
  const P = new Float32Array(r * k);
  const col = new Float64Array(r);
  for (let j = 0; j < k; j++) {
    const w = Math.sqrt(sigma[j]!);
    for (let i = r - 1; i >= 0; i--) {
      let acc = W[i * k + j]! * w;
      for (let t = i + 1; t < r; t++) acc -= L[t * r + i]! * col[t]!;
      col[i] = acc / L[i * r + i]!;
    }
    for (let i = 0; i < r; i++) P[i * k + j] = col[i]!;
  }
  // Qᵀ = s·Σ^{-1/2}·W_kᵀ·Lᵀ  [k, r]:  Qᵀ[j, t] = s/√σ_j · Σ_i W[i, j]·L[t, i]
  const Qt = new Float32Array(k * r);
  for (let j = 0; j < k; j++) {
    const w = f.scale / Math.sqrt(sigma[j]!);
    for (let t = 0; t < r; t++) {
      let acc = 0;
      for (let i = 0; i <= t; i++) acc += W[i * k + j]! * L[t * r + i]!;
      Qt[j * r + t] = w * acc;
    }
  }
  const U = await matmul({ data: f.B, rows: f.outFeatures, cols: r }, { data: P, rows: r, cols: k });
  const Vt = await matmul({ data: Qt, rows: k, cols: r }, { data: f.A, rows: r, cols: f.inFeatures });
  return { k, U: U.data, Vt: Vt.data, sigma, path: fast.path };
}
