/**
 * The precision a subject is loaded at (`--precision`, `engine.precision`), decided before any
 * weight is read: the base's config.json, the adapter's factor sizes and the work ahead give
 * the memory estimate (estimate.ts) that `auto` chooses by; an explicit precision is checked
 * against the installed ONNX Runtime. `auto` prints its choice and why.
 */
import { join } from "node:path";
import { openCheckpoint } from "../io/checkpoint";
import { openAdapter } from "../io/peft";
import { log } from "../progress";
import type { Device } from "../linalg/ort";
import { parseModelConfig, type ModelConfig } from "./config";
import { InputError } from "../errors";
import {
  AUTO_HEADROOM,
  availableMemory,
  decidePrecision,
  estimateMemory,
  estimateTime,
  gib,
  measureSpeed,
  type MemoryEstimate,
  type PrecisionDecision,
  type SubjectShape,
  type TimeEstimate,
  type Workload,
} from "./estimate";
import { withModelPrefix } from "./names";
import { unsupportedReason, type Precision, type PrecisionChoice } from "./precision";
import { MAX_BATCH } from "./model";

/**
 * The work assumed when the caller states none (generate, logits, serve): a full batch at a
 * context of 2048 tokens — a long chat turn — so the KV cache is not left out of the choice.
 */
export const DEFAULT_WORKLOAD: Readonly<Workload> = Object.freeze({ batch: MAX_BATCH, context: 2048 });

export interface SubjectPrecisionOptions {
  model: string;
  adapter?: string;
  finetuned?: string;
  rank?: number;
  precision?: PrecisionChoice;
  workload?: Workload;
  device?: Device;
  /** the flag or config key to name in errors (default --precision) */
  where?: string;
  /** serve: every variant held beside the base (instead of adapter/finetuned/rank) */
  served?: ServedVariant[];
}

/** One variant `serve` holds beside the base: an adapter or a fine-tune, whole or truncated to rank `rank`. */
export interface ServedVariant {
  kind: "adapter" | "finetuned";
  dir: string;
  rank?: number;
}

/** float32 parameters of an adapter's factors: each module at its own rank, plus `extraRank` more (rank-k variants). */
async function adapterParams(dir: string, rankOf: (moduleRank: number) => number): Promise<number> {
  const adapter = await openAdapter(dir);
  try {
    let params = 0;
    for (const name of adapter.moduleNames()) {
      const m = adapter.moduleInfo(name);
      params += rankOf(m.rank) * (m.inFeatures + m.outFeatures);
    }
    return params;
  } finally {
    await adapter.close();
  }
}

/** float32 parameters of rank-k factors of every decoder linear. */
function rankFactorParams(c: ModelConfig, k: number): number {
  const { hiddenSize: H, numHeads: nH, numKvHeads: nKV, headDim: D, intermediateSize: I } = c;
  return c.numLayers * (k * (H + nH * D) + 2 * k * (H + nKV * D) + k * (nH * D + H) + 2 * k * (H + I) + k * (I + H));
}

/**
 * The base's config and the subject's shape beside it, read without any weight: a scan's
 * adapter (full + rank-k factors) or fine-tune (a second copy at worst, plus rank-k factors),
 * or every variant `serve` holds (`served`).
 */
export async function subjectShape(opts: Pick<SubjectPrecisionOptions, "model" | "adapter" | "finetuned" | "rank" | "served">): Promise<{ config: ModelConfig; shape: SubjectShape; fileBytes: number }> {
  const base = withModelPrefix(await openCheckpoint(opts.model));
  let config: ModelConfig;
  let fileBytes = 0;
  try {
    config = parseModelConfig(base.config, join(opts.model, "config.json"));
    for (const n of base.names()) fileBytes += base.info(n)!.byteLength;
  } finally {
    await base.close();
  }
  if (opts.served && opts.served.length > 0) {
    let loraParams = 0;
    let fullCopies = 0;
    for (const v of opts.served) {
      if (v.kind === "adapter") loraParams += await adapterParams(v.dir, (r) => Math.min(r, v.rank ?? r));
      else if (v.rank !== undefined) loraParams += rankFactorParams(config, v.rank);
      else fullCopies++;
    }
    return { config, shape: { kind: fullCopies > 0 ? "full" : "lora", loraParams, fullCopies }, fileBytes };
  }
  if (opts.adapter) {
    const k = opts.rank ?? 0;
    return { config, shape: { kind: "lora", loraParams: await adapterParams(opts.adapter, (r) => r + k) }, fileBytes };
  }
  if (opts.finetuned) return { config, shape: { kind: "full", loraParams: rankFactorParams(config, opts.rank ?? 0) }, fileBytes };
  return { config, shape: { kind: "base" }, fileBytes };
}

