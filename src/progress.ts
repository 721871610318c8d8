/**
 * Progress for long work: a redrawn bar on a TTY, periodic plain lines otherwise (CI logs).
 * Everything goes to stderr so stdout stays machine-readable (logits JSON, tables).
 *
 * Stages call progress() and log() but never decide whether anything is printed: the edge
 * (edge.ts, for cli.ts and action.ts) reads the environment (DELTA_AUDIT_QUIET, NO_COLOR,
 * FORCE_COLOR) and the CLI's --quiet, and calls configureOutput(). Until an edge does, nothing
 * is printed and nothing is coloured — a library caller (a test, an embedder) gets a silent
 * stage unless it asks otherwise.
 */

export interface OutputSettings {
  /** print nothing (DELTA_AUDIT_QUIET=1 or --quiet; the default until an edge configures output) */
  quiet: boolean;
  /** colour the verdict words on stdout (a TTY, or FORCE_COLOR; never with NO_COLOR); default off */
  colour: boolean;
}

type Stream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

const output: OutputSettings & { stream: Stream } = { quiet: true, colour: false, stream: process.stderr };

/** Set by the edge (edge.ts) from the environment and the CLI's global flags. */
export function configureOutput(settings: Partial<OutputSettings>): void {
  if (settings.quiet !== undefined) output.quiet = settings.quiet;
  if (settings.colour !== undefined) output.colour = settings.colour;
}

/** Plain-line mode prints at most this often, so CI logs stay short. */
const PLAIN_INTERVAL_MS = 5_000;
/** A TTY bar is redrawn at most this often (10 Hz): faster only flickers and costs writes. */
const TTY_INTERVAL_MS = 100;
/** The bar's width when the terminal has room for it. */
const BAR_WIDTH = 28;
/** Narrower than this, the bar says nothing a count does not, and is dropped. */
const MIN_BAR_WIDTH = 6;
/** The width assumed when the stream does not say (a TTY that reports no size). */
const DEFAULT_COLUMNS = 80;
/**
 * No ETA before this many units: the first units carry the start-up (a session, a first
 * tokenisation), and an ETA extrapolated from them is off by a multiple.
 */
export const MIN_UNITS_FOR_ETA = 3;
/** Erase the current line and return to its start (TTY only). */
const CLEAR_LINE = "\r\x1b[2K";
/**
 * C0/C1 controls and line breaks: a detail (a module or probe name read from a file) must not
 * move the cursor or start a line. Local, not errors.ts's oneLine: both sit on floor 0.
 */
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

export interface Progress {
  /** advance by n units (default 1) */
  tick(n?: number, detail?: string): void;
  /** finish: final line with the elapsed time */
  done(detail?: string): void;
}

export interface ProgressOptions {
  stream?: Stream;
  /** suppress this bar's output (a stage's own quiet option); default: the edge's setting */
  quiet?: boolean;
  now?: () => number;
}

/** Seconds as a short duration: 4.2s, 12s, 3m05s, 1h02m. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

/** Units per second, three significant figures at most: 0.42/s, 12.3/s, 1234/s. */
export function formatRate(perSecond: number): string {
  if (perSecond >= 100) return `${Math.round(perSecond)}/s`;
  if (perSecond >= 10) return `${perSecond.toFixed(1)}/s`;
  return `${perSecond.toFixed(2)}/s`;
}

/** `text` cut to `width` code points, the cut marked with an ellipsis. */
function fit(text: string, width: number): string {
  const chars = Array.from(text);
  if (chars.length <= width) return text;
  if (width <= 0) return "";
  return `${chars.slice(0, width - 1).join("")}…`;
}

/** The bar being drawn on a TTY, so a log line can erase it first instead of appending to it. */
let activeBar: Stream | undefined;

