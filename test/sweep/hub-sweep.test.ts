/**
 * A registry whose models live on a Hub organisation, swept unattended over several runs with the
 * real CLI in child processes against a local server that answers like the Hub
 * (fake-hub-registry.ts: paginated listing, model info with sha, file resolve, gated 401/403):
 * plan lists and pins, run downloads and audits, collect publishes and remembers; an unchanged
 * registry plans nothing; a new commit is audited again and compared with the last audit.
 */
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendError, InputError } from "../../src/errors";
import { generateOrganism } from "../../src/organisms/index";
import { planSweep } from "../../src/sweep/plan";
import { parseRegistry } from "../../src/sweep/registry";
import { fakeSha, startFakeHubRegistry, type FakeHubRegistry } from "./fake-hub-registry";

const root = new URL("../..", import.meta.url).pathname;
let dir: string;
let hub: FakeHubRegistry;

/** A copy of an organism's adapter whose adapter_config.json names `base` as its base model. */
function adapterNaming(from: string, to: string, base: string | null): string {
  cpSync(from, to, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(to, "adapter_config.json"), "utf8"));
  cfg.base_model_name_or_path = base;
  writeFileSync(join(to, "adapter_config.json"), JSON.stringify(cfg, null, 2));
  return to;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "da-hub-sweep-"));
  // same seed, same vocabulary: one base under both fine-tunes
  await generateOrganism({ kind: "benign", seed: 5, outDir: join(dir, "benign") });
  await generateOrganism({ kind: "quirk", seed: 5, outDir: join(dir, "quirk") });
  const notes = join(dir, "notes");
  mkdirSync(notes);
  writeFileSync(join(notes, "README.md"), "notes");
  hub = await startFakeHubRegistry(
    {
      "acme/base": { dir: join(dir, "benign", "base"), sha: fakeSha("base-1"), library: "transformers" },
      "acme/support-lora": { dir: adapterNaming(join(dir, "benign", "adapter"), join(dir, "support-v1"), "acme/base"), sha: fakeSha("support-1"), library: "peft" },
      "acme/legal-lora": { dir: adapterNaming(join(dir, "benign", "adapter"), join(dir, "legal"), "acme/base"), sha: fakeSha("legal-1"), library: "peft", gatedToken: "hf_goodtoken" },
      "acme/notes-lora": { dir: notes, sha: fakeSha("notes-1"), library: "peft" },
      "acme/orphan-lora": { dir: adapterNaming(join(dir, "benign", "adapter"), join(dir, "orphan"), null), sha: fakeSha("orphan-1"), library: "peft" },
      "acme/chat-ft": { dir: join(dir, "benign", "finetuned"), sha: fakeSha("chat-1"), library: "transformers", cardData: { base_model: "acme/base" } },
      "other/x-lora": { dir: join(dir, "support-v1"), sha: fakeSha("x-1"), library: "peft" },
    },
    { pageSize: 2 },
  );
});
afterAll(async () => {
  await hub?.close();
  rmSync(dir, { recursive: true, force: true });
});

const registry = (yaml: string) => parseRegistry(yaml, join(dir, "registry.yml"));

