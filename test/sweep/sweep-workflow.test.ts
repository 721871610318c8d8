/**
 * .github/workflows/sweep.yml, the example a registry team copies: read with the `yaml` package
 * (triggers, permissions, the matrix from the plan's outputs, max-parallel, the Hugging Face
 * cache, the published CLI rather than a checkout of delta-audit) and then run for real, twice:
 * every job's shell steps with bash, in a fresh clone of a bare repository standing in for
 * GitHub, `npx` standing in for the npm registry with this checkout's CLI, and the artifact
 * actions copying folders between jobs. The first run audits a registry of local adapters and
 * publishes gh-pages and the state branch; the second audits only the adapter that changed,
 * keeps the other's report from gh-pages, and reports the update's drift.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism } from "../../src/organisms/index";
import { hubCacheDir } from "../../src/io/hub";
import { MAX_MATRIX_JOBS } from "../../src/sweep/registry";
import { SWEEP_BADGE_FILE } from "../../src/sweep/collect";
import { readWorkflow, type WorkflowStep } from "../github/workflow-file";

const root = fileURLToPath(new URL("../..", import.meta.url));

const workflow = readWorkflow("sweep.yml");
const steps = () => Object.values(workflow.jobs).flatMap((j) => j.steps);

describe("the example sweep workflow, as GitHub reads it", () => {
  it("runs weekly and by hand (with an --all switch), one run at a time", () => {
    expect(workflow.on.schedule?.[0]?.cron).toMatch(/^\S+ \S+ \S+ \S+ \S+$/);
    expect(workflow.on.workflow_dispatch?.inputs?.all).toMatchObject({ type: "boolean", default: false });
    // two runs would race for the state branch
    expect(workflow.concurrency).toMatchObject({ "cancel-in-progress": false });
    expect(workflow.concurrency?.group).toBeTruthy();
  });

  it("reads everywhere and writes only where it publishes", () => {
    expect(workflow.permissions).toEqual({ contents: "read" });
    const granted = Object.fromEntries(Object.entries(workflow.jobs).map(([name, job]) => [name, job.permissions]));
    expect(granted).toEqual({ plan: undefined, audit: undefined, collect: { contents: "write" } });
  });

  it("builds the matrix from the plan's outputs, skips it when empty, and bounds it", () => {
    const plan = workflow.jobs.plan!;
    expect(plan.steps.some((s) => s.id === "plan")).toBe(true);
    // the outputs the plan step writes: `enabled` by the script, the rest by `sweep plan` under GitHub Actions
    for (const v of Object.values(plan.outputs ?? {})) expect(v).toMatch(/^\$\{\{ steps\.plan\.outputs\.(enabled|matrix|jobs|pending) \}\}$/);
    expect(Object.keys(plan.outputs ?? {})).toEqual(expect.arrayContaining(["enabled", "matrix", "jobs"]));
    const audit = workflow.jobs.audit!;
    expect(audit.needs).toBe("plan");
    expect(audit.strategy?.matrix).toBe("${{ fromJSON(needs.plan.outputs.matrix) }}");
    expect(audit.strategy?.["fail-fast"]).toBe(false);
    const parallel = audit.strategy?.["max-parallel"];
    expect(Number.isInteger(parallel) && parallel! >= 1 && parallel! <= MAX_MATRIX_JOBS).toBe(true);
    // GitHub refuses an empty matrix: the job is skipped when nothing changed
    expect(audit.if).toBe("needs.plan.outputs.enabled == 'true' && needs.plan.outputs.jobs != '0'");
    const collect = workflow.jobs.collect!;
    expect(collect.needs).toEqual(["plan", "audit"]);
    // also after failed audits and a skipped matrix: the index and the state say why
    expect(collect.if).toBe("always() && needs.plan.outputs.enabled == 'true'");
  });

  it("uses the published CLI, never a checkout of delta-audit, and splices no expression into a script", () => {
    expect(workflow.env.DELTA_AUDIT).toMatch(/^delta-audit@\d+\.\d+\.\d+$/);
    for (const s of steps()) {
      expect(s.uses ?? "").not.toMatch(/^\.\//);
      if (s.uses?.startsWith("actions/checkout")) expect(s.with?.repository).toBeUndefined();
      if (!s.run) continue;
      expect(s.run, s.name).not.toContain("${{");
      for (const line of s.run.split("\n").filter((l) => /\bsweep (plan|run|collect)\b/.test(l))) expect(line).toMatch(/npx --yes --ignore-scripts "\$DELTA_AUDIT" sweep /);
    }
  });

  it("keeps the Hugging Face cache where the CLI looks for it", () => {
    const cache = workflow.jobs.audit!.steps.find((s) => s.uses?.startsWith("actions/cache"));
    expect(cache?.with?.path).toBe("~/.cache/huggingface/hub");
    expect(hubCacheDir({})).toBe(join(homedir(), ".cache", "huggingface", "hub"));
    expect(String(cache?.with?.key)).toContain("${{ matrix.name }}");
  });

  it("publishes the site to gh-pages before it commits the state", () => {
    expect(workflow.env.PAGES_BRANCH).toBe("gh-pages");
    const collect = workflow.jobs.collect!.steps;
    const publish = collect.findIndex((s) => s.run?.includes('refs/heads/$PAGES_BRANCH'));
    const state = collect.findIndex((s) => s.run?.includes('refs/heads/$STATE_BRANCH'));
    expect(publish).toBeGreaterThan(-1);
    expect(state).toBeGreaterThan(publish);
    // Jekyll would hide badges/_sweep.json
    expect(collect[publish]!.run).toContain(".nojekyll");
    expect(SWEEP_BADGE_FILE.startsWith("_")).toBe(true);
  });
});

// ------------------------------------------------------------------ the workflow, run for real

const GIT_ID = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"];
const git = (cwd: string, ...args: string[]) => {
  const r = spawnSync("git", [...GIT_ID, ...args], { cwd, encoding: "utf8", env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } });
  if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
};

/** The values the test gives the expressions in `env:` blocks (there are none in scripts). */
function expression(v: string, matrix: Record<string, string> | undefined): string {
  const known: Record<string, string> = {
    "${{ secrets.HF_TOKEN }}": "",
    "${{ inputs.all && '--all' || '' }}": "",
    "${{ matrix.name }}": matrix?.name ?? "",
  };
  if (!v.includes("${{")) return v;
  if (!(v in known)) throw new Error(`the test does not know the expression ${v}`);
  return known[v]!;
}

