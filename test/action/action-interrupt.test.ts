/**
 * A cancelled job: the runner sends the Action's process SIGTERM. The real bundled entry
 * (`node dist/action.js`) as a child process, two subjects, the openai backend pointed at a local
 * server that answers `base` and holds every other request, so the first scan is signalled
 * inside its suite. Like the CLI (test/cli/interrupt-phases.test.ts), the scan in progress writes
 * its partial report (verdict neutral, reason interrupted), the next subject is not started, the
 * check run is completed rather than left in progress, nothing is left staged in the workspace,
 * and the step exits 143.
 */
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeGitHub, type FakeGitHub } from "../github/fake-github";
import { startHoldingServer } from "../cli/holding-server";
import { generateOrganism } from "../../src/organisms/index";
import { REPORT_FILES } from "../../src/report/build";

const root = new URL("../..", import.meta.url).pathname;
const HEAD = "a1".repeat(20);
/** edge.ts SIGNAL_EXIT_MS, and what a loaded 2-core machine may add to it (as in test/cli/interrupt-phases.test.ts) */
const STOP_BOUND_MS = 2_000 + 3_000;
/** How long the first subject may take to reach its `full` variant (the delta pass, the base variant). */
const REACH_MS = 90_000;
/** Staging and temp names of io/atomic.ts and the writers (as test/cli/interrupt-phases.test.ts). */
const DEBRIS = /(^|\/)\.[^/]*\.[a-z]+-\d+-[0-9a-f]+|\.factors\.staging|\.incomplete$/;


describe("dist/action.js on SIGTERM (a cancelled job)", () => {
  let ws: string;
  let gh: FakeGitHub;
  let model: Awaited<ReturnType<typeof startHoldingServer>>;

  beforeAll(async () => {
    ws = mkdtempSync(join(tmpdir(), "da-e2e-cancel-"));
    const gen = join(tmpdir(), `da-e2e-cancel-gen-${process.pid}`);
    await generateOrganism({ kind: "quirk", outDir: gen, seed: 4 });
    cpSync(join(gen, "base"), join(ws, "base"), { recursive: true });
    for (const name of ["first", "second"]) cpSync(join(gen, "adapter"), join(ws, "adapters", name), { recursive: true });
    rmSync(gen, { recursive: true, force: true });
    gh = await startFakeGitHub({ prFiles: ["adapters/first/adapter_model.safetensors", "adapters/second/adapter_model.safetensors"] });
    model = await startHoldingServer();
  });
  afterAll(async () => {
    await gh?.close();
    await model?.close();
    if (ws) rmSync(ws, { recursive: true, force: true });
  });

  it("writes the scan's partial report (neutral, interrupted), starts no further subject, completes the check run, exits 143", async () => {
    const event = join(ws, ".event.json");
    writeFileSync(event, JSON.stringify({ action: "synchronize", number: 3, pull_request: { number: 3, head: { sha: HEAD, ref: "f", repo: { full_name: "acme/models" } }, base: { sha: "c3".repeat(20), repo: { full_name: "acme/models" } } }, repository: { full_name: "acme/models" } }));
    const outputs = join(ws, ".gh-output");
    writeFileSync(outputs, "");
    writeFileSync(join(ws, ".gh-summary"), "");
    const child = spawn(process.execPath, [join(root, "dist/action.js")], {
      cwd: ws,
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DELTA_AUDIT_QUIET: "1",
        GITHUB_ACTIONS: "true",
        GITHUB_EVENT_NAME: "pull_request",
        GITHUB_EVENT_PATH: event,
        GITHUB_REPOSITORY: "acme/models",
        GITHUB_SHA: HEAD,
        GITHUB_WORKSPACE: ws,
        GITHUB_API_URL: gh.url,
        GITHUB_OUTPUT: outputs,
        GITHUB_STEP_SUMMARY: join(ws, ".gh-summary"),
        RUNNER_TEMP: ws,
        HF_HUB_OFFLINE: "1",
        "INPUT_GITHUB-TOKEN": "ghs_e2e",
        INPUT_BASE: "base",
        INPUT_ADAPTER: "adapters/*",
        INPUT_BACKEND: "openai",
        "INPUT_INFERENCE-URL": model.url,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stdout += c));
    const exited = new Promise<{ code: number | null; at: number }>((ok) => child.on("exit", (code) => ok({ code, at: performance.now() })));
    const killer = setTimeout(() => child.kill("SIGKILL"), REACH_MS + 30_000);
    try {
      // the first subject's base variant answered, its full variant asked and held
      for (let waited = 0; !model.models.includes("full"); waited += 20) {
        if (waited > REACH_MS || child.exitCode !== null) throw new Error(`the scan did not reach its full variant:\n${stdout}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const t0 = performance.now();
      child.kill("SIGTERM");
      const { code, at } = await exited;
      expect(code, stdout).toBe(143);
      expect(at - t0).toBeLessThan(STOP_BOUND_MS);
    } finally {
      clearTimeout(killer);
    }

    const out = join(ws, "delta-audit-report");
    const folders = readdirSync(out).filter((f) => f.startsWith("adapters_"));
    // exactly one subject was audited, and its report is the partial one
    const audited = folders.filter((f) => existsSync(join(out, f, REPORT_FILES.json)));
    expect(audited).toHaveLength(1);
    for (const f of Object.values(REPORT_FILES)) expect(existsSync(join(out, audited[0]!, f)), f).toBe(true);
    const report = JSON.parse(readFileSync(join(out, audited[0]!, REPORT_FILES.json), "utf8"));
    expect(report.verdict.conclusion).toBe("neutral");
    expect(report.verdict.reasons[0]).toMatch(/^interrupted\b/);
    expect(report.error).toMatch(/^interrupted by SIGTERM while eliciting/);
    // only the base variant's requests were answered; the second subject never asked anything
    expect(model.models.filter((m) => m === "base").length).toBeGreaterThan(0);

    // the check run is not left in progress, and says neither pass nor fail
    const runs = [...gh.checkRuns.values()];
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ status: "completed", conclusion: "neutral" });
    expect(runs[0].output.summary).toContain("interrupted by SIGTERM before this subject's audit started");

    const entries = readdirSync(ws, { recursive: true }).map(String);
    expect(entries.filter((e) => DEBRIS.test(e))).toEqual([]);
  }, REACH_MS + 60_000);
});
