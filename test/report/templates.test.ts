/**
 * The one Handlebars setup: it finds the package's templates/, gives every template the
 * partials and the sanitising helpers, compiles without HTML escaping (values arrive
 * neutralised), and caches what it compiled.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EXCERPT_CHARS, findTemplatesDir, renderTemplate, TRANSCRIPT_CHARS } from "../../src/report/templates";
import { CUT_MARKER } from "../../src/report/sanitize";

const dir = mkdtempSync(join(tmpdir(), "delta-audit-templates-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function templatesDir(files: Record<string, string>): string {
  const d = mkdtempSync(join(dir, "t-"));
  mkdirSync(join(d, "partials"));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(d, name), text);
  return d;
}

describe("report/templates", () => {
  it("finds the package's templates/ folder", () => {
    expect(findTemplatesDir()).toBe(resolve(import.meta.dirname, "../../templates"));
  });

  it("gives a template the partials and the inline, code and fence helpers, without HTML escaping", () => {
    const d = templatesDir({
      "t.md.hbs": "{{> head}}|{{{inline text}}}|{{{inline list}}}|{{{code path}}}\n{{{fence body}}}\n{{raw}}",
      "partials/head.md.hbs": "# {{title}}",
    });
    const out = renderTemplate("t.md.hbs", { title: "T", text: "@octocat <b>", list: ["a", "b"], path: "a`b|c", body: "```\nx", raw: "<i>&</i>" }, d);
    const [first, ...rest] = out.split("\n");
    expect(first).toBe("# T|@\u200boctocat &lt;b&gt;|a, b|``a`b\\|c``");
    expect(rest.join("\n")).toBe("````text\n```\nx\n````\n<i>&</i>");
  });

  it("cuts helper values to the GitHub excerpt sizes", () => {
    const d = templatesDir({ "t.md.hbs": "{{{inline s}}}\n{{{fence s}}}" });
    const [inline, ...fence] = renderTemplate("t.md.hbs", { s: "x".repeat(1000) }, d).split("\n");
    // cut first, then escaped: the marker's brackets are escaped like any other text
    expect(inline).toBe(`${"x".repeat(EXCERPT_CHARS - CUT_MARKER.length)} …\\[truncated\\]`);
    expect(fence[1]).toBe(`${"x".repeat(TRANSCRIPT_CHARS - CUT_MARKER.length)}${CUT_MARKER}`);
  });

  it("compiles a template once per folder", () => {
    const d = templatesDir({ "t.md.hbs": "v1 {{x}}" });
    expect(renderTemplate("t.md.hbs", { x: 1 }, d)).toBe("v1 1");
    writeFileSync(join(d, "t.md.hbs"), "v2 {{x}}");
    expect(renderTemplate("t.md.hbs", { x: 2 }, d)).toBe("v1 2");
  });
});
