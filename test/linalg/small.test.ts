import { describe, expect, it } from "vitest";
import { Matrix, EigenvalueDecomposition } from "ml-matrix";
import { symmetricEigenvalues, tridiagonalise } from "../../src/linalg/symmetric-eigenvalues";
import { cholesky } from "../../src/linalg/cholesky";
import { smallSvd, symmetricEigen } from "../../src/linalg/small-svd";
import { lcg, product, transpose } from "./reference";

function symmetric(n: number, seed: number): Float64Array {
  const next = lcg(seed);
  const g = new Float64Array(n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j <= i; j++) {
      const v = next();
      g[i * n + j] = v;
      g[j * n + i] = v;
    }
  return g;
}

function mlEigenvalues(g: Float64Array, n: number): number[] {
  const m = new Matrix(n, n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) m.set(i, j, g[i * n + j]!);
  return [...new EigenvalueDecomposition(m, { assumeSymmetric: true }).realEigenvalues].sort((a, b) => b - a);
}

describe("small dense decompositions", () => {
  it("symmetricEigenvalues matches ml-matrix on random, diagonal, repeated and rank-1 matrices", () => {
    const cases: Array<[Float64Array, number]> = [1, 2, 3, 8, 33, 64].map((n) => [symmetric(n, n), n]);
    const diag = new Float64Array(25);
    [3, -1, 3, 0, 2].forEach((v, i) => (diag[i * 5 + i] = v));
    cases.push([diag, 5]);
    const u = [1, 2, -3, 0.5];
    cases.push([Float64Array.from({ length: 16 }, (_, k) => u[Math.floor(k / 4)]! * u[k % 4]!), 4]);
    cases.push([new Float64Array(9), 3]);
    for (const [g, n] of cases) {
      const got = symmetricEigenvalues(g, n);
      const want = mlEigenvalues(g, n);
      const scale = Math.max(1, ...want.map(Math.abs));
      want.forEach((w, i) => expect(Math.abs(got[i]! - w)).toBeLessThan(1e-12 * scale));
    }
  });

  it("tridiagonalise preserves the eigenvalues and the Frobenius norm", () => {
    const g = symmetric(10, 4);
    const { d, e } = tridiagonalise(g, 10);
    let fro = 0;
    for (const x of g) fro += x * x;
    let tri = 0;
    for (const x of d) tri += x * x;
    for (const x of e) tri += 2 * x * x;
    expect(tri).toBeCloseTo(fro, 12);
  });

  it("cholesky reconstructs G and refuses singular matrices", () => {
    const next = lcg(9);
    const X = Float64Array.from({ length: 20 * 6 }, next);
    const G = product(transpose(X, 20, 6), X, 6, 20, 6);
    const L = cholesky(G, 6)!;
    const LLt = product(L, transpose(L, 6, 6), 6, 6, 6);
    LLt.forEach((v, i) => expect(v).toBeCloseTo(G[i]!, 12));
    for (let i = 0; i < 6; i++) for (let j = i + 1; j < 6; j++) expect(L[i * 6 + j]).toBe(0);
    // rank 1
    expect(cholesky(Float64Array.from([1, 2, 2, 4]), 2)).toBeUndefined();
    expect(cholesky(new Float64Array(4), 2)).toBeUndefined();
  });

  it("smallSvd and symmetricEigen reconstruct their input", () => {
    const next = lcg(2);
    const M = Float64Array.from({ length: 5 * 3 }, next);
    const s = smallSvd(M, 5, 3);
    const US = Float64Array.from(s.U, (u, i) => u * s.s[i % 3]!);
    product(US, transpose(s.V, 3, 3), 5, 3, 3).forEach((v, i) => expect(v).toBeCloseTo(M[i]!, 12));
    const g = symmetric(6, 3);
    const e = symmetricEigen(g, 6);
    for (let j = 0; j < 5; j++) expect(e.values[j]!).toBeGreaterThanOrEqual(e.values[j + 1]!);
    const VL = Float64Array.from(e.vectors, (v, i) => v * e.values[i % 6]!);
    product(VL, transpose(e.vectors, 6, 6), 6, 6, 6).forEach((v, i) => expect(v).toBeCloseTo(g[i]!, 12));
  });
});
