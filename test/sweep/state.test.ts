/**
 * A registry swept over several runs, on real folders: local sources expanded by glob, audit
 * keys (revision, base revision, delta-audit version, policy digest) compared with the state,
 * matrix chunks with pending models, audits that could not run, drift between two audits, the
 * state written and read back. Job folders are written the way `sweep run` leaves them
 * (report.json, sweep-job.json, directions.safetensors); the CLI runs them in sweep.test.ts and
 * hub-sweep.test.ts, and plans and collects over several runs in sweep-cli.test.ts.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { orthonormalColumns, writeDirections, type ModuleDirections } from "../../src/delta/directions";
import { mulberry32 } from "../../src/linalg/random";
import { collectSweep, NO_REPORT_REASON, type SweepIndex } from "../../src/sweep/collect";
import { planSweep, type SweepPlan } from "../../src/sweep/plan";
import { loadRegistry } from "../../src/sweep/registry";
import { JOB_FILE, type SweepJob } from "../../src/sweep/run";
import { loadState, STATE_FILE } from "../../src/sweep/state";
import { INDEX_CSP } from "../../src/sweep/index-html";
import type { Finding } from "../../src/judge/types";
import { VERSION } from "../../src/version";

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "da-sweep-state-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function adapterFolder(path: string, bytes = "weights-1"): void {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, "adapter_config.json"), JSON.stringify({ base_model_name_or_path: null, r: 8 }));
  writeFileSync(join(path, "adapter_model.safetensors"), bytes);
}

function baseFolder(path: string, bytes = "base-1"): void {
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, "config.json"), "{}");
  writeFileSync(join(path, "model.safetensors"), bytes);
}

/** A module's top-2 directions turned by `deg` from a fixed basis (the same basis for every call). */
function directions(deg: number): ModuleDirections[] {
  const n = 16;
  const r = mulberry32(7);
  const { Q } = orthonormalColumns(Float64Array.from({ length: n * 4 }, () => r() - 0.5), n, 4);
  const t = (deg * Math.PI) / 180;
  const U = new Float64Array(n * 2);
  for (let i = 0; i < n; i++) for (let j = 0; j < 2; j++) U[i * 2 + j] = Math.cos(t) * Q[i * 4 + j]! + Math.sin(t) * Q[i * 4 + 2 + j]!;
  return [{ name: "model.layers.0.self_attn.q_proj", shape: [n, n], k: 2, sigma: Float64Array.of(2, 1), U, V: U, spectralNorm: 2, stableRank: 1.25, frobenius: Math.sqrt(5) }];
}

const finding = (term: string, severity: Finding["severity"] = "high"): Finding => ({ id: "concealment-1", title: `hides ${term}`, severity, source: "concealment", terms: [term], evidence: [], confidence: 0.99 });

interface JobSpec {
  conclusion?: "pass" | "fail" | "neutral";
  findings?: Finding[];
  error?: string;
  status?: SweepJob["status"];
  deg?: number;
  noReport?: boolean;
}

/** The folder `sweep run` leaves for one model. */
async function writeJob(reports: string, plan: SweepPlan, name: string, spec: JobSpec = {}): Promise<void> {
  const out = join(reports, name);
  mkdirSync(out, { recursive: true });
  const key = plan.models.find((m) => m.name === name)!.key;
  const status = spec.status ?? (spec.error ? "fault" : "audited");
  const conclusion = spec.conclusion ?? (spec.error ? "neutral" : (spec.findings ?? []).length ? "fail" : "pass");
  if (!spec.noReport) {
    const report = {
      schemaVersion: 2,
      tool: { name: "delta-audit", version: VERSION },
      createdAt: "2026-01-01T00:00:00.000Z",
      subject: { base: "models/base", adapter: `adapters/${name}`, kind: "lora", digest: "d".repeat(64) },
      spectrum: { modules: [], summary: { modules: 1, stableRank: { median: 1.5, p10: 1.2, p90: 2 }, energyShareTop1: { median: 0.8, p10: 0.7, p90: 0.9 }, byType: {}, byLayer: {} } },
      findings: spec.findings ?? [],
      verdict: { conclusion, reasons: [], failOn: "high" },
      timings: {},
      ...(spec.error ? { error: spec.error } : {}),
    };
    writeFileSync(join(out, "report.json"), JSON.stringify(report));
    writeFileSync(join(out, "report.html"), "<!doctype html><p>report</p>");
  }
  const job: SweepJob = { schemaVersion: 1, name, key, status, exitCode: status === "error" ? 2 : conclusion === "fail" ? 1 : 0, startedAt: "t0", finishedAt: "t1" };
  if (spec.error) job.reason = spec.error;
  if (spec.deg !== undefined && !spec.noReport) {
    await writeDirections(join(out, "directions.safetensors"), directions(spec.deg));
    job.directions = { file: "directions.safetensors", k: 2, modules: 1 };
  }
  writeFileSync(join(out, JOB_FILE), JSON.stringify(job));
}

