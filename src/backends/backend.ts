/**
 * The Backend interface: how elicit/ talks to a model, whatever serves it.
 * Implementations: embedded.ts (our ONNX engine), openai.ts (any OpenAI-compatible server).
 */

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/**
 * A variant of the audited model: "base", "full" (base + whole fine-tune), or
 * `rank${k}` (base + the rank-k truncation of ΔW). "contrast" is produced by contrastiveGenerate.
 */
export type VariantName = string;

export interface SamplingOptions {
  maxNewTokens: number;
  /** 0 = greedy */
  temperature: number;
  topP: number;
  seed: number;
}

export interface GenerationRequest {
  /** caller's id, echoed in results (e.g. `${probeId}#${sample}`) */
  id: string;
  messages: ChatMessage[];
  sampling: SamplingOptions;
}

export interface GenerationResult {
  id: string;
  text: string;
  /** tokens generated */
  tokens: number;
  finishReason: "stop" | "length";
}

export interface ContrastOptions {
  /** weight α in (1+α)·log p_full − α·log p_base */
  alpha: number;
  /** candidates: the top-k tokens of `full` at each step */
  topK: number;
}

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
