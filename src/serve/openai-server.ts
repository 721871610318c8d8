/**
 * An OpenAI-compatible HTTP server (node:http) in front of a ServeEngine — the server behind
 * `delta-audit serve`. It speaks the subset of the protocol delta-audit and common clients use:
 * `/v1/models`, `/v1/chat/completions` (non-streaming and SSE), `/v1/completions` (prompt as
 * text or token ids), `/tokenize`, `/detokenize`, `/v1/load_lora_adapter`,
 * `/v1/unload_lora_adapter`, `/health`; the names and shapes follow vLLM so the `openai`
 * backend (and any vLLM client) can talk to it unchanged — vLLM's own fields included:
 * `return_tokens_as_token_ids` (logprob tokens as "token_id:123"), `prompt_logprobs` (each prompt
 * position's logprob and top alternatives, keyed by token id) and `echo`.
 *
 * Requests are untrusted: bodies are size-capped, every field is validated, max_tokens and the
 * prompt's length are bounded before any tokenizing. Requests are queued, never dropped while
 * the queue has room, and waiting requests for one variant start together as one job.
 *
 * Scheduling: one worker runs turns. A turn runs pending adapter loads, admits at most one new
 * job while fewer than maxActive jobs are live, then advances every live job by one KV-cached
 * decode step, round-robin. A job is the oldest admissible waiting request's variant with the
 * requests waiting for it, as many as keep the rows decoding at once within maxBatch (the KV
 * cache's memory bound). A request whose variant already has a job about to finish (at most
 * JOIN_NEXT_STEPS steps left) waits for it and starts with the others that arrived meanwhile:
 * many small jobs would each read the weights once per step. So one request holds the worker
 * for at most one prefill or one decode step at a time, and a short request arriving behind a
 * long one (a 2,048-token logprobs request) is answered after its own few steps, not after the
 * long one. Rows answer as soon as they finish. `maxActive: 1` runs one job at a time to
 * completion.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { randomInt } from "node:crypto";
import { basename } from "node:path";
import type { ChatMessage, SamplingOptions } from "../chat/types";
import { InputError } from "../errors";
import { MAX_TOP_LOGPROBS } from "../backends/openai";
import { MAX_RANK } from "../delta/limits";

/** One generation as the engine sees it: token ids in, sampling options, optional logprobs. */
export interface EngineItem {
  promptIds: number[];
  sampling: SamplingOptions;
  /** return this many alternatives per generated token (0 = only the chosen token's logprob) */
  topLogprobs?: number;
  /** whether to return logprobs at all */
  logprobs?: boolean;
  /** return the text each generated token adds (for streaming) */
  tokenTexts?: boolean;
  /** return every prompt position's logprob with this many alternatives (vLLM `prompt_logprobs`) */
  promptLogprobs?: number;
}

/** A prompt token's logprob given the tokens before it, its rank there, and the `n` most likely tokens. */
export interface PromptLogprob {
  id: number;
  logprob: number;
  /** 1 = the most likely token at that position */
  rank: number;
  text: string;
  top: { id: number; logprob: number; rank: number; text: string }[];
}

/**
 * A generated token's logprob and its alternatives. `text` is what the token adds after the
 * tokens before it: word-piece and sentencepiece tokenizers put spaces between tokens when
 * decoding a sequence, so concatenating these texts gives the decoded sequence; a special
 * token shows its literal text ("<|eot_id|>").
 */
export interface TokenLogprob {
  id: number;
  logprob: number;
  text: string;
  top: { id: number; logprob: number; text: string }[];
}

export interface EngineOutput {
  /** generated ids, without the stop token */
  ids: number[];
  text: string;
  finishReason: "stop" | "length";
  logprobs?: TokenLogprob[];
  /** per generated id, the text it adds (as TokenLogprob.text), when asked */
  tokenTexts?: string[];
  /** per prompt position (null for the first), when asked */
  promptLogprobs?: (PromptLogprob | null)[];
}

/**
 * Step-wise decoding of a batch of requests on one variant (the engine's KV cache behind it).
 * `outputs[k]` is set once request k finished; `live` counts rows still decoding.
 */
export interface DecodeJob {
  readonly outputs: readonly (EngineOutput | undefined)[];
  readonly live: number;
  /** decode steps the longest live row may still take */
  readonly remaining: number;
  /** choose each live row's next token and run one decode step (a no-op once nothing is live) */
  step(): Promise<void>;
  /** stop decoding request k (its client hung up); it gets no output */
  cancel(k: number): void;
}

/** What the server needs from a model: the tokenizer side and step-wise batched decoding per variant. */
export interface ServeEngine {
  /** the name served for the `base` variant is "base"; adapters by their own names */
  variants(): string[];
  /** the tokenizer's chat template rendered as text (add_generation_prompt semantics) */
  renderChat(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): string;
  /** tokenize a rendered chat prompt exactly as generation would */
  encodePrompt(text: string): number[];
  /** tokenize a plain completion prompt (with the tokenizer's own special tokens, as vLLM does) */
  encodeText?(text: string): number[];
  /** token ids → text (/detokenize) */
  decode?(ids: number[], skipSpecialTokens?: boolean): string;
  /** token ids a prompt may hold are below this */
  vocabSize?: number;
  /** context length (prompt + generated tokens) */
  maxContext: number;
  /** prefill the prompts and return a job that decodes them one step per `step()` */
  open(variant: string, items: EngineItem[]): Promise<DecodeJob>;
  /** add an adapter variant at run time (`rank` truncates it first) */
  loadAdapter?(name: string, dir: string, rank?: number): Promise<void>;
  unloadAdapter?(name: string): Promise<void>;
}

