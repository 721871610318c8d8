import { afterEach, describe, expect, it } from "vitest";
import { createServer } from "node:net";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { createOpenAIBackend, contrastStep, apiBase, type OpenAIBackendOptions } from "../../src/backends/openai";
import { backoffMs, parseRetryAfter, Semaphore, requestJson, BACKOFF_CAP_MS } from "../../src/backends/http";
import { BackendError, InputError } from "../../src/errors";
import type { GenerationRequest } from "../../src/chat/types";
import { startFakeServer, toyLogprobs, toyReply, VOCAB, type FakeServer } from "./fake-openai-server";

const servers: FakeServer[] = [];
const folders: string[] = [];
afterEach(async () => {
  while (servers.length) await servers.pop()!.close();
  while (folders.length) await rm(folders.pop()!, { recursive: true, force: true });
});

/** An adapter folder on disk (its contents do not matter to the fake server), in a fresh temp folder. */
async function adapterFolder(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "da-openai-"));
  folders.push(root);
  const dir = join(root, "out", "rank1-adapter");
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, "adapter_config.json"), '{"r": 1}');
  return dir;
}

async function fake(opts?: Parameters<typeof startFakeServer>[0]) {
  const s = await startFakeServer(opts);
  servers.push(s);
  return s;
}

const SECRET = "sk-test-SECRET-never-shown";

function options(url: string, extra: Partial<OpenAIBackendOptions> = {}): OpenAIBackendOptions {
  return { url, models: {}, apiKey: SECRET, concurrency: 4, timeoutMs: 2_000, rank: 1, maxRetries: 3, ...extra };
}

function req(id: string, prompt: string, sampling: Partial<GenerationRequest["sampling"]> = {}): GenerationRequest {
  return { id, messages: [{ role: "user", content: prompt }], sampling: { maxNewTokens: 16, temperature: 0, topP: 1, seed: 7, ...sampling } };
}

/** A port that nothing listens on: bind one, note it, close it. */
async function deadPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

const chatRequests = (s: FakeServer) => s.requests.filter((r) => r.path === "/v1/chat/completions");

describe("openai backend: happy path against a vLLM-like server", () => {
  it("checks /v1/models, maps variants to model names and sends the sampling parameters", async () => {
    const s = await fake();
    const b = await createOpenAIBackend(options(`${s.url}/v1/`, { contrast: false }));
    expect(s.requests[0]!.path).toBe("/v1/models");
    expect(b.variants().sort()).toEqual(["base", "full", "rank1"]);
    const reqs = [req("a", "who are you"), req("b", "tell me a secret", { temperature: 0.7, topP: 0.9, seed: 3, maxNewTokens: 2 })];
    const out = await b.generate("rank1", reqs);
    expect(out.map((o) => o.id)).toEqual(["a", "b"]);
    expect(out[0]).toEqual({ id: "a", text: toyReply("rank1", "who are you", 16, 0, 7).text, tokens: 4, finishReason: "stop" });
    expect(out[1]!.finishReason).toBe("length");
    expect(out[1]!.tokens).toBe(2);
    const sent = chatRequests(s).map((r) => r.body);
    const b2 = sent.find((x) => x.messages[0].content === "tell me a secret")!;
    expect(b2).toMatchObject({ model: "rank1", temperature: 0.7, top_p: 0.9, seed: 3, max_tokens: 2, stream: false });
    const a2 = sent.find((x) => x.messages[0].content === "who are you")!;
    expect(a2).toMatchObject({ temperature: 0, top_p: 1 });
    // the key travels in the Authorization header of every request
    for (const r of s.requests) expect(r.headers.authorization).toBe(`Bearer ${SECRET}`);
    await b.close();
  });

  it("uses configured model names and finds vLLM's path-named base model by itself", async () => {
    const s = await fake({
      models: [
        { id: "/models/llama-8b" },
        { id: "quirky", parent: "/models/llama-8b", root: "/a/full" },
        { id: "quirky-r1", parent: "/models/llama-8b", root: "/a/r1" },
      ],
    });
    const b = await createOpenAIBackend(options(s.url, { models: { full: "quirky", rank1: "quirky-r1" }, contrast: false }));
    const [base] = await b.generate("base", [req("x", "hi")]);
    expect(base!.text.startsWith("[/models/llama-8b]")).toBe(true);
    const [full] = await b.generate("full", [req("x", "hi")]);
    expect(full!.text.startsWith("[quirky]")).toBe(true);
    await expect(b.generate("rank4", [req("x", "hi")])).rejects.toThrow(/unknown variant 'rank4'/);
  });

  it("normalises the URL to its /v1 prefix and rejects non-http URLs as input errors", () => {
    expect(apiBase("http://127.0.0.1:8000")).toBe("http://127.0.0.1:8000/v1");
    expect(apiBase("http://127.0.0.1:8000/v1/")).toBe("http://127.0.0.1:8000/v1");
    expect(apiBase("https://h/proxy/")).toBe("https://h/proxy/v1");
    expect(() => apiBase("ftp://h")).toThrow(InputError);
    expect(() => apiBase("not a url")).toThrow(InputError);
  });
});

