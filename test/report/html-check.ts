/**
 * A structural reading of report.html that does not reuse the renderer: every tag and attribute
 * in the page, with the contents of <style> and <script> set aside. Escaped text holds no '<',
 * so every tag found is one the renderer wrote — and an injection shows up as a tag, an
 * attribute or a value that is not on the lists below.
 */

export interface Tag {
  name: string;
  closing: boolean;
  selfClosing: boolean;
  attributes: { name: string; value: string | undefined }[];
  /** what was left of the tag after reading its attributes (an unquoted or broken one) */
  rest: string;
}

/** The contents of the page's <style> and <script> elements, and the page without them. */
export function splitBlocks(html: string): { styles: string[]; scripts: string[]; markup: string } {
  const styles: string[] = [];
  const scripts: string[] = [];
  const markup = html
    .replace(/<style>([\s\S]*?)<\/style>/g, (_, css: string) => (styles.push(css), "<style></style>"))
    .replace(/<script>([\s\S]*?)<\/script>/g, (_, js: string) => (scripts.push(js), "<script></script>"));
  return { styles, scripts, markup };
}

export function tags(markup: string): Tag[] {
  const out: Tag[] = [];
  for (const m of markup.matchAll(/<(\/?)([a-zA-Z][a-zA-Z0-9-]*)([^>]*)>/g)) {
    let rest = m[3]!;
    const attributes: Tag["attributes"] = [];
    rest = rest.replace(/\s([a-zA-Z][a-zA-Z0-9:-]*)(?:="([^"]*)")?/g, (_, name: string, value: string | undefined) => {
      attributes.push({ name: name.toLowerCase(), value });
      return "";
    });
    const selfClosing = /\/\s*$/.test(rest);
    out.push({ name: m[2]!.toLowerCase(), closing: m[1] === "/", selfClosing, attributes, rest: rest.replace(/\/\s*$/, "").trim() });
  }
  return out;
}

/** HTML elements without an end tag. */
const VOID = new Set(["meta", "br", "input", "img", "link", "hr"]);

/** Open and close tags match as a stack (void and self-closed elements aside); the first mismatch or undefined. */
export function firstUnbalanced(markup: string): string | undefined {
  const stack: string[] = [];
  for (const t of tags(markup)) {
    if (t.name === "!doctype" || VOID.has(t.name) || t.selfClosing) continue;
    if (!t.closing) stack.push(t.name);
    else if (stack.pop() !== t.name) return `</${t.name}> closes ${stack.length ? `<${stack[stack.length - 1]}>` : "nothing"}`;
  }
  return stack.length ? `<${stack[stack.length - 1]}> never closed` : undefined;
}
