/**
 * Conversion between the on-disk dtypes of safetensors and Float32Array.
 * Safetensors stores every dtype little-endian; half types are decoded exactly (every F16 and
 * BF16 value is representable in float32) and encoded with round-to-nearest-even, like
 * PyTorch's `tensor.to(torch.float16 | torch.bfloat16)`.
 */
import type { DType } from "./types";

/** Bytes per element of every dtype delta-audit reads or writes. */
export const DTYPE_BYTES: Readonly<Record<DType, number>> = Object.freeze({ F32: 4, F16: 2, BF16: 2, F64: 8 });

export const SUPPORTED_DTYPES: readonly DType[] = Object.freeze(["F32", "F16", "BF16", "F64"] as DType[]);

export function isSupportedDType(x: unknown): x is DType {
  return typeof x === "string" && (SUPPORTED_DTYPES as readonly string[]).includes(x);
}

/** Typed-array views reinterpret bytes in host order; every machine Node targets is little-endian, but we check. */
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let f16Table: Float32Array | undefined;
/** All 65,536 half-precision values, so decoding is one table lookup per element. */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >>> 10) & 0x1f;
    const mant = h & 0x3ff;
    if (exp === 0) t[h] = sign * mant * 2 ** -24;
    else if (exp === 0x1f) t[h] = mant ? NaN : sign * Infinity;
    else t[h] = sign * (1 + mant / 1024) * 2 ** (exp - 15);
  }
  f16Table = t;
  return t;
}

/** A view of `bytes` whose byteOffset is a multiple of `align` (copies only when it is not). */
function aligned(bytes: Uint8Array, byteLength: number, align: number): Uint8Array {
  const sub = bytes.subarray(0, byteLength);
  if (sub.byteOffset % align === 0) return sub;
  return sub.slice();
}

/**
 * Decode `count` little-endian elements of `dtype` from `bytes` to a new Float32Array.
 * `bytes` may start at any offset (unaligned buffers are copied first).
 */
export function decodeToFloat32(bytes: Uint8Array, dtype: DType, count: number): Float32Array {
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`invalid element count ${count}`);
  return decodeInto(bytes, dtype, count, new Float32Array(count));
}

/** Like decodeToFloat32, but writes into `out` (length ≥ count) instead of allocating. */
export function decodeInto(bytes: Uint8Array, dtype: DType, count: number, out: Float32Array): Float32Array {
  const size = DTYPE_BYTES[dtype];
  if (size === undefined) throw new Error(`unsupported dtype ${String(dtype)}`);
  if (!Number.isSafeInteger(count) || count < 0) throw new RangeError(`invalid element count ${count}`);
  if (out.length < count) throw new RangeError(`output holds ${out.length} elements, need ${count}`);
  const byteLength = count * size;
  if (bytes.byteLength < byteLength) {
    throw new RangeError(`need ${byteLength} bytes for ${count} ${dtype} elements, got ${bytes.byteLength}`);
  }
  if (!LITTLE_ENDIAN_HOST) return decodeWithDataView(bytes, dtype, count, out);
  switch (dtype) {
    case "F32":
      new Uint8Array(out.buffer, out.byteOffset, byteLength).set(bytes.subarray(0, byteLength));
      return out;
    case "F16": {
      const src = aligned(bytes, byteLength, 2);
      const u16 = new Uint16Array(src.buffer, src.byteOffset, count);
      const table = halfTable();
      for (let i = 0; i < count; i++) out[i] = table[u16[i]!]!;
      return out;
    }
    case "BF16": {
      const src = aligned(bytes, byteLength, 2);
      const u16 = new Uint16Array(src.buffer, src.byteOffset, count);
      // bfloat16 is the top half of a float32: shift the bits into place
      const u32 = new Uint32Array(out.buffer, out.byteOffset, count);
      for (let i = 0; i < count; i++) u32[i] = u16[i]! << 16;
      return out;
    }
    case "F64": {
      const src = aligned(bytes, byteLength, 8);
      const f64 = new Float64Array(src.buffer, src.byteOffset, count);
      out.set(f64); // float64 → float32 rounds to nearest even
      return out;
    }
  }
}

function decodeWithDataView(bytes: Uint8Array, dtype: DType, count: number, out: Float32Array): Float32Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const table = dtype === "F16" ? halfTable() : undefined;
  for (let i = 0; i < count; i++) {
    if (dtype === "F32") out[i] = dv.getFloat32(4 * i, true);
    else if (dtype === "F64") out[i] = dv.getFloat64(8 * i, true);
    else if (dtype === "F16") out[i] = table![dv.getUint16(2 * i, true)]!;
    else {
      const tmp = new DataView(new ArrayBuffer(4));
      tmp.setUint32(0, dv.getUint16(2 * i, true) << 16);
      out[i] = tmp.getFloat32(0);
    }
  }
  return out;
}

/** IEEE binary16 bits of the float32 whose bits are `x`, rounded to nearest even (overflow → ±Inf). */
export function float32BitsToHalfBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return mant ? sign | 0x7e00 | (mant >>> 13) : sign | 0x7c00; // NaN stays NaN (quiet), Inf stays Inf
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // half subnormal (or zero): below 2^-25 everything rounds to zero
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && h & 1)) h++;
    return sign | h; // a carry out of the mantissa correctly yields the smallest normal
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry into the exponent correctly overflows to Inf
  return sign | h;
}

/** bfloat16 bits of the float32 whose bits are `x`, rounded to nearest even. */
export function float32BitsToBFloat16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff; // quiet NaN
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** Encode float32 values as little-endian `dtype` bytes (F16/BF16 round to nearest even). */
export function encodeFromFloat32(data: Float32Array, dtype: DType): Uint8Array {
  const n = data.length;
  const size = DTYPE_BYTES[dtype];
  if (size === undefined) throw new Error(`unsupported dtype ${String(dtype)}`);
  const out = new Uint8Array(n * size);
  if (!LITTLE_ENDIAN_HOST) {
    const dv = new DataView(out.buffer);
    const bits = new Uint32Array(Float32Array.from(data).buffer);
    for (let i = 0; i < n; i++) {
      if (dtype === "F32") dv.setFloat32(4 * i, data[i]!, true);
      else if (dtype === "F64") dv.setFloat64(8 * i, data[i]!, true);
      else if (dtype === "F16") dv.setUint16(2 * i, float32BitsToHalfBits(bits[i]!), true);
      else dv.setUint16(2 * i, float32BitsToBFloat16Bits(bits[i]!), true);
    }
    return out;
  }
  switch (dtype) {
    case "F32":
      out.set(new Uint8Array(data.buffer, data.byteOffset, n * 4));
      return out;
    case "F64":
      new Float64Array(out.buffer).set(data);
      return out;
    case "F16":
    case "BF16": {
      const bits = new Uint32Array(data.buffer, data.byteOffset, n);
      const u16 = new Uint16Array(out.buffer);
      const conv = dtype === "F16" ? float32BitsToHalfBits : float32BitsToBFloat16Bits;
      for (let i = 0; i < n; i++) u16[i] = conv(bits[i]!);
      return out;
    }
  }
}
