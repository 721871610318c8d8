/**
 * A cancelled CI job sends SIGTERM; a person presses Ctrl-C. `scan` builds its output in a
 * staging folder next to --out (io/atomic.ts); the signal must not leave that folder behind,
 * the exit code says which signal stopped the run (143 / 130, as a shell reports it), and a scan
 * stopped after its delta pass still writes what it measured: the partial report, verdict
 * neutral, reason interrupted (edge.ts, scan.ts).
 *
 * The scan runs on the openai backend against a local server that never answers, so it is
 * held inside its staging folder (the backend is created after the delta pass has filled it)
 * for as long as the test wants: no sleeping, no race with a fast or a loaded machine. The
 * other phases (the delta pass, the elicitation, spectrum, truncate, sweep run, a second signal)
 * are in test/cli/interrupt-phases.test.ts.
 */
import { spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism } from "../../src/organisms/index";
import { startFakeServer, type FakeServer } from "../backends/fake-openai-server";
import { REPORT_FILES } from "../../src/report/build";
import type { Report } from "../../src/report/types";
import { root } from "./helpers";

let dir: string;
let org: string;
let server: FakeServer | undefined;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-sec-signal-"));
  org = join(dir, "org");
  await generateOrganism({ kind: "quirk", outDir: org, seed: 5 });
});
afterEach(async () => {
  await server?.close();
  server = undefined;
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** How long the scan may take to reach its first backend request (a delta pass on a tiny organism). */
const REACH_BACKEND_MS = 60_000;
const POLL_MS = 20;

/**
 * Start a scan into `parent/out` on a server that holds every request, wait until the scan's
 * first request is held (its staging folder then exists and it cannot finish), send `signal`,
 * return the exit.
 */
async function interruptedScan(parent: string, signal: NodeJS.Signals): Promise<{ code: number | null; signal: string | null; stderr: string; stagedAtSignal: string[]; msAfterSignal: number }> {
  server = await startFakeServer();
  // every request the backend could make is held: model list, adapter loading, completions
  for (let i = 0; i < 50; i++) server.faults.push({ path: "/v1/models", fault: { hang: true } }, { path: "/v1/load_lora_adapter", fault: { hang: true } }, { fault: { hang: true } });
  const out = join(parent, "out");
  const child = spawn(
    process.execPath,
    [`${root}bin/delta-audit.js`, "scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--backend", "openai", "--inference-url", `${server.url}/v1`, "--out", out],
    { env: { ...process.env, DELTA_AUDIT_QUIET: "1" }, stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  child.stderr.on("data", (c) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: string | null }>((ok) => child.on("exit", (code, sig) => ok({ code, signal: sig })));
  let done = false;
  void exited.then(() => (done = true));
  const killer = setTimeout(() => child.kill("SIGKILL"), REACH_BACKEND_MS + 30_000);
  try {
    for (let waited = 0; server.requests.length === 0; waited += POLL_MS) {
      if (done) throw new Error(`the scan exited before reaching the backend: ${stderr}`);
      if (waited > REACH_BACKEND_MS) throw new Error(`the scan did not reach the backend in ${REACH_BACKEND_MS} ms: ${stderr}`);
      await new Promise((r) => setTimeout(r, POLL_MS));
    }
    const stagedAtSignal = readdirSync(parent);
    const t0 = Date.now();
    child.kill(signal);
    const r = await exited;
    return { ...r, stderr, stagedAtSignal, msAfterSignal: Date.now() - t0 };
  } finally {
    clearTimeout(killer);
    if (!done) child.kill("SIGKILL");
  }
}

/** The edge's bound on a signalled exit (edge.ts SIGNAL_EXIT_MS), and slack for a loaded 2-core machine. */
const STOP_BOUND_MS = 2_000;
const SLACK_MS = 1_500;

describe("a signal while the scan connects to its backend", () => {
  for (const [sig, exit] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
    it(`${sig}: the partial report replaces the staging folder, exit ${exit}`, async () => {
      const parent = join(dir, sig);
      await mkdir(parent);
      const r = await interruptedScan(parent, sig);
      // held on its first backend request, the scan was inside its staging folder and could not finish
      expect(r.stagedAtSignal).toHaveLength(1);
      expect(r.stagedAtSignal[0]).toMatch(/^\.out\.tmp-/);
      expect(r.signal, r.stderr).toBeNull();
      expect(r.code, r.stderr).toBe(exit);
      expect(r.msAfterSignal).toBeLessThan(STOP_BOUND_MS + SLACK_MS);
      // the spectrum was measured: it is reported, never passed
      expect(readdirSync(parent)).toEqual(["out"]);
      const out = join(parent, "out");
      expect(readdirSync(out)).toEqual(expect.arrayContaining([...Object.values(REPORT_FILES), "rank1-adapter"]));
      expect(readdirSync(out).filter((e) => e.startsWith("."))).toEqual([]);
      const report = JSON.parse(readFileSync(join(out, REPORT_FILES.json), "utf8")) as Report;
      expect(report.verdict.conclusion).toBe("neutral");
      expect(report.verdict.reasons[0]).toMatch(/^interrupted\b/);
      expect(report.error).toBe(`interrupted by ${sig} while loading the backend`);
      expect(report.elicitation).toBeUndefined();
      expect(report.spectrum.modules.length).toBeGreaterThan(0);
    }, 120_000);
  }
});
