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

/** erf by Abramowitz–Stegun 7.1.26 (|error| < 1.5e-7): enough for a confidence score. */
export function erf(x: number): number {
  const s = Math.sign(x);
  const ax = Math.abs(x);
  const t = 1 / (1 + 0.3275911 * ax);
  const y = 1 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * Math.exp(-ax * ax);
  return s * y;
}

/** Two-sided significance of z mapped to 0..1 (erf(|z|/√2) = 1 − p). */
export function zConfidence(z: number): number {
  return z <= 0 ? 0 : erf(z / Math.SQRT2);
}