/** Request bodies larger than this are refused (413): a long chat is a few hundred KB. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** Default cap on max_tokens; the audit suite asks for a few hundred at most. */
export const DEFAULT_MAX_TOKENS_LIMIT = 2048;
/** max_tokens when the client sends none (vLLM: the rest of the context; we stay modest). */
export const DEFAULT_MAX_TOKENS = 256;
/**
 * Rows decoding at once, over every live job: the KV cache's memory grows with them, so a new
 * job gets at most maxBatch minus the rows already decoding.
 */
export const DEFAULT_MAX_BATCH = 16;
/**
 * Jobs decoded side by side, one step each per turn. Each more job adds a decode step to every
 * turn; 4 lets a short request start at once behind a few long ones while a turn stays a
 * handful of steps.
 */
export const DEFAULT_MAX_ACTIVE = 4;
/**
 * A waiting request whose variant has a live job with at most this many steps left waits for
 * that job to end and starts with whatever arrived meanwhile, instead of opening a small job
 * of its own: each job reads the weights once per step, so under steady load many small jobs
 * would cost throughput. Behind a longer job it starts at once.
 */
export const JOIN_NEXT_STEPS = 32;
/**
 * Characters of message content per request. Far above any context the engine runs (a 32k
 * context is ~130k characters of text) and well below the chat template's render budget
 * (MAX_RENDER_CHARS, 1,000,000), so an oversized prompt is refused by name here instead of
 * by the template's budget.
 */
export const MAX_MESSAGE_CHARS = 500_000;
/**
 * The most characters one token stands for: Llama 3's longest tokens are 128-space runs. A
 * rendered prompt longer than maxContext × this cannot fit the context, so it is refused
 * before tokenizing (which takes ~2 ms per 1,000 characters and blocks the worker).
 */
export const MAX_CHARS_PER_TOKEN = 128;
/** Waiting requests beyond this get 503 + Retry-After instead of growing memory without bound. */
export const DEFAULT_MAX_QUEUE = 4096;
/** A conversation longer than this many messages is not an audit probe. */
const MAX_MESSAGES = 256;
/** Retry-After sent with a full-queue 503: about one batch on a small model. */
const QUEUE_FULL_RETRY_AFTER_S = 1;
/** After a shutdown signal, queued work gets this long to finish before sockets close. */
export const SHUTDOWN_GRACE_MS = 10_000;

export interface ServeOptions {
  host?: string;
  port?: number;
  /** the model id reported for the base variant's `parent` */
  modelId?: string;
  maxTokensLimit?: number;
  /** most rows decoding at once, over all jobs */
  maxBatch?: number;
  maxQueue?: number;
  /** most jobs decoded side by side (round-robin per decode step); 1 runs one job at a time to completion */
  maxActive?: number;
  /** require `Authorization: Bearer <key>` on /v1/* */
  apiKey?: string;
  /** allow /v1/load_lora_adapter and /v1/unload_lora_adapter */
  runtimeAdapters?: boolean;
  /** log lines (stderr in the CLI) */
  log?: (line: string) => void;
}

/** A live job and the requests it decodes (request i is row i of the job). */
interface Active {
  job: DecodeJob;
  batch: Pending[];
  variant: string;
}

interface Pending {
  variant: string;
  item: EngineItem;
  cancelled: boolean;
  /** the job decoding it and its index there, once admitted */
  job?: DecodeJob;
  index?: number;
  settled: boolean;
  resolve(out: EngineOutput): void;
  reject(err: unknown): void;
}

/** A client-facing error: status + OpenAI error body. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type = "BadRequestError",
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Message content is a string or a list of text parts (the newer OpenAI shape). */
function contentText(c: unknown, i: number): string {
  if (typeof c === "string") return c;
  if (c === null || c === undefined) return "";
  if (Array.isArray(c)) {
    return c
      .map((p, j) => {
        if (!isObject(p) || p.type !== "text" || typeof p.text !== "string") throw new ApiError(400, `messages[${i}].content[${j}]: only text parts are supported`);
        return p.text;
      })
      .join("");
  }
  throw new ApiError(400, `messages[${i}].content must be a string`);
}

interface ChatParams {
  model: string;
  messages: ChatMessage[];
  maxTokens: number;
  sampling: SamplingOptions;
  logprobs: boolean;
  topLogprobs: number;
  stream: boolean;
  addGenerationPrompt: boolean;
  continueFinal: boolean;
  stop: string[];
  /** vLLM's return_tokens_as_token_ids: logprob tokens written "token_id:123" */
  tokenIds: boolean;
  /** vLLM's prompt_logprobs: alternatives per prompt position; undefined = none */
  promptLogprobs?: number;
}

function num(v: unknown, name: string, lo: number, hi: number, dflt: number, integer = false): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || v < lo || v > hi || (integer && !Number.isInteger(v))) {
    throw new ApiError(400, `${name} must be ${integer ? "an integer" : "a number"} in [${lo}, ${hi}]`);
  }
  return v;
}

function bool(v: unknown, name: string): boolean {
  if (v !== undefined && v !== null && typeof v !== "boolean") throw new ApiError(400, `${name} must be a boolean`);
  return v === true;
}

/** Stop strings, as chat and plain completions take them. */
function parseStop(body: Record<string, unknown>): string[] {
  if (typeof body.stop === "string") return [body.stop];
  if (Array.isArray(body.stop)) {
    if (body.stop.length > 16 || !body.stop.every((s) => typeof s === "string" && s.length > 0 && s.length < 256)) throw new ApiError(400, "stop must be up to 16 non-empty strings");
    return body.stop as string[];
  }
  if (body.stop !== undefined && body.stop !== null) throw new ApiError(400, "stop must be a string or a list of strings");
  return [];
}

