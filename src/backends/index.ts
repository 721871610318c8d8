/**
 * Chooses the backend a scan talks to: the embedded engine (default) or an OpenAI-compatible
 * server. Both are imported lazily: the embedded path must not load HTTP code and vice versa
 * (and onnxruntime-node is only loaded when the embedded engine is used).
 */
import { InputError } from "../errors";
import type { ScanConfig } from "../policy/config";
import type { Backend } from "./backend";

/** The audited subject, as the backends need it. */
export interface BackendSubject {
  base: string;
  adapter?: string;
  finetuned?: string;
}

/** Settings resolved at the edge (environment variables read by the caller). */
export interface BackendEnv {
  env?: Readonly<Record<string, string | undefined>>;
}

export type BackendFactory = (config: ScanConfig, subject: BackendSubject, rankAdapterDir: string) => Promise<Backend>;

/** Read the API key from the variable the config names; a named but unset variable is an input error. */
export function apiKeyFrom(envName: string | undefined, env: Readonly<Record<string, string | undefined>>, key: string): string | undefined {
  if (!envName) return undefined;
  const v = env[envName];
  if (v === undefined || v === "") throw new InputError(`the environment variable ${envName} is not set`, key);
  return v;
}

export async function createBackend(config: ScanConfig, subject: BackendSubject, rankAdapterDir: string, opts: BackendEnv = {}): Promise<Backend> {
  const b = config.backend;
  if (b.type === "openai") {
    if (!b.url) throw new InputError("the openai backend needs a URL", "backend.url");
    const { createOpenAIBackend } = await import("./openai");
    return createOpenAIBackend({
      url: b.url,
      models: { base: b.models.base, full: b.models.full, [`rank${config.rank}`]: b.models.rank1 },
      apiKey: apiKeyFrom(b.apiKeyEnv, opts.env ?? process.env, "backend.api-key-env"),
      concurrency: b.concurrency,
      timeoutMs: b.timeoutSeconds * 1000,
      rank1AdapterDir: rankAdapterDir,
      loadAdapter: b.loadAdapter,
      rank: config.rank,
      contrast: config.contrast.enabled,
      checkModels: b.checkModels,
      deadlineMs: b.deadlineSeconds !== undefined ? b.deadlineSeconds * 1000 : undefined,
      // the config names the truncated variant "rank1" whatever k is; the backend keys it rank<k>
      requestExtras: Object.fromEntries(
        Object.entries(b.requestExtras).map(([k, e]) => [k === "rank1" ? `rank${config.rank}` : k, e]),
      ),
    });
  }
  const { createEmbeddedBackend } = await import("./embedded");
  return createEmbeddedBackend({
    base: subject.base,
    adapter: subject.adapter,
    finetuned: subject.finetuned,
    rank: config.rank,
    device: b.device,
  });
}
