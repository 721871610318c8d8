/**
 * A finding's statistics in words, the same in every view (report.md, report.html): what its
 * confidence number is, the rates behind it with their 95 % intervals, and the exact test of
 * the contrast that defines it. Plain text: each renderer escapes it for its own format.
 */
import type { ExactTest, Finding, FindingStatistics, LayerAttribution, RankLadder, Rate, Side } from "../judge/types";
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

const list = (xs: readonly number[]): string => xs.join(", ");

/**
 * A finding across the rank ladder in one line: "said under interrogation at rank 1, 2; hidden
 * again from rank 4 (answers to interrogation probes showing it: rank1 24/24, rank2 14/24, …)".
 */
export function ladderText(l: RankLadder): string {
  const said =
    l.shownAt.length === 0
      ? `not said under interrogation at any rank of the ladder (${list(l.ranks)})`
      : `said under interrogation at rank ${list(l.shownAt)}; ${l.hiddenFrom !== undefined ? `hidden again from rank ${l.hiddenFrom}` : `not hidden again up to rank ${l.ranks[l.ranks.length - 1]}`}`;
  const rates = l.rates.map((r) => `rank${r.rank} ${r.k}/${r.n}`).join(", ");
  return `${said} (interrogation answers showing it: ${rates})`;
}

/** Layers as people read them: "1", "0–15", "3, 7". */
export function layersText(layers: readonly number[]): string {
  if (layers.length > 2 && layers.every((l, i) => i === 0 || l === layers[i - 1]! + 1)) return `${layers[0]}–${layers[layers.length - 1]}`;
  return list(layers);
}

/**
 * A finding's layer attribution in one line: which layers' rank-k components alone still produce
 * it, with the module kind, the evidence and what it cost.
 */
export function attributionText(a: LayerAttribution): string {
  const kind = a.modules === "attention" ? "attention modules" : a.modules === "mlp" ? "MLP modules" : "modules";
  const last = [...a.steps].reverse().find((s) => s.persists);
  const where = `layer${a.layers.length === 1 ? "" : "s"} ${layersText(a.layers)}, ${kind} (${a.moduleTypes.join(", ")})`;
  const budget = a.complete ? "" : "; the run budget ended the bisection there";
  const runs = `${a.cost.runs} extra variant run${a.cost.runs === 1 ? "" : "s"} over ${a.probes.length} probe${a.probes.length === 1 ? "" : "s"}, ${a.cost.requests} requests, ${formatValue(a.cost.seconds)} s`;
  if (a.steps.length === 0) return `all of the truncation's modules are in ${where}: nothing to narrow (no extra runs)`;
  if (!last) return `not narrowed below ${where}: no smaller group of them produces it alone${budget} (cost: ${runs})`;
  return `produced by the rank-k components of ${where} alone: ${last.k} / ${last.n} answers show it, against ${a.shown} on all of ${a.variant}${budget} (cost: ${runs})`;
}

/** The attribution's answer alone, for short views (the PR comment): "layer 1, attention modules (q, k, v, o)". */
export function attributionBrief(a: LayerAttribution): string {
  const kind = a.modules === "attention" ? "attention modules" : a.modules === "mlp" ? "MLP modules" : "modules";
  const narrowed = a.steps.length > 0 && !a.steps.some((s) => s.persists) ? " (not narrowed)" : "";
  return `layer${a.layers.length === 1 ? "" : "s"} ${layersText(a.layers)}, ${kind} (${a.moduleTypes.join(", ")})${narrowed}`;
}
