/**
 * report.html: one self-contained page a reviewer opens offline or from a workflow artifact —
 * the verdict, findings with their evidence, the spectrum as plots (plots.ts) and per-module
 * table, and every probe × variant × sample transcript, filterable, with the finding terms
 * marked. It is a view of report.json and nothing more.
 *
 * Self-contained means no request of any kind: the stylesheet, the plots and the one small
 * filtering script are inline, and a Content-Security-Policy allows exactly those two inline
 * blocks (by their SHA-256), no other script, style or source, so even text that slipped past
 * escaping could neither run nor load anything. Every string from the report passes through
 * html-escape.ts `escapeHtml`; every number through delta/table.ts `formatNumber`.
 */
import { createHash } from "node:crypto";
import { formatNumber, orderedTypes } from "../delta/table";
import type { ModuleSpectrum } from "../delta/types";
import { CONFIDENCE_DEFINITION } from "../judge/statistics";
import { attributionText, confidenceText, ladderText, measurementText, pct, sideText, testText } from "./statistics-text";
import { LADDER_DEFINITION } from "../judge/ladder";
import { ATTRIBUTION_DEFINITION } from "../judge/attribution";
import type { Finding, FindingStatistics, Side } from "../judge/types";
import { bySeverity, SEVERITY_RANK } from "../judge/types";
import { escapeHtml } from "./html-escape";
import { energyShareByLayerPlot, isChanged, layerLabel, otherChangesPlot, singularValuesPlot, stableRankHeatmap } from "./plots";
import { cut } from "./sanitize";
import type { Report } from "./types";
import { reproduceCommands } from "./what-next";
import { probeSystemPrompt } from "./transcripts";

/**
 * One answer shown in full up to this many characters (far beyond any probe's max-tokens); a
 * hostile or runaway answer beyond it is cut with a marker (report.json keeps all of it) so the
 * page stays small enough to open.
 */
const MAX_ANSWER_CHARS = 20_000;
/** Finding terms marked in transcripts (longest first): enough for any judge, a bounded pattern. */
const MAX_MARK_TERMS = 200;
/** The per-module table starts open up to this many modules (a 70B model has 560: folded). */
const MODULE_TABLE_OPEN_MAX = 64;

const STYLE = `
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;--mark:#fff3a3;--pass:#1a7f37;--fail:#cf222e;--neutral:#6e7781;--high:#cf222e;--medium:#bc4c00;--low:#9a6700;--info:#0969da;--link:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--card:#151b23;--mark:#6b5a00;--pass:#3fb950;--fail:#f85149;--neutral:#9198a1;--high:#f85149;--medium:#db6d28;--low:#d29922;--info:#4493f8;--link:#4493f8}}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:var(--fg);font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;overflow-wrap:anywhere}
main{max-width:1100px;margin:0 auto;padding:16px}
a{color:var(--link)}
h1{font-size:1.5rem;margin:.2em 0}h2{font-size:1.25rem;margin:1.6em 0 .5em;padding-bottom:.2em;border-bottom:1px solid var(--line)}h3{font-size:1.05rem;margin:.2em 0}
nav{display:flex;flex-wrap:wrap;gap:.4em 1em;font-size:.95em}
.muted{color:var(--muted)}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
pre{white-space:pre-wrap;margin:0}
.chip{display:inline-block;padding:.05em .6em;border-radius:1em;font-weight:600;color:#fff;font-size:.85em;vertical-align:middle}
.verdict{font-size:1.1em;padding:.2em .9em}
.pass{background:var(--pass)}.fail{background:var(--fail)}.neutral{background:var(--neutral)}
.sev-high{background:var(--high)}.sev-medium{background:var(--medium)}.sev-low{background:var(--low)}.sev-info{background:var(--info)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em;margin:.5em 0}dl.meta dt{color:var(--muted)}dl.meta dd{margin:0}
.finding{border:1px solid var(--line);border-left:4px solid var(--neutral);border-radius:6px;padding:.6em .9em;margin:.8em 0;background:var(--card)}
.finding.high{border-left-color:var(--high)}.finding.medium{border-left-color:var(--medium)}.finding.low{border-left-color:var(--low)}.finding.info{border-left-color:var(--info)}
.evidence{list-style:none;padding:0;margin:.4em 0 0}.evidence li{margin:.4em 0}
blockquote{margin:.2em 0 0;padding:.2em .8em;border-left:3px solid var(--line);color:var(--fg)}
mark{background:var(--mark);color:inherit;padding:0 .1em;border-radius:2px}
.terms mark{margin-right:.3em}
.scroll{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;width:100%;font-size:.92em}
th,td{border-bottom:1px solid var(--line);padding:.3em .5em;text-align:left;vertical-align:top}
th{font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.modules td,table.modules th{white-space:nowrap}
figure{margin:1em 0;padding:.6em;border:1px solid var(--line);border-radius:6px}
figcaption{font-weight:600;margin-bottom:.3em}
figure .scroll svg{display:block;width:100%;max-width:760px;min-width:480px;height:auto;color:var(--fg)}
.plot-svg .axis text,.plot-svg text.muted{fill:var(--muted)}
.plot-svg .axis line{stroke:var(--muted)}
table.compact{width:auto}table.compact td,table.compact th{white-space:nowrap;overflow-wrap:normal}
#filters{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;margin:.5em 0;padding:.5em .7em;border:1px solid var(--line);border-radius:6px;background:var(--card)}
#filters fieldset{border:0;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:.2em .8em}
#filters legend{float:left;margin-right:.5em;color:var(--muted)}
#filters label{white-space:nowrap}
table.transcripts tbody th{background:var(--card);font-weight:normal}
table.transcripts td.variant,table.transcripts td.num{white-space:nowrap;overflow-wrap:normal;width:1%}
table.transcripts td.answer pre{font:inherit}
table.transcripts .probe-id{font-weight:600}
.attempt{font-size:.8em}
.stats summary{color:var(--muted);cursor:pointer}
.whatnext pre{background:var(--card);padding:.6em;border-radius:6px;border:1px solid var(--line);margin:.4em 0}
@media (max-width:600px){main{padding:10px}body{font-size:14px}
table.transcripts,table.transcripts tbody,table.transcripts tr,table.transcripts td,table.transcripts th{display:block;width:auto}
table.transcripts thead{display:none}
table.transcripts td{border:0;padding:.15em .4em}table.transcripts tr{border-bottom:1px solid var(--line);padding:.3em 0}
table.transcripts td.answer{width:auto}table.transcripts td.variant,table.transcripts td.num{display:inline-block;font-weight:600}table.transcripts td.num::before{content:"#"}}
`.trim();

