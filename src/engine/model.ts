/**
 * A loaded decoder: one set of base weights, ONNX sessions built from the config, and
 * variants that are views over the base weights (overrides for a full fine-tune's changed
 * tensors, LoRA factors for adapters). Runs prefill/decode steps with a KV cache, batched
 * generation with left padding, sampling, and contrastive decoding.
 */
import { InputError, BackendError } from "../errors";
import type { LoraModule, TensorSource } from "../io/types";
import type { ChatMessage, SamplingOptions, ContrastOptions } from "../backends/backend";
import { ort, createSession, type Device } from "../linalg/ort";
import { ropeInvFreq, type ModelConfig } from "./config";
import { buildDecoderGraph, IO, LORA_TARGETS, W, modulePath, type LoraTarget } from "./graph";
import { lookupEmbeddings, weightRecipes, type WeightSet } from "./weights";
import type { TextTokenizer } from "./tokenizer";
import { argmax, logSoftmax, sampleToken, seededRandom, topKIndices } from "./sampling";

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
}

export interface LoadedModel {
  readonly config: ModelConfig;
  readonly tokenizer: TextTokenizer;
  addLoraVariant(name: string, modules: LoraModule[]): void;
  addCheckpointVariant(name: string, ckpt: TensorSource & { config?: Record<string, unknown>; dir?: string }): Promise<void>;
  variants(): string[];
  logits(ids: number[], variant?: string): Promise<Float32Array[]>;
  generate(requests: GenerateRequest[], variant: string, onProgress?: GenerateProgress): Promise<GenerateResult[]>;
  contrastiveGenerate(requests: GenerateRequest[], opts: ContrastOptions & { full?: string; base?: string }, onProgress?: GenerateProgress): Promise<GenerateResult[]>;
  /** start step-wise decoding of prompts (token ids, left-padded internally) on a variant */
  openStream(prompts: number[][], variant?: string): Promise<DecodeStream>;
  close(): Promise<void>;
}

export interface EngineOptions {
  device?: Device;
  threads?: number;
  /** most rows decoded together (default MAX_BATCH) */
  maxBatch?: number;
}

/**
 * Rows decoded together. Decode is bound by reading the weights once per step, so batching
 * up to ~8 rows is nearly free; beyond that prompt padding and KV copies start to cost.
 */
export const MAX_BATCH = 8;

/** Additive mask value for hidden positions: exp() of it underflows to exactly 0 in float32. */
const MASK_NEG = -1e30;

type Feed = Record<string, ort.Tensor>;

interface Variant {
  name: string;
  /** graph input name → tensor (base tensors shared, not copied) */
  weights: Map<string, { data: Float32Array; dims: number[] }>;
  embed?: Float32Array;
  /** LoRA inputs (la/lb per targeted module), undefined for plain variants */
  lora?: Map<string, { data: Float32Array; dims: number[] }>;
  feed?: Feed;
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
  private sessions = new Map<"plain" | "lora", Promise<ort.InferenceSession>>();
  private variantMap = new Map<string, Variant>();
  private readonly invFreq: Float64Array;
  private readonly maxBatch: number;
  /** zero rank-1 LoRA factors for modules a LoRA variant does not target, shared by shape */
  private zeroLora = new Map<string, { data: Float32Array; dims: number[] }>();

  constructor(
    readonly config: ModelConfig,
    private readonly base: WeightSet,
    private readonly tok: TextTokenizer | undefined,
    private readonly where: string,
    private readonly opts: EngineOptions = {},
  ) {
    this.invFreq = ropeInvFreq(config);
    this.maxBatch = Math.max(1, opts.maxBatch ?? MAX_BATCH);
    this.variantMap.set("base", { name: "base", weights: base.tensors, embed: base.embed });
  }

