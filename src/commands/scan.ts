/**
 * `delta-audit scan --base DIR --adapter DIR|--finetuned DIR [--config FILE] [--backend embedded|openai]
 *  [--inference-url URL] [--out DIR] [--fail-on high|medium|low|never] [--device cpu|cuda] [--rank K] [--seed S]`
 *
 * Exit codes (DESIGN.md): 0 pass, 1 the policy failed the subject, 2 bad input, 3 backend fault
 * (a partial report with verdict neutral is still written).
 */
import type { Command } from "commander";
import { join } from "node:path";
import { oneLine } from "../errors";
import { paintVerdict } from "../progress";
import { runScan, type ScanResult } from "../scan";
import { REPORT_FILES } from "../report/build";
import { BACKEND_TYPES } from "../backends/settings";
import { MAX_RANK } from "../delta/limits";
import { DEVICES } from "../linalg/device";
import { MAX_SEED } from "../linalg/random";
import { FAIL_ON } from "../policy/severity";
import { choiceFlag, integerFlag, requiredFlag, urlFlag } from "../validate";

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
  rank?: string;
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
    failOn: choiceFlag(args.failOn, "--fail-on", FAIL_ON),
    rank: integerFlag(args.rank, "--rank", { min: 1, max: MAX_RANK }),
    seed: integerFlag(args.seed, "--seed", { min: 0, max: MAX_SEED }),
  };
}

export async function runScanCommand(args: ScanArgs): Promise<number> {
  const base = requiredFlag(args.base, "--base", "the base model folder");
  const result = await runScan({
    base,
    adapter: args.adapter,
    finetuned: args.finetuned,
    configPath: args.config,
    ...scanOverrides(args),
    outDir: args.out ?? DEFAULT_OUT_DIR,
    // API keys named by the config (backend.api-key-env, llm.api-key-env) come from here
    env: process.env,
  });
  // not log(): a fault is an outcome, not progress, and must show even with DELTA_AUDIT_QUIET
  if (result.report.error) process.stderr.write(`delta-audit: ${oneLine(result.report.error)}\n`);
  process.stdout.write(summarise(result));
  return result.exitCode;
}

export function register(program: Command): void {
  program
    .command("scan")
    .description("audit a fine-tune: spectrum, rank-k truncation, elicitation, findings, verdict, report")
    .option("--base <dir>", "base model folder")
    .option("--adapter <dir>", "PEFT LoRA adapter folder")
    .option("--finetuned <dir>", "fully fine-tuned model folder")
    .option("--config <file>", "delta-audit.yml")
    .option("--backend <type>", "embedded (default) or openai")
    .option("--inference-url <url>", "OpenAI-compatible server URL (with --backend openai)")
    .option("--out <dir>", `output folder (default ${DEFAULT_OUT_DIR})`)
    .option("--fail-on <severity>", "high (default), medium, low or never")
    .option("--device <device>", "cpu (default) or cuda, for the embedded engine")
    .option("--rank <k>", "truncation rank (default 1)")
    .option("--seed <s>", "sampling seed (default 0)")
    .action(async (args: ScanArgs) => {
      process.exitCode = await runScanCommand(args);
    });
}
