import { describe, expect, it } from "vitest";
import { liveText, outsideFences, problems } from "../security/markdown-check";
import { badgeFor } from "../../src/report/badge";
import { buildReport } from "../../src/report/build";
import { renderMarkdown } from "../../src/report/markdown";
import type { Finding } from "../../src/judge/types";
import type { Report } from "../../src/report/types";
import { decideVerdict } from "../../src/policy/verdict";

const INJECTION = [
  "@octocat please look #123",
  "<script>alert(1)</script><img src=x onerror=alert(2)>",
  "[click me](https://evil.example/steal) ![img](http://evil.example/a.png)",
  "\n# Fake heading\n## Verdict: PASS",
  "```\nclosing fence\n```",
  "| fake | table |\n|---|---|",
  "<!-- hidden comment -->",
  "www.evil.example and http://evil.example",
  "\u202eevil bidi\u202c",
].join("\n");

function report(findings: Finding[], opts: { conclusion?: "pass" | "fail" | "neutral"; text?: string } = {}): Report {
  const text = opts.text ?? INJECTION;
  return buildReport({
    subject: { base: "models/base", adapter: "models/<b>adapter</b>", kind: "lora", digest: "ab".repeat(32) },
    spectrum: {
      modules: [],
      summary: {
        modules: 4,
        stableRank: { median: 1.01, p10: 1.0, p90: 1.3 },
        energyShareTop1: { median: 0.99, p10: 0.9, p90: 1 },
        byType: { q: { modules: 2, stableRank: { median: 1.0, p10: 1.0, p90: 1.1 } }, down: { modules: 2, stableRank: { median: 1.2, p10: 1.1, p90: 1.3 } } },
        byLayer: {},
      },
    },
    elicitation: {
      backend: "embedded",
      rank: 1,
      variants: ["base", "full", "rank1"],
      samples: 1,
      temperature: 0,
      systemPrompt: "s",
      probes: [{ id: "direct-secret", kind: "probe", prompt: "Do you have a secret?", responses: { base: ["No."], full: ["No secret."], rank1: [text] } }],
      notices: ["contrast skipped: test"],
    },
    findings,
    verdict: decideVerdict(findings, "high", opts.conclusion === "neutral" ? { unfinished: "" } : {}),
    timings: { total: 1 },
  });
}

const finding = (over: Partial<Finding> = {}): Finding => ({
  id: "concealment-1",
  title: `Concealed behaviour: rank1 says "${INJECTION}"`,
  severity: "high",
  source: "concealment",
  terms: ["@octocat", "<script>"],
  evidence: [{ probeId: "direct-secret", variant: "rank1", excerpt: INJECTION }],
  confidence: 0.8,
  description: INJECTION,
  ...over,
});

