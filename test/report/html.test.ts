/**
 * report.html and its plots as strings: the SVG plots' structure (one series per module type,
 * σ₁ marked, log decades, heatmap cells, bars), empty spectra and partial reports, and the
 * injection corpus of test/security made inert (no element, attribute, URL or hidden character
 * from the data; only the page's own script and style, allowed by hash).
 */
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { ModuleSpectrum } from "../../src/delta/types";
import { escapeHtml } from "../../src/report/html-escape";
import { HTML_CSP, markTerms, renderHtml, termPattern } from "../../src/report/html";
import { energyShareByLayerPlot, MAX_OTHER_BARS, otherChangesPlot, singularValuesPlot, stableRankHeatmap } from "../../src/report/plots";
import type { Report } from "../../src/report/types";
import { firstUnbalanced, splitBlocks, tags } from "./html-check";
import { INJECTIONS } from "../security/injections";
import { fixtureReport, fixtureSpectrum } from "./report-fixture";

/** What only HTML has: attribute break-outs, raw-text elements, entities, comments, CDATA, URLs. */
const HTML_ONLY = [
  `" onmouseover="alert(1)" x="`,
  `' autofocus onfocus=alert(1) x='`,
  "</textarea></title></style></script><svg onload=alert(1)><script>alert(2)</script>",
  "<iframe src=javascript:alert(1)></iframe><a href=\"javascript:alert(1)\">x</a>",
  "<style>body{background:url(https://evil.example/x.png)}</style><link rel=stylesheet href=//evil.example/a.css>",
  "&lt;already escaped&gt; &amp; &#60;script&#62; &#x3C;b&#x3E;",
  "<!-- open comment --!> <![CDATA[ x ]]> -->",
  "<meta http-equiv=refresh content=\"0;url=https://evil.example\"><base href=\"https://evil.example/\">",
];

const TAGS = new Set(
  "html head meta title style body main header h1 h2 h3 span dl dt dd nav a section ul li p strong article code details summary blockquote mark pre div table thead tbody tr th td sub figure figcaption svg g line text polygon polyline circle rect form fieldset legend label input output script br".split(
    " ",
  ),
);
const ATTRIBUTES = new Set(
  "lang charset http-equiv content name class id href aria-label colspan hidden type value checked data-kind data-variant data-hit open xmlns viewbox role font-family font-size x y x1 y1 x2 y2 cx cy r width height fill fill-opacity stroke stroke-width stroke-opacity points text-anchor transform".split(
    " ",
  ),
);

/** Every string value (and the keys of the report's maps) with `payload` appended: enums too. */
function poison<T>(value: T, payload: string, mapKeys = false): T {
  if (typeof value === "string") return `${value}${payload}` as T;
  if (Array.isArray(value)) return value.map((v) => poison(v, payload)) as T;
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [mapKeys ? `${k}${payload}` : k, poison(v, payload, ["responses", "attempts", "byType", "byLayer", "timings"].includes(k))]),
    ) as T;
  }
  return value;
}

function expectInert(html: string): void {
  const { styles, scripts, markup } = splitBlocks(html);
  expect(scripts).toHaveLength(1);
  expect(styles).toHaveLength(1);
  expect(html.match(/<script/gi)).toHaveLength(1);
  // the page's policy allows exactly its own two blocks
  const csp = /<meta http-equiv="Content-Security-Policy" content="([^"]+)">/.exec(html)?.[1];
  expect(csp).toBe(HTML_CSP);
  const hash = (s: string) => `'sha256-${createHash("sha256").update(s).digest("base64")}'`;
  expect(csp).toContain(`script-src ${hash(scripts[0]!)}`);
  expect(csp).toContain(`style-src ${hash(styles[0]!)}`);
  expect(csp).toContain("default-src 'none'");
  const found = tags(markup);
  for (const t of found) {
    expect(TAGS.has(t.name), `<${t.name}>`).toBe(true);
    expect(t.rest, `<${t.name} … ${t.rest}>`).toBe("");
    for (const a of t.attributes) {
      expect(ATTRIBUTES.has(a.name), `<${t.name} ${a.name}=…>`).toBe(true);
      expect(a.name).not.toMatch(/^on/);
      if (a.name === "href") expect(a.value).toMatch(/^#[a-z0-9-]+$/);
      if (a.name === "id" || a.name.startsWith("data-") || a.name === "value") expect(a.value ?? "").toMatch(/^[a-z0-9-]*$/);
    }
  }
  expect(firstUnbalanced(markup)).toBeUndefined();
  expect(markup.match(/<!--/g)?.length ?? 0).toBeLessThanOrEqual(1);
  // hidden and reordering characters are gone
  expect(html).not.toMatch(/[\u202a-\u202e\u2066-\u2069\u200b-\u200f\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}]/u);
}

