/**
 * The Action's work, given settings and context: find subjects, open the check run, scan
 * each subject, then publish (check run, sticky comment, job summary, report files).
 * External effects arrive as parameters (scan, Hub resolver, GitHub helper) so tests can
 * drive it; src/action.ts wires the real ones.
 */
import * as core from "@actions/core";
import { existsSync, lstatSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { isAbsolute, join, relative, sep } from "node:path";
import { describeError, InputError, oneLine } from "../errors";
import type { ActionSettings } from "./input-helper";
import type { GitHubContext } from "./context";
import { GitHubHelper, isPermissionError, MAX_ANNOTATIONS_PER_REQUEST } from "./github-helper";
import { checkFolderFiles, checkSubjectFiles, filterChanged, findSubjects, type AuditSubject } from "./subjects";
import { readTextFileSync } from "../io/read-text";
import {
  buildAnnotations,
  checkConclusion,
  commentMarker,
  countFindings,
  overallConclusion,
  renderCheckOutput,
  renderComment,
  renderJobSummary,
  renderProgressOutput,
  SUBJECT_VIEW_FILES,
  type ActionConclusion,
  type RenderMeta,
  type SubjectResult,
} from "./render";
import { buildSarif } from "../report/sarif";
import type { Report } from "../report/types";
import { runBadge } from "../report/badge";
import { writeFileAtomic } from "../io/atomic";
import { looksLikeHubId, type ResolvedModel } from "../io/hub";
import { resolveModelRef } from "../io/model-ref";
import { isDirectorySync } from "../io/fs-util";
import { applyOverrides, defaultConfig, loadConfig, type ScanConfig } from "../config";
import { DEFAULT_FAIL_ON } from "../policy/severity";

/**
 * The policy every subject is audited under, resolved once from the config file and the inputs
 * (inputs win), before any subject: the fail-on that counts findings for the outputs is the one
 * the scans used, not one re-derived from whichever report came first. A config that does not
 * validate is kept as its error, so every subject reports it (neutral) as before.
 */
function resolvePolicy(settings: ActionSettings): { config: ScanConfig } | { error: InputError } {
  try {
    const file = settings.configPath ? loadConfig(settings.configPath) : defaultConfig();
    const config = applyOverrides(file, { failOn: settings.failOn, backend: settings.backend, inferenceUrl: settings.inferenceUrl, device: settings.device, precision: settings.precision, rank: settings.rank, ranks: settings.ranks });
    return { config };
  } catch (err) {
    if (err instanceof InputError) return { error: err };
    throw err;
  }
}

/**
 * The scan stage's entry (src/scan.ts `runScan`), as the Action calls it: the policy arrives
 * resolved (resolvePolicy), so the scan has nothing left to override.
 */
export type ScanFn = (opts: {
  base: string;
  adapter?: string;
  finetuned?: string;
  /** the config file, so the scan refuses an output folder that would hold it (checkOutputDir) */
  configPath?: string;
  /** the config resolved once for the whole run: the file, then the inputs (fail-on, backend, inference-url, device, rank, ranks) */
  config: ScanConfig;
  outDir: string;
  /** where API keys named by the config are looked up (runner credentials removed) */
  env?: Readonly<Record<string, string | undefined>>;
  /** the edge's interruption (a cancelled job): the scan stops and, past its delta pass, writes its partial report */
  signal?: AbortSignal;
}) => Promise<{ report: Report; outDir: string; exitCode: number }>;

/**
 * Environment variables the audit never reads an API key from. The config file comes from the
 * pull request, so it could name the runner's own credentials as `api-key-env` and point
 * `llm.url` at a server of its choosing; these names are dropped from what the scan sees.
 */
export const RUNNER_CREDENTIALS = /^(?:GITHUB_|ACTIONS_|RUNNER_|INPUT_)/i;

/** process.env without the runner's credentials (RUNNER_CREDENTIALS). */
export function scanEnvironment(env: NodeJS.ProcessEnv = process.env): Record<string, string | undefined> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !RUNNER_CREDENTIALS.test(k)));
}

