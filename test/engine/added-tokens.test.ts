/**
 * Full fine-tunes that add tokens: every variant runs the fine-tune's vocabulary. `full` must be
 * the float64 reference forward pass of the fine-tune itself; `base` the reference of the base
 * with its vocabulary matrices padded by the fine-tune's added rows; `rank<k>` that padded base
 * plus the rank-k LoRA; and the `truncate` output (LoRA + added_token_rows.safetensors) must
 * load as that same model. Also: token texts from the model's files are made visible and cut.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadSubject } from "../../src/engine/variants";
import { describeAddedTokens, MAX_ADDED_TOKEN_CHARS, visibleTokenText } from "../../src/engine/added-tokens";
import { withDeltaSubject, writeRankAdapter } from "../../src/delta/pass";
import { ADDED_ROWS_FILE } from "../../src/delta/vocab-growth";
import { openAdapter } from "../../src/io/peft";
import { writeSafetensors } from "../../src/io/safetensors";
import { InputError } from "../../src/errors";
import type { LoraModule } from "../../src/io/types";
import { referenceLogits } from "../reference/llama-reference";
import { compareLogits, onCleanup, randomArray, randomWeights, rng, runCleanups, SUBJECT_CONFIG, writeModel } from "./fixtures";

afterAll(runCleanups);

const ADDED = 3;
/** prompts that use the added ids (97, 98, 99) as well as shared ones */
const IDS = [4, 97, 15, 98, 23, 99, 42];

function expectMatches(engine: Float32Array[], ref: Float64Array[]): void {
  expect(engine.length).toBe(ref.length);
  for (let p = 0; p < ref.length; p++) {
    expect(engine[p]!.length).toBe(ref[p]!.length);
    const { maxDiff, tol } = compareLogits(engine[p]!, ref[p]!);
    expect(maxDiff, `position ${p}`).toBeLessThanOrEqual(tol);
  }
}

/** Weights `w` with every vocabulary matrix's first `rows` rows (a copy). */
function firstRows(w: Map<string, Float32Array>, rows: number, H: number): Map<string, Float32Array> {
  return new Map([...w].map(([n, d]) => [n, n === "model.embed_tokens.weight" || n === "lm_head.weight" ? d.slice(0, rows * H) : d]));
}

/**
 * A base and a full fine-tune of it that adds ADDED tokens: two linears changed by a dense
 * update, the shared rows of the vocabulary matrices drifted, new rows appended.
 */
async function addedTokenPair(tied: boolean, seed: number) {
  const baseConfig: Record<string, unknown> = { ...SUBJECT_CONFIG, tie_word_embeddings: tied };
  const V = baseConfig.vocab_size as number;
  const H = baseConfig.hidden_size as number;
  const ftConfig = { ...baseConfig, vocab_size: V + ADDED };
  const r = rng(seed);
  const ftWeights = randomWeights(ftConfig, seed);
  const baseWeights = firstRows(ftWeights, V, H);
  for (const n of ["model.embed_tokens.weight", "lm_head.weight"]) {
    const b = baseWeights.get(n);
    if (b) baseWeights.set(n, Float32Array.from(b, (x) => x - 0.05 * (2 * r() - 1)));
  }
  for (const n of ["model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"]) {
    const f = ftWeights.get(n)!;
    baseWeights.set(n, Float32Array.from(f, (x, i) => x - 0.3 * Math.sin(i * 0.37 + seed) * (2 * r() - 1)));
  }
  const base = await writeModel(baseConfig, baseWeights);
  const ft = await writeModel(ftConfig, ftWeights);
  onCleanup(base.cleanup);
  onCleanup(ft.cleanup);
  // the base padded with the fine-tune's added rows: what base and rank-k run
  const padded = new Map(base.weights);
  for (const n of ["model.embed_tokens.weight", "lm_head.weight"]) {
    const b = base.weights.get(n);
    if (!b) continue;
    const p = new Float32Array((V + ADDED) * H);
    p.set(b);
    p.set(ft.weights.get(n)!.subarray(V * H), V * H);
    padded.set(n, p);
  }
  return { base, ft, baseConfig, ftConfig, padded, V, H };
}

async function tempDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "da-added-"));
  onCleanup(() => rm(d, { recursive: true, force: true }));
  return d;
}

async function truncated(base: string, finetuned: string, rank: number, out: string): Promise<LoraModule[]> {
  await withDeltaSubject({ kind: "full", base, finetuned }, (s) => writeRankAdapter(s, rank, out, { quiet: true, onNotice: () => undefined }));
  const adapter = await openAdapter(out);
  try {
    const modules: LoraModule[] = [];
    for (const n of adapter.moduleNames()) modules.push(await adapter.readModule(n));
    return modules;
  } finally {
    await adapter.close();
  }
}

