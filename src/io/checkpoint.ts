/**
 * Hugging Face checkpoint folders: config.json plus one `model.safetensors` or shards listed in
 * `model.safetensors.index.json` (`weight_map`: tensor name → shard file). Pickle checkpoints
 * (.bin/.pt/.ckpt/.pth) are refused, never opened: unpickling runs arbitrary code.
 */
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "../errors";
import { parseJsonText, readTextFile } from "./read-text";
import { SafetensorsFile } from "./safetensors";
import type { Checkpoint, TensorInfo } from "./types";
import { pathExists } from "./fs-util";

/** JSON files we read (configs, shard indexes, tokenizers) stay far below this; a larger one is not what we think it is. */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

export const CONFIG_FILE = "config.json";
export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";
/** File names that hold pickled weights; their presence without safetensors gets a conversion hint. */
const PICKLE_FILE = /\.(bin|pt|pth|ckpt)$/i;
const SAFETENSORS_HINT =
  "convert it to safetensors first (e.g. `model.save_pretrained(dir, safe_serialization=True)` in transformers); delta-audit never unpickles weights";

/** Read and parse a JSON file with one-line errors: missing, not a file, too large, too deep, not JSON. */
export async function readJsonFile(path: string, maxBytes = MAX_JSON_BYTES): Promise<unknown> {
  return parseJsonText(await readTextFile(path, maxBytes), path);
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** A checkpoint over one or more opened safetensors shards; each tensor name maps to exactly one shard. */
class ShardedCheckpoint implements Checkpoint {
  constructor(
    readonly dir: string,
    readonly config: Record<string, unknown>,
    private readonly shards: SafetensorsFile[],
    private readonly where: Map<string, SafetensorsFile>,
    private readonly order: string[],
  ) {}

  names(): string[] {
    return [...this.order];
  }

  info(name: string): TensorInfo | undefined {
    return this.where.get(name)?.info(name);
  }

  private shardOf(name: string): SafetensorsFile {
    const f = this.where.get(name);
    if (!f) throw new InputError(`no tensor named ${JSON.stringify(name)}`, this.dir);
    return f;
  }

  read(name: string): Promise<Float32Array> {
    return this.shardOf(name).read(name);
  }

  readRaw(name: string): Promise<Uint8Array> {
    return this.shardOf(name).readRaw(name);
  }

  readRows(name: string, rowStart: number, rowCount: number): Promise<Float32Array> {
    return this.shardOf(name).readRows(name, rowStart, rowCount);
  }

  async close(): Promise<void> {
    await Promise.all(this.shards.map((s) => s.close()));
  }
}

/** A shard file name from an index: a plain file name in the same folder (untrusted input must not point elsewhere). */
function checkShardName(shard: unknown, tensor: string, indexPath: string): string {
  if (typeof shard !== "string" || shard.length === 0) {
    throw new InputError(`weight_map[${JSON.stringify(tensor)}] is not a file name`, indexPath);
  }
  if (shard.includes("/") || shard.includes("\\") || shard === "." || shard === "..") {
    throw new InputError(`weight_map[${JSON.stringify(tensor)}] = ${JSON.stringify(shard)} is not a plain file name in the checkpoint folder`, indexPath);
  }
  if (!shard.endsWith(".safetensors")) {
    throw new InputError(`weight_map[${JSON.stringify(tensor)}] = ${JSON.stringify(shard)} is not a .safetensors file`, indexPath);
  }
  return shard;
}

/**
 * What is wrong with a path the user named as a folder, in words that tell a typo ("does not
 * exist") from a wrong pick ("is not a folder"); undefined when it is a folder.
 */
export async function folderProblem(path: string): Promise<string | undefined> {
  try {
    return (await stat(path)).isDirectory() ? undefined : "is not a folder";
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // ENOTDIR: a parent on the path is a file; a dangling symlink is ENOENT too
    return code === "ENOENT" || code === "ENOTDIR" ? "does not exist" : `cannot be read (${code ?? String(e)})`;
  }
}

/**
 * Open a Hugging Face checkpoint folder: parses config.json and validates the single file or
 * every shard of the index (each shard exists and holds every tensor mapped to it).
 */
export async function openCheckpoint(dir: string): Promise<Checkpoint> {
  const problem = await folderProblem(dir);
  if (problem) throw new InputError(`${problem}; a model folder holds config.json and *.safetensors`, dir);
  const configPath = join(dir, CONFIG_FILE);
  if (!(await pathExists(configPath))) throw new InputError(`no ${CONFIG_FILE} (not a Hugging Face checkpoint folder?)`, dir);
  const config = await readJsonFile(configPath);
  if (!isPlainObject(config)) throw new InputError("is not a JSON object", configPath);

  // a single file wins over an index when both exist, as in transformers' loader
  const single = join(dir, SINGLE_FILE);
  if (await pathExists(single)) {
    const f = await SafetensorsFile.open(single);
    const where = new Map(f.names().map((n) => [n, f] as const));
    return new ShardedCheckpoint(dir, config, [f], where, f.names());
  }
  const indexPath = join(dir, INDEX_FILE);
  if (await pathExists(indexPath)) return openSharded(dir, config, indexPath);

  const entries = await readdir(dir);
  const shards = entries.filter((e) => e.endsWith(".safetensors"));
  if (shards.length > 0) {
    throw new InputError(`has ${shards[0]} but neither ${SINGLE_FILE} nor ${INDEX_FILE} (which lists the shards)`, dir);
  }
  const pickles = entries.filter((e) => PICKLE_FILE.test(e));
  if (pickles.length > 0) throw new InputError(`holds only pickled weights (${pickles[0]}); ${SAFETENSORS_HINT}`, dir);
  throw new InputError(`no ${SINGLE_FILE} or ${INDEX_FILE}`, dir);
}

async function openSharded(dir: string, config: Record<string, unknown>, indexPath: string): Promise<Checkpoint> {
  const index = await readJsonFile(indexPath);
  if (!isPlainObject(index) || !isPlainObject(index.weight_map)) throw new InputError("has no weight_map object", indexPath);
  const weightMap = index.weight_map as Record<string, unknown>;
  const byShard = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(weightMap)) {
    const name = checkShardName(shard, tensor, indexPath);
    const list = byShard.get(name) ?? [];
    list.push(tensor);
    byShard.set(name, list);
  }
  if (byShard.size === 0) throw new InputError("weight_map is empty", indexPath);

  const opened: SafetensorsFile[] = [];
  try {
    const where = new Map<string, SafetensorsFile>();
    const order: string[] = [];
    for (const [shard, tensors] of byShard) {
      const path = join(dir, shard);
      if (!(await pathExists(path))) throw new InputError(`lists shard ${shard}, which is missing from the folder`, indexPath);
      const f = await SafetensorsFile.open(path);
      opened.push(f);
      const mapped = new Set(tensors);
      for (const t of tensors) {
        if (!f.info(t)) throw new InputError(`maps tensor ${JSON.stringify(t)} to ${shard}, which does not contain it`, indexPath);
      }
      // tensors of a shard in its file order; those the index does not map are not part of the checkpoint
      for (const t of f.names()) {
        if (mapped.has(t)) {
          where.set(t, f);
          order.push(t);
        }
      }
    }
    return new ShardedCheckpoint(dir, config, opened, where, order);
  } catch (err) {
    await Promise.all(opened.map((f) => f.close().catch(() => undefined)));
    throw err;
  }
}

