/**
 * index.html of a sweep: one self-contained page, a sortable table of every model (model,
 * revision, verdict, top finding, stable-rank summary, drift, last audited, verdicts over time)
 * with links to each model's report. As report.html does (report/html.ts): no request of any
 * kind, the stylesheet and the one sorting script inline and allowed by their SHA-256 in a
 * Content-Security-Policy, and every string that came from a model, a report or a registry
 * through report/html-escape.ts `escapeHtml`. The script reads only `data-sort` attributes
 * (numbers and escaped text), never model text as code.
 */
import { createHash } from "node:crypto";
import { escapeHtml as e } from "../report/html-escape";
import { BADGE_WORD } from "../report/badge";
import { formatNumber } from "../delta/table";
import { SEVERITY_RANK } from "../judge/types";
import type { IndexEntry, SweepIndex } from "./collect";

const STYLE = `
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;--pass:#1a7f37;--fail:#cf222e;--neutral:#6e7781;--link:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;--card:#151b23;--pass:#3fb950;--fail:#f85149;--neutral:#9198a1;--link:#4493f8}}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif}
main{max-width:1400px;margin:0 auto;padding:24px}
a{color:var(--link)}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid var(--line);padding:6px 8px;text-align:left;vertical-align:top}
th{cursor:pointer;user-select:none;background:var(--card);position:sticky;top:0}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
.v{font-weight:600}.v-pass{color:var(--pass)}.v-fail{color:var(--fail)}.v-neutral,.v-missing{color:var(--neutral)}
.note{color:var(--muted);font-size:12px}
.h{display:inline-block;width:10px;height:10px;margin-right:2px;border-radius:2px;background:var(--neutral)}
.h-pass{background:var(--pass)}.h-fail{background:var(--fail)}
`;

/** Click a header to sort by its column (numbers by value, text by locale); again to reverse. */
const SCRIPT = `
document.querySelectorAll("th[data-col]").forEach(function(th){th.addEventListener("click",function(){
var t=th.closest("table"),b=t.tBodies[0],c=+th.dataset.col,num=th.dataset.type==="num",asc=th.getAttribute("aria-sort")!=="ascending";
t.querySelectorAll("th").forEach(function(h){h.removeAttribute("aria-sort")});th.setAttribute("aria-sort",asc?"ascending":"descending");
var rows=Array.prototype.slice.call(b.rows);rows.sort(function(x,y){var a=x.cells[c].dataset.sort||"",z=y.cells[c].dataset.sort||"";
var r=num?(parseFloat(a)||0)-(parseFloat(z)||0):a.localeCompare(z);return asc?r:-r});rows.forEach(function(r){b.appendChild(r)})})});
`;

const sha256 = (s: string) => createHash("sha256").update(s).digest("base64");
export const INDEX_CSP = `default-src 'none'; style-src 'sha256-${sha256(STYLE)}'; script-src 'sha256-${sha256(SCRIPT)}'; base-uri 'none'; form-action 'none'`;

/** Sort order of verdicts: the worst first when sorted descending. */
const VERDICT_RANK: Readonly<Record<IndexEntry["conclusion"], number>> = Object.freeze({ fail: 3, neutral: 2, missing: 1, pass: 0 });

function shortRev(rev: string | undefined): string {
  if (!rev) return "";
  return rev.startsWith("sha256:") ? rev.slice(7, 19) : rev.slice(0, 12);
}

function cell(content: string, sort: string | number, cls = ""): string {
  return `<td${cls ? ` class="${cls}"` : ""} data-sort="${e(String(sort))}">${content}</td>`;
}