export interface ActionDeps {
  scan: ScanFn;
  resolveHub: (spec: string) => Promise<ResolvedModel>;
  github: GitHubHelper;
  version: string;
  /**
   * Aborted by the edge on SIGTERM / SIGINT (a cancelled job, edge.ts exitOnSignals): the scan in
   * progress stops as the CLI's does (past its delta pass it writes the partial report, neutral,
   * reason interrupted), the subjects after it are not started, and the run files are written
   * for what there is.
   */
  signal?: AbortSignal;
}

/** The run's SARIF file in output-dir: every subject's findings, on workspace-relative paths. */
export const ACTION_SARIF_FILE = "delta-audit.sarif";

export interface ActionResult {
  /** the verdict over every subject, or `skipped` when there was nothing to audit */
  conclusion: ActionConclusion;
  findings: number;
  reportDir: string;
  badge: string;
  /** path of the run's SARIF 2.1.0 file (ACTION_SARIF_FILE in output-dir) */
  sarif: string;
  results: SubjectResult[];
  /** the token could not write (fork PR): nothing was published on GitHub */
  readOnly: boolean;
}

/** Logged when a read-only token (fork PR) stops us publishing: the documented two-workflow fix. */
export const FORK_HELP = [
  "This pull request's token is read-only (a fork, or the workflow lacks `permissions: checks: write, pull-requests: write`).",
  "The audit ran and its report is in the output folder and the job summary, but no check run or PR comment could be published.",
  "To publish for fork pull requests, upload the output folder with actions/upload-artifact in this workflow, and add a second",
  "workflow `on: workflow_run` (types: [completed]) that downloads the artifact and posts comment.md / check-run.json with its",
  "own write token — without checking out or running the fork's code. See docs/action.md, 'Fork pull requests'.",
].join("\n");

function slug(rel: string, taken: Set<string>): string {
  let s = rel === "." ? "root" : rel.replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^\.+/, "_");
  const base = s;
  for (let i = 2; taken.has(s); i++) s = `${base}-${i}`;
  taken.add(s);
  return s;
}

/** An adapter_config.json is a few hundred bytes; this only stops a hostile one. */
const MAX_ADAPTER_CONFIG_BYTES = 1_000_000;

/** base_model_name_or_path of an adapter, used only when it is a Hub id (local paths from a PR are not trusted). */
function baseFromAdapter(subject: AuditSubject): string | undefined {
  try {
    // bounded and regular files only: this runs before the subject's files are checked
    const cfg = JSON.parse(readTextFileSync(join(subject.dir, "adapter_config.json"), MAX_ADAPTER_CONFIG_BYTES));
    const b = cfg?.base_model_name_or_path;
    return typeof b === "string" && b.trim() ? b.trim() : undefined;
  } catch {
    return undefined;
  }
}

