/**
 * `delta-audit estimate --base DIR|ID [--adapter DIR|ID | --finetuned DIR|ID] [--config FILE]
 *  [--precision P] [--device cpu|cuda] [--threads N] [--json]`
 *
 * What a scan of the subject needs on this machine, before loading any weight: peak memory at
 * each precision (from config.json and the adapter's sizes), the time of the load and of the
 * default suite's (or the config's) elicitation from a short measurement of this machine's
 * matrix-vector speed, and the precision `auto` would pick. Exit 2 when the subject cannot fit
 * at any precision, so a CI job can stop early with a reason instead of being killed.
 */
import type { Command } from "commander";
import { InputError } from "../errors";
import { DEVICES } from "../linalg/device";
import { MAX_THREADS } from "../linalg/ort";
import { MAX_RANK } from "../delta/limits";
import { choiceFlag, integerFlag, requiredFlag } from "../validate";
import { defaultConfig, loadConfig } from "../config";
import { engineWorkload } from "../scan";
import { PRECISION_CHOICES } from "../engine/precision";
import { gib, linearParams } from "../engine/estimate";
import { estimateSubject, type SubjectEstimate } from "../engine/subject-precision";
import { resolveModelFlags } from "../io/model-ref";

interface EstimateArgs {
  base?: string;
  adapter?: string;
  finetuned?: string;
  config?: string;
  rank?: string;
  precision?: string;
  device?: string;
  threads?: string;
  json?: boolean;
}

const count = (n: number) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)} M` : `${(n / 1e3).toFixed(1)} k`);
const duration = (s: number) => (s < 90 ? `${Math.round(s)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`);

/** The table for people (stdout). */
export function formatEstimate(e: SubjectEstimate, subject: { base: string; adapter?: string; finetuned?: string }): string {
  const c = e.config;
  const params = linearParams(c) + c.vocabSize * c.hiddenSize * (c.tieWordEmbeddings ? 1 : 2);
  const w = e.workload;
  const lines = [
    `subject: ${subject.base} (${c.modelType}, ${count(params)} parameters, ${gib(e.fileBytes)} of weights on disk)${subject.adapter ? ` + adapter ${subject.adapter}` : subject.finetuned ? ` + fine-tune ${subject.finetuned}` : ""}`,
    `work: ${w.steps ?? 0} decode steps × ${w.variantRuns ?? 1} variant runs at batch ${w.batch}, context up to ${w.context} tokens, ~${w.promptTokens ?? 0} prompt tokens per run`,
    `memory: ${gib(e.available.bytes)} available (${e.available.source}); auto uses up to ${gib(e.budget)}`,
    "",
    `${"precision".padEnd(10)}${"memory".padEnd(12)}${"fits".padEnd(6)}${"load".padEnd(9)}${"token (b=1)".padEnd(13)}${"tok/s (b=8)".padEnd(13)}scan (load + elicitation)`,
  ];
  for (const r of e.rows) {
    if (r.unsupported) {
      lines.push(`${r.precision.padEnd(10)}unavailable: ${r.unsupported}`);
      continue;
    }
    const t = r.time;
    lines.push(
      [
        r.precision.padEnd(10),
        gib(r.memory.bytes).padEnd(12),
        (r.fits ? "yes" : "no").padEnd(6),
        (t ? duration(t.loadSeconds) : "-").padEnd(9),
        (t ? `${(t.secondsPerToken * 1000).toFixed(t.secondsPerToken < 0.01 ? 2 : 0)} ms` : "-").padEnd(13),
        (t ? t.batchTokensPerSecond.toFixed(1) : "-").padEnd(13),
        t ? `~${duration(t.loadSeconds + t.runSeconds)}` : "-",
      ].join(""),
    );
  }
  lines.push("", e.decision ? e.decision.reason : `nothing fits: ${e.problem?.message ?? ""}`);
  return `${lines.join("\n")}\n`;
}

async function runEstimate(args: EstimateArgs): Promise<number> {
  const base = requiredFlag(args.base, "--base", "the base model folder");
  if (args.adapter && args.finetuned) throw new InputError("give either --adapter or --finetuned, not both", "--finetuned");
  const config = args.config ? loadConfig(args.config) : defaultConfig();
  const precision = choiceFlag(args.precision, "--precision", PRECISION_CHOICES) ?? config.engine.precision;
  const rank = integerFlag(args.rank, "--rank", { min: 1, max: MAX_RANK }) ?? config.rank;
  const device = choiceFlag(args.device, "--device", DEVICES) ?? config.backend.device;
  const threads = integerFlag(args.threads, "--threads", { min: 1, max: MAX_THREADS });
  // each model flag is a folder or a Hub id (io/model-ref.ts), as scan takes it: a Hub id is
  // fetched into the Hugging Face cache here, where the scan after it finds it again
  const labels: { base?: string; adapter?: string; finetuned?: string } = {};
  const dirs = await resolveModelFlags({ base, adapter: args.adapter, finetuned: args.finetuned }, { base: "--base", adapter: "--adapter", finetuned: "--finetuned" }, {}, labels);
  const e = await estimateSubject({
    model: dirs.base,
    adapter: dirs.adapter,
    finetuned: dirs.finetuned,
    rank: args.adapter || args.finetuned ? rank : undefined,
    precision,
    device,
    threads,
    workload: engineWorkload(config),
    where: args.precision !== undefined ? "--precision" : args.config ? `${args.config}: engine.precision` : "--precision",
  });
  if (args.json) {
    const out = {
      available: e.available,
      budget: e.budget,
      workload: e.workload,
      precisions: e.rows.map((r) => ({ precision: r.precision, memoryBytes: r.memory.bytes, parts: r.memory.parts, fits: r.fits, unsupported: r.unsupported, time: r.time })),
      choice: e.decision ? { precision: e.decision.precision, reason: e.decision.reason } : null,
      problem: e.problem?.message,
    };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    process.stdout.write(formatEstimate(e, { base: labels.base ?? base, adapter: labels.adapter, finetuned: labels.finetuned }));
  }
  if (e.problem) throw e.problem;
  return 0;
}

export function register(program: Command): void {
  program
    .command("estimate")
    .description("memory and time a scan of the subject needs here at each precision, before loading anything (exit 2 when it cannot fit)")
    .option("--base <dir|id>", "base model folder (config.json + safetensors) or Hub id org/name[@rev]")
    .option("--adapter <dir|id>", "PEFT LoRA adapter (folder or Hub id)")
    .option("--finetuned <dir|id>", "fully fine-tuned checkpoint (folder or Hub id)")
    .option("--config <file>", "delta-audit.yml: its probes, samples, max-tokens and engine.precision (default: the default suite)")
    .option("--rank <k>", "truncation rank of the scan (default: the config's, 1)")
    .option("--precision <p>", "auto (default), f32, bf16, int8 or int4: the choice to check")
    .option("--device <device>", "cpu (default) or cuda")
    .option("--threads <n>", "ONNX Runtime intra-op threads for the measurement (default: all cores)")
    .option("--json", "one JSON object instead of the table")
    .action(async (args: EstimateArgs) => {
      process.exitCode = await runEstimate(args);
    });
}