/** Filters the transcripts by probe kind, variant and "has a finding term"; without it everything shows. */
const SCRIPT = `
(function(){var f=document.getElementById("filters");if(!f)return;f.hidden=false;
var bodies=document.querySelectorAll("#transcripts-table tbody"),out=document.getElementById("shown");
function on(name){var m={};f.querySelectorAll("input[name="+name+"]").forEach(function(i){m[i.value]=i.checked});return m}
function apply(){var k=on("kind"),v=on("variant"),h=f.querySelector("input[name=hits]"),only=!!(h&&h.checked),n=0;
bodies.forEach(function(b){var any=false,kok=k[b.getAttribute("data-kind")]!==false;
b.querySelectorAll("tr[data-variant]").forEach(function(r){var ok=kok&&v[r.getAttribute("data-variant")]!==false&&(!only||r.getAttribute("data-hit")==="1");r.hidden=!ok;if(ok){any=true;n++}});
b.hidden=!any});if(out)out.textContent=String(n)}
f.addEventListener("change",apply);apply()})();
`.trim();

const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("base64");

/** Allows the page's own inline style and script (by hash) and data: images; nothing else, no network. */
const CSP = `default-src 'none'; style-src '${"sha256-" + sha256(STYLE)}'; script-src '${"sha256-" + sha256(SCRIPT)}'; img-src data:; base-uri 'none'; form-action 'none'`;

const e = escapeHtml;
const num = formatNumber;

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** One pattern for every finding term, longest first so "helpful replies" wins over "helpful". */
export function termPattern(findings: readonly Finding[]): RegExp | undefined {
  const terms = [...new Set(findings.flatMap((f) => f.terms).map((t) => String(t).trim()).filter((t) => t.length > 0))]
    .sort((a, b) => b.length - a.length)
    .slice(0, MAX_MARK_TERMS);
  // whole words only: the judges count words, so "plain" is not marked inside "explaining"
  // (a term that starts or ends with punctuation needs no boundary on that side)
  const word = /[\p{L}\p{N}]/u;
  const alt = terms.map((t) => `${word.test(t[0]!) ? "(?<![\\p{L}\\p{N}])" : ""}${escapeRegExp(t)}${word.test(t[t.length - 1]!) ? "(?![\\p{L}\\p{N}])" : ""}`);
  return terms.length ? new RegExp(alt.join("|"), "giu") : undefined;
}

