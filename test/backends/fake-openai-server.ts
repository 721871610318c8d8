/**
 * A scripted OpenAI-compatible server on 127.0.0.1 (random port) that answers like vLLM:
 * `/v1/models` with LoRA entries (parent/root), chat completions with logprobs and
 * continue_final_message, runtime adapter loading, and injected faults (HTTP errors with
 * Retry-After, hangs, dropped connections, malformed bodies). It records every request.
 */
import { existsSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type Fault =
  | { status: number; retryAfter?: string; body?: string }
  | { hang: true }
  | { disconnect: true }
  | { raw: string; contentType?: string };

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage["headers"];
  body: any;
  at: number;
}

/** The toy vocabulary of the logprob model; "<|eot_id|>" ends the turn. */
export const VOCAB = ["alpha", " beta", " gamma", " delta", "<|eot_id|>"] as const;

/** A deterministic next-token distribution per (model, context) — stands in for a real LM. */
export function toyLogprobs(model: string, context: string): number[] {
  let h = 2166136261;
  for (const ch of `${model}\u0000${context}`) h = Math.imul(h ^ ch.charCodeAt(0), 16777619) >>> 0;
  const logits = VOCAB.map((_, i) => {
    h = Math.imul(h ^ (i + 1), 2654435761) >>> 0;
    return ((h % 1000) / 1000) * 4;
  });
  // after a few tokens the end-of-turn token becomes likely, so decoding terminates
  const words = context.split(/\s+/).filter(Boolean).length;
  logits[VOCAB.length - 1]! += words >= 3 ? 3 : -2;
  const m = Math.max(...logits);
  const z = Math.log(logits.reduce((s, l) => s + Math.exp(l - m), 0)) + m;
  return logits.map((l) => l - z);
}

export interface FakeServerOptions {
  models?: { id: string; parent?: string; root?: string }[];
  /** supports /v1/load_lora_adapter (else 404, like vLLM without the env flag) */
  runtimeLoading?: boolean;
  /** reject logprobs/continue_final_message with 400 (like a strict OpenAI-compatible server) */
  noLogprobs?: boolean;
  /** delay before each chat completion answer */
  delayMs?: number;
  /** leave runtime-loaded adapters out of /v1/models (a bug of some vLLM versions) */
  hideLoaded?: boolean;
  /** answer every model name with the base model (llama.cpp's server ignores the name) */
  ignoreModelNames?: boolean;
}

/** A runtime adapter load or unload, with whether its folder existed on disk at that moment. */
export interface AdapterEvent {
  op: "load" | "unload";
  name: string;
  path: string | undefined;
  existed: boolean;
}

