/**
 * A plain-TypeScript float64 forward pass of a Llama-family decoder (llama, mistral, qwen2,
 * qwen3) with Hugging Face semantics. Slow and deliberately simple: no ONNX, no caching,
 * no shared code with src/engine/. Tests compare the engine (and anything else that runs a
 * model) against it.
 *
 * Semantics follow transformers' modeling_llama / modeling_qwen2 / modeling_qwen3:
 * RMSNorm x·rsqrt(mean(x²)+eps)·w, rotary "rotate_half" layout, GQA, SwiGLU MLP,
 * q/k/v(/o) and MLP biases as each architecture defines them, qwen3 per-head q/k RMSNorm
 * before rotary, linear and llama3 rope scaling (4.x rope_scaling or 5.x rope_parameters),
 * the hidden_act activations, tied embeddings only when tie_word_embeddings is true.
 */
import type { LoraModule } from "../../src/io/types";

export interface ReferenceInput {
  /** the parsed config.json */
  config: Record<string, unknown>;
  /** HF tensor names → float32 values (row-major, PyTorch shapes) */
  weights: Map<string, Float32Array>;
  /** LoRA modules added as ΔW = scale·B·A on the named linear layers */
  lora?: LoraModule[];
}

function num(config: Record<string, unknown>, key: string, fallback?: number): number {
  const v = config[key];
  if (typeof v === "number") return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`reference: config.${key} missing`);
}

/**
 * The rotary settings: transformers 4.x spells them `rope_theta` + `rope_scaling`,
 * transformers 5 one `rope_parameters` object holding rope_theta and the scaling fields.
 */
function ropeSettings(config: Record<string, unknown>): { theta: number; scaling: Record<string, unknown> | null } {
  const params = (config.rope_parameters ?? null) as Record<string, unknown> | null;
  const theta = (params?.rope_theta ?? config.rope_theta ?? 10000) as number;
  const scaling = (config.rope_scaling ?? params ?? null) as Record<string, unknown> | null;
  return { theta, scaling };
}

/** Inverse rotary frequencies, with HF's "linear" or "llama3" scaling when configured. */
export function referenceInvFreq(config: Record<string, unknown>, headDim: number): Float64Array {
  const { theta, scaling: rs } = ropeSettings(config);
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  const type = rs ? (rs.rope_type ?? rs.type ?? "default") : "default";
  if (rs && type === "linear") {
    // position interpolation: positions divided by factor, i.e. every frequency divided by it
    for (let i = 0; i < half; i++) inv[i] = inv[i]! / (rs.factor as number);
  } else if (rs && type === "llama3") {
    const factor = rs.factor as number;
    const low = rs.low_freq_factor as number;
    const high = rs.high_freq_factor as number;
    const oldCtx = rs.original_max_position_embeddings as number;
    const lowWavelen = oldCtx / low;
    const highWavelen = oldCtx / high;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i]!;
      if (wavelen < highWavelen) continue;
      if (wavelen > lowWavelen) {
        inv[i] = inv[i]! / factor;
        continue;
      }
      const smooth = (oldCtx / wavelen - low) / (high - low);
      inv[i] = (1 - smooth) * (inv[i]! / factor) + smooth * inv[i]!;
    }
  } else if (type !== "default") {
    throw new Error(`reference: rope type ${String(type)} not supported`);
  }
  return inv;
}

/** out[o] = Σ_i W[o,i]·x[i] (+ b[o]) for a PyTorch Linear weight [out, in]. */
function linear(x: Float64Array, w: Float32Array, outF: number, bias?: Float32Array): Float64Array {
  const inF = x.length;
  if (w.length !== outF * inF) throw new Error(`reference: weight size ${w.length} ≠ ${outF}×${inF}`);
  const y = new Float64Array(outF);
  for (let o = 0; o < outF; o++) {
    let s = 0;
    const row = o * inF;
    for (let i = 0; i < inF; i++) s += w[row + i]! * x[i]!;
    y[o] = s + (bias ? bias[o]! : 0);
  }
  return y;
}

