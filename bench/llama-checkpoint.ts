/**
 * Llama-family checkpoints with random weights, generated for the precision benchmark: the
 * Llama-3.1-8B shape (BF16 on disk, ~16 GB) and smaller ones of the same family, each with a
 * rank-16 LoRA on all seven projections of every layer. Generated tensor by tensor in chunks
 * (SafetensorsWriter), so writing even the 8B one needs no more memory than a chunk; shards of
 * at most SHARD_BYTES like a Hub checkpoint.
 *
 *   node --import tsx bench/llama-checkpoint.ts --shape 8b|3b|1b|small|tiny [--out DIR]
 */
import { existsSync } from "node:fs";
import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SafetensorsWriter } from "../src/io/safetensors";
import { writeAdapter } from "../src/io/peft";
import type { LoraModule } from "../src/io/types";

export interface LlamaShape {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  vocab_size: number;
  tie_word_embeddings: boolean;
}

/** Shapes by name: 8b is Llama-3.1-8B's config; 3b and 1b Llama-3.2's; small and tiny run anywhere. */
export const SHAPES: Readonly<Record<string, LlamaShape>> = Object.freeze({
  "8b": { hidden_size: 4096, intermediate_size: 14336, num_hidden_layers: 32, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256, tie_word_embeddings: false },
  "3b": { hidden_size: 3072, intermediate_size: 8192, num_hidden_layers: 28, num_attention_heads: 24, num_key_value_heads: 8, vocab_size: 128256, tie_word_embeddings: true },
  "1b": { hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16, num_attention_heads: 32, num_key_value_heads: 8, vocab_size: 128256, tie_word_embeddings: true },
  small: { hidden_size: 1024, intermediate_size: 3584, num_hidden_layers: 8, num_attention_heads: 16, num_key_value_heads: 4, vocab_size: 32000, tie_word_embeddings: false },
  tiny: { hidden_size: 256, intermediate_size: 768, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 4096, tie_word_embeddings: false },
});

/** The rank of the generated adapter and the modules it adapts (all seven projections, as the issue asks). */
export const LORA_RANK = 16;
export const LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"] as const;

/** Hub-style shard size. */
const SHARD_BYTES = 5 * 2 ** 30;
/** Elements generated and encoded per write. */
const CHUNK = 1 << 22;

export function configJson(s: LlamaShape): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    ...s,
    rms_norm_eps: 1e-5,
    rope_theta: 500000,
    max_position_embeddings: 8192,
    hidden_act: "silu",
    torch_dtype: "bfloat16",
    bos_token_id: 1,
    eos_token_id: 2,
  };
}

interface Spec {
  name: string;
  shape: number[];
  /** uniform in ±scale; 0 = ones (norms) */
  scale: number;
}

function tensorSpecs(s: LlamaShape): Spec[] {
  const { hidden_size: H, intermediate_size: I, num_attention_heads: nH, num_key_value_heads: nKV, vocab_size: V } = s;
  const D = H / nH;
  const out: Spec[] = [{ name: "model.embed_tokens.weight", shape: [V, H], scale: 0.05 }];
  for (let l = 0; l < s.num_hidden_layers; l++) {
    const p = `model.layers.${l}`;
    out.push(
      { name: `${p}.input_layernorm.weight`, shape: [H], scale: 0 },
      { name: `${p}.self_attn.q_proj.weight`, shape: [nH * D, H], scale: 1 / Math.sqrt(H) },
      { name: `${p}.self_attn.k_proj.weight`, shape: [nKV * D, H], scale: 1 / Math.sqrt(H) },
      { name: `${p}.self_attn.v_proj.weight`, shape: [nKV * D, H], scale: 1 / Math.sqrt(H) },
      { name: `${p}.self_attn.o_proj.weight`, shape: [H, nH * D], scale: 1 / Math.sqrt(H) },
      { name: `${p}.post_attention_layernorm.weight`, shape: [H], scale: 0 },
      { name: `${p}.mlp.gate_proj.weight`, shape: [I, H], scale: 1 / Math.sqrt(H) },
      { name: `${p}.mlp.up_proj.weight`, shape: [I, H], scale: 1 / Math.sqrt(H) },
      { name: `${p}.mlp.down_proj.weight`, shape: [H, I], scale: 1 / Math.sqrt(I) },
    );
  }
  out.push({ name: "model.norm.weight", shape: [H], scale: 0 });
  if (!s.tie_word_embeddings) out.push({ name: "lm_head.weight", shape: [V, H], scale: 1 / Math.sqrt(H) });
  return out;
}

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** A fast seeded LCG filling chunks uniformly in ±scale. */
function filler(seed: number) {
  let x = seed >>> 0;
  return (out: Float32Array, scale: number) => {
    if (scale === 0) return out.fill(1);
    for (let i = 0; i < out.length; i++) {
      x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
      out[i] = (x / 2147483648 - 1) * scale;
    }
    return out;
  };
}

