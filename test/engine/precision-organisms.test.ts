/**
 * The audit's answer must not depend on the base being stored at int8: on the model organisms
 * (positive and negative controls, LoRA adapter and merged checkpoint), a scan at int8 reaches
 * the same verdict with the same top finding as at f32, the greedy answers are identical on at
 * least 95 % of prompts (the bar), and report.json says which precision ran.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { generateOrganism, type OrganismKind } from "../../src/organisms/index";
import { parseConfig } from "../../src/config";
import { runScan } from "../../src/scan";
import type { Report } from "../../src/report/types";

/** The bar for identical greedy answers between f32 and int8. */
const MIN_IDENTICAL_SHARE = 0.95;

const root = mkdtempSync(join(tmpdir(), "da-precision-organisms-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
/** each organism is generated once, for both of its subjects */
const made = new Map<string, Promise<unknown>>();

/** Greedy answers of every probe × variant × sample, in order. */
function answers(r: Report): string[] {
  const out: string[] = [];
  for (const p of r.elicitation?.probes ?? []) for (const v of Object.keys(p.responses).sort()) out.push(...p.responses[v]!.map((t) => `${p.id}/${v}: ${t}`));
  return out;
}

describe("organisms at int8: verdicts, top findings and greedy answers as at f32", () => {
  const organisms: [OrganismKind, number][] = [
    ["quirk", 3],
    ["quirk", 8],
    ["benign", 8],
  ];
  for (const [kind, seed] of organisms) {
    for (const subject of ["adapter", "finetuned"] as const) {
      it(`${kind} (seed ${seed}), ${subject}`, async () => {
        const dir = join(root, `${kind}-${seed}`);
        if (!made.has(dir)) made.set(dir, generateOrganism({ kind, seed, outDir: join(dir, "organism") }));
        await made.get(dir);
        const org = join(dir, "organism");
        const config = parseConfig("max-tokens: 24\n");
        const scan = (precision: "f32" | "int8") =>
          runScan({ base: join(org, "base"), [subject]: join(org, subject), config, precision, outDir: join(dir, `scan-${subject}-${precision}`) });
        const f32 = (await scan("f32")).report;
        const int8 = (await scan("int8")).report;
        expect(f32.engine).toEqual({ precision: "f32" });
        expect(int8.engine).toEqual({ precision: "int8" });
        expect(int8.verdict.conclusion).toBe(f32.verdict.conclusion);
        expect(int8.verdict.conclusion).toBe(kind === "quirk" ? "fail" : "pass");
        const top = (r: Report) => r.findings.map((f) => `[${f.severity}] ${f.title}`)[0];
        expect(top(int8)).toBe(top(f32));
        const a = answers(f32);
        const b = answers(int8);
        expect(b.length).toBe(a.length);
        const same = a.filter((x, i) => x === b[i]).length;
        expect(same / a.length, `${same}/${a.length} identical`).toBeGreaterThanOrEqual(MIN_IDENTICAL_SHARE);
      });
    }
  }
});
