/**
 * Renders audit results for GitHub: the sticky PR comment, the check run's summary and text,
 * the job summary and the check-run annotations, from templates/ through report/templates.ts.
 *
 * Everything that came from a model or from the pull request (model text, module names,
 * folder names, finding titles) is untrusted and goes through report/sanitize.ts. Templates
 * compile with noEscape (report/templates.ts), so `{{x}}` is as raw as `{{{x}}}`: every value
 * must be neutralised before it reaches a template, in the view model or by a helper
 * (`inline`, `code`, `fence`). Each body is sized to its GitHub limit here, where the limit
 * bites, with a visible truncation note.
 */
import type { Conclusion } from "../policy/verdict";
import type { Report } from "../report/types";
import { bySeverity, type Finding, type Severity } from "../judge/types";
import { findingsAtOrAbove, type FailOn } from "../policy/severity";
import { cut, cutDocument, inlineCode, neutraliseInline, plainLine } from "../report/sanitize";
import { renderMarkdown } from "../report/markdown";
import { attributionBrief, confidenceText, ladderText } from "../report/statistics-text";
import { REPORT_FILES } from "../report/build";
import { EXCERPT_CHARS, renderTemplate } from "../report/templates";
import type { AuditSubject } from "./subjects";
import type { AnnotationLevel, CheckAnnotation, CheckConclusion, CheckOutput } from "./github-helper";

/** GitHub rejects issue comments longer than 65,536 characters. */
export const MAX_COMMENT_CHARS = 65_536;
/** Check-run output.summary and output.text are each limited to 65,535 characters. */
export const MAX_CHECK_OUTPUT_CHARS = 65_535;
/** The job summary is limited to 1 MiB per step; stay well under it in bytes. */
export const MAX_JOB_SUMMARY_BYTES = 1_000_000;
/** Check-run titles longer than this are cut by the UI anyway. */
const MAX_TITLE_CHARS = 200;
/** Annotation messages: plain text, long enough for a finding and its first excerpts. */
const MAX_ANNOTATION_MESSAGE_CHARS = 2_000;
/** Evidence excerpts per finding in an annotation message. */
const MAX_EVIDENCE_LISTED = 3;
/** Room kept for the frame (marker, header, table, footer) before sections are sized. */
const FRAME_RESERVE_CHARS = 6_000;
/** Findings listed in the PR comment, over every subject, most severe first; the rest are in the check run. */
export const MAX_TOP_FINDINGS = 5;
/** A finding's title in the comment's list. */
const TOP_FINDING_TITLE_CHARS = 160;
/** Room kept after the collapsed section for the report links and the footer. */
const DETAILS_RESERVE_CHARS = 2_000;
/** Layers drawn per chart: beyond this a bar chart is unreadable in a comment (the report has all). */
const MAX_CHART_LAYERS = 160;

/** Report files named in the comment; the rest of a many-subject run is in the output folder. */
const MAX_VIEWS_LISTED = 12;
/** report.html and report.sarif in a subject's output folder (written by the scan, report/build.ts). */
export const SUBJECT_VIEW_FILES = Object.freeze([REPORT_FILES.html, REPORT_FILES.sarif]);

const TRUNCATION_NOTE = "\n\n_…truncated to fit GitHub's size limit; the full report is in the workflow's report artifact (report.json, report.md)._\n";

/**
 * The run's conclusion: a verdict over the audited subjects, or `skipped` when there was nothing
 * to audit (the pull request touched no subject). Skipped is not neutral: neutral is an audit
 * that started and could not decide.
 */
export type ActionConclusion = Conclusion | "skipped";

/** The sentence every view of a run without subjects says. */
export const NOTHING_TO_AUDIT = "Nothing to audit: no adapter or checkpoint the inputs select changed in this pull request (or none matched).";

const ICON: Record<ActionConclusion, string> = Object.freeze({ pass: "✅", fail: "❌", neutral: "⚪", skipped: "⏭️" });
/**
 * Nothing to audit completes the check as `success`, not `skipped`: the check's name may be
 * required by branch protection, and a pull request that touches no model must never be blocked
 * by it, whichever way GitHub treats a required `skipped` check; the title and summary say that
 * nothing was audited, and the outputs say `skipped`.
 */
