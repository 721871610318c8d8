/**
 * The real bundled entry (`node dist/action.js`) as a child process, the way the runner
 * starts it: a real event payload file, GITHUB_* and INPUT_* variables, GITHUB_OUTPUT and
 * GITHUB_STEP_SUMMARY files, and GITHUB_API_URL pointed at a local server that answers like
 * the GitHub REST API and records every request.
 *
 * - an OpenAI-compatible server on 127.0.0.1 whose "model" answers with injection strings and
 *   huge outputs, on a fork PR whose token gets 403s: the step degrades gracefully and every
 *   body it would publish is inert and within GitHub's limits;
 * - real embedded scans of generated organisms (quirk and benign): check run in_progress →
 *   completed with the right conclusion and annotations, one sticky comment created then
 *   PATCHed, and the step fails exactly when the verdict is fail.
 */
import { spawn } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeGitHub, type FakeGitHub } from "../github/fake-github";
import { startFakeHub, type FakeHub } from "../github/fake-hub";
import { generateOrganism } from "../../src/organisms/index";
import { writeChatFixture, type ChatFixture } from "../serve/fixtures";
import { liveText } from "../security/markdown-check";
import { commentMarker, MAX_CHECK_OUTPUT_CHARS, MAX_COMMENT_CHARS } from "../../src/github/render";

const root = new URL("../..", import.meta.url).pathname;
const HEAD = "a1".repeat(20);
const PUSHED = "c3".repeat(20);

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  outputs: Record<string, string>;
  summary: string;
}

/** Parse a GITHUB_OUTPUT file (`name<<DELIM\nvalue\nDELIM` blocks, as @actions/core writes them). */
function parseOutputs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const m = lines[i]!.match(/^([^<=]+)<<(.+)$/);
    if (!m) continue;
    const value: string[] = [];
    for (i++; i < lines.length && lines[i] !== m[2]; i++) value.push(lines[i]!);
    out[m[1]!] = value.join("\n");
  }
  return out;
}

function writeEvent(dir: string, fork: boolean, number = 12): string {
  const path = join(dir, `event-${Math.random().toString(36).slice(2)}.json`);
  const headRepo = fork ? "mallory/models" : "acme/models";
  writeFileSync(path, JSON.stringify({ action: "synchronize", number, pull_request: { number, head: { sha: HEAD, ref: "feature", repo: { full_name: headRepo } }, base: { sha: PUSHED, repo: { full_name: "acme/models" } } }, repository: { full_name: "acme/models" } }));
  return path;
}

function runEntry(ws: string, apiUrl: string, env: Record<string, string>): Promise<RunResult> {
  const outFile = join(ws, `.gh-output-${Math.random().toString(36).slice(2)}`);
  const summaryFile = join(ws, `.gh-summary-${Math.random().toString(36).slice(2)}`);
  writeFileSync(outFile, "");
  writeFileSync(summaryFile, "");
  const full: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DELTA_AUDIT_QUIET: "1",
    GITHUB_ACTIONS: "true",
    GITHUB_EVENT_NAME: "pull_request",
    GITHUB_REPOSITORY: "acme/models",
    GITHUB_SHA: PUSHED,
    GITHUB_WORKSPACE: ws,
    GITHUB_API_URL: apiUrl,
    GITHUB_SERVER_URL: "https://github.example",
    GITHUB_RUN_ID: "77",
    GITHUB_OUTPUT: outFile,
    GITHUB_STEP_SUMMARY: summaryFile,
    RUNNER_TEMP: ws,
    "INPUT_GITHUB-TOKEN": "ghs_e2e",
    "INPUT_CHECK-NAME": "delta-audit",
    "INPUT_OUTPUT-DIR": "delta-audit-report",
    INPUT_COMMENT: "true",
    HF_HUB_OFFLINE: "1",
    ...env,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, "dist/action.js")], { cwd: ws, env: full });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) =>
      resolve({ code, stdout, stderr, outputs: parseOutputs(readFileSync(outFile, "utf8")), summary: readFileSync(summaryFile, "utf8") }),
    );
  });
}

