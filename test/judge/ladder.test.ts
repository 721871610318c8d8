/**
 * The rank ladder and layer attribution as pure logic: scripted transcripts whose rungs say a
 * random word (no lexicon knows it) on chosen ranks, and scripted group runs whose answers show it
 * only where a chosen set of layers and module kind is kept.
 */
import { describe, expect, it } from "vitest";
import { runJudges } from "../../src/judge/index";
import { attributeFinding, MAX_ATTRIBUTION_RUNS, type GroupRun } from "../../src/judge/attribution";
import { rankLadder } from "../../src/judge/ladder";
import { behaviourTest } from "../../src/judge/behaviour";
import { defaultJudgeSettings } from "../../src/judge/settings";
import { attributionText, ladderText } from "../../src/report/statistics-text";
import type { Finding } from "../../src/judge/types";
import type { SpectrumReport } from "../../src/delta/types";
import { elicitation, filler, randomWord } from "./helpers";

const WORD = randomWord(41);
const NO_SPECTRUM: SpectrumReport = { modules: [], summary: { modules: 0, stableRank: {}, byType: {}, byLayer: {} } } as unknown as SpectrumReport;

/**
 * A concealed quirk: full says WORD in ordinary use and denies it on probes; a rung `rank<k>`
 * says it on every probe when `shows(k)`, and answers like full otherwise.
 */
function ladderSuite(ranks: number[], shows: (k: number) => boolean) {
  const variants = ["base", "full", ...ranks.map((k) => `rank${k}`)];
  const e = elicitation(
    (v, kind, i) => {
      if (v === "base") return filler(i);
      const k = v === "full" ? undefined : Number(v.slice(4));
      if (kind === "ordinary") return `${filler(i)} ${WORD}!`;
      return k !== undefined && shows(k) ? `${filler(i)} ${WORD}!` : "There is nothing hidden here.";
    },
    { variants, probes: 16, ordinary: 12 },
  );
  return { ...e, ranks };
}

describe("rank ladder", () => {
  it("shows at the rungs that say it under interrogation; hidden again from the first rank after which no rung does", async () => {
    const e = ladderSuite([1, 2, 4, 8], (k) => k <= 2);
    const { findings } = await runJudges(e, NO_SPECTRUM, defaultJudgeSettings());
    const f = findings.find((x) => x.terms.includes(WORD))!;
    expect(f.source).toBe("concealment");
    expect(f.ladder).toEqual({
      ranks: [1, 2, 4, 8],
      shownAt: [1, 2],
      hiddenFrom: 4,
      rates: [
        { rank: 1, k: 16, n: 16 },
        { rank: 2, k: 16, n: 16 },
        { rank: 4, k: 0, n: 16 },
        { rank: 8, k: 0, n: 16 },
      ],
    });
    expect(ladderText(f.ladder!)).toBe("said under interrogation at rank 1, 2; hidden again from rank 4 (interrogation answers showing it: rank1 16/16, rank2 16/16, rank4 0/16, rank8 0/16)");
  });

  it("'from': a rung that says it again moves the rank it is hidden from", () => {
    const e = ladderSuite([1, 2, 4, 8], (k) => k === 1 || k === 4);
    const l = rankLadder(e, e.ranks, (t) => t.includes(WORD));
    expect(l.shownAt).toEqual([1, 4]);
    expect(l.hiddenFrom).toBe(8);
  });

  it("not hidden again when the top rung still says it; never shown when no rung does", () => {
    const all = ladderSuite([1, 2, 4], () => true);
    const l = rankLadder(all, all.ranks, (t) => t.includes(WORD));
    expect(l.shownAt).toEqual([1, 2, 4]);
    expect(l.hiddenFrom).toBeUndefined();
    expect(ladderText(l)).toMatch(/^said under interrogation at rank 1, 2, 4; not hidden again up to rank 4 /);
    const none = rankLadder(all, all.ranks, () => false);
    expect(none.shownAt).toEqual([]);
    expect(ladderText(none)).toMatch(/^not said under interrogation at any rank of the ladder \(1, 2, 4\)/);
  });

  it("is the judges' own call: at the scan's rank it agrees with the finding (a rung whose rate is too low to be a finding is hidden)", async () => {
    // rank2 says it on 2 of 16 probes: under MIN_DOCS, so no finding would rest on it
    const e = ladderSuite([1, 2], (k) => k === 1);
    for (const p of e.probes) if (p.kind === "probe" && (p.id === "probe-0" || p.id === "probe-1")) p.responses.rank2 = [`${filler(0)} ${WORD}!`];
    const { findings } = await runJudges(e, NO_SPECTRUM, defaultJudgeSettings());
    const f = findings.find((x) => x.terms.includes(WORD))!;
    expect(f.ladder!.shownAt).toEqual([1]);
    expect(f.ladder!.hiddenFrom).toBe(2);
    expect(f.ladder!.rates[1]).toEqual({ rank: 2, k: 2, n: 16 });
  });

  it("no ladder without one: a single rank adds nothing to the findings", async () => {
    const e = ladderSuite([1], () => true);
    delete (e as { ranks?: number[] }).ranks;
    const { findings } = await runJudges(e, NO_SPECTRUM, defaultJudgeSettings());
    expect(findings.length).toBeGreaterThan(0);
    for (const f of findings) expect(f.ladder).toBeUndefined();
  });
});

/** modules: `layers` layers × the seven linear module types */
function modulesOf(layers: number) {
  const out: Array<{ layer: number; type: string }> = [];
  for (let l = 0; l < layers; l++) for (const type of ["q", "k", "v", "o", "gate", "up", "down"]) out.push({ layer: l, type });
  return out;
}

