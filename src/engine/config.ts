/**
 * config.json → a validated ModelConfig for the Llama-family decoders the engine runs
 * (llama, mistral, qwen2, qwen3 with Hugging Face semantics). Fields that would change the
 * computation in a way the engine does not implement are refused by name, never ignored.
 *
 * Absent fields take the defaults of transformers' LlamaConfig / MistralConfig / Qwen2Config /
 * Qwen3Config (not PretrainedConfig's): tie_word_embeddings false, qwen3 head_dim 128, mistral
 * sliding_window 4096. Both rotary spellings are read: 4.x `rope_theta` + `rope_scaling`, and
 * 5.x `rope_parameters`. Unknown keys are informational (transformers keeps them as attributes
 * the modeling code never reads) and are accepted.
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

/** HF "linear" rope scaling (position interpolation): every inverse frequency divided by factor. */
export interface LinearRopeScaling {
  type: "linear";
  factor: number;
}

export type RopeScaling = Llama3RopeScaling | LinearRopeScaling;

/**
 * MLP activations the engine implements, by what they compute (HF ACT2FN names map onto them):
 * silu = x·σ(x); gelu = exact erf GELU; gelu_tanh = the tanh approximation; relu; quick_gelu = x·σ(1.702x).
 */
export type Activation = "silu" | "gelu" | "gelu_tanh" | "relu" | "quick_gelu";

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
  ropeScaling: RopeScaling | null;
  /** the MLP activation (hidden_act) */
  hiddenAct: Activation;
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

/**
 * hidden_act names (transformers' ACT2FN) → what the engine computes. gelu_new, gelu_fast and
 * gelu_pytorch_tanh are all 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))) up to rounding.
 */
const ACTIVATIONS: Readonly<Record<string, Activation>> = Object.freeze({
  silu: "silu",
  swish: "silu",
  gelu: "gelu",
  gelu_new: "gelu_tanh",
  gelu_fast: "gelu_tanh",
  gelu_pytorch_tanh: "gelu_tanh",
  relu: "relu",
  quick_gelu: "quick_gelu",
});

/**
 * rope_scaling / rope_parameters types that are refused: for these the rotary tables (or an
 * attention factor) depend on the sequence length or change the attention scale, which the
 * engine does not implement; running them as plain rope would be silently wrong.
 */
const REFUSED_ROPE_TYPES = Object.freeze(["dynamic", "yarn", "longrope"]);

/** transformers' per-class defaults for fields config.json may omit. */
const CLASS_DEFAULTS: Readonly<Record<ModelType, { maxPositionEmbeddings: number; headDim?: number; slidingWindow?: number }>> = Object.freeze({
  llama: { maxPositionEmbeddings: 2048 },
  // MistralConfig's sliding_window defaults to 4096 (null disables it)
  mistral: { maxPositionEmbeddings: 4096 * 32, slidingWindow: 4096 },
  qwen2: { maxPositionEmbeddings: 32768 },
  // Qwen3Config's head_dim defaults to 128, not hidden_size / num_attention_heads
  qwen3: { maxPositionEmbeddings: 32768, headDim: 128 },
});

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The rotary settings from either spelling: transformers ≤ 4.x writes top-level `rope_theta`
 * and `rope_scaling` ({type|rope_type, factor, ...}); transformers 5 writes one
 * `rope_parameters` object ({rope_type, rope_theta, factor, ...}) and no top-level rope_theta.
 */
