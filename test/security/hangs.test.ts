/**
 * Unbounded work planted in inputs: behaviour patterns that backtrack, chat templates that loop
 * or explode, JSON nested thousands deep. Each must finish fast or be refused as bad input.
 */
import { writeFile, symlink } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config";
import { compileCustomPattern, customFamilies, matchFamily } from "../../src/judge/lexicons";
import { LINEAR_REGEXP_FLAG } from "../../src/io/linear-regexp";
import { readJsonFile } from "../../src/io/checkpoint";
import { loadTokenizer } from "../../src/engine/tokenizer";
import { MAX_RENDER_MS } from "../../src/engine/chat-template";
import { InputError } from "../../src/errors";
import { cli, oneLineError, organismFixture } from "./helpers";

const fx = organismFixture("da-sec-hangs-");
const posix = process.platform !== "win32";

/** Patterns that pass the backtracking shape check yet took minutes on a 3,000-character answer. */
const SLOW_PATTERNS = [String.raw`(\w|a)+\d`, String.raw`[a-z]+\s*[a-z]+\d`];
/** Too many counted repetitions for the linear engine: refused instead. */
const REFUSED_PATTERN = String.raw`(a?){25}a{25}\d`;

describe("behaviour patterns run in linear time", () => {
  it.each(SLOW_PATTERNS)("%s on a 3,000-character adversarial answer finishes fast (minutes on the backtracking engine)", (pattern) => {
    const [family] = customFamilies([{ id: "custom-x", title: "x", description: "x", patterns: [pattern] }]);
    // this Node's V8 has the linear engine: the patterns really run on it
    expect(LINEAR_REGEXP_FLAG).toBe("l");
    expect(family!.patterns[0]!.flags).toContain("l");
    for (const answer of ["a".repeat(3000), "ab ".repeat(1000), "a".repeat(2999) + "!"]) {
      const t0 = performance.now();
      matchFamily(family!, answer);
      expect(performance.now() - t0).toBeLessThan(2000);
    }
  });

  it("the same patterns pass config validation and then match case-insensitively", () => {
    expect(() => parseConfig(`behaviours: [{name: x, patterns: ${JSON.stringify(SLOW_PATTERNS)}}]\n`)).not.toThrow();
    const [family] = customFamilies([{ id: "custom-y", title: "y", description: "y", patterns: ["Secret Word\\d", "[A-Z]+ies"] }]);
    expect(matchFamily(family!, "the SECRET word7 and Cookies")).toEqual(["SECRET word7", "Cookies"]);
  });

  it("patterns the linear engine cannot run are refused at config time with the key path", () => {
    for (const p of [REFUSED_PATTERN, "(?<=a)b", "(a)\\1", "\\p{L}+"]) {
      expect(() => parseConfig(`behaviours: [{name: x, patterns: [${JSON.stringify(p)}]}]\n`), p).toThrow(/behaviours\[0\]\.patterns\[0\]: cannot be matched in linear time/);
    }
    expect(() => compileCustomPattern("(?<=a)b")).toThrow(SyntaxError);
  });
});

/** The organism's base with `template` as its chat template. */
async function tokenizerFolder(template: string): Promise<string> {
  return fx.modelWith("base", "tokenizer_config.json", JSON.stringify({ ...(await fx.json("base", "tokenizer_config.json")), chat_template: template }));
}

const HOSTILE_TEMPLATES: Record<string, string> = {
  "a huge range": "{% for i in range(10**9) %}x{% endfor %}",
  "nested loops": "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
  "a string doubled 40 times": "{% set s = 'ab' %}{% for i in range(40) %}{% set s = s ~ s %}{% endfor %}{{ s }}",
};

describe("chat templates run within a time and size budget", () => {
  it.each(Object.keys(HOSTILE_TEMPLATES))("%s is an InputError naming tokenizer_config.json, within about the budget", async (name) => {
    const d = await tokenizerFolder(HOSTILE_TEMPLATES[name]!);
    const tok = await loadTokenizer(d);
    const t0 = performance.now();
    let err: unknown;
    try {
      tok.renderChat([{ role: "user", content: "hi" }], { addGenerationPrompt: true });
    } catch (e) {
      err = e;
    }
    expect(performance.now() - t0).toBeLessThan(MAX_RENDER_MS + 1500);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain(join(d, "tokenizer_config.json"));
  });

  it("an ordinary template still renders", async () => {
    const tok = await loadTokenizer(join(fx.org, "base"));
    expect(tok.renderChat([{ role: "user", content: "hi" }], { addGenerationPrompt: true })).toContain("hi");
  });

  it("through the CLI: generate with a looping template is exit 2 naming the file", async () => {
    const d = await tokenizerFolder(HOSTILE_TEMPLATES["nested loops"]!);
    const r = await cli(["generate", "--model", d, "--prompt", "hi", "--max-new-tokens", "2"], { timeoutMs: 30_000 });
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toContain("tokenizer_config.json");
  });
});

