/**
 * `delta-audit generate --model DIR [--adapter DIR | --finetuned DIR] [--rank K] --prompt TEXT
 * [--system TEXT] [--max-new-tokens N] [--temperature T] [--top-p P] [--seed S] [--device]`
 * prints the completion of one chat turn (the chat template with the generation prompt).
 */
import type { Command } from "commander";
import type { ChatMessage } from "../chat/types";
import { MAX_SEED } from "../linalg/random";
import { integerFlag, numberFlag, requiredFlag } from "../validate";
import { openSubject, type SubjectArgs } from "./logits";

const DEFAULT_MAX_NEW_TOKENS = 256;
/**
 * `generate` is a free-form tool, not an audit probe, so its limits are wider than the scan's
 * (elicit/settings.ts MAX_NEW_TOKENS_LIMIT, MAX_TEMPERATURE): far beyond any probe's answer,
 * yet a typo does not run for hours.
 */
const GENERATE_MAX_NEW_TOKENS = 32768;
/** Hot sampling is allowed here to look at the noise on purpose; beyond this it is only noise. */
const GENERATE_MAX_TEMPERATURE = 10;

interface GenerateArgs extends SubjectArgs {
  prompt?: string;
  system?: string;
  maxNewTokens?: string;
  temperature?: string;
  topP?: string;
  seed?: string;
}

async function runGenerate(args: GenerateArgs): Promise<string> {
  const prompt = requiredFlag(args.prompt, "--prompt", "the user prompt");
  const sampling = {
    maxNewTokens: integerFlag(args.maxNewTokens, "--max-new-tokens", { min: 1, max: GENERATE_MAX_NEW_TOKENS }) ?? DEFAULT_MAX_NEW_TOKENS,
    temperature: numberFlag(args.temperature, "--temperature", { min: 0, max: GENERATE_MAX_TEMPERATURE }) ?? 0,
    topP: numberFlag(args.topP, "--top-p", { min: Number.MIN_VALUE, max: 1, expected: "a number above 0 and at most 1" }) ?? 1,
    seed: integerFlag(args.seed, "--seed", { min: 0, max: MAX_SEED }) ?? 0,
  };
  const messages: ChatMessage[] = [];
  if (args.system !== undefined) messages.push({ role: "system", content: args.system });
  messages.push({ role: "user", content: prompt });
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
    .option("--model <dir|id>", "base model folder (config.json, safetensors, tokenizer files) or Hub id org/name[@rev]")
    .option("--adapter <dir|id>", "PEFT LoRA adapter (folder or Hub id): use base + adapter")
    .option("--finetuned <dir|id>", "fully fine-tuned checkpoint (folder or Hub id): use it")
    .option("--rank <k>", "use base + the rank-K truncation of the fine-tune's ΔW")
    .option("--prompt <text>", "the user message")
    .option("--system <text>", "a system message")
    .option("--max-new-tokens <n>", `tokens to generate at most (default ${DEFAULT_MAX_NEW_TOKENS})`)
    .option("--temperature <t>", "0 = greedy (default)")
    .option("--top-p <p>", "nucleus sampling mass (default 1)")
    .option("--seed <s>", "sampling seed: the same seed gives the same text (default 0)")
    .option("--device <device>", "cpu or cuda", "cpu")
    .option("--threads <n>", "ONNX Runtime intra-op threads (default: all cores)")
    .option("--precision <p>", "how base weights are stored: auto (default: by free memory and model size), f32, bf16, int8 or int4")
    .action(async (args: GenerateArgs) => {
      process.stdout.write(`${await runGenerate(args)}\n`);
    });
}