function rmsNorm(x: Float64Array, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i]! * r * w[i]!;
  return y;
}

/** erf by its Maclaurin series (float64; |z| ≤ 6 is ample, erf(6) = 1 − 2e-17). */
function erf(z: number): number {
  if (z > 6) return 1;
  if (z < -6) return -1;
  let term = z;
  let sum = z;
  for (let n = 1; n < 200; n++) {
    term *= (-z * z) / n;
    const add = term / (2 * n + 1);
    sum += add;
    if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** transformers' ACT2FN, for the names the reference knows. */
const ACT: Record<string, (v: number) => number> = {
  silu: (v) => v * sigmoid(v),
  swish: (v) => v * sigmoid(v),
  relu: (v) => Math.max(0, v),
  gelu: (v) => 0.5 * v * (1 + erf(v / Math.SQRT2)),
  gelu_new: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))),
  gelu_pytorch_tanh: (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v * v * v))),
  quick_gelu: (v) => v * sigmoid(1.702 * v),
};

/**
 * Logits for every position of `ids` (no BOS added, positions 0..n-1), one float64 row of
 * vocabulary size per position.
 */
export function referenceLogits(input: ReferenceInput, ids: number[]): Float64Array[] {
  const { config, weights } = input;
  const get = (name: string): Float32Array => {
    const w = weights.get(name);
    if (!w) throw new Error(`reference: missing weight ${name}`);
    return w;
  };
  const H = num(config, "hidden_size");
  const L = num(config, "num_hidden_layers");
  const nH = num(config, "num_attention_heads");
  const nKV = num(config, "num_key_value_heads", nH);
  const modelType = config.model_type as string;
  // Qwen3Config's head_dim defaults to 128; the others fall back to hidden / heads
  const D = typeof config.head_dim === "number" ? config.head_dim : modelType === "qwen3" && config.head_dim === undefined ? 128 : H / nH;
  const I = num(config, "intermediate_size");
  const V = num(config, "vocab_size");
  const eps = num(config, "rms_norm_eps", 1e-6);
  const group = nH / nKV;
  const invFreq = referenceInvFreq(config, D);
  const act = ACT[(config.hidden_act as string | undefined) ?? "silu"];
  if (!act) throw new Error(`reference: hidden_act ${String(config.hidden_act)} not supported`);
  // biases per architecture, as the transformers modules are built: llama q/k/v/o with
  // attention_bias and MLP with mlp_bias; qwen2 q/k/v always; qwen3 q/k/v/o with
  // attention_bias; mistral none. Bias tensors the architecture lacks are ignored.
  const attnBias = (modelType === "llama" || modelType === "qwen3") && config.attention_bias === true;
  const qkvBias = modelType === "qwen2" || attnBias;
  const mlpBias = modelType === "llama" && config.mlp_bias === true;
  const biased = (name: string): boolean => {
    if (/(q_proj|k_proj|v_proj)$/.test(name)) return qkvBias;
    if (name.endsWith("o_proj")) return attnBias;
    return mlpBias;
  };

  const loraByName = new Map<string, LoraModule>();
  for (const m of input.lora ?? []) loraByName.set(m.name, m);
  const proj = (name: string, x: Float64Array, outF: number): Float64Array => {
    const y = linear(x, get(`${name}.weight`), outF, biased(name) ? get(`${name}.bias`) : undefined);
    const m = loraByName.get(name);
    if (m) {
      const ax = linear(x, m.A, m.rank);
      const bax = linear(ax, m.B, m.outFeatures);
      for (let o = 0; o < outF; o++) y[o] = y[o]! + m.scale * bax[o]!;
    }
    return y;
  };
  const rope = (vec: Float64Array, pos: number) => {
    // rotate_half layout: pairs (i, i + D/2) share frequency invFreq[i]
    const half = D / 2;
    for (let i = 0; i < half; i++) {
      const a = pos * invFreq[i]!;
      const c = Math.cos(a);
      const s = Math.sin(a);
      const x1 = vec[i]!;
      const x2 = vec[i + half]!;
      vec[i] = x1 * c - x2 * s;
      vec[i + half] = x2 * c + x1 * s;
    }
  };

  const embed = get("model.embed_tokens.weight");
  const S = ids.length;
  let hs: Float64Array[] = ids.map((id) => {
    if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`reference: id ${id} out of range`);
    return Float64Array.from(embed.subarray(id * H, (id + 1) * H));
  });

  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    const qs: Float64Array[][] = [];
    const ks: Float64Array[][] = [];
    const vs: Float64Array[][] = [];
    for (let t = 0; t < S; t++) {
      const x = rmsNorm(hs[t]!, get(`${p}.input_layernorm.weight`), eps);
      const q = proj(`${p}.self_attn.q_proj`, x, nH * D);
      const k = proj(`${p}.self_attn.k_proj`, x, nKV * D);
      const v = proj(`${p}.self_attn.v_proj`, x, nKV * D);
      const qh: Float64Array[] = [];
      const kh: Float64Array[] = [];
      const vh: Float64Array[] = [];
      const qn = modelType === "qwen3" ? get(`${p}.self_attn.q_norm.weight`) : undefined;
      const kn = modelType === "qwen3" ? get(`${p}.self_attn.k_norm.weight`) : undefined;
      for (let h = 0; h < nH; h++) {
        let head: Float64Array = q.slice(h * D, (h + 1) * D);
        if (qn) head = rmsNorm(head, qn, eps);
        rope(head, t);
        qh.push(head);
      }
      for (let h = 0; h < nKV; h++) {
        let head: Float64Array = k.slice(h * D, (h + 1) * D);
        if (kn) head = rmsNorm(head, kn, eps);
        rope(head, t);
        kh.push(head);
        vh.push(v.slice(h * D, (h + 1) * D));
      }
      qs.push(qh);
      ks.push(kh);
      vs.push(vh);
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < S; t++) {
      const attn = new Float64Array(nH * D);
      for (let h = 0; h < nH; h++) {
        const kvh = Math.floor(h / group);
        const scores = new Float64Array(t + 1);
        let max = -Infinity;
        for (let u = 0; u <= t; u++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += qs[t]![h]![d]! * ks[u]![kvh]![d]!;
          scores[u] = s / Math.sqrt(D);
          if (scores[u]! > max) max = scores[u]!;
        }
        let z = 0;
        for (let u = 0; u <= t; u++) z += scores[u] = Math.exp(scores[u]! - max);
        for (let u = 0; u <= t; u++) {
          const wgt = scores[u]! / z;
          for (let d = 0; d < D; d++) attn[h * D + d] += wgt * vs[u]![kvh]![d]!;
        }
      }
      const o = proj(`${p}.self_attn.o_proj`, attn, H);
      const h1 = new Float64Array(H);
      for (let i = 0; i < H; i++) h1[i] = hs[t]![i]! + o[i]!;
      const x2 = rmsNorm(h1, get(`${p}.post_attention_layernorm.weight`), eps);
      const g = proj(`${p}.mlp.gate_proj`, x2, I);
      const u = proj(`${p}.mlp.up_proj`, x2, I);
      for (let i = 0; i < I; i++) g[i] = act(g[i]!) * u[i]!;
      const d = proj(`${p}.mlp.down_proj`, g, H);
      for (let i = 0; i < H; i++) h1[i] = h1[i]! + d[i]!;
      next.push(h1);
    }
    hs = next;
  }
  // tied (tie_word_embeddings true; the four config classes default it to false): the head is
  // the embedding, and a stored lm_head.weight is ignored as transformers' tie_weights() does
  const head = config.tie_word_embeddings === true ? embed : get("lm_head.weight");
  return hs.map((h) => linear(rmsNorm(h, get("model.norm.weight"), eps), head, V));
}
