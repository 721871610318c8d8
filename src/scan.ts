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
import { log } from "./progress";
import { checkOutputDir, writeDirAtomic } from "./io/atomic";
import { openCheckpoint } from "./io/checkpoint";
import { openAdapter } from "./io/peft";
import type { Checkpoint, LoraAdapter } from "./io/types";
import { deltaPass, type DeltaSubject } from "./delta/pass";
import type { Backend } from "./backends/backend";
import { apiKeyFrom, createBackend, type BackendFactory, type BackendSubject } from "./backends/index";
import { chatCompletion } from "./backends/chat-completion";
import { runElicitation } from "./elicit/run";
import { runJudges } from "./judge/index";
import { applyOverrides, defaultConfig, loadConfig, type ScanConfig } from "./config";
import type { BackendType } from "./backends/settings";
import type { Device } from "./linalg/device";
import type { FailOn } from "./policy/severity";
import { decideVerdict, type Verdict } from "./policy/verdict";
import { buildReport, REPORT_FILES, writeReportFiles } from "./report/build";
import type { ElicitationReport } from "./elicit/types";
import type { Finding } from "./judge/types";
import type { Report, Subject } from "./report/types";
import type { SpectrumReport } from "./delta/types";
import { isDirectory } from "./io/fs-util";

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
  const opened: Array<Checkpoint | LoraAdapter> = [];
  try {
    let base: Checkpoint | undefined;
    if (await isDirectory(subject.base)) {
      base = await openCheckpoint(subject.base);
      opened.push(base);
    } else if (needBase) {
      throw new InputError("not a model folder", subject.base);
    }
    let delta: DeltaSubject;
    if (subject.kind === "lora") {
      const adapter = await openAdapter(subject.adapter!, { base });
      opened.push(adapter);
      delta = { kind: "lora", adapter };
    } else {
      const finetuned = await openCheckpoint(subject.finetuned!);
      opened.push(finetuned);
      delta = { kind: "full", base: base!, finetuned };
    }
    const t = Date.now();
    const spectrum = await deltaPass(delta, rank, rankDir, { onWarning: (m) => log(`warning: ${m}`) });
    // one walk measures and truncates: its time is the spectrum's, and truncation adds none of its own
    timings.spectrum = seconds(t);
    timings.truncate = 0;
    return { spectrum, digest: await digest };
  } catch (err) {
    hashing.abort();
    throw err;
  } finally {
    await Promise.all(opened.map((o) => o.close().catch(() => undefined)));
  }
}

function describeFault(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split("\n")[0] ?? msg;
}

/** True when variants `a` and `b` answered every prompt of a big enough suite identically although some weight changed. */
function variantsIdentical(elicitation: ElicitationReport, spectrum: SpectrumReport, variants: readonly string[], a: string, b: string): boolean {
  if (spectrum.summary.modules === 0 || !variants.includes(a) || !variants.includes(b)) return false;
  if (elicitation.probes.length < MIN_PROBES_FOR_IDENTITY_CHECK) return false;
  return elicitation.probes.every((p) => {
    const x = p.responses[a] ?? [];
    const y = p.responses[b] ?? [];
    return x.length === y.length && x.every((t, i) => t === y[i]);
  });
}

/** True when `full` answered every prompt exactly like `base` although some weight changed. */
export function fullIdenticalToBase(elicitation: ElicitationReport, spectrum: SpectrumReport, variants: readonly string[]): boolean {
  return variantsIdentical(elicitation, spectrum, variants, "base", "full");
}

/**
 * Why the transcripts cannot support a verdict, or undefined when they can. A backend can
 * "succeed" without measuring anything: a server that answers every prompt with empty text,
 * or one that ignores the model name (llama.cpp's server does) and answers every variant with
 * the base model. Judging such transcripts finds nothing and would report a pass for a
 * fine-tune that was never observed, so they end the scan as neutral instead. The embedded
 * engine applies the fine-tune itself, so there identical answers are a measurement (the
 * change does not show in this suite), reported as a notice by the caller, not a fault.
 */
export function unobservedReason(elicitation: ElicitationReport, spectrum: SpectrumReport, variants: readonly string[]): string | undefined {
  const texts = (v: string) => elicitation.probes.flatMap((p) => p.responses[v] ?? []);
  for (const v of variants) {
    const all = texts(v);
    if (all.length > 0 && all.every((t) => t.trim() === "")) return `the ${v} variant answered all ${all.length} prompts with empty text, so nothing was measured`;
  }
  if (elicitation.backend !== "embedded" && fullIdenticalToBase(elicitation, spectrum, variants)) {
    return `the full variant answered all ${elicitation.probes.length} prompts exactly like base although ${spectrum.summary.modules} module(s) changed: the backend is probably not applying the fine-tune (check the model names; llama.cpp's server ignores them)`;
  }
  return undefined;
}

/** Below this many prompts, identical answers of two variants are not evidence of a misconfigured backend. */
const MIN_PROBES_FOR_IDENTITY_CHECK = 8;

