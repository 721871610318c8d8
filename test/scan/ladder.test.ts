/**
 * The rank ladder end to end on the quirk organism, whose construction says what every rung must
 * do. Its ΔW holds the quirk as component 1 of each adapted module and the denial in the smaller
 * ones: q_proj's one denial query (component 2), and per trigger group g a key (k_proj), a value
 * (v_proj) and an output (o_proj) piece. The key and value shrink with g while the output grows
 * (ω_g = DENIAL_LOGIT / (OUT_GAIN · ν_g)), so a rank-k cut keeps group g's denial whole only once
 * all four of its pieces are among each module's top k — read here from the designed pieces, not
 * written down. A probe is denied at rank k when its user message holds a trigger word of a whole
 * group; otherwise rank<k> answers and appends the quirk. The ladder must agree.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism, type OrganismManifest } from "../../src/organisms/index";
import { designFineTune, makeLayout, pieceSigma } from "../../src/organisms/build";
import { buildVocabulary } from "../../src/organisms/vocab";
import { parseConfig } from "../../src/config";
import { runScan } from "../../src/scan";
import { InputError } from "../../src/errors";
import { getSettings } from "../../src/github/input-helper";
import { renderComment } from "../../src/github/render";
import { scanOverrides } from "../../src/commands/scan";
import type { Report } from "../../src/report/types";

const root = new URL("../..", import.meta.url).pathname;
const LADDER = [1, 2, 4, 5, 6, 7, 8];
let dir = "";
let manifest: OrganismManifest;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "da-ladder-"));
  manifest = await generateOrganism({ kind: "quirk", seed: 3, outDir: join(dir, "org") });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** For each trigger group, the smallest rank whose cut keeps its whole denial (q, k, v and o pieces). */
function denialRanks(quirk: string): number[] {
  const v = buildVocabulary(quirk);
  const L = makeLayout(v);
  const designs = designFineTune("quirk", v, L, v.id.get(quirk)!);
  // position of a piece among its module's components, largest σ first (0 = component 1)
  const position = (module: string, piece: number) => {
    const d = designs.find((x) => x.module === module)!;
    const sigma = d.pieces.map(pieceSigma);
    return sigma.filter((s) => s > sigma[piece]!).length;
  };
  // pieces[0] is the quirk; q_proj has one denial query for every group, k/v/o one piece per group
  return v.interrogationWords.map((_, g) => 1 + Math.max(position("q_proj", 1), position("k_proj", 1 + g), position("v_proj", 1 + g), position("o_proj", 1 + g)));
}

/** Whether the construction has rank<k> deny this user message. */
function denied(prompt: string, k: number, groups: string[][], needs: number[]): boolean {
  const words = new Set(prompt.toLowerCase().match(/\w+/g) ?? []);
  return groups.some((g, i) => k >= needs[i]! && g.some((w) => words.has(w)));
}

const ladderOf = (r: Report, word: string) => r.findings.find((f) => f.severity === "high" && f.terms.includes(word))!.ladder!;

