/**
 * Eigenvalues (no vectors) of a small dense symmetric matrix, fast enough to run once per
 * module of a 560-module adapter: Householder reduction to tridiagonal form (≈ 4n³/3 flops on
 * flat Float64Arrays, no per-element method calls), then implicit QR steps on the tridiagonal
 * (values only: O(n) per step). Accurate to ~ε·‖A‖ per eigenvalue.
 */

/** QR with the Wilkinson shift needs 2–3 steps per eigenvalue; this cap only stops a pathological loop. */
const MAX_QR_STEPS_PER_VALUE = 30;

/**
 * Tridiagonal form of a symmetric matrix: diagonal d[n], off-diagonal e[n−1]. Only the lower
 * triangle is stored and updated (the symmetric matrix–vector product reads each entry once
 * for both of its positions), which halves the work of the trailing updates.
 */
export function tridiagonalise(data: ArrayLike<number>, n: number): { d: Float64Array; e: Float64Array } {
  // lower triangle of a copy; symmetrise so a Gram's last-bit asymmetry is harmless
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i * n + j] = 0.5 * (data[i * n + j]! + data[j * n + i]!);
  const d = new Float64Array(n);
  const e = new Float64Array(Math.max(n - 1, 0));
  const v = new Float64Array(n);
  const p = new Float64Array(n);
  for (let k = 0; k < n - 2; k++) {
    // Householder vector for column k below the diagonal: H = I − β·v·vᵀ maps x to α·e₁
    let norm2 = 0;
    for (let i = k + 1; i < n; i++) norm2 += a[i * n + k]! * a[i * n + k]!;
    const x0 = a[(k + 1) * n + k]!;
    const norm = Math.sqrt(norm2);
    if (norm === 0 || norm2 === x0 * x0) {
      // already tridiagonal in this column (or zero): no reflection needed
      e[k] = x0;
      continue;
    }
    const alpha = x0 > 0 ? -norm : norm;
    for (let i = k + 1; i < n; i++) v[i] = a[i * n + k]!;
    v[k + 1] = x0 - alpha;
    let vv = 0;
    for (let i = k + 1; i < n; i++) vv += v[i]! * v[i]!;
    const beta = 2 / vv;
    // p = β·A₂₂·v from the lower triangle ; K = β/2·vᵀp ; q = p − K·v ; A₂₂ ← A₂₂ − v·qᵀ − q·vᵀ
    p.fill(0, k + 1, n);
    for (let i = k + 1; i < n; i++) {
      const row = i * n;
      const vi = v[i]!;
      let s = a[row + i]! * vi;
      for (let j = k + 1; j < i; j++) {
        const aij = a[row + j]!;
        s += aij * v[j]!;
        p[j]! += aij * vi;
      }
      p[i]! += s;
    }
    let vp = 0;
    for (let i = k + 1; i < n; i++) {
      p[i] = beta * p[i]!;
      vp += v[i]! * p[i]!;
    }
    const K = 0.5 * beta * vp;
    for (let i = k + 1; i < n; i++) p[i] = p[i]! - K * v[i]!;
    for (let i = k + 1; i < n; i++) {
      const row = i * n;
      const vi = v[i]!;
      const qi = p[i]!;
      for (let j = k + 1; j <= i; j++) a[row + j] = a[row + j]! - vi * p[j]! - qi * v[j]!;
    }
    e[k] = alpha;
  }
  for (let i = 0; i < n; i++) d[i] = a[i * n + i]!;
  if (n >= 2) e[n - 2] = a[(n - 1) * n + (n - 2)]!;
  return { d, e };
}

/**
 * All eigenvalues of the symmetric tridiagonal (d, e), descending: implicit symmetric QR steps
 * with the Wilkinson shift (Golub & Van Loan, Alg. 8.3.2), values only, so O(n) per step.
 * An off-diagonal is deflated once it is below ε·(|d_i| + |d_{i+1}|).
 */
export function tridiagonalEigenvalues(d0: Float64Array, e0: Float64Array): Float64Array {
  const n = d0.length;
  const d = Float64Array.from(d0);
  const e = Float64Array.from(e0);
  const small = (i: number) => Math.abs(e[i]!) <= Number.EPSILON * (Math.abs(d[i]!) + Math.abs(d[i + 1]!));
  let steps = 0;
  let hi = n - 1;
  while (hi > 0) {
    if (small(hi - 1)) {
      e[hi - 1] = 0;
      hi--;
      continue;
    }
    if (++steps > MAX_QR_STEPS_PER_VALUE * n) throw new Error("tridiagonal QR did not converge");
    let lo = hi - 1;
    while (lo > 0 && !small(lo - 1)) lo--;
    // Wilkinson shift: the eigenvalue of the trailing 2×2 block closer to d[hi]
    const dd = (d[hi - 1]! - d[hi]!) / 2;
    const bb = e[hi - 1]!;
    const den = dd + (dd >= 0 ? 1 : -1) * Math.hypot(dd, bb);
    const mu = den === 0 ? d[hi]! : d[hi]! - (bb * bb) / den;
    let x = d[lo]! - mu;
    let z = e[lo]!;
    for (let k = lo; k < hi; k++) {
      // rotation in the (k, k+1) plane that zeroes z against x (the shift, then the bulge)
      // sqrt, not Math.hypot: hypot is several times slower in V8, and these values are nowhere near overflow
      const r = Math.sqrt(x * x + z * z);
      const c = r === 0 ? 1 : x / r;
      const sn = r === 0 ? 0 : -z / r;
      if (k > lo) e[k - 1] = r;
      const a = d[k]!;
      const b = e[k]!;
      const cc = d[k + 1]!;
      d[k] = a * c * c - 2 * b * c * sn + cc * sn * sn;
      d[k + 1] = a * sn * sn + 2 * b * c * sn + cc * c * c;
      e[k] = (a - cc) * c * sn + b * (c * c - sn * sn);
      if (k < hi - 1) {
        z = -sn * e[k + 1]!;
        e[k + 1] = c * e[k + 1]!;
        x = e[k]!;
      }
    }
  }
  return d.sort().reverse();
}

/** Eigenvalues of a small dense symmetric matrix [n, n] row-major, descending (numpy.linalg.eigvalsh, reversed). */
export function symmetricEigenvalues(data: ArrayLike<number>, n: number): Float64Array {
  if (data.length !== n * n) throw new Error(`symmetricEigenvalues: expected ${n * n} values, got ${data.length}`);
  if (n === 0) return new Float64Array(0);
  const { d, e } = tridiagonalise(data, n);
  return tridiagonalEigenvalues(d, e);
}