interface JobRun {
  outputs: Record<string, string>;
  failed: boolean;
  log: string;
}

class Runner {
  readonly origin: string;
  readonly artifacts: string;
  readonly bin: string;
  private jobs = 0;
  constructor(readonly work: string) {
    this.origin = join(work, "origin.git");
    this.artifacts = join(work, "artifacts");
    this.bin = join(work, "bin");
  }

  /** A fresh runner's checkout of the default branch. */
  private checkout(): string {
    const cwd = join(this.work, `job-${++this.jobs}`);
    git(this.work, "clone", "-q", "--depth=1", `file://${this.origin}`, cwd);
    return cwd;
  }

  private uses(step: WorkflowStep, cwd: string, matrix: Record<string, string> | undefined): void {
    const action = step.uses!.split("@")[0];
    // artifact names carry the matrix entry's name (`report-${{ matrix.name }}`)
    const w = Object.fromEntries(Object.entries(step.with ?? {}).map(([k, v]) => [k, typeof v === "string" ? v.replaceAll("${{ matrix.name }}", matrix?.name ?? "") : v]));
    if (action !== "actions/cache" && Object.values(w).some((v) => String(v).includes("${{"))) throw new Error(`the test does not know an expression in ${step.uses}: ${JSON.stringify(w)}`);
    if (action === "actions/upload-artifact") {
      const from = join(cwd, String(w.path));
      if (!existsSync(from)) return;
      const to = join(this.artifacts, String(w.name));
      rmSync(to, { recursive: true, force: true });
      // a folder's contents at the artifact's root, a file by its name, as upload-artifact stores them
      cpSync(from, String(w.path).endsWith("/") ? to : join(to, String(w.path)), { recursive: true });
    } else if (action === "actions/download-artifact") {
      const into = join(cwd, String(w.path ?? "."));
      const names = existsSync(this.artifacts) ? readdirSync(this.artifacts) : [];
      const chosen = w.name ? [String(w.name)] : names.filter((n) => new RegExp(`^${String(w.pattern).replace(/\*/g, ".*")}$`).test(n));
      if (w.name && !names.includes(String(w.name))) throw new Error(`no artifact ${w.name}`);
      for (const n of chosen) cpSync(join(this.artifacts, n), w["merge-multiple"] || w.name ? into : join(into, n), { recursive: true });
    } else if (!["actions/checkout", "actions/setup-node", "actions/cache"].includes(action!)) {
      throw new Error(`the test does not know ${step.uses}`);
    }
  }

