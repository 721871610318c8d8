/**
 * Runs the elicitation suite: every probe × sample on every variant, one batch per variant
 * (the backend batches as it sees fit), plus the contrastive variant when asked and possible.
 * A backend failure does not lose what was already generated: the partial transcripts come
 * back with the error, so the report can still show them (verdict neutral). An InputError is
 * not a backend failure but a fault in the subject's files found while generating (a chat
 * template that raises or renders nothing, a context shorter than the prompts, NaN weights):
 * it is thrown, so the scan stops with exit 2 naming the file and writes nothing. An interrupted
 * run (opts.signal) ends like a failure: what finished comes back, with the signal's reason.
 */
import { InputError } from "../errors";
import { untilAborted } from "../io/atomic";
import type { Backend } from "../backends/backend";
import type { ContrastOptions, GenerationResult } from "../chat/types";
import type { Attempt, ElicitationReport, ProbeRecord } from "./types";
import { progress, type ProgressOptions } from "../progress";
import { buildRequests, type SamplingPlan } from "./plan";
import { systemPromptFor, type Probe } from "./probes";
import { answeredAlike } from "./identity";

export const CONTRAST_VARIANT = "contrast";

export interface ElicitOptions {
  backend: Backend;
  probes: readonly Probe[];
  systemPrompt: string;
  plan: SamplingPlan;
  /** variants to run, in order, e.g. ["base", "full", "rank1"] */
  variants: readonly string[];
  /** contrastive decoding full vs base; skipped with a notice when the backend cannot */
  contrast?: ContrastOptions;
  rank: number;
  progress?: ProgressOptions;
  /**
   * An interrupted run: no variant starts after it aborts, and the one running is left at once
   * (its results dropped), even on a backend that does not stop itself; the transcripts of the
   * variants done come back with the signal's reason as the error.
   */
  signal?: AbortSignal;
}

export interface ElicitResult {
  report: ElicitationReport;
  /** variants that ran to the end */
  completedVariants: string[];
  /** set when a variant failed with a backend fault; the report then holds what finished before it */
  error?: Error;
}

function emptyRecords(probes: readonly Probe[], systemPrompt: string): ProbeRecord[] {
  return probes.map((p) => ({ id: p.id, kind: p.kind, prompt: p.prompt, systemPrompt: systemPromptFor(p.kind, systemPrompt), responses: {}, attempts: {} }));
}

/**
 * An attempt's `seconds`: the variant's batch wall time divided evenly among its attempts
 * (the backends batch requests, so one answer's own time is not observable), in milliseconds'
 * precision.
 */
export function attemptSeconds(batchSeconds: number, attempts: number): number {
  return attempts > 0 ? Math.round((1000 * batchSeconds) / attempts) / 1000 : 0;
}

/** Place results (ids `${probeId}#${sample}`) into the probe records under `variant`. */
function store(records: ProbeRecord[], probes: readonly Probe[], samples: number, variant: string, results: GenerationResult[], batchSeconds: number): void {
  if (results.length !== probes.length * samples) {
    throw new Error(`backend returned ${results.length} results for ${probes.length * samples} requests on ${variant}`);
  }
  const byId = new Map<string, GenerationResult>();
  for (const r of results) byId.set(r.id, r);
  const seconds = attemptSeconds(batchSeconds, results.length);
  probes.forEach((p, i) => {
    const texts: string[] = [];
    const attempts: Attempt[] = [];
    for (let s = 0; s < samples; s++) {
      const r = byId.get(`${p.id}#${s}`);
      if (r === undefined) throw new Error(`backend result for ${p.id}#${s} on ${variant} is missing`);
      texts.push(typeof r.text === "string" ? r.text : "");
      attempts.push({
        tokens: Number.isFinite(r.tokens) ? r.tokens : 0,
        finishReason: r.finishReason === "length" ? "length" : "stop",
        seconds,
      });
    }
    records[i].responses[variant] = texts;
    (records[i].attempts ??= {})[variant] = attempts;
  });
}

