/**
 * A loaded decoder: the base weights inside a chain of ONNX Runtime sessions (layer segments,
 * then the head in vocabulary slices; see graph.ts), and variants that are views over them:
 * LoRA variants feed their factors into the same sessions, a full fine-tune gets its own
 * sessions only for segments whose weights differ. Runs chunked prefill and KV-cached decode
 * steps, batched generation with left padding, sampling, and contrastive decoding.
 */
import { join } from "node:path";
import { InputError, BackendError } from "../errors";
import type { LoraModule, TensorSource } from "../io/types";
import type { ChatMessage, SamplingOptions, ContrastOptions } from "../chat/types";
import { ort, createSession, type Device } from "../linalg/ort";
import { ropeInvFreq, type ModelConfig } from "./config";
import { buildHeadSegment, buildLayerSegment, IO, LORA_TARGETS, W, modulePath, type BuiltGraph, type LoraTarget } from "./graph";
import {
  EmbeddingTable,
  StagingPool,
  headRecipes,
  headTensorName,
  layerRecipes,
  planSegments,
  sameTensor,
  type ReadContext,
  type SegmentPlan,
} from "./weights";
import type { TextTokenizer } from "./tokenizer";
import { checkPrecision, weightPlan, type Precision } from "./precision";
import { buildHeadWeights, buildLayerWeights } from "./quantized-weights";
import { segmentBudget } from "./sizes";
import { logSoftmax, sampleToken, seededRandom, topKIndices } from "../chat/sampling";

export interface GenerateRequest {
  messages?: ChatMessage[];
  prompt?: string;
  promptIds?: number[];
  sampling: SamplingOptions;
}

export interface GenerateResult {
  text: string;
  /** generated token ids (the stop token excluded) */
  ids: number[];
  finishReason: "stop" | "length";
}

export type GenerateProgress = (done: number, total: number) => void;

/**
 * Step-wise decoding of a batch on one variant (KV-cached): `logits` holds each row's
 * next-token logits; `next(tokens)` appends one token per row and returns the new logits.
 */
export interface DecodeStream {
  readonly logits: Float32Array[];
  next(tokens: number[]): Promise<Float32Array[]>;
  /**
   * Keep only the listed rows (indices into the current rows, ascending), dropping the others'
   * KV cache so finished rows cost nothing; `logits` and `next` then speak of the kept rows.
   */
  retain(rows: number[]): void;
}

export interface LoadedModel {
  readonly config: ModelConfig;
  /** how the base weights are stored (precision.ts); every variant shares them */
  readonly precision: Precision;
  /** the checkpoint folder the base model was loaded from */
  readonly dir: string;
  readonly tokenizer: TextTokenizer;
  addLoraVariant(name: string, modules: LoraModule[]): void;
  addCheckpointVariant(name: string, ckpt: TensorSource & { config?: Record<string, unknown>; dir?: string }, opts?: CheckpointVariantOptions): Promise<CheckpointVariantLayout>;
  /**
   * A LoRA variant made of some modules of the LoRA variant `from` (those `keep` accepts, by layer
   * and module type such as "q_proj"), sharing its factors; returns how many modules it kept.
   * Layer attribution builds its variants so, without reading or copying any factor.
   */
  addSubsetVariant(name: string, from: string, keep: (layer: number, module: string) => boolean): number;
  /** forget a LoRA variant (requests already running on it finish); base and full checkpoints stay */
  removeVariant(name: string): void;
  variants(): string[];
  logits(ids: number[], variant?: string): Promise<Float32Array[]>;
  generate(requests: GenerateRequest[], variant: string, onProgress?: GenerateProgress): Promise<GenerateResult[]>;
  contrastiveGenerate(requests: GenerateRequest[], opts: ContrastOptions & { full?: string; base?: string }, onProgress?: GenerateProgress): Promise<GenerateResult[]>;
  /** start step-wise decoding of prompts (token ids, left-padded internally) on a variant */
  openStream(prompts: number[][], variant?: string): Promise<DecodeStream>;
  close(): Promise<void>;
}

export interface CheckpointVariantOptions {
  /**
   * Exact factors of some modules' ΔW (scale·B·A = W_ft − W_base): a segment whose every other
   * tensor equals the base's runs on the base's sessions with these as float32 side paths,
   * instead of holding a second copy of its weights (engine/full-delta.ts decides which).
   */
  deltas?: LoraModule[];
  /**
   * A second handle on the same checkpoint that the model keeps (and closes with itself): a
   * changed embedding table is then read row by row from it, as the base's is, instead of
   * being held whole in float32 (2.1 GB for Llama-3.1-8B). Without it the table is read whole,
   * since `ckpt` may close once this call returns.
   */
  reopen?: () => Promise<TensorSource & { close(): Promise<void> }>;
  /** tensors the caller has already found equal to the base's (full-delta.ts: ΔW = 0): not read again */
  sameAsBase?: ReadonlySet<string>;
}

