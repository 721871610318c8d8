/**
 * A finding's statistics in words, the same in every view (report.md, report.html): what its
 * confidence number is, the rates behind it with their 95 % intervals, and the exact test of
 * the contrast that defines it. Plain text: each renderer escapes it for its own format.
 */
import type { ExactTest, Finding, FindingStatistics, Rate, Side } from "../judge/types";
import { formatNumber as formatValue } from "../delta/table";

/** A fraction as a percentage for people: "83 %", "–" when not finite. */
export const pct = (x: number): string => (Number.isFinite(x) ? `${formatValue(x * 100)} %` : "–");

/** "rank1 on interrogation probes" */
export function sideText(s: Side): string {
  return `${s.variant} on ${s.prompts === "probe" ? "interrogation probes" : "ordinary prompts"}`;
}

/** "20 / 24 = 83 % (95 % interval 64 % – 93 %)" */
function rateText(r: Rate): string {
  return `${r.k} / ${r.n}${r.n > 0 ? ` = ${pct(r.k / r.n)}` : ""} (95 % interval ${pct(r.ci95[0])} – ${pct(r.ci95[1])})`;
}

/** The exact test of the finding's contrast, with its p-value. */
export function testText(t: ExactTest): string {
  if (t.name === "mcnemar-exact") {
    return `McNemar's exact test, ${sideText(t.first)} vs ${sideText(t.second)}: ${t.pairs} pairs, ${t.firstOnly} only in the first, ${t.secondOnly} only in the second; p = ${formatValue(t.p)}`;
  }
  return `Fisher's exact test, ${sideText(t.first)} (${t.first.k}/${t.first.n}) vs ${sideText(t.second)} (${t.second.k}/${t.second.n}): p = ${formatValue(t.p)}`;
}

/** What the number next to a finding is: 1 − p of a test, a stated confidence, or a measurement. */
export function confidenceText(f: Finding): string {
  const st = f.statistics;
  if (st?.kind === "measurement") return "a measurement, not a probability";
  if (st?.kind === "stated") return `confidence ${formatValue(f.confidence)} (stated by the investigator)`;
  if (st?.kind === "test") return `confidence ${formatValue(f.confidence)} (1 − p)`;
  return `confidence ${formatValue(f.confidence)}`;
}

/** A measurement's one line: the measured value against its threshold. */
export function measurementText(st: Extract<FindingStatistics, { kind: "measurement" }>): string {
  return `measured ${st.quantity} = ${formatValue(st.value)}, ${st.rule} the threshold ${formatValue(st.threshold)}`;
}

/** Every line a plain-text view shows for a finding's statistics (none for a stated confidence). */
export function statisticsLines(st: FindingStatistics | undefined): string[] {
  if (!st) return [];
  if (st.kind === "measurement") return [measurementText(st)];
  if (st.kind !== "test") return [];
  const lines = st.rates.map((r) => `${sideText(r)}: ${rateText(r)}`);
  lines.push(testText(st.test));
  if (st.discount !== undefined) lines.push(`discounted × ${formatValue(st.discount)}${st.discountReason ? `: ${st.discountReason}` : ""}`);
  return lines;
}
