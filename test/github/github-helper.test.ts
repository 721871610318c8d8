import { afterEach, describe, expect, it } from "vitest";
import { createOctokit } from "../../src/github/octokit-client";
import { GitHubHelper, isPermissionError, MAX_ANNOTATIONS_PER_REQUEST, type CheckAnnotation } from "../../src/github/github-helper";
import { startFakeGitHub, type FakeComment, type FakeGitHub } from "./fake-github";

let gh: FakeGitHub | undefined;
afterEach(async () => {
  await gh?.close();
  gh = undefined;
});

const ref = { owner: "acme", repo: "models" };

describe("GitHubHelper against a local GitHub-like server", () => {
  it("honours a GHES-style base URL, and sends 120 annotations in batches of at most 50", async () => {
    gh = await startFakeGitHub({ prefix: "/api/v3" });
    const helper = new GitHubHelper(createOctokit("ghs_test", gh.url), ref);
    const id = await helper.createCheckRun("delta-audit", "a".repeat(40), { title: "t", summary: "s" });
    const annotations: CheckAnnotation[] = Array.from({ length: 120 }, (_, i) => ({ path: `m${i}/adapter_config.json`, start_line: 1, end_line: 1, annotation_level: "warning", message: `finding ${i}` }));
    await helper.completeCheckRun(id, "failure", { title: "done", summary: "sum", text: "txt" }, annotations);

    expect(gh.requests.every((r) => r.path.startsWith("/api/v3/"))).toBe(true);
    expect(gh.requests[0]!.auth).toBe("token ghs_test");
    const patches = gh.requests.filter((r) => r.method === "PATCH");
    expect(patches.map((p) => p.body.output.annotations.length)).toEqual([50, 50, 20]);
    expect(patches[0]!.body).toMatchObject({ status: "completed", conclusion: "failure" });
    for (const p of patches) expect(p.body.output.annotations.length).toBeLessThanOrEqual(MAX_ANNOTATIONS_PER_REQUEST);
    const run = gh.checkRuns.get(id);
    expect(run.annotations.map((a: CheckAnnotation) => a.message)).toEqual(annotations.map((a) => a.message));
    expect(run.conclusion).toBe("failure");
  });

  it("lists every changed file across pages (250 files → 3 pages)", async () => {
    const files = Array.from({ length: 250 }, (_, i) => `adapters/a${i}/adapter_model.safetensors`);
    gh = await startFakeGitHub({ prFiles: files });
    const helper = new GitHubHelper(createOctokit("t", gh.url), ref);
    expect(await helper.listPullRequestFiles(7)).toEqual(files);
    const gets = gh.requests.filter((r) => r.path.endsWith("/pulls/7/files"));
    expect(gets.length).toBe(3);
    expect(gets[0]!.query.get("per_page")).toBe("100");
  });

  it("finds the sticky comment by marker on a later page, ignoring people's comments that quote it", async () => {
    const marker = "<!-- delta-audit:sticky-comment:x -->";
    const comments: FakeComment[] = Array.from({ length: 130 }, (_, i) => ({ id: i + 1, body: `chatter ${i}`, user: { login: "dev", type: "User" } }));
    comments[10]!.body = `someone pasted ${marker}`;
    comments[120] = { id: 121, body: `${marker}\nreport`, user: { login: "github-actions[bot]", type: "Bot" } };
    gh = await startFakeGitHub({ comments });
    const helper = new GitHubHelper(createOctokit("t", gh.url), ref);
    expect(await helper.findComment(3, marker)).toEqual({ id: 121 });
    expect(await helper.findComment(3, "<!-- nope -->")).toBeUndefined();
  });

  it("with a personal access token, finds the comment that token's user wrote (not a bot, not someone else)", async () => {
    const marker = "<!-- delta-audit:sticky-comment:x -->";
    gh = await startFakeGitHub({
      comments: [
        { id: 1, body: `${marker} forged`, user: { login: "mallory", type: "User" } },
        { id: 2, body: `${marker} other app`, user: { login: "some-app[bot]", type: "Bot" } },
        { id: 3, body: `${marker} ours`, user: { login: "user-ghp_abc", type: "User" } },
      ],
    });
    expect(await new GitHubHelper(createOctokit("ghp_abc", gh.url), ref).findComment(3, marker)).toEqual({ id: 3 });
    // an Actions token cannot ask who it is: bot comments only
    expect(await new GitHubHelper(createOctokit("ghs_x", gh.url), ref).findComment(3, marker)).toEqual({ id: 2 });
  });

  it("retries a transient 502 instead of failing the audit", async () => {
    gh = await startFakeGitHub({ failFirst: 1 });
    const helper = new GitHubHelper(createOctokit("t", gh.url), ref);
    const id = await helper.createCheckRun("delta-audit", "c".repeat(40), { title: "t", summary: "s" });
    expect(gh.checkRuns.has(id)).toBe(true);
    expect(gh.requests.filter((r) => r.method === "POST").length).toBe(2);
  });

  it("reports a read-only token's 403 as a permission error", async () => {
    gh = await startFakeGitHub({ readOnly: true });
    const helper = new GitHubHelper(createOctokit("t", gh.url), ref);
    const err = await helper.createComment(1, "hi").catch((e) => e);
    expect(isPermissionError(err)).toBe(true);
    expect(isPermissionError(new Error("socket hang up"))).toBe(false);
  });
});
