/**
 * `delta-audit scan`: spectrum → rank-k truncation → elicitation against the variants →
 * findings → verdict → report. The whole output folder (report.json, report.md, badge.json,
 * rank1-adapter/, the rank ladder's ladder/rank<k>-adapter/, with `directions` the top-k
 * directions file `sweep run` keeps) is built in a staging folder and
 * renamed into place (io/atomic.ts), so a crash never leaves a half-written folder. With
 * `attribution`, high and medium findings are then attributed to layers (judge/attribution.ts).
 *
 * Failure modes: bad input (files, flags, config) → InputError before anything is written;
 * a backend failure after the spectrum was measured → a partial report with verdict neutral
 * and exit code 3 (nothing unmeasured is ever a pass). Interrupted (opts.signal): before the
 * spectrum is measured, the signal's reason is thrown and nothing is written; after it, the
 * partial report is written as for a backend failure, its verdict neutral, reason interrupted.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, readdir, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { BackendError, EXIT, InputError, oneLine } from "./errors";
import { checkOutputDir, untilAborted, writeDirAtomic } from "./io/atomic";
import { checkDirectionsK } from "./delta/directions";
import { deltaPass, withDeltaSubject, type DeltaSubjectPaths, type DirectionsOutput } from "./delta/pass";
import { describeAddedTokens } from "./engine/added-tokens";
import type { Backend } from "./backends/backend";
import { apiKeyFrom, createBackend, type BackendFactory, type BackendSubject } from "./backends/index";
import { chatCompletion } from "./backends/chat-completion";
import { runElicitation } from "./elicit/run";
import { attributeFindings, judgedFamilies, runJudges } from "./judge/index";
import { subsetRunner } from "./elicit/attribution";
import { ladderRanks } from "./elicit/settings";
import type { RankOutput } from "./delta/ladder";
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
import { requireDevice } from "./linalg/ort";
import { log } from "./progress";
import { scanWorkload, type Workload } from "./engine/estimate";
import { estimateLine, estimateSubject } from "./engine/subject-precision";
import type { PrecisionChoice } from "./engine/precision";
import type { EngineSettings } from "./engine/settings";

/** The truncated adapter's folder inside the output (DESIGN.md). */
export const RANK_ADAPTER_DIR = "rank1-adapter";
/** The rank ladder's other rungs, each `rank<k>-adapter/` in this folder of the output. */
export const LADDER_DIR = "ladder";

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
  /** how the embedded engine stores base weights (`--precision`): overrides the config's engine.precision */
  precision?: PrecisionChoice;
  /** the rank ladder (`--ranks`): overrides the config's `ranks` */
  ranks?: number[];
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
  /**
   * Stops the scan (the edge aborts it on SIGINT / SIGTERM): checked between phases and passed
   * to the backend's requests and the engine. Aborted during the delta pass, runScan rejects with
   * the signal's reason and leaves nothing; after it, the partial report is written (neutral,
   * reason interrupted) and runScan resolves with exit code 3.
   */
  signal?: AbortSignal;
  /**
   * how the report names the models where that is not the folder read: a Hub id resolved into
   * the cache is `{org}/{name}@{commit}` (io/model-ref.ts), a value every command takes again
   */
  labels?: ModelLabels;
  /**
   * also keep every module's top-k singular directions from the delta pass's one decomposition
   * (delta/directions.ts), written as `file` (a name, no folder) in the output folder
   */
  directions?: { k: number; file: string };
}

/** The report's names for the scan's models, by argument (absent: the folder as given). */
export type ModelLabels = { base?: string; adapter?: string; finetuned?: string };

export interface ScanResult {
  report: Report;
  outDir: string;
  /** the directions file in the output folder (ScanOptions.directions), with the modules it holds */
  directions?: { file: string; k: number; modules: number };
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
    ranks: opts.ranks,
    seed: opts.seed,
    backend: opts.backend,
    inferenceUrl: opts.inferenceUrl,
    device: opts.device,
    precision: opts.precision,
  });
}

/** The embedded engine's work in a scan with these settings: every probe × sample on base, full and each rank variant. */
export function engineWorkload(config: ScanConfig): Workload {
  const system = config.systemPrompt.length;
  const rungs = ladderRanks(config.ranks, config.rank).filter((k) => k !== config.rank).length;
  return scanWorkload({
    prompts: config.probes.length,
    samples: config.samples,
    maxNewTokens: config.maxTokens,
    promptChars: config.probes.reduce((a, p) => a + p.prompt.length + system, 0),
    longestPromptChars: Math.max(0, ...config.probes.map((p) => p.prompt.length + system)),
    variants: 3 + rungs,
    contrast: config.contrast.enabled,
  });
}

