/**
 * Whether two variants answered a suite identically: on a server, `full` answering exactly like
 * `base` although weights changed means the server is not applying the fine-tune (one that
 * ignores model names, as llama.cpp's does). elicit/ checks it right after the plain variants,
 * so no contrastive request is spent on such a server; policy/measured.ts turns it into
 * "unobserved".
 */
import type { ProbeRecord } from "./types";

/** Below this many prompts, identical answers of two variants are not evidence of a misconfigured backend. */
export const MIN_PROBES_FOR_IDENTITY_CHECK = 8;

/** True when `a` and `b` gave the same text to every prompt and sample of a suite of at least MIN_PROBES_FOR_IDENTITY_CHECK prompts. */
export function answeredAlike(probes: readonly ProbeRecord[], a: string, b: string): boolean {
  if (probes.length < MIN_PROBES_FOR_IDENTITY_CHECK) return false;
  return probes.every((p) => {
    const x = p.responses[a];
    const y = p.responses[b];
    return x !== undefined && y !== undefined && x.length === y.length && x.every((t, i) => t === y[i]);
  });
}
