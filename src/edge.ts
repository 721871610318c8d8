/**
 * What both entry points (cli.ts, action.ts) do at their edge before any work: read the
 * environment settings the stages below never read themselves (docs/architecture.md, "effects
 * at the edges") and turn a signal into a stopped run that leaves no staging folders.
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

/**
 * A signalled process exits within this long, whatever it was doing (a person pressing Ctrl-C
 * waits for it; a cancelled CI job is killed a few seconds after its SIGTERM).
 */
const SIGNAL_EXIT_MS = 2_000;

/**
 * Of SIGNAL_EXIT_MS, how long the command gets to stop at its next check and write what it has
 * (scan's partial report) before the staging folders are removed under it; the rest is for that
 * removal.
 */
const SIGNAL_GRACE_MS = 1_500;

/** What exitOnSignals acts on; the defaults are the real process (tests pass their own). */
export interface SignalSeams {
  /** where the signals arrive (default: process) */
  target: Pick<NodeJS.EventEmitter, "on" | "listenerCount">;
  /** removes the staging of the writes in flight (default: io/atomic's removeStaging) */
  cleanup: () => Promise<void>;
  exit: (code: number) => void;
  /** how long the command may take to stop after the first signal (default SIGNAL_GRACE_MS) */
  graceMs: number;
  /** when the process exits after the first signal at the latest, cleanup done or not (default SIGNAL_EXIT_MS) */
  exitMs: number;
  /** announces the first signal (default: a line on stderr, even when output is quiet: it is an outcome) */
  notify: (line: string) => void;
}

/** What the command below the edge is given, and what the edge does once it returns. */
export interface Interruption {
  /**
   * Aborted by the first SIGINT / SIGTERM, with an Error saying which as its reason: the
   * command's stages check it between phases and pass it to their requests, and stop.
   */
  readonly signal: AbortSignal;
  /**
   * Call once the command has returned or thrown. After a signal: removes the staging folders
   * still left and exits with the signal's code (130 / 143); without one, returns at once.
   */
  settle(): Promise<void>;
}

/**
 * On SIGTERM (a cancelled CI job) or SIGINT: abort `signal`, so the command stops at its next
 * check (a scan past its delta pass writes its partial report, verdict neutral), then remove the
 * atomic writers' staging folders and exit 143 / 130 — when the command returns (settle), or
 * after SIGNAL_GRACE_MS if it has not, and within SIGNAL_EXIT_MS in any case. A second signal
 * exits at once, cleanup or not. A command that listens for the signal itself (`serve` drains
 * its queue first) owns its shutdown, and this handler stands by.
 */
export function exitOnSignals(seams: Partial<SignalSeams> = {}): Interruption {
  const target = seams.target ?? process;
  const cleanup = seams.cleanup ?? removeStaging;
  const exit = seams.exit ?? ((code: number) => process.exit(code));
  const graceMs = seams.graceMs ?? SIGNAL_GRACE_MS;
  const exitMs = seams.exitMs ?? SIGNAL_EXIT_MS;
  const notify = seams.notify ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const controller = new AbortController();
  let code: number | undefined;
  let stopping: Promise<void> | undefined;
  // the timers are not unref'd: a command stuck on a promise with nothing else pending must still exit with the signal's code
  const stop = (): Promise<void> => (stopping ??= cleanup().catch(() => undefined).then(() => exit(code!)));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    target.on(signal, () => {
      if (code !== undefined) return exit(SIGNAL_EXIT[signal]);
      if (target.listenerCount(signal) > 1) return;
      code = SIGNAL_EXIT[signal];
      notify(`delta-audit: ${signal}: stopping (send it again to exit at once)`);
      setTimeout(() => void stop(), graceMs);
      setTimeout(() => exit(code!), exitMs);
      controller.abort(new Error(`interrupted by ${signal}`));
    });
  }
  return {
    signal: controller.signal,
    settle: () => (code === undefined ? Promise.resolve() : stop()),
  };
}
