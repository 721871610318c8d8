/**
 * The top singular directions of every module's update, kept from one audit so the next audit
 * of the same model can say how far an update turned them (sweep/drift.ts), and the principal
 * angles that measure it.
 *
 * directions.safetensors holds, per module `<name>`:
 *   `<name>.U`     F16 [out, k]  top-k left singular vectors of ΔW (columns)
 *   `<name>.V`     F16 [in, k]   top-k right singular vectors
 *   `<name>.sigma` F32 [k]       their singular values, descending
 *   `<name>.stats` F32 [3]       σ₁, stable rank ‖ΔW‖²_F/σ₁², ‖ΔW‖_F of the whole update
 * with `__metadata__` {format: "delta-audit-directions", version: "1"}. k is small (default 4):
 * the file is Σ(out + in)·k·2 bytes, about 4 MB for a 0.5B-parameter model. The vectors are a
 * rank-k sketch of the update itself, so the file is as confidential as the model. They are kept
 * by scan's one delta pass (delta/pass.ts deltaPass, option `directions`), from the same
 * decomposition as the spectrum and the rank-k adapter.
 */
import { InputError } from "../errors";
import { SafetensorsFile, writeSafetensors, type TensorData } from "../io/safetensors";
import { smallSvd } from "../linalg/small-svd";
import { leadingComponents } from "./ladder";
import type { DeltaStep } from "./walk";

/** The file `sweep run` has the scan write beside report.json. */
export const DIRECTIONS_FILE = "directions.safetensors";
/** Directions kept per module: a few are enough to see a rotation, and keep the file small. */
export const DEFAULT_DIRECTIONS_K = 4;
/** More than this is a second copy of the adapter, not a fingerprint of it. */
export const MAX_DIRECTIONS_K = 16;
/** A model has a few thousand linears at most; more is not a directions file we wrote. */
const MAX_DIRECTION_MODULES = 100_000;
const FORMAT = "delta-audit-directions";
const FORMAT_VERSION = "1";
/**
 * A column whose norm drops below this share of its original norm after removing the columns
 * before it is dependent on them (f16 rounding of an orthonormal set stays far above it).
 */
const DEPENDENT_COLUMN = 1e-6;
/**
 * Singular values below this share of σ₁ are rounding, not directions of the update (the float32
 * factors of a low-rank ΔW leave its null directions at about 1e-7·σ₁): they are not kept.
 */
const NEGLIGIBLE_SIGMA = 1e-5;

/** One module's top-k directions (U, V with orthonormal columns, float64). */
export interface ModuleDirections {
  name: string;
  /** [out, in] */
  shape: [number, number];
  /** directions kept (the columns of U and V) */
  k: number;
  /** descending */
  sigma: Float64Array;
  /** [out, k] row-major */
  U: Float64Array;
  /** [in, k] row-major */
  V: Float64Array;
  spectralNorm: number;
  stableRank: number;
  frobenius: number;
}

function columnNorm(X: ArrayLike<number>, rows: number, cols: number, j: number): number {
  let s = 0;
  for (let i = 0; i < rows; i++) s += X[i * cols + j]! ** 2;
  return Math.sqrt(s);
}

/** A directions k the pass accepts: 1 ≤ k ≤ MAX_DIRECTIONS_K. */
export function checkDirectionsK(k: number): void {
  if (!Number.isInteger(k) || k < 1 || k > MAX_DIRECTIONS_K) throw new InputError(`expected 1..${MAX_DIRECTIONS_K}, got ${k}`, "directions k");
}

/**
 * One module's top-k directions from a step of the delta walk (delta/pass.ts deltaPass keeps
 * them while it walks): the walk's rank-K factors (K ≥ k) carry √σ on each side, U·√Σ and √Σ·Vᵀ,
 * in descending σ, so each side's column norm is √σ and the first k columns are the top k. A
 * module of rank r < k has only r (the rest is zero padding); a full fine-tune's unchanged modules
 * have none (no factors): undefined.
 */