const CHECK_CONCLUSION: Record<ActionConclusion, CheckConclusion> = Object.freeze({ pass: "success", fail: "failure", neutral: "neutral", skipped: "success" });
/** Subjects named in the in-progress check run; the rest are counted. */
const MAX_SUBJECTS_LISTED = 50;
const ANNOTATION_LEVEL: Record<Severity, AnnotationLevel> = Object.freeze({ high: "failure", medium: "warning", low: "notice", info: "notice" });

/** One audited subject's outcome. `report` is absent when the scan could not even start. */
export interface SubjectResult {
  subject: AuditSubject;
  base: string;
  outDir: string;
  conclusion: Conclusion;
  report?: Report;
  /** why the run stopped early (input or backend error) */
  error?: string;
  /**
   * The subject's views that exist in its output folder (SUBJECT_VIEW_FILES), as paths relative
   * to the Action's output-dir with forward slashes: `adapters_quirk/report.html`.
   */
  views?: string[];
}

export interface RenderMeta {
  checkName: string;
  version: string;
  /** the threshold used to count findings for the outputs */
  failOn: FailOn;
  runUrl?: string;
  /** shown when the token could not write to the PR */
  readOnlyNote?: string;
  /** the Action's output folder, workspace-relative, named where the report files are */
  outputDir?: string;
  /** the run's SARIF file (all subjects), relative to outputDir, when it was written */
  sarif?: string;
}

export function checkConclusion(c: ActionConclusion): CheckConclusion {
  return CHECK_CONCLUSION[c];
}

/** skipped if nothing was audited; fail if any subject failed; else neutral if any was neutral; else pass. */
export function overallConclusion(results: SubjectResult[]): ActionConclusion {
  if (results.length === 0) return "skipped";
  if (results.some((r) => r.conclusion === "fail")) return "fail";
  if (results.some((r) => r.conclusion === "neutral")) return "neutral";
  return "pass";
}

/**
 * The in-progress check run's output: which subjects are being audited. Folder names come from
 * the pull request, so each is inline code (report/sanitize.ts), like every other view.
 */
export function renderProgressOutput(subjects: AuditSubject[]): CheckOutput {
  if (subjects.length === 0) return { title: "Nothing to audit", summary: NOTHING_TO_AUDIT };
  const names = subjects.slice(0, MAX_SUBJECTS_LISTED).map((s) => `- ${inlineCode(s.rel, EXCERPT_CHARS)} (${s.kind})`);
  if (subjects.length > MAX_SUBJECTS_LISTED) names.push(`- …and ${subjects.length - MAX_SUBJECTS_LISTED} more`);
  const summary = `Auditing ${subjects.length} subject${subjects.length === 1 ? "" : "s"}:\n\n${names.join("\n")}\n`;
  return { title: "Auditing…", summary: cutDocument(summary, MAX_CHECK_OUTPUT_CHARS, TRUNCATION_NOTE) };
}

/** Findings at or above the threshold, over every subject (policy/severity: none for `never`). */
export function countFindings(results: SubjectResult[], failOn: FailOn): number {
  let n = 0;
  for (const r of results) n += findingsAtOrAbove(r.report?.findings ?? [], failOn).length;
  return n;
}

/** The hidden marker that finds our sticky comment again; one per check name. */
export function commentMarker(checkName: string): string {
  return `<!-- delta-audit:sticky-comment:${encodeURIComponent(checkName)} -->`;
}

// ---------------------------------------------------------------- view models

function fmt(x: number | undefined): string {
  return typeof x === "number" && Number.isFinite(x) ? x.toFixed(2) : "–";
}

function subjectRow(r: SubjectResult, failOn: FailOn) {
  const summary = r.report?.spectrum?.summary;
  return {
    rel: r.subject.rel,
    kind: r.subject.kind,
    conclusion: r.conclusion,
    icon: ICON[r.conclusion],
    findingsAtOrAbove: countFindings([r], failOn),
    modules: summary?.modules ?? 0,
    median: fmt(summary?.stableRank?.median),
  };
}

/**
 * The report as GitHub shows it: its subject named the way the workflow names it (the
 * workspace-relative folder, the base as given or as the Hub id with the commit it resolved
 * to), not by the runner's absolute paths that the scan read.
 */
function displayReport(r: SubjectResult & { report: Report }): Report {
  const s = r.report.subject;
  const where = r.subject.kind === "adapter" ? { adapter: r.subject.rel, finetuned: undefined } : { finetuned: r.subject.rel, adapter: undefined };
  const subject = { ...s, ...where, base: r.base || s.base };
  if (subject.adapter === undefined) delete subject.adapter;
  if (subject.finetuned === undefined) delete subject.finetuned;
  return { ...r.report, subject };
}

