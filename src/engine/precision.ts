/**
 * The precision the base weights are stored in (`--precision`, config `engine.precision`).
 *
 * f32    every weight as float32 (exact to the checkpoint's values).
 * int8   decoder linears and lm_head at 8 bits per output channel, activations rounded to 8
 *        bits per token (MatMulInteger: exact int32 dot products), ~1.00 bytes per weight.
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
import { quantizeMatrix, type QuantScheme } from "./quantize";
import { buildLinearGraph, type BuiltGraph } from "./graph";

/** What a user may ask for, `auto` first (the default). */
export const PRECISION_CHOICES = Object.freeze(["auto", "f32", "bf16", "int8", "int4"] as const);
export type PrecisionChoice = (typeof PRECISION_CHOICES)[number];
/** What the engine runs (bf16 never gets this far on the CPU: see checkPrecision). */
export type Precision = "f32" | "bf16" | "int8" | "int4";
/** Precisions `auto` chooses among, most exact first. */
export const AUTO_ORDER: readonly Precision[] = Object.freeze(["f32", "int8", "int4"] as Precision[]);

/**
 * 8 bits per output channel, activations per token (MatMulInteger; W8A8 with dynamic per-token
 * activations, the int8 scheme vLLM serves Llama-class models with). Chosen over MatMulNBits'
 * 8-bit blocks of 128 by measurement (`npm run bench -- kernels`): on 8B-shaped layers at
 * batch 8 the u8·s8 GEMM took 0.74× the time of MatMulNBits' level-4 kernel, which is
 * compute-bound there, for 1.07× at batch 1, where both stream about the same bytes. A channel's step is
 * max|w|/127 over the whole row rather than a block of 128 (≈1.3× larger on Gaussian rows);
 * the logits tolerances and organism verdicts below hold with it.
 */
export const INT8_SCHEME: Readonly<QuantScheme> = Object.freeze({ layout: "channels", bits: 8, blockSize: 0, zeroPoints: false });
/**
 * 4-bit blocks of 32 with zero points (min/max per block): with only 16 levels the block must
 * be short and use its whole range, as llama.cpp's Q4_1 and ORT's own quantizer do.
 */
export const INT4_SCHEME: Readonly<QuantScheme> = Object.freeze({ layout: "blocks", bits: 4, blockSize: 32, zeroPoints: true });


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

function probeModel(p: Precision): BuiltGraph | OnnxModel {
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
  const K = probeK(s);
  const N = 4;
  const w = new Float32Array(N * K).map((_, i) => ((i * 7) % 11) / 11 - 0.5);
  return buildLinearGraph(K, N, { quant: quantizeMatrix(w, N, K, s), dims: [K, N] });
}

/** Two blocks (or 64 weights per channel) per row: the probe exercises more than one scale group. */
const probeK = (s: QuantScheme) => (s.layout === "channels" ? 64 : 2 * s.blockSize);

/** The operator a quantized scheme runs on, for messages. */
export const operatorName = (s: QuantScheme) => (s.layout === "channels" ? "MatMulInteger (u8·s8)" : `${s.bits}-bit MatMulNBits`);

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
    const probe = probeModel(p);
    s = "model" in probe ? await createSession(probe.model, { device, threads: 1, cpuMemArena: false, externalData: probe.externalData }) : await createSession(probe, { device, threads: 1, cpuMemArena: false });
    if (p === "bf16") {
      // sessions can exist for graphs the EP then assigns elsewhere; a bf16 MatMul that runs is what counts
      reason = "the engine's graph has no bfloat16 path (only float32 and block-quantized int8/int4)";
    } else {
      const K = probeK(weightPlan(p).linear!);
      const out = await s.run({ A: new ort.Tensor("float32", new Float32Array(K).fill(1), [1, K]) });
      if (!(out.Y!.data as Float32Array).every(Number.isFinite)) reason = `its ${operatorName(weightPlan(p).linear!)} kernel returned non-finite values on a test matrix`;
    }
  } catch (err) {
    if (err instanceof InputError) throw err; // the device itself (no CUDA provider)
    const msg = (err as Error).message.split("\n")[0]!.trim();
    reason =
      p === "bf16"
        ? `the installed ONNX Runtime (onnxruntime-node ${ort.env.versions?.common ?? "?"}) has no bfloat16 MatMul kernel on ${device} (${msg})`
        : `the installed ONNX Runtime (onnxruntime-node ${ort.env.versions?.common ?? "?"}) cannot run ${operatorName(weightPlan(p).linear!)} on ${device} (${msg})`;
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
