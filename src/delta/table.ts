/**
 * The readable table `delta-audit spectrum` prints: a summary per module type, then the
 * modules with the largest updates.
 */
import { oneLine } from "../errors";
import type { ModuleSpectrum, SpectrumReport } from "./types";

/** Modules listed under "largest updates" by default. */
export const DEFAULT_TABLE_MODULES = 10;
/** Module types in the order of a decoder layer: every view (this table, report.html) lists them so. */
export const TYPE_ORDER: readonly string[] = Object.freeze(["q", "k", "v", "o", "gate", "up", "down", "other"]);

/**
 * A number for people, the one formatter of every view (this table, report.html, the statistics
 * text): three significant digits without trailing zeros, exponent form outside 1e-3 … 1e4
 * (toPrecision(3) itself turns to exponent form at 1e3 … 1e4, and above 1e4 plain digits would
 * pretend to a precision three digits do not have), "–" for a value that is not finite.
 */
export function formatNumber(x: number): string {
  if (!Number.isFinite(x)) return "–";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(3)));
}

const num = formatNumber;

/** Module types present, in decoder order (TYPE_ORDER), unknown ones after, alphabetically. */
export function orderedTypes(modules: readonly { type: string }[]): string[] {
  const present = [...new Set(modules.map((m) => m.type))];
  const rank = (t: string) => (TYPE_ORDER.includes(t) ? TYPE_ORDER.indexOf(t) : TYPE_ORDER.length);
  return present.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

/**
 * Module and tensor names come from the files measured: on a terminal or in a CI log an ANSI
 * escape, a BEL, a carriage return or a bidi override in one could rewrite the table or start a
 * workflow command (`::error::`), so every cell is made one printable line, as stderr is.
 */
function table(header: string[], rawRows: string[][]): string {
  const rows = rawRows.map((r) => r.map(oneLine));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

/** Under the table when an effective rank there is marked "~" (stats.ts moduleSpectrum says why it is an upper bound). */
export const ESTIMATE_NOTE = "~ effective rank estimated from the top singular values only (randomized SVD): an upper bound";

export function formatSpectrum(report: SpectrumReport, show = DEFAULT_TABLE_MODULES): string {
  const s = report.summary;
  const out: string[] = [];
  out.push(
    `${s.modules} changed module(s); stable rank median ${num(s.stableRank.median)} (p10 ${num(s.stableRank.p10)}, p90 ${num(s.stableRank.p90)}); ` +
      `σ₁ energy share median ${num(s.energyShareTop1.median)}`,
  );
  out.push("");
  const types = orderedTypes(Object.keys(s.byType).map((type) => ({ type })));
  out.push(
    table(
      ["type", "modules", "stable rank p10", "median", "p90"],
      types.map((t) => {
        const g = s.byType[t]!;
        return [t, String(g.modules), num(g.stableRank.p10), num(g.stableRank.median), num(g.stableRank.p90)];
      }),
    ),
  );
  // a full fine-tune's unchanged modules (ΔW = 0) are not updates, however few changed
  const top = report.modules
    .filter((m) => m.frobenius > 0)
    .sort((a, b) => b.frobenius - a.frobenius)
    .slice(0, show);
  const estimated = top.some((m) => m.effectiveRankEstimated);
  if (top.length > 0) {
    out.push("");
    out.push(`largest updates (by ‖ΔW‖_F):`);
    out.push(
      table(
        ["module", "shape", "rank", "‖ΔW‖_F", "σ₁", "stable rank", "eff. rank", "σ₁² share"],
        top.map((m: ModuleSpectrum) => [
          m.name,
          `${m.shape[0]}×${m.shape[1]}`,
          String(m.rank),
          num(m.frobenius),
          num(m.spectralNorm),
          num(m.stableRank),
          m.effectiveRankEstimated ? `~${num(m.effectiveRank)}` : num(m.effectiveRank),
          num(m.energyShareTop1),
        ]),
      ),
    );
    if (estimated) out.push(ESTIMATE_NOTE);
  }
  const other = report.otherChanges ?? [];
  if (other.length > 0) {
    out.push("");
    out.push("other changed tensors:");
    out.push(
      table(
        ["tensor", "shape", "‖ΔT‖_F", "relative"],
        [...other].sort((a, b) => b.relative - a.relative).map((c) => [c.name, c.shape.join("×"), num(c.frobenius), num(c.relative)]),
      ),
    );
  }
  const added = report.addedTokens;
  if (added) {
    out.push("");
    out.push(
      `added token rows: ${added.rows - added.baseRows} (vocabulary ${added.baseRows} → ${added.rows}) in ${added.tensors.join(", ")}; ` +
        `ΔT above covers the ${added.baseRows} shared rows, the added ones have no base counterpart and are kept as they are`,
    );
  }
  return `${out.join("\n")}\n`;
}
