/**
 * `delta-audit generate --model DIR [--adapter DIR | --finetuned DIR] [--rank K] --prompt TEXT
 * [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S] [--device]`
 * prints the completion of one chat turn (the chat template with the generation prompt).
 */
import type { Command } from "commander";
import { InputError } from "../errors";
import type { ChatMessage } from "../chat/types";
import { openSubject, parseIntFlag, parseNumberFlag, type SubjectArgs } from "./logits";

export const DEFAULT_MAX_NEW_TOKENS = 256;
/** Far beyond any audit probe; stops a typo from running for hours. */
const MAX_NEW_TOKENS_LIMIT = 32768;
/** Temperatures above this are noise, not sampling. */
const MAX_TEMPERATURE = 10;

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
    maxNewTokens: parseIntFlag(args.maxNewTokens, "--max-new-tokens", DEFAULT_MAX_NEW_TOKENS, 1, MAX_NEW_TOKENS_LIMIT),
    temperature: parseNumberFlag(args.temperature, "--temperature", 0, 0, MAX_TEMPERATURE),
    topP: parseNumberFlag(args.topP, "--top-p", 1, Number.MIN_VALUE, 1),
    seed: parseIntFlag(args.seed, "--seed", 0, 0, 2 ** 32 - 1),
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
