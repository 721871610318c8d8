/**
 * Spectrum statistics of one ΔW from its singular values, and the summary across modules.
 * Pure functions: the numbers in report.json's `spectrum` part come from here.
 */
import type { ModuleSpectrum, Quantiles, SpectrumSummary } from "./types";

/** report.json keeps at most this many singular values per module (the schema's limit). */
export const SIGMA_REPORT_LIMIT = 64;

/**
 * Below this share of ‖ΔW‖²_F the unseen energy is at the level of float32 rounding between the
 * exact Frobenius norm and the computed σ, and however it is spread it moves the entropy by
 * under share·ln(n/share) ≈ 2e-5: the effective rank is then as good as exact, not an estimate.
 */
export const UNSEEN_ENERGY_SHARE = 1e-6;

export interface SpectrumInput {
  name: string;
  shape: [number, number];
  rank: number;
  /** singular values known, descending (all of them for LoRA, the top k for dense deltas) */
  sigma: ArrayLike<number>;
  /** ‖ΔW‖_F, exact */
  frobenius: number;
  /** min(out, in): how many singular values ΔW has in all (for the unseen tail of a dense delta) */
  totalValues: number;
  type: string;
  layer: number;
}

/**
 * The ModuleSpectrum of one ΔW. Stable rank ‖ΔW‖²_F/σ₁² uses the exact Frobenius norm.
 * The effective rank exp(H(σ²/‖ΔW‖²_F)) needs every σ: where only the top k are known, the
 * unseen energy ‖ΔW‖²_F − Σ_{i≤k} σᵢ² is taken as spread evenly over the remaining
 * totalValues − k values, which maximises the entropy, so the value is an upper bound.
 * A zero update has stable rank, effective rank and energy share 0.
 */
export function moduleSpectrum(x: SpectrumInput): ModuleSpectrum {
  const sig = Array.from(x.sigma, (s) => Math.max(0, s)).sort((a, b) => b - a);
  const s1 = sig[0] ?? 0;
  const f2 = x.frobenius * x.frobenius;
  let stableRank = 0;
  let effectiveRank = 0;
  let energyShareTop1 = 0;
  let estimated = false;
  if (s1 > 0 && f2 > 0) {
    stableRank = f2 / (s1 * s1);
    energyShareTop1 = Math.min(1, (s1 * s1) / f2);
    let h = 0;
    let seen = 0;
    for (const s of sig) {
      const p = (s * s) / f2;
      seen += s * s;
      if (p > 0) h -= p * Math.log(p);
    }
    const tailCount = x.totalValues - sig.length;
    const tail = Math.max(0, f2 - seen);
    if (tailCount > 0 && tail > 0) {
      const q = tail / f2 / tailCount;
      h -= tailCount * q * Math.log(q);
      estimated = tail > UNSEEN_ENERGY_SHARE * f2;
    }
    effectiveRank = Math.exp(h);
  }
  return {
    name: x.name,
    shape: x.shape,
    rank: x.rank,
    sigma: sig.slice(0, SIGMA_REPORT_LIMIT),
    frobenius: x.frobenius,
    spectralNorm: s1,
    stableRank,
    effectiveRank,
    energyShareTop1,
    ...(estimated ? { effectiveRankEstimated: true as const } : {}),
    type: x.type,
    layer: x.layer,
  };
}

/** Quantile with linear interpolation between order statistics (numpy.quantile's default). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo]! + (pos - lo) * (sorted[hi]! - sorted[lo]!);
}

export function quantiles(values: readonly number[]): Quantiles {
  const s = [...values].sort((a, b) => a - b);
  return { median: quantile(s, 0.5), p10: quantile(s, 0.1), p90: quantile(s, 0.9) };
}

/**
 * Median / p10 / p90 of the stable rank overall, per module type and per layer, and of the
 * top-1 energy share. Modules whose ΔW is exactly zero (frozen in a full fine-tune) are
 * counted out: a stable rank of an unchanged matrix would drag every quantile to 0.
 */
export function summarise(modules: readonly ModuleSpectrum[]): SpectrumSummary {
  const changed = modules.filter((m) => m.frobenius > 0);
  const group = (key: (m: ModuleSpectrum) => string) => {
    const by = new Map<string, number[]>();
    for (const m of changed) {
      const k = key(m);
      const list = by.get(k) ?? [];
      list.push(m.stableRank);
      by.set(k, list);
    }
    const out: Record<string, { modules: number; stableRank: Quantiles }> = {};
    for (const [k, v] of by) out[k] = { modules: v.length, stableRank: quantiles(v) };
    return out;
  };
  return {
    modules: changed.length,
    stableRank: quantiles(changed.map((m) => m.stableRank)),
    energyShareTop1: quantiles(changed.map((m) => m.energyShareTop1)),
    byType: group((m) => m.type),
    byLayer: group((m) => String(m.layer)),
  };
}