export function stepDirections(step: DeltaStep, k: number): ModuleDirections | undefined {
  if (step.kind !== "module" || !step.truncated) return undefined;
  const t = leadingComponents(step.truncated, Math.min(k, step.truncated.rank));
  const [rows, cols] = [t.outFeatures, t.inFeatures];
  const keep: number[] = [];
  const sigma: number[] = [];
  let top = 0;
  for (let j = 0; j < t.rank; j++) {
    const b = columnNorm(t.B, rows, t.rank, j);
    const a = columnNorm(t.A.subarray(j * cols, (j + 1) * cols), cols, 1, 0);
    top = Math.max(top, a * b);
    // padding columns (a module of rank below k) are zero
    if (b > 0 && a > 0 && Number.isFinite(a * b)) {
      keep.push(j);
      sigma.push(a * b);
    }
  }
  const kept = keep.filter((_, c) => sigma[c]! >= NEGLIGIBLE_SIGMA * top);
  if (kept.length === 0) return undefined;
  const kk = kept.length;
  const U = new Float64Array(rows * kk);
  const V = new Float64Array(cols * kk);
  kept.forEach((j, c) => {
    for (let i = 0; i < rows; i++) U[i * kk + c] = t.B[i * t.rank + j]!;
    for (let i = 0; i < cols; i++) V[i * kk + c] = t.A[j * cols + i]!;
  });
  // the walk's vectors are orthonormal to float32 rounding; float64 Gram–Schmidt makes them so exactly
  const qu = orthonormalColumns(U, rows, kk);
  const qv = orthonormalColumns(V, cols, kk);
  const k2 = Math.min(qu.k, qv.k);
  if (k2 === 0) return undefined;
  const s = step.spectrum;
  return {
    name: t.name,
    shape: [rows, cols],
    k: k2,
    sigma: Float64Array.from(sigma.filter((x) => x >= NEGLIGIBLE_SIGMA * top).slice(0, k2)),
    U: leadingColumns(qu.Q, rows, qu.k, k2),
    V: leadingColumns(qv.Q, cols, qv.k, k2),
    spectralNorm: s.spectralNorm,
    stableRank: s.stableRank,
    frobenius: s.frobenius,
  };
}

/** The first `k` of the `cols` columns of X [rows, cols] (X itself when k = cols). */
export function leadingColumns(X: Float64Array, rows: number, cols: number, k: number): Float64Array {
  if (k === cols) return X;
  const out = new Float64Array(rows * k);
  for (let i = 0; i < rows; i++) for (let j = 0; j < k; j++) out[i * k + j] = X[i * cols + j]!;
  return out;
}

/** Write directions.safetensors (atomically: io/safetensors.ts writes a temp file and renames it into place). */
export async function writeDirections(path: string, modules: readonly ModuleDirections[]): Promise<void> {
  const tensors: TensorData[] = [];
  for (const m of modules) {
    tensors.push(
      { name: `${m.name}.U`, dtype: "F16", shape: [m.shape[0], m.k], data: Float32Array.from(m.U) },
      { name: `${m.name}.V`, dtype: "F16", shape: [m.shape[1], m.k], data: Float32Array.from(m.V) },
      { name: `${m.name}.sigma`, dtype: "F32", shape: [m.k], data: Float32Array.from(m.sigma) },
      { name: `${m.name}.stats`, dtype: "F32", shape: [3], data: Float32Array.of(m.spectralNorm, m.stableRank, m.frobenius) },
    );
  }
  await writeSafetensors(path, tensors, { format: FORMAT, version: FORMAT_VERSION });
}

const PARTS = ["U", "V", "sigma", "stats"] as const;

/**
 * Read a directions file. It arrives from an earlier CI run (a branch, an artifact), so every
 * shape is checked and a bad file is an InputError naming it; the vectors are orthonormalised
 * again in float64 (f16 storage leaves them orthonormal to about 1e-3).
 */
export async function readDirections(path: string): Promise<ModuleDirections[]> {
  const file = await SafetensorsFile.open(path);
  const bad = (what: string): never => {
    throw new InputError(`not a directions file: ${what}`, path);
  };
  try {
    if (file.metadata.format !== FORMAT || file.metadata.version !== FORMAT_VERSION) bad(`metadata format/version must be ${FORMAT} ${FORMAT_VERSION}`);
    const modules = new Map<string, Set<string>>();
    for (const name of file.names()) {
      const dot = name.lastIndexOf(".");
      const part = name.slice(dot + 1);
      if (dot <= 0 || !(PARTS as readonly string[]).includes(part)) bad(`unexpected tensor ${JSON.stringify(name.slice(0, 100))}`);
      const module = name.slice(0, dot);
      if (!modules.has(module)) modules.set(module, new Set());
      modules.get(module)!.add(part);
    }
    if (modules.size > MAX_DIRECTION_MODULES) bad(`${modules.size} modules, at most ${MAX_DIRECTION_MODULES}`);
    const out: ModuleDirections[] = [];
    for (const [name, parts] of modules) {
      if (parts.size !== PARTS.length) bad(`module ${JSON.stringify(name.slice(0, 100))} lacks one of ${PARTS.join(", ")}`);
      const shapeOf = (p: string) => file.info(`${name}.${p}`)!.shape;
      const [u, v, s, st] = [shapeOf("U"), shapeOf("V"), shapeOf("sigma"), shapeOf("stats")];
      const k = s[0] ?? 0;
      const ok = u.length === 2 && v.length === 2 && s.length === 1 && st.length === 1 && st[0] === 3 && k >= 1 && k <= MAX_DIRECTIONS_K && u[1] === k && v[1] === k && u[0]! >= k && v[0]! >= k;
      if (!ok) bad(`module ${JSON.stringify(name.slice(0, 100))}: shapes U ${JSON.stringify(u)}, V ${JSON.stringify(v)}, sigma ${JSON.stringify(s)}, stats ${JSON.stringify(st)} do not fit together`);
      const read = async (p: string) => Float64Array.from(await file.read(`${name}.${p}`));
      const [U, V, sigma, stats] = [await read("U"), await read("V"), await read("sigma"), await read("stats")];
      for (const x of [U, V, sigma, stats]) if (!x.every(Number.isFinite)) bad(`module ${JSON.stringify(name.slice(0, 100))} holds a non-finite value`);
      const rows = u[0]!;
      const cols = v[0]!;
      const qu = orthonormalColumns(U, rows, k);
      const qv = orthonormalColumns(V, cols, k);
      if (qu.k !== k || qv.k !== k) bad(`module ${JSON.stringify(name.slice(0, 100))}: its directions are not independent`);
      out.push({ name, shape: [rows, cols], k, sigma, U: qu.Q, V: qv.Q, spectralNorm: stats[0]!, stableRank: stats[1]!, frobenius: stats[2]! });
    }
    return out;
  } finally {
    await file.close();
  }
}