export interface FakeServer {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /** faults consumed in order by the next chat completion (or by path when given) */
  faults: { path?: string; fault: Fault }[];
  models: { id: string; parent?: string; root?: string }[];
  maxInFlight: number;
  /** every adapter load and unload, in order */
  adapterEvents: AdapterEvent[];
  close(): Promise<void>;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** The reply of a model to a conversation: echoes the model and the last user turn, word-capped. */
export function toyReply(model: string, lastUser: string, maxTokens: number, temperature: number, seed: number): { text: string; tokens: number; finish: "stop" | "length" } {
  const words = [`[${model}]`, ...lastUser.split(/\s+/).filter(Boolean)];
  if (temperature > 0) words.push(`t=${temperature}`, `seed=${seed}`);
  const cut = words.slice(0, maxTokens);
  return { text: cut.join(" "), tokens: cut.length, finish: cut.length < words.length ? "length" : "stop" };
}

export async function startFakeServer(opts: FakeServerOptions = {}): Promise<FakeServer> {
  const state = {
    requests: [] as RecordedRequest[],
    faults: [] as { path?: string; fault: Fault }[],
    models: opts.models ?? [{ id: "base" }, { id: "full", parent: "base", root: "/adapters/full" }, { id: "rank1", parent: "base", root: "/adapters/rank1" }],
    maxInFlight: 0,
    hidden: new Set<string>(),
    adapterEvents: [] as AdapterEvent[],
  };
  let inFlight = 0;
  const sockets = new Set<import("node:net").Socket>();

  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? "").split("?")[0]!;
    const raw = await readBody(req);
    let body: any = undefined;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      return json(res, 400, { error: { message: "bad json" } });
    }
    state.requests.push({ method: req.method ?? "", path, headers: req.headers, body, at: Date.now() });

    const fi = state.faults.findIndex((f) => (f.path ? f.path === path : path === "/v1/chat/completions"));
    if (fi >= 0) {
      const { fault } = state.faults.splice(fi, 1)[0]!;
      if ("hang" in fault) return; // never answer
      if ("disconnect" in fault) {
        // headers promise a body that never comes, then the socket dies
        res.writeHead(200, { "content-type": "application/json", "content-length": "1000" });
        res.write('{"choices": [');
        setTimeout(() => req.socket.destroy(), 10);
        return;
      }
      if ("raw" in fault) {
        res.writeHead(200, { "content-type": fault.contentType ?? "application/json" });
        return res.end(fault.raw);
      }
      return json(res, fault.status, fault.body ?? { error: { message: `injected ${fault.status}` } }, fault.retryAfter ? { "retry-after": fault.retryAfter } : {});
    }

    if (req.method === "GET" && path === "/v1/models") {
      return json(res, 200, { object: "list", data: state.models.filter((m) => !state.hidden.has(m.id)).map((m) => ({ object: "model", owned_by: "vllm", parent: null, root: m.id, ...m })) });
    }
    if (req.method === "POST" && path === "/v1/load_lora_adapter") {
      if (!opts.runtimeLoading) return json(res, 404, { detail: "Not Found" });
      if (state.models.some((m) => m.id === body.lora_name)) return json(res, 400, { error: { message: "already loaded" } });
      // vLLM reads the folder now and again whenever the adapter falls out of its cache
      state.adapterEvents.push({ op: "load", name: body.lora_name, path: body.lora_path, existed: typeof body.lora_path === "string" && existsSync(body.lora_path) });
      state.models.push({ id: body.lora_name, parent: "base", root: body.lora_path });
      if (opts.hideLoaded) state.hidden.add(body.lora_name);
      res.writeHead(200, { "content-type": "text/plain" });
      return res.end(`Success: LoRA adapter '${body.lora_name}' added successfully.`);
    }
    if (req.method === "POST" && path === "/v1/unload_lora_adapter") {
      if (!opts.runtimeLoading) return json(res, 404, { detail: "Not Found" });
      const root = state.models.find((m) => m.id === body.lora_name)?.root;
      state.adapterEvents.push({ op: "unload", name: body.lora_name, path: root, existed: root !== undefined && existsSync(root) });
      state.models = state.models.filter((m) => m.id !== body.lora_name);
      res.writeHead(200, { "content-type": "text/plain" });
      return res.end("Success");
    }
    if (req.method === "POST" && path === "/v1/chat/completions") {
      if (!state.models.some((m) => m.id === body.model)) {
        return json(res, 404, { error: { message: `The model \`${body.model}\` does not exist.`, type: "NotFoundError", code: 404 } });
      }
      if (opts.noLogprobs && (body.logprobs || body.continue_final_message)) {
        return json(res, 400, { error: { message: "logprobs are not supported" } });
      }
      inFlight++;
      state.maxInFlight = Math.max(state.maxInFlight, inFlight);
      try {
        if (opts.delayMs) await new Promise((r) => setTimeout(r, opts.delayMs));
        const msgs = body.messages as { role: string; content: string }[];
        if (body.logprobs) {
          const last = msgs[msgs.length - 1]!;
          const prefix = body.continue_final_message && last.role === "assistant" ? last.content : "";
          const userTurn = [...msgs].reverse().find((m) => m.role === "user")!.content;
          const lp = toyLogprobs(opts.ignoreModelNames ? "base" : body.model, `${userTurn}|${prefix}`);
          const order = lp.map((l, i) => [l, i] as const).sort((a, b) => b[0] - a[0]);
          const k = Math.min(body.top_logprobs ?? 0, order.length);
          const top = order.slice(0, k).map(([l, i]) => ({ token: VOCAB[i]!, logprob: l, bytes: null }));
          const g = VOCAB[order[0]![1]]!;
          const eot = g === "<|eot_id|>";
          return json(res, 200, {
            id: "chatcmpl-1",
            object: "chat.completion",
            model: body.model,
            choices: [
              {
                index: 0,
                message: { role: "assistant", content: eot ? "" : g },
                finish_reason: eot ? "stop" : "length",
                logprobs: { content: [{ token: g, logprob: order[0]![0], bytes: null, top_logprobs: top }] },
              },
            ],
            usage: { prompt_tokens: 10, completion_tokens: 1, total_tokens: 11 },
          });
        }
        const lastUser = [...msgs].reverse().find((m) => m.role === "user")?.content ?? "";
        const r = toyReply(opts.ignoreModelNames ? "base" : body.model, lastUser, body.max_tokens ?? 16, body.temperature ?? 1, body.seed ?? 0);
        return json(res, 200, {
          id: "chatcmpl-1",
          object: "chat.completion",
          model: body.model,
          choices: [{ index: 0, message: { role: "assistant", content: r.text }, finish_reason: r.finish, logprobs: null }],
          usage: { prompt_tokens: 10, completion_tokens: r.tokens, total_tokens: 10 + r.tokens },
        });
      } finally {
        inFlight--;
      }
    }
    json(res, 404, { detail: "Not Found" });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get requests() {
      return state.requests;
    },
    get faults() {
      return state.faults;
    },
    get models() {
      return state.models;
    },
    set models(m) {
      state.models = m;
    },
    get maxInFlight() {
      return state.maxInFlight;
    },
    get adapterEvents() {
      return state.adapterEvents;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  } as FakeServer;
}
