/**
 * Pull requests that must not be blocked, and ones that must: runAction against the local
 * GitHub-like server on real folders. Nothing to audit is a success that says so; a pattern that
 * matches nothing (when changed-only does not narrow) is a configuration error; every body the
 * Action sends is inert and names workspace-relative paths, never the runner's.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createOctokit } from "../../src/github/octokit-client";
import { GitHubHelper } from "../../src/github/github-helper";
import type { GitHubContext } from "../../src/github/context";
import { getSettings } from "../../src/github/input-helper";
import { runAction, type ActionDeps, type ScanFn } from "../../src/github/run-action";
import { InputError } from "../../src/errors";
import type { Report } from "../../src/report/types";
import { problems } from "../security/markdown-check";
import { startFakeGitHub, type FakeGitHub } from "./fake-github";

const SHA = "c".repeat(40);
const HOSTILE = "<img src=x onerror=alert(1)> @someone";

/** A passing report on the paths the scan was handed, as a real scan writes them. */
const scan: ScanFn = async (opts) => {
  mkdirSync(opts.outDir, { recursive: true });
  const q = { median: 1.1, p10: 1, p90: 1.5 };
  const report: Report = {
    schemaVersion: 2,
    tool: { name: "delta-audit", version: "0.1.0" },
    createdAt: "2026-01-01T00:00:00Z",
    subject: { base: opts.base, adapter: opts.adapter, kind: "lora", digest: "e".repeat(64) },
    spectrum: { modules: [], summary: { modules: 4, stableRank: q, energyShareTop1: q, byType: { q: { modules: 4, stableRank: q } }, byLayer: {} } },
    findings: [],
    verdict: { conclusion: "pass", reasons: ["nothing found"], failOn: "high" },
    timings: {},
  };
  writeFileSync(join(opts.outDir, "report.json"), JSON.stringify(report));
  return { report, outDir: opts.outDir, exitCode: 0 };
};

let gh: FakeGitHub;
let ws: string;
let summaryFile: string;
const saved = { ...process.env };

beforeAll(() => {
  summaryFile = join(mkdtempSync(join(tmpdir(), "da-sum-")), "summary.md");
});
beforeEach(() => {
  ws = mkdtempSync(join(tmpdir(), "da-ws-"));
  for (const name of ["benign", HOSTILE]) {
    mkdirSync(join(ws, "adapters", name), { recursive: true });
    writeFileSync(join(ws, "adapters", name, "adapter_config.json"), JSON.stringify({ base_model_name_or_path: "org/base" }));
  }
  mkdirSync(join(ws, "base"));
  writeFileSync(summaryFile, "");
  process.env.GITHUB_STEP_SUMMARY = summaryFile;
});
afterEach(async () => {
  await gh?.close();
  process.env = { ...saved };
});

const ctx = (o: Partial<GitHubContext> = {}): GitHubContext => ({ eventName: "pull_request", owner: "acme", repo: "models", apiUrl: gh.url, serverUrl: "https://github.com", headSha: SHA, pullNumber: 7, isFork: false, workspace: ws, ...o });
const settings = (env: Record<string, string> = {}, isPullRequest = true) =>
  getSettings({ env: { INPUT_BASE: "base", INPUT_ADAPTER: "adapters/*", "INPUT_GITHUB-TOKEN": "t", ...env }, workspace: ws, isPullRequest });
const deps = (o: Partial<ActionDeps> = {}): ActionDeps => ({ scan, resolveHub: async () => { throw new Error("no hub here"); }, github: new GitHubHelper(createOctokit("t", gh.url), { owner: "acme", repo: "models" }), version: "0.1.0", ...o });

/** Every markdown string in a request body (comment bodies; check-run titles, summaries, texts) with the sticky markers it should hold. */
function markdownFields(body: any): { md: string; markers: number }[] {
  if (!body || typeof body !== "object") return [];
  const comment = typeof body.body === "string" ? [{ md: body.body as string, markers: 1 }] : [];
  const output = [body.output?.title, body.output?.summary, body.output?.text].filter((x): x is string => typeof x === "string").map((md) => ({ md, markers: 0 }));
  return [...comment, ...output];
}
const OURS = [/^<!-- delta-audit:sticky-comment:delta-audit -->$/, /<\/?sub>/g, /^<details><summary>Stable rank by layer<\/summary>$/, /^<\/details>$/];

