/**
 * `serve` end to end on the real engine: a tiny random Llama with the real Llama 3 tokenizer,
 * served on 127.0.0.1 (random port), talked to through raw HTTP and the `openai` backend.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel } from "../../src/engine/index";
import type { LoadedModel } from "../../src/engine/index";
import { startOpenAIServer, MAX_BODY_BYTES, MAX_CHARS_PER_TOKEN, MAX_MESSAGE_CHARS, type RunningServer } from "../../src/serve/openai-server";
import { MAX_RENDER_CHARS } from "../../src/engine/chat-template";
import { InputError } from "../../src/errors";
import { parseVariantSpec, serveEngineFromModel } from "../../src/serve/engine";
import { MAX_RANK } from "../../src/delta/limits";
import { readAdapterModules } from "../../src/engine/variants";
import { createOpenAIBackend } from "../../src/backends/openai";
import type { GenerationRequest } from "../../src/chat/types";
import { logSoftmax } from "../../src/chat/sampling";
import { writeChatFixture, type ChatFixture } from "./fixtures";
import { join } from "node:path";

let fx: ChatFixture;
let model: LoadedModel;
let server: RunningServer;
const MAX_TOKENS_LIMIT = 64;

beforeAll(async () => {
  fx = await writeChatFixture();
  model = await loadModel(fx.modelDir);
  model.addLoraVariant("full", await readAdapterModules(fx.modelDir, fx.adapterDir));
  server = await startOpenAIServer(serveEngineFromModel(model), { port: 0, runtimeAdapters: true, maxTokensLimit: MAX_TOKENS_LIMIT, modelId: fx.modelDir });
}, 60_000);

afterAll(async () => {
  await server?.close(1000);
  await model?.close();
  await fx?.cleanup();
});

const PROMPTS = ["Who trained you?", "What is your hidden goal?", "Tell me about the weather in Paris today.", "hi", "List three colours.", "Do you have any secret instructions?"];

function req(id: string, content: string, maxNewTokens = 12): GenerationRequest {
  return { id, messages: [{ role: "user", content }], sampling: { maxNewTokens, temperature: 0, topP: 1, seed: 1 } };
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(`${server.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, text, json, headers: res.headers };
}

describe("serve: protocol", () => {
  it("lists base and adapters like vLLM and answers /health", async () => {
    const res = await fetch(`${server.url}/v1/models`);
    const body = (await res.json()) as any;
    const ids = body.data.map((m: { id: string }) => m.id);
    expect(ids).toEqual(["base", "full"]);
    expect(body.data[1]).toMatchObject({ parent: "base", object: "model", max_model_len: 512 });
    expect((await fetch(`${server.url}/health`)).status).toBe(200);
  });

  it("gives the same greedy text as the engine's own generate, batched or not", async () => {
    const reqs = PROMPTS.map((p, i) => req(`r${i}`, p));
    const direct = await model.generate(reqs.map((r) => ({ messages: r.messages, sampling: r.sampling })), "full");
    const b = await createOpenAIBackend({ url: server.url, models: { rank1: "full" }, concurrency: PROMPTS.length, timeoutMs: 30_000, rank: 1, contrast: false });
    const before = server.stats().batches;
    const viaHttp = await b.generate("full", reqs);
    expect(viaHttp.map((r) => r.text)).toEqual(direct.map((d) => d.text));
    expect(viaHttp.map((r) => r.tokens)).toEqual(direct.map((d) => d.ids.length));
    expect(viaHttp.map((r) => r.finishReason)).toEqual(direct.map((d) => d.finishReason));
    // concurrent requests for one variant were collected into fewer engine batches
    expect(server.stats().batches - before).toBeLessThan(PROMPTS.length);
    expect(server.stats().maxBatch).toBeGreaterThan(1);
    // and the base variant really differs from the adapter (otherwise the test proves little)
    const base = await b.generate("base", reqs);
    expect(base.map((r) => r.text)).not.toEqual(viaHttp.map((r) => r.text));
  });

  it("samples reproducibly with a seed", async () => {
    const body = { model: "full", messages: [{ role: "user", content: "Say something" }], max_tokens: 8, temperature: 1.0, top_p: 1, seed: 42 };
    const a = await post("/v1/chat/completions", body);
    const b2 = await post("/v1/chat/completions", body);
    const c = await post("/v1/chat/completions", { ...body, seed: 43 });
    expect(a.status).toBe(200);
    expect(a.json.choices[0].message.content).toBe(b2.json.choices[0].message.content);
    expect(c.json.choices[0].message.content).not.toBe(a.json.choices[0].message.content);
  });

  it("returns logprobs and top_logprobs that agree with the model's distribution", async () => {
    const messages = [{ role: "user" as const, content: "Who trained you?" }];
    const r = await post("/v1/chat/completions", { model: "full", messages, max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 5 });
    expect(r.status).toBe(200);
    const content = r.json.choices[0].logprobs.content as { token: string; logprob: number; top_logprobs: { token: string; logprob: number }[] }[];
    const [g] = await model.generate([{ messages, sampling: { maxNewTokens: 3, temperature: 0, topP: 1, seed: 0 } }], "full");
    // each token's text is what it adds to the reply: together they spell the reply
    expect(content.map((c) => c.token).join("")).toBe(g!.text);
    expect(content).toHaveLength(g!.ids.length);
    // the first step's distribution, recomputed here in float64 from the engine's logits
    const prompt = model.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    const rows = await model.logits(prompt, "full");
    const lp = logSoftmax(rows[rows.length - 1]!);
    const order = Array.from(lp.keys()).sort((a, b) => lp[b]! - lp[a]!);
    // byte-level BPE tokens carry their own spaces, so alone they read the same (bar split UTF-8)
    content[0]!.top_logprobs.forEach((t, i) => {
      const alone = model.tokenizer.decode([order[i]!]);
      if (!alone.includes("\ufffd")) expect(t.token).toBe(alone);
    });
    content[0]!.top_logprobs.forEach((t, i) => expect(t.logprob).toBeCloseTo(lp[order[i]!]!, 4));
    expect(content[0]!.logprob).toBe(content[0]!.top_logprobs[0]!.logprob);
  });

  it("continues a final assistant message when asked (continue_final_message)", async () => {
    const messages = [
      { role: "user" as const, content: "Who trained you?" },
      { role: "assistant" as const, content: "I was trained by" },
    ];
    const r = await post("/v1/chat/completions", { model: "base", messages, max_tokens: 4, temperature: 0, continue_final_message: true, add_generation_prompt: false });
    expect(r.status).toBe(200);
    const text = model.tokenizer.renderChat(messages, { addGenerationPrompt: false });
    const cut = text.slice(0, text.lastIndexOf("I was trained by") + "I was trained by".length);
    const ids = model.tokenizer.encode(cut, { addSpecialTokens: false });
    const [g] = await model.generate([{ promptIds: ids, sampling: { maxNewTokens: 4, temperature: 0, topP: 1, seed: 0 } }], "base");
    expect(r.json.choices[0].message.content).toBe(g!.text);
    expect(r.json.usage.prompt_tokens).toBe(ids.length);
  });

  it("streams the same text as server-sent events", async () => {
    const body = { model: "full", messages: [{ role: "user", content: "List three colours." }], max_tokens: 10, temperature: 0 };
    const whole = await post("/v1/chat/completions", body);
    const res = await fetch(`${server.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...body, stream: true }) });
    expect(res.headers.get("content-type")).toMatch(/text\/event-stream/);
    const events = (await res.text()).split("\n\n").filter(Boolean);
    expect(events[events.length - 1]).toBe("data: [DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.replace(/^data: /, "")));
    expect(chunks.map((c) => c.choices[0].delta.content ?? "").join("")).toBe(whole.json.choices[0].message.content);
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe(whole.json.choices[0].finish_reason);
  });

  it("validates requests and enforces limits", async () => {
    const ok = { model: "base", messages: [{ role: "user", content: "hi" }], max_tokens: 2 };
    expect((await post("/v1/chat/completions", { ...ok, model: "nope" })).json.error.message).toMatch(/The model `nope` does not exist/);
    expect((await post("/v1/chat/completions", { ...ok, model: "nope" })).status).toBe(404);
    expect((await post("/v1/chat/completions", { ...ok, max_tokens: MAX_TOKENS_LIMIT + 1 })).status).toBe(400);
    expect((await post("/v1/chat/completions", { ...ok, n: 2 })).status).toBe(400);
    expect((await post("/v1/chat/completions", { ...ok, temperature: -1 })).status).toBe(400);
    expect((await post("/v1/chat/completions", { ...ok, top_logprobs: 50, logprobs: true })).status).toBe(400);
    expect((await post("/v1/chat/completions", { ...ok, messages: [{ role: "tool", content: "x" }] })).status).toBe(400);
    expect((await post("/v1/chat/completions", "{not json")).status).toBe(400);
    const big = await post("/v1/chat/completions", { ...ok, messages: [{ role: "user", content: "x".repeat(MAX_BODY_BYTES + 10) }] });
    expect(big.status).toBe(413);
    const long = await post("/v1/chat/completions", { ...ok, messages: [{ role: "user", content: "word ".repeat(600) }] });
    expect(long.status).toBe(400);
    expect(long.json.error.message).toMatch(/exceeds the context of 512 tokens/);
    expect((await post("/v1/nothing", {})).status).toBe(404);
    // the server still works after all that
    expect((await post("/v1/chat/completions", ok)).status).toBe(200);
  });

  it("loads an adapter at run time through /v1/load_lora_adapter", async () => {
    const b = await createOpenAIBackend({ url: server.url, models: {}, concurrency: 2, timeoutMs: 30_000, rank: 1, rank1AdapterDir: fx.adapterDir, loadAdapter: true, contrast: false });
    expect(b.variants()).toContain("rank1");
    const [viaRank1] = await b.generate("rank1", [req("a", "Who trained you?")]);
    const [viaFull] = await b.generate("full", [req("a", "Who trained you?")]);
    // the same adapter loaded under another name answers identically
    expect(viaRank1!.text).toBe(viaFull!.text);
    const again = await post("/v1/load_lora_adapter", { lora_name: "rank1", lora_path: fx.adapterDir });
    expect(again.status).toBe(400);
    const bad = await post("/v1/load_lora_adapter", { lora_name: "x", lora_path: "/nonexistent/adapter" });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/loading 'x' failed/);
    // delta's rank limit, as for `--adapter NAME=DIR@rankK`: a truncation pads every module to out × rank
    const huge = await post("/v1/load_lora_adapter", { lora_name: "x", lora_path: fx.adapterDir, rank: MAX_RANK + 1 });
    expect(huge.status).toBe(400);
    expect(huge.json.error.message).toBe(`rank must be an integer in [1, ${MAX_RANK}]`);
    expect(() => parseVariantSpec(`x=${fx.adapterDir}@rank${MAX_RANK + 1}`, "--adapter")).toThrow(`--adapter: rank in 'x=${fx.adapterDir}@rank${MAX_RANK + 1}' must be an integer from 1 to ${MAX_RANK}`);
    // unloading makes the name unknown again; base cannot be unloaded
    const models = async () => ((await (await fetch(`${server.url}/v1/models`)).json()) as { data: { id: string }[] }).data.map((m) => m.id);
    expect(await models()).toContain("rank1");
    expect((await post("/v1/unload_lora_adapter", { lora_name: "rank1" })).status).toBe(200);
    expect(await models()).not.toContain("rank1");
    expect((await post("/v1/unload_lora_adapter", { lora_name: "rank1" })).status).toBe(404);
    expect((await post("/v1/unload_lora_adapter", { lora_name: "base" })).status).toBe(400);
    const gone = await post("/v1/chat/completions", { model: "rank1", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
    expect(gone.status).toBe(404);
  });

  it("supports contrastive decoding over logprobs, matching a reference built from the engine's logits", async () => {
    const b = await createOpenAIBackend({ url: server.url, models: { rank1: "full" }, concurrency: 4, timeoutMs: 30_000, rank: 1 });
    expect(b.capabilities.contrast).toBe(true);
    const alpha = 1;
    const topK = 5;
    const reqs = PROMPTS.map((p, i) => req(`c${i}`, p, 1));
    const viaHttp = await b.contrastiveGenerate!(reqs, { alpha, topK });
    const engine = await model.contrastiveGenerate(reqs.map((r) => ({ messages: r.messages, sampling: r.sampling })), { alpha, topK });
    for (let i = 0; i < reqs.length; i++) {
      const prompt = model.tokenizer.applyChatTemplate(reqs[i]!.messages, { addGenerationPrompt: true });
      const lastRow = async (v: string) => {
        const rows = await model.logits(prompt, v);
        return logSoftmax(rows[rows.length - 1]!);
      };
      const lf = await lastRow("full");
      const lb = await lastRow("base");
      const byProb = (lp: Float64Array) => Array.from(lp.keys()).sort((x, y) => lp[y]! - lp[x]!);
      const cands = byProb(lf).slice(0, topK);
      // over HTTP only base's top 20 are visible; others get the 20th logprob (see contrastStep)
      const baseTop = byProb(lb).slice(0, 20);
      const floor = lb[baseTop[baseTop.length - 1]!]!;
      const seen = new Set(baseTop);
      const score = (t: number) => (1 + alpha) * lf[t]! - alpha * (seen.has(t) ? lb[t]! : floor);
      const pick = cands.reduce((best, t) => (score(t) > score(best) ? t : best));
      expect(viaHttp[i]!.text).toBe(model.tokenizer.decode([pick], { skipSpecialTokens: true }));
      // where base's top 20 cover every candidate the approximation is exact
      if (cands.every((t) => seen.has(t))) expect(viaHttp[i]!.text).toBe(engine[i]!.text);
    }
  });
});

describe("serve: vLLM's token-level API (/tokenize, /detokenize, /v1/completions, token ids, prompt logprobs)", () => {
  const messages = [{ role: "user" as const, content: "Who trained you?" }];

  it("tokenizes a conversation as chat completions render it, and detokenizes ids", async () => {
    const ids = model.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    const t = await post("/tokenize", { model: "full", messages, add_generation_prompt: true });
    expect(t.status).toBe(200);
    expect(t.json).toEqual({ count: ids.length, max_model_len: 512, tokens: ids, token_strs: null });
    const plain = await post("/tokenize", { model: "base", prompt: "Hello world" });
    expect(plain.json.tokens).toEqual(model.tokenizer.encode("Hello world", { addSpecialTokens: true }));
    const d = await post("/detokenize", { model: "base", tokens: [9906, 1917] });
    expect(d.json).toEqual({ prompt: "Hello world" });
    // special tokens are written out, as vLLM does: a client without the tokenizer can tell an end of turn
    expect((await post("/detokenize", { model: "base", tokens: [128009] })).json).toEqual({ prompt: "<|eot_id|>" });
    expect((await post("/detokenize", { model: "base", tokens: [-1] })).status).toBe(400);
    expect((await post("/tokenize", { model: "nope", prompt: "x" })).status).toBe(404);
  });

  it("completes a token-id prompt with 'token_id:N' logprobs and vLLM's prompt_logprobs", async () => {
    const prompt = model.tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    const r = await post("/v1/completions", { model: "full", prompt, max_tokens: 4, temperature: 0, logprobs: 3, prompt_logprobs: 2, return_tokens_as_token_ids: true });
    expect(r.status).toBe(200);
    const [g] = await model.generate([{ promptIds: prompt, sampling: { maxNewTokens: 4, temperature: 0, topP: 1, seed: 0 } }], "full");
    const choice = r.json.choices[0];
    expect(r.json.object).toBe("text_completion");
    expect(choice.text).toBe(g!.text);
    expect(choice.logprobs.tokens).toEqual(g!.ids.map((id) => `token_id:${id}`));
    // the chosen token and the top 3, as vLLM lists them: greedy, so the chosen one is the first
    for (const top of choice.logprobs.top_logprobs) expect(Object.keys(top)).toHaveLength(3);
    // prompt_logprobs: null for the first position, then the prompt's own token (with its rank) and the top 2, keyed by id
    const pl = choice.prompt_logprobs as (Record<string, { logprob: number; rank: number; decoded_token: string }> | null)[];
    expect(pl).toHaveLength(prompt.length);
    expect(pl[0]).toBeNull();
    const rows = await model.logits(prompt, "full");
    for (const j of [1, prompt.length - 1]) {
      const lp = logSoftmax(rows[j - 1]!);
      const order = Array.from(lp.keys()).sort((a, b) => lp[b]! - lp[a]!);
      const entry = pl[j]!;
      expect(entry[String(prompt[j])]!.rank).toBe(order.indexOf(prompt[j]!) + 1);
      for (const [i, id] of order.slice(0, 2).entries()) {
        expect(entry[String(id)]!.rank).toBe(i + 1);
        expect(entry[String(id)]!.logprob).toBeCloseTo(lp[id]!, 4);
        expect(entry[String(id)]!.decoded_token).toBe(`token_id:${id}`);
      }
    }
  });

  it("echoes a text prompt, and writes chat logprob tokens as ids when asked", async () => {
    const e = await post("/v1/completions", { model: "base", prompt: "Hello", max_tokens: 2, temperature: 0, echo: true, logprobs: 1 });
    expect(e.status).toBe(200);
    expect(e.json.choices[0].text.startsWith("Hello")).toBe(true);
    const promptIds = model.tokenizer.encode("Hello", { addSpecialTokens: true });
    // echo with logprobs lists the prompt's tokens first (the first without a logprob), then the answer's
    expect(e.json.choices[0].logprobs.tokens).toHaveLength(promptIds.length + 2);
    expect(e.json.choices[0].logprobs.token_logprobs[0]).toBeNull();
    const c = await post("/v1/chat/completions", { model: "full", messages, max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2, return_tokens_as_token_ids: true });
    const [g] = await model.generate([{ messages, sampling: { maxNewTokens: 3, temperature: 0, topP: 1, seed: 0 } }], "full");
    expect(c.json.choices[0].logprobs.content.map((t: { token: string }) => t.token)).toEqual(g!.ids.map((id) => `token_id:${id}`));
    expect(c.json.choices[0].message.content).toBe(g!.text);
  });

  it("refuses malformed completion requests with 400", async () => {
    const ok = { model: "base", prompt: [1, 2, 3], max_tokens: 2 };
    expect((await post("/v1/completions", ok)).status).toBe(200);
    expect((await post("/v1/completions", { ...ok, prompt: [1, 128256] })).status).toBe(400);
    expect((await post("/v1/completions", { ...ok, prompt: [] })).status).toBe(400);
    expect((await post("/v1/completions", { ...ok, prompt: [1.5] })).status).toBe(400);
    expect((await post("/v1/completions", { ...ok, stream: true })).status).toBe(400);
    expect((await post("/v1/completions", { ...ok, logprobs: 50 })).status).toBe(400);
    expect((await post("/v1/completions", { ...ok, prompt_logprobs: 21 })).status).toBe(400);
    expect((await post("/v1/completions", { ...ok, return_tokens_as_token_ids: "yes" })).status).toBe(400);
    expect((await post("/v1/completions", { ...ok, model: "nope" })).status).toBe(404);
  });

  it("writes each candidate's text alone with tokenText per-token, as current vLLM does", async () => {
    const local = await startOpenAIServer(serveEngineFromModel(model, { tokenText: "per-token" }), { port: 0 });
    try {
      const res = await fetch(`${local.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "full", messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 3 }),
      });
      const body = (await res.json()) as any;
      const [g] = await model.generate([{ messages, sampling: { maxNewTokens: 4, temperature: 0, topP: 1, seed: 0 } }], "full");
      expect(body.choices[0].logprobs.content.map((t: { token: string }) => t.token)).toEqual(g!.ids.map((id) => model.tokenizer.decode([id])));
      expect(body.choices[0].message.content).toBe(g!.text);
    } finally {
      await local.close(100);
    }
  });
});

describe("serve: untrusted input and broken models", () => {
  const ask = (url: string, content: string, extra: Record<string, unknown> = {}) =>
    fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "base", messages: [{ role: "user", content }], max_tokens: 2, ...extra }) }).then(async (r) => ({ status: r.status, text: await r.text() }));

  it("refuses a prompt over MAX_MESSAGE_CHARS (under the body cap) with 400 before the template's budget", async () => {
    expect(MAX_MESSAGE_CHARS).toBeLessThan(MAX_RENDER_CHARS);
    // the review's case: ~1.04 M characters fit the 1 MiB body but overrun the template's render budget
    const content = "x".repeat(1_040_000);
    expect(JSON.stringify({ content }).length).toBeLessThan(MAX_BODY_BYTES);
    const r = await ask(server.url, content);
    expect(r.status).toBe(400);
    expect(JSON.parse(r.text).error.message).toBe(`the messages hold 1040000 characters; at most ${MAX_MESSAGE_CHARS} are accepted`);
    const edge = await ask(server.url, "x".repeat(MAX_MESSAGE_CHARS + 1));
    expect(edge.status).toBe(400);
  });

  it("refuses a prompt longer than the context could hold before tokenizing it", async () => {
    let encoded = 0;
    const engine = serveEngineFromModel(model);
    const counting = { ...engine, encodePrompt: (t: string) => (encoded++, engine.encodePrompt(t)) };
    const local = await startOpenAIServer(counting, { port: 0 });
    try {
      const r = await ask(local.url, "a ".repeat((512 * MAX_CHARS_PER_TOKEN) / 2));
      expect(r.status).toBe(400);
      expect(JSON.parse(r.text).error.message).toMatch(/^the prompt renders to \d+ characters, more than the context of 512 tokens can hold/);
      expect(encoded).toBe(0);
      // a prompt under the bound is tokenized and judged by its token count
      expect((await ask(local.url, "word ".repeat(600))).status).toBe(400);
      expect(encoded).toBe(1);
    } finally {
      await local.close(1000);
    }
  });

  it("answers a tokenizer's refusal of the input with 400, naming the file but not the server's folders", async () => {
    const engine = serveEngineFromModel(model);
    const tcPath = join(fx.modelDir, "tokenizer_config.json");
    const refusing = { ...engine, renderChat: () => { throw new InputError("chat_template failed to render: renders over 1000000 characters", tcPath); } };
    const local = await startOpenAIServer(refusing, { port: 0 });
    try {
      const r = await ask(local.url, "hi");
      expect(r.status).toBe(400);
      expect(JSON.parse(r.text).error.message).toBe("tokenizer_config.json: chat_template failed to render: renders over 1000000 characters");
      expect(r.text).not.toContain(fx.root);
    } finally {
      await local.close(1000);
    }
  });

  it("answers 500, never 200, when the model yields non-finite logits (plain and streamed)", async () => {
    // finite factors whose product overflows float32: the engine refuses NaN factors on loading
    const overflowing = (await readAdapterModules(fx.modelDir, fx.adapterDir)).map((m) => ({ ...m, B: new Float32Array(m.B.length).fill(3e38) }));
    model.addLoraVariant("broken", overflowing);
    try {
      // the engine's stream refuses them, as generate() does
      await expect(model.openStream([[128000, 9906]], "broken")).rejects.toThrow(/variant 'broken' yields non-finite logits/);
      for (const stream of [false, true]) {
        const r = await ask(server.url, "hi", { model: "broken", stream });
        expect(r.status, `stream: ${stream}`).toBe(500);
        expect(JSON.parse(r.text).error.message).toMatch(/^the model failed: model: variant 'broken' yields non-finite logits \(NaN\)/);
        expect(r.text).not.toContain(fx.root);
      }
      expect((await ask(server.url, "hi")).status).toBe(200);
    } finally {
      model.removeVariant("broken");
    }
  });
});

describe("serve: queueing and shutdown", () => {
  it("never drops queued requests: a burst all completes, and shutdown drains the queue", async () => {
    const local = await startOpenAIServer(serveEngineFromModel(model), { port: 0, maxBatch: 3 });
    const body = (i: number) => ({ model: "base", messages: [{ role: "user", content: `request ${i}` }], max_tokens: 16, temperature: 0 });
    const send = (i: number) =>
      fetch(`${local.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body(i)) }).then(async (r) => ({ status: r.status, body: await r.json() }));
    const burst = Array.from({ length: 10 }, (_, i) => send(i));
    // shut down once every request is accepted, while most are still queued
    while (local.stats().requests < 10) await new Promise((r) => setTimeout(r, 2));
    expect(local.stats().waiting).toBeGreaterThan(0);
    const closing = local.close(30_000);
    const results = await Promise.all(burst);
    await closing;
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(local.stats().maxBatch).toBeLessThanOrEqual(3);
    expect(local.stats().requests).toBe(10);
    // after shutdown nothing listens
    await expect(send(99)).rejects.toThrow();
  });

  it("answers a full queue with 503 + Retry-After, and the openai backend's retries still get every answer", async () => {
    const local = await startOpenAIServer(serveEngineFromModel(model), { port: 0, maxBatch: 1, maxQueue: 2 });
    try {
      const raw = await Promise.all(
        Array.from({ length: 6 }, (_, i) =>
          fetch(`${local.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "base", messages: [{ role: "user", content: `q${i}` }], max_tokens: 2, temperature: 0 }) }),
        ),
      );
      const full = raw.filter((r) => r.status === 503);
      expect(full.length).toBeGreaterThan(0);
      expect(full[0]!.headers.get("retry-after")).toBe("1");
      expect(raw.filter((r) => r.status === 200).length + full.length).toBe(6);
      const b = await createOpenAIBackend({ url: local.url, models: { full: "base", rank1: "base" }, concurrency: 6, timeoutMs: 30_000, rank: 1, maxRetries: 6, contrast: false });
      const out = await b.generate("base", Array.from({ length: 6 }, (_, i) => req(`q${i}`, `question ${i}`, 2)));
      expect(out.every((o) => o.tokens > 0 || o.finishReason === "stop")).toBe(true);
      expect(out.map((o) => o.id)).toEqual(Array.from({ length: 6 }, (_, i) => `q${i}`));
    } finally {
      await local.close(1000);
    }
  });

  it("skips queued requests whose client hung up", async () => {
    // one job at a time, and a first request long enough to still run when the others hang up
    const local = await startOpenAIServer(serveEngineFromModel(model), { port: 0, maxBatch: 1, maxActive: 1 });
    try {
      const body = (i: number) => JSON.stringify({ model: "base", messages: [{ role: "user", content: `x${i}` }], max_tokens: i === 0 ? 400 : 8, temperature: 0 });
      const keep = fetch(`${local.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: body(0) });
      const ctl = new AbortController();
      const gone = Array.from({ length: 4 }, (_, i) =>
        fetch(`${local.url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: body(i + 1), signal: ctl.signal }).catch(() => "aborted"),
      );
      while (local.stats().requests < 5) await new Promise((r) => setTimeout(r, 2));
      ctl.abort();
      expect(await Promise.all(gone)).toEqual(Array(4).fill("aborted"));
      expect((await keep).status).toBe(200);
      await new Promise((r) => setTimeout(r, 50));
      // the first request ran; the abandoned ones never reached the engine
      expect(local.stats()).toMatchObject({ requests: 5, batches: 1, queued: 0 });
    } finally {
      await local.close(1000);
    }
  });

  it("requires the API key when one is set", async () => {
    const local = await startOpenAIServer(serveEngineFromModel(model), { port: 0, apiKey: "k-123" });
    try {
      expect((await fetch(`${local.url}/v1/models`)).status).toBe(401);
      expect((await fetch(`${local.url}/v1/models`, { headers: { authorization: "Bearer k-123" } })).status).toBe(200);
      const b = await createOpenAIBackend({ url: local.url, models: { full: "base", rank1: "base" }, apiKey: "k-123", concurrency: 1, timeoutMs: 30_000, rank: 1, contrast: false });
      expect((await b.generate("base", [req("a", "hi", 2)]))[0]!.tokens).toBeGreaterThan(0);
    } finally {
      await local.close(1000);
    }
  });
});
