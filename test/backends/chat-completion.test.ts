/**
 * The completion function the investigator's judge model is reached through, against a real
 * HTTP server on 127.0.0.1: the request it sends, the size cap on what comes back (declared
 * and streamed), retries, and that neither the key nor URL secrets reach an error message.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chatCompletion, completionsEndpoint, MAX_COMPLETION_BYTES } from "../../src/backends/chat-completion";
import { HttpError } from "../../src/backends/http";
import { BackendError, InputError } from "../../src/errors";

const KEY = "sk-judge-SECRET-never-shown";

let server: Server;
let root = "";
let handle: (req: IncomingMessage, body: string, res: ServerResponse) => void;
const seen: { path?: string; auth?: string; body: Record<string, unknown> }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => {
      seen.push({ path: req.url, auth: req.headers.authorization, body: data ? JSON.parse(data) : {} });
      handle(req, data, res);
    });
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  root = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((ok) => server.close(() => ok())));

const reply = (content: unknown) => (_req: IncomingMessage, _body: string, res: ServerResponse) =>
  res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ choices: [{ message: { role: "assistant", content } }] }));

const messages = [
  { role: "system" as const, content: "You are a judge." },
  { role: "user" as const, content: "Say hi." },
];

/** The rejection of `p`, which must reject. */
async function rejectionOf(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return err as Error;
}