describe("a full fine-tune that adds tokens", () => {
  for (const tied of [false, true]) {
    it(`${tied ? "tied" : "untied"} embeddings: base, full and rank2 run the fine-tune's vocabulary and match the reference`, async () => {
      const { base, ft, ftConfig, padded, V } = await addedTokenPair(tied, tied ? 41 : 43);
      const model = await loadSubject({ model: base.dir, finetuned: ft.dir, rank: 2, threads: 1, quiet: true });
      try {
        expect(model.config.vocabSize).toBe(V + ADDED);
        expect(model.variants()).toEqual(["base", "full", "rank2"]);
        // full: the fine-tune itself
        expectMatches(await model.logits(IDS, "full"), referenceLogits({ config: ftConfig, weights: ft.weights }, IDS));
        // base: the base padded with the fine-tune's rows
        expectMatches(await model.logits(IDS, "base"), referenceLogits({ config: ftConfig, weights: padded }, IDS));
        // rank2: padded base + rank-2 ΔW of the decoder linears, as truncate writes it
        const lora = await truncated(base.dir, ft.dir, 2, join(await tempDir(), "rank2"));
        expect(lora.map((m) => m.name).sort()).toEqual(["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.down_proj"]);
        const rank2 = referenceLogits({ config: ftConfig, weights: padded, lora }, IDS);
        expectMatches(await model.logits(IDS, "rank2"), rank2);
        // the variants differ, so the comparisons above could fail
        expect(compareLogits(rank2[6]!, referenceLogits({ config: ftConfig, weights: padded }, IDS)[6]!).maxDiff).toBeGreaterThan(1e-3);
      } finally {
        await model.close();
      }
    });
  }

  it("the truncate output (LoRA + added_token_rows.safetensors) loads as the rank-k variant", async () => {
    const { base, ft, ftConfig, padded, V } = await addedTokenPair(false, 47);
    const out = join(await tempDir(), "trunc");
    const lora = await truncated(base.dir, ft.dir, 1, out);
    const viaAdapter = await loadSubject({ model: base.dir, adapter: out, threads: 1, quiet: true });
    try {
      expect(viaAdapter.config.vocabSize).toBe(V + ADDED);
      expectMatches(await viaAdapter.logits(IDS, "full"), referenceLogits({ config: ftConfig, weights: padded, lora }, IDS));
      expectMatches(await viaAdapter.logits(IDS, "base"), referenceLogits({ config: ftConfig, weights: padded }, IDS));
    } finally {
      await viaAdapter.close();
    }
  });

  it("added rows that do not extend the base are refused, naming the file", async () => {
    const { base, ft } = await addedTokenPair(false, 53);
    const out = join(await tempDir(), "trunc");
    await truncated(base.dir, ft.dir, 1, out);
    // rows cut from a fine-tune of another model: one column too many
    await rm(join(out, ADDED_ROWS_FILE));
    const H = SUBJECT_CONFIG.hidden_size as number;
    await writeSafetensors(
      join(out, ADDED_ROWS_FILE),
      [{ name: "model.embed_tokens.weight", dtype: "F32", shape: [ADDED, H + 1], data: randomArray(ADDED * (H + 1), 1, rng(1)) }],
      { format: "delta-audit added-token rows v1", first_row: "97", vocab_size: "100" },
    );
    const err = await loadSubject({ model: base.dir, adapter: out, threads: 1, quiet: true }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toContain(ADDED_ROWS_FILE);
    expect((err as InputError).message).toContain("another model");
  });

  it("serving a fine-tune that adds tokens beside the base's vocabulary is refused with what to do", async () => {
    const { base, ft } = await addedTokenPair(false, 59);
    const { loadModel } = await import("../../src/engine/index");
    const { addFinetunedVariant } = await import("../../src/engine/variants");
    const model = await loadModel(base.dir, { threads: 1 });
    try {
      const err = await addFinetunedVariant(model, "ft", ft.dir).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InputError);
      expect((err as Error).message).toMatch(/adds 3 token\(s\).*--finetuned/);
    } finally {
      await model.close();
    }
  });
});

describe("added token texts", () => {
  it("are made visible: whitespace escapes, hidden characters as code points (flagged), ends marked, long ones cut", () => {
    expect(visibleTokenText("<|tool|>")).toEqual({ text: "<|tool|>" });
    expect(visibleTokenText("\n\n")).toEqual({ text: "\\n\\n" });
    expect(visibleTokenText("\r\n")).toEqual({ text: "\\r\\n" });
    expect(visibleTokenText("a\\b")).toEqual({ text: "a\\\\b" });
    expect(visibleTokenText(" hi ")).toEqual({ text: "␣hi␣" });
    expect(visibleTokenText("x\u202ey")).toEqual({ text: "x\\u{202E}y", hidden: true });
    expect(visibleTokenText("\u200b")).toEqual({ text: "\\u{200B}", hidden: true });
    expect(visibleTokenText("a\u0007b\u2028c")).toEqual({ text: "a\\u{0007}b\\u{2028}c", hidden: true });
    expect(visibleTokenText("\u{e0041}")).toEqual({ text: "\\u{E0041}", hidden: true });
    const long = visibleTokenText("y".repeat(100_000) + "\u202e");
    expect(Array.from(long.text)).toHaveLength(MAX_ADDED_TOKEN_CHARS);
    expect(long.text.endsWith("…")).toBe(true);
    // a hidden character past the cut still counts
    expect(long).toMatchObject({ length: 100_001, hidden: true });
  });

  it("rows no token maps to are counted as padding; no tokenizer is a problem stated, not an error", async () => {
    const dir = await tempDir();
    const vocab: Record<string, number> = { "[UNK]": 0, a: 1, b: 2 };
    const tokenizer = {
      version: "1.0",
      added_tokens: [{ id: 3, content: "<|tool|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
      normalizer: null,
      pre_tokenizer: { type: "Whitespace" },
      post_processor: null,
      decoder: null,
      model: { type: "WordLevel", vocab, unk_token: "[UNK]" },
    };
    await writeFile(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
    // three rows past the base's 3: one is <|tool|>, two are padding
    const g = await describeAddedTokens(dir, { baseRows: 3, rows: 6, tensors: ["model.embed_tokens.weight"] });
    expect(g).toMatchObject({ tokens: [{ id: 3, text: "<|tool|>" }], decodedRows: 3, emptyRows: 2, hiddenTokens: 0 });
    const none = await describeAddedTokens(join(dir, "missing"), { baseRows: 3, rows: 6, tensors: ["model.embed_tokens.weight"] });
    expect(none.tokens).toBeUndefined();
    expect(none.tokenizerProblem).toContain("no tokenizer.json");
  });
});
