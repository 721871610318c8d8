/**
 * A pull request can add symlinks. The Action must not follow one out of the workspace: an
 * adapter_config.json pointing at a runner secret would be read and bits of it quoted back into
 * the PR comment; one pointing at /dev/zero would fill memory. runAction in-process with the
 * real Octokit client against the local GitHub-like server (test/github/fake-github.ts).
 */
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createOctokit } from "../../src/github/octokit-client";
import { GitHubHelper } from "../../src/github/github-helper";
import type { GitHubContext } from "../../src/github/context";
import { getSettings } from "../../src/github/input-helper";
import { runAction, scanEnvironment, type ScanFn } from "../../src/github/run-action";
import { runScan } from "../../src/scan";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { linksOutside } from "../../src/github/subjects";
import { startFakeGitHub, type FakeGitHub } from "../github/fake-github";

const SECRET = "ghs_TOPSECRETTOKEN0123456789";
let gh: FakeGitHub;
let ws: string;
let outside: string;
const saved = { ...process.env };

beforeEach(() => {
  ws = mkdtempSync(join(tmpdir(), "da-sec-ws-"));
  outside = mkdtempSync(join(tmpdir(), "da-sec-outside-"));
  writeFileSync(join(outside, "secret.txt"), `${SECRET}\n`);
  mkdirSync(join(ws, "base"));
  process.env.GITHUB_STEP_SUMMARY = join(outside, "summary.md");
  writeFileSync(process.env.GITHUB_STEP_SUMMARY, "");
});
afterEach(async () => {
  await gh?.close();
  process.env = { ...saved };
});

const ctx = (): GitHubContext => ({ eventName: "pull_request", owner: "acme", repo: "models", apiUrl: gh.url, serverUrl: "https://github.com", headSha: "c".repeat(40), pullNumber: 9, isFork: false, workspace: ws });
const settings = (env: Record<string, string> = {}) =>
  getSettings({ env: { INPUT_BASE: "base", INPUT_ADAPTER: "adapters/*", "INPUT_GITHUB-TOKEN": "t", "INPUT_CHANGED-ONLY": "false", ...env }, workspace: ws, isPullRequest: true });
const scanned: string[] = [];
const scan: ScanFn = async (opts) => {
  scanned.push(opts.adapter ?? "");
  throw new Error("the scan must not run on a subject that links outside the workspace");
};
const deps = () => ({ scan, resolveHub: async () => { throw new Error("no hub"); }, github: new GitHubHelper(createOctokit("t", gh.url), { owner: "acme", repo: "models" }), version: "0.1.0" });

