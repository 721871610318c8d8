/**
 * Contracts of the io/ stage that the other stages program against.
 * Implementations: safetensors.ts (one file), checkpoint.ts (HF folders, sharded), peft.ts.
 */

/** Dtypes delta-audit reads; all are decoded to Float32Array. */
export type DType = "F32" | "F16" | "BF16" | "F64";

export interface TensorInfo {
  name: string;
  dtype: DType;
  /** row-major, outermost first (PyTorch order: a Linear weight is [out, in]) */
  shape: number[];
  /** the file the bytes live in */
  file: string;
  /** absolute byte offset of the tensor's first byte in `file` */
  offset: number;
  byteLength: number;
}

/** Random-access, lazy access to named tensors. Never holds a whole file in memory. */
export interface TensorSource {
  /** every tensor name, in file order */
  names(): string[];
  info(name: string): TensorInfo | undefined;
  /** decode one tensor to float32 (row-major) with positional reads */
  read(name: string): Promise<Float32Array>;
  /**
   * Optional (SafetensorsFile and openCheckpoint() provide it): decode rows
   * [rowStart, rowStart + rowCount) of the first dimension, to stream tensors too large to hold
   * in float32 at once.
   */
  readRows?(name: string, rowStart: number, rowCount: number): Promise<Float32Array>;
  /** Optional (SafetensorsFile and openCheckpoint() provide it): the tensor's raw little-endian bytes. */
  readRaw?(name: string): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** A Hugging Face checkpoint folder: config.json + single or sharded safetensors. */
export interface Checkpoint extends TensorSource {
  dir: string;
  /** parsed config.json (untrusted: validate fields before use) */
  config: Record<string, unknown>;
}

/** One adapted linear module of a LoRA adapter. ΔW = scale · B · A, shape [out, in]. */
export interface LoraModule {
  /** base module name, e.g. "model.layers.0.self_attn.q_proj" (the weight is `${name}.weight`) */
  name: string;
  rank: number;
  scale: number;
  outFeatures: number;
  inFeatures: number;
  /** [rank, in] row-major (fan_in_fan_out already undone) */
  A: Float32Array;
  /** [out, rank] row-major */
  B: Float32Array;
}

/** The adapter_config.json fields delta-audit uses (PEFT LoraConfig). */
export interface AdapterConfig {
  peft_type: "LORA";
  r: number;
  lora_alpha: number;
  use_rslora: boolean;
  target_modules: string[] | string | null;
  rank_pattern: Record<string, number>;
  alpha_pattern: Record<string, number>;
  fan_in_fan_out: boolean;
  base_model_name_or_path: string | null;
  /** everything else in the file, preserved on round-trips */
  [key: string]: unknown;
}

/** An opened PEFT adapter: config parsed, modules read lazily one at a time. */
export interface LoraAdapter {
  dir: string;
  config: AdapterConfig;
  /** base module names of every adapted module, in file order */
  moduleNames(): string[];
  /** shape and rank without reading the factors */
  moduleInfo(name: string): { rank: number; scale: number; outFeatures: number; inFeatures: number };
  /**
   * Read and decode both factors. Non-finite values are refused (InputError) unless
   * `checkFinite: false` — for callers that validate downstream instead (a NaN/Inf in A or B
   * makes the r×r Gram matrices non-finite), since the check costs about as much as the read.
   */
  readModule(name: string, opts?: { checkFinite?: boolean }): Promise<LoraModule>;
  close(): Promise<void>;
}
