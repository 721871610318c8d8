/**
 * The one escape for report.html and its SVG plots. Every string that came from a report (model
 * text, module and tensor names, paths, finding titles, notices) goes through `escapeHtml`
 * before it reaches the page, in text and in quoted attribute values alike.
 */
import { HIDDEN_CHARS } from "../errors";

const ENTITIES: Readonly<Record<string, string>> = Object.freeze({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" });

/**
 * Text safe in an element's content and in a double- or single-quoted attribute value: the five
 * HTML specials encoded (so nothing opens a tag, closes an attribute or starts an entity), and
 * the characters that hide or reorder text (errors.ts HIDDEN_CHARS: bidi overrides, tag
 * characters, zero-width joiners) removed, as report.md removes them, so a reviewer reads what
 * an LLM reading the file would read. Line breaks and tabs stay (transcripts are shown with
 * `white-space: pre-wrap`); a carriage return becomes a line break.
 */
export function escapeHtml(value: unknown): string {
  return String(value ?? "")
    .replace(/\r\n?/g, "\n")
    .replace(HIDDEN_CHARS, "")
    .replace(/[&<>"']/g, (c) => ENTITIES[c]!);
}
