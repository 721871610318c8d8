/**
 * `delta-audit scan --base DIR --adapter DIR|--finetuned DIR [--config FILE] [--backend embedded|openai]
 *  [--inference-url URL] [--out DIR] [--fail-on high|medium|low|never] [--device cpu|cuda] [--rank K] [--seed S]`
 *
 * Exit codes (DESIGN.md): 0 pass, 1 the policy failed the subject, 2 bad input, 3 backend fault
 * (a partial report with verdict neutral is still written).
 */
import type { Command } from "commander";
import { join } from "node:path";
import { InputError, oneLine } from "../errors";
import { runScan, type ScanResult } from "../scan";
import { REPORT_FILES } from "../report/build";
import type { BackendType, Device } from "../policy/config";
import type { FailOn } from "../policy/severity";

/** Where `scan` writes when --out is not given. */
export const DEFAULT_OUT_DIR = "delta-audit-report";

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

function choice<T extends string>(value: string | undefined, flag: string, options: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!options.includes(value as T)) throw new InputError(`expected one of ${options.join(", ")}, got '${value}'`, flag);
  return value as T;
}

function integer(value: string | undefined, flag: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim())) throw new InputError(`expected an integer, got '${value}'`, flag);
  const n = Number(value);
  if (n < min || n > max) throw new InputError(`expected ${min}..${max}, got '${value}'`, flag);
  return n;
}

/** One-paragraph summary for people (stdout). */
export function summarise(result: ScanResult): string {
  const r = result.report;
  const top = r.findings[0];
  const lines = [`verdict: ${r.verdict.conclusion} (fail-on ${r.verdict.failOn})`];
  // titles and errors quote model and server text: no escape sequences reach the terminal
  if (top) lines.push(`top finding: [${top.severity}] ${oneLine(top.title).replace(/\s+/g, " ").slice(0, 200)} (confidence ${top.confidence.toFixed(2)})`);
  else lines.push("top finding: none");
  if (r.error) lines.push(`stopped early: ${oneLine(r.error)}`);
  lines.push(`report: ${join(result.outDir, REPORT_FILES.markdown)}`, `json:   ${join(result.outDir, REPORT_FILES.json)}`);
  return `${lines.join("\n")}\n`;
}

export async function runScanCommand(args: ScanArgs): Promise<number> {
  if (!args.base) throw new InputError("required: the base model folder", "--base");
  const result = await runScan({
    base: args.base,
    adapter: args.adapter,
    finetuned: args.finetuned,
    configPath: args.config,
    backend: choice<BackendType>(args.backend, "--backend", ["embedded", "openai"]),
    inferenceUrl: args.inferenceUrl,
    device: choice<Device>(args.device, "--device", ["cpu", "cuda"]),
    failOn: choice<FailOn>(args.failOn, "--fail-on", ["high", "medium", "low", "never"]),
    rank: integer(args.rank, "--rank", 1, 1024),
    seed: integer(args.seed, "--seed", 0, 2 ** 31 - 1),
    outDir: args.out ?? DEFAULT_OUT_DIR,
  });
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
