/**
 * The decoder as ONNX graphs, built in memory from a ModelConfig: a chain of *segments*
 * (a few decoder layers each) and a head split by vocabulary slice.
 *
 * Weights are constant initializers held as in-memory external data: ORT copies them when a
 * session is created and pre-packs the MatMul weights (batched decode then costs little more
 * than batch 1), and the caller drops its own copy once the segment's session exists. Loading
 * segment by segment keeps the load's peak memory at about the model plus one segment, and
 * no protobuf approaches the 2 GB limit. Linear weights are pre-transposed ([in, out]) for plain
 * MatMul; q/k/v and gate/up are fused into one matrix each. At int8 (precision.ts) the linears
 * and the head are MatMulInteger nodes on per-channel int8 weights, their input rounded to uint8
 * per token in the graph; at int4 they are com.microsoft MatMulNBits nodes on block-quantized
 * weights in their [out, in] layout (quantize.ts). The LoRA side paths stay float32 MatMuls.
 *
 * Run-time inputs (computed by the caller, see model.ts):
 *   hidden [B,S,H]   token embeddings for the first segment, the previous segment's output after
 *   cos, sin [B,1,S,D] rotary tables for each row's positions (HF rotate_half layout)
 *   mask [B,1,1,S,T] additive attention mask over past+new positions
 *   past_k.l, past_v.l [B,kv,P,D] the KV cache (P may be 0)
 *   L<l>.<module>.la / .lb  LoRA factors Aᵀ [in,r] and (s·B)ᵀ [r,out]
 *   gather [N]       (head) flattened b·S+s rows whose logits are wanted
 * Outputs: hidden_out, present_k.l / present_v.l [B,kv,P+S,D]; the head outputs logits [N,slice].
 */
