import { describe, expect, it } from "vitest";
import { DTYPE_BYTES, decodeToFloat32, encodeFromFloat32 } from "../../src/io/dtype";
import { rng } from "./helpers";

/** Reference binary16 → number from the IEEE 754 definition. */
function halfValue(h: number): number {
  const s = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * Math.pow(2, -24);
  return s * Math.pow(2, e - 15) * (1 + m / 1024);
}

/** Every non-negative finite half, ascending, with its bit pattern: the reference set for nearest-even rounding. */
const POS_HALVES: Array<{ v: number; bits: number }> = [];
for (let h = 0; h < 0x7c00; h++) POS_HALVES.push({ v: halfValue(h), bits: h });

/** Reference float → half bits by searching the representable set (ties → even bit pattern). */
function refHalfBits(x: number): number {
  if (Number.isNaN(x)) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  const MAX = 65504;
  const HALF_ULP_AT_MAX = 16; // ulp at the top binade is 32
  if (a >= MAX + HALF_ULP_AT_MAX) return sign | 0x7c00; // at or past the midpoint to 2^16 → Inf (tie goes to the even Inf pattern)
  let lo = 0;
  let hi = POS_HALVES.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (POS_HALVES[mid]!.v <= a) lo = mid;
    else hi = mid;
  }
  const L = POS_HALVES[lo]!;
  const H = POS_HALVES[hi]!;
  if (a <= L.v) return sign | L.bits;
  const dl = a - L.v;
  const dh = H.v - a;
  if (dl < dh) return sign | L.bits;
  if (dh < dl) return sign | H.bits;
  return sign | (L.bits % 2 === 0 ? L.bits : H.bits);
}

/** Reference float32 → bfloat16 bits: pick the nearer of the two neighbours by float64 distance, ties → even. */
function refBf16Bits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0]!;
  if (Number.isNaN(x)) return -1;
  const lowBits = u >>> 16;
  const toValue = (b: number) => new Float32Array(new Uint32Array([(b << 16) >>> 0]).buffer)[0]!;
  const lo = toValue(lowBits);
  if (lo === f[0]) return lowBits;
  const hi = toValue(lowBits + 1); // next bf16 away from zero (may be Inf)
  const dl = Math.abs(f[0]! - lo);
  const dh = Math.abs(hi - f[0]!);
  if (dl < dh) return lowBits;
  if (dh < dl) return (lowBits + 1) & 0xffff;
  return lowBits % 2 === 0 ? lowBits : (lowBits + 1) & 0xffff;
}

function halfBitsOf(x: number): number {
  const enc = encodeFromFloat32(new Float32Array([x]), "F16");
  return enc[0]! | (enc[1]! << 8);
}

function bf16BitsOf(x: number): number {
  const enc = encodeFromFloat32(new Float32Array([x]), "BF16");
  return enc[0]! | (enc[1]! << 8);
}

