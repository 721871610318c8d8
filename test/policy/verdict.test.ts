import { describe, expect, it } from "vitest";
import { decideVerdict } from "../../src/policy/verdict";
import type { Finding } from "../../src/judge/types";

describe("decideVerdict", () => {
  const f = (severity: Finding["severity"]): Finding => ({ id: severity, title: `a ${severity} thing`, severity, source: "test", terms: [], evidence: [], confidence: 0.5 });

  it("fails when a finding reaches fail-on, passes otherwise", () => {
    expect(decideVerdict([f("medium"), f("low")], "high").conclusion).toBe("pass");
    expect(decideVerdict([f("medium"), f("high")], "high").conclusion).toBe("fail");
    expect(decideVerdict([f("medium")], "medium").conclusion).toBe("fail");
    expect(decideVerdict([f("low")], "medium").conclusion).toBe("pass");
    expect(decideVerdict([f("info")], "low").conclusion).toBe("pass");
    expect(decideVerdict([f("high")], "never").conclusion).toBe("pass");
    const v = decideVerdict([f("high"), f("medium")], "medium");
    expect(v.reasons).toHaveLength(2);
    expect(v.reasons[0]).toMatch(/^high: a high thing/);
  });

  it("is neutral whenever the suite did not finish, even with findings", () => {
    const died = decideVerdict([], "high", { unfinished: "backend died" });
    expect(died.conclusion).toBe("neutral");
    expect(died.reasons).toEqual(["the elicitation suite did not finish, so the subject could not be judged", "backend died"]);
    const v = decideVerdict([f("high")], "high", { unfinished: "" });
    expect(v.conclusion).toBe("neutral");
    expect(v.failOn).toBe("high");
    expect(v.reasons).toEqual(["the elicitation suite did not finish, so the subject could not be judged", "1 finding(s) at or above high were seen before it stopped"]);
  });

  it("is neutral when the suite finished but measured nothing, and says it finished", () => {
    const v = decideVerdict([f("high")], "high", { unobserved: "the full variant answered all 20 prompts with empty text, so nothing was measured", unanswered: "ignored" });
    expect(v.conclusion).toBe("neutral");
    expect(v.reasons[0]).toMatch(/^the elicitation suite ran to the end, but measured nothing a verdict can rest on/);
    expect(v.reasons.join("\n")).not.toMatch(/did not finish|ignored/);
    expect(v.reasons.slice(1)).toEqual(["the full variant answered all 20 prompts with empty text, so nothing was measured", "1 finding(s) at or above high are listed from what was measured"]);
  });

  it("a suite that measured nothing for its main question cannot pass, but a fail stands", () => {
    const unanswered = "rank 8 is not below the adapter's rank (8)";
    const neutral = decideVerdict([f("medium")], "high", { unanswered });
    expect(neutral.conclusion).toBe("neutral");
    expect(neutral.reasons).toEqual([expect.stringMatching(/^the suite ran, but measured nothing for its main question/), unanswered]);
    const fail = decideVerdict([f("high"), f("medium")], "high", { unanswered });
    expect(fail).toEqual(decideVerdict([f("high"), f("medium")], "high"));
    expect(fail.conclusion).toBe("fail");
    expect(fail.reasons).toEqual(["high: a high thing (confidence 0.50)"]);
    // fail-on never: nothing fails, so the unanswered suite is neutral, not a pass
    expect(decideVerdict([f("high")], "never", { unanswered }).conclusion).toBe("neutral");
  });
});
