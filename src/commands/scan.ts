/**
 * `delta-audit scan --base DIR --adapter DIR|--finetuned DIR [--config FILE] [--backend embedded|openai]
 *  [--inference-url URL] [--out DIR] [--fail-on high|medium|low|never] [--device cpu|cuda] [--precision P] [--rank K] [--ranks K,K,…] [--seed S]`
 *
 * Exit codes (DESIGN.md): 0 pass, 1 the policy failed the subject, 2 bad input, 3 backend fault
 * (a partial report with verdict neutral is still written); 130 / 143 after SIGINT / SIGTERM
 * (the edge's; past the delta pass the partial report is written too, reason interrupted).
 */
import type { Command } from "commander";
import { join } from "node:path";
import { oneLine } from "../errors";
import { paintVerdict } from "../progress";
import { checkDevice, runScan, type ModelLabels, type ScanResult } from "../scan";
import { REPORT_FILES } from "../report/build";
import { BACKEND_TYPES } from "../backends/settings";
import { MAX_RANK } from "../delta/limits";
import { DEVICES } from "../linalg/device";
import { PRECISION_CHOICES } from "../engine/precision";
import { MAX_SEED } from "../linalg/random";
import { FAIL_ON } from "../policy/severity";
import { choiceFlag, integerFlag, namedOrigin, parseIntegerSet, requiredFlag, urlFlag } from "../validate";
import { LADDER_BOUNDS } from "../elicit/settings";
import { applyOverrides, defaultConfig, loadConfig } from "../config";
import { resolveModelFlags } from "../io/model-ref";
import { untilAborted } from "../io/atomic";

/** Where `scan` writes when --out is not given. */
const DEFAULT_OUT_DIR = "delta-audit-report";

export interface ScanArgs {
  base?: string;
  adapter?: string;
  finetuned?: string;
  config?: string;
  backend?: string;
  inferenceUrl?: string;
  out?: string;
  failOn?: string;
  device?: string;
  precision?: string;
  rank?: string;
  ranks?: string;
  seed?: string;
}

/** One-paragraph summary for people (stdout). */
export function summarise(result: ScanResult): string {
  const r = result.report;
  const top = r.findings[0];
  const lines = [`verdict: ${paintVerdict(r.verdict.conclusion, r.verdict.conclusion)} (fail-on ${r.verdict.failOn})`];
  // titles and errors quote model and server text: no escape sequences reach the terminal
  if (top) lines.push(`top finding: [${top.severity}] ${oneLine(top.title).replace(/\s+/g, " ").slice(0, 200)} (confidence ${top.confidence.toFixed(2)})`);
  else lines.push("top finding: none");
  if (r.error) lines.push(`stopped early: ${oneLine(r.error)}`);
  lines.push(`report: ${join(result.outDir, REPORT_FILES.markdown)}`, `json:   ${join(result.outDir, REPORT_FILES.json)}`);
  return `${lines.join("\n")}\n`;
}

/**
 * The flags that override config keys, held to the same bounds (a server URL to the config's
 * rule): checked before any work, so a typo is exit 2 at once, not after the delta pass.
 */
export function scanOverrides(args: ScanArgs) {
  return {
    backend: choiceFlag(args.backend, "--backend", BACKEND_TYPES),
    inferenceUrl: urlFlag(args.inferenceUrl, "--inference-url"),
    device: choiceFlag(args.device, "--device", DEVICES),
    precision: choiceFlag(args.precision, "--precision", PRECISION_CHOICES),
    failOn: choiceFlag(args.failOn, "--fail-on", FAIL_ON),
    rank: integerFlag(args.rank, "--rank", { min: 1, max: MAX_RANK }),
    ranks: args.ranks === undefined ? undefined : parseIntegerSet(namedOrigin("--ranks"), args.ranks, "", LADDER_BOUNDS),
    seed: integerFlag(args.seed, "--seed", { min: 0, max: MAX_SEED }),
  };
}