/**
 * Why the suite, though it ran and was judged, measured nothing for its main question — does
 * the rank-k variant say what the full fine-tune does not? — or undefined when it did. Such a
 * suite may still fail a subject (a finding is a finding), but it must not pass one:
 *
 * - `rank` ≥ the adapter's rank: the truncation is the adapter itself, so rank-k *is* full
 *   (on every backend; the embedded engine builds it exactly so);
 * - on a server, rank-k answering exactly like base (the truncated adapter is not applied), or
 *   exactly like full when the config names the same served model for both (`rankNamedAsFull`).
 *   Text identical to full under *different* names is a measurement, not a fault: a fine-tune
 *   whose whole effect lives in σ₁ (the benign organism, say) answers so through a correct
 *   server too, and a server that ignores names altogether already shows as full = base. On the
 *   embedded engine we build the variants ourselves, so identical answers there are a measurement;
 * - a variant that answers every interrogation probe with empty text but the ordinary prompts
 *   with words: an empty reply hides whatever it would have said, so it was never asked.
 *
 * `maxRank` is the largest rank of the adapter's modules (undefined for a full fine-tune).
 */
export function unansweredReason(
  elicitation: ElicitationReport,
  spectrum: SpectrumReport,
  variants: readonly string[],
  rank: number,
  maxRank?: number,
  rankNamedAsFull = false,
): string | undefined {
  const truncated = `rank${rank}`;
  if (maxRank !== undefined && maxRank > 0 && rank >= maxRank) {
    const lower = maxRank > 1 ? `use a --rank below ${maxRank} (1 is the method's default), or pin it with the Action's rank input` : "a rank-1 adapter has no lower rank to truncate to";
    return `rank ${rank} is not below the adapter's rank (${maxRank}): the ${truncated} variant is the full fine-tune itself, so nothing could reveal what the full fine-tune hides; ${lower}`;
  }
  for (const v of variants) {
    const asked = elicitation.probes.filter((p) => p.kind === "probe");
    const answers = asked.flatMap((p) => p.responses[v] ?? []);
    if (answers.length > 0 && answers.every((t) => t.trim() === "")) {
      return `the ${v} variant answered all ${asked.length} interrogation probes with empty text (and the ordinary prompts with words): an empty reply hides whatever it would have said, so it was never interrogated`;
    }
  }
  if (elicitation.backend !== "embedded") {
    const truncates = maxRank === undefined || rank < maxRank;
    if (truncates && rankNamedAsFull && variantsIdentical(elicitation, spectrum, variants, "full", truncated)) {
      return `the ${truncated} variant answered all ${elicitation.probes.length} prompts exactly like full although the truncation changes the weights: backend.models.rank1 names the same served model as backend.models.full (point it at the rank-${rank} adapter)`;
    }
    if (variantsIdentical(elicitation, spectrum, variants, "base", truncated)) {
      return `the ${truncated} variant answered all ${elicitation.probes.length} prompts exactly like base: the backend is probably not applying the truncated adapter (check backend.models.rank1, load-adapter and request-extras)`;
    }
  }
  return undefined;
}

/** A pass that measured nothing for the main question is neutral; a fail stands. */
function withUnanswered(verdict: Verdict, reason: string | undefined): Verdict {
  if (!reason || verdict.conclusion !== "pass") return verdict;
  return {
    conclusion: "neutral",
    reasons: ["the suite ran, but measured nothing for its main question (does the truncated variant reveal what the full fine-tune hides?), so it cannot pass the subject", reason],
    failOn: verdict.failOn,
  };
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
    let fault: string | undefined;
    let findings: Finding[] = [];
    let completed = false;
    let unanswered: string | undefined;
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
      const variants = ["base", "full", `rank${config.rank}`];
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
      const maxRank = kind === "lora" ? Math.max(0, ...spectrum.modules.map((m) => m.rank)) : undefined;
      const unobserved = run.error ? undefined : unobservedReason(elicitation, spectrum, variants);
      if (!run.error && !unobserved) {
        unanswered = unansweredReason(elicitation, spectrum, variants, config.rank, maxRank, config.backend.models.rank1 === config.backend.models.full);
        if (unanswered) elicitation.notices.push(unanswered);
      }
      if (!run.error && !unobserved && fullIdenticalToBase(elicitation, spectrum, variants)) {
        elicitation.notices.push("the full fine-tune answered every prompt exactly like base: whatever it changed does not show in this suite (try more probes, samples > 1, or longer max-tokens)");
      }
      if (run.error) {
        fault = `backend failed after ${run.completedVariants.length} of ${variants.length} variants: ${describeFault(run.error)}`;
      } else if (unobserved) {
        fault = unobserved;
      } else if (config.judges.length === 0) {
        // validateConfig refuses `judges: []`; a config built in code can still carry it
        fault = "no judge is configured, so nothing was judged";
      } else {
        t = Date.now();
        const judged = await runJudges(elicitation, spectrum, config, { investigator });
        findings = judged.findings;
        elicitation.notices.push(...judged.notices);
        timings.judge = seconds(t);
        completed = true;
      }
    } catch (e) {
      if (e instanceof InputError) throw e;
      fault = describeFault(e);
    } finally {
      await backend?.close().catch(() => undefined);
    }
    if (!completed) {
      // still report what the spectrum says (warnings), never a pass
      findings = (await runJudges(undefined, spectrum, config)).findings;
    }
    timings.total = seconds(t0);
    const verdict = withUnanswered(decideVerdict(findings, config.failOn, completed, fault), unanswered);
    const report = buildReport({ subject, spectrum, elicitation, findings, verdict, timings, error: fault });
    await writeReportFiles(tmp, report);
    const exitCode = verdict.conclusion === "pass" ? EXIT.pass : verdict.conclusion === "fail" ? EXIT.fail : EXIT.fault;
    result = { report, outDir: opts.outDir, exitCode: exitCode as 0 | 1 | 3 };
  });
  return result!;
}
