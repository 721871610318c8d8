/**
 * Rank-k truncation of fine-tuning updates into ordinary PEFT LoRA adapters: the exact best
 * rank-k approximation (Eckart–Young) of every ΔW, written with r = k and lora_alpha = k so
 * the scale is 1, with √σ on each factor (B' = U_k·√Σ_k, A' = √Σ_k·V_kᵀ). The factors come
 * from the walk (walk.ts) that also gives spectra: in scan's pass (pass.ts) from the same
 * decomposition as the spectrum; alone (these functions), from one that computes no more.
 */
import { linearModuleNames } from "../io/checkpoint";
import { writeAdapter, type LoraModuleLayout } from "../io/peft";
import type { AdapterConfig, Checkpoint, DType, LoraAdapter, LoraModule } from "../io/types";
import { factoredSvdSync, topVectorsSync } from "../linalg/factored-svd";
import { checkRank, rankKModule, walkAdapter, walkFull, type DeltaStep, type WalkOptions } from "./walk";

/** Best rank-k approximation of scale·B·A as a LoRA module with scale 1 (plain JavaScript, synchronous). */
export function truncateModule(m: LoraModule, k: number): LoraModule {
  checkRank(k, "rank");
  const svd = factoredSvdSync(m);
  return rankKModule(m, k, topVectorsSync(m, svd, Math.min(k, m.rank), "sqrt"));
}

export type TruncateOptions = Pick<WalkOptions, "onProgress" | "quiet">;

/** The rank-k factors of the walk's module steps, in order (a full fine-tune's unchanged modules have none). */
export async function* truncatedModules(steps: AsyncIterable<DeltaStep>): AsyncGenerator<LoraModule> {
  for await (const step of steps) if (step.kind === "module" && step.truncated) yield step.truncated;
}

/**
 * Every module of an adapter truncated to rank k, streamed in the adapter's module order (a few
 * modules are read and truncated at a time, see MODULES_IN_FLIGHT). The rank is checked now,
 * before any factor is read.
 */
export function truncateAdapter(adapter: LoraAdapter, k: number, opts: TruncateOptions = {}): AsyncGenerator<LoraModule> {
  return truncatedModules(walkAdapter(adapter, { ...opts, rank: k, label: "truncate" }));
}

/** The layout (names, shapes, r = k, scale 1) of a truncated adapter, known before any factor is read. */
export function truncatedLayout(adapter: LoraAdapter, k: number): LoraModuleLayout[] {
  return adapter.moduleNames().map((name) => {
    const info = adapter.moduleInfo(name);
    return { name, rank: k, scale: 1, outFeatures: info.outFeatures, inFeatures: info.inFeatures };
  });
}

export type FullTruncateOptions = Pick<WalkOptions, "onProgress" | "quiet" | "onWarning">;

/**
 * Linear decoder modules of a full fine-tune, as LoRA layouts of rank k (all of them: which are
 * unchanged, and so left out of a truncation, is known only once each ΔW is formed).
 */
export function fullLayout(finetuned: Checkpoint, k: number): LoraModuleLayout[] {
  return linearModuleNames(finetuned).map((name) => {
    const [out, inf] = finetuned.info(`${name}.weight`)!.shape as [number, number];
    return { name, rank: k, scale: 1, outFeatures: out, inFeatures: inf };
  });
}

/** The config of a rank-k adapter cut from a full fine-tune: it adapts the base, named as the base names itself. */
export function fullSourceConfig(base: Checkpoint): Partial<AdapterConfig> {
  const name = typeof base.config._name_or_path === "string" && base.config._name_or_path ? base.config._name_or_path : base.dir;
  return { base_model_name_or_path: name };
}

/**
 * A rank-k LoRA extracted from a full fine-tune: for each changed decoder linear (an unchanged
 * one, ΔW = 0, yields nothing), the top-k SVD of the
 * dense ΔW = W_ft − W_base (the walk's randomized subspace iteration with k = min(k, out, in):
 * no spectrum is wanted, so no value past the rank is computed), as B = U·√Σ, A = √Σ·Vᵀ.
 * Streams: one ΔW in memory at a time; the other tensors are not read. The rank and the
 * checkpoint's decoder linears are checked now, before any weight is read.
 */
export function lowRankFromFull(base: Checkpoint, finetuned: Checkpoint, k: number, opts: FullTruncateOptions = {}): AsyncGenerator<LoraModule> {
  return truncatedModules(walkFull(base, finetuned, { ...opts, rank: k, label: "truncate", tensors: "linear" }));
}

/** Config keys that describe the source's own ranks and scales, which a truncated adapter replaces. */
const REPLACED_KEYS = ["r", "lora_alpha", "use_rslora", "rank_pattern", "alpha_pattern", "target_modules"] as const;

export interface WriteTruncatedOptions {
  /** module layouts in yield order: lets the writer stream straight to disk (large adapters) */
  layout?: readonly LoraModuleLayout[];
  dtype?: DType;
}

/**
 * Write truncated modules as a PEFT adapter (r = k, lora_alpha = k, so scale = 1), atomically.
 * The source config's other fields (base_model_name_or_path, fan_in_fan_out, task_type…) are
 * kept, so the result loads wherever the source did.
 */
export async function writeTruncatedAdapter(
  outDir: string,
  modules: Iterable<LoraModule> | AsyncIterable<LoraModule>,
  sourceConfig: Partial<AdapterConfig> | null,
  opts: WriteTruncatedOptions = {},
): Promise<void> {
  const config: Partial<AdapterConfig> = { ...(sourceConfig ?? {}) };
  for (const key of REPLACED_KEYS) delete config[key];
  config.use_rslora = false;
  await writeAdapter(outDir, config, modules, { layout: opts.layout, dtype: opts.dtype });
}
