/**
 * Spectra of fine-tuning updates, streamed module by module (the walk in walk.ts, spectrum only):
 * - adapterSpectrum: LoRA ΔW = s·B·A from its factors (never materialised), all r values;
 * - fullSpectrum: dense ΔW = W_ft − W_base of every decoder linear, exact Frobenius norm and
 *   top-k singular values by randomized subspace iteration, plus the other changed tensors.
 */
import type { Checkpoint, LoraAdapter } from "../io/types";
import type { ModuleSpectrum, OtherChange, SpectrumReport, VocabularyGrowth } from "./types";
import { summarise } from "./stats";
import { walkAdapter, walkFull, type DeltaStep, type WalkOptions } from "./walk";

export { DEFAULT_TOP_K } from "./walk";

export type AdapterSpectrumOptions = Pick<WalkOptions, "onProgress" | "quiet" | "precision">;
export type FullSpectrumOptions = Pick<WalkOptions, "onProgress" | "quiet" | "topK" | "onWarning">;

/** Gathers a SpectrumReport from the walk's steps as they pass (scan's pass also writes their factors). */
export class SpectrumCollector {
  private readonly modules: ModuleSpectrum[] = [];
  private readonly otherChanges: OtherChange[] = [];
  private addedTokens?: VocabularyGrowth;

  add(step: DeltaStep): void {
    if (step.kind === "module") this.modules.push(step.spectrum);
    else if (step.kind === "other") this.otherChanges.push(step.change);
    else this.addedTokens = step.growth;
  }

  /**
   * `otherChanges` only where the walk measures other tensors (full fine-tunes), as report.json
   * has it; `addedTokens` only where the fine-tune added vocabulary rows.
   */
  report(withOtherChanges: boolean): SpectrumReport {
    const { modules, otherChanges, addedTokens } = this;
    const out: SpectrumReport = withOtherChanges ? { modules, summary: summarise(modules), otherChanges } : { modules, summary: summarise(modules) };
    if (addedTokens) out.addedTokens = addedTokens;
    return out;
  }
}

async function collectSpectrum(steps: AsyncIterable<DeltaStep>, withOtherChanges: boolean): Promise<SpectrumReport> {
  const collector = new SpectrumCollector();
  for await (const step of steps) collector.add(step);
  return collector.report(withOtherChanges);
}

/** Spectrum of every module of a LoRA adapter, streamed: a few modules in memory at a time. */
export async function adapterSpectrum(adapter: LoraAdapter, opts: AdapterSpectrumOptions = {}): Promise<SpectrumReport> {
  return collectSpectrum(walkAdapter(adapter, { ...opts, label: "spectrum" }), false);
}

/** Spectrum of a full fine-tune against its base, streaming tensor pairs. */
export async function fullSpectrum(base: Checkpoint, finetuned: Checkpoint, opts: FullSpectrumOptions = {}): Promise<SpectrumReport> {
  return collectSpectrum(walkFull(base, finetuned, { ...opts, label: "spectrum", tensors: "all" }), true);
}