/** vLLM's prompt_logprobs: alternatives per prompt position, at most the top_logprobs limit; undefined when not asked. */
function promptLogprobsParam(body: Record<string, unknown>): number | undefined {
  return body.prompt_logprobs === undefined || body.prompt_logprobs === null ? undefined : num(body.prompt_logprobs, "prompt_logprobs", 0, MAX_TOP_LOGPROBS, 0, true);
}

/** Validate a chat conversation (`messages`) and bound its size. */
function parseMessages(body: Record<string, unknown>): ChatMessage[] {
  if (!Array.isArray(body.messages) || body.messages.length === 0) throw new ApiError(400, "messages must be a non-empty array");
  if (body.messages.length > MAX_MESSAGES) throw new ApiError(400, `at most ${MAX_MESSAGES} messages`);
  const messages: ChatMessage[] = body.messages.map((m, i) => {
    if (!isObject(m)) throw new ApiError(400, `messages[${i}] must be an object`);
    if (m.role !== "system" && m.role !== "user" && m.role !== "assistant") throw new ApiError(400, `messages[${i}].role must be system, user or assistant`);
    return { role: m.role, content: contentText(m.content, i) };
  });
  const chars = messages.reduce((n, m) => n + m.content.length, 0);
  if (chars > MAX_MESSAGE_CHARS) throw new ApiError(400, `the messages hold ${chars} characters; at most ${MAX_MESSAGE_CHARS} are accepted`);
  return messages;
}

/** Validate a chat-completions body. */
export function parseChatParams(body: unknown, maxTokensLimit: number): ChatParams {
  if (!isObject(body)) throw new ApiError(400, "the body must be a JSON object");
  if (typeof body.model !== "string" || body.model.length === 0) throw new ApiError(400, "model is required");
  const messages = parseMessages(body);
  // one choice per request: the engine batches across requests instead
  num(body.n, "n", 1, 1, 1, true);
  const maxTokens = num(body.max_completion_tokens ?? body.max_tokens, "max_tokens", 1, maxTokensLimit, Math.min(DEFAULT_MAX_TOKENS, maxTokensLimit), true);
  const temperature = num(body.temperature, "temperature", 0, 2, 1);
  const topP = num(body.top_p, "top_p", 0, 1, 1);
  if (topP === 0) throw new ApiError(400, "top_p must be in (0, 1]");
  const seed = num(body.seed, "seed", -(2 ** 53), 2 ** 53, randomInt(2 ** 31 - 1), true);
  if (body.logprobs !== undefined && body.logprobs !== null && typeof body.logprobs !== "boolean") throw new ApiError(400, "logprobs must be a boolean");
  const logprobs = body.logprobs === true;
  const topLogprobs = num(body.top_logprobs, "top_logprobs", 0, MAX_TOP_LOGPROBS, 0, true);
  if (topLogprobs > 0 && !logprobs) throw new ApiError(400, "top_logprobs needs logprobs: true");
  const stream = body.stream === true;
  const continueFinal = body.continue_final_message === true;
  const addGenerationPrompt = body.add_generation_prompt === undefined ? !continueFinal : body.add_generation_prompt === true;
  if (continueFinal && addGenerationPrompt) throw new ApiError(400, "continue_final_message and add_generation_prompt cannot both be true");
  if (continueFinal && messages[messages.length - 1]!.role !== "assistant") throw new ApiError(400, "continue_final_message needs a final assistant message");
  const stop = parseStop(body);
  return {
    model: body.model,
    messages,
    maxTokens,
    // seeds are carried as unsigned 32-bit values by the engine's PRNG
    sampling: { maxNewTokens: maxTokens, temperature, topP, seed: Number(BigInt.asUintN(32, BigInt(seed))) },
    logprobs,
    topLogprobs,
    stream,
    addGenerationPrompt,
    continueFinal,
    stop,
    tokenIds: bool(body.return_tokens_as_token_ids, "return_tokens_as_token_ids"),
    promptLogprobs: promptLogprobsParam(body),
  };
}

interface CompletionParams {
  model: string;
  /** the prompt as text, or as token ids (vLLM accepts both) */
  prompt: string | number[];
  maxTokens: number;
  sampling: SamplingOptions;
  /** alternatives per generated token; undefined = no logprobs */
  logprobs?: number;
  echo: boolean;
  stop: string[];
  tokenIds: boolean;
  promptLogprobs?: number;
}

/** The OpenAI default for /v1/completions when max_tokens is absent. */
const DEFAULT_COMPLETION_MAX_TOKENS = 16;