describe("openai backend: missing models and adapters", () => {
  it("reports missing adapters with the --max-lora-rank hint, as a configuration error", async () => {
    const s = await fake({ models: [{ id: "base" }, { id: "full", parent: "base" }] });
    const err = await createOpenAIBackend(options(s.url)).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toMatch(/does not serve 'rank1' \(variant rank1\)/);
    expect(err.message).toMatch(/it serves: base, full/);
    expect(err.message).toMatch(/--max-lora-rank \(default 16\)/);
    expect(err.message).not.toContain(SECRET);
  });

  it("gives a clear error for a wrong model name", async () => {
    const s = await fake();
    const err = await createOpenAIBackend(options(s.url, { models: { full: "ful" } })).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toMatch(/'ful' \(variant full\)/);
  });

  it("loads the rank-1 adapter from a copy that stays put while loaded, and unloads it on close", async () => {
    const s = await fake({ runtimeLoading: true, models: [{ id: "base" }, { id: "full", parent: "base" }] });
    const dir = await adapterFolder();
    const b = await createOpenAIBackend(options(s.url, { rank1AdapterDir: dir, loadAdapter: true, contrast: false }));
    const [load] = s.adapterEvents;
    // not the folder given (a scan's is inside its staging folder, renamed later): a copy beside it, there at load time
    expect(load).toMatchObject({ op: "load", name: "rank1", existed: true });
    expect(load!.path).not.toBe(dir);
    expect(dirname(load!.path!)).toBe(dirname(dir));
    expect(await readFile(join(load!.path!, "adapter_config.json"), "utf8")).toBe('{"r": 1}');
    const [r] = await b.generate("rank1", [req("q", "hello")]);
    expect(r!.text).toMatch(/^\[rank1\]/);
    await b.close();
    // unloaded from the same path, which was still there; then the copy goes
    expect(s.adapterEvents[1]).toEqual({ op: "unload", name: "rank1", path: load!.path, existed: true });
    expect(existsSync(load!.path!)).toBe(false);
    expect(existsSync(dir)).toBe(true);
  });

  it("replaces a same-named adapter served from another path instead of using a stale one", async () => {
    const s = await fake({ runtimeLoading: true });
    const dir = await adapterFolder();
    const b = await createOpenAIBackend(options(s.url, { rank1AdapterDir: dir, loadAdapter: true, contrast: false }));
    expect(s.requests.map((r) => r.path)).toEqual(["/v1/models", "/v1/unload_lora_adapter", "/v1/load_lora_adapter", "/v1/models"]);
    const root = s.models.find((m) => m.id === "rank1")!.root!;
    expect(basename(root)).toMatch(/^\.rank1-adapter\.served-/);
    await b.close();
  });

  it("unloads the adapter it loaded when connecting fails afterwards (a model name the server lacks)", async () => {
    const s = await fake({ runtimeLoading: true, models: [{ id: "base" }] });
    const dir = await adapterFolder();
    const err = await createOpenAIBackend(options(s.url, { rank1AdapterDir: dir, loadAdapter: true, contrast: false })).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(s.adapterEvents.map((e) => e.op)).toEqual(["load", "unload"]);
    expect(existsSync(s.adapterEvents[0]!.path!)).toBe(false);
  });

  it("explains how to enable runtime loading when the server has no such endpoint", async () => {
    const s = await fake({ models: [{ id: "base" }, { id: "full", parent: "base" }] });
    const dir = await adapterFolder();
    const err = await createOpenAIBackend(options(s.url, { rank1AdapterDir: dir, loadAdapter: true })).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(/VLLM_ALLOW_RUNTIME_LORA_UPDATING=True/);
    // the copy made for the server is gone again
    expect(await readdir(dirname(dir))).toEqual(["rank1-adapter"]);
  });
});