function row(m: IndexEntry): string {
  const model = m.html ? `<a href="${e(m.html)}">${e(m.name)}</a>` : e(m.name);
  const links = [m.html ? `<a href="${e(m.html)}">html</a>` : "", m.report ? `<a href="${e(m.report)}">json</a>` : ""].filter(Boolean).join(" · ");
  const kind = m.kind ? `<div class="note">${e(m.kind === "lora" ? "adapter" : "full fine-tune")}${m.source ? ` · ${e(m.source)}` : ""}</div>` : "";
  const verdict = `<span class="v v-${e(m.conclusion)}">${e(BADGE_WORD[m.conclusion])}</span>${m.reason ? `<div class="note">${e(m.reason)}</div>` : ""}`;
  const top = m.topFinding ? `<b>${e(m.topFinding.severity)}</b>: ${e(m.topFinding.title)}` : "";
  const sr = m.stableRank;
  const stable = sr ? `${e(formatNumber(sr.median))} <span class="note">(${e(formatNumber(sr.p10))}–${e(formatNumber(sr.p90))})</span>` : "";
  const d = m.drift;
  const drift = d
    ? `${d.finding ? `<b>${e(d.finding.severity)}: drift</b><br>` : ""}${e(String(d.rotated))}/${e(String(d.compared))} modules turned, max ${e(d.maxRotation.toFixed(1))}°<div class="note">σ₁ ×${e(d.sigma1Ratio.toFixed(2))}, stable rank ${e(formatNumber(d.stableRankBefore))} → ${e(formatNumber(d.stableRankAfter))}; findings +${e(String(d.newFindings.length))} −${e(String(d.vanishedFindings.length))}</div>`
    : "";
  const history = (m.history ?? []).map((h) => `<span class="h h-${e(h.conclusion)}" title="${e(`${h.at.slice(0, 10)} ${BADGE_WORD[h.conclusion]}${h.revision ? ` ${shortRev(h.revision)}` : ""}`)}"></span>`).join("");
  return (
    "<tr>" +
    cell(`${model}${kind}`, m.name) +
    cell(`<code>${e(shortRev(m.revision))}</code>`, shortRev(m.revision)) +
    cell(verdict, VERDICT_RANK[m.conclusion]) +
    cell(top, m.topFinding ? SEVERITY_RANK[m.topFinding.severity] * 10 + m.topFinding.confidence : -1) +
    cell(stable, sr ? sr.median : -1, "num") +
    cell(drift, d ? (d.finding ? 1000 : 0) + d.maxRotation : -1) +
    cell(e(m.lastAudited ? m.lastAudited.slice(0, 16).replace("T", " ") : ""), m.lastAudited ?? "") +
    cell(history, (m.history ?? []).length) +
    cell(links, m.name) +
    "</tr>"
  );
}

const COLUMNS: ReadonlyArray<[string, "num" | "text"]> = [
  ["model", "text"],
  ["revision", "text"],
  ["verdict", "num"],
  ["top finding", "num"],
  ["stable rank (median, p10–p90)", "num"],
  ["drift", "num"],
  ["last audited", "text"],
  ["history", "num"],
  ["report", "text"],
];

export function renderIndexHtml(index: SweepIndex): string {
  const s = index.summary;
  const head = COLUMNS.map(([name, type], i) => `<th data-col="${i}" data-type="${type}">${e(name)}</th>`).join("");
  return [
    "<!doctype html>",
    `<html lang="en"><head><meta charset="utf-8">`,
    `<meta http-equiv="Content-Security-Policy" content="${INDEX_CSP}">`,
    `<meta name="referrer" content="no-referrer"><meta name="color-scheme" content="light dark">`,
    `<meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>delta-audit sweep</title><style>${STYLE}</style></head><body><main>`,
    `<h1>delta-audit sweep</h1>`,
    `<p>${e(String(index.models.length))} models · ${e(String(s.pass))} ${e(BADGE_WORD.pass)} · ${e(String(s.fail))} ${e(BADGE_WORD.fail)} · ${e(String(s.neutral))} ${e(BADGE_WORD.neutral)} · ${e(String(s.missing))} without a report · ${e(index.generatedAt)}</p>`,
    `<table><thead><tr>${head}</tr></thead><tbody>`,
    ...index.models.map(row),
    `</tbody></table>`,
    `<p class="note">Findings are evidence with a confidence, not a certification. Drift: the largest principal angle between a module's old and new top singular subspaces; badges are shields.io endpoint files in <code>badges/</code>.</p>`,
    `</main><script>${SCRIPT}</script></body></html>`,
    "",
  ].join("\n");
}