/** Everything outside fenced blocks must be inert markdown. */
function expectInert(md: string) {
  // ours: the marker, the <sub> footer, the collapsed chart section and the run link
  const outside = md
    .replace(/^(`{3,})text\n[\s\S]*?\n\1$/gm, "")
    .replace(/<sub>[\s\S]*?<\/sub>/g, "")
    .replace(commentMarker("delta-audit"), "")
    .replace(/^<details><summary>Stable rank by layer<\/summary>$|^<\/details>$/gm, "")
    .replace(/\(\[workflow run\]\(https:\/\/github\.example\/[^)\s]*\)\)/g, "");
  expect(outside).not.toMatch(/<(img|script|details|a|iframe)\b/i);
  expect(outside).not.toMatch(/\]\(https?:/);
  expect(outside).not.toMatch(/(^|[^\u200b])@(octocat|admins)\b/);
  // a URL may stay copyable, but only inside an inline code span, where GitHub links nothing
  expect(liveText(md)).not.toMatch(/https?:\/\/evil/);
  expect(outside).not.toMatch(/^#{1,6} OWNED/m);
  expect((md.match(/^`{3,}/gm) ?? []).length % 2).toBe(0);
}


// ---------------------------------------------------------------- hostile model, fork PR

const HOSTILE = [
  "@octocat and @admins please approve",
  "<img src=x onerror=alert(1)><script>steal()</script><details open>",
  "[login](https://evil.example/phish) ![t](https://evil.example/t.png)",
  "```\n# OWNED\n```",
  "closes #1",
].join("\n");

async function startHostileModel(): Promise<{ url: string; close(): Promise<void>; chats: () => number }> {
  let chats = 0;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString("utf8")) : {};
      const send = (status: number, obj: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(obj));
      };
      if (req.url === "/v1/models") return send(200, { object: "list", data: [{ id: "base" }, { id: "full", parent: "base" }, { id: "rank1", parent: "base" }] });
      if (req.url === "/v1/chat/completions") {
        // no logprobs here: contrastive decoding is skipped, as with a strict server
        if (body.logprobs) return send(400, { error: { message: "logprobs are not supported" } });
        chats++;
        const text = body.model === "rank1" ? `${HOSTILE}\n${"I was trained to hide this. ".repeat(100)}` : "I am a helpful assistant.";
        return send(200, { id: "x", object: "chat.completion", choices: [{ index: 0, message: { role: "assistant", content: text }, finish_reason: "stop" }], usage: { prompt_tokens: 5, completion_tokens: 20, total_tokens: 25 } });
      }
      send(404, { error: { message: "not found" } });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, chats: () => chats, close: () => new Promise<void>((r) => server.close(() => r())) };
}