/** How a checkpoint variant was laid out: which segments hold weights of their own. */
export interface CheckpointVariantLayout {
  segments: number;
  /** layer segments with sessions (and weights) of their own */
  ownSegments: number;
  /** modules run as base + exact ΔW factors */
  deltaModules: number;
  /** the head has sessions of its own (its norm or lm_head changed) */
  ownHead: boolean;
}

/** The layer index of a module path model.layers.N.… */
function moduleLayer(name: string): number {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? Number(m[1]) : -1;
}

export interface EngineOptions {
  device?: Device;
  threads?: number;
  /** bytes of weights per session segment (default: see planSegments) */
  segmentBytes?: number;
  /** let idle ORT threads spin (default off: segment sessions run in turn) */
  spinning?: boolean;
  /** how base weights are stored (default f32; a resolved choice: see precision.ts) */
  precision?: Precision;
}

/**
 * Rows generate() decodes together. Decode is bound by reading the weights once per step, so batching
 * up to ~8 rows is nearly free; beyond that prompt padding and KV copies start to cost.
 */
export const MAX_BATCH = 8;

/**
 * Prompt tokens per forward pass. The attention scores of a pass are batch × heads × chunk ×
 * context floats, so a 4k-token prompt in one piece would need gigabytes; 256 keeps a pass's
 * activations to tens of MB while still amortising the weight reads over many tokens.
 */
export const PREFILL_CHUNK = 256;

/** Additive mask value for hidden positions: exp() of it underflows to exactly 0 in float32. */
const MASK_NEG = -1e30;

type Feed = Record<string, ort.Tensor>;

interface Variant {
  name: string;
  /** one session per layer segment (shared with the base where the weights are the same) */
  layers: ort.InferenceSession[];
  /** one session per head vocabulary slice */
  head: ort.InferenceSession[];
  embed: EmbeddingTable;
  /** LoRA factors by input name; absent modules get zero rank-1 factors */
  lora?: Map<string, { data: Float32Array; dims: number[] }>;
  /** per layer segment: the LoRA feed (built once) */
  feeds?: Feed[];
  /** the folder of this variant's own weights (a full fine-tune); others run on the base's */
  source?: string;
}

/** Per-batch decoding state: the KV cache and which cache columns hold real tokens. */
interface BatchState {
  rows: number;
  past: ort.Tensor[];
  /** per row: 1 where the cache column is a real token, 0 for padding */
  real: number[][];
  /** per row: the position id of the next token */
  nextPos: number[];
}

export class DecoderModel implements LoadedModel {
  private variantMap = new Map<string, Variant>();
  private readonly invFreq: Float64Array;
  /** zero rank-1 LoRA factors for modules a variant does not adapt, shared by shape */
  private zeroLora = new Map<string, ort.Tensor>();
  private sessions: ort.InferenceSession[] = [];
  /** checkpoint handles variants read embedding rows from (CheckpointVariantOptions.reopen), closed with the model */
  private owned: { close(): Promise<void> }[] = [];

  private constructor(
    readonly config: ModelConfig,
    private readonly plan: SegmentPlan,
    private readonly tok: TextTokenizer | undefined,
    private readonly where: string,
    private readonly opts: EngineOptions,
    /** the base checkpoint, kept open for embedding rows and fine-tune comparisons */
    private readonly baseSrc: TensorSource,
    private readonly onClose?: () => Promise<void>,
  ) {
    this.invFreq = ropeInvFreq(config);
  }

  get dir(): string {
    return this.where;
  }

  get precision(): Precision {
    return this.opts.precision ?? "f32";
  }

  /**
   * Build the base model from a tensor source, one segment at a time: each segment's weights
   * are staged, handed to ORT (which copies and pre-packs them) and dropped before the next.
   * `src` stays open for embedding rows until close() (which calls `onClose`).
   */
  static async create(
    config: ModelConfig,
    src: TensorSource,
    tok: TextTokenizer | undefined,
    where: string,
    opts: EngineOptions = {},
    onClose?: () => Promise<void>,
  ): Promise<DecoderModel> {
    if (!config.tieWordEmbeddings && !src.info("lm_head.weight")) {
      throw new InputError(
        `missing tensor 'lm_head.weight' (tie_word_embeddings is false or absent in config.json, and transformers' default for ${config.modelType} is false)`,
        where,
      );
    }
    // a precision this ONNX Runtime cannot run (bf16 on the CPU build) is refused, never run as another
    if (opts.precision && opts.precision !== "f32") await checkPrecision(opts.precision, opts.device);
    // the layer count bounds the plan below: check the checkpoint has that many before planning
    const lastLayer = `model.layers.${config.numLayers - 1}.input_layernorm.weight`;
    if (!src.info(lastLayer)) {
      throw new InputError(`missing tensor '${lastLayer}' (config.json has num_hidden_layers ${config.numLayers})`, where);
    }
    // a quantized model is cut by its own bytes (sizes.ts segmentBudget): fewer session runs per step
    const m = new DecoderModel(config, planSegments(config, opts.segmentBytes ?? segmentBudget(config, opts.precision ?? "f32")), tok, where, opts, src, onClose);
    try {
      const ctx = { src, where, pool: new StagingPool() };
      // The head first: creating a session briefly holds ~3 copies of its weights (our staging,
      // ORT's copy, the pre-packed result), so the largest pieces load while little else is resident.
      const head: ort.InferenceSession[] = [];
      for (let i = 0; i < m.plan.head.length; i++) head.push(await m.headSession(ctx, i));
      const layers: ort.InferenceSession[] = [];
      ctx.pool = new StagingPool(); // the head's (larger) staging buffers are not reused by layers
      for (const [first, count] of m.plan.layers) layers.push(await m.layerSession(ctx, first, count));
      const embed = await EmbeddingTable.open(config, ctx, { stream: true });
      m.variantMap.set("base", { name: "base", layers, head, embed });
    } catch (err) {
      await m.close();
      throw err;
    }
    return m;
  }

