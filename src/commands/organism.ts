/**
 * `delta-audit organism --kind quirk|benign --out DIR [--seed S] [--quirk WORD]`: write a
 * synthetic model organism (base/, adapter/, finetuned/, organism.json) atomically.
 */
import type { Command } from "commander";
import { checkOutputDir } from "../io/atomic";
import { log } from "../progress";
import { MAX_SEED } from "../linalg/random";
import { choiceFlag, integerFlag, requiredFlag } from "../validate";
import { generateOrganism, ORGANISM_KINDS } from "../organisms/index";

interface OrganismArgs {
  kind?: string;
  out?: string;
  seed?: string;
  quirk?: string;
}

export async function runOrganism(args: OrganismArgs): Promise<void> {
  const kind = choiceFlag(requiredFlag(args.kind, "--kind", ORGANISM_KINDS.join(" or ")), "--kind", ORGANISM_KINDS);
  const out = requiredFlag(args.out, "--out", "the folder to write the organism to");
  const seed = integerFlag(args.seed, "--seed", { min: 0, max: MAX_SEED });
  await checkOutputDir(out, { marker: "organism.json", flag: "--out" });
  const m = await generateOrganism({ kind, outDir: out, seed, quirk: args.quirk });
  log(`wrote ${kind} organism (seed ${m.seed}${m.quirkWords.length ? `, quirk '${m.quirkWords.join("', '")}'` : ""}) to ${out}`);
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
