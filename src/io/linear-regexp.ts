/**
 * Regular expressions written by whoever supplied the input (an adapter's `rank_pattern`, a
 * config's behaviour patterns) meet text that an adversary also controls (module names, the
 * audited model's replies): `(a|aa)*c` against a long run of `a`s backtracks exponentially and
 * hangs the audit, and no syntactic check catches every such shape. V8's experimental linear
 * engine (no look-around, back-references, `i`/`u` flags or huge counted repetitions) matches
 * in time linear in the text. It is behind a V8 flag that only enables the `l` flag.
 */
import { setFlagsFromString } from "node:v8";

/** `"l"` when this V8 has the linear engine (enabled here if needed), else undefined. */
export const LINEAR_REGEXP_FLAG: string | undefined = (() => {
  const works = () => {
    try {
      new RegExp("a", "l");
      return true;
    } catch {
      return false;
    }
  };
  if (works()) return "l";
  try {
    setFlagsFromString("--enable-experimental-regexp-engine");
  } catch {
    return undefined;
  }
  return works() ? "l" : undefined;
})();

/**
 * `new RegExp(source, flags)` on the linear engine; a SyntaxError when the pattern (or a flag)
 * cannot run there. Without the engine (a V8 that dropped the flag) the ordinary one is used.
 */
export function linearRegExp(source: string, flags = ""): RegExp {
  return new RegExp(source, LINEAR_REGEXP_FLAG ? flags + LINEAR_REGEXP_FLAG : flags);
}

/**
 * A quantified group that itself contains a quantifier, e.g. `(a+)+`: the shape of catastrophic
 * backtracking on the ordinary engine. Refused in PEFT `rank_pattern` keys and in behaviour
 * patterns before they are compiled, so a V8 without the linear engine is guarded too.
 */
export const NESTED_QUANTIFIER = /\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]/;
