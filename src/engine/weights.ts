/**
 * Checkpoint tensors → the graph's weight inputs (see graph.ts): linear weights transposed
 * to [in, out], q/k/v and gate/up fused column-wise, everything float32 (F16/BF16 are
 * decoded by io/). The embedding table stays outside the graph (row lookup in JS); with
 * tied embeddings only its transpose (the lm_head input) is kept, and lookups read columns.
 */
import { InputError } from "../errors";
import type { TensorSource } from "../io/types";
import type { ModelConfig } from "./config";
import { W, modulePath, type LoraTarget } from "./graph";

/** Graph weight inputs by name, plus the embedding lookup. */
export interface WeightSet {
  /** graph input name → [data, dims] */
  tensors: Map<string, { data: Float32Array; dims: number[] }>;
  /** token embeddings: [V,H] row-major, or undefined when tied (then read from lm_head [H,V]) */
  embed?: Float32Array;
}

/** Tile size of the blocked transpose: 64×64 floats = 16 KiB per tile fits L1 on both sides. */
const TRANSPOSE_TILE = 64;

/**
 * Write the transpose of `src` ([rows, cols] row-major) into columns
 * [colOffset, colOffset+rows) of `dst` ([cols, dstCols] row-major).
 */
export function transposeInto(src: Float32Array, rows: number, cols: number, dst: Float32Array, dstCols: number, colOffset: number): void {
  for (let r0 = 0; r0 < rows; r0 += TRANSPOSE_TILE) {
    const r1 = Math.min(rows, r0 + TRANSPOSE_TILE);
    for (let c0 = 0; c0 < cols; c0 += TRANSPOSE_TILE) {
      const c1 = Math.min(cols, c0 + TRANSPOSE_TILE);
      for (let r = r0; r < r1; r++) {
        const srow = r * cols;
        const dcol = colOffset + r;
        for (let c = c0; c < c1; c++) dst[c * dstCols + dcol] = src[srow + c]!;
      }
    }
  }
}

export interface ReadContext {
  src: TensorSource;
  /** where the tensors come from, for error messages */
  where: string;
}

function checkShape(ctx: ReadContext, name: string, shape: number[]): void {
  const info = ctx.src.info(name);
  if (!info) throw new InputError(`missing tensor '${name}'`, ctx.where);
  if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
    throw new InputError(`tensor '${name}' has shape [${info.shape.join(",")}], expected [${shape.join(",")}]`, ctx.where);
  }
}

async function readShaped(ctx: ReadContext, name: string, shape: number[]): Promise<Float32Array> {
  checkShape(ctx, name, shape);
  return ctx.src.read(name);
}

/** Rows decoded per chunk when a reader can stream rows: bounds the float32 staging copy to ~32 MB. */
const STREAM_CHUNK_BYTES = 32 << 20;

type RowReader = { readRows(name: string, rowStart: number, rowCount: number): Promise<Float32Array> };
const canReadRows = (src: unknown): src is RowReader => typeof (src as Partial<RowReader>).readRows === "function";

/**
 * Fuse several Linear weights ([out_i, in] each) into one transposed [in, Σout_i]. Readers
 * that can stream rows (io/ checkpoints) are read in chunks, so loading a large matrix (a
 * 150k-row embedding) never holds a second full float32 copy of it.
 */
async function fusedTransposed(ctx: ReadContext, names: string[], outs: number[], inF: number): Promise<Float32Array> {
  const total = outs.reduce((a, b) => a + b, 0);
  const dst = new Float32Array(inF * total);
  let off = 0;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const rows = outs[i]!;
    if (canReadRows(ctx.src)) {
      checkShape(ctx, name, [rows, inF]);
      const chunk = Math.max(1, Math.floor(STREAM_CHUNK_BYTES / (4 * inF)));
      for (let r0 = 0; r0 < rows; r0 += chunk) {
        const n = Math.min(chunk, rows - r0);
        transposeInto(await ctx.src.readRows(name, r0, n), n, inF, dst, total, off + r0);
      }
    } else {
      transposeInto(await readShaped(ctx, name, [rows, inF]), rows, inF, dst, total, off);
    }
    off += rows;
  }
  return dst;
}

async function fusedBias(ctx: ReadContext, names: string[], outs: number[]): Promise<Float32Array> {
  const dst = new Float32Array(outs.reduce((a, b) => a + b, 0));
  let off = 0;
  for (let i = 0; i < names.length; i++) {
    dst.set(await readShaped(ctx, names[i]!, [outs[i]!]), off);
    off += outs[i]!;
  }
  return dst;
}

/**
 * One graph weight: its name, dims, and how to produce it from a checkpoint. Listing them
 * once lets the base load and a full fine-tune's load share the same recipe.
 */
export interface WeightRecipe {
  name: string;
  dims: number[];
  /** checkpoint tensors it is made of (for "is this tensor different" checks) */
  sources: string[];
  build(ctx: ReadContext): Promise<Float32Array>;
}

