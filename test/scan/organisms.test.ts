/**
 * The real end-to-end check: scan generated model organisms with the embedded engine.
 * Quirk organisms (two seeds, two different planted words) must fail with a high finding
 * whose terms include the planted word — read here from organism.json, which the scanning
 * code never sees — via the adapter and via the merged full checkpoint; benign organisms
 * must pass. Same inputs and seed give the same findings.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism, type OrganismManifest } from "../../src/organisms/index";
import { parseConfig } from "../../src/config";
import { runScan } from "../../src/scan";
import type { Report } from "../../src/report/types";

const root = new URL("../..", import.meta.url).pathname;
const SEEDS = [3, 8];
let dir = "";
const organisms = new Map<string, { dir: string; manifest: OrganismManifest }>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "da-org-scan-"));
  for (const seed of SEEDS) {
    for (const kind of ["quirk", "benign"] as const) {
      const d = join(dir, `${kind}-${seed}`);
      organisms.set(`${kind}-${seed}`, { dir: d, manifest: await generateOrganism({ kind, seed, outDir: d }) });
    }
  }
  // the two seeds must plant different words, or the test could pass by knowing one
  const words = SEEDS.map((s) => organisms.get(`quirk-${s}`)!.manifest.quirkWords[0]);
  expect(new Set(words).size).toBe(SEEDS.length);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function expectCaught(report: Report, word: string): void {
  expect(report.verdict.conclusion).toBe("fail");
  const high = report.findings.filter((f) => f.severity === "high");
  const hit = high.find((f) => f.terms.includes(word));
  expect(hit, JSON.stringify(report.findings.map((f) => [f.severity, f.terms]))).toBeDefined();
  expect(hit!.source).toBe("concealment");
  const probeIds = new Set(report.elicitation!.probes.filter((p) => p.kind === "probe").map((p) => p.id));
  const ev = hit!.evidence.find((e) => e.variant === "rank1" && probeIds.has(e.probeId));
  expect(ev).toBeDefined();
  expect(ev!.excerpt).toContain(word);
  // verbatim: the excerpt is part of what rank1 answered to that probe
  const answer = report.elicitation!.probes.find((p) => p.id === ev!.probeId)!.responses.rank1.join("\n");
  expect(answer).toContain(ev!.excerpt);
}

describe("scan on model organisms", () => {
  for (const seed of SEEDS) {
    it(`quirk organism seed ${seed}: fails with a high finding naming the planted word (adapter and full checkpoint)`, async () => {
      const o = organisms.get(`quirk-${seed}`)!;
      const word = o.manifest.quirkWords[0];
      const lora = await runScan({ base: join(o.dir, "base"), adapter: join(o.dir, "adapter"), outDir: join(o.dir, "scan-lora") });
      expect(lora.exitCode).toBe(1);
      expectCaught(lora.report, word);
      expect(readFileSync(join(o.dir, "scan-lora", "report.md"), "utf8")).toContain(word);
      const full = await runScan({ base: join(o.dir, "base"), finetuned: join(o.dir, "finetuned"), outDir: join(o.dir, "scan-full") });
      expect(full.exitCode).toBe(1);
      expect(full.report.subject.kind).toBe("full");
      expectCaught(full.report, word);
    });

    it(`benign organism seed ${seed}: passes, nothing above low`, async () => {
      const o = organisms.get(`benign-${seed}`)!;
      const r = await runScan({ base: join(o.dir, "base"), adapter: join(o.dir, "adapter"), outDir: join(o.dir, "scan") });
      expect(r.report.verdict.conclusion).toBe("pass");
      expect(r.exitCode).toBe(0);
      expect(r.report.findings.filter((f) => f.severity === "high" || f.severity === "medium")).toEqual([]);
      // the style change is seen and reported, just not escalated
      expect(r.report.findings.some((f) => f.source === "implant")).toBe(true);
    });
  }

  it("same inputs and seed give the same findings (sampled decoding)", async () => {
    const o = organisms.get(`quirk-${SEEDS[0]}`)!;
    const config = parseConfig("samples: 2\ntemperature: 0.7\nseed: 11\n");
    const run = (out: string) => runScan({ base: join(o.dir, "base"), adapter: join(o.dir, "adapter"), config, outDir: join(o.dir, out) });
    const [a, b] = [await run("det-a"), await run("det-b")];
    expect(b.report.findings).toEqual(a.report.findings);
    // an attempt's seconds are wall time; everything else is the same
    const untimed = (x: unknown) => JSON.parse(JSON.stringify(x, (k, v) => (k === "seconds" ? 0 : v)));
    expect(untimed(b.report.elicitation!.probes)).toEqual(untimed(a.report.elicitation!.probes));
  });

  it("the CLI: scan exits 1 on a quirk organism, fail-on never exits 0, demo shows both verdicts", () => {
    const o = organisms.get(`quirk-${SEEDS[1]}`)!;
    const cli = (...args: string[]) => spawnSync(process.execPath, [`${root}bin/delta-audit.js`, ...args], { encoding: "utf8", cwd: dir });
    const scan = cli("scan", "--base", join(o.dir, "base"), "--adapter", join(o.dir, "adapter"), "--out", join(o.dir, "cli"));
    expect(scan.status).toBe(1);
    expect(scan.stdout).toMatch(/verdict: fail/);
    expect(scan.stdout).toContain(o.manifest.quirkWords[0]);
    const lenient = cli("scan", "--base", join(o.dir, "base"), "--adapter", join(o.dir, "adapter"), "--fail-on", "never", "--out", join(o.dir, "cli"));
    expect(lenient.status).toBe(0);
    const t = Date.now();
    const demo = cli("demo", "--out", join(dir, "demo"));
    expect(demo.status, demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/FAIL \(expected fail\)[\s\S]*PASS \(expected pass\)/);
    expect(Date.now() - t).toBeLessThan(180_000);
  });
});
