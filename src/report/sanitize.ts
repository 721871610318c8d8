/**
 * Model-generated text is untrusted: it goes into PR comments, check runs and job summaries.
 * These functions make it inert in GitHub-flavoured markdown: no @-mentions or #refs that
 * notify, no raw HTML, no links, autolinks or images, no emoji shortcodes, no invisible text,
 * no headings, tables or fences that escape.
 */

/** Marker appended when text is cut. */
export const CUT_MARKER = " …[truncated]";

/** Default cap for one excerpt of model output in a report. */
export const DEFAULT_EXCERPT_CHARS = 600;

const ZWSP = "\u200b";

/**
 * Characters that hide or reorder text: C0/C1 controls (not \n, \t), bidi overrides, isolates
 * and marks, BOM, and the invisible format characters — zero-width space, non-joiner and joiner
 * (U+200B–200D), word joiner and invisible operators (U+2060–2064, with the deprecated format
 * controls up to U+206F), soft hyphen, combining grapheme joiner, Hangul fillers (U+115F, U+1160,
 * U+3164, U+FFA0), Khmer and Mongolian invisibles, interlinear annotation marks, variation
 * selectors (VS1–16 U+FE00–FE0F and VS17–256 U+E0100–E01EF) and tag characters
 * (U+E0000–E007F). All render as nothing on GitHub but are read by any LLM that later reads the
 * comment: a string of variation selectors or tag characters after a visible character encodes
 * arbitrary hidden bytes, so a model could smuggle instructions in them. Emoji lose their
 * joiners and presentation selectors; that is the price.
 */
export const HIDDEN_CHARS =
  /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb]|[\u{1d173}-\u{1d17a}\u{e0000}-\u{e007f}\u{e0100}-\u{e01ef}]/gu;

/** Remove control, bidi, invisible format and tag characters that can hide or reorder text. */
export function stripControls(s: string): string {
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
 * Inline-safe text: one line, every markdown metacharacter escaped, HTML entities encoded,
 * mentions broken with a zero-width space, and links, references and emoji shortcodes shown
 * as inline code so GitHub neither links, notifies nor draws them.
 */
export function neutraliseInline(text: string, max = DEFAULT_EXCERPT_CHARS): string {
  const s = cut(stripControls(String(text)).replace(/\s+/g, " ").trim(), max);
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
  const s = cut(stripControls(String(text)), max);
  let longest = 0;
  for (const m of s.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  // also guard against tilde fences
  const fence = "`".repeat(Math.max(3, longest + 1));
  return `${fence}text\n${s.replace(/\r\n?/g, "\n")}\n${fence}`;
}

/** Cut a whole markdown document to `max` characters at a line boundary, with a visible note. */
export function cutDocument(markdown: string, max: number, note = "\n\n_…report truncated to fit GitHub's size limit; see the full report artifact._\n"): string {
  if (markdown.length <= max) return markdown;
  const budget = Math.max(0, max - note.length);
  let end = markdown.lastIndexOf("\n", budget);
  if (end < budget / 2) end = budget;
  let head = markdown.slice(0, end);
  // do not leave a fence open: count fence lines and close if odd
  const fences = head.match(/^(`{3,}|~{3,})/gm) ?? [];
  if (fences.length % 2 === 1) head += `\n${fences[fences.length - 1]}`;
  const out = head + note;
  return out.length <= max ? out : out.slice(0, max);
}
