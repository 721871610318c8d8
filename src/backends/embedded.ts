/**
 * The embedded backend: the subject's variants run in-process by src/engine/ (ONNX Runtime).
 * Requests on one variant are batched by the engine (prompts of similar length together).
 */
import { BackendError, InputError } from "../errors";
import type { Device } from "../linalg/ort";
import { loadSubject } from "../engine/variants";
import type { LoadedModel, GenerateResult } from "../engine/model";
import type { Backend, ProgressFn } from "./backend";
import type { ContrastOptions, GenerationRequest, GenerationResult, VariantName } from "../chat/types";

export interface EmbeddedBackendOptions {
  base: string;
  adapter?: string;
  finetuned?: string;
  /** rank of the truncated variant `rank${rank}` */
  rank: number;
  /** the folder holding that truncation already (scan's rank1-adapter/): loaded, not recomputed */
  rankAdapterDir?: string;
  device?: Device;
  threads?: number;
  quiet?: boolean;
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
  constructor(readonly model: LoadedModel) {}

  get capabilities() {
    return { contrast: this.model.variants().includes("full") };
  }

  variants(): VariantName[] {
    return this.model.variants();
  }

  generate(variant: VariantName, requests: GenerationRequest[], onProgress?: ProgressFn): Promise<GenerationResult[]> {
    return guarded(`generation on ${variant}`, async () => {
      const out = await this.model.generate(
        requests.map((r) => ({ messages: r.messages, sampling: r.sampling })),
        variant,
        onProgress,
      );
      return requests.map((r, i) => toResult(r, out[i]!));
    });
  }

  contrastiveGenerate(requests: GenerationRequest[], opts: ContrastOptions, onProgress?: ProgressFn): Promise<GenerationResult[]> {
    if (!this.capabilities.contrast) throw new InputError("contrastive decoding needs a fine-tune (variant 'full')");
    return guarded("contrastive generation", async () => {
      const out = await this.model.contrastiveGenerate(
        requests.map((r) => ({ messages: r.messages, sampling: r.sampling })),
        opts,
        onProgress,
      );
      return requests.map((r, i) => toResult(r, out[i]!));
    });
  }

  close(): Promise<void> {
    return this.model.close();
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
    device: opts.device,
    threads: opts.threads,
    quiet: opts.quiet,
  });
  return new EmbeddedBackend(model);
}