describe("symlinks out of the workspace", () => {
  it("an adapter whose adapter_config.json links to a secret is refused (neutral), never scanned, and the secret is nowhere in what is published", async () => {
    gh = await startFakeGitHub();
    const a = join(ws, "adapters", "evil");
    mkdirSync(a, { recursive: true });
    symlinkSync(join(outside, "secret.txt"), join(a, "adapter_config.json"));
    writeFileSync(join(a, "adapter_model.safetensors"), "x");
    scanned.length = 0;
    const r = await runAction(settings(), ctx(), deps());
    expect(scanned).toEqual([]);
    expect(r.conclusion).toBe("neutral");
    expect(r.results[0]!.error).toMatch(/adapters\/evil\/adapter_config\.json: .*symlink to outside the workspace/);
    const run = [...gh.checkRuns.values()][0];
    expect(run.conclusion).toBe("neutral");
    const published = JSON.stringify({ run, comments: gh.comments, summary: readFileSync(process.env.GITHUB_STEP_SUMMARY!, "utf8"), files: readFileSync(join(r.reportDir, "comment.md"), "utf8") });
    expect(published).not.toContain("TOPSECRET");
    expect(JSON.parse(readFileSync(r.badge, "utf8")).message).not.toBe("pass");
  });

  it("a weights file linked to /dev/zero is refused the same way instead of being read", async () => {
    gh = await startFakeGitHub();
    const a = join(ws, "adapters", "zero");
    mkdirSync(a, { recursive: true });
    writeFileSync(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", base_model_name_or_path: "org/base" }));
    symlinkSync("/dev/zero", join(a, "adapter_model.safetensors"));
    scanned.length = 0;
    const r = await runAction(settings(), ctx(), deps());
    expect(scanned).toEqual([]);
    expect(r.conclusion).toBe("neutral");
    expect(r.results[0]!.error).toMatch(/zero\/adapter_model\.safetensors: is a symlink to outside the workspace/);
  });

  it("a base folder in the workspace whose tokenizer.json links to a secret is refused before any scan", async () => {
    gh = await startFakeGitHub();
    const a = join(ws, "adapters", "fine");
    mkdirSync(a, { recursive: true });
    writeFileSync(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA", base_model_name_or_path: "org/base" }));
    writeFileSync(join(a, "adapter_model.safetensors"), "x");
    symlinkSync(join(outside, "secret.txt"), join(ws, "base", "tokenizer.json"));
    scanned.length = 0;
    const r = await runAction(settings(), ctx(), deps());
    expect(scanned).toEqual([]);
    expect(r.conclusion).toBe("neutral");
    expect(r.results[0]!.error).toMatch(/^base\/tokenizer\.json: is a symlink to outside the workspace/);
    const published = JSON.stringify({ run: [...gh.checkRuns.values()][0], comments: gh.comments, files: readFileSync(join(r.reportDir, "comment.md"), "utf8") });
    expect(published).not.toContain("TOPSECRET");
  });

  it("a config input that is a symlink out of the workspace is an input error; links inside it are fine", () => {
    mkdirSync(join(ws, ".github"));
    symlinkSync(join(outside, "secret.txt"), join(ws, ".github", "delta-audit.yml"));
    expect(() => settings()).toThrow(/config file '.github\/delta-audit.yml' is a symlink to outside the workspace/);
    writeFileSync(join(ws, "real.yml"), "fail-on: high\n");
    symlinkSync(join(ws, "real.yml"), join(ws, "link.yml"));
    expect(settings({ INPUT_CONFIG: "link.yml" }).configPath).toBe(join(ws, "link.yml"));
    // a path the workflow itself gives outside the workspace is the author's choice, not a PR's link
    expect(linksOutside(join(outside, "secret.txt"), ws)).toBe(false);
    expect(linksOutside(join(ws, ".github", "delta-audit.yml"), ws)).toBe(true);
  });

  it("an output-dir that is a committed symlink out of the workspace is refused", () => {
    symlinkSync(outside, join(ws, "delta-audit-report"));
    expect(() => settings()).toThrow(/input 'output-dir': 'delta-audit-report' is a symlink to outside the workspace/);
  });

  it("committed symlinks named like the Action's output files are replaced, never written through", async () => {
    gh = await startFakeGitHub();
    const a = join(ws, "adapters", "plain");
    mkdirSync(a, { recursive: true });
    writeFileSync(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA" }));
    const target = join(outside, "victim.txt");
    writeFileSync(target, "do not touch\n");
    mkdirSync(join(ws, "delta-audit-report"));
    for (const f of ["comment.md", "badge.json", "summary.json", "check-run.json"]) {
      symlinkSync(target, join(ws, "delta-audit-report", f));
      // the temp name the Action used to write through (path.tmp-<pid>) is guessable: plant it too
      symlinkSync(target, join(ws, "delta-audit-report", `${f}.tmp-${process.pid}`));
    }
    const ok: ScanFn = async (opts) => {
      mkdirSync(opts.outDir, { recursive: true });
      throw new Error("backend down");
    };
    const r = await runAction(settings(), ctx(), { ...deps(), scan: ok });
    expect(r.conclusion).toBe("neutral");
    expect(readFileSync(target, "utf8")).toBe("do not touch\n");
    for (const f of ["comment.md", "badge.json", "summary.json", "check-run.json"]) expect(lstatSync(join(ws, "delta-audit-report", f)).isSymbolicLink()).toBe(false);
    expect(JSON.parse(readFileSync(join(ws, "delta-audit-report", "badge.json"), "utf8")).message).toBe("inconclusive");
  });

  it("a PR's config cannot send the runner's credentials to a server of its choosing", async () => {
    gh = await startFakeGitHub();
    const seen: string[] = [];
    const thief = createServer((req, res) => {
      let b = "";
      req.on("data", (c) => (b += c));
      req.on("end", () => {
        seen.push(`${JSON.stringify(req.headers)} ${b}`);
        res.end("{}");
      });
    });
    await new Promise<void>((r) => thief.listen(0, "127.0.0.1", r));
    try {
      process.env.ACTIONS_RUNTIME_TOKEN = "RUNTIME-SECRET-123";
      process.env.GITHUB_TOKEN = "ghs_SECRET456";
      const a = join(ws, "adapters", "x");
      mkdirSync(a, { recursive: true });
      writeFileSync(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA" }));
      mkdirSync(join(ws, ".github"));
      const port = (thief.address() as AddressInfo).port;
      writeFileSync(join(ws, ".github", "delta-audit.yml"), `judges: [differential, investigator]\nllm:\n  url: http://127.0.0.1:${port}/v1\n  model: m\n  api-key-env: ACTIONS_RUNTIME_TOKEN\n`);
      const r = await runAction(settings(), ctx(), { ...deps(), scan: runScan as unknown as ScanFn });
      expect(r.conclusion).toBe("neutral");
      expect(r.results[0]!.error).toMatch(/llm\.api-key-env: the environment variable ACTIONS_RUNTIME_TOKEN is not set/);
      expect(seen.join("\n")).not.toMatch(/RUNTIME-SECRET|ghs_SECRET/);
      expect(scanEnvironment({ GITHUB_TOKEN: "x", ACTIONS_ID_TOKEN_REQUEST_TOKEN: "y", RUNNER_TEMP: "/t", OPENAI_API_KEY: "k" })).toEqual({ OPENAI_API_KEY: "k" });
    } finally {
      thief.close();
    }
  });

  it("a subject folder whose name carries a newline and a workflow command cannot start a log line", async () => {
    gh = await startFakeGitHub();
    const name = "evil\n::error title=pwned::forged annotation";
    const a = join(ws, "adapters", name);
    mkdirSync(a, { recursive: true });
    writeFileSync(join(a, "adapter_config.json"), JSON.stringify({ peft_type: "LORA" }));
    const written: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
      written.push(String(chunk));
      return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof process.stdout.write;
    try {
      const failing: ScanFn = async () => {
        throw new Error("no scan here");
      };
      await runAction(settings(), ctx(), { ...deps(), scan: failing });
    } finally {
      process.stdout.write = write;
    }
    const lines = written.join("").split(/\r?\n/);
    expect(lines.some((l) => l.startsWith("::error title=pwned"))).toBe(false);
    expect(lines.some((l) => l.includes("forged annotation"))).toBe(true); // still reported, on its own (escaped) line
  });
});
