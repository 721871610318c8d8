/**
 * Text ↔ token ids for a checkpoint folder: tokenizer.json through @huggingface/tokenizers,
 * the chat template from tokenizer_config.json through @huggingface/jinja, BOS/EOS from
 * generation_config.json / tokenizer_config.json / config.json.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { InputError } from "../errors";
import type { ChatMessage } from "../chat/types";

export interface TextTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** the chat template rendered and tokenized (no extra special tokens: the template has them) */
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): number[];
  /** the chat template rendered as text */
  renderChat(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): string;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** whether tokenizer_config.json has a chat template (otherwise a plain role-labelled format is used) */
  hasChatTemplate: boolean;
}

async function readJson(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new InputError(`cannot read: ${(err as Error).message}`, path);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InputError(`invalid JSON: ${(err as Error).message}`, path);
  }
  if (!v || typeof v !== "object" || Array.isArray(v)) throw new InputError("not a JSON object", path);
  return v as Record<string, unknown>;
}

/** A special token in tokenizer_config.json is a string or an AddedToken object {content}. */
function tokenText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return undefined;
}

function ids(v: unknown): number[] {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number" && Number.isInteger(x) && x >= 0);
  return [];
}

/**
 * Without a chat template (base models) messages are joined in a plain, role-labelled
 * format ending with "Assistant:" so a completion model still sees a dialogue.
 */
function plainChat(messages: ChatMessage[], addGenerationPrompt: boolean): string {
  const label = { system: "System", user: "User", assistant: "Assistant" } as const;
  const body = messages.map((m) => `${label[m.role] ?? m.role}: ${m.content}`).join("\n");
  return addGenerationPrompt ? `${body}\nAssistant:` : body;
}

/** End-of-turn markers of common chat templates (Llama 3, ChatML/Qwen, Phi, Gemma). */
const END_OF_TURN_TOKENS = Object.freeze(["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"]);

/** Load the tokenizer of a checkpoint folder (tokenizer.json required). */
export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const tjPath = join(dir, "tokenizer.json");
  const tcPath = join(dir, "tokenizer_config.json");
  const tj = await readJson(tjPath, true);
  const tc = (await readJson(tcPath, false)) ?? {};
  const gen = await readJson(join(dir, "generation_config.json"), false);
  const cfg = await readJson(join(dir, "config.json"), false);
  let tok: Tokenizer;
  try {
    // The Rust `tokenizers` crate treats absent components as null; tokenizers.js wants the keys.
    const full = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, added_tokens: [], ...tj };
    tok = new Tokenizer(full, tc);
  } catch (err) {
    throw new InputError(`unsupported or malformed tokenizer: ${(err as Error).message}`, tjPath);
  }
  const idOf = (text: string | undefined): number | undefined => (text === undefined ? undefined : tok.token_to_id(text));

  const bosText = tokenText(tc.bos_token);
  const eosText = tokenText(tc.eos_token);
  const bosTokenId = ids(gen?.bos_token_id)[0] ?? idOf(bosText) ?? ids(cfg?.bos_token_id)[0] ?? null;
  // generation_config.json is what transformers' generate() stops on; without it, stop on the
  // tokenizer's EOS and the model config's EOS ids.
  let eosTokenIds = ids(gen?.eos_token_id);
  if (eosTokenIds.length === 0) {
    const set = new Set<number>(ids(cfg?.eos_token_id));
    const e = idOf(eosText);
    if (e !== undefined) set.add(e);
    eosTokenIds = [...set];
  }

  let template: Template | undefined;
  let ct = tc.chat_template;
  if (Array.isArray(ct)) {
    // newer configs: a list of {name, template}; "default" is the chat one
    const d = ct.find((t) => t && typeof t === "object" && (t as { name?: unknown }).name === "default") as { template?: unknown } | undefined;
    ct = d?.template;
  }
  if (typeof ct === "string") {
    try {
      template = new Template(ct);
    } catch (err) {
      throw new InputError(`chat_template does not parse: ${(err as Error).message}`, tcPath);
    }
  }
  // Chat models end a turn with their own token (<|eot_id|>, <|im_end|>) that base-model
  // configs often do not list as EOS; when the template writes one, generation stops on it too.
  if (typeof ct === "string") {
    for (const t of END_OF_TURN_TOKENS) {
      const id = idOf(t);
      if (id !== undefined && ct.includes(t) && !eosTokenIds.includes(id)) eosTokenIds.push(id);
    }
  }
  const specials: Record<string, string> = {};
  for (const k of ["bos_token", "eos_token", "unk_token", "pad_token"]) {
    const t = tokenText(tc[k]);
    if (t !== undefined) specials[k] = t;
  }

  const renderChat = (messages: ChatMessage[], { addGenerationPrompt }: { addGenerationPrompt: boolean }): string => {
    if (!template) return plainChat(messages, addGenerationPrompt);
    try {
      return template.render({ messages, add_generation_prompt: addGenerationPrompt, ...specials });
    } catch (err) {
      throw new InputError(`chat_template failed to render: ${(err as Error).message}`, tcPath);
    }
  };
  return {
    encode: (text, opts = {}) => tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids,
    // the tokenizers library rejects an empty list; a reply whose first token ends the turn is empty text
    decode: (list, opts = {}) => (list.length === 0 ? "" : tok.decode(list, { skip_special_tokens: opts.skipSpecialTokens ?? false })),
    renderChat,
    applyChatTemplate: (messages, opts) => {
      const text = renderChat(messages, opts);
      // the template writes BOS etc. itself (transformers tokenizes it with add_special_tokens=False)
      return template ? tok.encode(text, { add_special_tokens: false }).ids : tok.encode(text).ids;
    },
    bosTokenId,
    eosTokenIds,
    hasChatTemplate: template !== undefined,
  };
}
