/**
 * HTTP helpers for talking to inference servers: per-request timeouts, bounded retries with
 * jitter (honouring Retry-After), a concurrency limit, an overall deadline, and size-capped
 * JSON bodies. Server responses are untrusted, so nothing here trusts a length or a shape.
 */
import { BackendError, oneLine } from "../errors";

/** Statuses worth retrying: rate limiting and transient server faults. */
export const RETRYABLE_STATUSES: ReadonlySet<number> = new Set([408, 425, 429, 500, 502, 503, 504]);

/** First backoff step; doubles each attempt (full jitter: a uniform wait in [0, step]). */
export const BACKOFF_BASE_MS = 250;
/** No single backoff waits longer than this, whatever the attempt number. */
export const BACKOFF_CAP_MS = 8_000;
/** A Retry-After above this is treated as "not soon": we give up rather than stall a CI job. */
export const RETRY_AFTER_CAP_MS = 60_000;
/** Largest response body we read: a chat completion with logprobs is far below this. */
export const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;
/** Error bodies are quoted in messages; keep them short. */
const ERROR_BODY_QUOTE_CHARS = 300;

/** A counting semaphore: at most `limit` holders at once, FIFO for waiters. */
export class Semaphore {
  private active = 0;
  private readonly waiters: (() => void)[] = [];
  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`concurrency must be a positive integer, got ${limit}`);
  }
  async acquire(): Promise<() => void> {
    if (this.active < this.limit) this.active++;
    else await new Promise<void>((resolve) => this.waiters.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      // hand the slot straight to the next waiter so `active` never over-counts
      if (next) next();
      else this.active--;
    };
  }
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquire();
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

/**
 * Parse a Retry-After header (RFC 9110: delay-seconds or an HTTP-date) into milliseconds.
 * Returns undefined for a missing or malformed value.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value == null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  if (Number.isNaN(t)) return undefined;
  return Math.max(0, t - now);
}

/** Full-jitter exponential backoff for attempt n (0-based). */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.floor(random() * step);
}

/** Remove credentials and query strings from a URL before it goes into a message or log. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = "";
    u.password = "";
    u.search = "";
    return u.toString();
  } catch {
    return "<invalid url>";
  }
}

/** An error from one HTTP exchange, with what the retry loop needs to know. */
export class HttpError extends BackendError {
  constructor(
    message: string,
    readonly status: number | undefined,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "HttpError";
  }
}

export interface RequestPolicy {
  fetch: typeof fetch;
  /** per-attempt timeout */
  timeoutMs: number;
  /** retries after the first attempt */
  maxRetries: number;
  /** absolute time (ms since epoch) after which nothing new starts and waits are cut */
  deadline?: number;
  /** aborts everything (backend closed, sibling request failed) */
  signal?: AbortSignal;
  random?: () => number;
  /** called before each retry wait (for logs); never given headers */
  onRetry?: (info: { attempt: number; waitMs: number; reason: string }) => void;
}

export interface JsonRequest {
  method: "GET" | "POST";
  url: string;
  headers?: Record<string, string>;
  body?: unknown;
  /** response size cap; default MAX_RESPONSE_BYTES */
  maxBytes?: number;
  /** "text": return the body as a string (vLLM answers adapter loading in plain text) */
  responseType?: "json" | "text";
}

/** Read a response body as text with a byte cap, so a hostile server cannot exhaust memory. */
export async function readCapped(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw new HttpError(`response body of ${declared} bytes exceeds the ${maxBytes}-byte limit`, res.status, false);
  }
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new HttpError(`response body exceeds the ${maxBytes}-byte limit`, res.status, false);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Pull a short, one-line server message out of an error body (OpenAI or FastAPI shape). */
export function serverMessage(text: string): string {
  let msg = text;
  try {
    const j = JSON.parse(text) as unknown;
    if (j && typeof j === "object") {
      const o = j as Record<string, unknown>;
      const e = o.error;
      if (e && typeof e === "object" && typeof (e as Record<string, unknown>).message === "string") msg = (e as { message: string }).message;
      else if (typeof e === "string") msg = e;
      else if (typeof o.message === "string") msg = o.message;
      else if (typeof o.detail === "string") msg = o.detail;
      // FastAPI servers (vLLM, TGI's router) answer a 422 with detail: [{loc, msg, type}]
      else if (Array.isArray(o.detail) && o.detail.some((d) => typeof (d as { msg?: unknown } | null)?.msg === "string")) {
        msg = o.detail.flatMap((d) => (typeof (d as { msg?: unknown } | null)?.msg === "string" ? [(d as { msg: string }).msg] : [])).join("; ");
      }
    }
  } catch {
    // not JSON: quote the text itself
  }
  // control characters could rewrite a terminal line; the message is untrusted
  const clean = oneLine(msg).replace(/\s+/g, " ").trim();
  return clean.length > ERROR_BODY_QUOTE_CHARS ? `${clean.slice(0, ERROR_BODY_QUOTE_CHARS)}…` : clean;
}