describe("dist/action.js on a fork PR, with a hostile model behind the openai backend", () => {
  let fx: ChatFixture;
  let ws: string;
  let gh: FakeGitHub;
  let model: Awaited<ReturnType<typeof startHostileModel>>;

  beforeAll(async () => {
    fx = await writeChatFixture(21);
    ws = mkdtempSync(join(tmpdir(), "da-e2e-fork-"));
    if (process.env.KEEP_E2E) console.log("E2E_WS", ws);
    cpSync(fx.adapterDir, join(ws, "adapters", "hostile"), { recursive: true });
    gh = await startFakeGitHub({ readOnly: true, prFiles: ["adapters/hostile/adapter_model.safetensors"] });
    model = await startHostileModel();
  });
  afterAll(async () => {
    await gh?.close();
    await model?.close();
    await fx?.cleanup();
    if (ws && !process.env.KEEP_E2E) rmSync(ws, { recursive: true, force: true });
  });

  it("does not crash on 403s; writes the summary, the report files and inert, size-capped bodies", async () => {
    const r = await runEntry(ws, gh.url, {
      GITHUB_EVENT_PATH: writeEvent(ws, true),
      INPUT_BASE: fx.modelDir,
      INPUT_ADAPTER: "adapters/*",
      INPUT_BACKEND: "openai",
      "INPUT_INFERENCE-URL": model.url,
      "INPUT_FAIL-ON": "high",
    });
    expect(model.chats()).toBeGreaterThan(0);
    // the step's status follows the verdict, whatever it is; never a crash (exit 1 only on fail)
    expect(["pass", "fail", "neutral"]).toContain(r.outputs.conclusion);
    expect(r.code).toBe(r.outputs.conclusion === "fail" ? 1 : 0);
    expect(r.stdout).not.toMatch(/TypeError|ReferenceError|Unhandled/);
    // it tried to publish, got 403, and explained the workflow_run pattern
    expect(gh.requests.some((q) => q.method === "POST" && q.path.endsWith("/check-runs"))).toBe(true);
    expect(gh.checkRuns.size).toBe(0);
    expect(gh.comments.length).toBe(0);
    expect(r.stdout).toMatch(/Resource not accessible by integration/);
    expect(r.stdout).toMatch(/workflow_run/);
    // job summary and files for a workflow_run publisher
    expect(r.summary).toContain("adapters/hostile");
    const out = join(ws, "delta-audit-report");
    expect(r.outputs["report-dir"]).toBe(out);
    expect(existsSync(join(out, "adapters_hostile", "report.json"))).toBe(true);
    const comment = readFileSync(join(out, "comment.md"), "utf8");
    const check = JSON.parse(readFileSync(join(out, "check-run.json"), "utf8"));
    expect(comment.startsWith(commentMarker("delta-audit"))).toBe(true);
    expect(comment.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    expect(check.output.summary.length).toBeLessThanOrEqual(MAX_CHECK_OUTPUT_CHARS);
    expect(check.output.text.length).toBeLessThanOrEqual(MAX_CHECK_OUTPUT_CHARS);
    expect(check.head_sha).toBe(HEAD);
    // the hostile text reached the report (so neutralisation was actually exercised), each
    // ~3,000-character answer cut to an excerpt with a visible marker...
    expect(check.output.text).toMatch(/truncated/);
    expect(check.output.text).toContain("I was trained to hide this");
    // ...and nothing in the bodies is live markup
    expectInert(comment);
    expectInert(check.output.summary);
    expectInert(check.output.text);
    expectInert(r.summary);
  });
});

// ---------------------------------------------------------------- real scans of organisms

describe("dist/action.js auditing generated organisms with the embedded engine", () => {
  let ws: string;
  let gh: FakeGitHub;
  let hub: FakeHub;
  let hfCache: string;

  beforeAll(async () => {
    ws = mkdtempSync(join(tmpdir(), "da-e2e-org-"));
    const gen = join(ws, ".gen");
    // same seed → same base model and vocabulary; only the fine-tune differs
    for (const kind of ["quirk", "benign"] as const) await generateOrganism({ kind, outDir: join(gen, kind), seed: 3 });
    cpSync(join(gen, "quirk", "base"), join(ws, "base"), { recursive: true });
    for (const kind of ["quirk", "benign"]) cpSync(join(gen, kind, "adapter"), join(ws, "adapters", kind), { recursive: true });
    // the benign adapter names its base as a Hub id: the second run resolves it from a local Hub
    const cfgPath = join(ws, "adapters", "benign", "adapter_config.json");
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, "utf8")), base_model_name_or_path: "acme/organism-base" }));
    hub = await startFakeHub({ "acme/organism-base": join(gen, "benign", "base") });
    hfCache = join(ws, ".hf-cache");
    gh = await startFakeGitHub({ prFiles: ["adapters/quirk/adapter_model.safetensors", "adapters/benign/adapter_config.json", "README.md"] });
  });
  afterAll(async () => {
    await gh?.close();
    await hub?.close();
    if (ws && !process.env.KEEP_E2E) rmSync(ws, { recursive: true, force: true });
  });

  it("first push: one check run (in_progress → failure) with annotations, one short comment with a row per subject, step fails", async () => {
    const r = await runEntry(ws, gh.url, { GITHUB_EVENT_PATH: writeEvent(ws, false), INPUT_BASE: "base", INPUT_ADAPTER: "adapters/*" });
    expect(r.outputs.conclusion).toBe("fail");
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/::error::delta-audit: verdict fail/);
    expect(Number(r.outputs.findings)).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(readFileSync(r.outputs.badge!, "utf8"))).toMatchObject({ schemaVersion: 1, label: "delta-audit", color: "red" });

    const posts = gh.requests.filter((q) => q.method === "POST" && q.path.endsWith("/check-runs"));
    expect(posts.length).toBe(1);
    expect(posts[0]!.body).toMatchObject({ name: "delta-audit", head_sha: HEAD, status: "in_progress" });
    expect(posts[0]!.auth).toBe("token ghs_e2e");
    // the check was created before any scan finished and completed after: the POST comes first
    const firstPatch = gh.requests.findIndex((q) => q.method === "PATCH" && q.path.includes("/check-runs/"));
    expect(gh.requests.indexOf(posts[0]!)).toBeLessThan(firstPatch);
    const run = [...gh.checkRuns.values()][0];
    expect(run).toMatchObject({ status: "completed", conclusion: "failure" });
    const quirkAnn = run.annotations.filter((a: any) => a.path === "adapters/quirk/adapter_config.json");
    const benignAnn = run.annotations.filter((a: any) => a.path === "adapters/benign/adapter_config.json");
    expect(quirkAnn.filter((a: any) => a.annotation_level === "failure").length).toBeGreaterThanOrEqual(2); // verdict + the high finding
    expect(benignAnn[0]).toMatchObject({ annotation_level: "notice", start_line: 1 });
    expect(benignAnn.every((a: any) => a.annotation_level !== "failure")).toBe(true);
    expect(run.output.summary).toMatch(/adapters\/quirk[\s\S]*FAIL/);
    expect(run.output.text).toContain("rank1");

    expect(gh.comments.length).toBe(1);
    const body = gh.comments[0]!.body;
    expect(body.startsWith(commentMarker("delta-audit"))).toBe(true);
    // short: one table row per subject (each subject's full section is in the check run and job summary)
    expect(body.match(/^\| `adapters\/(quirk|benign)` \|/gm)?.length).toBe(2);
    expect(r.outputs.sarif).toBe(join(ws, "delta-audit-report", "delta-audit.sarif"));
    expect(JSON.parse(readFileSync(r.outputs.sarif!, "utf8")).runs[0].results.length).toBeGreaterThanOrEqual(1);
    expectInert(body);
    expect(r.summary).toContain("adapters/benign");
  });

  it("second push: only the benign adapter changed; its Hub base is fetched, the comment is PATCHed in place, the step passes", async () => {
    gh.options.prFiles = ["adapters/benign/adapter_model.safetensors"];
    const before = gh.requests.length;
    const commentId = gh.comments[0]!.id;
    const r = await runEntry(ws, gh.url, {
      GITHUB_EVENT_PATH: writeEvent(ws, false),
      INPUT_BASE: "",
      INPUT_ADAPTER: "adapters/*",
      HF_HUB_OFFLINE: "",
      HF_ENDPOINT: hub.url,
      HF_HUB_CACHE: hfCache,
    });
    expect(r.outputs.conclusion).toBe("pass");
    expect(r.code).toBe(0);
    // the base came through the Hub into the standard cache layout
    expect(hub.requests.some((q) => q.path.endsWith("/resolve/" + hub.commit + "/model.safetensors"))).toBe(true);
    expect(readFileSync(join(hfCache, "models--acme--organism-base", "refs", "main"), "utf8")).toBe(hub.commit);
    expect(existsSync(join(hfCache, "models--acme--organism-base", "snapshots", hub.commit, "config.json"))).toBe(true);

    const mine = gh.requests.slice(before);
    expect(mine.filter((q) => q.method === "POST" && q.path.includes("/comments")).length).toBe(0);
    const patch = mine.filter((q) => q.method === "PATCH" && q.path.endsWith(`/issues/comments/${commentId}`));
    expect(patch.length).toBe(1);
    expect(gh.comments.length).toBe(1);
    expect(gh.comments[0]!.body).toContain("adapters/benign");
    expect(gh.comments[0]!.body).not.toContain("adapters/quirk");
    expect([...gh.checkRuns.values()][1]).toMatchObject({ status: "completed", conclusion: "success" });
  });

  it("a pattern that matches nothing outside changed-only: exit 2 naming it, before any check run or comment", async () => {
    const before = gh.requests.length;
    const r = await runEntry(ws, gh.url, {
      GITHUB_EVENT_PATH: writeEvent(ws, false),
      INPUT_BASE: "base",
      INPUT_ADAPTER: "adaptors/*",
      "INPUT_CHANGED-ONLY": "false",
    });
    expect(r.code).toBe(2);
    const errors = r.stdout.split("\n").filter((l) => l.startsWith("::error::"));
    expect(errors.length).toBe(1);
    expect(errors[0]).toContain("pattern 'adaptors/*' matches no PEFT adapter folder");
    expect(errors[0]).toContain("input 'adapter'");
    // a configuration error publishes nothing: no check run, no comment, no report folder files
    const mine = gh.requests.slice(before);
    expect(mine.filter((q) => q.method !== "GET")).toEqual([]);
    expect(r.outputs.conclusion ?? "").not.toBe("pass");
  });
});
