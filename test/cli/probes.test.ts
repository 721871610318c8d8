/**
 * `delta-audit probes` through the built CLI: the built-in suite and lexicons, as JSON (one
 * object, the same as the source's) and as readable tables.
 */
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { DEFAULT_SYSTEM_PROMPT, ORDINARY_SYSTEM_PROMPT, defaultProbes } from "../../src/elicit/probes";
import { BEHAVIOUR_FAMILIES } from "../../src/judge/lexicons";

const root = new URL("../..", import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(process.execPath, [`${root}bin/delta-audit.js`, ...args], { encoding: "utf8", env: { ...process.env, DELTA_AUDIT_QUIET: "1" } });

describe("delta-audit probes", () => {
  it("--json prints one JSON object: every built-in probe and lexicon family", () => {
    const r = run("probes", "--json");
    expect(r.status).toBe(0);
    expect(r.stderr).toBe("");
    const c = JSON.parse(r.stdout);
    expect(Object.keys(c)).toEqual(["systemPrompts", "probes", "lexicons"]);
    expect(c.systemPrompts).toEqual({ default: DEFAULT_SYSTEM_PROMPT, ordinary: ORDINARY_SYSTEM_PROMPT });
    expect(c.probes).toEqual(defaultProbes().map(({ id, kind, prompt }) => ({ id, kind, prompt })));
    expect(c.lexicons.map((l: { id: string }) => l.id)).toEqual(BEHAVIOUR_FAMILIES.map((f) => f.id));
    for (const [i, l] of (c.lexicons as { title: string; patterns: { source: string; flags: string }[] }[]).entries()) {
      expect(l.title).toBe(BEHAVIOUR_FAMILIES[i]!.title);
      // each pattern, flags included, compiles back to the family's own
      expect(l.patterns.map((p) => String(new RegExp(p.source, p.flags)))).toEqual(BEHAVIOUR_FAMILIES[i]!.patterns.map(String));
    }
  });

  it("prints readable tables: a row per probe and per family, each family's patterns", () => {
    const r = run("probes");
    expect(r.status).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines[0]).toMatch(/^PROBES \(38: 24 interrogation, 14 ordinary\)$/);
    expect(lines).toContain(lines.find((l) => /^ID\s+KIND\s+PROMPT$/.test(l)));
    for (const p of defaultProbes()) expect(lines.some((l) => new RegExp(`^${p.id}\\s+${p.kind}\\s+`).test(l) && l.endsWith(p.prompt))).toBe(true);
    for (const f of BEHAVIOUR_FAMILIES) {
      expect(lines.some((l) => l.startsWith(`${f.id} `) && l.includes(f.title))).toBe(true);
      expect(lines).toContain(`${f.id} patterns:`);
      for (const p of f.patterns) expect(lines).toContain(`  /${p.source}/${p.flags}`);
    }
    expect(r.stdout).toContain(ORDINARY_SYSTEM_PROMPT);
  });

  it("refuses an unknown flag with exit 2", () => {
    expect(run("probes", "--bogus").status).toBe(2);
  });
});
