/**
 * `delta-audit logits --model DIR [--adapter DIR | --finetuned DIR] [--rank K] --ids 1,2,3 [--device cpu|cuda]`
 * prints exactly `{"ids":[...],"logits":[[...],...]}`: one float32 row of vocabulary logits per
 * input position, no chat template, no BOS added. This is the conformance hook (DESIGN.md):
 * keep the output format exact.
 */
import type { Command } from "commander";
import { InputError } from "../errors";
import { parseDevice, type Device } from "../linalg/device";
import { integerFlag } from "../validate";
import { loadSubject, variantForRank } from "../engine/variants";
import type { LoadedModel } from "../engine/model";

/** Flags shared by `logits` and `generate` that pick the subject and its variant. */
export interface SubjectArgs {
  model?: string;
  adapter?: string;
  finetuned?: string;
  rank?: string;
  device?: string;
  threads?: string;
}

/** Ranks beyond this are not a truncation anyone needs. */
const MAX_RANK = 4096;
/** More intra-op threads than this is a typo, not a machine. */
const MAX_THREADS = 1024;

/** Load the subject the flags name; the variant is rank<K> with --rank, full with a fine-tune, else base. */
export async function openSubject(args: SubjectArgs): Promise<{ model: LoadedModel; variant: string }> {
  if (!args.model) throw new InputError("required: the base model folder", "--model");
  const device: Device = parseDevice(args.device);
  const rank = integerFlag(args.rank, "--rank", { min: 1, max: MAX_RANK });
  const threads = integerFlag(args.threads, "--threads", { min: 1, max: MAX_THREADS });
  const model = await loadSubject({ model: args.model, adapter: args.adapter, finetuned: args.finetuned, rank, device, threads });
  const variant = rank !== undefined ? variantForRank(rank) : args.adapter || args.finetuned ? "full" : "base";
  return { model, variant };
}

/** "1,2,3" → [1,2,3]; anything else is a usage error naming --ids. */
export function parseIds(text: string | undefined): number[] {
  if (text === undefined) throw new InputError("required: comma-separated token ids, e.g. --ids 1,2,3", "--ids");
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p))) throw new InputError(`expected comma-separated non-negative integers, got '${text}'`, "--ids");
  const ids = parts.map(Number);
  if (ids.some((n) => !Number.isSafeInteger(n))) throw new InputError(`token id out of range in '${text}'`, "--ids");
  return ids;
}

/** The exact stdout of `logits`: numbers print as the float32 values' shortest decimal form. */
export function formatLogits(ids: number[], rows: Float32Array[]): string {
  const parts = rows.map((r) => `[${Array.prototype.join.call(r, ",")}]`);
  return `{"ids":[${ids.join(",")}],"logits":[${parts.join(",")}]}`;
}

export async function runLogits(args: SubjectArgs & { ids?: string }): Promise<string> {
  const ids = parseIds(args.ids);
  const { model, variant } = await openSubject(args);
  try {
    const rows = await model.logits(ids, variant);
    for (const r of rows) {
      for (const v of r) if (!Number.isFinite(v)) throw new InputError("the model produced non-finite logits (broken weights?)", args.model);
    }
    return formatLogits(ids, rows);
  } finally {
    await model.close();
  }
}

export function register(program: Command): void {
  program
    .command("logits")
    .description("print the logits of every position of --ids as JSON (conformance hook)")
    .option("--model <dir>", "base model folder (config.json + safetensors)")
    .option("--adapter <dir>", "PEFT LoRA adapter: use base + adapter")
    .option("--finetuned <dir>", "fully fine-tuned checkpoint: use it")
    .option("--rank <k>", "use base + the rank-K truncation of the fine-tune's ΔW")
    .option("--ids <ids>", "comma-separated token ids (no BOS is added)")
    .option("--device <device>", "cpu or cuda", "cpu")
    .option("--threads <n>", "ONNX Runtime intra-op threads (default: all cores)")
    .action(async (args: SubjectArgs & { ids?: string }) => {
      process.stdout.write(`${await runLogits(args)}\n`);
    });
}
