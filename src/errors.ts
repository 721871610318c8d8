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
 * Characters that hide, reorder or rewrite text: C0/C1 controls (not \n, \t), bidi overrides,
 * isolates and marks, BOM, and the invisible format characters — zero-width space, non-joiner
 * and joiner (U+200B–200D), word joiner and invisible operators (U+2060–2064, with the deprecated
 * format controls up to U+206F), soft hyphen, combining grapheme joiner, Hangul fillers (U+115F,
 * U+1160, U+3164, U+FFA0), Khmer and Mongolian invisibles, interlinear annotation marks,
 * variation selectors (VS1–16 U+FE00–FE0F and VS17–256 U+E0100–E01EF) and tag characters
 * (U+E0000–E007F). The one list: the markdown sanitiser (report/sanitize.ts), log lines
 * (`oneLine`) and quoted server messages (backends/http.ts) all use it.
 *
 * On a terminal or in a CI log a control character could rewrite the line or start a new one
 * (a GitHub workflow command such as `::error::` must begin a line). On GitHub the rest render
 * as nothing but are read by any LLM that later reads the text: a string of variation selectors
 * or tag characters after a visible character encodes arbitrary hidden bytes, so a model could
 * smuggle instructions in them. Emoji lose their joiners and presentation selectors; that is
 * the price.
 */
export const HIDDEN_CHARS =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb]|[\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}]/gu;

/** What ends or splits a line besides the controls in HIDDEN_CHARS. */
const LINE_BREAKS = /[\n\t\u2028\u2029]/g;

/**
 * `s` as one printable line: every hidden character (HIDDEN_CHARS) and line break becomes a
 * space. Messages quote names from untrusted files (tensor names, folder names).
 */
export function oneLine(s: string): string {
  return s.replace(HIDDEN_CHARS, " ").replace(LINE_BREAKS, " ");
}

/** One line, for stderr: no stack for input errors. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return oneLine(err.message.split("\n")[0] ?? String(err));
  return oneLine(String(err));
}
