/**
 * `delta-audit truncate --adapter DIR --rank K --out DIR` (or `--base DIR --finetuned DIR`):
 * the best rank-K approximation of every ΔW as a PEFT adapter with r = lora_alpha = K.
 * The output folder appears atomically (io/atomic.ts) or not at all.
 */
import type { Command } from "commander";
import { checkOutputDir } from "../io/atomic";
import { ADAPTER_CONFIG_FILE } from "../io/peft";
import { log } from "../progress";
import { withDeltaSubject, writeRankAdapter } from "../delta/pass";
import { MAX_RANK } from "../delta/limits";
import { integerFlag, requiredFlag } from "../validate";
import { subjectOf } from "./spectrum";

export interface TruncateArgs {
  base?: string;
  adapter?: string;
  finetuned?: string;
  rank?: string;
  out?: string;
}

export async function runTruncate(args: TruncateArgs): Promise<void> {
  const subject = subjectOf(args); // flag errors first, before the rank and the output
  const k = integerFlag(requiredFlag(args.rank, "--rank", "the rank K to keep"), "--rank", { min: 1, max: MAX_RANK, expected: `an integer from 1 to ${MAX_RANK}` });
  const out = requiredFlag(args.out, "--out", "the folder to write the truncated adapter to");
  await checkOutputDir(out, { inputs: [args.base, args.adapter, args.finetuned], marker: ADAPTER_CONFIG_FILE, flag: "--out" });
  await withDeltaSubject(subject, (s) => writeRankAdapter(s, k, out));
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
