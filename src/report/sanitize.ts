/**
 * Model-generated text is untrusted: it goes into PR comments, check runs and job summaries.
 * These functions make it inert in GitHub-flavoured markdown: no @-mentions or #refs that
 * notify, no raw HTML, no links, autolinks or images, no emoji shortcodes, no invisible text,
 * no headings, tables or fences that escape.
 */
import { HIDDEN_CHARS } from "../errors";

/** Marker appended when text is cut. */
export const CUT_MARKER = " …[truncated]";

/** Default cap for one excerpt of model output in a report. */
const DEFAULT_EXCERPT_CHARS = 600;

const ZWSP = "\u200b";

/** Remove the characters that can hide or reorder text (errors.ts HIDDEN_CHARS). */
function stripControls(s: string): string {
  return s.replace(HIDDEN_CHARS, "");
}

/** Cut to at most `max` characters (code points), appending CUT_MARKER when cut. */
export function cut(text: string, max: number): string {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  const keep = Math.max(0, max - CUT_MARKER.length);
  return chars.slice(0, keep).join("") + CUT_MARKER;
}

/**
 * What GitHub turns into a link, a cross-reference or an emoji inside ordinary text (its
 * filters run on the rendered text, so backslash escapes and entities do not stop them; they
 * skip code spans). Each match is shown as inline code: visible, copyable as it was written
 * (a URL in an error stays usable), and inert. In order of precedence:
 * - URLs with a scheme and `www.` domains (trailing punctuation stays outside, as GitHub does);
 * - `owner/repo#123` and `owner/repo@sha` cross-references, `#123` and `GH-123` (both notify
 *   the referenced issue's subscribers);
 * - commit SHAs: 7–40 hex characters as a word (GitHub links any that names a commit, and a
 *   short prefix can be brute-forced in a pull request);
 * - emoji shortcodes, `:white_check_mark:` (a forged ✅ next to a failing verdict).
 * No token holds whitespace, a backtick or `|`, so one backtick delimits it and a table cell
 * is not split.
 */
