/**
 * The `openai` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang,
 * llama.cpp server, our own `delta-audit serve`). The variant is chosen by the request's
 * `model`: by default `base`, `full` and `rank1`, which is what a vLLM server started with
 * `--served-model-name base --enable-lora --lora-modules full=DIR rank1=DIR` serves.
 *
 * Everything the server says is untrusted: shapes are validated, sizes capped, and error
 * text quoted only after it is cut to one short line. The API key goes into one header and
 * nowhere else (no message, log or error ever includes it).
 */
import { cp, mkdir, rm } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { basename, dirname, join, resolve as resolvePath } from "node:path";
import { BackendError, InputError } from "../errors";
import { log } from "../progress";
import { namedOrigin, parseHttpUrl } from "../validate";
import type { Backend, BackendCapabilities, ContrastResult, ProgressFn } from "./backend";
import { variantForRank, type ChatMessage, type ContrastOptions, type GenerationRequest, type GenerationResult, type VariantName } from "../chat/types";
import { HttpError, redactUrl, requestJson, Semaphore, type RequestPolicy } from "./http";
import { continuation, DRAFT_TOKENS, HttpContrast, MAX_TOP_LOGPROBS, probeTokenTransport, type ContrastServer, type ContrastStrategy, type TopLogprob } from "./contrast-http";
import { loadLocalTokenizer, type LocalTokenizer } from "./token-ids";

export { contrastScores, contrastStep, MAX_TOP_LOGPROBS, DRAFT_TOKENS, type ContrastStrategy } from "./contrast-http";

export interface OpenAIBackendOptions {
  /** server root, with or without the trailing `/v1` */
  url: string;
  /** variant name → the server's model name; missing entries take DEFAULT names */
  models: Record<string, string>;
  /** sent as `Authorization: Bearer …`; read from the environment by the caller */
  apiKey?: string;
  /** requests in flight at once */
  concurrency: number;
  /** per-request timeout */
  timeoutMs: number;
  /** overall budget for everything this backend does, from creation */
  deadlineMs?: number;
  /** the rank-k adapter folder delta-audit wrote; loaded through /v1/load_lora_adapter */
  rank1AdapterDir?: string;
  /** load `rank1AdapterDir` (and the ladder's rungs) at run time (vLLM needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); close() unloads them */
  loadAdapter?: boolean;
  /**
   * where the server loads the adapter from: a copy of `rank1AdapterDir` made there (default:
   * next to the folder holding it), kept until the unload (servedCopy)
   */
  servedAdapterDir?: string;
  /**
   * the rank ladder's other rungs the scan wrote (delta/ladder.ts), each served as `rank${rank}`:
   * with loadAdapter each is loaded like the rank-k adapter (from a copy at `servedDir`, else next
   * to `dir`) and unloaded by close(); without it, a rung is run only where /v1/models lists
   * `rank${rank}` already
   */
  ladder?: ReadonlyArray<{ rank: number; dir: string; servedDir?: string }>;
  /** the truncation rank: the truncated variant is called `rank${rank}` */
  rank: number;
  /** retries after the first attempt of each request; default DEFAULT_MAX_RETRIES */
  maxRetries?: number;
  /** test for logprob support and enable contrastive decoding; default true */
  contrast?: boolean;
  /**
   * "draft" (default): draft-and-verify where the server offers token-id prompts and
   * prompt_logprobs (vLLM, `delta-audit serve`); "step": one full and one base request per token
   */
  contrastStrategy?: ContrastStrategy;
  /** tokens full proposes per draft-and-verify round; default DRAFT_TOKENS */
  draftTokens?: number;
  /**
   * the subject's base model folder, when local: its tokenizer decodes contrastive answers from
   * token ids, knows the EOS ids, and maps token texts to ids for servers that give no ids
   */
  tokenizerDir?: string;
  /**
   * verify every model name against /v1/models first (default true). Turn off for servers that
   * do not list adapters there (SGLang before adapters were listed, llama.cpp server).
   */
  checkModels?: boolean;
  /**
   * variant name → extra fields merged into each chat request of that variant, for servers
   * that pick adapters by a request field instead of the model name: llama.cpp server
   * `{"lora": [{"id": 0, "scale": 1}]}`, older SGLang `{"lora_path": "full"}`. The standard
   * fields delta-audit sets (model, messages, sampling) always win.
   */
  requestExtras?: Record<string, Record<string, unknown>>;
  fetch?: typeof fetch;
  /** cancels every request, the ones made while connecting included (an interrupted run) */
  signal?: AbortSignal;
  /** told about each retry (attempt, wait, reason); never given headers */
  onRetry?: RequestPolicy["onRetry"];
}

