/**
 * report.md (and the PR comment / check-run summary bodies) rendered from templates/
 * report.md.hbs through report/templates.ts. All values are prepared here as a view model in
 * which every string that came from a model, a config or a file path is already neutralised;
 * the template compiles with noEscape and only lays things out, so nothing can escape its block.
 */
import type { Evidence, Finding } from "../judge/types";
import type { Report } from "./types";
import { cutDocument, fencedBlock, neutraliseInline } from "./sanitize";
import { renderTemplate } from "./templates";
import { reproduceCommands } from "./what-next";
import { CONFIDENCE_DEFINITION } from "../judge/statistics";
import { attributionText, confidenceText, ladderText, statisticsLines } from "./statistics-text";
import { LADDER_DEFINITION } from "../judge/ladder";
import { ATTRIBUTION_DEFINITION } from "../judge/attribution";

export interface RenderOptions {
  /** cut the whole document to this many characters (GitHub: 65,536 comment, 65,535 check run) */
  maxChars?: number;
  /** level of the top heading (1 = `#`); sections use the next level */
  headingLevel?: number;
  /**
   * false: leave out the report's own title line (a surface that heads each subject itself —
   * the PR comment and check run — would otherwise show two headings per subject)
   */
  title?: boolean;
}

/** One excerpt in a finding; long ones are cut with sanitize's marker. */
export const FINDING_EXCERPT_CHARS = 300;
/** One cell of the side-by-side table. */
export const SIDE_BY_SIDE_CHARS = 280;
/** Probes shown side by side: the strongest evidence, not the whole suite (that is in report.json). */
export const MAX_SIDE_BY_SIDE = 3;
export const MAX_FINDINGS_SHOWN = 20;
/** Verdict reasons list every failing finding; the findings section has the details. */
export const MAX_REASONS_SHOWN = 5;

const ICONS: Readonly<Record<string, string>> = Object.freeze({
  pass: "✅",
  fail: "❌",
  neutral: "⚪",
  high: "🔴",
  medium: "🟠",
  low: "🟡",
  info: "🔵",
});

const n2 = (x: number | undefined) => (x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(2));
const safe = (s: unknown, max = 200) => neutraliseInline(String(s ?? ""), max);

function findingView(f: Finding, h3: string) {
  return {
    h3,
    icon: ICONS[f.severity] ?? "",
    severity: f.severity,
    title: safe(f.title, 240),
    confidence: safe(confidenceText(f), 80),
    statistics: statisticsLines(f.statistics).map((l) => safe(l, 400)),
    source: safe(f.source, 80),
    terms: f.terms.map((t) => `“${safe(t, 80)}”`).join(", "),
    description: f.description ? safe(f.description, 800) : "",
    ladder: f.ladder ? safe(ladderText(f.ladder), 600) : "",
    attribution: f.attribution ? safe(attributionText(f.attribution), 600) : "",
    evidence: f.evidence.map((e: Evidence) => ({ probeId: safe(e.probeId, 80), variant: safe(e.variant, 40), excerpt: safe(e.excerpt, FINDING_EXCERPT_CHARS) })),
  };
}

/** Probes that carry the strongest findings' evidence, in finding order. */
function strongestProbes(report: Report): string[] {
  const ids: string[] = [];
  for (const f of report.findings) {
    for (const e of f.evidence) {
      if (!ids.includes(e.probeId)) ids.push(e.probeId);
      if (ids.length >= MAX_SIDE_BY_SIDE) return ids;
    }
  }
  return ids;
}

function sideBySide(report: Report) {
  const e = report.elicitation;
  if (!e) return [];
  const columns = e.variants.filter((v) => e.probes.some((p) => p.responses[v]?.length));
  if (columns.length === 0) return [];
  let ids = strongestProbes(report).filter((id) => e.probes.some((p) => p.id === id));
  if (ids.length === 0) ids = e.probes.filter((p) => p.kind === "probe").slice(0, 1).map((p) => p.id);
  return ids.map((id) => {
    const p = e.probes.find((x) => x.id === id)!;
    return {
      probeId: safe(p.id, 80),
      kind: p.kind === "probe" ? "interrogation probe" : "ordinary prompt",
      prompt: safe(p.prompt, 300),
      columns: columns.map((c) => safe(c, 40)),
      cells: columns.map((c) => {
        const r = p.responses[c]?.[0];
        return r === undefined ? "–" : r.trim() === "" ? "(empty)" : safe(r, SIDE_BY_SIDE_CHARS);
      }),
    };
  });
}

/**
 * "What next" where what-next.ts gives commands (a failing report, or an undecided one that has
 * findings): the commands that reproduce the top finding and inspect the spectrum, in one fenced
 * block (report/what-next.ts quotes every argument for the shell; the fence keeps them inert in
 * markdown).
 */
