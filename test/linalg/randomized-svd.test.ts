import { afterAll, describe, expect, it } from "vitest";
import { releaseKernels } from "../../src/linalg/kernels";
import { topKSvd } from "../../src/linalg/randomized-svd";
import { lcg, orthoError, referenceSvd } from "./reference";

const SIGMA_RTOL = 1e-4;

/** A dense [m, n] matrix with singular values `spec` (random orthogonal-ish factors) plus noise. */
function matrixWithSpectrum(m: number, n: number, spec: number[], noise: number, seed: number): Float32Array {
  const next = lcg(seed);
  const out = new Float64Array(m * n);
  for (const s of spec) {
    const u = Array.from({ length: m }, next);
    const v = Array.from({ length: n }, next);
    const nu = Math.hypot(...u);
    const nv = Math.hypot(...v);
    for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) out[i * n + j]! += (s * u[i]! * v[j]!) / (nu * nv);
  }
  for (let i = 0; i < out.length; i++) out[i]! += noise * next();
  return Float32Array.from(out);
}

describe("randomized top-k SVD", () => {
  afterAll(releaseKernels);

  it("finds the top-k triples of a decaying spectrum to 1e-4", async () => {
    const [m, n, k] = [120, 90, 5];
    const spec = [50, 30, 20, 12, 8, 5, 3, 2, 1];
    const a = matrixWithSpectrum(m, n, spec, 0.05, 1);
    const ref = referenceSvd(a, m, n);
    const res = await topKSvd({ data: a, rows: m, cols: n }, k);
    expect(res.converged).toBe(true);
    expect(res.residual).toBeLessThanOrEqual(1e-4);
    for (let i = 0; i < k; i++) expect(Math.abs(res.sigma[i]! - ref.s[i]!)).toBeLessThanOrEqual(SIGMA_RTOL * ref.s[i]!);
    expect(orthoError(res.U, m, k)).toBeLessThan(1e-5);
    expect(orthoError(res.V, n, k)).toBeLessThan(1e-5);
    for (let j = 0; j < k; j++) {
      let dot = 0;
      for (let i = 0; i < m; i++) dot += res.U[i * k + j]! * ref.U.get(i, j);
      expect(Math.abs(Math.abs(dot) - 1)).toBeLessThan(1e-4);
    }
  });

  it("is exact on a low-rank matrix and reports zeros past the rank", async () => {
    const a = matrixWithSpectrum(40, 70, [9, 4, 1], 0, 2);
    const ref = referenceSvd(a, 40, 70);
    const res = await topKSvd({ data: a, rows: 40, cols: 70 }, 6);
    expect(res.converged).toBe(true);
    for (let i = 0; i < 3; i++) expect(Math.abs(res.sigma[i]! - ref.s[i]!)).toBeLessThanOrEqual(SIGMA_RTOL * ref.s[i]!);
    for (let i = 3; i < 6; i++) expect(res.sigma[i]!).toBeLessThan(1e-5 * ref.s[0]!);
  });

  it("converges (or says it did not) on a flat noise spectrum", async () => {
    const next = lcg(3);
    const a = Float32Array.from({ length: 60 * 50 }, next);
    const ref = referenceSvd(a, 60, 50);
    const res = await topKSvd({ data: a, rows: 60, cols: 50 }, 3, { maxIterations: 200 });
    if (res.converged) {
      for (let i = 0; i < 3; i++) expect(Math.abs(res.sigma[i]! - ref.s[i]!)).toBeLessThanOrEqual(1e-3 * ref.s[0]!);
    } else {
      expect(res.iterations).toBe(200);
    }
    // the top value is always within the residual bound
    expect(Math.abs(res.sigma[0]! - ref.s[0]!)).toBeLessThanOrEqual(Math.max(res.residual, 1e-6) * ref.s[0]! * 1.01);
  });

  it("returns zeros for a zero matrix", async () => {
    const res = await topKSvd({ data: new Float32Array(20 * 10), rows: 20, cols: 10 }, 2);
    expect(Array.from(res.sigma)).toEqual([0, 0]);
    expect(res.converged).toBe(true);
  });
});