/**
 * The line every embedded scan prints first: the memory and time the subject needs on this
 * machine at each precision (engine/estimate.ts, from config.json and a short measurement) and
 * the precision it will run at — decided here, before the delta pass, so a subject that cannot
 * fit at any precision (or a precision this ONNX Runtime cannot run) is exit 2 at once, not a
 * process the kernel kills an hour later. A subject whose folders are broken is left to the
 * delta pass, which names the problem.
 */
async function engineSettings(config: ScanConfig, subject: BackendSubject, fromFlag: boolean): Promise<EngineSettings> {
  if (await folderProblem(subject.base)) return config.engine;
  const work = engineWorkload(config);
  let est;
  try {
    est = await estimateSubject({ model: subject.base, adapter: subject.adapter, finetuned: subject.finetuned, rank: config.rank, precision: config.engine.precision, device: config.backend.device, workload: work, where: fromFlag ? "--precision" : "engine.precision" });
  } catch (err) {
    if (err instanceof InputError) return config.engine; // the delta pass reports the subject's files
    throw err;
  }
  log(estimateLine(est));
  if (est.problem) throw est.problem;
  if (config.engine.precision === "auto") log(est.decision!.reason);
  return { ...config.engine, precision: est.decision!.precision };
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
  signal?: AbortSignal,
  ladder: readonly RankOutput[] = [],
  directions?: DirectionsOutput,
): Promise<{ spectrum: SpectrumReport; digest: string }> {
  // the hash reads the files while the pass decomposes them: I/O and hashing overlap the ORT work
  const hashing = new AbortController();
  const digest = digestOf((subject.adapter ?? subject.finetuned)!, WEIGHT_FILE, signal ? AbortSignal.any([hashing.signal, signal]) : hashing.signal);
  digest.catch(() => undefined); // awaited after the pass, whose errors are reported first
  try {
    // the base checks an adapter's shapes where it is a folder (an openai backend may name a hub model instead)
    if (needBase) {
      const problem = await folderProblem(subject.base);
      if (problem) throw new InputError(`${problem}; a model folder holds config.json and *.safetensors`, subject.base);
    }
    const base = (await isDirectory(subject.base)) ? subject.base : undefined;
    const paths: DeltaSubjectPaths = subject.kind === "lora" ? { kind: "lora", adapter: subject.adapter!, base } : { kind: "full", base: base!, finetuned: subject.finetuned! };
    // the walk has no stop of its own: an interruption leaves it (and the subject's files open)
    // behind, and writeDirAtomic removes the staging folder it writes into
    const spectrum = await untilAborted(
      withDeltaSubject(paths, async (delta) => {
        const t = Date.now();
        const measured = await deltaPass(delta, rank, rankDir, { ladder, directions });
        // one walk measures and truncates: timings.spectrum is the whole pass (there is no separate truncation time)
        timings.spectrum = seconds(t);
        // tokens a full fine-tune added: listed as its own tokenizer decodes them
        if (measured.addedTokens) measured.addedTokens = await describeAddedTokens(delta.kind === "full" ? delta.finetuned.dir : delta.adapter.dir, measured.addedTokens);
        return measured;
      }),
      signal,
    );
    return { spectrum, digest: await untilAborted(digest, signal) };
  } catch (err) {
    hashing.abort();
    throw err;
  }
}

/**
 * The embedded engine on CUDA needs onnxruntime-node's CUDA provider: without it the engine
 * would refuse only when it loads, after the whole delta pass, so it is checked up front — by
 * runScan, and by `scan` / `sweep run` before they fetch a Hub id.
 */
export function checkDevice(config: ScanConfig, fromFlag: boolean): void {
  if (config.backend.type !== "embedded") return;
  requireDevice(config.backend.device, fromFlag ? "--device cuda" : "backend.device: cuda");
}

function describeFault(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0] ?? msg;
}

/**
 * The ladder's rungs the backend serves (the embedded engine: all of them, loaded from the folders
 * the delta pass wrote; a server: all of them with load-adapter, else those it names as rank<k>),
 * and a notice for the others.
 */