function isConnectionError(err: unknown): boolean {
  // undici reports refused/reset sockets as TypeError("fetch failed") with the socket error as cause
  if (err instanceof TypeError && err.message === "fetch failed") return true;
  return err instanceof Error && /ECONN|EPIPE|ENOTFOUND|EAI_AGAIN|socket|UND_ERR/i.test(`${err.message} ${String((err as { code?: string }).code)}`);
}

/** The innermost error's code and message, with the request URL replaced by its redacted form. */
function describeCause(err: unknown, url: string): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  const code = (cause as { code?: string } | undefined)?.code;
  const msg = (cause instanceof Error ? cause.message : String(cause)).split(url).join(redactUrl(url));
  return code ? `${code}: ${msg}` : msg;
}

/** One attempt: fetch with a timeout, parse JSON, classify failures. */
async function attempt(req: JsonRequest, policy: RequestPolicy, timeoutMs: number): Promise<unknown> {
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new Error("timeout")), timeoutMs);
  const signal = policy.signal ? AbortSignal.any([policy.signal, timeout.signal]) : timeout.signal;
  const where = `${req.method} ${redactUrl(req.url)}`;
  try {
    let res: Response;
    try {
      res = await policy.fetch(req.url, {
        method: req.method,
        headers: { accept: "application/json", ...(req.body !== undefined ? { "content-type": "application/json" } : {}), ...req.headers },
        body: req.body !== undefined ? JSON.stringify(req.body) : undefined,
        signal,
      });
    } catch (err) {
      if (policy.signal?.aborted) throw new HttpError(`${where}: cancelled`, undefined, false, undefined, { cause: err });
      if (timeout.signal.aborted) throw new HttpError(`${where}: no response within ${timeoutMs} ms`, undefined, true);
      if (isConnectionError(err)) throw new HttpError(`${where}: connection failed (${describeCause(err, req.url)})`, undefined, true, undefined, { cause: err });
      throw new HttpError(`${where}: ${describeCause(err, req.url)}`, undefined, false, undefined, { cause: err });
    }
    let text: string;
    try {
      text = await readCapped(res, req.maxBytes ?? MAX_RESPONSE_BYTES);
    } catch (err) {
      if (err instanceof HttpError) throw new HttpError(`${where}: ${err.message}`, err.status, err.retryable, err.retryAfterMs);
      if (policy.signal?.aborted) throw new HttpError(`${where}: cancelled`, res.status, false);
      if (timeout.signal.aborted) throw new HttpError(`${where}: response body not complete within ${timeoutMs} ms`, res.status, true);
      // the server closed the socket mid-body
      throw new HttpError(`${where}: connection lost while reading the response (${describeCause(err, req.url)})`, res.status, true, undefined, { cause: err });
    }
    if (!res.ok) {
      const retryAfter = parseRetryAfter(res.headers.get("retry-after"));
      throw new HttpError(`${where}: HTTP ${res.status}: ${serverMessage(text) || res.statusText}`, res.status, RETRYABLE_STATUSES.has(res.status), retryAfter);
    }
    if (req.responseType === "text") return text;
    try {
      return text === "" ? null : (JSON.parse(text) as unknown);
    } catch {
      throw new HttpError(`${where}: the response is not JSON (${serverMessage(text).slice(0, 80)})`, res.status, false);
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A JSON request with timeout, bounded retries (full-jitter backoff, Retry-After honoured)
 * and the overall deadline. Throws HttpError (a BackendError) once retries are spent.
 */
export async function requestJson(req: JsonRequest, policy: RequestPolicy): Promise<unknown> {
  const random = policy.random ?? Math.random;
  for (let n = 0; ; n++) {
    const remaining = policy.deadline !== undefined ? policy.deadline - Date.now() : Infinity;
    if (remaining <= 0) throw new HttpError(`${req.method} ${redactUrl(req.url)}: the overall deadline passed`, undefined, false);
    try {
      return await attempt(req, policy, Math.max(1, Math.min(policy.timeoutMs, remaining)));
    } catch (err) {
      const e = err instanceof HttpError ? err : new HttpError(String(err), undefined, false, undefined, { cause: err });
      if (!e.retryable || n >= policy.maxRetries) {
        if (e.retryable && n > 0) throw new HttpError(`${e.message} (gave up after ${n + 1} attempts)`, e.status, false, undefined, { cause: e });
        throw e;
      }
      if (e.retryAfterMs !== undefined && e.retryAfterMs > RETRY_AFTER_CAP_MS) {
        throw new HttpError(`${e.message} (the server asks to retry after ${Math.round(e.retryAfterMs / 1000)} s; giving up)`, e.status, false);
      }
      // Retry-After is a floor; jitter on top keeps many clients from retrying in lockstep
      const wait = Math.max(e.retryAfterMs ?? 0, backoffMs(n, random));
      const left = policy.deadline !== undefined ? policy.deadline - Date.now() : Infinity;
      if (wait >= left) throw new HttpError(`${e.message} (no time left before the overall deadline to retry)`, e.status, false);
      policy.onRetry?.({ attempt: n + 1, waitMs: wait, reason: e.message });
      try {
        await sleep(wait, policy.signal);
      } catch {
        throw new HttpError(`${e.message} (cancelled)`, e.status, false);
      }
    }
  }
}
