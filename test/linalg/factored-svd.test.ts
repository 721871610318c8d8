import { afterAll, describe, expect, it } from "vitest";
import { factoredSingularValues, factoredTruncation, NonFiniteFactorError, factoredSvd, factoredSvdSync, topVectors, topVectorsSync, type Factors } from "../../src/linalg/factored-svd";
import { releaseKernels } from "../../src/linalg/kernels";
import { bestRankK, denseDelta, diffFrob, frob, lcg, orthoError, product, randomF32, referenceSvd, transpose } from "./reference";

/** The accuracy target for singular values. */
const SIGMA_RTOL = 1e-4;
/** float32 vectors: orthonormal to ~1e-6. */
const ORTHO_TOL = 1e-5;

function factors(out: number, r: number, inf: number, scale: number, seed: number): Factors {
  const next = lcg(seed);
  return { rank: r, scale, outFeatures: out, inFeatures: inf, B: randomF32(out * r, next), A: randomF32(r * inf, next) };
}

function dense(f: Factors) {
  return denseDelta(f.B, f.A, f.outFeatures, f.rank, f.inFeatures, f.scale);
}

function expectSigma(got: Float64Array, want: number[], r: number) {
  const s1 = want[0]!;
  for (let i = 0; i < r; i++) {
    const w = want[i] ?? 0;
    // relative to each value where it is well above rounding, and never worse than 1e-6·σ₁
    expect(Math.abs(got[i]! - w)).toBeLessThanOrEqual(Math.max(SIGMA_RTOL * w, 1e-6 * s1));
  }
}

