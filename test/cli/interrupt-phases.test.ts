/**
 * SIGINT / SIGTERM at each phase of the real CLI (issue 11, "interruption and debris"): the
 * process stops within 2 s of the signal (SIGNAL_EXIT_MS in edge.ts; measured here with slack for
 * a loaded 2-core machine), exits 130 / 143, and leaves no staging or temp folder behind — in the
 * output's parent nor in its TMPDIR (a fresh, empty one per run). A scan stopped after its delta
 * pass writes the partial report (verdict neutral, reason interrupted) with every view complete;
 * stopped before, it writes nothing, as spectrum and truncate never do.
 *
 * The phases are reached by what the process shows, not by sleeping:
 * - the delta pass: a progress line of the walk with 0 < done < total on stderr. The model is a
 *   full fine-tune pair of 4096×4096 linears whose weights are sparse files (holes read as zeros:
 *   gigabytes to walk, nothing on disk), long enough that the first plain progress line (after
 *   5 s, progress.ts) comes from the middle of the walk;
 * - the elicitation: the local OpenAI-compatible server below answers the base variant and holds
 *   every request for another model, so the scan waits inside its suite until it is signalled;
 * - a command that does not take the signal (`logits` waiting on a Hub that never answers): the
 *   edge's grace, then its exit, or at once on a second signal.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, ftruncateSync, openSync, writeSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism } from "../../src/organisms/index";
import { REPORT_FILES } from "../../src/report/build";
import { validateReport } from "../../src/sweep/collect";
import { startHoldingServer } from "./holding-server";
import type { Report } from "../../src/report/types";

const root = new URL("../..", import.meta.url).pathname;

/** The bound the edge promises (edge.ts SIGNAL_EXIT_MS)… */
const STOP_BOUND_MS = 2_000;
/**
 * …and what a loaded 2-core machine may add to it (process start-up is not in it: measured from
 * the signal). Generous on purpose: with the whole suite running beside it, a timer can fire late;
 * the edge's own deadlines are asserted exactly in test/cli/signals.test.ts, and this bound still
 * tells a stop from a hang. The timings measured are printed after the run.
 */
const SLACK_MS = 3_000;
/** How long a phase may take to be reached (a walk's first progress line comes after 5 s). */
const REACH_MS = 90_000;
const POLL_MS = 20;

/**
 * Sparse full fine-tune: this many layers × q/k/v/o of HIDDEN×HIDDEN float32 (16 GiB per file, no
 * blocks on disk). Reading holes is a memory copy: the walk must last well past the first plain
 * progress line (5 s) on a fast machine with nothing else running, or the test cannot find its
 * middle (4 GiB per file finished in under 5 s here).
 */
const LAYERS = 64;
const HIDDEN = 4096;

let dir: string;
let org: string;
let sparse: { base: string; finetuned: string };
const timings: string[] = [];

