/**
 * The Backend interface: how elicit/ talks to a model, whatever serves it.
 * Implementations: embedded.ts (our ONNX engine), openai.ts (any OpenAI-compatible server).
 */

import type { ContrastOptions, GenerationRequest, GenerationResult, VariantName } from "../chat/types";

export interface BackendCapabilities {
  /** contrastive decoding between full and base is possible */
  contrast: boolean;
}

export type ProgressFn = (done: number, total: number) => void;

export interface Backend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  /** variants this backend can serve, e.g. ["base", "full", "rank1"] */
  variants(): VariantName[];
  /** generate every request on one variant (batched as the backend sees fit); order preserved */
  generate(variant: VariantName, requests: GenerationRequest[], onProgress?: ProgressFn): Promise<GenerationResult[]>;
  /** contrastive decoding full vs base; only when capabilities.contrast */
  contrastiveGenerate?(requests: GenerationRequest[], opts: ContrastOptions, onProgress?: ProgressFn): Promise<GenerationResult[]>;
  close(): Promise<void>;
}
