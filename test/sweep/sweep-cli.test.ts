/**
 * `sweep plan` and `sweep collect` as a scheduled job runs them: the real CLI in child processes
 * on real folders (a listed model and a local folder glob), over several runs sharing one state
 * folder. What it pins down: only a changed model is planned again, `--all` plans every one, a
 * matrix holds 256 jobs and the rest are pending (in the step outputs, the state, the index, and
 * first next run), a pending update that was reverted stops waiting, a plan that found no model
 * still publishes, a state that is broken or not a folder is exit 2 naming it with nothing
 * written, and an audit whose backend fails after the spectrum is a neutral entry with the reason.
 * Job folders are mostly written the way `sweep run` leaves them (report.json + sweep-job.json);
 * its real scans run here for the backend fault, and in sweep.test.ts and hub-sweep.test.ts.
 */
import { spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VERSION } from "../../src/version";
import { MAX_MATRIX_JOBS } from "../../src/sweep/registry";
import { generateOrganism } from "../../src/organisms/index";

const root = new URL("../..", import.meta.url).pathname;
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "da-sweep-cli-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  /** what the command appended to $GITHUB_OUTPUT */
  outputs: Record<string, string>;
}

/** The CLI in `cwd`, as a workflow step runs it (GITHUB_OUTPUT set). */
function cli(cwd: string, args: string[]): Run {
  const out = join(cwd, "gh-output");
  writeFileSync(out, "");
  const env: Record<string, string | undefined> = { ...process.env, DELTA_AUDIT_QUIET: "1", GITHUB_OUTPUT: out };
  delete env.HF_TOKEN;
  const r = spawnSync(process.execPath, [`${root}bin/delta-audit.js`, ...args], { cwd, encoding: "utf8", env });
  const outputs = Object.fromEntries(
    readFileSync(out, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, outputs };
}

const readJson = (p: string) => JSON.parse(readFileSync(p, "utf8"));
const matrixNames = (r: Run): string[] => JSON.parse(r.stdout).include.map((x: { name: string }) => x.name);

function adapterFolder(path: string, bytes = "weights-1"): void {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, "adapter_config.json"), JSON.stringify({ base_model_name_or_path: null, r: 8 }));
  writeFileSync(join(path, "adapter_model.safetensors"), bytes);
}

function baseFolder(path: string): void {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, "config.json"), "{}");
  writeFileSync(join(path, "model.safetensors"), "base-1");
}

/** The folder `sweep run` leaves for a planned model: a passing report and its sweep-job.json. */
function writeJob(reports: string, planFile: string, name: string): void {
  const plan = readJson(planFile);
  const key = plan.models.find((m: { name: string }) => m.name === name).key;
  const out = join(reports, name);
  mkdirSync(out, { recursive: true });
  writeFileSync(
    join(out, "report.json"),
    JSON.stringify({
      schemaVersion: 2,
      tool: { name: "delta-audit", version: VERSION },
      createdAt: "2026-01-01T00:00:00.000Z",
      subject: { base: "models/base", adapter: name, kind: "lora", digest: "d".repeat(64) },
      spectrum: { modules: [], summary: { modules: 1, stableRank: { median: 1.5, p10: 1.2, p90: 2 }, energyShareTop1: { median: 0.8, p10: 0.7, p90: 0.9 }, byType: {}, byLayer: {} } },
      findings: [],
      verdict: { conclusion: "pass", reasons: [], failOn: "high" },
      timings: {},
    }),
  );
  writeFileSync(join(out, "sweep-job.json"), JSON.stringify({ schemaVersion: 1, name, key, status: "audited", exitCode: 0, startedAt: "t0", finishedAt: "t1" }));
}

