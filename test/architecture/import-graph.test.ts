/**
 * The house stays as drawn: every import in src/ goes down the floors that docs/architecture.md
 * lists (its ```floors block is the one source: this test reads it), and only the edges read
 * the process environment. A new folder must be given a floor there before its code can land.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "../..");
const src = join(root, "src");

/** unit → floor, from the ```floors block of docs/architecture.md ("N  unit unit …" per line). */
function readFloors(): Map<string, number> {
  const doc = readFileSync(join(root, "docs/architecture.md"), "utf8");
  const block = /```floors\n([\s\S]*?)```/.exec(doc);
  if (!block) throw new Error("docs/architecture.md has no ```floors block");
  const floors = new Map<string, number>();
  for (const line of block[1]!.split("\n")) {
    const m = /^\s*(\d+)\s+(.+)$/.exec(line);
    if (!m) continue;
    for (const unit of m[2]!.split(/\s+/).filter(Boolean)) floors.set(unit.replace(/\/$/, ""), Number(m[1]));
  }
  return floors;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

/** The unit a file belongs to: its top folder under src/ ("delta"), or the file itself ("scan.ts"). */
function unitOf(file: string): string {
  return relative(src, file).split(sep)[0]!;
}

/** Relative specifiers of static imports, re-exports and dynamic import() calls. */
function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?\sfrom\s+"(\.[^"]+)"/g)) out.push(m[1]!);
  for (const m of text.matchAll(/\bimport\(\s*"(\.[^"]+)"\s*\)/g)) out.push(m[1]!);
  return out;
}

function resolveImport(from: string, spec: string): string {
  const target = resolve(dirname(from), spec);
  return target.endsWith(".ts") ? target : `${target}.ts`;
}

describe("the import graph follows docs/architecture.md", () => {
  const floors = readFloors();
  const files = sourceFiles(src);

  it("places every folder and top-level file of src/ on a floor", () => {
    const units = [...new Set(files.map(unitOf))].sort();
    const unplaced = units.filter((u) => !floors.has(u));
    expect(unplaced, "add these to the ```floors block of docs/architecture.md").toEqual([]);
  });

  it("imports only go down: a unit imports itself or units on lower floors", () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = unitOf(file);
      for (const spec of importsOf(readFileSync(file, "utf8"))) {
        const to = unitOf(resolveImport(file, spec));
        if (to === from) continue;
        const a = floors.get(from);
        const b = floors.get(to);
        if (a === undefined || b === undefined || b >= a) violations.push(`${relative(root, file)} imports ${spec} (${from} on floor ${a}, ${to} on floor ${b})`);
      }
    }
    expect(violations).toEqual([]);
  });

  it("reads the process environment only at the edges", () => {
    // cli.ts and action.ts read settings and pass them down, edge.ts for both of them;
    // commands/ are the CLI's edge;
    // github/ reads the Action's context (GITHUB_*) and inputs; io/hub.ts takes HF_* settings
    // as a parameter whose default is the environment, as huggingface_hub does
    const edges = /^(?:cli\.ts|action\.ts|edge\.ts|commands\/|github\/(?:context|input-helper|run-action)\.ts|io\/hub\.ts)/;
    const readers = files
      .filter((f) => /process\.env\b/.test(readFileSync(f, "utf8")))
      .map((f) => relative(src, f).split(sep).join("/"))
      .filter((f) => !edges.test(f));
    expect(readers).toEqual([]);
  });

  it("finds the imports it checks (the parser is not blind)", () => {
    const scan = readFileSync(join(src, "scan.ts"), "utf8");
    expect(importsOf(scan).length).toBeGreaterThan(5);
    expect(importsOf('const x = await import("./y");\nimport type { A } from "../b";\nexport { c } from "./c";')).toEqual(["../b", "./c", "./y"]);
  });
});
