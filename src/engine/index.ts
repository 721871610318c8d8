/**
 * The embedded inference engine: load a Llama-family checkpoint folder and run it through
 * ONNX Runtime (see model.ts for the runtime, graph.ts for the graph).
 */
import { access } from "node:fs/promises";
import { join } from "node:path";
import { openCheckpoint } from "../io/checkpoint";
import type { Device } from "../linalg/ort";
import { parseModelConfig } from "./config";
import { DecoderModel, type LoadedModel } from "./model";
import { loadTokenizer, type TextTokenizer } from "./tokenizer";
import { loadWeightSet } from "./weights";

export type { LoadedModel, GenerateRequest, GenerateResult, GenerateProgress } from "./model";
export type { ModelConfig } from "./config";
export type { TextTokenizer } from "./tokenizer";
export { parseModelConfig } from "./config";
export { loadTokenizer } from "./tokenizer";

export interface LoadOptions {
  device?: Device;
  /** intra-op threads for ONNX Runtime (default: all cores) */
  threads?: number;
  /** most rows decoded together */
  maxBatch?: number;
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Load a checkpoint folder (config.json + safetensors; tokenizer.json when present). */
export async function loadModel(dir: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const ckpt = await openCheckpoint(dir);
  try {
    const config = parseModelConfig(ckpt.config, join(dir, "config.json"));
    const tokenizer: TextTokenizer | undefined = (await exists(join(dir, "tokenizer.json"))) ? await loadTokenizer(dir) : undefined;
    const weights = await loadWeightSet(config, { src: ckpt, where: dir });
    return new DecoderModel(config, weights, tokenizer, dir, opts);
  } finally {
    await ckpt.close();
  }
}
