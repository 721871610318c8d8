/**
 * scan's delta phase as one walk over the subject: every module is read and decomposed once,
 * its spectrum collected for the report and its rank-k factors streamed straight into the
 * rank-k adapter folder (the folder the embedded engine then loads as the `rank<k>` variant,
 * so what is interrogated is exactly what the report ships), and, when asked, its top-k
 * singular directions into directions.safetensors (`sweep run`'s drift, delta/directions.ts).
 * `truncate` writes its folder through the same writer, without the spectrum; both open their
 * subject with withDeltaSubject.
 */
import { constants } from "node:fs";
import { copyFile } from "node:fs/promises";
import { join } from "node:path";
import { writeDirAtomic } from "../io/atomic";
import { openCheckpoint } from "../io/checkpoint";
import { openAdapter, type LoraModuleLayout } from "../io/peft";
import { log } from "../progress";
import type { Checkpoint, LoraAdapter, LoraModule } from "../io/types";
import type { SpectrumReport } from "./types";
import { SpectrumCollector } from "./spectrum";
import { fullLayout, fullSourceConfig, truncatedLayout, truncatedModules, writeTruncatedAdapter } from "./truncate";
import { walkAdapter, walkFull, type DeltaStep, type WalkOptions } from "./walk";
import { ADDED_ROWS_FILE, addedRowsIn, copyTokenizerFiles, hoistFolder, vocabularyGrowth, writeAddedRows } from "./vocab-growth";
import type { VocabularyGrowth } from "./types";
import { checkLadderFits, leading, ModuleFeed, type RankOutput } from "./ladder";
import { checkDirectionsK, stepDirections, writeDirections, type ModuleDirections } from "./directions";

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
   * told what the folder holds besides the LoRA factors (a fine-tune's added token rows);
   * default: a `note:` line through progress.ts's log, silent until an edge configures it
   */
  onNotice?: (message: string) => void;
  /**
   * also measure the spectrum in the same walk, gathering every step here (a full fine-tune's
   * walk then reads every tensor and takes max(topK, rank) values per module); absent: a
   * truncation only
   */
  spectrum?: SpectrumCollector;
  /**
   * decompose each ΔW at this rank (≥ rank) and keep the first `rank` components: the rank
   * ladder's top rung, so that one walk serves every rung (deltaPass, ladder.ts)
   */
  decomposeAt?: number;
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

/** The line writeRankAdapter gives `onNotice` for a fine-tune that added tokens. */
export function addedRowsNotice(growth: VocabularyGrowth, rank: number, tokenizerFiles: readonly string[]): string {
  const added = growth.rows - growth.baseRows;
  const tokenizer = tokenizerFiles.length > 0 ? ` with the fine-tune's ${tokenizerFiles.join(", ")}` : " (the fine-tune has no tokenizer files to copy)";
  return `note: the fine-tune adds ${added} token row(s) (vocabulary ${growth.baseRows} → ${growth.rows}); the rank-${rank} adapter keeps them as they are (no base rows to subtract): ${growth.tensors.join(", ")} rows ${growth.baseRows}–${growth.rows - 1} in ${ADDED_ROWS_FILE}${tokenizer}`;
}

/**
 * Write the subject's rank-k truncation to `outDir` (a PEFT adapter, r = lora_alpha = k). A LoRA
 * adapter's modules stream to disk as soon as the walk computes them; a full fine-tune's
 * unchanged modules are left out, which is known only as the walk goes, so its factors are
 * staged and the header written after (io/peft.ts writeAdapter without a layout). A full
 * fine-tune that added tokens also gets its added rows, verbatim, and its tokenizer files in the
 * same folder (vocab-growth.ts), which appears atomically as a whole; an adapter folder cut from
 * one (holding ADDED_ROWS_FILE) passes them on the same way. Bad input (the rank, the
 * pairing, a checkpoint without decoder linears) is refused before anything is read or written.
 */
export async function writeRankAdapter(subject: DeltaSubject, rank: number, outDir: string, opts: RankAdapterOptions = {}): Promise<void> {
  const { spectrum, onNotice, decomposeAt, ...options } = opts;
  const walk = { ...options, rank: Math.max(rank, decomposeAt ?? rank), label: spectrum ? PASS_LABEL : TRUNCATE_LABEL };
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
  const truncated = truncatedModules(spectrum ? measured() : steps);
  const modules = walk.rank === rank ? truncated : leading(truncated, rank);
  let writeLora: (dir: string) => Promise<void>;
  let growth: VocabularyGrowth | undefined;
  // where added rows come from: a full fine-tune's own tensors, or the rows file of an adapter cut from one
  let addRows: (dir: string) => Promise<void>;
  let from: string;
  if (subject.kind === "lora") {
    const { adapter } = subject;
    writeLora = (dir) => writeTruncatedAdapter(dir, modules, adapter.config, { layout: truncatedLayout(adapter, rank) });
    growth = await addedRowsIn(adapter.dir);
    if (growth) spectrum?.add({ kind: "vocabulary", growth });
    addRows = (dir) => copyFile(join(adapter.dir, ADDED_ROWS_FILE), join(dir, ADDED_ROWS_FILE), constants.COPYFILE_EXCL);
    from = adapter.dir;
  } else {
    const { base, finetuned } = subject;
    const first = fullLayout(finetuned, rank)[0]!;
    writeLora = (dir) => writeTruncatedAdapter(dir, atLeastOneModule(modules, first), fullSourceConfig(base));
    growth = vocabularyGrowth(base, finetuned);
    addRows = (dir) => writeAddedRows(dir, finetuned, growth!);
    from = finetuned.dir;
  }
  if (!growth) {
    await writeLora(outDir);
    return;
  }
  let copied: string[] = [];
  await writeDirAtomic(outDir, async (tmp) => {
    // the adapter is built (atomically) in a sub-folder, then joined by the rows it does not hold
    const inner = join(tmp, ".adapter");
    await writeLora(inner);
    await hoistFolder(inner, tmp);
    await addRows(tmp);
    copied = await copyTokenizerFiles(from, tmp);
  });
  (onNotice ?? log)(addedRowsNotice(growth, rank, copied));
}

/**
 * The top-k singular directions of every module, kept by the pass from its one decomposition and
 * written to `file` (directions.safetensors, delta/directions.ts) once the walk is done.
 */
export interface DirectionsOutput {
  /** directions per module (1..MAX_DIRECTIONS_K); a LoRA module of rank r < k keeps its r */
  k: number;
  /** the file written (atomically); nothing is written when the walk fails */
  file: string;
  /** told how many modules the file holds once it is written */
  onWritten?: (modules: number) => void;
}

export type DeltaPassOptions = Omit<RankAdapterOptions, "spectrum" | "decomposeAt"> & {
  /**
   * the rank ladder's other rungs: each rank-k truncation written to its own folder from the same
   * walk (the walk decomposes at the top rung; every rung keeps its leading components, ladder.ts)
   */
  ladder?: readonly RankOutput[];
  /** also each module's top-k directions from the same walk (the walk decomposes at ≥ k) */
  directions?: DirectionsOutput;
};

/**
 * A spectrum collector that also hands each step's rank-K factors to the ladder's rungs and each
 * module's top directions to the directions kept.
 */
class PassTap extends SpectrumCollector {
  readonly directions: ModuleDirections[] = [];

  constructor(
    private readonly feeds: readonly ModuleFeed[],
    private readonly directionsK?: number,
  ) {
    super();
  }

  override add(step: DeltaStep): void {
    super.add(step);
    if (step.kind === "module" && step.truncated) for (const f of this.feeds) f.push(step.truncated);
    if (this.directionsK !== undefined) {
      const d = stepDirections(step, this.directionsK);
      if (d) this.directions.push(d);
    }
  }
}

/**
 * One rung of the ladder: the first k components of the walk's modules, written as the rank-k
 * adapter (streamed with its layout for a LoRA subject; a full fine-tune's after the walk, as
 * writeRankAdapter writes it). A fine-tune's added token rows stay with the main truncation.
 */
function writeRung(subject: DeltaSubject, out: RankOutput, feed: ModuleFeed): Promise<void> {
  const modules = leading(feed, out.rank);
  if (subject.kind === "lora") return writeTruncatedAdapter(out.dir, modules, subject.adapter.config, { layout: truncatedLayout(subject.adapter, out.rank) });
  return writeTruncatedAdapter(out.dir, atLeastOneModule(modules, fullLayout(subject.finetuned, out.rank)[0]!), fullSourceConfig(subject.base));
}

/**
 * The spectrum of the subject's ΔW, with its rank-k truncation written to `outDir` in the same
 * walk (writeRankAdapter), with `ladder`, every rung's truncation too (one walk, at the top
 * rung's rank), and with `directions`, every module's top-k directions from that walk (at least
 * rank k) written to their file after it. Bad input is refused before anything is written.
 */
export async function deltaPass(subject: DeltaSubject, rank: number, outDir: string, opts: DeltaPassOptions = {}): Promise<SpectrumReport> {
  const { ladder = [], directions, ...options } = opts;
  if (directions) checkDirectionsK(directions.k);
  if (ladder.length > 0) checkLadderFits(subject, ladder.map((r) => r.rank));
  const feeds = ladder.map(() => new ModuleFeed());
  const rungs = ladder.map((out, i) => writeRung(subject, out, feeds[i]!));
  for (const r of rungs) r.catch(() => undefined); // awaited below, after the walk's own errors
  const spectrum = new PassTap(feeds, directions?.k);
  // one decomposition at the largest rank asked for: the adapter, every rung and the directions keep its leading components
  const decomposeAt = Math.max(rank, ...ladder.map((r) => r.rank), directions?.k ?? 0);
  try {
    await writeRankAdapter(subject, rank, outDir, { ...options, spectrum, decomposeAt });
    for (const f of feeds) f.end();
  } catch (err) {
    for (const f of feeds) f.fail(err);
    await Promise.allSettled(rungs);
    throw err;
  }
  await Promise.all(rungs);
  if (directions) {
    await writeDirections(directions.file, spectrum.directions);
    directions.onWritten?.(spectrum.directions.length);
  }
  return spectrum.report(subject.kind === "full");
}
