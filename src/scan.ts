/**
 * `delta-audit scan`: spectrum → rank-k truncation → elicitation against the variants →
 * findings → verdict → report. The whole output folder (report.json, report.md, badge.json,
 * rank1-adapter/) is built in a staging folder and renamed into place (io/atomic.ts), so a
 * crash never leaves a half-written folder.
 *
 * Failure modes: bad input (files, flags, config) → InputError before anything is written;
 * a backend failure after the spectrum was measured → a partial report with verdict neutral
 * and exit code 3 (nothing unmeasured is ever a pass).
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { BackendError, EXIT, InputError, oneLine } from "./errors";
import { checkOutputDir, writeDirAtomic } from "./io/atomic";
import { deltaPass, withDeltaSubject, type DeltaSubjectPaths } from "./delta/pass";
import type { Backend } from "./backends/backend";
import { apiKeyFrom, createBackend, type BackendFactory, type BackendSubject } from "./backends/index";
import { chatCompletion } from "./backends/chat-completion";
import { runElicitation } from "./elicit/run";
import { runJudges } from "./judge/index";
import { applyOverrides, defaultConfig, loadConfig, type ScanConfig } from "./config";
import type { BackendType } from "./backends/settings";
import type { Device } from "./linalg/device";
import type { FailOn } from "./policy/severity";
import { assessMeasurement } from "./policy/measured";
import { decideVerdict, type Unmeasured } from "./policy/verdict";
import { variantForRank } from "./chat/types";
import { buildReport, REPORT_FILES, writeReportFiles } from "./report/build";
import type { ElicitationReport } from "./elicit/types";
import type { Finding } from "./judge/types";
import type { Report, Subject } from "./report/types";
import type { SpectrumReport } from "./delta/types";
import { folderProblem } from "./io/checkpoint";
import { isDirectory } from "./io/fs-util";
import { cudaAvailable } from "./linalg/ort";

/** The truncated adapter's folder inside the output (DESIGN.md). */
export const RANK_ADAPTER_DIR = "rank1-adapter";

export interface ScanOptions {
  base: string;
  adapter?: string;
  finetuned?: string;
  configPath?: string;
  /** an already-validated config (wins over configPath) */
  config?: ScanConfig;
  backend?: BackendType;
  inferenceUrl?: string;
  device?: Device;
  failOn?: FailOn;
  rank?: number;
  seed?: number;
  outDir: string;
  /** seam for tests and embedders: build the backend yourself (default: backends/index.ts) */
  createBackend?: BackendFactory;
  /** where API keys named by the config are read (the edge passes its environment; default none) */
  env?: Readonly<Record<string, string | undefined>>;
  /** fetch for the LLM investigator */
  fetch?: typeof globalThis.fetch;
  /**
   * the directory the subject's paths are relative to; report.sarif locates its findings on the
   * subject's config file relative to it (default: the process's working directory)
   */
  cwd?: string;
}

export interface ScanResult {
  report: Report;
  outDir: string;
  exitCode: 0 | 1 | 3;
}