/** Three retries ride out a server restart or a short 429 burst without stalling CI for long. */
export const DEFAULT_MAX_RETRIES = 3;
/** vLLM's default `--max-lora-rank`: adapters above it fail to load, a common surprise. */
export const VLLM_DEFAULT_MAX_LORA_RANK = 16;
/** A `/v1/models` list longer than this is not a real inference server. */
const MAX_MODEL_ENTRIES = 10_000;
/** One token decodes to a few bytes; a reply far longer than max_tokens allows is malformed. */
const MAX_CHARS_PER_TOKEN = 64;
/** A model name is an identifier or a path; anything longer is garbage. */
const MAX_MODEL_NAME_CHARS = 1024;

/** The server model name used for each variant when the caller gives none. */
export function defaultModelNames(rank: number): Record<string, string> {
  return { base: "base", full: "full", [variantForRank(rank)]: variantForRank(rank) };
}

interface ModelEntry {
  id: string;
  /** vLLM sets `parent` on LoRA entries (the base model) and `root` to the adapter path */
  parent?: string | null;
  root?: string | null;
}

/** The `/v1` prefix of a server URL, validated by the one URL rule (validate.ts parseHttpUrl). */
export function apiBase(url: string): string {
  const u = parseHttpUrl(namedOrigin("backend url"), url, "", "an http(s) URL such as http://127.0.0.1:8000/v1");
  u.search = "";
  u.hash = "";
  let path = u.pathname.replace(/\/+$/, "");
  if (!path.endsWith("/v1")) path = `${path}/v1`;
  u.pathname = path;
  return u.toString().replace(/\/+$/, "");
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Validate a `/v1/models` body: `{data: [{id, parent?, root?}]}`. */
export function parseModelList(body: unknown, where: string): ModelEntry[] {
  if (!isObject(body) || !Array.isArray(body.data)) throw new BackendError(`${where}: expected {"data": [...]} from /v1/models`);
  if (body.data.length > MAX_MODEL_ENTRIES) throw new BackendError(`${where}: /v1/models lists ${body.data.length} models (more than ${MAX_MODEL_ENTRIES})`);
  return body.data.map((m, i) => {
    if (!isObject(m) || typeof m.id !== "string" || m.id.length === 0 || m.id.length > MAX_MODEL_NAME_CHARS) {
      throw new BackendError(`${where}: /v1/models entry ${i} has no valid "id"`);
    }
    return {
      id: m.id,
      parent: typeof m.parent === "string" ? m.parent : null,
      root: typeof m.root === "string" ? m.root : null,
    };
  });
}

interface ParsedChoice {
  text: string;
  finishReason: "stop" | "length";
  tokens: number;
  /** per generated token: its top alternatives (only when logprobs were asked for) */
  logprobs?: { token: string; logprob: number; top: TopLogprob[] }[];
}

function parseTop(v: unknown, where: string): TopLogprob[] {
  if (!Array.isArray(v)) throw new BackendError(`${where}: "top_logprobs" is not an array`);
  if (v.length > 4 * MAX_TOP_LOGPROBS) throw new BackendError(`${where}: ${v.length} top_logprobs entries`);
  return v.map((t) => {
    if (!isObject(t) || typeof t.token !== "string" || typeof t.logprob !== "number" || Number.isNaN(t.logprob) || t.logprob > 1e-6) {
      throw new BackendError(`${where}: malformed top_logprobs entry`);
    }
    // -Infinity arrives as a very negative number or null in JSON; both mean "impossible"
    return { token: t.token, logprob: t.logprob };
  });
}

/** Validate one chat-completion body and take what delta-audit uses from its first choice. */
export function parseChatCompletion(body: unknown, maxTokens: number, where: string, wantLogprobs = false): ParsedChoice {
  if (!isObject(body) || !Array.isArray(body.choices) || body.choices.length === 0) {
    throw new BackendError(`${where}: the response has no "choices"`);
  }
  const c = body.choices[0];
  if (!isObject(c) || !isObject(c.message)) throw new BackendError(`${where}: choices[0] has no "message"`);
  const content = c.message.content;
  if (content !== null && content !== undefined && typeof content !== "string") throw new BackendError(`${where}: message.content is not a string`);
  const text = content ?? "";
  const maxChars = Math.max(1, maxTokens) * MAX_CHARS_PER_TOKEN + 256;
  if (text.length > maxChars) throw new BackendError(`${where}: ${text.length} characters for max_tokens ${maxTokens}: the server ignored the limit`);
  const fr = c.finish_reason;
  let finishReason: "stop" | "length";
  if (fr === "length") finishReason = "length";
  else if (fr === "abort" || fr === "error") throw new BackendError(`${where}: the server aborted the generation (finish_reason "${fr}")`);
  else finishReason = "stop";
  let tokens = 0;
  const usage = body.usage;
  if (isObject(usage) && Number.isInteger(usage.completion_tokens) && (usage.completion_tokens as number) >= 0) {
    tokens = Math.min(usage.completion_tokens as number, Math.max(maxTokens, 0) + 1);
  }
  const out: ParsedChoice = { text, finishReason, tokens };
  if (wantLogprobs) {
    const lp = c.logprobs;
    if (!isObject(lp) || !Array.isArray(lp.content)) throw new BackendError(`${where}: no logprobs in the response`);
    if (lp.content.length > Math.max(1, maxTokens) + 1) throw new BackendError(`${where}: ${lp.content.length} logprob entries for max_tokens ${maxTokens}`);
    out.logprobs = lp.content.map((e) => {
      if (!isObject(e) || typeof e.token !== "string" || typeof e.logprob !== "number") throw new BackendError(`${where}: malformed logprobs entry`);
      return { token: e.token, logprob: e.logprob, top: parseTop(e.top_logprobs ?? [], where) };
    });
    if (tokens === 0) out.tokens = out.logprobs.length;
  }
  return out;
}

class OpenAIBackend implements Backend {
  readonly name = "openai";
  readonly capabilities: BackendCapabilities;
  /** sentences for the report (e.g. why contrast is off) */
  readonly notices: string[] = [];
  private readonly closer = new AbortController();
  private readonly sem: Semaphore;
  private closed = false;
  /** the contrastive decoder, once probeContrast found a way */
  private contrast?: HttpContrast;
  /** the adapters this backend loaded into the server (rank-k, then the ladder's rungs): unloaded (and their served copies removed) by close() */
  served: ServedAdapter[] = [];

  constructor(
    private readonly api: string,
    private readonly names: Record<string, string>,
    private readonly headers: Record<string, string>,
    private readonly policy: RequestPolicy,
    concurrency: number,
    contrast: boolean,
    private readonly extras: Record<string, Record<string, unknown>> = {},
  ) {
    this.capabilities = { contrast };
    this.sem = new Semaphore(concurrency);
    this.policy = { ...policy, signal: policy.signal ? AbortSignal.any([policy.signal, this.closer.signal]) : this.closer.signal };
  }

  variants(): VariantName[] {
    return Object.keys(this.names);
  }

  private modelOf(variant: VariantName): string {
    const m = this.names[variant];
    if (m === undefined) throw new BackendError(`openai backend: unknown variant '${variant}' (serves ${this.variants().join(", ")})`);
    return m;
  }

  private chatBody(variant: VariantName, messages: ChatMessage[], s: GenerationRequest["sampling"]): Record<string, unknown> {
    const greedy = s.temperature <= 0;
    return {
      ...this.extras[variant],
      model: this.modelOf(variant),
      messages,
      max_tokens: s.maxNewTokens,
      temperature: greedy ? 0 : s.temperature,
      top_p: greedy ? 1 : s.topP,
      seed: s.seed,
      stream: false,
    };
  }

  /** POST one chat completion under the concurrency limit. */
  private post(body: Record<string, unknown>, signal: AbortSignal): Promise<unknown> {
    return this.postTo("/v1/chat/completions", body, signal);
  }

  /** POST JSON under the concurrency limit: "/v1/…" under the API base, other paths (vLLM's /tokenize) under the server root. */
  private async postTo(path: string, body: Record<string, unknown>, signal: AbortSignal): Promise<unknown> {
    if (this.closed) throw new BackendError("openai backend: used after close()");
    const url = path.startsWith("/v1/") ? `${this.api}${path.slice(3)}` : `${serverRoot(this.api)}${path}`;
    return this.sem.run(() => requestJson({ method: "POST", url, headers: this.headers, body }, { ...this.policy, signal: AbortSignal.any([this.policy.signal!, signal]) }));
  }

  /** The connection as the contrastive decoder sees it. */
  private contrastServer(): ContrastServer {
    return {
      post: (path, body, signal) => this.postTo(path, body, signal),
      fields: (variant) => ({ ...this.extras[variant], model: this.modelOf(variant) }),
      where: redactUrl(this.api),
    };
  }

  /** Run every task; on the first failure cancel the rest and throw that failure. */
  private async all<T>(tasks: ((signal: AbortSignal) => Promise<T>)[], onProgress?: ProgressFn): Promise<T[]> {
    const abort = new AbortController();
    let done = 0;
    let first: unknown;
    const results = await Promise.all(
      tasks.map((t) =>
        t(abort.signal).then(
          (r) => {
            onProgress?.(++done, tasks.length);
            return r;
          },
          (err) => {
            if (first === undefined) {
              first = err;
              abort.abort(err);
            }
            return undefined as T;
          },
        ),
      ),
    );
    if (first !== undefined) throw first instanceof BackendError ? first : new BackendError(String(first), { cause: first });
    return results;
  }

  async generate(variant: VariantName, requests: GenerationRequest[], onProgress?: ProgressFn): Promise<GenerationResult[]> {
    const model = this.modelOf(variant);
    return this.all(
      requests.map((r) => async (signal: AbortSignal) => {
        const body = await this.post(this.chatBody(variant, r.messages, r.sampling), signal);
        const p = parseChatCompletion(body, r.sampling.maxNewTokens, `${redactUrl(this.api)} (model '${model}', request ${r.id})`);
        return { id: r.id, text: p.text, tokens: p.tokens, finishReason: p.finishReason };
      }),
      onProgress,
    );
  }

  /** One chat decoding step on `variant`: the top candidates for the next token after `prefix`. */
  private async nextCandidates(variant: VariantName, r: GenerationRequest, prefix: string, topK: number, signal: AbortSignal) {
    const model = this.modelOf(variant);
    // vLLM finds the prefix by its text in the rendered prompt, so an empty one cannot be
    // "continued": the first step asks for a fresh assistant turn instead.
    const continuing = prefix.length > 0;
    const body = {
      ...this.chatBody(variant, continuation(r.messages, prefix), { ...r.sampling, maxNewTokens: 1, temperature: 0 }),
      logprobs: true,
      top_logprobs: topK,
      add_generation_prompt: !continuing,
      continue_final_message: continuing,
    };
    const res = await this.post(body, signal);
    const p = parseChatCompletion(res, 1, `${redactUrl(this.api)} (model '${model}', contrast ${r.id})`, true);
    const first = p.logprobs?.[0];
    // an empty reply that stopped means the model's greedy choice was its end-of-turn token
    const endsTurn = p.finishReason === "stop" && p.text === "";
    return { top: first?.top ?? [], greedy: first?.top[0]?.token, endsTurn };
  }

  async contrastiveGenerate(requests: GenerationRequest[], opts: ContrastOptions, onProgress?: ProgressFn): Promise<ContrastResult[]> {
    if (!this.capabilities.contrast || !this.contrast) throw new BackendError("openai backend: the server does not return logprobs, so contrastive decoding is off");
    this.modelOf("full");
    this.modelOf("base");
    const contrast = this.contrast;
    return this.all(
      requests.map((r) => (signal: AbortSignal) => contrast.generate(r, opts, signal)),
      onProgress,
    );
  }

  /**
   * How contrastive decoding can run here, asked once: the tokens transport (token-id prompts,
   * "token_id:N" logprobs, prompt_logprobs for draft-and-verify; contrast-http.ts), else chat
   * completions with next-token logprobs and assistant-prefix continuation. A 4xx means the server
   * refuses the parameters (contrast off, with a notice); any other failure is a real fault and propagates.
   */
  async probeContrast(opts: { strategy?: ContrastStrategy; draftTokens?: number; tokenizer?: LocalTokenizer } = {}): Promise<void> {
    const server = this.contrastServer();
    const tokens = await probeTokenTransport(server, opts.tokenizer, this.closer.signal);
    const chatStep = (variant: VariantName, r: GenerationRequest, prefix: string, topK: number, signal: AbortSignal) => this.nextCandidates(variant, r, prefix, topK, signal);
    const draftTokens = opts.draftTokens ?? DRAFT_TOKENS;
    if (tokens.ok) {
      this.capabilities.contrast = true;
      this.contrast = new HttpContrast(server, { transport: "tokens", promptLogprobs: tokens.promptLogprobs, strategy: opts.strategy ?? "draft", draftTokens, tokenizer: opts.tokenizer }, chatStep);
      if (!tokens.promptLogprobs && (opts.strategy ?? "draft") === "draft") {
        this.notices.push("contrast ran token by token (two requests per token): the server has no prompt_logprobs for draft-and-verify");
      }
      return;
    }
    let reason = "";
    try {
      const body = await requestJson(
        {
          method: "POST",
          url: `${this.api}/chat/completions`,
          headers: this.headers,
          body: {
            ...this.chatBody(
              "full",
              [
                { role: "user", content: "Say hello." },
                { role: "assistant", content: "Hello" },
              ],
              { maxNewTokens: 1, temperature: 0, topP: 1, seed: 0 },
            ),
            logprobs: true,
            top_logprobs: 2,
            add_generation_prompt: false,
            continue_final_message: true,
          },
        },
        this.policy,
      );
      const p = parseChatCompletion(body, 1, redactUrl(this.api), true);
      this.capabilities.contrast = (p.logprobs?.[0]?.top.length ?? 0) > 0;
      if (!this.capabilities.contrast) reason = "the server returned no top_logprobs";
    } catch (err) {
      if (err instanceof HttpError && err.status !== undefined && err.status >= 400 && err.status < 500 && err.status !== 429) {
        reason = `the server rejected a logprobs request (${err.message})`;
      } else if (err instanceof BackendError && !(err instanceof HttpError)) {
        reason = `the server's logprobs answer is unusable (${err.message})`;
      } else throw err;
    }
    if (!this.capabilities.contrast) {
      this.notices.push(`contrast skipped: ${reason}`);
      return;
    }
    this.contrast = new HttpContrast(server, { transport: "chat", promptLogprobs: false, strategy: "step", draftTokens, tokenizer: opts.tokenizer }, chatStep);
    this.notices.push(
      `contrast ran over chat completions, token by token: the server offers no token-id prompts (${tokens.reason})` +
        (opts.tokenizer ? "; token texts were mapped to ids with the subject's tokenizer" : "; without the subject's tokenizer its answers are marked unreliable and not judged"),
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closer.abort(new BackendError("openai backend closed"));
    await releaseAdapters(this.api, this.headers, this.policy, this.served);
  }
}

function missingModelsMessage(api: string, missing: { variant: string; model: string }[], served: string[], rank: number): string {
  const list = missing.map((m) => `'${m.model}' (variant ${m.variant})`).join(", ");
  const servedList = served.length ? served.slice(0, 20).join(", ") + (served.length > 20 ? ", …" : "") : "nothing";
  return (
    `the server at ${redactUrl(api)} does not serve ${list}; it serves: ${servedList}. ` +
    `Start vLLM with --enable-lora --lora-modules full=DIR rank${rank}=DIR (or set the model names in the config); ` +
    `an adapter whose rank exceeds vLLM's --max-lora-rank (default ${VLLM_DEFAULT_MAX_LORA_RANK}) is not loaded — pass e.g. --max-lora-rank 64`
  );
}

/**
 * Connect to an OpenAI-compatible server: list its models, load the rank-k adapter and the
 * ladder's rungs if asked,
 * check every variant is served, and test logprob support for contrastive decoding.
 * A model name the server does not serve is a configuration error (InputError, exit 2);
 * a server that fails or answers nonsense is a BackendError (exit 3).
 */
export async function createOpenAIBackend(opts: OpenAIBackendOptions): Promise<Backend & { notices: string[] }> {
  const api = apiBase(opts.url);
  if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1) throw new InputError(`expected a positive integer, got ${opts.concurrency}`, "backend concurrency");
  if (!(opts.timeoutMs > 0)) throw new InputError(`expected a positive number of milliseconds, got ${opts.timeoutMs}`, "backend timeout");
  if (!Number.isInteger(opts.rank) || opts.rank < 1) throw new InputError(`expected a positive integer, got ${opts.rank}`, "rank");
  if (opts.apiKey !== undefined && /[\r\n]/.test(opts.apiKey)) throw new InputError("the API key contains a line break", "API key");
  const maxRetries = opts.maxRetries ?? DEFAULT_MAX_RETRIES;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) throw new InputError(`expected a non-negative integer, got ${maxRetries}`, "backend maxRetries");

  const headers: Record<string, string> = opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {};
  const policy: RequestPolicy = {
    fetch: opts.fetch ?? globalThis.fetch,
    timeoutMs: opts.timeoutMs,
    maxRetries,
    deadline: opts.deadlineMs !== undefined ? Date.now() + opts.deadlineMs : undefined,
    signal: opts.signal,
    // retries are worth a line in the CI log (the reason never carries headers or the key)
    onRetry: opts.onRetry ?? ((r) => log(`openai backend: retry ${r.attempt} in ${r.waitMs} ms after: ${r.reason}`)),
  };
  const rankVariant = variantForRank(opts.rank);
  const given = Object.fromEntries(Object.entries(opts.models ?? {}).filter(([, m]) => m !== undefined && m !== null));
  const names: Record<string, string> = { ...defaultModelNames(opts.rank), ...given };
  for (const [v, m] of Object.entries(names)) {
    if (typeof m !== "string" || m.length === 0 || m.length > MAX_MODEL_NAME_CHARS) throw new InputError(`model name for variant '${v}' must be a non-empty string`, "backend models");
  }

  const extras = opts.requestExtras ?? {};
  for (const [v, e] of Object.entries(extras)) {
    if (!(v in names)) throw new InputError(`requestExtras names variant '${v}', which is not one of ${Object.keys(names).join(", ")}`, "backend requestExtras");
    if (typeof e !== "object" || e === null || Array.isArray(e)) throw new InputError(`requestExtras.${v} must be an object`, "backend requestExtras");
  }
  const loaded = new Set<string>();
  const listModels = async () => parseModelList(await requestJson({ method: "GET", url: `${api}/models`, headers }, policy), redactUrl(api));
  let served = await listModels();

  // A base model served under its own path (vLLM's default) instead of "base": when the caller
  // did not name it, take the one entry that is not a LoRA adapter.
  if (given.base === undefined && !served.some((m) => m.id === names.base)) {
    const roots = served.filter((m) => !m.parent);
    if (roots.length === 1) names.base = roots[0]!.id;
  }

  // the ladder's rungs: each its own variant rank<k>, named so on the server
  const rungs = (opts.ladder ?? []).filter((r) => r.rank !== opts.rank);
  for (const r of rungs) {
    if (!Number.isInteger(r.rank) || r.rank < 1) throw new InputError(`expected a positive integer, got ${r.rank}`, "ranks");
  }
  const listed = new Set(served.map((m) => m.id));
  for (const r of rungs) {
    const v = variantForRank(r.rank);
    // without load-adapter a rung runs only where the server already serves it (scan.ts says which were skipped)
    if (opts.loadAdapter || listed.has(v)) names[v] = v;
  }

  // the adapters to load, the rank-k one first: each from a folder that stays put while loaded
  const toLoad: { name: string; dir: string; at?: string }[] = [];
  if (opts.loadAdapter) {
    if (!opts.rank1AdapterDir) throw new InputError("loadAdapter needs the adapter folder", "backend loadAdapter");
    toLoad.push({ name: names[rankVariant]!, dir: opts.rank1AdapterDir, at: opts.servedAdapterDir });
    for (const r of rungs) toLoad.push({ name: variantForRank(r.rank), dir: r.dir, at: r.servedDir });
  }
  const adapters: ServedAdapter[] = [];
  try {
    for (const a of toLoad) {
      const adapter = await loadAdapter(api, headers, policy, served, a.name, a.dir, a.at);
      if (!adapter) continue;
      adapters.push(adapter);
      // some vLLM versions leave runtime-loaded adapters out of /v1/models; the load said yes
      loaded.add(adapter.name);
    }
  } catch (err) {
    // those loaded before the one that failed go now: the caller never gets this backend to close
    await releaseAdapters(api, headers, policy, adapters);
    throw err;
  }
  try {
    if (adapters.length > 0) served = await listModels();
    const ids = new Set(served.map((m) => m.id));
    // SGLang picks an adapter with model = "<base id>:<adapter name>"
    const isServed = (m: string) => ids.has(m) || loaded.has(m) || (m.includes(":") && ids.has(m.slice(0, m.lastIndexOf(":"))) && ids.has(m.slice(m.lastIndexOf(":") + 1)));
    const missing = Object.entries(names)
      .filter(([, m]) => !isServed(m))
      .map(([variant, model]) => ({ variant, model }));
    if (missing.length > 0 && opts.checkModels !== false) throw new InputError(missingModelsMessage(api, missing, [...ids], opts.rank), "backend models");

    const backend = new OpenAIBackend(api, names, headers, policy, opts.concurrency, false, extras);
    if (opts.contrast === false) backend.notices.push("contrast skipped: turned off in the configuration");
    else {
      const tokenizer = await loadLocalTokenizer(opts.tokenizerDir).catch(() => undefined);
      await backend.probeContrast({ strategy: opts.contrastStrategy, draftTokens: opts.draftTokens, tokenizer });
    }
    backend.served = adapters;
    return backend;
  } catch (err) {
    // the caller never gets this backend to close: the adapters go now
    await releaseAdapters(api, headers, policy, adapters);
    throw err;
  }
}

