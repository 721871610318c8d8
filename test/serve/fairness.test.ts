/**
 * `serve` under a long request (issue 16): logprobs come from the KV cache and equal the ones
 * recomputed from the full prefix, jobs are interleaved step by step so a short request is not
 * stuck behind a long logprobs request, and /health reports the queue depth.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type LoadedModel } from "../../src/engine/index";
import { startOpenAIServer, type DecodeJob, type RunningServer, type ServeEngine } from "../../src/serve/openai-server";
import { serveEngineFromModel } from "../../src/serve/engine";
import { readAdapterModules } from "../../src/engine/variants";
import { logSoftmax } from "../../src/chat/sampling";
import { writeChatFixture, type ChatFixture } from "./fixtures";

let fx: ChatFixture;
let model: LoadedModel;

beforeAll(async () => {
  fx = await writeChatFixture();
  model = await loadModel(fx.modelDir);
  model.addLoraVariant("full", await readAdapterModules(fx.modelDir, fx.adapterDir));
}, 60_000);

afterAll(async () => {
  await model?.close();
  await fx?.cleanup();
});

/** float32 logits through a float64 log-softmax: agreement to ~1e-4 is what the engine keeps */
const LOGPROB_DIGITS = 4;
/** most of the fixture's 512-token context after a short chat prompt */
const LONG_TOKENS = 440;

/** The long request decodes within a second of being sent; waiting longer means it failed to start. */
const START_TIMEOUT_MS = 30_000;

