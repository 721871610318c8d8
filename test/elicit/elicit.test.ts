import { describe, expect, it } from "vitest";
import type { Backend } from "../../src/backends/backend";
import type { GenerationRequest } from "../../src/chat/types";
import { buildRequests, requestSeed } from "../../src/elicit/plan";
import { defaultProbes, DEFAULT_SYSTEM_PROMPT } from "../../src/elicit/probes";
import { runElicitation } from "../../src/elicit/run";

/** A scripted backend that records its calls; text = variant + request id + seed. */
function scripted(opts: { contrast?: boolean; failOn?: string } = {}) {
  const calls: { variant: string; n: number; requests: GenerationRequest[] }[] = [];
  const answer = (variant: string, reqs: GenerationRequest[]) => reqs.map((r) => ({ id: r.id, text: `${variant}:${r.id}:${r.sampling.seed}`, tokens: 1, finishReason: "stop" as const }));
  const backend: Backend = {
    name: "scripted",
    capabilities: { contrast: Boolean(opts.contrast) },
    variants: () => ["base", "full", "rank1"],
    async generate(variant, reqs, onProgress) {
      calls.push({ variant, n: reqs.length, requests: reqs });
      if (variant === opts.failOn) throw new Error(`${variant} exploded`);
      onProgress?.(reqs.length, reqs.length);
      // answer in reverse order: the runner must place results by id, not position
      return answer(variant, reqs).reverse();
    },
    async close() {},
  };
  if (opts.contrast) backend.contrastiveGenerate = async (reqs, o) => (calls.push({ variant: `contrast(${o.alpha},${o.topK})`, n: reqs.length, requests: reqs }), answer("contrast", reqs));
  return { backend, calls };
}

const plan = { samples: 2, temperature: 0.7, topP: 1, maxNewTokens: 16, seed: 3 };
const probes = defaultProbes().slice(0, 4);

describe("elicitation", () => {
  it("runs one batch per variant with system prompt, samples and derived seeds", async () => {
    const { backend, calls } = scripted({ contrast: true });
    const r = await runElicitation({ backend, probes, systemPrompt: DEFAULT_SYSTEM_PROMPT, plan, variants: ["base", "full", "rank1"], contrast: { alpha: 0.5, topK: 4 }, rank: 1, progress: { quiet: true } });
    expect(calls.map((c) => [c.variant, c.n])).toEqual([["base", 8], ["full", 8], ["rank1", 8], ["contrast(0.5,4)", 8]]);
    const req = calls[0].requests[1];
    expect(req.id).toBe(`${probes[0].id}#1`);
    expect(req.messages).toEqual([{ role: "system", content: DEFAULT_SYSTEM_PROMPT }, { role: "user", content: probes[0].prompt }]);
    expect(req.sampling).toEqual({ maxNewTokens: 16, temperature: 0.7, topP: 1, seed: requestSeed(3, probes[0].id, 1) });
    expect(r.error).toBeUndefined();
    expect(r.report.variants).toEqual(["base", "full", "rank1", "contrast"]);
    expect(r.report.probes[2].responses.rank1).toEqual([`rank1:${probes[2].id}#0:${requestSeed(3, probes[2].id, 0)}`, `rank1:${probes[2].id}#1:${requestSeed(3, probes[2].id, 1)}`]);
  });

  it("seeds depend on (seed, probe, sample) only, not on the suite's order", () => {
    const a = buildRequests(probes, "", plan);
    const b = buildRequests([...probes].reverse(), "", plan);
    const seedOf = (rs: GenerationRequest[], id: string) => rs.find((r) => r.id === id)!.sampling.seed;
    expect(seedOf(a, `${probes[1].id}#1`)).toBe(seedOf(b, `${probes[1].id}#1`));
    expect(new Set(a.map((r) => r.sampling.seed)).size).toBe(a.length);
    expect(a[0].messages).toHaveLength(1); // empty system prompt: no system message
  });

  it("skips contrast with a notice when the backend cannot, and keeps partial results on failure", async () => {
    const s1 = scripted();
    const r1 = await runElicitation({ backend: s1.backend, probes, systemPrompt: "", plan, variants: ["base", "full", "rank1"], contrast: { alpha: 1, topK: 5 }, rank: 1, progress: { quiet: true } });
    expect(r1.report.notices[0]).toMatch(/contrast skipped/);
    expect(r1.report.variants).toEqual(["base", "full", "rank1"]);

    const s2 = scripted({ failOn: "full" });
    const r2 = await runElicitation({ backend: s2.backend, probes, systemPrompt: "", plan, variants: ["base", "full", "rank1"], rank: 1, progress: { quiet: true } });
    expect(r2.error?.message).toBe("full exploded");
    expect(r2.completedVariants).toEqual(["base"]);
    expect(r2.report.probes[0].responses.base).toHaveLength(2);
    expect(r2.report.probes[0].responses.full).toBeUndefined();
    expect(s2.calls.map((c) => c.variant)).toEqual(["base", "full"]); // stopped, did not go on
  });
});