/** A checkpoint folder whose model.safetensors holds only zeros, as a hole: config.json, a valid header, the data never written. */
async function sparseCheckpoint(folder: string): Promise<string> {
  await mkdir(folder, { recursive: true });
  await writeFile(join(folder, "config.json"), JSON.stringify({ model_type: "llama", hidden_size: HIDDEN, num_hidden_layers: LAYERS }));
  const header: Record<string, unknown> = {};
  let size = 0;
  for (let layer = 0; layer < LAYERS; layer++) {
    for (const m of ["q_proj", "k_proj", "v_proj", "o_proj"]) {
      const bytes = HIDDEN * HIDDEN * 4;
      header[`model.layers.${layer}.self_attn.${m}.weight`] = { dtype: "F32", shape: [HIDDEN, HIDDEN], data_offsets: [size, size + bytes] };
      size += bytes;
    }
  }
  const json = JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8, " ");
  const prefix = Buffer.alloc(8 + json.length);
  prefix.writeBigUInt64LE(BigInt(json.length), 0);
  prefix.write(json, 8);
  const fd = openSync(join(folder, "model.safetensors"), "w");
  try {
    writeSync(fd, prefix);
    ftruncateSync(fd, prefix.length + size);
  } finally {
    closeSync(fd);
  }
  return folder;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-interrupt-phases-"));
  org = join(dir, "org");
  await generateOrganism({ kind: "quirk", outDir: org, seed: 5 });
  sparse = { base: await sparseCheckpoint(join(dir, "sparse", "base")), finetuned: await sparseCheckpoint(join(dir, "sparse", "finetuned")) };
});
afterAll(async () => {
  if (timings.length > 0) console.log(`signal → exit:\n  ${timings.join("\n  ")}`);
  await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// the CLI as a child process

interface Run {
  child: ChildProcess;
  /** the fresh TMPDIR the child was given */
  tmp: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  done(): boolean;
}

async function start(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const tmp = await mkdtemp(join(dir, "tmpdir-"));
  // not quiet: the walk's progress lines say where it is
  const child = spawn(process.execPath, [`${root}bin/delta-audit.js`, ...args], { env: { ...process.env, DELTA_AUDIT_QUIET: "", TMPDIR: tmp, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  let finished = false;
  child.stdout!.on("data", (c) => (out += c));
  child.stderr!.on("data", (c) => (err += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((ok) =>
    child.on("exit", (code, signal) => {
      finished = true;
      ok({ code, signal, at: performance.now() });
    }),
  );
  const killer = setTimeout(() => child.kill("SIGKILL"), REACH_MS + 60_000);
  void exited.then(() => clearTimeout(killer));
  return { child, tmp, stdout: () => out, stderr: () => err, exited, done: () => finished };
}

/** Poll until `reached()`; fail at once if the process exits first. */
async function until(run: Run, what: string, reached: () => boolean | Promise<boolean>): Promise<void> {
  for (let waited = 0; !(await reached()); waited += POLL_MS) {
    if (run.done()) throw new Error(`exited before ${what}:\n${run.stderr()}`);
    if (waited > REACH_MS) {
      run.child.kill("SIGKILL");
      throw new Error(`did not reach ${what} in ${REACH_MS} ms:\n${run.stderr()}`);
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** A plain progress line (progress.ts) of a walk that is neither starting nor done: `label: k/N (p%) …` with 0 < k < N. */
function midWalk(stderr: string): string | undefined {
  for (const m of stderr.matchAll(/^(.+?): (\d+)\/(\d+) \(\d+%\)/gm)) {
    const done = Number(m[2]);
    const total = Number(m[3]);
    if (done > 0 && done < total) return m[0];
  }
  return undefined;
}

/** Send `signal`, wait for the exit; the milliseconds from the signal to the exit. */
async function signalled(run: Run, signal: NodeJS.Signals, phase: string): Promise<{ code: number | null; ms: number }> {
  const t0 = performance.now();
  run.child.kill(signal);
  const r = await run.exited;
  const ms = Math.round(r.at - t0);
  timings.push(`${phase}, ${signal}: ${ms} ms (exit ${r.code})`);
  expect(r.signal, run.stderr()).toBeNull();
  return { code: r.code, ms };
}

/** Every entry under `folder`, recursively, as relative paths. */
async function tree(folder: string): Promise<string[]> {
  const entries = await readdir(folder, { recursive: true }).catch(() => [] as string[]);
  return entries.map(String).sort();
}

/**
 * Staging and temp names (io/atomic.ts `.name.tmp-<pid>-<hex>` and `.old-`, io/safetensors.ts,
 * io/peft.ts's `.factors.staging`, any `.name.<tag>-<pid>-<hex>` of the same kind, a Hub
 * download's `.incomplete`): none may be left.
 */
const DEBRIS = /(^|\/)\.[^/]*\.[a-z]+-\d+-[0-9a-f]+|\.factors\.staging|\.incomplete$/;

/**
 * What ONNX Runtime itself leaves in TMPDIR whenever a session is created, on a run that ends
 * normally as much as on a signalled one (`.ses`, `mat-debug-<pid>.log`): not the command's.
 */
const ORT_TMP_FILES = /^(\.ses|mat-debug-\d+\.log)$/;

async function expectNoDebris(run: Run, ...folders: string[]): Promise<void> {
  for (const f of folders) expect((await tree(f)).filter((e) => DEBRIS.test(e)), f).toEqual([]);
  // nothing of the command's in its own TMPDIR either
  expect((await readdir(run.tmp)).filter((e) => !ORT_TMP_FILES.test(e)), "TMPDIR").toEqual([]);
}

/** The partial report of a scan stopped after its delta pass: every view written and whole, verdict neutral, reason interrupted. */
async function expectPartialReport(out: string, signal: NodeJS.Signals, phase: RegExp): Promise<Report> {
  const entries = await readdir(out);
  for (const f of Object.values(REPORT_FILES)) expect(entries).toContain(f);
  expect(entries).toContain("rank1-adapter");
  const report = validateReport(JSON.parse(await readFile(join(out, REPORT_FILES.json), "utf8")), REPORT_FILES.json);
  expect(report.verdict.conclusion).toBe("neutral");
  expect(report.verdict.reasons[0]).toMatch(/^interrupted\b/);
  expect(report.verdict.reasons[1]).toMatch(new RegExp(`interrupted by ${signal} while ${phase.source}`));
  expect(report.error).toBe(report.verdict.reasons[1]);
  expect(report.spectrum.modules.length).toBeGreaterThan(0);
  // the views are complete documents of the same report
  expect(await readFile(join(out, REPORT_FILES.markdown), "utf8")).toMatch(/interrupted/);
  expect((await readFile(join(out, REPORT_FILES.html), "utf8")).trimEnd()).toMatch(/<\/html>$/);
  expect(JSON.parse(await readFile(join(out, REPORT_FILES.badge), "utf8"))).toMatchObject({ schemaVersion: 1, label: expect.any(String), message: expect.any(String) });
  expect(JSON.parse(await readFile(join(out, REPORT_FILES.badge), "utf8")).message).not.toMatch(/pass/i);
  const sarif = JSON.parse(await readFile(join(out, REPORT_FILES.sarif), "utf8")) as { version: string; runs: unknown[] };
  expect(sarif.version).toBe("2.1.0");
  expect(sarif.runs).toHaveLength(1);
  const lines = (await readFile(join(out, REPORT_FILES.transcripts), "utf8")).split("\n").filter(Boolean);
  const transcripts = lines.map((l) => JSON.parse(l) as { variant: string; probeId: string });
  const expected = (report.elicitation?.probes ?? []).reduce((n, p) => n + Object.values(p.responses).reduce((k, r) => k + r.length, 0), 0);
  expect(transcripts).toHaveLength(expected);
  return report;
}

// ---------------------------------------------------------------------------------------------

describe("a signal during the delta pass stops it: nothing is written, nothing is left", () => {
  it("scan (full fine-tune, SIGTERM): exit 143, no output, no staging, the backend never reached", async () => {
    const server = await startHoldingServer();
    const parent = await mkdtemp(join(dir, "scan-pass-"));
    try {
      const run = await start(["scan", "--base", sparse.base, "--finetuned", sparse.finetuned, "--backend", "openai", "--inference-url", server.url, "--out", join(parent, "out")]);
      await until(run, "the middle of the delta pass", () => midWalk(run.stderr()) !== undefined);
      const r = await signalled(run, "SIGTERM", "scan, delta pass");
      expect(r.code, run.stderr()).toBe(143);
      expect(r.ms).toBeLessThan(STOP_BOUND_MS + SLACK_MS);
      expect(run.stderr()).toMatch(/^delta-audit: SIGTERM: stopping/m);
      expect(await readdir(parent)).toEqual([]);
      expect(server.models).toEqual([]);
      expect(run.stdout()).toBe("");
      await expectNoDebris(run, parent);
    } finally {
      await server.close();
    }
  }, 180_000);

  it("spectrum --json (SIGINT): exit 130, no JSON file, no table", async () => {
    const parent = await mkdtemp(join(dir, "spectrum-"));
    const run = await start(["spectrum", "--base", sparse.base, "--finetuned", sparse.finetuned, "--json", join(parent, "spectrum.json")]);
    await until(run, "the middle of the walk", () => midWalk(run.stderr()) !== undefined);
    const r = await signalled(run, "SIGINT", "spectrum, walk");
    expect(r.code, run.stderr()).toBe(130);
    expect(r.ms).toBeLessThan(STOP_BOUND_MS + SLACK_MS);
    expect(await readdir(parent)).toEqual([]);
    expect(run.stdout()).toBe("");
    await expectNoDebris(run, parent);
  }, 180_000);

  it("truncate (SIGTERM): exit 143, --out never appears, its staging folder is removed", async () => {
    const parent = await mkdtemp(join(dir, "truncate-"));
    const run = await start(["truncate", "--base", sparse.base, "--finetuned", sparse.finetuned, "--rank", "1", "--out", join(parent, "out")]);
    await until(run, "the middle of the walk", async () => midWalk(run.stderr()) !== undefined);
    // the adapter is being staged next to --out
    expect((await readdir(parent)).some((e) => e.startsWith(".out.tmp-"))).toBe(true);
    const r = await signalled(run, "SIGTERM", "truncate, walk");
    expect(r.code, run.stderr()).toBe(143);
    expect(r.ms).toBeLessThan(STOP_BOUND_MS + SLACK_MS);
    expect(await readdir(parent)).toEqual([]);
    await expectNoDebris(run, parent);
  }, 180_000);
});

describe("a signal after the delta pass: the partial report, verdict neutral, reason interrupted", () => {
  it("scan during elicitation (SIGINT): exit 130, every view written, the finished variant's transcripts kept", async () => {
    const server = await startHoldingServer();
    const parent = await mkdtemp(join(dir, "scan-elicit-"));
    try {
      const run = await start(["scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--backend", "openai", "--inference-url", server.url, "--out", join(parent, "out")]);
      // base answered, full asked and held: the suite is between its first and second variant
      await until(run, "the full variant's requests", () => server.models.includes("full"));
      const r = await signalled(run, "SIGINT", "scan, elicitation");
      expect(r.code, run.stderr()).toBe(130);
      expect(r.ms).toBeLessThan(STOP_BOUND_MS + SLACK_MS);
      expect(await readdir(parent)).toEqual(["out"]);
      const report = await expectPartialReport(join(parent, "out"), "SIGINT", /eliciting \(1 of 3 variants done\)/);
      const probes = report.elicitation!.probes;
      expect(probes.length).toBeGreaterThan(0);
      for (const p of probes) {
        expect(p.responses.base!.length).toBe(report.elicitation!.samples);
        expect(p.responses.full).toBeUndefined();
      }
      expect(run.stdout()).toMatch(/^verdict: neutral/m);
      expect(run.stdout()).toMatch(/stopped early: interrupted by SIGINT/);
      await expectNoDebris(run, parent);
    } finally {
      await server.close();
    }
  }, 180_000);

  it("sweep run during elicitation (SIGTERM): exit 143, the model's partial report", async () => {
    const server = await startHoldingServer();
    const parent = await mkdtemp(join(dir, "sweep-"));
    try {
      const registry = join(parent, "registry.yml");
      await writeFile(registry, `models:\n  - name: quirky\n    base: ${join(org, "base")}\n    adapter: ${join(org, "adapter")}\n`);
      const reports = join(parent, "reports");
      const run = await start(["sweep", "run", "--registry", registry, "--name", "quirky", "--backend", "openai", "--inference-url", server.url, "--out", join(reports, "quirky")]);
      await until(run, "the full variant's requests", () => server.models.includes("full"));
      const r = await signalled(run, "SIGTERM", "sweep run, elicitation");
      expect(r.code, run.stderr()).toBe(143);
      expect(r.ms).toBeLessThan(STOP_BOUND_MS + SLACK_MS);
      await expectPartialReport(join(reports, "quirky"), "SIGTERM", /eliciting \(1 of 3 variants done\)/);
      await expectNoDebris(run, parent);
    } finally {
      await server.close();
    }
  }, 180_000);
});

describe("a command that does not take the signal", () => {
  /**
   * `logits` resolving a Hub id against a Hub that never answers: a command that waits without
   * looking at the signal (and without keeping the event loop busy), so the edge's own timing shows.
   */
  async function waitingOnTheHub(): Promise<{ run: Run; close: () => Promise<void> }> {
    const requests: string[] = [];
    const sockets = new Set<Socket>();
    const hub = createServer((req) => void requests.push(req.url ?? "")); // never answers
    hub.on("connection", (s) => {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
    });
    await new Promise<void>((ok) => hub.listen(0, "127.0.0.1", ok));
    const cache = await mkdtemp(join(dir, "hf-cache-"));
    const run = await start(["logits", "--model", "some-org/some-model", "--ids", "1,2"], {
      HF_ENDPOINT: `http://127.0.0.1:${(hub.address() as AddressInfo).port}`,
      HF_HUB_CACHE: cache,
      HF_HUB_OFFLINE: "",
      HF_TOKEN: "",
    });
    await until(run, "the Hub request", () => requests.length > 0);
    return {
      run,
      close: () => {
        for (const s of sockets) s.destroy();
        return new Promise((ok) => hub.close(() => ok()));
      },
    };
  }

  it("is stopped by the edge once its grace is over: exit 130 within the bound", async () => {
    const { run, close } = await waitingOnTheHub();
    try {
      const r = await signalled(run, "SIGINT", "logits waiting on the Hub (no stop of its own)");
      expect(r.code, run.stderr()).toBe(130);
      // the grace (edge.ts SIGNAL_GRACE_MS) was waited out: the command was given its chance to stop
      expect(r.ms).toBeGreaterThanOrEqual(1_400);
      expect(r.ms).toBeLessThan(STOP_BOUND_MS + SLACK_MS);
      expect(run.stdout()).toBe("");
      await expectNoDebris(run);
    } finally {
      await close();
    }
  }, 180_000);

  it("a second SIGINT while the first one's cleanup is held exits 130 at once", async () => {
    const { run, close } = await waitingOnTheHub();
    try {
      const t0 = performance.now();
      run.child.kill("SIGINT");
      await until(run, "the first signal's notice", () => /^delta-audit: SIGINT: stopping/m.test(run.stderr()));
      const r = await signalled(run, "SIGINT", "logits, second SIGINT");
      expect(r.code, run.stderr()).toBe(130);
      // at once: not the grace of 1.5 s the first signal waits for
      expect(r.ms).toBeLessThan(1_000);
      timings.push(`logits, first SIGINT → exit after the second: ${Math.round(performance.now() - t0)} ms`);
    } finally {
      await close();
    }
  }, 180_000);
});