describe("dtype decode", () => {
  it("decodes all 65,536 F16 patterns like the IEEE definition", () => {
    const bytes = new Uint8Array(65536 * 2);
    for (let h = 0; h < 65536; h++) {
      bytes[2 * h] = h & 0xff;
      bytes[2 * h + 1] = h >> 8;
    }
    const out = decodeToFloat32(bytes, "F16", 65536);
    for (let h = 0; h < 65536; h++) {
      const want = halfValue(h);
      if (Number.isNaN(want)) expect(Number.isNaN(out[h]!)).toBe(true);
      else expect(Object.is(out[h], want) || out[h] === want).toBe(true);
    }
    // spot values from the binary16 spec
    expect(out[0x3c00]).toBe(1);
    expect(out[0x7bff]).toBe(65504);
    expect(out[0x0001]).toBe(2 ** -24);
    expect(out[0x0400]).toBe(2 ** -14);
    expect(out[0xfc00]).toBe(-Infinity);
    expect(Object.is(out[0x8000], -0)).toBe(true);
  });

  it("decodes BF16 as the top half of float32 bits", () => {
    const rand = rng(1);
    const n = 4096;
    const bytes = new Uint8Array(2 * n);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(rand() * 256);
    const out = decodeToFloat32(bytes, "BF16", n);
    const dv = new DataView(new ArrayBuffer(4));
    for (let i = 0; i < n; i++) {
      dv.setUint8(0, bytes[2 * i + 1]!);
      dv.setUint8(1, bytes[2 * i]!);
      dv.setUint16(2, 0);
      const want = dv.getFloat32(0, false);
      if (Number.isNaN(want)) expect(Number.isNaN(out[i]!)).toBe(true);
      else expect(out[i]).toBe(want);
    }
  });

  it("decodes F32 and F64 little-endian, F64 rounded to nearest float32", () => {
    const vals = [0, -0, 1.5, -3.25e-40, 3.4e38, 1e-45, Math.PI, Infinity, -Infinity];
    const b64 = new Uint8Array(vals.length * 8);
    const dv = new DataView(b64.buffer);
    vals.forEach((v, i) => dv.setFloat64(8 * i, v, true));
    const out = decodeToFloat32(b64, "F64", vals.length);
    vals.forEach((v, i) => expect(Object.is(out[i], Math.fround(v))).toBe(true));
    const b32 = new Uint8Array(vals.length * 4);
    const dv32 = new DataView(b32.buffer);
    vals.forEach((v, i) => dv32.setFloat32(4 * i, v, true));
    const out32 = decodeToFloat32(b32, "F32", vals.length);
    vals.forEach((v, i) => expect(Object.is(out32[i], Math.fround(v))).toBe(true));
  });

  it("handles unaligned input buffers for every dtype", () => {
    const rand = rng(2);
    for (const dtype of ["F32", "F16", "BF16", "F64"] as const) {
      const n = 37;
      const size = DTYPE_BYTES[dtype];
      const backing = new Uint8Array(n * size + 3);
      for (let i = 0; i < backing.length; i++) backing[i] = Math.floor(rand() * 256);
      const unaligned = backing.subarray(1, 1 + n * size);
      const aligned = unaligned.slice();
      const a = decodeToFloat32(unaligned, dtype, n);
      const b = decodeToFloat32(aligned, dtype, n);
      expect(new Uint8Array(a.buffer)).toEqual(new Uint8Array(b.buffer));
    }
  });

  it("refuses too few bytes", () => {
    expect(() => decodeToFloat32(new Uint8Array(7), "F32", 2)).toThrow(RangeError);
  });
});

