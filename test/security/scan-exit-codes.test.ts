/**
 * Input problems a scan finds only once the engine runs (issue 16): a base folder without
 * tokenizer.json, a chat template that raises or renders nothing, an unk_token the vocabulary
 * lacks, NaN weights, a context shorter than the probes. Each is the user's to fix: exit 2, one
 * stderr line naming the file, and no output folder (nor staging folder) left — never exit 3
 * "backend failed" with a half-measured report.
 */
import { existsSync } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SafetensorsFile, writeSafetensors } from "../../src/io/safetensors";
import { cli, oneLineError, organismFixture } from "./helpers";

const fx = organismFixture("da-sec-exit-");

/** Scan `base` (a copy of the organism's base with one file changed) and return the error line; asserts exit 2 and nothing written. */
async function scanRefused(name: string, base: string, subject: string[] = ["--adapter", join(fx.org, "adapter")]): Promise<string> {
  const out = join(fx.dir, `out-${name}`);
  const r = await cli(["scan", "--base", base, ...subject, "--out", out], { timeoutMs: 120_000 });
  expect(r.status, r.stderr).toBe(2);
  const line = oneLineError(r.stderr);
  expect(existsSync(out), "output folder").toBe(false);
  expect((await readdir(fx.dir)).filter((e) => e.startsWith(`.out-${name}`)), "staging folders").toEqual([]);
  return line;
}

/** The organism's tokenizer_config.json with `edit` applied, as text. */
async function tokenizerConfig(edit: (tc: Record<string, unknown>) => void): Promise<string> {
  const tc = await fx.json("base", "tokenizer_config.json");
  edit(tc);
  return JSON.stringify(tc);
}

describe("scan: input problems found by the engine are exit 2 naming the file", () => {
  it("(1) a base folder without tokenizer.json", async () => {
    const base = await fx.modelWith("base", "tokenizer.json", async () => undefined);
    expect(await scanRefused("no-tokenizer", base)).toContain(`${join(base, "tokenizer.json")}: not found`);
  });

  it("(2) a chat template that raises", async () => {
    const base = await fx.modelWith("base", "tokenizer_config.json", await tokenizerConfig((tc) => (tc.chat_template = "{{ raise_exception('no') }}")));
    expect(await scanRefused("raising-template", base)).toContain(`${join(base, "tokenizer_config.json")}: chat_template failed to render: no`);
  });

  it("(3) an unk_token that tokenizer.json's vocabulary lacks: refused when the tokenizer loads", async () => {
    const base = await fx.modelWith("base", "tokenizer_config.json", await tokenizerConfig((tc) => (tc.unk_token = "<nope>")));
    expect(await scanRefused("unk-config", base)).toContain(`${join(base, "tokenizer_config.json")}: unk_token "<nope>" is not in the vocabulary`);
    // the tokenizer model's own unk_token: every unknown word would encode to no id at all
    const tj = await fx.json("base", "tokenizer.json");
    (tj.model as Record<string, unknown>).unk_token = "<nope>";
    const base2 = await fx.modelWith("base", "tokenizer.json", JSON.stringify(tj));
    expect(await scanRefused("unk-model", base2)).toContain(`${join(base2, "tokenizer.json")}: model.unk_token "<nope>" is not in the vocabulary`);
  });

  it("(4) a chat template that renders an empty prompt", async () => {
    const base = await fx.modelWith("base", "tokenizer_config.json", await tokenizerConfig((tc) => (tc.chat_template = "{% if false %}x{% endif %}")));
    expect(await scanRefused("empty-template", base)).toContain(`${join(base, "tokenizer_config.json")}: chat_template renders an empty prompt`);
  });

  it("(5) NaN weights in the base: named by the base folder, from the engine (LoRA) and from the delta pass (full fine-tune)", async () => {
    const f = await SafetensorsFile.open(join(fx.org, "base", "model.safetensors"));
    const tensors = new Map<string, Float32Array>();
    try {
      for (const n of f.names()) tensors.set(n, await f.read(n));
    } finally {
      await f.close();
    }
    tensors.get("model.norm.weight")!.fill(Number.NaN);
    const shapes = new Map([...tensors.keys()].map((n) => [n, f.info(n)!.shape]));
    const base = await fx.modelWith("base", "model.safetensors", (p) => writeSafetensors(p, [...tensors].map(([name, data]) => ({ name, dtype: "F32" as const, shape: shapes.get(name)!, data }))));
    expect(await scanRefused("nan-lora", base)).toContain(`${base}: variant 'base' yields non-finite logits`);
    expect(await scanRefused("nan-full", base, ["--finetuned", join(fx.org, "finetuned")])).toContain(`${base}: tensor "model.norm.weight" holds NaN or Inf weights`);
  });

  it("(6) a context shorter than the probes", async () => {
    const base = await fx.modelWith("base", "config.json", JSON.stringify({ ...(await fx.json("base", "config.json")), max_position_embeddings: 16 }));
    expect(await scanRefused("short-context", base)).toMatch(new RegExp(`${join(base, "config.json").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: a prompt of \\d+ tokens leaves no room to generate in the model's context of 16 tokens`));
  });
});