/**
 * Load the adapter in `dir` as `name` from a served copy (servedCopy), replacing a same-named one
 * the server loaded from a path earlier. Undefined when the server was started with an adapter of
 * that name (--lora-modules: listed without a path), which stays and is used as it is.
 */
async function loadAdapter(api: string, headers: Record<string, string>, policy: RequestPolicy, served: ModelEntry[], name: string, dir: string, at?: string): Promise<ServedAdapter | undefined> {
  const existing = served.find((m) => m.id === name);
  if (existing && !existing.root) return undefined;
  if (existing) {
    // a stale adapter of the same name from an earlier run would silently answer for ours
    await requestJson({ method: "POST", url: `${api}/unload_lora_adapter`, headers, body: { lora_name: name }, responseType: "text" }, policy).catch((err) => {
      throw new BackendError(`could not replace the adapter '${name}' the server already serves from another path: ${(err as Error).message}`, { cause: err });
    });
  }
  const adapter = { name, path: await servedCopy(dir, at) };
  try {
    await requestJson({ method: "POST", url: `${api}/load_lora_adapter`, headers, body: { lora_name: name, lora_path: adapter.path }, responseType: "text" }, policy);
  } catch (err) {
    await rm(adapter.path, { recursive: true, force: true }).catch(() => undefined);
    const status = err instanceof HttpError ? err.status : undefined;
    const hint =
      status === 404 || status === 405
        ? " (the server has no runtime adapter loading: for vLLM set VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, or start it with --lora-modules)"
        : ` (vLLM rejects adapters above --max-lora-rank, default ${VLLM_DEFAULT_MAX_LORA_RANK})`;
    throw new BackendError(`loading the adapter '${name}' from ${adapter.path} failed: ${(err as Error).message}${hint}`, { cause: err });
  }
  return adapter;
}

