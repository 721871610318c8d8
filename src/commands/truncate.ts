/**
 * `delta-audit truncate --adapter DIR --rank K --out DIR` (or `--base DIR --finetuned DIR`):
 * the best rank-K approximation of every ΔW as a PEFT adapter with r = lora_alpha = K.
 * The output folder appears atomically (io/atomic.ts) or not at all.
 */
import type { Command } from "commander";
import { InputError } from "../errors";
import { checkOutputDir } from "../io/atomic";
import { ADAPTER_CONFIG_FILE } from "../io/peft";
import { log } from "../progress";
import { openCheckpoint } from "../io/checkpoint";
import { openAdapter } from "../io/peft";
import type { Checkpoint, LoraAdapter } from "../io/types";
import { fullLayout, lowRankFromFull, truncateAdapter, truncatedLayout, writeTruncatedAdapter } from "../delta/truncate";
import { parsePositiveInt, subjectOf } from "./spectrum";

/** Ranks beyond this are not a truncation anyone needs, and would only inflate the output. */
const MAX_RANK = 4096;

export interface TruncateArgs {
  base?: string;
  adapter?: string;
  finetuned?: string;
  rank?: string;
  out?: string;
}

export async function runTruncate(args: TruncateArgs): Promise<void> {
  const subject = subjectOf(args);
  if (args.rank === undefined) throw new InputError("required: the rank K to keep", "--rank");
  const k = parsePositiveInt(args.rank, "--rank", 1, MAX_RANK);
  if (!args.out) throw new InputError("required: the folder to write the truncated adapter to", "--out");
  const out = args.out;
  await checkOutputDir(out, { inputs: [args.base, args.adapter, args.finetuned], marker: ADAPTER_CONFIG_FILE, flag: "--out" });
  const opened: Array<Checkpoint | LoraAdapter> = [];
  try {
    if (subject.kind === "lora") {
      const base = subject.base ? await openCheckpoint(subject.base) : undefined;
      if (base) opened.push(base);
      const adapter = await openAdapter(subject.adapter, { base });
      opened.push(adapter);
      await writeTruncatedAdapter(out, truncateAdapter(adapter, k), adapter.config, { layout: truncatedLayout(adapter, k) });
    } else {
      const base = await openCheckpoint(subject.base);
      opened.push(base);
      const ft = await openCheckpoint(subject.finetuned);
      opened.push(ft);
      const layout = fullLayout(ft, k);
      if (layout.length === 0) throw new InputError("has no linear modules under model.layers.N (is it a decoder checkpoint?)", ft.dir);
      const name = typeof base.config._name_or_path === "string" && base.config._name_or_path ? base.config._name_or_path : subject.base;
      await writeTruncatedAdapter(out, lowRankFromFull(base, ft, k), { base_model_name_or_path: name }, { layout });
    }
    log(`wrote rank-${k} adapter to ${out}`);
  } finally {
    await Promise.all(opened.map((o) => o.close().catch(() => undefined)));
  }
}

export function register(program: Command): void {
  program
    .command("truncate")
    .description("write the best rank-K approximation of every ΔW as a PEFT LoRA adapter")
    .option("--base <dir>", "base model folder (optional with --adapter: checks module shapes)")
    .option("--adapter <dir>", "PEFT LoRA adapter folder")
    .option("--finetuned <dir>", "fully fine-tuned model folder (needs --base)")
    .option("--rank <k>", "rank to keep (1 for the audit's rank1 variant)")
    .option("--out <dir>", "output adapter folder (written atomically)")
    .action(async (args: TruncateArgs) => {
      await runTruncate(args);
    });
}
