/**
 * The exact statistics behind a finding's confidence, against independent references:
 * textbook values (R's fisher.test and binom.test documentation, Wilson 1927 / Newcombe 1998),
 * the defining equation of the Wilson interval, and slow brute-force enumeration in BigInt
 * arithmetic (every way to draw the margins of a 2×2 table, every outcome of n coin flips).
 */
import { describe, expect, it } from "vitest";
import { binomialTest, confidenceFromP, fisherExact, mcnemarExact, roundP, wilson, Z_95 } from "../../src/judge/exact-tests";

/** C(n, k) exactly. */
function choose(n: number, k: number): bigint {
  let r = 1n;
  for (let i = 0; i < k; i++) r = (r * BigInt(n - i)) / BigInt(i + 1);
  return r;
}

/**
 * Fisher's two-sided p by enumeration: draw col1 of the n = row1 + row2 items (bit masks),
 * count how many of each top-left value x arise, and sum the counts of every x no more likely
 * than the observed — no hypergeometric formula involved.
 */
function fisherBrute(a: number, b: number, c: number, d: number): number {
  const row1 = a + b;
  const n = a + b + c + d;
  const col1 = a + c;
  const ways = new Map<number, number>();
  for (let mask = 0; mask < 1 << n; mask++) {
    let bits = 0;
    let top = 0;
    for (let i = 0; i < n; i++) {
      if (mask & (1 << i)) {
        bits++;
        if (i < row1) top++;
      }
    }
    if (bits === col1) ways.set(top, (ways.get(top) ?? 0) + 1);
  }
  const total = [...ways.values()].reduce((s, w) => s + w, 0);
  const observed = ways.get(a)!;
  let sum = 0;
  for (const w of ways.values()) if (w <= observed) sum += w;
  return sum / total;
}

/** The two-sided binomial p by summing exact rational probabilities (BigInt numerators over a common denominator). */
function binomialBrute(k: number, n: number, num: number, den: number): number {
  const weight = (i: number) => choose(n, i) * BigInt(num) ** BigInt(i) * BigInt(den - num) ** BigInt(n - i);
  const observed = weight(k);
  let sum = 0n;
  for (let i = 0; i <= n; i++) if (weight(i) <= observed) sum += weight(i);
  return Number((sum * 10n ** 15n) / BigInt(den) ** BigInt(n)) / 1e15;
}

describe("Wilson score interval", () => {
  it("matches textbook values", () => {
    const [lo, hi] = wilson(8, 10);
    expect(lo).toBeCloseTo(0.490, 3);
    expect(hi).toBeCloseTo(0.943, 3);
    // Newcombe (1998), table I: 81/263 → 0.2553–0.3662; 15/148 → 0.0624–0.1605; 0/20 → 0–0.1611
    const near = (got: [number, number], want: [number, number]) => got.forEach((g, i) => expect(g).toBeCloseTo(want[i]!, 4));
    near(wilson(81, 263), [0.2553, 0.3662]);
    near(wilson(15, 148), [0.0624, 0.1605]);
    near(wilson(0, 20), [0, 0.1611]);
    near(wilson(29, 29), [0.8830, 1]);
    expect(wilson(0, 0)).toEqual([0, 1]);
  });

  it("its endpoints solve |k/n − p| = z·√(p(1−p)/n) (the definition), for every k ≤ n ≤ 40", () => {
    for (let n = 1; n <= 40; n++) {
      for (let k = 0; k <= n; k++) {
        const [lo, hi] = wilson(k, n);
        expect(lo).toBeLessThanOrEqual(k / n);
        expect(hi).toBeGreaterThanOrEqual(k / n);
        for (const p of [lo, hi]) {
          if (p === 0 || p === 1) continue; // k = 0 or n: the endpoint is the bound itself
          expect(Math.abs(k / n - p) - Z_95 * Math.sqrt((p * (1 - p)) / n)).toBeCloseTo(0, 10);
        }
      }
    }
  });
});

