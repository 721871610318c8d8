/**
 * What the edges check before any work, through the built CLI (and the Action's input helper):
 * the environment (DELTA_AUDIT_ORT_THREADS), server URLs (one rule: http(s), no credentials),
 * devices (one spelling everywhere), required flags, and a registry that is not a regular file.
 * Each refusal is exit 2 with one stderr line naming the variable / flag, and nothing written.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { parseConfig } from "../../src/config";
import { getSettings } from "../../src/github/input-helper";
import { cli, oneLineError } from "../security/helpers";

let dir: string;
let work: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-edge-"));
  work = join(dir, "cwd");
  execFileSync("mkdir", ["-p", work]);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Run the CLI in an empty folder: exit 2, one line matching `expected`, the folder left empty. */
async function refused(args: string[], expected: RegExp, env?: Record<string, string>): Promise<number> {
  const r = await cli(args, { cwd: work, timeoutMs: 20_000, env });
  expect(r.status, r.stderr).toBe(2);
  expect(r.stdout).toBe("");
  expect(oneLineError(r.stderr)).toMatch(expected);
  expect(await readdir(work)).toEqual([]);
  return r.ms;
}

describe("DELTA_AUDIT_ORT_THREADS", () => {
  it("a value that is not 1..1024 threads is exit 2 naming the variable, before any work", async () => {
    for (const bad of ["1e6", "0", "1025", "-1", "two"]) {
      await refused(["organism", "--kind", "quirk", "--out", "org"], /^delta-audit: DELTA_AUDIT_ORT_THREADS: expected /, { DELTA_AUDIT_ORT_THREADS: bad });
    }
  });

  it("a good value (or none) is taken", async () => {
    for (const ok of ["1", "2", ""]) {
      const r = await cli(["--version"], { cwd: work, env: { DELTA_AUDIT_ORT_THREADS: ok } });
      expect(r.status, `${ok}: ${r.stderr}`).toBe(0);
    }
  });
});

describe("server URLs", () => {
  it("scan --inference-url that is not an http(s) URL is refused before the subject is opened", async () => {
    // the adapter does not exist: a later check would name it, not the flag
    await refused(["scan", "--base", "nope-base", "--adapter", "nope-adapter", "--backend", "openai", "--inference-url", "notaurl"], /^delta-audit: --inference-url: expected an http\(s\) URL, got 'notaurl'$/);
    await refused(["scan", "--base", "nope-base", "--adapter", "nope-adapter", "--inference-url", "http://user:hunter2@127.0.0.1:1/v1"], /^delta-audit: --inference-url: credentials in the URL are not supported/);
  });

  it("sweep run --inference-url is refused before the registry is read", async () => {
    await refused(["sweep", "run", "--registry", "nope.yml", "--name", "m", "--out", "out", "--inference-url", "notaurl"], /^delta-audit: --inference-url: expected an http\(s\) URL/);
  });

  it("credentials in backend.url or llm.url are refused when the config is read", () => {
    for (const [yaml, key] of [
      ["backend:\n  type: openai\n  url: https://user:hunter2@api.example.com/v1\n", "backend.url"],
      ["llm:\n  url: https://:hunter2@api.example.com/v1\n  model: m\n", "llm.url"],
    ] as const) {
      const err = (() => {
        try {
          parseConfig(yaml);
        } catch (e) {
          return e as Error;
        }
        throw new Error("expected the config to be refused");
      })();
      expect(err).toBeInstanceOf(InputError);
      expect(err.message).toBe(`delta-audit.yml: ${key}: credentials in the URL are not supported; pass the API key through the environment`);
    }
  });

  it("the Action's inference-url input follows the same rule", () => {
    const settings = (url: string) => getSettings({ env: { INPUT_ADAPTER: "a", INPUT_BACKEND: "openai", "INPUT_INFERENCE-URL": url }, workspace: dir, isPullRequest: false });
    expect(settings("http://127.0.0.1:8000/v1").inferenceUrl).toBe("http://127.0.0.1:8000/v1");
    expect(() => settings("notaurl")).toThrow("input 'inference-url': Invalid value 'notaurl'. Expected http(s)://host[:port][/v1]");
    expect(() => settings("https://user:hunter2@example.com/v1")).toThrow("input 'inference-url': credentials in the URL are not supported; pass the API key through the environment");
  });
});

describe("devices and required flags", () => {
  it("--device is spelled the same for every command", async () => {
    const cuda = /--device: expected one of cpu, cuda, got 'CUDA'$/;
    await refused(["logits", "--model", "nope", "--ids", "1", "--device", "CUDA"], cuda);
    await refused(["generate", "--model", "nope", "--prompt", "hi", "--device", "CUDA"], cuda);
    await refused(["scan", "--base", "nope", "--adapter", "nope", "--device", "CUDA"], cuda);
    await refused(["serve", "--model", "nope", "--device", "CUDA"], cuda);
  });

  it("organism --kind is one of the organism kinds, and required", async () => {
    await refused(["organism", "--out", "org"], /^delta-audit: --kind: required: quirk or benign$/);
    await refused(["organism", "--kind", "QUIRK", "--out", "org"], /^delta-audit: --kind: expected one of quirk, benign, got 'QUIRK'$/);
  });

  it("logits --ids quotes the bad item", async () => {
    await refused(["logits", "--model", "nope", "--ids", "1,2x,3"], /^delta-audit: --ids: expected comma-separated non-negative integers, got '2x'$/);
  });
});

describe.runIf(process.platform !== "win32")("a registry that is not a regular file", () => {
  it("sweep plan --registry FIFO exits 2 at once instead of waiting for a writer", async () => {
    const fifo = join(dir, "registry.yml");
    execFileSync("mkfifo", [fifo]);
    expect(existsSync(fifo)).toBe(true);
    const ms = await refused(["sweep", "plan", "--registry", fifo], /registry\.yml: is not a regular file$/);
    expect(ms).toBeLessThan(15_000);
  });
});
