/**
 * `delta-audit sweep plan|run|collect`: audit every model of a registry on a schedule.
 *
 *   sweep plan    --registry FILE                  → the job matrix JSON (stdout, and the
 *                                                    `matrix` output under GitHub Actions)
 *   sweep run     --registry FILE --name NAME --out DIR [scan flags]   → one model's scan
 *   sweep collect --reports DIR --out DIR [--registry FILE]            → index + badges
 */
import type { Command } from "commander";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { InputError } from "../errors";
import { log } from "../progress";
import { hubOptionsFromEnv, looksLikeHubId, resolveHubModel } from "../io/hub";
import { entryNamed, loadRegistry, planMatrix, type SweepEntry } from "../sweep/registry";
import { collectSweep, SWEEP_BADGE_FILE } from "../sweep/collect";
import { runScanCommand, scanOverrides, type ScanArgs } from "./scan";
import { isDirectory } from "../io/fs-util";
import { requiredFlag } from "../validate";

/** A base given as a Hub id is fetched into the standard Hugging Face cache first. */
async function localBase(entry: SweepEntry): Promise<string> {
  if (await isDirectory(entry.base)) return entry.base;
  if (!looksLikeHubId(entry.base)) throw new InputError(`'${entry.base}' is neither a folder nor a Hub model id`, `model '${entry.name}' base`);
  const resolved = await resolveHubModel(entry.base, hubOptionsFromEnv());
  log(`sweep: ${entry.base} → ${resolved.dir}`);
  return resolved.dir;
}

export function register(program: Command): void {
  const sweep = program.command("sweep").description("audit every model of a registry: plan a job matrix, run one job, collect an index and badges");

  sweep
    .command("plan")
    .description("print the GitHub Actions job matrix for a registry: {\"include\":[{\"name\":…},…]}")
    .option("--registry <file>", "the sweep registry (YAML)")
    .action((args: { registry?: string }) => {
      const reg = loadRegistry(requiredFlag(args.registry, "--registry", "the sweep registry file"));
      const matrix = JSON.stringify(planMatrix(reg));
      process.stdout.write(`${matrix}\n`);
      // under GitHub Actions, also a step output for `strategy.matrix: ${{ fromJSON(...) }}`
      if (process.env.GITHUB_OUTPUT) appendFileSync(process.env.GITHUB_OUTPUT, `matrix=${matrix}\n`);
    });

  sweep
    .command("run")
    .description("scan one model of the registry (exit codes as scan)")
    .option("--registry <file>", "the sweep registry (YAML)")
    .option("--name <name>", "the model to audit (a matrix job's name)")
    .option("--out <dir>", "output folder; use <reports>/<name> so collect finds it")
    .option("--backend <type>", "embedded (default) or openai")
    .option("--inference-url <url>", "OpenAI-compatible server URL (with --backend openai)")
    .option("--fail-on <severity>", "high (default), medium, low or never")
    .option("--device <device>", "cpu (default) or cuda")
    .action(async (args: { registry?: string; name?: string; out?: string } & ScanArgs) => {
      scanOverrides(args); // flag errors first, before the registry and any Hub download
      const reg = loadRegistry(requiredFlag(args.registry, "--registry", "the sweep registry file"));
      const entry = entryNamed(reg, requiredFlag(args.name, "--name", "the model's name"));
      const out = requiredFlag(args.out, "--out", "the output folder");
      process.exitCode = await runScanCommand({
        base: await localBase(entry),
        adapter: entry.adapter,
        finetuned: entry.finetuned,
        config: entry.config,
        out,
        backend: args.backend,
        inferenceUrl: args.inferenceUrl,
        failOn: args.failOn,
        device: args.device,
      });
    });

  sweep
    .command("collect")
    .description("merge <reports>/<model>/report.json into index.json, index.md and shields badges")
    .option("--reports <dir>", "folder holding one sub-folder per model (downloaded artifacts)")
    .option("--out <dir>", "output folder (written atomically)")
    .option("--registry <file>", "list models without a report as missing, refuse unknown ones")
    .action(async (args: { reports?: string; out?: string; registry?: string }) => {
      const reports = requiredFlag(args.reports, "--reports", "the folder with the reports");
      const out = requiredFlag(args.out, "--out", "the output folder");
      const registry = args.registry ? loadRegistry(args.registry) : undefined;
      const index = await collectSweep(reports, out, { registry });
      const s = index.summary;
      process.stdout.write(
        `${index.models.length} models: ${s.pass} pass, ${s.fail} fail, ${s.neutral} inconclusive, ${s.missing} without a report\n` +
          `index:  ${join(out, "index.md")}\nbadges: ${join(out, "badges")}/<model>.json, ${join(out, "badges", SWEEP_BADGE_FILE)}\n`,
      );
      // collecting is reporting, not gating: a failed model shows in the index and its badge
    });
}