export async function runAction(settings: ActionSettings, ctx: GitHubContext, deps: ActionDeps): Promise<ActionResult> {
  const { github } = deps;
  await mkdir(settings.outputDir, { recursive: true });
  const policy = resolvePolicy(settings);

  // ---- subjects: unless changed-only narrows them to the pull request's, a pattern that matches
  // nothing is a configuration error (before anything is published), not a quiet "nothing to audit"
  const requireMatches = !(settings.changedOnly && ctx.pullNumber !== undefined);
  let subjects = [
    ...findSubjects(ctx.workspace, "adapter", settings.adapterPatterns, { requireMatches }),
    ...findSubjects(ctx.workspace, "finetuned", settings.finetunedPatterns, { requireMatches }),
  ];
  core.info(`delta-audit: ${subjects.length} subject(s) match the inputs`);
  if (settings.changedOnly) {
    if (ctx.pullNumber === undefined) {
      core.info("changed-only: not a pull request event, auditing every matched subject");
    } else {
      try {
        const changed = await github.listPullRequestFiles(ctx.pullNumber);
        const configRel = settings.configPath ? relative(ctx.workspace, settings.configPath).split(sep).join("/") : undefined;
        subjects = filterChanged(subjects, changed, configRel);
        core.info(`changed-only: ${changed.length} changed file(s) in PR #${ctx.pullNumber}; ${subjects.length} subject(s) to audit`);
      } catch (err) {
        core.warning(`changed-only: could not list the pull request's files (${describeError(err)}); auditing every matched subject`);
      }
    }
  }

  // ---- check run: in_progress first, so the PR shows the audit is running
  let readOnly = false;
  let checkRunId: number | undefined;
  const onWriteError = (what: string, err: unknown) => {
    if (isPermissionError(err)) {
      if (!readOnly) core.warning(`${what}: ${describeError(err)}\n${FORK_HELP}`);
      readOnly = true;
    } else {
      core.warning(`${what} failed: ${describeError(err)}`);
    }
  };
  try {
    checkRunId = await github.createCheckRun(settings.checkName, ctx.headSha, renderProgressOutput(subjects), ctx.runUrl);
  } catch (err) {
    onWriteError("creating the check run", err);
  }

  // ---- scan each subject
  const results: SubjectResult[] = [];
  const taken = new Set<string>();
  const hubCache = new Map<string, Promise<ResolvedModel>>();
  for (const subject of subjects) {
    const outDir = join(settings.outputDir, slug(subject.rel, taken));
    if (deps.signal?.aborted) {
      // a cancelled job: the rest are not audited, and say so (neutral, never a pass)
      results.push({ subject, base: "", outDir, conclusion: "neutral", error: `${describeError(deps.signal.reason)} before this subject's audit started` });
      continue;
    }
    const result = await core.group(`delta-audit: ${subject.rel}`, () => auditOne(subject, outDir, settings, policy, ctx, deps, hubCache));
    results.push(result);
    // core.info writes raw lines: a folder name with a newline could start a workflow command
    core.info(oneLine(`${subject.rel}: ${result.conclusion}${result.error ? ` (${result.error})` : ""}`));
  }

  // ---- the views each scan wrote (report.html, report.sarif), named in the comment and summary
  for (const r of results) r.views = viewsOf(r, settings.outputDir);

  // ---- one SARIF log for the run: code scanning wants one upload with every subject's results,
  // located on the subject's config file as the check run's annotations are
  const sarifPath = join(settings.outputDir, ACTION_SARIF_FILE);
  const sarif = buildSarif(results.filter((r) => r.report).map((r) => ({ report: r.report!, configFile: toPosix(r.subject.configFile) })));
  await writeFileAtomic(sarifPath, `${JSON.stringify(sarif, null, 2)}\n`);

  // ---- publish
  const overall = overallConclusion(results);
  const failOn = "config" in policy ? policy.config.failOn : (settings.failOn ?? DEFAULT_FAIL_ON);
  const findings = countFindings(results, failOn);
  const meta: RenderMeta = {
    checkName: settings.checkName,
    version: deps.version,
    failOn,
    runUrl: ctx.runUrl,
    outputDir: toPosix(relative(ctx.workspace, settings.outputDir)) || ".",
    sarif: ACTION_SARIF_FILE,
  };
  const output = renderCheckOutput(results, meta);
  const annotations = buildAnnotations(results);

  if (checkRunId !== undefined) {
    try {
      await github.completeCheckRun(checkRunId, checkConclusionFor(overall, settings.failOnNeutral), output, annotations);
    } catch (err) {
      onWriteError("completing the check run", err);
    }
  }

  // Nothing to audit posts no new comment. An earlier sticky comment is updated to say so: the
  // file list is the whole pull request's, so its subjects are no longer changed by it and the
  // earlier verdict would be stale.
  let comment = renderComment(results, meta);
  if (settings.comment && ctx.pullNumber !== undefined && !readOnly) {
    try {
      const existing = await github.findComment(ctx.pullNumber, commentMarker(settings.checkName));
      if (existing) {
        await github.updateComment(existing.id, comment);
        core.info(`updated the sticky comment ${existing.id} on PR #${ctx.pullNumber}`);
      } else if (results.length > 0) {
        const id = await github.createComment(ctx.pullNumber, comment);
        core.info(`created the sticky comment ${id} on PR #${ctx.pullNumber}`);
      } else {
        core.info("nothing audited and no earlier comment: not commenting");
      }
    } catch (err) {
      onWriteError("posting the PR comment", err);
    }
  }
  if (readOnly) {
    meta.readOnlyNote = "This run could not publish to the pull request (read-only token); see the workflow log for the workflow_run pattern.";
    comment = renderComment(results, meta);
    core.notice("delta-audit could not publish a check run or comment (read-only token). The report is in the job summary and the output folder.");
  }

  // ---- files for people and for a workflow_run publisher; the output folder sits in the pull
  // request's checkout, so every file goes through writeFileAtomic (never through a committed link)
  const badgePath = join(settings.outputDir, "badge.json");
  await writeFileAtomic(badgePath, `${JSON.stringify(runBadge(overall, findings), null, 2)}\n`);
  await writeFileAtomic(join(settings.outputDir, "comment.md"), comment);
  await writeFileAtomic(
    join(settings.outputDir, "check-run.json"),
    `${JSON.stringify({ name: settings.checkName, head_sha: ctx.headSha, status: "completed", conclusion: checkConclusionFor(overall, settings.failOnNeutral), output: { ...output, annotations: annotations.slice(0, MAX_ANNOTATIONS_PER_REQUEST) } }, null, 2)}\n`,
  );
  await writeFileAtomic(
    join(settings.outputDir, "summary.json"),
    `${JSON.stringify(
      {
        conclusion: overall,
        findings,
        failOn,
        pullRequest: ctx.pullNumber ?? null,
        headSha: ctx.headSha,
        sarif: ACTION_SARIF_FILE,
        subjects: results.map((r) => ({ path: r.subject.rel, kind: r.subject.kind, base: r.base, conclusion: r.conclusion, reportDir: relative(settings.outputDir, r.outDir), error: r.error ?? null })),
      },
      null,
      2,
    )}\n`,
  );

  try {
    await core.summary.addRaw(renderJobSummary(results, meta), true).write();
  } catch (err) {
    core.warning(`writing the job summary failed: ${describeError(err)}`);
  }

  return { conclusion: overall, findings, reportDir: settings.outputDir, badge: badgePath, sarif: sarifPath, results, readOnly };
}

