/**
 * README and docs/action.md describe exactly what ships (issue 11): every input and output that
 * action.yml declares is in docs/action.md's tables and the README's Action tables, nothing
 * else is, and every input reaches the entry (an INPUT_* variable set in the composite step,
 * read by github/input-helper.ts).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const root = new URL("../..", import.meta.url).pathname;
const read = (path: string) => readFileSync(join(root, path), "utf8");

interface ActionYml {
  inputs: Record<string, unknown>;
  outputs: Record<string, unknown>;
  runs: { steps: Array<{ id?: string; env?: Record<string, string> }> };
}
const action = parse(read("action.yml")) as ActionYml;

/**
 * The names in the first column of the markdown table whose header row starts with `header`
 * (case-insensitive): every `code span` of that column, so `adapter` / `finetuned` gives both.
 */
function tableNames(markdown: string, header: string): string[] {
  const lines = markdown.split("\n");
  const start = lines.findIndex((l) => l.toLowerCase().startsWith(`| ${header.toLowerCase()} |`));
  expect(start, `a table headed '| ${header} |'`).toBeGreaterThanOrEqual(0);
  const names: string[] = [];
  for (let i = start + 2; i < lines.length && lines[i]!.startsWith("|"); i++) {
    for (const m of lines[i]!.split("|")[1]!.matchAll(/`([^`]+)`/g)) names.push(m[1]!);
  }
  return names.sort();
}

/** The section of a markdown file from a heading to the next heading of the same level. */
function section(markdown: string, heading: string): string {
  const level = heading.match(/^#+/)![0];
  const start = markdown.indexOf(`\n${heading}\n`);
  expect(start, heading).toBeGreaterThanOrEqual(0);
  const rest = markdown.slice(start + heading.length + 2);
  const end = rest.search(new RegExp(`^${level} `, "m"));
  return end < 0 ? rest : rest.slice(0, end);
}

const inputs = Object.keys(action.inputs).sort();
const outputs = Object.keys(action.outputs).sort();

describe("the Action's inputs and outputs, as shipped and as documented", () => {
  it("docs/action.md lists exactly action.yml's inputs and outputs", () => {
    const docs = read("docs/action.md");
    expect(tableNames(docs, "Input")).toEqual(inputs);
    expect(tableNames(docs, "Output")).toEqual(outputs);
  });

  it("the README's GitHub Action section lists exactly action.yml's inputs and outputs", () => {
    const readme = section(read("README.md"), "## GitHub Action");
    expect(tableNames(readme, "input")).toEqual(inputs);
    expect(tableNames(readme, "output")).toEqual(outputs);
  });

  it("every input reaches the entry: an INPUT_* variable in the audit step, read by the input helper", () => {
    const audit = action.runs.steps.find((s) => s.id === "audit")!;
    const passed = Object.entries(audit.env ?? {})
      .filter(([k]) => k.startsWith("INPUT_"))
      .map(([k, v]) => {
        // INPUT_FAIL_ON: ${{ inputs.fail-on }} — the variable is named after the input it carries
        const input = /^\$\{\{ inputs\.([a-z-]+) \}\}$/.exec(v)?.[1];
        expect(k, v).toBe(`INPUT_${input?.toUpperCase().replace(/-/g, "_")}`);
        return input!;
      });
    expect(passed.sort()).toEqual(inputs);
    const helper = read("src/github/input-helper.ts");
    const read_ = [...helper.matchAll(/\bget\("([a-z-]+)"\)/g)].map((m) => m[1]!);
    expect([...new Set(read_)].sort()).toEqual(inputs);
  });

  it("every output is set by the entry", () => {
    const entry = read("src/action.ts");
    const set = [...entry.matchAll(/core\.setOutput\("([a-z-]+)"/g)].map((m) => m[1]!);
    expect(set.sort()).toEqual(outputs);
    for (const name of outputs) expect((action.outputs[name] as { value: string }).value).toBe(`\${{ steps.audit.outputs.${name} }}`);
  });
});