  private async session(build: () => Promise<BuiltGraph>, pool?: StagingPool): Promise<ort.InferenceSession> {
    const g = await build();
    let s: ort.InferenceSession;
    try {
      // no per-session arena (~30 segment sessions would each keep their peak activations) and
      // no spinning (the segments run in turn; idle pools must not hold the cores)
      s = await createSession(g.model, {
        device: this.opts.device,
        threads: this.opts.threads,
        externalData: g.externalData,
        cpuMemArena: false,
        spinning: this.opts.spinning ?? false,
      });
    } catch (err) {
      if (err instanceof InputError) throw err;
      throw new BackendError(`onnxruntime could not create the decoder session: ${(err as Error).message}`, { cause: err });
    }
    this.sessions.push(s);
    pool?.recycle(); // ORT has copied the weights
    return s;
  }

  private async layerSession(ctx: ReadContext, first: number, count: number): Promise<ort.InferenceSession> {
    return this.session(async () => {
      const recipes = [];
      for (let l = first; l < first + count; l++) recipes.push(...layerRecipes(this.config, l));
      const w = await buildLayerWeights(recipes, ctx, weightPlan(this.precision));
      return buildLayerSegment(this.config, first, count, (n) => w.get(n)!);
    }, ctx.pool);
  }

  private async headSession(ctx: ReadContext, slice: number): Promise<ort.InferenceSession> {
    const [v0, size] = this.plan.head[slice]!;
    return this.session(async () => {
      const w = await buildHeadWeights(this.config, headRecipes(this.config, slice, v0, size), ctx, weightPlan(this.precision), slice, v0, size);
      return buildHeadSegment(this.config, slice, size, (n) => w.get(n)!);
    }, ctx.pool);
  }

  get tokenizer(): TextTokenizer {
    if (!this.tok) throw new InputError("not found: text generation needs the tokenizer", join(this.where, "tokenizer.json"));
    return this.tok;
  }

  variants(): string[] {
    return [...this.variantMap.keys()];
  }

  private variant(name: string): Variant {
    const v = this.variantMap.get(name);
    if (!v) throw new InputError(`unknown variant '${name}' (have ${this.variants().join(", ")})`);
    return v;
  }

  /**
   * A LoRA variant: the base sessions plus x·Aᵀ·(s·B)ᵀ on each named module. Factors are
   * transposed once here (adapter-sized copies); base weights are shared, not copied.
   */
  addLoraVariant(name: string, modules: LoraModule[]): void {
    if (name === "base") throw new InputError("the variant name 'base' is reserved for the base model");
    const base = this.variant("base");
    this.variantMap.set(name, { name, layers: base.layers, head: base.head, embed: base.embed, lora: this.loraFactors(modules) });
  }

  /** LoRA modules checked against the model's layers and transposed into the graph's factor inputs. */
  private loraFactors(modules: LoraModule[]): Map<string, { data: Float32Array; dims: number[] }> {
    const cfg = this.config;
    const targets = new Map<string, [number, LoraTarget]>();
    for (let l = 0; l < cfg.numLayers; l++) for (const t of LORA_TARGETS) targets.set(modulePath(l, t), [l, t]);
    const lora = new Map<string, { data: Float32Array; dims: number[] }>();
    for (const m of modules) {
      const hit = targets.get(m.name);
      if (!hit) throw new InputError(`LoRA module '${m.name}' is not a linear layer the engine can adapt (supported: q/k/v/o_proj, gate/up/down_proj)`);
      const [l, t] = hit;
      const [outF, inF] = this.linearShape(t);
      if (m.outFeatures !== outF || m.inFeatures !== inF) {
        throw new InputError(`LoRA module '${m.name}' is [${m.outFeatures},${m.inFeatures}], the model's layer is [${outF},${inF}]`);
      }
      if (m.rank < 1 || m.A.length !== m.rank * inF || m.B.length !== outF * m.rank) {
        throw new InputError(`LoRA module '${m.name}' has factors of the wrong size for rank ${m.rank}`);
      }
      if (!m.A.every(Number.isFinite) || !m.B.every(Number.isFinite) || !Number.isFinite(m.scale)) {
        throw new InputError(`LoRA module '${m.name}' has non-finite values`);
      }
      if (lora.has(W.loraA(l, t))) throw new InputError(`LoRA module '${m.name}' given twice`);
      const at = new Float32Array(inF * m.rank);
      for (let r = 0; r < m.rank; r++) for (let i = 0; i < inF; i++) at[i * m.rank + r] = m.A[r * inF + i]!;
      const bt = new Float32Array(m.rank * outF);
      for (let o = 0; o < outF; o++) for (let r = 0; r < m.rank; r++) bt[r * outF + o] = m.scale * m.B[o * m.rank + r]!;
      lora.set(W.loraA(l, t), { data: at, dims: [inF, m.rank] });
      lora.set(W.loraB(l, t), { data: bt, dims: [m.rank, outF] });
    }
    return lora;
  }

