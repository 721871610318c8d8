/**
 * The chat and sampling vocabulary: what a conversation, a sampling plan and a generated answer
 * are. The bottom floor under engine/ (which runs them in-process) and backends/ (which sends
 * them to a server): both import it, neither imports the other for these words.
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

/** The name of the rank-k truncated variant, whatever k is (the config still calls it `rank1`). */
export const variantForRank = (k: number): VariantName => `rank${k}`;

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

/** What one completion asks of a model. */
export interface CompletionRequest {
  maxTokens: number;
  /** default 0 (greedy): a judge should answer the same way twice */
  temperature?: number;
}

/**
 * Messages in, the assistant's text out: how the LLM investigator (judge/) asks its judge model,
 * built on an OpenAI-compatible endpoint by backends/chat-completion.ts. It throws on any
 * transport or server failure; capping the reply's size is the implementation's job.
 */
export type ChatCompletionFn = (messages: readonly ChatMessage[], request: CompletionRequest) => Promise<string>;
