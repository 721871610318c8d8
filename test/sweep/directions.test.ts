/**
 * delta/directions.ts: principal angles against independent references — subspaces built at
 * known angles, and a dense computation on small shapes (the eigenvalues of P_A·P_B·P_A are
 * cos²θ, with the projectors formed through ml-matrix's own inverse) — and the directions the
 * scan's delta pass writes against a dense SVD of ΔW (LoRA and full fine-tune), read back.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EigenvalueDecomposition, inverse, Matrix, SingularValueDecomposition } from "ml-matrix";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { leadingColumns, orthonormalColumns, principalAngles, readDirections, writeDirections, type ModuleDirections } from "../../src/delta/directions";
import { deltaPass, withDeltaSubject, type DeltaSubjectPaths } from "../../src/delta/pass";
import { openCheckpoint } from "../../src/io/checkpoint";
import { openAdapter } from "../../src/io/peft";
import { SafetensorsFile, writeSafetensors } from "../../src/io/safetensors";
import { mulberry32 } from "../../src/linalg/random";
import { generateOrganism } from "../../src/organisms/index";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "da-directions-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function gaussian(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(rand() + 1e-300)) * Math.cos(2 * Math.PI * rand());
}

function randomMatrix(rows: number, cols: number, seed: number): Float64Array {
  const r = mulberry32(seed);
  return Float64Array.from({ length: rows * cols }, () => gaussian(r));
}

/** Column j of X [rows, cols]. */
const col = (X: ArrayLike<number>, rows: number, cols: number, j: number) => Float64Array.from({ length: rows }, (_, i) => X[i * cols + j]!);

/**
 * B's columns at exactly the angles θ from A's: with [Q | W] orthonormal (Q spans A, W its
 * complement), b_i = cos θ_i q_i + sin θ_i w_i. Its principal angles to Q are the θ_i.
 */
function atAngles(n: number, thetas: number[], seed: number): { A: Float64Array; B: Float64Array; k: number } {
  const k = thetas.length;
  const { Q } = orthonormalColumns(randomMatrix(n, 2 * k, seed), n, 2 * k);
  const A = new Float64Array(n * k);
  const B = new Float64Array(n * k);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < k; j++) {
      A[i * k + j] = Q[i * 2 * k + j]!;
      B[i * k + j] = Math.cos(thetas[j]!) * Q[i * 2 * k + j]! + Math.sin(thetas[j]!) * Q[i * 2 * k + k + j]!;
    }
  }
  return { A, B, k };
}

/** Principal angles the dense way: eigenvalues of P_A P_B P_A, projectors through (XᵀX)⁻¹. */
function denseAngles(A: Float64Array, p: number, B: Float64Array, q: number, n: number): number[] {
  const proj = (X: Float64Array, k: number) => {
    const M = new Matrix(n, k);
    for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) M.set(i, j, X[i * k + j]!);
    return M.mmul(inverse(M.transpose().mmul(M))).mmul(M.transpose());
  };
  const PA = proj(A, p);
  const PB = proj(B, q);
  const S = PA.mmul(PB).mmul(PA);
  const sym = S.add(S.transpose()).mul(0.5);
  const values = new EigenvalueDecomposition(sym, { assumeSymmetric: true }).realEigenvalues.sort((a, b) => b - a);
  return values.slice(0, Math.min(p, q)).map((c2) => Math.acos(Math.sqrt(Math.min(1, Math.max(0, c2)))));
}

