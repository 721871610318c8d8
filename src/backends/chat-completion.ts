/**
 * One chat completion from an OpenAI-compatible endpoint, as a plain function: messages in,
 * the assistant's text out. The LLM investigator (judge/investigator.ts) asks its judge model
 * through it; the scan builds it here, so judge/ never sees HTTP.
 *
 * Everything goes through http.ts requestJson: a per-attempt timeout, bounded retries, a cap
 * on the response size (the endpoint is named by a config that may come from a pull request,
 * so its server is untrusted), and URLs redacted in every message. The API key goes into one
 * header and nowhere else.
 */
import { BackendError } from "../errors";
import type { ChatCompletionFn } from "../chat/types";
import { HttpError, redactUrl, requestJson, type RequestPolicy } from "./http";
import { namedOrigin, parseHttpUrl } from "../validate";

/** A reply of a few thousand tokens is far below this; more is not an answer but a flood. */
export const MAX_COMPLETION_BYTES = 1_000_000;

export interface ChatCompletionOptions {
  /** the API root as configured (e.g. `https://api.example.com/v1`); `/chat/completions` is appended */
  url: string;
  model: string;
  /** sent as `Authorization: Bearer …`; read from the environment by the caller */
  apiKey?: string;
  /** per-attempt timeout, reading the body included */
  timeoutMs: number;
  /** retries after the first attempt (timeouts, 429, 5xx); default 0: one attempt */
  maxRetries?: number;
  /** response size cap; default MAX_COMPLETION_BYTES */
  maxBytes?: number;
  /** the key of the URL in the config, quoted in input errors; default "url" */
  setting?: string;
  fetch?: typeof globalThis.fetch;
  onRetry?: RequestPolicy["onRetry"];
  /** cancels the request in flight and any retry wait (an interrupted run) */
  signal?: AbortSignal;
}

/** The `chat/completions` endpoint under an API root, validated by the one URL rule (validate.ts parseHttpUrl). */
export function completionsEndpoint(url: string, setting = "url"): string {
  const u = parseHttpUrl(namedOrigin(setting), url, "", "an http(s) URL such as https://api.example.com/v1");
  // the path, not the string: a query some providers need (`?api-version=…`) stays a query
  u.pathname = `${u.pathname.replace(/\/+$/, "")}/chat/completions`;
  u.hash = "";
  return u.toString();
}

/** The assistant's text in a chat-completions body, or undefined when the shape is wrong. */
function contentOf(body: unknown): string | undefined {
  if (!body || typeof body !== "object") return undefined;
  const choices = (body as { choices?: unknown }).choices;
  if (!Array.isArray(choices) || choices.length === 0) return undefined;
  const message = (choices[0] as { message?: unknown } | null)?.message;
  const content = message && typeof message === "object" ? (message as { content?: unknown }).content : undefined;
  return typeof content === "string" ? content : undefined;
}

/**
 * A completion function for one model behind one endpoint; it throws BackendError (an HttpError
 * for transport and HTTP failures). The URL is checked here, so a bad one is an InputError when
 * the scan starts, not a failure after minutes of work.
 */
export function chatCompletion(opts: ChatCompletionOptions): ChatCompletionFn {
  const endpoint = completionsEndpoint(opts.url, opts.setting);
  const headers: Record<string, string> = opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {};
  const policy: RequestPolicy = {
    fetch: opts.fetch ?? globalThis.fetch,
    timeoutMs: opts.timeoutMs,
    maxRetries: opts.maxRetries ?? 0,
    onRetry: opts.onRetry,
    signal: opts.signal,
  };
  return async (messages, request) => {
    const body = await requestJson(
      {
        method: "POST",
        url: endpoint,
        headers,
        body: {
          model: opts.model,
          temperature: request.temperature ?? 0,
          max_tokens: request.maxTokens,
          messages: messages.map((m) => ({ role: m.role, content: m.content })),
        },
        maxBytes: opts.maxBytes ?? MAX_COMPLETION_BYTES,
      },
      policy,
    ).catch((e: unknown) => {
      // the server's message is quoted (http.ts serverMessage); one that echoes the key must not carry it on
      if (opts.apiKey && e instanceof HttpError && e.message.includes(opts.apiKey)) {
        throw new HttpError(e.message.split(opts.apiKey).join("[api key]"), e.status, e.retryable, e.retryAfterMs);
      }
      throw e;
    });
    const content = contentOf(body);
    if (content === undefined) throw new BackendError(`POST ${redactUrl(endpoint)}: the reply has no message content`);
    return content;
  };
}