/** Escaped text with every match of `pattern` in <mark>; `hit` says whether there was one. */
export function markTerms(text: string, pattern: RegExp | undefined): { html: string; hit: boolean } {
  if (!pattern) return { html: e(text), hit: false };
  let html = "";
  let last = 0;
  let hit = false;
  for (const m of text.matchAll(pattern)) {
    if (m[0].length === 0) continue;
    html += `${e(text.slice(last, m.index))}<mark>${e(m[0])}</mark>`;
    last = m.index + m[0].length;
    hit = true;
  }
  return { html: html + e(text.slice(last)), hit };
}

/** probe id → its index in the transcripts, for evidence links (ids in the page are never data). */
function probeIndex(report: Report): Map<string, number> {
  const map = new Map<string, number>();
  report.elicitation?.probes.forEach((p, i) => {
    if (!map.has(p.id)) map.set(p.id, i);
  });
  return map;
}

function variantsOf(report: Report): string[] {
  const el = report.elicitation;
  if (!el) return [];
  const vs = [...el.variants];
  for (const p of el.probes) for (const v of Object.keys(p.responses)) if (!vs.includes(v)) vs.push(v);
  return vs;
}

function header(report: Report): string {
  const s = report.subject;
  const v = report.verdict;
  const conclusion = ["pass", "fail", "neutral"].includes(v.conclusion) ? v.conclusion : "neutral";
  const rows: [string, string][] = [
    ["base", e(s.base)],
    s.adapter !== undefined ? ["adapter", e(s.adapter)] : ["fine-tune", e(s.finetuned)],
    ["kind", e(s.kind)],
    ["digest", `<code>${e(s.digest)}</code>`],
    ["fail-on", e(v.failOn)],
    ["created", e(report.createdAt)],
  ];
  let out = `<header><h1>delta-audit report <span class="chip verdict ${conclusion}">${e(String(v.conclusion).toUpperCase())}</span></h1>`;
  out += `<dl class="meta">${rows.map(([k, val]) => `<dt>${k}</dt><dd>${val}</dd>`).join("")}</dl>`;
  out += `<nav aria-label="sections"><a href="#verdict">Verdict</a><a href="#findings">Findings (${report.findings.length})</a><a href="#spectrum">Spectrum</a><a href="#transcripts">Transcripts</a><a href="#run">Run</a></nav></header>`;
  return out;
}

function verdictSection(report: Report): string {
  const v = report.verdict;
  let out = `<section id="verdict"><h2>Verdict</h2>`;
  out += v.reasons.length ? `<ul>${v.reasons.map((r) => `<li>${e(r)}</li>`).join("")}</ul>` : `<p class="muted">No reasons given.</p>`;
  if (report.error) out += `<p><strong>Stopped early:</strong> ${e(report.error)}</p>`;
  return `${out}</section>`;
}

function findingsSection(report: Report, pattern: RegExp | undefined, probes: Map<string, number>, variants: string[]): string {
  let out = `<section id="findings"><h2>Findings</h2>`;
  if (report.findings.length === 0) return `${out}<p class="muted">No findings.</p></section>`;
  out += `<details><summary>How to read confidence</summary><p>${e(CONFIDENCE_DEFINITION)}</p></details>`;
  if (report.findings.some((f) => f.ladder)) out += `<details><summary>How to read the rank ladder</summary><p>${e(LADDER_DEFINITION)}</p></details>`;
  if (report.findings.some((f) => f.attribution)) out += `<details><summary>How to read layer attribution</summary><p>${e(ATTRIBUTION_DEFINITION)}</p></details>`;
  const sorted = [...report.findings].sort(bySeverity);
  for (const f of sorted) {
    const sev = f.severity in SEVERITY_RANK ? f.severity : "info";
    out += `<article class="finding ${sev}"><h3><span class="chip sev-${sev}">${e(f.severity)}</span> ${e(f.title)}</h3>`;
    out += `<p class="muted">source ${e(f.source)} · ${confidenceText(f)} · id <code>${e(f.id)}</code></p>`;
    if (f.terms.length) out += `<p class="terms">terms: ${f.terms.map((t) => `<mark>${e(t)}</mark>`).join("")}</p>`;
    if (f.description) out += `<p>${e(f.description)}</p>`;
    if (f.ladder) out += `<p class="ladder"><strong>Rank ladder:</strong> ${e(ladderText(f.ladder))}</p>`;
    if (f.attribution) out += `<p class="attribution"><strong>Layer attribution:</strong> ${e(attributionText(f.attribution))}</p>`;
    if (f.statistics) out += statisticsBlock(f.statistics);
    if (f.evidence.length) {
      out += `<ul class="evidence">`;
      for (const ev of f.evidence) {
        const pi = probes.get(ev.probeId);
        const vi = variants.indexOf(ev.variant);
        const where = `${e(ev.probeId)} · ${e(ev.variant)}`;
        const ref = pi !== undefined && vi >= 0 ? `<a href="#t-${pi}-${vi}-0">${where}</a>` : where;
        out += `<li>${ref}<blockquote>${markTerms(cut(ev.excerpt, MAX_ANSWER_CHARS), pattern).html}</blockquote></li>`;
      }
      out += `</ul>`;
    }
    out += `</article>`;
  }
  return `${out}</section>`;
}

