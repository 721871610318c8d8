/**
 * .github/workflows/release.yml read with the `yaml` package: its trigger, the order of its
 * jobs, their permissions and the commands that publish; and its shell run for real with bash —
 * the tag check against package.json, scripts/major-tag.sh on a range of tags, and the step that
 * moves the major tag, against a real bare git repository standing in for GitHub.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readWorkflow } from "../github/workflow-file";

const root = fileURLToPath(new URL("../..", import.meta.url));
const MAJOR_TAG_SCRIPT = join(root, "scripts", "major-tag.sh");

const workflow = readWorkflow("release.yml");
const needsOf = (job: string): string[] => [workflow.jobs[job].needs ?? []].flat();
const runOf = (job: string, marker: string): string => {
  const step = workflow.jobs[job].steps.find((s) => s.run?.includes(marker));
  if (!step?.run) throw new Error(`job ${job} has no step whose run contains ${marker}`);
  return step.run;
};

/** Every job that must finish before `job` starts, directly or through others. */
function upstream(job: string, seen = new Set<string>()): Set<string> {
  for (const need of needsOf(job)) {
    if (!seen.has(need)) {
      seen.add(need);
      upstream(need, seen);
    }
  }
  return seen;
}

/**
 * GitHub's filter pattern as a RegExp, for the characters it gives meaning to: `*` (any run of
 * characters but `/`), `**` (any run), `+` and `?` (one or more / zero or one of the preceding
 * character or class) and `[...]` (a class); everything else is literal.
 */
