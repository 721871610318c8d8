/**
 * `delta-audit spectrum` prints module and tensor names read from the measured files. A name
 * carrying an ANSI escape, a BEL, a carriage return, a C1 control, a bidi override or a line
 * separator could rewrite the terminal, forge table rows or start a GitHub workflow command
 * (`::error::` at the start of a line). stdout is sanitised as stderr is (errors.ts oneLine).
 */
import { rmSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { formatSpectrum } from "../../src/delta/table";
import type { SpectrumReport } from "../../src/delta/types";
import { makeModules, tempDir, writeAdapterDir } from "../delta/fixtures";
import { cli } from "./helpers";

/** Every character class that can hide, reorder or break a line on a terminal or in a CI log. */
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ufeff]|[\u{e0000}-\u{e007f}]/u;

/** Hostile fragments for module names, each also a plausible-looking tensor name part. */
const HOSTILE = [
  "\u001b[2J\u001b[31mq_proj", // clear screen, colour
  "\u001b]0;pwned\u0007v_proj", // OSC title + BEL
  "x\r::error::forged", // carriage return to overwrite the line
  "y\n::warning::forged", // a new line starting a workflow command
  "\u009b31mc1_csi", // C1 CSI
  "\u202egnp.exe", // right-to-left override
  "a\u2028b\u2029c", // Unicode line and paragraph separators
  "tag\u{e0041}\u{e0042}", // tag characters
];

const dir = tempDir("sec-terminal");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function expectSafe(text: string, rows: number): void {
  expect(UNSAFE.test(text), JSON.stringify(text)).toBe(false);
  for (const line of text.split("\n")) expect(line.startsWith("::")).toBe(false);
  expect(text.split("\n").length).toBe(rows);
}

describe("spectrum's table is one printable line per row", () => {
  it("formatSpectrum neutralises control, bidi, separator and tag characters in names", () => {
    const stats = { p10: 1, median: 1, p90: 1 };
    const report = {
      summary: { modules: HOSTILE.length, stableRank: stats, energyShareTop1: stats, byType: { "\u001b[31mq": { modules: 1, stableRank: stats } } },
      modules: HOSTILE.map((name, i) => ({ name, type: "other", shape: [4, 4], rank: 1, frobenius: HOSTILE.length - i, spectralNorm: 1, stableRank: 1, effectiveRank: 1, energyShareTop1: 1 })),
      otherChanges: [{ name: "lm_head\u001b[8m\rweight", shape: [2, 2], frobenius: 1, relative: 0.5 }],
    } as unknown as SpectrumReport;
    const text = formatSpectrum(report, HOSTILE.length);
    // summary, blank, 3 type lines, blank, title, 2 header lines + 8 rows, blank, title, 3 lines, trailing ""
    expectSafe(text, 1 + 1 + 3 + 1 + 1 + 2 + HOSTILE.length + 1 + 1 + 3 + 1);
    expect(text).toContain("pwned"); // the text stays visible, only the controls go
  });

  it("the CLI on an adapter whose module names carry them prints a clean table", async () => {
    // io/peft refuses names with line terminators outright (not a LoRA factor); the rest load
    const loadable = HOSTILE.filter((h) => !/[\n\r\u2028\u2029]/.test(h));
    expect(loadable.length).toBeGreaterThanOrEqual(5);
    const names = loadable.map((h, i) => `model.layers.${i}.${h}.q_proj`);
    const adapter = await writeAdapterDir(join(dir, "adapter"), makeModules(names.map((n) => [n, 6, 5, 2] as [string, number, number, number]), 7), { r: 2, lora_alpha: 4, target_modules: ["q_proj"] });
    const r = await cli(["spectrum", "--adapter", adapter, "--show", String(names.length)]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("largest updates");
    expect(UNSAFE.test(r.stdout), JSON.stringify(r.stdout)).toBe(false);
    expect(r.stdout.split("\n").some((l) => l.startsWith("::"))).toBe(false);
    // one row per module: no name split or overwrote a row
    const rows = r.stdout.split("\n").filter((l) => l.startsWith("model.layers."));
    expect(rows).toHaveLength(names.length);
  });
});