describe("a pull request that touches no subject", () => {
  it("concludes success with 'nothing to audit', posts no comment, outputs skipped, even with fail-on-neutral", async () => {
    gh = await startFakeGitHub({ prFiles: ["README.md"] });
    const r = await runAction(settings({ "INPUT_FAIL-ON-NEUTRAL": "true" }), ctx(), deps());
    expect(r.conclusion).toBe("skipped");
    expect(r.results).toEqual([]);
    const run = [...gh.checkRuns.values()][0];
    expect(run).toMatchObject({ status: "completed", conclusion: "success" });
    expect(run.output.title).toBe("delta-audit: nothing to audit");
    expect(run.output.summary).toContain("Nothing to audit");
    expect(gh.comments).toEqual([]);
    expect(gh.requests.filter((q) => q.method === "POST" && q.path.includes("/comments"))).toEqual([]);
    expect(JSON.parse(readFileSync(join(r.reportDir, "summary.json"), "utf8"))).toMatchObject({ conclusion: "skipped", subjects: [] });
    expect(JSON.parse(readFileSync(r.badge, "utf8")).message).toBe("nothing to audit");
    expect(JSON.parse(readFileSync(join(r.reportDir, "check-run.json"), "utf8")).conclusion).toBe("success");
  });

  it("updates an earlier sticky comment to say so instead of leaving a stale verdict", async () => {
    gh = await startFakeGitHub({ prFiles: ["adapters/benign/adapter_config.json"] });
    await runAction(settings({ INPUT_ADAPTER: "adapters/benign" }), ctx(), deps());
    expect(gh.comments).toHaveLength(1);
    gh.options.prFiles = ["README.md"];
    const r = await runAction(settings({ INPUT_ADAPTER: "adapters/benign" }), ctx(), deps());
    expect(r.conclusion).toBe("skipped");
    expect(gh.comments).toHaveLength(1);
    expect(gh.comments[0]!.body).toContain("Nothing to audit");
    expect(gh.comments[0]!.body).not.toContain("| Subject |");
  });
});

describe("a pattern that matches nothing", () => {
  for (const [what, env, c] of [
    ["changed-only off", { "INPUT_CHANGED-ONLY": "false" }, {}],
    ["not a pull request (push)", {}, { eventName: "push", pullNumber: undefined }],
  ] as const) {
    it(`is a configuration error naming the pattern when ${what}, before anything is published`, async () => {
      gh = await startFakeGitHub({ prFiles: ["README.md"] });
      const run = runAction(settings({ INPUT_ADAPTER: "adapters/*\nmodels/*/lora", ...env }, c.eventName !== "push"), ctx(c), deps());
      await expect(run).rejects.toThrow(InputError);
      await expect(run).rejects.toThrow(/pattern 'models\/\*\/lora' matches no PEFT adapter folder/);
      expect(gh.requests).toEqual([]);
    });
  }

  it("is nothing to audit, not an error, when changed-only narrows a pull request's subjects", async () => {
    gh = await startFakeGitHub({ prFiles: ["README.md"] });
    const r = await runAction(settings({ INPUT_ADAPTER: "models/*/lora" }), ctx(), deps());
    expect(r.conclusion).toBe("skipped");
  });
});

describe("what the Action sends to GitHub", () => {
  it("keeps a hostile folder name inert in every request body, in progress and completed, and in the job summary", async () => {
    gh = await startFakeGitHub({ prFiles: [`adapters/${HOSTILE}/adapter_config.json`, "adapters/benign/adapter_config.json"] });
    const r = await runAction(settings(), ctx(), deps());
    expect(r.results.map((x) => x.subject.rel)).toContain(`adapters/${HOSTILE}`);
    const create = gh.requests.find((q) => q.method === "POST" && q.path.endsWith("/check-runs"))!;
    expect(create.body.output.summary).toContain("onerror");
    const bodies = gh.requests.flatMap((q) => markdownFields(q.body));
    expect(bodies.length).toBeGreaterThanOrEqual(4); // in-progress summary, completed title/summary/text, comment
    for (const { md, markers } of bodies) expect(problems(md, { allowedTags: OURS, markers }), md.slice(0, 400)).toEqual([]);
    expect(problems(readFileSync(summaryFile, "utf8"), { allowedTags: OURS, markers: 0 })).toEqual([]);
  });

  it("names workspace-relative folders and the Hub id with its commit, never the runner's paths, with one heading per subject", async () => {
    gh = await startFakeGitHub({ prFiles: ["adapters/benign/adapter_config.json"] });
    const cache = mkdtempSync(join(tmpdir(), "da-hub-"));
    const commit = "f".repeat(40);
    const r = await runAction(
      settings({ INPUT_BASE: "", INPUT_ADAPTER: "adapters/benign" }),
      ctx(),
      deps({ resolveHub: async (spec) => ({ repo: spec, revision: "main", commit, dir: cache, downloaded: [] }) }),
    );
    expect(r.conclusion).toBe("pass");
    const sent = gh.requests.flatMap((q) => markdownFields(q.body).map((f) => f.md)).join("\n");
    const published = `${sent}\n${readFileSync(summaryFile, "utf8")}`;
    expect(published).not.toContain(ws);
    expect(published).not.toContain(cache);
    const summary = [...gh.checkRuns.values()][0].output.summary as string;
    expect(summary).toMatch(new RegExp(`^- base: .*org.*base.*@.*${commit}`, "m"));
    expect(summary).toMatch(/^- adapter: .*adapters.*benign/m);
    // one heading for the subject; the report's own title is not repeated under it
    expect(summary.split("\n").filter((l) => /^#{1,6} /.test(l) && l.includes("adapters/benign"))).toHaveLength(1);
    expect(summary).not.toMatch(/^#+ delta-audit: /m);
  });

  it("shows a local base folder workspace-relative", async () => {
    gh = await startFakeGitHub({ prFiles: ["adapters/benign/adapter_config.json"] });
    await runAction(settings({ INPUT_BASE: join(ws, "base"), INPUT_ADAPTER: "adapters/benign" }), ctx(), deps());
    const summary = [...gh.checkRuns.values()][0].output.summary as string;
    expect(summary).toMatch(/^- base: base$/m);
    expect(summary).not.toContain(ws);
  });
});
