/**
 * `delta-audit logits --model DIR [--adapter DIR | --finetuned DIR] [--rank K] --ids 1,2,3 [--device cpu|cuda]`
 * prints exactly `{"ids":[...],"logits":[[...],...]}`: one float32 row of vocabulary logits per
 * input position, no chat template, no BOS added. This is the conformance hook (DESIGN.md):
 * keep the output format exact.
 */
import type { Command } from "commander";
import { InputError } from "../errors";
import { DEVICES } from "../linalg/device";
import { MAX_THREADS, requireDevice } from "../linalg/ort";
import { MAX_RANK } from "../delta/limits";
import { choiceFlag, integerFlag, namedOrigin, parseInteger, requiredFlag, type Bounds } from "../validate";
import { variantForRank } from "../chat/types";
import { loadSubject } from "../engine/variants";
import type { LoadedModel } from "../engine/model";
import { resolveModelFlags } from "../io/model-ref";
import { PRECISION_CHOICES } from "../engine/precision";

/** Flags shared by `logits` and `generate` that pick the subject and its variant. */
export interface SubjectArgs {
  model?: string;
  adapter?: string;
  finetuned?: string;
  rank?: string;
  device?: string;
  threads?: string;
  precision?: string;
}

/** Load the subject the flags name; the variant is rank<K> with --rank, full with a fine-tune, else base. */
export async function openSubject(args: SubjectArgs): Promise<{ model: LoadedModel; variant: string }> {
  const model = requiredFlag(args.model, "--model", "the base model folder");
  const device = choiceFlag(args.device, "--device", DEVICES);
  const rank = integerFlag(args.rank, "--rank", { min: 1, max: MAX_RANK });
  const threads = integerFlag(args.threads, "--threads", { min: 1, max: MAX_THREADS });
  const precision = choiceFlag(args.precision, "--precision", PRECISION_CHOICES);
  if (device) requireDevice(device);
  // each model flag is a folder or a Hub id, fetched once every other flag is known to be good
  const dirs = await resolveModelFlags({ model, adapter: args.adapter, finetuned: args.finetuned }, { model: "--model", adapter: "--adapter", finetuned: "--finetuned" });
  const loaded = await loadSubject({ ...dirs, rank, device, threads, precision });
  const variant = rank !== undefined ? variantForRank(rank) : args.adapter || args.finetuned ? "full" : "base";
  return { model: loaded, variant };
}

/** A token id: a vocabulary index (the model refuses one beyond its vocabulary). */
const TOKEN_ID: Bounds = { min: 0, max: Number.MAX_SAFE_INTEGER, expected: "comma-separated non-negative integers" };

/** "1,2,3" → [1,2,3]; anything else is a usage error naming --ids and quoting the bad item. */
function parseIds(text: string | undefined): number[] {
  const o = namedOrigin("--ids");
  return requiredFlag(text, "--ids", "comma-separated token ids, e.g. --ids 1,2,3")
    .split(",")
    .map((item) => parseInteger(o, item, "", TOKEN_ID));
}

/** The exact stdout of `logits`: numbers print as the float32 values' shortest decimal form. */
export function formatLogits(ids: number[], rows: Float32Array[]): string {
  const parts = rows.map((r) => `[${Array.prototype.join.call(r, ",")}]`);
  return `{"ids":[${ids.join(",")}],"logits":[${parts.join(",")}]}`;
}

async function runLogits(args: SubjectArgs & { ids?: string }): Promise<string> {
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
    .option("--model <dir|id>", "base model folder (config.json + safetensors) or Hub id org/name[@rev]")
    .option("--adapter <dir|id>", "PEFT LoRA adapter (folder or Hub id): use base + adapter")
    .option("--finetuned <dir|id>", "fully fine-tuned checkpoint (folder or Hub id): use it")
    .option("--rank <k>", "use base + the rank-K truncation of the fine-tune's ΔW")
    .option("--ids <ids>", "comma-separated token ids (no BOS is added)")
    .option("--device <device>", "cpu or cuda", "cpu")
    .option("--threads <n>", "ONNX Runtime intra-op threads (default: all cores)")
    .option("--precision <p>", "how base weights are stored: auto (default: by free memory and model size), f32, bf16, int8 or int4")
    .action(async (args: SubjectArgs & { ids?: string }) => {
      process.stdout.write(`${await runLogits(args)}\n`);
    });
}