describe("factored SVD of s·B·A", () => {
  afterAll(releaseKernels);

  for (const [out, r, inf, scale] of [
    [40, 6, 30, 2],
    [9, 4, 70, 0.5],
    [3, 5, 8, -1.5], // out < r: the product has rank ≤ 3; negative scale
    [64, 16, 48, 1 / Math.sqrt(16)],
  ] as const) {
    it(`matches the dense SVD for out=${out} r=${r} in=${inf} scale=${scale}`, async () => {
      const f = factors(out, r, inf, scale, out * 131 + r);
      const ref = referenceSvd(dense(f), out, inf);
      for (const svd of [await factoredSvd(f), factoredSvdSync(f)]) {
        expect(svd.sigma.length).toBe(r);
        expectSigma(svd.sigma, ref.s, r);
        expect(svd.p).toBe(Math.min(out, r, inf));
      }
      const fast = await factoredSingularValues(f);
      expectSigma(fast.sigma, ref.s, r);
      // a product of rank < r has zero singular values: only the rank-revealing path gets them
      expect(fast.path).toBe(Math.min(out, inf) < r ? "rank-revealing" : "float32");
    });
  }

  it("gives orthonormal singular vectors and the dense best rank-k approximation", async () => {
    const f = factors(50, 8, 36, 1.25, 99);
    const D = dense(f);
    const ref = referenceSvd(D, 50, 36);
    const svd = await factoredSvd(f);
    for (const k of [1, 3, 8]) {
      for (const tv of [await topVectors(f, svd, k), topVectorsSync(f, factoredSvdSync(f), k)]) {
        expect(orthoError(tv.U, 50, k)).toBeLessThan(ORTHO_TOL);
        expect(orthoError(transpose(tv.Vt, k, 36), 36, k)).toBeLessThan(ORTHO_TOL);
      }
      const split = await topVectors(f, svd, k, "sqrt");
      const approx = product(split.U, split.Vt, 50, k, 36);
      const best = bestRankK(ref, k, 50, 36);
      expect(diffFrob(approx, best)).toBeLessThan(1e-5 * frob(D));
      // Eckart–Young: the error is the energy of the dropped singular values
      const tail = Math.sqrt(ref.s.slice(k).reduce((a, s) => a + s * s, 0));
      expect(Math.abs(diffFrob(approx, D) - tail)).toBeLessThan(1e-5 * frob(D));
    }
  });

  it("handles rank-deficient factors (repeated and zero columns) via the float64 Gram", async () => {
    const f = factors(30, 6, 25, 1, 5);
    // B: column 3 = column 1; A: row 5 zero
    for (let o = 0; o < 30; o++) f.B[o * 6 + 3] = f.B[o * 6 + 1]!;
    f.A.fill(0, 5 * 25, 6 * 25);
    const D = dense(f);
    const ref = referenceSvd(D, 30, 25);
    for (const svd of [await factoredSvd(f), factoredSvdSync(f)]) {
      expectSigma(svd.sigma, ref.s, 6);
      expect(svd.p).toBe(4);
      expect(svd.sigma[4]).toBe(0);
      expect(svd.sigma[5]).toBe(0);
    }
    const svd = await factoredSvd(f);
    expect(svd.precision).toEqual({ B: "float64", A: "float64" });
    const fast = await factoredSingularValues(f);
    expect(fast.path).toBe("rank-revealing");
    expectSigma(fast.sigma, ref.s, 6);
    const tv = await topVectors(f, svd, 6, "sqrt");
    // columns past the rank are zero, and the product is still ΔW itself
    expect(diffFrob(product(tv.U, tv.Vt, 30, 6, 25), D)).toBeLessThan(1e-5 * frob(D));
    const plain = await topVectors(f, svd, 4);
    expect(orthoError(plain.U, 30, 4)).toBeLessThan(ORTHO_TOL);
  });

  it("keeps small singular values accurate for an ill-conditioned factor (float64 path)", async () => {
    const f = factors(80, 5, 60, 1, 11);
    const colScale = [1, 1e-1, 1e-2, 1e-3, 1e-4];
    for (let o = 0; o < 80; o++) for (let t = 0; t < 5; t++) f.B[o * 5 + t] = f.B[o * 5 + t]! * colScale[t]!;
    const ref = referenceSvd(dense(f), 80, 60);
    const svd = await factoredSvd(f);
    expect(svd.precision.B).toBe("float64");
    expect(svd.precision.A).toBe("float32");
    const fast = await factoredSingularValues(f);
    expect(fast.path).toBe("float64");
    for (const sig of [svd.sigma, fast.sigma]) {
      for (let i = 0; i < 5; i++) expect(Math.abs(sig[i]! - ref.s[i]!)).toBeLessThanOrEqual(SIGMA_RTOL * ref.s[i]!);
    }
  });

  it("factoredTruncation gives the dense best rank-k on every path, including repeated σ", async () => {
    const well = factors(50, 12, 36, 0.8, 41);
    const ill = factors(60, 5, 40, 1, 42);
    [1, 1e-1, 1e-2, 1e-3, 1e-4].forEach((c, t) => {
      for (let o = 0; o < 60; o++) ill.B[o * 5 + t] = ill.B[o * 5 + t]! * c;
    });
    const deficient = factors(30, 6, 25, 1, 43);
    for (let o = 0; o < 30; o++) deficient.B[o * 6 + 3] = deficient.B[o * 6 + 1]!;
    // repeated singular values: B has orthogonal columns of norms 2, 2, 2, 1 and A orthonormal rows
    const rep: Factors = { rank: 4, scale: 1, outFeatures: 8, inFeatures: 6, B: new Float32Array(32), A: new Float32Array(24) };
    [2, 2, 2, 1].forEach((v, t) => {
      rep.B[(2 * t) * 4 + t] = v;
      rep.A[t * 6 + t + 1] = 1;
    });
    const cases: Array<[Factors, string, number[]]> = [
      [well, "float32", [1, 3, 8, 12]],
      [ill, "float64", [1, 2, 5]],
      [deficient, "rank-revealing", [1, 4]],
      [rep, "float32", [1, 2, 3]],
    ];
    for (const [f, path, ks] of cases) {
      const D = dense(f);
      const ref = referenceSvd(D, f.outFeatures, f.inFeatures);
      const values = await factoredSingularValues(f);
      expect(values.path).toBe(path);
      for (const k of ks) {
        const t = await factoredTruncation(f, k);
        expect(t.path).toBe(path);
        // the contract a spectrum taken with a truncation relies on: all r σ, exactly factoredSingularValues'
        expect(t.sigma.length).toBe(f.rank);
        expect(Array.from(t.sigma)).toEqual(Array.from(values.sigma));
        const approx = product(t.U, t.Vt, f.outFeatures, k, f.inFeatures);
        const tail = Math.sqrt(ref.s.slice(k).reduce((a, s) => a + s * s, 0));
        // Eckart–Young: the error of a best rank-k approximation is the dropped energy
        expect(Math.abs(diffFrob(approx, D) - tail)).toBeLessThan(1e-5 * frob(D));
        if (ref.s[k - 1]! - (ref.s[k] ?? 0) > 1e-3 * ref.s[0]!) {
          // unique best approximation when σ_k > σ_{k+1}
          expect(diffFrob(approx, bestRankK(ref, k, f.outFeatures, f.inFeatures))).toBeLessThan(1e-5 * frob(D));
        }
        for (let j = 0; j < k; j++) expect(Math.abs(t.sigma[j]! - ref.s[j]!)).toBeLessThanOrEqual(SIGMA_RTOL * ref.s[0]!);
      }
    }
  });

  it("survives a float32 Gram overflow and reports non-finite factors", async () => {
    const f = factors(20, 3, 15, 1, 44);
    const ref = referenceSvd(dense(f), 20, 15);
    // |x| ≈ 1e20: x² overflows float32 but the float64 Gram is fine
    const big = { ...f, B: Float32Array.from(f.B, (x) => x * 1e20), scale: 1e-20 };
    const fast = await factoredSingularValues(big);
    expect(fast.path).toBe("float64");
    for (let i = 0; i < 3; i++) expect(Math.abs(fast.sigma[i]! - ref.s[i]!)).toBeLessThanOrEqual(SIGMA_RTOL * ref.s[i]!);
    const nan = { ...f, A: Float32Array.from(f.A) };
    nan.A[7] = Number.NaN;
    await expect(factoredSingularValues(nan)).rejects.toBeInstanceOf(NonFiniteFactorError);
    const inf = { ...f, B: Float32Array.from(f.B) };
    inf.B[3] = Number.POSITIVE_INFINITY;
    await expect(factoredTruncation(inf, 1)).rejects.toThrow(/lora_B holds non-finite/);
  });

  it("returns zeros for a zero update", async () => {
    const f = factors(10, 3, 12, 1, 3);
    f.B.fill(0);
    const svd = await factoredSvd(f);
    expect(Array.from(svd.sigma)).toEqual([0, 0, 0]);
    expect(Array.from((await factoredSingularValues(f)).sigma)).toEqual([0, 0, 0]);
    expect(svd.p).toBe(0);
  });
});