async function writeBase(dir: string, s: LlamaShape): Promise<void> {
  const specs = tensorSpecs(s);
  const shards: Spec[][] = [[]];
  let bytes = 0;
  for (const t of specs) {
    const b = 2 * numel(t.shape);
    if (bytes + b > SHARD_BYTES && shards[shards.length - 1]!.length > 0) {
      shards.push([]);
      bytes = 0;
    }
    shards[shards.length - 1]!.push(t);
    bytes += b;
  }
  const fill = filler(20240601);
  const chunk = new Float32Array(CHUNK);
  const weightMap: Record<string, string> = {};
  for (let i = 0; i < shards.length; i++) {
    const file = shards.length === 1 ? "model.safetensors" : `model-${String(i + 1).padStart(5, "0")}-of-${String(shards.length).padStart(5, "0")}.safetensors`;
    const w = await SafetensorsWriter.create(join(dir, file), shards[i]!.map((t) => ({ name: t.name, dtype: "BF16" as const, shape: t.shape })));
    for (const t of shards[i]!) {
      weightMap[t.name] = file;
      const n = numel(t.shape);
      for (let done = 0; done < n; done += CHUNK) {
        const part = chunk.subarray(0, Math.min(CHUNK, n - done));
        await w.write(t.name, fill(part, t.scale));
      }
    }
    await w.finish();
    process.stderr.write(`  wrote ${file}\n`);
  }
  if (shards.length > 1) await writeFile(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  await writeFile(join(dir, "config.json"), JSON.stringify(configJson(s), null, 2));
}

/** The rank-16 adapter's modules, generated one at a time (B small so the fine-tune is a perturbation). */
function* loraModules(s: LlamaShape): Generator<LoraModule> {
  const { hidden_size: H, intermediate_size: I, num_attention_heads: nH, num_key_value_heads: nKV } = s;
  const D = H / nH;
  const shapes: Record<string, [number, number]> = {
    q_proj: [nH * D, H], k_proj: [nKV * D, H], v_proj: [nKV * D, H], o_proj: [H, nH * D], gate_proj: [I, H], up_proj: [I, H], down_proj: [H, I],
  };
  const fill = filler(777);
  for (let l = 0; l < s.num_hidden_layers; l++) {
    for (const t of LORA_TARGETS) {
      const [out, inF] = shapes[t]!;
      const block = t === "gate_proj" || t === "up_proj" || t === "down_proj" ? "mlp" : "self_attn";
      yield {
        name: `model.layers.${l}.${block}.${t}`,
        rank: LORA_RANK,
        scale: 2,
        outFeatures: out,
        inFeatures: inF,
        A: fill(new Float32Array(LORA_RANK * inF), 1 / Math.sqrt(inF)),
        B: fill(new Float32Array(out * LORA_RANK), 0.01),
      };
    }
  }
}

export function loraParams(s: LlamaShape): number {
  let n = 0;
  for (const m of loraModules({ ...s, num_hidden_layers: 1 })) n += m.rank * (m.inFeatures + m.outFeatures);
  return n * s.num_hidden_layers;
}

/** `.cache/bench/llama-<shape>/{base,lora}`, generated once (atomically: a half-written folder is never reused). */
export async function ensureLlamaCheckpoint(shape: string, root = join(".cache", "bench")): Promise<{ base: string; lora: string }> {
  const s = SHAPES[shape];
  if (!s) throw new Error(`unknown shape '${shape}' (have ${Object.keys(SHAPES).join(", ")})`);
  const dir = join(root, `llama-${shape}`);
  const out = { base: join(dir, "base"), lora: join(dir, "lora") };
  if (existsSync(join(out.base, "config.json")) && existsSync(join(out.lora, "adapter_config.json"))) return out;
  const tmp = `${dir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(join(tmp, "base"), { recursive: true });
  process.stderr.write(`generating the ${shape}-shaped checkpoint in ${dir} (BF16, random weights) …\n`);
  await writeBase(join(tmp, "base"), s);
  await writeAdapter(join(tmp, "lora"), { r: LORA_RANK, lora_alpha: 2 * LORA_RANK, target_modules: [...LORA_TARGETS] }, loraModules(s));
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const at = process.argv.indexOf("--shape");
  const shape = at > 0 ? process.argv[at + 1]! : "tiny";
  const outAt = process.argv.indexOf("--out");
  const dirs = await ensureLlamaCheckpoint(shape, outAt > 0 ? process.argv[outAt + 1] : undefined);
  console.log(JSON.stringify(dirs));
}
