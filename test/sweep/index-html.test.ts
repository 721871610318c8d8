/**
 * A sweep's index.html and index.md carry text from models (finding titles), from reports and
 * registries (reasons, sources): the injection corpus goes in, nothing active comes out; the page
 * is self-contained, its one style and one script allowed by hash and nothing else.
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { renderIndexHtml, INDEX_CSP } from "../../src/sweep/index-html";
import { renderIndexMarkdown, type SweepIndex } from "../../src/sweep/collect";
import { INJECTIONS } from "../security/injections";

function indexWith(text: string): SweepIndex {
  return {
    schemaVersion: 2,
    generatedAt: "2026-01-01T00:00:00.000Z",
    summary: { pass: 1, fail: 1, neutral: 1, missing: 0 },
    models: [
      {
        name: "bot",
        conclusion: "fail",
        source: text,
        kind: "lora",
        revision: "0123456789abcdef0123456789abcdef01234567",
        findings: { high: 1, medium: 0, low: 0, info: 0 },
        topFinding: { severity: "high", title: text, confidence: 0.99 },
        stableRank: { median: 1.5, p10: 1.1, p90: 3 },
        stableRankMedian: 1.5,
        drift: { from: "a", to: "b", compared: 4, rotated: 2, share: 0.5, maxRotation: 88.2, medianRotation: 40, sigma1Ratio: 1.2, stableRankBefore: 1, stableRankAfter: 2, newFindings: [{ key: "k", severity: "high", title: text }], vanishedFindings: [], finding: { key: "drift", severity: "medium", title: text } },
        lastAudited: "2026-01-01T00:00:00.000Z",
        history: [
          { at: "2025-12-01T00:00:00.000Z", conclusion: "pass", revision: "aa" },
          { at: "2026-01-01T00:00:00.000Z", conclusion: "fail", revision: text },
        ],
        report: "reports/bot/report.json",
        html: "reports/bot/report.html",
      },
      { name: "gated", conclusion: "neutral", reason: text, findings: { high: 0, medium: 0, low: 0, info: 0 } },
      { name: "ok", conclusion: "pass", findings: { high: 0, medium: 0, low: 0, info: 0 } },
    ],
  };
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("base64");

describe("sweep index views", () => {
  it("index.html escapes every model-derived string and runs nothing but its own sorting script", () => {
    for (const text of INJECTIONS) {
      const html = renderIndexHtml(indexWith(text));
      expect(html.match(/<script/g)).toHaveLength(1);
      expect(html).not.toMatch(/<img|<details|<!-- delta-audit|javascript:alert\(1\)"|href="https?:\/\/evil/);
      if (text.includes("<")) expect(html).not.toContain(text.split("\n")[0]!);
      // hidden and reordering characters are removed, as report.html removes them
      expect(html).not.toMatch(/[\u202e\u2066\u{E0049}]/u);
    }
  });

  it("index.html is self-contained: a CSP allowing exactly its inline style and script, links to the reports", () => {
    const html = renderIndexHtml(indexWith("plain"));
    const style = /<style>([\s\S]*?)<\/style>/.exec(html)![1]!;
    const script = /<script>([\s\S]*?)<\/script>/.exec(html)![1]!;
    expect(INDEX_CSP).toBe(`default-src 'none'; style-src 'sha256-${sha256(style)}'; script-src 'sha256-${sha256(script)}'; base-uri 'none'; form-action 'none'`);
    expect(html).toContain(`<meta http-equiv="Content-Security-Policy" content="${INDEX_CSP}">`);
    expect(html).not.toMatch(/\ssrc=|<link|@import|url\(/);
    expect(html).toContain('<a href="reports/bot/report.html">bot</a>');
    expect(html).toContain('<a href="reports/bot/report.json">json</a>');
    // every column sorts: numbers by value (verdict, finding, stable rank, drift), text by locale
    expect(html.match(/<th data-col="\d" data-type="(num|text)">/g)).toHaveLength(9);
    expect(html).toMatch(/<td class="num" data-sort="1.5">1.5/);
    expect(html).toContain("<code>0123456789ab</code>");
    expect(html).toContain("2/4 modules turned, max 88.2°");
  });

  it("index.md neutralises the same text: one table row per model, nothing that links, mentions or renders", () => {
    for (const text of INJECTIONS) {
      const md = renderIndexMarkdown(indexWith(text));
      const rows = md.split("\n").filter((l) => l.startsWith("| "));
      expect(rows).toHaveLength(4); // header + 3 models
      for (const row of rows.slice(1)) expect(row.split(/(?<!\\)\|/).length).toBe(13);
      expect(md).not.toMatch(/<script|<img|\]\(http|(^|[^`])@octocat/);
    }
  });
});