/** `model.layers.N.` (also `…layers.N.` under a prefix, and GPT-style `h.N.` / `blocks.N.`): a decoder layer. */
const LAYER_RE = /(?:^|\.)(?:layers|h|blocks)\.(\d+)\./;

/**
 * Names of the linear modules inside decoder layers: 2-D `*.weight` tensors under
 * `model.layers.N.`, returned without the `.weight` suffix (the module name PEFT uses).
 */
export function linearModuleNames(ckpt: { names(): string[]; info(name: string): TensorInfo | undefined }): string[] {
  const out: string[] = [];
  for (const name of ckpt.names()) {
    if (!name.endsWith(".weight") || !LAYER_RE.test(name)) continue;
    if (ckpt.info(name)?.shape.length !== 2) continue;
    out.push(name.slice(0, -".weight".length));
  }
  return out;
}

/** Module types the spectrum summary groups by. */
export type ModuleType = "q" | "k" | "v" | "o" | "gate" | "up" | "down" | "other";

/** Last name component → type, for Llama/Mistral/Qwen (`q_proj`…), Mixtral experts (`w1/w2/w3`) and a few common aliases. */
const TYPE_BY_LEAF: Readonly<Record<string, ModuleType>> = Object.freeze({
  q_proj: "q", query: "q", wq: "q",
  k_proj: "k", key: "k", wk: "k",
  v_proj: "v", value: "v", wv: "v",
  o_proj: "o", out_proj: "o", wo: "o",
  gate_proj: "gate", w1: "gate",
  up_proj: "up", w3: "up",
  down_proj: "down", w2: "down",
});

/** Classify a module name (with or without `.weight`) into its type and decoder-layer index (-1 outside layers). */
export function moduleType(name: string): { type: ModuleType; layer: number } {
  const base = name.endsWith(".weight") ? name.slice(0, -".weight".length) : name;
  const leaf = base.slice(base.lastIndexOf(".") + 1);
  const m = LAYER_RE.exec(`${base}.`);
  return { type: TYPE_BY_LEAF[leaf] ?? "other", layer: m ? Number(m[1]) : -1 };
}

/**
 * Tensors indexed by token id, one row per vocabulary entry: the input embedding and the output
 * head (Llama / Mistral / Qwen names, under any prefix). A fine-tune that adds tokens grows
 * exactly these by the same number of rows (transformers' resize_token_embeddings).
 */
const VOCABULARY_TENSOR_RE = /(?:^|\.)(?:embed_tokens|lm_head)\.weight$/;

/** Whether `name` is a vocabulary-indexed tensor (see VOCABULARY_TENSOR_RE). */
export function isVocabularyTensor(name: string): boolean {
  return VOCABULARY_TENSOR_RE.test(name);
}
