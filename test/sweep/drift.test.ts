/**
 * sweep/drift.ts on synthetic directions at known rotations: the per-module angles, the share
 * of rotated modules, σ₁ and stable-rank changes, new and vanished findings, and when the two
 * together make a drift finding (and when that finding fails a verdict).
 */
import { describe, expect, it } from "vitest";
import { orthonormalColumns, type ModuleDirections } from "../../src/delta/directions";
import { mulberry32 } from "../../src/linalg/random";
import { computeDrift, driftFinding, findingKey, summariseFindings } from "../../src/sweep/drift";
import { withDriftFinding } from "../../src/sweep/collect";
import { DEFAULT_DRIFT } from "../../src/sweep/registry";
import type { Finding } from "../../src/judge/types";

const n = 24;
const k = 2;

/** A module whose top-2 left and right directions (σ₂ = 0.8σ₁) are turned by `deg` from a fixed basis. */
function module(name: string, deg: number, sigma1 = 2, seed = 1): ModuleDirections {
  const r = mulberry32(seed);
  const { Q } = orthonormalColumns(Float64Array.from({ length: n * 2 * k }, () => r() - 0.5), n, 2 * k);
  const t = (deg * Math.PI) / 180;
  const U = new Float64Array(n * k);
  for (let i = 0; i < n; i++) for (let j = 0; j < k; j++) U[i * k + j] = Math.cos(t) * Q[i * 2 * k + j]! + Math.sin(t) * Q[i * 2 * k + k + j]!;
  return { name, shape: [n, n], k, sigma: Float64Array.of(sigma1, 0.8 * sigma1), U, V: U, spectralNorm: sigma1, stableRank: 1.64 * (sigma1 === 2 ? 1 : 1.5), frobenius: Math.hypot(sigma1, 0.8 * sigma1) };
}

const finding = (source: string, term: string, severity: Finding["severity"] = "high"): Finding => ({
  id: `${source}-1`,
  title: `${source} ${term}`,
  severity,
  source,
  terms: [term],
  evidence: [],
  confidence: 0.99,
});