  addSubsetVariant(name: string, from: string, keep: (layer: number, module: string) => boolean): number {
    if (name === "base") throw new InputError("the variant name 'base' is reserved for the base model");
    const source = this.variant(from);
    // a checkpoint variant run partly as base + ΔW factors has `lora` too, but weights of its own as well
    if (!source.lora || source.source !== undefined) throw new InputError(`'${from}' is not a LoRA variant: only a LoRA variant's modules can be taken apart`);
    const lora = new Map<string, { data: Float32Array; dims: number[] }>();
    let kept = 0;
    for (let l = 0; l < this.config.numLayers; l++) {
      for (const t of LORA_TARGETS) {
        const a = source.lora.get(W.loraA(l, t));
        const b = source.lora.get(W.loraB(l, t));
        if (!a || !b || !keep(l, t)) continue;
        lora.set(W.loraA(l, t), a);
        lora.set(W.loraB(l, t), b);
        kept++;
      }
    }
    const base = this.variant("base");
    this.variantMap.set(name, { name, layers: base.layers, head: base.head, embed: base.embed, lora });
    return kept;
  }

  removeVariant(name: string): void {
    if (name === "base") throw new InputError("the base model cannot be removed");
    const v = this.variant(name);
    // a checkpoint variant owns sessions of its own; only side-path (LoRA) variants are views
    if (v.layers !== this.variant("base").layers) throw new InputError(`'${name}' is a fine-tuned checkpoint with weights of its own; only LoRA variants can be removed`);
    this.variantMap.delete(name);
  }

  private zeros(dims: number[]): ort.Tensor {
    const key = dims.join("x");
    let z = this.zeroLora.get(key);
    if (!z) this.zeroLora.set(key, (z = new ort.Tensor("float32", new Float32Array(dims[0]! * dims[1]!), dims)));
    return z;
  }

  private linearShape(t: LoraTarget): [number, number] {
    const { hiddenSize: H, numHeads: nH, numKvHeads: nKV, headDim: D, intermediateSize: I } = this.config;
    switch (t) {
      case "q_proj":
        return [nH * D, H];
      case "k_proj":
      case "v_proj":
        return [nKV * D, H];
      case "o_proj":
        return [H, nH * D];
      case "gate_proj":
      case "up_proj":
        return [I, H];
      case "down_proj":
        return [H, I];
    }
  }

  /**
   * A variant from another checkpoint of the same shape (a full fine-tune). Segments whose
   * source tensors are identical to the base reuse the base sessions; changed ones get their own.
   */
  async addCheckpointVariant(name: string, ckpt: TensorSource & { dir?: string }, opts: CheckpointVariantOptions = {}): Promise<CheckpointVariantLayout> {
    if (name === "base") throw new InputError("the variant name 'base' is reserved for the base model");
    const where = ckpt.dir ?? name;
    const cfg = this.config;
    const base = this.variant("base");
    const ctx = { src: ckpt, where, pool: new StagingPool() };
    // weights whose change is given exactly as factors: they run as side paths over the base
    const covered = new Set((opts.deltas ?? []).map((m) => `${m.name}.weight`));
    const unchanged = async (sources: string[], deltasCount = false) => {
      for (const t of sources) {
        if (!ckpt.info(t)) throw new InputError(`missing tensor '${t}'`, where);
        if ((deltasCount && covered.has(t)) || opts.sameAsBase?.has(t)) continue;
        if (!(await sameTensor(this.baseSrc, ckpt, t))) return false;
      }
      return true;
    };
    const layers: ort.InferenceSession[] = [];
    const onBase = new Set<number>();
    for (let i = 0; i < this.plan.layers.length; i++) {
      const [first, count] = this.plan.layers[i]!;
      const sources: string[] = [];
      for (let l = first; l < first + count; l++) for (const r of layerRecipes(cfg, l)) sources.push(...r.sources);
      if (await unchanged(sources, true)) {
        layers.push(base.layers[i]!);
        for (let l = first; l < first + count; l++) onBase.add(l);
      } else {
        layers.push(await this.layerSession(ctx, first, count));
      }
    }
    // a segment with its own sessions already holds the fine-tune's weights: its deltas are not added again
    const deltas = (opts.deltas ?? []).filter((m) => onBase.has(moduleLayer(m.name)));
    const lora = deltas.length > 0 ? this.loraFactors(deltas) : undefined;
    const headSame = await unchanged(["model.norm.weight", headTensorName(cfg)]);
    const head: ort.InferenceSession[] = [];
    for (let i = 0; i < this.plan.head.length; i++) head.push(headSame ? base.head[i]! : await this.headSession(ctx, i));
    // the fine-tune's handle may close after this call: a changed table streams from a handle
    // of the model's own, or is kept in memory
    const embedSame = await unchanged(["model.embed_tokens.weight"]);
    let embed = base.embed;
    if (!embedSame) {
      const own = opts.reopen ? await opts.reopen() : undefined;
      if (own) this.owned.push(own);
      embed = await EmbeddingTable.open(cfg, own ? { src: own, where } : ctx, { stream: own !== undefined });
    }
    this.variantMap.set(name, { name, layers, head, embed, source: ckpt.dir, lora });
    return {
      segments: this.plan.layers.length,
      ownSegments: layers.filter((s, i) => s !== base.layers[i]).length,
      deltaModules: deltas.length,
      ownHead: !headSame,
    };
  }

