/**
 * The `delta-audit` command. Each subcommand lives in src/commands/<name>.ts and exports
 * `register(program)`; this file only wires them and maps errors to exit codes (DESIGN.md):
 * 0 pass, 1 policy fail, 2 bad input or usage, 3 backend or internal fault.
 */
import { Command, CommanderError } from "commander";
import { describeError, exitCodeOf, EXIT } from "./errors";
import { VERSION } from "./version";
import { configureFromEnvironment, exitOnSignals } from "./edge";
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

function buildProgram(): Command {
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
  for (const cmd of [spectrum, truncate, logits, generate, scan, serve, sweep, organism, demo, probes]) cmd.register(program);
  return program;
}

async function main(argv: string[]): Promise<number> {
  exitOnSignals();
  try {
    configureFromEnvironment();
    await buildProgram().parseAsync(argv);
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
