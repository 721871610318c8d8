/**
 * Chooses the backend a scan talks to: the embedded engine (default) or an OpenAI-compatible
 * server. Both are imported lazily: the embedded path must not load HTTP code and vice versa
 * (and onnxruntime-node is only loaded when the embedded engine is used).
 */
import { InputError } from "../errors";
import { variantForRank } from "../chat/types";
import type { Backend } from "./backend";
import type { BackendSettings } from "./settings";

/** The audited subject, as the backends need it. */
export interface BackendSubject {
  base: string;
  adapter?: string;
  finetuned?: string;
}

/** Everything a backend is built from: its settings and what the scan decided around them. */
export interface BackendRequest {
  settings: BackendSettings;
  subject: BackendSubject;
  /** k of the truncated variant, served as `rank${k}` */
  rank: number;
  /** the rank-k adapter the scan wrote: the embedded engine runs it; an OpenAI server loads it when settings.loadAdapter */
  rankAdapterDir: string;
  /** whether the elicitation asks for the contrastive variant (the openai backend then wants logprobs) */
  contrast: boolean;
  /** where API keys named by the settings are read (the caller's environment, resolved at the edge) */
  env: Readonly<Record<string, string | undefined>>;
}

/** The seam for tests and embedders: build the backend a scan talks to. */
export type BackendFactory = (request: BackendRequest) => Promise<Backend>;

/** Read the API key from the variable the config names; a named but unset variable is an input error. */
export function apiKeyFrom(envName: string | undefined, env: Readonly<Record<string, string | undefined>>, key: string): string | undefined {
  if (!envName) return undefined;
  const v = env[envName];
  if (v === undefined || v === "") throw new InputError(`the environment variable ${envName} is not set`, key);
  return v;
}

export async function createBackend(request: BackendRequest): Promise<Backend> {
  const { settings: b, subject, rank } = request;
  if (b.type === "openai") {
    if (!b.url) throw new InputError("the openai backend needs a URL", "backend.url");
    const { createOpenAIBackend } = await import("./openai");
    return createOpenAIBackend({
      url: b.url,
      models: { base: b.models.base, full: b.models.full, [variantForRank(rank)]: b.models.rank1 },
      apiKey: apiKeyFrom(b.apiKeyEnv, request.env, "backend.api-key-env"),
      concurrency: b.concurrency,
      timeoutMs: b.timeoutSeconds * 1000,
      rank1AdapterDir: request.rankAdapterDir,
      loadAdapter: b.loadAdapter,
      rank,
      contrast: request.contrast,
      checkModels: b.checkModels,
      deadlineMs: b.deadlineSeconds !== undefined ? b.deadlineSeconds * 1000 : undefined,
      // the config names the truncated variant "rank1" whatever k is; the backend keys it rank<k>
      requestExtras: Object.fromEntries(Object.entries(b.requestExtras).map(([k, e]) => [k === "rank1" ? variantForRank(rank) : k, e])),
    });
  }
  const { createEmbeddedBackend } = await import("./embedded");
  return createEmbeddedBackend({
    base: subject.base,
    adapter: subject.adapter,
    finetuned: subject.finetuned,
    rank,
    // the truncation scan wrote: the engine interrogates exactly the adapter the report ships
    rankAdapterDir: request.rankAdapterDir,
    device: b.device,
  });
}