function servedLadder(backend: Backend, rank: number, rungs: readonly RankOutput[]): { ranks: number[]; rungs: number[]; notice?: string } {
  const served = new Set(backend.variants());
  const kept = rungs.map((r) => r.rank).filter((k) => served.has(variantForRank(k)));
  const missing = rungs.map((r) => r.rank).filter((k) => !served.has(variantForRank(k)));
  const notice =
    missing.length > 0
      ? `rank ladder: ${missing.map(variantForRank).join(", ")} not run: the ${backend.name} backend does not serve ${missing.length === 1 ? "it" : "them"} (${backend.name === "openai" ? "backend.load-adapter loads every rung into the server" : "the embedded engine runs every rung"}; their adapters are in ${LADDER_DIR}/ of the output)`
      : undefined;
  return { ranks: [...kept, rank].sort((a, b) => a - b), rungs: kept, ...(notice ? { notice } : {}) };
}

/**
 * Layer attribution of the high and medium findings (judge/attribution.ts), on variants the
 * backend builds from the truncation's own factors; a notice when it cannot, or when it fails
 * (it adds to findings already made, so a failure does not undo them).
 */
async function attributeLayers(findings: Finding[], e: ElicitationReport, spectrum: SpectrumReport, config: ScanConfig, backend: Backend): Promise<string | undefined> {
  if (!findings.some((f) => f.severity === "high" || f.severity === "medium")) return undefined;
  const plan = { samples: config.samples, temperature: config.temperature, topP: config.topP, maxNewTokens: config.maxTokens, seed: config.seed };
  const run = subsetRunner({ backend, probes: config.probes, systemPrompt: config.systemPrompt, plan });
  if (!run) return `layer attribution skipped: the ${backend.name} backend cannot build variants from parts of the truncation (a server would need one more adapter loaded per group of layers); the embedded engine can`;
  try {
    await attributeFindings(findings, e, spectrum.modules, judgedFamilies(config), run);
    return undefined;
  } catch (err) {
    if (err instanceof InputError) throw err;
    return `layer attribution stopped: ${describeFault(err)}`;
  }
}

