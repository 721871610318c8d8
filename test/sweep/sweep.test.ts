import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { generateOrganism } from "../../src/organisms/index";
import { MAX_MATRIX_JOBS, parseRegistry } from "../../src/sweep/registry";
import { planMatrix, planSweep } from "../../src/sweep/plan";
import { collectSweep, renderIndexMarkdown, validateReport } from "../../src/sweep/collect";
import { sweepBadge } from "../../src/report/badge";

const root = new URL("../..", import.meta.url).pathname;
const cli = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [`${root}bin/delta-audit.js`, ...args], { encoding: "utf8", env: { ...process.env, DELTA_AUDIT_QUIET: "1", ...env } });

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "da-sweep-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorOf(yaml: string): InputError {
  try {
    parseRegistry(yaml, join(dir, "reg.yml"));
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error("expected the registry to be refused");
}

describe("sweep registry", () => {
  it("resolves paths against the registry, keeps Hub ids, applies defaults", async () => {
    mkdirSync(join(dir, "models", "base"), { recursive: true });
    const reg = parseRegistry(
      `defaults: {base: models/base, config: cfg.yml}
models:
  - {name: a, adapter: adapters/a}
  - {name: b.v2, base: Qwen/Qwen2.5-0.5B-Instruct@main, finetuned: /abs/ft}
`,
      join(dir, "reg.yml"),
    );
    expect(reg.entries).toEqual([
      { name: "a", base: join(dir, "models", "base"), adapter: join(dir, "adapters", "a"), config: join(dir, "cfg.yml") },
      { name: "b.v2", base: "Qwen/Qwen2.5-0.5B-Instruct@main", finetuned: "/abs/ft", config: join(dir, "cfg.yml") },
    ]);
    mkdirSync(join(dir, "adapters", "a"), { recursive: true });
    writeFileSync(join(dir, "adapters", "a", "adapter_config.json"), "{}");
    mkdirSync(join(dir, "abs-ft"), { recursive: true });
    const local = parseRegistry(`defaults: {base: models/base}\nmodels:\n  - {name: a, adapter: adapters/a}\n  - {name: b, finetuned: abs-ft}\n`, join(dir, "reg.yml"));
    expect(planMatrix(await planSweep(local, { cwd: dir }))).toEqual({ include: [{ name: "a", kind: "lora" }, { name: "b", kind: "full" }] });
  });

  it("names the key path of every bad entry", async () => {
    expect(errorOf("models: []").message).toMatch(/reg\.yml: models: expected a non-empty list/);
    expect(errorOf("models: [{name: a, base: b}]").message).toMatch(/models\[0\]: needs exactly one of adapter or finetuned/);
    expect(errorOf("models: [{name: a, base: b, adapter: x, finetuned: y}]").message).toMatch(/models\[0\]: needs exactly one/);
    expect(errorOf("models: [{name: a, adapter: x}]").message).toMatch(/models\[0\]\.base: is required/);
    expect(errorOf("models: [{name: '../x', base: b, adapter: x}]").message).toMatch(/models\[0\]\.name: expected letters/);
    expect(errorOf("models: [{name: a, base: b, adapter: x}, {name: a, base: b, adapter: y}]").message).toMatch(/models\[1\]\.name: duplicate name 'a'/);
    expect(errorOf("models: [{name: a, base: b, adapter: x, colour: red}]").message).toMatch(/models\[0\]\.colour: unknown key/);
    expect(errorOf("models: [{name: a, base: b, adapter: x}]\nmodels: []").message).toMatch(/reg\.yml: not valid YAML/);
    // more models than one matrix holds: the rest are pending, first in line next run
    mkdirSync(join(dir, "many", "ad"), { recursive: true });
    writeFileSync(join(dir, "many", "ad", "adapter_config.json"), "{}");
    const many = `defaults: {base: ../models/base}\nmodels:\n${Array.from({ length: MAX_MATRIX_JOBS + 1 }, (_, i) => `  - {name: m${i}, adapter: ad}`).join("\n")}\n`;
    const plan = await planSweep(parseRegistry(many, join(dir, "many", "reg.yml")), { cwd: dir });
    expect(planMatrix(plan).include).toHaveLength(MAX_MATRIX_JOBS);
    expect(plan.pending).toEqual([`m${MAX_MATRIX_JOBS}`]);
  });

  it("summarises a sweep in one badge and a neutralised markdown index", () => {
    expect(sweepBadge({ pass: 3, fail: 0, neutral: 0, missing: 0 })).toMatchObject({ message: "3/3 pass", color: "brightgreen" });
    expect(sweepBadge({ pass: 2, fail: 1, neutral: 1, missing: 0 })).toMatchObject({ message: "1/4 fail", color: "red" });
    expect(sweepBadge({ pass: 2, fail: 0, neutral: 0, missing: 1 })).toMatchObject({ color: "lightgrey" });
    const md = renderIndexMarkdown({
      schemaVersion: 2,
      generatedAt: "2026-01-01T00:00:00.000Z",
      summary: { pass: 0, fail: 1, neutral: 0, missing: 0 },
      models: [{ name: "m", conclusion: "fail", findings: { high: 1, medium: 0, low: 0, info: 0 }, topFinding: { severity: "high", title: "@admin <img src=x> | [x](http://e.vil)", confidence: 1 } }],
    });
    expect(md).not.toMatch(/@admin|<img|\]\(http/);
    expect(md.split("\n").find((l) => l.startsWith("| m "))!.split(/(?<!\\)\|/).length).toBe(13);
  });

  it("refuses a report.json that is not a delta-audit report", () => {
    expect(() => validateReport({ schemaVersion: 3 }, "r.json")).toThrow(/r\.json: not a delta-audit report: schemaVersion 3, expected 1 or 2/);
    expect(() => validateReport({ schemaVersion: 1, verdict: { conclusion: "maybe" } }, "r.json")).toThrow(/verdict\.conclusion/);
  });

  const minimal = (failOn: unknown) => ({
    schemaVersion: 1,
    verdict: { conclusion: "fail", reasons: ["x"], failOn },
    subject: { base: "b", kind: "lora" },
    findings: [
      { severity: "high", title: "h" },
      { severity: "medium", title: "m" },
      { severity: "low", title: "l" },
    ],
    spectrum: { summary: {} },
  });

  it("refuses a verdict whose fail-on is not a threshold (its badge would say 'fail (0 findings)')", () => {
    for (const failOn of ["critical", undefined, 1]) {
      expect(() => validateReport(minimal(failOn), "r.json")).toThrow(/r\.json: not a delta-audit report: verdict\.failOn must be one of high, medium, low, never/);
    }
    for (const failOn of ["high", "medium", "low", "never"]) expect(validateReport(minimal(failOn), "r.json").verdict.failOn).toBe(failOn);
    // schema 2 adds fields only: both versions are read
    expect(validateReport({ ...minimal("high"), schemaVersion: 2 }, "r.json").schemaVersion).toBe(2);
  });

  it("collect badges each model from its validated report, and stops on one with an unknown fail-on", async () => {
    const reports = join(dir, "collect-failon");
    mkdirSync(join(reports, "m"), { recursive: true });
    writeFileSync(join(reports, "m", "report.json"), JSON.stringify(minimal("medium")));
    const site = join(dir, "collect-failon-site");
    await collectSweep(reports, site);
    expect(JSON.parse(readFileSync(join(site, "badges", "m.json"), "utf8"))).toEqual({ schemaVersion: 1, label: "m", message: "fail (2 findings)", color: "red" });

    mkdirSync(join(reports, "n"));
    writeFileSync(join(reports, "n", "report.json"), JSON.stringify(minimal("critical")));
    const site2 = join(dir, "collect-failon-site2");
    const err = await collectSweep(reports, site2).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toMatch(/n\/report\.json: not a delta-audit report: verdict\.failOn must be one of/);
    expect(existsSync(site2)).toBe(false);
  });
});

