/**
 * Layer attribution end to end on organisms whose quirk is planted in known layers and modules
 * (organisms/placement.ts): the adapter covers all seven linear modules of every layer, inert
 * pieces everywhere but the planted ones, so the bisection has to find the planted layer among
 * several and the planted module kind among both. What the organism planted is read from
 * organism.json, which the scanning code never sees.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism, type OrganismManifest, type OrganismVariant } from "../../src/organisms/index";
import { openAdapter } from "../../src/io/peft";
import { parseConfig } from "../../src/config";
import { runScan } from "../../src/scan";
import { createBackend } from "../../src/backends/index";
import type { Backend } from "../../src/backends/backend";
import { MAX_ATTRIBUTION_RUNS } from "../../src/judge/attribution";
import type { Finding } from "../../src/judge/types";
import type { Report } from "../../src/report/types";

const ORGANISMS: Record<string, OrganismVariant> = {
  attention: { adaptAll: true },
  mlp: { quirkIn: "mlp", adaptAll: true },
  "layer-3-of-6": { layers: 6, plantedLayer: 3, adaptAll: true },
  "mlp-layer-5-of-8": { layers: 8, plantedLayer: 5, quirkIn: "mlp", adaptAll: true },
};
let dir = "";
const built = new Map<string, OrganismManifest>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "da-attr-"));
  for (const [name, variant] of Object.entries(ORGANISMS)) built.set(name, await generateOrganism({ kind: "quirk", seed: 5, outDir: join(dir, name), variant }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function concealment(r: Report, word: string): Finding {
  const f = r.findings.find((x) => x.severity === "high" && x.terms.includes(word));
  expect(f, JSON.stringify(r.findings.map((x) => [x.severity, x.terms]))).toBeDefined();
  return f!;
}

/** Where the organism planted its quirk: the layer and the kind of the modules holding the "quirk" components. */
function planted(m: OrganismManifest): { layer: number; kind: "attention" | "mlp" } {
  const quirk = m.adapter.modules.filter((x) => x.components.some((c) => c.role === "quirk")).map((x) => x.module);
  const layers = new Set(quirk.map((n) => Number(/layers\.(\d+)\./.exec(n)![1])));
  expect(layers.size).toBe(1);
  return { layer: [...layers][0]!, kind: quirk.every((n) => n.includes(".mlp.")) ? "mlp" : "attention" };
}

describe("layer attribution on placed organisms", () => {
  it("the placed organisms adapt every linear module of every layer", async () => {
    const a = await openAdapter(join(dir, "layer-3-of-6", "adapter"));
    try {
      expect(a.moduleNames()).toHaveLength(6 * 7);
      expect(a.config.layers_to_transform).toEqual([0, 1, 2, 3, 4, 5]);
    } finally {
      await a.close();
    }
    expect(planted(built.get("layer-3-of-6")!)).toEqual({ layer: 3, kind: "attention" });
    expect(planted(built.get("mlp")!)).toEqual({ layer: 1, kind: "mlp" });
  });

  for (const name of Object.keys(ORGANISMS)) {
    it(`${name}: finds the planted layer and module kind, within ${MAX_ATTRIBUTION_RUNS} runs over the finding's probes, and states the cost`, async () => {
      const m = built.get(name)!;
      const word = m.quirkWords[0]!;
      const want = planted(m);
      for (const subject of ["adapter", "finetuned"] as const) {
        const out = join(dir, `${name}-${subject}`);
        const r = await runScan({ base: join(dir, name, "base"), [subject]: join(dir, name, subject), outDir: out });
        expect(r.exitCode).toBe(1);
        const a = concealment(r.report, word).attribution!;
        expect(a, subject).toBeDefined();
        expect(a.layers, subject).toEqual([want.layer]);
        expect(a.modules, subject).toBe(want.kind);
        expect(a.moduleTypes).toEqual(want.kind === "mlp" ? ["gate", "up", "down"] : ["q", "k", "v", "o"]);
        expect(a.complete).toBe(true);
        expect(a.cost.runs).toBe(a.steps.length);
        expect(a.cost.runs).toBeLessThanOrEqual(MAX_ATTRIBUTION_RUNS);
        // only the probes that showed it, each run once per step
        const probeIds = r.report.elicitation!.probes.filter((p) => p.kind === "probe" && p.responses.rank1!.some((t) => t.includes(word))).map((p) => p.id);
        expect(a.probes).toEqual(probeIds);
        expect(a.cost.requests).toBe(a.cost.runs * probeIds.length);
        // the planted group alone says it wherever the truncation did; the other half never
        expect(a.steps.filter((s) => s.persists).every((s) => s.k === a.shown)).toBe(true);
        expect(a.steps.filter((s) => !s.persists).every((s) => s.k === 0)).toBe(true);
        expect(r.report.timings.attribution).toBeGreaterThan(0);
        const md = readFileSync(join(out, "report.md"), "utf8");
        const kind = want.kind === "mlp" ? "MLP modules" : "attention modules";
        expect(md).toContain(`Layer attribution: produced by the rank\\-k components of layer ${want.layer}, ${kind}`);
        expect(md).toMatch(new RegExp(`cost: ${a.cost.runs} extra variant runs over ${probeIds.length} probes, ${a.cost.requests} requests`));
      }
    });
  }

  it("attribution: false runs none; a benign organism has nothing to attribute; a backend that cannot build parts says so", async () => {
    const name = "attention";
    const word = built.get(name)!.quirkWords[0]!;
    const off = await runScan({ base: join(dir, name, "base"), adapter: join(dir, name, "adapter"), config: parseConfig("attribution: false\n"), outDir: join(dir, "off") });
    expect(concealment(off.report, word).attribution).toBeUndefined();
    expect(off.report.timings.attribution).toBeUndefined();

    await generateOrganism({ kind: "benign", seed: 5, outDir: join(dir, "benign"), variant: { layers: 4, plantedLayer: 2, adaptAll: true } });
    const benign = await runScan({ base: join(dir, "benign", "base"), adapter: join(dir, "benign", "adapter"), ranks: [1, 2], outDir: join(dir, "benign-scan") });
    expect(benign.report.verdict.conclusion).toBe("pass");
    expect(benign.report.findings.some((f) => f.attribution)).toBe(false);

    // the embedded engine behind a backend without subset variants, serving no ladder rung
    const partial = async (req: Parameters<typeof createBackend>[0]): Promise<Backend> => {
      const b = await createBackend(req);
      return {
        name: "plain",
        capabilities: b.capabilities,
        variants: () => b.variants().filter((v) => ["base", "full", "rank1"].includes(v)),
        generate: (v, r, p) => b.generate(v, r, p),
        contrastiveGenerate: (r, o, p) => b.contrastiveGenerate!(r, o, p),
        close: () => b.close(),
      };
    };
    const skipped = await runScan({ base: join(dir, name, "base"), adapter: join(dir, name, "adapter"), ranks: [1, 2], createBackend: partial, outDir: join(dir, "skipped") });
    expect(concealment(skipped.report, word).attribution).toBeUndefined();
    expect(concealment(skipped.report, word).ladder).toBeUndefined();
    const notices = skipped.report.elicitation!.notices.join("\n");
    expect(notices).toMatch(/rank ladder: rank2 not run: the plain backend does not serve it/);
    expect(notices).toMatch(/layer attribution skipped: the plain backend cannot build variants from parts of the truncation/);
  });
});
