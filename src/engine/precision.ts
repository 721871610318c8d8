/**
 * The precision the base weights are stored in (`--precision`, config `engine.precision`).
 *
 * f32    every weight as float32 (exact to the checkpoint's values).
 * int8   decoder linears and lm_head block-quantized to 8 bits (MatMulNBits, accuracy level 4:
 *        int8 dot products with per-block int8 activations), ~1.03 bytes per weight.
 * int4   decoder linears at 4 bits with zero points, lm_head at 8 bits, ~0.64 bytes per weight.
 * bf16   accepted as a word, refused unless the installed ONNX Runtime can multiply bfloat16
 *        matrices on the device (the CPU execution provider cannot: checked, not assumed).
 *
 * Only the base weights are quantized: norms, biases, embeddings (read row by row from the
 * file) and every LoRA / rank-k factor stay float32, so base, full and rank-k run on one
 * quantized base and differ exactly by their float32 deltas.
 */
import { InputError } from "../errors";
import { createSession, ort, type Device } from "../linalg/ort";
import { OnnxType, type OnnxModel } from "../linalg/onnx-proto";
import { ACCURACY_LEVEL, quantizeMatrix, type QuantScheme } from "./quantize";

/** What a user may ask for, `auto` first (the default). */
export const PRECISION_CHOICES = Object.freeze(["auto", "f32", "bf16", "int8", "int4"] as const);
export type PrecisionChoice = (typeof PRECISION_CHOICES)[number];
/** What the engine runs (bf16 never gets this far on the CPU: see checkPrecision). */
export type Precision = "f32" | "bf16" | "int8" | "int4";
/** Precisions `auto` chooses among, most exact first. */
export const AUTO_ORDER: readonly Precision[] = Object.freeze(["f32", "int8", "int4"] as Precision[]);

/**
 * 8-bit blocks of 128: scales cost 4/128 = 3 % over the codes, and a block's step (max|w|/127)
 * is already far below the spread of trained weights, so smaller blocks buy no measurable
 * accuracy at 8 bits (test/engine/precision.test.ts) while costing memory and speed.
 */
export const INT8_SCHEME: Readonly<QuantScheme> = Object.freeze({ bits: 8, blockSize: 128, zeroPoints: false });
/**
 * 4-bit blocks of 32 with zero points (min/max per block): with only 16 levels the block must
 * be short and use its whole range, as llama.cpp's Q4_1 and ORT's own quantizer do.
 */
export const INT4_SCHEME: Readonly<QuantScheme> = Object.freeze({ bits: 4, blockSize: 32, zeroPoints: true });


/** How each kind of weight is stored at a precision: undefined = float32. */
export interface WeightPlan {
  /** q/k/v, o, gate/up, down */
  linear?: QuantScheme;
  /** lm_head (or the tied embedding as the head) */
  head?: QuantScheme;
}

/**
 * The lm_head stays at 8 bits under int4: logits are read directly by greedy decoding and the
 * verdict's judges, and the head is one matrix out of hundreds, so 4 bits there would cost
 * accuracy where it shows most for a few percent of the memory.
 */
export function weightPlan(p: Precision): WeightPlan {
  switch (p) {
    case "f32":
    case "bf16":
      return {};
    case "int8":
      return { linear: INT8_SCHEME, head: INT8_SCHEME };
    case "int4":
      return { linear: INT4_SCHEME, head: INT8_SCHEME };
  }
}

const probed = new Map<string, string | null>();

