/**
 * The audited subject as one loaded model with its variants: `base`, `full` (base + the whole
 * fine-tune) and `rank<k>` (base + the rank-k truncation of ΔW). LoRA variants are side paths
 * over the shared base weights; a full fine-tune keeps only its changed tensors.
 */
import { InputError } from "../errors";
import { openCheckpoint } from "../io/checkpoint";
import { openAdapter } from "../io/peft";
import type { LoraModule } from "../io/types";
import { lowRankFromFull, truncateAdapter } from "../delta/truncate";
import type { Device } from "../linalg/ort";
import { loadModel, type LoadedModel } from "./index";
import { withModelPrefix } from "./names";
import { parseModelConfig, type ModelConfig } from "./config";
import { join } from "node:path";

/**
 * ModelConfig fields that decide the computation. A full fine-tune runs through the base's
 * graph, so its config.json must agree on every one of them (token ids and context limits may differ).
 */
const COMPUTE_FIELDS = Object.freeze([
  "modelType", "hiddenSize", "numLayers", "numHeads", "numKvHeads", "headDim", "intermediateSize", "vocabSize",
  "rmsNormEps", "ropeTheta", "ropeScaling", "hiddenAct", "tieWordEmbeddings", "qkvBias", "oBias", "mlpBias", "qkNorm",
] as const satisfies readonly (keyof ModelConfig)[]);

/** Refuse a fine-tune whose config.json computes a different function than the base's. */
export function checkSameArchitecture(base: ModelConfig, ft: ModelConfig, where: string): void {
  for (const k of COMPUTE_FIELDS) {
    if (JSON.stringify(base[k]) !== JSON.stringify(ft[k])) {
      throw new InputError(`config.json differs from the base model's in ${k} (${JSON.stringify(ft[k])} vs ${JSON.stringify(base[k])}): a full fine-tune must keep the base architecture`, where);
    }
  }
}

export interface SubjectOptions {
  /** base model folder */
  model: string;
  /** PEFT adapter folder (LoRA fine-tune) */
  adapter?: string;
  /** fine-tuned checkpoint folder (full fine-tune) */
  finetuned?: string;
  /** also set up `rank${rank}` */
  rank?: number;
  device?: Device;
  threads?: number;
  quiet?: boolean;
}

export const variantForRank = (k: number) => `rank${k}`;

async function collect(it: AsyncIterable<LoraModule>): Promise<LoraModule[]> {
  const out: LoraModule[] = [];
  for await (const m of it) out.push(m);
  return out;
}

/** Load the base model and register the subject's variants. */
export async function loadSubject(opts: SubjectOptions): Promise<LoadedModel> {
  if (opts.adapter && opts.finetuned) throw new InputError("give either --adapter or --finetuned, not both");
  if (opts.rank !== undefined && (!Number.isSafeInteger(opts.rank) || opts.rank < 1)) {
    throw new InputError(`expected a positive integer, got ${opts.rank}`, "--rank");
  }
  if (opts.rank !== undefined && !opts.adapter && !opts.finetuned) {
    throw new InputError("--rank needs --adapter or --finetuned (it truncates the fine-tune's ΔW)", "--rank");
  }
  const model = await loadModel(opts.model, { device: opts.device, threads: opts.threads });
  try {
    if (opts.adapter) {
      const base = withModelPrefix(await openCheckpoint(opts.model));
      const adapter = await openAdapter(opts.adapter, { base }).finally(() => base.close());
      try {
        const modules: LoraModule[] = [];
        for (const name of adapter.moduleNames()) modules.push(await adapter.readModule(name));
        model.addLoraVariant("full", modules);
        if (opts.rank !== undefined) {
          model.addLoraVariant(variantForRank(opts.rank), await collect(truncateAdapter(adapter, opts.rank, { quiet: opts.quiet })));
        }
      } finally {
        await adapter.close();
      }
    } else if (opts.finetuned) {
      const ft = withModelPrefix(await openCheckpoint(opts.finetuned));
      try {
        const ftConfigPath = join(opts.finetuned, "config.json");
        checkSameArchitecture(model.config, parseModelConfig(ft.config, ftConfigPath), ftConfigPath);
        await model.addCheckpointVariant("full", ft);
        if (opts.rank !== undefined) {
          const base = withModelPrefix(await openCheckpoint(opts.model));
          try {
            model.addLoraVariant(variantForRank(opts.rank), await collect(lowRankFromFull(base, ft, opts.rank, { quiet: opts.quiet })));
          } finally {
            await base.close();
          }
        }
      } finally {
        await ft.close();
      }
    }
  } catch (err) {
    await model.close();
    throw err;
  }
  return model;
}