/**
 * The commands that reproduce the top finding and inspect the spectrum (what-next.ts: each
 * argument shell-quoted there, HTML-escaped here; it also decides when there are any).
 */
function whatNextSection(commands: readonly string[]): string {
  if (commands.length === 0) return "";
  return `<section id="what-next" class="whatnext"><h2>What next</h2><p>Reproduce the top finding and inspect the spectrum locally:</p>${commands.map((c) => `<pre><code>${e(c)}</code></pre>`).join("")}</section>`;
}

const side = (s: Side) => e(sideText(s));

/** The rates behind a finding with their 95 % intervals and the exact test of its contrast (words from statistics-text.ts). */
function statisticsBlock(st: FindingStatistics): string {
  if (st.kind === "measurement") return `<p>${e(measurementText(st))}</p>`;
  if (st.kind !== "test") return "";
  let out = `<details class="stats"><summary>rates and test</summary>`;
  if (st.rates.length) {
    out += `<div class="scroll"><table><thead><tr><th>variant</th><th class="num">k / n</th><th class="num">rate</th><th class="num">95 % interval</th></tr></thead><tbody>`;
    out += st.rates.map((r) => `<tr><td>${side(r)}</td><td class="num">${e(r.k)} / ${e(r.n)}</td><td class="num">${r.n > 0 ? pct(r.k / r.n) : "–"}</td><td class="num">${pct(r.ci95[0])} – ${pct(r.ci95[1])}</td></tr>`).join("");
    out += `</tbody></table></div>`;
  }
  out += `<p>${e(testText(st.test))}</p>`;
  if (st.discount !== undefined) out += `<p class="muted">discounted × ${num(st.discount)}${st.discountReason ? `: ${e(st.discountReason)}` : ""}</p>`;
  return `${out}</details>`;
}

function quantiles(q: { median: number; p10: number; p90: number } | undefined): string {
  return q ? `median ${num(q.median)} (p10 ${num(q.p10)}, p90 ${num(q.p90)})` : "–";
}

function moduleTable(modules: readonly ModuleSpectrum[]): string {
  const types = orderedTypes(modules);
  const sorted = [...modules].sort((a, b) => (a.layer < 0 ? 1 : b.layer < 0 ? -1 : a.layer - b.layer) || types.indexOf(a.type) - types.indexOf(b.type) || a.name.localeCompare(b.name));
  const head = `<tr><th>module</th><th>type</th><th class="num">layer</th><th class="num">shape</th><th class="num">rank</th><th class="num">σ₁</th><th class="num">‖ΔW‖<sub>F</sub></th><th class="num">stable rank</th><th class="num">effective rank</th><th class="num">σ₁ energy</th></tr>`;
  const rows = sorted.map(
    (m) =>
      `<tr${isChanged(m) ? "" : ` class="muted"`}><td class="mono">${e(m.name)}</td><td>${e(m.type)}</td><td class="num">${layerLabel(m.layer)}</td><td class="num">${m.shape.map((d) => e(d)).join("×")}</td><td class="num">${e(m.rank)}</td><td class="num">${num(m.sigma[0] ?? Number.NaN)}</td><td class="num">${num(m.frobenius)}</td><td class="num">${num(m.stableRank)}</td><td class="num">${num(m.effectiveRank)}</td><td class="num">${num(m.energyShareTop1)}</td></tr>`,
  );
  const open = modules.length <= MODULE_TABLE_OPEN_MAX ? " open" : "";
  return `<details${open}><summary>Every module (${modules.length})</summary><div class="scroll"><table class="modules"><thead>${head}</thead><tbody>${rows.join("")}</tbody></table></div></details>`;
}

