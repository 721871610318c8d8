/**
 * Graph weights at a precision: the recipes of weights.ts, with the linear weights (q/k/v,
 * o, gate/up, down, each lm_head slice) replaced by block-quantized ones when the precision
 * says so (precision.ts). Quantized weights are built row chunk by row chunk straight from the
 * checkpoint's [out, in] rows — a BF16/F16 tensor is decoded a chunk at a time and never
 * exists whole in float32, nor is it transposed — into buffers from the segment's staging
 * pool, which ORT copies (and pre-packs) when the session is created.
 */
import { InputError } from "../errors";
import type { TensorSource } from "../io/types";
import type { ModelConfig } from "./config";
import { W, type AnyGraphWeight } from "./graph";
import type { WeightPlan } from "./precision";
import { allocQuantBuffers, quantizeRowsInto, type QuantScheme } from "./quantize";
import { buildWeights, headTensorName, type ReadContext, type WeightRecipe } from "./weights";

/**
 * Rows decoded per read while quantizing: 8 MiB of float32 bounds the transient copy (the
 * codes it becomes are 4–8× smaller) while keeping reads large enough to stream at disk speed.
 */
const QUANT_CHUNK_BYTES = 8 << 20;

type RowReader = { readRows(name: string, rowStart: number, rowCount: number): Promise<Float32Array> };
const canReadRows = (src: TensorSource): src is TensorSource & RowReader => typeof (src as Partial<RowReader>).readRows === "function";

function checkMatrix(ctx: ReadContext, name: string, rows: number, cols: number): void {
  const info = ctx.src.info(name);
  if (!info) throw new InputError(`missing tensor '${name}'`, ctx.where);
  if (info.shape.length !== 2 || info.shape[0] !== rows || info.shape[1] !== cols) {
    throw new InputError(`tensor '${name}' has shape [${info.shape.join(",")}], expected [${rows},${cols}]`, ctx.where);
  }
}

/**
 * Quantize rows [r0, r0+count) of each named [rows_i, K] tensor, stacked in order, into one
 * [N, K] matrix (N = Σ count_i): fused q/k/v and gate/up are stacked output rows.
 */
async function quantizeStacked(ctx: ReadContext, parts: { name: string; rows: number; r0: number; count: number }[], K: number, s: QuantScheme) {
  for (const p of parts) checkMatrix(ctx, p.name, p.rows, K);
  const N = parts.reduce((a, p) => a + p.count, 0);
  const buf = allocQuantBuffers(K, N, s, (n) => (ctx.pool ? ctx.pool.take(n) : new Float32Array(n)));
  const chunk = Math.max(1, Math.floor(QUANT_CHUNK_BYTES / (4 * K)));
  let row = 0;
  for (const p of parts) {
    if (canReadRows(ctx.src)) {
      for (let r = 0; r < p.count; r += chunk) {
        const n = Math.min(chunk, p.count - r);
        quantizeRowsInto(await ctx.src.readRows(p.name, p.r0 + r, n), n, K, s, buf, row + r);
      }
    } else {
      const all = await ctx.src.read(p.name);
      quantizeRowsInto(all.subarray(p.r0 * K, (p.r0 + p.count) * K), p.count, K, s, buf, row);
    }
    row += p.count;
  }
  return { K, N, scheme: s, ...buf };
}

/** The graph names of a layer's linear weights (their recipes list the fused sources in order). */
function isLayerLinear(name: string): boolean {
  return /^L\d+\.(qkv|o|gu|down)$/.test(name);
}

/** A layer linear recipe ([in, Σout] fused, sources [out_i, in] each) rebuilt as its quantized form. */
function quantizedLinear(r: WeightRecipe, s: QuantScheme): (ctx: ReadContext) => Promise<AnyGraphWeight> {
  const K = r.dims[0]!;
  return async (ctx) => {
    const parts = r.sources.map((name) => {
      const info = ctx.src.info(name);
      if (!info) throw new InputError(`missing tensor '${name}'`, ctx.where);
      const rows = info.shape[0] ?? 0;
      return { name, rows, r0: 0, count: rows };
    });
    const quant = await quantizeStacked(ctx, parts, K, s);
    if (quant.N !== r.dims[1]) throw new InputError(`tensors ${r.sources.join(", ")} hold ${quant.N} output rows, expected ${r.dims[1]}`, ctx.where);
    return { quant, dims: r.dims };
  };
}

/** Build a layer segment's recipes at a precision: float32 where the plan says nothing. */
export async function buildLayerWeights(recipes: WeightRecipe[], ctx: ReadContext, plan: WeightPlan): Promise<Map<string, AnyGraphWeight>> {
  if (!plan.linear) return buildWeights(recipes, ctx);
  const out = new Map<string, AnyGraphWeight>();
  for (const r of recipes) {
    out.set(r.name, isLayerLinear(r.name) ? await quantizedLinear(r, plan.linear)(ctx) : { data: await r.build(ctx), dims: r.dims });
  }
  return out;
}

/** Build a head slice's recipes (final norm + lm_head rows [v0, v0+size)) at a precision. */
export async function buildHeadWeights(cfg: ModelConfig, recipes: WeightRecipe[], ctx: ReadContext, plan: WeightPlan, slice: number, v0: number, size: number): Promise<Map<string, AnyGraphWeight>> {
  if (!plan.head) return buildWeights(recipes, ctx);
  const out = new Map<string, AnyGraphWeight>();
  const head = headTensorName(cfg);
  for (const r of recipes) {
    if (r.name === W.lmHeadSlice(slice)) {
      const quant = await quantizeStacked(ctx, [{ name: head, rows: cfg.vocabSize, r0: v0, count: size }], cfg.hiddenSize, plan.head);
      out.set(r.name, { quant, dims: r.dims });
    } else {
      out.set(r.name, { data: await r.build(ctx), dims: r.dims });
    }
  }
  return out;
}