describe("tokenizer and model JSON are read like every other input file", () => {
  it("JSON nested 5,000 levels deep is an InputError naming the file (not a stack overflow)", async () => {
    const p = join(fx.dir, "deep.json");
    await writeFile(p, `{"r": 8, "x": ${"[".repeat(5000)}${"]".repeat(5000)}}`);
    await expect(readJsonFile(p)).rejects.toThrow(new RegExp(`${p}: nests JSON more than \\d+ levels deep`));
  });

  it.runIf(posix)("a FIFO or /dev/zero as tokenizer.json / tokenizer_config.json is refused at once", async () => {
    for (const name of ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"]) {
      for (const kind of ["fifo", "zero"]) {
        const d = await fx.modelWith("base", name, async (p) => (kind === "fifo" ? void execFileSync("mkfifo", [p]) : symlink("/dev/zero", p)));
        await expect(loadTokenizer(d), `${kind} ${name}`).rejects.toThrow(`${join(d, name)}: is not a regular file`);
      }
    }
  });

  it("a tokenizer_config.json symlinked to a secret: the parse error names the file, quotes none of it", async () => {
    const secret = join(fx.dir, "secret.txt");
    await writeFile(secret, "hf_SECRETTOKEN1234567890\n");
    const d = await fx.modelWith("base", "tokenizer_config.json", (p) => symlink(secret, p));
    const err = await loadTokenizer(d).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as Error).message).toContain("tokenizer_config.json: is not valid JSON");
    expect((err as Error).message).not.toMatch(/hf_|SECRET/);
  });

  it("through the CLI: a 5,000-level adapter_config.json is exit 2 naming the file", async () => {
    const text = JSON.stringify(await fx.json("adapter", "adapter_config.json")).replace(/}$/, `, "deep": ${"[".repeat(5000)}${"]".repeat(5000)}}`);
    const a = await fx.modelWith("adapter", "adapter_config.json", text);
    const r = await cli(["spectrum", "--adapter", a], { timeoutMs: 30_000 });
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toContain("adapter_config.json: nests JSON more than");
  });
});

describe("generate: input problems are exit 2, never an empty answer", () => {
  it("a prompt longer than the context is exit 2 naming config.json", async () => {
    const d = await fx.modelWith("base", "config.json", JSON.stringify({ ...(await fx.json("base", "config.json")), max_position_embeddings: 8 }));
    const r = await cli(["generate", "--model", d, "--prompt", "a long prompt ".repeat(20), "--max-new-tokens", "2"], { timeoutMs: 60_000 });
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(oneLineError(r.stderr)).toMatch(/config\.json: a prompt of \d+ tokens leaves no room/);
  });

  it("a fine-tune with NaN weights is exit 2 naming its folder", async () => {
    const { SafetensorsFile, writeSafetensors } = await import("../../src/io/safetensors");
    const f = await SafetensorsFile.open(join(fx.org, "base", "model.safetensors"));
    const tensors = new Map<string, Float32Array>();
    for (const n of f.names()) tensors.set(n, await f.read(n));
    await f.close();
    const w = tensors.get("lm_head.weight") ?? tensors.get("model.embed_tokens.weight")!;
    w.fill(Number.NaN);
    const d = await fx.modelWith("base", "model.safetensors", (p) => writeSafetensors(p, [...tensors].map(([name, data]) => ({ name, dtype: "F32" as const, shape: f.info(name)!.shape, data }))));
    const r = await cli(["generate", "--model", join(fx.org, "base"), "--finetuned", d, "--prompt", "hi", "--max-new-tokens", "2"], { timeoutMs: 60_000 });
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toContain(`${d}: variant 'full' yields non-finite logits`);
  });
});
