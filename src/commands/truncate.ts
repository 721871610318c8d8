/**
 * `delta-audit truncate --adapter DIR --rank K --out DIR` (or `--base DIR --finetuned DIR`):
 * the best rank-K approximation of every ΔW as a PEFT adapter with r = lora_alpha = K.
 * The output folder appears atomically (io/atomic.ts) or not at all.
 */
import type { Command } from "commander";
import { InputError } from "../errors";
import { checkOutputDir, untilAborted } from "../io/atomic";
import { ADAPTER_CONFIG_FILE } from "../io/peft";
import { log } from "../progress";
import { withDeltaSubject, writeRankAdapter, type DeltaSubject } from "../delta/pass";
import { fullLayout } from "../delta/truncate";
import { MAX_RANK } from "../delta/limits";
import { integerFlag, requiredFlag } from "../validate";
import { subjectOf, SUBJECT_FLAGS } from "./spectrum";
import { resolveModelFlags } from "../io/model-ref";

export interface TruncateArgs {
  base?: string;
  adapter?: string;
  finetuned?: string;
  rank?: string;
  out?: string;
}

/**
 * The largest rank a truncation of the subject can keep without padding: an adapter's smallest
 * module rank (a module of rank r is its own best rank-K approximation for every K ≥ r), a full
 * fine-tune's smallest min(out, in) over its decoder linears; with the module that sets it.
 */
export function truncationCeiling(s: DeltaSubject): { rank: number; module: string; uniform: boolean } | undefined {
  const ranks =
    s.kind === "lora"
      ? s.adapter.moduleNames().map((name) => ({ rank: s.adapter.moduleInfo(name).rank, module: name }))
      : fullLayout(s.finetuned, 1).map((m) => ({ rank: Math.min(m.outFeatures, m.inFeatures), module: m.name }));
  if (ranks.length === 0) return undefined; // the walk refuses a subject without modules
  const least = ranks.reduce((a, b) => (b.rank < a.rank ? b : a));
  return { ...least, uniform: ranks.every((r) => r.rank === least.rank) };
}

/**
 * Refuse a rank above the subject's ceiling: its factors would be zero-padded to r = K, an
 * adapter K/r times the size that is no better an approximation. (scan's pass pads instead:
 * its rank variant must exist, and policy reads rank ≥ the adapter's as a neutral measurement.)
 */
function checkRankFits(s: DeltaSubject, k: number): void {
  const ceiling = truncationCeiling(s);
  if (!ceiling || k <= ceiling.rank) return;
  const { rank, module, uniform } = ceiling;
  const what = s.kind === "lora" ? `the adapter's rank is ${rank}${uniform ? "" : ` (its smallest, ${module})`}` : `${module} can hold at most rank ${rank}`;
  throw new InputError(`${k} is above what the truncation can keep: ${what}; give --rank ${rank} or less (a higher rank would only pad with zeros)`, "--rank");
}

export async function runTruncate(args: TruncateArgs): Promise<void> {
  subjectOf(args); // flag errors first, before the rank and the output
  const k = integerFlag(requiredFlag(args.rank, "--rank", "the rank K to keep"), "--rank", { min: 1, max: MAX_RANK, expected: `an integer from 1 to ${MAX_RANK}` });
  const out = requiredFlag(args.out, "--out", "the folder to write the truncated adapter to");
  // Hub ids become their cache folders here: --out must not land inside one either
  const dirs = await resolveModelFlags(args, SUBJECT_FLAGS);
  await checkOutputDir(out, { inputs: [dirs.base, dirs.adapter, dirs.finetuned], marker: ADAPTER_CONFIG_FILE, flag: "--out" });
  await withDeltaSubject(subjectOf(dirs), (s) => {
    checkRankFits(s, k);
    return writeRankAdapter(s, k, out);
  });
  log(`wrote rank-${k} adapter to ${out}`);
}

/** `signal`: the edge's interruption; the truncation is left at once and the edge removes its staging folder. */
export function register(program: Command, signal?: AbortSignal): void {
  program
    .command("truncate")
    .description("write the best rank-K approximation of every ΔW as a PEFT LoRA adapter")
    .option("--base <dir|id>", "base model folder or Hub id org/name[@rev] (optional with --adapter: checks module shapes)")
    .option("--adapter <dir|id>", "PEFT LoRA adapter folder or Hub id")
    .option("--finetuned <dir|id>", "fully fine-tuned model folder or Hub id (needs --base)")
    .option("--rank <k>", "rank to keep (1 for the audit's rank1 variant)")
    .option("--out <dir>", "output adapter folder (written atomically)")
    .action(async (args: TruncateArgs) => {
      await untilAborted(runTruncate(args), signal);
    });
}
