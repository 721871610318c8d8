/**
 * The one validation toolkit. Every value that comes from outside — delta-audit.yml, a sweep
 * registry, a command-line flag, an Action input — is checked here, so a bad one is refused
 * the same way wherever it comes from: an InputError (exit 2) that names where it came from
 * (the file, the flag, the input), the key path inside it, the bad value and what was expected:
 *
 *   delta-audit.yml: probes.extra[2].kind: expected one of probe, ordinary, got "x"
 *   --rank: expected 1..1024, got '0'
 *   input 'device': Invalid value 'tpu'. Expected one of: cpu, cuda
 *
 * Two kinds of helper: typed values from a parsed YAML/JSON document (`integer`, `mapping`, …)
 * and text from a command line or an Action input (`parseInteger`, `integerFlag`, …).
 */
import { InputError } from "./errors";

/** Where values come from; it words every error about them. */
export interface Origin {
  /** what every message starts with: the file, `--flag`, `input 'name'` */
  readonly label: string;
  /** throw: `what` is wrong with the value at `path` (a key path such as `models[1].name`; "" = the whole value) */
  fail(path: string, what: string): never;
  /** throw: the value at `path` is not `expected` (a phrase: "an integer", "1..1024", "one of a, b") */
  mismatch(path: string, expected: string, got: unknown): never;
  /** the phrase for a choice among `options` */
  choices(options: readonly string[]): string;
}

/** Values longer than this are cut when quoted: an error line names the problem, it does not echo a file. */
const MAX_SHOWN_CHARS = 60;

/** A parsed YAML/JSON value as an error quotes it: strings in JSON quotes, containers by kind. */
export function showValue(v: unknown): string {
  const s = typeof v === "string" ? JSON.stringify(v) : v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "a mapping" : String(v);
  return s.length > MAX_SHOWN_CHARS ? `${s.slice(0, MAX_SHOWN_CHARS - 3)}...` : s;
}