import type { ModelConfig } from "./config";
import { OnnxType, int64Tensor, floatTensor, type OnnxModel, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from "../linalg/onnx-proto";
import { ACCURACY_LEVEL, blocksPerRow, type QuantizedMatrix } from "./quantize";

/** The linear modules of one layer that a LoRA adapter may target, in HF naming. */
export const LORA_TARGETS = Object.freeze(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const);
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** HF module path of a layer's linear, e.g. model.layers.3.self_attn.q_proj */
export function modulePath(layer: number, target: LoraTarget): string {
  const block = target === "gate_proj" || target === "up_proj" || target === "down_proj" ? "mlp" : "self_attn";
  return `model.layers.${layer}.${block}.${target}`;
}

/** Names of the weight inputs of the graph (see weights.ts for how they are filled). */
export const W = Object.freeze({
  ln1: (l: number) => `L${l}.ln1`,
  ln2: (l: number) => `L${l}.ln2`,
  qkv: (l: number) => `L${l}.qkv`,
  qkvBias: (l: number) => `L${l}.qkv_b`,
  qNorm: (l: number) => `L${l}.qn`,
  kNorm: (l: number) => `L${l}.kn`,
  o: (l: number) => `L${l}.o`,
  oBias: (l: number) => `L${l}.o_b`,
  gateUp: (l: number) => `L${l}.gu`,
  gateUpBias: (l: number) => `L${l}.gu_b`,
  down: (l: number) => `L${l}.down`,
  downBias: (l: number) => `L${l}.down_b`,
  norm: "norm",
  /** lm_head transposed, columns of one vocabulary slice: [H, slice size] */
  lmHeadSlice: (i: number) => `lm_head.${i}`,
  loraA: (l: number, t: LoraTarget) => `L${l}.${t}.la`,
  loraB: (l: number, t: LoraTarget) => `L${l}.${t}.lb`,
});

export const IO = Object.freeze({
  hidden: "hidden",
  hiddenOut: "hidden_out",
  cos: "cos",
  sin: "sin",
  mask: "mask",
  gather: "gather",
  logits: "logits",
  pastK: (l: number) => `past_k.${l}`,
  pastV: (l: number) => `past_v.${l}`,
  presentK: (l: number) => `present_k.${l}`,
  presentV: (l: number) => `present_v.${l}`,
});

/** Opset 17: Split/Unsqueeze take their sizes as inputs; SimplifiedLayerNormalization is an ORT op in the default domain. */
const OPSET = 17;

/** A graph weight: float32 values and dims, as weights.ts builds them. */
export interface GraphWeight {
  data: Float32Array;
  dims: number[];
}

/**
 * A linear weight stored quantized (quantized-weights.ts): `dims` are the float weight's
 * [in, out], `quant` the matrix in its operator's layout (quantize.ts).
 */
export interface QuantizedGraphWeight {
  quant: QuantizedMatrix;
  dims: number[];
}

export type AnyGraphWeight = GraphWeight | QuantizedGraphWeight;
const isQuantized = (w: AnyGraphWeight): w is QuantizedGraphWeight => "quant" in w;

/** An ONNX model plus the in-memory external data its initializers point at. */
export interface BuiltGraph {
  model: OnnxModel;
  externalData: { path: string; data: Uint8Array }[];
}

/** Helper shared by the segment builders: nodes, inputs, constants and weight initializers. */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly inputs: OnnxValueInfo[] = [];
  readonly outputs: OnnxValueInfo[] = [];
  readonly inits: OnnxTensor[] = [];
  readonly external: { path: string; data: Uint8Array }[] = [];
  private uid = 0;
  constructor(private readonly weights: (name: string) => AnyGraphWeight) {}
  tmp(hint: string): string {
    return `${hint}_${this.uid++}`;
  }
  node(op: string, ins: string[], attrs?: OnnxNode["attrs"], hint = op.toLowerCase(), domain?: string): string {
    const out = this.tmp(hint);
    this.nodes.push({ op, inputs: ins, outputs: [out], attrs, domain });
    return out;
  }
  i64(vals: number[]): string {
    const name = this.tmp("c");
    this.inits.push(int64Tensor(name, [vals.length], vals));
    return name;
  }
  f32(v: number): string {
    const name = this.tmp("cf");
    this.inits.push(floatTensor(name, [], [v]));
    return name;
  }
  input(name: string, type: number, shape: (number | string)[]): string {
    this.inputs.push({ name, type: type as OnnxValueInfo["type"], shape });
    return name;
  }
  /**
   * A model weight as a constant initializer whose bytes stay outside the protobuf (ORT copies
   * them at session creation, so the caller may drop its array afterwards). Constant MatMul
   * weights are pre-packed by ORT's CPU kernels, which is what makes batched decode cheap.
   */
  weight(name: string): string {
    const w = this.weights(name);
    if (isQuantized(w)) throw new Error(`internal: weight '${name}' is quantized; only linear weights may be`);
    this.externalInit(name, OnnxType.FLOAT, w.dims, w.data);
    return name;
  }
  /**
   * x rounded to uint8 codes per row (its last axis: one token) around the zero point 128, with
   * step max|x_row|/127, and that step [.., 1] plus rowPoison(x), so a NaN or infinite row
   * gives a non-finite product instead of codes rounded into range. Built once per tensor: q/k/v
   * (or gate/up) reading the same input share it.
   */
  private rowCodes(x: string): [string, string] {
    const hit = this.rowCodeCache.get(x);
    if (hit) return hit;
    const amax = this.node("ReduceMax", [this.node("Abs", [x])], { axes: [-1], keepdims: 1 }, "amax");
    // a row of zeros: any positive step rounds it to 128 exactly
    const step = this.node("Div", [this.node("Max", [amax, this.f32(1e-30)]), this.f32(127)], undefined, "astep");
    const codes = this.node("Cast", [this.node("Add", [this.node("Round", [this.node("Div", [x, step])]), this.f32(128)])], { to: OnnxType.UINT8 }, "acodes");
    const r: [string, string] = [codes, this.node("Add", [step, this.rowPoison(x)], undefined, "astep")];
    this.rowCodeCache.set(x, r);
    return r;
  }
  private readonly rowCodeCache = new Map<string, [string, string]>();
  /**
   * Σ x·0 over each row, [.., 1]: 0, or NaN when the row holds a NaN or ∞ (a sum cannot skip
   * them, as a max may). Both integer routes round activations, and MatMulNBits' level-4
   * quantizer turns a NaN row into finite output; adding this keeps the engine's
   * finite-logits check meaningful.
   */
  private rowPoison(x: string): string {
    let p = this.poisonCache.get(x);
    if (!p) {
      p = this.node("ReduceSum", [this.node("Mul", [x, this.f32(0)]), this.i64([-1])], { keepdims: 1 }, "anan");
      this.poisonCache.set(x, p);
    }
    return p;
  }
  private readonly poisonCache = new Map<string, string>();
  u8(v: number): string {
    const name = this.tmp("cu8");
    this.inits.push({ name, type: OnnxType.UINT8, dims: [], data: Uint8Array.of(v) });
    return name;
  }
  private externalInit(name: string, type: OnnxValueInfo["type"], dims: number[], data: ArrayBufferView): void {
    this.inits.push({ name, type, dims, data: new Uint8Array(0), external: { location: name, offset: 0, length: data.byteLength } });
    this.external.push({ path: name, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) });
  }
  /**
   * x·W for a linear weight stored [in, out]: a plain MatMul on float32 weights, MatMulNBits
   * (com.microsoft) on block-quantized ones, MatMulInteger on per-channel int8 ones — ORT
   * pre-packs all three at session creation.
   */
  linear(x: string, name: string, hint: string, out?: string): string {
    const w = this.weights(name);
    const y = out ?? this.tmp(hint);
    if (!isQuantized(w)) {
      this.nodes.push({ op: "MatMul", inputs: [x, this.weight(name)], outputs: [y] });
      return y;
    }
    const q = w.quant;
    const s = q.scheme;
    if (s.layout === "channels") {
      // (codes_x − 128)·W_int8 exactly in int32, then × the row's step × the channel's scale
      const [codes, step] = this.rowCodes(x);
      this.externalInit(`${name}.q`, OnnxType.INT8, [q.K, q.N], q.packed);
      this.externalInit(`${name}.s`, OnnxType.FLOAT, [q.N], q.scales);
      const acc = this.node("MatMulInteger", [codes, `${name}.q`, this.u8(128)], undefined, "acc");
      const scaled = this.node("Mul", [this.node("Cast", [acc], { to: OnnxType.FLOAT }), step]);
      this.nodes.push({ op: "Mul", inputs: [scaled, `${name}.s`], outputs: [y] });
      return y;
    }
    const nb = blocksPerRow(q.K, s);
    this.externalInit(`${name}.q`, OnnxType.UINT8, [q.N, nb, (s.blockSize * s.bits) / 8], q.packed);
    this.externalInit(`${name}.s`, OnnxType.FLOAT, [q.N * nb], q.scales);
    const inputs = [x, `${name}.q`, `${name}.s`];
    if (q.zeroPoints) {
      this.externalInit(`${name}.z`, OnnxType.UINT8, [q.zeroPoints.length], q.zeroPoints);
      inputs.push(`${name}.z`);
    }
    const product = this.node("MatMulNBits", inputs, { K: q.K, N: q.N, bits: s.bits, block_size: s.blockSize, accuracy_level: ACCURACY_LEVEL }, "nbits", "com.microsoft");
    this.nodes.push({ op: "Add", inputs: [product, this.rowPoison(x)], outputs: [y] });
    return y;
  }
  output(name: string, shape: (number | string)[]): void {
    this.outputs.push({ name, type: OnnxType.FLOAT, shape });
  }
  build(name: string): BuiltGraph {
    return {
      model: { irVersion: 8, opsets: { "": OPSET, "com.microsoft": 1 }, graph: { name, nodes: this.nodes, inputs: this.inputs, outputs: this.outputs, initializers: this.inits } },
      externalData: this.external,
    };
  }
}

