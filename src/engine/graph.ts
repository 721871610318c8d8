/**
 * The decoder as an ONNX graph, built in memory from a ModelConfig.
 *
 * Weights are graph *inputs*, not initializers: the same session serves every variant
 * (base, a full fine-tune's tensors, LoRA factors) by feeding different tensors, nothing is
 * copied per variant, and models over the 2 GB protobuf limit load. Linear weights are fed
 * pre-transposed ([in, out]) so plain MatMul runs them; q/k/v and gate/up are fused into one
 * matrix each (fewer, larger GEMVs per decode step).
 *
 * Run-time inputs (computed by the caller, see model.ts):
 *   embeds [B,S,H]   token embeddings (the lookup is a row copy, done outside the graph)
 *   cos, sin [B,1,S,D] rotary tables for each row's positions (HF rotate_half layout)
 *   mask [B,1,1,S,T] additive attention mask (0 or -inf-like) over past+new positions
 *   gather [N]       flattened (b·S+s) rows whose logits are wanted
 *   past_k.l, past_v.l [B,kv,P,D] the KV cache (P may be 0)
 * Outputs: logits [N,V], present_k.l / present_v.l [B,kv,P+S,D].
 */
import type { ModelConfig } from "./config";
import { OnnxType, int64Tensor, floatTensor, type OnnxModel, type OnnxNode, type OnnxTensor, type OnnxValueInfo } from "../linalg/onnx-proto";

/** The linear modules of one layer that a LoRA adapter may target, in HF naming. */
export const LORA_TARGETS = Object.freeze(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const);
export type LoraTarget = (typeof LORA_TARGETS)[number];

/** HF module path of a layer's linear, e.g. model.layers.3.self_attn.q_proj */
export function modulePath(layer: number, target: LoraTarget): string {
  const block = target.endsWith("_proj") && ["gate_proj", "up_proj", "down_proj"].includes(target) ? "mlp" : "self_attn";
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
  lmHead: "lm_head",
  loraA: (l: number, t: LoraTarget) => `L${l}.${t}.la`,
  loraB: (l: number, t: LoraTarget) => `L${l}.${t}.lb`,
});

