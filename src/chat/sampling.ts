/**
 * Token choice from a logits row: greedy, or temperature + top-p (nucleus) sampling with a
 * seeded PRNG so the same seed gives the same text.
 */
import type { SamplingOptions } from "./types";
import { mulberry32 } from "../linalg/random";

/** A seeded uniform [0,1) generator (mulberry32): small state, good enough for sampling tokens. */
export function seededRandom(seed: number): () => number {
  // mix the seed once so nearby seeds (0, 1, 2, …) start far apart
  return mulberry32(Math.imul((seed | 0) ^ 0x9e3779b9, 0x85ebca6b) ^ 0xc2b2ae35);
}

/** Index of the largest value (lowest index on ties, like torch.argmax). */
export function argmax(row: ArrayLike<number>): number {
  let best = 0;
  let bv = -Infinity;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (v > bv) {
      bv = v;
      best = i;
    }
  }
  return best;
}

/** log-softmax of a row in float64. */
export function logSoftmax(row: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > max) max = row[i]!;
  let z = 0;
  for (let i = 0; i < row.length; i++) z += Math.exp(row[i]! - max);
  const lz = max + Math.log(z);
  const out = new Float64Array(row.length);
  for (let i = 0; i < row.length; i++) out[i] = row[i]! - lz;
  return out;
}

/** Indices of the k largest values, largest first. */
export function topKIndices(row: ArrayLike<number>, k: number): number[] {
  const kk = Math.max(1, Math.min(k, row.length));
  const idx: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (idx.length < kk) {
      idx.push(i);
      if (idx.length === kk) idx.sort((a, b) => row[b]! - row[a]! || a - b);
    } else if (v > row[idx[kk - 1]!]!) {
      let j = kk - 1;
      while (j > 0 && row[idx[j - 1]!]! < v) {
        idx[j] = idx[j - 1]!;
        j--;
      }
      idx[j] = i;
    }
  }
  if (idx.length < kk || kk === row.length) idx.sort((a, b) => row[b]! - row[a]! || a - b);
  return idx;
}

/** Below this temperature sampling is treated as greedy (division would overflow). */
const MIN_TEMPERATURE = 1e-5;

/**
 * Sample from softmax(logits / temperature) restricted to the nucleus: the smallest set of
 * most-probable tokens whose mass reaches topP (HF TopPLogitsWarper semantics).
 */
export function sampleToken(logits: ArrayLike<number>, opts: Pick<SamplingOptions, "temperature" | "topP">, rand: () => number): number {
  if (!(opts.temperature > MIN_TEMPERATURE)) return argmax(logits);
  const n = logits.length;
  const inv = 1 / opts.temperature;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (logits[i]! > max) max = logits[i]!;
  const p = new Float64Array(n);
  let z = 0;
  for (let i = 0; i < n; i++) z += p[i] = Math.exp((logits[i]! - max) * inv);
  for (let i = 0; i < n; i++) p[i] = p[i]! / z;
  const topP = opts.topP > 0 && opts.topP < 1 ? opts.topP : 1;
  if (topP >= 1) {
    let u = rand();
    for (let i = 0; i < n; i++) {
      u -= p[i]!;
      if (u < 0) return i;
    }
    return argmax(p);
  }
  // The nucleus is a prefix of the tokens sorted by probability. Sorting the whole vocabulary
  // each step is slow, so sort only tokens above a threshold τ: if their mass already reaches
  // topP the nucleus lies inside them; otherwise lower τ and retry (τ = 0 is the full sort).
  let tau = 1e-4;
  for (;;) {
    const cand: number[] = [];
    let mass = 0;
    for (let i = 0; i < n; i++) {
      if (p[i]! >= tau) {
        cand.push(i);
        mass += p[i]!;
      }
    }
    if (mass >= topP || tau === 0) {
      cand.sort((a, b) => p[b]! - p[a]! || a - b);
      let keep = 0;
      let cum = 0;
      while (keep < cand.length && cum < topP) cum += p[cand[keep++]!]!;
      let u = rand() * cum;
      for (let j = 0; j < keep; j++) {
        u -= p[cand[j]!]!;
        if (u < 0) return cand[j]!;
      }
      return cand[keep - 1]!;
    }
    tau = tau < 1e-12 ? 0 : tau * 1e-3;
  }
}