/** `path.key` (or `key` at the top). */
function keyPath(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

/** `path[i]`. */
export function itemPath(path: string, i: number): string {
  return `${path}[${i}]`;
}

/** A YAML or JSON file: `FILE: key.path: expected …, got "x"`. */
export function fileOrigin(file: string): Origin {
  const fail = (path: string, what: string): never => {
    throw new InputError(`${path || "the top level"}: ${what}`, file);
  };
  return {
    label: file,
    fail,
    mismatch: (path, expected, got) => fail(path, `expected ${expected}, got ${showValue(got)}`),
    choices: (options) => `one of ${options.join(", ")}`,
  };
}

/**
 * A value named by one label — a command-line flag (`--rank`), an environment variable, a
 * backend option: `LABEL: expected …, got 'x'`.
 */
export function namedOrigin(label: string): Origin {
  const fail = (path: string, what: string): never => {
    throw new InputError(path ? `${path}: ${what}` : what, label);
  };
  return {
    label,
    fail,
    mismatch: (path, expected, got) => fail(path, `expected ${expected}, got '${String(got)}'`),
    choices: (options) => `one of ${options.join(", ")}`,
  };
}

/** An Action input, in the actions/checkout wording: `input 'name': Invalid value 'x'. Expected …`. */
export function inputOrigin(name: string): Origin {
  const label = `input '${name}'`;
  const fail = (path: string, what: string): never => {
    throw new InputError(path ? `${path}: ${what}` : what, label);
  };
  return {
    label,
    fail,
    mismatch: (path, expected, got) => fail(path, `Invalid value '${String(got)}'. Expected ${expected}`),
    choices: (options) => `one of: ${options.join(", ")}`,
  };
}

// ---------------------------------------------------------------- bounds

/** Inclusive bounds, and optionally the phrase errors use for them instead of `MIN..MAX`. */
export interface Bounds {
  min: number;
  max: number;
  /** what to call an acceptable value in every error, e.g. "a port number 0-65535" */
  expected?: string;
}

/** `MIN..MAX`; an integer with no real upper bound is "an integer of at least MIN". */
function rangePhrase(b: Bounds, integer: boolean): string {
  if (b.expected) return b.expected;
  if (integer && b.max >= Number.MAX_SAFE_INTEGER) return `an integer of at least ${b.min}`;
  return `${b.min}..${b.max}`;
}

// ---------------------------------------------------------------- parsed YAML/JSON values

type Mapping = Record<string, unknown>;

/** A mapping whose keys are all in `allowed`: a typo must not silently fall back to a default. */
export function mapping(o: Origin, v: unknown, path: string, allowed: readonly string[]): Mapping {
  if (v === null || typeof v !== "object" || Array.isArray(v)) o.mismatch(path, "a mapping", v);
  for (const key of Object.keys(v as Mapping)) {
    if (!allowed.includes(key)) o.fail(keyPath(path, key), `unknown key (allowed: ${allowed.join(", ")})`);
  }
  return v as Mapping;
}

/** `v` itself; a missing (undefined) value is an error. */
export function required<T>(o: Origin, v: T | undefined, path: string): T {
  if (v === undefined) o.fail(path, "is required");
  return v;
}

/** A whole number within the bounds (YAML `1.0` is the number 1; `"1"` is a string, refused). */
export function integer(o: Origin, v: unknown, path: string, b: Bounds): number {
  if (typeof v !== "number" || !Number.isInteger(v)) o.mismatch(path, b.expected ?? "an integer", v);
  if (v < b.min || v > b.max) o.mismatch(path, rangePhrase(b, true), v);
  return v;
}

/** A finite number within the bounds (`.nan` and `.inf` are refused). */
export function number(o: Origin, v: unknown, path: string, b: Bounds): number {
  if (typeof v !== "number" || !Number.isFinite(v)) o.mismatch(path, b.expected ?? "a number", v);
  if (v < b.min || v > b.max) o.mismatch(path, rangePhrase(b, false), v);
  return v;
}

export function boolean(o: Origin, v: unknown, path: string): boolean {
  if (typeof v !== "boolean") o.mismatch(path, "true or false", v);
  return v;
}

/** A non-blank string of at most `maxChars` characters. */
export function text(o: Origin, v: unknown, path: string, maxChars: number): string {
  if (typeof v !== "string") o.mismatch(path, "a string", v);
  if (v.trim() === "") o.fail(path, "must not be empty");
  if (v.length > maxChars) o.fail(path, `longer than ${maxChars} characters`);
  return v;
}

export function oneOf<T extends string>(o: Origin, v: unknown, path: string, options: readonly T[]): T {
  if (typeof v !== "string" || !options.includes(v as T)) o.mismatch(path, o.choices(options), v);
  return v as T;
}

/** A list of at most `max` entries (and at least `min`, default 0). */
export function list(o: Origin, v: unknown, path: string, b: { max: number; min?: number }): unknown[] {
  const min = b.min ?? 0;
  if (!Array.isArray(v)) o.mismatch(path, min > 0 ? "a non-empty list" : "a list", v);
  if (v.length < min) o.fail(path, min === 1 ? "expected a non-empty list" : `at least ${min} entries, got ${v.length}`);
  if (v.length > b.max) o.fail(path, `at most ${b.max} entries, got ${v.length}`);
  return v;
}

/**
 * A set of whole numbers written as a list (`[1, 2, 4, 8]`): 1 to `max` entries, each within the
 * bounds, none twice (a repeated value is a typo, never a request to do the work twice).
 */
export function integerSet(o: Origin, v: unknown, path: string, b: Bounds & { maxEntries: number }): number[] {
  const items = list(o, v, path, { max: b.maxEntries, min: 1 }).map((item, i) => integer(o, item, itemPath(path, i), b));
  return distinct(o, items, path);
}

function distinct(o: Origin, items: number[], path: string): number[] {
  const seen = new Set<number>();
  for (const x of items) {
    if (seen.has(x)) o.fail(path, `lists ${x} twice`);
    seen.add(x);
  }
  return items;
}

const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** Longer names are not environment variables anyone sets. */
const MAX_ENV_VAR_NAME_CHARS = 200;

/** An environment variable's name: a config names the variable, it never holds the secret. */
export function envVarName(o: Origin, v: unknown, path: string): string {
  const s = text(o, v, path, MAX_ENV_VAR_NAME_CHARS);
  if (!ENV_VAR_NAME.test(s)) o.mismatch(path, "an environment variable name", s);
  return s;
}

/** Server URLs are short; a longer value is not one anyone typed. */
const MAX_URL_CHARS = 2000;

/** `raw` with any `user:password@` cut out, for quoting in a message. */
function withoutCredentials(raw: string): string {
  return raw.replace(/\/\/[^/?#]*@/, "//");
}

/**
 * The one rule for a server URL, wherever it is given (delta-audit.yml, --inference-url, the
 * Action input, a backend's options): an absolute http: or https: URL of at most MAX_URL_CHARS
 * characters without credentials. file:, data: and the like reach things a server URL must not;
 * credentials in a URL end up in logs, report.json notices and PR comments, so the key belongs
 * in the environment. `expected` words the error (default "an http(s) URL").
 */
export function parseHttpUrl(o: Origin, raw: string, path: string, expected = "an http(s) URL"): URL {
  if (raw.length > MAX_URL_CHARS) o.fail(path, `longer than ${MAX_URL_CHARS} characters`);
  let u: URL | undefined;
  try {
    u = new URL(raw);
  } catch {
    u = undefined;
  }
  if (u === undefined || (u.protocol !== "http:" && u.protocol !== "https:")) o.mismatch(path, expected, withoutCredentials(raw));
  if (u.username || u.password) o.fail(path, "credentials in the URL are not supported; pass the API key through the environment");
  return u;
}

/** An http(s) URL in a parsed file (parseHttpUrl's rule); `expected` words the error. */
export function httpUrl(o: Origin, v: unknown, path: string, expected?: string): string {
  const s = text(o, v, path, MAX_URL_CHARS);
  parseHttpUrl(o, s, path, expected);
  return s;
}

// ---------------------------------------------------------------- text (flags, Action inputs)

/** Digits only: no sign, exponent, hex, binary, separators or fraction (`Number()` would take `1e3`, `0x10`, ``). */
const UNSIGNED_DIGITS = /^\d+$/;
const SIGNED_DIGITS = /^[-+]?\d+$/;
/** A plain decimal number (`0.5`, `.5`, `2`, `1e-3`); not hex, not `Infinity`, not empty. */
const DECIMAL = /^[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$/;

/**
 * An integer written in decimal digits, within the bounds. A sign is accepted only when the
 * bounds allow negative values, so `-1` for a count is "not an integer" of the kind asked for.
 * Values beyond 2^53 are out of bounds, never rounded.
 */
export function parseInteger(o: Origin, raw: string, path: string, b: Bounds): number {
  const s = raw.trim();
  if (!(b.min < 0 ? SIGNED_DIGITS : UNSIGNED_DIGITS).test(s)) o.mismatch(path, b.expected ?? "an integer", raw);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n < b.min || n > b.max) o.mismatch(path, rangePhrase(b, true), raw);
  return n;
}

/** A finite decimal number within the bounds. */
function parseNumber(o: Origin, raw: string, path: string, b: Bounds): number {
  const s = raw.trim();
  if (!DECIMAL.test(s)) o.mismatch(path, b.expected ?? "a number", raw);
  const n = Number(s);
  if (!Number.isFinite(n) || n < b.min || n > b.max) o.mismatch(path, rangePhrase(b, false), raw);
  return n;
}

/** integerSet's rule for text: `1,2,4,8` (spaces around the commas allowed). */
export function parseIntegerSet(o: Origin, raw: string, path: string, b: Bounds & { maxEntries: number }): number[] {
  const parts = raw.split(",");
  if (raw.trim() === "") o.mismatch(path, "a comma-separated list such as 1,2,4,8", raw);
  if (parts.length > b.maxEntries) o.fail(path, `at most ${b.maxEntries} entries, got ${parts.length}`);
  return distinct(o, parts.map((p) => parseInteger(o, p, path, b)), path);
}

/** YAML 1.2 core-schema booleans, as @actions/core accepts them. */
export function parseBoolean(o: Origin, raw: string, path: string): boolean {
  if (["true", "True", "TRUE"].includes(raw)) return true;
  if (["false", "False", "FALSE"].includes(raw)) return false;
  return o.mismatch(path, "true or false", raw);
}

export function parseChoice<T extends string>(o: Origin, raw: string, path: string, options: readonly T[]): T {
  if (!(options as readonly string[]).includes(raw)) o.mismatch(path, o.choices(options), raw);
  return raw as T;
}

/** An integer flag; an absent flag stays undefined (`integerFlag(args.x, "--x", b) ?? DEFAULT`). */
export function integerFlag(value: string, flag: string, b: Bounds): number;
export function integerFlag(value: string | undefined, flag: string, b: Bounds): number | undefined;
export function integerFlag(value: string | undefined, flag: string, b: Bounds): number | undefined {
  return value === undefined ? undefined : parseInteger(namedOrigin(flag), value, "", b);
}

/** A number flag; an absent flag stays undefined. */
export function numberFlag(value: string, flag: string, b: Bounds): number;
export function numberFlag(value: string | undefined, flag: string, b: Bounds): number | undefined;
export function numberFlag(value: string | undefined, flag: string, b: Bounds): number | undefined {
  return value === undefined ? undefined : parseNumber(namedOrigin(flag), value, "", b);
}

/** A flag with a fixed set of values; an absent flag stays undefined. */
export function choiceFlag<T extends string>(value: string, flag: string, options: readonly T[]): T;
export function choiceFlag<T extends string>(value: string | undefined, flag: string, options: readonly T[]): T | undefined;
export function choiceFlag<T extends string>(value: string | undefined, flag: string, options: readonly T[]): T | undefined {
  return value === undefined ? undefined : parseChoice(namedOrigin(flag), value, "", options);
}

/** A server URL flag (parseHttpUrl's rule), checked before any work starts; an absent flag stays undefined. */
export function urlFlag(value: string | undefined, flag: string): string | undefined {
  if (value !== undefined) parseHttpUrl(namedOrigin(flag), value, "");
  return value;
}

/** A flag that must be given: `--flag: required: WHAT` (`what` says what it names). */
export function requiredFlag(value: string | undefined, flag: string, what: string): string {
  if (!value) throw new InputError(`required: ${what}`, flag);
  return value;
}
