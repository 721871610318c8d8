/**
 * The one module that loads ONNX Runtime and decides where sessions run.
 * Everything else asks here for a session; nobody else imports onnxruntime-node.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import * as ort from "onnxruntime-node";
import { InputError } from "../errors";
import { encodeModel, type OnnxModel } from "./onnx-proto";
import type { Device } from "./device";

export { ort };
export type { Device } from "./device";

/** More intra-op threads than this is a typo (`1e6`), not a machine: ORT would try to start them all. */
export const MAX_THREADS = 1024;

export interface SessionOptions {
  device?: Device;
  /** intra-op threads (1..MAX_THREADS); default: ORT's choice (all cores) */
  threads?: number;
  /** in-memory external data files for initializers stored with `external` (onnx-proto) */
  externalData?: { path: string; data: Uint8Array }[];
  /** ORT's CPU arena (default on); many small sessions each growing an arena waste memory */
  cpuMemArena?: boolean;
  /**
   * Whether idle intra-op threads spin (default on). Sessions run one after another (a model
   * cut into segments) must not spin: each session has its own pool, and pools left spinning
   * steal the cores the next session needs.
   */
  spinning?: boolean;
}

let cudaChecked: boolean | undefined;

/** The CUDA execution provider's library as onnxruntime-node's CUDA 12 install places it. */
const CUDA_PROVIDER_LIBRARY: Readonly<Record<string, string>> = Object.freeze({
  linux: "libonnxruntime_providers_cuda.so",
  win32: "onnxruntime_providers_cuda.dll",
});

/**
 * Whether the installed onnxruntime-node build can run the CUDA execution provider.
 * ORT's listSupportedBackends() names cuda (bundled: false) even on the CPU-only build, so we
 * look for the CUDA provider library next to the native binding instead.
 */
export function cudaAvailable(): boolean {
  if (cudaChecked !== undefined) return cudaChecked;
  cudaChecked = false;
  try {
    const lib = CUDA_PROVIDER_LIBRARY[process.platform];
    if (lib) {
      const pkgDir = dirname(createRequire(import.meta.url).resolve("onnxruntime-node/package.json"));
      cudaChecked = existsSync(join(pkgDir, "bin", "napi-v6", process.platform, process.arch, lib));
    }
  } catch {
    cudaChecked = false;
  }
  return cudaChecked;
}

/**
 * The one check that `device` can run here, for every command and the scan's config, made before
 * any heavy work (a delta pass, a download): exit 2 naming `origin` (the flag or config key).
 */
export function requireDevice(device: Device, origin = "--device cuda"): void {
  if (device !== "cuda" || cudaAvailable()) return;
  throw new InputError(
    "the CUDA execution provider is not installed: reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 (needs CUDA 12 and cuDNN 9) or use the cpu device",
    origin,
  );
}

function executionProviders(device: Device): string[] {
  requireDevice(device);
  return device === "cpu" ? ["cpu"] : ["cuda", "cpu"];
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
  if (opts.externalData) (so as { externalData?: unknown }).externalData = opts.externalData;
  if (opts.cpuMemArena === false) so.enableCpuMemArena = false;
  if (opts.spinning === false) so.extra = { session: { intra_op: { allow_spinning: "0" } } };
  return ort.InferenceSession.create(bytes, so);
}
