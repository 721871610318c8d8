/**
 * Spectrum warnings from the config (e.g. a median stable rank near 1). They are findings so
 * the policy can act on them, at the severity the config gives (info by default: a low
 * stable rank is typical of implanted behaviours but also of many honest fine-tunes). They are
 * measurements, not inferences: `statistics.kind` is "measurement" with the value and threshold.
 * The tokens a full fine-tune added (spectrum.addedTokens) are listed the same way, at a fixed
 * severity (addedTokensFinding).
 */
import type { Finding } from "./types";
import type { SpectrumReport, VocabularyGrowth } from "../delta/types";
import type { SpectrumWarnings } from "./settings";
import { measurement } from "./statistics";

export function spectrumFindings(spectrum: SpectrumReport, w: SpectrumWarnings): Finding[] {
  const out: Finding[] = [];
  if (spectrum.addedTokens) out.push(addedTokensFinding(spectrum.addedTokens));
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

/**
 * The tokens a full fine-tune added (spectrum.addedTokens), as a finding so every view lists
 * them where findings are shown. Severity `info`: adding chat or tool tokens is ordinary, the
 * rows are carried verbatim into every variant, and what the tokens make the model do is what
 * the behavioural findings test. `low` where an added token's text holds characters that hide or
 * reorder text (a bidi override, a zero-width or tag character): such a token cannot be seen
 * or typed in review, which is what a trigger wants, so `fail-on: low` stops it. The texts are
 * as engine/added-tokens.ts made them visible (escaped, cut, at most 64); the views neutralise
 * them like every term.
 */
export function addedTokensFinding(g: VocabularyGrowth): Finding {
  const added = g.rows - g.baseRows;
  const hidden = g.hiddenTokens ?? 0;
  const tokens = g.tokens ?? [];
  const parts = [
    `Rows ${g.baseRows}–${g.rows - 1} of ${g.tensors.join(", ")} have no counterpart in the base: ΔW and the other changes are measured on the ${g.baseRows} shared rows, and every variant (base, full, rank-k) runs the fine-tune's vocabulary with the added rows as trained — the rank-k truncation keeps them as they are.`,
  ];
  if (g.tokenizerProblem !== undefined) parts.push(`The added rows could not be decoded: ${g.tokenizerProblem}.`);
  else {
    const unlisted = (g.decodedRows ?? 0) - (g.emptyRows ?? 0) - tokens.length;
    parts.push(
      `Decoded by the fine-tune's tokenizer: ${tokens.length} listed${unlisted > 0 ? ` (${unlisted} more not listed)` : ""}` +
        `${g.emptyRows ? `, ${g.emptyRows} row(s) no token maps to (padding)` : ""}` +
        `${(g.decodedRows ?? 0) < added ? `; only the first ${g.decodedRows} of the ${added} rows were decoded` : ""}. Control and invisible characters are shown as escapes.`,
    );
  }
  if (hidden > 0) {
    parts.push(`${hidden} added token(s) hold characters that hide or reorder text: they cannot be seen or typed in review, so treat them as trigger candidates and probe the model with them.`);
  }
  return {
    id: "spectrum-added-tokens",
    title: `The fine-tune adds ${added} token(s) to the vocabulary (${g.baseRows} → ${g.rows})${hidden > 0 ? `, ${hidden} with hidden characters` : ""}`,
    severity: hidden > 0 ? "low" : "info",
    source: "spectrum",
    terms: tokens.map((t) => t.text),
    evidence: [],
    // a measurement (a count of rows), not an inference: confidence 1 by convention
    confidence: 1,
    statistics: measurement("tokens added to the vocabulary", added, 0, "above"),
    description: parts.join(" "),
  };
}
