/**
 * Careless and contradictory command lines, through the real CLI: each is exit 2 with exactly
 * one line on stderr that names the flag (or file) and what is wrong, and writes nothing.
 * Pickled weights are refused with the safetensors hint and never opened (a FIFO stands in
 * for the pickle: opening it would block, so a pass proves it was not read).
 */
import { execFileSync } from "node:child_process";
import { cp, mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cudaAvailable } from "../../src/linalg/ort";
import { generateOrganism } from "../../src/organisms/index";
import { cli, oneLineError } from "./helpers";

let dir: string;
let org: string;
let work: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-sec-flags-"));
  org = join(dir, "org");
  work = join(dir, "cwd");
  await generateOrganism({ kind: "quirk", outDir: org, seed: 11 });
  await cp(join(org, "base"), join(dir, "cwd", "keep"), { recursive: true });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("bad command lines", () => {
  const base = () => join(org, "base");
  const adapter = () => join(org, "adapter");
  const cases: Array<[string, () => string[], RegExp]> = [
    ["scan with --adapter and --finetuned", () => ["scan", "--base", base(), "--adapter", adapter(), "--finetuned", join(org, "finetuned")], /--finetuned: give either --adapter or --finetuned, not both/],
    ["scan with neither", () => ["scan", "--base", base()], /--adapter: nothing to audit/],
    ["scan without --base", () => ["scan", "--adapter", adapter()], /--base: required/],
    ["scan of a missing folder", () => ["scan", "--base", base(), "--adapter", join(dir, "nope")], /nope: does not exist; a PEFT adapter folder holds/],
    ["scan of a file as the adapter folder", () => ["scan", "--base", base(), "--adapter", join(adapter(), "adapter_config.json")], /adapter_config\.json: is not a folder; a PEFT adapter folder holds/],
    ["scan with a file as the base", () => ["scan", "--base", join(base(), "config.json"), "--adapter", adapter()], /config\.json: is not a folder; a model folder holds config\.json/],
    ["scan with a missing base", () => ["scan", "--base", join(dir, "no-base"), "--adapter", adapter()], /no-base: does not exist; a model folder holds/],
    ["scan --finetuned of a missing folder", () => ["scan", "--base", base(), "--finetuned", join(dir, "no-ft")], /no-ft: does not exist; a model folder holds/],
    ...(cudaAvailable()
      ? []
      : ([["--device cuda without the CUDA provider", () => ["scan", "--base", base(), "--adapter", adapter(), "--device", "cuda"], /--device cuda: the CUDA execution provider is not installed/]] as Array<[string, () => string[], RegExp]>)),
    ["--rank 0", () => ["scan", "--base", base(), "--adapter", adapter(), "--rank", "0"], /--rank: expected 1\.\.1024, got '0'/],
    ["--rank -1", () => ["scan", "--base", base(), "--adapter", adapter(), "--rank", "-1"], /--rank: expected an integer, got '-1'/],
    ["--rank abc", () => ["scan", "--base", base(), "--adapter", adapter(), "--rank", "abc"], /--rank: expected an integer, got 'abc'/],
    ["--rank 1e9", () => ["scan", "--base", base(), "--adapter", adapter(), "--rank", "1e9"], /--rank: expected an integer, got '1e9'/],
    ["--rank with no value", () => ["scan", "--base", base(), "--adapter", adapter(), "--rank"], /option '--rank <k>' argument missing/],
    ["an unknown option", () => ["scan", "--bogus"], /unknown option '--bogus'/],
    ["--backend nonsense", () => ["scan", "--base", base(), "--adapter", adapter(), "--backend", "torch"], /--backend: expected one of embedded, openai, got 'torch'/],
    ["--backend openai without a URL", () => ["scan", "--base", base(), "--adapter", adapter(), "--backend", "openai"], /--backend: the openai backend needs a URL/],
    ["--inference-url file://", () => ["scan", "--base", base(), "--adapter", adapter(), "--backend", "openai", "--inference-url", "file:///etc/passwd"], /--inference-url: expected an http\(s\) URL, got 'file:\/\/\/etc\/passwd'/],
    ["truncate without --rank", () => ["truncate", "--adapter", adapter(), "--out", "x"], /--rank: required/],
    ["truncate without --out", () => ["truncate", "--adapter", adapter(), "--rank", "1"], /--out: required/],
    ["truncate --rank 0", () => ["truncate", "--adapter", adapter(), "--rank", "0", "--out", "x"], /--rank: expected an integer from 1/],
    ["spectrum with both subjects", () => ["spectrum", "--adapter", adapter(), "--finetuned", join(org, "finetuned")], /--finetuned: give either/],
    ["spectrum --top-k 1e9", () => ["spectrum", "--base", base(), "--finetuned", join(org, "finetuned"), "--top-k", "1e9"], /--top-k: expected a positive integer/],
    ["organism --kind evil", () => ["organism", "--kind", "evil", "--out", "x"], /--kind: expected one of quirk, benign, got 'evil'/],
    ["serve --port 99999", () => ["serve", "--model", base(), "--port", "99999"], /--port: expected a port number/],
  ];
  for (const [name, args, expected] of cases) {
    it(`${name}: exit 2, one line, nothing written`, async () => {
      const before = (await readdir(work)).sort();
      const r = await cli(args(), { cwd: work, timeoutMs: 60_000 });
      expect(r.status, r.stderr).toBe(2);
      expect(oneLineError(r.stderr)).toMatch(expected);
      expect((await readdir(work)).sort()).toEqual(before);
    });
  }
});