/** A progress reporter for `total` units of work labelled `label`. */
export function progress(label: string, total: number, opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? output.stream;
  const now = opts.now ?? Date.now;
  const quiet = opts.quiet ?? output.quiet;
  const tty = Boolean(stream.isTTY);
  const start = now();
  let count = 0;
  let lastPrint = start;
  let drawn = false;

  /** count, rate and ETA (or the elapsed time when finished): the parts every frame keeps */
  const stats = (finished: boolean): string => {
    const elapsed = (now() - start) / 1000;
    const rate = elapsed > 0 && count > 0 ? count / elapsed : undefined;
    const parts = [`${count}/${total}`];
    if (rate !== undefined) parts.push(formatRate(rate));
    if (finished) parts.push(`in ${formatDuration(elapsed)}`);
    else {
      if (rate !== undefined && count >= MIN_UNITS_FOR_ETA && count < total) parts.push(`ETA ${formatDuration((total - count) / rate)}`);
      parts.push(formatDuration(elapsed));
    }
    return parts.join(" ");
  };

  // details name modules and probes read from files: one line, no escape sequences
  const tailOf = (detail?: string) => (detail ? ` ${detail.replace(CONTROL_CHARS, " ")}` : "");

  const plain = (finished: boolean, detail?: string) => {
    const pct = total > 0 ? Math.min(100, Math.floor((100 * count) / total)) : 100;
    return `${label}: ${stats(finished).replace(" ", ` (${pct}%) `)}${tailOf(detail)}`;
  };

  /**
   * One frame, never wider than the terminal less one column (a line that fills the last
   * column wraps on some terminals, and the wrapped half would stay behind on the next
   * redraw): the detail is cut first, then the bar narrows and goes, then the label is cut.
   */
  const frame = (finished: boolean, detail?: string) => {
    const width = Math.max(1, (stream.columns || DEFAULT_COLUMNS) - 1);
    const pct = total > 0 ? Math.min(1, count / total) : 1;
    const head = `${label} `;
    const numbers = ` ${stats(finished)}`;
    const room = width - Array.from(head).length - numbers.length - 2;
    const barWidth = Math.min(BAR_WIDTH, room);
    let line: string;
    if (barWidth >= MIN_BAR_WIDTH) {
      const filled = Math.round(barWidth * pct);
      line = `${head}[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}]${numbers}`;
    } else line = `${label}:${numbers}`;
    const left = width - Array.from(line).length;
    const tail = tailOf(detail);
    return left > 1 && tail ? `${line}${fit(tail, left)}` : fit(line, width);
  };

  return {
    tick(n = 1, detail) {
      count += n;
      if (quiet) return;
      const t = now();
      if (tty) {
        if (drawn && t - lastPrint < TTY_INTERVAL_MS && count < total) return;
        stream.write(`${CLEAR_LINE}${frame(false, detail)}`);
        activeBar = stream;
        drawn = true;
        lastPrint = t;
      } else if (t - lastPrint >= PLAIN_INTERVAL_MS) {
        stream.write(`${plain(false, detail)}\n`);
        lastPrint = t;
      }
    },
    done(detail) {
      if (quiet) return;
      if (!tty) return void stream.write(`${plain(true, detail)}\n`);
      stream.write(`${CLEAR_LINE}${frame(true, detail)}\n`);
      if (activeBar === stream) activeBar = undefined;
    },
  };
}

/** A plain log line on stderr (silent when the edge configured quiet output). */
export function log(message: string): void {
  if (output.quiet) return;
  // a bar mid-draw on this stream: erase it, or the message would run on from the bar's end
  if (activeBar === output.stream) {
    output.stream.write(CLEAR_LINE);
    activeBar = undefined;
  }
  output.stream.write(`${message}\n`);
}

/** How a verdict reads: green for pass, red for fail, yellow for neutral (nothing decided). */
export type VerdictTone = "pass" | "fail" | "neutral";

const VERDICT_SGR = Object.freeze({ pass: "32", fail: "31", neutral: "33" } satisfies Record<VerdictTone, string>);

/**
 * `text` (a verdict word) in its verdict's colour when the edge turned colour on (stdout is a
 * TTY or FORCE_COLOR is set, and NO_COLOR is not), else unchanged. Only verdicts are coloured:
 * everything else a command prints is read by scripts as often as by people.
 */
export function paintVerdict(text: string, tone: VerdictTone): string {
  return output.colour ? `\x1b[1;${VERDICT_SGR[tone]}m${text}\x1b[0m` : text;
}
