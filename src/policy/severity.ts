/**
 * The one place that knows what `fail-on` means: its values, the order of severities, and
 * which findings are "at or above" a threshold. The verdict, the badge, the PR comment, the
 * Action's `findings` output and the config/flag validators all use it, so they cannot
 * disagree about `never` (nothing reaches it: it never fails and counts no finding).
 */
import { bySeverity, SEVERITY_RANK, type Finding, type Severity } from "../judge/types";

/** A `fail-on` threshold: fail on findings of this severity or worse; `never` reports only. */
export type FailOn = "high" | "medium" | "low" | "never";

/** Every accepted `fail-on` value, in the order help texts list them. */
export const FAIL_ON: readonly FailOn[] = Object.freeze(["high", "medium", "low", "never"]);

export const DEFAULT_FAIL_ON: FailOn = "high";

/** true when `severity` is at or above the `failOn` threshold (`never` is reached by nothing). */
function reaches(severity: Severity, failOn: FailOn): boolean {
  return failOn !== "never" && SEVERITY_RANK[severity] >= SEVERITY_RANK[failOn];
}

/** Findings at or above the threshold, worst first (none for `never`). */
export function findingsAtOrAbove(findings: readonly Finding[], failOn: FailOn): Finding[] {
  return findings.filter((f) => reaches(f.severity, failOn)).sort(bySeverity);
}

/** The worst severity among the findings, or undefined when there are none. */
export function worstSeverity(findings: readonly Finding[]): Severity | undefined {
  let worst: Severity | undefined;
  for (const f of findings) if (worst === undefined || SEVERITY_RANK[f.severity] > SEVERITY_RANK[worst]) worst = f.severity;
  return worst;
}