/** Run a whole scan and write its output folder. */
export async function runScan(opts: ScanOptions): Promise<ScanResult> {
  const t0 = Date.now();
  if (!opts.base) throw new InputError("required: the base model folder", "--base");
  if (opts.adapter && opts.finetuned) throw new InputError("give either --adapter or --finetuned, not both", "--finetuned");
  if (!opts.adapter && !opts.finetuned) throw new InputError("nothing to audit: give --adapter DIR or --finetuned DIR", "--adapter");
  if (!opts.outDir) throw new InputError("required: the output folder", "--out");
  const config = resolveConfig(opts);
  if (opts.directions) {
    checkDirectionsK(opts.directions.k);
    const name = opts.directions.file;
    if (!name || basename(name) !== name || name === "." || name === "..") throw new Error(`internal: the directions file must be a name in the output folder, got ${JSON.stringify(name)}`);
  }
  // refuse a wrong output folder now, not after minutes of work
  await checkOutputDir(opts.outDir, { inputs: [opts.base, opts.adapter, opts.finetuned, opts.configPath], marker: REPORT_FILES.json });
  checkDevice(config, opts.device !== undefined);
  const engine = config.backend.type === "embedded" && !opts.createBackend
    ? await engineSettings(config, { base: opts.base, adapter: opts.adapter, finetuned: opts.finetuned }, opts.precision !== undefined)
    : config.engine;
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

  const signal = opts.signal;
  signal?.throwIfAborted();
  let result: ScanResult | undefined;
  // the backend's close, left running while an interrupted scan writes its partial report first
  let closing: Promise<void> | undefined;
  await writeDirAtomic(opts.outDir, async (tmp) => {
    const timings: Record<string, number> = {};
    const rankDir = join(tmp, RANK_ADAPTER_DIR);
    // the rank ladder's other rungs: written by the same delta pass, served beside rank<k>
    const rungs: RankOutput[] = ladderRanks(config.ranks, config.rank)
      .filter((k) => k !== config.rank)
      .map((k) => ({ rank: k, dir: join(tmp, LADDER_DIR, `${variantForRank(k)}-adapter`) }));
    if (rungs.length > 0) await mkdir(join(tmp, LADDER_DIR));
    // the directions, when asked for: kept by the same delta pass, written in the staging folder (none if the pass fails or is interrupted)
    let directions: ScanResult["directions"];
    const keep: DirectionsOutput | undefined = opts.directions && {
      k: opts.directions.k,
      file: join(tmp, opts.directions.file),
      onWritten: (modules) => (directions = { file: opts.directions!.file, k: opts.directions!.k, modules }),
    };
    const { spectrum, digest } = await measureAndTruncate(backendSubject, config.rank, rankDir, needBase, timings, signal, rungs, keep);
    const named = opts.labels ?? {};
    const subject: Subject = {
      base: named.base ?? opts.base,
      ...(opts.adapter ? { adapter: named.adapter ?? opts.adapter } : { finetuned: named.finetuned ?? opts.finetuned }),
      kind,
      digest,
    };

    let elicitation: ElicitationReport | undefined;
    let findings: Finding[] = [];
    // what went unmeasured, for the verdict; `interrupted ?? unfinished ?? unobserved` is the report's error
    const unmeasured: Unmeasured = {};
    let backend: Backend | undefined;
    // the phase now running, for an interruption's reason; cleared once the findings are complete
    let phase: string | undefined = "loading the backend";
    const variants = ["base", "full", variantForRank(config.rank)];
    try {
      signal?.throwIfAborted();
      let t = Date.now();
      try {
        const request = { settings: config.backend, engine, subject: backendSubject, rank: config.rank, rankAdapterDir: rankDir, ladder: rungs, contrast: config.contrast.enabled, env, signal };
        backend = await untilAborted((opts.createBackend ?? createBackend)(request), signal);
      } catch (e) {
        // a wrong model name or flag: the user's to fix, exit 2; an interruption: the partial report below
        if (e instanceof InputError || signal?.aborted) throw e;
        throw new BackendError(`could not start the ${config.backend.type} backend: ${describeFault(e)}`, { cause: e });
      }
      timings.load = seconds(t);
      const ladder = servedLadder(backend, config.rank, rungs);
      variants.push(...ladder.rungs.map(variantForRank));
      t = Date.now();
      phase = "eliciting";
      const run = await runElicitation({
        backend,
        probes: config.probes,
        systemPrompt: config.systemPrompt,
        plan: { samples: config.samples, temperature: config.temperature, topP: config.topP, maxNewTokens: config.maxTokens, seed: config.seed },
        variants,
        contrast: config.contrast.enabled ? { alpha: config.contrast.alpha, topK: config.contrast.topK } : undefined,
        rank: config.rank,
        signal,
      });
      timings.elicit = seconds(t);
      elicitation = run.report;
      if (ladder.ranks.length > 1) elicitation.ranks = ladder.ranks;
      if (ladder.notice) elicitation.notices.push(ladder.notice);
      const extra = (backend as Backend & { notices?: unknown }).notices;
      if (Array.isArray(extra)) for (const n of extra) if (typeof n === "string") elicitation.notices.push(n);
      phase = `eliciting (${run.completedVariants.filter((v) => variants.includes(v)).length} of ${variants.length} variants done)`;
      signal?.throwIfAborted();
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
        phase = "judging";
        const judged = await untilAborted(runJudges(elicitation, spectrum, config, { investigator }), signal);
        findings = judged.findings;
        elicitation.notices.push(...judged.notices);
        timings.judge = seconds(t);
        if (config.attribution) {
          t = Date.now();
          phase = "attributing findings to layers";
          const notice = await untilAborted(attributeLayers(findings, elicitation, spectrum, config, backend), signal);
          if (notice) elicitation.notices.push(notice);
          timings.attribution = seconds(t);
        }
      }
      phase = undefined;
    } catch (e) {
      if (e instanceof InputError && !signal?.aborted) throw e;
      if (!signal?.aborted) unmeasured.unfinished = describeFault(e);
    } finally {
      closing = backend?.close().catch(() => undefined);
      if (!signal?.aborted) await closing;
    }
    // interrupted before the findings were complete: a partial report of what was measured
    if (signal?.aborted && phase !== undefined) {
      unmeasured.interrupted = `${describeFault(signal.reason)} while ${phase}`;
    }
    const fault = unmeasured.interrupted ?? unmeasured.unfinished ?? unmeasured.unobserved;
    if (fault !== undefined) {
      // still report what the spectrum says (warnings), never a pass
      findings = (await runJudges(undefined, spectrum, config)).findings;
    }
    timings.total = seconds(t0);
    const verdict = decideVerdict(findings, config.failOn, unmeasured);
    const report = buildReport({ subject, spectrum, elicitation, findings, verdict, timings, error: fault, engine: backend?.precision ? { precision: backend.precision } : undefined });
    await writeReportFiles(tmp, report, opts.cwd ?? process.cwd());
    const exitCode = verdict.conclusion === "pass" ? EXIT.pass : verdict.conclusion === "fail" ? EXIT.fail : EXIT.fault;
    result = { report, outDir: opts.outDir, exitCode: exitCode as 0 | 1 | 3, ...(directions ? { directions } : {}) };
  });
  await closing;
  return result!;
}