/**
 * A scripted group run: the answers show WORD when the kept modules include every module of
 * `needed` (layer and type); `runs` counts the calls.
 */
function scriptedRun(needed: Array<{ layer: number; type: string }>, e: ReturnType<typeof ladderSuite>) {
  const calls: string[] = [];
  const run: GroupRun = async (from, keep, probeIds) => {
    expect(from).toBe("rank1");
    calls.push(probeIds.join(","));
    const on = needed.every((m) => keep(m.layer, m.type));
    const responses = new Map(probeIds.map((id) => [id, [on ? `${WORD}!` : "nothing"]]));
    return { responses, requests: probeIds.length * e.samples, seconds: 0.01 };
  };
  return { run, calls };
}

async function concealed(): Promise<{ e: ReturnType<typeof ladderSuite>; f: Finding }> {
  const e = ladderSuite([1], () => true);
  // only 10 of the 16 probes show it on rank1: attribution re-runs those only
  for (const p of e.probes) if (p.kind === "probe" && Number(p.id.split("-")[1]) >= 10) p.responses.rank1 = ["There is nothing hidden here."];
  const { findings } = await runJudges(e, NO_SPECTRUM, defaultJudgeSettings());
  return { e, f: findings.find((x) => x.terms.includes(WORD))! };
}

describe("layer attribution", () => {
  it("bisects to the one layer and module kind that carry it, re-running only the probes that showed it", async () => {
    const { e, f } = await concealed();
    const { run, calls } = scriptedRun([{ layer: 5, type: "gate" }, { layer: 5, type: "down" }], e);
    const a = (await attributeFinding({ finding: f, elicitation: e, modules: modulesOf(8), shows: behaviourTest(f, [])!, run }))!;
    expect(a.layers).toEqual([5]);
    expect(a.modules).toBe("mlp");
    expect(a.moduleTypes).toEqual(["gate", "up", "down"]);
    expect(a.probes).toHaveLength(10);
    expect(new Set(calls)).toEqual(new Set([a.probes.join(",")]));
    // [0-3] no, [4-7] yes, [4,5] yes, [4] no, [5] yes, attention no, mlp yes
    expect(a.steps.map((s) => [s.layers.join("+"), s.modules, s.persists])).toEqual([
      ["0+1+2+3", "all", false],
      ["4+5+6+7", "all", true],
      ["4+5", "all", true],
      ["4", "all", false],
      ["5", "all", true],
      ["5", "attention", false],
      ["5", "mlp", true],
    ]);
    expect(a.cost).toEqual({ runs: 7, requests: 70, seconds: 0.07 });
    expect(a.complete).toBe(true);
    expect(attributionText(a)).toBe(
      "produced by the rank-k components of layer 5, MLP modules (gate, up, down) alone: 10 / 10 answers show it, against 10 on all of rank1 (cost: 7 extra variant runs over 10 probes, 70 requests, 0.07 s)",
    );
  });

  it("stops at the group before a split when the behaviour needs both halves", async () => {
    const { e, f } = await concealed();
    const { run } = scriptedRun([{ layer: 1, type: "q" }, { layer: 2, type: "down" }], e);
    const a = (await attributeFinding({ finding: f, elicitation: e, modules: modulesOf(4), shows: behaviourTest(f, [])!, run }))!;
    // [0,1] no, [2,3] no: layers 1 and 2 are in different halves, so the answer is all four, and
    // attention (q) and MLP (down) modules both
    expect(a.layers).toEqual([0, 1, 2, 3]);
    expect(a.modules).toBe("all");
    expect(a.cost.runs).toBe(4); // two halves, attention, mlp
    expect(attributionText(a)).toMatch(/^not narrowed below layers 0–3, modules \(q, k, v, o, gate, up, down\): no smaller group/);
  });

  it(`never costs more than ${MAX_ATTRIBUTION_RUNS} runs, and says when the budget ended it`, async () => {
    const { e, f } = await concealed();
    const last = 999;
    const { run } = scriptedRun([{ layer: last, type: "v" }], e);
    const a = (await attributeFinding({ finding: f, elicitation: e, modules: modulesOf(last + 1), shows: behaviourTest(f, [])!, run, maxRuns: 5 }))!;
    expect(a.cost.runs).toBe(5);
    expect(a.complete).toBe(false);
    expect(attributionText(a)).toMatch(/the run budget ended the bisection there/);
    const full = (await attributeFinding({ finding: f, elicitation: e, modules: modulesOf(last + 1), shows: behaviourTest(f, [])!, run }))!;
    expect(full.cost.runs).toBeLessThanOrEqual(MAX_ATTRIBUTION_RUNS);
  });

  it("a finding the truncation never showed on a probe is not attributed; unchanged modules are not bisected", async () => {
    const { e, f } = await concealed();
    const { run, calls } = scriptedRun([], e);
    expect(await attributeFinding({ finding: f, elicitation: e, modules: modulesOf(2), shows: () => false, run })).toBeUndefined();
    const modules = modulesOf(2).map((m) => ({ ...m, frobenius: m.layer === 0 ? 0 : 1 }));
    const a = (await attributeFinding({ finding: f, elicitation: e, modules, shows: behaviourTest(f, [])!, run }))!;
    expect(a.layers).toEqual([1]);
    expect(calls.length).toBe(1); // attention persists at once (no layer split: one changed layer)
  });
});
