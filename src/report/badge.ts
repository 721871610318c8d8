/** badge.json: a shields.io endpoint badge (https://shields.io/badges/endpoint-badge). */
import type { Report } from "./types";
import { SEVERITY_RANK } from "../policy/severity";

export interface Badge {
  schemaVersion: 1;
  label: string;
  message: string;
  color: string;
}

export function badgeFor(report: Report, label = "delta-audit"): Badge {
  const v = report.verdict;
  if (v.conclusion === "neutral") return { schemaVersion: 1, label, message: "inconclusive", color: "lightgrey" };
  if (v.conclusion === "pass") return { schemaVersion: 1, label, message: "pass", color: "brightgreen" };
  const failOn = v.failOn === "never" ? "info" : v.failOn;
  const n = report.findings.filter((f) => SEVERITY_RANK[f.severity] >= SEVERITY_RANK[failOn]).length;
  const worst = report.findings.reduce((w, f) => (SEVERITY_RANK[f.severity] > SEVERITY_RANK[w] ? f.severity : w), "info" as keyof typeof SEVERITY_RANK);
  return { schemaVersion: 1, label, message: `fail (${n} ${n === 1 ? "finding" : "findings"})`, color: worst === "high" ? "red" : worst === "medium" ? "orange" : "yellow" };
}