export const IO = Object.freeze({
  embeds: "embeds",
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

export interface GraphOptions {
  /** add a LoRA side path x·Aᵀ·(s·Bᵀ) on every targetable linear, A/B fed as inputs */
  lora: boolean;
}

/** Build the decoder graph (weights as inputs). */
export function buildDecoderGraph(cfg: ModelConfig, opts: GraphOptions): OnnxModel {
  const { hiddenSize: H, numHeads: nH, numKvHeads: nKV, headDim: D, intermediateSize: I, vocabSize: V } = cfg;
  const G = nH / nKV;
  const nodes: OnnxNode[] = [];
  const inputs: OnnxValueInfo[] = [];
  const consts: OnnxTensor[] = [];
  let uid = 0;
  const tmp = (hint: string) => `${hint}_${uid++}`;
  const node = (op: string, ins: string[], attrs?: OnnxNode["attrs"], hint = op.toLowerCase(), domain?: string): string => {
    const out = tmp(hint);
    nodes.push({ op, inputs: ins, outputs: [out], attrs, domain });
    return out;
  };
  const constI64 = (vals: number[]): string => {
    const name = tmp("c");
    consts.push(int64Tensor(name, [vals.length], vals));
    return name;
  };
  const constF = (v: number): string => {
    const name = tmp("cf");
    consts.push(floatTensor(name, [], [v]));
    return name;
  };
  const input = (name: string, type: number, shape: (number | string)[]) => inputs.push({ name, type: type as OnnxValueInfo["type"], shape });
  const F = OnnxType.FLOAT;

  input(IO.embeds, F, ["batch", "seq", H]);
  input(IO.cos, F, ["batch", 1, "seq", D]);
  input(IO.sin, F, ["batch", 1, "seq", D]);
  input(IO.mask, F, ["batch", 1, 1, "seq", "total"]);
  input(IO.gather, OnnxType.INT64, ["n"]);

  const rmsNorm = (x: string, w: string) => node("SimplifiedLayerNormalization", [x, w], { axis: -1, epsilon: cfg.rmsNormEps }, "rms");
  const loraPath = (x: string, l: number, t: LoraTarget, inF: number, outF: number): string => {
    const a = W.loraA(l, t);
    const b = W.loraB(l, t);
    input(a, F, [inF, `r_${l}_${t}`]);
    input(b, F, [`r_${l}_${t}`, outF]);
    return node("MatMul", [node("MatMul", [x, a]), b], undefined, "lora");
  };
  const withLora = (y: string, x: string, l: number, t: LoraTarget, inF: number, outF: number) =>
    opts.lora ? node("Add", [y, loraPath(x, l, t, inF, outF)]) : y;
  const rotateHalf = (x: string): string => {
    const half = constI64([D / 2, D / 2]);
    const x1 = tmp("x1");
    const x2 = tmp("x2");
    nodes.push({ op: "Split", inputs: [x, half], outputs: [x1, x2], attrs: { axis: -1 } });
    return node("Concat", [node("Neg", [x2]), x1], { axis: -1 });
  };
  const rope = (x: string) => node("Add", [node("Mul", [x, IO.cos]), node("Mul", [rotateHalf(x), IO.sin])], undefined, "rope");

  const qkvOut = (nH + 2 * nKV) * D;
  const splitQkv = constI64([nH * D, nKV * D, nKV * D]);
  const splitGu = constI64([I, I]);
  const invSqrtD = constF(1 / Math.sqrt(D));
  const shapeQ = constI64([0, 0, nH, D]);
  const shapeKV = constI64([0, 0, nKV, D]);
  const shapeGroupedQ = constI64([0, nKV, G, -1, D]);
  const shapeHeads = constI64([0, nH, -1, D]);
  const shapeMerge = constI64([0, 0, -1]);
  const axis2 = constI64([2]);
  const shapeRows = constI64([-1, H]);

  let h: string = IO.embeds;
  for (let l = 0; l < cfg.numLayers; l++) {
    input(W.ln1(l), F, [H]);
    input(W.ln2(l), F, [H]);
    input(W.qkv(l), F, [H, qkvOut]);
    input(W.o(l), F, [nH * D, H]);
    input(W.gateUp(l), F, [H, 2 * I]);
    input(W.down(l), F, [I, H]);
    input(IO.pastK(l), F, ["batch", nKV, "past", D]);
    input(IO.pastV(l), F, ["batch", nKV, "past", D]);

    // attention block
    const x = rmsNorm(h, W.ln1(l));
    let qkv = node("MatMul", [x, W.qkv(l)], undefined, "qkv");
    if (cfg.qkvBias) {
      input(W.qkvBias(l), F, [qkvOut]);
      qkv = node("Add", [qkv, W.qkvBias(l)]);
    }
    let [q, k, v] = [tmp("q"), tmp("k"), tmp("v")];
    nodes.push({ op: "Split", inputs: [qkv, splitQkv], outputs: [q, k, v], attrs: { axis: -1 } });
    q = withLora(q, x, l, "q_proj", H, nH * D);
    k = withLora(k, x, l, "k_proj", H, nKV * D);
    v = withLora(v, x, l, "v_proj", H, nKV * D);
    let qh = node("Reshape", [q, shapeQ]); // [B,S,nH,D]
    let kh = node("Reshape", [k, shapeKV]);
    const vh = node("Reshape", [v, shapeKV]);
    if (cfg.qkNorm) {
      input(W.qNorm(l), F, [D]);
      input(W.kNorm(l), F, [D]);
      qh = rmsNorm(qh, W.qNorm(l));
      kh = rmsNorm(kh, W.kNorm(l));
    }
    const qt = rope(node("Transpose", [qh], { perm: [0, 2, 1, 3] })); // [B,nH,S,D]
    const kt = rope(node("Transpose", [kh], { perm: [0, 2, 1, 3] })); // [B,nKV,S,D]
    const vt = node("Transpose", [vh], { perm: [0, 2, 1, 3] });
    nodes.push({ op: "Concat", inputs: [IO.pastK(l), kt], outputs: [IO.presentK(l)], attrs: { axis: 2 } });
    nodes.push({ op: "Concat", inputs: [IO.pastV(l), vt], outputs: [IO.presentV(l)], attrs: { axis: 2 } });
    // GQA without repeating K/V: q as [B,nKV,G,S,D] against K/V broadcast over the group axis
    const qg = node("Reshape", [node("Mul", [qt, invSqrtD]), shapeGroupedQ]);
    const kT = node("Unsqueeze", [node("Transpose", [IO.presentK(l)], { perm: [0, 1, 3, 2] }), axis2]); // [B,nKV,1,D,T]
    const vU = node("Unsqueeze", [IO.presentV(l), axis2]); // [B,nKV,1,T,D]
    const scores = node("Add", [node("MatMul", [qg, kT]), IO.mask]); // [B,nKV,G,S,T]
    const probs = node("Softmax", [scores], { axis: -1 });
    const ctx = node("Reshape", [node("MatMul", [probs, vU]), shapeHeads]); // [B,nH,S,D]
    const merged = node("Reshape", [node("Transpose", [ctx], { perm: [0, 2, 1, 3] }), shapeMerge]); // [B,S,nH·D]
    let o = node("MatMul", [merged, W.o(l)], undefined, "o");
    if (cfg.oBias) {
      input(W.oBias(l), F, [H]);
      o = node("Add", [o, W.oBias(l)]);
    }
    o = withLora(o, merged, l, "o_proj", nH * D, H);
    h = node("Add", [h, o], undefined, "resid");

    // MLP block (SwiGLU)
    const x2 = rmsNorm(h, W.ln2(l));
    let gu = node("MatMul", [x2, W.gateUp(l)], undefined, "gu");
    if (cfg.mlpBias) {
      input(W.gateUpBias(l), F, [2 * I]);
      gu = node("Add", [gu, W.gateUpBias(l)]);
    }
    let [g, u] = [tmp("g"), tmp("u")];
    nodes.push({ op: "Split", inputs: [gu, splitGu], outputs: [g, u], attrs: { axis: -1 } });
    g = withLora(g, x2, l, "gate_proj", H, I);
    u = withLora(u, x2, l, "up_proj", H, I);
    const act = node("Mul", [node("Mul", [g, node("Sigmoid", [g])]), u], undefined, "swiglu");
    let d = node("MatMul", [act, W.down(l)], undefined, "down");
    if (cfg.mlpBias) {
      input(W.downBias(l), F, [H]);
      d = node("Add", [d, W.downBias(l)]);
    }
    d = withLora(d, act, l, "down_proj", I, H);
    h = node("Add", [h, d], undefined, "resid");
  }
  input(W.norm, F, [H]);
  input(W.lmHead, F, [H, V]);
  const rows = node("Gather", [node("Reshape", [rmsNorm(h, W.norm), shapeRows]), IO.gather], { axis: 0 });
  nodes.push({ op: "MatMul", inputs: [rows, W.lmHead], outputs: [IO.logits] });

  const outputs: OnnxValueInfo[] = [{ name: IO.logits, type: F, shape: ["n", V] }];
  for (let l = 0; l < cfg.numLayers; l++) {
    outputs.push({ name: IO.presentK(l), type: F, shape: ["batch", nKV, "total", D] });
    outputs.push({ name: IO.presentV(l), type: F, shape: ["batch", nKV, "total", D] });
  }
  return { irVersion: 8, opsets: { "": OPSET }, graph: { name: "decoder", nodes, inputs, outputs, initializers: consts } };
}
