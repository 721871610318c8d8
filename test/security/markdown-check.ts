/**
 * An independent check that a GitHub-flavoured markdown body keeps untrusted text inert. It
 * does not reuse report/sanitize.ts: it parses fences and code spans the CommonMark way and
 * then looks for what must never appear outside them.
 */

/** Lines outside fenced code blocks, plus whether every fence was closed (CommonMark §4.5). */
export function outsideFences(md: string): { lines: string[]; unclosed: boolean; fencedLines: string[] } {
  const lines: string[] = [];
  const fencedLines: string[] = [];
  let open: { ch: string; len: number } | undefined;
  for (const line of md.split("\n")) {
    const m = /^ {0,3}(`{3,}|~{3,})(.*)$/.exec(line);
    if (open) {
      if (m && m[1]![0] === open.ch && m[1]!.length >= open.len && m[2]!.trim() === "") open = undefined;
      else fencedLines.push(line);
      continue;
    }
    if (m && !(m[1]![0] === "`" && m[2]!.includes("`"))) {
      open = { ch: m[1]![0]!, len: m[1]!.length };
      continue;
    }
    lines.push(line);
  }
  return { lines, unclosed: open !== undefined, fencedLines };
}

/** A line with its code spans removed (backtick runs closed by a run of the same length). */
export function withoutCodeSpans(line: string): string {
  let out = "";
  let i = 0;
  while (i < line.length) {
    if (line[i] === "\\" && i + 1 < line.length) {
      out += line.slice(i, i + 2);
      i += 2;
      continue;
    }
    if (line[i] === "`") {
      let n = 0;
      while (line[i + n] === "`") n++;
      const fence = "`".repeat(n);
      let j = i + n;
      let close = -1;
      while ((j = line.indexOf(fence, j)) >= 0) {
        if (line[j + n] !== "`" && line[j - 1] !== "`") {
          close = j;
          break;
        }
        j += n;
      }
      if (close >= 0) {
        out += " CODE ";
        i = close + n;
        continue;
      }
      out += fence;
      i += n;
      continue;
    }
    out += line[i];
    i++;
  }
  return out;
}

/**
 * What GitHub renders live: the lines outside fenced blocks with their code spans removed. A
 * URL or reference found here is linked; an escaped backtick (\\`) opens no span, so text after
 * it counts.
 */
export function liveText(md: string): string {
  return outsideFences(md).lines.map(withoutCodeSpans).join("\n");
}

/** Unescaped occurrences of `ch` (not preceded by an odd number of backslashes). */
export function unescaped(text: string, ch: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== ch) continue;
    let k = 0;
    while (text[i - 1 - k] === "\\") k++;
    if (k % 2 === 0) n++;
  }
  return n;
}

export interface InertOptions {
  /** raw HTML the template itself writes (e.g. the sticky-comment marker, <sub>) */
  allowedTags?: RegExp[];
  /** the number of `<!-- delta-audit` markers the body should hold */
  markers?: number;
}

/** Every way the body could let untrusted text act; returns the problems found (empty = inert). */
export function problems(md: string, opts: InertOptions = {}): string[] {
  const out: string[] = [];
  if (/[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/.test(md)) out.push("bidi control characters");
  if (/[\u{e0000}-\u{e007f}]/u.test(md)) out.push("Unicode tag characters (hidden text)");
  // VS16 after a pictograph is emoji presentation (our templates' ⚠️); any other selector encodes bytes
  if (/[\u{e0100}-\u{e01ef}\ufe00-\ufe0e\u180b-\u180f]|(?<!\p{Extended_Pictographic})\ufe0f/u.test(md)) out.push("variation selectors (hidden text)");
  // a zero-width space straight after '@' is how mentions are broken; anywhere else it hides text
  if (/[\u200c\u200d\u2060-\u2064\u00ad\u034f\ufeff]|(?<!@)\u200b/.test(md)) out.push("zero-width or invisible format characters");
  if (/[\u115f\u1160\u3164\uffa0]/.test(md)) out.push("Hangul fillers (invisible)");
  if (/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/.test(md)) out.push("control characters");
  const { lines, unclosed } = outsideFences(md);
  if (unclosed) out.push("a code fence is never closed");
  // inside a fence the marker is shown as text, and findComment never reads check-run text
  const markers = (lines.join("\n").match(/<!-- delta-audit/g) ?? []).length;
  if (markers !== (opts.markers ?? 0)) out.push(`${markers} '<!-- delta-audit' markers, expected ${opts.markers ?? 0}`);
  let tableCols: number | undefined;
  for (const raw of lines) {
    let line = withoutCodeSpans(raw);
    for (const re of opts.allowedTags ?? []) line = line.replace(re, "");
    if (/<[A-Za-z!/?]/.test(line)) out.push(`raw HTML: ${raw.slice(0, 120)}`);
    if (/(?<!\\)!\[/.test(line) || /(?<!\\)\]\(/.test(line) || /(?<!\\)\]\[/.test(line)) out.push(`a link or image: ${raw.slice(0, 120)}`);
    if (/@[A-Za-z0-9]/.test(line)) out.push(`an @-mention: ${raw.slice(0, 120)}`);
    if (/\b[a-z][a-z0-9+.-]*:\/\//i.test(line) || /\bwww\.[a-z0-9]/i.test(line)) out.push(`an autolink: ${raw.slice(0, 120)}`);
    if (unescaped(line, "$") > 0) out.push(`math ($): ${raw.slice(0, 120)}`);
    // GitHub's reference and emoji filters read the rendered text, where escapes are gone
    const rendered = line.replace(/\\([!-/:-@[-`{-~])/g, "$1");
    if (/(^|[^\w&])#\d/.test(rendered) || /\bGH-\d/i.test(rendered)) out.push(`an issue reference: ${raw.slice(0, 120)}`);
    if (/\b[0-9a-f]{7,40}\b/i.test(rendered)) out.push(`a commit SHA: ${raw.slice(0, 120)}`);
    if (/:[\w+-]*[a-z_+-][\w+-]*:/i.test(rendered)) out.push(`an emoji shortcode: ${raw.slice(0, 120)}`);
    if (/^ {0,3}#{1,6}\s+PAYLOAD/.test(line)) out.push(`a heading from model text: ${raw.slice(0, 120)}`);
    // tables: every row of a table has as many cell separators as its header
    if (/^\s*\|/.test(line)) {
      const cols = unescaped(line, "|");
      if (tableCols === undefined) tableCols = cols;
      else if (cols !== tableCols) out.push(`a table row with ${cols} separators, header has ${tableCols}: ${raw.slice(0, 120)}`);
    } else tableCols = undefined;
  }
  return out;
}