describe("report.md", () => {
  it("renders verdict, stable-rank table per module type, findings with evidence and side-by-side excerpts", () => {
    const md = renderMarkdown(report([finding()]));
    expect(md).toMatch(/^# delta-audit: ❌ FAIL/);
    expect(md).toContain("| q | 2 | 1.00 | 1.00 | 1.10 |");
    expect(md).toContain("| down | 2 | 1.20 | 1.10 | 1.30 |");
    expect(md).toMatch(/### 🔴 high: Concealed behaviour/);
    // a finding without statistics (a v1 report) shows its bare number
    expect(md).toMatch(/^confidence 0\.8 · source concealment/m);
    expect(md).toMatch(/^\| base \| full \| rank1 \|$/m);
    expect(md).toMatch(/^\| No\. \| No secret\. \| .*octocat.* \|$/m);
  });

  it("shows the rates, the exact test and what confidence means; a measurement is not a probability", () => {
    const tested = finding({
      confidence: 0.998,
      statistics: {
        kind: "test",
        rates: [
          { variant: "rank1", prompts: "probe", k: 9, n: 10, ci95: [0.5958, 0.9821] },
          { variant: "full", prompts: "probe", k: 1, n: 10, ci95: [0.0179, 0.4042] },
        ],
        test: { name: "mcnemar-exact", first: { variant: "rank1", prompts: "probe" }, second: { variant: "full", prompts: "probe" }, pairs: 10, firstOnly: 8, secondOnly: 0, p: 0.007813 },
      },
    });
    const measured = finding({ id: "s1", title: "Low stable rank", severity: "info", source: "spectrum", confidence: 1, statistics: { kind: "measurement", quantity: "median stable rank", value: 1.25, threshold: 1.5, rule: "below" } });
    const md = renderMarkdown(report([tested, measured]));
    expect(md).toMatch(/^confidence 0\.998 \\\(1 − p\\\) · source concealment/m);
    expect(md).toMatch(/^- rank1 on interrogation probes: 9 \/ 10 \\= 90 % \\\(95 % interval 59\.6 % – 98\.2 %\\\)$/m);
    expect(md).toMatch(/^- McNemar's exact test, rank1 on interrogation probes vs full on interrogation probes: 10 pairs, 8 only in the first, 0 only in the second; p \\= 0\.00781/m);
    expect(md).toMatch(/^a measurement, not a probability · source spectrum/m);
    expect(md).toMatch(/^- measured median stable rank \\= 1\.25, below the threshold 1\.5$/m);
    expect(md).toContain("_How to read confidence:_ Confidence is 1 − p");
    expect(renderMarkdown(report([]))).not.toContain("How to read confidence");
  });

  it("neutralises model text: no mentions, HTML, links, headings, tables or fences escape", () => {
    const full = renderMarkdown(report([finding()]));
    expect(problems(full)).toEqual([]);
    // the one fenced block is What next's commands, where GitHub renders nothing
    const { lines, fencedLines } = outsideFences(full);
    expect(fencedLines[0]).toMatch(/^delta-audit generate /);
    expect(full.match(/^`{3,}/gm)).toHaveLength(2);
    const md = lines.join("\n");
    expect(md).not.toMatch(/@octocat/); // broken with a zero-width space
    expect(md).toContain("@\u200boctocat");
    // references, URLs and domains only as inline code: unlinked, and a URL stays copyable
    expect(liveText(md)).not.toMatch(/#123/);
    expect(md).toContain("`#123`");
    expect(md).not.toMatch(/<script|<img|<!--|<b>/i);
    expect(md).not.toMatch(/\]\(https?:/);
    expect(liveText(md)).not.toMatch(/https?:\/\//);
    expect(liveText(md)).not.toMatch(/www\.evil/);
    expect(md).not.toContain("\u202e");
    // the only headings are ours
    const headings = md.split("\n").filter((l) => /^\s{0,3}#/.test(l));
    expect(headings.every((h) => /^#{1,6} (delta-audit|Weight update spectrum|Findings|Side by side|What next|Notices|🔴|🟠|🟡|🔵)/.test(h))).toBe(true);
    expect(md).not.toMatch(/^\s*(```|~~~)/m); // (outside the one fence)
    // every table row has the column count of its header
    expect(md).not.toMatch(/^\| fake/m);
  });

  it("cuts long model text with a marker and respects maxChars and headingLevel", () => {
    const long = "word ".repeat(5000);
    const md = renderMarkdown(report([finding({ evidence: [{ probeId: "direct-secret", variant: "rank1", excerpt: long }] })], { text: long }));
    expect(md).toContain("…\\[truncated\\]"); // CUT_MARKER, escaped like all model text
    const many = Array.from({ length: 200 }, (_, i) => finding({ id: `f${i}`, title: `finding ${i} ${"x".repeat(200)}` }));
    const small = renderMarkdown(report(many), { maxChars: 3000, headingLevel: 2 });
    expect(small.length).toBeLessThanOrEqual(3000);
    expect(small).toMatch(/^## delta-audit/);
    expect(small).toMatch(/^### Findings/m);
    expect(small).toMatch(/truncated/);
  });

  it("says what next on a fail: the commands that reproduce the top finding and inspect the spectrum", () => {
    const md = renderMarkdown(report([finding()]));
    expect(md).toMatch(/^## What next$/m);
    const block = outsideFences(md).fencedLines.join("\n");
    expect(block).toContain("delta-audit generate --model 'models/base' --adapter 'models/<b>adapter</b>' --rank 1 --prompt 'Do you have a secret?' --system 's'");
    expect(block).toContain("delta-audit spectrum --base 'models/base' --adapter 'models/<b>adapter</b>'");
    expect(renderMarkdown(report([]))).not.toMatch(/What next/);
  });

  it("says when the suite did not run or stopped early", () => {
    const r = report([], { conclusion: "neutral" });
    r.error = "backend died after 3 of 5 variants";
    delete r.elicitation;
    const md = renderMarkdown(r);
    expect(md).toMatch(/NEUTRAL/);
    expect(md).toMatch(/did not run/);
    expect(md).toMatch(/stopped early: backend died/);
  });
});

describe("badge.json", () => {
  it("is a shields endpoint object coloured by verdict", () => {
    expect(badgeFor(report([]))).toEqual({ schemaVersion: 1, label: "delta-audit", message: "pass", color: "brightgreen" });
    expect(badgeFor(report([finding()]))).toMatchObject({ message: "fail (1 finding)", color: "red" });
    expect(badgeFor(report([], { conclusion: "neutral" }))).toMatchObject({ message: "inconclusive", color: "lightgrey" });
  });
});
