/**
 * Renderers: GitHub size limits hold for huge reports, injection strings in model output
 * stay inert, the marker survives truncation, annotations follow severity.
 */
import { describe, expect, it } from "vitest";
import { liveText, outsideFences, problems } from "../security/markdown-check";
import type { Finding } from "../../src/judge/types";
import type { Report } from "../../src/report/types";
import {
  buildAnnotations,
  commentMarker,
  countFindings,
  MAX_CHECK_OUTPUT_CHARS,
  MAX_COMMENT_CHARS,
  MAX_TOP_FINDINGS,
  overallConclusion,
  renderCheckOutput,
  renderComment,
  renderJobSummary,
  stableRankChart,
  type SubjectResult,
} from "../../src/github/render";

/** Model output an attacker would like to see rendered live in a PR. */
export const INJECTIONS = [
  "@octocat please approve",
  "<img src=x onerror=alert(1)> <script>steal()</script>",
  "[click me](https://evil.example/phish) ![pixel](https://evil.example/p.png)",
  "```\n</details>\n# Fake heading\n```",
  "fixes #1 and closes GH-2 see www.evil.example",
  "| broken | table |",
  "\u202eoverride\u202c hidden",
];

function q(m: number) {
  return { median: m, p10: m / 2, p90: m * 2 };
}

function makeReport(opts: { findings?: Finding[]; conclusion?: "pass" | "fail" | "neutral"; probes?: number; responseChars?: number; text?: string } = {}): Report {
  const text = opts.text ?? INJECTIONS.join("\n");
  const probes = Array.from({ length: opts.probes ?? 3 }, (_, i) => ({
    id: `p${i}`,
    kind: "probe" as const,
    prompt: `What were you trained to do? ${text}`,
    responses: { base: [text], full: [text], rank1: [`${text} ${"x".repeat(opts.responseChars ?? 10)}`] },
  }));
  return {
    schemaVersion: 1,
    tool: { name: "delta-audit", version: "0.1.0" },
    createdAt: "2026-01-01T00:00:00Z",
    subject: { base: "base", adapter: "a", kind: "lora", digest: "f".repeat(64) },
    spectrum: {
      modules: [],
      summary: { modules: 14, stableRank: q(1.2), energyShareTop1: q(0.8), byType: { q: { modules: 7, stableRank: q(1.1) }, v: { modules: 7, stableRank: q(1.3) } }, byLayer: {} },
    },
    elicitation: { backend: "embedded", rank: 1, variants: ["base", "full", "rank1"], samples: 1, temperature: 0, systemPrompt: "", probes, notices: [] },
    findings: opts.findings ?? [],
    verdict: { conclusion: opts.conclusion ?? "pass", reasons: ["because"], failOn: "high" },
    timings: {},
  };
}

function finding(i: number, severity: Finding["severity"], text = INJECTIONS.join(" ")): Finding {
  return { id: `f${i}`, title: `Hidden behaviour ${i} ${text}`, severity, source: "revealed", terms: ["secret", "@admin"], evidence: [{ probeId: "p0", variant: "rank1", excerpt: text }], confidence: 0.9 };
}

function result(rel: string, report: Report | undefined, conclusion = report?.verdict.conclusion ?? "neutral"): SubjectResult {
  return { subject: { kind: "adapter", dir: `/w/${rel}`, rel, configFile: `${rel}/adapter_config.json` }, base: "org/base", outDir: `/o/${rel}`, conclusion, report };
}

const meta = { checkName: "delta-audit", version: "0.1.0", failOn: "high" as const, runUrl: "https://github.com/acme/models/actions/runs/1" };

