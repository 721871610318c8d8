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

export function generationConfigJson(v: Vocabulary): Record<string, unknown> {
  return {
    bos_token_id: v.id.get(BOS),
    eos_token_id: v.id.get(EOS),
    pad_token_id: v.id.get(PAD),
    do_sample: false,
    transformers_version: "4.46.0",
  };
}
