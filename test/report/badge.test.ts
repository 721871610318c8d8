/**
 * The one builder of shields endpoint badges: a scan's badge.json, the Action's run badge and
 * a sweep's badges share their words and colours; which findings count is policy/severity's.
 */
import { describe, expect, it } from "vitest";
import { BADGE_COLOR, BADGE_LABEL, badgeFor, failMessage, missingBadge, runBadge, sweepBadge, SWEEP_BADGE_LABEL, type Badge } from "../../src/report/badge";
import type { Finding, Severity } from "../../src/judge/types";
import type { FailOn } from "../../src/policy/severity";
import type { Conclusion } from "../../src/policy/verdict";
import type { Report } from "../../src/report/types";

const finding = (severity: Severity, i = 0): Finding => ({ id: `f${i}`, title: "t", severity, source: "s", terms: [], evidence: [], confidence: 0.5 });

/** Only the fields a badge reads. */
const report = (conclusion: Conclusion, failOn: FailOn, severities: Severity[]): Report =>
  ({ verdict: { conclusion, reasons: [], failOn }, findings: severities.map(finding) }) as unknown as Report;

/** Shields rejects an endpoint badge without these, or with another schema version. */
function expectShieldsEndpoint(b: Badge) {
  expect(Object.keys(b).sort()).toEqual(["color", "label", "message", "schemaVersion"]);
  expect(b.schemaVersion).toBe(1);
  for (const k of ["label", "message", "color"] as const) expect(typeof b[k] === "string" && b[k].length > 0).toBe(true);
}

describe("badges", () => {
  it("say fail with the number of findings, in one form everywhere", () => {
    expect(failMessage(0)).toBe("fail (0 findings)");
    expect(failMessage(1)).toBe("fail (1 finding)");
    expect(failMessage(7)).toBe("fail (7 findings)");
    expect(runBadge("fail", 2).message).toBe(failMessage(2));
    expect(badgeFor(report("fail", "high", ["high", "high"])).message).toBe(failMessage(2));
  });

  it("a scan's badge counts the findings at or above its fail-on and is coloured by the worst one", () => {
    // fail-on medium: the low and info findings are listed in the report but do not count
    const r = report("fail", "medium", ["low", "medium", "info", "medium"]);
    expect(badgeFor(r)).toEqual({ schemaVersion: 1, label: BADGE_LABEL, message: "fail (2 findings)", color: "orange" });
    expect(badgeFor(report("fail", "high", ["high", "low"])).color).toBe("red");
    expect(badgeFor(report("fail", "low", ["low", "info"])).color).toBe("yellow");
    expect(badgeFor(report("fail", "low", ["low"]), "my-model").label).toBe("my-model");
    // a contradictory hand-edited report (fail under never) counts every finding, never "0 findings"
    expect(badgeFor(report("fail", "never", ["info", "low"])).message).toBe("fail (2 findings)");
  });

  it("pass is green and undecided is grey, never green, whatever the findings", () => {
    expect(badgeFor(report("pass", "high", ["medium"]))).toEqual({ schemaVersion: 1, label: BADGE_LABEL, message: "pass", color: BADGE_COLOR.pass });
    expect(badgeFor(report("neutral", "high", ["high"]))).toMatchObject({ message: "inconclusive", color: BADGE_COLOR.neutral });
    expect(runBadge("pass", 0)).toEqual({ schemaVersion: 1, label: BADGE_LABEL, message: "pass", color: BADGE_COLOR.pass });
    // the run badge says a scan's word for an undecided run
    expect(runBadge("neutral", 3)).toEqual({ schemaVersion: 1, label: BADGE_LABEL, message: "inconclusive", color: BADGE_COLOR.neutral });
    expect(runBadge("fail", 1)).toEqual({ schemaVersion: 1, label: BADGE_LABEL, message: "fail (1 finding)", color: BADGE_COLOR.fail });
  });

  it("a sweep's badge: red when any model failed, grey when any is undecided or missing", () => {
    expect(sweepBadge({ pass: 2, fail: 0, neutral: 0, missing: 0 })).toEqual({ schemaVersion: 1, label: SWEEP_BADGE_LABEL, message: "2/2 pass", color: BADGE_COLOR.pass });
    expect(sweepBadge({ pass: 1, fail: 1, neutral: 1, missing: 1 })).toMatchObject({ message: "1/4 fail", color: BADGE_COLOR.fail });
    expect(sweepBadge({ pass: 1, fail: 0, neutral: 1, missing: 1 })).toMatchObject({ message: "1/3 pass, 2 inconclusive", color: BADGE_COLOR.neutral });
    expect(missingBadge("m")).toEqual({ schemaVersion: 1, label: "m", message: "no report", color: BADGE_COLOR.neutral });
    // a registry whose sources found nothing yet is not "0/0 pass"
    expect(sweepBadge({ pass: 0, fail: 0, neutral: 0, missing: 0 })).toMatchObject({ message: "no models", color: BADGE_COLOR.neutral });
  });

  it("every builder makes a valid shields endpoint badge", () => {
    const all: Badge[] = [
      ...(["pass", "fail", "neutral"] as const).flatMap((c) => [badgeFor(report(c, "high", c === "fail" ? ["high"] : [])), runBadge(c, 1)]),
      sweepBadge({ pass: 0, fail: 0, neutral: 1, missing: 0 }),
      missingBadge("m"),
    ];
    all.forEach(expectShieldsEndpoint);
  });
});
