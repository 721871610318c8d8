/**
 * Drift: what an update of a model changed since its last audit. Per module, the principal
 * angles between the old and the new top singular subspaces of ΔW (left and right: what the
 * update writes and what it reads; spanned by the kept directions with σ ≥ ½σ₁), and the change
 * in σ₁ and stable rank; per model, the
 * findings that are new or gone. A large rotation of the top directions together with a changed
 * finding is a drift finding of its own, at the severity the registry's `drift` section sets.
 *
 * Why both: a retrained adapter can turn its directions and behave the same (a new seed), and
 * findings can flicker between samplings of an unchanged model; an update that turns what the
 * model writes *and* changes what it does is the one a registry owner wants to hear about.
 */
import { leadingColumns, principalAngles, type ModuleDirections } from "../delta/directions";
import { bySeverity, type Finding } from "../judge/types";
import type { DriftSettings } from "./registry";
import { MAX_REMEMBERED_FINDINGS, type DriftSummary, type FindingSummary } from "./state";

export const DRIFT_FILE = "drift.json";
/** Modules listed by name in drift.json, largest rotation first. */
const MAX_LISTED_MODULES = 2000;
const DEG = 180 / Math.PI;
/**
 * The top subspace compared is spanned by the directions whose σ is at least this share of σ₁
 * (at most k). Below it, the trailing directions of a nearly rank-one update carry almost no
 * energy and are fixed only by rounding: they turn freely between two audits of the same
 * update, and would make every module look rotated by 90°.
 */
export const SIGNIFICANT_SIGMA_SHARE = 0.5;

/** How many leading directions of a module are significant (at least one). */
function significant(m: ModuleDirections): number {
  const s1 = m.sigma[0] ?? 0;
  let n = 0;
  while (n < m.k && m.sigma[n]! >= SIGNIFICANT_SIGMA_SHARE * s1) n++;
  return Math.max(1, n);
}

export interface ModuleDrift {
  name: string;
  /** significant directions compared, before and after */
  directions: [number, number];
  /** principal angles of the left (output) subspaces, degrees ascending */
  anglesU: number[];
  /** principal angles of the right (input) subspaces, degrees ascending */
  anglesV: number[];
  /** the largest of them: how far the module's top directions turned */
  rotation: number;
  sigma1Before: number;
  sigma1After: number;
  stableRankBefore: number;
  stableRankAfter: number;
}

/** drift.json: the summary (also in the state and the index) and every module's angles. */
export interface DriftReport {
  schemaVersion: 1;
  settings: DriftSettings;
  summary: DriftSummary;
  modules: ModuleDrift[];
  /** modules only one side has, or whose shape changed */
  addedModules: string[];
  removedModules: string[];
}

/**
 * A finding's identity across audits: its source and lead term (ids are numbered per report).
 * Titles quote rates that move between samplings; the lead term is what the finding is about.
 * A spectrum warning has no term and a title quoting its measurement (`median 1.00 < 1.5`), but
 * a fixed id per warning (`spectrum-stable-rank`): that id is its identity, so a median moving
 * from 1.00 to 1.01 is not a finding that vanished and a new one.
 */
export function findingKey(f: Pick<Finding, "source" | "terms" | "title"> & { id?: unknown }): string {
  const term = Array.isArray(f.terms) && typeof f.terms[0] === "string" ? f.terms[0] : undefined;
  const lead = term ?? (f.source === "spectrum" && typeof f.id === "string" ? f.id : String(f.title));
  return `${String(f.source)}:${lead.toLowerCase().slice(0, 200)}`;
}

/** The findings as remembered between runs: worst first, at most MAX_REMEMBERED_FINDINGS. */
export function summariseFindings(findings: readonly Finding[]): FindingSummary[] {
  return [...findings]
    .sort(bySeverity)
    .slice(0, MAX_REMEMBERED_FINDINGS)
    .map((f) => ({ key: findingKey(f), severity: f.severity, title: String(f.title).slice(0, 300) }));
}

function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

const round = (x: number, digits = 3) => Number(x.toFixed(digits));

export interface DriftSide {
  revision: string;
  directions: readonly ModuleDirections[];
  findings: readonly FindingSummary[];
}

