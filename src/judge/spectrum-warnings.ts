/**
 * Spectrum warnings from the config (e.g. a median stable rank near 1). They are findings so
 * the policy can act on them, at the severity the config gives (info by default: a low
 * stable rank is typical of implanted behaviours but also of many honest fine-tunes). They are
 * measurements, not inferences: `statistics.kind` is "measurement" with the value and threshold.
 */
import type { Finding } from "./types";
import type { SpectrumReport } from "../delta/types";
import type { SpectrumWarnings } from "./settings";
import { measurement } from "./statistics";

export function spectrumFindings(spectrum: SpectrumReport, w: SpectrumWarnings): Finding[] {
  const out: Finding[] = [];
  if (!spectrum.modules || spectrum.modules.length === 0) return out;
  const sr = spectrum.summary.stableRank.median;
  if (Number.isFinite(sr) && sr < w.stableRankBelow) {
    out.push({
      id: "spectrum-stable-rank",
      title: `Low stable rank: median ${sr.toFixed(2)} < ${w.stableRankBelow}`,
      severity: w.severity,
      source: "spectrum",
      terms: [],
      evidence: [],
      // a measurement, not an inference: confidence 1 by convention, statistics say what was measured
      confidence: 1,
      statistics: measurement("median stable rank", sr, w.stableRankBelow, "below"),
      description: "Most of the update sits in one direction per module. Implanted behaviours tend to look like this; so do some narrow honest fine-tunes.",
    });
  }
  const e1 = spectrum.summary.energyShareTop1?.median;
  if (e1 !== undefined && Number.isFinite(e1) && e1 > w.energyTop1Above) {
    out.push({
      id: "spectrum-energy-top1",
      title: `σ₁ carries ${(100 * e1).toFixed(0)}% of the update's energy (median) > ${(100 * w.energyTop1Above).toFixed(0)}%`,
      severity: w.severity,
      source: "spectrum",
      terms: [],
      evidence: [],
      confidence: 1,
      statistics: measurement("median σ₁ energy share", e1, w.energyTop1Above, "above"),
      description: "The rank-1 truncation keeps nearly all of the update.",
    });
  }
  return out;
}
