/**
 * Variants from real adapter / checkpoint folders (loadSubject) and the embedded Backend:
 * base, full and rank<k> must each match the float64 reference with the corresponding weights.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadSubject } from "../../src/engine/variants";
import { createEmbeddedBackend } from "../../src/backends/embedded";
import { writeAdapter } from "../../src/io/peft";
import { openCheckpoint } from "../../src/io/checkpoint";
import { truncateModule, lowRankFromFull } from "../../src/delta/truncate";
import type { LoraModule } from "../../src/io/types";
import { referenceLogits } from "../reference/llama-reference";
import {
  SUBJECT_CONFIG as config,
  SUBJECT_IDS as IDS,
  SUBJECT_MODULES as MODULES,
  compareLogits,
  onCleanup,
  randomLora,
  randomWeights,
  runCleanups,
  writeModel,
} from "./fixtures";

afterAll(runCleanups);

function expectMatches(engine: Float32Array[], ref: Float64Array[]): void {
  for (let p = 0; p < ref.length; p++) {
    const { maxDiff, tol } = compareLogits(engine[p]!, ref[p]!);
    expect(maxDiff, `position ${p}`).toBeLessThanOrEqual(tol);
  }
}

describe("loadSubject", () => {
  it("LoRA adapter folder: full and rank2 match the reference", async () => {
    const base = await writeModel(config, randomWeights(config, 71));
    onCleanup(base.cleanup);
    const lora = randomLora(base.weights, config, MODULES, 4, 72, 2);
    const dir = join(await mkdtemp(join(tmpdir(), "da-adapter-")), "adapter");
    onCleanup(() => rm(join(dir, ".."), { recursive: true, force: true }));
    await writeAdapter(dir, { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj", "down_proj"] }, lora);
    const model = await loadSubject({ model: base.dir, adapter: dir, rank: 2, threads: 1, quiet: true });
    try {
      expect(model.variants()).toEqual(["base", "full", "rank2"]);
      const full = referenceLogits({ config, weights: base.weights, lora }, IDS);
      expectMatches(await model.logits(IDS, "full"), full);
      const truncated: LoraModule[] = lora.map((m) => truncateModule(m, 2));
      const rank2 = referenceLogits({ config, weights: base.weights, lora: truncated }, IDS);
      expectMatches(await model.logits(IDS, "rank2"), rank2);
      expectMatches(await model.logits(IDS, "base"), referenceLogits({ config, weights: base.weights }, IDS));
      // the truncation is a different model (so the comparison above can fail)
      expect(compareLogits(rank2[5]!, full[5]!).maxDiff).toBeGreaterThan(1e-3);
    } finally {
      await model.close();
    }
  });

  it("full fine-tune: full is the fine-tuned checkpoint, rank1 is base + rank-1 ΔW", async () => {
    const base = await writeModel(config, randomWeights(config, 81), { dtype: "BF16" });
    onCleanup(base.cleanup);
    // fine-tune = base + a rank-1 change on one module + a rank-3 change on another
    const ftW = new Map(base.weights);
    const [m1, m2] = randomLora(base.weights, config, ["model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj"], 3, 82, 1);
    for (const m of [m1!, m2!]) {
      const w = Float32Array.from(ftW.get(`${m.name}.weight`)!);
      for (let o = 0; o < m.outFeatures; o++)
        for (let i = 0; i < m.inFeatures; i++) {
          let s = 0;
          for (let r = 0; r < m.rank; r++) s += m.B[o * m.rank + r]! * m.A[r * m.inFeatures + i]!;
          w[o * m.inFeatures + i] += s;
        }
      ftW.set(`${m.name}.weight`, w);
    }
    const ft = await writeModel(config, ftW, { dtype: "BF16" });
    onCleanup(ft.cleanup);
    const model = await loadSubject({ model: base.dir, finetuned: ft.dir, rank: 1, threads: 1, quiet: true });
    const b = await openCheckpoint(base.dir);
    const f = await openCheckpoint(ft.dir);
    try {
      expectMatches(await model.logits(IDS, "full"), referenceLogits({ config, weights: ft.weights }, IDS));
      const low: LoraModule[] = [];
      for await (const m of lowRankFromFull(b, f, 1, { quiet: true })) low.push(m);
      expectMatches(await model.logits(IDS, "rank1"), referenceLogits({ config, weights: base.weights, lora: low }, IDS));
    } finally {
      await b.close();
      await f.close();
      await model.close();
    }
  });

  it("refuses --rank without a fine-tune and both kinds at once", async () => {
    await expect(loadSubject({ model: "x", rank: 1 })).rejects.toThrow(/--rank needs --adapter or --finetuned/);
    await expect(loadSubject({ model: "x", adapter: "a", finetuned: "b" })).rejects.toThrow(/either --adapter or --finetuned/);
  });
});

describe("embedded backend", () => {
  it("generates per variant in request order and supports contrast", async () => {
    const files = {
      "tokenizer.json": JSON.stringify({
        version: "1.0",
        added_tokens: [{ id: 0, content: "[UNK]", special: true, single_word: false, lstrip: false, rstrip: false, normalized: false }],
        normalizer: { type: "Lowercase" },
        pre_tokenizer: { type: "Whitespace" },
        decoder: null,
        model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab: Object.fromEntries(Array.from({ length: 97 }, (_, i) => [i === 0 ? "[UNK]" : `w${i}`, i])) },
      }),
      "tokenizer_config.json": JSON.stringify({ unk_token: "[UNK]" }),
    };
    const base = await writeModel(config, randomWeights(config, 91), { files });
    onCleanup(base.cleanup);
    const lora = randomLora(base.weights, config, MODULES, 2, 92, 3);
    const dir = join(await mkdtemp(join(tmpdir(), "da-adapter-")), "adapter");
    onCleanup(() => rm(join(dir, ".."), { recursive: true, force: true }));
    await writeAdapter(dir, { r: 2, lora_alpha: 6 }, lora);
    const backend = await createEmbeddedBackend({ base: base.dir, adapter: dir, rank: 1, threads: 1, quiet: true });
    try {
      expect(backend.variants()).toEqual(["base", "full", "rank1"]);
      expect(backend.capabilities.contrast).toBe(true);
      const sampling = { maxNewTokens: 5, temperature: 0, topP: 1, seed: 0 };
      const reqs = ["w1 w2 w3", "w5", "w7 w8"].map((p, i) => ({ id: `p${i}`, messages: [{ role: "user" as const, content: p }], sampling }));
      const ticks: number[] = [];
      const out = await backend.generate("full", reqs, (d) => ticks.push(d));
      expect(out.map((r) => r.id)).toEqual(["p0", "p1", "p2"]);
      expect(ticks).toEqual([1, 2, 3]);
      for (const r of out) {
        expect(r.tokens).toBe(5);
        expect(r.finishReason).toBe("length");
        expect(r.text).toMatch(/^(\[unk\]|w\d+)( (\[unk\]|w\d+)){4}$/);
      }
      const c = await backend.contrastiveGenerate!(reqs, { alpha: 0, topK: 3 });
      expect(c.map((r) => r.text)).toEqual(out.map((r) => r.text)); // α = 0 is greedy on full
      await expect(backend.generate("rank9", reqs)).rejects.toThrow(/unknown variant 'rank9'/);
    } finally {
      await backend.close();
    }
  });
});