describe("Fisher's exact test", () => {
  it("matches R's fisher.test on the tea-tasting table and other known tables", () => {
    expect(fisherExact(3, 1, 1, 3)).toBeCloseTo(0.4857, 4); // R: TeaTasting, p = 0.4857
    expect(fisherExact(1, 9, 11, 3)).toBeCloseTo(0.002759, 6); // SciPy docs / Wikipedia: 0.0027594
    expect(fisherExact(5, 0, 0, 5)).toBeCloseTo(2 / 252, 12);
    expect(fisherExact(0, 0, 3, 4)).toBe(1);
    expect(fisherExact(24, 0, 0, 24)).toBeCloseTo(2 / Number(choose(48, 24)), 20);
  });

  it("equals brute-force enumeration on every 2×2 table with up to 12 items", () => {
    for (let n = 1; n <= 12; n++) {
      for (let a = 0; a <= n; a++) {
        for (let b = 0; a + b <= n; b++) {
          for (let c = 0; a + b + c <= n; c++) {
            const d = n - a - b - c;
            if (n > 8 && n % 3 !== 0) continue; // keep the slow reference (2^n masks per table) to a second
            expect(fisherExact(a, b, c, d), `${a} ${b} ${c} ${d}`).toBeCloseTo(fisherBrute(a, b, c, d), 10);
          }
        }
      }
    }
  });

  it("refuses counts that are not non-negative integers", () => {
    expect(() => fisherExact(-1, 2, 3, 4)).toThrow(RangeError);
    expect(() => fisherExact(1.5, 2, 3, 4)).toThrow(RangeError);
  });
});

describe("exact binomial test", () => {
  it("matches R's binom.test and the closed form at ½", () => {
    expect(binomialTest(682, 925, 0.75)).toBeCloseTo(0.3825, 4); // R ?binom.test: binom.test(c(682, 243), p = 3/4)
    expect(binomialTest(9, 10)).toBeCloseTo(22 / 1024, 12);
    expect(binomialTest(5, 10)).toBe(1);
    expect(binomialTest(0, 0)).toBe(1);
    expect(binomialTest(24, 24)).toBeCloseTo(2 ** -23, 18);
    // McNemar's exact test is the binomial test of the discordant pairs
    expect(mcnemarExact(10, 2)).toBeCloseTo(binomialTest(10, 12), 15);
    expect(mcnemarExact(10, 2)).toBeCloseTo(0.03857, 5);
  });

  it("equals exact rational enumeration for n ≤ 30 and p in {1/2, 1/3, 3/4, 1/10}", () => {
    for (const [num, den] of [[1, 2], [1, 3], [3, 4], [1, 10]] as const) {
      for (let n = 0; n <= 30; n += n < 12 ? 1 : 6) {
        for (let k = 0; k <= n; k++) expect(binomialTest(k, n, num / den), `${k}/${n} at ${num}/${den}`).toBeCloseTo(binomialBrute(k, n, num, den), 10);
      }
    }
  });
});

describe("confidence from p", () => {
  it("is 1 − p rounded to 3 decimals, times a discount when one is given", () => {
    expect(confidenceFromP(0.0123)).toBe(0.988);
    expect(confidenceFromP(2 ** -23)).toBe(1);
    expect(confidenceFromP(0.4857)).toBe(0.514);
    expect(confidenceFromP(0.0123, 0.75)).toBe(0.741);
  });

  it("is computed from p as report.json stores it (4 significant digits), so 1 − p recomputed from the report matches", () => {
    // unrounded, 1 − 0.30850339… would give 0.691; the report shows p = 0.3085, hence 0.692
    expect(roundP(0.3085033973758218)).toBe(0.3085);
    expect(confidenceFromP(0.3085033973758218)).toBe(0.692);
    expect(confidenceFromP(0.3085033973758218)).toBe(confidenceFromP(roundP(0.3085033973758218)));
    expect(confidenceFromP(0.11404320727336059, 0.75)).toBe(0.665);
    // roundP is idempotent: the stored p gives the same confidence as the p it came from
    for (const p of [0.27547603599147563, 2 ** -23, 0.0123456789, 0.6046581400622204]) expect(roundP(roundP(p))).toBe(roundP(p));
  });
});
