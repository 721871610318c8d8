/**
 * scan's delta phase as one walk over the subject: every module is read and decomposed once,
 * its spectrum collected for the report and its rank-k factors streamed straight into the
 * rank-k adapter folder (the folder the embedded engine then loads as the `rank<k>` variant,
 * so what is interrogated is exactly what the report ships). `truncate` writes its folder
 * through the same writer, without the spectrum; both open their subject with withDeltaSubject.
 */
import { openCheckpoint } from "../io/checkpoint";
import { openAdapter, type LoraModuleLayout } from "../io/peft";
import type { Checkpoint, LoraAdapter, LoraModule } from "../io/types";
import type { SpectrumReport } from "./types";
import { SpectrumCollector } from "./spectrum";
import { fullLayout, fullSourceConfig, truncatedLayout, truncatedModules, writeTruncatedAdapter } from "./truncate";
import { walkAdapter, walkFull, type DeltaStep, type WalkOptions } from "./walk";

/**
 * The fine-tune whose ΔW is walked, opened by the caller (who also closes it). A LoRA adapter's
 * base is optional: opened with the adapter, it checks the modules' shapes.
 */
export type DeltaSubject = { kind: "lora"; adapter: LoraAdapter; base?: Checkpoint } | { kind: "full"; base: Checkpoint; finetuned: Checkpoint };

/** The folders of a DeltaSubject. */
export type DeltaSubjectPaths = { kind: "lora"; adapter: string; base?: string } | { kind: "full"; base: string; finetuned: string };

/** Open the subject's folders, run `use`, and close every file opened, whatever happens. */
export async function withDeltaSubject<T>(paths: DeltaSubjectPaths, use: (s: DeltaSubject) => Promise<T>): Promise<T> {
  const opened: Array<Checkpoint | LoraAdapter> = [];
  const track = <F extends Checkpoint | LoraAdapter>(f: F): F => (opened.push(f), f);
  try {
    if (paths.kind === "lora") {
      const base = paths.base ? track(await openCheckpoint(paths.base)) : undefined;
      const adapter = track(await openAdapter(paths.adapter, { base }));
      return await use({ kind: "lora", adapter, base });
    }
    const base = track(await openCheckpoint(paths.base));
    const finetuned = track(await openCheckpoint(paths.finetuned));
    return await use({ kind: "full", base, finetuned });
  } finally {
    await Promise.all(opened.map((o) => o.close().catch(() => undefined)));
  }
}

export type RankAdapterOptions = Pick<WalkOptions, "onProgress" | "quiet" | "onWarning"> & {
  /**
   * also measure the spectrum in the same walk, gathering every step here (a full fine-tune's
   * walk then reads every tensor and takes max(topK, rank) values per module); absent: a
   * truncation only
   */
  spectrum?: SpectrumCollector;
};

/** Progress labels: the pass measures and truncates at once; `truncate` only truncates. */
const PASS_LABEL = "spectrum+truncate";
const TRUNCATE_LABEL = "truncate";

/**
 * A full fine-tune's truncated modules, or — where no decoder linear changed — the first linear
 * with zero factors: an adapter needs at least one module, and a zero one loads as the base,
 * which is what the rank-k approximation of no update is.
 */
async function* atLeastOneModule(modules: AsyncIterable<LoraModule>, first: LoraModuleLayout): AsyncGenerator<LoraModule> {
  let any = false;
  for await (const m of modules) {
    any = true;
    yield m;
  }
  if (!any) {
    const { name, rank, scale, outFeatures, inFeatures } = first;
    yield { name, rank, scale, outFeatures, inFeatures, A: new Float32Array(rank * inFeatures), B: new Float32Array(outFeatures * rank) };
  }
}

/**
 * Write the subject's rank-k truncation to `outDir` (a PEFT adapter, r = lora_alpha = k). A LoRA
 * adapter's modules stream to disk as soon as the walk computes them; a full fine-tune's
 * unchanged modules are left out, which is known only as the walk goes, so its factors are
 * staged and the header written after (io/peft.ts writeAdapter without a layout). Bad input
 * (the rank, the pairing, a checkpoint without decoder linears) is refused before anything is
 * read or written.
 */
export async function writeRankAdapter(subject: DeltaSubject, rank: number, outDir: string, opts: RankAdapterOptions = {}): Promise<void> {
  const { spectrum, ...options } = opts;
  const walk = { ...options, rank, label: spectrum ? PASS_LABEL : TRUNCATE_LABEL };
  // the walk first: it checks its input at call time, before the layout is read
  const steps =
    subject.kind === "lora"
      ? walkAdapter(subject.adapter, walk)
      : walkFull(subject.base, subject.finetuned, spectrum ? { ...walk, tensors: "all" } : { ...walk, tensors: "linear" });
  async function* measured(): AsyncGenerator<DeltaStep> {
    for await (const step of steps) {
      spectrum!.add(step);
      yield step;
    }
  }
  const modules = truncatedModules(spectrum ? measured() : steps);
  if (subject.kind === "lora") {
    await writeTruncatedAdapter(outDir, modules, subject.adapter.config, { layout: truncatedLayout(subject.adapter, rank) });
  } else {
    const first = fullLayout(subject.finetuned, rank)[0]!;
    await writeTruncatedAdapter(outDir, atLeastOneModule(modules, first), fullSourceConfig(subject.base));
  }
}

export type DeltaPassOptions = Omit<RankAdapterOptions, "spectrum">;

/**
 * The spectrum of the subject's ΔW, with its rank-k truncation written to `outDir` in the same
 * walk (writeRankAdapter). Bad input is refused before anything is written.
 */
export async function deltaPass(subject: DeltaSubject, rank: number, outDir: string, opts: DeltaPassOptions = {}): Promise<SpectrumReport> {
  const spectrum = new SpectrumCollector();
  await writeRankAdapter(subject, rank, outDir, { ...opts, spectrum });
  return spectrum.report(subject.kind === "full");
}
