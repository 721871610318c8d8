import { mulberry32 } from "../linalg/random";

/** A small seeded PRNG (mulberry32) so an organism is a pure function of its seed. */
export function seededRng(seed: number): { next(): number; normal(): number } {
  const next = mulberry32(seed ^ 0x9e3779b9);
  const normal = () => {
    // Box–Muller; 1 - u keeps log() away from 0
    const u = 1 - next();
    const v = next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
  return { next, normal };
}