/**
 * Orthonormal columns spanning those of X [rows, cols] (modified Gram–Schmidt, done twice:
 * "twice is enough" for full working precision); dependent columns are dropped.
 */
export function orthonormalColumns(X: ArrayLike<number>, rows: number, cols: number): { Q: Float64Array; k: number } {
  const cs: Float64Array[] = [];
  for (let j = 0; j < cols; j++) {
    const c = new Float64Array(rows);
    for (let i = 0; i < rows; i++) c[i] = X[i * cols + j]!;
    const before = columnNorm(c, rows, 1, 0);
    if (!(before > 0)) continue;
    for (let pass = 0; pass < 2; pass++) {
      for (const q of cs) {
        let d = 0;
        for (let i = 0; i < rows; i++) d += q[i]! * c[i]!;
        for (let i = 0; i < rows; i++) c[i]! -= d * q[i]!;
      }
    }
    const after = columnNorm(c, rows, 1, 0);
    if (after <= DEPENDENT_COLUMN * before) continue;
    for (let i = 0; i < rows; i++) c[i]! /= after;
    cs.push(c);
  }
  const k = cs.length;
  const Q = new Float64Array(rows * k);
  cs.forEach((c, j) => {
    for (let i = 0; i < rows; i++) Q[i * k + j] = c[i]!;
  });
  return { Q, k };
}

/**
 * The principal angles (radians, ascending) between the column spaces of A [n, p] and B [n, q]
 * (scipy.linalg.subspace_angles, reversed to ascending): min(p, q) of them. Cosines come from
 * the SVD of QAᵀQB and sines from the SVD of QB − QA·(QAᵀQB); each angle is taken from the one
 * that is accurate for it (Björck & Golub; Knyazev & Argentati): acos loses small angles to
 * rounding (cos θ = 1 − θ²/2), asin loses angles near 90°.
 */
export function principalAngles(A: ArrayLike<number>, p: number, B: ArrayLike<number>, q: number, n: number): Float64Array {
  let qa = orthonormalColumns(A, n, p);
  let qb = orthonormalColumns(B, n, q);
  // the sines are those of the smaller space's directions against the larger space
  if (qb.k > qa.k) [qa, qb] = [qb, qa];
  const [ka, kb] = [qa.k, qb.k];
  if (kb === 0) return new Float64Array(0);
  const M = new Float64Array(ka * kb);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < ka; a++) {
      const x = qa.Q[i * ka + a]!;
      if (x === 0) continue;
      for (let b = 0; b < kb; b++) M[a * kb + b]! += x * qb.Q[i * kb + b]!;
    }
  }
  const cos = smallSvd(M, ka, kb).s;
  const R = new Float64Array(n * kb);
  for (let i = 0; i < n; i++) {
    for (let b = 0; b < kb; b++) {
      let s = qb.Q[i * kb + b]!;
      for (let a = 0; a < ka; a++) s -= qa.Q[i * ka + a]! * M[a * kb + b]!;
      R[i * kb + b] = s;
    }
  }
  const sin = smallSvd(R, n, kb).s;
  const angles = new Float64Array(kb);
  for (let i = 0; i < kb; i++) {
    const c = Math.min(1, Math.max(0, cos[i]!));
    const s = Math.min(1, Math.max(0, sin[kb - 1 - i]!));
    angles[i] = c * c >= 0.5 ? Math.asin(s) : Math.acos(c);
  }
  // the two estimates can cross by rounding at 45°: keep them ascending
  return angles.sort();
}