const byName = (index: SweepIndex) => Object.fromEntries(index.models.map((m) => [m.name, m]));
const readJson = (p: string) => JSON.parse(readFileSync(p, "utf8"));

describe("local sources", () => {
  it("expands folder globs, names models by folder, reports what it cannot audit", async () => {
    const root = join(dir, "expand");
    baseFolder(join(root, "models", "base"));
    adapterFolder(join(root, "adapters", "alpha"));
    adapterFolder(join(root, "adapters", "beta"));
    mkdirSync(join(root, "adapters", "notes"));
    adapterFolder(join(root, "adapters", ".hidden"));
    adapterFolder(join(root, "nested", "team", "gamma"));
    adapterFolder(join(root, "more", "alpha"));
    writeFileSync(
      join(root, "registry.yml"),
      `defaults: {base: models/base}
sources:
  - local: {glob: "adapters/*"}
  - local: {glob: "nested/**", prefix: "n-"}
  - local: {glob: "more/*"}
`,
    );
    const plan = await planSweep(loadRegistry(join(root, "registry.yml")), { cwd: root });
    expect(plan.models.map((m) => m.name)).toEqual(["alpha", "beta", "n-gamma"]);
    expect(plan.models[0]).toMatchObject({ source: "sources[0].local", kind: "lora", base: { path: join("models", "base") }, adapter: { path: join("adapters", "alpha") }, change: "new" });
    expect(plan.models[0]!.key.revision).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(plan.models[0]!.key.toolVersion).toBe(VERSION);
    expect(plan.models[0]!.key.policyDigest).toBe(plan.models[1]!.key.policyDigest);
    expect(plan.jobs).toEqual(["alpha", "beta", "n-gamma"]);
    const skipped = Object.fromEntries(plan.skipped.map((s) => [s.name, s.reason]));
    // named relative to the registry, as its glob is: the published index shows no runner paths
    expect(skipped.notes).toMatch(/^adapters\/notes is neither a PEFT adapter \(adapter_config\.json\) nor a checkpoint/);
    // `nested/**` passes over the folders on the way down (nested/, nested/team/): they hold no model
    expect(plan.skipped.map((s) => s.name)).not.toContain("n-team");
    expect(plan.skipped.map((s) => s.name)).not.toContain("n-nested");
    // a folder elsewhere with a taken name is reported, never silently dropped, and never stops the sweep
    expect(plan.skipped.find((s) => s.source === "sources[2].local")!.reason).toMatch(/already taken by sources\[0\]\.local; give sources\[2\]\.local a prefix/);
    expect(plan.models.some((m) => m.name === ".hidden")).toBe(false);
  });

  it("refuses a bad source with its key path", async () => {
    const reg = (yaml: string) => {
      writeFileSync(join(dir, "bad.yml"), yaml);
      return () => loadRegistry(join(dir, "bad.yml"));
    };
    expect(reg("sources: [{local: {glob: /abs}}]")).toThrow(/bad\.yml: sources\[0\]\.local\.glob: must be relative to the registry file/);
    expect(reg("sources: [{hub: {author: 'a b'}}]")).toThrow(/sources\[0\]\.hub\.author: expected a Hub user or organisation name, got "a b"/);
    expect(reg("sources: [{hub: {author: acme}, local: {glob: x}}]")).toThrow(/sources\[0\]: needs exactly one of hub or local/);
    expect(reg("sources: [{hub: {author: acme, match: 'a/b'}}]")).toThrow(/sources\[0\]\.hub\.match: expected a glob on repository names/);
    expect(reg("sources: [{hub: {author: acme, limit: 0}}]")).toThrow(/sources\[0\]\.hub\.limit: expected 1\.\.10000, got 0/);
    expect(reg("sources: [{hub: {author: acme, colour: red}}]")).toThrow(/sources\[0\]\.hub\.colour: unknown key/);
    expect(reg("sources: [{hub: {author: acme}}]\ndrift: {severity: critical}")).toThrow(/drift\.severity: expected one of high, medium, low, info, got "critical"/);
    expect(reg("sources: [{hub: {author: acme}}]\ndrift: {angle: 120}")).toThrow(/drift\.angle: expected degrees, 1\.\.90, got 120/);
    expect(reg("sources: []")).toThrow(/sources: expected a non-empty list/);
    expect(reg("{}")).toThrow(/models: expected a non-empty list/);
    expect(reg("sources: [{hub: {author: acme}}]\ndrift: false")().drift).toMatchObject({ enabled: false });
    expect(reg("sources: [{hub: {author: acme}}]\ndrift: {k: 2, angle: 30}")().drift).toEqual({ enabled: true, k: 2, angleDegrees: 30, share: 0.25, severity: "medium" });
  });
});