/** Validate a /v1/completions body (one prompt, one choice, no streaming). */
export function parseCompletionParams(body: unknown, maxTokensLimit: number, vocabSize?: number): CompletionParams {
  if (!isObject(body)) throw new ApiError(400, "the body must be a JSON object");
  if (typeof body.model !== "string" || body.model.length === 0) throw new ApiError(400, "model is required");
  let prompt: unknown = body.prompt;
  // a list of one prompt is one prompt; several would be several choices
  if (Array.isArray(prompt) && prompt.length === 1 && (typeof prompt[0] === "string" || Array.isArray(prompt[0]))) prompt = prompt[0];
  if (typeof prompt === "string") {
    if (prompt.length === 0) throw new ApiError(400, "prompt must not be empty");
    if (prompt.length > MAX_MESSAGE_CHARS) throw new ApiError(400, `the prompt holds ${prompt.length} characters; at most ${MAX_MESSAGE_CHARS} are accepted`);
  } else if (Array.isArray(prompt)) {
    // its length is checked against the context once max_tokens is known (and bounded by the body's size before)
    if (prompt.length === 0) throw new ApiError(400, "prompt must not be empty");
    const top = vocabSize ?? Number.MAX_SAFE_INTEGER;
    if (!prompt.every((t) => Number.isInteger(t) && t >= 0 && t < top)) throw new ApiError(400, `prompt token ids must be integers in [0, ${top})`);
  } else throw new ApiError(400, "prompt must be a string or a list of token ids");
  if (body.stream === true) throw new ApiError(400, "stream is not supported on /v1/completions");
  num(body.n, "n", 1, 1, 1, true);
  num(body.best_of, "best_of", 1, 1, 1, true);
  const maxTokens = num(body.max_tokens, "max_tokens", 1, maxTokensLimit, Math.min(DEFAULT_COMPLETION_MAX_TOKENS, maxTokensLimit), true);
  const temperature = num(body.temperature, "temperature", 0, 2, 1);
  const topP = num(body.top_p, "top_p", 0, 1, 1);
  if (topP === 0) throw new ApiError(400, "top_p must be in (0, 1]");
  const seed = num(body.seed, "seed", -(2 ** 53), 2 ** 53, randomInt(2 ** 31 - 1), true);
  const logprobs = body.logprobs === undefined || body.logprobs === null ? undefined : num(body.logprobs, "logprobs", 0, MAX_TOP_LOGPROBS, 0, true);
  return {
    model: body.model,
    prompt: prompt as string | number[],
    maxTokens,
    sampling: { maxNewTokens: maxTokens, temperature, topP, seed: Number(BigInt.asUintN(32, BigInt(seed))) },
    logprobs,
    echo: bool(body.echo, "echo"),
    stop: parseStop(body),
    tokenIds: bool(body.return_tokens_as_token_ids, "return_tokens_as_token_ids"),
    promptLogprobs: promptLogprobsParam(body),
  };
}

/** vLLM's prompt_logprobs: per position null (the first) or {id: {logprob, rank, decoded_token}} for the prompt's own token and the top `n`. */
function promptLogprobsJson(list: readonly (PromptLogprob | null)[], n: number, tokenIds: boolean): (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[] {
  return list.map((p) => {
    if (!p) return null;
    const out: Record<string, { logprob: number; rank: number; decoded_token: string }> = {};
    for (const t of [p, ...p.top.slice(0, n)]) {
      if (!(String(t.id) in out)) out[String(t.id)] = { logprob: t.logprob, rank: t.rank, decoded_token: tokenIds ? `token_id:${t.id}` : t.text };
    }
    return out;
  });
}

/**
 * The prompt text for a chat request. With continue_final_message the template renders the
 * conversation as finished and the text is cut right after the final assistant content, so
 * generation continues that message (vLLM does the same).
 */
export function promptText(engine: Pick<ServeEngine, "renderChat">, p: Pick<ChatParams, "messages" | "continueFinal" | "addGenerationPrompt">): string {
  if (!p.continueFinal) return engine.renderChat(p.messages, { addGenerationPrompt: p.addGenerationPrompt });
  const text = engine.renderChat(p.messages, { addGenerationPrompt: false });
  const last = p.messages[p.messages.length - 1]!.content;
  const at = last.length > 0 ? text.lastIndexOf(last) : -1;
  if (at < 0) throw new ApiError(400, "continue_final_message: the final message does not appear in the rendered prompt");
  return text.slice(0, at + last.length);
}

/**
 * An error's message for a client: one line, with the folder of a file named by an InputError
 * (a server path) cut to the file's own name.
 */
function clientMessage(err: unknown): string {
  const line = (err instanceof Error ? err.message : String(err)).split("\n")[0]!;
  if (err instanceof InputError && err.file && line.startsWith(`${err.file}: `)) return `${basename(err.file)}: ${line.slice(err.file.length + 2)}`;
  return line;
}

/** Input the request carries that the tokenizer refuses (a template's render budget) is the client's: 400. */
function requestInput<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof InputError) throw new ApiError(400, clientMessage(err));
    throw err;
  }
}

/** Cut text at the first stop string (which is not included, as in the OpenAI API). */
function applyStop(text: string, stop: string[]): { text: string; stopped: boolean } {
  let cut = -1;
  for (const s of stop) {
    const i = text.indexOf(s);
    if (i >= 0 && (cut < 0 || i < cut)) cut = i;
  }
  return cut < 0 ? { text, stopped: false } : { text: text.slice(0, cut), stopped: true };
}

export interface RunningServer {
  url: string;
  port: number;
  server: Server;
  /** stop accepting, finish queued work (up to `graceMs`), then close every socket */
  close(graceMs?: number): Promise<void>;
  /**
   * requests accepted; jobs opened (batches) and the largest; queued = accepted and not yet
   * answered (waiting + running); waiting = not yet admitted; running = rows decoding; jobs = live jobs
   */
  stats(): { requests: number; batches: number; maxBatch: number; queued: number; waiting: number; running: number; jobs: number };
}

