/**
 * Quantization of linear weights for the two ONNX Runtime routes the engine uses.
 *
 * `blocks` — com.microsoft MatMulNBits: Y = A · dequant(B)ᵀ with B [N, K] (N = out features,
 * K = in features — the checkpoint's own [out, in] layout, so rows stream straight from the
 * file without a transpose). Every row is cut into blocks of `blockSize` along K; each block
 * has one float32 scale and (asymmetric schemes) one zero point; a weight is stored as the code
 * q ∈ [0, 2^bits − 1] and read back as (q − zp)·scale. Packed input B is uint8
 * [N, ⌈K/bs⌉, bs·bits/8], codes packed low bits first along K; scales [N·⌈K/bs⌉]; 4-bit zero
 * points two per byte along the blocks of a row (first block in the low nibble), [N·⌈nb/2⌉];
 * 8-bit ones one per byte. Without a zero-point input ORT uses 2^(bits−1), which the symmetric
 * scheme relies on. A last block that K does not fill is padded with zero codes' value (exactly
 * 0 after dequantizing). Accuracy level 4 rounds activations to int8 per block of the row.
 *
 * `channels` — ONNX MatMulInteger (8 bits only): one symmetric float32 scale per output channel
 * (row n: max|w_n|/127), codes int8 in [−127, 127] stored transposed, [K, N] row-major, as
 * MatMulInteger's constant B wants them; activations are rounded to uint8 per row of A (one
 * token: step max|a|/127 around the zero point 128) by the graph (graph.ts), the product is
 * exact in int32 and scaled back by the row's and the channel's scales. Quantizing a row writes
 * one column of the packed matrix: consecutive rows touch the same cache lines, so streaming
 * rows costs no transpose pass.
 */

/**
 * MatMulNBits accuracy level 4: activations quantized to int8 per block (of the weights'
 * block size) and multiplied with integer dot products (AVX2 / AVX-512 VNNI). Levels 0–1
 * dequantize the weights to float32 on every call: 20× slower at 8 bits on a 4096×14336
 * matrix here.
 */
export const ACCURACY_LEVEL = 4;

export interface QuantScheme {
  /** which operator and layout (see the file comment) */
  layout: "blocks" | "channels";
  bits: 4 | 8;
  /** blocks: weights per block along K, a power of two in [16, 256] (MatMulNBits' rule); channels: 0 (the whole row) */
  blockSize: number;
  /**
   * asymmetric: min/max per block with a zero point (2^bits levels spread over [min, max]);
   * symmetric: scale = max|w| / (2^(bits−1) − 1), zero point implied at 2^(bits−1)
   */
  zeroPoints: boolean;
}

/** One matrix in MatMulNBits layout (see the file comment). */
export interface QuantizedMatrix {
  K: number;
  N: number;
  scheme: QuantScheme;
  packed: Uint8Array;
  scales: Float32Array;
  zeroPoints?: Uint8Array;
}

/** Weights that share one scale along a row: the block, or the whole row for `channels`. */
export const rowBlock = (K: number, s: QuantScheme) => (s.layout === "channels" ? K : s.blockSize);
export const blocksPerRow = (K: number, s: QuantScheme) => Math.ceil(K / rowBlock(K, s));
const blobBytes = (s: QuantScheme) => (s.blockSize * s.bits) / 8;
const zeroPointBytesPerRow = (K: number, s: QuantScheme) => (s.bits === 8 ? blocksPerRow(K, s) : Math.ceil(blocksPerRow(K, s) / 2));

/** Bytes the matrix occupies (codes + scales + zero points): what ORT holds for it. */
export function quantizedBytes(K: number, N: number, s: QuantScheme): number {
  if (s.layout === "channels") return N * K + 4 * N;
  const nb = blocksPerRow(K, s);
  return N * (nb * blobBytes(s) + 4 * nb + (s.zeroPoints ? zeroPointBytesPerRow(K, s) : 0));
}

/** Buffers of one quantized matrix; the caller may hand in pooled storage (see weights.ts StagingPool). */
export interface QuantBuffers {
  packed: Uint8Array;
  scales: Float32Array;
  zeroPoints?: Uint8Array;
}

export function allocQuantBuffers(K: number, N: number, s: QuantScheme, take: (floats: number) => Float32Array = (n) => new Float32Array(n)): QuantBuffers {
  const nb = blocksPerRow(K, s);
  const bytes = (n: number) => {
    const f = take(Math.ceil(n / 4));
    return new Uint8Array(f.buffer, f.byteOffset, n);
  };
  if (s.layout === "channels") return { packed: bytes(K * N), scales: take(N) };
  return {
    packed: bytes(N * nb * blobBytes(s)),
    scales: take(N * nb),
    zeroPoints: s.zeroPoints ? bytes(N * zeroPointBytesPerRow(K, s)) : undefined,
  };
}