/**
 * One linear y = x·W as its own model, input "A" [m, K], output "Y" [m, N], built by the same
 * code as the decoder's linears: the precision probe, the estimate's speed measurement, the
 * kernel benchmark and the operator tests all run exactly what the engine runs.
 */
export function buildLinearGraph(K: number, N: number, weight: AnyGraphWeight): BuiltGraph {
  const g = new GraphBuilder(() => weight);
  g.input("A", OnnxType.FLOAT, ["m", K]);
  g.linear("A", "W", "y", "Y");
  g.output("Y", ["m", N]);
  return g.build("linear");
}

/**
 * Decoder layers [first, first+count) as one graph: hidden [B,S,H] in, hidden_out out, with
 * each layer's KV cache in and out and a LoRA side path x·Aᵀ·(s·B)ᵀ on every linear
 * (A/B fed as inputs; the base variant feeds zero rank-1 factors).
 */
export function buildLayerSegment(cfg: ModelConfig, first: number, count: number, weights: (name: string) => AnyGraphWeight): BuiltGraph {
  const { hiddenSize: H, numHeads: nH, numKvHeads: nKV, headDim: D, intermediateSize: I } = cfg;
  const G = nH / nKV;
  const g = new GraphBuilder(weights);
  const F = OnnxType.FLOAT;
  g.input(IO.hidden, F, ["batch", "seq", H]);
  g.input(IO.cos, F, ["batch", 1, "seq", D]);
  g.input(IO.sin, F, ["batch", 1, "seq", D]);
  g.input(IO.mask, F, ["batch", 1, 1, "seq", "total"]);

  const rmsNorm = (x: string, w: string) => g.node("SimplifiedLayerNormalization", [x, w], { axis: -1, epsilon: cfg.rmsNormEps }, "rms");
  const withLora = (y: string, x: string, l: number, t: LoraTarget, inF: number, outF: number) => {
    const a = g.input(W.loraA(l, t), F, [inF, `r_${l}_${t}`]);
    const b = g.input(W.loraB(l, t), F, [`r_${l}_${t}`, outF]);
    return g.node("Add", [y, g.node("MatMul", [g.node("MatMul", [x, a]), b], undefined, "lora")]);
  };
  const half = g.i64([D / 2, D / 2]);
  const rotateHalf = (x: string): string => {
    const x1 = g.tmp("x1");
    const x2 = g.tmp("x2");
    g.nodes.push({ op: "Split", inputs: [x, half], outputs: [x1, x2], attrs: { axis: -1 } });
    return g.node("Concat", [g.node("Neg", [x2]), x1], { axis: -1 });
  };
  const rope = (x: string) => g.node("Add", [g.node("Mul", [x, IO.cos]), g.node("Mul", [rotateHalf(x), IO.sin])], undefined, "rope");

  // the gated MLP's activation (hidden_act), as torch computes it
  const activation = (x: string): string => {
    switch (cfg.hiddenAct) {
      case "silu":
        return g.node("Mul", [x, g.node("Sigmoid", [x])]);
      case "relu":
        return g.node("Relu", [x]);
      case "quick_gelu":
        return g.node("Mul", [x, g.node("Sigmoid", [g.node("Mul", [x, g.f32(1.702)])])]);
      case "gelu": // 0.5·x·(1 + erf(x/√2))
        return g.node("Mul", [g.node("Mul", [x, g.f32(0.5)]), g.node("Add", [g.node("Erf", [g.node("Mul", [x, g.f32(Math.SQRT1_2)])]), g.f32(1)])]);
      case "gelu_tanh": {
        // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
        const cube = g.node("Mul", [g.node("Mul", [x, x]), x]);
        const inner = g.node("Mul", [g.node("Add", [x, g.node("Mul", [cube, g.f32(0.044715)])]), g.f32(Math.sqrt(2 / Math.PI))]);
        return g.node("Mul", [g.node("Mul", [x, g.f32(0.5)]), g.node("Add", [g.node("Tanh", [inner]), g.f32(1)])]);
      }
    }
  };
  const splitQkv = g.i64([nH * D, nKV * D, nKV * D]);
  const splitGu = g.i64([I, I]);
  const invSqrtD = g.f32(1 / Math.sqrt(D));
  const shapeQ = g.i64([0, 0, nH, D]);
  const shapeKV = g.i64([0, 0, nKV, D]);
  const shapeGroupedQ = g.i64([0, nKV, G, -1, D]);
  const shapeHeads = g.i64([0, nH, -1, D]);
  const shapeMerge = g.i64([0, 0, -1]);
  const axis2 = g.i64([2]);

  let h: string = IO.hidden;
  for (let l = first; l < first + count; l++) {
    g.input(IO.pastK(l), F, ["batch", nKV, "past", D]);
    g.input(IO.pastV(l), F, ["batch", nKV, "past", D]);

    // attention block
    const x = rmsNorm(h, g.weight(W.ln1(l)));
    let qkv = g.linear(x, W.qkv(l), "qkv");
    if (cfg.qkvBias) qkv = g.node("Add", [qkv, g.weight(W.qkvBias(l))]);
    let [q, k, v] = [g.tmp("q"), g.tmp("k"), g.tmp("v")];
    g.nodes.push({ op: "Split", inputs: [qkv, splitQkv], outputs: [q, k, v], attrs: { axis: -1 } });
    q = withLora(q, x, l, "q_proj", H, nH * D);
    k = withLora(k, x, l, "k_proj", H, nKV * D);
    v = withLora(v, x, l, "v_proj", H, nKV * D);
    let qh = g.node("Reshape", [q, shapeQ]); // [B,S,nH,D]
    let kh = g.node("Reshape", [k, shapeKV]);
    const vh = g.node("Reshape", [v, shapeKV]);
    if (cfg.qkNorm) {
      qh = rmsNorm(qh, g.weight(W.qNorm(l)));
      kh = rmsNorm(kh, g.weight(W.kNorm(l)));
    }
    const qt = rope(g.node("Transpose", [qh], { perm: [0, 2, 1, 3] })); // [B,nH,S,D]
    const kt = rope(g.node("Transpose", [kh], { perm: [0, 2, 1, 3] })); // [B,nKV,S,D]
    const vt = g.node("Transpose", [vh], { perm: [0, 2, 1, 3] });
    g.nodes.push({ op: "Concat", inputs: [IO.pastK(l), kt], outputs: [IO.presentK(l)], attrs: { axis: 2 } });
    g.nodes.push({ op: "Concat", inputs: [IO.pastV(l), vt], outputs: [IO.presentV(l)], attrs: { axis: 2 } });
    // GQA without repeating K/V: q as [B,nKV,G,S,D] against K/V broadcast over the group axis
    const qg = g.node("Reshape", [g.node("Mul", [qt, invSqrtD]), shapeGroupedQ]);
    const kT = g.node("Unsqueeze", [g.node("Transpose", [IO.presentK(l)], { perm: [0, 1, 3, 2] }), axis2]); // [B,nKV,1,D,T]
    const vU = g.node("Unsqueeze", [IO.presentV(l), axis2]); // [B,nKV,1,T,D]
    const scores = g.node("Add", [g.node("MatMul", [qg, kT]), IO.mask]); // [B,nKV,G,S,T]
    const probs = g.node("Softmax", [scores], { axis: -1 });
    const ctx = g.node("Reshape", [g.node("MatMul", [probs, vU]), shapeHeads]); // [B,nH,S,D]
    const merged = g.node("Reshape", [g.node("Transpose", [ctx], { perm: [0, 2, 1, 3] }), shapeMerge]); // [B,S,nH·D]
    let o = g.linear(merged, W.o(l), "o");
    if (cfg.oBias) o = g.node("Add", [o, g.weight(W.oBias(l))]);
    o = withLora(o, merged, l, "o_proj", nH * D, H);
    h = g.node("Add", [h, o], undefined, "resid");

    // MLP block (gated: act(gate)·up, SwiGLU with silu)
    const x2 = rmsNorm(h, g.weight(W.ln2(l)));
    let gu = g.linear(x2, W.gateUp(l), "gu");
    if (cfg.mlpBias) gu = g.node("Add", [gu, g.weight(W.gateUpBias(l))]);
    let [gate, up] = [g.tmp("g"), g.tmp("u")];
    g.nodes.push({ op: "Split", inputs: [gu, splitGu], outputs: [gate, up], attrs: { axis: -1 } });
    gate = withLora(gate, x2, l, "gate_proj", H, I);
    up = withLora(up, x2, l, "up_proj", H, I);
    const act = g.node("Mul", [activation(gate), up], undefined, "glu");
    let d = g.linear(act, W.down(l), "down");
    if (cfg.mlpBias) d = g.node("Add", [d, g.weight(W.downBias(l))]);
    d = withLora(d, act, l, "down_proj", I, H);
    h = g.node("Add", [h, d], undefined, "resid");
  }
  g.nodes.push({ op: "Identity", inputs: [h], outputs: [IO.hiddenOut] });
  g.output(IO.hiddenOut, ["batch", "seq", H]);
  for (let l = first; l < first + count; l++) {
    g.output(IO.presentK(l), ["batch", nKV, "total", D]);
    g.output(IO.presentV(l), ["batch", nKV, "total", D]);
  }
  return g.build(`layers_${first}_${first + count}`);
}

/**
 * The output head for one vocabulary slice: final RMSNorm of the gathered rows, then
 * logits = x·lm_headᵀ[:, slice]. The head is split by vocabulary so no single session
 * (and no single staging copy at load) holds the whole, often largest, matrix.
 */
export function buildHeadSegment(cfg: ModelConfig, slice: number, sliceSize: number, weights: (name: string) => AnyGraphWeight): BuiltGraph {
  const H = cfg.hiddenSize;
  const g = new GraphBuilder(weights);
  g.input(IO.hidden, OnnxType.FLOAT, ["batch", "seq", H]);
  g.input(IO.gather, OnnxType.INT64, ["n"]);
  const rows = g.node("Gather", [g.node("Reshape", [IO.hidden, g.i64([-1, H])]), IO.gather], { axis: 0 });
  const normed = g.node("SimplifiedLayerNormalization", [rows, g.weight(W.norm)], { axis: -1, epsilon: cfg.rmsNormEps }, "rms");
  g.linear(normed, W.lmHeadSlice(slice), "head", IO.logits);
  g.output(IO.logits, ["n", sliceSize]);
  return g.build(`head_${slice}`);
}