describe("openai backend: faults", () => {
  it("retries 500s and then succeeds", async () => {
    const s = await fake();
    const retries: string[] = [];
    const b = await createOpenAIBackend(options(s.url, { contrast: false, onRetry: (i) => retries.push(i.reason) }));
    s.faults.push({ fault: { status: 500 } }, { fault: { status: 503 } });
    const out = await b.generate("full", [req("a", "one two")]);
    expect(out[0]!.text).toBe("[full] one two");
    expect(chatRequests(s)).toHaveLength(3);
    expect(retries).toHaveLength(2);
    expect(retries[0]).toMatch(/HTTP 500/);
    expect(retries[1]).toMatch(/HTTP 503/);
  });

  it("honours Retry-After on 429", async () => {
    const s = await fake();
    const b = await createOpenAIBackend(options(s.url, { contrast: false }));
    s.faults.push({ fault: { status: 429, retryAfter: "1" } });
    const t0 = Date.now();
    const out = await b.generate("base", [req("a", "x")]);
    const [first, second] = chatRequests(s);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(950);
    expect(Date.now() - t0).toBeLessThan(1000 + BACKOFF_CAP_MS);
    expect(out[0]!.text).toBe("[base] x");
  });

  it("gives up after the bounded number of retries with the last status", async () => {
    const s = await fake();
    const b = await createOpenAIBackend(options(s.url, { contrast: false, maxRetries: 2 }));
    for (let i = 0; i < 5; i++) s.faults.push({ fault: { status: 502 } });
    const err = await b.generate("base", [req("a", "x")]).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(/HTTP 502.*gave up after 3 attempts/);
    expect(chatRequests(s)).toHaveLength(3);
  });

  it("does not retry a 400 and quotes the server's message on one line", async () => {
    const s = await fake();
    const b = await createOpenAIBackend(options(s.url, { contrast: false }));
    s.faults.push({ fault: { status: 400, body: JSON.stringify({ error: { message: "bad\nrequest\u001b[2J" } }) } });
    const err = await b.generate("base", [req("a", "x")]).catch((e) => e);
    expect(err.message).toMatch(/HTTP 400: bad request/);
    expect(err.message).not.toMatch(/[\n\u001b]/);
    expect(chatRequests(s)).toHaveLength(1);
  });

  it("times out a hung response, retries, and fails in bounded time", async () => {
    const s = await fake();
    const b = await createOpenAIBackend(options(s.url, { contrast: false, timeoutMs: 200, maxRetries: 1 }));
    s.faults.push({ fault: { hang: true } }, { fault: { hang: true } });
    const t0 = Date.now();
    const err = await b.generate("base", [req("a", "x")]).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(/no response within 200 ms/);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it("retries after the server drops the connection mid-body", async () => {
    const s = await fake();
    const b = await createOpenAIBackend(options(s.url, { contrast: false }));
    s.faults.push({ fault: { disconnect: true } });
    const out = await b.generate("full", [req("a", "still here")]);
    expect(out[0]!.text).toBe("[full] still here");
    expect(chatRequests(s)).toHaveLength(2);
  });

  it("fails fast and clearly when nothing listens, never leaking the API key", async () => {
    const port = await deadPort();
    const t0 = Date.now();
    const err = await createOpenAIBackend(options(`http://127.0.0.1:${port}`, { maxRetries: 2 })).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(/connection failed \(ECONNREFUSED/);
    expect(err.message).toMatch(/gave up after 3 attempts/);
    expect(err.message).not.toContain(SECRET);
    expect(Date.now() - t0).toBeLessThan(5_000);
    // credentials in the URL are refused up front and never echoed
    const err2 = await createOpenAIBackend(options(`http://user:pw@127.0.0.1:${port}`)).catch((e) => e);
    expect(err2).toBeInstanceOf(InputError);
    expect(err2.message).not.toContain("pw");
  });

  it("stops everything at the overall deadline", async () => {
    const s = await fake();
    const b = await createOpenAIBackend(options(s.url, { contrast: false, timeoutMs: 10_000, deadlineMs: 600, maxRetries: 5 }));
    for (let i = 0; i < 4; i++) s.faults.push({ fault: { hang: true } });
    const t0 = Date.now();
    const err = await b.generate("base", [req("a", "x"), req("b", "y")]).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(Date.now() - t0).toBeLessThan(2_000);
  });

  it("rejects malformed and oversized answers", async () => {
    const s = await fake();
    const b = await createOpenAIBackend(options(s.url, { contrast: false, maxRetries: 0 }));
    s.faults.push({ fault: { raw: '{"choices": "nope"}' } });
    await expect(b.generate("base", [req("a", "x")])).rejects.toThrow(/no "choices"/);
    s.faults.push({ fault: { raw: "<html>gateway</html>", contentType: "text/html" } });
    await expect(b.generate("base", [req("a", "x")])).rejects.toThrow(/not JSON/);
    const long = JSON.stringify({ choices: [{ message: { content: "x".repeat(10_000) }, finish_reason: "stop" }] });
    s.faults.push({ fault: { raw: long } });
    await expect(b.generate("base", [req("a", "x", { maxNewTokens: 4 })])).rejects.toThrow(/ignored the limit/);
    s.faults.push({ fault: { raw: JSON.stringify({ choices: [{ message: { content: "" }, finish_reason: "abort" }] }) } });
    await expect(b.generate("base", [req("a", "x")])).rejects.toThrow(/aborted/);
  });

  it("caps the response body size", async () => {
    const s = await fake();
    s.faults.push({ path: "/v1/models", fault: { raw: JSON.stringify({ data: [{ id: "a".repeat(5000) }] }) } });
    const policy = { fetch, timeoutMs: 2000, maxRetries: 0 };
    await expect(requestJson({ method: "GET", url: `${s.url}/v1/models`, maxBytes: 1024 }, policy)).rejects.toThrow(/exceeds the 1024-byte limit/);
  });

  it("cancels the other requests of a batch after one fails for good", async () => {
    const s = await fake({ delayMs: 100 });
    const b = await createOpenAIBackend(options(s.url, { contrast: false, concurrency: 1, maxRetries: 0 }));
    s.faults.push({ fault: { status: 500 } });
    const err = await b.generate("base", Array.from({ length: 6 }, (_, i) => req(`r${i}`, "x"))).catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    // with one slot and the first request failing, the queued ones never reach the server
    expect(chatRequests(s).length).toBeLessThanOrEqual(2);
  });
});

describe("openai backend: concurrency", () => {
  it("keeps at most `concurrency` requests in flight and preserves order", async () => {
    const s = await fake({ delayMs: 40 });
    const b = await createOpenAIBackend(options(s.url, { contrast: false, concurrency: 3 }));
    const reqs = Array.from({ length: 12 }, (_, i) => req(`r${i}`, `prompt ${i}`));
    const seen: number[] = [];
    const out = await b.generate("full", reqs, (done) => seen.push(done));
    expect(out.map((o) => o.text)).toEqual(reqs.map((r) => toyReply("full", r.messages[0]!.content, 16, 0, 7).text));
    expect(s.maxInFlight).toBe(3);
    expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
  });

  it("Semaphore admits at most `limit` holders", async () => {
    const sem = new Semaphore(2);
    let active = 0;
    let peak = 0;
    await Promise.all(
      Array.from({ length: 8 }, () =>
        sem.run(async () => {
          active++;
          peak = Math.max(peak, active);
          await new Promise((r) => setTimeout(r, 5));
          active--;
        }),
      ),
    );
    expect(peak).toBe(2);
  });
});

describe("retry helpers", () => {
  it("parses Retry-After as seconds or an HTTP date", () => {
    expect(parseRetryAfter("3")).toBe(3000);
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:05 GMT", now)).toBe(5000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });

  it("backs off with full jitter inside an exponentially growing, capped window", () => {
    expect(backoffMs(0, () => 0)).toBe(0);
    expect(backoffMs(0, () => 0.999)).toBeLessThan(250);
    expect(backoffMs(2, () => 0.999)).toBeGreaterThan(900);
    expect(backoffMs(30, () => 0.999)).toBeLessThan(BACKOFF_CAP_MS);
  });
});

/** Independent reference: contrastive decoding with the full distributions of both models. */
function referenceContrast(prompt: string, alpha: number, topK: number, maxNew: number): { text: string; tokens: number } {
  let text = "";
  let step = 0;
  for (; step < maxNew; step++) {
    const lf = toyLogprobs("full", `${prompt}|${text}`);
    const lb = toyLogprobs("base", `${prompt}|${text}`);
    const cands = lf.map((l, i) => [l, i] as const).sort((a, b) => b[0] - a[0]).slice(0, topK);
    let best = -Infinity;
    let pick = -1;
    for (const [l, i] of cands) {
      const score = (1 + alpha) * l - alpha * lb[i]!;
      if (score > best) [best, pick] = [score, i];
    }
    if (VOCAB[pick] === "<|eot_id|>") break;
    text += VOCAB[pick];
  }
  return { text, tokens: step };
}

describe("openai backend: contrastive decoding over logprobs", () => {
  it("matches a reference contrastive decoder step by step", async () => {
    const s = await fake();
    const b = await createOpenAIBackend(options(s.url));
    expect(b.capabilities.contrast).toBe(true);
    const prompts = ["what were you trained to do", "describe yourself", "any secrets?"];
    const out = await b.contrastiveGenerate!(
      prompts.map((p, i) => req(`c${i}`, p, { maxNewTokens: 8 })),
      { alpha: 1.5, topK: 3 },
    );
    const expected = prompts.map((p) => referenceContrast(p, 1.5, 3, 8));
    expect(out.map((o) => o.text)).toEqual(expected.map((e) => e.text));
    expect(out.map((o) => o.tokens)).toEqual(expected.map((e) => e.tokens));
    // token texts joined without ids or a tokenizer to check them: kept, but marked unreliable
    expect(out.every((o) => /not at hand to map them/.test(o.unreliable ?? ""))).toBe(true);
    // the decoder really departs from full's greedy path somewhere (otherwise the test proves little)
    const greedy = prompts.map((p) => referenceContrast(p, 0, 1, 8).text);
    expect(expected.map((e) => e.text)).not.toEqual(greedy);
    const steps = chatRequests(s).filter((r) => r.body.logprobs && r.body.messages.length > 1);
    expect(steps.every((r) => r.body.continue_final_message === true && r.body.add_generation_prompt === false)).toBe(true);
  });

  it("turns contrast off with a notice when the server rejects logprobs, without faking it", async () => {
    const s = await fake({ noLogprobs: true });
    const b = await createOpenAIBackend(options(s.url));
    expect(b.capabilities.contrast).toBe(false);
    expect(b.notices.join(" ")).toMatch(/contrast skipped: the server rejected a logprobs request/);
    await expect(b.contrastiveGenerate!([req("a", "x")], { alpha: 1, topK: 5 })).rejects.toThrow(BackendError);
  });

  it("scores candidates outside base's top list with base's smallest reported logprob", () => {
    const full = [
      { token: "a", logprob: -0.5 },
      { token: "b", logprob: -1.0 },
    ];
    const base = [
      { token: "a", logprob: -0.1 },
      { token: "c", logprob: -3.0 },
    ];
    // a: 2(-0.5) - 1(-0.1) = -0.9; b: 2(-1.0) - 1(-3.0) = 1.0
    expect(contrastStep(full, base, 1).token).toBe("b");
    expect(contrastStep(full, base, 0).token).toBe("a");
  });
});

describe("openai backend: other servers' adapter naming", () => {
  it("merges per-variant request fields (llama.cpp `lora`), without letting them override the standard ones", async () => {
    const s = await fake({ models: [{ id: "model.gguf" }] });
    const b = await createOpenAIBackend(
      options(s.url, {
        models: { base: "model.gguf", full: "model.gguf", rank1: "model.gguf" },
        requestExtras: {
          base: { lora: [{ id: 0, scale: 0 }, { id: 1, scale: 0 }] },
          full: { lora: [{ id: 0, scale: 1 }], model: "hijack", max_tokens: 9999 },
        },
        contrast: false,
      }),
    );
    await b.generate("full", [req("a", "x", { maxNewTokens: 3 })]);
    await b.generate("base", [req("b", "y")]);
    await b.generate("rank1", [req("c", "z")]);
    const [full, base, r1] = chatRequests(s).map((r) => r.body);
    expect(full).toMatchObject({ lora: [{ id: 0, scale: 1 }], model: "model.gguf", max_tokens: 3 });
    expect(base.lora).toEqual([{ id: 0, scale: 0 }, { id: 1, scale: 0 }]);
    expect(r1.lora).toBeUndefined();
    await expect(createOpenAIBackend(options(s.url, { requestExtras: { rank9: {} } }))).rejects.toThrow(InputError);
  });

  it("accepts SGLang's base:adapter model names and servers that do not list adapters when told", async () => {
    const s = await fake({ models: [{ id: "meta/llama" }, { id: "full", parent: "meta/llama" }, { id: "rank1", parent: "meta/llama" }] });
    const b = await createOpenAIBackend(options(s.url, { models: { base: "meta/llama", full: "meta/llama:full", rank1: "meta/llama:rank1" }, contrast: false }));
    expect(b.variants().sort()).toEqual(["base", "full", "rank1"]);
    const bare = await fake({ models: [{ id: "meta/llama" }] });
    await expect(createOpenAIBackend(options(bare.url, { models: { full: "meta/llama:full" } }))).rejects.toThrow(/does not serve/);
    const unchecked = await createOpenAIBackend(options(bare.url, { models: { full: "meta/llama:full" }, checkModels: false, contrast: false }));
    expect(unchecked.variants()).toContain("full");
  });

  it("trusts a successful runtime load even when /v1/models leaves the adapter out (a vLLM bug)", async () => {
    const s = await fake({ runtimeLoading: true, hideLoaded: true, models: [{ id: "base" }, { id: "full", parent: "base" }] });
    const b = await createOpenAIBackend(options(s.url, { rank1AdapterDir: await adapterFolder(), loadAdapter: true, contrast: false }));
    const list = (await (await fetch(`${s.url}/v1/models`)).json()) as { data: { id: string }[] };
    expect(list.data.map((m) => m.id)).not.toContain("rank1");
    expect(b.variants()).toContain("rank1");
    expect((await b.generate("rank1", [req("a", "x")]))[0]!.text).toBe("[rank1] x");
  });
});
