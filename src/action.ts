/**
 * GitHub Action entry (bundled to dist/action.js; action.yml runs it after installing the
 * native onnxruntime-node next to it). Only wiring: settings → work → outputs, and one
 * try/catch that fails the step. The step fails exactly when the verdict is `fail` (or `neutral` with
 * fail-on-neutral), or when the Action itself cannot run (bad inputs: exit 2, as the CLI's). A run
 * with nothing to audit (`skipped`) never fails the step, fail-on-neutral or not.
 */
import * as core from "@actions/core";
import { describeError, EXIT, InputError } from "./errors";
import { readContext } from "./github/context";
import { getSettings } from "./github/input-helper";
import { createOctokit } from "./github/octokit-client";
import { GitHubHelper } from "./github/github-helper";
import { runAction } from "./github/run-action";
import { resolveHubModel } from "./io/hub";
import { runScan } from "./scan";
import { VERSION } from "./version";
import { configureFromEnvironment, exitOnSignals, type Interruption } from "./edge";

async function main(interruption: Interruption): Promise<void> {
  try {
    // progress and notices go to the job log unless the workflow silences them; kernel threading
    configureFromEnvironment();
    const ctx = readContext();
    const settings = getSettings({ workspace: ctx.workspace, isPullRequest: ctx.pullNumber !== undefined });
    const github = new GitHubHelper(createOctokit(settings.githubToken, ctx.apiUrl), { owner: ctx.owner, repo: ctx.repo });
    const result = await runAction(settings, ctx, { scan: runScan, resolveHub: (spec) => resolveHubModel(spec), github, version: VERSION, signal: interruption.signal });
    core.setOutput("conclusion", result.conclusion);
    core.setOutput("findings", String(result.findings));
    core.setOutput("report-dir", result.reportDir);
    core.setOutput("badge", result.badge);
    core.setOutput("sarif", result.sarif);
    if (result.conclusion === "fail") {
      core.setFailed(`delta-audit: verdict fail (${result.findings} finding(s) at or above the fail-on severity); see the check run, PR comment or ${result.reportDir}`);
    } else if (result.conclusion === "neutral" && settings.failOnNeutral) {
      core.setFailed(`delta-audit: the audit could not decide (neutral) and fail-on-neutral is set; see the check run, PR comment or ${result.reportDir}`);
    }
  } catch (err) {
    core.setFailed(`delta-audit: ${describeError(err)}`);
    // a configuration error (a pattern that matches nothing, a bad input) exits 2 like the CLI's
    if (err instanceof InputError) process.exitCode = EXIT.input;
    if (process.env.DELTA_AUDIT_DEBUG && err instanceof Error) core.debug(String(err.stack));
  }
}

// a cancelled job (SIGTERM): the scan in progress stops and writes its partial report as the
// CLI's does, no staging folder is left in the workspace, and the step exits 143 (130 on SIGINT)
const interruption = exitOnSignals();
await main(interruption);
await interruption.settle();
