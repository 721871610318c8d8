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
  /** staging buffers (reused across segments so loading leaves no garbage behind) */
  pool?: StagingPool;
}

/**
 * Reusable staging arrays for segment weights. ORT copies initializers when a session is
 * created, so the next segment (same shapes) can overwrite the same buffers instead of
 * allocating fresh ones and leaving hundreds of MB for the garbage collector.
 */
export class StagingPool {
  private free = new Map<number, Float32Array[]>();
  private lent: Float32Array[] = [];
  take(n: number): Float32Array {
    const a = this.free.get(n)?.pop() ?? new Float32Array(n);
    this.lent.push(a);
    return a;
  }
  /** everything lent is free again (call after the session that used it exists) */
  recycle(): void {
    for (const a of this.lent) {
      const list = this.free.get(a.length) ?? [];
      list.push(a);
      this.free.set(a.length, list);
    }
    this.lent = [];
  }
}

const alloc = (ctx: ReadContext, n: number) => (ctx.pool ? ctx.pool.take(n) : new Float32Array(n));

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
  // shapes first: a config.json that disagrees with the tensors (or claims absurd sizes) is an
  // input error, never a giant allocation
  names.forEach((name, i) => checkShape(ctx, name, [outs[i]!, inF]));
  const dst = alloc(ctx, inF * total);
  let off = 0;
  for (let i = 0; i < names.length; i++) {
    const name = names[i]!;
    const rows = outs[i]!;
    if (canReadRows(ctx.src)) {
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
  names.forEach((name, i) => checkShape(ctx, name, [outs[i]!]));
  const dst = alloc(ctx, outs.reduce((a, b) => a + b, 0));
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

/** How the model is cut into sessions (see graph.ts). */
export interface SegmentPlan {
  /** [first layer, layer count] of each layer segment */
  layers: [number, number][];
  /** vocabulary slices of the head: [first id, size] */
  head: [number, number][];
}

/**
 * Segment budget as a fraction of the model's float32 bytes: the load's peak is about the model
 * plus one segment's staging copy (and ORT's transient copy of it), so 5% keeps the peak near
 * 1.1× while a 0.5B model still runs in ~30 segments per step.
 */
const SEGMENT_FRACTION = 0.05;
/** Small models run as one segment: below this, session-run overhead outweighs any memory saving. */
const MIN_SEGMENT_BYTES = 64 << 20;

/** @param segmentBytes override of the per-segment budget (tests use it to force many segments) */
export function planSegments(cfg: ModelConfig, segmentBytes?: number): SegmentPlan {
  const { hiddenSize: H, numHeads: nH, numKvHeads: nKV, headDim: D, intermediateSize: I, vocabSize: V } = cfg;
  const layerBytes = 4 * (H * (nH + 2 * nKV) * D + nH * D * H + 3 * H * I + 2 * H);
  const headBytes = 4 * H * V;
  const total = layerBytes * cfg.numLayers + headBytes + (cfg.tieWordEmbeddings ? 0 : headBytes);
  const budget = segmentBytes ?? Math.max(MIN_SEGMENT_BYTES, SEGMENT_FRACTION * total);
  const perSeg = Math.max(1, Math.floor(budget / layerBytes));
  const layers: [number, number][] = [];
  for (let l = 0; l < cfg.numLayers; l += perSeg) layers.push([l, Math.min(perSeg, cfg.numLayers - l)]);
  const slices = Math.max(1, Math.ceil(headBytes / budget));
  const size = Math.ceil(V / slices);
  const head: [number, number][] = [];
  for (let v = 0; v < V; v += size) head.push([v, Math.min(size, V - v)]);
  return { layers, head };
}

/** Weight recipes of one layer. */
export function layerRecipes(cfg: ModelConfig, l: number): WeightRecipe[] {
  const { hiddenSize: H, numHeads: nH, numKvHeads: nKV, headDim: D, intermediateSize: I } = cfg;
  const out: WeightRecipe[] = [];
  const vec = (name: string, src: string, n: number) =>
    out.push({ name, dims: [n], sources: [src], build: (ctx) => readShaped(ctx, src, [n]) });
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
  return out;
}

/** The checkpoint tensor the head multiplies by (the embedding when tied). */
export const headTensorName = (cfg: ModelConfig) => (cfg.tieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");

/** Weight recipes of one head slice: the final norm and lm_head rows [v0, v0+size) transposed. */
export function headRecipes(cfg: ModelConfig, slice: number, v0: number, size: number): WeightRecipe[] {
  const H = cfg.hiddenSize;
  const head = headTensorName(cfg);
  return [
    { name: W.norm, dims: [H], sources: ["model.norm.weight"], build: (ctx) => readShaped(ctx, "model.norm.weight", [H]) },
    {
      name: W.lmHeadSlice(slice),
      dims: [H, size],
      sources: [head],
      build: async (ctx) => {
        checkShape(ctx, head, [cfg.vocabSize, H]);
        const dst = alloc(ctx, H * size);
        const chunk = Math.max(1, Math.floor(STREAM_CHUNK_BYTES / (4 * H)));
        for (let r0 = 0; r0 < size; r0 += chunk) {
          const n = Math.min(chunk, size - r0);
          transposeInto(await readRowsOf(ctx.src, head, v0 + r0, n, cfg.vocabSize), n, H, dst, size, r0);
        }
        return dst;
      },
    },
  ];
}

/** Rows of a tensor: streamed when the reader can, else sliced from a full read. */
async function readRowsOf(src: TensorSource, name: string, r0: number, n: number, rows: number): Promise<Float32Array> {
  if (canReadRows(src)) return src.readRows(name, r0, n);
  const all = await src.read(name);
  const per = all.length / rows;
  return all.slice(r0 * per, (r0 + n) * per);
}

/** Build every recipe into a name → weight map. */
export async function buildWeights(recipes: WeightRecipe[], ctx: ReadContext): Promise<Map<string, { data: Float32Array; dims: number[] }>> {
  const m = new Map<string, { data: Float32Array; dims: number[] }>();
  for (const r of recipes) m.set(r.name, { data: await r.build(ctx), dims: r.dims });
  return m;
}

/** Whether two sources hold identical values for `name` (compared in row chunks when possible). */
export async function sameTensor(a: TensorSource, b: TensorSource, name: string): Promise<boolean> {
  const ia = a.info(name);
  const ib = b.info(name);
  if (!ia || !ib) return !ia && !ib;
  if (ia.shape.join("x") !== ib.shape.join("x")) return false;
  const rows = ia.shape.length === 0 ? 1 : ia.shape[0]!;
  const per = ia.shape.slice(1).reduce((x, y) => x * y, 1);
  const chunk = Math.max(1, Math.floor(STREAM_CHUNK_BYTES / (4 * Math.max(1, per))));
  if (!canReadRows(a) || !canReadRows(b) || ia.shape.length === 0) return sameValues(await a.read(name), await b.read(name));
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    if (!sameValues(await a.readRows(name, r0, n), await b.readRows(name, r0, n))) return false;
  }
  return true;
}

export function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

/**
 * Token embedding rows. With a streaming checkpoint the rows are read from the file on demand
 * (the table is often the largest tensor, and with tied embeddings the head already holds a
 * packed copy inside ORT); otherwise the whole table is kept in memory.
 */
export class EmbeddingTable {
  private constructor(
    private readonly H: number,
    private readonly table?: Float32Array,
    private readonly src?: RowReader,
  ) {}

  static async open(cfg: ModelConfig, ctx: ReadContext, opts: { stream: boolean }): Promise<EmbeddingTable> {
    const name = "model.embed_tokens.weight";
    checkShape(ctx, name, [cfg.vocabSize, cfg.hiddenSize]);
    if (opts.stream && canReadRows(ctx.src)) return new EmbeddingTable(cfg.hiddenSize, undefined, ctx.src);
    return new EmbeddingTable(cfg.hiddenSize, await ctx.src.read(name));
  }

  /** Write the embeddings of ids[i] at row rowsAt[i] of `out` ([n, H] row-major). */
  async lookup(ids: number[], rowsAt: number[], out: Float32Array): Promise<void> {
    const H = this.H;
    if (this.table) {
      ids.forEach((id, i) => out.set(this.table!.subarray(id * H, (id + 1) * H), rowsAt[i]! * H));
      return;
    }
    // each distinct id once; the reads run concurrently on libuv's file-system pool
    const unique = [...new Set(ids)];
    const rows = await Promise.all(unique.map((id) => this.src!.readRows("model.embed_tokens.weight", id, 1)));
    const byId = new Map(unique.map((id, i) => [id, rows[i]!] as const));
    for (let i = 0; i < ids.length; i++) out.set(byId.get(ids[i]!)!, rowsAt[i]! * H);
  }
}
