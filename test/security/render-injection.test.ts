/**
 * Model text (and PR-controlled names) in every place it reaches GitHub: report.md, the sticky
 * comment, the check run's summary and text, the job summary and annotations. Checked with an
 * independent markdown scanner (./markdown-check.ts), for a catalogue of injection strings and
 * for 1 MB of them.
 */
import { describe, expect, it } from "vitest";
import { renderMarkdown } from "../../src/report/markdown";
import { buildAnnotations, MAX_CHECK_OUTPUT_CHARS, MAX_COMMENT_CHARS, MAX_JOB_SUMMARY_BYTES, renderCheckOutput, renderComment, renderJobSummary, type SubjectResult } from "../../src/github/render";
import type { Report } from "../../src/report/types";
import { liveText, outsideFences, problems } from "./markdown-check";
import { AUTOLINKS_AND_INVISIBLES, INJECTIONS, PLAIN_URL } from "./injections";

const PAYLOAD = INJECTIONS.join(" ");

function report(text: string, conclusion: "pass" | "fail" | "neutral" = "fail"): Report {
  const q = { median: 1.1, p10: 1, p90: 1.5 };
  return {
    schemaVersion: 1,
    tool: { name: "delta-audit", version: "0.1.0" },
    createdAt: "2026-01-01T00:00:00Z",
    subject: { base: text, adapter: text, kind: "lora", digest: "e".repeat(64) },
    spectrum: { modules: [], summary: { modules: 4, stableRank: q, energyShareTop1: q, byType: { q: { modules: 4, stableRank: q } }, byLayer: {} } },
    elicitation: {
      backend: "openai", rank: 1, variants: ["base", "full", "rank1"], samples: 1, temperature: 0, systemPrompt: text, notices: [text],
      probes: [0, 1, 2].map((i) => ({ id: `p${i}`, kind: "probe" as const, prompt: text, responses: { base: [text], full: [text], rank1: [text] } })),
    },
    findings: [0, 1].map((i) => ({ id: `f${i}`, title: text, severity: "high" as const, source: "revealed", terms: [text, text], description: text, evidence: [{ probeId: `p${i}`, variant: "rank1", excerpt: text }], confidence: 0.8 })),
    verdict: { conclusion, reasons: [text, text], failOn: "high" },
    timings: {},
    error: text,
  } as Report;
}

function results(text: string): SubjectResult[] {
  const rel = "adapters/`<img src=x>`|@octocat";
  return [
    { subject: { kind: "adapter", dir: "/w/a", rel, configFile: `${rel}/adapter_config.json` }, base: "org/base", outDir: "/o/a", conclusion: "fail", report: report(text) },
    { subject: { kind: "adapter", dir: "/w/b", rel: "adapters/b", configFile: "adapters/b/adapter_config.json" }, base: "org/base", outDir: "/o/b", conclusion: "neutral", error: text },
  ];
}

const meta = { checkName: "delta-audit", version: "0.1.0", failOn: "high" as const };
const COMMENT_TAGS = [/^<!-- delta-audit:sticky-comment:delta-audit -->$/, /<\/?sub>/g];

