/**
 * `sweep run`: one matrix job. Fetch what the plan pinned (Hub ids into the Hugging Face cache),
 * scan it like `delta-audit scan`, whose one delta pass also keeps the top singular directions of
 * its update for the next run's drift comparison, and record what happened in sweep-job.json
 * beside report.json — also when the audit could not run at all, so `sweep collect` can say why
 * instead of staying silent.
 *
 *   <out>/report.json …               the scan's files (scan.ts)
 *   <out>/directions.safetensors       top-k directions per module (delta/directions.ts), from the
 *                                      scan's delta pass and staged with its output
 *   <out>/sweep-job.json               this job: the audit key, status, exit code, reason
 */
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { describeError, exitCodeOf } from "../errors";
import { resolveHubModel, type ResolveHubOptions } from "../io/hub";
import { resolveModelRef } from "../io/model-ref";
import { checkDevice, runScan, type ScanOptions, type ScanResult } from "../scan";
import { applyOverrides, defaultConfig, loadConfig } from "../config";
import { REPORT_FILES } from "../report/build";
import { DIRECTIONS_FILE } from "../delta/directions";
import type { ModelRef, PlannedModel } from "./plan";
import type { DriftSettings } from "./registry";
import type { AuditKey } from "./state";

export const JOB_FILE = "sweep-job.json";
export const JOB_SCHEMA_VERSION = 1;

/** What one job did. */
export interface SweepJob {
  schemaVersion: typeof JOB_SCHEMA_VERSION;
  name: string;
  key: AuditKey;
  /** audited: a report without a fault; fault: a partial report (backend fault, neutral); error: no report */
  status: "audited" | "fault" | "error";
  exitCode: number;
  reason?: string;
  startedAt: string;
  finishedAt: string;
  /** the directions file beside the report, when drift is on and the delta pass ran */
  directions?: { file: string; k: number; modules: number };
}

export interface SweepJobOptions {
  model: PlannedModel;
  out: string;
  drift: DriftSettings;
  /** the plan's relative paths are relative to this (default: the process's working directory) */
  cwd?: string;
  /** where Hub ids are fetched from and cached (io/hub.ts) */
  hub?: ResolveHubOptions;
  /** the scan flags and seams a job passes on */
  scan?: Pick<ScanOptions, "failOn" | "backend" | "inferenceUrl" | "device" | "env" | "createBackend" | "fetch" | "signal">;
}

/**
 * The folder a planned model is read from and how its report names it: its path, or its pinned
 * Hub commit fetched into the cache by the rule every command uses (io/model-ref.ts), whose
 * errors name the registry model the id belongs to.
 */
async function localOf(ref: ModelRef, cwd: string, hub: ResolveHubOptions | undefined, what: string): Promise<{ dir: string; label: string }> {
  if ("path" in ref) return { dir: resolve(cwd, ref.path), label: ref.path };
  return resolveModelRef(ref.hub, { what, local: false, hub: (spec) => resolveHubModel(spec, hub) });
}

/**
 * Run one job. A scan that throws (bad input, a download that failed) still leaves
 * sweep-job.json with status `error` and the reason, then rethrows for the exit code.
 */
export async function runSweepJob(opts: SweepJobOptions): Promise<{ result: ScanResult; job: SweepJob }> {
  const { model, out } = opts;
  const cwd = resolve(opts.cwd ?? process.cwd());
  const startedAt = new Date().toISOString();
  // this job's own files from an earlier attempt: scan refuses an output folder holding files it did not write
  await rm(join(out, JOB_FILE), { force: true }).catch(() => undefined);
  await rm(join(out, DIRECTIONS_FILE), { force: true }).catch(() => undefined);
  const record = async (job: SweepJob) => writeFile(join(out, JOB_FILE), `${JSON.stringify(job, null, 2)}\n`);
  try {
    const what = (role: string) => `model '${model.name}' ${role}`;
    // a device that cannot run is refused before any Hub download (runScan checks it again)
    const scan = opts.scan ?? {};
    const config = model.config ? loadConfig(resolve(cwd, model.config)) : defaultConfig();
    checkDevice(applyOverrides(config, { backend: scan.backend, inferenceUrl: scan.inferenceUrl, device: scan.device }), scan.device !== undefined);
    const base = await localOf(model.base, cwd, opts.hub, what("base"));
    const adapter = model.adapter ? await localOf(model.adapter, cwd, opts.hub, what("adapter")) : undefined;
    const finetuned = model.finetuned ? await localOf(model.finetuned, cwd, opts.hub, what("finetuned")) : undefined;
    const result = await runScan({
      ...opts.scan,
      base: base.dir,
      adapter: adapter?.dir,
      finetuned: finetuned?.dir,
      labels: { base: base.label, adapter: adapter?.label, finetuned: finetuned?.label },
      configPath: model.config ? resolve(cwd, model.config) : undefined,
      outDir: out,
      cwd,
      // the directions come from the scan's one delta pass, written with its output folder
      directions: opts.drift.enabled ? { k: opts.drift.k, file: DIRECTIONS_FILE } : undefined,
    });
    const job: SweepJob = {
      schemaVersion: JOB_SCHEMA_VERSION,
      name: model.name,
      key: model.key,
      status: result.report.error ? "fault" : "audited",
      exitCode: result.exitCode,
      startedAt,
      finishedAt: startedAt,
    };
    if (result.report.error) job.reason = describeError(new Error(result.report.error));
    // kept by the scan's own delta pass (none when the pass did not finish)
    if (result.directions) job.directions = result.directions;
    job.finishedAt = new Date().toISOString();
    await record(job);
    return { result, job };
  } catch (err) {
    const job: SweepJob = {
      schemaVersion: JOB_SCHEMA_VERSION,
      name: model.name,
      key: model.key,
      status: "error",
      exitCode: exitCodeOf(err),
      reason: describeError(err),
      startedAt,
      finishedAt: new Date().toISOString(),
    };
    // only where the output is this job's (new, empty, or an earlier report): never into a folder it was refused
    const existing = await readdir(out).catch(() => undefined);
    if (existing === undefined || existing.length === 0 || existing.includes(REPORT_FILES.json)) {
      await mkdir(out, { recursive: true })
        .then(() => record(job))
        .catch(() => undefined);
    }
    throw err;
  }
}
