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

/** One line, for stderr: no stack for input errors. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message.split("\n")[0] ?? String(err);
  return String(err);
}
