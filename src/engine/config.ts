/**
 * config.json → a validated ModelConfig for the Llama-family decoders the engine runs
 * (llama, mistral, qwen2, qwen3 with Hugging Face semantics). Fields that would change the
 * computation in a way the engine does not implement are refused by name, never ignored.
 */
import { InputError } from "../errors";

export const SUPPORTED_MODEL_TYPES = Object.freeze(["llama", "mistral", "qwen2", "qwen3"] as const);
export type ModelType = (typeof SUPPORTED_MODEL_TYPES)[number];

export interface Llama3RopeScaling {
  type: "llama3";
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalMaxPositionEmbeddings: number;
}

export interface ModelConfig {
  modelType: ModelType;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: Llama3RopeScaling | null;
  maxPositionEmbeddings: number;
  /**
   * The longest context the engine runs exactly: max_position_embeddings, or the sliding
   * window when one is configured (within the window, sliding-window attention is full
   * attention; beyond it the engine would mis-compute, so it stops there).
   */
  maxContext: number;
  /** the sliding window, when sliding-window attention is configured */
  slidingWindow: number | null;
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (qwen2 always; others with attention_bias) */
  qkvBias: boolean;
  /** o_proj carries a bias (attention_bias on llama / mistral / qwen3) */
  oBias: boolean;
  /** gate/up/down carry biases (llama mlp_bias) */
  mlpBias: boolean;
  /** per-head RMSNorm of q and k before rotary (qwen3) */
  qkNorm: boolean;
  /** token ids from config.json, if any (tokenizer files may override) */
  bosTokenId: number | null;
  eosTokenIds: number[];
}

/** Hidden activations that the engine implements (HF ACT2FN names for SiLU). */
const SILU_NAMES = new Set(["silu", "swish"]);

function posInt(c: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
    throw new InputError(`config key '${key}' must be a positive integer, got ${JSON.stringify(c[key])}`, file);
  }
  return v;
}

function posNum(c: Record<string, unknown>, key: string, file: string, fallback: number): number {
  const v = c[key] ?? fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) {
    throw new InputError(`config key '${key}' must be a positive number, got ${JSON.stringify(c[key])}`, file);
  }
  return v;
}

function tokenIds(v: unknown): number[] {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number" && Number.isInteger(x) && x >= 0);
  return [];
}

