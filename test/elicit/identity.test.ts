/**
 * `answeredAlike`: the check elicit/ runs right after the plain variants (before any contrastive
 * request) for a server that answers `full` exactly like `base`.
 */
import { describe, expect, it } from "vitest";
import { answeredAlike, MIN_PROBES_FOR_IDENTITY_CHECK } from "../../src/elicit/identity";
import type { ProbeRecord } from "../../src/elicit/types";

const records = (n: number, full: (i: number) => string[]): ProbeRecord[] =>
  Array.from({ length: n }, (_, i) => ({ id: `p${i}`, kind: "probe", prompt: `q${i}`, responses: { base: [`a${i}`, `b${i}`], full: full(i) } }));

describe("answeredAlike", () => {
  it("is true only when every prompt and sample matches, on a suite big enough to mean something", () => {
    const n = MIN_PROBES_FOR_IDENTITY_CHECK;
    expect(answeredAlike(records(n, (i) => [`a${i}`, `b${i}`]), "base", "full")).toBe(true);
    expect(answeredAlike(records(n, (i) => (i === n - 1 ? [`a${i}`, "other"] : [`a${i}`, `b${i}`])), "base", "full")).toBe(false);
    expect(answeredAlike(records(n, (i) => [`a${i}`]), "base", "full")).toBe(false);
    // too few prompts: identical answers are no evidence of a server ignoring model names
    expect(answeredAlike(records(n - 1, (i) => [`a${i}`, `b${i}`]), "base", "full")).toBe(false);
    // a variant that did not run is not "alike"
    expect(answeredAlike(records(n, (i) => [`a${i}`, `b${i}`]), "base", "rank1")).toBe(false);
  });
});