describe("untrusted text is inert on every GitHub surface", () => {
  it("the checker catches each autolink, shortcode and invisible form when left raw", () => {
    for (const inj of AUTOLINKS_AND_INVISIBLES) expect(problems(`| a |\n|---|\n| ${inj} |\n`), JSON.stringify(inj)).not.toEqual([]);
    // and does not flag plain prose, times, digests too long to be a SHA, or our own mention breaker
    expect(problems(`at 12:30:45, ratio 3:4, digest ${"e".repeat(64)}, @\u200boctocat, &#123; C# 9`)).toEqual([]);
    // what the other tests search for live links: a code span hides a URL, an escaped backtick does not
    expect(liveText("see `https://evil.example` and `#1`")).toBe("see  CODE  and  CODE ");
    expect(liveText("see \\`https://evil.example`")).toMatch(/https:\/\/evil/);
    expect(liveText("```\nhttps://evil.example\n```\nafter")).toBe("after");
  });

  it("autolinks, shortcodes and invisible characters survive in no body, and a URL stays copyable", () => {
    const text = `${AUTOLINKS_AND_INVISIBLES.join(" ")} see ${PLAIN_URL}.`;
    const md = renderMarkdown(report(text));
    const comment = renderComment(results(text), meta);
    const check = renderCheckOutput(results(text), meta);
    expect(problems(md)).toEqual([]);
    expect(problems(comment, { markers: 1, allowedTags: COMMENT_TAGS })).toEqual([]);
    expect(problems(check.summary)).toEqual([]);
    expect(problems(check.text ?? "")).toEqual([]);
    for (const body of [md, comment, check.summary, check.text ?? ""]) {
      // hidden characters are gone from the fenced transcripts too
      expect(body).not.toMatch(/(?<!\p{Extended_Pictographic})\ufe0f|[\u{e0100}-\u{e01ef}\ufe00-\ufe0e\u200c\u200d\u2060-\u2064\u00ad\u115f\u1160\u3164\uffa0\u{e0000}-\u{e007f}]/u);
    }
    // the references and shortcodes are still visible, as inline code
    expect(md).toContain("`GH-42`");
    expect(md).toContain("`acme/secret-repo#99`");
    expect(md).toContain("`8f14e45fceea167a5a36dedd4bea2543`");
    expect(md).toContain("`:white_check_mark:`");
    // the URL: one code span holding exactly the URL, the sentence's full stop outside it
    const short = `see ${PLAIN_URL}.`;
    for (const body of [renderMarkdown(report(short)), renderComment(results(short), meta), renderCheckOutput(results(short), meta).summary]) {
      expect(body).toContain(`\`${PLAIN_URL}\``);
      // no zero-width character on any line that carries the URL (a folder's @mention elsewhere is broken on purpose)
      for (const line of body.split("\n").filter((l) => l.includes("example.com"))) expect(line).not.toMatch(/[\u200b-\u200d\u2060]/);
    }
  });

  it("the checker itself catches each injection when left raw (so it can fail)", () => {
    for (const inj of INJECTIONS.slice(0, 12)) {
      const raw = `| a | b |\n|---|---|\n| x | ${inj} |\n`;
      expect(problems(raw), JSON.stringify(inj)).not.toEqual([]);
    }
  });

  it("report.md", () => {
    const md = renderMarkdown(report(PAYLOAD));
    expect(problems(md)).toEqual([]);
    expect(md).toContain("PAYLOAD\\-HEADING"); // the text is shown, just inert
  });

  it("the sticky comment and the job summary", () => {
    const comment = renderComment(results(PAYLOAD), meta);
    expect(problems(comment, { markers: 1, allowedTags: COMMENT_TAGS })).toEqual([]);
    expect(comment.startsWith("<!-- delta-audit:sticky-comment:delta-audit -->")).toBe(true);
    const summary = renderJobSummary(results(PAYLOAD), meta);
    expect(problems(summary, { allowedTags: COMMENT_TAGS })).toEqual([]);
  });

  it("the check run's summary and text (transcripts fenced, fences closed), title and annotations", () => {
    const out = renderCheckOutput(results(PAYLOAD), meta);
    expect(problems(out.summary)).toEqual([]);
    expect(problems(out.text ?? "")).toEqual([]);
    // the raw transcripts are inside fences, where GitHub renders nothing
    const { fencedLines } = outsideFences(out.text ?? "");
    expect(fencedLines.join("\n")).toContain("# PAYLOAD-HEADING");
    expect(out.title).not.toMatch(/[\u202a-\u202e\u{e0000}-\u{e007f}]/u);
    for (const a of buildAnnotations(results(PAYLOAD))) {
      expect(`${a.title}${a.message}`).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u202a-\u202e\u2066-\u2069\u{e0000}-\u{e007f}]/u);
      expect(a.message.length).toBeLessThanOrEqual(2000);
    }
  });

  it("1 MB of injection text per field stays inert, within GitHub's limits, and renders in seconds", () => {
    const big = PAYLOAD.repeat(Math.ceil(1_000_000 / PAYLOAD.length));
    const t0 = Date.now();
    const md = renderMarkdown(report(big));
    const comment = renderComment(results(big), meta);
    const check = renderCheckOutput(results(big), meta);
    const summary = renderJobSummary(results(big), meta);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(md.length).toBeLessThan(200_000);
    expect(comment.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    expect(check.summary.length).toBeLessThanOrEqual(MAX_CHECK_OUTPUT_CHARS);
    expect((check.text ?? "").length).toBeLessThanOrEqual(MAX_CHECK_OUTPUT_CHARS);
    expect(Buffer.byteLength(summary)).toBeLessThanOrEqual(MAX_JOB_SUMMARY_BYTES);
    expect(problems(md)).toEqual([]);
    expect(problems(comment, { markers: 1, allowedTags: COMMENT_TAGS })).toEqual([]);
    expect(problems(check.summary)).toEqual([]);
    expect(problems(check.text ?? "")).toEqual([]);
    expect(md).toContain("…\\[truncated\\]");
  });
});
