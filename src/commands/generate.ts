/**
 * `delta-audit generate --model DIR [--adapter DIR | --finetuned DIR] [--rank K] --prompt TEXT
 * [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S] [--device]`
 * prints the completion of one chat turn (the chat template with the generation prompt).
 */
import type { Command } from "commander";
import { InputError } from "../errors";
import type { ChatMessage } from "../chat/types";
import { integerFlag, numberFlag } from "../validate";
import { openSubject, type SubjectArgs } from "./logits";

export const DEFAULT_MAX_NEW_TOKENS = 256;
/** Far beyond any audit probe; stops a typo from running for hours. */
const MAX_NEW_TOKENS_LIMIT = 32768;
/** Temperatures above this are noise, not sampling. */
const MAX_TEMPERATURE = 10;
/** The sampler is seeded with 32 bits (chat/sampling.ts). */
const MAX_SAMPLING_SEED = 2 ** 32 - 1;

interface GenerateArgs extends SubjectArgs {
  prompt?: string;
  system?: string;
  maxNewTokens?: string;
  temperature?: string;
  topP?: string;
  seed?: string;
}

export async function runGenerate(args: GenerateArgs): Promise<string> {
  if (args.prompt === undefined) throw new InputError("required: the user prompt", "--prompt");
  const sampling = {
    maxNewTokens: integerFlag(args.maxNewTokens, "--max-new-tokens", { min: 1, max: MAX_NEW_TOKENS_LIMIT }) ?? DEFAULT_MAX_NEW_TOKENS,
    temperature: numberFlag(args.temperature, "--temperature", { min: 0, max: MAX_TEMPERATURE }) ?? 0,
    topP: numberFlag(args.topP, "--top-p", { min: Number.MIN_VALUE, max: 1, expected: "a number above 0 and at most 1" }) ?? 1,
    seed: integerFlag(args.seed, "--seed", { min: 0, max: MAX_SAMPLING_SEED }) ?? 0,
  };
  const messages: ChatMessage[] = [];
  if (args.system !== undefined) messages.push({ role: "system", content: args.system });
  messages.push({ role: "user", content: args.prompt });
  const { model, variant } = await openSubject(args);
  try {
    const [out] = await model.generate([{ messages, sampling }], variant);
    return out!.text;
  } finally {
    await model.close();
  }
}

export function register(program: Command): void {
  program
    .command("generate")
    .description("generate a reply to --prompt with the embedded engine")
    .option("--model <dir>", "base model folder (config.json, safetensors, tokenizer files)")
    .option("--adapter <dir>", "PEFT LoRA adapter: use base + adapter")
    .option("--finetuned <dir>", "fully fine-tuned checkpoint: use it")
    .option("--rank <k>", "use base + the rank-K truncation of the fine-tune's ΔW")
    .option("--prompt <text>", "the user message")
    .option("--system <text>", "a system message")
    .option("--max-new-tokens <n>", `tokens to generate at most (default ${DEFAULT_MAX_NEW_TOKENS})`)
    .option("--temperature <t>", "0 = greedy (default)")
    .option("--top-p <p>", "nucleus sampling mass (default 1)")
    .option("--seed <s>", "sampling seed: the same seed gives the same text (default 0)")
    .option("--device <device>", "cpu or cuda", "cpu")
    .option("--threads <n>", "ONNX Runtime intra-op threads (default: all cores)")
    .action(async (args: GenerateArgs) => {
      process.stdout.write(`${await runGenerate(args)}\n`);
    });
}
