/**
 * Reads every Action input once, validates it, applies defaults and returns one typed
 * settings object (the actions/checkout pattern). Nothing else reads INPUT_* variables.
 */
import * as core from "@actions/core";
import { existsSync } from "node:fs";
import { relative, resolve } from "node:path";
import { InputError } from "../errors";
import { linksOutside } from "./subjects";
import { BACKEND_TYPES, type BackendType } from "../backends/settings";
import { DEVICES, type Device } from "../linalg/device";
import { PRECISION_CHOICES, type PrecisionChoice } from "../engine/precision";
import { FAIL_ON, type FailOn } from "../policy/severity";
import { MAX_RANK } from "../delta/limits";
import { LADDER_BOUNDS } from "../elicit/settings";
import { inputOrigin, parseBoolean, parseChoice, parseHttpUrl, parseInteger, parseIntegerSet } from "../validate";

export interface ActionSettings {
  /** local checkpoint folder or Hub id (`org/name[@rev]`); "" = each adapter's base_model_name_or_path */
  base: string;
  /** adapter folder paths or globs, one per line */
  adapterPatterns: string[];
  /** full fine-tune checkpoint folder paths or globs, one per line */
  finetunedPatterns: string[];
  /** audit only subjects whose files the pull request changed (default: true on pull requests) */
  changedOnly: boolean;
  /** policy config file; undefined = none (default `.github/delta-audit.yml` when it exists) */
  configPath?: string;
  backend: BackendType;
  inferenceUrl?: string;
  device: Device;
  /** how the embedded engine stores base weights; overrides the config's engine.precision; undefined = the config's (default auto) */
  precision?: PrecisionChoice;
  /** overrides the config's fail-on; undefined = the config's (or the scan default) */
  failOn?: FailOn;
  /**
   * the truncation rank k, pinned by the workflow; overrides the config's `rank`, which a pull
   * request can edit (a rank at or above the adapter's makes the truncated variant the adapter
   * itself); undefined = the config's (or the method's default, 1)
   */
  rank?: number;
  /** the rank ladder (`1,2,4,8`); overrides the config's `ranks`; undefined = the config's (or the rank alone) */
  ranks?: number[];
  /** post / update the sticky PR comment */
  comment: boolean;
  /** check run name; also keys the sticky comment's marker */
  checkName: string;
  /**
   * treat an undecided (neutral) audit as a failure: the check run concludes `failure` and the
   * step fails. GitHub counts a `neutral` required check as satisfied, so a pull request that
   * breaks its own audit would otherwise pass branch protection.
   */
  failOnNeutral: boolean;
  /** absolute folder the reports go to */
  outputDir: string;
  githubToken: string;
}

/** Default config location, used only when the file exists. */
export const DEFAULT_CONFIG_PATH = ".github/delta-audit.yml";
export const DEFAULT_CHECK_NAME = "delta-audit";
export const DEFAULT_OUTPUT_DIR = "delta-audit-report";
/** Check-run names show in the PR UI and key our comment marker: keep them short and printable. */
const MAX_CHECK_NAME_CHARS = 100;

/**
 * Read an input. A JavaScript action gets `INPUT_<NAME>` with the hyphens kept; our composite
 * action passes `INPUT_<NAME_WITH_UNDERSCORES>` because env names with hyphens are awkward in
 * shells. Both are accepted.
 */
export function readInput(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const direct = env[`INPUT_${name.replace(/ /g, "_").toUpperCase()}`];
  if (direct !== undefined && direct.trim() !== "") return direct.trim();
  return (env[`INPUT_${name.replace(/[ -]/g, "_").toUpperCase()}`] ?? "").trim();
}

function lines(value: string): string[] {
  return value
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
}

/** A boolean input (YAML 1.2 core-schema booleans, as @actions/core accepts them); "" = the default. */
function booleanInput(name: string, value: string, dflt: boolean): boolean {
  return value === "" ? dflt : parseBoolean(inputOrigin(name), value, "");
}

function choiceInput<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  return parseChoice(inputOrigin(name), value, "", allowed);
}

