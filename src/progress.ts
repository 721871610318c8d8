/**
 * Progress for long work: a redrawn bar on a TTY, periodic plain lines otherwise (CI logs).
 * Everything goes to stderr so stdout stays machine-readable (logits JSON, tables).
 *
 * Stages call progress() and log() but never decide whether anything is printed: the edge
 * (edge.ts, for cli.ts and action.ts) reads the environment (DELTA_AUDIT_QUIET) and calls configureOutput().
 * Until an edge does, nothing is printed — a library caller (a test, an embedder) gets a
 * silent stage unless it asks otherwise.
 */

export interface OutputSettings {
  /** print nothing (DELTA_AUDIT_QUIET=1; the default until an edge configures output) */
  quiet: boolean;
}

const output: OutputSettings & { stream: NodeJS.WritableStream & { isTTY?: boolean } } = { quiet: true, stream: process.stderr };

/** Set by the edge (edge.ts) from the environment. */
export function configureOutput(settings: Partial<OutputSettings>): void {
  if (settings.quiet !== undefined) output.quiet = settings.quiet;
}

/** Plain-line mode prints at most this often, so CI logs stay short. */
const PLAIN_INTERVAL_MS = 5_000;
const BAR_WIDTH = 28;

export interface Progress {
  /** advance by n units (default 1) */
  tick(n?: number, detail?: string): void;
  /** finish: final line with the elapsed time */
  done(detail?: string): void;
}

export interface ProgressOptions {
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** suppress this bar's output (a stage's own quiet option); default: the edge's setting */
  quiet?: boolean;
  now?: () => number;
}

/** A progress reporter for `total` units of work labelled `label`. */
export function progress(label: string, total: number, opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? output.stream;
  const now = opts.now ?? Date.now;
  const quiet = opts.quiet ?? output.quiet;
  const tty = Boolean(stream.isTTY);
  const start = now();
  let count = 0;
  let lastPrint = start;

  const fmt = (detail?: string) => {
    const pct = total > 0 ? Math.min(100, Math.floor((100 * count) / total)) : 100;
    const secs = ((now() - start) / 1000).toFixed(1);
    const tail = detail ? ` ${detail}` : "";
    if (!tty) return `${label}: ${count}/${total} (${pct}%) ${secs}s${tail}`;
    const filled = Math.round((BAR_WIDTH * pct) / 100);
    return `${label} [${"#".repeat(filled)}${"-".repeat(BAR_WIDTH - filled)}] ${count}/${total} ${secs}s${tail}`;
  };

  return {
    tick(n = 1, detail) {
      count += n;
      if (quiet) return;
      const t = now();
      if (tty) stream.write(`\r\x1b[2K${fmt(detail)}`);
      else if (t - lastPrint >= PLAIN_INTERVAL_MS) {
        stream.write(`${fmt(detail)}\n`);
        lastPrint = t;
      }
    },
    done(detail) {
      if (quiet) return;
      stream.write(tty ? `\r\x1b[2K${fmt(detail)}\n` : `${fmt(detail)}\n`);
    },
  };
}

/** A plain log line on stderr (silent when the edge configured quiet output). */
export function log(message: string): void {
  if (output.quiet) return;
  output.stream.write(`${message}\n`);
}
