/**
 * Error classes that map onto the exit codes of DESIGN.md:
 * 2 = bad input or usage, 3 = a backend or internal fault.
 * Everything below the CLI throws these (or plain errors, which count as 3).
 */

/** The user's input is wrong: a malformed file, a bad flag, an invalid config. Exit 2. */
export class InputError extends Error {
  readonly exitCode = 2;
  /** @param file the file (or flag / config key path) the problem is in, quoted in the message */
  constructor(
    message: string,
    readonly file?: string,
  ) {
    super(file ? `${file}: ${message}` : message);
    this.name = "InputError";
  }
}

/** A backend (engine, inference server) failed; the input may be fine. Exit 3. */
export class BackendError extends Error {
  readonly exitCode = 3;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BackendError";
  }
}

export const EXIT = Object.freeze({ pass: 0, fail: 1, input: 2, fault: 3 });

/** Exit code for any thrown value: InputError → 2, everything else → 3. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof InputError) return EXIT.input;
  return EXIT.fault;
}

/**
 * Control characters (ANSI escapes, carriage returns), bidi overrides and Unicode tag
 * characters. Messages quote names from untrusted files (tensor names, folder names); on a
 * terminal or in a CI log these could rewrite the line or start a new one (a GitHub workflow
 * command such as `::error::` must begin a line).
 */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]|[\u{e0000}-\u{e007f}]/gu;

/** `s` as one printable line: every control, bidi or tag character becomes a space. */
export function oneLine(s: string): string {
  return s.replace(UNPRINTABLE, " ");
}

/** One line, for stderr: no stack for input errors. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return oneLine(err.message.split("\n")[0] ?? String(err));
  return oneLine(String(err));
}
