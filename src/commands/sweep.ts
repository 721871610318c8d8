/**
 * `delta-audit sweep plan|run|collect`: audit every model of a registry on a schedule. The
 * flags are read and checked here; the work is src/sweep/ (plan.ts, run.ts, collect.ts).
 *
 *   sweep plan    --registry FILE [--state DIR] [--out PLAN] [--all] [--max-jobs N]
 *                   → the job matrix JSON (stdout, and the `matrix`, `jobs`, `pending`
 *                     outputs under GitHub Actions); the plan file for run and collect
 *   sweep run     --plan PLAN | --registry FILE --name NAME --out DIR [scan flags]
 *                   → one model's scan, directions.safetensors and sweep-job.json
 *   sweep collect --reports DIR --out DIR [--plan PLAN | --registry FILE] [--state DIR] [--previous DIR]
 *                   → index.json/md/html, badges, reports/; the new state
 */
import type { Command } from "commander";
import { appendFileSync } from "node:fs";
import { join } from "node:path";
import { InputError, oneLine } from "../errors";
import { log } from "../progress";
import { hubOptionsFromEnv } from "../io/hub";
import { loadRegistry, MAX_MATRIX_JOBS } from "../sweep/registry";
import { loadPlan, planMatrix, planSweep, plannedNamed, writePlan } from "../sweep/plan";
import { runSweepJob } from "../sweep/run";
import { loadState } from "../sweep/state";
import { collectSweep, SWEEP_BADGE_FILE } from "../sweep/collect";
import { scanOverrides, summarise, type ScanArgs } from "./scan";
import { integerFlag, requiredFlag } from "../validate";