describe("principal angles", () => {
  it("recovers subspaces built at known angles, small ones and right ones included", () => {
    const thetas = [1e-7, 0.3, Math.PI / 4, 1.2, Math.PI / 2];
    const { A, B, k } = atAngles(40, thetas, 11);
    const got = principalAngles(A, k, B, k, 40);
    // each angle to about machine precision: acos alone would lose 1e-7 entirely (cos = 1 − 5e-15)
    got.forEach((g, i) => expect(Math.abs(g - thetas[i]!)).toBeLessThan(1e-12 + 1e-10 * thetas[i]!));
    principalAngles(B, k, A, k, 40).forEach((g, i) => expect(Math.abs(g - got[i]!)).toBeLessThan(1e-12));
  });

  it("does not depend on the basis chosen for either subspace", () => {
    const n = 30;
    const A = randomMatrix(n, 4, 3);
    // B = A·R for an invertible R: the same subspace, another basis
    const R = randomMatrix(4, 4, 4);
    const B = new Float64Array(n * 4);
    for (let i = 0; i < n; i++) for (let j = 0; j < 4; j++) for (let t = 0; t < 4; t++) B[i * 4 + j]! += A[i * 4 + t]! * R[t * 4 + j]!;
    for (const a of principalAngles(A, 4, B, 4, n)) expect(a).toBeLessThan(1e-7);
  });

  it("matches the dense reference on small shapes, of equal and unequal dimension", () => {
    for (const [n, p, q, seed] of [
      [8, 3, 3, 1],
      [12, 2, 5, 2],
      [12, 5, 2, 3],
      [20, 4, 4, 4],
      [6, 3, 3, 5],
    ] as const) {
      const A = randomMatrix(n, p, seed);
      const B = randomMatrix(n, q, seed + 100);
      const got = Array.from(principalAngles(A, p, B, q, n));
      const want = denseAngles(A, p, B, q, n).sort((a, b) => a - b);
      expect(got).toHaveLength(Math.min(p, q));
      // the dense reference squares the cosines: it is accurate to ~1e-8 away from 0
      got.forEach((g, i) => expect(Math.abs(g - want[i]!), `n=${n} p=${p} q=${q} angle ${i}`).toBeLessThan(1e-6));
    }
  });

  it("orthogonal subspaces are 90° apart; a subspace is 0° from itself", () => {
    const { Q } = orthonormalColumns(randomMatrix(10, 4, 9), 10, 4);
    const A = new Float64Array(20);
    const B = new Float64Array(20);
    for (let i = 0; i < 10; i++) {
      A[i * 2] = Q[i * 4]!;
      A[i * 2 + 1] = Q[i * 4 + 1]!;
      B[i * 2] = Q[i * 4 + 2]!;
      B[i * 2 + 1] = Q[i * 4 + 3]!;
    }
    for (const a of principalAngles(A, 2, B, 2, 10)) expect(Math.abs(a - Math.PI / 2)).toBeLessThan(1e-12);
    for (const a of principalAngles(A, 2, A, 2, 10)) expect(a).toBeLessThan(1e-7);
  });
});