  /** Run one job's steps in a fresh checkout; a failed step skips the rest but `if: always()` ones. */
  job(name: string, matrix?: Record<string, string>): JobRun {
    const job = workflow.jobs[name]!;
    const cwd = this.checkout();
    const outputFile = join(cwd, "..", `${name}-${this.jobs}.output`);
    const summary = join(this.work, "step-summary.md");
    const stepOutputs: Record<string, Record<string, string>> = {};
    let failed = false;
    let log = "";
    for (const step of job.steps) {
      if (failed && !step.if?.includes("always()")) continue;
      if (step.if === "steps.plan.outputs.enabled == 'true'" && stepOutputs.plan?.enabled !== "true") continue;
      if (step.uses) {
        this.uses(step, cwd, matrix);
        continue;
      }
      writeFileSync(outputFile, "");
      const env: Record<string, string> = {
        ...(process.env as Record<string, string>),
        PATH: `${this.bin}${delimiter}${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`,
        GITHUB_OUTPUT: outputFile,
        GITHUB_STEP_SUMMARY: summary,
        GITHUB_RUN_ID: String(this.jobs),
        GIT_TERMINAL_PROMPT: "0",
        DELTA_AUDIT_QUIET: "1",
        HF_HUB_CACHE: join(this.work, "hf-cache"),
      };
      for (const [k, v] of Object.entries({ ...workflow.env, ...step.env })) env[k] = expression(String(v), matrix);
      const r = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", step.run!], { cwd: join(cwd, step["working-directory"] ?? "."), encoding: "utf8", env });
      log += `## ${step.name ?? step.id ?? step.run!.slice(0, 40)} (exit ${r.status})\n${r.stdout}${r.stderr}`;
      if (step.id) stepOutputs[step.id] = Object.fromEntries(readFileSync(outputFile, "utf8").split("\n").filter(Boolean).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
      if (r.status !== 0) failed = true;
    }
    const outputs = Object.fromEntries(Object.entries(job.outputs ?? {}).map(([k, v]) => [k, stepOutputs.plan?.[/steps\.plan\.outputs\.(\w+)/.exec(v)![1]!] ?? ""]));
    return { outputs, failed, log };
  }

  /** One scheduled run: plan, the matrix (jobs in order, as max-parallel would run them), collect. */
  run(): { plan: JobRun; audits: Record<string, JobRun>; collect: JobRun } {
    rmSync(this.artifacts, { recursive: true, force: true });
    const plan = this.job("plan");
    if (plan.failed) throw new Error(plan.log);
    const audits: Record<string, JobRun> = {};
    if (plan.outputs.enabled === "true" && plan.outputs.jobs !== "0") {
      for (const entry of JSON.parse(plan.outputs.matrix!).include as Array<Record<string, string>>) audits[entry.name!] = this.job("audit", entry);
    }
    const collect = this.job("collect");
    if (collect.failed) throw new Error(collect.log);
    return { plan, audits, collect };
  }

  /** The files of a branch of the origin, read through a fresh clone. */
  branch(name: string): string {
    const to = join(this.work, `read-${name}-${++this.jobs}`);
    git(this.work, "clone", "-q", "--branch", name, `file://${this.origin}`, to);
    return to;
  }
}

describe("the example sweep workflow, run twice against a bare repository", () => {
  let runner: Runner;
  let org: string;
  beforeAll(async () => {
    const work = mkdtempSync(join(tmpdir(), "da-sweep-workflow-"));
    runner = new Runner(work);
    org = join(work, "organisms");
    // one base under both: a benign adapter now, the quirk's as the update
    await generateOrganism({ kind: "benign", seed: 5, outDir: join(org, "benign") });
    await generateOrganism({ kind: "quirk", seed: 5, outDir: join(org, "quirk") });

    // `npx --yes --ignore-scripts delta-audit@X …` → this checkout's CLI; anything else fails the step
    mkdirSync(runner.bin);
    writeFileSync(
      join(runner.bin, "npx"),
      `#!/usr/bin/env bash\n[ "$1" = --yes ] && [ "$2" = --ignore-scripts ] || { echo "npx: expected --yes --ignore-scripts, got $*" >&2; exit 90; }\ncase "$3" in delta-audit@*) ;; *) echo "npx: expected delta-audit@version, got $3" >&2; exit 91;; esac\nshift 3\nexec node "${root}bin/delta-audit.js" "$@"\n`,
    );
    chmodSync(join(runner.bin, "npx"), 0o755);

    const seed = join(work, "seed");
    mkdirSync(join(seed, ".github"), { recursive: true });
    cpSync(join(org, "benign", "base"), join(seed, "models", "base"), { recursive: true });
    cpSync(join(org, "benign", "adapter"), join(seed, "adapters", "support"), { recursive: true });
    cpSync(join(org, "benign", "adapter"), join(seed, "adapters", "legal"), { recursive: true });
    writeFileSync(join(seed, ".github", "delta-audit-sweep.yml"), `defaults: {base: ../models/base}\nsources:\n  - local: {glob: "../adapters/*"}\n`);
    git(work, "init", "-q", "--bare", "--initial-branch=main", runner.origin);
    git(seed, "init", "-q", "--initial-branch=main");
    git(seed, "add", "-A");
    git(seed, "commit", "-q", "-m", "registry");
    git(seed, "push", "-q", `file://${runner.origin}`, "main");
  });
  afterAll(() => rmSync(runner.work, { recursive: true, force: true }));

  it("run 1: audits every adapter, publishes gh-pages and commits the state branch", () => {
    const { plan, audits, collect } = runner.run();
    expect(plan.outputs).toMatchObject({ enabled: "true", jobs: "2" });
    expect(JSON.parse(plan.outputs.matrix!)).toEqual({ include: [{ name: "legal", kind: "lora" }, { name: "support", kind: "lora" }] });
    expect(Object.keys(audits)).toEqual(["legal", "support"]);
    for (const a of Object.values(audits)) expect(a.failed, a.log).toBe(false);
    expect(readFileSync(join(runner.work, "step-summary.md"), "utf8")).toMatch(/\| support \| ✅ pass \|/);

    const pages = runner.branch("gh-pages");
    expect(readdirSync(pages).sort()).toEqual([".git", ".nojekyll", "badges", "index.html", "index.json", "index.md", "reports"]);
    expect(JSON.parse(readFileSync(join(pages, "badges", "support.json"), "utf8"))).toEqual({ schemaVersion: 1, label: "support", message: "pass", color: "brightgreen" });
    expect(existsSync(join(pages, "badges", SWEEP_BADGE_FILE))).toBe(true);
    expect(existsSync(join(pages, "reports", "support", "report.html"))).toBe(true);
    const state = runner.branch("delta-audit-state");
    const st = JSON.parse(readFileSync(join(state, "state.json"), "utf8"));
    expect(Object.keys(st.models).sort()).toEqual(["legal", "support"]);
    expect(readdirSync(join(state, "directions"))).toHaveLength(2);
    expect(collect.failed).toBe(false);
  });

  it("the README's badge snippet points at the files the site holds", () => {
    const readme = readFileSync(join(root, "README.md"), "utf8");
    const m = /\[!\[delta-audit\]\(https:\/\/img\.shields\.io\/endpoint\?url=([^)]+)\)\]\(([^)]+)\)/.exec(readme);
    expect(m).not.toBeNull();
    const site = "https://my-org.github.io/my-registry/";
    const badge = decodeURIComponent(m![1]!);
    expect(badge.startsWith(site) && m![2]!.startsWith(site)).toBe(true);
    const pages = runner.branch("gh-pages");
    const local = (url: string) => join(pages, url.slice(site.length).replace("support-bot", "support"));
    expect(JSON.parse(readFileSync(local(badge), "utf8"))).toMatchObject({ schemaVersion: 1, label: "support" });
    expect(readFileSync(local(m![2]!), "utf8")).toMatch(/^<!doctype html>/i);
  });

