/**
 * Low-precision base weights (engine/precision.ts, quantize.ts, quantized-weights.ts):
 * the quantizer against its own definition, the engine's quantized linear (MatMulInteger at
 * int8, MatMulNBits at int4) in ORT against float64 on the dequantized weights, and
 * whole-model logits at int8 / int4 against the float64 reference on the conformance
 * checkpoints, within tolerances derived from the quantization steps (below).
 * LoRA and rank-k variants share the quantized base and differ from it exactly by their
 * float32 deltas; a full fine-tune runs as base + exact ΔW factors when ΔW is low-rank.
 */
import { afterAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/engine/index";
import { loadSubject } from "../../src/engine/variants";
import { allocQuantBuffers, dequantize, quantizeMatrix, quantizeRowsInto, quantizedBytes, blocksPerRow, rowBlock, type QuantScheme } from "../../src/engine/quantize";
import { buildLinearGraph } from "../../src/engine/graph";
import { INT4_SCHEME, INT8_SCHEME, checkPrecision, unsupportedReason, weightPlan, type Precision } from "../../src/engine/precision";
import { buildLayerWeights } from "../../src/engine/quantized-weights";
import { layerRecipes } from "../../src/engine/weights";
import { parseModelConfig } from "../../src/engine/config";
import { withModelPrefix } from "../../src/engine/names";
import { openCheckpoint } from "../../src/io/checkpoint";
import { writeAdapter } from "../../src/io/peft";
import { InputError } from "../../src/errors";
import { createSession, ort } from "../../src/linalg/ort";
import { OnnxType } from "../../src/linalg/onnx-proto";
import type { LoraModule, TensorSource } from "../../src/io/types";
import { referenceLogits } from "../reference/llama-reference";
import { TINY_BASE, compareLogits, onCleanup, randomArray, randomLora, randomWeights, rng, runCleanups, writeModel } from "./fixtures";

afterAll(runCleanups);

const IDS = [3, 17, 42, 8, 96, 0, 55, 23, 71, 9, 12, 40, 41, 90, 2, 66];
const QUANTIZED: Precision[] = ["int8", "int4"];

// ------------------------------------------------------------------ the quantizer

/** The schemes the engine uses, plus MatMulNBits' 8-bit blocks (the int8 route it was measured against). */
const SCHEMES: [string, QuantScheme][] = [
  ["int8 per channel (MatMulInteger)", INT8_SCHEME],
  ["int4 with zero points, block 32 (MatMulNBits)", INT4_SCHEME],
  ["int8 symmetric, block 128 (MatMulNBits)", { layout: "blocks", bits: 8, blockSize: 128, zeroPoints: false }],
];
/** K for a test matrix: for blocks, not a multiple of the block (the last one is padded). */
const testK = (s: QuantScheme) => (s.layout === "channels" ? 275 : s.blockSize * 2 + 19);

describe("weight quantizer", () => {
  for (const [label, s] of SCHEMES) {
    it(`${label}: every weight reads back within half its block's step; zeros and padding stay exactly 0`, () => {
      const N = 7;
      const K = testK(s);
      const w = randomArray(N * K, 0.3, rng(4));
      for (let k = 0; k < K; k += 5) w[2 * K + k] = 0;
      w.fill(0, 5 * K, 6 * K); // a whole row of zeros
      const q = quantizeMatrix(w, N, K, s);
      const back = dequantize(q);
      const nb = blocksPerRow(K, s);
      for (let n = 0; n < N; n++) {
        for (let k = 0; k < K; k++) {
          const step = q.scales[n * nb + Math.floor(k / rowBlock(K, s))]!;
          expect(Math.abs(back[n * K + k]! - w[n * K + k]!), `w[${n},${k}]`).toBeLessThanOrEqual(step / 2 + 1e-7 * step);
          if (w[n * K + k] === 0) expect(back[n * K + k]).toBe(0);
        }
      }
      // the step is what the scheme promises: max|w|/127 (int8) or (max−min)/15 over the block (int4)
      const b0 = w.subarray(0, rowBlock(K, s));
      const lo = Math.min(0, ...b0);
      const hi = Math.max(0, ...b0);
      expect(q.scales[0]).toBeCloseTo(s.zeroPoints ? (hi - lo) / 15 : Math.max(hi, -lo) / 127, 7);
    });
  }

  for (const [label, s] of SCHEMES) {
    it(`${label}: rows quantized chunk by chunk equal the whole matrix quantized at once`, () => {
      const N = 11;
      const K = 96;
      const w = randomArray(N * K, 1, rng(5));
      const whole = quantizeMatrix(w, N, K, s);
      const buf = allocQuantBuffers(K, N, s);
      for (let r = 0; r < N; r += 3) {
        const n = Math.min(3, N - r);
        quantizeRowsInto(w.subarray(r * K, (r + n) * K), n, K, s, buf, r);
      }
      expect([...buf.packed]).toEqual([...whole.packed]);
      expect([...buf.scales]).toEqual([...whole.scales]);
      if (s.zeroPoints) expect([...buf.zeroPoints!]).toEqual([...whole.zeroPoints!]);
      expect(buf.packed.length + 4 * buf.scales.length + (buf.zeroPoints?.length ?? 0)).toBe(quantizedBytes(K, N, s));
    });

    it(`${label}: a NaN weight makes its block NaN (the engine's finite-logits check still fires), not a silent 0`, () => {
      const K = Math.max(64, rowBlock(64, s));
      const w = new Float32Array(2 * K).fill(0.5);
      w[3] = NaN;
      const back = dequantize(quantizeMatrix(w, 2, K, s));
      expect(Number.isNaN(back[0])).toBe(true);
      expect(back[K]).toBeCloseTo(0.5, 6); // the other row is untouched
    });
  }

  it("per channel: row n is column n of the packed [K, N] int8 matrix, one scale max|w_n|/127 per row, however the rows arrive", () => {
    // chunks of 3 and 5 rows start mid-matrix and end short of it: each lands in its own columns
    for (const N of [12, 5]) {
      const K = 9;
      const w = randomArray(N * K, 1, rng(8));
      w[4 * K + 2] = 0;
      for (const chunk of [N, 3, 5]) {
        const q = allocQuantBuffers(K, N, INT8_SCHEME);
        for (let r = 0; r < N; r += chunk) quantizeRowsInto(w.subarray(r * K, Math.min(N, r + chunk) * K), Math.min(chunk, N - r), K, INT8_SCHEME, q, r);
        expect(q.packed.length).toBe(K * N);
        expect(q.scales.length).toBe(N);
        const codes = new Int8Array(q.packed.buffer, q.packed.byteOffset, q.packed.length);
        for (let n = 0; n < N; n++) {
          const row = w.subarray(n * K, (n + 1) * K);
          const scale = Math.fround(Math.max(...row.map(Math.abs)) / 127);
          expect(q.scales[n]).toBe(scale);
          for (let k = 0; k < K; k++) expect(codes[k * N + n], `N ${N}, chunk ${chunk}, w[${n},${k}]`).toBe(Math.round(row[k]! / scale) || 0);
        }
      }
    }
  });
});

/**
 * The bound for one quantized product against float64 on the dequantized weights: the route
 * rounds each block of the activation row (int8: the whole row) to 8 bits with step amax/127,
 * so each element moves by at most amax_b/254, and output n by at most Σ_b (amax_b/254)·Σ_{k∈b}|ŵ_nk|;
 * float32 accumulation adds ~K·ε·Σ|a·ŵ|.
 */
function activationBound(a: Float32Array, wq: Float32Array, K: number, n: number, bs: number): number {
  let bound = 0;
  let mag = 0;
  for (let b0 = 0; b0 < K; b0 += bs) {
    let amax = 0;
    let wsum = 0;
    for (let k = b0; k < Math.min(K, b0 + bs); k++) {
      amax = Math.max(amax, Math.abs(a[k]!));
      wsum += Math.abs(wq[n * K + k]!);
      mag += Math.abs(a[k]! * wq[n * K + k]!);
    }
    bound += (amax / 254) * wsum;
  }
  return bound + K * 1.2e-7 * mag;
}

describe("the engine's quantized linear in ONNX Runtime (graph.ts buildLinearGraph)", () => {
  for (const [label, s] of SCHEMES) {
    it(`${label}: A·dequant(W)ᵀ within the activation-rounding bound`, async () => {
      const N = 24;
      const K = s.layout === "channels" ? 200 : s.blockSize * 3 + 8;
      const w = randomArray(N * K, 0.5, rng(6));
      const q = quantizeMatrix(w, N, K, s);
      const wq = dequantize(q);
      const g = buildLinearGraph(K, N, { quant: q, dims: [K, N] });
      const session = await createSession(g.model, { threads: 1, externalData: g.externalData });
      try {
        const M = 3;
        const a = randomArray(M * K, 2, rng(7));
        a.fill(0, 2 * K, 3 * K); // a row of zeros comes out exactly 0
        const y = (await session.run({ A: new ort.Tensor("float32", a, [M, K]) })).Y!.data as Float32Array;
        for (let m = 0; m < M; m++) {
          const row = a.subarray(m * K, (m + 1) * K);
          for (let n = 0; n < N; n++) {
            let ref = 0;
            for (let k = 0; k < K; k++) ref += row[k]! * wq[n * K + k]!;
            expect(Math.abs(y[m * N + n]! - ref), `y[${m},${n}]`).toBeLessThanOrEqual(activationBound(row, wq, K, n, rowBlock(K, s)));
            if (m === 2) expect(y[m * N + n]).toBe(0);
          }
        }
        // a NaN or ∞ in a row reaches that row's outputs (never rounded into range); others are untouched
        const bad = new Float32Array(a);
        bad[5] = NaN;
        bad[K + 7] = Infinity;
        const yb = (await session.run({ A: new ort.Tensor("float32", bad, [M, K]) })).Y!.data as Float32Array;
        for (let n = 0; n < N; n++) {
          expect(Number.isFinite(yb[n]), `row 0 (NaN), column ${n}`).toBe(false);
          expect(Number.isFinite(yb[N + n]), `row 1 (∞), column ${n}`).toBe(false);
          expect(yb[2 * N + n]).toBe(0);
        }
      } finally {
        await session.release();
      }
    });
  }
});

describe("what the installed ONNX Runtime can run (probed, not assumed)", () => {
  it("int8 and int4 run on the CPU; bf16 is refused with ORT's own reason and what to use instead", async () => {
    expect(await unsupportedReason("int8")).toBeNull();
    expect(await unsupportedReason("int4")).toBeNull();
    expect(await unsupportedReason("bf16")).toMatch(/bfloat16 MatMul/);
    await expect(checkPrecision("bf16")).rejects.toThrow(InputError);
    await expect(checkPrecision("bf16")).rejects.toThrow(/--precision: bf16 is not available: .*use --precision int8/);
  });
});

// ------------------------------------------------------------------ whole-model logits

/**
 * The checkpoint as the engine stores it at `p`: each linear (and the head) quantized and read
 * back. With tied embeddings only the head is quantized (token rows are read from the file in
 * float32), so the reference gets an untied config whose lm_head is the quantized embedding.
 */
function stored(config: Record<string, unknown>, weights: Map<string, Float32Array>, p: Precision): { config: Record<string, unknown>; weights: Map<string, Float32Array> } {
  const cfg = parseModelConfig(config);
  const w = dequantizedWeights(config, weights, p);
  if (!cfg.tieWordEmbeddings || !weightPlan(p).head) return { config, weights: w };
  w.set("lm_head.weight", w.get("model.embed_tokens.weight")!);
  w.set("model.embed_tokens.weight", weights.get("model.embed_tokens.weight")!);
  return { config: { ...config, tie_word_embeddings: false }, weights: w };
}

function dequantizedWeights(config: Record<string, unknown>, weights: Map<string, Float32Array>, p: Precision): Map<string, Float32Array> {
  const plan = weightPlan(p);
  const cfg = parseModelConfig(config);
  const out = new Map<string, Float32Array>();
  for (const [name, w] of weights) {
    const linear = /\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(name);
    const head = name === (cfg.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
    const s = linear ? plan.linear : head ? plan.head : undefined;
    if (!s) {
      out.set(name, w);
      continue;
    }
    const K = name.endsWith("down_proj.weight") ? cfg.intermediateSize : name.endsWith("o_proj.weight") ? cfg.numHeads * cfg.headDim : cfg.hiddenSize;
    out.set(name, dequantize(quantizeMatrix(w, w.length / K, K, s)));
  }
  return out;
}

function maxGap(a: ArrayLike<number>[], b: ArrayLike<number>[]): number {
  let g = 0;
  for (let p = 0; p < a.length; p++) g = Math.max(g, compareLogits(a[p]!, b[p]!).maxDiff);
  return g;
}
const f32Tol = (ref: Float64Array[]) => Math.max(...ref.map((r) => compareLogits(r, r).tol));

/**
 * The tolerance, from the quantization steps. Two roundings separate the engine from the
 * float64 reference on the checkpoint's own weights:
 *  - weights: every linear weight moved by ≤ half its block's step (checked above). Their exact
 *    effect on the logits is δ_P = max|ref(dequant_P(W)) − ref(W)|: the float64 reference run on
 *    the dequantized weights, i.e. the steps propagated through the real network, no engine in it.
 *  - activations: int8 (MatMulInteger) rounds each activation row — one token — to 8 bits with
 *    step amax/127, and int4 (MatMulNBits level 4) each block of 32 of it: the relative step of
 *    an int8 weight row, applied to the other operand. Activations are heavier-tailed than
 *    weights (RMSNorm and SwiGLU outputs carry a few large entries), so the same relative step
 *    moves the typical entry more: allowed ACTIVATION = 3 times δ_8, the int8 weight-rounding
 *    effect (measured 0.9–1.6× on these checkpoints).
 * So |engine − ref(dequant_P(W))| — the engine against what its stored weights mean — must be
 * ≤ tol_f32 + ACTIVATION·δ_8, and |engine − ref(W)| ≤ tol_f32 + δ_P + ACTIVATION·δ_8 (the two
 * roundings add at most linearly; measured ≤ 1.18·(δ_P + δ_8)). tol_f32 is the float32
 * conformance tolerance 1e-3·(1 + max|ref|).
 */
const ACTIVATION = 3;

interface CaseResult {
  deltaP: number;
  delta8: number;
  engineVsRef: number;
  engineVsStored: number;
  tol: number;
}

async function checkPrecisionLogits(config: Record<string, unknown>, weights: Map<string, Float32Array>, dir: string, p: Precision, lora?: LoraModule[]): Promise<CaseResult> {
  const ref = referenceLogits({ config, weights, lora }, IDS);
  const asStored = referenceLogits({ ...stored(config, weights, p), lora }, IDS);
  const asStored8 = p === "int8" ? asStored : referenceLogits({ ...stored(config, weights, "int8"), lora }, IDS);
  const model = await loadModel(dir, { threads: 1, precision: p });
  let engine: Float32Array[];
  try {
    expect(model.precision).toBe(p);
    if (lora) model.addLoraVariant("full", lora);
    engine = await model.logits(IDS, lora ? "full" : "base");
  } finally {
    await model.close();
  }
  const tol = f32Tol(ref);
  const r: CaseResult = { deltaP: maxGap(asStored, ref), delta8: maxGap(asStored8, ref), engineVsRef: maxGap(engine, ref), engineVsStored: maxGap(engine, asStored), tol };
  expect(r.engineVsRef, JSON.stringify(r)).toBeLessThanOrEqual(tol + r.deltaP + ACTIVATION * r.delta8);
  expect(r.engineVsStored, JSON.stringify(r)).toBeLessThanOrEqual(tol + ACTIVATION * r.delta8);
  return r;
}

describe("logits at int8 / int4 against the float64 reference (conformance checkpoints)", () => {
  const cases: { name: string; config: Record<string, unknown>; dtype?: "BF16" | "F16" }[] = [
    { name: "llama, BF16 on disk (streamed, never expanded whole)", config: { ...TINY_BASE }, dtype: "BF16" },
    { name: "qwen2 (q/k/v biases), tied embeddings", config: { ...TINY_BASE, model_type: "qwen2", tie_word_embeddings: true } },
    { name: "qwen3 (q/k norms), F16 on disk", config: { ...TINY_BASE, model_type: "qwen3", head_dim: 8, attention_bias: true }, dtype: "F16" },
    { name: "llama gelu_tanh, mlp_bias, wider (several blocks per row)", config: { ...TINY_BASE, hidden_size: 160, intermediate_size: 288, num_attention_heads: 4, num_key_value_heads: 2, hidden_act: "gelu_pytorch_tanh", mlp_bias: true } },
  ];
  for (const c of cases) {
    for (const p of QUANTIZED) {
      it(`${c.name}: ${p}`, async () => {
        const config = JSON.parse(JSON.stringify(c.config)) as Record<string, unknown>;
        const m = await writeModel(config, randomWeights(config, 71), { dtype: c.dtype });
        onCleanup(m.cleanup);
        const r = await checkPrecisionLogits(config, m.weights, m.dir, p);
        // the precision really changed the numbers (the test is not comparing f32 with itself)
        expect(r.engineVsRef).toBeGreaterThan(r.tol);
        // int8's weight rounding is small next to the logits' scale: ≤ 2 % of (1 + max|logit|)
        if (p === "int8") expect(r.deltaP).toBeLessThanOrEqual(0.02 * (r.tol / 1e-3));
      });
    }
  }

  it("a LoRA variant on the int8 base: the same tolerance against base-as-stored + the exact float32 ΔW", async () => {
    const config = { ...TINY_BASE };
    const m = await writeModel(config, randomWeights(config, 72));
    onCleanup(m.cleanup);
    const lora = randomLora(m.weights, config, ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "model.layers.1.self_attn.v_proj"], 3, 9);
    for (const p of QUANTIZED) await checkPrecisionLogits(config, m.weights, m.dir, p, lora);
  });
});

describe("variants share one quantized base", () => {
  it("base, full and rank-k of an adapter at int8: one set of base sessions, logits differing only through the deltas", async () => {
    const config = { ...TINY_BASE };
    const m = await writeModel(config, randomWeights(config, 73));
    onCleanup(m.cleanup);
    const lora = randomLora(m.weights, config, ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj"], 2, 3);
    const dir = `${m.dir}-adapter`;
    await writeAdapter(dir, { r: 2, lora_alpha: 4 }, lora.map((x) => ({ ...x, scale: 2 })));
    onCleanup(async () => (await import("node:fs/promises")).rm(dir, { recursive: true, force: true }));
    const model = await loadSubject({ model: m.dir, adapter: dir, rank: 1, precision: "int8", threads: 1 });
    try {
      expect(model.precision).toBe("int8");
      expect(model.variants().sort()).toEqual(["base", "full", "rank1"]);
      const base = await model.logits(IDS, "base");
      const full = await model.logits(IDS, "full");
      // the same base computation: a zero delta would give the base's logits bit for bit
      const again = await model.logits(IDS, "base");
      expect(maxGap(again, base)).toBe(0);
      expect(maxGap(full, base)).toBeGreaterThan(0.01);
    } finally {
      await model.close();
    }
  });
});

/** A base checkpoint and a fine-tune of it that differs in one tensor by uniform noise of ±amp. */
async function baseAndFinetune(config: Record<string, unknown>, seed: number, tensor: string, amp: number, noiseSeed: number) {
  const w = randomWeights(config, seed);
  const base = await writeModel(config, w);
  onCleanup(base.cleanup);
  const changed = new Map(w);
  const r = rng(noiseSeed);
  changed.set(tensor, w.get(tensor)!.map((x) => x + (2 * r() - 1) * amp));
  const ft = await writeModel(config, changed);
  onCleanup(ft.cleanup);
  return { base, ft, changed };
}

describe("full fine-tune at a quantized precision", () => {
  const config = { ...TINY_BASE, hidden_size: 64, intermediate_size: 96 };
  const merge = (w: Map<string, Float32Array>, lora: LoraModule[]) => {
    const out = new Map(w);
    for (const l of lora) {
      const w0 = w.get(`${l.name}.weight`)!;
      const w1 = new Float32Array(w0);
      for (let o = 0; o < l.outFeatures; o++) {
        for (let i = 0; i < l.inFeatures; i++) {
          let t = 0;
          for (let r = 0; r < l.rank; r++) t += l.B[o * l.rank + r]! * l.A[r * l.inFeatures + i]!;
          w1[o * l.inFeatures + i] += l.scale * t;
        }
      }
      out.set(`${l.name}.weight`, w1);
    }
    return out;
  };

  it("a merged (low-rank) fine-tune runs as the shared int8 base + exact ΔW factors: no second copy", async () => {
    const w = randomWeights(config, 81);
    const base = await writeModel(config, w);
    onCleanup(base.cleanup);
    const lora = randomLora(w, config, ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj", "model.layers.0.mlp.gate_proj"], 2, 4, 0.5);
    const ft = await writeModel(config, merge(w, lora));
    onCleanup(ft.cleanup);
    const { planFullDelta } = await import("../../src/engine/full-delta");
    const b = withModelPrefix(await openCheckpoint(base.dir));
    const f = withModelPrefix(await openCheckpoint(ft.dir));
    try {
      const plan = await planFullDelta(b, f, "int8", { quiet: true });
      expect(plan.deltas.map((d) => [d.name, d.rank]).sort()).toEqual(lora.map((l) => [l.name, 2]).sort());
      expect(plan.dense).toEqual([]);
      // every other linear was found unchanged in that one pass, and is not read again for the variant
      const linears = [...f.names()].filter((n) => /_proj\.weight$/.test(n)).map((n) => n.replace(/\.weight$/, ""));
      expect(plan.unchanged.sort()).toEqual(linears.filter((n) => !lora.some((l) => l.name === n)).sort());
      const linearReads: string[] = [];
      const spy: TensorSource & { dir?: string } = {
        names: () => f.names(),
        info: (n) => f.info(n),
        read: (n) => {
          if (/_proj\.weight$/.test(n)) linearReads.push(n);
          return f.read(n);
        },
        readRows: (n, r0, count) => {
          if (/_proj\.weight$/.test(n)) linearReads.push(n);
          return f.readRows!(n, r0, count);
        },
        close: () => f.close(),
      };
      const model = await loadModel(base.dir, { threads: 1, precision: "int8" });
      try {
        const layout = await model.addCheckpointVariant("full", spy, { deltas: plan.deltas, sameAsBase: new Set(plan.unchanged.map((m) => `${m}.weight`)) });
        expect(layout).toEqual({ segments: 1, ownSegments: 0, deltaModules: 3, ownHead: false });
        expect(linearReads).toEqual([]);
        // full = base as stored + the exact ΔW: the same tolerance as an adapter on the int8 base
        const ref = referenceLogits({ config, weights: dequantizedWeights(config, w, "int8"), lora }, IDS);
        const delta8 = maxGap(ref, referenceLogits({ config, weights: w, lora }, IDS));
        const full = await model.logits(IDS, "full");
        expect(maxGap(full, ref)).toBeLessThanOrEqual(f32Tol(ref) + ACTIVATION * delta8);
      } finally {
        await model.close();
      }
    } finally {
      await b.close();
      await f.close();
    }
  });

  it("a full-rank ΔW keeps a second int8 copy of its segment, and loadSubject says which", async () => {
    const { base, ft, changed } = await baseAndFinetune(config, 82, "model.layers.1.self_attn.o_proj.weight", 0.02, 2);
    const model = await loadSubject({ model: base.dir, finetuned: ft.dir, precision: "int8", threads: 1, quiet: true });
    try {
      const full = await model.logits(IDS, "full");
      // the segment holds the fine-tune's own weights, quantized: full = the fine-tune as stored
      const ref = referenceLogits({ config, weights: dequantizedWeights(config, changed, "int8") }, IDS);
      const delta8 = maxGap(ref, referenceLogits({ config, weights: changed }, IDS));
      expect(maxGap(full, ref)).toBeLessThanOrEqual(f32Tol(ref) + ACTIVATION * delta8);
    } finally {
      await model.close();
    }
  });
});

describe("a full fine-tune's changed embedding table", () => {
  for (const p of ["f32", "int8"] as Precision[]) {
    it(`${p}: streams row by row from a handle the model keeps (never read whole), closed with the model; logits as the fine-tune's`, async () => {
      const config = { ...TINY_BASE };
      const { base, ft, changed } = await baseAndFinetune(config, 96, "model.embed_tokens.weight", 0.05, 3);
      const wholeReads: string[] = [];
      const rowReads: string[] = [];
      let closed = false;
      const reopen = async () => {
        const h = withModelPrefix(await openCheckpoint(ft.dir));
        const spy: TensorSource & { close(): Promise<void> } = {
          names: () => h.names(),
          info: (n) => h.info(n),
          read: (n) => {
            wholeReads.push(n);
            return h.read(n);
          },
          readRows: (n, r0, count) => {
            rowReads.push(n);
            return h.readRows!(n, r0, count);
          },
          close: async () => {
            closed = true;
            await h.close();
          },
        };
        return spy;
      };
      const model = await loadModel(base.dir, { threads: 1, precision: p });
      try {
        const f = withModelPrefix(await openCheckpoint(ft.dir));
        try {
          await model.addCheckpointVariant("full", f, { reopen });
        } finally {
          await f.close(); // the caller's handle goes; the variant still reads its rows
        }
        const full = await model.logits(IDS, "full");
        const ref = referenceLogits({ config, weights: p === "f32" ? changed : dequantizedWeights(config, changed, p) }, IDS);
        const delta8 = p === "f32" ? 0 : maxGap(ref, referenceLogits({ config, weights: changed }, IDS));
        expect(maxGap(full, ref)).toBeLessThanOrEqual(f32Tol(ref) + ACTIVATION * delta8);
        expect(maxGap(await model.logits(IDS, "base"), full)).toBeGreaterThan(1e-3); // the table really differs
        expect(wholeReads).toEqual([]);
        expect(new Set(rowReads)).toEqual(new Set(["model.embed_tokens.weight"]));
        expect(closed).toBe(false);
      } finally {
        await model.close();
      }
      expect(closed).toBe(true);
    });
  }
});

describe("streaming load", () => {
  it("quantized linears are read in row chunks (never a whole-tensor read), straight from the [out, in] rows", async () => {
    const config = { ...TINY_BASE, hidden_size: 256, intermediate_size: 512, num_attention_heads: 4, num_key_value_heads: 2 };
    const m = await writeModel(config, randomWeights(config, 91), { dtype: "BF16" });
    onCleanup(m.cleanup);
    const ckpt = withModelPrefix(await openCheckpoint(m.dir));
    const reads: string[] = [];
    let largestRowRead = 0;
    const spy: TensorSource = {
      names: () => ckpt.names(),
      info: (n) => ckpt.info(n),
      read: (n) => {
        reads.push(n);
        return ckpt.read(n);
      },
      readRows: async (n, r0, count) => {
        const rows = await ckpt.readRows!(n, r0, count);
        largestRowRead = Math.max(largestRowRead, rows.byteLength);
        return rows;
      },
      close: () => ckpt.close(),
    };
    try {
      const cfg = parseModelConfig(config);
      const w = await buildLayerWeights(layerRecipes(cfg, 0), { src: spy, where: m.dir }, weightPlan("int8"));
      expect(reads.filter((n) => n.endsWith("_proj.weight"))).toEqual([]);
      expect(largestRowRead).toBeLessThanOrEqual(8 << 20);
      const qkv = w.get("L0.qkv") as { quant: { N: number; K: number } };
      expect([qkv.quant.N, qkv.quant.K]).toEqual([256 + 2 * 128, 256]);
    } finally {
      await ckpt.close();
    }
  });
});

it("the precision is fixed at load: a model reports what it runs", async () => {
  const config = { ...TINY_BASE };
  const m = await writeModel(config, randomWeights(config, 95));
  onCleanup(m.cleanup);
  for (const p of ["f32", "int8", "int4"] as Precision[]) {
    const model = await loadModel(m.dir, { threads: 1, precision: p });
    expect(model.precision).toBe(p);
    await model.close();
  }
});
