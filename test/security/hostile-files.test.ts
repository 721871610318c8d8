/**
 * Hostile input files through the real CLI: FIFOs and device files planted where configs and
 * weights are expected, symlinks to secrets, regexes built to backtrack forever. Each must end
 * quickly with exit 2 and one line naming the file — never hang, never quote a secret.
 */
import { execFileSync } from "node:child_process";
import { mkdir, open, readdir, symlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PeftPattern, TargetSelector, parseAdapterConfig } from "../../src/io/peft";
import { readTextFile, readTextFileSync } from "../../src/io/read-text";
import { cli, oneLineError, organismFixture } from "./helpers";

const fx = organismFixture("da-sec-files-");
const posix = process.platform !== "win32";

/** One safetensors file (F32, hand-built) and its config: a LoRA pair on a module named `module`. */
function loraFile(module: string, r: number, inF: number, outF: number, fill = 0): Buffer {
  const a = Buffer.from(new Float32Array(r * inF).fill(fill).buffer);
  const b = Buffer.from(new Float32Array(outF * r).fill(fill).buffer);
  const ka = `base_model.model.${module}.lora_A.weight`;
  const kb = `base_model.model.${module}.lora_B.weight`;
  let header = Buffer.from(JSON.stringify({ [ka]: { dtype: "F32", shape: [r, inF], data_offsets: [0, a.length] }, [kb]: { dtype: "F32", shape: [outF, r], data_offsets: [a.length, a.length + b.length] } }));
  header = Buffer.concat([header, Buffer.alloc((8 - (header.length % 8)) % 8, 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([len, header, a, b]);
}

describe.runIf(posix)("special files where files are expected", () => {
  it("a FIFO as adapter_model.safetensors is refused at once (it used to block forever in open)", async () => {
    const a = await fx.modelWith("adapter", "adapter_model.safetensors", async (p) => void execFileSync("mkfifo", [p]));
    const r = await cli(["spectrum", "--adapter", a], { timeoutMs: 15_000 });
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/adapter_model\.safetensors: is not a regular file/);
  });

  it("a FIFO or /dev/zero as the --config is refused, without reading it", async () => {
    const fifo = join(fx.dir, "fifo.yml");
    execFileSync("mkfifo", [fifo]);
    const zero = join(fx.dir, "zero.yml");
    await symlink("/dev/zero", zero);
    for (const config of [fifo, zero]) {
      const out = join(fx.dir, `out-${config.endsWith("fifo.yml") ? "fifo" : "zero"}`);
      const r = await cli(["scan", "--base", join(fx.org, "base"), "--adapter", join(fx.org, "adapter"), "--config", config, "--out", out], { timeoutMs: 15_000 });
      expect(r.status, config).toBe(2);
      expect(oneLineError(r.stderr)).toContain(`${config}: is not a regular file`);
      expect(existsSync(out)).toBe(false);
    }
  });

  it("a *.safetensors symlink to /dev/zero beside the adapter ends the scan with exit 2 and no output (it used to hash forever)", async () => {
    const a = await fx.modelWith("adapter", "extra.safetensors", (p) => symlink("/dev/zero", p));
    const out = join(fx.dir, "out-zero-extra");
    const r = await cli(["scan", "--base", join(fx.org, "base"), "--adapter", a, "--out", out], { timeoutMs: 60_000 });
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/extra\.safetensors is not a regular file/);
    expect(existsSync(out)).toBe(false);
    expect((await readdir(fx.dir)).filter((e) => e.startsWith(".out-zero-extra"))).toEqual([]);
  });

  it("readTextFile / readTextFileSync refuse devices and FIFOs and stop at the byte limit", async () => {
    const fifo = join(fx.dir, "fifo2");
    execFileSync("mkfifo", [fifo]);
    await expect(readTextFile(fifo, 1000)).rejects.toThrow(/is not a regular file/);
    expect(() => readTextFileSync("/dev/zero", 1000)).toThrow(/is not a regular file/);
    const big = join(fx.dir, "big.json");
    await writeFile(big, "x".repeat(5000));
    await expect(readTextFile(big, 4999)).rejects.toThrow(/over the 4999-byte limit/);
    expect(readTextFileSync(big, 5000)).toHaveLength(5000);
    await expect(readTextFile(fx.dir, 10)).rejects.toThrow(/is a folder/);
  });
});

describe("secrets never reach a message", () => {
  it("adapter_config.json symlinked to a secret file: the error names the file but quotes none of it", async () => {
    const secret = join(fx.dir, "secret.env");
    await writeFile(secret, "GITHUB_TOKEN=ghs_SECRETSECRETSECRET\nAWS_KEY=AKIA\n");
    const a = await fx.modelWith("adapter", "adapter_config.json", (p) => symlink(secret, p));
    const r = await cli(["spectrum", "--adapter", a]);
    expect(r.status).toBe(2);
    const line = oneLineError(r.stderr);
    expect(line).toContain("adapter_config.json: is not valid JSON");
    expect(r.stderr).not.toMatch(/GITHUB|ghs_|SECRET|AKIA/);
  });

  it("a JSON syntax error deep in a file reports line and column, not the text around it", async () => {
    const a = await fx.modelWith("adapter", "adapter_config.json", (p) => writeFile(p, '{"peft_type": "LORA",\n "r": 8, "token": "ghs_SECRETSECRET" oops}'));
    const r = await cli(["spectrum", "--adapter", a]);
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/not valid JSON \(JSON syntax error at line 2, column \d+\)/);
    expect(r.stderr).not.toMatch(/ghs_|SECRET|oops/);
  });
});