function probeModel(p: Precision): OnnxModel {
  if (p === "bf16") {
    return {
      irVersion: 8,
      opsets: { "": 17 },
      graph: {
        name: "bf16_probe",
        nodes: [{ op: "MatMul", inputs: ["A", "B"], outputs: ["Y"] }],
        inputs: [
          { name: "A", type: OnnxType.BFLOAT16, shape: [1, 16] },
          { name: "B", type: OnnxType.BFLOAT16, shape: [16, 16] },
        ],
        outputs: [{ name: "Y", type: OnnxType.BFLOAT16, shape: [1, 16] }],
      },
    };
  }
  const s = weightPlan(p).linear!;
  const K = 2 * s.blockSize;
  const N = 4;
  const w = new Float32Array(N * K).map((_, i) => ((i * 7) % 11) / 11 - 0.5);
  const q = quantizeMatrix(w, N, K, s);
  const raw = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const inits = [
    { name: "B", type: OnnxType.UINT8, dims: [N, K / s.blockSize, (s.blockSize * s.bits) / 8], data: raw(q.packed) },
    { name: "S", type: OnnxType.FLOAT, dims: [q.scales.length], data: raw(q.scales) },
  ];
  const ins = ["A", "B", "S"];
  if (q.zeroPoints) {
    inits.push({ name: "Z", type: OnnxType.UINT8, dims: [q.zeroPoints.length], data: raw(q.zeroPoints) });
    ins.push("Z");
  }
  return {
    irVersion: 8,
    opsets: { "": 17, "com.microsoft": 1 },
    graph: {
      name: `${p}_probe`,
      nodes: [{ op: "MatMulNBits", domain: "com.microsoft", inputs: ins, outputs: ["Y"], attrs: { K, N, bits: s.bits, block_size: s.blockSize, accuracy_level: ACCURACY_LEVEL } }],
      inputs: [{ name: "A", type: OnnxType.FLOAT, shape: [1, K] }],
      outputs: [{ name: "Y", type: OnnxType.FLOAT, shape: [1, N] }],
      initializers: inits,
    },
  };
}

/**
 * Why the installed ONNX Runtime cannot run precision `p` on `device`, or null when it can: a
 * one-node graph of the operator the engine would use is built and run once (cached), so the
 * answer is what this build does, not what its documentation promises.
 */
export async function unsupportedReason(p: Precision, device: Device = "cpu"): Promise<string | null> {
  if (p === "f32") return null;
  const key = `${p}/${device}`;
  if (probed.has(key)) return probed.get(key)!;
  let reason: string | null = null;
  let s: ort.InferenceSession | undefined;
  try {
    s = await createSession(probeModel(p), { device, threads: 1, cpuMemArena: false });
    if (p === "bf16") {
      // sessions can exist for graphs the EP then assigns elsewhere; a bf16 MatMul that runs is what counts
      reason = "the engine's graph has no bfloat16 path (only float32 and block-quantized int8/int4)";
    } else {
      const K = 2 * weightPlan(p).linear!.blockSize;
      const out = await s.run({ A: new ort.Tensor("float32", new Float32Array(K).fill(1), [1, K]) });
      if (!(out.Y!.data as Float32Array).every(Number.isFinite)) reason = "its MatMulNBits kernel returned non-finite values on a test matrix";
    }
  } catch (err) {
    if (err instanceof InputError) throw err; // the device itself (no CUDA provider)
    const msg = (err as Error).message.split("\n")[0]!.trim();
    reason =
      p === "bf16"
        ? `the installed ONNX Runtime (onnxruntime-node ${ort.env.versions?.common ?? "?"}) has no bfloat16 MatMul kernel on ${device} (${msg})`
        : `the installed ONNX Runtime (onnxruntime-node ${ort.env.versions?.common ?? "?"}) cannot run ${weightPlan(p).linear!.bits}-bit MatMulNBits on ${device} (${msg})`;
  } finally {
    await s?.release().catch(() => undefined);
  }
  probed.set(key, reason);
  return reason;
}

/** Refuse (InputError, exit 2) a precision the installed ONNX Runtime cannot run, naming why. */
export async function checkPrecision(p: Precision, device: Device = "cpu", where = "--precision"): Promise<void> {
  const reason = await unsupportedReason(p, device);
  if (reason === null) return;
  const instead = p === "bf16" ? "; int8 stores weights in half of bf16's bytes and runs on this build: use --precision int8 (or f32)" : "; use --precision f32";
  throw new InputError(`${p} is not available: ${reason}${instead}`, where);
}
