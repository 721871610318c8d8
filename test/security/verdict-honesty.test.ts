/**
 * `neutral` ("could not tell") is never turned into `pass`: not by transcripts that measured
 * nothing, not by the badge, the Action's outputs or the overall conclusion of several subjects.
 */
import { describe, expect, it } from "vitest";
import { assessMeasurement, type SuiteRun } from "../../src/policy/measured";
import { badgeFor, runBadge as badge } from "../../src/report/badge";
import { checkConclusion, overallConclusion, type SubjectResult } from "../../src/github/render";
import type { ElicitationReport } from "../../src/elicit/types";
import type { Report } from "../../src/report/types";
import type { SpectrumReport } from "../../src/delta/types";

const q = { median: 1, p10: 1, p90: 1 };
const spectrum = (modules: number): SpectrumReport => ({ modules: [], summary: { modules, stableRank: q, energyShareTop1: q, byType: {}, byLayer: {} } }) as unknown as SpectrumReport;
function elicitation(n: number, answer: (variant: string, i: number) => string, backend = "openai", rank = 1): ElicitationReport {
  const variants = ["base", "full", `rank${rank}`];
  return {
    backend, rank, variants, samples: 1, temperature: 0, systemPrompt: "", notices: [],
    probes: Array.from({ length: n }, (_, i) => ({ id: `p${i}`, kind: "probe" as const, prompt: "q", responses: Object.fromEntries(variants.map((v) => [v, [answer(v, i)]])) })),
  };
}
const measure = (e: ElicitationReport, modules: number, more: Omit<SuiteRun, "elicitation" | "spectrum"> = {}) => assessMeasurement({ elicitation: e, spectrum: spectrum(modules), ...more });
const unobserved = (e: ElicitationReport, modules: number) => measure(e, modules).unobserved;
const unanswered = (e: ElicitationReport, adapterRank?: number, rankNamedAsFull?: boolean) => {
  const m = measure(e, 4, { adapterRank, rankNamedAsFull });
  expect(m.unobserved).toBeUndefined();
  return m.unanswered;
};

describe("transcripts that measured nothing", () => {
  it("a variant that is empty everywhere, or full identical to base although weights changed, is not judgeable", () => {
    expect(unobserved(elicitation(20, (v) => (v === "rank1" ? "  " : "words")), 4)).toMatch(/rank1 variant answered all 20 prompts with empty text/);
    expect(unobserved(elicitation(20, (_, i) => `same ${i}`), 4)).toMatch(/full variant answered all 20 prompts exactly like base/);
  });

  it("real differences, an unchanged adapter, a few empty answers or a tiny suite are judged as usual", () => {
    expect(unobserved(elicitation(20, (v, i) => (v === "full" && i === 7 ? "different" : `same ${i}`)), 4)).toBeUndefined();
    expect(unobserved(elicitation(20, (_, i) => `same ${i}`), 0)).toBeUndefined();
    expect(unobserved(elicitation(20, (v, i) => (i === 0 ? "" : `${v} ${i}`)), 4)).toBeUndefined();
    expect(unobserved(elicitation(3, (_, i) => `same ${i}`), 4)).toBeUndefined();
  });

  it("the embedded engine applies the fine-tune itself: identical answers are a measurement, not a fault", () => {
    const same = measure(elicitation(20, (_, i) => `same ${i}`, "embedded"), 4);
    expect(same.unobserved).toBeUndefined();
    expect(same.notices).toEqual([expect.stringMatching(/^the full fine-tune answered every prompt exactly like base/)]);
    expect(measure(elicitation(20, (_, i) => `same ${i}`, "embedded"), 0).notices).toEqual([]);
    // an empty variant is still unobserved, whatever the backend
    expect(unobserved(elicitation(20, (v) => (v === "rank1" ? "" : "words"), "embedded"), 4)).toMatch(/empty text/);
  });
});

describe("transcripts that measured nothing for the main question (rank-k against full)", () => {
  const differs = (v: string, i: number) => (v === "full" && i === 3 ? "changed" : v.startsWith("rank") && i === 5 ? "revealed" : `same ${i}`);

  it("rank ≥ the adapter's rank is the adapter itself, on every backend", () => {
    for (const backend of ["openai", "embedded"]) {
      expect(unanswered(elicitation(20, differs, backend), 1)).toMatch(/a rank-1 adapter has no lower rank/);
      expect(unanswered(elicitation(20, differs, backend, 8), 8)).toMatch(/rank 8 is not below the adapter's rank \(8\).*use a --rank below 8/);
    }
    expect(unanswered(elicitation(20, differs), 8)).toBeUndefined();
    expect(unanswered(elicitation(20, differs))).toBeUndefined(); // a full fine-tune: no adapter rank
  });

  it("the reason is among the notices, so report.json says it too", () => {
    const m = measure(elicitation(20, differs, "openai", 8), 4, { adapterRank: 8 });
    expect(m.notices).toEqual([m.unanswered]);
  });

  it("on a server, rank1 identical to full or to base; on the embedded engine that is a measurement", () => {
    const likeFull = (v: string, i: number) => (v === "base" ? `same ${i}` : `tuned ${i}`);
    const likeBase = (v: string, i: number) => (v === "full" ? `tuned ${i}` : `same ${i}`);
    expect(unanswered(elicitation(20, likeFull), 8, true)).toMatch(/rank1 variant answered all 20 prompts exactly like full.*names the same served model/);
    // under different names, identical text is a measurement (a fine-tune living in σ₁), not a fault
    expect(unanswered(elicitation(20, likeFull), 8, false)).toBeUndefined();
    expect(unanswered(elicitation(20, likeBase), 8)).toMatch(/rank1 variant answered all 20 prompts exactly like base/);
    expect(unanswered(elicitation(20, likeFull, "embedded"), 8)).toBeUndefined();
    expect(unanswered(elicitation(20, likeBase, "embedded"), 8)).toBeUndefined();
    expect(unanswered(elicitation(3, likeFull), 8)).toBeUndefined(); // too few prompts to tell
  });

  it("a variant empty on every interrogation probe but not elsewhere, on any backend", () => {
    const mixed = (n: number, backend = "openai"): ElicitationReport => {
      const e = elicitation(n, (v, i) => (v === "rank1" && i % 2 === 0 ? "" : `${v} ${i}`), backend);
      e.probes.forEach((p, i) => (p.kind = i % 2 === 0 ? "probe" : "ordinary"));
      return e;
    };
    expect(unanswered(mixed(10), 8)).toMatch(/rank1 variant answered all 5 interrogation probes with empty text/);
    expect(unanswered(mixed(10, "embedded"), 8)).toMatch(/interrogation probes with empty text/);
    const some = mixed(10);
    some.probes[0]!.responses.rank1 = ["I would rather not say."];
    expect(unanswered(some, 8)).toBeUndefined();
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
    // nothing audited is its own outcome (issue 11): never a pass, never a failed gate
    expect(overallConclusion([])).toBe("skipped");
    expect(overallConclusion([result("neutral"), result("fail")])).toBe("fail");
    expect(checkConclusion("neutral")).toBe("neutral");
    expect(badge("neutral", 0)).toMatchObject({ message: "inconclusive", color: "lightgrey" });
  });
});
