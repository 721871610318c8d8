/**
 * A cancelled CI job sends SIGTERM; a person presses Ctrl-C. `scan` builds its output in a
 * staging folder next to --out (io/atomic.ts); the signal must not leave that folder behind,
 * and the exit code says which signal stopped the run (143 / 130, as a shell reports it).
 */
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism } from "../../src/organisms/index";
import { root } from "./helpers";

let dir: string;
let org: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-sec-signal-"));
  org = join(dir, "org");
  await generateOrganism({ kind: "quirk", outDir: org, seed: 5 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start a scan into `parent/out`, wait until its staging folder exists, send `signals`, return the exit. */
async function interruptedScan(parent: string, signals: NodeJS.Signals[]): Promise<{ code: number | null; signal: string | null; stderr: string; staged: boolean; msAfterSignal: number }> {
  const out = join(parent, "out");
  const child = spawn(process.execPath, [`${root}bin/delta-audit.js`, "scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--out", out], {
    env: { ...process.env, DELTA_AUDIT_QUIET: "1" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (c) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: string | null }>((ok) => child.on("exit", (code, signal) => ok({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  const killer = setTimeout(() => child.kill("SIGKILL"), 60_000);
  let staged = false;
  for (let t = 0; t < 600 && !done; t++) {
    if (readdirSync(parent).some((n) => n.startsWith(".out.tmp-"))) {
      staged = true;
      break;
    }
    await sleep(25);
  }
  await sleep(150); // well inside the scan: the staging folder is being filled
  const t0 = Date.now();
  for (const s of signals) child.kill(s);
  const { code, signal } = await exited;
  clearTimeout(killer);
  return { code, signal, stderr, staged, msAfterSignal: Date.now() - t0 };
}

describe("a signal during scan", () => {
  for (const [sig, exit] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
    it(`${sig}: the staging folder is removed, no output appears, exit ${exit}`, async () => {
      const parent = join(dir, sig);
      await mkdir(parent);
      const r = await interruptedScan(parent, [sig]);
      expect(r.staged, "the scan never created its staging folder").toBe(true);
      expect(r.code, r.stderr).toBe(exit);
      expect(readdirSync(parent)).toEqual([]);
      expect(r.msAfterSignal).toBeLessThan(10_000);
    }, 90_000);
  }

  it("a second SIGINT exits at once", async () => {
    const parent = join(dir, "twice");
    await mkdir(parent);
    const r = await interruptedScan(parent, ["SIGINT", "SIGINT"]);
    expect(r.staged).toBe(true);
    expect(r.code, r.stderr).toBe(130);
    expect(readdirSync(parent).filter((n) => n === "out")).toEqual([]);
  }, 90_000);
});