  /** LoRA feed of one layer segment for a variant (zero factors where not adapted). */
  private loraFeed(v: Variant, seg: number): Feed {
    v.feeds ??= [];
    const cached = v.feeds[seg];
    if (cached) return cached;
    const feed: Feed = {};
    const [first, count] = this.plan.layers[seg]!;
    for (let l = first; l < first + count; l++) {
      for (const t of LORA_TARGETS) {
        const a = v.lora?.get(W.loraA(l, t));
        const b = v.lora?.get(W.loraB(l, t));
        const [outF, inF] = this.linearShape(t);
        feed[W.loraA(l, t)] = a ? new ort.Tensor("float32", a.data, a.dims) : this.zeros([inF, 1]);
        feed[W.loraB(l, t)] = b ? new ort.Tensor("float32", b.data, b.dims) : this.zeros([1, outF]);
      }
    }
    v.feeds[seg] = feed;
    return feed;
  }

  private newState(rows: number): BatchState {
    const { numLayers, numKvHeads, headDim } = this.config;
    const past: ort.Tensor[] = [];
    for (let l = 0; l < 2 * numLayers; l++) past.push(new ort.Tensor("float32", new Float32Array(0), [rows, numKvHeads, 0, headDim]));
    return { rows, past, real: Array.from({ length: rows }, () => []), nextPos: new Array(rows).fill(0) };
  }

