/**
 * `neutral` ("could not tell") is never turned into `pass`: not by transcripts that measured
 * nothing, not by the badge, the Action's outputs or the overall conclusion of several subjects.
 */
import { describe, expect, it } from "vitest";
import { fullIdenticalToBase, unansweredReason, unobservedReason } from "../../src/scan";
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

describe("transcripts that measured nothing for the main question (rank-k against full)", () => {
  const differs = (v: string, i: number) => (v === "full" && i === 3 ? "changed" : v === "rank1" && i === 5 ? "revealed" : `same ${i}`);

  it("rank ≥ the adapter's rank is the adapter itself, on every backend", () => {
    for (const backend of ["openai", "embedded"]) {
      expect(unansweredReason(elicitation(20, differs, backend), spectrum(4), V, 1, 1)).toMatch(/a rank-1 adapter has no lower rank/);
      expect(unansweredReason(elicitation(20, differs, backend), spectrum(4), V, 8, 8)).toMatch(/rank 8 is not below the adapter's rank \(8\).*use a --rank below 8/);
    }
    expect(unansweredReason(elicitation(20, differs), spectrum(4), V, 1, 8)).toBeUndefined();
    expect(unansweredReason(elicitation(20, differs), spectrum(4), V, 1)).toBeUndefined(); // a full fine-tune: no adapter rank
  });

  it("on a server, rank1 identical to full or to base; on the embedded engine that is a measurement", () => {
    const likeFull = (v: string, i: number) => (v === "base" ? `same ${i}` : `tuned ${i}`);
    const likeBase = (v: string, i: number) => (v === "full" ? `tuned ${i}` : `same ${i}`);
    expect(unansweredReason(elicitation(20, likeFull), spectrum(4), V, 1, 8, true)).toMatch(/rank1 variant answered all 20 prompts exactly like full.*names the same served model/);
    // under different names, identical text is a measurement (a fine-tune living in σ₁), not a fault
    expect(unansweredReason(elicitation(20, likeFull), spectrum(4), V, 1, 8, false)).toBeUndefined();
    expect(unansweredReason(elicitation(20, likeBase), spectrum(4), V, 1, 8)).toMatch(/rank1 variant answered all 20 prompts exactly like base/);
    expect(unansweredReason(elicitation(20, likeFull, "embedded"), spectrum(4), V, 1, 8)).toBeUndefined();
    expect(unansweredReason(elicitation(20, likeBase, "embedded"), spectrum(4), V, 1, 8)).toBeUndefined();
    expect(unansweredReason(elicitation(3, likeFull), spectrum(4), V, 1, 8)).toBeUndefined(); // too few prompts to tell
  });

  it("a variant empty on every interrogation probe but not elsewhere, on any backend", () => {
    const mixed = (n: number, backend = "openai"): ElicitationReport => {
      const e = elicitation(n, (v, i) => (v === "rank1" && i % 2 === 0 ? "" : `${v} ${i}`), backend);
      e.probes.forEach((p, i) => (p.kind = i % 2 === 0 ? "probe" : "ordinary"));
      return e;
    };
    expect(unansweredReason(mixed(10), spectrum(4), V, 1, 8)).toMatch(/rank1 variant answered all 5 interrogation probes with empty text/);
    expect(unansweredReason(mixed(10, "embedded"), spectrum(4), V, 1, 8)).toMatch(/interrogation probes with empty text/);
    const some = mixed(10);
    some.probes[0]!.responses.rank1 = ["I would rather not say."];
    expect(unansweredReason(some, spectrum(4), V, 1, 8)).toBeUndefined();
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