/** Start the server; resolves once it listens. */
export async function startOpenAIServer(engine: ServeEngine, opts: ServeOptions = {}): Promise<RunningServer> {
  const host = opts.host ?? "127.0.0.1";
  const maxTokensLimit = opts.maxTokensLimit ?? DEFAULT_MAX_TOKENS_LIMIT;
  const maxBatch = opts.maxBatch ?? DEFAULT_MAX_BATCH;
  const maxQueue = opts.maxQueue ?? DEFAULT_MAX_QUEUE;
  const log = opts.log ?? (() => {});
  const created = Math.floor(Date.now() / 1000);
  const modelId = opts.modelId ?? "base";
  const adapterRoots = new Map<string, string>();

  let queue: Pending[] = [];
  /** live jobs, in admission order: each turn steps them all once */
  let active: Active[] = [];
  const maxActive = Math.max(1, opts.maxActive ?? DEFAULT_MAX_ACTIVE);
  let working = false;
  let closing = false;
  let counter = 0;
  const stats = { requests: 0, batches: 0, maxBatch: 0 };
  /** adapter loads run between turns: a job keeps the variant it was opened on */
  const admin: (() => Promise<void>)[] = [];
  const idleWaiters: (() => void)[] = [];

  const settle = (p: Pending, fn: () => void) => {
    if (p.settled) return;
    p.settled = true;
    fn();
  };

  /**
   * The oldest waiting request whose variant has no live job about to end picks the variant;
   * the requests waiting for it ride along while the rows decoding at once stay within maxBatch.
   */
  const admit = async () => {
    queue = queue.filter((p) => !p.cancelled);
    const room = maxBatch - active.reduce((n, a) => n + a.job.live, 0);
    if (queue.length === 0 || room <= 0) return;
    const endingSoon = new Set(active.filter((a) => a.job.remaining <= JOIN_NEXT_STEPS).map((a) => a.variant));
    const first = queue.find((p) => !endingSoon.has(p.variant));
    if (!first) return;
    const variant = first.variant;
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    for (const p of queue) (p.variant === variant && batch.length < room ? batch : rest).push(p);
    queue = rest;
    stats.batches++;
    stats.maxBatch = Math.max(stats.maxBatch, batch.length);
    try {
      const job = await engine.open(
        variant,
        batch.map((p) => p.item),
      );
      if (job.outputs.length !== batch.length) throw new Error(`engine opened ${job.outputs.length} rows for ${batch.length} requests`);
      batch.forEach((p, i) => {
        p.job = job;
        p.index = i;
        if (p.cancelled) job.cancel(i);
      });
      active.push({ job, batch, variant });
      deliver(active[active.length - 1]!);
    } catch (err) {
      for (const p of batch) settle(p, () => p.reject(err));
    }
  };

  /** answer the rows that finished; a job with nothing live leaves */
  const deliver = (a: Active) => {
    a.batch.forEach((p, i) => {
      const out = a.job.outputs[i];
      if (out) settle(p, () => p.resolve(out));
    });
    if (a.job.live === 0) {
      for (const p of a.batch) settle(p, () => p.reject(p.cancelled ? new ApiError(499, "the client hung up") : new Error("the engine finished without an answer")));
      active = active.filter((x) => x !== a);
    }
  };

  const pump = async () => {
    if (working) return;
    working = true;
    try {
      for (;;) {
        while (admin.length > 0) await admin.shift()!();
        if (active.length < maxActive) await admit();
        if (active.length === 0 && queue.length === 0) break;
        for (const a of [...active]) {
          try {
            await a.job.step();
            deliver(a);
          } catch (err) {
            for (const p of a.batch) settle(p, () => p.reject(err));
            active = active.filter((x) => x !== a);
          }
        }
        // let sockets flush and new requests arrive before the next turn
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      working = false;
      if (queue.length > 0 || admin.length > 0 || active.length > 0) void pump();
    }
  };

  const enqueue = (variant: string, item: EngineItem, res: ServerResponse): Promise<EngineOutput> => {
    if (queue.length >= maxQueue) throw new ApiError(503, "the request queue is full; retry later", "ServiceUnavailableError", { "retry-after": String(QUEUE_FULL_RETRY_AFTER_S) });
    return new Promise((resolve, reject) => {
      const p: Pending = { variant, item, cancelled: false, settled: false, resolve, reject };
      // a client that hung up no longer needs its tokens: waiting or decoding, it stops
      res.on("close", () => {
        if (res.writableFinished) return;
        p.cancelled = true;
        if (p.job && p.index !== undefined) p.job.cancel(p.index);
      });
      queue.push(p);
      void pump();
    });
  };

  const runAdmin = (fn: () => Promise<void>) =>
    new Promise<void>((resolve, reject) => {
      admin.push(() => fn().then(resolve, reject));
      void pump();
    });

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    if (res.headersSent || res.destroyed) return;
    const text = typeof body === "string" ? body : JSON.stringify(body);
    res.writeHead(status, {
      "content-type": typeof body === "string" ? "text/plain; charset=utf-8" : "application/json",
      "content-length": String(Buffer.byteLength(text)),
      ...headers,
    });
    res.end(text);
  };
  const sendError = (res: ServerResponse, err: ApiError) =>
    send(res, err.status, { error: { message: err.message, type: err.type, code: err.status }, object: "error", message: err.message }, err.headers);

  const readBody = (req: IncomingMessage): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const declared = Number(req.headers["content-length"]);
      if (Number.isFinite(declared) && declared > MAX_BODY_BYTES) return reject(new ApiError(413, `request body over ${MAX_BODY_BYTES} bytes`));
      const chunks: Buffer[] = [];
      let size = 0;
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY_BYTES) {
          reject(new ApiError(413, `request body over ${MAX_BODY_BYTES} bytes`));
          req.pause();
          return;
        }
        chunks.push(c);
      });
      req.on("end", () => {
        if (size > MAX_BODY_BYTES) return;
        const text = Buffer.concat(chunks).toString("utf8");
        if (text.trim() === "") return resolve(undefined);
        try {
          resolve(JSON.parse(text));
        } catch {
          reject(new ApiError(400, "the body is not valid JSON"));
        }
      });
      req.on("error", reject);
    });

  const modelList = () => {
    const data = engine.variants().map((v) => ({
      id: v,
      object: "model",
      created,
      owned_by: "delta-audit",
      root: v === "base" ? modelId : (adapterRoots.get(v) ?? v),
      parent: v === "base" ? null : "base",
      max_model_len: engine.maxContext,
    }));
    return { object: "list", data };
  };

  const chat = async (req: IncomingMessage, res: ServerResponse) => {
    const p = parseChatParams(await readBody(req), maxTokensLimit);
    knownModel(p.model);
    const promptIds = requestInput(() => {
      const text = promptText(engine, p);
      const most = engine.maxContext * MAX_CHARS_PER_TOKEN;
      if (text.length > most) throw new ApiError(400, `the prompt renders to ${text.length} characters, more than the context of ${engine.maxContext} tokens can hold (at most ${MAX_CHARS_PER_TOKEN} characters a token)`);
      return engine.encodePrompt(text);
    });
    if (promptIds.length + p.maxTokens > engine.maxContext) {
      throw new ApiError(400, `the prompt (${promptIds.length} tokens) plus max_tokens (${p.maxTokens}) exceeds the context of ${engine.maxContext} tokens`);
    }
    stats.requests++;
    const id = `chatcmpl-${(++counter).toString(36)}${randomInt(1e9).toString(36)}`;
    const out = await run(p.model, { promptIds, sampling: p.sampling, logprobs: p.logprobs, topLogprobs: p.topLogprobs, tokenTexts: p.stream, promptLogprobs: p.promptLogprobs }, res);
    const stopped = applyStop(out.text, p.stop);
    const finishReason = stopped.stopped ? "stop" : out.finishReason;
    const token = (t: { id: number; text: string }) => (p.tokenIds ? `token_id:${t.id}` : t.text);
    const entry = (t: { id: number; text: string; logprob: number }) => ({ token: token(t), logprob: t.logprob, bytes: [...Buffer.from(t.text, "utf8")] });
    const lp = p.logprobs ? { content: (out.logprobs ?? []).map((t) => ({ ...entry(t), top_logprobs: t.top.slice(0, p.topLogprobs).map(entry) })) } : null;
    const usage = { prompt_tokens: promptIds.length, completion_tokens: out.ids.length, total_tokens: promptIds.length + out.ids.length };
    if (!p.stream) {
      return send(res, 200, {
        id,
        object: "chat.completion",
        created: Math.floor(Date.now() / 1000),
        model: p.model,
        choices: [{ index: 0, message: { role: "assistant", content: stopped.text }, logprobs: lp, finish_reason: finishReason }],
        usage,
        ...(p.promptLogprobs !== undefined ? { prompt_logprobs: promptLogprobsJson(out.promptLogprobs ?? [], p.promptLogprobs, p.tokenIds) } : {}),
      });
    }
    // SSE: generation runs as a batch, so the chunks follow the finished text token by token
    if (res.destroyed) return;
    res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
    const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) =>
      res.write(`data: ${JSON.stringify({ id, object: "chat.completion.chunk", created: Math.floor(Date.now() / 1000), model: p.model, choices: [{ index: 0, delta, finish_reason: finish, ...extra }] })}\n\n`);
    chunk({ role: "assistant", content: "" }, null);
    let emitted = "";
    const texts = out.tokenTexts ?? [];
    for (let i = 0; i < texts.length && emitted.length < stopped.text.length; i++) {
      const upto = texts[i]!;
      const next = stopped.text.slice(emitted.length, Math.min(stopped.text.length, emitted.length + Math.max(1, upto.length)));
      emitted += next;
      chunk({ content: next }, null, lp ? { logprobs: { content: [lp.content[i]] } } : {});
    }
    if (emitted.length < stopped.text.length) chunk({ content: stopped.text.slice(emitted.length) }, null);
    chunk({}, finishReason);
    res.write("data: [DONE]\n\n");
    res.end();
  };

  /** queue one generation; a failure of the model on a valid request is a 500 */
  const run = (model: string, item: EngineItem, res: ServerResponse): Promise<EngineOutput> =>
    enqueue(model, item, res).catch((err) => {
      if (err instanceof ApiError) throw err;
      // the request was fine; the model failed on it (non-finite logits from broken weights)
      log(`model failure on ${model}: ${(err as Error)?.message ?? err}`);
      throw new ApiError(500, `the model failed: ${clientMessage(err)}`, "InternalServerError");
    });

  const knownModel = (model: string) => {
    if (!engine.variants().includes(model)) throw new ApiError(404, `The model \`${model}\` does not exist.`, "NotFoundError");
  };

  /** /v1/completions: a prompt as text or token ids, with vLLM's logprob options (legacy logprobs format). */
  const completion = async (req: IncomingMessage, res: ServerResponse) => {
    const p = parseCompletionParams(await readBody(req), maxTokensLimit, engine.vocabSize);
    knownModel(p.model);
    const promptIds = requestInput(() => {
      if (Array.isArray(p.prompt)) return p.prompt;
      const most = engine.maxContext * MAX_CHARS_PER_TOKEN;
      if (p.prompt.length > most) throw new ApiError(400, `the prompt has ${p.prompt.length} characters, more than the context of ${engine.maxContext} tokens can hold`);
      if (!engine.encodeText) throw new ApiError(400, "this engine takes prompts as token ids only");
      return engine.encodeText(p.prompt);
    });
    if (promptIds.length === 0) throw new ApiError(400, "the prompt encodes to no tokens");
    if (promptIds.length + p.maxTokens > engine.maxContext) {
      throw new ApiError(400, `the prompt (${promptIds.length} tokens) plus max_tokens (${p.maxTokens}) exceeds the context of ${engine.maxContext} tokens`);
    }
    stats.requests++;
    const id = `cmpl-${(++counter).toString(36)}${randomInt(1e9).toString(36)}`;
    // echo with logprobs reports the prompt's tokens too, from the same prompt logprobs
    const echoLogprobs = p.echo && p.logprobs !== undefined;
    const wantPrompt = p.promptLogprobs !== undefined || echoLogprobs ? Math.max(p.promptLogprobs ?? 0, echoLogprobs ? p.logprobs! : 0) : undefined;
    const out = await run(p.model, { promptIds, sampling: p.sampling, logprobs: p.logprobs !== undefined, topLogprobs: p.logprobs ?? 0, promptLogprobs: wantPrompt }, res);
    const stopped = applyStop(out.text, p.stop);
    const finishReason = stopped.stopped ? "stop" : out.finishReason;
    const token = (t: { id: number; text: string }) => (p.tokenIds ? `token_id:${t.id}` : t.text);
    const echoed = p.echo ? (typeof p.prompt === "string" ? p.prompt : (engine.decode?.(promptIds, false) ?? "")) : "";
    let logprobs: { tokens: string[]; token_logprobs: (number | null)[]; top_logprobs: (Record<string, number> | null)[]; text_offset: number[] } | null = null;
    if (p.logprobs !== undefined) {
      const n = p.logprobs;
      logprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
      let offset = 0;
      const add = (t: { id: number; text: string }, lp: number | null, top: Record<string, number> | null) => {
        logprobs!.tokens.push(token(t));
        logprobs!.token_logprobs.push(lp);
        logprobs!.top_logprobs.push(top);
        logprobs!.text_offset.push(offset);
        offset += t.text.length;
      };
      // the chosen token and the n most likely, as vLLM does (n = 0: the chosen one alone)
      const dict = (chosen: { id: number; text: string; logprob: number }, top: readonly { id: number; text: string; logprob: number }[]) => {
        const d: Record<string, number> = { [token(chosen)]: chosen.logprob };
        for (const a of top.slice(0, n)) if (!(token(a) in d)) d[token(a)] = a.logprob;
        return d;
      };
      if (echoLogprobs) {
        (out.promptLogprobs ?? []).forEach((pl, j) => {
          if (pl) add(pl, pl.logprob, dict(pl, pl.top));
          else add({ id: promptIds[j]!, text: engine.decode?.([promptIds[j]!], false) ?? "" }, null, null);
        });
      }
      for (const t of out.logprobs ?? []) add(t, t.logprob, dict(t, t.top));
    }
    return send(res, 200, {
      id,
      object: "text_completion",
      created: Math.floor(Date.now() / 1000),
      model: p.model,
      choices: [
        {
          index: 0,
          text: echoed + stopped.text,
          logprobs,
          finish_reason: finishReason,
          stop_reason: null,
          ...(p.promptLogprobs !== undefined ? { prompt_logprobs: promptLogprobsJson(out.promptLogprobs ?? [], p.promptLogprobs, p.tokenIds) } : {}),
        },
      ],
      usage: { prompt_tokens: promptIds.length, completion_tokens: out.ids.length, total_tokens: promptIds.length + out.ids.length },
    });
  };

  /** vLLM's /tokenize: a conversation (rendered as chat completions render it) or a prompt → token ids. */
  const tokenize = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req);
    if (!isObject(body)) throw new ApiError(400, "the body must be a JSON object");
    if (typeof body.model === "string") knownModel(body.model);
    const tokens = requestInput(() => {
      if (body.messages !== undefined) {
        const messages = parseMessages(body);
        const continueFinal = bool(body.continue_final_message, "continue_final_message");
        const addGenerationPrompt = body.add_generation_prompt === undefined ? !continueFinal : bool(body.add_generation_prompt, "add_generation_prompt");
        if (continueFinal && addGenerationPrompt) throw new ApiError(400, "continue_final_message and add_generation_prompt cannot both be true");
        const text = promptText(engine, { messages, continueFinal, addGenerationPrompt });
        if (text.length > engine.maxContext * MAX_CHARS_PER_TOKEN) throw new ApiError(400, `the prompt renders to ${text.length} characters, more than the context can hold`);
        return engine.encodePrompt(text);
      }
      if (typeof body.prompt !== "string") throw new ApiError(400, "give messages or a prompt");
      if (body.prompt.length > engine.maxContext * MAX_CHARS_PER_TOKEN) throw new ApiError(400, `the prompt has ${body.prompt.length} characters, more than the context can hold`);
      if (!engine.encodeText) throw new ApiError(404, "this engine cannot tokenize plain prompts", "NotFoundError");
      return engine.encodeText(body.prompt);
    });
    return send(res, 200, { count: tokens.length, max_model_len: engine.maxContext, tokens, token_strs: null });
  };

  /** vLLM's /detokenize: token ids → text, special tokens included. */
  const detokenize = async (req: IncomingMessage, res: ServerResponse) => {
    const body = await readBody(req);
    if (!isObject(body)) throw new ApiError(400, "the body must be a JSON object");
    if (typeof body.model === "string") knownModel(body.model);
    if (!engine.decode) throw new ApiError(404, "this engine cannot detokenize", "NotFoundError");
    const top = engine.vocabSize ?? Number.MAX_SAFE_INTEGER;
    const tokens = body.tokens;
    if (!Array.isArray(tokens) || tokens.length > engine.maxContext || !tokens.every((t) => Number.isInteger(t) && t >= 0 && t < top)) {
      throw new ApiError(400, `tokens must be a list of at most ${engine.maxContext} token ids in [0, ${top})`);
    }
    // special tokens written out, as vLLM (transformers' decode) does
    return send(res, 200, { prompt: engine.decode(tokens as number[], false) });
  };

  const adapterEndpoint = async (req: IncomingMessage, res: ServerResponse, load: boolean) => {
    if (!opts.runtimeAdapters) throw new ApiError(404, "runtime adapter loading is off (start serve with --runtime-adapters)", "NotFoundError");
    const body = await readBody(req);
    if (!isObject(body) || typeof body.lora_name !== "string" || !/^[\w.\-]{1,128}$/.test(body.lora_name)) throw new ApiError(400, "lora_name must be 1-128 characters of [A-Za-z0-9_.-]");
    const name = body.lora_name;
    if (name === "base") throw new ApiError(400, "'base' is the base model");
    if (load) {
      if (!engine.loadAdapter) throw new ApiError(404, "this engine cannot load adapters", "NotFoundError");
      if (typeof body.lora_path !== "string" || body.lora_path.length === 0 || body.lora_path.length > 4096) throw new ApiError(400, "lora_path must be a path");
      if (engine.variants().includes(name)) throw new ApiError(400, `The lora adapter '${name}' has already been loaded.`);
      const rank = body.rank === undefined ? undefined : num(body.rank, "rank", 1, MAX_RANK, 1, true);
      const path = body.lora_path;
      await runAdmin(() => engine.loadAdapter!(name, path, rank)).catch((err) => {
        throw new ApiError(400, `loading '${name}' failed: ${(err as Error).message.split("\n")[0]}`);
      });
      adapterRoots.set(name, path);
      log(`loaded adapter ${name} from ${path}${rank ? ` (rank ${rank})` : ""}`);
      return send(res, 200, `Success: LoRA adapter '${name}' added successfully.`);
    }
    if (!engine.unloadAdapter) throw new ApiError(404, "this engine cannot unload adapters", "NotFoundError");
    if (!engine.variants().includes(name)) throw new ApiError(404, `The lora adapter '${name}' cannot be found.`, "NotFoundError");
    await runAdmin(() => engine.unloadAdapter!(name)).catch((err) => {
      throw new ApiError(400, `unloading '${name}' failed: ${(err as Error).message.split("\n")[0]}`);
    });
    adapterRoots.delete(name);
    log(`unloaded adapter ${name}`);
    return send(res, 200, `Success: LoRA adapter '${name}' removed successfully.`);
  };

  const authorised = (req: IncomingMessage) => {
    if (!opts.apiKey) return true;
    const h = req.headers.authorization ?? "";
    return h === `Bearer ${opts.apiKey}`;
  };

  /** queue depth for /health and stats(): waiting to start, decoding, and both together */
  const load = () => {
    const waiting = queue.filter((p) => !p.cancelled).length;
    const running = active.reduce((n, a) => n + a.job.live, 0);
    return { queued: waiting + running, waiting, running, jobs: active.length };
  };

  let inFlight = 0;
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0]!;
    inFlight++;
    res.once("close", () => {
      if (--inFlight === 0 && closing) for (const w of idleWaiters.splice(0)) w();
    });
    const handle = async () => {
      if (path === "/health" && (req.method === "GET" || req.method === "HEAD")) return send(res, closing ? 503 : 200, { status: closing ? "shutting down" : "ok", ...load() });
      // /tokenize and /detokenize sit at the root, as in vLLM, and need the key like /v1/*
      if ((path.startsWith("/v1/") || path === "/tokenize" || path === "/detokenize") && !authorised(req)) throw new ApiError(401, "invalid or missing API key", "AuthenticationError");
      if (closing) throw new ApiError(503, "the server is shutting down", "ServiceUnavailableError");
      if (path === "/v1/models" && req.method === "GET") return send(res, 200, modelList());
      if (path === "/v1/chat/completions" && req.method === "POST") return await chat(req, res);
      if (path === "/v1/completions" && req.method === "POST") return await completion(req, res);
      if (path === "/tokenize" && req.method === "POST") return await tokenize(req, res);
      if (path === "/detokenize" && req.method === "POST") return await detokenize(req, res);
      if (path === "/v1/load_lora_adapter" && req.method === "POST") return await adapterEndpoint(req, res, true);
      if (path === "/v1/unload_lora_adapter" && req.method === "POST") return await adapterEndpoint(req, res, false);
      throw new ApiError(404, `no route ${req.method} ${path}`, "NotFoundError");
    };
    handle().catch((err) => {
      if (err instanceof ApiError) return sendError(res, err);
      log(`internal error on ${path}: ${(err as Error)?.message ?? err}`);
      sendError(res, new ApiError(500, `internal error: ${clientMessage(err)}`, "InternalServerError"));
    });
  });
  // long queues are normal under load: keep-alive sockets may idle while a batch runs
  server.keepAliveTimeout = 30_000;
  const sockets = new Set<Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host.includes(":") ? `[${host}]` : host;

  return {
    url: `http://${shownHost}:${port}`,
    port,
    server,
    stats: () => ({ ...stats, ...load() }),
    async close(graceMs = SHUTDOWN_GRACE_MS) {
      if (closing) return;
      closing = true;
      const closed = new Promise<void>((r) => server.close(() => r()));
      // every request already accepted is answered: wait for the last response to finish
      const idle = inFlight > 0 ? new Promise<void>((r) => idleWaiters.push(r)) : Promise.resolve();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([idle, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      // past the grace period: what is still queued gets a clear 503 rather than a reset
      const gone = new ApiError(503, "the server shut down", "ServiceUnavailableError");
      for (const p of queue.splice(0)) settle(p, () => p.reject(gone));
      for (const a of active.splice(0)) for (const p of a.batch) settle(p, () => p.reject(gone));
      await new Promise((r) => setTimeout(r, 50));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}
