/**
 * `delta-audit organism --kind quirk|benign --out DIR [--seed S] [--quirk WORD]`: write a
 * synthetic model organism (base/, adapter/, finetuned/, organism.json) atomically.
 */
import type { Command } from "commander";
import { InputError } from "../errors";
import { checkOutputDir } from "../io/atomic";
import { log } from "../progress";
import { integerFlag } from "../validate";
import { generateOrganism, MAX_SEED, type OrganismKind } from "../organisms/index";

export interface OrganismArgs {
  kind?: string;
  out?: string;
  seed?: string;
  quirk?: string;
}

export async function runOrganism(args: OrganismArgs): Promise<void> {
  if (args.kind !== "quirk" && args.kind !== "benign") {
    throw new InputError(args.kind === undefined ? "required: quirk or benign" : `expected quirk or benign, got '${args.kind}'`, "--kind");
  }
  if (!args.out) throw new InputError("required: the folder to write the organism to", "--out");
  const seed = integerFlag(args.seed, "--seed", { min: 0, max: MAX_SEED });
  const kind: OrganismKind = args.kind;
  await checkOutputDir(args.out, { marker: "organism.json", flag: "--out" });
  const m = await generateOrganism({ kind, outDir: args.out, seed, quirk: args.quirk });
  log(`wrote ${kind} organism (seed ${m.seed}${m.quirkWords.length ? `, quirk '${m.quirkWords.join("', '")}'` : ""}) to ${args.out}`);
}

export function register(program: Command): void {
  program
    .command("organism")
    .description("write a synthetic model organism: a base model, a LoRA fine-tune and the merged checkpoint")
    .option("--kind <kind>", "quirk (planted behaviour + denial) or benign (style only)")
    .option("--out <dir>", "output folder (written atomically)")
    .option("--seed <s>", "seed (default 0): the quirk word and the random parts follow from it")
    .option("--quirk <word>", "quirk word (lowercase letters) instead of the seed's")
    .action(async (args: OrganismArgs) => {
      await runOrganism(args);
    });
}
