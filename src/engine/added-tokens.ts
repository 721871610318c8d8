/**
 * The tokens a full fine-tune added (delta/vocab-growth.ts), decoded by its own tokenizer for
 * the report. Token texts come from the model's files, which are hostile input: each is made
 * visible (no character that hides or reorders text survives as itself, line breaks become
 * escapes) and cut, and the list is capped. The report views then neutralise them as they do
 * every finding's terms (report/sanitize.ts).
 */
import { join } from "node:path";
import { HIDDEN_CHARS, describeError } from "../errors";
import { pathExists } from "../io/fs-util";
import type { AddedToken, VocabularyGrowth } from "../delta/types";
import { loadTokenizer, type TextTokenizer } from "./tokenizer";

/** Added tokens listed in report.json (and as the finding's terms): chat and tool markers are a handful. */
export const MAX_LISTED_ADDED_TOKENS = 64;
/** Characters of one token's text shown; real special tokens are short (`<|im_start|>` is 12). */
export const MAX_ADDED_TOKEN_CHARS = 48;
/**
 * Added rows decoded: enough for any chat-token extension and its padding; a larger growth (a
 * vocabulary extension for a new language) is counted, not decoded row by row.
 */
export const MAX_DECODED_ROWS = 4096;

/** Whitespace controls written as their usual escapes (not a sign of hiding: "\n\n" is a common token). */
const ESCAPES: Readonly<Record<string, string>> = Object.freeze({ "\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\" });
/** One character that hides or reorders text (errors.ts HIDDEN_CHARS), or a line separator HIDDEN_CHARS leaves to oneLine. */
const HIDING = new RegExp(`${HIDDEN_CHARS.source}|[\u2028\u2029]`, "u");

/**
 * A token's text as the report shows it: `\t` `\n` `\r` and `\\` escaped; every other character
 * that hides or reorders text (HIDDEN_CHARS: controls, bidi overrides, zero-width and tag
 * characters; U+2028/2029) as `\u{…}` (these set `hidden`, wherever they are in the text);
 * spaces at either end as `␣` (views collapse them); cut to `max` characters with `…`.
 */
export function visibleTokenText(raw: string, max = MAX_ADDED_TOKEN_CHARS): Omit<AddedToken, "id"> {
  // a carriage return is whitespace here (a "\r\n" token), though HIDDEN_CHARS lists it
  const hidden = HIDING.test(raw.replace(/\r/g, ""));
  const pieces: string[] = [];
  let length = 0;
  let shown = 0;
  for (const ch of raw) {
    length++;
    // escape only what can be shown (a hostile token may be megabytes long); count the rest
    if (shown > max) continue;
    const escape = ESCAPES[ch] ?? (HIDING.test(ch) ? `\\u{${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0")}}` : ch);
    pieces.push(escape);
    shown += Array.from(escape).length;
  }
  const chars = Array.from(pieces.join("").replace(/^ +| +$/g, (run) => "␣".repeat(run.length)));
  const cut = chars.length > max;
  const out: Omit<AddedToken, "id"> = { text: cut ? `${chars.slice(0, max - 1).join("")}…` : chars.join("") };
  if (cut) out.length = length;
  if (hidden) out.hidden = true;
  return out;
}

/** The decoded text of one id, "" where no token has it (padding) or it decodes to nothing. */
function decodeOne(tok: TextTokenizer, id: number): string {
  if (!tok.hasToken(id)) return "";
  try {
    const t = tok.decode([id], { skipSpecialTokens: false });
    return typeof t === "string" ? t : "";
  } catch {
    return "";
  }
}

/**
 * `growth` with its added rows decoded by the tokenizer in `dir` (the fine-tune's folder):
 * the listed tokens (hidden-character ones first, then by id), the rows that decode to
 * nothing, the count of tokens with hidden characters. A missing or unreadable tokenizer is
 * recorded as `tokenizerProblem`, never an error: the rows are still reported.
 */
export async function describeAddedTokens(dir: string, growth: VocabularyGrowth): Promise<VocabularyGrowth> {
  const out: VocabularyGrowth = { baseRows: growth.baseRows, rows: growth.rows, tensors: [...growth.tensors] };
  let tok: TextTokenizer;
  try {
    if (!(await pathExists(join(dir, "tokenizer.json")))) return { ...out, tokenizerProblem: "the fine-tune has no tokenizer.json" };
    tok = await loadTokenizer(dir);
  } catch (err) {
    return { ...out, tokenizerProblem: `its tokenizer could not be read: ${describeError(err)}` };
  }
  const decoded = Math.min(growth.rows - growth.baseRows, MAX_DECODED_ROWS);
  const found: AddedToken[] = [];
  let empty = 0;
  for (let id = growth.baseRows; id < growth.baseRows + decoded; id++) {
    const raw = decodeOne(tok, id);
    if (raw === "") empty++;
    else found.push({ id, ...visibleTokenText(raw) });
  }
  const hidden = found.filter((t) => t.hidden).length;
  // the tokens a reviewer must not miss come first, so the cap never hides them
  found.sort((a, b) => Number(b.hidden ?? false) - Number(a.hidden ?? false) || a.id - b.id);
  return { ...out, tokens: found.slice(0, MAX_LISTED_ADDED_TOKENS), decodedRows: decoded, emptyRows: empty, hiddenTokens: hidden };
}
