/**
 * Model-generated text is untrusted: it goes into PR comments, check runs and job summaries.
 * These functions make it inert in GitHub-flavoured markdown: no @-mentions or #refs that
 * notify, no raw HTML, no links or images, no headings, tables or fences that escape.
 */

/** Marker appended when text is cut. */
export const CUT_MARKER = " …[truncated]";

/** Default cap for one excerpt of model output in a report. */
export const DEFAULT_EXCERPT_CHARS = 600;

const ZWSP = "\u200b";

/**
 * Characters that hide or reorder text: C0/C1 controls (not \n, \t), bidi overrides, isolates
 * and marks, BOM, and Unicode tag characters (U+E0000–E007F) — invisible on GitHub but read
 * by any LLM that later reads the comment, so a model could smuggle instructions in them.
 */
export const HIDDEN_CHARS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]|[\u{e0000}-\u{e007f}]/gu;

/** Remove control, bidi and tag characters that can hide or reorder text. */
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

/** `$` too: GitHub renders `$…$` as math, which model text could use to draw a fake verdict. */
const MD_SPECIAL = /[\\`*_{}\[\]()<>#+\-!|~=$]/g;

/**
 * Inline-safe text: one line, every markdown metacharacter escaped, HTML entities encoded,
 * mentions and references broken with a zero-width space so GitHub does not link them.
 */
export function neutraliseInline(text: string, max = DEFAULT_EXCERPT_CHARS): string {
  let s = stripControls(String(text)).replace(/\s+/g, " ").trim();
  s = cut(s, max);
  s = s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  // escape markdown punctuation (but not the '&' of entities we just produced)
  s = s.replace(MD_SPECIAL, (c) => `\\${c}`);
  // @user, @org/team, #123, GH-123: break the autolink with a zero-width space
  s = s.replace(/@/g, `@${ZWSP}`).replace(/#(?=\d)/g, `#${ZWSP}`);
  // bare URLs and domains are autolinked by GitHub: break the scheme and the dots
  s = s.replace(/\b([a-z][a-z0-9+.-]*):\/\//gi, `$1:${ZWSP}//`).replace(/\bwww\./gi, `www${ZWSP}.`);
  return s;
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
