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

export type { LoadedModel, GenerateRequest, GenerateResult, GenerateProgress, DecodeStream, EngineOptions } from "./model";
export { MAX_BATCH, PREFILL_CHUNK } from "./model";
export type { ModelConfig } from "./config";
export type { TextTokenizer } from "./tokenizer";
export { parseModelConfig } from "./config";
export { loadTokenizer } from "./tokenizer";

export interface LoadOptions {
  device?: Device;
  /** intra-op threads for ONNX Runtime (default: all cores) */
  threads?: number;
  /** bytes of weights per session segment (default: ~5% of the model, at least 64 MiB) */
  segmentBytes?: number;
}

/** Load a checkpoint folder (config.json + safetensors; tokenizer.json when present). */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const ckpt = withModelPrefix(await openCheckpoint(dir));
  try {
    const config = parseModelConfig(ckpt.config, join(dir, "config.json"));
    const tokenizer: TextTokenizer | undefined = (await pathExists(join(dir, "tokenizer.json"))) ? await loadTokenizer(dir) : undefined;
    // the checkpoint stays open for embedding rows; the model closes it
    return await DecoderModel.create(config, ckpt, tokenizer, dir, opts, () => ckpt.close());
  } catch (err) {
    await ckpt.close().catch(() => undefined);
    throw err;
  }
}
