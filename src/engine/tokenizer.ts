/**
 * Text ↔ token ids for a checkpoint folder: tokenizer.json through @huggingface/tokenizers,
 * the chat template from tokenizer_config.json through @huggingface/jinja, BOS/EOS from
 * generation_config.json / tokenizer_config.json / config.json.
 */
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { InputError } from "../errors";
import { readJsonFile } from "../io/checkpoint";
import { pathExists } from "../io/fs-util";
import { renderWithBudget } from "./chat-template";
import type { ChatMessage } from "../chat/types";

export interface TextTokenizer {
  encode(text: string, opts?: { addSpecialTokens?: boolean }): number[];
  decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string;
  /** the chat template rendered and tokenized (encodeChat of renderChat); no tokens is an InputError naming the file */
  applyChatTemplate(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): number[];
  /** the chat template rendered as text */
  renderChat(messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): string;
  /** tokenize text renderChat gave (a template writes its own special tokens: none are added) */
  encodeChat(text: string): number[];
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** whether tokenizer_config.json has a chat template (otherwise a plain role-labelled format is used) */
  hasChatTemplate: boolean;
  /** whether some token has this id (decode maps an id without one to the unknown token) */
  hasToken(id: number): boolean;
}

/**
 * A JSON object from the checkpoint folder, read like every other file io/ reads (regular files
 * only, size cap, nesting cap, errors that never quote the content); `undefined` when an
 * optional file is absent.
 */
async function readJson(path: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  if (!required && !(await pathExists(path))) return undefined;
  const v = await readJsonFile(path);
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

/** Longest token text quoted in an error message (token texts come from the checkpoint's files). */
const MAX_QUOTED_TOKEN_CHARS = 64;

function quoteToken(t: string): string {
  return JSON.stringify(t.length > MAX_QUOTED_TOKEN_CHARS ? `${t.slice(0, MAX_QUOTED_TOKEN_CHARS)}…` : t);
}

/**
 * The tokenizer model's own unknown token must have an id: WordPiece and BPE emit it for every
 * word they cannot split, and tokenizers.js then maps it to no id at all (the Rust crate fails
 * on the first unknown word). Checked at load, so a scan does not fail only once a probe holds one.
 */
function checkModelUnk(tok: Tokenizer, model: unknown, tjPath: string): void {
  if (!model || typeof model !== "object") return;
  const m = model as { unk_token?: unknown; unk_id?: unknown; vocab?: unknown };
  if (typeof m.unk_token === "string" && tok.token_to_id(m.unk_token) === undefined) {
    throw new InputError(`model.unk_token ${quoteToken(m.unk_token)} is not in the vocabulary`, tjPath);
  }
  if (typeof m.unk_id === "number" && Array.isArray(m.vocab) && !(Number.isInteger(m.unk_id) && m.unk_id >= 0 && m.unk_id < m.vocab.length)) {
    throw new InputError(`model.unk_id ${m.unk_id} is outside the vocabulary [0, ${m.vocab.length})`, tjPath);
  }
}

/** End-of-turn markers of common chat templates (Llama 3, ChatML/Qwen, Phi, Gemma). */
const END_OF_TURN_TOKENS = Object.freeze(["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"]);

/** Load the tokenizer of a checkpoint folder (tokenizer.json required). */
export async function loadTokenizer(dir: string): Promise<TextTokenizer> {
  const tjPath = join(dir, "tokenizer.json");
  const tcPath = join(dir, "tokenizer_config.json");
  const stmPath = join(dir, "special_tokens_map.json");
  const tj = await readJson(tjPath, true);
  const tc = (await readJson(tcPath, false)) ?? {};
  // transformers falls back to special_tokens_map.json for special tokens tokenizer_config.json lacks
  const stm = (await readJson(stmPath, false)) ?? {};
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
  checkModelUnk(tok, tj?.model, tjPath);

  const special = (k: string): string | undefined => tokenText(tc[k]) ?? tokenText(stm[k]);
  // transformers would append a named unk_token the vocabulary lacks as a new token, past the
  // model's embedding rows: a checkpoint whose files disagree is refused here, naming the file
  const unkText = special("unk_token");
  if (unkText !== undefined && idOf(unkText) === undefined) {
    throw new InputError(`unk_token ${quoteToken(unkText)} is not in the vocabulary of tokenizer.json`, tokenText(tc.unk_token) !== undefined ? tcPath : stmPath);
  }
  const bosText = special("bos_token");
  const eosText = special("eos_token");
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
    const t = special(k);
    if (t !== undefined) specials[k] = t;
  }

  const renderChat = (messages: ChatMessage[], { addGenerationPrompt }: { addGenerationPrompt: boolean }): string => {
    if (!template) return plainChat(messages, addGenerationPrompt);
    try {
      return renderWithBudget(template, { messages, add_generation_prompt: addGenerationPrompt, ...specials });
    } catch (err) {
      throw new InputError(`chat_template failed to render: ${(err as Error).message}`, tcPath);
    }
  };
  // the template writes BOS etc. itself (transformers tokenizes it with add_special_tokens=False);
  // the plain format gets the tokenizer's own specials
  const encodeChat = (text: string): number[] => tok.encode(text, { add_special_tokens: template === undefined }).ids;
  // a prompt of no tokens has no position to predict from; the file that produced it is named
  const applyChatTemplate = (messages: ChatMessage[], opts: { addGenerationPrompt: boolean }): number[] => {
    const text = renderChat(messages, opts);
    const list = encodeChat(text);
    if (list.length > 0) return list;
    if (template) throw new InputError(`chat_template renders ${text.trim() === "" ? "an empty prompt" : "a prompt of no tokens"}`, tcPath);
    throw new InputError("encodes the prompt as no tokens", tjPath);
  };
  return {
    encode: (text, opts = {}) => tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? true }).ids,
    // the tokenizers library rejects an empty list; a reply whose first token ends the turn is empty text
    decode: (list, opts = {}) => (list.length === 0 ? "" : tok.decode(list, { skip_special_tokens: opts.skipSpecialTokens ?? false })),
    renderChat,
    encodeChat,
    applyChatTemplate,
    bosTokenId,
    eosTokenIds,
    hasChatTemplate: template !== undefined,
    hasToken: (id) => tok.id_to_token(id) !== undefined,
  };
}