/**
 * Every input → ActionSettings. `workspace` is where relative paths resolve (GITHUB_WORKSPACE);
 * `isPullRequest` decides the changed-only default.
 */
export function getSettings(opts: { env?: NodeJS.ProcessEnv; workspace: string; isPullRequest: boolean }): ActionSettings {
  const env = opts.env ?? process.env;
  const get = (n: string) => readInput(n, env);

  const adapterPatterns = lines(get("adapter"));
  const finetunedPatterns = lines(get("finetuned"));
  if (adapterPatterns.length === 0 && finetunedPatterns.length === 0) {
    throw new InputError("Set 'adapter' or 'finetuned' to the folders (or globs, one per line) to audit", "inputs");
  }

  let configPath: string | undefined = get("config") || undefined;
  if (configPath) {
    configPath = resolve(opts.workspace, configPath);
    if (!existsSync(configPath)) throw new InputError(`config file '${get("config")}' does not exist`, "input 'config'");
  } else if (existsSync(resolve(opts.workspace, DEFAULT_CONFIG_PATH))) {
    configPath = resolve(opts.workspace, DEFAULT_CONFIG_PATH);
  }
  // the file at the path comes from the pull request: it may not be a symlink out of the workspace
  if (configPath && linksOutside(configPath, opts.workspace)) {
    throw new InputError(`config file '${relative(opts.workspace, configPath)}' is a symlink to outside the workspace; refusing to read it`, "input 'config'");
  }

  // the workspace is the pull request's checkout: a committed symlink there must not redirect our writes
  const outputDir = resolve(opts.workspace, get("output-dir") || DEFAULT_OUTPUT_DIR);
  if (linksOutside(outputDir, opts.workspace)) {
    throw new InputError(`'${relative(opts.workspace, outputDir)}' is a symlink to outside the workspace; refusing to write the report there`, "input 'output-dir'");
  }

  const backend = choiceInput("backend", get("backend") || "embedded", BACKEND_TYPES);
  const inferenceUrl = get("inference-url") || undefined;
  if (inferenceUrl !== undefined) parseHttpUrl(inputOrigin("inference-url"), inferenceUrl, "", "http(s)://host[:port][/v1]");
  if (backend === "openai" && !inferenceUrl) {
    throw new InputError("backend 'openai' needs 'inference-url' (an OpenAI-compatible server)", "input 'inference-url'");
  }

  const failOnRaw = get("fail-on");
  const rankRaw = get("rank");
  const ranksRaw = get("ranks");
  const checkName = get("check-name") || DEFAULT_CHECK_NAME;
  if (checkName.length > MAX_CHECK_NAME_CHARS || /[\u0000-\u001f<>]/.test(checkName)) {
    throw new InputError(`Invalid check name '${checkName}'. Expected printable text of at most ${MAX_CHECK_NAME_CHARS} characters without < or >`, "input 'check-name'");
  }

  const settings: ActionSettings = {
    base: get("base"),
    adapterPatterns,
    finetunedPatterns,
    changedOnly: booleanInput("changed-only", get("changed-only"), opts.isPullRequest),
    configPath,
    backend,
    inferenceUrl,
    device: choiceInput("device", get("device") || "cpu", DEVICES),
    precision: get("precision") ? choiceInput("precision", get("precision"), PRECISION_CHOICES) : undefined,
    failOn: failOnRaw ? choiceInput("fail-on", failOnRaw, FAIL_ON) : undefined,
    rank: rankRaw ? parseInteger(inputOrigin("rank"), rankRaw, "", { min: 1, max: MAX_RANK }) : undefined,
    ranks: ranksRaw ? parseIntegerSet(inputOrigin("ranks"), ranksRaw, "", LADDER_BOUNDS) : undefined,
    comment: booleanInput("comment", get("comment"), true),
    checkName,
    failOnNeutral: booleanInput("fail-on-neutral", get("fail-on-neutral"), false),
    outputDir,
    githubToken: get("github-token"),
  };
  if (settings.githubToken) core.setSecret(settings.githubToken);
  core.debug(`settings: ${JSON.stringify({ ...settings, githubToken: settings.githubToken ? "***" : "" })}`);
  return settings;
}