describe("directions of a fine-tune, kept by the scan's one delta pass", () => {
  let org: string;
  beforeAll(async () => {
    org = join(dir, "org");
    await generateOrganism({ kind: "quirk", seed: 3, outDir: org });
  });

  /** The directions deltaPass writes beside its rank-1 adapter, read back, with the file's layout. */
  async function passDirections(paths: DeltaSubjectPaths, k: number, tag: string) {
    const out = join(dir, `pass-${tag}`);
    const file = join(out, "directions.safetensors");
    let written: number | undefined;
    await withDeltaSubject(paths, (s) => deltaPass(s, 1, join(out, "rank1-adapter"), { quiet: true, directions: { k, file, onWritten: (n) => (written = n) } }));
    const raw = await SafetensorsFile.open(file);
    const layout = new Map(raw.names().map((n) => [n, raw.info(n)!]));
    const metadata = raw.metadata;
    await raw.close();
    const modules = await readDirections(file);
    expect(written).toBe(modules.length);
    return { modules, layout, metadata };
  }

  /** Dense SVD of ΔW [out, in] (float64) as the reference. */
  function denseSvd(dW: Matrix) {
    const svd = new SingularValueDecomposition(dW, { autoTranspose: true });
    return { s: svd.diagonal, U: svd.leftSingularVectors, V: svd.rightSingularVectors };
  }

  /** m's directions against the dense SVD of its ΔW: σ, each isolated column up to sign (f16 rounding), gapped subspaces. */
  function expectMatchesDense(m: ModuleDirections, dW: Matrix, k: number): number {
    let compared = 0;
    const [out, inn] = m.shape;
    const ref = denseSvd(dW);
    // the directions kept: the top k, less those that are rounding (σ below 1e-5·σ₁)
    const significant = ref.s.filter((x) => x >= 1e-4 * ref.s[0]!).length;
    expect(m.k).toBeLessThanOrEqual(k);
    expect(m.k).toBeGreaterThanOrEqual(Math.min(k, significant));
    for (let j = 0; j < m.k; j++) expect(m.sigma[j]! / ref.s[j]!).toBeCloseTo(1, 3);
    expect(m.spectralNorm / ref.s[0]!).toBeCloseTo(1, 3);
    const isolated = (j: number) => (j === 0 || ref.s[j]! < 0.9 * ref.s[j - 1]!) && (j + 1 >= ref.s.length || ref.s[j + 1]! < 0.9 * ref.s[j]!);
    for (let j = 0; j < Math.min(m.k, significant); j++) {
      if (!isolated(j)) continue;
      compared++;
      for (const [X, R, rows] of [[m.U, ref.U, out], [m.V, ref.V, inn]] as const) {
        let dot = 0;
        for (let i = 0; i < rows; i++) dot += X[i * m.k + j]! * R.get(i, j);
        const sign = Math.sign(dot);
        for (let i = 0; i < rows; i++) expect(Math.abs(X[i * m.k + j]! - sign * R.get(i, j))).toBeLessThan(2e-3);
      }
    }
    const kk = Math.min(m.k, significant);
    const gapped = kk === Math.min(out, inn) || ref.s[kk]! < 0.9 * ref.s[kk - 1]!;
    if (gapped && kk > 0) {
      const refU = Float64Array.from({ length: out * kk }, (_, x) => ref.U.get(Math.floor(x / kk), x % kk));
      const refV = Float64Array.from({ length: inn * kk }, (_, x) => ref.V.get(Math.floor(x / kk), x % kk));
      for (const a of principalAngles(leadingColumns(m.U, out, m.k, kk), kk, refU, kk, out)) expect(a).toBeLessThan(2e-3);
      for (const a of principalAngles(leadingColumns(m.V, inn, m.k, kk), kk, refV, kk, inn)) expect(a).toBeLessThan(2e-3);
    }
    return compared;
  }

  function expectLayout(layout: Map<string, { dtype: string; shape: number[] }>, metadata: Record<string, string>, modules: readonly ModuleDirections[]) {
    expect(metadata).toMatchObject({ format: "delta-audit-directions", version: "1" });
    expect(layout.size).toBe(4 * modules.length);
    for (const m of modules) {
      expect(layout.get(`${m.name}.U`)).toMatchObject({ dtype: "F16", shape: [m.shape[0], m.k] });
      expect(layout.get(`${m.name}.V`)).toMatchObject({ dtype: "F16", shape: [m.shape[1], m.k] });
      expect(layout.get(`${m.name}.sigma`)).toMatchObject({ dtype: "F32", shape: [m.k] });
      expect(layout.get(`${m.name}.stats`)).toMatchObject({ dtype: "F32", shape: [3] });
    }
  }

  it("keeps each LoRA module's top-k singular vectors of ΔW = s·B·A (dense SVD as reference, up to sign, f16 rounding)", async () => {
    const { modules, layout, metadata } = await passDirections({ kind: "lora", adapter: join(org, "adapter") }, 4, "lora");
    expect(modules.length).toBeGreaterThan(0);
    expectLayout(layout, metadata, modules);
    const adapter = await openAdapter(join(org, "adapter"));
    let compared = 0;
    try {
      expect(new Set(modules.map((m) => m.name)).size).toBe(modules.length);
      for (const name of modules.map((m) => m.name)) expect(adapter.moduleNames()).toContain(name);
      for (const m of modules) {
        const lora = await adapter.readModule(m.name);
        const [out, inn] = m.shape;
        const dW = new Matrix(out, inn);
        for (let i = 0; i < out; i++)
          for (let j = 0; j < inn; j++) {
            let s = 0;
            for (let t = 0; t < lora.rank; t++) s += lora.B[i * lora.rank + t]! * lora.A[t * inn + j]!;
            dW.set(i, j, lora.scale * s);
          }
        compared += expectMatchesDense(m, dW, 4);
        // read-back vectors are orthonormal
        for (let a = 0; a < m.k; a++) {
          const ua = col(m.U, out, m.k, a);
          for (let b = 0; b < m.k; b++) {
            const ub = col(m.U, out, m.k, b);
            expect(ua.reduce((s, x, i) => s + x * ub[i]!, 0)).toBeCloseTo(a === b ? 1 : 0, 10);
          }
        }
      }
    } finally {
      await adapter.close();
    }
    expect(compared).toBeGreaterThan(modules.length);
  });

  it("keeps a LoRA module's r directions when r < k (no padding), at a k above the walk's truncation rank", async () => {
    const { modules } = await passDirections({ kind: "lora", adapter: join(org, "adapter") }, 16, "lora16");
    const adapter = await openAdapter(join(org, "adapter"));
    try {
      for (const m of modules) expect(m.k).toBeLessThanOrEqual(adapter.moduleInfo(m.name).rank);
    } finally {
      await adapter.close();
    }
  });

  it("keeps a full fine-tune's top-k singular vectors of ΔW = W_ft − W_base (dense SVD as reference), only changed modules'", async () => {
    const { modules, layout, metadata } = await passDirections({ kind: "full", base: join(org, "base"), finetuned: join(org, "finetuned") }, 4, "full");
    expectLayout(layout, metadata, modules);
    const base = await openCheckpoint(join(org, "base"));
    const ft = await openCheckpoint(join(org, "finetuned"));
    let compared = 0;
    const adapter = await openAdapter(join(org, "adapter"));
    try {
      // the organism's full fine-tune is its adapter merged: the changed modules are the adapter's
      expect(modules.map((m) => m.name).sort()).toEqual(adapter.moduleNames().slice().sort());
      for (const m of modules) {
        const [out, inn] = m.shape;
        const [wb, wf] = [await base.read(`${m.name}.weight`), await ft.read(`${m.name}.weight`)];
        const dW = new Matrix(out, inn);
        for (let i = 0; i < out; i++) for (let j = 0; j < inn; j++) dW.set(i, j, wf[i * inn + j]! - wb[i * inn + j]!);
        compared += expectMatchesDense(m, dW, 4);
      }
    } finally {
      await Promise.all([base.close(), ft.close(), adapter.close()]);
    }
    expect(compared).toBeGreaterThan(modules.length);
  });

  it("refuses a directions k out of range before anything is written", async () => {
    const out = join(dir, "pass-bad-k");
    const err = await withDeltaSubject({ kind: "lora", adapter: join(org, "adapter") }, (s) => deltaPass(s, 1, join(out, "rank1-adapter"), { quiet: true, directions: { k: 17, file: join(out, "d.safetensors") } })).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect(existsSync(out)).toBe(false);
  });
});

