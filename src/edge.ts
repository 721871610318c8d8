/**
 * What both entry points (cli.ts, action.ts) do at their edge before any work: read the
 * environment settings the stages below never read themselves (docs/architecture.md, "effects
 * at the edges") and clean up after a cancelled run.
 */
import { configureOutput } from "./progress";
import { configureKernels } from "./linalg/kernels";
import { MAX_THREADS } from "./linalg/ort";
import { removeStaging } from "./io/atomic";
import { namedOrigin, parseInteger } from "./validate";

/** The kernels' intra-op threads (ORT's default, one per core, when unset or empty). */
const ORT_THREADS_ENV = "DELTA_AUDIT_ORT_THREADS";

/**
 * Whether verdicts are coloured on stdout: never with NO_COLOR set to anything (no-color.org),
 * always with FORCE_COLOR (a CI log that renders colour) unless it says 0 or false, else only
 * on a terminal. NO_COLOR wins over FORCE_COLOR: the person who opts out is the one reading.
 */
export function wantsColour(env: NodeJS.ProcessEnv, stdoutIsTTY: boolean): boolean {
  if (env.NO_COLOR) return false;
  const force = env.FORCE_COLOR;
  if (force !== undefined && force !== "") return force !== "0" && force.toLowerCase() !== "false";
  return stdoutIsTTY;
}

/**
 * Quiet output (DELTA_AUDIT_QUIET=1), colour (NO_COLOR, FORCE_COLOR, stdout a TTY) and ORT
 * kernel threading (DELTA_AUDIT_ORT_THREADS=N, DELTA_AUDIT_ORT_SPIN=1). A bad thread count is an
 * InputError naming the variable (exit 2), never a guess: `1e6` threads would hang the first kernel.
 */
export function configureFromEnvironment(env: NodeJS.ProcessEnv = process.env, stdoutIsTTY = Boolean(process.stdout.isTTY)): void {
  configureOutput({ quiet: env.DELTA_AUDIT_QUIET === "1", colour: wantsColour(env, stdoutIsTTY) });
  const raw = env[ORT_THREADS_ENV];
  const threads = raw ? parseInteger(namedOrigin(ORT_THREADS_ENV), raw, "", { min: 1, max: MAX_THREADS }) : undefined;
  configureKernels({ spinning: env.DELTA_AUDIT_ORT_SPIN === "1", threads });
}

/** Exit codes for a signal, as a shell reports them: 128 + the signal number. */
const SIGNAL_EXIT = Object.freeze({ SIGINT: 130, SIGTERM: 143 });

/** How long the atomic writers' cleanup may take before a signalled process exits anyway. */
const SIGNAL_CLEANUP_MS = 5_000;

/** What exitOnSignals acts on; the defaults are the real process (tests pass their own). */
export interface SignalSeams {
  /** where the signals arrive (default: process) */
  target: Pick<NodeJS.EventEmitter, "on" | "listenerCount">;
  /** removes the staging of the writes in flight (default: io/atomic's removeStaging) */
  cleanup: () => Promise<void>;
  exit: (code: number) => void;
  /** how long the cleanup may take (default SIGNAL_CLEANUP_MS) */
  cleanupMs: number;
}

/**
 * On SIGTERM (a cancelled CI job) or SIGINT: remove the staging folders of the atomic writes in
 * flight, then exit 143 / 130. A second signal exits at once. A command that listens for the
 * signal itself (`serve` drains its queue first) owns its shutdown, and this handler stands by.
 */
export function exitOnSignals(seams: Partial<SignalSeams> = {}): void {
  const target = seams.target ?? process;
  const cleanup = seams.cleanup ?? removeStaging;
  const exit = seams.exit ?? ((code: number) => process.exit(code));
  const cleanupMs = seams.cleanupMs ?? SIGNAL_CLEANUP_MS;
  let stopping = false;
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const code = SIGNAL_EXIT[signal];
    target.on(signal, () => {
      if (stopping) return exit(code);
      if (target.listenerCount(signal) > 1) return;
      stopping = true;
      setTimeout(() => exit(code), cleanupMs).unref();
      void cleanup().finally(() => exit(code));
    });
  }
}
