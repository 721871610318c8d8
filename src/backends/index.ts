/**
 * Chooses the backend a scan talks to: the embedded engine (default) or an OpenAI-compatible
 * server. Both are imported lazily: the embedded path must not load HTTP code and vice versa
 * (and onnxruntime-node is only loaded when the embedded engine is used).
 */
import { randomBytes } from "node:crypto";
import { basename, dirname, join, resolve } from "node:path";
import { InputError } from "../errors";
import { pathExists } from "../io/fs-util";
import { variantForRank } from "../chat/types";
import type { Backend } from "./backend";
import type { EngineSettings } from "../engine/settings";
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
  /**
   * the rank-k adapter the scan wrote (inside its staging folder): the embedded engine runs it; an
   * OpenAI server loads a copy of it beside the output when settings.loadAdapter (servedAdapterDir)
   */
  rankAdapterDir: string;
  /**
   * the rank ladder's other rungs, each a rank-k adapter the scan wrote inside its staging folder
   * (delta/ladder.ts), each served as `rank${rank}`: the embedded engine loads every one; an
   * OpenAI server, with settings.loadAdapter, a copy of each beside the output (servedAdapterDir),
   * else those it already serves (scan.ts notes the others)
   */
  ladder?: ReadonlyArray<{ rank: number; dir: string }>;
  /** whether the elicitation asks for the contrastive variant (the openai backend then wants logprobs) */
  contrast: boolean;
  /** where API keys named by the settings are read (the caller's environment, resolved at the edge) */
  env: Readonly<Record<string, string | undefined>>;
  /** stops the backend's work (requests in flight, the engine's batch) when the run is interrupted */
  signal?: AbortSignal;
  /** the embedded engine's settings (engine/settings.ts: how base weights are stored); default auto */
  engine?: EngineSettings;
}

/**
 * Where a server loads one of the scan's adapters (`adapterDir`: rank-k, or a ladder rung) from:
 * beside the scan's staging folder (by default the folder holding `adapterDir`; a rung's is two
 * up), so beside the output, under a name of its own.
 */
export function servedAdapterDir(adapterDir: string, staging = dirname(resolve(adapterDir))): string {
  return join(dirname(resolve(staging)), `.${basename(adapterDir)}.served-${process.pid}-${randomBytes(6).toString("hex")}`);
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
      // the scan writes the adapter inside its staging folder, renamed when the report is done:
      // the server gets a copy next to the output instead, which stays put until it is unloaded
      servedAdapterDir: b.loadAdapter ? servedAdapterDir(request.rankAdapterDir) : undefined,
      // the ladder's rungs: loaded as rank<k> the same way, each from its own copy beside the output
      ladder: (request.ladder ?? []).map((r) => ({
        rank: r.rank,
        dir: r.dir,
        servedDir: b.loadAdapter ? servedAdapterDir(r.dir, dirname(resolve(request.rankAdapterDir))) : undefined,
      })),
      // a local folder's tokenizer decodes contrastive answers and maps token texts to ids: a full
      // fine-tune's own (it may add tokens), else the base's
      tokenizerDir: subject.finetuned && (await pathExists(join(subject.finetuned, "tokenizer.json"))) ? subject.finetuned : subject.base,
      rank,
      contrast: request.contrast,
      checkModels: b.checkModels,
      deadlineMs: b.deadlineSeconds !== undefined ? b.deadlineSeconds * 1000 : undefined,
      // the config names the truncated variant "rank1" whatever k is; the backend keys it rank<k>
      requestExtras: Object.fromEntries(Object.entries(b.requestExtras).map(([k, e]) => [k === "rank1" ? variantForRank(rank) : k, e])),
      signal: request.signal,
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
    ladder: request.ladder,
    device: b.device,
    signal: request.signal,
    precision: request.engine?.precision,
  });
}