describe("chatCompletion", () => {
  it("posts the conversation to {url}/chat/completions with the key and returns the assistant's text", async () => {
    handle = reply("hi");
    const complete = chatCompletion({ url: `${root}/v1/`, model: "judge-model", apiKey: KEY, timeoutMs: 5_000 });
    expect(await complete(messages, { maxTokens: 123 })).toBe("hi");
    const last = seen[seen.length - 1]!;
    expect(last.path).toBe("/v1/chat/completions");
    expect(last.auth).toBe(`Bearer ${KEY}`);
    expect(last.body).toEqual({ model: "judge-model", temperature: 0, max_tokens: 123, messages });
  });

  it("refuses a streamed body over the size cap without reading it all", async () => {
    const cap = 64 * 1024;
    let written = 0;
    handle = (_req, _body, res) => {
      // no content-length: chunked, so only counting while reading can stop it
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"choices":[{"message":{"content":"');
      const chunk = "x".repeat(16 * 1024);
      const pump = () => {
        while (written < 8 * cap) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once("drain", pump);
        }
        res.end('"}}]}');
      };
      res.on("error", () => undefined);
      pump();
    };
    const complete = chatCompletion({ url: `${root}/v1`, model: "m", timeoutMs: 5_000, maxBytes: cap });
    const err = await rejectionOf(complete(messages, { maxTokens: 10 }));
    expect(err).toBeInstanceOf(HttpError);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(new RegExp(`exceeds the ${cap}-byte limit`));
  });

  it("refuses a declared content-length over the default cap before reading the body", async () => {
    const big = JSON.stringify({ choices: [{ message: { content: "y".repeat(MAX_COMPLETION_BYTES) } }] });
    handle = (_req, _body, res) => res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(big) }).end(big);
    const complete = chatCompletion({ url: `${root}/v1`, model: "m", timeoutMs: 5_000 });
    const err = await rejectionOf(complete(messages, { maxTokens: 10 }));
    expect(err).toBeInstanceOf(HttpError);
    expect(err.message).toMatch(new RegExp(`of ${Buffer.byteLength(big)} bytes exceeds the ${MAX_COMPLETION_BYTES}-byte limit`));
  });

  it("a reply without message content is a backend error", async () => {
    for (const body of [{}, { choices: [] }, { choices: [{ message: { content: 42 } }] }, { choices: [null] }]) {
      handle = (_req, _body, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      const complete = chatCompletion({ url: `${root}/v1`, model: "m", timeoutMs: 5_000 });
      const err = await rejectionOf(complete(messages, { maxTokens: 10 }));
      expect(err).toBeInstanceOf(BackendError);
      expect(err.message).toMatch(/no message content/);
    }
  });

  it("makes one attempt by default and retries a transient failure when asked", async () => {
    let calls = 0;
    handle = (req, body, res) => {
      calls++;
      if (calls === 1) res.writeHead(503, { "content-type": "application/json" }).end('{"error":{"message":"warming up"}}');
      else reply("ready")(req, body, res);
    };
    const once = chatCompletion({ url: `${root}/v1`, model: "m", timeoutMs: 5_000 });
    expect((await rejectionOf(once(messages, { maxTokens: 10 }))).message).toMatch(/HTTP 503: warming up/);
    expect(calls).toBe(1);
    calls = 0;
    const retries: number[] = [];
    const twice = chatCompletion({ url: `${root}/v1`, model: "m", timeoutMs: 5_000, maxRetries: 1, onRetry: (i) => retries.push(i.attempt) });
    expect(await twice(messages, { maxTokens: 10 })).toBe("ready");
    expect(calls).toBe(2);
    expect(retries).toEqual([1]);
  });

  it("quotes the server's own message on an HTTP error: one line, bounded, without the key", async () => {
    const cases: Array<[number, string, RegExp]> = [
      [400, JSON.stringify({ error: { message: "model 'judge' does not exist", type: "invalid_request_error" } }), /HTTP 400: model 'judge' does not exist$/],
      [400, JSON.stringify({ object: "error", message: "max_tokens is too large", code: 400 }), /HTTP 400: max_tokens is too large$/],
      [422, JSON.stringify({ detail: [{ loc: ["body", "messages"], msg: "field required", type: "missing" }] }), /HTTP 422: field required$/],
      [401, JSON.stringify({ error: { message: `Incorrect API key provided: ${KEY}` } }), /HTTP 401: Incorrect API key provided: \[api key\]$/],
      [400, `line one\u001b[2J\r\nline two ${"z".repeat(5000)}`, /HTTP 400: line one.*line two z+…$/],
    ];
    for (const [status, body, want] of cases) {
      handle = (_req, _body, res) => res.writeHead(status, { "content-type": "application/json" }).end(body);
      const complete = chatCompletion({ url: `${root}/v1`, model: "judge", apiKey: KEY, timeoutMs: 5_000 });
      const err = await rejectionOf(complete(messages, { maxTokens: 10 }));
      expect(err).toBeInstanceOf(HttpError);
      expect(err.message).toMatch(want);
      expect(err.message).not.toContain(KEY);
      expect(err.message).not.toMatch(/[\u0000-\u001f\u007f]/);
      expect(err.message.length).toBeLessThan(500);
    }
  });

  it("keeps the key and URL secrets out of its messages", async () => {
    handle = (_req, _body, res) => res.writeHead(500).end("{}");
    const complete = chatCompletion({ url: `${root}/v1?token=url-secret`, model: "m", apiKey: KEY, timeoutMs: 5_000 });
    const err = await rejectionOf(complete(messages, { maxTokens: 10 }));
    expect(err.message).toMatch(/HTTP 500/);
    expect(err.message).not.toContain(KEY);
    expect(err.message).not.toContain("url-secret");
    expect(seen[seen.length - 1]!.path).toBe("/v1/chat/completions?token=url-secret");
  });

  it("checks the URL when it is built: http(s) only, no credentials", () => {
    expect(completionsEndpoint("https://api.example.com/v1//")).toBe("https://api.example.com/v1/chat/completions");
    expect(completionsEndpoint("https://example.com/openai?api-version=1")).toBe("https://example.com/openai/chat/completions?api-version=1");
    expect(() => chatCompletion({ url: "ftp://example.com/v1", model: "m", timeoutMs: 1 })).toThrow(InputError);
    expect(() => chatCompletion({ url: "not a url", model: "m", timeoutMs: 1, setting: "llm.url" })).toThrow(/^llm\.url: /);
    const err = (() => {
      try {
        chatCompletion({ url: "https://user:hunter2@api.example.com/v1", model: "m", timeoutMs: 1, setting: "llm.url" });
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err).toBeInstanceOf(InputError);
    expect(err!.message).toMatch(/credentials in the URL are not supported/);
    expect(err!.message).not.toContain("hunter2");
  });
});