/** A path with forward slashes, as GitHub (SARIF locations, annotations, PR file lists) writes them. */
function toPosix(p: string): string {
  return p.split(sep).join("/");
}

/** The subject's views (SUBJECT_VIEW_FILES) that are regular files in its folder, relative to output-dir. */
function viewsOf(r: SubjectResult, outputDir: string): string[] {
  const rel = toPosix(relative(outputDir, r.outDir));
  return SUBJECT_VIEW_FILES.filter((name) => {
    try {
      return lstatSync(join(r.outDir, name)).isFile();
    } catch {
      return false;
    }
  }).map((name) => (rel ? `${rel}/${name}` : name));
}

/**
 * The check run's conclusion; an undecided audit is a failure when the workflow asks for it.
 * Nothing to audit is not undecided: fail-on-neutral leaves it a success.
 */
export function checkConclusionFor(overall: ActionConclusion, failOnNeutral: boolean): ReturnType<typeof checkConclusion> {
  return overall === "neutral" && failOnNeutral ? "failure" : checkConclusion(overall);
}

/** The base folder the scan reads, and how GitHub views name it (never the runner's cache path). */
interface ResolvedBase {
  dir: string;
  /** workspace-relative folder, the folder as the workflow gave it, or `{org}/{name}@{commit}` */
  label: string;
}