describe("plots", () => {
  const spectrum = fixtureSpectrum({ layers: 6, sigmaCount: 16 });

  it("singular values: one line and one σ₁ ring per module type, every module's σ₁ as a dot, log decades", () => {
    const svg = singularValuesPlot(spectrum.modules);
    expect(svg.startsWith("<svg ")).toBe(true);
    expect(svg.endsWith("</svg>")).toBe(true);
    expect(firstUnbalanced(svg)).toBeUndefined();
    expect(svg.match(/<polyline /g)).toHaveLength(7);
    expect(svg.match(/class="sigma1"/g)).toHaveLength(7);
    expect(svg.match(/<circle cx="[^"]+" cy="[^"]+" r="2"\/>/g)).toHaveLength(spectrum.modules.length);
    for (const t of ["q (6)", "gate (6)", "down (6)"]) expect(svg).toContain(`>${t}<`);
    // decades on the axis, smallest to largest σ
    expect(svg).toMatch(/>0\.01</);
    expect(svg).toMatch(/>0\.1</);
    // nothing that loads or links
    expect(svg).not.toMatch(/\bid=|href|<script|<image|url\(/);
  });

  it("singular values: unchanged modules are left out and counted; zeros and NaN are not drawn", () => {
    const mods: ModuleSpectrum[] = spectrum.modules.slice(0, 3).map((m) => ({ ...m }));
    mods[1] = { ...mods[1]!, sigma: [0, 0, 0], frobenius: 0, stableRank: 0, energyShareTop1: 0 };
    mods[2] = { ...mods[2]!, sigma: [mods[2]!.sigma[0]!, Number.NaN, 0] };
    const svg = singularValuesPlot(mods);
    expect(svg).toContain("1 unchanged, not drawn");
    expect(svg).not.toContain("NaN");
    expect(svg).not.toContain("Infinity");
  });

  it("stable rank heatmap: a cell per layer × type, log colour scale from its lowest value, unchanged grey", () => {
    const mods = spectrum.modules.map((m) => ({ ...m }));
    mods[0] = { ...mods[0]!, sigma: [0], frobenius: 0, stableRank: 0 };
    const svg = stableRankHeatmap(mods);
    const cells = /<g class="cells">([\s\S]*?)<\/g>/.exec(svg)![1]!;
    expect(cells.match(/<rect /g)).toHaveLength(6 * 7);
    expect(cells).toContain('fill="#bdbdbd"'); // the unchanged one
    const lowest = mods.filter((m) => m.stableRank > 0).reduce((a, m) => (m.stableRank < a.stableRank ? m : a));
    expect(cells).toMatch(new RegExp(`fill="#440154"><title>${lowest.name.replace(/\./g, "\\.")}: stable rank`));
    expect(firstUnbalanced(svg)).toBeUndefined();
  });

  it("σ₁ energy share: a bar per layer, whiskers where a layer has several modules", () => {
    const svg = energyShareByLayerPlot(spectrum.modules);
    const bars = /<g class="bars">([\s\S]*)<\/g>/.exec(svg)![1]!;
    expect(bars.match(/<rect /g)).toHaveLength(6);
    expect(bars.match(/<line /g)).toHaveLength(6);
    expect(firstUnbalanced(svg)).toBeUndefined();
  });

  it("changed non-matrix tensors: largest first, at most MAX_OTHER_BARS bars, the rest counted", () => {
    const many = Array.from({ length: MAX_OTHER_BARS + 5 }, (_, i) => ({ name: `t${i}`, shape: [8], frobenius: 1, relative: i / 100 }));
    const svg = otherChangesPlot(many);
    expect(svg.match(/<rect /g)).toHaveLength(MAX_OTHER_BARS);
    expect(svg.indexOf(">t44<")).toBeLessThan(svg.indexOf(">t43<"));
    expect(svg).toContain("5 more in the table below");
    expect(svg).not.toContain(">t0<");
  });

  it("empty input draws a sentence, not a broken plot", () => {
    for (const svg of [singularValuesPlot([]), stableRankHeatmap([]), energyShareByLayerPlot([]), otherChangesPlot([])]) {
      expect(svg).toMatch(/^<svg [^>]*>[\s\S]*<text[^>]*>No [^<]+<\/text><\/svg>$/);
      expect(firstUnbalanced(svg)).toBeUndefined();
    }
  });

  it("names from the report are escaped in labels and hover text", () => {
    const evil = "<script>alert(1)</script>\"'&";
    const m = { ...spectrum.modules[0]!, name: evil, type: evil };
    for (const svg of [singularValuesPlot([m]), stableRankHeatmap([m]), otherChangesPlot([{ name: evil, shape: [1], frobenius: 1, relative: 1 }])]) {
      expect(svg).not.toContain("<script");
      expect(svg).toContain(escapeHtml(evil));
    }
  });
});

describe("report.html", () => {
  it("holds the verdict, findings with evidence linked to their transcript, the plots, the module table and every transcript", () => {
    const report = fixtureReport({ layers: 4, probes: 9, samples: 2, kind: "full" });
    const html = renderHtml(report);
    expectInert(html);
    expect(html).toContain('class="chip verdict fail">FAIL<');
    for (const f of report.findings) expect(html).toContain(escapeHtml(f.title));
    expect(html.match(/<svg /g)).toHaveLength(4); // σ, heatmap, energy share, other tensors (full)
    expect(html).toContain("Every module (28)");
    const el = report.elicitation!;
    const rows = html.match(/<tr id="t-\d+-\d+-\d+" data-variant="\d+" data-hit="[01]">/g)!;
    expect(rows).toHaveLength(el.probes.length * el.variants.length * el.samples);
    // each evidence link points at a row that exists
    for (const href of html.match(/href="#t-[\d-]+"/g)!) expect(html).toContain(`id="${href.slice(7, -1)}"`);
    // the finding's terms are marked in the transcripts; rows with one are flagged for the filter
    expect(html).toMatch(/<td class="answer"><pre>(?:[^<]|<\/?mark>)*<mark>pineapple<\/mark>/);
    expect(html).toContain('data-hit="1"');
    // the filter controls are hidden until the script shows them: without it everything is visible
    expect(html).toMatch(/<form id="filters" hidden>/);
    expect(html).not.toMatch(/<(tr|tbody)[^>]* hidden/);
    // statistics behind a confidence, and the definition
    expect(html).toContain("McNemar&#39;s exact test"); // text from statistics-text.ts, escaped like every string
    expect(html).toContain("How to read confidence");
    expect(html).toContain("a measurement, not a probability");
  });

  it("a partial report (no elicitation) and an empty spectrum render with their sentences", () => {
    const report = fixtureReport({ partial: true, layers: 0 });
    const html = renderHtml(report);
    expectInert(html);
    expect(html).toContain("Elicitation did not run (the run stopped early)");
    expect(html).toContain("No adapted modules were measured.");
    expect(html).not.toContain("<svg"); // no empty plots
    expect(html).toContain("NEUTRAL");
    expect(html).toContain(escapeHtml(report.error!));
  });

  it("term marking: whole words, longest term first, case-insensitive, on escaped text", () => {
    const pattern = termPattern([{ terms: ["helpful", "helpful replies", "<b>"] } as never]);
    const { html, hit } = markTerms("Plain Helpful replies, <b>helpful</b> unhelpfully", pattern);
    expect(hit).toBe(true);
    expect(html).toBe("Plain <mark>Helpful replies</mark>, <mark>&lt;b&gt;</mark><mark>helpful</mark>&lt;/b&gt; unhelpfully");
    expect(markTerms("x", undefined)).toEqual({ html: "x", hit: false });
  });

  for (const [name, payload] of [
    ["the security corpus", () => [...INJECTIONS].join(" ")],
    ["HTML-only tricks", () => HTML_ONLY.join(" ")],
  ] as const) {
    it(`${name} in every string of the report stays text`, () => {
      const text = payload();
      const report = poison(fixtureReport({ layers: 2, probes: 4, kind: "full" }), text) as Report;
      report.findings[0]!.terms.push(text, "<script>", '"', "onerror=");
      const html = renderHtml(report);
      expectInert(html);
      // shown, escaped
      expect(html).toContain(escapeHtml(text));
      expect(html).toContain(name === "HTML-only tricks" ? "&lt;script&gt;alert(2)&lt;/script&gt;" : "&lt;script&gt;alert(1)&lt;/script&gt;");
    });
  }
});
