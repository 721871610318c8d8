/**
 * Renderers: GitHub size limits hold for huge reports, injection strings in model output
 * stay inert, the marker survives truncation, annotations follow severity.
 */
import { describe, expect, it } from "vitest";
import { liveText } from "../security/markdown-check";
import type { Finding } from "../../src/judge/types";
import type { Report } from "../../src/report/types";
import {
  buildAnnotations,
  commentMarker,
  countFindings,
  MAX_CHECK_OUTPUT_CHARS,
  MAX_COMMENT_CHARS,
  overallConclusion,
  renderCheckOutput,
  renderComment,
  renderJobSummary,
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

/** Strip what is legitimately ours (marker, our <sub> footer, our run link), then look for live markup. */
function assertInert(md: string) {
  const body = md.replace(commentMarker("delta-audit"), "").replace(/<sub>[\s\S]*?<\/sub>/g, "");
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

describe("verdict aggregation and annotations", () => {
  it("fails if any subject fails, is neutral for errors or nothing audited, passes only when all pass", () => {
    expect(overallConclusion([])).toBe("neutral");
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
