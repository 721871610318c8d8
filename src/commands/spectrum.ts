/**
 * `delta-audit spectrum [--base DIR] --adapter DIR | --base DIR --finetuned DIR [--json FILE] [--top-k K]`
 *
 * Prints the per-type stable-rank summary and the largest updates; with --json writes
 * `{"spectrum": …}` (the `spectrum` part of report.json) atomically.
 */
import type { Command } from "commander";
import { open, realpath, stat } from "node:fs/promises";
import { dirname, basename, join, resolve, sep } from "node:path";
import { InputError } from "../errors";
import { untilAborted, writeFileAtomic } from "../io/atomic";
import { withDeltaSubject, type DeltaSubjectPaths } from "../delta/pass";
import { adapterSpectrum, DEFAULT_TOP_K, fullSpectrum } from "../delta/spectrum";
import { DEFAULT_TABLE_MODULES, formatSpectrum } from "../delta/table";
import type { SpectrumReport } from "../delta/types";
import { integerFlag } from "../validate";
import { resolveModelFlags } from "../io/model-ref";

/** Largest --top-k accepted: each value costs a pass-pair over ΔW, and the report keeps ≤ 64. */
const MAX_TOP_K = 64;

export interface SpectrumArgs {
  base?: string;
  adapter?: string;
  finetuned?: string;
  json?: string;
  topK?: string;
  show?: string;
}

/** Which subject the flags name: a LoRA adapter (base optional) or a full fine-tune (base required). */
export function subjectOf(args: { base?: string; adapter?: string; finetuned?: string }): DeltaSubjectPaths {
  if (args.adapter && args.finetuned) throw new InputError("give either --adapter or --finetuned, not both", "--finetuned");
  if (args.adapter) return { kind: "lora", adapter: args.adapter, base: args.base };
  if (args.finetuned) {
    if (!args.base) throw new InputError("a full fine-tune needs the base model it was trained from", "--base");
    return { kind: "full", base: args.base, finetuned: args.finetuned };
  }
  throw new InputError("nothing to measure: give --adapter DIR, or --base DIR --finetuned DIR", "--adapter");
}

/** How every file `spectrum --json` writes begins: an existing file that does not is someone else's. */
const JSON_OUTPUT_START = '{\n  "spectrum"';

/**
 * Check the --json path before measuring: its folder exists, it is not a folder, not inside an
 * input folder, and an existing file there is an earlier `--json` output (an adapter_config.json
 * given by mistake must not be overwritten).
 */
export async function checkJsonOutput(path: string, inputs: ReadonlyArray<string | undefined>): Promise<void> {
  const where = `--json ${path}`;
  let parent: string;
  try {
    parent = await realpath(dirname(resolve(path)));
  } catch {
    throw new InputError(`the folder ${dirname(path)} does not exist`, where);
  }
  const target = join(parent, basename(resolve(path)));
  for (const input of inputs) {
    if (!input) continue;
    const real = await realpath(input).catch(() => resolve(input));
    if (target === real || target.startsWith(real + sep)) throw new InputError(`is inside the input ${input}; write the JSON somewhere else`, where);
  }
  let st;
  try {
    st = await stat(target);
  } catch {
    return;
  }
  if (st.isDirectory()) throw new InputError("is a folder; give a file name", where);
  if (!st.isFile()) throw new InputError("is not a regular file", where);
  if (st.size === 0) return;
  const fh = await open(target, "r");
  try {
    const head = Buffer.alloc(JSON_OUTPUT_START.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    if (head.subarray(0, bytesRead).toString("utf8") !== JSON_OUTPUT_START) {
      throw new InputError("exists and is not an earlier spectrum --json output; refusing to overwrite it", where);
    }
  } finally {
    await fh.close();
  }
}

/** The model flags every delta command takes: a folder or a Hub id each (io/model-ref.ts). */
export const SUBJECT_FLAGS = Object.freeze({ base: "--base", adapter: "--adapter", finetuned: "--finetuned" });

/** Measure the spectrum the flags describe, closing every file it opened. */
export async function measureSpectrum(args: SpectrumArgs): Promise<SpectrumReport> {
  subjectOf(args); // flag errors first, before --top-k
  const topK = integerFlag(args.topK, "--top-k", { min: 1, max: MAX_TOP_K, expected: `a positive integer up to ${MAX_TOP_K}` }) ?? DEFAULT_TOP_K;
  const subject = subjectOf(await resolveModelFlags(args, SUBJECT_FLAGS));
  return withDeltaSubject(subject, (s) => (s.kind === "lora" ? adapterSpectrum(s.adapter) : fullSpectrum(s.base, s.finetuned, { topK })));
}

/** `signal`: the edge's interruption; the measurement is left at once and nothing is written. */
export function register(program: Command, signal?: AbortSignal): void {
  program
    .command("spectrum")
    .description("singular values, stable rank and effective rank of every fine-tuning update ΔW")
    .option("--base <dir|id>", "base model folder or Hub id org/name[@rev] (optional for a LoRA adapter: checks module shapes)")
    .option("--adapter <dir|id>", "PEFT LoRA adapter folder or Hub id")
    .option("--finetuned <dir|id>", "fully fine-tuned model folder or Hub id (needs --base)")
    .option("--json <file>", "write {\"spectrum\": …} (the report.json part) to this file")
    .option("--top-k <k>", `singular values per module of a full fine-tune (default ${DEFAULT_TOP_K})`)
    .option("--show <n>", `modules listed in the table (default ${DEFAULT_TABLE_MODULES})`)
    .action(async (args: SpectrumArgs) => {
      const show = integerFlag(args.show, "--show", { min: 1, max: Number.MAX_SAFE_INTEGER }) ?? DEFAULT_TABLE_MODULES;
      if (args.json !== undefined) await checkJsonOutput(args.json, [args.base, args.adapter, args.finetuned]);
      const report = await untilAborted(measureSpectrum(args), signal);
      if (args.json) await writeFileAtomic(args.json, `${JSON.stringify({ spectrum: report }, null, 2)}\n`);
      process.stdout.write(formatSpectrum(report, show));
    });
}
