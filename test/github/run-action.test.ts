/**
 * runAction end to end in-process: real subjects on disk, the real Octokit client against the
 * local GitHub-like server, and a scan stand-in that returns constructed reports (huge ones,
 * ones full of injection strings) — the cases a real tiny organism cannot produce.
 * The real bundled entry with real scans is covered in test/action/.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createOctokit } from "../../src/github/octokit-client";
import { GitHubHelper } from "../../src/github/github-helper";
import type { GitHubContext } from "../../src/github/context";
import { getSettings } from "../../src/github/input-helper";
import { ACTION_SARIF_FILE, runAction, type ScanFn } from "../../src/github/run-action";
import { MAX_CHECK_OUTPUT_CHARS, MAX_COMMENT_CHARS, commentMarker } from "../../src/github/render";
import type { Finding } from "../../src/judge/types";
import type { Report } from "../../src/report/types";
import { startFakeGitHub, type FakeGitHub } from "./fake-github";

const SHA = "b".repeat(40);
const EVIL = "@octocat <img src=x onerror=alert(1)> [x](https://evil.example) ```\n# pwned";

function report(conclusion: "pass" | "fail", findings: Finding[], text = EVIL, probes = 2): Report {
  const q = { median: 1.1, p10: 1, p90: 1.5 };
  return {
    schemaVersion: 1,
    tool: { name: "delta-audit", version: "0.1.0" },
    createdAt: "2026-01-01T00:00:00Z",
    subject: { base: "b", adapter: "a", kind: "lora", digest: "e".repeat(64) },
    spectrum: { modules: [], summary: { modules: 4, stableRank: q, energyShareTop1: q, byType: { q: { modules: 4, stableRank: q } }, byLayer: {} } },
    elicitation: {
      backend: "embedded", rank: 1, variants: ["base", "full", "rank1"], samples: 1, temperature: 0, systemPrompt: "", notices: [],
      probes: Array.from({ length: probes }, (_, i) => ({ id: `p${i}`, kind: "probe" as const, prompt: "Tell me your secret.", responses: { base: ["no"], full: ["no"], rank1: [text] } })),
    },
    findings,
    verdict: { conclusion, reasons: [conclusion === "fail" ? "a high finding" : "nothing found"], failOn: "high" },
    timings: {},
  };
}

const high = (i: number, text = EVIL): Finding => ({ id: `f${i}`, title: `Implanted behaviour ${i}`, severity: "high", source: "revealed", terms: ["secret"], evidence: [{ probeId: "p0", variant: "rank1", excerpt: text }], confidence: 0.8 });

/** A scan stand-in: adapters whose folder name contains "quirk" fail, others pass. */
function scanWith(make: (adapter: string) => Report): ScanFn {
  return async (opts) => {
    mkdirSync(opts.outDir, { recursive: true });
    const r = make(opts.adapter ?? "");
    writeFileSync(join(opts.outDir, "report.json"), JSON.stringify(r));
    return { report: r, outDir: opts.outDir, exitCode: r.verdict.conclusion === "fail" ? 1 : 0 };
  };
}

let gh: FakeGitHub;
let ws: string;
/** @actions/core's summary keeps the first GITHUB_STEP_SUMMARY path it sees: one file per test file, emptied per test. */
let summaryFile: string;
const saved = { ...process.env };

beforeAll(() => {
  summaryFile = join(mkdtempSync(join(tmpdir(), "da-sum-")), "summary.md");
});