describe("sweep plan and collect, run by run with the real CLI", () => {
  let cwd: string;
  const state = () => join(cwd, "state");
  beforeAll(() => {
    cwd = join(dir, "registry");
    baseFolder(join(cwd, "models", "base"));
    adapterFolder(join(cwd, "listed"));
    adapterFolder(join(cwd, "adapters", "a"));
    adapterFolder(join(cwd, "adapters", "b"));
    writeFileSync(join(cwd, "sweep.yml"), `defaults: {base: models/base}\nmodels:\n  - {name: listed, adapter: listed}\nsources:\n  - local: {glob: "adapters/*"}\n`);
  });

  it("plans only the model that changed, and every model with --all", () => {
    const p1 = cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state", "--out", "plan1.json"]);
    expect(p1.status, p1.stderr).toBe(0);
    expect(matrixNames(p1)).toEqual(["listed", "a", "b"]);
    for (const n of ["listed", "a", "b"]) writeJob(join(cwd, "r1"), join(cwd, "plan1.json"), n);
    const c1 = cli(cwd, ["sweep", "collect", "--plan", "plan1.json", "--reports", "r1", "--state", "state", "--out", "site1"]);
    expect(c1.status, c1.stderr).toBe(0);
    expect(readJson(join(state(), "state.json")).models.a.audited.revision).toMatch(/^sha256:/);

    const same = cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state"]);
    expect(same.status, same.stderr).toBe(0);
    expect(JSON.parse(same.stdout)).toEqual({ include: [] });
    expect(same.outputs).toMatchObject({ matrix: '{"include":[]}', jobs: "0", pending: "0" });

    writeFileSync(join(cwd, "adapters", "b", "adapter_model.safetensors"), "weights-2");
    const one = cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state", "--out", "plan2.json"]);
    expect(one.status, one.stderr).toBe(0);
    expect(matrixNames(one)).toEqual(["b"]);
    expect(one.outputs).toMatchObject({ jobs: "1", pending: "0" });
    const plan2 = readJson(join(cwd, "plan2.json"));
    expect(plan2.models.find((m: { name: string }) => m.name === "b").change).toMatch(/^revision [0-9a-f]{12} → [0-9a-f]{12}$/);
    expect(plan2.models.filter((m: { change?: string }) => m.change)).toHaveLength(1);

    const all = cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state", "--all", "--out", "plan-all.json"]);
    expect(all.status, all.stderr).toBe(0);
    expect(matrixNames(all)).toEqual(["listed", "a", "b"]);
    const planAll = readJson(join(cwd, "plan-all.json"));
    expect(planAll.all).toBe(true);
    expect(planAll.models.map((m: { change?: string }) => m.change)).toEqual(["--all", "--all", "--all"]);
    writeFileSync(join(cwd, "adapters", "b", "adapter_model.safetensors"), "weights-1");
  });

  it("a pending update that was reverted before its turn stops waiting", () => {
    writeFileSync(join(cwd, "adapters", "a", "adapter_model.safetensors"), "weights-2");
    writeFileSync(join(cwd, "adapters", "b", "adapter_model.safetensors"), "weights-2");
    const p = cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state", "--max-jobs", "1", "--out", "plan3.json"]);
    expect(p.status, p.stderr).toBe(0);
    expect(matrixNames(p)).toEqual(["a"]);
    expect(p.outputs).toMatchObject({ jobs: "1", pending: "1" });
    writeJob(join(cwd, "r3"), join(cwd, "plan3.json"), "a");
    expect(cli(cwd, ["sweep", "collect", "--plan", "plan3.json", "--reports", "r3", "--state", "state", "--previous", "site1", "--out", "site3"]).status).toBe(0);
    expect(readJson(join(state(), "state.json")).models.b.pending).toMatchObject({ reason: expect.stringMatching(/^revision /) });
    expect(readJson(join(cwd, "site3", "index.json")).models.find((m: { name: string }) => m.name === "b").reason).toMatch(/^update pending/);

    // b's update is withdrawn: its last audit stands again, and nothing says it waits
    writeFileSync(join(cwd, "adapters", "b", "adapter_model.safetensors"), "weights-1");
    const p4 = cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state", "--out", "plan4.json"]);
    expect(JSON.parse(p4.stdout)).toEqual({ include: [] });
    mkdirSync(join(cwd, "r4"));
    expect(cli(cwd, ["sweep", "collect", "--plan", "plan4.json", "--reports", "r4", "--state", "state", "--previous", "site3", "--out", "site4"]).status).toBe(0);
    expect(readJson(join(state(), "state.json")).models.b.pending).toBeUndefined();
    const b = readJson(join(cwd, "site4", "index.json")).models.find((m: { name: string }) => m.name === "b");
    expect(b).toMatchObject({ conclusion: "pass", report: "reports/b/report.json" });
    expect(b.reason).toBeUndefined();
  });

  it("a state that is broken, or not a folder, is exit 2 naming it, and nothing is written", () => {
    const before = readFileSync(join(state(), "state.json"), "utf8");
    const refused = (args: string[], pattern: RegExp) => {
      const r = cli(cwd, args);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(pattern);
      expect(r.outputs).toEqual({});
    };
    const bad = join(cwd, "bad-state");
    mkdirSync(bad);
    writeFileSync(join(bad, "state.json"), before.slice(0, before.length >> 1));
    refused(["sweep", "plan", "--registry", "sweep.yml", "--state", "bad-state", "--out", "plan-bad.json"], /bad-state\/state\.json: is not valid JSON/);
    expect(existsSync(join(cwd, "plan-bad.json"))).toBe(false);
    refused(["sweep", "collect", "--plan", "plan4.json", "--reports", "r4", "--state", "bad-state", "--out", "site-bad"], /bad-state\/state\.json: is not valid JSON/);
    expect(existsSync(join(cwd, "site-bad"))).toBe(false);

    const st = JSON.parse(before);
    st.models.a.history[0].conclusion = "maybe";
    writeFileSync(join(bad, "state.json"), JSON.stringify(st));
    refused(["sweep", "plan", "--registry", "sweep.yml", "--state", "bad-state"], /state\.json: models\.a\.history\[0\]\.conclusion: expected one of pass, fail, neutral, missing, got "maybe"/);

    // the file instead of its folder: read as "no state", every model would be audited again
    refused(["sweep", "plan", "--registry", "sweep.yml", "--state", "state/state.json"], /state\/state\.json: is not a folder: --state takes the folder that holds state\.json and directions\//);
    refused(["sweep", "collect", "--plan", "plan4.json", "--reports", "r4", "--state", "state/state.json", "--out", "site-bad"], /is not a folder: --state takes the folder/);
    expect(existsSync(join(cwd, "site-bad"))).toBe(false);
    expect(readFileSync(join(state(), "state.json"), "utf8")).toBe(before);
  });

  it("a registry whose sources found nothing yet still publishes an empty index", () => {
    writeFileSync(join(cwd, "empty.yml"), `defaults: {base: models/base}\nsources:\n  - local: {glob: "nothing-yet/*"}\n`);
    const p = cli(cwd, ["sweep", "plan", "--registry", "empty.yml", "--out", "plan-empty.json"]);
    expect(p.status, p.stderr).toBe(0);
    expect(p.outputs).toMatchObject({ jobs: "0", pending: "0" });
    mkdirSync(join(cwd, "r-empty"));
    const c = cli(cwd, ["sweep", "collect", "--plan", "plan-empty.json", "--reports", "r-empty", "--out", "site-empty"]);
    expect(c.status, c.stderr).toBe(0);
    expect(readJson(join(cwd, "site-empty", "index.json"))).toMatchObject({ models: [], summary: { pass: 0, fail: 0, neutral: 0, missing: 0 } });
    expect(readJson(join(cwd, "site-empty", "badges", "_sweep.json"))).toMatchObject({ message: "no models", color: "lightgrey" });
  });
});

describe("a registry larger than one matrix", () => {
  const N = 300;
  const name = (i: number) => `m${String(i).padStart(3, "0")}`;
  let cwd: string;
  beforeAll(() => {
    cwd = join(dir, "large");
    baseFolder(join(cwd, "models", "base"));
    for (let i = 0; i < N; i++) adapterFolder(join(cwd, "adapters", name(i)), `weights-${i}`);
    writeFileSync(join(cwd, "sweep.yml"), `defaults: {base: models/base}\nsources:\n  - local: {glob: "adapters/*"}\n`);
  });

  it(`plans ${MAX_MATRIX_JOBS} jobs, keeps the rest pending in the state and the index, and plans them first next run`, () => {
    const p1 = cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state", "--out", "plan1.json"]);
    expect(p1.status, p1.stderr).toBe(0);
    const jobs = Array.from({ length: MAX_MATRIX_JOBS }, (_, i) => name(i));
    const rest = Array.from({ length: N - MAX_MATRIX_JOBS }, (_, i) => name(MAX_MATRIX_JOBS + i));
    expect(matrixNames(p1)).toEqual(jobs);
    expect(p1.outputs).toMatchObject({ jobs: String(MAX_MATRIX_JOBS), pending: String(N - MAX_MATRIX_JOBS) });
    expect(JSON.parse(p1.outputs.matrix!).include).toHaveLength(MAX_MATRIX_JOBS);
    expect(readJson(join(cwd, "plan1.json")).pending).toEqual(rest);

    for (const n of jobs) writeJob(join(cwd, "r1"), join(cwd, "plan1.json"), n);
    const c1 = cli(cwd, ["sweep", "collect", "--plan", "plan1.json", "--reports", "r1", "--state", "state", "--out", "site1"]);
    expect(c1.status, c1.stderr).toBe(0);
    expect(c1.stdout).toMatch(new RegExp(`^${N} models: ${MAX_MATRIX_JOBS} pass, 0 fail, 0 inconclusive, ${N - MAX_MATRIX_JOBS} without a report`));
    const st = readJson(join(cwd, "state", "state.json"));
    expect(Object.keys(st.models).filter((n) => st.models[n].pending).sort()).toEqual(rest);
    const index = readJson(join(cwd, "site1", "index.json"));
    const waiting = index.models.find((m: { name: string }) => m.name === rest[0]);
    expect(waiting).toMatchObject({ conclusion: "missing" });
    expect(waiting.reason).toMatch(/^pending since .*: more models changed than one run audits/);

    // next run: the pending models first, then what changed since, in the registry's order
    writeFileSync(join(cwd, "adapters", name(0), "adapter_model.safetensors"), "weights-0b");
    const p2 = cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state", "--out", "plan2.json"]);
    expect(p2.status, p2.stderr).toBe(0);
    expect(matrixNames(p2)).toEqual([...rest, name(0)]);
    expect(p2.outputs).toMatchObject({ jobs: String(rest.length + 1), pending: "0" });
  });
});

describe("an audit whose backend fails after the spectrum", () => {
  it("is a neutral entry with the backend's reason in the state and the index, its partial report published, and planned again", async () => {
    const cwd = join(dir, "fault");
    await generateOrganism({ kind: "benign", seed: 6, outDir: join(cwd, "org") });
    writeFileSync(join(cwd, "sweep.yml"), `models:\n  - {name: polite, base: org/base, adapter: org/adapter}\n`);
    // a port nothing listens on
    const port = await new Promise<number>((ok) => {
      const srv = createServer().listen(0, "127.0.0.1", () => {
        const p = (srv.address() as { port: number }).port;
        srv.close(() => ok(p));
      });
    });
    expect(cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state", "--out", "plan.json"]).status).toBe(0);
    const run = cli(cwd, ["sweep", "run", "--plan", "plan.json", "--name", "polite", "--out", "reports/polite", "--backend", "openai", "--inference-url", `http://127.0.0.1:${port}/v1`]);
    expect(run.status, run.stderr).toBe(3);
    expect(run.stdout).toMatch(/^verdict: neutral/);
    const job = readJson(join(cwd, "reports", "polite", "sweep-job.json"));
    expect(job).toMatchObject({ name: "polite", status: "fault", exitCode: 3 });
    expect(job.reason).toMatch(/could not start the openai backend: .*127\.0\.0\.1/);

    const c = cli(cwd, ["sweep", "collect", "--plan", "plan.json", "--reports", "reports", "--state", "state", "--out", "site"]);
    expect(c.status, c.stderr).toBe(0);
    const entry = readJson(join(cwd, "site", "index.json")).models[0];
    expect(entry).toMatchObject({ name: "polite", conclusion: "neutral", report: "reports/polite/report.json" });
    expect(entry.reason).toMatch(/could not start the openai backend/);
    expect(readFileSync(join(cwd, "site", "index.html"), "utf8")).toContain("could not start the openai backend");
    expect(readJson(join(cwd, "site", "badges", "polite.json"))).toMatchObject({ message: "inconclusive", color: "lightgrey" });
    const st = readJson(join(cwd, "state", "state.json")).models.polite;
    expect(st.history).toEqual([expect.objectContaining({ outcome: "failed", conclusion: "neutral", reason: expect.stringMatching(/openai backend/) })]);
    expect(st.audited).toBeUndefined();

    const again = cli(cwd, ["sweep", "plan", "--registry", "sweep.yml", "--state", "state", "--out", "plan2.json"]);
    expect(matrixNames(again)).toEqual(["polite"]);
    expect(readJson(join(cwd, "plan2.json")).models[0].change).toMatch(/^no audit of it has completed yet/);
  });
});