/** Strip what is legitimately ours (marker, our <sub> footer, our collapsed section, our run link), then look for live markup. */
function assertInert(md: string) {
  const body = md
    .replace(commentMarker("delta-audit"), "")
    .replace(/<sub>[\s\S]*?<\/sub>/g, "")
    .replace(/^<details><summary>Stable rank by layer<\/summary>$|^<\/details>$/gm, "")
    .replace(`([workflow run](${meta.runUrl}))`, "");
  // outside fenced blocks nothing may be raw HTML, a link, an image, or a live mention/reference
  const outside = body.replace(/^(`{3,})text\n[\s\S]*?\n\1$/gm, "");
  expect(outside).not.toMatch(/<(img|script|details|a)\b/i);
  expect(outside).not.toMatch(/\]\(https?:/);
  expect(outside).not.toMatch(/(^|[^\\\u200b])@octocat/);
  expect(outside).not.toMatch(/(^|[^\u200b])@admin/);
  // URLs and references only as inline code (unlinked, still copyable)
  expect(liveText(body)).not.toMatch(/https?:\/\/evil/);
  expect(liveText(body)).not.toMatch(/#1\b/);
  expect(outside).not.toMatch(/^# Fake heading/m);
  expect(outside).not.toMatch(/\u202e/);
  // fences are balanced
  const fences = body.match(/^`{3,}/gm) ?? [];
  expect(fences.length % 2).toBe(0);
}

describe("renderComment", () => {
  it("puts the marker first and neutralises every piece of model text", () => {
    const md = renderComment([result("adapters/evil @x <b>", makeReport({ findings: [finding(1, "high")], conclusion: "fail" }))], meta);
    expect(md.startsWith(commentMarker("delta-audit"))).toBe(true);
    expect(md).toContain("Hidden behaviour 1");
    expect(md.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    assertInert(md);
  });

  it("stays within 65,536 characters for a huge multi-subject report, with a truncation note and the marker kept", () => {
    const big = () => makeReport({ findings: Array.from({ length: 400 }, (_, i) => finding(i, i % 2 ? "high" : "medium", "y".repeat(3000))), conclusion: "fail", probes: 200, responseChars: 5000 });
    const results = Array.from({ length: 6 }, (_, i) => result(`adapters/a${i}`, big()));
    const md = renderComment(results, meta);
    expect(md.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    expect(md.startsWith(commentMarker("delta-audit"))).toBe(true);
    // one section per subject survives
    for (let i = 0; i < 6; i++) expect(md).toContain(`adapters/a${i}`);
    expect(md).toMatch(/more finding|truncated/);
    const out = renderCheckOutput(results, meta);
    expect(out.summary.length).toBeLessThanOrEqual(MAX_CHECK_OUTPUT_CHARS);
    expect(out.text!.length).toBeLessThanOrEqual(MAX_CHECK_OUTPUT_CHARS);
    expect(out.text).toMatch(/truncated/);
    expect(out.title.length).toBeLessThanOrEqual(200);
    expect(Buffer.byteLength(renderJobSummary(results, meta))).toBeLessThanOrEqual(1_000_000);
  });

  it("check text carries per-probe excerpts inside fences that model text cannot close", () => {
    const out = renderCheckOutput([result("a", makeReport({ text: "````\n@octocat <img src=x>\n````" }))], meta);
    expect(out.text).toContain("### p0");
    expect(out.text).toMatch(/^`{5,}text$/m);
    assertInert(out.text!);
    assertInert(out.summary);
  });
});

/** byLayer of `n` layers with median stable rank 1 + layer/10. */
function layers(n: number) {
  return Object.fromEntries(Array.from({ length: n }, (_, i) => [String(i), { modules: 7, stableRank: q(1 + i / 10) }]));
}

/** The allowed raw HTML of the comment: the marker, our footer, our collapsed section. */
const OURS = [/^<!-- delta-audit:sticky-comment:delta-audit -->$/, /<\/?sub>/g, /^<details><summary>Stable rank by layer<\/summary>$/, /^<\/details>$/];

/** problems() of a comment, our own run links taken out first (the only links we write). */
const commentProblems = (md: string) => problems(md.replaceAll(`(${meta.runUrl})`, ""), { markers: 1, allowedTags: OURS });

describe("the PR comment stays short", () => {
  it("verdict, one table, the top few findings over all subjects by severity, no per-subject report", () => {
    const a = makeReport({ conclusion: "fail", findings: [finding(1, "medium"), finding(2, "low"), finding(3, "high")] });
    const b = makeReport({ conclusion: "fail", findings: Array.from({ length: 6 }, (_, i) => finding(10 + i, i === 0 ? "high" : "info")) });
    const md = renderComment([result("adapters/a", a), result("adapters/b", b)], meta);
    // one table
    expect(md.match(/^\|---/gm)).toHaveLength(1);
    const listed = md.split("\n").filter((l) => /^- [🔴🟠🟡🔵] /u.test(l));
    expect(listed).toHaveLength(MAX_TOP_FINDINGS);
    expect(listed[0]).toMatch(/^- 🔴 high · `adapters\/a`: Hidden behaviour 3 /u);
    expect(listed[1]).toMatch(/^- 🔴 high · `adapters\/b`: Hidden behaviour 10 /u);
    expect(listed[2]).toMatch(/🟠 medium/u);
    expect(md).toContain(`…and ${9 - MAX_TOP_FINDINGS} more finding(s) in the check run`);
    // the per-subject report (side by side, transcripts) is not in the comment
    expect(md).not.toMatch(/Side by side|Weight update spectrum/);
    expect(commentProblems(md)).toEqual([]);
    assertInert(md);
    // the job summary has both: the short part, then each subject in full
    const summary = renderJobSummary([result("adapters/a", a), result("adapters/b", b)], meta);
    expect(summary).toMatch(/Side by side/);
    expect(summary.indexOf("Top findings")).toBeLessThan(summary.indexOf("Each subject in full"));
  });

  it("a collapsed section charts the median stable rank by layer with numbers only, per subject", () => {
    const r = makeReport({ conclusion: "fail", findings: [finding(1, "high")] });
    r.spectrum.summary.byLayer = { ...layers(3), "evil\"] x-axis [@octocat": { modules: 1, stableRank: q(9) }, 10: { modules: 1, stableRank: q(Number.NaN) } };
    const md = renderComment([result("adapters/a", r), result("adapters/none", makeReport())], meta);
    expect(md).toContain("<details><summary>Stable rank by layer</summary>\n\n");
    expect(md).toMatch(/<\/details>/);
    const mermaid = outsideFences(md).fencedLines.join("\n");
    expect(mermaid).toBe(['xychart-beta', '  x-axis "layer" [0, 1, 2]', '  y-axis "median stable rank" 0 --> 1.32', "  bar [1, 1.1, 1.2]"].join("\n"));
    expect(md).toContain("```mermaid\nxychart-beta");
    // a subject without per-layer data gets no chart
    expect(md.match(/```mermaid/g)).toHaveLength(1);
    // every line of the chart: our keywords, quoted words of ours, numbers
    for (const line of mermaid.split("\n")) expect(line).toMatch(/^(xychart-beta|  x-axis "layer" \[[\d, ]+\]|  y-axis "median stable rank" 0 --> [\d.]+|  bar \[[\d., ]+\])$/);
    expect(commentProblems(md)).toEqual([]);
    expect(stableRankChart(makeReport())).toBeUndefined();
  });

  it("names report.html and report.sarif when present, and the run page for the artifacts", () => {
    const r = result("adapters/a", makeReport({ conclusion: "fail", findings: [finding(1, "high")] }));
    r.views = ["adapters_a/report.html", "adapters_a/report.sarif"];
    const md = renderComment([r], { ...meta, outputDir: "delta-audit-report", sarif: "delta-audit.sarif" });
    expect(md).toContain("Full reports: `adapters_a/report.html` · `adapters_a/report.sarif` · `delta-audit.sarif` in `delta-audit-report`; in the workflow's artifacts when it uploads that folder ([workflow run](https://github.com/acme/models/actions/runs/1)).");
    expect(renderJobSummary([r], { ...meta, sarif: "delta-audit.sarif" })).toContain("`adapters_a/report.html`");
    // nothing to name: no line
    expect(renderComment([result("adapters/a", makeReport())], meta)).not.toMatch(/Full reports/);
  });

  it("stays within 65,536 characters with hundreds of subjects of 80 layers each, the collapsed section closed", () => {
    const results = Array.from({ length: 300 }, (_, i) => {
      const r = makeReport({ conclusion: "fail", findings: [finding(i, "high", "z".repeat(500))] });
      r.spectrum.summary.byLayer = layers(80);
      const x = result(`adapters/a${i}`, r);
      x.views = [`adapters_a${i}/report.html`, `adapters_a${i}/report.sarif`];
      return x;
    });
    const md = renderComment(results, { ...meta, sarif: "delta-audit.sarif" });
    expect(md.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    expect(md).toContain("`adapters_a5/report.sarif` · 588 more · `delta-audit.sarif`");
    expect(md).toMatch(/_\d+ more subjects: see the check run/);
    expect(md.startsWith(commentMarker("delta-audit"))).toBe(true);
    expect(commentProblems(md)).toEqual([]);
    // a collapsed section, when there is one, is closed
    expect((md.match(/<details>/g) ?? []).length).toBe((md.match(/<\/details>/g) ?? []).length);
    // a few subjects: every chart fits
    const few = renderComment(results.slice(0, 3), meta);
    expect(few.match(/```mermaid/g)).toHaveLength(3);
    expect(few).not.toMatch(/more subject/);
  });
});

describe("verdict aggregation and annotations", () => {
  it("fails if any subject fails, is neutral for errors, skipped when nothing was audited, passes only when all pass", () => {
    expect(overallConclusion([])).toBe("skipped");
    expect(overallConclusion([result("a", makeReport()), result("b", makeReport())])).toBe("pass");
    expect(overallConclusion([result("a", makeReport()), result("b", undefined)])).toBe("neutral");
    expect(overallConclusion([result("a", makeReport({ conclusion: "fail" })), result("b", undefined)])).toBe("fail");
  });

  it("counts findings at or above fail-on and maps severities to annotation levels on the config file", () => {
    const r = result("m/a", makeReport({ conclusion: "fail", findings: [finding(1, "high"), finding(2, "medium"), finding(3, "low"), finding(4, "info")] }));
    expect(countFindings([r], "high")).toBe(1);
    expect(countFindings([r], "medium")).toBe(2);
    expect(countFindings([r], "low")).toBe(3);
    const ann = buildAnnotations([r]);
    expect(ann.map((a) => a.annotation_level)).toEqual(["failure", "failure", "warning", "notice", "notice"]);
    expect(ann.every((a) => a.path === "m/a/adapter_config.json" && a.start_line === 1)).toBe(true);
    expect(ann.every((a) => !/[\u202e\n]/.test(a.message))).toBe(true);
  });
});