describe.runIf(process.platform !== "win32")("pickled weights", () => {
  it("an adapter folder with only adapter_model.bin is refused with the safetensors hint, without opening it", async () => {
    const a = join(dir, "pickle-adapter");
    await cp(adapter(), a, { recursive: true });
    await rm(join(a, "adapter_model.safetensors"));
    execFileSync("mkfifo", [join(a, "adapter_model.bin")]);
    const r = await cli(["spectrum", "--adapter", a], { timeoutMs: 15_000 });
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/has only pickled weights \(adapter_model\.bin\); convert it with PEFT .*safe_serialization=True.*never unpickles/);
  });

  it("a checkpoint with only pytorch_model.bin / .pt / .ckpt / .pth is refused the same way; beside safetensors it is ignored", async () => {
    for (const name of ["pytorch_model.bin", "model.pt", "model.ckpt", "consolidated.pth"]) {
      const ft = join(dir, `pickle-${name}`);
      await cp(join(org, "finetuned"), ft, { recursive: true });
      await rm(join(ft, "model.safetensors"));
      execFileSync("mkfifo", [join(ft, name)]);
      const r = await cli(["spectrum", "--base", join(org, "base"), "--finetuned", ft], { timeoutMs: 15_000 });
      expect(r.status, name).toBe(2);
      expect(oneLineError(r.stderr)).toContain(`holds only pickled weights (${name}); convert it to safetensors`);
    }
    const both = join(dir, "pickle-beside");
    await cp(join(org, "finetuned"), both, { recursive: true });
    execFileSync("mkfifo", [join(both, "pytorch_model.bin")]);
    const ok = await cli(["spectrum", "--base", join(org, "base"), "--finetuned", both], { timeoutMs: 30_000 });
    expect(ok.status, ok.stderr).toBe(0);
  });

  function adapter(): string {
    return join(org, "adapter");
  }
});

describe("a --rank that cannot strip anything", () => {
  it("--rank at or above the adapter's rank says in the report that the truncation is the whole fine-tune, and never passes", async () => {
    const out = join(dir, "out-rank-big");
    const r = await cli(["scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--rank", "1000", "--out", out], { timeoutMs: 120_000 });
    // a finding still fails the subject; without one the verdict is neutral (exit 3), not a pass
    expect([1, 3]).toContain(r.status);
    const report = JSON.parse(await readFile(join(out, "report.json"), "utf8"));
    expect(report.verdict.conclusion).toBe(r.status === 1 ? "fail" : "neutral");
    expect(report.elicitation.notices.join("\n")).toMatch(/rank 1000 is not below the adapter's rank \(\d+\): the rank1000 variant is the full fine-tune itself/);
  });
});
