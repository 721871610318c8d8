/**
 * The variant runs of layer attribution (judge/attribution.ts): a few probes on a variant made of
 * some modules of the rank-k truncation. The backend builds such a variant from the factors it
 * already holds (Backend.subsets: the embedded engine; a server would need one more adapter
 * loaded per group, so there is no runner for the openai backend). Each variant is forgotten as
 * soon as its probes are answered.
 */
import type { Backend } from "../backends/backend";
import type { GenerationResult } from "../chat/types";
import { progress, type ProgressOptions } from "../progress";
import { buildRequests, type SamplingPlan } from "./plan";
import type { Probe } from "./probes";

/** What one group's run gave (the shape judge/attribution.ts GroupRunResult reads). */
export interface SubsetRunResult {
  responses: Map<string, string[]>;
  requests: number;
  seconds: number;
}

/** Runs probes on a part of a LoRA variant, by layer and module type (q, k, v, o, gate, up, down). */
export type SubsetRun = (from: string, keep: (layer: number, type: string) => boolean, probeIds: readonly string[]) => Promise<SubsetRunResult>;

export interface SubsetRunnerOptions {
  backend: Backend;
  /** the suite's probes; a run asks those it names, with the scan's own system prompt and sampling plan (so the same seeds) */
  probes: readonly Probe[];
  systemPrompt: string;
  plan: SamplingPlan;
  progress?: ProgressOptions;
}

/** The engine names modules q_proj … down_proj; the spectrum (and so the judge) q … down. */
const spectrumType = (module: string): string => module.replace(/_proj$/, "");

/** A runner over the backend's subset variants, or undefined when the backend cannot build them. */
export function subsetRunner(opts: SubsetRunnerOptions): SubsetRun | undefined {
  const subsets = opts.backend.subsets;
  if (!subsets) return undefined;
  let serial = 0;
  return async (from, keep, probeIds) => {
    const wanted = new Set(probeIds);
    const probes = opts.probes.filter((p) => wanted.has(p.id));
    const requests = buildRequests(probes, opts.systemPrompt, opts.plan);
    const name = `${from}@part${++serial}`;
    const start = performance.now();
    subsets.add(name, from, (layer, module) => keep(layer, spectrumType(module)));
    const bar = progress(`attribute ${name}`, requests.length, opts.progress);
    let results: GenerationResult[];
    try {
      let last = 0;
      results = await opts.backend.generate(name, requests, (done) => {
        bar.tick(Math.max(0, done - last));
        last = Math.max(last, done);
      });
      bar.done();
    } catch (err) {
      bar.done("failed");
      throw err;
    } finally {
      subsets.remove(name);
    }
    const responses = new Map<string, string[]>();
    const byId = new Map(results.map((r) => [r.id, r]));
    for (const p of probes) {
      const texts: string[] = [];
      for (let s = 0; s < opts.plan.samples; s++) texts.push(byId.get(`${p.id}#${s}`)?.text ?? "");
      responses.set(p.id, texts);
    }
    return { responses, requests: requests.length, seconds: (performance.now() - start) / 1000 };
  };
}