/** A matrix of arbitrary codes in scheme `s`'s layout, for speed measurements (the kernels' speed does not depend on the values). */
export function fillerMatrix(K: number, N: number, s: QuantScheme): QuantizedMatrix {
  const buf = allocQuantBuffers(K, N, s);
  buf.packed.fill(0x5a);
  buf.scales.fill(1 / 64);
  buf.zeroPoints?.fill(s.bits === 8 ? 128 : 0x88);
  return { K, N, scheme: s, ...buf };
}

/**
 * Quantize `rows` (row-major [count, K]) into rows [row0, row0+count) of `out`. Rows arrive in
 * chunks as they are read from the checkpoint, so no whole float32 copy of a matrix exists.
 * Every finite weight reads back within half its block's step (the scale).
 */
/** 1.5·2^52: x + ROUNDER − ROUNDER is x rounded to the nearest integer (ties to even) in float64. */
const ROUNDER = 6755399441055744;

export function quantizeRowsInto(rows: Float32Array, count: number, K: number, s: QuantScheme, out: QuantBuffers, row0: number): void {
  if (s.layout === "channels") return quantizeChannelsInto(rows, count, K, out, row0);
  const nb = blocksPerRow(K, s);
  const blob = blobBytes(s);
  const bs = s.blockSize;
  const levels = (1 << s.bits) - 1;
  const mid = 1 << (s.bits - 1);
  const zpRow = zeroPointBytesPerRow(K, s);
  const { packed, scales, zeroPoints } = out;
  for (let r = 0; r < count; r++) {
    const n = row0 + r;
    const src = r * K;
    // 4-bit zero points are OR-ed in two per byte: clear the row's first
    if (zeroPoints) zeroPoints.fill(0, n * zpRow, (n + 1) * zpRow);
    for (let b = 0; b < nb; b++) {
      const k0 = src + b * bs;
      const k1 = src + Math.min(K, (b + 1) * bs);
      // branch-free min/max (random weights defeat the branch predictor); a NaN propagates into lo and hi
      let lo = 0;
      let hi = 0;
      for (let k = k0; k < k1; k++) {
        const w = rows[k]!;
        lo = Math.min(lo, w);
        hi = Math.max(hi, w);
      }
      const nan = lo !== lo || hi !== hi;
      let scale: number;
      let zp: number;
      if (zeroPoints) {
        // [lo, hi] always contains 0 (both start at 0), so 0 — and the padding — is exact
        scale = (hi - lo) / levels;
        zp = scale > 0 ? Math.min(levels, Math.max(0, Math.round(-lo / scale))) : mid;
      } else {
        scale = Math.max(hi, -lo) / (mid - 1);
        zp = mid;
      }
      // a block of zeros: any scale reads back 0, and 1 keeps the division finite (NaN stays
      // NaN, so non-finite weights still surface in the engine's finite-logits check)
      if (scale === 0) scale = 1;
      if (nan) scale = NaN;
      // float32 scale as ORT will use it, so codes are chosen against the value it multiplies by
      const sf = Math.fround(scale);
      const inv = 1 / sf;
      scales[n * nb + b] = sf;
      if (zeroPoints) {
        if (s.bits === 8) zeroPoints[n * zpRow + b] = zp;
        else zeroPoints[n * zpRow + (b >> 1)]! |= zp << ((b & 1) * 4);
      }
      const base = (n * nb + b) * blob;
      // codes clamp to [0, levels] (a NaN code stores as 0: its block's scale is NaN anyway);
      // padding beyond K gets the zero point's code, so it reads back exactly 0
      // rounding by adding and removing 1.5·2^52 (round half to even, exact for |x| < 2^51): about
      // 3× faster than Math.round in this loop, which bounds how fast a checkpoint loads
      if (s.bits === 8) {
        for (let k = k0; k < k1; k++) {
          const q = rows[k]! * inv + ROUNDER - ROUNDER + zp;
          packed[base + k - k0] = q < 0 ? 0 : q > levels ? levels : q;
        }
        for (let j = k1 - k0; j < bs; j++) packed[base + j] = zp;
      } else {
        for (let j = 0; j < bs; j += 2) {
          const k = k0 + j;
          const a = k < k1 ? rows[k]! * inv + ROUNDER - ROUNDER + zp : zp;
          const c = k + 1 < k1 ? rows[k + 1]! * inv + ROUNDER - ROUNDER + zp : zp;
          packed[base + (j >> 1)] = (a < 0 ? 0 : a > levels ? levels : a) | ((c < 0 ? 0 : c > levels ? levels : c) << 4);
        }
      }
    }
  }
}

