/**
 * What a scan's settings say about the backend: the embedded engine, or an OpenAI-compatible
 * server and how to talk to it. src/config.ts reads them from delta-audit.yml; createBackend
 * gets them from the scan.
 */
import type { Device } from "../linalg/device";
import type { Bounds } from "../validate";

export type BackendType = "embedded" | "openai";

/** Every backend, default first. */
export const BACKEND_TYPES: readonly BackendType[] = Object.freeze(["embedded", "openai"]);

/**
 * The variants a config names, by role (`backend.models`, `backend.request-extras`). `rank1` is
 * the truncated variant whatever the rank: backends/index.ts serves it as variantForRank(k).
 */
export const VARIANT_ROLES = Object.freeze(["base", "full", "rank1"] as const);
export type VariantRole = (typeof VARIANT_ROLES)[number];

export interface BackendSettings {
  type: BackendType;
  url?: string;
  /** variant → served model name (vLLM `--lora-modules full=DIR rank1=DIR`) */
  models: Record<VariantRole, string>;
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

/** Parallel requests to one server: past a few hundred they only queue there, each holding a socket here. */
export const CONCURRENCY_BOUNDS: Readonly<Bounds> = Object.freeze({ min: 1, max: 256 });
/** One request's wait, seconds: a reply that takes more than a day is a hung server, not a slow one. */
export const TIMEOUT_SECONDS_BOUNDS: Readonly<Bounds> = Object.freeze({ min: 1, max: 86_400 });
/** The whole suite's deadline, seconds: a week is past any CI job's own limit. */
export const DEADLINE_SECONDS_BOUNDS: Readonly<Bounds> = Object.freeze({ min: 1, max: 7 * 86_400 });

// ---------------------------------------------------------------- request-extras

/**
 * `backend.request-extras` is an allowlist: fields known only to pick which adapter answers,
 * and transport settings that do not touch what is written. Everything else is refused, because
 * the config — in the Action, one a pull request can edit — could otherwise make one variant
 * never say what it would (a `stop` on the planted word, a `grammar` or `json_schema` that
 * cannot spell it, `n_predict: 1`, a chat template switch) and the audit would pass.
 *
 * Adapter selection: vLLM selects by model name (nothing needed here); SGLang by `lora_path`
 * (an adapter name), TGI / LoRAX by `adapter_id`; llama.cpp's server by `lora`, a list of
 * `{id, scale}`. The scale steers — 0 switches the adapter off, 0.3 weakens it, 2 exaggerates
 * it — so llama.cpp's list is allowed with at most one adapter (a variant is one model) at
 * scale 1, exactly as trained; `lora: []` (no adapter) is how base is served.
 */
export const ADAPTER_FIELDS = Object.freeze(["lora", "lora_path", "adapter_id"] as const);
/** Transport only: prompt-cache reuse and slot choice (llama.cpp), queue priority (vLLM), the caller's id (OpenAI). */
export const TRANSPORT_FIELDS = Object.freeze(["cache_prompt", "id_slot", "priority", "user"] as const);
export const REQUEST_EXTRA_FIELDS: readonly string[] = Object.freeze([...ADAPTER_FIELDS, ...TRANSPORT_FIELDS]);
/** llama.cpp adapter ids index the `--lora` list; a server with more than this is not a server. */
export const MAX_LORA_ID = 1023;
/** The scale llama.cpp must apply an adapter at for the variant to be the trained model. */
export const TRAINED_LORA_SCALE = 1;
/** Scales read before the TRAINED_LORA_SCALE check, so a wild value gets the plain range error. */
export const LORA_SCALE_BOUNDS: Readonly<Bounds> = Object.freeze({ min: 0, max: 1000 });
/** llama.cpp's `id_slot`: -1 lets the server pick; a server runs far fewer slots than this. */
export const ID_SLOT_BOUNDS: Readonly<Bounds> = Object.freeze({ min: -1, max: 1024 });
/** vLLM's `priority` orders its queue only; any sane value fits, a larger one is a typo. */
export const PRIORITY_BOUNDS: Readonly<Bounds> = Object.freeze({ min: -1_000_000, max: 1_000_000 });

/**
 * Fields known to steer or cut what a model writes, named in their own words when refused
 * (every field off the allowlist is refused; these get the plainer message).
 */
export const STEERING_FIELDS =
  /^(?:stop|stop_token_ids|logit_bias|bad_words|allowed_token_ids|guided_\w*|response_format|structured_outputs|logits_processors|min_tokens|max_tokens|max_completion_tokens|n_predict|truncate_prompt_tokens|n|best_of|ignore_eos|include_stop_str_in_output|tools|tool_choice|functions|function_call|chat_template|chat_template_kwargs|documents|messages|model|prompt|echo|temperature|dynatemp_\w*|top_p|top_k|min_p|typical_p|tfs_z|mirostat\w*|xtc_\w*|dry_\w*|samplers|seed|presence_penalty|frequency_penalty|repetition_penalty|repeat_\w*|penalty_\w*|logprobs|top_logprobs|n_probs|continue_final_message|add_generation_prompt|grammar|json_schema|regex|ebnf|structural_tag)$/;