/** `at`: when the response's headers arrived (the server sends a whole answer at once), before its body is parsed */
const chat = (url: string, body: Record<string, unknown>, signal?: AbortSignal) =>
  fetch(`${url}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal }).then(async (r) => {
    const at = performance.now();
    return { status: r.status, json: (await r.json()) as any, at };
  });

/** Poll until `cond` holds; fail when `pending` (the request it waits on) settles first or time runs out. */
async function until(cond: () => boolean, pending: Promise<unknown>, what: string): Promise<void> {
  let settled = false;
  void pending.then(
    () => (settled = true),
    () => (settled = true),
  );
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (!cond()) {
    if (settled) throw new Error(`the request ended before ${what}`);
    if (performance.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** The engine with every job's decode steps counted. */
function countingSteps(engine: ServeEngine): { engine: ServeEngine; steps: () => number } {
  let steps = 0;
  const open = async (variant: string, items: Parameters<ServeEngine["open"]>[1]): Promise<DecodeJob> => {
    const job = await engine.open(variant, items);
    return {
      get outputs() {
        return job.outputs;
      },
      get live() {
        return job.live;
      },
      get remaining() {
        return job.remaining;
      },
      cancel: (k) => job.cancel(k),
      step: () => {
        steps++;
        return job.step();
      },
    };
  };
  return { engine: { ...engine, open }, steps: () => steps };
}

describe("serve: KV-cached logprobs", () => {
  it("equal the logprobs recomputed from the full prefix, for rows of different prompt lengths", async () => {
    const engine = serveEngineFromModel(model);
    const prompts = [engine.encodePrompt(engine.renderChat([{ role: "user", content: "Who trained you?" }], { addGenerationPrompt: true })), engine.encodePrompt(engine.renderChat([{ role: "user", content: "Tell me a much longer story about the weather in Paris." }], { addGenerationPrompt: true }))];
    const items = prompts.map((promptIds, i) => ({ promptIds, sampling: { maxNewTokens: 5 + 3 * i, temperature: 1, topP: 1, seed: 7 + i }, logprobs: true, topLogprobs: 3 }));
    const job = await engine.open("full", items);
    while (job.live > 0) await job.step();
    for (let k = 0; k < items.length; k++) {
      const out = job.outputs[k]!;
      expect(out.logprobs!.length).toBeGreaterThan(0);
      for (let i = 0; i < out.logprobs!.length; i++) {
        const rows = await model.logits([...prompts[k]!, ...out.ids.slice(0, i)], "full");
        const lp = logSoftmax(rows[rows.length - 1]!);
        const t = out.logprobs![i]!;
        expect(t.logprob).toBeCloseTo(lp[t.id]!, LOGPROB_DIGITS);
        const best = Array.from(lp.keys()).sort((a, b) => lp[b]! - lp[a]!).slice(0, 3);
        expect(t.top).toHaveLength(3);
        t.top.forEach((a, j) => expect(a.logprob).toBeCloseTo(lp[best[j]!]!, LOGPROB_DIGITS));
      }
    }
  });
});

describe("serve: fair scheduling", () => {
  const longBody = { model: "base", messages: [{ role: "user", content: "Write a very long essay." }], max_tokens: LONG_TOKENS, temperature: 1, seed: 3, logprobs: true, top_logprobs: 5 };
  const shortBody = { model: "full", messages: [{ role: "user", content: "hi" }], max_tokens: 2, temperature: 0 };

  /** start the long request, wait until it decodes, send a short one; both finish times */
  async function race(server: RunningServer) {
    const long = chat(server.url, longBody);
    await until(() => server.stats().running > 0, long, "the long request decodes");
    const health = await fetch(`${server.url}/health`);
    const short = chat(server.url, shortBody);
    const [l, s] = await Promise.all([long, short]);
    return { long: l, short: s, health: { status: health.status, body: (await health.json()) as any } };
  }

  it("answers a short request while a long logprobs request is still decoding, and /health shows the queue", async () => {
    const server = await startOpenAIServer(serveEngineFromModel(model), { port: 0, maxTokensLimit: 512 });
    try {
      const r = await race(server);
      expect(r.long.status).toBe(200);
      expect(r.short.status).toBe(200);
      expect(r.long.json.usage.completion_tokens).toBeGreaterThan(50);
      expect(r.long.json.choices[0].logprobs.content).toHaveLength(r.long.json.usage.completion_tokens + (r.long.json.choices[0].finish_reason === "stop" ? 1 : 0));
      expect(r.short.at).toBeLessThan(r.long.at);
      expect(r.health.status).toBe(200);
      expect(r.health.body).toMatchObject({ status: "ok", jobs: 1, running: 1, waiting: 0, queued: 1 });
      const idle = (await (await fetch(`${server.url}/health`)).json()) as any;
      expect(idle).toMatchObject({ status: "ok", queued: 0, running: 0, waiting: 0, jobs: 0 });
    } finally {
      await server.close(1000);
    }
  }, 120_000);

  it("(control) with one job at a time the short request waits for the long one", async () => {
    const server = await startOpenAIServer(serveEngineFromModel(model), { port: 0, maxTokensLimit: 512, maxActive: 1 });
    try {
      const r = await race(server);
      expect(r.short.status).toBe(200);
      expect(r.short.at).toBeGreaterThan(r.long.at);
    } finally {
      await server.close(1000);
    }
  }, 120_000);

  it("stops decoding a request whose client hung up", async () => {
    const counted = countingSteps(serveEngineFromModel(model));
    const server = await startOpenAIServer(counted.engine, { port: 0, maxTokensLimit: 512 });
    try {
      const ctl = new AbortController();
      const gone = chat(server.url, longBody, ctl.signal).catch(() => "aborted");
      await until(() => server.stats().running > 0, gone, "the long request decodes");
      ctl.abort();
      expect(await gone).toBe("aborted");
      await until(() => server.stats().jobs === 0, new Promise(() => {}), "the hung-up request's job ends");
      // the job ended a few steps after the hang-up, not after the long request's 440
      expect(counted.steps()).toBeLessThan(LONG_TOKENS / 8);
      expect(server.stats()).toMatchObject({ queued: 0, running: 0 });
      expect((await chat(server.url, shortBody)).status).toBe(200);
    } finally {
      await server.close(1000);
    }
  }, 120_000);
});