/** Compare the last audited revision with the new one. */
export function computeDrift(before: DriftSide, after: DriftSide, settings: DriftSettings): DriftReport {
  const old = new Map(before.directions.map((m) => [m.name, m]));
  const modules: ModuleDrift[] = [];
  const added: string[] = [];
  const seen = new Set<string>();
  for (const m of after.directions) {
    const o = old.get(m.name);
    seen.add(m.name);
    if (!o || o.shape[0] !== m.shape[0] || o.shape[1] !== m.shape[1]) {
      added.push(m.name);
      continue;
    }
    const [p, q] = [significant(o), significant(m)];
    const angles = (A: Float64Array, B: Float64Array, rows: number) => Array.from(principalAngles(leadingColumns(A, rows, o.k, p), p, leadingColumns(B, rows, m.k, q), q, rows), (a) => round(a * DEG));
    const anglesU = angles(o.U, m.U, m.shape[0]);
    const anglesV = angles(o.V, m.V, m.shape[1]);
    modules.push({
      name: m.name,
      directions: [p, q],
      anglesU,
      anglesV,
      rotation: Math.max(0, ...anglesU, ...anglesV),
      sigma1Before: o.spectralNorm,
      sigma1After: m.spectralNorm,
      stableRankBefore: o.stableRank,
      stableRankAfter: m.stableRank,
    });
  }
  const removed = before.directions.filter((m) => !seen.has(m.name) || added.includes(m.name)).map((m) => m.name);
  const rotated = modules.filter((m) => m.rotation >= settings.angleDegrees).length;
  const share = modules.length ? rotated / modules.length : 0;
  const beforeKeys = new Set(before.findings.map((f) => f.key));
  const afterKeys = new Set(after.findings.map((f) => f.key));
  const summary: DriftSummary = {
    from: before.revision,
    to: after.revision,
    compared: modules.length,
    rotated,
    share: round(share),
    maxRotation: round(Math.max(0, ...modules.map((m) => m.rotation))),
    medianRotation: round(median(modules.map((m) => m.rotation))),
    sigma1Ratio: round(median(modules.filter((m) => m.sigma1Before > 0).map((m) => m.sigma1After / m.sigma1Before))),
    stableRankBefore: round(median(modules.map((m) => m.stableRankBefore))),
    stableRankAfter: round(median(modules.map((m) => m.stableRankAfter))),
    newFindings: after.findings.filter((f) => !beforeKeys.has(f.key)),
    vanishedFindings: before.findings.filter((f) => !afterKeys.has(f.key)),
  };
  const finding = driftFinding(summary, settings);
  if (finding) summary.finding = { key: findingKey(finding), severity: finding.severity, title: finding.title };
  modules.sort((a, b) => b.rotation - a.rotation);
  return { schemaVersion: 1, settings, summary, modules: modules.slice(0, MAX_LISTED_MODULES), addedModules: added, removedModules: removed };
}

/** Findings that count as a change: info findings are style words and flicker between samplings. */
const counts = (fs: readonly FindingSummary[]) => fs.filter((f) => f.severity !== "info");

/**
 * The drift finding, when the update rotated at least `share` of the compared modules by
 * `angleDegrees` or more and a (non-info) finding appeared or vanished.
 */
export function driftFinding(s: DriftSummary, settings: DriftSettings): Finding | undefined {
  const changed = [...counts(s.newFindings), ...counts(s.vanishedFindings)];
  const large = s.compared > 0 && s.share >= settings.share && s.rotated > 0;
  if (!large || changed.length === 0) return undefined;
  const parts = [counts(s.newFindings).length ? `${counts(s.newFindings).length} new` : "", counts(s.vanishedFindings).length ? `${counts(s.vanishedFindings).length} gone` : ""].filter(Boolean);
  return {
    id: "drift-1",
    title: `The update turned the top directions of ${s.rotated} of ${s.compared} modules by ${settings.angleDegrees}° or more and changed the findings (${parts.join(", ")})`,
    severity: settings.severity,
    source: "drift",
    terms: [],
    evidence: [],
    confidence: 1,
    description:
      `Between revisions ${s.from.slice(0, 19)} and ${s.to.slice(0, 19)} the largest principal angle between the old and new top singular subspaces ` +
      `was at least ${settings.angleDegrees}° in ${(s.share * 100).toFixed(0)} % of the modules (median ${s.medianRotation.toFixed(1)}°, σ₁ ×${s.sigma1Ratio.toFixed(2)} median), ` +
      `and findings changed: ${changed.map((f) => f.title).slice(0, 5).join("; ")}.`,
    statistics: { kind: "measurement", quantity: `share of modules rotated by ≥ ${settings.angleDegrees}°`, value: s.share, threshold: settings.share, rule: "above" },
  };
}
