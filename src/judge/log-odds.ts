/**
 * Log-odds ratio with an informative Dirichlet prior (Monroe, Colaresi & Quinn 2008,
 * "Fightin' Words"): for term w and groups i, j with counts y and totals n,
 *   δ = log((y_i+α_w)/(n_i+α₀−y_i−α_w)) − log((y_j+α_w)/(n_j+α₀−y_j−α_w)),
 *   Var(δ) ≈ 1/(y_i+α_w) + 1/(y_j+α_w),  z = δ/√Var.
 * The prior α_w = α₀·(pooled frequency of w) shrinks rare terms toward "no difference", so a
 * term seen twice does not beat a term seen thirty times. signature.ts applies it to counts of
 * responses (binomial case: the Dirichlet has two categories, contains / does not).
 */

export interface LogOdds {
  delta: number;
  z: number;
}

export function logOddsZ(yi: number, ni: number, yj: number, nj: number, alphaW: number, alpha0: number): LogOdds {
  const a = Math.max(alphaW, MIN_ALPHA_W);
  const a0 = Math.max(alpha0, a);
  const li = Math.log((yi + a) / Math.max(ni + a0 - yi - a, MIN_DENOMINATOR));
  const lj = Math.log((yj + a) / Math.max(nj + a0 - yj - a, MIN_DENOMINATOR));
  const delta = li - lj;
  const z = delta / Math.sqrt(1 / (yi + a) + 1 / (yj + a));
  return { delta, z };
}

/** Keeps log() finite for terms absent from the pooled corpus. */
const MIN_ALPHA_W = 0.01;
const MIN_DENOMINATOR = 1e-9;