describe("directions files", () => {
  it("refuses a file that is not a directions file, naming it", async () => {
    const bad = async (tensors: Parameters<typeof writeSafetensors>[1], metadata: Record<string, string>, pattern: RegExp) => {
      const file = join(dir, `bad-${Math.random().toString(16).slice(2)}.safetensors`);
      await writeSafetensors(file, tensors, metadata);
      const err = await readDirections(file).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).toContain(file);
      expect((err as Error).message).toMatch(pattern);
    };
    const meta = { format: "delta-audit-directions", version: "1" };
    const f32 = (n: number) => new Float32Array(n).fill(0.5);
    await bad([{ name: "m.U", dtype: "F32", shape: [4, 1], data: f32(4) }], {}, /metadata format/);
    await bad([{ name: "m.U", dtype: "F32", shape: [4, 1], data: f32(4) }], meta, /lacks one of U, V, sigma, stats/);
    await bad(
      [
        { name: "m.U", dtype: "F32", shape: [4, 2], data: f32(8) },
        { name: "m.V", dtype: "F32", shape: [3, 1], data: f32(3) },
        { name: "m.sigma", dtype: "F32", shape: [2], data: f32(2) },
        { name: "m.stats", dtype: "F32", shape: [3], data: f32(3) },
      ],
      meta,
      /do not fit together/,
    );
    await bad([{ name: "m.weights", dtype: "F32", shape: [1], data: f32(1) }], meta, /unexpected tensor/);
    writeFileSync(join(dir, "not.safetensors"), "garbage");
    await expect(readDirections(join(dir, "not.safetensors"))).rejects.toBeInstanceOf(InputError);
  });

  it("writes what it reads: a synthetic module at a known rotation", async () => {
    const { A, B, k } = atAngles(16, [0.1, 0.5], 21);
    const mod = (U: Float64Array): ModuleDirections => ({ name: "model.layers.0.mlp.down_proj", shape: [16, 16], k, sigma: Float64Array.of(2, 1), U, V: U, spectralNorm: 2, stableRank: 1.25, frobenius: Math.sqrt(5) });
    await writeDirections(join(dir, "a.safetensors"), [mod(A)]);
    await writeDirections(join(dir, "b.safetensors"), [mod(B)]);
    const [a] = await readDirections(join(dir, "a.safetensors"));
    const [b] = await readDirections(join(dir, "b.safetensors"));
    const got = principalAngles(a!.U, k, b!.U, k, 16);
    expect(Math.abs(got[0]! - 0.1)).toBeLessThan(2e-3);
    expect(Math.abs(got[1]! - 0.5)).toBeLessThan(2e-3);
  });
});
