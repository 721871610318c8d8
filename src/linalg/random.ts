/**
 * Seeded pseudo-random numbers for reproducible sketches and synthetic fixtures:
 * mulberry32 (32-bit state, full period) and Box–Muller normals.
 */

export interface Rng {
  /** uniform in [0, 1) */
  uniform(): number;
  /** standard normal */
  normal(): number;
}

/**
 * The largest seed a flag or config may give (organisms, sampling, elicitation): 31 bits, so a
 * seed stays a non-negative int32 through `seed | 0` mixing and matches the request seeds
 * elicit/plan.ts derives (also 31-bit, as OpenAI-compatible servers take them).
 */
export const MAX_SEED = 2 ** 31 - 1;

/**
 * mulberry32: the one uniform [0, 1) generator of the project (sketches, fixtures, organisms,
 * token sampling). `state` is used as given; callers that want nearby seeds to start far apart
 * mix their seed first.
 */
export function mulberry32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function rng(seed: number): Rng {
  const uniform = mulberry32(seed);
  let spare: number | undefined;
  const normal = () => {
    if (spare !== undefined) {
      const v = spare;
      spare = undefined;
      return v;
    }
    let u = 0;
    while (u === 0) u = uniform();
    const v = uniform();
    const rad = Math.sqrt(-2 * Math.log(u));
    spare = rad * Math.sin(2 * Math.PI * v);
    return rad * Math.cos(2 * Math.PI * v);
  };
  return { uniform, normal };
}

/** Fill a Float32Array with N(0, std²) values. */
export function fillNormal(out: Float32Array, r: Rng, std = 1): Float32Array {
  for (let i = 0; i < out.length; i++) out[i] = r.normal() * std;
  return out;
}