function whatNext(report: Report) {
  const commands = reproduceCommands(report);
  if (commands.length === 0) return undefined;
  const text = commands.join("\n\n");
  const intro =
    commands.length > 2
      ? "Reproduce the top finding locally (its probe on the rank-k variant that showed it, then on the whole fine-tune to compare) and inspect the weight update's spectrum."
      : commands.length > 1
        ? "Reproduce the top finding locally (its probe on the variant that showed it) and inspect the weight update's spectrum."
        : "Inspect the weight update's spectrum locally.";
  return {
    intro: `${intro} Paths are the ones the scan read; adjust them to your checkout.`,
    // no cut: a cut command would end inside a quote (what-next.ts keeps long prompts out)
    block: fencedBlock(text, Array.from(text).length + 1),
  };
}

/** Render the report as GitHub-flavoured markdown. */
export function renderMarkdown(report: Report, opts: RenderOptions = {}): string {
  const level = Math.min(4, Math.max(1, Math.floor(opts.headingLevel ?? 1)));
  const h = (k: number) => "#".repeat(Math.min(6, level + k));
  const s = report.subject;
  const subjectLines = [
    `base: ${safe(s.base, 300)}`,
    s.adapter !== undefined ? `adapter: ${safe(s.adapter, 300)}` : `finetuned: ${safe(s.finetuned, 300)}`,
    `kind: ${safe(s.kind, 20)} · digest: ${safe(s.digest.slice(0, 16), 20)}`,
  ];
  if (report.elicitation) {
    const el = report.elicitation;
    subjectLines.push(
      `elicitation: ${el.probes.length} prompts × ${el.samples} sample(s) on ${el.variants.map((v) => safe(v, 40)).join(", ")} via ${safe(el.backend, 40)}, temperature ${el.temperature}`,
    );
  }
  const sp = report.spectrum;
  const spectrumSummary =
    sp.summary.modules === 0
      ? "No adapted modules were measured."
      : `${sp.summary.modules} modules · stable rank median ${n2(sp.summary.stableRank.median)} (p10 ${n2(sp.summary.stableRank.p10)}, p90 ${n2(sp.summary.stableRank.p90)}) · σ₁ energy share median ${n2(sp.summary.energyShareTop1?.median)}`;
  const byType = Object.entries(sp.summary.byType ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([type, v]) => ({ type: safe(type, 40), modules: v.modules, median: n2(v.stableRank.median), p10: n2(v.stableRank.p10), p90: n2(v.stableRank.p90) }));
  const shown = report.findings.slice(0, MAX_FINDINGS_SHOWN);
  const notices = [...(report.elicitation?.notices ?? []).map((n) => safe(n, 400))];
  if (report.findings.length > shown.length) notices.push(`${report.findings.length - shown.length} more finding(s) in report.json`);
  if (report.error) notices.push(`stopped early: ${safe(report.error, 400)}`);
  const conclusion = report.verdict.conclusion;
  const view = {
    h1: opts.title === false ? "" : h(0),
    h2: h(1),
    verdictIcon: ICONS[conclusion] ?? "",
    verdictWord: conclusion.toUpperCase(),
    subjectLines,
    reasons: [
      ...report.verdict.reasons.slice(0, MAX_REASONS_SHOWN).map((r) => safe(r, 300)),
      ...(report.verdict.reasons.length > MAX_REASONS_SHOWN ? [`…and ${report.verdict.reasons.length - MAX_REASONS_SHOWN} more`] : []),
    ],
    spectrumSummary,
    byType,
    findings: shown.map((f) => findingView(f, h(2))),
    noFindingsText: report.elicitation ? "No findings." : "No findings: the elicitation suite did not run.",
    confidenceDefinition: report.findings.length > 0 ? safe(CONFIDENCE_DEFINITION, 4000) : "",
    ladderDefinition: shown.some((f) => f.ladder) ? safe(LADDER_DEFINITION, 4000) : "",
    attributionDefinition: shown.some((f) => f.attribution) ? safe(ATTRIBUTION_DEFINITION, 4000) : "",
    sideBySide: sideBySide(report),
    whatNext: whatNext(report),
    notices,
    footer: `_${safe(report.tool.name, 40)} ${safe(report.tool.version, 20)} · fail-on ${report.verdict.failOn} · findings are evidence with a confidence, not a certification._`,
  };
  const md = `${renderTemplate("report.md.hbs", view).replace(/\n{3,}/g, "\n\n").trimEnd()}\n`;
  return opts.maxChars !== undefined ? cutDocument(md, opts.maxChars) : md;
}