/** The section of a subject without a report: what the Action knows of it and why the scan stopped. */
function reportlessView(r: SubjectResult, headingLevel: number) {
  return {
    heading: "#".repeat(headingLevel),
    icon: ICON[r.conclusion],
    rel: r.subject.rel,
    conclusion: r.conclusion,
    base: r.base,
    error: r.error,
  };
}

/**
 * One subject's section, cut to `maxChars`: one heading naming the subject and its verdict, then
 * the report rendered by report/markdown.ts without its own title (its sections one level down),
 * on workspace-relative paths (displayReport). A subject without a report (the scan could not
 * start) gets the compact section template, which shows the error.
 */
export function renderSection(r: SubjectResult, maxChars: number, headingLevel = 3): string {
  if (r.report) {
    const head = `${"#".repeat(headingLevel)} ${ICON[r.conclusion]} ${inlineCode(r.subject.rel, EXCERPT_CHARS)} — ${r.conclusion.toUpperCase()}\n\n`;
    const body = renderMarkdown(displayReport(r as SubjectResult & { report: Report }), { headingLevel, title: false, maxChars: Math.max(200, maxChars - head.length) });
    return cutDocument(`${head}${body.trimEnd()}`, maxChars, TRUNCATION_NOTE);
  }
  return cutDocument(renderTemplate("subject-section.md.hbs", reportlessView(r, headingLevel)).trimEnd(), maxChars, TRUNCATION_NOTE);
}

function headline(results: SubjectResult[], overall: ActionConclusion, failOn: FailOn): string {
  if (results.length === 0) return NOTHING_TO_AUDIT;
  const n = countFindings(results, failOn);
  const subjects = `${results.length} subject${results.length === 1 ? "" : "s"} audited`;
  if (overall === "fail") return `${subjects}; ${n} finding${n === 1 ? "" : "s"} at or above ${failOn} severity.`;
  if (overall === "neutral") return `${subjects}; at least one audit could not reach a verdict.`;
  return `${subjects}; no finding reached the fail-on threshold.`;
}

function sectionBudget(total: number, frame: number, n: number): number {
  return Math.max(500, Math.floor((total - frame - FRAME_RESERVE_CHARS) / Math.max(1, n)));
}

const SEVERITY_ICON: Record<Severity, string> = Object.freeze({ high: "🔴", medium: "🟠", low: "🟡", info: "🔵" });

/** The few most severe findings over every subject, one line each, and how many were left out. */
function topFindings(results: SubjectResult[]) {
  const all: { rel: string; f: Finding }[] = [];
  for (const r of results) for (const f of r.report?.findings ?? []) all.push({ rel: r.subject.rel, f });
  all.sort((a, b) => bySeverity(a.f, b.f));
  return {
    top: all.slice(0, MAX_TOP_FINDINGS).map(({ rel, f }) => ({
      icon: SEVERITY_ICON[f.severity] ?? "",
      severity: f.severity,
      rel,
      title: neutraliseInline(f.title, TOP_FINDING_TITLE_CHARS),
      // what the number is: a measurement's "1" is no confidence (report/statistics-text.ts)
      confidence: confidenceText(f),
      source: neutraliseInline(f.source, 40),
      // our words and numbers only, neutralised all the same
      ladder: f.ladder ? neutraliseInline(ladderText(f.ladder), 400) : undefined,
      attribution: f.attribution ? neutraliseInline(attributionBrief(f.attribution), 200) : undefined,
    })),
    more: Math.max(0, all.length - MAX_TOP_FINDINGS),
  };
}

/** A number for a chart: finite, two decimals, nothing else (mermaid text carries no strings of ours or theirs). */
function chartNumber(x: unknown): string | undefined {
  return typeof x === "number" && Number.isFinite(x) ? String(Math.round(x * 100) / 100) : undefined;
}

/**
 * A mermaid xychart of the median stable rank by layer from report.spectrum.summary.byLayer,
 * or undefined when there is nothing to draw. Its text holds only our words, layer numbers
 * (keys that are decimal integers; others are skipped) and numbers: nothing from the model or
 * the pull request reaches mermaid's parser.
 */