/**
 * The base through the CLI's own rule (io/model-ref.ts resolveModelRef): the `base` input is a
 * workspace folder or a Hub id, base_model_name_or_path (written by the pull request) a Hub id
 * only. A Hub base is labelled `{org}/{name}@{commit}`: the revision the verdict is about, and
 * one the CLI accepts, so the run can be repeated locally with the same value. Each Hub id is
 * fetched once per run (`cache`), its failure too.
 */
async function resolveBase(subject: AuditSubject, settings: ActionSettings, ctx: GitHubContext, deps: ActionDeps, cache: Map<string, Promise<ResolvedModel>>): Promise<ResolvedBase> {
  const hub = (id: string): Promise<ResolvedModel> => {
    let model = cache.get(id);
    if (!model) {
      core.info(`resolving ${id} from the Hugging Face Hub`);
      model = deps.resolveHub(id);
      cache.set(id, model);
    }
    return model;
  };
  const spec = settings.base;
  if (spec) {
    const ref = await resolveModelRef(spec, { what: "input 'base'", cwd: ctx.workspace, hub });
    if (ref.hub) return { dir: ref.dir, label: ref.label };
    if (!isDirectorySync(ref.dir)) throw new InputError(`'${spec}' is neither a folder nor a Hub model id ({org}/{name}[@{revision}])`, "input 'base'");
    const rel = toPosix(relative(ctx.workspace, ref.dir)) || ".";
    const inside = rel !== ".." && !rel.startsWith("../") && !isAbsolute(rel);
    // a base folder in the workspace comes from the pull request as much as the subject does
    checkFolderFiles(ref.dir, rel, ctx.workspace);
    return { dir: ref.dir, label: inside ? rel : spec };
  }
  if (subject.kind !== "adapter") throw new InputError(`set 'base' to audit the full checkpoint ${subject.rel}`, "input 'base'");
  const fromConfig = baseFromAdapter(subject);
  if (!fromConfig) throw new InputError("'base' is empty and base_model_name_or_path is not set", subject.configFile);
  if (!looksLikeHubId(fromConfig)) {
    throw new InputError(`base_model_name_or_path '${fromConfig}' is not a Hub model id; set the 'base' input to a local folder`, subject.configFile);
  }
  const ref = await resolveModelRef(fromConfig, { what: `base_model_name_or_path in ${subject.configFile}`, local: false, hub });
  return { dir: ref.dir, label: ref.label };
}

async function auditOne(
  subject: AuditSubject,
  outDir: string,
  settings: ActionSettings,
  policy: ReturnType<typeof resolvePolicy>,
  ctx: GitHubContext,
  deps: ActionDeps,
  hubCache: Map<string, Promise<ResolvedModel>>,
): Promise<SubjectResult> {
  let base = "";
  try {
    if ("error" in policy) throw policy.error;
    checkSubjectFiles(subject, ctx.workspace);
    base = settings.base || baseFromAdapter(subject) || "";
    const resolved = await resolveBase(subject, settings, ctx, deps, hubCache);
    base = resolved.label;
    const { report, exitCode } = await deps.scan({
      base: resolved.dir,
      ...(subject.kind === "adapter" ? { adapter: subject.dir } : { finetuned: subject.dir }),
      configPath: settings.configPath,
      config: policy.config,
      outDir,
      env: scanEnvironment(),
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
    const conclusion = report.verdict?.conclusion ?? "neutral";
    if (exitCode === 3) core.warning(`${subject.rel}: the backend failed; the verdict is ${conclusion}${report.error ? `: ${report.error}` : ""}`);
    return { subject, base, outDir, conclusion, report, error: report.error };
  } catch (err) {
    const message = describeError(err);
    if (existsSync(outDir) === false) await mkdir(outDir, { recursive: true }).catch(() => undefined);
    core.error(`${subject.rel}: ${message}`, { file: subject.configFile, startLine: 1 });
    return { subject, base, outDir, conclusion: "neutral", error: message };
  }
}
