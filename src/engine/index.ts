/**
 * The embedded inference engine: load a Llama-family checkpoint folder and run it through
 * ONNX Runtime (see model.ts for the runtime, graph.ts for the graph).
 */
import { join } from "node:path";
import { openCheckpoint } from "../io/checkpoint";
import type { Device } from "../linalg/ort";
import { parseModelConfig } from "./config";
import { DecoderModel, type LoadedModel } from "./model";
import { loadTokenizer, type TextTokenizer } from "./tokenizer";
import { withModelPrefix } from "./names";
import { pathExists } from "../io/fs-util";
import { InputError } from "../errors";
import { withAddedRows, type AddedRows } from "../delta/vocab-growth";
import type { Precision } from "./precision";

export type { LoadedModel, GenerateRequest, GenerateResult, GenerateProgress, DecodeStream, EngineOptions } from "./model";
export { MAX_BATCH, PREFILL_CHUNK } from "./model";
export type { ModelConfig } from "./config";
export type { TextTokenizer } from "./tokenizer";
export { parseModelConfig } from "./config";
export { loadTokenizer } from "./tokenizer";
export type { Precision, PrecisionChoice } from "./precision";
export { PRECISION_CHOICES, checkPrecision } from "./precision";

export interface LoadOptions {
  device?: Device;
  /** intra-op threads for ONNX Runtime (default: all cores) */
  threads?: number;
  /** bytes of weights per session segment (default: ~5% of the model, at least 64 MiB) */
  segmentBytes?: number;
  /** how base weights are stored (default f32); `auto` is resolved before this (estimate.ts) */
  precision?: Precision;
  /**
   * A fine-tune's vocabulary for the base to run (a full fine-tune that added tokens): the
   * base's vocabulary matrices padded with these rows (named as the engine names tensors; their
   * source closes with the model, or here on failure) and the tokenizer in `tokenizerDir`
   */
  vocabulary?: { rows: AddedRows; tokenizerDir: string };
}

/** The padded vocabulary size, once the added rows are checked to start where the base's config ends. */
function addedVocabularySize(baseVocab: number, rows: AddedRows, dir: string): number {
  if (rows.baseRows !== baseVocab) {
    throw new InputError(`vocab_size is ${baseVocab}, but the added token rows start at row ${rows.baseRows}`, join(dir, "config.json"));
  }
  return rows.rows;
}

/** Load a checkpoint folder (config.json + safetensors; tokenizer.json when present). */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const vocab = opts.vocabulary;
  let ckpt;
  try {
    ckpt = withModelPrefix(await openCheckpoint(dir));
  } catch (err) {
    await vocab?.rows.source.close().catch(() => undefined);
    throw err;
  }
  // a fine-tune's added tokens: the base's vocabulary matrices padded with its rows (vocab-growth.ts)
  const src = vocab ? withAddedRows(ckpt, vocab.rows) : ckpt;
  try {
    let config = parseModelConfig(ckpt.config, join(dir, "config.json"));
    if (vocab) config = { ...config, vocabSize: addedVocabularySize(config.vocabSize, vocab.rows, dir) };
    const tokDir = vocab?.tokenizerDir ?? dir;
    const tokenizer: TextTokenizer | undefined = (await pathExists(join(tokDir, "tokenizer.json"))) ? await loadTokenizer(tokDir) : undefined;
    // the checkpoint stays open for embedding rows; the model closes it
    return await DecoderModel.create(config, src, tokenizer, dir, opts, () => src.close());
  } catch (err) {
    await src.close().catch(() => undefined);
    throw err;
  }
}
