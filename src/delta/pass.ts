/**
 * scan's delta phase as one walk over the subject: every module is read and decomposed once,
 * its spectrum collected for the report and its rank-k factors streamed straight into the
 * rank-k adapter folder (the folder the embedded engine then loads as the `rank<k>` variant,
 * so what is interrogated is exactly what the report ships).
 */
import type { Checkpoint, LoraAdapter } from "../io/types";
import type { GramPrecision } from "../linalg/factor-basis";
import type { SpectrumReport } from "./types";
import { SpectrumCollector } from "./spectrum";
import { fullLayout, fullSourceConfig, truncatedLayout, truncatedModules, writeTruncatedAdapter } from "./truncate";
import { walkAdapter, walkFull, type DeltaStep, type ProgressFn } from "./walk";

/** The fine-tune whose ΔW is walked, opened by the caller (who also closes it). */
export type DeltaSubject = { kind: "lora"; adapter: LoraAdapter } | { kind: "full"; base: Checkpoint; finetuned: Checkpoint };

export interface DeltaPassOptions {
  onProgress?: ProgressFn;
  quiet?: boolean;
  /** LoRA: Gram precision (default auto) */
  precision?: GramPrecision;
  /** full fine-tune: called when a module's top-k iteration stops without meeting its tolerance */
  onWarning?: (message: string) => void;
}

/** Progress label of the one pass (it measures and truncates at once). */
const PASS_LABEL = "spectrum+truncate";

/**
 * The spectrum of the subject's ΔW, with its rank-k truncation written to `outDir` (a PEFT
 * adapter, r = lora_alpha = k) in the same walk. Bad input is refused before anything is written.
 */
export async function deltaPass(subject: DeltaSubject, rank: number, outDir: string, opts: DeltaPassOptions = {}): Promise<SpectrumReport> {
  const walk = { ...opts, rank, label: PASS_LABEL };
  const steps = subject.kind === "lora" ? walkAdapter(subject.adapter, walk) : walkFull(subject.base, subject.finetuned, { ...walk, tensors: "all" });
  const layout = subject.kind === "lora" ? truncatedLayout(subject.adapter, rank) : fullLayout(subject.finetuned, rank);
  const config = subject.kind === "lora" ? subject.adapter.config : fullSourceConfig(subject.base);
  const spectrum = new SpectrumCollector();
  async function* measured(): AsyncGenerator<DeltaStep> {
    for await (const step of steps) {
      spectrum.add(step);
      yield step;
    }
  }
  // the writer pulls the walk: each module's factors go to disk as soon as they are computed
  await writeTruncatedAdapter(outDir, truncatedModules(measured()), config, { layout });
  return spectrum.report(subject.kind === "full");
}
