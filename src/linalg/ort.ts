/**
 * The one module that loads ONNX Runtime and decides where sessions run.
 * Everything else asks here for a session; nobody else imports onnxruntime-node.
 */
import * as ort from "onnxruntime-node";
import { InputError } from "../errors";
import { encodeModel, type OnnxModel } from "./onnx-proto";

export { ort };
export type Device = "cpu" | "cuda";

export const DEVICES: readonly Device[] = Object.freeze(["cpu", "cuda"]);

export interface SessionOptions {
  device?: Device;
  /** intra-op threads; default: ORT's choice (all cores) */
  threads?: number;
}

let cudaChecked: boolean | undefined;

/** Whether the installed onnxruntime-node build can run the CUDA execution provider. */
export function cudaAvailable(): boolean {
  if (cudaChecked !== undefined) return cudaChecked;
  try {
    const backends = (ort as unknown as { listSupportedBackends?: () => { name: string }[] }).listSupportedBackends?.() ?? [];
    cudaChecked = backends.some((b) => b.name === "cuda");
  } catch {
    cudaChecked = false;
  }
  return cudaChecked;
}

export function parseDevice(value: string | undefined, where = "--device"): Device {
  const v = (value ?? "cpu").toLowerCase();
  if (v !== "cpu" && v !== "cuda") throw new InputError(`expected cpu or cuda, got '${value}'`, where);
  return v;
}

function executionProviders(device: Device): string[] {
  if (device === "cpu") return ["cpu"];
  if (!cudaAvailable()) {
    throw new InputError(
      "the CUDA execution provider is not available: reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 (needs CUDA 12 and cuDNN 9 on the runner) or use --device cpu",
      "--device cuda",
    );
  }
  return ["cuda", "cpu"];
}

/** Create an inference session for a graph built in memory. */
export async function createSession(model: OnnxModel | Uint8Array, opts: SessionOptions = {}): Promise<ort.InferenceSession> {
  const bytes = model instanceof Uint8Array ? model : encodeModel(model);
  const so: ort.InferenceSession.SessionOptions = {
    executionProviders: executionProviders(opts.device ?? "cpu"),
    graphOptimizationLevel: "all",
    logSeverityLevel: 3,
  };
  if (opts.threads) so.intraOpNumThreads = opts.threads;
  return ort.InferenceSession.create(bytes, so);
}