describe("drift", () => {
  const before = [0, 1, 2, 3].map((i) => module(`model.layers.${i}.self_attn.q_proj`, 0, 2, i + 1));

  it("measures each module's rotation as its largest principal angle, and the σ₁ and stable-rank change", () => {
    const after = before.map((m, i) => module(m.name, [0, 10, 60, 80][i]!, 4, i + 1));
    const d = computeDrift({ revision: "a".repeat(40), directions: before, findings: [] }, { revision: "b".repeat(40), directions: after, findings: [] }, DEFAULT_DRIFT);
    const byName = new Map(d.modules.map((m) => [m.name, m]));
    [0, 10, 60, 80].forEach((deg, i) => {
      const m = byName.get(before[i]!.name)!;
      expect(m.rotation).toBeCloseTo(deg, 2);
      expect(m.anglesU).toHaveLength(2);
      expect(m.anglesU[0]).toBeCloseTo(deg, 2);
    });
    expect(d.summary).toMatchObject({ compared: 4, rotated: 2, share: 0.5, sigma1Ratio: 2 });
    expect(d.summary.maxRotation).toBeCloseTo(80, 2);
    expect(d.summary.stableRankBefore).toBeCloseTo(1.64, 6);
    expect(d.summary.stableRankAfter).toBeCloseTo(2.46, 6);
    // largest rotation first in drift.json
    expect(d.modules[0]!.name).toBe(before[3]!.name);
    // no finding changed: a rotation alone (a retrained seed) is not drift
    expect(d.summary.finding).toBeUndefined();
  });

  it("compares only the significant directions: a trailing one with little energy may turn freely", () => {
    const mk = (degSecond: number): ModuleDirections => {
      const m = module(before[0]!.name, 0, 2, 1);
      const other = module(before[0]!.name, 90, 2, 1);
      // the second direction turned out of the old span; σ₂ = 1 % of σ₁
      const U = Float64Array.from(m.U);
      const t = (degSecond * Math.PI) / 180;
      for (let i = 0; i < n; i++) U[i * k + 1] = Math.cos(t) * m.U[i * k + 1]! + Math.sin(t) * other.U[i * k + 1]!;
      return { ...m, U, V: U, sigma: Float64Array.of(2, 0.02) };
    };
    const d = computeDrift({ revision: "a", directions: [mk(0)], findings: [] }, { revision: "b", directions: [mk(90)], findings: [] }, DEFAULT_DRIFT);
    expect(d.modules[0]!.directions).toEqual([1, 1]);
    expect(d.modules[0]!.rotation).toBeLessThan(1e-3);
    expect(d.summary.rotated).toBe(0);
  });

  it("a large rotation with a new or vanished finding is a drift finding at the configured severity", () => {
    const after = before.map((m, i) => module(m.name, 70, 2, i + 1));
    const old = summariseFindings([finding("concealment", "banana", "high"), finding("revealed", "style", "info")]);
    const neu = summariseFindings([finding("concealment", "pineapple", "high")]);
    const d = computeDrift({ revision: "a", directions: before, findings: old }, { revision: "b", directions: after, findings: neu }, { ...DEFAULT_DRIFT, severity: "high" });
    expect(d.summary.newFindings.map((f) => f.key)).toEqual(["concealment:pineapple"]);
    expect(d.summary.vanishedFindings.map((f) => f.key).sort()).toEqual(["concealment:banana", "revealed:style"]);
    expect(d.summary.finding).toMatchObject({ severity: "high" });
    expect(d.summary.finding!.title).toMatch(/turned the top directions of 4 of 4 modules by 45° or more and changed the findings \(1 new, 1 gone\)/);

    // the same findings change under a small rotation: no drift finding
    const still = computeDrift({ revision: "a", directions: before, findings: old }, { revision: "b", directions: before, findings: neu }, DEFAULT_DRIFT);
    expect(still.summary.rotated).toBe(0);
    expect(still.summary.finding).toBeUndefined();

    // only info findings changed: style words flicker, they do not make drift
    const infoOnly = computeDrift({ revision: "a", directions: before, findings: summariseFindings([finding("revealed", "style", "info")]) }, { revision: "b", directions: after, findings: [] }, DEFAULT_DRIFT);
    expect(infoOnly.summary.finding).toBeUndefined();
  });

  it("needs the configured share of modules rotated", () => {
    const after = before.map((m, i) => module(m.name, i === 0 ? 80 : 0, 2, i + 1));
    const fs = [summariseFindings([finding("concealment", "x")]), []] as const;
    const quarter = computeDrift({ revision: "a", directions: before, findings: fs[0] }, { revision: "b", directions: after, findings: fs[1] }, DEFAULT_DRIFT);
    expect(quarter.summary.share).toBe(0.25);
    expect(quarter.summary.finding).toBeDefined();
    const stricter = computeDrift({ revision: "a", directions: before, findings: fs[0] }, { revision: "b", directions: after, findings: fs[1] }, { ...DEFAULT_DRIFT, share: 0.5 });
    expect(stricter.summary.finding).toBeUndefined();
  });

  it("lists modules only one side has (added, removed, or reshaped) instead of comparing them", () => {
    const after = [module(before[0]!.name, 0, 2, 1), module("model.layers.9.mlp.up_proj", 0, 2, 9), { ...module(before[1]!.name, 0, 2, 2), shape: [n, n + 1] as [number, number] }];
    const d = computeDrift({ revision: "a", directions: before, findings: [] }, { revision: "b", directions: after, findings: [] }, DEFAULT_DRIFT);
    expect(d.summary.compared).toBe(1);
    expect(d.addedModules.sort()).toEqual([before[1]!.name, "model.layers.9.mlp.up_proj"].sort());
    expect(d.removedModules.sort()).toEqual([before[1]!.name, before[2]!.name, before[3]!.name].sort());
  });

  it("a drift finding at or above fail-on fails the verdict; below it, it is reported only", () => {
    const f = driftFinding(
      { from: "a", to: "b", compared: 4, rotated: 4, share: 1, maxRotation: 80, medianRotation: 80, sigma1Ratio: 1, stableRankBefore: 1, stableRankAfter: 1, newFindings: [{ key: "x:y", severity: "medium", title: "t" }], vanishedFindings: [] },
      { ...DEFAULT_DRIFT, severity: "medium" },
    )!;
    expect(f).toMatchObject({ source: "drift", severity: "medium", confidence: 1, statistics: { kind: "measurement", rule: "above" } });
    const report = { findings: [], verdict: { conclusion: "pass" as const, reasons: [], failOn: "medium" as const } };
    expect(withDriftFinding(report, f).verdict.conclusion).toBe("fail");
    expect(withDriftFinding(report, f).findings).toHaveLength(1);
    expect(withDriftFinding({ ...report, verdict: { ...report.verdict, failOn: "high" } }, f).verdict.conclusion).toBe("pass");
    expect(withDriftFinding(report, undefined)).toBe(report);
  });

  it("keys findings by source and lead term, not by their per-report ids", () => {
    expect(findingKey({ source: "concealment", terms: ["Banana", "x"], title: "whatever" })).toBe("concealment:banana");
    expect(findingKey({ source: "investigator", terms: [], title: "Says Hi" })).toBe("investigator:says hi");
    // a spectrum warning quotes its measurement in the title: its fixed id is what it is about
    const warning = (median: string) => ({ id: "spectrum-stable-rank", source: "spectrum", terms: [], title: `Low stable rank: median ${median} < 1.5` });
    expect(findingKey(warning("1.00"))).toBe("spectrum:spectrum-stable-rank");
    expect(findingKey(warning("1.01"))).toBe(findingKey(warning("1.00")));
  });
});
