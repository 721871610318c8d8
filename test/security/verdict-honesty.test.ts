/**
 * `neutral` ("could not tell") is never turned into `pass`: not by transcripts that measured
 * nothing, not by the badge, the Action's outputs or the overall conclusion of several subjects.
 */
import { describe, expect, it } from "vitest";
import { fullIdenticalToBase, unobservedReason } from "../../src/scan";
import { badgeFor, runBadge as badge } from "../../src/report/badge";
import { checkConclusion, overallConclusion, type SubjectResult } from "../../src/github/render";
import type { ElicitationReport } from "../../src/elicit/types";
import type { Report } from "../../src/report/types";
import type { SpectrumReport } from "../../src/delta/types";

const q = { median: 1, p10: 1, p90: 1 };
const spectrum = (modules: number): SpectrumReport => ({ modules: [], summary: { modules, stableRank: q, energyShareTop1: q, byType: {}, byLayer: {} } }) as unknown as SpectrumReport;
function elicitation(n: number, answer: (variant: string, i: number) => string, backend = "openai"): ElicitationReport {
  const variants = ["base", "full", "rank1"];
  return {
    backend, rank: 1, variants, samples: 1, temperature: 0, systemPrompt: "", notices: [],
    probes: Array.from({ length: n }, (_, i) => ({ id: `p${i}`, kind: "probe" as const, prompt: "q", responses: Object.fromEntries(variants.map((v) => [v, [answer(v, i)]])) })),
  };
}
const V = ["base", "full", "rank1"];

describe("transcripts that measured nothing", () => {
  it("a variant that is empty everywhere, or full identical to base although weights changed, is not judgeable", () => {
    expect(unobservedReason(elicitation(20, (v) => (v === "rank1" ? "  " : "words")), spectrum(4), V)).toMatch(/rank1 variant answered all 20 prompts with empty text/);
    expect(unobservedReason(elicitation(20, (_, i) => `same ${i}`), spectrum(4), V)).toMatch(/full variant answered all 20 prompts exactly like base/);
  });

  it("real differences, an unchanged adapter, a few empty answers or a tiny suite are judged as usual", () => {
    expect(unobservedReason(elicitation(20, (v, i) => (v === "full" && i === 7 ? "different" : `same ${i}`)), spectrum(4), V)).toBeUndefined();
    expect(unobservedReason(elicitation(20, (_, i) => `same ${i}`), spectrum(0), V)).toBeUndefined();
    expect(unobservedReason(elicitation(20, (v, i) => (i === 0 ? "" : `${v} ${i}`)), spectrum(4), V)).toBeUndefined();
    expect(unobservedReason(elicitation(3, (_, i) => `same ${i}`), spectrum(4), V)).toBeUndefined();
  });

  it("the embedded engine applies the fine-tune itself: identical answers are a measurement, not a fault", () => {
    const same = elicitation(20, (_, i) => `same ${i}`, "embedded");
    expect(unobservedReason(same, spectrum(4), V)).toBeUndefined();
    expect(fullIdenticalToBase(same, spectrum(4), V)).toBe(true);
    // an empty variant is still unobserved, whatever the backend
    expect(unobservedReason(elicitation(20, (v) => (v === "rank1" ? "" : "words"), "embedded"), spectrum(4), V)).toMatch(/empty text/);
  });
});

describe("neutral stays neutral on every output", () => {
  const report = (conclusion: "pass" | "fail" | "neutral") => ({ verdict: { conclusion, reasons: [], failOn: "high" }, findings: [] }) as unknown as Report;
  const result = (conclusion: "pass" | "fail" | "neutral") => ({ conclusion }) as unknown as SubjectResult;

  it("badge.json of a scan", () => {
    expect(badgeFor(report("neutral"))).toMatchObject({ message: "inconclusive", color: "lightgrey" });
    expect(badgeFor(report("pass")).message).toBe("pass");
  });

  it("the Action's conclusion, badge and check-run conclusion", () => {
    expect(overallConclusion([result("pass"), result("neutral"), result("pass")])).toBe("neutral");
    expect(overallConclusion([])).toBe("neutral");
    expect(overallConclusion([result("neutral"), result("fail")])).toBe("fail");
    expect(checkConclusion("neutral")).toBe("neutral");
    expect(badge("neutral", 0)).toMatchObject({ message: "neutral", color: "lightgrey" });
  });
});