export function stableRankChart(report: Report): string | undefined {
  const byLayer = report.spectrum?.summary?.byLayer ?? {};
  const points: { layer: number; median: string }[] = [];
  for (const [key, v] of Object.entries(byLayer)) {
    if (!/^\d{1,6}$/.test(key)) continue;
    const median = chartNumber(v?.stableRank?.median);
    if (median !== undefined) points.push({ layer: Number(key), median });
  }
  if (points.length === 0) return undefined;
  points.sort((a, b) => a.layer - b.layer);
  const shown = points.slice(0, MAX_CHART_LAYERS);
  const top = Math.max(...shown.map((p) => Number(p.median)));
  const yMax = chartNumber(top > 0 ? top * 1.1 : 1)!;
  return [
    "```mermaid",
    "xychart-beta",
    `  x-axis "layer" [${shown.map((p) => p.layer).join(", ")}]`,
    `  y-axis "median stable rank" 0 --> ${yMax}`,
    `  bar [${shown.map((p) => p.median).join(", ")}]`,
    "```",
  ].join("\n");
}

/** The collapsed section's body for one subject: its name and its chart. */
function chartBlock(r: SubjectResult): string | undefined {
  if (!r.report) return undefined;
  const chart = stableRankChart(r.report);
  if (!chart) return undefined;
  const layers = Object.keys(r.report.spectrum.summary.byLayer ?? {}).filter((k) => /^\d{1,6}$/.test(k)).length;
  const note = layers > MAX_CHART_LAYERS ? ` (first ${MAX_CHART_LAYERS} of ${layers} layers)` : "";
  return `${inlineCode(r.subject.rel, EXCERPT_CHARS)} — median stable rank of the weight update by layer${note}:\n\n${chart}`;
}

/** Charts for as many subjects as `budget` characters hold, and a note for the rest. */
function chartsWithin(results: SubjectResult[], budget: number): string {
  const blocks: string[] = [];
  let used = 0;
  let left = 0;
  const drawable = results.map(chartBlock).filter((b): b is string => b !== undefined);
  for (const b of drawable) {
    if (used + b.length + 2 > budget) {
      left++;
      continue;
    }
    blocks.push(b);
    used += b.length + 2;
  }
  if (left > 0) blocks.push(`_${left} more subject${left === 1 ? "" : "s"}: see the check run and each subject's report.md._`);
  return blocks.join("\n\n");
}

/** Where the report files are: each subject's views, the run's SARIF, the output folder and the run page. */
function reportFiles(results: SubjectResult[], meta: RenderMeta) {
  const views = results.flatMap((r) => r.views ?? []);
  const files = views.slice(0, MAX_VIEWS_LISTED).map((v) => inlineCode(v, EXCERPT_CHARS));
  if (views.length > MAX_VIEWS_LISTED) files.push(`${views.length - MAX_VIEWS_LISTED} more`);
  if (meta.sarif) files.push(inlineCode(meta.sarif, EXCERPT_CHARS));
  if (files.length === 0) return undefined;
  return {
    files: files.join(" · "),
    outputDir: meta.outputDir ? inlineCode(meta.outputDir, EXCERPT_CHARS) : undefined,
    runUrl: meta.runUrl,
  };
}

/**
 * The comment's view: verdict, the subjects table, the top findings and the subjects that
 * stopped early; the collapsed charts and report links are added by renderComment once the
 * frame's size is known.
 */
function commentView(results: SubjectResult[], meta: RenderMeta, details: string, overall: ActionConclusion) {
  const { top, more } = topFindings(results);
  return {
    marker: commentMarker(meta.checkName),
    icon: ICON[overall],
    title: `${meta.checkName}: ${overall}`,
    headline: headline(results, overall, meta.failOn),
    subjects: results.map((r) => subjectRow(r, meta.failOn)),
    topFindings: top,
    moreFindings: more,
    stopped: results.filter((r) => r.error).map((r) => ({ rel: r.subject.rel, error: r.error })),
    details,
    reports: reportFiles(results, meta),
    readOnlyNote: meta.readOnlyNote,
    version: meta.version,
    runUrl: meta.runUrl,
  };
}

/**
 * The sticky PR comment, kept short: verdict, the subjects table, the few top findings, then a
 * collapsed section with each subject's stable rank by layer (a mermaid chart, which GitHub
 * draws) and where the full reports are. Marker first (so truncation can never drop it),
 * ≤ 65,536 characters: the charts get what the rest leaves, and the whole is cut as before.
 */