describe("rank_pattern regexes from the adapter", () => {
  it("(a|aa)*c against a long module name of a's finishes in well under a second per match (exponential before)", () => {
    const p = new PeftPattern({ "(a|aa)*c": 4 }, "adapter_config.json rank_pattern");
    const t0 = Date.now();
    expect(p.resolve("a".repeat(60))).toBeUndefined();
    expect(p.resolve(`model.${"a".repeat(5000)}c`)).toBe(4);
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it("through the CLI: an adapter pairing that pattern with such a module name ends quickly", async () => {
    const a = join(fx.dir, "redos");
    await mkdir(a);
    const module = "a".repeat(48);
    await writeFile(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 4, target_modules: [module], rank_pattern: { "(a|aa)*c": 2 } }));
    await writeFile(join(a, "adapter_model.safetensors"), loraFile(module, 2, 8, 8));
    const r = await cli(["spectrum", "--adapter", a], { timeoutMs: 20_000 });
    expect(r.ms).toBeLessThan(15_000);
    expect(r.status).toBe(0);
  });

  it("a rank_pattern with 100,000 keys is refused by count instead of compiling and trying each", () => {
    const many = Object.fromEntries(Array.from({ length: 100_000 }, (_, i) => [`m${i}`, 2]));
    const t0 = Date.now();
    expect(() => new PeftPattern(many, "cfg rank_pattern")).toThrow(/cfg rank_pattern: has 100000 keys, more than the 20000/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("look-around and back-references (not linear-time) are refused with exit 2 naming the key", async () => {
    expect(() => new PeftPattern({ "(q)\\1": 2 }, "cfg rank_pattern")).toThrow(/cfg rank_pattern: key "\(q\)\\\\1" .*linear time/);
    expect(() => new PeftPattern({ "q(?=_proj)": 2 }, "cfg rank_pattern")).toThrow(/linear time/);
    // ordinary module patterns keep working
    const p = new PeftPattern({ "layers\\.0\\.self_attn\\.q_proj": 4, "q_proj": 2, ".*\\.v_[a-z]+": 6 }, "cfg");
    expect(p.resolve("model.layers.0.self_attn.q_proj")).toBe(4);
    expect(p.resolve("model.layers.1.self_attn.q_proj")).toBe(2);
    expect(p.resolve("model.layers.1.self_attn.v_proj")).toBe(6);
    expect(p.resolve("model.layers.1.self_attn.k_proj")).toBeUndefined();
  });
});

describe("numbers that lie", () => {
  it("a lora_alpha so large that ΔW overflows is exit 2 naming the config (it was reported as an unchanged module, exit 0)", async () => {
    const a = join(fx.dir, "alpha-huge");
    await mkdir(a);
    const module = "model.layers.0.self_attn.q_proj";
    await writeFile(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 1e308, target_modules: ["q_proj"] }));
    await writeFile(join(a, "adapter_model.safetensors"), loraFile(module, 2, 8, 8, 1e30));
    const r = await cli(["spectrum", "--adapter", a, "--json", join(fx.dir, "alpha-huge.json")]);
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/alpha-huge\/adapter_config\.json: module model\.layers\.0\.self_attn\.q_proj: lora_alpha 1e\+308 over r 2 gives a scale of 5e\+307/);
    expect(existsSync(join(fx.dir, "alpha-huge.json"))).toBe(false);
    // an ordinary alpha on the same factors measures a real, finite spectrum
    await writeFile(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 4, target_modules: ["q_proj"] }));
    const ok = await cli(["spectrum", "--adapter", a, "--json", join(fx.dir, "alpha-ok.json")]);
    expect(ok.status).toBe(0);
  });
});

