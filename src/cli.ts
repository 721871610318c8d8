/**
 * The `delta-audit` command. Each subcommand lives in src/commands/<name>.ts and exports
 * `register(program)`; this file only wires them and maps errors to exit codes (DESIGN.md):
 * 0 pass, 1 policy fail, 2 bad input or usage, 3 backend or internal fault.
 */
import { Command, CommanderError } from "commander";
import { describeError, exitCodeOf, EXIT } from "./errors";
import { VERSION } from "./version";
import { configureOutput } from "./progress";
import { configureKernels } from "./linalg/kernels";
import { removeStaging } from "./io/atomic";
import * as spectrum from "./commands/spectrum";
import * as truncate from "./commands/truncate";
import * as logits from "./commands/logits";
import * as generate from "./commands/generate";
import * as scan from "./commands/scan";
import * as serve from "./commands/serve";
import * as sweep from "./commands/sweep";
import * as organism from "./commands/organism";
import * as demo from "./commands/demo";

export function buildProgram(): Command {
  const program = new Command("delta-audit")
    .description("Audit fine-tuned language models for hidden behaviours via the spectrum of ΔW")
    .version(VERSION)
    // usage errors follow the same contract as every other bad input: one line on stderr
    .configureOutput({ outputError: (str, write) => write(`delta-audit: ${str.trim().replace(/^error: /, "").replace(/\s*\n\s*/g, " ")} (see --help)\n`) })
    .exitOverride();
  for (const cmd of [spectrum, truncate, logits, generate, scan, serve, sweep, organism, demo]) cmd.register(program);
  return program;
}

/**
 * The environment settings the stages below never read themselves (docs/architecture.md,
 * "effects at the edges"): quiet output, ORT kernel threading.
 */
export function configureFromEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  configureOutput({ quiet: env.DELTA_AUDIT_QUIET === "1" });
  const threads = Number(env.DELTA_AUDIT_ORT_THREADS);
  configureKernels({ spinning: env.DELTA_AUDIT_ORT_SPIN === "1", threads: Number.isSafeInteger(threads) && threads > 0 ? threads : undefined });
}

/** Exit codes for a signal, as a shell reports them: 128 + the signal number. */
const SIGNAL_EXIT = Object.freeze({ SIGINT: 130, SIGTERM: 143 });

/** How long the atomic writers' cleanup may take before a signalled process exits anyway. */
const SIGNAL_CLEANUP_MS = 5_000;

/**
 * On SIGTERM (a cancelled CI job) or SIGINT: remove the staging folders of the atomic writes in
 * flight, then exit 143 / 130. A second signal exits at once. A command that listens for the
 * signal itself (`serve` drains its queue first) owns its shutdown, and this handler stands by.
 */
export function exitOnSignals(): void {
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const code = SIGNAL_EXIT[signal];
    process.on(signal, () => {
      if (stopping) process.exit(code);
      if (process.listenerCount(signal) > 1) return;
      stopping = true;
      setTimeout(() => process.exit(code), SIGNAL_CLEANUP_MS).unref();
      void removeStaging().finally(() => process.exit(code));
    });
  }
}

export async function main(argv: string[]): Promise<number> {
  configureFromEnvironment();
  exitOnSignals();
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? EXIT.pass : Number(process.exitCode);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; every other commander error is a usage error
      return err.exitCode === 0 ? EXIT.pass : EXIT.input;
    }
    process.stderr.write(`delta-audit: ${describeError(err)}\n`);
    if (process.env.DELTA_AUDIT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return exitCodeOf(err);
  }
}

const code = await main(process.argv);
process.exitCode = code;
