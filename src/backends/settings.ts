/**
 * What a scan's settings say about the backend: the embedded engine, or an OpenAI-compatible
 * server and how to talk to it. src/config.ts reads them from delta-audit.yml; createBackend
 * gets them from the scan.
 */
import type { Device } from "../linalg/device";

export type BackendType = "embedded" | "openai";

/** Every backend, default first. */
export const BACKEND_TYPES: readonly BackendType[] = Object.freeze(["embedded", "openai"]);

export interface BackendSettings {
  type: BackendType;
  url?: string;
  /** variant → served model name (vLLM `--lora-modules full=DIR rank1=DIR`) */
  models: { base: string; full: string; rank1: string };
  apiKeyEnv?: string;
  concurrency: number;
  timeoutSeconds: number;
  /** load the truncated adapter at run time (POST /v1/load_lora_adapter) */
  loadAdapter: boolean;
  /** check /v1/models for every variant's name first (servers without that endpoint: false) */
  checkModels: boolean;
  /** whole-suite deadline for the server, seconds; undefined = none */
  deadlineSeconds?: number;
  /** extra JSON fields per variant sent with every chat request (llama.cpp `lora`, SGLang `lora_path`) */
  requestExtras: Record<string, Record<string, unknown>>;
  /** where the embedded engine runs */
  device: Device;
}

/** Every backend default: the embedded engine on the CPU. */
export function defaultBackendSettings(): BackendSettings {
  return {
    type: "embedded",
    models: { base: "base", full: "full", rank1: "rank1" },
    concurrency: 4,
    timeoutSeconds: 120,
    loadAdapter: false,
    checkModels: true,
    requestExtras: {},
    device: "cpu",
  };
}