/** sha256 over the subject's files (names and bytes, sorted), streamed; stops early when `signal` aborts. */
async function digestOf(dir: string, accept: (name: string) => boolean, signal?: AbortSignal): Promise<string> {
  const h = createHash("sha256");
  let names: string[];
  try {
    names = (await readdir(dir)).filter(accept).sort();
  } catch (e) {
    throw new InputError(`cannot read folder: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, dir);
  }
  for (const name of names) {
    signal?.throwIfAborted();
    // stat follows links: a FIFO or a link to /dev/zero named *.safetensors would hash forever
    const st = await stat(join(dir, name)).catch(() => undefined);
    if (!st?.isFile()) throw new InputError(`${name} is not a regular file`, dir);
    h.update(`${name}\0`);
    await new Promise<void>((ok, fail) => {
      const s = createReadStream(join(dir, name), { signal });
      s.on("data", (c) => h.update(c));
      s.on("end", () => ok());
      s.on("error", fail);
    });
    h.update("\0");
  }
  return h.digest("hex");
}

const WEIGHT_FILE = (n: string) => n.endsWith(".safetensors") || n === "adapter_config.json" || n === "config.json" || n === "model.safetensors.index.json";

function resolveConfig(opts: ScanOptions): ScanConfig {
  const base = opts.config ?? (opts.configPath ? loadConfig(opts.configPath) : defaultConfig());
  return applyOverrides(base, {
    failOn: opts.failOn,
    rank: opts.rank,
    seed: opts.seed,
    backend: opts.backend,
    inferenceUrl: opts.inferenceUrl,
    device: opts.device,
  });
}

const seconds = (t0: number) => Math.round((Date.now() - t0) / 10) / 100;

/**
 * Measure the spectrum and write the rank-k adapter into `rankDir` in one delta pass over the
 * subject, opened once here (and closed here), while the subject's digest is hashed alongside.
 * Errors in the subject's files are InputErrors from io/; the pass's come before the digest's.
 */
async function measureAndTruncate(
  subject: BackendSubject & { kind: "lora" | "full" },
  rank: number,
  rankDir: string,
  needBase: boolean,
  timings: Record<string, number>,
): Promise<{ spectrum: SpectrumReport; digest: string }> {
  // the hash reads the files while the pass decomposes them: I/O and hashing overlap the ORT work
  const hashing = new AbortController();
  const digest = digestOf((subject.adapter ?? subject.finetuned)!, WEIGHT_FILE, hashing.signal);
  digest.catch(() => undefined); // awaited after the pass, whose errors are reported first
  try {
    // the base checks an adapter's shapes where it is a folder (an openai backend may name a hub model instead)
    if (needBase) {
      const problem = await folderProblem(subject.base);
      if (problem) throw new InputError(`${problem}; a model folder holds config.json and *.safetensors`, subject.base);
    }
    const base = (await isDirectory(subject.base)) ? subject.base : undefined;
    const paths: DeltaSubjectPaths = subject.kind === "lora" ? { kind: "lora", adapter: subject.adapter!, base } : { kind: "full", base: base!, finetuned: subject.finetuned! };
    const spectrum = await withDeltaSubject(paths, async (delta) => {
      const t = Date.now();
      const measured = await deltaPass(delta, rank, rankDir);
      // one walk measures and truncates: timings.spectrum is the whole pass (there is no separate truncation time)
      timings.spectrum = seconds(t);
      return measured;
    });
    return { spectrum, digest: await digest };
  } catch (err) {
    hashing.abort();
    throw err;
  }
}

/**
 * The embedded engine on CUDA needs onnxruntime-node's CUDA provider: without it the engine
 * would refuse only when it loads, after the whole delta pass, so it is checked up front.
 */
function checkDevice(config: ScanConfig, fromFlag: boolean): void {
  if (config.backend.type !== "embedded" || config.backend.device !== "cuda" || cudaAvailable()) return;
  throw new InputError(
    "the CUDA execution provider is not installed: reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 (needs CUDA 12 and cuDNN 9) or use the cpu device",
    fromFlag ? "--device cuda" : "backend.device: cuda",
  );
}

function describeFault(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0] ?? msg;
}

/** Run a whole scan and write its output folder. */
export async function runScan(opts: ScanOptions): Promise<ScanResult> {
  const t0 = Date.now();
  if (!opts.base) throw new InputError("required: the base model folder", "--base");
  if (opts.adapter && opts.finetuned) throw new InputError("give either --adapter or --finetuned, not both", "--finetuned");
  if (!opts.adapter && !opts.finetuned) throw new InputError("nothing to audit: give --adapter DIR or --finetuned DIR", "--adapter");
  if (!opts.outDir) throw new InputError("required: the output folder", "--out");
  const config = resolveConfig(opts);
  // refuse a wrong output folder now, not after minutes of work
  await checkOutputDir(opts.outDir, { inputs: [opts.base, opts.adapter, opts.finetuned, opts.configPath], marker: REPORT_FILES.json });
  checkDevice(config, opts.device !== undefined);
  const kind: "lora" | "full" = opts.adapter ? "lora" : "full";
  const backendSubject: BackendSubject & { kind: "lora" | "full" } = { base: opts.base, adapter: opts.adapter, finetuned: opts.finetuned, kind };
  // the embedded engine and full fine-tunes need the base weights; an OpenAI server holds its own
  const needBase = config.backend.type === "embedded" || kind === "full";
  const env = opts.env ?? {};
  const investigator =
    config.judges.includes("investigator") && config.llm
      ? {
          complete: chatCompletion({
            url: config.llm.url,
            setting: "llm.url",
            model: config.llm.model,
            apiKey: apiKeyFrom(config.llm.apiKeyEnv, env, "llm.api-key-env"),
            timeoutMs: config.llm.timeoutSeconds * 1000,
            fetch: opts.fetch,
          }),
          maxHypotheses: config.llm.maxHypotheses,
        }
      : undefined;

  let result: ScanResult | undefined;
  await writeDirAtomic(opts.outDir, async (tmp) => {
    const timings: Record<string, number> = {};
    const rankDir = join(tmp, RANK_ADAPTER_DIR);
    const { spectrum, digest } = await measureAndTruncate(backendSubject, config.rank, rankDir, needBase, timings);
    const subject: Subject = {
      base: opts.base,
      ...(opts.adapter ? { adapter: opts.adapter } : { finetuned: opts.finetuned }),
      kind,
      digest,
    };

    let elicitation: ElicitationReport | undefined;
    let findings: Finding[] = [];
    // what went unmeasured, for the verdict; `unfinished ?? unobserved` is the report's error
    const unmeasured: Unmeasured = {};
    let backend: Backend | undefined;
    try {
      let t = Date.now();
      try {
        const request = { settings: config.backend, subject: backendSubject, rank: config.rank, rankAdapterDir: rankDir, contrast: config.contrast.enabled, env };
        backend = await (opts.createBackend ?? createBackend)(request);
      } catch (e) {
        if (e instanceof InputError) throw e; // a wrong model name or flag: the user's to fix, exit 2
        throw new BackendError(`could not start the ${config.backend.type} backend: ${describeFault(e)}`, { cause: e });
      }
      timings.load = seconds(t);
      t = Date.now();
      const variants = ["base", "full", variantForRank(config.rank)];
      const run = await runElicitation({
        backend,
        probes: config.probes,
        systemPrompt: config.systemPrompt,
        plan: { samples: config.samples, temperature: config.temperature, topP: config.topP, maxNewTokens: config.maxTokens, seed: config.seed },
        variants,
        contrast: config.contrast.enabled ? { alpha: config.contrast.alpha, topK: config.contrast.topK } : undefined,
        rank: config.rank,
      });
      timings.elicit = seconds(t);
      elicitation = run.report;
      const extra = (backend as Backend & { notices?: unknown }).notices;
      if (Array.isArray(extra)) for (const n of extra) if (typeof n === "string") elicitation.notices.push(n);
      if (run.error) {
        unmeasured.unfinished = `backend failed after ${run.completedVariants.length} of ${variants.length} variants: ${describeFault(run.error)}`;
      } else {
        const measured = assessMeasurement({
          elicitation,
          spectrum,
          adapterRank: kind === "lora" ? Math.max(0, ...spectrum.modules.map((m) => m.rank)) : undefined,
          rankNamedAsFull: config.backend.models.rank1 === config.backend.models.full,
        });
        elicitation.notices.push(...measured.notices);
        unmeasured.unobserved = measured.unobserved;
        unmeasured.unanswered = measured.unanswered;
        // validateConfig refuses `judges: []`; a config built in code can still carry it
        if (!measured.unobserved && config.judges.length === 0) unmeasured.unobserved = "no judge is configured, so nothing was judged";
      }
      if (unmeasured.unfinished === undefined && unmeasured.unobserved === undefined) {
        t = Date.now();
        const judged = await runJudges(elicitation, spectrum, config, { investigator });
        findings = judged.findings;
        elicitation.notices.push(...judged.notices);
        timings.judge = seconds(t);
      }
    } catch (e) {
      if (e instanceof InputError) throw e;
      unmeasured.unfinished = describeFault(e);
    } finally {
      await backend?.close().catch(() => undefined);
    }
    const fault = unmeasured.unfinished ?? unmeasured.unobserved;
    if (fault !== undefined) {
      // still report what the spectrum says (warnings), never a pass
      findings = (await runJudges(undefined, spectrum, config)).findings;
    }
    timings.total = seconds(t0);
    const verdict = decideVerdict(findings, config.failOn, unmeasured);
    const report = buildReport({ subject, spectrum, elicitation, findings, verdict, timings, error: fault });
    await writeReportFiles(tmp, report, opts.cwd ?? process.cwd());
    const exitCode = verdict.conclusion === "pass" ? EXIT.pass : verdict.conclusion === "fail" ? EXIT.fail : EXIT.fault;
    result = { report, outDir: opts.outDir, exitCode: exitCode as 0 | 1 | 3 };
  });
  return result!;
}