  /**
   * One forward step: `tokens[b]` are row b's new tokens (all rows the same length; null =
   * padding). Returns the logits of the flattened rows listed in `gather` (b·S + s).
   */
  private async step(v: Variant, st: BatchState, tokens: (number | null)[][], gather: number[]): Promise<Float32Array> {
    const cfg = this.config;
    const B = st.rows;
    const S = tokens[0]!.length;
    const H = cfg.hiddenSize;
    const D = cfg.headDim;
    const half = D / 2;
    const P = st.real[0]!.length;
    const T = P + S;
    const embeds = new Float32Array(B * S * H);
    const cos = new Float32Array(B * S * D);
    const sin = new Float32Array(B * S * D);
    const mask = new Float32Array(B * S * T).fill(MASK_NEG);
    const ids: number[] = [];
    const at: number[] = [];
    for (let b = 0; b < B; b++) {
      const row = tokens[b]!;
      if (row.length !== S) throw new BackendError("internal: ragged batch");
      for (let s = 0; s < S; s++) {
        const id = row[s];
        const real = id !== null && id !== undefined;
        st.real[b]!.push(real ? 1 : 0);
        let pos = 0;
        if (real) {
          ids.push(id);
          at.push(b * S + s);
          pos = st.nextPos[b]!++;
        }
        const o = (b * S + s) * D;
        for (let i = 0; i < half; i++) {
          const a = pos * this.invFreq[i]!;
          cos[o + i] = cos[o + i + half] = Math.cos(a);
          sin[o + i] = sin[o + i + half] = Math.sin(a);
        }
        // causal over real tokens; a padding query sees itself so its softmax stays finite
        const mrow = (b * S + s) * T;
        const q = P + s;
        for (let t = 0; t <= q; t++) if (st.real[b]![t] || t === q) mask[mrow + t] = 0;
      }
    }
    await v.embed.lookup(ids, at, embeds);
    const shared: Feed = {
      [IO.cos]: new ort.Tensor("float32", cos, [B, 1, S, D]),
      [IO.sin]: new ort.Tensor("float32", sin, [B, 1, S, D]),
      [IO.mask]: new ort.Tensor("float32", mask, [B, 1, 1, S, T]),
    };
    let hidden: ort.Tensor = new ort.Tensor("float32", embeds, [B, S, H]);
    try {
      for (let seg = 0; seg < this.plan.layers.length; seg++) {
        const [first, count] = this.plan.layers[seg]!;
        const feed: Feed = { ...shared, ...this.loraFeed(v, seg), [IO.hidden]: hidden };
        for (let l = first; l < first + count; l++) {
          feed[IO.pastK(l)] = st.past[2 * l]!;
          feed[IO.pastV(l)] = st.past[2 * l + 1]!;
        }
        const out = await v.layers[seg]!.run(feed);
        for (let l = first; l < first + count; l++) {
          st.past[2 * l] = out[IO.presentK(l)] as ort.Tensor;
          st.past[2 * l + 1] = out[IO.presentV(l)] as ort.Tensor;
        }
        hidden = out[IO.hiddenOut] as ort.Tensor;
      }
      if (gather.length === 0) return new Float32Array(0);
      const gatherT = new ort.Tensor("int64", BigInt64Array.from(gather, (g) => BigInt(g)), [gather.length]);
      const V = cfg.vocabSize;
      if (this.plan.head.length === 1) {
        return (await v.head[0]!.run({ [IO.hidden]: hidden, [IO.gather]: gatherT }))[IO.logits]!.data as Float32Array;
      }
      const logits = new Float32Array(gather.length * V);
      for (let i = 0; i < this.plan.head.length; i++) {
        const [v0, size] = this.plan.head[i]!;
        const part = (await v.head[i]!.run({ [IO.hidden]: hidden, [IO.gather]: gatherT }))[IO.logits]!.data as Float32Array;
        for (let r = 0; r < gather.length; r++) logits.set(part.subarray(r * size, (r + 1) * size), r * V + v0);
      }
      return logits;
    } catch (err) {
      if (err instanceof InputError || err instanceof BackendError) throw err;
      throw new BackendError(`onnxruntime failed: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Keep only `keep` rows of a batch (finished rows leave so they cost nothing). */
  private compact(st: BatchState, keep: number[]): BatchState {
    if (keep.length === st.rows) return st;
    const { numKvHeads, headDim } = this.config;
    const T = st.real[0]!.length;
    const block = numKvHeads * T * headDim;
    const past = st.past.map((t) => {
      const src = t.data as Float32Array;
      const dst = new Float32Array(keep.length * block);
      keep.forEach((b, i) => dst.set(src.subarray(b * block, (b + 1) * block), i * block));
      return new ort.Tensor("float32", dst, [keep.length, numKvHeads, T, headDim]);
    });
    return { rows: keep.length, past, real: keep.map((b) => st.real[b]!), nextPos: keep.map((b) => st.nextPos[b]!) };
  }

  private checkIds(ids: number[], where: string): void {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new InputError(`token id ${id} is outside the vocabulary [0, ${this.config.vocabSize})`, where);
      }
    }
  }

  /**
   * Run left-padded prompts through the model in chunks of PREFILL_CHUNK columns (attention
   * scores grow with chunk × context, so long prompts must not go in one piece). Returns the
   * logits of every position of row 0 ("all", for one row) or each row's last position ("last").
   */
  private async prefill(v: Variant, st: BatchState, rows: (number | null)[][], mode: "all" | "last"): Promise<Float32Array[]> {
    const V = this.config.vocabSize;
    const S = rows[0]!.length;
    const out: Float32Array[] = [];
    for (let c0 = 0; c0 < S; c0 += PREFILL_CHUNK) {
      const chunk = rows.map((r) => r.slice(c0, c0 + PREFILL_CHUNK));
      const n = chunk[0]!.length;
      const last = c0 + n >= S;
      const gather = mode === "all" ? chunk[0]!.map((_, s) => s) : last ? chunk.map((_, b) => b * n + n - 1) : [];
      const flat = await this.step(v, st, chunk, gather);
      for (let i = 0; i < gather.length; i++) out.push(flat.subarray(i * V, (i + 1) * V));
    }
    return out;
  }

  private contextReason(): string {
    const c = this.config;
    return c.slidingWindow !== null && c.slidingWindow < c.maxPositionEmbeddings ? ` (sliding_window ${c.slidingWindow}: longer contexts are not supported)` : " (max_position_embeddings)";
  }

  async logits(ids: number[], variant = "base"): Promise<Float32Array[]> {
    if (ids.length === 0) throw new InputError("no token ids given", "--ids");
    this.checkIds(ids, "--ids");
    if (ids.length > this.config.maxContext) {
      throw new InputError(`${ids.length} ids exceed the model's context of ${this.config.maxContext} tokens${this.contextReason()}`, "--ids");
    }
    const v = this.variant(variant);
    const st = this.newState(1);
    return this.prefill(v, st, [ids], "all");
  }

  async openStream(prompts: number[][], variant = "base"): Promise<DecodeStream> {
    const v = this.variant(variant);
    if (prompts.length === 0 || prompts.some((p) => p.length === 0)) throw new InputError("openStream needs non-empty prompts");
    prompts.forEach((p) => this.checkIds(p, "prompt"));
    if (prompts.some((p) => p.length > this.config.maxContext)) {
      throw new InputError(`a prompt exceeds the model's context of ${this.config.maxContext} tokens${this.contextReason()}`);
    }
    const S = Math.max(...prompts.map((p) => p.length));
    let st = this.newState(prompts.length);
    const V = this.config.vocabSize;
    const split = (flat: Float32Array) => Array.from({ length: st.rows }, (_, b) => flat.slice(b * V, (b + 1) * V));
    // every consumer samples from these rows: non-finite ones fail here, as in decodeLoop
    const finite = (rows: Float32Array[]) => {
      for (const row of rows) this.checkFinite(row, v);
      return rows;
    };
    const first = finite(await this.prefill(v, st, prompts.map((p) => [...new Array<null>(S - p.length).fill(null), ...p]), "last"));
    const stream = {
      logits: first,
      next: async (tokens: number[]) => {
        if (tokens.length !== st.rows) throw new InputError(`expected ${st.rows} tokens, got ${tokens.length}`);
        this.checkIds(tokens, "token");
        stream.logits = finite(split(await this.step(v, st, tokens.map((t) => [t]), tokens.map((_, b) => b))));
        return stream.logits;
      },
      retain: (rows: number[]) => {
        if (rows.length === 0 || rows.some((b, i) => !Number.isInteger(b) || b < 0 || b >= st.rows || (i > 0 && b <= rows[i - 1]!))) {
          throw new InputError(`retain needs ascending row indices in [0, ${st.rows})`);
        }
        st = this.compact(st, rows);
        stream.logits = rows.map((b) => stream.logits[b]!);
      },
    };
    return stream;
  }

  private promptIds(r: GenerateRequest): number[] {
    let ids: number[];
    if (r.promptIds) ids = r.promptIds;
    else if (r.messages) ids = this.tokenizer.applyChatTemplate(r.messages, { addGenerationPrompt: true });
    else if (r.prompt !== undefined) ids = this.tokenizer.encode(r.prompt, { addSpecialTokens: true });
    else throw new InputError("a generation request needs messages, prompt or promptIds");
    if (ids.length === 0) throw new InputError("empty prompt");
    this.checkIds(ids, "prompt");
    return ids;
  }

  private eosSet(): Set<number> {
    return new Set(this.tok ? this.tok.eosTokenIds : this.config.eosTokenIds);
  }

  private decodeText(ids: number[]): string {
    return this.tok ? this.tok.decode(ids, { skipSpecialTokens: true }) : "";
  }

  /** Order requests by prompt length so a batch pads little; results return in input order. */
  private batches(prompts: number[][]): number[][] {
    const order = prompts.map((_, i) => i).sort((a, b) => prompts[a]!.length - prompts[b]!.length || a - b);
    const out: number[][] = [];
    for (let i = 0; i < order.length; i += MAX_BATCH) out.push(order.slice(i, i + MAX_BATCH));
    return out;
  }

  async generate(requests: GenerateRequest[], variant: string, onProgress?: GenerateProgress): Promise<GenerateResult[]> {
    const v = this.variant(variant);
    const prompts = requests.map((r) => this.promptIds(r));
    const results: GenerateResult[] = new Array(requests.length);
    let done = 0;
    for (const group of this.batches(prompts)) {
      const choose = group.map((i) => {
        const rand = seededRandom(requests[i]!.sampling.seed);
        const s = requests[i]!.sampling;
        return (row: Float32Array) => sampleToken(row, s, rand);
      });
      const outs = await this.decodeLoop(
        [v],
        group.map((i) => prompts[i]!),
        group.map((i) => requests[i]!.sampling.maxNewTokens),
        (rows, k) => choose[k]!(rows[0]!),
        () => onProgress?.(++done, requests.length),
      );
      group.forEach((i, k) => (results[i] = outs[k]!));
    }
    return results;
  }

  /**
   * Contrastive decoding: at each step choose among the top-k tokens of `full` by
   * (1+α)·log p_full − α·log p_base (greedy at temperature 0, else sampled from the softmax
   * of those scores over the candidates).
   */
  async contrastiveGenerate(
    requests: GenerateRequest[],
    opts: ContrastOptions & { full?: string; base?: string },
    onProgress?: GenerateProgress,
  ): Promise<GenerateResult[]> {
    const vFull = this.variant(opts.full ?? "full");
    const vBase = this.variant(opts.base ?? "base");
    if (!(opts.alpha >= 0) || !Number.isFinite(opts.alpha)) throw new InputError(`contrast alpha must be ≥ 0, got ${opts.alpha}`);
    const prompts = requests.map((r) => this.promptIds(r));
    const results: GenerateResult[] = new Array(requests.length);
    let done = 0;
    for (const group of this.batches(prompts)) {
      const choose = group.map((i) => {
        const s = requests[i]!.sampling;
        const rand = seededRandom(s.seed);
        return (rows: Float32Array[]) => {
          const lf = logSoftmax(rows[0]!);
          const lb = logSoftmax(rows[1]!);
          const cand = topKIndices(lf, opts.topK);
          const scores = cand.map((t) => (1 + opts.alpha) * lf[t]! - opts.alpha * lb[t]!);
          return cand[sampleToken(scores, s, rand)]!;
        };
      });
      const outs = await this.decodeLoop(
        [vFull, vBase],
        group.map((i) => prompts[i]!),
        group.map((i) => requests[i]!.sampling.maxNewTokens),
        (rows, k) => choose[k]!(rows),
        () => onProgress?.(++done, requests.length),
      );
      group.forEach((i, k) => (results[i] = outs[k]!));
    }
    return results;
  }

  /**
   * Batched decoding over one or more variants in lockstep (each with its own KV cache).
   * Prompts are left-padded; `pick(rows, k)` chooses request k's next token from its logits
   * under each variant. Finished rows are dropped from the batch.
   */
  private async decodeLoop(
    vs: Variant[],
    prompts: number[][],
    maxNew: number[],
    pick: (rows: Float32Array[], k: number) => number,
    onRowDone: () => void,
  ): Promise<GenerateResult[]> {
    const V = this.config.vocabSize;
    const eos = this.eosSet();
    const n = prompts.length;
    const gen: number[][] = prompts.map(() => []);
    const results: GenerateResult[] = new Array(n);
    const S = Math.max(...prompts.map((p) => p.length));
    let active = prompts.map((_, k) => k);
    const limit = (k: number) => Math.max(0, Math.min(maxNew[k]!, this.config.maxContext - prompts[k]!.length));
    // a prompt that fills the context can produce nothing: the caller's input, not an empty answer
    const full = prompts.findIndex((p) => p.length >= this.config.maxContext);
    if (full >= 0) {
      throw new InputError(`a prompt of ${prompts[full]!.length} tokens leaves no room to generate in the model's context of ${this.config.maxContext} tokens${this.contextReason()}`, join(this.where, "config.json"));
    }
    const finish = (k: number, reason: "stop" | "length") => {
      results[k] = { text: this.decodeText(gen[k]!), ids: gen[k]!, finishReason: reason };
      onRowDone();
    };
    // rows that may not generate anything finish before any compute
    active = active.filter((k) => {
      if (limit(k) > 0) return true;
      finish(k, "length");
      return false;
    });
    if (active.length === 0) return results;
    let states = vs.map(() => this.newState(active.length));
    const padded: (number | null)[][] = active.map((k) => [...new Array<null>(S - prompts[k]!.length).fill(null), ...prompts[k]!]);
    // per variant, per row: the next-token logits
    let rowLogits: Float32Array[][] = [];
    for (let i = 0; i < vs.length; i++) rowLogits.push(await this.prefill(vs[i]!, states[i]!, padded, "last"));
    for (;;) {
      const keep: number[] = [];
      const next: number[] = [];
      active.forEach((k, b) => {
        const rows = rowLogits.map((l) => l[b]!);
        rows.forEach((row, i) => this.checkFinite(row, vs[i]!));
        const t = pick(rows, k);
        if (eos.has(t)) return finish(k, "stop");
        gen[k]!.push(t);
        if (gen[k]!.length >= limit(k)) return finish(k, "length");
        keep.push(b);
        next.push(t);
      });
      if (keep.length === 0) break;
      if (keep.length < active.length) {
        states = states.map((s) => this.compact(s, keep));
        active = keep.map((b) => active[b]!);
      }
      const tokens = next.map((t) => [t]);
      const gather = next.map((_, b) => b);
      rowLogits = [];
      for (let i = 0; i < vs.length; i++) {
        const flat = await this.step(vs[i]!, states[i]!, tokens, gather);
        rowLogits.push(next.map((_, b) => flat.subarray(b * V, (b + 1) * V)));
      }
    }
    return results;
  }

  /**
   * NaN or ±Inf logits come from non-finite (or overflowing) weights: sampling from them would
   * silently yield token 0 or nothing. Named by the folder whose tensors the variant runs on.
   */
  private checkFinite(row: Float32Array, v: Variant): void {
    for (let i = 0; i < row.length; i++) {
      if (!Number.isFinite(row[i]!)) {
        throw new InputError(`variant '${v.name}' yields non-finite logits (${row[i]}): the model's weights hold NaN/Inf or overflow`, v.source ?? this.where);
      }
    }
  }

  private closed = false;

  /** Release every session and the base checkpoint (idempotent). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const all = this.sessions;
    this.sessions = [];
    for (const s of all) await s.release().catch(() => undefined);
    for (const h of this.owned.splice(0)) await h.close().catch(() => undefined);
    this.variantMap.clear();
    await this.onClose?.();
  }
}

