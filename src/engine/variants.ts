/**
 * The audited subject as one loaded model with its variants: `base`, `full` (base + the whole
 * fine-tune) and `rank<k>` (base + the rank-k truncation of ΔW, read from the folder a scan wrote
 * or computed in memory). LoRA variants are side paths over the shared base weights; a full
 * fine-tune keeps only its changed tensors.
 */
import { InputError } from "../errors";
import { openCheckpoint } from "../io/checkpoint";
import { openAdapter } from "../io/peft";
import type { Checkpoint, LoraAdapter, LoraModule } from "../io/types";
import { log } from "../progress";
import { variantForRank } from "../chat/types";
import { lowRankFromFull, truncateAdapter } from "../delta/truncate";
import type { Device } from "../linalg/ort";
import { loadModel, type LoadedModel, type LoadOptions } from "./index";
import { openAddedRows, vocabularyGrowth } from "../delta/vocab-growth";
import { pathExists } from "../io/fs-util";
import { engineName, withModelPrefix } from "./names";
import { parseModelConfig, type ModelConfig } from "./config";
import { join } from "node:path";
import type { PrecisionChoice } from "./precision";
import type { Workload } from "./estimate";
import { decideSubjectPrecision } from "./subject-precision";
import { addFullVariant } from "./full-delta";

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
    if (k === "vocabSize" && ft.vocabSize > base.vocabSize) {
      throw new InputError(`config.json adds ${ft.vocabSize - base.vocabSize} token(s) to the base model's vocabulary (vocab_size ${ft.vocabSize} vs ${base.vocabSize}): audit it as the subject (--finetuned), which runs every variant on its vocabulary`, where);
    }
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
  /**
   * A PEFT adapter folder that already holds the rank-`rank` truncation of this subject (scan's
   * rank1-adapter/, written by delta/pass.ts): `rank${rank}` is read from it instead of being
   * truncated again, so the variant is exactly the adapter the report ships. Without it the
   * truncation is computed in memory by the same walk.
   */
  rankAdapterDir?: string;
  /**
   * More truncations of this subject, each a folder the scan's delta pass wrote (delta/ladder.ts):
   * the rank ladder's other rungs, registered as `rank${rank}` beside `rank${rank}` above.
   */
  ladder?: ReadonlyArray<{ rank: number; dir: string }>;
  device?: Device;
  threads?: number;
  quiet?: boolean;
  /** how the base weights are stored (default auto: by free memory and the model's size; precision.ts) */
  precision?: PrecisionChoice;
  /** the work ahead, for auto's memory estimate (default: subject-precision.ts DEFAULT_WORKLOAD) */
  workload?: Workload;
  /** the flag or config key naming the precision in errors (default --precision) */
  precisionSource?: string;
}

async function collect(it: AsyncIterable<LoraModule>): Promise<LoraModule[]> {
  const out: LoraModule[] = [];
  for await (const m of it) out.push(m);
  return out;
}

async function readModules(adapter: LoraAdapter): Promise<LoraModule[]> {
  const modules: LoraModule[] = [];
  for (const name of adapter.moduleNames()) modules.push(await adapter.readModule(name));
  return modules;
}

/** Run `fn` on an open resource and close it afterwards, whatever happens. */
async function using<T extends { close(): Promise<void> }, R>(res: T, fn: (r: T) => Promise<R>): Promise<R> {
  try {
    return await fn(res);
  } finally {
    await res.close();
  }
}

/** The base checkpoint named as the engine names it (a bare decoder's tensors get `model.`). */
async function openBase(dir: string): Promise<Checkpoint> {
  return withModelPrefix(await openCheckpoint(dir));
}

/** A full fine-tune named as the engine names it, refused when its config.json computes another function than the base's. */
async function openFinetune(base: ModelConfig, dir: string): Promise<Checkpoint> {
  const ft = withModelPrefix(await openCheckpoint(dir));
  try {
    const path = join(dir, "config.json");
    checkSameArchitecture(base, parseModelConfig(ft.config, path), path);
  } catch (err) {
    await ft.close();
    throw err;
  }
  return ft;
}

/** An open adapter's modules, truncated to rank k when asked. */
async function adapterModules(adapter: LoraAdapter, rank?: number, quiet?: boolean): Promise<LoraModule[]> {
  return rank === undefined ? readModules(adapter) : collect(truncateAdapter(adapter, rank, { quiet }));
}

/** The rank-k LoRA of a full fine-tune's ΔW (both opened as the engine names them). */
function finetuneLowRank(base: Checkpoint, ft: Checkpoint, rank: number, quiet?: boolean): Promise<LoraModule[]> {
  return collect(lowRankFromFull(base, ft, rank, { quiet, onWarning: (m) => log(`warning: ${m}`) }));
}

/** A PEFT adapter's modules, checked against the base model in `baseDir`, truncated to rank k when asked. */
export async function readAdapterModules(baseDir: string, dir: string, opts: { rank?: number; quiet?: boolean } = {}): Promise<LoraModule[]> {
  return using(await openBase(baseDir), async (base) => using(await openAdapter(dir, { base }), (adapter) => adapterModules(adapter, opts.rank, opts.quiet)));
}

