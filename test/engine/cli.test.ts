/**
 * The `logits` and `generate` command contract (DESIGN.md), through the built CLI:
 * exact JSON shape, logits equal to the float64 reference, exit 2 with a one-line message on
 * bad input, and the generated text equal to the reference's greedy continuation.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { writeAdapter } from "../../src/io/peft";
import { truncateModule } from "../../src/delta/truncate";
import { loadTokenizer } from "../../src/engine/tokenizer";
import { referenceLogits } from "../reference/llama-reference";
import { formatLogits } from "../../src/commands/logits";
import { TINY_BASE, compareLogits, randomLora, randomWeights, writeModel, type WrittenModel } from "./fixtures";

const root = new URL("../..", import.meta.url).pathname;
const cli = (...args: string[]) => spawnSync(process.execPath, [`${root}bin/delta-audit.js`, ...args], { encoding: "utf8", maxBuffer: 1 << 28 });

const vocab = ["[UNK]", "<|eot|>", ...Array.from({ length: 95 }, (_, i) => `w${i + 2}`)];
const tokenizerFiles = {
  "tokenizer.json": JSON.stringify({
    version: "1.0",
    added_tokens: [0, 1].map((id) => ({ id, content: vocab[id], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: "Lowercase" },
    pre_tokenizer: { type: "Whitespace" },
    post_processor: null,
    decoder: null,
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab: Object.fromEntries(vocab.map((v, i) => [v, i])) },
  }),
  // a tiny ChatML-like template, so --system and the generation prompt are exercised
  "tokenizer_config.json": JSON.stringify({
    eos_token: "<|eot|>",
    unk_token: "[UNK]",
    chat_template: "{% for m in messages %}{{ m.role }} {{ m.content }} <|eot|> {% endfor %}{% if add_generation_prompt %}assistant {% endif %}",
  }),
};

const config = { ...TINY_BASE, model_type: "qwen2", vocab_size: 97 };
let model: WrittenModel;
let adapterDir: string;
const lora = () => randomLora(model.weights, config, ["model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj"], 3, 5, 2);

beforeAll(async () => {
  model = await writeModel(config, randomWeights(config, 61), { files: tokenizerFiles });
  adapterDir = join(await mkdtemp(join(tmpdir(), "da-cli-adapter-")), "adapter");
  await writeAdapter(adapterDir, { r: 3, lora_alpha: 6 }, lora());
});
afterAll(async () => {
  await model?.cleanup();
  if (adapterDir) await rm(join(adapterDir, ".."), { recursive: true, force: true });
});

function checkRows(rows: number[][], ref: Float64Array[]): void {
  expect(rows).toHaveLength(ref.length);
  for (let p = 0; p < ref.length; p++) {
    expect(rows[p]).toHaveLength(config.vocab_size);
    const { maxDiff, tol } = compareLogits(rows[p]!, ref[p]!);
    expect(maxDiff, `position ${p}`).toBeLessThanOrEqual(tol);
  }
}

describe("delta-audit logits", () => {
  it("prints exactly {ids, logits} matching the reference, for base, adapter and --rank", () => {
    const ids = [5, 0, 96, 12, 7];
    const r = cli("logits", "--model", model.dir, "--ids", ids.join(","));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.startsWith(`{"ids":[5,0,96,12,7],"logits":[[`)).toBe(true);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out)).toEqual(["ids", "logits"]);
    checkRows(out.logits, referenceLogits({ config, weights: model.weights }, ids));

    const ra = cli("logits", "--model", model.dir, "--adapter", adapterDir, "--ids", ids.join(","));
    expect(ra.status, ra.stderr).toBe(0);
    checkRows(JSON.parse(ra.stdout).logits, referenceLogits({ config, weights: model.weights, lora: lora() }, ids));

    const rk = cli("logits", "--model", model.dir, "--adapter", adapterDir, "--rank", "1", "--ids", ids.join(","));
    expect(rk.status, rk.stderr).toBe(0);
    const truncated = lora().map((m) => truncateModule(m, 1));
    checkRows(JSON.parse(rk.stdout).logits, referenceLogits({ config, weights: model.weights, lora: truncated }, ids));
  });

  it("exits 2 with a one-line message on bad input", () => {
    const cases: [string[], RegExp][] = [
      [["--ids", "1,97"], /--ids: token id 97 is outside the vocabulary/],
      [["--ids", "1,x"], /--ids: expected comma-separated/],
      [[], /--ids: required/],
      [["--ids", "1", "--device", "tpu"], /--device: expected one of cpu, cuda, got 'tpu'/],
      [["--ids", "1", "--rank", "1"], /--rank needs --adapter or --finetuned/],
    ];
    for (const [args, msg] of cases) {
      const r = cli("logits", "--model", model.dir, ...args);
      expect(r.status, args.join(" ")).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
    }
    const missing = cli("logits", "--model", join(model.dir, "nope"), "--ids", "1");
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/nope/);
  });

  it("--device cuda without the CUDA build is a clear usage error", () => {
    const r = cli("logits", "--model", model.dir, "--ids", "1", "--device", "cuda");
    // this CPU-only install has no CUDA provider library
    expect(r.status).toBe(2);
    expect(r.stderr).toBe("delta-audit: --device cuda: the CUDA execution provider is not installed: reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 (needs CUDA 12 and cuDNN 9) or use the cpu device\n");
  });
});

describe("delta-audit logits: exact numbers, hostile ids, --finetuned", () => {
  it("formatLogits prints float32 values that parse back to the same float32 bits", () => {
    const tricky = new Float32Array([1 / 3, -0, 1e-45, -1.401298464324817e-45, 3.4028234663852886e38, -3.4028234663852886e38, 1.1754942106924411e-38, 0.1, 16777217, -2.5e-8, 123456.789]);
    const out = JSON.parse(formatLogits([4], [tricky])) as { ids: number[]; logits: number[][] };
    const back = Float32Array.from(out.logits[0]!);
    const bits = (a: Float32Array) => [...new Uint32Array(a.buffer)].filter((_, i) => i !== 1); // -0 prints as 0 in JSON
    expect(bits(back)).toEqual(bits(tricky));
    expect(back[1]).toBe(0);
  });

  it("every printed value is exactly a float32 (nothing rounded on the way out)", () => {
    const r = cli("logits", "--model", model.dir, "--ids", "3,1,4,1,5");
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { logits: number[][] };
    const flat = out.logits.flat();
    expect(flat).toHaveLength(5 * config.vocab_size);
    expect(flat.every((v) => Math.fround(v) === v)).toBe(true);
    // and not short decimals: some value needs more than 7 significant digits to round-trip
    expect(flat.some((v) => String(v).replace(/^-?0\.0*|[-.]|e.*$/g, "").length > 7)).toBe(true);
  });

  it("empty, negative, fractional, non-decimal, huge and out-of-range ids exit 2 with one line", () => {
    for (const ids of ["", " ", ",", "1,,2", "-1", "1.5", "1e3", "0x10", "+3", "99999999999999999999", "[1,2]", "1;2", "97", "1,2,4294967297"]) {
      const r = cli("logits", "--model", model.dir, "--ids", ids);
      expect(r.status, `--ids '${ids}': ${r.stderr}`).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/--ids/);
    }
  });

  it("--finetuned prints the fine-tuned checkpoint's logits; --finetuned --rank with K ≥ every ΔW's rank equals it", async () => {
    const ftWeights = new Map(model.weights);
    // a rank-4 change to one matrix (each term is a sum of two separable products), so --rank 4 reproduces the fine-tune exactly
    const name = "model.layers.1.mlp.gate_proj.weight";
    const w = Float32Array.from(ftWeights.get(name)!);
    const I = TINY_BASE.intermediate_size as number;
    const H = TINY_BASE.hidden_size as number;
    for (let o = 0; o < I; o++) for (let i = 0; i < H; i++) w[o * H + i] += 0.3 * Math.sin(o + 2 * i) + 0.2 * Math.cos(3 * o - i);
    ftWeights.set(name, w);
    const ft = await writeModel(config, ftWeights, { files: tokenizerFiles });
    try {
      const ids = [9, 8, 7, 60, 2];
      const ref = referenceLogits({ config, weights: ft.weights }, ids);
      const r = cli("logits", "--model", model.dir, "--finetuned", ft.dir, "--ids", ids.join(","));
      expect(r.status, r.stderr).toBe(0);
      checkRows(JSON.parse(r.stdout).logits, ref);
      const rk = cli("logits", "--model", model.dir, "--finetuned", ft.dir, "--rank", "4", "--ids", ids.join(","));
      expect(rk.status, rk.stderr).toBe(0);
      checkRows(JSON.parse(rk.stdout).logits, ref);
      // and the base differs from it, so the checks above can fail
      const base = referenceLogits({ config, weights: model.weights }, ids);
      expect(Math.max(...ref.map((row, p) => compareLogits(row, base[p]!).maxDiff))).toBeGreaterThan(0.05);
    } finally {
      await ft.cleanup();
    }
  });
});

describe("delta-audit generate", () => {
  it("prints the greedy completion of the chat-templated prompt (reference argmax at every step)", async () => {
    const r = cli("generate", "--model", model.dir, "--system", "w3 w4", "--prompt", "W5 w6 w7", "--max-new-tokens", "6");
    expect(r.status, r.stderr).toBe(0);
    const tok = await loadTokenizer(model.dir);
    const seq = tok.applyChatTemplate(
      [
        { role: "system", content: "w3 w4" },
        { role: "user", content: "W5 w6 w7" },
      ],
      { addGenerationPrompt: true },
    );
    const gen: number[] = [];
    for (let i = 0; i < 6; i++) {
      const last = referenceLogits({ config, weights: model.weights }, seq).at(-1)!;
      const t = last.indexOf(Math.max(...last));
      if (t === 1) break; // <|eot|>
      gen.push(t);
      seq.push(t);
    }
    expect(r.stdout).toBe(`${tok.decode(gen, { skipSpecialTokens: true })}\n`);
  });

  it("sampling with a seed is reproducible", () => {
    const args = ["generate", "--model", model.dir, "--prompt", "w9", "--max-new-tokens", "12", "--temperature", "1.3", "--top-p", "0.95"];
    const a = cli(...args, "--seed", "4");
    const b = cli(...args, "--seed", "4");
    expect(a.status, a.stderr).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    const bad = cli(...args, "--seed", "-1");
    expect(bad.status).toBe(2);
    expect(cli("generate", "--model", model.dir).stderr).toMatch(/--prompt: required/);
  });
});
