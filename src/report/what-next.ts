/**
 * "What next" in a failing report: the shell commands that reproduce the top finding on the
 * reviewer's machine (`delta-audit generate` with the probe that showed it, on the variant that
 * showed it) and inspect the weight update's spectrum (`delta-audit spectrum`).
 *
 * Every argument is untrusted (folder names come from the pull request, probe prompts and the
 * system prompt from its config), so each is single-quoted, POSIX style: inside '…' the shell
 * gives no character a meaning, and a quote is written '\'' (close, escaped quote, reopen).
 * Characters a terminal would act on or hide (HIDDEN_CHARS: C0/C1 controls but tab and newline,
 * bidi overrides, zero-width and tag characters) are removed first; a newline inside quotes is
 * part of the argument, so a multi-line prompt is reproduced as it was sent.
 */
import { variantForRank } from "../chat/types";
import { HIDDEN_CHARS } from "../errors";
import type { Finding } from "../judge/types";
import { probeSystemPrompt } from "./transcripts";
import type { Report } from "./types";

/**
 * A prompt longer than this is not pasted into the command: the command reads it from
 * report.json with jq instead, so report.md stays small and no copy is cut mid-quote.
 */
export const MAX_INLINE_ARGUMENT_CHARS = 2_000;

/** The report file the jq form reads, next to report.md. */
const REPORT_FILE = "report.json";

/** `text` without the characters a terminal acts on or hides; CR LF and lone CR become LF. */
function shellSafeText(text: string): string {
  return String(text).replace(/\r\n?/g, "\n").replace(HIDDEN_CHARS, "");
}

/** One POSIX shell word holding exactly `text` (after shellSafeText): '…' with ' written '\''. */
export function shellQuote(text: string): string {
  return `'${shellSafeText(text).replace(/'/g, "'\\''")}'`;
}

/**
 * A word the shell expands to the text jq finds at `filter` in report.json (values passed with
 * --arg). Command substitution drops trailing newlines, the one way it differs from the text.
 */
function fromReport(filter: string, args: Record<string, string> = {}): string {
  const vars = Object.entries(args).map(([k, v]) => `--arg ${k} ${shellQuote(v)} `).join("");
  return `"$(jq -r ${vars}${shellQuote(filter)} ${REPORT_FILE})"`;
}

/**
 * One argument: `value` single-quoted, or, when longer than MAX_INLINE_ARGUMENT_CHARS, read
 * from report.json at `filter`.
 */
function word(value: string, filter: string, args?: Record<string, string>): string {
  const text = shellSafeText(value);
  return Array.from(text).length > MAX_INLINE_ARGUMENT_CHARS ? fromReport(filter, args) : shellQuote(text);
}

/** The probe and variant of a finding's first evidence that names a recorded probe. */
function firstEvidence(report: Report, f: Finding) {
  for (const e of f.evidence) {
    const probe = report.elicitation?.probes.find((p) => p.id === e.probeId);
    if (probe) return { probe, variant: e.variant };
  }
  return undefined;
}

/** The subject's flags: `--adapter A` or `--finetuned F`. */
function subjectFlags(report: Report): string[] {
  const s = report.subject;
  if (s.kind === "full" || (s.adapter === undefined && s.finetuned !== undefined)) return ["--finetuned", word(s.finetuned ?? "", ".subject.finetuned")];
  return ["--adapter", word(s.adapter ?? "", ".subject.adapter")];
}

/**
 * The commands that reproduce the top finding (the first one with evidence from a recorded
 * probe; findings are in severity order) and inspect the spectrum. Empty — no "What next" in
 * any view — when the verdict is pass (nothing to chase) or there is no finding; shown for a
 * fail and for an undecided report with findings. A spectrum-only finding gets only the
 * spectrum command.
 */
export function reproduceCommands(report: Report): string[] {
  if (report.verdict.conclusion === "pass" || report.findings.length === 0) return [];
  const out: string[] = [];
  const el = report.elicitation;
  const hit = el ? report.findings.map((f) => firstEvidence(report, f)).find((x) => x !== undefined) : undefined;
  if (el && hit) {
    const words = ["delta-audit", "generate", "--model", word(report.subject.base, ".subject.base")];
    // the variant that showed it: base alone, the whole fine-tune, or (rank-k, and contrast,
    // which generate cannot run) the rank-k truncation
    if (hit.variant !== "base") words.push(...subjectFlags(report));
    const rank = Number.isInteger(el.rank) && el.rank > 0 ? el.rank : 1;
    if (hit.variant !== "base" && hit.variant !== "full") words.push("--rank", String(rank));
    // the id (config.ts: ≤ 64 characters) goes to jq as --arg, never into the filter's text
    words.push("--prompt", word(hit.probe.prompt, ".elicitation.probes[] | select(.id == $id) | .prompt", { id: hit.probe.id }));
    // the system prompt this probe was sent with (ordinary prompts may have had their own)
    const system = probeSystemPrompt(el, hit.probe);
    const recorded = hit.probe.systemPrompt !== undefined;
    const systemFilter = recorded ? ".elicitation.probes[] | select(.id == $id) | .systemPrompt" : ".elicitation.systemPrompt";
    if (shellSafeText(system) !== "") words.push("--system", word(system, systemFilter, recorded ? { id: hit.probe.id } : undefined));
    if (Number.isFinite(el.temperature) && el.temperature > 0) words.push("--temperature", String(el.temperature));
    out.push(words.join(" "));
    // a rank-k finding is a contrast with the whole fine-tune: the same prompt on `full`
    if (hit.variant === variantForRank(rank)) {
      const full = [...words];
      full.splice(full.indexOf("--rank"), 2);
      out.push(full.join(" "));
    }
  }
  out.push(["delta-audit", "spectrum", "--base", word(report.subject.base, ".subject.base"), ...subjectFlags(report)].join(" "));
  return out;
}
