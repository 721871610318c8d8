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
import { fullLayout, fullSourceConfig, lowRankFromFull, truncateAdapter, truncatedLayout, writeTruncatedAdapter } from "../delta/truncate";
import { MAX_RANK } from "../delta/limits";
import { integerFlag } from "../validate";
import { printWarning, subjectOf, withSubject } from "./spectrum";

export interface TruncateArgs {
  base?: string;
  adapter?: string;
  finetuned?: string;
  rank?: string;
  out?: string;
}

export async function runTruncate(args: TruncateArgs): Promise<void> {
  subjectOf(args); // flag errors first, before the rank and the output
  if (args.rank === undefined) throw new InputError("required: the rank K to keep", "--rank");
  const k = integerFlag(args.rank, "--rank", { min: 1, max: MAX_RANK, expected: `an integer from 1 to ${MAX_RANK}` });
  if (!args.out) throw new InputError("required: the folder to write the truncated adapter to", "--out");
  const out = args.out;
  await checkOutputDir(out, { inputs: [args.base, args.adapter, args.finetuned], marker: ADAPTER_CONFIG_FILE, flag: "--out" });
  await withSubject(args, async (s) => {
    if (s.kind === "lora") {
      await writeTruncatedAdapter(out, truncateAdapter(s.adapter, k), s.adapter.config, { layout: truncatedLayout(s.adapter, k) });
    } else {
      const layout = fullLayout(s.finetuned, k);
      if (layout.length === 0) throw new InputError("has no linear modules under model.layers.N (is it a decoder checkpoint?)", s.finetuned.dir);
      await writeTruncatedAdapter(out, lowRankFromFull(s.base, s.finetuned, k, { onWarning: printWarning }), fullSourceConfig(s.base), { layout });
    }
  });
  log(`wrote rank-${k} adapter to ${out}`);
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
