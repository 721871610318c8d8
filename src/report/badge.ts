/**
 * Shields.io endpoint badges (https://shields.io/badges/endpoint-badge): the one builder of
 * badge.json for a scan, of the Action's run badge and of a sweep's badges, so they share
 * their words and colours. Which findings count comes from policy/severity.
 */
import type { Severity } from "../judge/types";
import type { Conclusion } from "../policy/verdict";
import { findingsAtOrAbove, worstSeverity } from "../policy/severity";
import type { Report } from "./types";

export interface Badge {
  schemaVersion: 1;
  label: string;
  message: string;
  color: string;
}

/** The label of a scan's badge and of the Action's run badge. */
export const BADGE_LABEL = "delta-audit";
/** The label of a sweep's summary badge. */
export const SWEEP_BADGE_LABEL = "delta-audit sweep";

/** Colours by conclusion; an undecided audit is grey, never green (nothing unmeasured passes). */
export const BADGE_COLOR: Readonly<Record<Conclusion, string>> = Object.freeze({ pass: "brightgreen", fail: "red", neutral: "lightgrey" });

/** A scan's fail badge shows how bad its worst finding is. */
const FAIL_COLOR_BY_WORST: Readonly<Record<Severity, string>> = Object.freeze({ high: "red", medium: "orange", low: "yellow", info: "yellow" });

/**
 * The one word for each outcome on every badge (scan, run, sweep) and in a sweep's index; an
 * audit that could not reach a verdict is "inconclusive", a model without a report "no report".
 */
export const BADGE_WORD: Readonly<Record<Conclusion | "missing", string>> = Object.freeze({ pass: "pass", fail: "fail", neutral: "inconclusive", missing: "no report" });

/** The run badge's message when an Action run had no subject to audit. */
export const NOTHING_TO_AUDIT = "nothing to audit";

function badge(label: string, message: string, color: string): Badge {
  return { schemaVersion: 1, label, message, color };
}

/** "fail (1 finding)", "fail (3 findings)". */
export function failMessage(findings: number): string {
  return `${BADGE_WORD.fail} (${findings} ${findings === 1 ? "finding" : "findings"})`;
}

/** badge.json of one scan: the verdict, the findings that failed it, and its worst severity. */
export function badgeFor(report: Report, label = BADGE_LABEL): Badge {
  const v = report.verdict;
  if (v.conclusion !== "fail") return badge(label, BADGE_WORD[v.conclusion], BADGE_COLOR[v.conclusion]);
  // a fail under `never` only comes from a hand-edited report (sweeps read downloaded ones):
  // count every finding rather than claim a failure with none
  const n = v.failOn === "never" ? report.findings.length : findingsAtOrAbove(report.findings, v.failOn).length;
  return badge(label, failMessage(n), FAIL_COLOR_BY_WORST[worstSeverity(report.findings) ?? "info"]);
}

/**
 * The Action's badge for a whole run over several subjects: `findings` counted at the run's
 * fail-on by the caller. Its words are a scan's: an undecided run is "inconclusive".
 */
export function runBadge(conclusion: Conclusion | "skipped", findings: number, label = BADGE_LABEL): Badge {
  // an Action run whose pull request touched no subject audited nothing: say so, in grey, never "pass"
  if (conclusion === "skipped") return badge(label, NOTHING_TO_AUDIT, BADGE_COLOR.neutral);
  return badge(label, conclusion === "fail" ? failMessage(findings) : BADGE_WORD[conclusion], BADGE_COLOR[conclusion]);
}

/** How many models of a sweep ended each way ("missing": no report was collected). */
export type SweepSummary = Record<Conclusion | "missing", number>;

/** The sweep badge's message when the registry has no model yet. */
export const NO_MODELS = "no models";

/** A sweep's summary badge: red when any model failed, grey when any is undecided or missing. */
export function sweepBadge(summary: SweepSummary, label = SWEEP_BADGE_LABEL): Badge {
  const total = summary.pass + summary.fail + summary.neutral + summary.missing;
  // a registry whose sources found nothing yet: grey, never "0/0 pass"
  if (total === 0) return badge(label, NO_MODELS, BADGE_COLOR.neutral);
  const undecided = summary.neutral + summary.missing;
  if (summary.fail > 0) return badge(label, `${summary.fail}/${total} ${BADGE_WORD.fail}`, BADGE_COLOR.fail);
  if (undecided > 0) return badge(label, `${summary.pass}/${total} ${BADGE_WORD.pass}, ${undecided} ${BADGE_WORD.neutral}`, BADGE_COLOR.neutral);
  return badge(label, `${summary.pass}/${total} ${BADGE_WORD.pass}`, BADGE_COLOR.pass);
}

/** The badge of a model a sweep has no report for. */
export function missingBadge(label: string): Badge {
  return badge(label, BADGE_WORD.missing, BADGE_COLOR.neutral);
}