describe("runs over time", () => {
  let root: string;
  let reg: string;
  beforeAll(() => {
    root = join(dir, "runs");
    baseFolder(join(root, "models", "base"));
    adapterFolder(join(root, "adapters", "a"));
    adapterFolder(join(root, "adapters", "b"));
    mkdirSync(join(root, "adapters", "broken"));
    reg = join(root, "registry.yml");
    writeFileSync(reg, `defaults: {base: models/base}\nsources:\n  - local: {glob: "adapters/*"}\ndrift: {angle: 30, share: 0.5, severity: high}\n`);
  });
  const state = () => join(root, "state");
  const plan = async (opts: { all?: boolean; maxJobs?: number } = {}) => planSweep(loadRegistry(reg), { cwd: root, state: await loadState(state()), ...opts });

  it("audits what is new, records it, and then skips it while nothing changed", async () => {
    const p1 = await plan();
    expect(p1.jobs).toEqual(["a", "b"]);
    const reports = join(root, "r1");
    await writeJob(reports, p1, "a", { deg: 0, findings: [finding("banana", "low")], conclusion: "pass" });
    await writeJob(reports, p1, "b", { deg: 0 });
    const site = join(root, "site1");
    const index = await collectSweep(reports, site, { plan: p1, stateDir: state(), now: new Date("2026-01-05T00:00:00Z") });
    const m = byName(index);
    expect(m.a).toMatchObject({ conclusion: "pass", revision: p1.models[0]!.key.revision, lastAudited: "2026-01-05T00:00:00.000Z", report: "reports/a/report.json", html: "reports/a/report.html" });
    expect(m.a!.findings.low).toBe(1);
    expect(m.a!.stableRank).toEqual({ median: 1.5, p10: 1.2, p90: 2 });
    expect(m.broken).toMatchObject({ conclusion: "neutral" });
    expect(m.broken!.reason).toMatch(/neither a PEFT adapter/);
    expect(index.summary).toEqual({ pass: 2, fail: 0, neutral: 1, missing: 0 });
    // the published site: index files, one badge per model, each model's readable report, no directions
    expect(readdirSync(site).sort()).toEqual(["badges", "index.html", "index.json", "index.md", "reports"]);
    expect(readdirSync(join(site, "reports", "a")).sort()).toEqual(["report.html", "report.json"]);
    expect(readJson(join(site, "badges", "a.json"))).toEqual({ schemaVersion: 1, label: "a", message: "pass", color: "brightgreen" });
    expect(readJson(join(site, "badges", "broken.json"))).toMatchObject({ message: "inconclusive", color: "lightgrey" });
    expect(readFileSync(join(site, "index.html"), "utf8")).toContain(INDEX_CSP);

    const st = readJson(join(state(), STATE_FILE));
    expect(st.schemaVersion).toBe(1);
    expect(st.models.a).toMatchObject({ source: "sources[0].local", kind: "lora", firstSeen: "2026-01-05T00:00:00.000Z", audited: p1.models[0]!.key });
    expect(st.models.a.directions).toMatch(/^directions\/a-[0-9a-f]{12}\.safetensors$/);
    expect(existsSync(join(state(), st.models.a.directions))).toBe(true);
    expect(st.models.a.history).toHaveLength(1);

    const p2 = await plan();
    expect(p2.jobs).toEqual([]);
    expect(p2.models.every((x) => x.change === undefined)).toBe(true);
    expect((await plan({ all: true })).jobs).toEqual(["a", "b"]);
  });

  it("audits again when the revision, the base, the policy or delta-audit changed", async () => {
    writeFileSync(join(root, "adapters", "a", "adapter_model.safetensors"), "weights-2");
    let p = await plan();
    expect(p.jobs).toEqual(["a"]);
    expect(p.models.find((x) => x.name === "a")!.change).toMatch(/^revision [0-9a-f]{12} → [0-9a-f]{12}$/);
    writeFileSync(join(root, "adapters", "a", "adapter_model.safetensors"), "weights-1");
    expect((await plan()).jobs).toEqual([]);

    writeFileSync(join(root, "models", "base", "model.safetensors"), "base-2");
    p = await plan();
    expect(p.jobs).toEqual(["a", "b"]);
    expect(p.models[0]!.change).toMatch(/^base revision/);
    writeFileSync(join(root, "models", "base", "model.safetensors"), "base-1");

    writeFileSync(join(root, "policy.yml"), "fail-on: medium\n");
    writeFileSync(reg, `defaults: {base: models/base, config: policy.yml}\nsources:\n  - local: {glob: "adapters/*"}\ndrift: {angle: 30, share: 0.5, severity: high}\n`);
    p = await plan();
    expect(p.models.map((x) => x.change)).toEqual(["the policy changed", "the policy changed"]);
    expect(p.models[0]!.config).toBe("policy.yml");
    writeFileSync(reg, `defaults: {base: models/base}\nsources:\n  - local: {glob: "adapters/*"}\ndrift: {angle: 30, share: 0.5, severity: high}\n`);

    const st = readJson(join(state(), STATE_FILE));
    st.models.b.audited.toolVersion = "0.0.1";
    writeFileSync(join(state(), STATE_FILE), JSON.stringify(st));
    p = await plan();
    expect(p.jobs).toEqual(["b"]);
    expect(p.models[1]!.change).toBe(`delta-audit 0.0.1 → ${VERSION}`);
    st.models.b.audited.toolVersion = VERSION;
    writeFileSync(join(state(), STATE_FILE), JSON.stringify(st));
  });

  it("chunks the matrix: the rest is pending in the state, and first next run", async () => {
    writeFileSync(join(root, "adapters", "a", "adapter_model.safetensors"), "weights-3");
    writeFileSync(join(root, "adapters", "b", "adapter_model.safetensors"), "weights-3b");
    const p = await plan({ maxJobs: 1 });
    expect(p.jobs).toEqual(["a"]);
    expect(p.pending).toEqual(["b"]);
    const reports = join(root, "r2");
    // a's audit could not run: sweep run left only sweep-job.json with the reason
    await writeJob(reports, p, "a", { status: "error", error: "model 'a' base: Hub model 'x/y' needs access (HTTP 401)", noReport: true });
    const index = await collectSweep(reports, join(root, "site2"), { plan: p, stateDir: state(), previous: join(root, "site1"), now: new Date("2026-01-12T00:00:00Z") });
    const m = byName(index);
    expect(m.a).toMatchObject({ conclusion: "neutral", reason: "model 'a' base: Hub model 'x/y' needs access (HTTP 401)" });
    // its last report stays published, marked by the reason
    expect(m.a!.report).toBe("reports/a/report.json");
    // b's verdict stands for its old revision while its update waits
    expect(m.b).toMatchObject({ conclusion: "pass" });
    expect(m.b!.reason).toMatch(/^update pending \(revision/);
    expect(m.b!.report).toBe("reports/b/report.json");
    const st = await loadState(state());
    expect(st.models.b!.pending).toEqual({ since: "2026-01-12T00:00:00.000Z", reason: expect.stringMatching(/^revision/) });
    expect(st.models.a!.history.at(-1)).toMatchObject({ outcome: "failed", conclusion: "neutral" });

    // next run: the pending model first, then the one whose audit did not complete
    const next = await plan({ maxJobs: 1 });
    expect(next.jobs).toEqual(["b"]);
    expect(next.pending).toEqual(["a"]);
    expect(next.models.find((x) => x.name === "a")!.change).toMatch(/^the last audit did not complete: model 'a' base/);
  });

  it("a planned job that left nothing is missing, with the reason", async () => {
    const p = await plan();
    const reports = join(root, "r3");
    mkdirSync(reports, { recursive: true });
    await writeJob(reports, p, "b", { deg: 0 });
    const index = await collectSweep(reports, join(root, "site3"), { plan: p, stateDir: state(), previous: join(root, "site2"), now: new Date("2026-01-19T00:00:00Z") });
    expect(byName(index).a).toMatchObject({ conclusion: "missing", reason: NO_REPORT_REASON });
    expect(readJson(join(root, "site3", "badges", "a.json"))).toMatchObject({ message: "no report" });
    expect(byName(index).b).toMatchObject({ conclusion: "pass" });
    expect(byName(index).b!.reason).toBeUndefined();
    expect((await loadState(state())).models.b!.pending).toBeUndefined();
  });

  it("compares an update with the last audit: rotated directions and a changed finding are drift", async () => {
    const p = await plan();
    expect(p.jobs).toEqual(["a"]);
    const reports = join(root, "r4");
    await writeJob(reports, p, "a", { deg: 70, findings: [finding("pineapple", "medium")], conclusion: "pass" });
    const before = (await loadState(state())).models.a!.directions!;
    const index = await collectSweep(reports, join(root, "site4"), { plan: p, stateDir: state(), previous: join(root, "site3"), now: new Date("2026-01-26T00:00:00Z") });
    const a = byName(index).a!;
    expect(a.drift).toMatchObject({ compared: 1, rotated: 1, share: 1, newFindings: [{ key: "concealment:pineapple" }], vanishedFindings: [{ key: "concealment:banana" }] });
    expect(a.drift!.maxRotation).toBeCloseTo(70, 0);
    expect(a.drift!.finding).toMatchObject({ severity: "high" });
    // the drift finding (high) fails a report that passed at fail-on high
    expect(a.conclusion).toBe("fail");
    expect(a.findings).toMatchObject({ high: 1, medium: 1 });
    expect(readJson(join(root, "site4", "badges", "a.json"))).toMatchObject({ message: "fail (1 finding)", color: "red" });
    const drift = readJson(join(root, "site4", "reports", "a", "drift.json"));
    expect(drift.modules[0]).toMatchObject({ name: "model.layers.0.self_attn.q_proj" });
    expect(drift.modules[0].anglesU[0]).toBeCloseTo(70, 0);
    // verdicts over time, oldest first
    expect(a.history!.map((h) => h.conclusion)).toEqual(["pass", "neutral", "missing", "fail"]);
    // the state keeps only the directions it names
    const st = await loadState(state());
    expect(st.models.a!.directions).not.toBe(before);
    expect(existsSync(join(state(), before))).toBe(false);
    expect(existsSync(join(state(), st.models.a!.directions!))).toBe(true);
    expect(readFileSync(join(root, "site4", "index.md"), "utf8")).toMatch(/\| a \| ❌ fail \|.*\| high: drift; 1\/1 modules turned, max 70\.0° \|/);
  });

  it("publishes only regular files from the previous site: a committed link is not followed", async () => {
    const prev = join(root, "site-links");
    mkdirSync(join(prev, "reports", "b"), { recursive: true });
    writeFileSync(join(root, "secret.txt"), "runner secret");
    writeFileSync(join(prev, "reports", "b", "report.json"), "{}");
    symlinkSync(join(root, "secret.txt"), join(prev, "reports", "b", "report.html"));
    const p = await plan();
    mkdirSync(join(root, "r-empty"), { recursive: true });
    await collectSweep(join(root, "r-empty"), join(root, "site-links-out"), { plan: p, previous: prev });
    expect(readdirSync(join(root, "site-links-out", "reports", "b"))).toEqual(["report.json"]);
  });

  it("refuses a state folder that is not one, naming the key, and writes nothing", async () => {
    const bad = join(root, "bad-state");
    mkdirSync(bad, { recursive: true });
    const write = (v: unknown) => writeFileSync(join(bad, STATE_FILE), JSON.stringify(v));
    const base = { schemaVersion: 1, tool: { name: "delta-audit", version: VERSION }, updatedAt: "x", models: {} as Record<string, unknown> };
    write({ ...base, schemaVersion: 9 });
    await expect(loadState(bad)).rejects.toThrow(/state\.json: schemaVersion: expected 1, got 9/);
    write({ ...base, models: { a: { source: "s", firstSeen: "x", lastSeen: "x", history: [], directions: "../../etc/passwd" } } });
    await expect(loadState(bad)).rejects.toThrow(/models\.a\.directions: expected directions\/<model>-<hash>\.safetensors/);
    write({ ...base, models: { "../x": { source: "s", firstSeen: "x", lastSeen: "x", history: [] } } });
    await expect(loadState(bad)).rejects.toThrow(/models\.\.\.\/x: is not a model name/);
    write({ ...base, models: { a: { source: "s", firstSeen: "x", lastSeen: "x", history: [{ at: "x", outcome: "won", conclusion: "pass" }] } } });
    const err = await loadState(bad).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toMatch(/models\.a\.history\[0\]\.outcome: expected one of audited, failed, missing, skipped, got "won"/);
    const p = await plan();
    await expect(collectSweep(join(root, "r4"), join(root, "site-bad"), { plan: p, stateDir: bad })).rejects.toBeInstanceOf(InputError);
    expect(existsSync(join(root, "site-bad"))).toBe(false);
  });
});