export function weightRecipes(cfg: ModelConfig): WeightRecipe[] {
  const { hiddenSize: H, numHeads: nH, numKvHeads: nKV, headDim: D, intermediateSize: I, vocabSize: V } = cfg;
  const out: WeightRecipe[] = [];
  const vec = (name: string, src: string, n: number) =>
    out.push({ name, dims: [n], sources: [src], build: (ctx) => readShaped(ctx, src, [n]) });
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    vec(W.ln1(l), `${p}.input_layernorm.weight`, H);
    vec(W.ln2(l), `${p}.post_attention_layernorm.weight`, H);
    const qkv = (["q_proj", "k_proj", "v_proj"] as LoraTarget[]).map((t) => modulePath(l, t));
    const qkvOuts = [nH * D, nKV * D, nKV * D];
    const qkvW = qkv.map((m) => `${m}.weight`);
    out.push({ name: W.qkv(l), dims: [H, nH * D + 2 * nKV * D], sources: qkvW, build: (ctx) => fusedTransposed(ctx, qkvW, qkvOuts, H) });
    if (cfg.qkvBias) {
      const qkvB = qkv.map((m) => `${m}.bias`);
      out.push({ name: W.qkvBias(l), dims: [nH * D + 2 * nKV * D], sources: qkvB, build: (ctx) => fusedBias(ctx, qkvB, qkvOuts) });
    }
    if (cfg.qkNorm) {
      vec(W.qNorm(l), `${p}.self_attn.q_norm.weight`, D);
      vec(W.kNorm(l), `${p}.self_attn.k_norm.weight`, D);
    }
    const oW = `${modulePath(l, "o_proj")}.weight`;
    out.push({ name: W.o(l), dims: [nH * D, H], sources: [oW], build: (ctx) => fusedTransposed(ctx, [oW], [H], nH * D) });
    if (cfg.oBias) vec(W.oBias(l), `${modulePath(l, "o_proj")}.bias`, H);
    const gu = (["gate_proj", "up_proj"] as LoraTarget[]).map((t) => modulePath(l, t));
    const guW = gu.map((m) => `${m}.weight`);
    out.push({ name: W.gateUp(l), dims: [H, 2 * I], sources: guW, build: (ctx) => fusedTransposed(ctx, guW, [I, I], H) });
    const dW = `${modulePath(l, "down_proj")}.weight`;
    out.push({ name: W.down(l), dims: [I, H], sources: [dW], build: (ctx) => fusedTransposed(ctx, [dW], [H], I) });
    if (cfg.mlpBias) {
      const guB = gu.map((m) => `${m}.bias`);
      out.push({ name: W.gateUpBias(l), dims: [2 * I], sources: guB, build: (ctx) => fusedBias(ctx, guB, [I, I]) });
      vec(W.downBias(l), `${modulePath(l, "down_proj")}.bias`, H);
    }
  }
  vec(W.norm, "model.norm.weight", H);
  const head = cfg.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight";
  out.push({ name: W.lmHead, dims: [H, V], sources: [head], build: (ctx) => fusedTransposed(ctx, [head], [V], H) });
  return out;
}

/** Read every weight of `cfg` from `src` (one tensor at a time: peak = weights + one tensor). */
export async function loadWeightSet(cfg: ModelConfig, ctx: ReadContext, onTensor?: () => void): Promise<WeightSet> {
  if (!cfg.tieWordEmbeddings && !ctx.src.info("lm_head.weight")) {
    throw new InputError("missing tensor 'lm_head.weight' (config.json sets tie_word_embeddings false)", ctx.where);
  }
  const tensors = new Map<string, { data: Float32Array; dims: number[] }>();
  for (const r of weightRecipes(cfg)) {
    tensors.set(r.name, { data: await r.build(ctx), dims: r.dims });
    onTensor?.();
  }
  const embed = cfg.tieWordEmbeddings ? undefined : await readShaped(ctx, "model.embed_tokens.weight", [cfg.vocabSize, cfg.hiddenSize]);
  return { tensors, embed };
}

/** Copy the embeddings of `ids` into `out` at row offsets (row-major [n, H]). */
export function lookupEmbeddings(ws: WeightSet, cfg: ModelConfig, ids: ArrayLike<number>, out: Float32Array, outOffsetRows = 0): void {
  const H = cfg.hiddenSize;
  const V = cfg.vocabSize;
  if (ws.embed) {
    for (let i = 0; i < ids.length; i++) out.set(ws.embed.subarray(ids[i]! * H, (ids[i]! + 1) * H), (outOffsetRows + i) * H);
    return;
  }
  // tied: the table is stored transposed as lm_head [H, V]; an embedding is a column
  const t = ws.tensors.get(W.lmHead)!.data;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    const base = (outOffsetRows + i) * H;
    for (let h = 0; h < H; h++) out[base + h] = t[h * V + id]!;
  }
}