/** An adapter this backend loaded (rank-k or a ladder rung) as the server holds it: its name and the folder it was loaded from. */
interface ServedAdapter {
  name: string;
  path: string;
}

/**
 * The folder the server loads an adapter (rank-k or a ladder rung) from: a copy of `dir` that stays where it is
 * for as long as the server holds it (vLLM keeps the path and reads it again when the adapter
 * falls out of its cache). The scan writes `dir` inside its staging folder, which is renamed
 * when the report is done, so the server is never given that: createBackend names a place
 * next to the output (where a server sharing the file system sees it); by default the copy
 * sits next to `dir`. releaseAdapter removes it after the unload.
 */
async function servedCopy(dir: string, at?: string): Promise<string> {
  const from = resolvePath(dir);
  const to = at ? resolvePath(at) : join(dirname(from), `.${basename(from)}.served-${process.pid}-${randomBytes(6).toString("hex")}`);
  try {
    await mkdir(dirname(to), { recursive: true });
    await cp(from, to, { recursive: true, errorOnExist: true, force: false });
  } catch (err) {
    await rm(to, { recursive: true, force: true }).catch(() => undefined);
    throw new BackendError(`could not copy the adapter ${from} to ${to} for the server: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return to;
}

/** Give an unload this long: a scan that is ending (or failed) waits no longer for a server that does not answer. */
const UNLOAD_TIMEOUT_MS = 10_000;

/**
 * Unload the adapter this backend loaded, then remove its served copy. Never throws: an unload
 * that fails leaves the copy in place (the server still reads it) and says so in the log.
 */
async function releaseAdapter(api: string, headers: Record<string, string>, policy: RequestPolicy, adapter: ServedAdapter): Promise<void> {
  // the scan's own signal may be what ended it: the unload still goes out, briefly
  const brief: RequestPolicy = { ...policy, signal: undefined, timeoutMs: Math.min(policy.timeoutMs, UNLOAD_TIMEOUT_MS), maxRetries: Math.min(policy.maxRetries, 1), deadline: undefined };
  try {
    await requestJson({ method: "POST", url: `${api}/unload_lora_adapter`, headers, body: { lora_name: adapter.name }, responseType: "text" }, brief);
  } catch (err) {
    log(`openai backend: could not unload the adapter '${adapter.name}' (${(err as Error).message}); its files stay at ${adapter.path} while the server holds them`);
    return;
  }
  await rm(adapter.path, { recursive: true, force: true }).catch(() => undefined);
}

/** Release every adapter in `adapters`, one after another (a server's admin calls are serialised anyway). */
async function releaseAdapters(api: string, headers: Record<string, string>, policy: RequestPolicy, adapters: readonly ServedAdapter[]): Promise<void> {
  for (const a of adapters) await releaseAdapter(api, headers, policy, a);
}

/** The server root of an API base (`…/v1` → `…`): vLLM serves /tokenize and /detokenize there. */
function serverRoot(api: string): string {
  return api.replace(/\/v1$/, "");
}
