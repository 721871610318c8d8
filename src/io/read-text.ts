/**
 * Bounded reads of small text files (JSON and YAML configs) that may be hostile: a FIFO or a
 * symlink to /dev/zero planted where a config is expected must not hang or exhaust memory,
 * and a parse error must not quote the file's bytes (a config symlinked to /etc/passwd or
 * /proc/self/environ would otherwise leak its first line into a PR comment).
 */
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { open } from "node:fs/promises";
import { parse as parseYaml } from "yaml";
import { InputError } from "../errors";

/** The checks both readers make; each throws InputError naming `what`. */
function openFailure(err: unknown, what: string): InputError {
  const code = (err as NodeJS.ErrnoException).code;
  return new InputError(code === "ENOENT" ? "file not found" : code === "EISDIR" ? "is a folder, not a file" : `cannot read (${code ?? (err as Error).message})`, what);
}

function readFailure(err: unknown, what: string): InputError {
  if (err instanceof InputError) return err;
  return new InputError(`cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, what);
}

/** Refuse what is not a regular file within the limit; return the buffer to read into. */
function bufferFor(st: { isDirectory(): boolean; isFile(): boolean; size: number }, maxBytes: number, what: string): Buffer {
  if (st.isDirectory()) throw new InputError("is a folder, not a file", what);
  if (!st.isFile()) throw new InputError("is not a regular file", what);
  if (st.size > maxBytes) throw new InputError(`is ${st.size} bytes, over the ${maxBytes}-byte limit for this file`, what);
  // one byte more than allowed: a file that grew (or lied) shows as over the limit
  return Buffer.alloc(Math.min(maxBytes + 1, Math.max(st.size, 64 * 1024)));
}

function decoded(buf: Buffer, n: number, maxBytes: number, what: string): string {
  if (n > maxBytes) throw new InputError(`is over the ${maxBytes}-byte limit for this file`, what);
  return buf.subarray(0, n).toString("utf8");
}

// O_NONBLOCK: a FIFO opens at once (and is then refused) instead of waiting for a writer
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/**
 * Read a regular file as UTF-8, refusing anything else and anything over `maxBytes` — by
 * reading at most `maxBytes + 1` bytes, so a file that lies about its size (or grows) cannot
 * force more. `what` names the file in messages.
 */
export async function readTextFile(path: string, maxBytes: number, what = path): Promise<string> {
  let fh;
  try {
    fh = await open(path, OPEN_FLAGS);
  } catch (err) {
    throw openFailure(err, what);
  }
  try {
    const buf = bufferFor(await fh.stat(), maxBytes, what);
    let n = 0;
    while (n < buf.length) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    return decoded(buf, n, maxBytes, what);
  } catch (err) {
    throw readFailure(err, what);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * JSON.parse's message without the excerpt of the text V8 puts in it (`Unexpected token 'r',
 * "root:x:0:0"... is not valid JSON`): keep only where the error is.
 */
export function jsonSyntaxError(err: unknown, text?: string): string {
  const msg = err instanceof Error ? err.message : String(err);
  const at = /at position (\d+)(?: \(line (\d+) column (\d+)\))?/.exec(msg);
  if (at) {
    if (at[2]) return `JSON syntax error at line ${at[2]}, column ${at[3]}`;
    if (text === undefined) return `JSON syntax error at byte ${at[1]}`;
    const before = text.slice(0, Number(at[1]));
    const line = before.split("\n").length;
    return `JSON syntax error at line ${line}, column ${before.length - before.lastIndexOf("\n")}`;
  }
  if (/Unexpected end of JSON input/.test(msg)) return "the JSON ends early";
  return "JSON syntax error";
}

/**
 * Deepest nesting accepted in a JSON file we read. Real configs and tokenizers nest a few levels
 * (a tokenizer's Sequence of normalizers: under 10); JSON.parse itself copes with thousands,
 * but every recursive walk after it (JSON.stringify, the tokenizer's builders) would die with
 * "Maximum call stack size exceeded" — an internal error instead of a bad file.
 */
export const MAX_JSON_DEPTH = 256;

/** How deep `text`'s arrays/objects nest, stopping as soon as `limit` is passed (linear, no recursion). */
function nestingOver(text: string, limit: number): number | undefined {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > limit) return i;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return undefined;
}

/**
 * Parse a JSON file's text with one-line errors that never quote it (a symlink to a secret
 * must not leak into a message): a UTF-8 BOM is tolerated, nesting deeper than MAX_JSON_DEPTH
 * is refused before parsing. `what` names the file.
 */
export function parseJsonText(text: string, what: string): unknown {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // some Windows editors add one
  const deep = nestingOver(text, MAX_JSON_DEPTH);
  if (deep !== undefined) throw new InputError(`nests JSON more than ${MAX_JSON_DEPTH} levels deep (at byte ${deep}); no real config does`, what);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InputError(`is not valid JSON (${jsonSyntaxError(err, text)})`, what);
  }
}

/** Aliases are legal YAML but a billion-laughs vector: a real config uses a handful. */
const MAX_YAML_ALIASES = 100;

/**
 * `yaml` prints its warnings (unknown tags, collection keys) through process.emitWarning; our
 * contract is one stderr line per error and none otherwise, so only errors are reported.
 */
const YAML_LOG_LEVEL = "error";

/**
 * Parse a YAML (or JSON) file's text: aliases capped, duplicate keys refused (a second `rank:`
 * must not silently win), warnings kept off stderr, and a one-line error that never quotes the
 * file (yaml's excerpt of the text is on the lines after the first). `what` names the file.
 */
export function parseYamlText(text: string, what: string): unknown {
  try {
    return parseYaml(text, { maxAliasCount: MAX_YAML_ALIASES, uniqueKeys: true, logLevel: YAML_LOG_LEVEL });
  } catch (err) {
    throw new InputError(`not valid YAML: ${(err as Error).message.split("\n")[0]}`, what);
  }
}

/** readTextFile for synchronous callers (config loading): the same refusals and bound. */
export function readTextFileSync(path: string, maxBytes: number, what = path): string {
  let fd: number;
  try {
    fd = openSync(path, OPEN_FLAGS);
  } catch (err) {
    throw openFailure(err, what);
  }
  try {
    const buf = bufferFor(fstatSync(fd), maxBytes, what);
    let n = 0;
    while (n < buf.length) {
      const got = readSync(fd, buf, n, buf.length - n, n);
      if (got === 0) break;
      n += got;
    }
    return decoded(buf, n, maxBytes, what);
  } catch (err) {
    throw readFailure(err, what);
  } finally {
    closeSync(fd);
  }
}
