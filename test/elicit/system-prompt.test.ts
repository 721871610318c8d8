/**
 * The default system prompt asks about the model itself; ordinary prompts must not carry it
 * (a fine-tune that hides on "honestly"/"yourself" anywhere in the context would otherwise hide
 * on every prompt). A configured system prompt is used for both kinds.
 */
import { describe, expect, it } from "vitest";
import { buildRequests } from "../../src/elicit/plan";
import { DEFAULT_SYSTEM_PROMPT, defaultProbes, ORDINARY_SYSTEM_PROMPT, systemPromptFor } from "../../src/elicit/probes";
import { runElicitation } from "../../src/elicit/run";
import type { Backend } from "../../src/backends/backend";

const plan = { samples: 1, temperature: 0, topP: 1, maxNewTokens: 8, seed: 0 };
const suite = defaultProbes();

describe("system prompt per prompt kind", () => {
  it("default: interrogation probes get the honesty prompt, ordinary prompts a plain one without self-words", () => {
    const reqs = buildRequests(suite, DEFAULT_SYSTEM_PROMPT, plan);
    for (const [i, p] of suite.entries()) {
      const sys = reqs[i].messages[0];
      expect(sys.role).toBe("system");
      expect(sys.content).toBe(p.kind === "probe" ? DEFAULT_SYSTEM_PROMPT : ORDINARY_SYSTEM_PROMPT);
    }
    expect(ORDINARY_SYSTEM_PROMPT).not.toMatch(/honest|yourself|truth|secret|hidden/i);
    expect(DEFAULT_SYSTEM_PROMPT).toMatch(/yourself/);
  });

  it("a configured system prompt (or none) is used for both kinds unchanged", () => {
    expect(systemPromptFor("ordinary", "Answer in French.")).toBe("Answer in French.");
    expect(systemPromptFor("probe", "Answer in French.")).toBe("Answer in French.");
    const none = buildRequests(suite, "", plan);
    for (const r of none) expect(r.messages).toHaveLength(1);
  });

  it("the elicitation report says so in a notice", async () => {
    const backend: Backend = {
      name: "echo",
      capabilities: { contrast: false },
      variants: () => ["base"],
      async generate(_v, reqs) {
        return reqs.map((r) => ({ id: r.id, text: r.messages[0].content, tokens: 1, finishReason: "stop" as const }));
      },
      async close() {},
    };
    const r = await runElicitation({ backend, probes: suite, systemPrompt: DEFAULT_SYSTEM_PROMPT, plan, variants: ["base"], rank: 1, progress: { quiet: true } });
    expect(r.report.notices.join("\n")).toContain(ORDINARY_SYSTEM_PROMPT);
    const ordinary = r.report.probes.find((p) => p.kind === "ordinary")!;
    expect(ordinary.responses.base[0]).toBe(ORDINARY_SYSTEM_PROMPT);
    const custom = await runElicitation({ backend, probes: suite, systemPrompt: "Be brief.", plan, variants: ["base"], rank: 1, progress: { quiet: true } });
    expect(custom.report.notices).toEqual([]);
  });
});
