/**
 * A plain-TypeScript float64 forward pass of a Llama-family decoder (llama, mistral, qwen2,
 * qwen3) with Hugging Face semantics. Slow and deliberately simple: no ONNX, no caching,
 * no shared code with src/engine/. Tests compare the engine (and anything else that runs a
 * model) against it.
 *
 * Semantics follow transformers' modeling_llama / modeling_qwen2 / modeling_qwen3:
 * RMSNorm x·rsqrt(mean(x²)+eps)·w, rotary "rotate_half" layout, GQA, SwiGLU MLP,
 * optional q/k/v(/o) biases (taken from the weights when present), qwen3 per-head q/k RMSNorm
 * before rotary, llama3 rope scaling, tied embeddings when lm_head.weight is absent.
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

/** Inverse rotary frequencies, with HF's "llama3" scaling when configured. */
export function referenceInvFreq(config: Record<string, unknown>, headDim: number): Float64Array {
  const theta = num(config, "rope_theta", 10000);
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(theta, (2 * i) / headDim);
  const rs = config.rope_scaling as Record<string, unknown> | null | undefined;
  const type = rs ? (rs.rope_type ?? rs.type) : undefined;
  if (rs && type === "llama3") {
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
  } else if (rs && type !== "default") {
    throw new Error(`reference: rope_scaling type ${String(type)} not supported`);
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

const silu = (v: number) => v / (1 + Math.exp(-v));

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
  const opt = (name: string) => weights.get(name);
  const H = num(config, "hidden_size");
  const L = num(config, "num_hidden_layers");
  const nH = num(config, "num_attention_heads");
  const nKV = num(config, "num_key_value_heads", nH);
  const D = typeof config.head_dim === "number" ? config.head_dim : H / nH;
  const I = num(config, "intermediate_size");
  const V = num(config, "vocab_size");
  const eps = num(config, "rms_norm_eps", 1e-6);
  const group = nH / nKV;
  const invFreq = referenceInvFreq(config, D);

  const loraByName = new Map<string, LoraModule>();
  for (const m of input.lora ?? []) loraByName.set(m.name, m);
  const proj = (name: string, x: Float64Array, outF: number): Float64Array => {
    const y = linear(x, get(`${name}.weight`), outF, opt(`${name}.bias`));
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
      const qn = opt(`${p}.self_attn.q_norm.weight`);
      const kn = opt(`${p}.self_attn.k_norm.weight`);
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
      for (let i = 0; i < I; i++) g[i] = silu(g[i]!) * u[i]!;
      const d = proj(`${p}.mlp.down_proj`, g, H);
      for (let i = 0; i < H; i++) h1[i] = h1[i]! + d[i]!;
      next.push(h1);
    }
    hs = next;
  }
  const head = opt("lm_head.weight") ?? embed;
  return hs.map((h) => linear(rmsNorm(h, get("model.norm.weight"), eps), head, V));
}
