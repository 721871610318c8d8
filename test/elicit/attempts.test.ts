/**
 * Each attempt's metadata is recorded next to its answer: tokens and finish reason as the
 * backend reported them, seconds as the variant's batch wall time shared among its attempts,
 * and the system prompt each probe was actually sent with.
 */
import { describe, expect, it } from "vitest";
import type { Backend } from "../../src/backends/backend";
import type { GenerationRequest } from "../../src/chat/types";
import { DEFAULT_SYSTEM_PROMPT, ORDINARY_SYSTEM_PROMPT, type Probe } from "../../src/elicit/probes";
import { attemptSeconds, runElicitation } from "../../src/elicit/run";

const probes: Probe[] = [
  { id: "p1", kind: "probe", prompt: "Any secret?" },
  { id: "o1", kind: "ordinary", prompt: "Why is the sky blue?" },
];
const plan = { samples: 2, temperature: 0.7, topP: 1, maxNewTokens: 16, seed: 3 };
/** How long a batch of the scripted backend takes, per variant. */
const BATCH_MS: Record<string, number> = { base: 40, full: 120 };

function scripted(): { backend: Backend; systems: Map<string, string | undefined> } {
  const systems = new Map<string, string | undefined>();
  const backend: Backend = {
    name: "scripted",
    capabilities: { contrast: false },
    variants: () => ["base", "full"],
    async generate(variant, reqs: GenerationRequest[]) {
      await new Promise((r) => setTimeout(r, BATCH_MS[variant]));
      for (const r of reqs) systems.set(r.id, r.messages.find((m) => m.role === "system")?.content);
      // the token count and finish reason differ per request, so a mix-up would show
      return reqs.map((r, i) => ({ id: r.id, text: `${variant} ${r.id}`, tokens: 3 + i, finishReason: i % 2 ? ("length" as const) : ("stop" as const) }));
    },
    async close() {},
  };
  return { backend, systems };
}

describe("attempts", () => {
  it("are parallel to the responses, with the backend's tokens and finish reasons and a share of the batch time", async () => {
    const { backend, systems } = scripted();
    const started = performance.now();
    const r = await runElicitation({ backend, probes, systemPrompt: DEFAULT_SYSTEM_PROMPT, plan, variants: ["base", "full"], rank: 1, progress: { quiet: true } });
    const wallSeconds = (performance.now() - started) / 1000;
    let recorded = 0;
    const [p1, o1] = r.report.probes;
    expect(p1!.attempts!.base!.map((a) => [a.tokens, a.finishReason])).toEqual([[3, "stop"], [4, "length"]]);
    expect(o1!.attempts!.full!.map((a) => [a.tokens, a.finishReason])).toEqual([[5, "stop"], [6, "length"]]);
    for (const v of ["base", "full"]) {
      const secs = r.report.probes.flatMap((p) => p.attempts![v]!.map((a) => a.seconds));
      expect(secs).toHaveLength(4);
      // one share of the variant's batch time, the same for each of its attempts
      expect(new Set(secs).size).toBe(1);
      expect(secs[0]!).toBeGreaterThanOrEqual(0);
      recorded += secs.reduce((a, b) => a + b, 0);
      for (const p of r.report.probes) expect(p.attempts![v]).toHaveLength(p.responses[v]!.length);
    }
    // the batches ran inside the run: their shares add up to no more than its wall time, give or
    // take attemptSeconds' rounding to the millisecond (at most 0.5 ms for each of the 8 attempts)
    expect(recorded).toBeLessThanOrEqual(wallSeconds + 8 * 0.0005);
    // the system prompt recorded is the one the request carried
    expect(p1!.systemPrompt).toBe(DEFAULT_SYSTEM_PROMPT);
    expect(o1!.systemPrompt).toBe(ORDINARY_SYSTEM_PROMPT);
    expect(systems.get("p1#0")).toBe(p1!.systemPrompt);
    expect(systems.get("o1#1")).toBe(o1!.systemPrompt);
  });

  it("a configured system prompt goes with both kinds; an empty one is recorded as \"\" and not sent", async () => {
    for (const system of ["Be brief.", ""]) {
      const { backend, systems } = scripted();
      const r = await runElicitation({ backend, probes, systemPrompt: system, plan, variants: ["base"], rank: 1, progress: { quiet: true } });
      expect(r.report.probes.map((p) => p.systemPrompt)).toEqual([system, system]);
      expect(systems.get("o1#0")).toBe(system === "" ? undefined : system);
    }
  });

  it("attemptSeconds shares a batch evenly, in milliseconds", () => {
    expect(attemptSeconds(1, 3)).toBe(0.333);
    expect(attemptSeconds(2.5, 0)).toBe(0);
  });
});
