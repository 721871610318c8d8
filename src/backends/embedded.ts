/**
 * The embedded backend: the subject's variants run in-process by src/engine/ (ONNX Runtime).
 * Requests on one variant are batched by the engine (prompts of similar length together).
 */
import { BackendError, InputError } from "../errors";
import type { Device } from "../linalg/ort";
import { loadSubject } from "../engine/variants";
import type { LoadedModel, GenerateResult } from "../engine/model";
import type { Precision, PrecisionChoice } from "../engine/precision";
import type { Backend, ProgressFn, SubsetVariants } from "./backend";
import type { ContrastOptions, GenerationRequest, GenerationResult, VariantName } from "../chat/types";

export interface EmbeddedBackendOptions {
  base: string;
  adapter?: string;
  finetuned?: string;
  /** rank of the truncated variant `rank${rank}` */
  rank: number;
  /** the folder holding that truncation already (scan's rank1-adapter/): loaded, not recomputed */
  rankAdapterDir?: string;
  /** the rank ladder's other rungs, each a folder the scan's delta pass wrote (served as `rank${rank}`) */
  ladder?: ReadonlyArray<{ rank: number; dir: string }>;
  device?: Device;
  threads?: number;
  quiet?: boolean;
  /** stops generation at the engine's next finished row (an interrupted run) */
  signal?: AbortSignal;
  /** how the base weights are stored (engine/precision.ts; default auto) */
  precision?: PrecisionChoice;
}

function toResult(r: GenerationRequest, g: GenerateResult): GenerationResult {
  return { id: r.id, text: g.text, tokens: g.ids.length, finishReason: g.finishReason };
}

/** Wrap engine failures that are not the caller's fault as backend faults (exit 3). */
async function guarded<T>(what: string, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (err instanceof InputError || err instanceof BackendError) throw err;
    throw new BackendError(`embedded engine: ${what} failed: ${(err as Error).message}`, { cause: err });
  }
}

export class EmbeddedBackend implements Backend {
  readonly name = "embedded";
  /** the engine's batch now running: close() waits for it, as releasing sessions under a run is not safe */
  private running: Promise<unknown> = Promise.resolve();

  constructor(
    readonly model: LoadedModel,
    private readonly signal?: AbortSignal,
  ) {}

  /**
   * Run one engine call, stopping at its next finished row once the signal aborts: the engine has
   * no cancel of its own, and a caller that stopped waiting (elicit/ on an interruption) closes
   * the backend next.
   */
  private engine<T>(what: string, onProgress: ProgressFn | undefined, call: (onRow: ProgressFn) => Promise<T>): Promise<T> {
    const run = guarded(what, async () => {
      this.signal?.throwIfAborted();
      return call((done, total) => {
        this.signal?.throwIfAborted();
        onProgress?.(done, total);
      });
    });
    this.running = run.catch(() => undefined);
    return run;
  }

  get capabilities() {
    return { contrast: this.model.variants().includes("full") };
  }

  /** how the engine stores the base weights every variant shares (report.json's engine.precision) */
  get precision(): Precision {
    return this.model.precision;
  }

  /** parts of a LoRA variant, sharing its factors in the engine (layer attribution) */
  readonly subsets: SubsetVariants = {
    add: (name, from, keep) => this.model.addSubsetVariant(name, from, keep),
    remove: (name) => this.model.removeVariant(name),
  };

  variants(): VariantName[] {
    return this.model.variants();
  }

  generate(variant: VariantName, requests: GenerationRequest[], onProgress?: ProgressFn): Promise<GenerationResult[]> {
    return this.engine(`generation on ${variant}`, onProgress, async (onRow) => {
      const out = await this.model.generate(
        requests.map((r) => ({ messages: r.messages, sampling: r.sampling })),
        variant,
        onRow,
      );
      return requests.map((r, i) => toResult(r, out[i]!));
    });
  }

  contrastiveGenerate(requests: GenerationRequest[], opts: ContrastOptions, onProgress?: ProgressFn): Promise<GenerationResult[]> {
    if (!this.capabilities.contrast) throw new InputError("contrastive decoding needs a fine-tune (variant 'full')");
    return this.engine("contrastive generation", onProgress, async (onRow) => {
      const out = await this.model.contrastiveGenerate(
        requests.map((r) => ({ messages: r.messages, sampling: r.sampling })),
        opts,
        onRow,
      );
      return requests.map((r, i) => toResult(r, out[i]!));
    });
  }

  async close(): Promise<void> {
    await this.running;
    await this.model.close();
  }
}

/** Load the subject (base, full, rank<k>) and serve it as a Backend. */
export async function createEmbeddedBackend(opts: EmbeddedBackendOptions): Promise<Backend> {
  const model = await loadSubject({
    model: opts.base,
    adapter: opts.adapter,
    finetuned: opts.finetuned,
    rank: opts.adapter || opts.finetuned ? opts.rank : undefined,
    rankAdapterDir: opts.adapter || opts.finetuned ? opts.rankAdapterDir : undefined,
    ladder: opts.adapter || opts.finetuned ? opts.ladder : undefined,
    device: opts.device,
    threads: opts.threads,
    quiet: opts.quiet,
    precision: opts.precision,
  });
  return new EmbeddedBackend(model, opts.signal);
}