/** Seconds since `start` (a performance.now() reading). */
const since = (start: number): number => (performance.now() - start) / 1000;

export async function runElicitation(opts: ElicitOptions): Promise<ElicitResult> {
  const { backend, probes, plan } = opts;
  const records = emptyRecords(probes, opts.systemPrompt);
  const notices: string[] = [];
  const served = new Set(backend.variants());
  const variants = [...opts.variants];
  const report: ElicitationReport = {
    backend: backend.name,
    rank: opts.rank,
    variants,
    samples: plan.samples,
    temperature: plan.temperature,
    systemPrompt: opts.systemPrompt,
    probes: records,
    notices,
  };
  const completed: string[] = [];
  const requests = buildRequests(probes, opts.systemPrompt, plan);
  const ordinarySystem = systemPromptFor("ordinary", opts.systemPrompt);
  if (ordinarySystem !== opts.systemPrompt && probes.some((p) => p.kind === "ordinary")) {
    notices.push(`ordinary prompts were sent with the system prompt "${ordinarySystem}" (the default one asks about the model itself, which is an interrogation)`);
  }

  const stopped = (): ElicitResult | undefined => (opts.signal?.aborted ? { report, completedVariants: completed, error: asError(opts.signal.reason) } : undefined);
  for (const v of opts.variants) {
    const interrupted = stopped();
    if (interrupted) return interrupted;
    if (!served.has(v)) {
      return { report, completedVariants: completed, error: new Error(`backend ${backend.name} does not serve variant ${v}`) };
    }
    const bar = progress(`elicit ${v}`, requests.length, opts.progress);
    try {
      let last = 0;
      const start = performance.now();
      const results = await untilAborted(
        backend.generate(v, requests, (done) => {
          bar.tick(Math.max(0, done - last));
          last = Math.max(last, done);
        }),
        opts.signal,
      );
      store(records, probes, plan.samples, v, results, since(start));
      bar.done();
      completed.push(v);
    } catch (err) {
      bar.done(opts.signal?.aborted ? "interrupted" : "failed");
      if (err instanceof InputError && !opts.signal?.aborted) throw err;
      return stopped() ?? { report, completedVariants: completed, error: asError(err) };
    }
  }

  if (opts.contrast) {
    const interrupted = stopped();
    if (interrupted) return interrupted;
    if (!backend.capabilities.contrast || !backend.contrastiveGenerate) {
      notices.push(`contrast skipped: the ${backend.name} backend cannot do contrastive decoding`);
    } else if (backend.name !== "embedded" && answeredAlike(records, "base", "full")) {
      // checked before any contrastive request: on such a server contrast would cost thousands of
      // requests and measure nothing (the embedded engine builds its variants itself, so there
      // identical answers are a measurement and contrast still runs)
      notices.push(`contrast skipped: full answered all ${records.length} prompts exactly like base, so the server is probably not applying the fine-tune`);
    } else {
      const bar = progress(`elicit ${CONTRAST_VARIANT}`, requests.length, opts.progress);
      try {
        let last = 0;
        const start = performance.now();
        const results = await untilAborted(
          backend.contrastiveGenerate(requests, opts.contrast, (done) => {
            bar.tick(Math.max(0, done - last));
            last = Math.max(last, done);
          }),
          opts.signal,
        );
        store(records, probes, plan.samples, CONTRAST_VARIANT, results, since(start));
        bar.done();
        const unreliable = results.find((r) => r.unreliable)?.unreliable;
        if (unreliable) {
          (report.unreliable ??= {})[CONTRAST_VARIANT] = unreliable;
          notices.push(`contrast answers are unreliable and were not judged: ${unreliable}`);
        }
        variants.push(CONTRAST_VARIANT);
        completed.push(CONTRAST_VARIANT);
      } catch (err) {
        bar.done(opts.signal?.aborted ? "interrupted" : "failed");
        if (err instanceof InputError && !opts.signal?.aborted) throw err;
        return stopped() ?? { report, completedVariants: completed, error: asError(err) };
      }
    }
  }
  return { report, completedVariants: completed };
}

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));