  it("run 2: only the updated adapter is audited, the other keeps its report, the update's drift is reported", () => {
    const edit = join(runner.work, "edit");
    git(runner.work, "clone", "-q", `file://${runner.origin}`, edit);
    cpSync(join(org, "quirk", "adapter", "adapter_model.safetensors"), join(edit, "adapters", "support", "adapter_model.safetensors"));
    git(edit, "commit", "-q", "-am", "support v2");
    git(edit, "push", "-q", "origin", "main");

    const { plan, audits } = runner.run();
    expect(JSON.parse(plan.outputs.matrix!)).toEqual({ include: [{ name: "support", kind: "lora" }] });
    // the quirk fails its audit: the matrix job fails, its artifact is still uploaded and collected
    expect(audits.support!.failed).toBe(true);

    const pages = runner.branch("gh-pages");
    expect(git(pages, "rev-list", "--count", "HEAD").trim()).toBe("1");
    const index = JSON.parse(readFileSync(join(pages, "index.json"), "utf8"));
    const byName = Object.fromEntries(index.models.map((m: { name: string }) => [m.name, m]));
    expect(byName.legal).toMatchObject({ conclusion: "pass", report: "reports/legal/report.json" });
    expect(existsSync(join(pages, "reports", "legal", "report.html"))).toBe(true);
    expect(byName.support.conclusion).toBe("fail");
    expect(byName.support.history.map((h: { conclusion: string }) => h.conclusion)).toEqual(["pass", "fail"]);
    expect(byName.support.drift.finding).toMatchObject({ severity: "medium" });
    expect(JSON.parse(readFileSync(join(pages, "badges", "support.json"), "utf8"))).toMatchObject({ color: "red" });

    const state = runner.branch("delta-audit-state");
    expect(git(state, "rev-list", "--count", "HEAD").trim()).toBe("2");
    const st = JSON.parse(readFileSync(join(state, "state.json"), "utf8"));
    expect(st.models.support.history).toHaveLength(2);
    expect(st.models.legal.history).toHaveLength(1);
  });
});