describe("sweep plan → run → collect on generated organisms", () => {
  let reg: string;
  beforeAll(async () => {
    await generateOrganism({ kind: "quirk", seed: 5, outDir: join(dir, "quirk") });
    await generateOrganism({ kind: "benign", seed: 6, outDir: join(dir, "benign") });
    reg = join(dir, "registry.yml");
    writeFileSync(
      reg,
      `models:
  - {name: quirky, base: quirk/base, adapter: quirk/adapter}
  - {name: polite, base: benign/base, finetuned: benign/finetuned}
  - {name: never-ran, base: benign/base, adapter: benign/adapter}
`,
    );
  });

  it("plans one job per model, also as a GitHub Actions output", () => {
    const out = join(dir, "gh-output");
    writeFileSync(out, "");
    const r = cli(["sweep", "plan", "--registry", reg], { GITHUB_OUTPUT: out });
    expect(r.status).toBe(0);
    const matrix = JSON.parse(r.stdout);
    expect(matrix.include.map((m: { name: string }) => m.name)).toEqual(["quirky", "polite", "never-ran"]);
    expect(readFileSync(out, "utf8")).toBe(`matrix=${JSON.stringify(matrix)}\njobs=3\npending=0\n`);
  });

  it("runs each job like scan and collects an index with badges", () => {
    const reports = join(dir, "reports");
    const q = cli(["sweep", "run", "--registry", reg, "--name", "quirky", "--out", join(reports, "quirky")]);
    expect(q.status, q.stderr).toBe(1);
    const p = cli(["sweep", "run", "--registry", reg, "--name", "polite", "--out", join(reports, "polite")]);
    expect(p.status, p.stderr).toBe(0);
    expect(cli(["sweep", "run", "--registry", reg, "--name", "nobody", "--out", join(reports, "x")]).status).toBe(2);

    const site = join(dir, "site");
    const c = cli(["sweep", "collect", "--reports", reports, "--out", site, "--registry", reg]);
    expect(c.status, c.stderr).toBe(0);
    const index = JSON.parse(readFileSync(join(site, "index.json"), "utf8"));
    expect(index.summary).toEqual({ pass: 1, fail: 1, neutral: 0, missing: 1 });
    const byName = Object.fromEntries(index.models.map((m: { name: string }) => [m.name, m]));
    expect(byName.quirky.conclusion).toBe("fail");
    expect(byName.quirky.findings.high).toBeGreaterThan(0);
    expect(byName.quirky.topFinding.severity).toBe("high");
    expect(byName.polite.conclusion).toBe("pass");
    expect(byName.polite.subject.kind).toBe("full");
    expect(byName["never-ran"].conclusion).toBe("missing");
    const badge = (n: string) => JSON.parse(readFileSync(join(site, "badges", `${n}.json`), "utf8"));
    expect(badge("quirky")).toMatchObject({ schemaVersion: 1, color: "red" });
    expect(badge("quirky").message).toMatch(/^fail \(\d+ findings?\)$/);
    expect(badge("polite")).toMatchObject({ message: "pass", color: "brightgreen" });
    expect(badge("never-ran")).toMatchObject({ message: "no report", color: "lightgrey" });
    expect(badge("_sweep")).toMatchObject({ message: "1/3 fail", color: "red" });
    expect(readFileSync(join(site, "index.md"), "utf8")).toMatch(/\| quirky \| ❌ fail \|/);

    // a broken artifact stops the collection, names the file, and writes nothing
    mkdirSync(join(reports, "broken"));
    writeFileSync(join(reports, "broken", "report.json"), "{not json");
    const site2 = join(dir, "site2");
    const bad = cli(["sweep", "collect", "--reports", reports, "--out", site2]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/broken\/report\.json: not valid JSON/);
    expect(bad.stderr.trim().split("\n")).toHaveLength(1);
    expect(existsSync(site2)).toBe(false);
  });

  it("an audit that cannot run leaves sweep-job.json with the reason, and collect lists it as inconclusive", () => {
    const broken = join(dir, "broken-adapter");
    mkdirSync(broken, { recursive: true });
    writeFileSync(join(broken, "adapter_config.json"), "{not json");
    const reg2 = join(dir, "registry-broken.yml");
    writeFileSync(reg2, `models:\n  - {name: polite, base: benign/base, finetuned: benign/finetuned}\n  - {name: broken, base: benign/base, adapter: broken-adapter}\n`);
    const plan = join(dir, "plan-broken.json");
    const p = cli(["sweep", "plan", "--registry", reg2, "--out", plan]);
    expect(p.status, p.stderr).toBe(0);
    const reports = join(dir, "reports-broken");
    const r = cli(["sweep", "run", "--plan", plan, "--name", "broken", "--out", join(reports, "broken")]);
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    const job = JSON.parse(readFileSync(join(reports, "broken", "sweep-job.json"), "utf8"));
    expect(job).toMatchObject({ name: "broken", status: "error", exitCode: 2 });
    expect(job.reason).toMatch(/adapter_config\.json/);
    const site = join(dir, "site-broken");
    const c = cli(["sweep", "collect", "--plan", plan, "--reports", reports, "--out", site]);
    expect(c.status, c.stderr).toBe(0);
    const index = JSON.parse(readFileSync(join(site, "index.json"), "utf8"));
    const byName = Object.fromEntries(index.models.map((m: { name: string }) => [m.name, m]));
    expect(byName.broken).toMatchObject({ conclusion: "neutral", reason: job.reason });
    // planned but no folder at all: the job died before writing anything
    expect(byName.polite).toMatchObject({ conclusion: "missing" });
    expect(byName.polite.reason).toMatch(/no report was collected/);
    expect(JSON.parse(readFileSync(join(site, "badges", "broken.json"), "utf8"))).toMatchObject({ message: "inconclusive", color: "lightgrey" });
  });

  it("flag and file mistakes are exit 2 with one line naming the flag or the key", () => {
    const bad = join(dir, "bad-registry.yml");
    writeFileSync(bad, "sources: [{hub: {author: acme, library: 'p e f t'}}]\n");
    const one = (args: string[], pattern: RegExp) => {
      const r = cli(args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
      expect(r.stdout).toBe("");
    };
    one(["sweep", "plan", "--registry", bad], /bad-registry\.yml: sources\[0\]\.hub\.library: expected a library name such as peft, got "p e f t"/);
    one(["sweep", "plan", "--registry", reg, "--max-jobs", "300"], /--max-jobs: expected 1\.\.256, got '300'/);
    one(["sweep", "run", "--name", "x", "--out", join(dir, "x")], /--plan: required: the plan file \(or --registry\)/);
    one(["sweep", "run", "--plan", "p.json", "--registry", reg, "--name", "x", "--out", join(dir, "x")], /--registry: give either --plan or --registry, not both/);
    one(["sweep", "run", "--plan", join(dir, "nope.json"), "--name", "x", "--out", join(dir, "x")], /nope\.json: file not found/);
    one(["sweep", "collect", "--reports", dir, "--out", join(dir, "s"), "--plan", join(dir, "nope.json")], /nope\.json: file not found/);
    writeFileSync(join(dir, "bad-plan.json"), JSON.stringify({ schemaVersion: 1, models: [], jobs: ["ghost"] }));
    one(["sweep", "run", "--plan", join(dir, "bad-plan.json"), "--name", "x", "--out", join(dir, "x")], /bad-plan\.json: .*/);
  });
});
