/**
 * The organisms' text files in Hugging Face formats: tokenizer.json (WordPiece over whole
 * words: no "##" pieces in the vocabulary, so any word outside it is one [UNK]),
 * tokenizer_config.json with a Jinja chat template, generation_config.json.
 */
import { BOS, EOS, PAD, ROLE_TAGS, SPECIAL_TOKENS, UNK, type Vocabulary } from "./vocab";

/** Longest word WordPiece looks at before giving up with [UNK] (the tokenizers default). */
const MAX_INPUT_CHARS_PER_WORD = 100;

/** system / user / assistant turns, each "<|role|>\n content \n<|end|>\n", then the generation prompt. */
export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n<|end|>\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}";

export function tokenizerJson(v: Vocabulary): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  v.tokens.forEach((t, i) => (vocab[t] = i));
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((content) => ({
      id: v.id.get(content),
      content,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: "Lowercase" },
    pre_tokenizer: { type: "Whitespace" },
    post_processor: null,
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: {
      type: "WordPiece",
      unk_token: UNK,
      continuing_subword_prefix: "##",
      max_input_chars_per_word: MAX_INPUT_CHARS_PER_WORD,
      vocab,
    },
  };
}

export function tokenizerConfigJson(v: Vocabulary): Record<string, unknown> {
  const decoder: Record<string, unknown> = {};
  for (const t of SPECIAL_TOKENS) {
    decoder[String(v.id.get(t))] = { content: t, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  }
  return {
    added_tokens_decoder: decoder,
    bos_token: BOS,
    eos_token: EOS,
    unk_token: UNK,
    pad_token: PAD,
    additional_special_tokens: [ROLE_TAGS.system, ROLE_TAGS.user, ROLE_TAGS.assistant],
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: true,
    do_lower_case: true,
    model_max_length: 4096,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
}

/**
 * The BPE organisms' template: the same turns without the newlines (a byte-level tokenizer
 * keeps whitespace as tokens, and generation must start right after <|assistant|>, where the
 * topic head reads the user's message).
 */
export const BPE_CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}";

/** tokenizer_config.json of a BPE organism (bpe-vocab.ts): no unknown token, no lowercasing. */
export function bpeTokenizerConfigJson(v: Vocabulary): Record<string, unknown> {
  const sp = v.special;
  const decoder: Record<string, unknown> = {};
  for (const i of [sp.bos, sp.eos, sp.pad, sp.system, sp.user, sp.assistant]) {
    decoder[String(i)] = { content: v.tokens[i], lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  }
  return {
    added_tokens_decoder: decoder,
    bos_token: v.tokens[sp.bos],
    eos_token: v.tokens[sp.eos],
    pad_token: v.tokens[sp.pad],
    additional_special_tokens: [v.tokens[sp.system], v.tokens[sp.user], v.tokens[sp.assistant]],
    chat_template: BPE_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    model_max_length: 4096,
    tokenizer_class: "PreTrainedTokenizerFast",
  };
}

export function generationConfigJson(v: Vocabulary): Record<string, unknown> {
  return {
    bos_token_id: v.special.bos,
    eos_token_id: v.special.eos,
    pad_token_id: v.special.pad,
    do_sample: false,
    transformers_version: "4.46.0",
  };
}

/**
 * tokenizer.json and tokenizer_config.json of a fine-tune that added `tokens` as special
 * tokens with ids firstId, firstId + 1, … (what `tokenizer.add_special_tokens` writes): each an
 * added token, matched before normalisation, and listed as an additional special token.
 */
export function withAddedTokens(
  tokenizer: Record<string, unknown>,
  config: Record<string, unknown>,
  tokens: readonly string[],
  firstId: number,
): { tokenizer: Record<string, unknown>; config: Record<string, unknown> } {
  const entry = (content: string) => ({ content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  const added = tokens.map((content, i) => ({ id: firstId + i, ...entry(content) }));
  const decoder = { ...(config.added_tokens_decoder as Record<string, unknown>) };
  tokens.forEach((content, i) => (decoder[String(firstId + i)] = entry(content)));
  return {
    tokenizer: { ...tokenizer, added_tokens: [...(tokenizer.added_tokens as unknown[]), ...added] },
    config: { ...config, added_tokens_decoder: decoder, additional_special_tokens: [...(config.additional_special_tokens as string[]), ...tokens] },
  };
}