/** The rank-k LoRA of the full fine-tune in `dir` (top-k SVD of each decoder linear's ΔW against the base in `baseDir`). */
export async function readFinetuneLowRank(baseDir: string, dir: string, rank: number, opts: { quiet?: boolean } = {}): Promise<LoraModule[]> {
  return using(await openBase(baseDir), async (base) => {
    const config = parseModelConfig(base.config, join(baseDir, "config.json"));
    return using(await openFinetune(config, dir), (ft) => finetuneLowRank(base, ft, rank, opts.quiet));
  });
}

/** Register the full fine-tune in `dir` as variant `name` (it must keep the base architecture). */
export async function addFinetunedVariant(model: LoadedModel, name: string, dir: string): Promise<void> {
  await using(await openFinetune(model.config, dir), (ft) => addFullVariant(model, name, model.dir, ft, { quiet: true }));
}

/**
 * Read a rank-k adapter folder as a user's adapter is read (openAdapter, checked against
 * `base`), refusing one that holds another rank (it would be served under the wrong name).
 */
async function readRankFolder(dir: string, base: Checkpoint, rank: number): Promise<LoraModule[]> {
  const adapter = await openAdapter(dir, { base });
  try {
    const modules = await readModules(adapter);
    const other = modules.find((m) => m.rank !== rank);
    if (other) throw new InputError(`module ${other.name} has rank ${other.rank}, but this folder should hold the rank-${rank} truncation`, dir);
    return modules;
  } finally {
    await adapter.close();
  }
}

/**
 * The vocabulary every variant of the subject runs: a full fine-tune that added tokens (or an
 * adapter folder cut from one, which holds its rows in ADDED_ROWS_FILE) pads the base with its
 * added rows and brings its tokenizer (delta/vocab-growth.ts); undefined: the base's own.
 */
async function subjectVocabulary(opts: SubjectOptions): Promise<LoadOptions["vocabulary"]> {
  if (!opts.finetuned && !opts.adapter) return undefined;
  return using(await openBase(opts.model), async (base) => {
    if (opts.finetuned) {
      const ft = withModelPrefix(await openCheckpoint(opts.finetuned));
      let growth;
      try {
        growth = vocabularyGrowth(base, ft);
      } catch (err) {
        await ft.close();
        throw err;
      }
      if (!growth) {
        await ft.close();
        return undefined;
      }
      // the fine-tune's own rows, read from it for as long as the model lives
      return { rows: { source: ft, firstRow: growth.baseRows, baseRows: growth.baseRows, rows: growth.rows, tensors: growth.tensors }, tokenizerDir: opts.finetuned };
    }
    const rows = await openAddedRows(opts.adapter!, base, engineName);
    if (!rows) return undefined;
    const tokenizerDir = (await pathExists(join(opts.adapter!, "tokenizer.json"))) ? opts.adapter! : opts.model;
    return { rows, tokenizerDir };
  });
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
  if (opts.rankAdapterDir !== undefined && opts.rank === undefined) throw new Error("loadSubject: rankAdapterDir needs the rank it holds");
  if (opts.ladder?.length && opts.rank === undefined) throw new Error("loadSubject: a ladder needs the rank variant it extends");
  const { precision } = await decideSubjectPrecision({ ...opts, where: opts.precisionSource });
  const vocabulary = await subjectVocabulary(opts);
  const model = await loadModel(opts.model, { device: opts.device, threads: opts.threads, vocabulary, precision });
  try {
    if (opts.adapter) {
      const base = await openBase(opts.model);
      try {
        const adapter = await openAdapter(opts.adapter, { base });
        try {
          model.addLoraVariant("full", await adapterModules(adapter));
          if (opts.rank !== undefined) {
            // a rank folder cut from this adapter carries its module names: checked as it is
            const low = opts.rankAdapterDir !== undefined
              ? await readRankFolder(opts.rankAdapterDir, base, opts.rank)
              : await adapterModules(adapter, opts.rank, opts.quiet);
            model.addLoraVariant(variantForRank(opts.rank), low);
          }
          for (const rung of opts.ladder ?? []) model.addLoraVariant(variantForRank(rung.rank), await readRankFolder(rung.dir, base, rung.rank));
        } finally {
          await adapter.close();
        }
      } finally {
        await base.close();
      }
    } else if (opts.finetuned) {
      const ft = await openFinetune(model.config, opts.finetuned);
      try {
        await addFullVariant(model, "full", opts.model, ft, { quiet: opts.quiet });
        if (opts.rank !== undefined) {
          const rawBase = await openCheckpoint(opts.model);
          try {
            let low: LoraModule[];
            if (opts.rankAdapterDir !== undefined) {
              // cut from the checkpoints under their own tensor names (a bare decoder's lack
              // `model.`): checked against the base as stored, then named as the engine sees it
              low = await readRankFolder(opts.rankAdapterDir, rawBase, opts.rank);
              for (const m of low) m.name = engineName(rawBase, m.name);
            } else {
              low = await finetuneLowRank(withModelPrefix(rawBase), ft, opts.rank, opts.quiet);
            }
            model.addLoraVariant(variantForRank(opts.rank), low);
            for (const rung of opts.ladder ?? []) {
              const modules = await readRankFolder(rung.dir, rawBase, rung.rank);
              for (const m of modules) m.name = engineName(rawBase, m.name);
              model.addLoraVariant(variantForRank(rung.rank), modules);
            }
          } finally {
            await rawBase.close();
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
