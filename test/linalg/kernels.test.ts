import { afterAll, describe, expect, it } from "vitest";
import { bmm, congruence, gemm, gram, gram64, loraGrams, matmul, releaseKernels, SPLIT_GRAM_MIN_RANK } from "../../src/linalg/kernels";
import { lcg, randomF32, transpose } from "./reference";

/** float32 GEMM vs float64 loops: relative error ~ 1e-7·√k. */
const F32_TOL = 1e-5;

function ref(x: ArrayLike<number>, y: ArrayLike<number>, m: number, k: number, n: number): Float64Array {
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let t = 0; t < k; t++) for (let j = 0; j < n; j++) out[i * n + j]! += x[i * k + t]! * y[t * n + j]!;
  return out;
}

function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number) {
  expect(got.length).toBe(want.length);
  let scale = 0;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  for (let i = 0; i < want.length; i++) expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(tol * scale);
}

describe("ORT kernels", () => {
  afterAll(releaseKernels);
  const next = lcg(7);

  it("matmul matches a float64 loop, for several shapes through one cached session", async () => {
    for (const [m, k, n] of [[5, 7, 3], [33, 2, 40], [1, 64, 1]] as const) {
      const x = randomF32(m * k, next);
      const y = randomF32(k * n, next);
      const z = await matmul({ data: x, rows: m, cols: k }, { data: y, rows: k, cols: n });
      expect([z.rows, z.cols]).toEqual([m, n]);
      expectClose(z.data, ref(x, y, m, k, n), F32_TOL);
    }
  });

  it("gemm reads transposed operands in place", async () => {
    const [m, k, n] = [6, 9, 4];
    const xt = randomF32(k * m, next); // X stored as [k, m]
    const yt = randomF32(n * k, next); // Y stored as [n, k]
    const x = transpose(xt, k, m);
    const y = transpose(yt, n, k);
    const z = await gemm({ data: xt, rows: k, cols: m }, { data: yt, rows: n, cols: k }, { transA: true, transB: true });
    expect([z.rows, z.cols]).toEqual([m, n]);
    expectClose(z.data, ref(x, y, m, k, n), F32_TOL);
    await expect(gemm({ data: xt, rows: k, cols: m }, { data: yt, rows: n, cols: k })).rejects.toThrow(/inner dims/);
  });

  it("gram and gram64 give XᵀX and XXᵀ; gram64 in float64", async () => {
    const [m, n] = [50, 6];
    const x = randomF32(m * n, next);
    const want = ref(transpose(x, m, n), x, n, m, n);
    const g = await gram({ data: x, rows: m, cols: n });
    expectClose(g.data, want, F32_TOL);
    const g64 = await gram64({ data: x, rows: m, cols: n }, "cols");
    expect(g64.data).toBeInstanceOf(Float64Array);
    expectClose(g64.data, want, 1e-13);
    const gr = await gram64({ data: x, rows: m, cols: n }, "rows");
    expect([gr.rows, gr.cols]).toEqual([m, m]);
    expectClose(gr.data, ref(x, transpose(x, m, n), m, n, m), 1e-13);
  });

  it("loraGrams gives BᵀB and A·Aᵀ in one run, split and unsplit, even and odd ranks", async () => {
    // odd r: unequal halves of A; r below the split threshold: the two-run path
    for (const [out, r, inf] of [[70, 64, 90], [41, SPLIT_GRAM_MIN_RANK + 1, 23], [12, SPLIT_GRAM_MIN_RANK - 1, 30], [3, 1, 5]] as const) {
      const b = randomF32(out * r, next);
      const a = randomF32(r * inf, next);
      // A with an offset into a larger buffer, as io hands out views: the halves must still line up
      const padded = new Float32Array(r * inf + 7);
      padded.set(a, 7);
      const { GB, GA } = await loraGrams({ data: b, rows: out, cols: r }, { data: padded.subarray(7), rows: r, cols: inf });
      expectClose(GB, ref(transpose(b, out, r), b, r, out, r), F32_TOL);
      expectClose(GA, ref(a, transpose(a, r, inf), r, inf, r), F32_TOL);
      // split: exactly symmetric, the lower block of GA is the mirrored upper block
      if (r >= SPLIT_GRAM_MIN_RANK) for (let i = 0; i < r; i++) for (let j = 0; j < i; j++) expect(GA[i * r + j]).toBe(GA[j * r + i]);
    }
    await expect(loraGrams({ data: new Float32Array(6), rows: 3, cols: 2 }, { data: new Float32Array(9), rows: 3, cols: 3 })).rejects.toThrow(/columns but A has 3 rows/);
  });

  it("congruence gives Lᵀ·G·L in float64", async () => {
    for (const n of [1, 5, 64]) {
      const g = Float64Array.from({ length: n * n }, next);
      const l = Float64Array.from({ length: n * n }, next);
      const want = ref(transpose(l, n, n), ref(g, l, n, n, n), n, n, n);
      expectClose(await congruence(g, l, n), want, 1e-13);
    }
    await expect(congruence(new Float64Array(4), new Float64Array(9), 3)).rejects.toThrow(/congruence G/);
  });

  it("bmm multiplies each batch", async () => {
    const [b, m, k, n] = [3, 4, 5, 2];
    const x = randomF32(b * m * k, next);
    const y = randomF32(b * k * n, next);
    const z = await bmm(x, y, { batch: b, m, k, n });
    for (let i = 0; i < b; i++) {
      const want = ref(x.subarray(i * m * k, (i + 1) * m * k), y.subarray(i * k * n, (i + 1) * k * n), m, k, n);
      expectClose(z.subarray(i * m * n, (i + 1) * m * n), want, F32_TOL);
    }
  });
});