describe("dtype encode", () => {
  it("F16: every finite half round-trips bit-exactly", () => {
    for (let h = 0; h < 65536; h++) {
      const v = halfValue(h);
      if (Number.isNaN(v)) continue;
      expect(halfBitsOf(v)).toBe(h);
    }
  });

  it("F16: midpoints round to even, neighbours of midpoints round to nearest", () => {
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i + 1 < POS_HALVES.length; i += 7) {
      const L = POS_HALVES[i]!;
      const H = POS_HALVES[i + 1]!;
      const mid = (L.v + H.v) / 2; // exact in float32: ≤ 12 significant bits
      expect(Math.fround(mid)).toBe(mid);
      expect(halfBitsOf(mid)).toBe(L.bits % 2 === 0 ? L.bits : H.bits);
      expect(halfBitsOf(-mid)).toBe(0x8000 | (L.bits % 2 === 0 ? L.bits : H.bits));
      f[0] = mid;
      u[0] = u[0]! + 1; // one float32 ulp above the midpoint
      expect(halfBitsOf(f[0]!)).toBe(H.bits);
      f[0] = mid;
      u[0] = u[0]! - 1;
      expect(halfBitsOf(f[0]!)).toBe(L.bits);
    }
  });

  it("F16: random floats across the whole range match the nearest-even reference", () => {
    const rand = rng(3);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i < 20000; i++) {
      // random exponents in and around the half range, random mantissas
      const exp = 127 - 30 + Math.floor(rand() * 50);
      u[0] = ((rand() < 0.5 ? 0x80000000 : 0) | (exp << 23) | Math.floor(rand() * 0x800000)) >>> 0;
      expect(halfBitsOf(f[0]!)).toBe(refHalfBits(f[0]!));
    }
  });

  it("F16: overflow, NaN, Inf, signed zero, subnormal underflow", () => {
    expect(halfBitsOf(65504)).toBe(0x7bff);
    expect(halfBitsOf(65519.99)).toBe(0x7bff);
    expect(halfBitsOf(65520)).toBe(0x7c00);
    expect(halfBitsOf(1e10)).toBe(0x7c00);
    expect(halfBitsOf(-1e10)).toBe(0xfc00);
    expect(halfBitsOf(Infinity)).toBe(0x7c00);
    expect(halfBitsOf(-0)).toBe(0x8000);
    expect(halfBitsOf(2 ** -25)).toBe(0); // exactly half the smallest subnormal: tie → even (zero)
    expect(halfBitsOf(2 ** -25 * 1.0001)).toBe(1);
    expect(halfBitsOf(3 * 2 ** -25)).toBe(2); // tie between 1 and 2 (×2^-24) → even
    expect(halfBitsOf(1e-45)).toBe(0); // float32 subnormal → 0
    const nan = halfBitsOf(NaN);
    expect(nan & 0x7c00).toBe(0x7c00);
    expect(nan & 0x3ff).not.toBe(0);
  });

  it("BF16: random float32 bit patterns match the nearest-even reference, NaN stays NaN", () => {
    const rand = rng(4);
    const f = new Float32Array(1);
    const u = new Uint32Array(f.buffer);
    for (let i = 0; i < 20000; i++) {
      u[0] = Math.floor(rand() * 2 ** 32) >>> 0;
      const x = f[0]!;
      if (Number.isNaN(x)) {
        const b = bf16BitsOf(x);
        expect(b & 0x7f80).toBe(0x7f80);
        expect(b & 0x7f).not.toBe(0);
      } else {
        expect(bf16BitsOf(x)).toBe(refBf16Bits(x));
      }
    }
    // deliberate ties, subnormals and the overflow edge
    expect(bf16BitsOf(1 + 2 ** -8)).toBe(0x3f80); // tie → even (1.0)
    expect(bf16BitsOf(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie → even (upper)
    expect(bf16BitsOf(3.3961e38)).toBe(0x7f7f);
    expect(bf16BitsOf(3.4028234e38)).toBe(0x7f80); // rounds up to Inf
    expect(bf16BitsOf(-Infinity)).toBe(0xff80);
    expect(bf16BitsOf(1e-40)).toBe(refBf16Bits(1e-40));
    expect(bf16BitsOf(-0)).toBe(0x8000);
  });

  it("round-trips through decode for every dtype", () => {
    const rand = rng(5);
    const data = new Float32Array(1000);
    for (let i = 0; i < data.length; i++) data[i] = (rand() - 0.5) * 10 ** Math.floor(rand() * 8 - 4);
    for (const dtype of ["F32", "F16", "BF16", "F64"] as const) {
      const bytes = encodeFromFloat32(data, dtype);
      expect(bytes.byteLength).toBe(data.length * DTYPE_BYTES[dtype]);
      const back = decodeToFloat32(bytes, dtype, data.length);
      for (let i = 0; i < data.length; i++) {
        if (dtype === "F32" || dtype === "F64") expect(back[i]).toBe(data[i]);
        // relative error of nearest rounding: ≤ 2^-11 (F16 normal range) / 2^-8 (BF16)
        else if (dtype === "BF16") expect(Math.abs(back[i]! - data[i]!)).toBeLessThanOrEqual(Math.abs(data[i]!) * 2 ** -8);
        else if (Math.abs(data[i]!) >= 2 ** -14) expect(Math.abs(back[i]! - data[i]!)).toBeLessThanOrEqual(Math.abs(data[i]!) * 2 ** -11);
        else expect(Math.abs(back[i]! - data[i]!)).toBeLessThanOrEqual(2 ** -25);
      }
    }
  });
});