/**
 * `channels`: row n of W becomes column n of the packed [K, N] int8 matrix, with scale
 * max|w_n|/127 (a row of zeros gets 1; a NaN makes the scale NaN, as in the block path).
 */
function quantizeChannelsInto(rows: Float32Array, count: number, K: number, out: QuantBuffers, row0: number): void {
  const { packed, scales } = out;
  const N = scales.length;
  const inv = new Float64Array(count);
  for (let r = 0; r < count; r++) {
    let lo = 0;
    let hi = 0;
    for (let k = r * K; k < (r + 1) * K; k++) {
      const w = rows[k]!;
      lo = Math.min(lo, w);
      hi = Math.max(hi, w);
    }
    let scale = Math.max(hi, -lo) / 127;
    if (scale === 0) scale = 1;
    if (lo !== lo || hi !== hi) scale = NaN;
    const sf = Math.fround(scale);
    scales[row0 + r] = sf;
    inv[r] = 1 / sf;
  }
  // codes row-major first (sequential reads and writes), then one pass that writes each k's
  // `count` consecutive columns: writing columns straight from the rows would touch one page per
  // weight (a row of the packed matrix is N bytes), which bounds how fast a checkpoint loads
  const tmp = scratch(count * K);
  for (let r = 0; r < count; r++) {
    const i = inv[r]!;
    for (let k = r * K; k < (r + 1) * K; k++) {
      const q = rows[k]! * i + ROUNDER - ROUNDER;
      // round half to even, clamped; a NaN code stores as 0 (its scale is NaN)
      tmp[k] = (q < -127 ? -127 : q > 127 ? 127 : q) & 0xff;
    }
  }
  for (let k = 0; k < K; k++) {
    const base = k * N + row0;
    for (let r = 0, at = k; r < count; r++, at += K) packed[base + r] = tmp[at]!;
  }
}

let scratchBuf = new Uint8Array(0);
/** A reusable byte buffer of at least n bytes (the load is single-threaded). */
function scratch(n: number): Uint8Array {
  if (scratchBuf.length < n) scratchBuf = new Uint8Array(n);
  return scratchBuf;
}

/** Quantize a whole [N, K] matrix at once (tests, small matrices). */
export function quantizeMatrix(w: Float32Array, N: number, K: number, s: QuantScheme): QuantizedMatrix {
  const buf = allocQuantBuffers(K, N, s);
  quantizeRowsInto(w, N, K, s, buf, 0);
  return { K, N, scheme: s, ...buf };
}

/** The float values a quantized matrix stands for, [N, K] row-major (what the operator multiplies by). */
export function dequantize(q: QuantizedMatrix): Float32Array {
  const { K, N, scheme: s } = q;
  if (s.layout === "channels") {
    const out = new Float32Array(N * K);
    const codes = new Int8Array(q.packed.buffer, q.packed.byteOffset, q.packed.byteLength);
    for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) out[n * K + k] = Math.fround(codes[k * N + n]! * q.scales[n]!);
    return out;
  }
  const nb = blocksPerRow(K, s);
  const blob = blobBytes(s);
  const mid = 1 << (s.bits - 1);
  const zpRow = zeroPointBytesPerRow(K, s);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < nb; b++) {
      const scale = q.scales[n * nb + b]!;
      let zp = mid;
      if (q.zeroPoints) zp = s.bits === 8 ? q.zeroPoints[n * zpRow + b]! : (q.zeroPoints[n * zpRow + (b >> 1)]! >> ((b & 1) * 4)) & 15;
      const base = (n * nb + b) * blob;
      for (let j = 0; j < s.blockSize; j++) {
        const k = b * s.blockSize + j;
        if (k >= K) break;
        const code = s.bits === 8 ? q.packed[base + j]! : (q.packed[base + (j >> 1)]! >> ((j & 1) * 4)) & 15;
        out[n * K + k] = Math.fround((code - zp) * scale);
      }
    }
  }
  return out;
}

/** The quantization step (scale) of each block of row n (one for `channels`), for tolerance derivations. */
export function blockSteps(q: QuantizedMatrix, n: number): Float32Array {
  const nb = blocksPerRow(q.K, q.scheme);
  return q.scales.subarray(n * nb, (n + 1) * nb);
}

/** Σ (w − dequant(quant(w)))² over `count` rows of K weights: what storing them at `s` loses. */
export function quantizationErrorSquared(rows: Float32Array, count: number, K: number, s: QuantScheme): number {
  const back = dequantize(quantizeMatrix(rows.subarray(0, count * K), count, K, s));
  let e2 = 0;
  for (let i = 0; i < count * K; i++) {
    const d = rows[i]! - back[i]!;
    e2 += d * d;
  }
  return e2;
}