function filterPattern(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*") {
      if (pattern[i + 1] === "*") {
        re += ".*";
        i++;
      } else re += "[^/]*";
    } else if (c === "+" || c === "?") re += c;
    else if (c === "[") {
      const end = pattern.indexOf("]", i);
      re += pattern.slice(i, end + 1);
      i = end;
    } else re += c.replace(/[\\^$.|(){}]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

const PATH = `${dirname(process.execPath)}${delimiter}${process.env.PATH ?? ""}`;
const bash = (script: string, cwd: string, env: Record<string, string> = {}) =>
  spawnSync("bash", ["-c", script], { cwd, encoding: "utf8", env: { ...process.env, PATH, ...env } });
const majorTag = (tag: string) => spawnSync("bash", [MAJOR_TAG_SCRIPT, tag], { encoding: "utf8" });

describe("release workflow", () => {
  let work: string;

  beforeAll(() => {
    work = mkdtempSync(join(tmpdir(), "delta-audit-release-"));
  });
  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it("runs on release tags only: vX.Y.Z and its prereleases, never the moving major tag", () => {
    expect(Object.keys(workflow.on)).toEqual(["push"]);
    expect(workflow.on.push?.branches).toBeUndefined();
    const patterns = (workflow.on.push?.tags ?? []).map(filterPattern);
    const triggers = (ref: string) => patterns.some((p) => p.test(ref));
    for (const tag of ["v0.1.0", "v1.2.3", "v10.20.30", "v1.2.3-rc.1"]) expect(triggers(tag), tag).toBe(true);
    for (const tag of ["v1", "v10", "v1.2", "1.2.3", "latest", "release-1.2.3"]) expect(triggers(tag), tag).toBe(false);
  });

  it("orders its jobs: the tag check, then dist/ and the tests, then npm, the GitHub release and the major tag", () => {
    expect(Object.keys(workflow.jobs).sort()).toEqual(["dist", "major-tag", "publish", "release", "test", "verify"]);
    expect(needsOf("verify")).toEqual([]);
    expect(needsOf("dist")).toEqual(["verify"]);
    expect(needsOf("test")).toEqual(["verify"]);
    expect([...upstream("publish")].sort()).toEqual(["dist", "test", "verify"]);
    expect(upstream("release").has("publish")).toBe(true);
    expect(upstream("major-tag").has("release")).toBe(true);
    // a prerelease publishes and gets a GitHub release, but moves no major tag
    expect(workflow.jobs["major-tag"].if).toMatch(/needs\.verify\.outputs\.prerelease == 'false'/);
  });

  it("grants each job only what it needs: id-token for npm provenance, contents: write for the release and the tag", () => {
    expect(workflow.permissions).toEqual({});
    const permissions = Object.fromEntries(Object.entries(workflow.jobs).map(([name, job]) => [name, job.permissions]));
    expect(permissions).toEqual({
      verify: { contents: "read" },
      dist: { contents: "read" },
      test: { contents: "read" },
      publish: { contents: "read", "id-token": "write" },
      release: { contents: "write" },
      "major-tag": { contents: "write" },
    });
  });

  it("checks dist/ with a fresh build and runs the tests after a clean install", () => {
    const dist = workflow.jobs.dist.steps.map((s) => s.run ?? "").join("\n");
    expect(dist).toMatch(/^npm ci$/m);
    expect(dist).toMatch(/^npm run build$/m);
    expect(dist).toMatch(/git diff --exit-code .*-- dist\//);
    const tests = workflow.jobs.test.steps.map((s) => s.run ?? "").join("\n");
    expect(tests).toMatch(/^npm ci$/m);
    expect(tests).toMatch(/^npm test$/m);
  });

  it("publishes the packed tarball with provenance and attaches the same file to a GitHub release with generated notes", () => {
    const publish = workflow.jobs.publish;
    expect(publish.steps.find((s) => s.uses?.startsWith("actions/setup-node"))?.with?.["registry-url"]).toBe("https://registry.npmjs.org");
    const step = publish.steps.find((s) => s.run?.includes("npm publish"))!;
    expect(step.run).toMatch(/npm publish "\.\/\$TARBALL" .*--provenance/);
    expect(step.run).toMatch(/--access public/);
    expect(step.env?.NODE_AUTH_TOKEN).toMatch(/^\$\{\{\s*secrets\.\w+\s*\}\}$/);
    expect(runOf("publish", "npm pack")).toMatch(/npm pack --json/);

    const release = runOf("release", "gh release create");
    expect(release).toMatch(/gh release create "\$TAG" "\$TARBALL"/);
    expect(release).toMatch(/--generate-notes/);
    expect(release).toMatch(/--verify-tag/);
    const env = workflow.jobs.release.steps.find((s) => s.run?.includes("gh release create"))!.env!;
    expect(env.GH_TOKEN).toBe("${{ github.token }}");
    expect(env.TARBALL).toBe("${{ needs.publish.outputs.tarball }}");
  });

  it("scripts/major-tag.sh: v1.4.2 moves v1; a prerelease moves nothing; anything else is exit 2", () => {
    for (const [tag, major] of [
      ["v1.4.2", "v1"],
      ["v0.1.0", "v0"],
      ["v10.0.3", "v10"],
      ["v2.0.0", "v2"],
    ]) {
      const r = majorTag(tag);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${major}\n`);
    }
    for (const tag of ["v1.5.0-rc.1", "v2.0.0-beta"]) {
      const r = majorTag(tag);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe("");
    }
    for (const tag of ["v1", "v1.2", "1.2.3", "v01.2.3", "v1.2.3+build.5", "v1.2.3 ", ""]) {
      const r = majorTag(tag);
      expect(r.status, tag).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(`'${tag}' is not a release tag; expected vMAJOR.MINOR.PATCH`);
    }
    expect(spawnSync("bash", [MAJOR_TAG_SCRIPT], { encoding: "utf8" }).status).toBe(2);
  });

  describe("the tag check (job verify, run with bash)", () => {
    const check = runOf("verify", "major-tag.sh");
    const checkout = (version: string, repository = "git+https://github.com/your-org/delta-audit.git") => {
      const dir = mkdtempSync(join(work, "verify-"));
      mkdirSync(join(dir, "scripts"));
      copyFileSync(MAJOR_TAG_SCRIPT, join(dir, "scripts", "major-tag.sh"));
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "delta-audit", version, repository: { type: "git", url: repository } }));
      return dir;
    };
    const verify = (dir: string, tag: string, repo = "your-org/delta-audit") => {
      const output = join(dir, "github-output");
      writeFileSync(output, "");
      const r = bash(check, dir, { TAG: tag, GITHUB_OUTPUT: output, GITHUB_REPOSITORY: repo });
      return { ...r, outputs: Object.fromEntries(readFileSync(output, "utf8").trim().split("\n").filter(Boolean).map((l) => l.split("=", 2))) };
    };

    it("passes a release tag equal to v + package.json's version and marks it for npm's latest", () => {
      const r = verify(checkout("1.2.3"), "v1.2.3");
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.outputs).toEqual({ version: "1.2.3", prerelease: "false", "npm-tag": "latest" });
    });

    it("passes a prerelease tag and marks it for npm's next", () => {
      const r = verify(checkout("2.0.0-rc.1"), "v2.0.0-rc.1");
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.outputs).toEqual({ version: "2.0.0-rc.1", prerelease: "true", "npm-tag": "next" });
    });

    it("fails a tag that is not package.json's version, saying which to push", () => {
      const r = verify(checkout("1.2.3"), "v1.2.4");
      expect(r.status).toBe(1);
      expect(r.stdout).toContain("::error::tag v1.2.4 is not package.json's version 1.2.3: tag v1.2.3");
      expect(r.outputs).toEqual({});
    });

    it("fails a tag that is no release tag (exit 2 from major-tag.sh)", () => {
      const r = verify(checkout("1.2.3"), "v1");
      expect(r.status).toBe(2);
      expect(r.stderr).toContain("'v1' is not a release tag");
    });

    it("fails when package.json's repository is not this repository (npm provenance would refuse it)", () => {
      const r = verify(checkout("1.2.3", "git+https://github.com/someone-else/delta-audit.git"), "v1.2.3", "your-org/delta-audit");
      expect(r.status).toBe(1);
      expect(r.stdout).toContain("npm publish --provenance needs it to name https://github.com/your-org/delta-audit");
      // GitHub names are case-insensitive; the check is too
      expect(verify(checkout("1.2.3", "https://github.com/Your-Org/Delta-Audit"), "v1.2.3").status).toBe(0);
    });
  });

  describe("moving the major tag (job major-tag, run with bash against a bare repository)", () => {
    const step = runOf("major-tag", "major-tag.sh");
    const gitEnv = {
      GIT_CONFIG_GLOBAL: "/dev/null",
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_AUTHOR_NAME: "release test",
      GIT_AUTHOR_EMAIL: "release@test.invalid",
      GIT_COMMITTER_NAME: "release test",
      GIT_COMMITTER_EMAIL: "release@test.invalid",
    };
    let clone: string;
    let origin: string;
    const git = (...args: string[]) => {
      const r = spawnSync("git", args, { cwd: clone, encoding: "utf8", env: { ...process.env, ...gitEnv } });
      if (r.status !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr}`);
      return r.stdout.trim();
    };
    /** A commit tagged `tag` and pushed, as a maintainer does before the workflow runs. */
    const release = (tag: string, from = "HEAD") => {
      git("checkout", "--quiet", "--detach", from);
      writeFileSync(join(clone, "release.txt"), tag);
      git("add", "release.txt");
      git("commit", "--quiet", "-m", tag);
      git("tag", "-a", tag, "-m", tag);
      git("push", "--quiet", "origin", `refs/tags/${tag}`);
      return git("rev-parse", "HEAD");
    };
    const moveMajor = (tag: string) => {
      const r = bash(step, clone, { ...gitEnv, TAG: tag });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      return r.stdout;
    };
    const originTag = (name: string) => {
      const r = spawnSync("git", ["rev-parse", "--verify", "--quiet", `refs/tags/${name}^{commit}`], { cwd: origin, encoding: "utf8", env: { ...process.env, ...gitEnv } });
      return r.status === 0 ? r.stdout.trim() : undefined;
    };

    beforeAll(() => {
      origin = join(work, "origin.git");
      clone = join(work, "clone");
      spawnSync("git", ["init", "--quiet", "--bare", origin], { env: { ...process.env, ...gitEnv } });
      spawnSync("git", ["init", "--quiet", clone], { env: { ...process.env, ...gitEnv } });
      mkdirSync(join(clone, "scripts"));
      copyFileSync(MAJOR_TAG_SCRIPT, join(clone, "scripts", "major-tag.sh"));
      git("remote", "add", "origin", origin);
      git("add", "scripts");
      git("commit", "--quiet", "-m", "initial");
    });

    it("points v1 at the newest 1.x release, leaves it there for a patch to an older line, and starts v2 for 2.0.0", () => {
      const v100 = release("v1.0.0");
      expect(moveMajor("v1.0.0")).toContain(`v1 -> v1.0.0 (${v100})`);
      expect(originTag("v1")).toBe(v100);

      const v110 = release("v1.1.0");
      moveMajor("v1.1.0");
      expect(originTag("v1")).toBe(v110);

      // v1.0.1 patches the 1.0 line after 1.1.0 shipped: @v1 must keep running 1.1.0
      release("v1.0.1", "v1.0.0");
      expect(moveMajor("v1.0.1")).toContain("v1 stays where it is: v1.1.0 is newer than v1.0.1");
      expect(originTag("v1")).toBe(v110);

      // v1.10.0 sorts after v1.9.0 (version order, not text order)
      release("v1.9.0", "v1.1.0");
      const v1100 = release("v1.10.0");
      moveMajor("v1.9.0");
      moveMajor("v1.10.0");
      expect(originTag("v1")).toBe(v1100);

      const v200 = release("v2.0.0");
      moveMajor("v2.0.0");
      expect(originTag("v2")).toBe(v200);
      expect(originTag("v1")).toBe(v1100);
    });

    it("moves nothing for a prerelease", () => {
      release("v3.0.0-rc.1");
      expect(moveMajor("v3.0.0-rc.1")).toContain("is a prerelease: no major tag moves");
      expect(originTag("v3")).toBeUndefined();
    });
  });
});
