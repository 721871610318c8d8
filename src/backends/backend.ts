/**
 * The Backend interface: how elicit/ talks to a model, whatever serves it.
 * Implementations: embedded.ts (our ONNX engine), openai.ts (any OpenAI-compatible server).
 */

import type { ContrastOptions, GenerationRequest, GenerationResult, VariantName } from "../chat/types";
import type { Precision } from "../engine/precision";

export interface BackendCapabilities {
  /** contrastive decoding between full and base is possible */
  contrast: boolean;
}

export type ProgressFn = (done: number, total: number) => void;

/**
 * A contrastive answer. `unreliable` says why its text cannot be trusted (a server that wrote
 * tokens as texts its tokenizer could not map back to ids): elicit/ marks the variant so and
 * judge/ does not judge it.
 */
export interface ContrastResult extends GenerationResult {
  unreliable?: string;
}

/**
 * Variants made of part of a served LoRA variant: the embedded engine builds them from factors it
 * already holds; a server would need one more adapter loaded per part, so the openai backend has
 * none. Layer attribution (judge/attribution.ts, elicit/attribution.ts) builds its variants so.
 */
export interface SubsetVariants {
  /** register `name`: base + the modules of `from` that `keep` accepts (by layer and module type, e.g. "q_proj"); returns how many it kept */
  add(name: VariantName, from: VariantName, keep: (layer: number, module: string) => boolean): number;
  remove(name: VariantName): void;
}

export interface Backend {
  readonly name: string;
  readonly capabilities: BackendCapabilities;
  /** variants built from parts of a served LoRA variant; absent where the backend cannot */
  readonly subsets?: SubsetVariants;
  /** how the embedded engine stores the base weights (engine/precision.ts); absent for a server */
  readonly precision?: Precision;
  /** variants this backend can serve, e.g. ["base", "full", "rank1"] */
  variants(): VariantName[];
  /** generate every request on one variant (batched as the backend sees fit); order preserved */
  generate(variant: VariantName, requests: GenerationRequest[], onProgress?: ProgressFn): Promise<GenerationResult[]>;
  /** contrastive decoding full vs base; only when capabilities.contrast */
  contrastiveGenerate?(requests: GenerationRequest[], opts: ContrastOptions, onProgress?: ProgressFn): Promise<ContrastResult[]>;
  close(): Promise<void>;
}
