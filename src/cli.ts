/**
 * The `delta-audit` command. Each subcommand lives in src/commands/<name>.ts and exports
 * `register(program)`; this file only wires them and maps errors to exit codes (DESIGN.md):
 * 0 pass, 1 policy fail, 2 bad input or usage, 3 backend or internal fault.
 */
import { Command, CommanderError } from "commander";
import { describeError, exitCodeOf, EXIT } from "./errors";
import { VERSION } from "./version";
import { configureFromEnvironment, exitOnSignals, type Interruption } from "./edge";
import { configureOutput } from "./progress";
import * as spectrum from "./commands/spectrum";
import * as truncate from "./commands/truncate";
import * as logits from "./commands/logits";
import * as generate from "./commands/generate";
import * as scan from "./commands/scan";
import * as serve from "./commands/serve";
import * as sweep from "./commands/sweep";
import * as organism from "./commands/organism";
import * as demo from "./commands/demo";
import * as probes from "./commands/probes";
import * as estimate from "./commands/estimate";

/**
 * Every subcommand's module. `signal` is the edge's Interruption: scan, spectrum, truncate and
 * sweep run stop on it; the others are short or (serve) handle their signals themselves.
 */
const COMMANDS: ReadonlyArray<{ register(program: Command, signal: AbortSignal): void }> = [spectrum, truncate, logits, generate, scan, serve, estimate, sweep, organism, demo, probes];

function buildProgram(signal: AbortSignal): Command {
  const program = new Command("delta-audit")
    .description("Audit fine-tuned language models for hidden behaviours via the spectrum of ΔW")
    .version(VERSION)
    // usage errors follow the same contract as every other bad input: one line on stderr
    .configureOutput({ outputError: (str, write) => write(`delta-audit: ${str.trim().replace(/^error: /, "").replace(/\s*\n\s*/g, " ")} (see --help)\n`) })
    .exitOverride()
    // global: taken before or after the subcommand (`delta-audit --quiet scan …`, `scan … --quiet`)
    .option("-q, --quiet", "no progress bars or log lines on stderr (as DELTA_AUDIT_QUIET=1); results and errors still print")
    .hook("preAction", (cmd) => {
      if (cmd.opts().quiet) configureOutput({ quiet: true });
    });
  for (const cmd of COMMANDS) cmd.register(program, signal);
  return program;
}

async function main(argv: string[], interruption: Interruption): Promise<number> {
  try {
    configureFromEnvironment();
    await buildProgram(interruption.signal).parseAsync(argv);
    return process.exitCode === undefined ? EXIT.pass : Number(process.exitCode);
  } catch (err) {
    // stopped by a signal: the edge said so when it arrived, and settle() exits with its code
    if (interruption.signal.aborted) return EXIT.fault;
    if (err instanceof CommanderError) {
      // --help and --version exit 0; every other commander error is a usage error
      return err.exitCode === 0 ? EXIT.pass : EXIT.input;
    }
    process.stderr.write(`delta-audit: ${describeError(err)}\n`);
    if (process.env.DELTA_AUDIT_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return exitCodeOf(err);
  }
}

const interruption = exitOnSignals();
const code = await main(process.argv, interruption);
// after a signal: remove what staging is left and exit 130 / 143 (never returns)
await interruption.settle();
process.exitCode = code;