/** Validate a parsed config.json. `file` names it in error messages. */
export function parseModelConfig(raw: unknown, file = "config.json"): ModelConfig {
  if (!raw || typeof raw !== "object" || Array.isArray(raw)) throw new InputError("not a JSON object", file);
  const c = raw as Record<string, unknown>;
  const modelType = c.model_type;
  if (typeof modelType !== "string" || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    throw new InputError(
      `unsupported model_type ${JSON.stringify(modelType)} (the embedded engine runs ${SUPPORTED_MODEL_TYPES.join(", ")}; use --backend openai for others)`,
      file,
    );
  }
  const mt = modelType as ModelType;
  const hiddenSize = posInt(c, "hidden_size", file);
  const numLayers = posInt(c, "num_hidden_layers", file);
  const numHeads = posInt(c, "num_attention_heads", file);
  const numKvHeads = posInt(c, "num_key_value_heads", file, numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new InputError(`num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`, file);
  }
  let headDim: number;
  if (c.head_dim === undefined || c.head_dim === null) {
    if (hiddenSize % numHeads !== 0) throw new InputError(`hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`, file);
    headDim = hiddenSize / numHeads;
  } else headDim = posInt(c, "head_dim", file);
  if (headDim % 2 !== 0) throw new InputError(`head_dim ${headDim} must be even for rotary embeddings`, file);

  const act = c.hidden_act ?? "silu";
  if (typeof act !== "string" || !SILU_NAMES.has(act)) {
    throw new InputError(`unsupported hidden_act ${JSON.stringify(act)} (only silu)`, file);
  }
  // Fields that change the computation and are not implemented: refuse by name.
  if (c.partial_rotary_factor !== undefined && c.partial_rotary_factor !== null && c.partial_rotary_factor !== 1) {
    throw new InputError(`unsupported partial_rotary_factor ${JSON.stringify(c.partial_rotary_factor)}`, file);
  }
  for (const moe of ["num_experts", "num_local_experts", "moe_intermediate_size", "num_experts_per_tok"]) {
    const v = c[moe];
    if (v !== undefined && v !== null && v !== 0) throw new InputError(`unsupported field '${moe}' (mixture-of-experts models are not supported)`, file);
  }
  const pretrainingTp = c.pretraining_tp;
  if (pretrainingTp !== undefined && pretrainingTp !== null && pretrainingTp !== 1) {
    // transformers computes the same function for any pretraining_tp; accept but nothing to do
  }
  const maxPositionEmbeddings = posInt(c, "max_position_embeddings", file, 4096);
  // Sliding-window attention only differs from full attention once the context exceeds the
  // window, so such models run with their context capped at the window (maxContext).
  const slidingActive =
    mt === "qwen2" || mt === "qwen3"
      ? c.use_sliding_window === true
      : c.sliding_window !== undefined && c.sliding_window !== null;
  const layerTypes = Array.isArray(c.layer_types) ? (c.layer_types as unknown[]) : [];
  if (layerTypes.some((t) => t !== "full_attention" && t !== "sliding_attention")) {
    throw new InputError(`unsupported layer_types ${JSON.stringify([...new Set(layerTypes)])} (supported: full_attention, sliding_attention)`, file);
  }
  let slidingWindow: number | null = null;
  if (slidingActive || layerTypes.includes("sliding_attention")) {
    const w = c.sliding_window;
    if (typeof w !== "number" || !Number.isInteger(w) || w <= 0) {
      throw new InputError(`sliding-window attention is configured but sliding_window is ${JSON.stringify(w)}`, file);
    }
    slidingWindow = w;
  }
  let ropeScaling: Llama3RopeScaling | null = null;
  const rs = c.rope_scaling;
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== "object" || Array.isArray(rs)) throw new InputError("rope_scaling must be an object or null", file);
    const r = rs as Record<string, unknown>;
    const type = r.rope_type ?? r.type;
    if (type === "llama3") {
      const need = (k: string): number => {
        const v = r[k];
        if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new InputError(`rope_scaling.${k} must be a positive number`, file);
        return v;
      };
      ropeScaling = {
        type: "llama3",
        factor: need("factor"),
        lowFreqFactor: need("low_freq_factor"),
        highFreqFactor: need("high_freq_factor"),
        originalMaxPositionEmbeddings: need("original_max_position_embeddings"),
      };
      if (ropeScaling.highFreqFactor <= ropeScaling.lowFreqFactor) throw new InputError("rope_scaling.high_freq_factor must exceed low_freq_factor", file);
    } else if (type !== "default") {
      throw new InputError(`unsupported rope_scaling type ${JSON.stringify(type)} (supported: llama3)`, file);
    }
  }
  const attentionBias = c.attention_bias === true;
  const mlpBias = c.mlp_bias === true;
  const eos = tokenIds(c.eos_token_id);
  const bos = tokenIds(c.bos_token_id);
  return {
    modelType: mt,
    hiddenSize,
    numLayers,
    numHeads,
    numKvHeads,
    headDim,
    intermediateSize: posInt(c, "intermediate_size", file),
    vocabSize: posInt(c, "vocab_size", file),
    rmsNormEps: posNum(c, "rms_norm_eps", file, 1e-6),
    ropeTheta: posNum(c, "rope_theta", file, 10000),
    ropeScaling,
    maxPositionEmbeddings,
    maxContext: slidingWindow === null ? maxPositionEmbeddings : Math.min(maxPositionEmbeddings, slidingWindow),
    slidingWindow,
    // transformers' PretrainedConfig defaults tie_word_embeddings to true
    tieWordEmbeddings: c.tie_word_embeddings === undefined ? true : c.tie_word_embeddings === true,
    qkvBias: mt === "qwen2" || attentionBias,
    oBias: mt !== "qwen2" && attentionBias,
    mlpBias,
    qkNorm: mt === "qwen3",
    bosTokenId: bos[0] ?? null,
    eosTokenIds: eos,
  };
}

/** HF rotary inverse frequencies (float64), with llama3 scaling when configured. */
export function ropeInvFreq(cfg: ModelConfig): Float64Array {
  const D = cfg.headDim;
  const half = D / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / D);
  const rs = cfg.ropeScaling;
  if (!rs) return inv;
  const lowWavelen = rs.originalMaxPositionEmbeddings / rs.lowFreqFactor;
  const highWavelen = rs.originalMaxPositionEmbeddings / rs.highFreqFactor;
  for (let i = 0; i < half; i++) {
    const f = inv[i]!;
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highWavelen) continue;
    if (wavelen > lowWavelen) inv[i] = f / rs.factor;
    else {
      const smooth = (rs.originalMaxPositionEmbeddings / wavelen - rs.lowFreqFactor) / (rs.highFreqFactor - rs.lowFreqFactor);
      inv[i] = (1 - smooth) * (f / rs.factor) + smooth * f;
    }
  }
  return inv;
}