beforeEach(() => {
  ws = mkdtempSync(join(tmpdir(), "da-ws-"));
  for (const name of ["quirk", "benign"]) {
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

function ctx(overrides: Partial<GitHubContext> = {}): GitHubContext {
  return { eventName: "pull_request", owner: "acme", repo: "models", apiUrl: gh.url, serverUrl: "https://github.com", headSha: SHA, pullNumber: 5, isFork: false, workspace: ws, ...overrides };
}

function settings(env: Record<string, string> = {}) {
  return getSettings({ env: { INPUT_BASE: "base", INPUT_ADAPTER: "adapters/*", "INPUT_GITHUB-TOKEN": "t", ...env }, workspace: ws, isPullRequest: true });
}

const deps = (scan: ScanFn) => ({ scan, resolveHub: async () => { throw new Error("no hub in this test"); }, github: new GitHubHelper(createOctokit("t", gh.url), { owner: "acme", repo: "models" }), version: "0.1.0" });

describe("runAction", () => {
  it("creates the check in_progress, completes it with annotations, creates then updates one sticky comment", async () => {
    gh = await startFakeGitHub({ prFiles: ["adapters/quirk/adapter_model.safetensors", "adapters/benign/adapter_config.json"] });
    const scan = scanWith((a) => (a.includes("quirk") ? report("fail", [high(1)]) : report("pass", [])));
    const first = await runAction(settings(), ctx(), deps(scan));
    expect(first.conclusion).toBe("fail");
    expect(first.findings).toBe(1);
    const [runId, run] = [...gh.checkRuns.entries()][0]!;
    const create = gh.requests.find((r) => r.method === "POST" && r.path.endsWith("/check-runs"))!;
    expect(create.body).toMatchObject({ name: "delta-audit", head_sha: SHA, status: "in_progress" });
    expect(run).toMatchObject({ status: "completed", conclusion: "failure" });
    expect(run.annotations.map((a: any) => `${a.path}:${a.annotation_level}`)).toEqual([
      "adapters/benign/adapter_config.json:notice",
      "adapters/quirk/adapter_config.json:failure",
      "adapters/quirk/adapter_config.json:failure",
    ]);
    // the check's summary covers both subjects, the text has the per-probe excerpts
    expect(run.output.summary).toContain("adapters/quirk");
    expect(run.output.summary).toContain("adapters/benign");
    expect(run.output.text).toContain("p0");
    expect(gh.comments.length).toBe(1);
    const body = gh.comments[0]!.body;
    expect(body.startsWith(commentMarker("delta-audit"))).toBe(true);
    expect(body).not.toMatch(/<img|\]\(https:\/\/evil|^# pwned/m);
    // the comment is short (titles, no excerpts); the evidence, neutralised, is in the check run
    expect(body).not.toMatch(/(^|[^\u200b])@octocat/);
    expect(run.output.summary).toContain("@\u200boctocat");
    expect(readFileSync(summaryFile, "utf8")).toContain("adapters/quirk");
    expect(JSON.parse(readFileSync(first.badge, "utf8"))).toMatchObject({ schemaVersion: 1, message: "fail (1 finding)", color: "red" });

    // second push: the PR now only touches the benign adapter → one subject, the comment is PATCHed
    gh.options.prFiles = ["adapters/benign/adapter_model.safetensors"];
    const second = await runAction(settings(), ctx(), deps(scan));
    expect(second.results.map((r) => r.subject.rel)).toEqual(["adapters/benign"]);
    expect(second.conclusion).toBe("pass");
    expect(gh.comments.length).toBe(1);
    expect(gh.requests.filter((r) => r.method === "PATCH" && /\/issues\/comments\/\d+$/.test(r.path)).length).toBe(1);
    expect(gh.comments[0]!.body).not.toContain("adapters/quirk");
    expect([...gh.checkRuns.values()][1]).toMatchObject({ conclusion: "success" });
    expect(runId).toBeDefined();
  });

  it("keeps a huge report within GitHub's limits end to end (the fake server answers 422 over them)", async () => {
    gh = await startFakeGitHub();
    const huge = (i: number) => high(i, `${EVIL} ${"z".repeat(5000)}`);
    const scan = scanWith(() => report("fail", Array.from({ length: 60 }, (_, i) => huge(i)), `${EVIL}${"w".repeat(20000)}`, 300));
    const r = await runAction(settings({ "INPUT_CHANGED-ONLY": "false" }), ctx(), deps(scan));
    expect(r.readOnly).toBe(false);
    const run = [...gh.checkRuns.values()][0];
    expect(run.status).toBe("completed");
    // 2 verdict annotations + 120 findings → 3 requests of ≤ 50
    expect(run.annotations.length).toBe(122);
    expect(gh.requests.filter((q) => q.method === "PATCH" && q.path.includes("/check-runs/")).length).toBe(3);
    expect(run.output.summary.length).toBeLessThanOrEqual(MAX_CHECK_OUTPUT_CHARS);
    expect(gh.comments[0]!.body.length).toBeLessThanOrEqual(MAX_COMMENT_CHARS);
    expect(gh.comments[0]!.body).toMatch(/truncated|more finding/);
  });

  it("degrades gracefully on a fork PR whose token gets 403: summary and files, no crash", async () => {
    gh = await startFakeGitHub({ readOnly: true, prFiles: ["adapters/quirk/x"] });
    const scan = scanWith(() => report("fail", [high(1)]));
    const r = await runAction(settings({ "INPUT_OUTPUT-DIR": "out" }), ctx({ isFork: true }), deps(scan));
    expect(r.readOnly).toBe(true);
    expect(r.conclusion).toBe("fail");
    expect(gh.comments.length).toBe(0);
    // the PR file list (a read) still worked: only the quirk adapter was audited
    expect(r.results.map((x) => x.subject.rel)).toEqual(["adapters/quirk"]);
    const summary = readFileSync(summaryFile, "utf8");
    expect(summary).toContain("adapters/quirk");
    expect(summary).toMatch(/read\\?-only token/);
    const out = join(ws, "out");
    expect(JSON.parse(readFileSync(join(out, "summary.json"), "utf8"))).toMatchObject({ conclusion: "fail", pullRequest: 5, headSha: SHA });
    expect(readFileSync(join(out, "comment.md"), "utf8").startsWith(commentMarker("delta-audit"))).toBe(true);
    expect(JSON.parse(readFileSync(join(out, "check-run.json"), "utf8"))).toMatchObject({ conclusion: "failure", head_sha: SHA });
  });

  it("on push: the check run sits on the pushed commit, every subject is audited, nothing is commented", async () => {
    gh = await startFakeGitHub();
    const pushed = "d".repeat(40);
    const r = await runAction(
      getSettings({ env: { INPUT_BASE: "base", INPUT_ADAPTER: "adapters/*" }, workspace: ws, isPullRequest: false }),
      ctx({ eventName: "push", pullNumber: undefined, headSha: pushed }),
      deps(scanWith(() => report("pass", []))),
    );
    expect(r.results.length).toBe(2);
    expect([...gh.checkRuns.values()][0]).toMatchObject({ head_sha: pushed, conclusion: "success" });
    expect(gh.requests.some((q) => q.path.includes("/comments") || q.path.includes("/pulls/"))).toBe(false);
  });

  it("reports a subject whose scan throws as neutral with the error, and audits the others", async () => {
    gh = await startFakeGitHub();
    const scan: ScanFn = async (opts) => {
      if (opts.adapter?.includes("quirk")) throw new Error("adapter_model.safetensors: header is not JSON");
      return scanWith(() => report("pass", []))(opts);
    };
    const r = await runAction(settings({ "INPUT_CHANGED-ONLY": "false" }), ctx(), deps(scan));
    expect(r.conclusion).toBe("neutral");
    expect(r.results.find((x) => x.subject.rel === "adapters/quirk")).toMatchObject({ conclusion: "neutral", error: expect.stringContaining("header is not JSON") });
    expect([...gh.checkRuns.values()][0]).toMatchObject({ conclusion: "neutral" });
    expect(gh.comments[0]!.body).toContain("header is not JSON");
  });

  it("a cancelled job: the scan in progress gets the edge's signal, the subjects after it are not started, every one is neutral", async () => {
    gh = await startFakeGitHub();
    const controller = new AbortController();
    const scanned: string[] = [];
    const scan: ScanFn = async (opts) => {
      scanned.push(opts.adapter!);
      expect(opts.signal).toBe(controller.signal);
      // the job is cancelled while the first subject elicits: runScan writes its partial report
      controller.abort(new Error("interrupted by SIGTERM"));
      const r = report("pass", []);
      r.verdict = { conclusion: "neutral", reasons: ["interrupted", "interrupted by SIGTERM while eliciting (1 of 3 variants done)"], failOn: "high" };
      r.error = "interrupted by SIGTERM while eliciting (1 of 3 variants done)";
      return scanWith(() => r)(opts);
    };
    const r = await runAction(settings({ "INPUT_CHANGED-ONLY": "false" }), ctx(), { ...deps(scan), signal: controller.signal });
    expect(scanned).toHaveLength(1);
    expect(r.conclusion).toBe("neutral");
    expect(r.results).toHaveLength(2);
    const [first, second] = r.results;
    expect(first).toMatchObject({ conclusion: "neutral", error: "interrupted by SIGTERM while eliciting (1 of 3 variants done)" });
    expect(second).toMatchObject({ conclusion: "neutral", error: "interrupted by SIGTERM before this subject's audit started" });
    expect(second!.report).toBeUndefined();
    // the check run does not stay in_progress: it says what happened
    expect([...gh.checkRuns.values()][0]).toMatchObject({ status: "completed", conclusion: "neutral" });
    expect(JSON.parse(readFileSync(join(r.reportDir, "summary.json"), "utf8")).subjects.map((s: { conclusion: string }) => s.conclusion)).toEqual(["neutral", "neutral"]);
  });

  it("with fail-on-neutral, an undecided audit completes the check as a failure", async () => {
    gh = await startFakeGitHub();
    const scan: ScanFn = async (opts) => {
      if (opts.adapter?.includes("quirk")) throw new Error("inference server went away");
      return scanWith(() => report("pass", []))(opts);
    };
    const s = settings({ "INPUT_CHANGED-ONLY": "false", INPUT_FAIL_ON_NEUTRAL: "true" });
    expect(s.failOnNeutral).toBe(true);
    expect(settings().failOnNeutral).toBe(false);
    const r = await runAction(s, ctx(), deps(scan));
    // the verdict itself stays neutral: only the gate treats it as a failure
    expect(r.conclusion).toBe("neutral");
    expect([...gh.checkRuns.values()][0]).toMatchObject({ status: "completed", conclusion: "failure" });
    expect(() => settings({ INPUT_FAIL_ON_NEUTRAL: "maybe" })).toThrow(/fail-on-neutral/);
  });
});

describe("the run's SARIF and the report files it names", () => {
  const low: Finding = { id: "l1", title: "Style shift", severity: "low", source: "implant", terms: ["glad"], evidence: [], confidence: 0.5 };

  it("writes delta-audit.sarif: valid JSON, one result per finding over every subject, on workspace-relative config files", async () => {
    gh = await startFakeGitHub();
    // the quirk's scan writes report.html and report.sarif next to report.json; the benign one does not
    const scan: ScanFn = async (opts) => {
      const quirk = opts.adapter!.includes("quirk");
      const r = await scanWith(() => (quirk ? report("fail", [high(1), high(2)]) : report("pass", [low])))(opts);
      if (quirk) for (const f of ["report.html", "report.sarif"]) writeFileSync(join(opts.outDir, f), "x");
      return r;
    };
    // a subject whose scan cannot start has no report, and no result
    mkdirSync(join(ws, "adapters", "broken"));
    writeFileSync(join(ws, "adapters", "broken", "adapter_config.json"), "{}");
    const failing: ScanFn = async (opts) => {
      if (opts.adapter!.includes("broken")) throw new Error("header is not JSON");
      return scan(opts);
    };
    const r = await runAction(settings({ "INPUT_CHANGED-ONLY": "false", "INPUT_OUTPUT-DIR": "out/audit" }), ctx({ runUrl: "https://github.com/acme/models/actions/runs/9" }), deps(failing));
    expect(r.sarif).toBe(join(ws, "out", "audit", ACTION_SARIF_FILE));
    const log = JSON.parse(readFileSync(r.sarif, "utf8"));
    expect(log.version).toBe("2.1.0");
    const results = log.runs[0].results;
    expect(results).toHaveLength(3);
    expect(results.map((x: any) => x.locations[0].physicalLocation.artifactLocation.uri).sort()).toEqual([
      "adapters/benign/adapter_config.json",
      "adapters/quirk/adapter_config.json",
      "adapters/quirk/adapter_config.json",
    ]);
    expect(results.every((x: any) => x.locations[0].physicalLocation.artifactLocation.uriBaseId === "%SRCROOT%")).toBe(true);
    expect(results.map((x: any) => x.level).sort()).toEqual(["error", "error", "note"]);
    expect(JSON.parse(readFileSync(join(ws, "out", "audit", "summary.json"), "utf8"))).toMatchObject({ sarif: ACTION_SARIF_FILE });

    // the comment and the job summary name the report files that exist, and link the run
    expect(r.results.find((x) => x.subject.rel === "adapters/quirk")!.views).toEqual(["adapters_quirk/report.html", "adapters_quirk/report.sarif"]);
    expect(r.results.find((x) => x.subject.rel === "adapters/benign")!.views).toEqual([]);
    const line = "Full reports: `adapters_quirk/report.html` · `adapters_quirk/report.sarif` · `delta-audit.sarif` in `out/audit`; in the workflow's artifacts when it uploads that folder ([workflow run](https://github.com/acme/models/actions/runs/9)).";
    expect(gh.comments[0]!.body).toContain(line);
    expect(readFileSync(summaryFile, "utf8")).toContain(line);
    expect(gh.comments[0]!.body).toContain("header is not JSON");
  });

  it("writes a SARIF log without results when nothing was audited", async () => {
    gh = await startFakeGitHub();
    const r = await runAction(settings({ INPUT_ADAPTER: "nothing/*" }), ctx(), deps(scanWith(() => report("pass", []))));
    expect(r.results).toEqual([]);
    expect(JSON.parse(readFileSync(r.sarif, "utf8")).runs[0].results).toEqual([]);
  });
});

describe("the workflow pins rank", () => {
  it("input rank wins over a pull request's config rank, and is validated like the other inputs", async () => {
    gh = await startFakeGitHub();
    mkdirSync(join(ws, ".github"));
    // the attack: a PR raises rank to the adapter's, so the truncated variant is the adapter itself
    writeFileSync(join(ws, ".github", "delta-audit.yml"), "rank: 64\n");
    const seen: number[] = [];
    // the stand-in reads the config it is handed and overrides nothing: the pin must already be in it
    const scan: ScanFn = async (opts) => {
      seen.push(opts.config.rank);
      return scanWith(() => report("pass", []))(opts);
    };
    await runAction(settings({ "INPUT_CHANGED-ONLY": "false", INPUT_RANK: "1" }), ctx(), deps(scan));
    expect(seen).toEqual([1, 1]);
    seen.length = 0;
    await runAction(settings({ "INPUT_CHANGED-ONLY": "false" }), ctx(), deps(scan));
    expect(seen).toEqual([64, 64]); // not pinned: the config's
    expect(settings({ INPUT_RANK: "2" }).rank).toBe(2);
    expect(settings().rank).toBeUndefined();
    expect(() => settings({ INPUT_RANK: "0" })).toThrow(/input 'rank': Invalid value '0'. Expected 1\.\.1024/);
    expect(() => settings({ INPUT_RANK: "1.5" })).toThrow(/input 'rank'/);
    expect(() => settings({ INPUT_RANK: "2000" })).toThrow(/input 'rank'/);
  });
});

describe("runAction resolves the policy once", () => {
  const medium: Finding = { id: "m1", title: "Style shift", severity: "medium", source: "implant", terms: ["glad"], evidence: [], confidence: 0.5 };

  it("counts findings with the config's fail-on and hands every scan the same resolved config, and nothing to override", async () => {
    gh = await startFakeGitHub();
    mkdirSync(join(ws, ".github"));
    writeFileSync(join(ws, ".github", "delta-audit.yml"), "fail-on: medium\nseed: 7\nrank: 8\n");
    const configPath = join(ws, ".github", "delta-audit.yml");
    const seen: unknown[] = [];
    // the stand-in applies no overrides: what it records is exactly what the scan is handed
    const scan: ScanFn = async (opts) => {
      const { failOn, seed, rank, backend } = opts.config;
      seen.push({ keys: Object.keys(opts).sort(), configPath: opts.configPath, failOn, seed, rank, backend: backend.type, url: backend.url, device: backend.device });
      // the stand-in reports a verdict under "high": the outputs must still count at the run's fail-on
      return scanWith(() => report("pass", [medium]))(opts);
    };
    const keys = ["adapter", "base", "config", "configPath", "env", "outDir"];
    const r = await runAction(settings({ "INPUT_CHANGED-ONLY": "false" }), ctx(), deps(scan));
    const fromFile = { keys, configPath, failOn: "medium", seed: 7, rank: 8, backend: "embedded", url: undefined, device: "cpu" };
    expect(seen).toEqual([fromFile, fromFile]);
    expect(r.findings).toBe(2);
    // the inputs win over the file, for the scans and the count alike
    seen.length = 0;
    const pinned = await runAction(
      settings({ "INPUT_CHANGED-ONLY": "false", "INPUT_FAIL-ON": "high", INPUT_RANK: "2", INPUT_BACKEND: "openai", "INPUT_INFERENCE-URL": "http://127.0.0.1:9/v1", INPUT_DEVICE: "cuda" }),
      ctx(),
      deps(scan),
    );
    const fromInputs = { keys, configPath, failOn: "high", seed: 7, rank: 2, backend: "openai", url: "http://127.0.0.1:9/v1", device: "cuda" };
    expect(seen).toEqual([fromInputs, fromInputs]);
    expect(pinned.findings).toBe(0);
  });

  it("a config that does not validate makes every subject neutral with its error, without scanning", async () => {
    gh = await startFakeGitHub();
    mkdirSync(join(ws, ".github"));
    writeFileSync(join(ws, ".github", "delta-audit.yml"), "fail-on: sometimes\n");
    let scans = 0;
    const scan: ScanFn = async (opts) => {
      scans++;
      return scanWith(() => report("pass", []))(opts);
    };
    const r = await runAction(settings({ "INPUT_CHANGED-ONLY": "false" }), ctx(), deps(scan));
    expect(scans).toBe(0);
    expect(r.conclusion).toBe("neutral");
    expect(r.results.map((x) => x.conclusion)).toEqual(["neutral", "neutral"]);
    for (const x of r.results) expect(x.error).toMatch(/delta-audit\.yml: fail-on: expected one of high, medium, low, never/);
    expect([...gh.checkRuns.values()][0]).toMatchObject({ conclusion: "neutral" });
  });
});