function parseRope(c: Record<string, unknown>, file: string): { theta: number; scaling: RopeScaling | null } {
  const params = c.rope_parameters;
  if (params !== undefined && params !== null && !isObject(params)) throw new InputError("rope_parameters must be an object or null", file);
  const rp = (params ?? {}) as Record<string, unknown>;
  if (Object.values(rp).some(isObject)) {
    throw new InputError(`unsupported rope_parameters per layer type (${Object.keys(rp).join(", ")}): the engine runs one rotary setting for all layers`, file);
  }
  const rs = c.rope_scaling;
  if (rs !== undefined && rs !== null && !isObject(rs)) throw new InputError("rope_scaling must be an object or null", file);
  const top = c.rope_theta;
  const nested = rp.rope_theta;
  if (top !== undefined && top !== null && nested !== undefined && nested !== null && top !== nested) {
    throw new InputError(`rope_theta ${JSON.stringify(top)} disagrees with rope_parameters.rope_theta ${JSON.stringify(nested)}`, file);
  }
  const theta = nested ?? top ?? 10000;
  if (typeof theta !== "number" || !Number.isFinite(theta) || theta <= 0) {
    throw new InputError(`config key 'rope_theta' must be a positive number, got ${JSON.stringify(theta)}`, file);
  }
  // the scaling settings live in rope_scaling (4.x) or in rope_parameters itself (5.x)
  const [field, r] = isObject(rs) ? ["rope_scaling", rs] : ["rope_parameters", rp];
  for (const [f, o] of [["rope_scaling", isObject(rs) ? rs : {}], ["rope_parameters", rp]] as const) {
    const prf = o.partial_rotary_factor;
    if (prf !== undefined && prf !== null && prf !== 1) throw new InputError(`unsupported ${f}.partial_rotary_factor ${JSON.stringify(prf)}`, file);
  }
  const type = r.rope_type ?? r.type ?? "default";
  if (isObject(rs) && params) {
    const other = rp.rope_type ?? rp.type ?? "default";
    if (other !== type) throw new InputError(`rope_scaling type ${JSON.stringify(type)} disagrees with rope_parameters type ${JSON.stringify(other)}`, file);
  }
  const need = (k: string): number => {
    const v = r[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw new InputError(`${field}.${k} must be a positive number, got ${JSON.stringify(v)}`, file);
    return v;
  };
  if (type === "default") return { theta, scaling: null };
  if (type === "linear") return { theta, scaling: { type: "linear", factor: need("factor") } };
  if (type === "llama3") {
    const scaling: Llama3RopeScaling = {
      type: "llama3",
      factor: need("factor"),
      lowFreqFactor: need("low_freq_factor"),
      highFreqFactor: need("high_freq_factor"),
      originalMaxPositionEmbeddings: need("original_max_position_embeddings"),
    };
    if (scaling.highFreqFactor <= scaling.lowFreqFactor) throw new InputError(`${field}.high_freq_factor must exceed low_freq_factor`, file);
    return { theta, scaling };
  }
  const why = REFUSED_ROPE_TYPES.includes(type as string) ? "its rotary tables depend on the sequence length or rescale attention, which the engine does not implement" : "unknown type";
  throw new InputError(`unsupported ${field} type ${JSON.stringify(type)} (${why}; supported: default, linear, llama3)`, file);
}

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
  const classHeadDim = CLASS_DEFAULTS[mt].headDim;
  if (c.head_dim === undefined && classHeadDim !== undefined) headDim = classHeadDim;
  else if (c.head_dim === undefined || c.head_dim === null) {
    if (hiddenSize % numHeads !== 0) throw new InputError(`hidden_size ${hiddenSize} is not a multiple of num_attention_heads ${numHeads}`, file);
    headDim = hiddenSize / numHeads;
  } else headDim = posInt(c, "head_dim", file);
  if (headDim % 2 !== 0) throw new InputError(`head_dim ${headDim} must be even for rotary embeddings`, file);

  const act = c.hidden_act ?? "silu";
  const hiddenAct = typeof act === "string" && Object.hasOwn(ACTIVATIONS, act) ? ACTIVATIONS[act]! : undefined;
  if (!hiddenAct) {
    throw new InputError(`unsupported hidden_act ${JSON.stringify(act)} (supported: ${Object.keys(ACTIVATIONS).join(", ")})`, file);
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
  const maxPositionEmbeddings = posInt(c, "max_position_embeddings", file, CLASS_DEFAULTS[mt].maxPositionEmbeddings);
  // Sliding-window attention only differs from full attention once the context exceeds the
  // window, so such models run with their context capped at the window (maxContext).
  const slidingActive =
    mt === "qwen2" || mt === "qwen3"
      ? c.use_sliding_window === true
      : mt === "mistral"
        ? c.sliding_window !== null
        : c.sliding_window !== undefined && c.sliding_window !== null;
  const layerTypes = Array.isArray(c.layer_types) ? (c.layer_types as unknown[]) : [];
  if (layerTypes.some((t) => t !== "full_attention" && t !== "sliding_attention")) {
    throw new InputError(`unsupported layer_types ${JSON.stringify([...new Set(layerTypes)])} (supported: full_attention, sliding_attention)`, file);
  }
  let slidingWindow: number | null = null;
  if (slidingActive || layerTypes.includes("sliding_attention")) {
    const w = c.sliding_window === undefined ? CLASS_DEFAULTS[mt].slidingWindow : c.sliding_window;
    if (typeof w !== "number" || !Number.isInteger(w) || w <= 0) {
      throw new InputError(`sliding-window attention is configured but sliding_window is ${JSON.stringify(w)}`, file);
    }
    slidingWindow = w;
  }
  const rope = parseRope(c, file);
  // Which projections carry biases is fixed per architecture in transformers: llama reads
  // attention_bias (q/k/v/o) and mlp_bias; qwen3 attention_bias only; qwen2 always has q/k/v
  // biases and no others; mistral has none (it ignores both keys).
  const attentionBias = (mt === "llama" || mt === "qwen3") && c.attention_bias === true;
  const mlpBias = mt === "llama" && c.mlp_bias === true;
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
    ropeTheta: rope.theta,
    ropeScaling: rope.scaling,
    hiddenAct,
    maxPositionEmbeddings,
    maxContext: slidingWindow === null ? maxPositionEmbeddings : Math.min(maxPositionEmbeddings, slidingWindow),
    slidingWindow,
    // LlamaConfig, MistralConfig, Qwen2Config and Qwen3Config all default tie_word_embeddings
    // to false (only the PretrainedConfig base class defaults it to true)
    tieWordEmbeddings: c.tie_word_embeddings === true,
    qkvBias: mt === "qwen2" || attentionBias,
    oBias: mt !== "qwen2" && attentionBias,
    mlpBias,
    qkNorm: mt === "qwen3",
    bosTokenId: bos[0] ?? null,
    eosTokenIds: eos,
  };
}

/** HF rotary inverse frequencies (float64), with linear or llama3 scaling when configured. */
export function ropeInvFreq(cfg: ModelConfig): Float64Array {
  const D = cfg.headDim;
  const half = D / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / D);
  const rs = cfg.ropeScaling;
  if (!rs) return inv;
  if (rs.type === "linear") {
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / rs.factor;
    return inv;
  }
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