/** How errors name the scan's model arguments: flags here, a registry's entries in `sweep run`. */
export type ModelArgNames = { base: string; adapter: string; finetuned: string };
const MODEL_FLAGS: ModelArgNames = { base: "--base", adapter: "--adapter", finetuned: "--finetuned" };

/**
 * The scan's models as folders: each a folder or a Hub id (io/model-ref.ts), fetched once the
 * other flags are known to be good. An openai server holds the base of an adapter itself: there
 * a Hub id is the server's model name, not something to download (scan.ts reads it only when it
 * is a folder).
 */
async function scanModels(args: ScanArgs & { base: string }, names: ModelArgNames): Promise<{ base: string; adapter?: string; finetuned?: string; labels: ModelLabels }> {
  const models = { base: args.base, adapter: args.adapter, finetuned: args.finetuned };
  const overrides = scanOverrides(args);
  const labels: ModelLabels = {};
  if (!args.adapter === !args.finetuned) return { ...models, labels }; // runScan names the mistake
  const config = applyOverrides(args.config ? loadConfig(args.config) : defaultConfig(), overrides);
  // a device that cannot run is refused before a Hub download, not after it (runScan checks it again)
  checkDevice(config, overrides.device !== undefined);
  const baseIsFolder = config.backend.type === "embedded" || args.finetuned !== undefined;
  const dirs = await resolveModelFlags(models, baseIsFolder ? names : { adapter: names.adapter, finetuned: names.finetuned }, {}, labels);
  return { ...dirs, labels };
}

/** `signal`: the edge's interruption (scan.ts ScanOptions.signal); a Hub download is left at once. */
export async function runScanCommand(args: ScanArgs, names: ModelArgNames = MODEL_FLAGS, signal?: AbortSignal): Promise<number> {
  const base = requiredFlag(args.base, "--base", "the base model folder");
  const result = await runScan({
    ...(await untilAborted(scanModels({ ...args, base }, names), signal)),
    configPath: args.config,
    ...scanOverrides(args),
    outDir: args.out ?? DEFAULT_OUT_DIR,
    // API keys named by the config (backend.api-key-env, llm.api-key-env) come from here
    env: process.env,
    signal,
  });
  // not log(): a fault is an outcome, not progress, and must show even with DELTA_AUDIT_QUIET
  if (result.report.error) process.stderr.write(`delta-audit: ${oneLine(result.report.error)}\n`);
  process.stdout.write(summarise(result));
  return result.exitCode;
}

export function register(program: Command, signal?: AbortSignal): void {
  program
    .command("scan")
    .description("audit a fine-tune: spectrum, rank-k truncation, elicitation, findings, verdict, report")
    .option("--base <dir|id>", "base model folder or Hub id org/name[@rev]")
    .option("--adapter <dir|id>", "PEFT LoRA adapter folder or Hub id")
    .option("--finetuned <dir|id>", "fully fine-tuned model folder or Hub id")
    .option("--config <file>", "delta-audit.yml")
    .option("--backend <type>", "embedded (default) or openai")
    .option("--inference-url <url>", "OpenAI-compatible server URL (with --backend openai)")
    .option("--out <dir>", `output folder (default ${DEFAULT_OUT_DIR})`)
    .option("--fail-on <severity>", "high (default), medium, low or never")
    .option("--device <device>", "cpu (default) or cuda, for the embedded engine")
    .option("--precision <p>", "base weights of the embedded engine: auto (default: by free memory and model size), f32, bf16, int8 or int4")
    .option("--rank <k>", "truncation rank (default 1)")
    .option("--ranks <k,k,…>", "rank ladder, e.g. 1,2,4,8: one variant rank<k> each (default: --rank alone)")
    .option("--seed <s>", "sampling seed (default 0)")
    .action(async (args: ScanArgs) => {
      process.exitCode = await runScanCommand(args, MODEL_FLAGS, signal);
    });
}