const LINKABLE = new RegExp(
  [
    /\b[a-z][a-z0-9+.-]*:\/\/[^\s<>"'`|]*[^\s<>"'`|.,:;!?)\]}*_~]/.source,
    /\bwww\.[^\s<>"'`|]*[^\s<>"'`|.,:;!?)\]}*_~]/.source,
    /\b[\w.-]+\/[\w.-]+(?:#\d+|@[0-9a-f]{7,40}\b)/.source,
    /#\d+/.source,
    /\bgh-\d+/.source,
    /\b[0-9a-f]{7,40}\b/.source,
    // GitHub's names are letters, digits, `_`, `+` and `-` (`:+1:`, `:100:`); one with no
    // letter or sign other than 100/1234 is a time or a ratio (12:30:45), left alone
    /:(?:[\w+-]*[a-z_+-][\w+-]*|100|1234):/.source,
  ].join("|"),
  "gi",
);

/** `$` too: GitHub renders `$…$` as math, which model text could use to draw a fake verdict. */
const MD_SPECIAL = /[\\`*_{}\[\]()<>#+\-!|~=$]/g;

/** Plain text made inert: HTML entities encoded, markdown punctuation escaped, mentions broken. */
function escapePlain(s: string): string {
  let out = s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  // escape markdown punctuation (but not the '&' of entities we just produced)
  out = out.replace(MD_SPECIAL, (c) => `\\${c}`);
  // @user, @org/team: break the mention with a zero-width space (never inside a code span, so
  // URLs, which are, stay copyable)
  return out.replace(/@/g, `@${ZWSP}`);
}

/**
 * Plain text on one line, cut to `max`: hidden characters removed, whitespace collapsed. The
 * first step of neutraliseInline, and all a plain-text field needs (check-run annotations).
 */
export function plainLine(text: string, max: number): string {
  return cut(stripControls(String(text)).replace(/\s+/g, " ").trim(), max);
}

/**
 * Inline-safe text: one line, every markdown metacharacter escaped, HTML entities encoded,
 * mentions broken with a zero-width space, and links, references and emoji shortcodes shown
 * as inline code so GitHub neither links, notifies nor draws them.
 */
export function neutraliseInline(text: string, max = DEFAULT_EXCERPT_CHARS): string {
  const s = plainLine(text, max);
  let out = "";
  let last = 0;
  for (const m of s.matchAll(LINKABLE)) {
    out += escapePlain(s.slice(last, m.index)) + `\`${m[0]}\``;
    last = m.index + m[0].length;
  }
  return out + escapePlain(s.slice(last));
}

/**
 * Inline code that cannot be closed early or carry markup: controls and newlines dropped, a
 * backtick run longer than any inside fenced around it, and `|` escaped because a table cell
 * ends at an unescaped '|', even inside backticks.
 */
export function inlineCode(text: string, max = DEFAULT_EXCERPT_CHARS): string {
  const clean = cut(String(text).replace(/[\n\t]/g, " ").replace(HIDDEN_CHARS, " "), max);
  let longest = 0;
  for (const m of clean.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  const fence = "`".repeat(longest + 1);
  const pad = clean.startsWith("`") || clean.endsWith("`") ? " " : "";
  return `${fence}${pad}${clean.replace(/\|/g, "\\|")}${pad}${fence}`;
}

/**
 * Block-safe text for a fenced code block: returns the whole block, with a fence longer
 * than any backtick run inside so the text cannot close it. Inside a fence GitHub renders
 * nothing (no HTML, no mentions, no links), so only controls and length need handling.
 */
export function fencedBlock(text: string, max = DEFAULT_EXCERPT_CHARS): string {
  // a carriage return (alone or before \n) ends a line; stripControls would remove it and join the lines
  const s = cut(stripControls(String(text).replace(/\r\n?/g, "\n")), max);
  let longest = 0;
  for (const m of s.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  // a tilde line inside cannot close a backtick fence (CommonMark §4.5: same character)
  const fence = "`".repeat(Math.max(3, longest + 1));
  return `${fence}text\n${s}\n${fence}`;
}

/**
 * The fence still open at the end of `markdown`, as the line that closes it, or undefined.
 * CommonMark §4.5: a fence is closed only by a run of the same character at least as long
 * (with nothing after it), so a shorter ``` inside a fencedBlock is text, not a fence.
 */
function openFence(markdown: string): string | undefined {
  let open: { ch: string; len: number } | undefined;
  for (const line of markdown.split("\n")) {
    const m = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line);
    if (!m) continue;
    const run = m[1]!;
    const rest = m[2]!;
    if (open) {
      if (run[0] === open.ch && run.length >= open.len && rest.trim() === "") open = undefined;
    } else if (!(run[0] === "`" && rest.includes("`"))) {
      // a backtick fence's info string holds no backtick; otherwise the line is a code span
      open = { ch: run[0]!, len: run.length };
    }
  }
  return open && open.ch.repeat(open.len);
}

/** Cut a whole markdown document to `max` characters at a line boundary, with a visible note. */
export function cutDocument(markdown: string, max: number, note = "\n\n_…report truncated to fit GitHub's size limit; see the full report artifact._\n"): string {
  if (markdown.length <= max) return markdown;
  let budget = Math.max(0, max - note.length);
  for (;;) {
    let end = markdown.lastIndexOf("\n", budget);
    if (end < budget / 2) end = budget;
    let head = markdown.slice(0, end);
    // do not leave a fence open, or the note would be shown as code
    const fence = openFence(head);
    if (fence) head += `\n${fence}`;
    const out = head + note;
    if (out.length <= max || budget === 0) return out.slice(0, max);
    // the closing fence did not fit: cut earlier by what overflowed
    budget = Math.max(0, budget - (out.length - max));
  }
}