function spectrumSection(report: Report): string {
  const sp = report.spectrum;
  const sum = sp.summary;
  let out = `<section id="spectrum"><h2>Spectrum of ΔW</h2>`;
  if (sp.modules.length === 0 && !(sum?.modules > 0)) out += `<p class="muted">No adapted modules were measured.</p>`;
  else {
    out += `<p>${e(sum.modules)} modules · stable rank ${quantiles(sum.stableRank)} · σ₁ energy share ${quantiles(sum.energyShareTop1)}</p>`;
    const types = orderedTypes(Object.keys(sum.byType ?? {}).map((type) => ({ type })));
    const byType = types.map((t) => [t, sum.byType[t]!] as const);
    if (byType.length) {
      out += `<div class="scroll"><table class="compact"><thead><tr><th>type</th><th class="num">modules</th><th class="num">stable rank median</th><th class="num">p10</th><th class="num">p90</th></tr></thead><tbody>`;
      out += byType.map(([t, v]) => `<tr><td>${e(t)}</td><td class="num">${e(v.modules)}</td><td class="num">${num(v.stableRank.median)}</td><td class="num">${num(v.stableRank.p10)}</td><td class="num">${num(v.stableRank.p90)}</td></tr>`).join("");
      out += `</tbody></table></div>`;
    }
  }
  const fig = (caption: string, plot: string, note: string) => `<figure><figcaption>${caption}</figcaption><div class="scroll">${plot}</div><p class="muted">${note}</p></figure>`;
  // no modules: the sentence above says so, three empty plots would only repeat it
  if (sp.modules.length > 0) {
    out += fig("Singular values σᵢ of ΔW", singularValuesPlot(sp.modules), "One line per module type (median over its modules), the band spans all of them; σ₁ ringed. A rank-1 implant is one σ far above the rest.");
    out += fig("Stable rank, layer × module type", stableRankHeatmap(sp.modules), "‖ΔW‖²<sub>F</sub> / σ₁²: near 1 where one direction carries the update.");
    out += fig("σ₁ energy share by layer", energyShareByLayerPlot(sp.modules), "σ₁² / ‖ΔW‖²<sub>F</sub>: bar the median over the layer's modules, whisker their range.");
  }
  if (report.subject.kind === "full" || (sp.otherChanges?.length ?? 0) > 0) {
    out += fig("Changed non-matrix tensors", otherChangesPlot(sp.otherChanges ?? []), "‖ΔT‖<sub>F</sub> / ‖T<sub>base</sub>‖<sub>F</sub> of embeddings, norms, biases and heads.");
  }
  if (sp.otherChanges?.length) {
    out += `<details><summary>Changed non-matrix tensors (${sp.otherChanges.length})</summary><div class="scroll"><table class="modules"><thead><tr><th>tensor</th><th class="num">shape</th><th class="num">‖ΔT‖<sub>F</sub></th><th class="num">relative</th></tr></thead><tbody>`;
    out += sp.otherChanges.map((o) => `<tr><td class="mono">${e(o.name)}</td><td class="num">${o.shape.map((d) => e(d)).join("×")}</td><td class="num">${num(o.frobenius)}</td><td class="num">${num(o.relative)}</td></tr>`).join("");
    out += `</tbody></table></div></details>`;
  }
  if (sp.modules.length) out += moduleTable(sp.modules);
  return `${out}</section>`;
}

