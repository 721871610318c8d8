/**
 * Orthonormal basis of a tall LoRA factor (B [out, r], or Aᵀ for A [r, in]) without forming
 * the tall Q: a Cholesky-QR in which the Cholesky factor is replaced by the symmetric square
 * root from an eigen-decomposition of the Gram. X = Q·R with Q = X·coef orthonormal and
 * R = Λ^{1/2}·Vᵀ. The eigen-decomposition reveals the rank, so rank-deficient factors (zero
 * or repeated columns) are handled by dropping the null directions instead of failing the way
 * a Cholesky factorisation would.
 */
import { gemm, gram, gram64, type Mat } from "./kernels";
import { symmetricEigen } from "./small-svd";

/**
 * Directions of the factor with σ_i ≤ FACTOR_RANK_RTOL·σ_max are treated as null: a factor
 * stored in float32 that is rank-deficient in exact arithmetic shows σ_min ≈ 1e-7·σ_max from
 * rounding, and such directions contribute at most this fraction of the factor's norm.
 */
export const FACTOR_RANK_RTOL = 1e-6;

/**
 * The float32 Gram (fast path) is trusted only when every kept eigenvalue is at least this
 * fraction of the largest. A float32 Gram carries absolute errors of ~1e-6·λ_max, which move
 * σ_i by ~1e-6·λ_max/(2σ_i): below this ratio that could exceed 1e-5·σ_max, so the Gram is
 * recomputed in float64 (~2-3× slower, accurate to ~1e-16·λ_max).
 */
export const FLOAT32_GRAM_MIN_RATIO = 1e-2;

export type GramPrecision = "auto" | "float32" | "float64";

export interface FactorBasis {
  /** columns of the tall factor (the LoRA rank r) */
  r: number;
  /** numerical rank kept (≤ r) */
  rank: number;
  /** R [rank, r] row-major, X ≈ Q·R */
  R: Float64Array;
  /** coef [r, rank] row-major, Q = X·coef has orthonormal columns */
  coef: Float64Array;
  /** singular values of the factor, descending (length r, zeros for dropped directions) */
  sigma: Float64Array;
  /** which Gram the basis came from */
  precision: "float32" | "float64";
}

/** The basis from a Gram matrix G = XᵀX [r, r] (float64). */
export function basisFromGram(G: Float64Array, r: number, precision: "float32" | "float64" = "float64"): FactorBasis {
  const { values, vectors } = symmetricEigen(G, r);
  const lmax = Math.max(values[0] ?? 0, 0);
  const cutoff = lmax * FACTOR_RANK_RTOL * FACTOR_RANK_RTOL;
  let rank = 0;
  while (rank < r && values[rank]! > cutoff && values[rank]! > 0) rank++;
  const R = new Float64Array(rank * r);
  const coef = new Float64Array(r * rank);
  const sigma = new Float64Array(r);
  for (let j = 0; j < rank; j++) {
    const sq = Math.sqrt(values[j]!);
    sigma[j] = sq;
    for (let i = 0; i < r; i++) {
      const v = vectors[i * r + j]!;
      R[j * r + i] = sq * v;
      coef[i * rank + j] = v / sq;
    }
  }
  return { r, rank, R, coef, sigma, precision };
}

/** Smallest kept eigenvalue over the largest, with rank deficiency counting as 0. */
function conditionRatio(b: FactorBasis): number {
  if (b.rank === 0) return 1;
  if (b.rank < b.r) return 0;
  const s0 = b.sigma[0]!;
  const sl = b.sigma[b.rank - 1]!;
  return (sl * sl) / (s0 * s0);
}

/**
 * Basis of a tall factor with the Gram computed by ONNX Runtime.
 * `layout` "tall": x is X itself [rows, r]. "wide": x is Xᵀ [r, cols] (a LoRA A), the Gram is x·xᵀ.
 */
export async function factorBasis(x: Mat<Float32Array>, layout: "tall" | "wide", precision: GramPrecision = "auto"): Promise<FactorBasis> {
  const r = layout === "tall" ? x.cols : x.rows;
  if (precision !== "float64") {
    const g = layout === "tall" ? await gram(x) : await gemm(x, x, { transB: true });
    const basis = basisFromGram(Float64Array.from(g.data), r, "float32");
    if (precision === "float32" || conditionRatio(basis) >= FLOAT32_GRAM_MIN_RATIO) return basis;
  }
  const g64 = await gram64(x, layout === "tall" ? "cols" : "rows");
  return basisFromGram(g64.data, r, "float64");
}

/** The same in plain JavaScript float64 (no ORT): for small factors and synchronous callers. */
export function factorBasisSync(x: Mat<Float32Array>, layout: "tall" | "wide"): FactorBasis {
  const r = layout === "tall" ? x.cols : x.rows;
  const n = layout === "tall" ? x.rows : x.cols;
  const G = new Float64Array(r * r);
  const d = x.data;
  if (layout === "tall") {
    // XᵀX, row by row so the tall operand streams once
    for (let t = 0; t < n; t++) {
      const off = t * r;
      for (let i = 0; i < r; i++) {
        const xi = d[off + i]!;
        if (xi === 0) continue;
        for (let j = i; j < r; j++) G[i * r + j]! += xi * d[off + j]!;
      }
    }
  } else {
    for (let i = 0; i < r; i++) {
      for (let j = i; j < r; j++) {
        let acc = 0;
        const oi = i * n;
        const oj = j * n;
        for (let t = 0; t < n; t++) acc += d[oi + t]! * d[oj + t]!;
        G[i * r + j] = acc;
      }
    }
  }
  for (let i = 0; i < r; i++) for (let j = 0; j < i; j++) G[i * r + j] = G[j * r + i]!;
  return basisFromGram(G, r, "float64");
}
