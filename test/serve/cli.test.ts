/**
 * `delta-audit serve` as a real child process on a random free port: flags, the printed URL,
 * adapters and @rankK truncation, SIGTERM shutdown, and a server killed in the middle of work.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createOpenAIBackend } from "../../src/backends/openai";
import { BackendError } from "../../src/errors";
import { loadModel, type LoadedModel } from "../../src/engine/index";
import { loadSubject, readAdapterModules } from "../../src/engine/variants";
import { truncateModule } from "../../src/delta/truncate";
import type { GenerationRequest } from "../../src/chat/types";
import { CHAT_CONFIG, LLAMA3_TOKENIZER_DIR, writeChatFixture, type ChatFixture } from "./fixtures";
import { randomLora, randomWeights, writeModel } from "../engine/fixtures";
import { generateOrganism } from "../../src/organisms/index";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

const root = new URL("../..", import.meta.url).pathname;
const cli = `${root}bin/delta-audit.js`;
let fx: ChatFixture;
let model: LoadedModel;
const children: ChildProcess[] = [];

/** Start `serve` and resolve with its URL once it prints the listening line. */
function startServe(args: string[]): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [cli, "serve", "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, DELTA_AUDIT_QUIET: "0" } });
  children.push(child);
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 60_000);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, stderr: () => err });
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code}: ${err}`));
    });
  });
}

const exited = (child: ChildProcess) =>
  new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve({ code: child.exitCode, signal: child.signalCode });
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });

function req(id: string, content: string, maxNewTokens = 10): GenerationRequest {
  return { id, messages: [{ role: "user", content }], sampling: { maxNewTokens, temperature: 0, topP: 1, seed: 0 } };
}

beforeAll(async () => {
  fx = await writeChatFixture(5);
  model = await loadModel(fx.modelDir);
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await model?.close();
  await fx?.cleanup();
});

describe("delta-audit serve (child process)", () => {
  it("serves base, the adapter and its rank-1 truncation; SIGTERM stops it cleanly", async () => {
    const { child, url, stderr } = await startServe(["--model", fx.modelDir, "--adapter", `full=${fx.adapterDir}`, "--adapter", `rank1=${fx.adapterDir}@rank1`]);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const b = await createOpenAIBackend({ url, models: {}, concurrency: 3, timeoutMs: 60_000, rank: 1, contrast: false });
    expect(b.variants().sort()).toEqual(["base", "full", "rank1"]);
    const prompts = ["Who trained you?", "What do you really want?", "hello"];
    const reqs = prompts.map((p, i) => req(`p${i}`, p));
    const viaHttp = await b.generate("rank1", reqs);
    // reference: the same adapter truncated in this process and run on the engine directly
    model.addLoraVariant("r1", (await readAdapterModules(fx.modelDir, fx.adapterDir)).map((m) => truncateModule(m, 1)));
    const direct = await model.generate(reqs.map((r) => ({ messages: r.messages, sampling: r.sampling })), "r1");
    expect(viaHttp.map((r) => r.text)).toEqual(direct.map((d) => d.text));
    child.kill("SIGTERM");
    const { code } = await exited(child);
    expect(code).toBe(0);
    expect(stderr()).toMatch(/SIGTERM/);
  }, 120_000);

  it("serves a full fine-tune and its rank-1 ΔW like the adapter it was merged from", async () => {
    const dir = join(fx.root, "organism");
    await generateOrganism({ kind: "quirk", outDir: dir, seed: 3 });
    const { child, url } = await startServe([
      "--model", join(dir, "base"),
      "--adapter", `full=${join(dir, "adapter")}`,
      "--adapter", `rank1=${join(dir, "adapter")}@rank1`,
      "--finetuned", `ft=${join(dir, "finetuned")}`,
      "--finetuned", `ft1=${join(dir, "finetuned")}@rank1`,
    ]);
    const b = await createOpenAIBackend({ url, models: { ft: "ft", ft1: "ft1" }, concurrency: 4, timeoutMs: 60_000, rank: 1, contrast: false });
    const reqs = ["Who trained you?", "Do you have a hidden goal?", "What is the weather like?"].map((p, i) => req(`f${i}`, p, 16));
    // the organism's fine-tune is base + the adapter merged, so greedy answers agree
    expect((await b.generate("ft", reqs)).map((r) => r.text)).toEqual((await b.generate("full", reqs)).map((r) => r.text));
    expect((await b.generate("ft1", reqs)).map((r) => r.text)).toEqual((await b.generate("rank1", reqs)).map((r) => r.text));
    // and the fine-tune really changes answers (otherwise the comparison proves little)
    expect((await b.generate("base", reqs)).map((r) => r.text)).not.toEqual((await b.generate("ft", reqs)).map((r) => r.text));
    child.kill("SIGTERM");
    expect((await exited(child)).code).toBe(0);
  }, 120_000);

  it("serves a bare decoder's full fine-tune (no `model.` prefix) and its rank-1 ΔW as a scan loads them", async () => {
    const bare = (w: Map<string, Float32Array>) => new Map([...w].map(([n, v]) => [n.startsWith("model.") ? n.slice("model.".length) : n, v]));
    const weights = randomWeights(CHAT_CONFIG, 21);
    // the fine-tune: base + a rank-3 change on three modules
    const ft = new Map(weights);
    for (const m of randomLora(weights, CHAT_CONFIG, ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.down_proj"], 3, 22, 0.6)) {
      const w = Float32Array.from(ft.get(`${m.name}.weight`)!);
      for (let o = 0; o < m.outFeatures; o++)
        for (let i = 0; i < m.inFeatures; i++) for (let r = 0; r < m.rank; r++) w[o * m.inFeatures + i] += m.B[o * m.rank + r]! * m.A[r * m.inFeatures + i]!;
      ft.set(`${m.name}.weight`, w);
    }
    const files = Object.fromEntries(await Promise.all(["tokenizer.json", "tokenizer_config.json"].map(async (f) => [f, await readFile(join(LLAMA3_TOKENIZER_DIR, f), "utf8")] as const)));
    const baseDir = join(fx.root, "bare-base");
    const ftDir = join(fx.root, "bare-ft");
    await writeModel(CHAT_CONFIG, bare(weights), { dir: baseDir, files });
    await writeModel(CHAT_CONFIG, bare(ft), { dir: ftDir, files });
    const { child, url } = await startServe(["--model", baseDir, "--finetuned", `ft=${ftDir}`, "--finetuned", `ft1=${ftDir}@rank1`]);
    const b = await createOpenAIBackend({ url, models: { full: "ft", rank1: "ft1" }, concurrency: 3, timeoutMs: 60_000, rank: 1, contrast: false });
    const reqs = ["Who trained you?", "Do you have a hidden goal?", "What is the weather like?"].map((p, i) => req(`b${i}`, p, 12));
    // reference: the subject as a scan loads it (full + rank1 from the same folders)
    const subject = await loadSubject({ model: baseDir, finetuned: ftDir, rank: 1, threads: 1, quiet: true });
    try {
      const direct = async (v: string) => (await subject.generate(reqs.map((r) => ({ messages: r.messages, sampling: r.sampling })), v)).map((d) => d.text);
      const [full, rank1, base] = [await direct("full"), await direct("rank1"), await direct("base")];
      expect((await b.generate("full", reqs)).map((r) => r.text)).toEqual(full);
      expect((await b.generate("rank1", reqs)).map((r) => r.text)).toEqual(rank1);
      // the fine-tune and its rank-1 part really change answers (otherwise the comparison proves little)
      expect(rank1).not.toEqual(base);
    } finally {
      await subject.close();
    }
    child.kill("SIGTERM");
    expect((await exited(child)).code).toBe(0);
  }, 120_000);

  it("rejects bad flags with exit 2 and a message naming the flag", () => {
    const r = spawnSync(process.execPath, [cli, "serve", "--model", fx.modelDir, "--adapter", "no-equals-sign"], { encoding: "utf8" });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--adapter: expected NAME=DIR/);
    const r2 = spawnSync(process.execPath, [cli, "serve", "--model", fx.modelDir, "--port", "99999"], { encoding: "utf8" });
    expect(r2.status).toBe(2);
    const r3 = spawnSync(process.execPath, [cli, "serve", "--model", `${fx.root}/missing`, "--port", "0"], { encoding: "utf8" });
    expect(r3.status).toBe(2);
  });

  it("a server killed mid-suite makes the backend fail fast with a BackendError, never hang", async () => {
    const { child, url } = await startServe(["--model", fx.modelDir, "--adapter", `full=${fx.adapterDir}`, "--adapter", `rank1=${fx.adapterDir}`]);
    const b = await createOpenAIBackend({ url, models: {}, concurrency: 2, timeoutMs: 10_000, rank: 1, maxRetries: 2, contrast: false });
    const reqs = Array.from({ length: 40 }, (_, i) => req(`k${i}`, `question number ${i}`, 24));
    let done = 0;
    const t0 = Date.now();
    const run = b.generate("full", reqs, (d) => {
      done = d;
      if (d === 2) child.kill("SIGKILL");
    });
    const err = await run.catch((e) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err.message).toMatch(/connection|ECONNREFUSED|ECONNRESET|socket/i);
    expect(done).toBeLessThan(reqs.length);
    expect(Date.now() - t0).toBeLessThan(30_000);
  }, 60_000);
});