function transcriptsSection(report: Report, pattern: RegExp | undefined, variants: string[]): string {
  const el = report.elicitation;
  let out = `<section id="transcripts"><h2>Transcripts</h2>`;
  if (!el) return `${out}<p class="muted">Elicitation did not run${report.error ? " (the run stopped early)" : ""}: there are no transcripts.</p></section>`;
  out += `<dl class="meta"><dt>backend</dt><dd>${e(el.backend)}</dd><dt>rank</dt><dd>${e(el.rank)}</dd><dt>samples</dt><dd>${e(el.samples)}</dd><dt>temperature</dt><dd>${num(el.temperature)}</dd><dt>system prompt</dt><dd><pre>${e(el.systemPrompt)}</pre></dd></dl>`;
  if (el.notices.length) out += `<ul class="notices">${el.notices.map((n) => `<li>${e(n)}</li>`).join("")}</ul>`;
  if (el.probes.length === 0) return `${out}<p class="muted">No probes ran.</p></section>`;
  const kinds = [...new Set(el.probes.map((p) => String(p.kind)))];
  const kindName = (k: string) => (k === "probe" ? "interrogation probes" : k === "ordinary" ? "ordinary prompts" : k);
  // the controls work only with the script, which unhides them
  out += `<form id="filters" hidden><fieldset><legend>kind</legend>${kinds.map((k, i) => `<label><input type="checkbox" name="kind" value="${i}" checked> ${e(kindName(k))}</label>`).join("")}</fieldset>`;
  out += `<fieldset><legend>variant</legend>${variants.map((v, i) => `<label><input type="checkbox" name="variant" value="${i}" checked> ${e(v)}</label>`).join("")}</fieldset>`;
  out += `<label>${pattern ? `<input type="checkbox" name="hits"> only answers with a finding term` : ""}</label><span class="muted"><output id="shown"></output> answers shown</span></form>`;
  out += `<div class="scroll"><table id="transcripts-table" class="transcripts"><thead><tr><th>variant</th><th class="num">#</th><th>answer</th></tr></thead>`;
  el.probes.forEach((p, pi) => {
    const ki = kinds.indexOf(String(p.kind));
    // the prompt this probe was sent with (a v1 report: the rule that chose it), noted where it is not the scan's
    const sent = probeSystemPrompt(el, p);
    const system = sent !== el.systemPrompt ? `<br><span class="muted">system: ${sent === "" ? "(none)" : e(sent)}</span>` : "";
    out += `<tbody data-kind="${ki}"><tr><th colspan="3" id="p-${pi}"><span class="probe-id">${e(p.id)}</span> <span class="muted">· ${e(kindName(String(p.kind)))}</span><br>${markTerms(p.prompt, pattern).html}${system}</th></tr>`;
    variants.forEach((v, vi) => {
      const answers = p.responses[v] ?? [];
      answers.forEach((a, si) => {
        const m = markTerms(cut(String(a), MAX_ANSWER_CHARS), pattern);
        const at = p.attempts?.[v]?.[si];
        const meta = at ? `<div class="muted attempt">${e(at.tokens)} tokens · ${at.finishReason === "length" ? "cut at max-tokens" : "stopped"} · ${num(at.seconds)} s</div>` : "";
        const body = (String(a).trim() === "" ? `<span class="muted">(empty)</span>` : `<pre>${m.html}</pre>`) + meta;
        out += `<tr id="t-${pi}-${vi}-${si}" data-variant="${vi}" data-hit="${m.hit ? 1 : 0}"><td class="variant">${e(v)}</td><td class="num">${si + 1}</td><td class="answer">${body}</td></tr>`;
      });
    });
    out += `</tbody>`;
  });
  return `${out}</table></div></section>`;
}

function runSection(report: Report): string {
  const t = Object.entries(report.timings ?? {});
  let out = `<section id="run"><h2>Run</h2><p>${e(report.tool.name)} ${e(report.tool.version)} · report schema ${e(report.schemaVersion)} · this page is a view of report.json, the source of truth.</p>`;
  if (t.length) out += `<div class="scroll"><table class="compact"><thead><tr><th>stage</th><th class="num">seconds</th></tr></thead><tbody>${t.map(([k, v]) => `<tr><td>${e(k)}</td><td class="num">${num(v)}</td></tr>`).join("")}</tbody></table></div>`;
  return `${out}</section>`;
}

/** The whole page. */
export function renderHtml(report: Report): string {
  const pattern = termPattern(report.findings);
  const probes = probeIndex(report);
  const variants = variantsOf(report);
  const title = `delta-audit: ${String(report.verdict.conclusion)} · ${report.subject.adapter ?? report.subject.finetuned ?? ""}`;
  return [
    `<!DOCTYPE html>`,
    `<html lang="en"><head><meta charset="utf-8">`,
    `<meta http-equiv="Content-Security-Policy" content="${CSP}">`,
    `<meta name="referrer" content="no-referrer"><meta name="color-scheme" content="light dark">`,
    `<meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>${e(title)}</title><style>${STYLE}</style></head>`,
    `<body><main>`,
    header(report),
    verdictSection(report),
    findingsSection(report, pattern, probes, variants),
    whatNextSection(reproduceCommands(report)),
    spectrumSection(report),
    transcriptsSection(report, pattern, variants),
    runSection(report),
    `</main><script>${SCRIPT}</script></body></html>`,
    ``,
  ].join("\n");
}

/** For tests: the page's own policy, and that it allows only its own inline blocks. */
export const HTML_CSP = CSP;
