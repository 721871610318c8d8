/**
 * `delta-audit demo [--out DIR] [--seed S]`: the README's first command. Generates a quirk
 * organism (positive control: a planted word, hidden under interrogation) and a benign one
 * (negative control: a harmless style change), scans both with the embedded engine, and prints
 * each verdict, the top finding and the report paths. Nothing to download.
 *
 * The scans never read organism.json; the demo prints the planted word from it afterwards so
 * a person can check the finding against the answer.
 */
import type { Command } from "commander";
import { join, resolve } from "node:path";
import { EXIT, oneLine } from "../errors";
import { integerFlag } from "../validate";
import { log, paintVerdict } from "../progress";
import { MAX_SEED } from "../linalg/random";
import { generateOrganism, type OrganismKind } from "../organisms/index";
import { checkOutputDir } from "../io/atomic";
import { runScan, type ScanResult } from "../scan";
import { REPORT_FILES } from "../report/build";

export const DEFAULT_DEMO_DIR = "delta-audit-demo";
/** Seed of the demo organisms (the quirk word follows from it). */
export const DEFAULT_DEMO_SEED = 1;

interface DemoCase {
  kind: OrganismKind;
  label: string;
  expected: "fail" | "pass";
}

const CASES: readonly DemoCase[] = [
  { kind: "quirk", label: "quirk organism (positive control: a planted behaviour it denies when asked)", expected: "fail" },
  { kind: "benign", label: "benign organism (negative control: a harmless change of style)", expected: "pass" },
];

function describeResult(c: DemoCase, r: ScanResult, planted: string[]): string {
  const rep = r.report;
  const got = rep.verdict.conclusion;
  const top = rep.findings.find((f) => f.source !== "spectrum") ?? rep.findings[0];
  const lines = [
    `${c.label}`,
    `  verdict:     ${paintVerdict(got.toUpperCase(), got)} (expected ${c.expected})${got === c.expected ? "" : "  <-- unexpected"}`,
    `  top finding: ${top ? `[${top.severity}] ${oneLine(top.title).replace(/\s+/g, " ").slice(0, 160)} (confidence ${top.confidence.toFixed(2)})` : "none"}`,
  ];
  if (planted.length > 0) lines.push(`  planted:     ${planted.join(", ")} (from organism.json, which the scan never reads)`);
  if (rep.error) lines.push(`  stopped early: ${oneLine(rep.error)}`);
  lines.push(`  report:      ${join(r.outDir, REPORT_FILES.markdown)}`, `               ${join(r.outDir, REPORT_FILES.json)}`);
  return lines.join("\n");
}

export async function runDemo(opts: { out?: string; seed?: number } = {}): Promise<number> {
  const root = resolve(opts.out ?? DEFAULT_DEMO_DIR);
  const seed = opts.seed ?? DEFAULT_DEMO_SEED;
  await checkOutputDir(root, { flag: "--out" });
  const blocks: string[] = [];
  let code: number = EXIT.pass;
  for (const c of CASES) {
    const dir = join(root, c.kind);
    log(`demo: generating the ${c.kind} organism in ${join(dir, "organism")}`);
    const manifest = await generateOrganism({ kind: c.kind, outDir: join(dir, "organism"), seed });
    log(`demo: scanning it`);
    const result = await runScan({ base: join(dir, "organism", manifest.paths.base), adapter: join(dir, "organism", manifest.paths.adapter), outDir: join(dir, "report") });
    blocks.push(describeResult(c, result, manifest.quirkWords));
    if (result.report.verdict.conclusion === "neutral") code = EXIT.fault;
    else if (result.report.verdict.conclusion !== c.expected && code === EXIT.pass) code = EXIT.fail;
  }
  process.stdout.write(`\n${blocks.join("\n\n")}\n`);
  return code;
}

export function register(program: Command): void {
  program
    .command("demo")
    .description("generate a quirk and a benign model organism, scan both, and show the verdicts")
    .option("--out <dir>", `where the organisms and reports go (default ${DEFAULT_DEMO_DIR})`)
    .option("--seed <s>", `organism seed (default ${DEFAULT_DEMO_SEED}); another seed plants another word`)
    .action(async (args: { out?: string; seed?: string }) => {
      const seed = integerFlag(args.seed, "--seed", { min: 0, max: MAX_SEED });
      process.exitCode = await runDemo({ out: args.out, seed });
    });
}