  get tokenizer(): TextTokenizer {
    if (!this.tok) throw new InputError("no tokenizer.json: text generation needs the tokenizer files", this.where);
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
   * A LoRA variant: base weights plus x·Aᵀ·(s·B)ᵀ on each named module. Factors are
   * transposed once here (adapter-sized copies); base weights are shared.
   */
  addLoraVariant(name: string, modules: LoraModule[]): void {
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
      if (!m.A.every(Number.isFinite) || !m.B.every(Number.isFinite)) throw new InputError(`LoRA module '${m.name}' has non-finite values`);
      const at = new Float32Array(inF * m.rank);
      for (let r = 0; r < m.rank; r++) for (let i = 0; i < inF; i++) at[i * m.rank + r] = m.A[r * inF + i]!;
      const bt = new Float32Array(m.rank * outF);
      for (let o = 0; o < outF; o++) for (let r = 0; r < m.rank; r++) bt[r * outF + o] = m.scale * m.B[o * m.rank + r]!;
      const prevA = lora.get(W.loraA(l, t));
      if (prevA) throw new InputError(`LoRA module '${m.name}' given twice`);
      lora.set(W.loraA(l, t), { data: at, dims: [inF, m.rank] });
      lora.set(W.loraB(l, t), { data: bt, dims: [m.rank, outF] });
    }
    for (let l = 0; l < cfg.numLayers; l++) {
      for (const t of LORA_TARGETS) {
        if (lora.has(W.loraA(l, t))) continue;
        const [outF, inF] = this.linearShape(t);
        lora.set(W.loraA(l, t), this.zeros([inF, 1]));
        lora.set(W.loraB(l, t), this.zeros([1, outF]));
      }
    }
    this.variantMap.set(name, { name, weights: this.base.tensors, embed: this.base.embed, lora });
  }

