import { describe, expect, it } from "vitest";
import { moduleSpectrum, quantile, quantiles, summarise, SIGMA_REPORT_LIMIT } from "../../src/delta/stats";

const base = { name: "model.layers.2.mlp.up_proj", shape: [10, 8] as [number, number], rank: 2, type: "up", layer: 2 };

describe("spectrum statistics", () => {
  it("computes stable rank, effective rank and top-1 share from all singular values", () => {
    const m = moduleSpectrum({ ...base, sigma: [3, 4], frobenius: 5, totalValues: 8 });
    expect(m.sigma).toEqual([4, 3]);
    expect(m.spectralNorm).toBe(4);
    expect(m.stableRank).toBeCloseTo(25 / 16, 12);
    expect(m.energyShareTop1).toBeCloseTo(16 / 25, 12);
    const p = [16 / 25, 9 / 25];
    expect(m.effectiveRank).toBeCloseTo(Math.exp(-p[0]! * Math.log(p[0]!) - p[1]! * Math.log(p[1]!)), 12);
    // equal values: effective rank = their count
    expect(moduleSpectrum({ ...base, sigma: [2, 2, 2], frobenius: Math.sqrt(12), totalValues: 8 }).effectiveRank).toBeCloseTo(3, 10);
  });

  it("spreads an unseen tail evenly (an upper bound) when only the top values are known", () => {
    // top value 3, Frobenius² = 9 + 4·1 (four unseen values of 1 each)
    const m = moduleSpectrum({ ...base, sigma: [3], frobenius: Math.sqrt(13), totalValues: 5 });
    const p = [9 / 13, 1 / 13, 1 / 13, 1 / 13, 1 / 13];
    expect(m.effectiveRank).toBeCloseTo(Math.exp(-p.reduce((h, x) => h + x * Math.log(x), 0)), 10);
    expect(m.stableRank).toBeCloseTo(13 / 9, 12);
  });

  it("reports zeros (not NaN) for a zero update and keeps at most 64 values", () => {
    const z = moduleSpectrum({ ...base, sigma: [0, 0], frobenius: 0, totalValues: 8 });
    expect([z.stableRank, z.effectiveRank, z.energyShareTop1, z.spectralNorm]).toEqual([0, 0, 0, 0]);
    const many = moduleSpectrum({ ...base, sigma: Array.from({ length: 100 }, (_, i) => 100 - i), frobenius: 600, totalValues: 100 });
    expect(many.sigma.length).toBe(SIGMA_REPORT_LIMIT);
  });

  it("quantiles interpolate like numpy.quantile", () => {
    // numpy.quantile([1, 2, 3, 4, 10], [0.1, 0.5, 0.9]) = [1.4, 3.0, 7.6]
    const q = quantiles([10, 1, 3, 2, 4]);
    expect(q.p10).toBeCloseTo(1.4, 12);
    expect(q.median).toBe(3);
    expect(q.p90).toBeCloseTo(7.6, 12);
    expect(quantile([], 0.5)).toBe(0);
  });

  it("summarises per type and per layer, leaving unchanged modules out", () => {
    const mk = (name: string, type: string, layer: number, sr: number, f = 1) => ({
      ...moduleSpectrum({ ...base, name, type, layer, sigma: [1], frobenius: f === 0 ? 0 : Math.sqrt(sr), totalValues: 8 }),
    });
    const s = summarise([mk("a", "q", 0, 1), mk("b", "q", 1, 3), mk("c", "v", 1, 2), mk("d", "v", 2, 9, 0)]);
    expect(s.modules).toBe(3);
    expect(s.stableRank.median).toBeCloseTo(2, 12);
    expect(s.byType.q!.modules).toBe(2);
    expect(s.byType.q!.stableRank.p10).toBeCloseTo(1.2, 12);
    expect(s.byType.q!.stableRank.median).toBeCloseTo(2, 12);
    expect(s.byType.v!.modules).toBe(1);
    expect(s.byLayer["1"]!.modules).toBe(2);
    expect(s.byLayer["2"]).toBeUndefined();
  });
});