export function renderComment(results: SubjectResult[], meta: RenderMeta): string {
  const overall = overallConclusion(results);
  const frame = renderTemplate("comment.md.hbs", commentView(results, meta, "", overall)).length;
  const room = MAX_COMMENT_CHARS - frame - DETAILS_RESERVE_CHARS;
  const details = room > 0 ? chartsWithin(results, room) : "";
  const body = renderTemplate("comment.md.hbs", commentView(results, meta, details, overall));
  return cutDocument(body, MAX_COMMENT_CHARS, TRUNCATION_NOTE);
}

/** Check-run output: summary = verdicts, stable-rank tables, findings; text = per-probe excerpts. */
export function renderCheckOutput(results: SubjectResult[], meta: RenderMeta): CheckOutput {
  const overall = overallConclusion(results);
  const view = (sections: string[]) => ({
    icon: ICON[overall],
    headline: headline(results, overall, meta.failOn),
    subjects: results.map((r) => subjectRow(r, meta.failOn)),
    sections,
  });
  const frame = renderTemplate("check-summary.md.hbs", view([])).length;
  const budget = sectionBudget(MAX_CHECK_OUTPUT_CHARS, frame, results.length);
  const summary = cutDocument(renderTemplate("check-summary.md.hbs", view(results.map((r) => renderSection(r, budget, 3)))), MAX_CHECK_OUTPUT_CHARS, TRUNCATION_NOTE);

  const textView = {
    subjects: results.map((r) => ({
      rel: r.subject.rel,
      probes: (r.report?.elicitation?.probes ?? []).map((p) => ({
        id: p.id,
        kind: p.kind,
        prompt: p.prompt,
        responses: Object.entries(p.responses ?? {}).map(([variant, texts]) => ({ variant, text: (texts ?? [])[0] ?? "" })),
      })),
    })),
  };
  const text = cutDocument(renderTemplate("check-text.md.hbs", textView), MAX_CHECK_OUTPUT_CHARS, TRUNCATION_NOTE);
  const title = cut(overall === "skipped" ? `${meta.checkName}: nothing to audit` : `${meta.checkName}: ${overall} — ${headline(results, overall, meta.failOn)}`, MAX_TITLE_CHARS);
  return { title, summary, text };
}

/**
 * The job summary: the comment's content without the marker, then every subject's full section
 * (its report.md), sized to the step limit.
 */
export function renderJobSummary(results: SubjectResult[], meta: RenderMeta): string {
  const short = renderComment(results, meta).replace(commentMarker(meta.checkName), "").trimStart();
  // 4 bytes per character is the UTF-8 worst case
  const maxChars = Math.floor(MAX_JOB_SUMMARY_BYTES / 4);
  const budget = sectionBudget(maxChars, short.length, results.length);
  const sections = results.length > 0 ? `\n\n## Each subject in full\n\n${results.map((r) => renderSection(r, budget, 3)).join("\n\n")}\n` : "";
  const md = `${short.trimEnd()}${sections}`;
  if (Buffer.byteLength(md, "utf8") <= MAX_JOB_SUMMARY_BYTES) return md;
  return cutDocument(md, maxChars, TRUNCATION_NOTE);
}

/**
 * One annotation per subject with its verdict, and one per finding at its severity's level,
 * all on line 1 of the subject's adapter_config.json / config.json.
 */
export function buildAnnotations(results: SubjectResult[]): CheckAnnotation[] {
  const out: CheckAnnotation[] = [];
  for (const r of results) {
    const at = { path: r.subject.configFile, start_line: 1, end_line: 1 };
    const level: AnnotationLevel = r.conclusion === "fail" ? "failure" : r.conclusion === "neutral" ? "warning" : "notice";
    const reasons = r.error ? [r.error] : (r.report?.verdict?.reasons ?? []);
    out.push({ ...at, annotation_level: level, title: plainLine(`delta-audit: ${r.conclusion}`, MAX_TITLE_CHARS), message: plainLine(reasons.join("; ") || r.conclusion, MAX_ANNOTATION_MESSAGE_CHARS) });
    for (const f of r.report?.findings ?? []) {
      const evidence = f.evidence.slice(0, MAX_EVIDENCE_LISTED).map((e) => `[${e.probeId} / ${e.variant}] ${e.excerpt}`).join(" | ");
      out.push({
        ...at,
        annotation_level: ANNOTATION_LEVEL[f.severity],
        title: plainLine(`${f.severity}: ${f.title}`, MAX_TITLE_CHARS),
        message: plainLine(`${f.description ?? f.title} (${confidenceText(f)}, ${f.source}). ${evidence}`, MAX_ANNOTATION_MESSAGE_CHARS),
      });
    }
  }
  return out;
}