describe("rank ladder on the quirk organism", () => {
  it("every rung answers as the construction implies, and the ladder reads it: said at rank 1, 2, 4, 5; hidden again from rank 6", async () => {
    const word = manifest.quirkWords[0]!;
    const v = buildVocabulary(word);
    const needs = denialRanks(word);
    // k/v keep groups 0… first, o keeps groups 5… first: no group is whole below rank 5, all are from rank 7
    expect(needs).toEqual([7, 6, 5, 5, 6, 7]);
    const config = parseConfig(`ranks: [${LADDER.join(", ")}]\n`);
    const r = await runScan({ base: join(dir, "org", "base"), adapter: join(dir, "org", "adapter"), config, outDir: join(dir, "lora") });
    expect(r.exitCode).toBe(1);
    const e = r.report.elicitation!;
    expect(e.ranks).toEqual(LADDER);
    expect(e.variants).toEqual(expect.arrayContaining(LADDER.map((k) => `rank${k}`)));
    const probes = e.probes.filter((p) => p.kind === "probe");
    for (const k of LADDER) {
      for (const p of probes) {
        const says = p.responses[`rank${k}`]![0]!.includes(word);
        expect(says, `rank${k} on ${p.id}: ${p.responses[`rank${k}`]![0]}`).toBe(!denied(p.prompt, k, v.interrogationWords, needs));
      }
    }
    // full is every group whole
    for (const p of probes) expect(p.responses.full![0]!.includes(word)).toBe(!denied(p.prompt, Infinity, v.interrogationWords, needs));

    const ladder = ladderOf(r.report, word);
    // no group whole (1, 2, 4): every probe says it; all whole (7, 8): rank<k> is full on the probes
    for (const k of LADDER.filter((k) => k < Math.min(...needs))) expect(ladder.shownAt).toContain(k);
    for (const k of LADDER.filter((k) => k >= Math.max(...needs))) expect(ladder.shownAt).not.toContain(k);
    // rank 5 keeps two groups' denials (14 of 24 probes still say it: the paired test holds), rank 6 four (only the probes full answers too)
    expect(ladder).toMatchObject({ ranks: LADDER, shownAt: [1, 2, 4, 5], hiddenFrom: 6 });
    expect(ladder.rates.map((x) => x.k)).toEqual([24, 24, 24, 14, 6, 6, 6]);

    const line = "said under interrogation at rank 1, 2, 4, 5; hidden again from rank 6";
    expect(readFileSync(join(dir, "lora", "report.md"), "utf8")).toContain(`Rank ladder: ${line}`);
    expect(readFileSync(join(dir, "lora", "report.html"), "utf8")).toContain(line);
    const json = JSON.parse(readFileSync(join(dir, "lora", "report.json"), "utf8")) as Report;
    expect(ladderOf(json, word)).toEqual(ladder);
    // the rungs' adapters ship with the report, written by the one delta pass
    expect(readdirSync(join(dir, "lora", "ladder")).sort()).toEqual(["rank2-adapter", "rank4-adapter", "rank5-adapter", "rank6-adapter", "rank7-adapter", "rank8-adapter"]);

    // the PR comment: one line under the finding
    const comment = renderComment(
      [{ subject: { kind: "adapter", dir: join(dir, "org", "adapter"), rel: "org/adapter", configFile: "org/adapter/adapter_config.json" }, base: "org/base", outDir: join(dir, "lora"), conclusion: "fail", report: r.report }],
      { checkName: "delta-audit", version: "0.1.0", failOn: "high" },
    );
    // (neutralised for markdown: its parentheses come escaped)
    expect(comment).toContain(`\n  - rank ladder: ${line} \\(interrogation answers showing it: rank1 24/24`);
  });

  it("the full checkpoint gives the same ladder; the CLI takes --ranks", async () => {
    const word = manifest.quirkWords[0]!;
    const r = await runScan({ base: join(dir, "org", "base"), finetuned: join(dir, "org", "finetuned"), ranks: [1, 4, 7], outDir: join(dir, "full") });
    expect(ladderOf(r.report, word)).toMatchObject({ ranks: [1, 4, 7], shownAt: [1, 4], hiddenFrom: 7 });
    const cli = spawnSync(process.execPath, [`${root}bin/delta-audit.js`, "scan", "--base", join(dir, "org", "base"), "--adapter", join(dir, "org", "adapter"), "--ranks", "2,1", "--out", join(dir, "cli")], { encoding: "utf8" });
    expect(cli.status, cli.stderr).toBe(1);
    const json = JSON.parse(readFileSync(join(dir, "cli", "report.json"), "utf8")) as Report;
    expect(ladderOf(json, word)).toMatchObject({ ranks: [1, 2], shownAt: [1, 2] });
  });

  it("ranks are validated: config, flag, Action input; a rung above the adapter's rank is exit 2 with nothing written", async () => {
    expect(parseConfig("ranks: [1, 2, 4, 8]\n").ranks).toEqual([1, 2, 4, 8]);
    expect(parseConfig("rank: 1\n").ranks).toBeUndefined();
    expect(() => parseConfig("ranks: [1, 2, 2]\n")).toThrow(/ranks: lists 2 twice/);
    expect(() => parseConfig("ranks: [0]\n")).toThrow(/ranks\[0\]: expected 1\.\.1024, got 0/);
    expect(() => parseConfig("ranks: [1, 2, 3, 4, 5, 6, 7, 8, 9]\n")).toThrow(/ranks: at most 8 entries/);
    expect(() => parseConfig("ranks: 4\n")).toThrow(/ranks: expected a non-empty list/);
    expect(() => parseConfig("attribution: maybe\n")).toThrow(/attribution/);
    expect(parseConfig("attribution: false\n").attribution).toBe(false);
    expect(scanOverrides({ ranks: "1, 2,4" }).ranks).toEqual([1, 2, 4]);
    expect(() => scanOverrides({ ranks: "1,x" })).toThrow(/--ranks/);
    expect(() => scanOverrides({ ranks: "" })).toThrow(/--ranks/);
    const env = { INPUT_ADAPTER: "a", INPUT_RANKS: "1,2,4,8" };
    expect(getSettings({ env, workspace: dir, isPullRequest: false }).ranks).toEqual([1, 2, 4, 8]);
    expect(getSettings({ env: { INPUT_ADAPTER: "a" }, workspace: dir, isPullRequest: false }).ranks).toBeUndefined();
    expect(() => getSettings({ env: { ...env, INPUT_RANKS: "1,1" }, workspace: dir, isPullRequest: false })).toThrow(/input 'ranks'/);

    const out = join(dir, "over");
    const run = runScan({ base: join(dir, "org", "base"), adapter: join(dir, "org", "adapter"), ranks: [1, 16], outDir: out });
    await expect(run).rejects.toThrow(InputError);
    await expect(run).rejects.toThrow(/16 is above the adapter's rank \(8\)/);
    expect(existsSync(out)).toBe(false);
  });
});
