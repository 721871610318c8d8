/**
 * Report views benchmark (issue 13): writing every view of a 70B-shaped report — 560 modules
 * (80 layers × 7 types) with 64 singular values each, 38 probes × 4 variants with ~64-token
 * answers, a few findings — with `writeReportFiles` (report.json, report.md, badge.json,
 * report.html and whatever else build.ts writes) into a temporary folder.
 * Targets: all views in < 1 s; report.html < 2 MB. Reported as ratios (measured / target; ≤ 1
 * meets it). The fastest of a few runs counts (the first warms the JIT).
 *
 * Run: `npm run bench -- report-views` (BENCH_QUICK=1: fewer runs).
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { REPORT_FILES, writeReportFiles } from "../src/report/build";
import { fixtureReport } from "../test/report/report-fixture";
import { QUICK, secs, summariseTargets, verdict } from "./spectrum-common";

export const TARGETS = Object.freeze({ seconds: 1, htmlBytes: 2_000_000 });
const RUNS = QUICK ? 2 : 5;

export async function run(): Promise<void> {
  const report = fixtureReport({ layers: 80, sigmaCount: 64, probes: 38, samples: 1, kind: "lora" });
  const el = report.elicitation!;
  const words = el.probes.flatMap((p) => Object.values(p.responses).flat()).reduce((n, a) => n + a.split(/\s+/).length, 0);
  console.log(`  report: ${report.spectrum.modules.length} modules × ${report.spectrum.modules[0]!.sigma.length} σ, ${el.probes.length} probes × ${el.variants.length} variants (${words} words of answers), ${report.findings.length} findings`);
  const times: number[] = [];
  let sizes: [string, number][] = [];
  for (let i = 0; i < RUNS; i++) {
    const dir = mkdtempSync(join(tmpdir(), "da-views-"));
    try {
      const t0 = performance.now();
      await writeReportFiles(dir, report, process.cwd());
      times.push((performance.now() - t0) / 1000);
      sizes = readdirSync(dir).map((f) => [f, statSync(join(dir, f)).size]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  const best = Math.min(...times);
  const html = sizes.find(([f]) => f === REPORT_FILES.html)?.[1] ?? Number.NaN;
  console.log(`  files: ${sizes.map(([f, b]) => `${f} ${(b / 1e3).toFixed(1)} kB`).join(", ")}`);
  console.log(`  writeReportFiles: best ${secs(best)} of ${RUNS} (runs ${times.map((t) => t.toFixed(3)).join(", ")})`);
  console.log(`  all views: ${secs(best)} / target ${TARGETS.seconds} s = ${(best / TARGETS.seconds).toFixed(3)} ${verdict(best < TARGETS.seconds)}`);
  console.log(`  report.html: ${(html / 1e6).toFixed(3)} MB / target ${TARGETS.htmlBytes / 1e6} MB = ${(html / TARGETS.htmlBytes).toFixed(3)} ${verdict(html < TARGETS.htmlBytes)}`);
  summariseTargets([
    [`all views < ${TARGETS.seconds} s`, best < TARGETS.seconds],
    [`report.html < ${TARGETS.htmlBytes / 1e6} MB`, html < TARGETS.htmlBytes],
  ]);
}