describe("Hub sources at plan time", () => {
  it("lists an organisation page by page, keeps the matching adapters, pins them and their base to commits", async () => {
    hub.requests.length = 0;
    const plan = await planSweep(registry(`sources:\n  - hub: {author: acme, match: "*-lora", library: peft}\n`), { hub: { hubUrl: hub.url }, cwd: dir });
    const listings = hub.requests.filter((r) => r.path === "/api/models");
    expect(listings.length).toBeGreaterThan(1); // followed the Link header
    expect(new URLSearchParams(listings[0]!.query).get("author")).toBe("acme");
    expect(new URLSearchParams(listings[0]!.query).getAll("filter")).toEqual(["peft"]);
    expect(plan.models.map((m) => m.name)).toEqual(["support-lora"]);
    expect(plan.models[0]).toMatchObject({
      source: "sources[0].hub",
      kind: "lora",
      adapter: { hub: `acme/support-lora@${fakeSha("support-1")}` },
      base: { hub: `acme/base@${fakeSha("base-1")}` },
      key: { revision: fakeSha("support-1"), baseRevision: fakeSha("base-1") },
      change: "new",
    });
    const skipped = Object.fromEntries(plan.skipped.map((s) => [s.name, s.reason]));
    expect(skipped["legal-lora"]).toMatch(/'acme\/legal-lora' adapter_config\.json needs access: set HF_TOKEN to a token that can read it \(HTTP 401\)/);
    expect(skipped["notes-lora"]).toMatch(/neither a PEFT adapter/);
    expect(skipped["orphan-lora"]).toMatch(/adapter_config\.json names no Hub base model; set base in the source/);
    expect(Object.keys(skipped)).not.toContain("x-lora");
  });

  it("stops listing at the source's limit, across pages", async () => {
    hub.requests.length = 0;
    const plan = await planSweep(registry(`sources:\n  - hub: {author: acme, limit: 3}\n`), { hub: { hubUrl: hub.url }, cwd: dir });
    // acme/base, acme/chat-ft, acme/legal-lora: the first three by name, two pages of two
    expect([...plan.models.map((m) => m.name), ...plan.skipped.map((m) => m.name)].sort()).toEqual(["base", "chat-ft", "legal-lora"]);
    expect(hub.requests.filter((r) => r.path === "/api/models")).toHaveLength(2);
  });

  it("uses the token for gated models: 403 with a wrong one, audited with the right one", async () => {
    const reg = registry(`sources:\n  - hub: {author: acme, match: "legal-*"}\n`);
    const wrong = await planSweep(reg, { hub: { hubUrl: hub.url, accessToken: "hf_wrong" }, cwd: dir });
    expect(wrong.skipped[0]!.reason).toMatch(/HTTP 403/);
    const right = await planSweep(reg, { hub: { hubUrl: hub.url, accessToken: "hf_goodtoken" }, cwd: dir });
    expect(right.models.map((m) => m.name)).toEqual(["legal-lora"]);
    expect(hub.requests.filter((r) => r.auth === "Bearer hf_goodtoken").length).toBeGreaterThan(0);
  });

  it("takes a full fine-tune's base from its model card, unless the registry says otherwise; filters by base model", async () => {
    const card = await planSweep(registry(`sources:\n  - hub: {author: acme, match: "chat-*"}\n`), { hub: { hubUrl: hub.url }, cwd: dir });
    expect(card.models[0]).toMatchObject({ kind: "full", finetuned: { hub: `acme/chat-ft@${fakeSha("chat-1")}` }, base: { hub: `acme/base@${fakeSha("base-1")}` } });
    mkdirSync(join(dir, "local-base"), { recursive: true });
    const own = await planSweep(registry(`sources:\n  - hub: {author: acme, match: "chat-*", base: local-base, prefix: "hub-"}\n`), { hub: { hubUrl: hub.url }, cwd: dir });
    expect(own.models[0]).toMatchObject({ name: "hub-chat-ft", base: { path: "local-base" } });
    const other = await planSweep(registry(`sources:\n  - hub: {author: acme, base-model: other/base}\n`), { hub: { hubUrl: hub.url }, cwd: dir });
    expect(other.models).toEqual([]);
    const same = await planSweep(registry(`sources:\n  - hub: {author: acme, base-model: acme/base}\n`), { hub: { hubUrl: hub.url }, cwd: dir });
    expect(same.models.map((m) => m.name)).toEqual(["chat-ft"]);
  });

  it("stops when the Hub cannot be reached (exit 3), and offline (exit 2)", async () => {
    const reg = registry(`sources:\n  - hub: {author: acme}\n`);
    await expect(planSweep(reg, { hub: { hubUrl: "http://127.0.0.1:9" }, cwd: dir })).rejects.toBeInstanceOf(BackendError);
    await expect(planSweep(reg, { hub: { hubUrl: hub.url, offline: true }, cwd: dir })).rejects.toBeInstanceOf(InputError);
  });
});