/** Decide the subject's precision (auto: logged with its reason); InputError when none fits or the asked one cannot run. */
export async function decideSubjectPrecision(opts: SubjectPrecisionOptions): Promise<PrecisionDecision> {
  const choice = opts.precision ?? "auto";
  const { config, shape } = await subjectShape(opts);
  const decision = await decidePrecision(choice, config, shape, opts.workload ?? DEFAULT_WORKLOAD, { device: opts.device, where: opts.where });
  if (choice === "auto") log(decision.reason);
  return decision;
}

/** One precision's row of an estimate. */
export interface PrecisionRow {
  precision: Precision;
  memory: MemoryEstimate;
  /** absent when the precision cannot run here (`unsupported`) or nothing was measured */
  time?: TimeEstimate;
  fits: boolean;
  /** why the installed ONNX Runtime cannot run it */
  unsupported?: string;
}

export interface SubjectEstimate {
  config: ModelConfig;
  shape: SubjectShape;
  fileBytes: number;
  workload: Workload;
  available: { bytes: number; source: string };
  /** bytes `auto` may use (AUTO_HEADROOM of the available memory) */
  budget: number;
  rows: PrecisionRow[];
  /** the choice the run will make; undefined when nothing fits (`problem` says why) */
  decision?: PrecisionDecision;
  problem?: InputError;
}

/**
 * Memory and time of running the subject at each precision on this machine (estimate.ts), and
 * the precision `choice` resolves to. Time needs a short measurement (measureSpeed, ~0.1–0.5 s
 * per precision, cached per process); `measure: false` skips it.
 */
export async function estimateSubject(opts: SubjectPrecisionOptions & { threads?: number; measure?: boolean }): Promise<SubjectEstimate> {
  const { config, shape, fileBytes } = await subjectShape(opts);
  const work = opts.workload ?? DEFAULT_WORKLOAD;
  const available = availableMemory();
  const budget = AUTO_HEADROOM * available.bytes;
  const rows: PrecisionRow[] = [];
  for (const p of ["f32", "int8", "int4"] as Precision[]) {
    const memory = estimateMemory(config, p, shape, work);
    const unsupported = (await unsupportedReason(p, opts.device)) ?? undefined;
    const time = unsupported || opts.measure === false ? undefined : estimateTime(config, await measureSpeed(p, config, { device: opts.device, threads: opts.threads }), work, fileBytes);
    rows.push({ precision: p, memory, time, fits: memory.bytes <= budget, unsupported });
  }
  const est: SubjectEstimate = { config, shape, fileBytes, workload: work, available, budget, rows };
  try {
    est.decision = await decidePrecision(opts.precision ?? "auto", config, shape, work, { device: opts.device, where: opts.where, available });
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    est.problem = err;
  }
  return est;
}

const minutes = (s: number) => (s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);

/**
 * The one line a scan prints first: what each precision needs here and which one runs, e.g.
 * `estimate: f32 31.9 GiB (no), int8 9.1 GiB ~42 min, int4 6.0 GiB ~30 min; 14.2 GiB free memory → int8`.
 */
export function estimateLine(e: SubjectEstimate): string {
  const cells = e.rows.map((r) => {
    if (r.unsupported) return `${r.precision} unavailable`;
    const t = r.time ? ` ~${minutes(r.time.loadSeconds + r.time.runSeconds)}` : "";
    return `${r.precision} ${gib(r.memory.bytes)}${r.fits ? t : " (does not fit)"}`;
  });
  const chosen = e.decision ? ` → ${e.decision.precision}` : " → nothing fits";
  return `estimate: ${cells.join(", ")}; ${gib(e.available.bytes)} ${e.available.source}${chosen}`;
}
