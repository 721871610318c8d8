/**
 * Exact small-sample statistics for the findings (statistics.ts): the Wilson score interval of
 * a rate, Fisher's exact test of a 2×2 table and the exact binomial test (McNemar's exact test
 * is the binomial test of the discordant pairs at ½). Pure functions of counts, computed in log
 * space, so a reviewer can recompute every number in report.json with R or SciPy:
 *   wilson(k, n)            ≙ R prop.test's score interval without continuity correction,
 *                             statsmodels proportion_confint(method="wilson")
 *   fisherExact(a, b, c, d) ≙ R fisher.test(matrix(c(a, c, b, d), 2))$p.value, scipy.stats.fisher_exact
 *   binomialTest(k, n, p)   ≙ R binom.test(k, n, p)$p.value, scipy.stats.binomtest(k, n, p).pvalue
 * and how a finding's confidence follows from its p (roundP, confidenceFromP), here so that
 * signature.ts (which computes it) and statistics.ts (which reports the p) share one rule.
 */

/** z for a two-sided 95 % interval: Φ⁻¹(0.975). */
export const Z_95 = 1.959963984540054;

/**
 * Relative tolerance when collecting outcomes "as or less likely than the observed one": the
 * same 1 + 10⁻⁷ R's fisher.test and binom.test use, so ties lost to rounding still count.
 */
const TIE_TOLERANCE = 1 + 1e-7;

const logFactorials: number[] = [0];

/** ln(n!) from a cumulative table: exact to ~1e-13 relative for the few thousand responses a scan has. */
function logFactorial(n: number): number {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`logFactorial needs a non-negative integer, got ${n}`);
  for (let i = logFactorials.length; i <= n; i++) logFactorials.push(logFactorials[i - 1]! + Math.log(i));
  return logFactorials[n]!;
}

/** ln C(n, k). */
function logChoose(n: number, k: number): number {
  return logFactorial(n) - logFactorial(k) - logFactorial(n - k);
}

/** p-values keep 4 significant digits: enough to check, short in report.json. */
export function roundP(p: number): number {
  return Number(p.toPrecision(4));
}

/**
 * 1 − p rounded to 3 decimals, times the discount when there is one. p is first rounded as
 * report.json stores it (roundP), so a reviewer recomputing 1 − p from the report gets this
 * number exactly; roundP is idempotent, so passing the stored p gives the same result.
 */
export function confidenceFromP(p: number, discount = 1): number {
  return Math.round(discount * (1 - Math.min(1, Math.max(0, roundP(p)))) * 1000) / 1000;
}

function count(name: string, x: number): void {
  if (!Number.isInteger(x) || x < 0) throw new RangeError(`${name} must be a non-negative integer, got ${x}`);
}

/**
 * The 95 % Wilson score interval of k successes in n trials (Wilson 1927): the p for which
 * |k/n − p| ≤ z·√(p(1−p)/n). Unlike k/n ± z·se it stays inside [0, 1] and does not collapse to a
 * point at 0 or n, which is where our rates live (a word the full model never says). n = 0 gives
 * [0, 1]: nothing was measured.
 */
export function wilson(k: number, n: number, z = Z_95): [number, number] {
  count("k", k);
  count("n", n);
  if (k > n) throw new RangeError(`k (${k}) exceeds n (${n})`);
  if (n === 0) return [0, 1];
  const p = k / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  // the exact endpoints at k = 0 and k = n, not a rounding error away from them
  return [k === 0 ? 0 : Math.max(0, centre - half), k === n ? 1 : Math.min(1, centre + half)];
}

/**
 * Two-sided Fisher's exact test of the 2×2 table [[a, b], [c, d]]: with the margins fixed, the
 * top-left cell is hypergeometric; p sums the probabilities of every table at most as likely
 * as the observed one (the convention of R and SciPy).
 */
export function fisherExact(a: number, b: number, c: number, d: number): number {
  for (const [name, x] of [["a", a], ["b", b], ["c", c], ["d", d]] as const) count(name, x);
  const row1 = a + b;
  const row2 = c + d;
  const col1 = a + c;
  const n = row1 + row2;
  const lo = Math.max(0, col1 - row2);
  const hi = Math.min(row1, col1);
  if (lo === hi) return 1;
  const logDenominator = logChoose(n, col1);
  const logP = (x: number) => logChoose(row1, x) + logChoose(row2, col1 - x) - logDenominator;
  return sumAtMostAsLikely(lo, hi, logP, logP(a));
}

/**
 * Two-sided exact binomial test of k successes in n trials with success probability p: the
 * sum of P(X = i) over every i at most as likely as k.
 */
export function binomialTest(k: number, n: number, p = 0.5): number {
  count("k", k);
  count("n", n);
  if (k > n) throw new RangeError(`k (${k}) exceeds n (${n})`);
  if (!(p >= 0 && p <= 1)) throw new RangeError(`p must be in [0, 1], got ${p}`);
  if (n === 0) return 1;
  if (p === 0) return k === 0 ? 1 : 0;
  if (p === 1) return k === n ? 1 : 0;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  const logP = (i: number) => logChoose(n, i) + i * lp + (n - i) * lq;
  return sumAtMostAsLikely(0, n, logP, logP(k));
}

/**
 * McNemar's exact test for paired yes/no answers: of the pairs that disagree, `firstOnly` have
 * the event only in the first member and `secondOnly` only in the second; under "both equally
 * likely" each disagreement goes either way with probability ½.
 */
export function mcnemarExact(firstOnly: number, secondOnly: number): number {
  return binomialTest(firstOnly, firstOnly + secondOnly, 0.5);
}

/** Σ exp(logP(x)) over x in [lo, hi] with logP(x) ≤ logObserved (+ tolerance), summed stably. */
function sumAtMostAsLikely(lo: number, hi: number, logP: (x: number) => number, logObserved: number): number {
  const cut = logObserved + Math.log(TIE_TOLERANCE);
  const kept: number[] = [];
  for (let x = lo; x <= hi; x++) {
    const l = logP(x);
    if (l <= cut) kept.push(l);
  }
  if (kept.length === 0) return 0;
  const m = Math.max(...kept);
  let s = 0;
  for (const l of kept) s += Math.exp(l - m);
  return Math.min(1, Math.exp(m) * s);
}