  private zeros(dims: number[]): { data: Float32Array; dims: number[] } {
    const key = dims.join("x");
    let z = this.zeroLora.get(key);
    if (!z) this.zeroLora.set(key, (z = { data: new Float32Array(dims[0]! * dims[1]!), dims }));
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
   * A variant from another checkpoint of the same shape (a full fine-tune). Only tensors
   * that differ from the base are kept; identical ones are shared with the base.
   */
  async addCheckpointVariant(name: string, ckpt: TensorSource & { dir?: string }): Promise<void> {
    const where = ckpt.dir ?? name;
    const weights = new Map(this.base.tensors);
    for (const r of weightRecipes(this.config)) {
      const data = await r.build({ src: ckpt, where });
      const baseT = this.base.tensors.get(r.name)!;
      if (!sameValues(data, baseT.data)) weights.set(r.name, { data, dims: r.dims });
    }
    let embed = this.base.embed;
    if (embed) {
      const e = await ckpt.read("model.embed_tokens.weight");
      if (e.length !== embed.length) throw new InputError(`tensor 'model.embed_tokens.weight' does not match the base model's shape`, where);
      if (!sameValues(e, embed)) embed = e;
    }
    this.variantMap.set(name, { name, weights, embed });
  }

  private session(kind: "plain" | "lora"): Promise<ort.InferenceSession> {
    let s = this.sessions.get(kind);
    if (!s) {
      s = createSession(buildDecoderGraph(this.config, { lora: kind === "lora" }), { device: this.opts.device, threads: this.opts.threads });
      this.sessions.set(kind, s);
    }
    return s;
  }

  private feedOf(v: Variant): Feed {
    if (v.feed) return v.feed;
    const feed: Feed = {};
    for (const [k, t] of v.weights) feed[k] = new ort.Tensor("float32", t.data, t.dims);
    for (const [k, t] of v.lora ?? []) feed[k] = new ort.Tensor("float32", t.data, t.dims);
    v.feed = feed;
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
    const embedView: WeightSet = { tensors: v.weights, embed: v.embed };
    for (let b = 0; b < B; b++) {
      const row = tokens[b]!;
      if (row.length !== S) throw new BackendError("internal: ragged batch");
      const ids: number[] = [];
      const at: number[] = [];
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
        for (let i = 0; i < half; i++) {
          const a = pos * this.invFreq[i]!;
          const o = (b * S + s) * D;
          cos[o + i] = cos[o + i + half] = Math.cos(a);
          sin[o + i] = sin[o + i + half] = Math.sin(a);
        }
        // causal over real tokens; a padding query sees itself so its softmax stays finite
        const mrow = (b * S + s) * T;
        const q = P + s;
        for (let t = 0; t <= q; t++) if (st.real[b]![t] || t === q) mask[mrow + t] = 0;
      }
      for (let i = 0; i < ids.length; i++) lookupEmbeddings(embedView, cfg, [ids[i]!], embeds, at[i]!);
    }
    const feed: Feed = { ...this.feedOf(v) };
    feed[IO.embeds] = new ort.Tensor("float32", embeds, [B, S, H]);
    feed[IO.cos] = new ort.Tensor("float32", cos, [B, 1, S, D]);
    feed[IO.sin] = new ort.Tensor("float32", sin, [B, 1, S, D]);
    feed[IO.mask] = new ort.Tensor("float32", mask, [B, 1, 1, S, T]);
    feed[IO.gather] = new ort.Tensor("int64", BigInt64Array.from(gather, (g) => BigInt(g)), [gather.length]);
    for (let l = 0; l < cfg.numLayers; l++) {
      feed[IO.pastK(l)] = st.past[2 * l]!;
      feed[IO.pastV(l)] = st.past[2 * l + 1]!;
    }
    let out: ort.InferenceSession.OnnxValueMapType;
    try {
      out = await (await this.session(v.lora ? "lora" : "plain")).run(feed);
    } catch (err) {
      throw new BackendError(`onnxruntime failed: ${(err as Error).message}`, { cause: err });
    }
    for (let l = 0; l < cfg.numLayers; l++) {
      st.past[2 * l] = out[IO.presentK(l)] as ort.Tensor;
      st.past[2 * l + 1] = out[IO.presentV(l)] as ort.Tensor;
    }
    return (out[IO.logits] as ort.Tensor).data as Float32Array;
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

  async logits(ids: number[], variant = "base"): Promise<Float32Array[]> {
    if (ids.length === 0) throw new InputError("no token ids given", "--ids");
    this.checkIds(ids, "--ids");
    if (ids.length > this.config.maxPositionEmbeddings) {
      throw new InputError(`${ids.length} ids exceed max_position_embeddings ${this.config.maxPositionEmbeddings}`, "--ids");
    }
    const v = this.variant(variant);
    const st = this.newState(1);
    const flat = await this.step(v, st, [ids], ids.map((_, i) => i));
    const V = this.config.vocabSize;
    return ids.map((_, i) => flat.subarray(i * V, (i + 1) * V));
  }

  async openStream(prompts: number[][], variant = "base"): Promise<DecodeStream> {
    const v = this.variant(variant);
    if (prompts.length === 0 || prompts.some((p) => p.length === 0)) throw new InputError("openStream needs non-empty prompts");
    prompts.forEach((p) => this.checkIds(p, "prompt"));
    const V = this.config.vocabSize;
    const S = Math.max(...prompts.map((p) => p.length));
    const st = this.newState(prompts.length);
    const split = (flat: Float32Array) => prompts.map((_, b) => flat.slice(b * V, (b + 1) * V));
    const first = await this.step(v, st, prompts.map((p) => [...new Array<null>(S - p.length).fill(null), ...p]), prompts.map((_, b) => b * S + S - 1));
    const stream = {
      logits: split(first),
      next: async (tokens: number[]) => {
        if (tokens.length !== prompts.length) throw new InputError(`expected ${prompts.length} tokens, got ${tokens.length}`);
        this.checkIds(tokens, "token");
        stream.logits = split(await this.step(v, st, tokens.map((t) => [t]), tokens.map((_, b) => b)));
        return stream.logits;
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
    for (let i = 0; i < order.length; i += this.maxBatch) out.push(order.slice(i, i + this.maxBatch));
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
    const limit = (k: number) => Math.max(0, Math.min(maxNew[k]!, this.config.maxPositionEmbeddings - prompts[k]!.length));
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
    let tokens: (number | null)[][] = active.map((k) => [...new Array<null>(S - prompts[k]!.length).fill(null), ...prompts[k]!]);
    let gather = active.map((_, b) => b * S + S - 1);
    for (;;) {
      const logits: Float32Array[] = [];
      for (let i = 0; i < vs.length; i++) logits.push(await this.step(vs[i]!, states[i]!, tokens, gather));
      const keep: number[] = [];
      const next: number[] = [];
      active.forEach((k, b) => {
        const rows = logits.map((l) => l.subarray(b * V, (b + 1) * V));
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
      tokens = next.map((t) => [t]);
      gather = next.map((_, b) => b);
    }
    return results;
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) await (await s).release();
    this.sessions.clear();
  }
}

function sameValues(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return false;
  return true;
}

export { argmax };