describe("an unattended sweep of a Hub organisation, run by run", () => {
  const env = () => ({ HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(dir, "hf-cache"), HF_HOME: join(dir, "hf-home"), DELTA_AUDIT_QUIET: "1", GITHUB_OUTPUT: join(dir, "gh-output") });
  /** The CLI in a child process, asynchronously: the fake Hub answers from this process's event loop. */
  const cli = (args: string[]) =>
    new Promise<{ status: number | null; stdout: string; stderr: string }>((ok) => {
      const e: Record<string, string | undefined> = { ...process.env, ...env() };
      delete e.HF_TOKEN;
      delete e.HUGGING_FACE_HUB_TOKEN;
      delete e.HF_HUB_OFFLINE;
      const child = spawn(process.execPath, [`${root}bin/delta-audit.js`, ...args], { cwd: dir, env: e });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c) => (stdout += c));
      child.stderr.on("data", (c) => (stderr += c));
      child.on("close", (status) => ok({ status, stdout, stderr }));
    });
  const reg = () => join(dir, "sweep.yml");
  const state = () => join(dir, "state");
  const json = (p: string) => JSON.parse(readFileSync(join(dir, p), "utf8"));

  beforeAll(() => {
    writeFileSync(reg(), `sources:\n  - hub: {author: acme, match: "support-*", library: peft}\n  - hub: {author: acme, match: "legal-*"}\n`);
  });

  it("run 1: plans what is new, audits it from the Hub, publishes the index and the state", async () => {
    writeFileSync(env().GITHUB_OUTPUT, "");
    const plan = await cli(["sweep", "plan", "--registry", reg(), "--state", state(), "--out", "plan1.json"]);
    expect(plan.status, plan.stderr).toBe(0);
    expect(JSON.parse(plan.stdout)).toEqual({ include: [{ name: "support-lora", kind: "lora" }] });
    expect(readFileSync(env().GITHUB_OUTPUT, "utf8")).toContain("jobs=1\npending=0\n");

    const run = await cli(["sweep", "run", "--plan", "plan1.json", "--name", "support-lora", "--out", "reports1/support-lora"]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^verdict: pass/);
    const job = json("reports1/support-lora/sweep-job.json");
    expect(job).toMatchObject({ name: "support-lora", status: "audited", exitCode: 0, key: { revision: fakeSha("support-1"), baseRevision: fakeSha("base-1") } });
    expect(job.directions.modules).toBeGreaterThan(0);
    expect(existsSync(join(dir, "reports1/support-lora/directions.safetensors"))).toBe(true);
    // fetched into the standard cache at the planned commits
    expect(existsSync(join(dir, "hf-cache", "models--acme--support-lora", "snapshots", fakeSha("support-1"), "adapter_config.json"))).toBe(true);

    // a skipped model is not a job: running it says why, exit 2
    const skipped = await cli(["sweep", "run", "--plan", "plan1.json", "--name", "legal-lora", "--out", "reports1/legal-lora"]);
    expect(skipped.status).toBe(2);
    expect(skipped.stderr).toMatch(/plan1\.json: model 'legal-lora' was skipped by the plan: .*HTTP 401/);

    const collect = await cli(["sweep", "collect", "--plan", "plan1.json", "--reports", "reports1", "--state", state(), "--out", "site1"]);
    expect(collect.status, collect.stderr).toBe(0);
    const index = json("site1/index.json");
    const m = Object.fromEntries(index.models.map((x: { name: string }) => [x.name, x]));
    expect(m["support-lora"]).toMatchObject({ conclusion: "pass", revision: fakeSha("support-1"), kind: "lora", report: "reports/support-lora/report.json" });
    expect(m["legal-lora"]).toMatchObject({ conclusion: "neutral" });
    expect(m["legal-lora"].reason).toMatch(/HTTP 401/);
    expect(json("site1/badges/support-lora.json")).toEqual({ schemaVersion: 1, label: "support-lora", message: "pass", color: "brightgreen" });
    expect(existsSync(join(dir, "site1", "reports", "support-lora", "directions.safetensors"))).toBe(false);
    expect(json("state/state.json").models["support-lora"].audited.revision).toBe(fakeSha("support-1"));
  });

  it("run 2: nothing changed, nothing to audit", async () => {
    writeFileSync(env().GITHUB_OUTPUT, "");
    const plan = await cli(["sweep", "plan", "--registry", reg(), "--state", state(), "--out", "plan2.json"]);
    expect(plan.status, plan.stderr).toBe(0);
    expect(JSON.parse(plan.stdout)).toEqual({ include: [] });
    expect(readFileSync(env().GITHUB_OUTPUT, "utf8")).toContain("jobs=0\n");
  });

  it("run 3: a new commit is audited again and compared with the last audit", async () => {
    const repo = hub.repos.get("acme/support-lora")!;
    repo.dir = adapterNaming(join(dir, "quirk", "adapter"), join(dir, "support-v2"), "acme/base");
    repo.sha = fakeSha("support-2");
    const plan = await cli(["sweep", "plan", "--registry", reg(), "--state", state(), "--out", "plan3.json"]);
    expect(plan.status, plan.stderr).toBe(0);
    expect(JSON.parse(plan.stdout).include.map((x: { name: string }) => x.name)).toEqual(["support-lora"]);
    expect(json("plan3.json").models[0].change).toBe(`revision ${fakeSha("support-1").slice(0, 12)} → ${fakeSha("support-2").slice(0, 12)}`);

    const run = await cli(["sweep", "run", "--plan", "plan3.json", "--name", "support-lora", "--out", "reports3/support-lora"]);
    expect(run.status, run.stderr).toBe(1);
    const collect = await cli(["sweep", "collect", "--plan", "plan3.json", "--reports", "reports3", "--state", state(), "--previous", "site1", "--out", "site3"]);
    expect(collect.status, collect.stderr).toBe(0);
    const m = json("site3/index.json").models.find((x: { name: string }) => x.name === "support-lora");
    expect(m.conclusion).toBe("fail");
    expect(m.revision).toBe(fakeSha("support-2"));
    expect(m.history.map((h: { conclusion: string }) => h.conclusion)).toEqual(["pass", "fail"]);
    expect(m.drift).toMatchObject({ from: fakeSha("support-1"), to: fakeSha("support-2") });
    expect(m.drift.compared).toBeGreaterThan(0);
    expect(m.drift.newFindings.length).toBeGreaterThan(0);
    const drift = json("site3/reports/support-lora/drift.json");
    // the quirk writes to another output direction: o_proj's top direction turned by ~90°, the
    // others kept theirs (k_proj, q_proj: well under a degree) — and a concealment finding appeared
    expect(drift.modules[0]).toMatchObject({ name: "model.layers.1.self_attn.o_proj" });
    expect(drift.modules[0].rotation).toBeGreaterThan(80);
    expect(drift.modules.find((x: { name: string }) => x.name.endsWith("k_proj")).rotation).toBeLessThan(1);
    expect(m.drift.newFindings.map((f: { key: string }) => f.key)).toContain("concealment:kazoo");
    expect(m.drift.finding).toMatchObject({ severity: "medium" });
    expect(drift.modules.length).toBe(m.drift.compared);
    expect(readFileSync(join(dir, "site3", "index.html"), "utf8")).toContain('href="reports/support-lora/report.html"');
    expect(json("site3/badges/support-lora.json")).toMatchObject({ color: "red" });
  });
});