/** `signal`: the edge's interruption; `sweep run` stops as `scan` does (its partial report kept past the delta pass). */
export function register(program: Command, signal?: AbortSignal): void {
  const sweep = program.command("sweep").description("audit every model of a registry: plan a job matrix, run one job, collect an index and badges");

  sweep
    .command("plan")
    .description("expand the registry, keep the models that changed since their last audit, print the job matrix: {\"include\":[{\"name\":…},…]}")
    .option("--registry <file>", "the sweep registry (YAML)")
    .option("--state <dir>", "the state folder of earlier runs (state.json); without it every model is new")
    .option("--out <file>", "write the plan (JSON) for `sweep run --plan` and `sweep collect --plan`")
    .option("--all", "audit every model, changed or not")
    .option("--max-jobs <n>", `jobs in this run's matrix, 1..${MAX_MATRIX_JOBS} (default ${MAX_MATRIX_JOBS}); the rest are pending`)
    .action(async (args: { registry?: string; state?: string; out?: string; all?: boolean; maxJobs?: string }) => {
      const maxJobs = integerFlag(args.maxJobs, "--max-jobs", { min: 1, max: MAX_MATRIX_JOBS });
      const reg = loadRegistry(requiredFlag(args.registry, "--registry", "the sweep registry file"));
      const state = args.state ? await loadState(args.state) : undefined;
      const plan = await planSweep(reg, { state, all: args.all === true, maxJobs, hub: hubOptionsFromEnv(), cwd: process.cwd() });
      if (args.out) await writePlan(args.out, plan);
      const unchanged = plan.models.length - plan.jobs.length - plan.pending.length;
      log(`sweep: ${plan.models.length + plan.skipped.length} models: ${plan.jobs.length} to audit, ${plan.pending.length} pending, ${unchanged} unchanged, ${plan.skipped.length} skipped`);
      for (const s of plan.skipped) log(`sweep: skipped ${s.name} (${s.source}): ${oneLine(s.reason)}`);
      const matrix = JSON.stringify(planMatrix(plan));
      process.stdout.write(`${matrix}\n`);
      // under GitHub Actions, also step outputs for `strategy.matrix: ${{ fromJSON(...) }}` and
      // for skipping the matrix when nothing changed (an empty matrix is an error there)
      if (process.env.GITHUB_OUTPUT) appendFileSync(process.env.GITHUB_OUTPUT, `matrix=${matrix}\njobs=${plan.jobs.length}\npending=${plan.pending.length}\n`);
    });

  sweep
    .command("run")
    .description("audit one model of a plan (or a registry): scan it, keep its top singular directions, record the job (exit codes as scan)")
    .option("--plan <file>", "the plan `sweep plan --out` wrote (pins each model's revision)")
    .option("--registry <file>", "the sweep registry, instead of a plan (the model is looked up now)")
    .option("--name <name>", "the model to audit (a matrix job's name)")
    .option("--out <dir>", "output folder; use <reports>/<name> so collect finds it")
    .option("--backend <type>", "embedded (default) or openai")
    .option("--inference-url <url>", "OpenAI-compatible server URL (with --backend openai)")
    .option("--fail-on <severity>", "high (default), medium, low or never")
    .option("--device <device>", "cpu (default) or cuda")
    .action(async (args: { plan?: string; registry?: string; name?: string; out?: string } & ScanArgs) => {
      const overrides = scanOverrides(args); // flag errors first, before the registry and any Hub download
      if (args.plan && args.registry) throw new InputError("give either --plan or --registry, not both", "--registry");
      const name = requiredFlag(args.name, "--name", "the model's name");
      const out = requiredFlag(args.out, "--out", "the output folder");
      const hub = hubOptionsFromEnv();
      let plan;
      if (args.plan) plan = await loadPlan(args.plan);
      else {
        const reg = loadRegistry(requiredFlag(args.registry, "--plan", "the plan file (or --registry)"));
        plan = await planSweep(reg, { all: true, only: name, hub, cwd: process.cwd() });
      }
      const model = plannedNamed(plan, name, args.plan ?? args.registry!);
      const { result } = await runSweepJob({
        model,
        out,
        drift: plan.drift,
        cwd: process.cwd(),
        hub,
        scan: { backend: overrides.backend, inferenceUrl: overrides.inferenceUrl, failOn: overrides.failOn, device: overrides.device, env: process.env, signal },
      });
      // not log(): a fault is an outcome, not progress, and must show even with DELTA_AUDIT_QUIET
      if (result.report.error) process.stderr.write(`delta-audit: ${oneLine(result.report.error)}\n`);
      process.stdout.write(summarise(result));
      process.exitCode = result.exitCode;
    });

  sweep
    .command("collect")
    .description("merge this run's job folders and the state into index.json, index.md, index.html, shields badges and reports/; update the state")
    .option("--reports <dir>", "folder holding one sub-folder per model (downloaded artifacts)")
    .option("--out <dir>", "output folder: the site to publish (written atomically)")
    .option("--plan <file>", "this run's plan: every model of the run, pending and skipped ones too")
    .option("--registry <file>", "without a plan: list its models without a report as missing, refuse unknown ones")
    .option("--state <dir>", "the state folder: read, then written with this run's outcomes")
    .option("--previous <dir>", "the site published last time: unchanged models keep their report from it")
    .action(async (args: { reports?: string; out?: string; plan?: string; registry?: string; state?: string; previous?: string }) => {
      const reports = requiredFlag(args.reports, "--reports", "the folder with the reports");
      const out = requiredFlag(args.out, "--out", "the output folder");
      const plan = args.plan ? await loadPlan(args.plan) : undefined;
      const registry = args.registry ? loadRegistry(args.registry) : undefined;
      const index = await collectSweep(reports, out, { plan, registry, stateDir: args.state, previous: args.previous });
      const s = index.summary;
      process.stdout.write(
        `${index.models.length} models: ${s.pass} pass, ${s.fail} fail, ${s.neutral} inconclusive, ${s.missing} without a report\n` +
          `index:  ${join(out, "index.html")}, ${join(out, "index.md")}\nbadges: ${join(out, "badges")}/<model>.json, ${join(out, "badges", SWEEP_BADGE_FILE)}\n` +
          (args.state ? `state:  ${join(args.state, "state.json")}\n` : ""),
      );
      // collecting is reporting, not gating: a failed model shows in the index and its badge
    });
}
