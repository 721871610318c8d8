/**
 * The plots of report.html, drawn by the project as inline SVG: pure functions from the
 * spectrum's vocabulary to an SVG string (no ids, no scripts, no external references), so a
 * page holds any number of them and reads offline. Every name from the report is escaped by
 * html-escape.ts; hover text is an SVG <title>, which browsers show without script. Colours are
 * presentation attributes, which report.html's stylesheet may override for dark mode.
 */
import { quantile } from "../delta/stats";
import { formatNumber as formatValue, orderedTypes } from "../delta/table";
import type { ModuleSpectrum, OtherChange } from "../delta/types";
import { escapeHtml } from "./html-escape";

/** One colour per module type (Tableau 10: distinct, and readable on light and dark grounds). */
const TYPE_COLORS: readonly string[] = Object.freeze(["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]);

/**
 * The lowest singular value drawn, relative to the largest: a float32 ΔW's singular values
 * below ~1e-6·σ₁ are rounding noise, and drawing them would spend most of the log axis on it.
 */
const LOG_FLOOR_RATIO = 1e-6;

/** Bars drawn in the changed-tensors chart; the rest are in the table. */
export const MAX_OTHER_BARS = 40;

/** Viridis at five stops: perceptually even, legible in grey, readable on light and dark. */
const VIRIDIS: readonly (readonly [number, number, number])[] = [
  [0x44, 0x01, 0x54],
  [0x3b, 0x52, 0x8b],
  [0x21, 0x91, 0x8c],
  [0x5e, 0xc9, 0x62],
  [0xfd, 0xe7, 0x25],
];

const WIDTH = 640;
/** Widest heatmap cell / bar slot (viewBox units): one layer should not fill the plot. */
const MAX_CELL_WIDTH = 48;
const FONT = 13;
const AXIS_COLOR = "#767676";

/** A coordinate with one decimal: enough for a 640-unit viewBox, and a small file. */
const c = (x: number): string => String(Math.round(x * 10) / 10);

/** Colour of the i-th type of orderedTypes. */
function typeColor(i: number): string {
  return TYPE_COLORS[i % TYPE_COLORS.length]!;
}

/** Whether fine-tuning changed the module at all (a full fine-tune leaves some untouched). */
export function isChanged(m: ModuleSpectrum): boolean {
  return Number.isFinite(m.frobenius) && m.frobenius > 0 && m.sigma.some((s) => Number.isFinite(s) && s > 0);
}

/** A decoder layer's label; -1 (not in a layer) is a dash. */
export function layerLabel(layer: number): string {
  return layer < 0 ? "–" : escapeHtml(layer);
}

/** The median of ascending values (delta/stats.ts quantile, as the summary's medians are); none: NaN, drawn as "–". */
const median = (sorted: readonly number[]): number => (sorted.length ? quantile(sorted, 0.5) : Number.NaN);

/** The root element: scales to its container, labelled for screen readers. */
function svg(height: number, label: string, body: string): string {
  const l = escapeHtml(label);
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" class="plot-svg" viewBox="0 0 ${WIDTH} ${c(height)}" role="img" aria-label="${l}" ` +
    `font-family="system-ui, sans-serif" font-size="${FONT}"><title>${l}</title>${body}</svg>`
  );
}

/** What an empty plot shows: a sentence where the data would be. */
function placeholder(label: string, message: string): string {
  return svg(48, label, `<text class="muted" x="${WIDTH / 2}" y="28" text-anchor="middle" fill="${AXIS_COLOR}">${escapeHtml(message)}</text>`);
}

/** A tick step of 1, 2 or 5 × 10^k giving about `target` ticks over `span`. */
function niceStep(span: number, target: number): number {
  const raw = Math.max(span / target, 1e-12);
  const p = 10 ** Math.floor(Math.log10(raw));
  const f = raw / p;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

function viridis(t: number): string {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS[i]!;
  const b = VIRIDIS[i + 1]!;
  const hex = (k: 0 | 1 | 2) => Math.round(a[k] + (b[k] - a[k]) * f).toString(16).padStart(2, "0");
  return `#${hex(0)}${hex(1)}${hex(2)}`;
}

/** A row of legend swatches (wrapping every `perRow`), from y = top; returns the markup and its height. */
function legend(items: { label: string; color: string }[], top: number, left: number): { markup: string; height: number } {
  const perRow = Math.max(1, Math.floor((WIDTH - left) / 150));
  let out = `<g class="legend">`;
  items.forEach((it, i) => {
    const x = left + (i % perRow) * 150;
    const y = top + Math.floor(i / perRow) * 18;
    const mark = `<line x1="${x}" y1="${y - 4}" x2="${x + 16}" y2="${y - 4}" stroke="${it.color}" stroke-width="3"/>`;
    out += `${mark}<text x="${x + 20}" y="${y}" fill="currentColor">${escapeHtml(it.label)}</text>`;
  });
  return { markup: `${out}</g>`, height: Math.ceil(items.length / perRow) * 18 };
}

/** The decade label of 10^k: plain numbers near 1, exponent form beyond. */
function decade(k: number): string {
  return k >= -2 && k <= 3 ? String(Number((10 ** k).toFixed(Math.max(0, -k)))) : `1e${k}`;
}

/**
 * Singular values σᵢ of every module, log-scale y, one line per module type: the line is the
 * median over the type's modules at each index, the band the range over all of them (so every
 * module's spectrum lies inside its type's band), and σ₁ — the direction rank-1 truncation keeps
 * — is marked with a ring. Unchanged modules (all σ = 0) are left out and counted in the legend.
 */
export function singularValuesPlot(modules: readonly ModuleSpectrum[]): string {
  const label = "Singular values of ΔW by module type (log scale)";
  const changed = modules.filter(isChanged);
  if (changed.length === 0) return placeholder(label, modules.length === 0 ? "No modules were measured." : "No module was changed: every singular value is 0.");
  let vmax = 0;
  let vmin = Infinity;
  let maxIdx = 1;
  for (const m of changed) {
    m.sigma.forEach((s, i) => {
      if (!(Number.isFinite(s) && s > 0)) return;
      vmax = Math.max(vmax, s);
      vmin = Math.min(vmin, s);
      maxIdx = Math.max(maxIdx, i + 1);
    });
  }
  const floor = Math.max(vmin, vmax * LOG_FLOOR_RATIO);
  const kLo = Math.floor(Math.log10(floor));
  let kHi = Math.ceil(Math.log10(vmax));
  if (kHi <= kLo) kHi = kLo + 1;

  const types = orderedTypes(changed);
  const unchanged = modules.length - changed.length;
  const items = types.map((t, i) => ({ label: `${t} (${changed.filter((m) => m.type === t).length})`, color: typeColor(i) }));
  if (unchanged > 0) items.push({ label: `${unchanged} unchanged, not drawn`, color: "none" });
  const leg = legend(items, 18, 56);
  const left = 56;
  const top = 18 + leg.height + 22;
  const plotW = WIDTH - left - 16;
  const plotH = 240;
  const height = top + plotH + 44;
  // σ₁ sits a little right of the axis so every module's σ₁ dot is visible
  const inset = 12;
  const x = (i: number) => left + (maxIdx === 1 ? plotW / 2 : inset + ((i - 1) / (maxIdx - 1)) * (plotW - inset));
  // values under the floor sit on the bottom axis, the lowest decade drawn
  const y = (v: number) => top + plotH - ((Math.log10(Math.max(v, 10 ** kLo)) - kLo) / (kHi - kLo)) * plotH;

  let axes = `<g class="axis" stroke="${AXIS_COLOR}" fill="${AXIS_COLOR}">`;
  for (let k = kLo; k <= kHi; k++) {
    const yy = y(10 ** k);
    axes += `<line x1="${left}" y1="${c(yy)}" x2="${left + plotW}" y2="${c(yy)}" stroke-opacity="0.25"/>`;
    axes += `<text x="${left - 6}" y="${c(yy + 4)}" text-anchor="end" stroke="none">${decade(k)}</text>`;
  }
  const step = Math.max(1, niceStep(maxIdx - 1, 8));
  for (let i = 1; i <= maxIdx; i = i === 1 && step > 1 ? step : i + step) {
    axes += `<text x="${c(x(i))}" y="${top + plotH + 16}" text-anchor="middle" stroke="none">${i}</text>`;
  }
  axes += `<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}"/><line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}"/>`;
  axes += `<text x="${left + plotW / 2}" y="${top + plotH + 34}" text-anchor="middle" stroke="none">index i of σᵢ</text>`;
  axes += `<text x="${left}" y="${top - 6}" text-anchor="middle" stroke="none">σᵢ</text></g>`;

  let series = "";
  types.forEach((t, ti) => {
    const color = typeColor(ti);
    const ofType = changed.filter((m) => m.type === t);
    const lo: [number, number][] = [];
    const hi: [number, number][] = [];
    const mid: [number, number][] = [];
    for (let i = 1; i <= maxIdx; i++) {
      const vals = ofType.map((m) => m.sigma[i - 1]).filter((s): s is number => s !== undefined && Number.isFinite(s) && s > 0).sort((a, b) => a - b);
      if (vals.length === 0) continue;
      lo.push([x(i), y(vals[0]!)]);
      hi.push([x(i), y(vals[vals.length - 1]!)]);
      mid.push([x(i), y(median(vals))]);
    }
    if (mid.length === 0) return;
    const pts = (p: [number, number][]) => p.map(([a, b]) => `${c(a)},${c(b)}`).join(" ");
    const s1 = ofType.map((m) => m.sigma[0]!).filter((s) => Number.isFinite(s) && s > 0).sort((a, b) => a - b);
    const tip = `${t}: ${ofType.length} module(s); σ₁ median ${formatValue(median(s1))}, range ${formatValue(s1[0]!)} – ${formatValue(s1[s1.length - 1]!)}`;
    series += `<g class="series">`;
    series += `<polygon points="${pts(hi)} ${pts([...lo].reverse())}" fill="${color}" fill-opacity="0.08" stroke="none"/>`;
    series += `<polyline points="${pts(mid)}" fill="none" stroke="${color}" stroke-width="2"/>`;
    // every module's σ₁, jittered across a few units so a cluster shows as a cluster
    series += `<g class="sigma1-modules" fill="${color}" fill-opacity="0.7">`;
    ofType.forEach((m, k) => {
      const s = m.sigma[0]!;
      if (Number.isFinite(s) && s > 0) series += `<circle cx="${c(x(1) + ((k % 7) - 3) * 1.3)}" cy="${c(y(s))}" r="2"/>`;
    });
    series += `</g>`;
    series += `<circle class="sigma1" cx="${c(mid[0]![0])}" cy="${c(mid[0]![1])}" r="5" fill="${color}" stroke="currentColor" stroke-width="1.5"><title>${escapeHtml(tip)}</title></circle>`;
    series += `</g>`;
  });
  return svg(height, label, leg.markup + axes + series);
}

/**
 * Stable rank (‖ΔW‖²_F/σ₁²) as a heatmap, decoder layers across, module types down, colour on a
 * log scale (a rank-1 implant is 1, a broad update tens). Several modules in one cell (type
 * "other") show their largest; unchanged modules are drawn grey.
 */
export function stableRankHeatmap(modules: readonly ModuleSpectrum[]): string {
  const label = "Stable rank by layer and module type";
  if (modules.length === 0) return placeholder(label, "No modules were measured.");
  const layers = [...new Set(modules.map((m) => m.layer))].sort((a, b) => (a < 0 ? 1 : b < 0 ? -1 : a - b));
  const types = orderedTypes(modules);
  const values = modules.filter((m) => isChanged(m) && Number.isFinite(m.stableRank) && m.stableRank > 0).map((m) => m.stableRank);
  const lo = values.length ? Math.min(...values) : 1;
  const hi = values.length ? Math.max(...values) : 1;
  const t = (v: number) => (hi > lo ? (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : 0.5);

  const left = 56;
  const top = 8;
  const plotW = WIDTH - left - 16;
  // a few layers (a small model) get cells of a readable size, not the whole width
  const cellW = Math.min(plotW / layers.length, MAX_CELL_WIDTH);
  const cellH = 22;
  const plotH = cellH * types.length;
  const cells = new Map<string, ModuleSpectrum[]>();
  for (const m of modules) {
    const key = `${m.layer}\u0000${m.type}`;
    const list = cells.get(key);
    if (list) list.push(m);
    else cells.set(key, [m]);
  }
  let body = `<g class="cells">`;
  types.forEach((ty, r) => {
    layers.forEach((layer, col) => {
      const list = cells.get(`${layer}\u0000${ty}`);
      if (!list) return;
      const live = list.filter((m) => isChanged(m) && Number.isFinite(m.stableRank) && m.stableRank > 0);
      const best = live.reduce<ModuleSpectrum | undefined>((a, m) => (!a || m.stableRank > a.stableRank ? m : a), undefined);
      const fill = best ? viridis(t(best.stableRank)) : "#bdbdbd";
      const names = list.map((m) => m.name).join(", ");
      const tip = best ? `${names}: stable rank ${formatValue(best.stableRank)}` : `${names}: unchanged`;
      body += `<rect x="${c(left + col * cellW)}" y="${top + r * cellH}" width="${c(Math.max(cellW - 0.5, 0.5))}" height="${cellH - 1}" fill="${fill}"><title>${escapeHtml(tip)}</title></rect>`;
    });
  });
  body += `</g><g class="axis" fill="${AXIS_COLOR}">`;
  types.forEach((ty, r) => {
    body += `<text x="${left - 6}" y="${top + r * cellH + cellH / 2 + 4}" text-anchor="end">${escapeHtml(ty)}</text>`;
  });
  const every = Math.max(1, Math.ceil(28 / cellW));
  layers.forEach((layer, col) => {
    if (col % every !== 0) return;
    body += `<text x="${c(left + col * cellW + cellW / 2)}" y="${top + plotH + 14}" text-anchor="middle">${layerLabel(layer)}</text>`;
  });
  body += `<text x="${c(left + (cellW * layers.length) / 2)}" y="${top + plotH + 32}" text-anchor="middle">decoder layer</text></g>`;

  // the colour scale: a strip of swatches, its ends labelled, and the grey of unchanged modules
  const ly = top + plotH + 46;
  const steps = 24;
  const stripW = Math.min(240, plotW - 160);
  body += `<g class="scale">`;
  for (let i = 0; i < steps; i++) {
    body += `<rect x="${c(left + (i * stripW) / steps)}" y="${ly}" width="${c(stripW / steps + 0.3)}" height="10" fill="${viridis(i / (steps - 1))}"/>`;
  }
  body += `<text x="${left}" y="${ly + 24}" fill="currentColor">${values.length ? formatValue(lo) : "–"}</text>`;
  body += `<text x="${c(left + stripW)}" y="${ly + 24}" text-anchor="end" fill="currentColor">${values.length ? formatValue(hi) : "–"}</text>`;
  body += `<text x="${c(left + stripW / 2)}" y="${ly + 24}" text-anchor="middle" fill="${AXIS_COLOR}">stable rank (log)</text>`;
  body += `<rect x="${c(left + stripW + 24)}" y="${ly}" width="14" height="10" fill="#bdbdbd"/><text x="${c(left + stripW + 42)}" y="${ly + 9}" fill="currentColor">unchanged</text>`;
  body += `</g>`;
  return svg(ly + 32, label, body);
}

/**
 * σ₁'s share of ‖ΔW‖²_F per decoder layer: the bar is the median over the layer's changed
 * modules, the whisker their range. A share near 1 means one direction carries the update.
 */
export function energyShareByLayerPlot(modules: readonly ModuleSpectrum[]): string {
  const label = "σ₁ energy share by layer";
  const live = modules.filter((m) => isChanged(m) && Number.isFinite(m.energyShareTop1));
  if (live.length === 0) return placeholder(label, modules.length === 0 ? "No modules were measured." : "No module was changed.");
  const byLayer = new Map<number, number[]>();
  for (const m of live) {
    const list = byLayer.get(m.layer);
    if (list) list.push(m.energyShareTop1);
    else byLayer.set(m.layer, [m.energyShareTop1]);
  }
  const layers = [...byLayer.keys()].sort((a, b) => (a < 0 ? 1 : b < 0 ? -1 : a - b));
  const left = 44;
  const top = 10;
  const plotW = WIDTH - left - 16;
  const plotH = 160;
  const slot = Math.min(plotW / layers.length, MAX_CELL_WIDTH);
  const y = (v: number) => top + plotH - Math.min(1, Math.max(0, v)) * plotH;

  let body = `<g class="axis" stroke="${AXIS_COLOR}" fill="${AXIS_COLOR}">`;
  for (const v of [0, 0.25, 0.5, 0.75, 1]) {
    body += `<line x1="${left}" y1="${c(y(v))}" x2="${left + plotW}" y2="${c(y(v))}" stroke-opacity="0.25"/>`;
    body += `<text x="${left - 6}" y="${c(y(v) + 4)}" text-anchor="end" stroke="none">${v}</text>`;
  }
  const every = Math.max(1, Math.ceil(28 / slot));
  layers.forEach((layer, i) => {
    if (i % every === 0) body += `<text x="${c(left + i * slot + slot / 2)}" y="${top + plotH + 14}" text-anchor="middle" stroke="none">${layerLabel(layer)}</text>`;
  });
  body += `<text x="${c(left + (slot * layers.length) / 2)}" y="${top + plotH + 32}" text-anchor="middle" stroke="none">decoder layer</text></g><g class="bars">`;
  layers.forEach((layer, i) => {
    const vals = byLayer.get(layer)!.sort((a, b) => a - b);
    const med = median(vals);
    const bw = Math.min(Math.max(slot * 0.7, 0.5), MAX_CELL_WIDTH * 0.7);
    const cx = left + i * slot + slot / 2;
    const tip = `layer ${layerLabel(layer)}: median ${formatValue(med)} over ${vals.length} module(s), range ${formatValue(vals[0]!)} – ${formatValue(vals[vals.length - 1]!)}`;
    body += `<g><title>${escapeHtml(tip)}</title><rect x="${c(cx - bw / 2)}" y="${c(y(med))}" width="${c(bw)}" height="${c(y(0) - y(med))}" fill="${TYPE_COLORS[0]}"/>`;
    if (vals.length > 1) body += `<line x1="${c(cx)}" y1="${c(y(vals[vals.length - 1]!))}" x2="${c(cx)}" y2="${c(y(vals[0]!))}" stroke="currentColor" stroke-width="1"/>`;
    body += `</g>`;
  });
  body += `</g>`;
  return svg(top + plotH + 40, label, body);
}

/**
 * The tensors a full fine-tune changed that are not decoder linears (embeddings, norms, biases,
 * lm_head), largest relative change first: one bar per tensor, ‖ΔT‖_F / ‖T_base‖_F.
 */
export function otherChangesPlot(changes: readonly OtherChange[]): string {
  const label = "Changed non-matrix tensors (relative change)";
  const list = changes.filter((o) => Number.isFinite(o.relative)).sort((a, b) => b.relative - a.relative);
  if (list.length === 0) return placeholder(label, "No other tensor changed.");
  const shown = list.slice(0, MAX_OTHER_BARS);
  const max = Math.max(...shown.map((o) => o.relative), Number.MIN_VALUE);
  const left = 8;
  const plotW = WIDTH - left - 110;
  const row = 34;
  let body = "";
  shown.forEach((o, i) => {
    const y0 = 8 + i * row;
    const w = Math.max((Math.max(o.relative, 0) / max) * plotW, 1);
    const name = Array.from(o.name).length > 90 ? `${Array.from(o.name).slice(0, 89).join("")}…` : o.name;
    const tip = `${o.name} [${o.shape.join("×")}]: relative ${formatValue(o.relative)}, ‖ΔT‖ ${formatValue(o.frobenius)}`;
    body += `<g><title>${escapeHtml(tip)}</title><text x="${left}" y="${y0 + 10}" fill="currentColor">${escapeHtml(name)}</text>`;
    body += `<rect x="${left}" y="${y0 + 14}" width="${c(w)}" height="12" fill="${TYPE_COLORS[1]}"/>`;
    body += `<text x="${c(left + w + 6)}" y="${y0 + 24}" fill="${AXIS_COLOR}">${formatValue(o.relative)}</text></g>`;
  });
  let height = 8 + shown.length * row + 4;
  if (list.length > shown.length) {
    body += `<text class="muted" x="${left}" y="${height + 8}" fill="${AXIS_COLOR}">${list.length - shown.length} more in the table below</text>`;
    height += 18;
  }
  return svg(height, label, body);
}