describe("factors PEFT would never load", () => {
  /** Two LoRA pairs in one file: a targeted q_proj and an o_proj that the config leaves out. */
  function twoModules(): Buffer {
    const mods = ["model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.o_proj"];
    const tensors: Array<[string, number[], Float32Array]> = [];
    for (const m of mods) {
      tensors.push([`base_model.model.${m}.lora_A.weight`, [2, 8], new Float32Array(16).fill(0.5)]);
      tensors.push([`base_model.model.${m}.lora_B.weight`, [8, 2], new Float32Array(16).fill(0.5)]);
    }
    let off = 0;
    const header: Record<string, unknown> = {};
    for (const [k, shape, d] of tensors) {
      header[k] = { dtype: "F32", shape, data_offsets: [off, off + d.byteLength] };
      off += d.byteLength;
    }
    let h = Buffer.from(JSON.stringify(header));
    h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    return Buffer.concat([len, h, ...tensors.map(([, , d]) => Buffer.from(d.buffer))]);
  }

  it("an adapter carrying factors outside target_modules is refused: the audit would measure a different model than PEFT deploys", async () => {
    const a = join(fx.dir, "inert");
    await mkdir(a);
    await writeFile(join(a, "adapter_model.safetensors"), twoModules());
    for (const [cfg, ok] of [
      [{ target_modules: ["q_proj"] }, false],
      [{ target_modules: ["q_proj", "o_proj"], layers_to_transform: [0] }, false],
      [{ target_modules: ["q_proj", "o_proj"], exclude_modules: ["o_proj"] }, false],
      [{ target_modules: ["q_proj", "o_proj"] }, true],
      [{ target_modules: ".*\\.(q_proj|o_proj)" }, true],
      [{ target_modules: "all-linear" }, true],
      [{ target_modules: ["q_proj", "o_proj"], layers_to_transform: [0, 1] }, true],
    ] as const) {
      await writeFile(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 2, ...cfg }));
      const r = await cli(["spectrum", "--adapter", a]);
      if (ok) expect(r.status, JSON.stringify(cfg) + r.stderr).toBe(0);
      else {
        expect(r.status, JSON.stringify(cfg)).toBe(2);
        expect(oneLineError(r.stderr)).toMatch(/holds LoRA factors for model\.layers\.\d\.self_attn\.(o|q)_proj, which target_modules .* leave out: PEFT would ignore them/);
      }
    }
  });

  it("TargetSelector follows PEFT's matching: suffix on a '.' boundary for lists, full match for a string", () => {
    const sel = (c: Record<string, unknown>) => new TargetSelector(parseAdapterConfig({ peft_type: "LORA", ...c }, "cfg"), "cfg");
    expect(sel({ target_modules: ["q_proj"] }).adapts("model.layers.3.self_attn.q_proj")).toBe(true);
    expect(sel({ target_modules: ["q_proj"] }).adapts("model.layers.3.self_attn.xq_proj")).toBe(false);
    expect(sel({ target_modules: "q_proj" }).adapts("model.layers.3.self_attn.q_proj")).toBe(false); // a string must match the whole name
    expect(sel({ target_modules: ".*q_proj" }).adapts("model.layers.3.self_attn.q_proj")).toBe(true);
    expect(sel({ target_modules: ["q_proj"], layers_to_transform: 3 }).adapts("model.layers.3.self_attn.q_proj")).toBe(true);
    expect(sel({ target_modules: ["q_proj"], layers_to_transform: 3 }).adapts("model.layers.13.self_attn.q_proj")).toBe(false);
    expect(sel({ target_modules: null }).adapts("anything")).toBe(true);
  });
});

describe("sizes that lie", () => {
  it("a sparse file claiming a 4 GiB factor is refused from its header, without allocating it", async () => {
    const a = join(fx.dir, "sparse");
    await mkdir(a);
    const m = "base_model.model.model.layers.0.self_attn.q_proj";
    const inF = 2 ** 29;
    const aBytes = 2 * inF * 4;
    const bBytes = 8 * 2 * 4;
    let h = Buffer.from(JSON.stringify({ [`${m}.lora_A.weight`]: { dtype: "F32", shape: [2, inF], data_offsets: [0, aBytes] }, [`${m}.lora_B.weight`]: { dtype: "F32", shape: [8, 2], data_offsets: [aBytes, aBytes + bBytes] } }));
    h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    const fh = await open(join(a, "adapter_model.safetensors"), "w");
    await fh.write(Buffer.concat([len, h]));
    await fh.truncate(8 + h.length + aBytes + bBytes); // 4 GiB on paper, a few bytes on disk
    await fh.close();
    await writeFile(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 2, lora_alpha: 2, target_modules: ["q_proj"] }));
    const r = await cli(["spectrum", "--adapter", a], { timeoutMs: 20_000 });
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/lora_A\.weight" has 1073741824 elements, over the 268435456/);
  });
});

describe("names that try to take over a terminal or a CI log", () => {
  it("a tensor name with ANSI escapes, bidi overrides and newlines is quoted as one printable line", async () => {
    const a = join(fx.dir, "ansi");
    await mkdir(a);
    const evil = "base_model.model.x\u001b[2J\u001b]8;;http://evil\u0007\u202e\n::error::pwned.lora_C.weight";
    let h = Buffer.from(JSON.stringify({ [evil]: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }));
    h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    await writeFile(join(a, "adapter_model.safetensors"), Buffer.concat([len, h, Buffer.alloc(4)]));
    await writeFile(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", r: 1 }));
    const r = await cli(["spectrum", "--adapter", a]);
    expect(r.status).toBe(2);
    const line = oneLineError(r.stderr);
    expect(line).toContain("is not a LoRA factor");
    expect(r.stderr).not.toMatch(/[\u001b\u0007\u202e]/);
    expect(r.stderr.split("\n").some((l) => l.startsWith("::"))).toBe(false);
  });
});
