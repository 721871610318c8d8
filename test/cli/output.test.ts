/**
 * What the built CLI prints around the work, through pipes (not a TTY): progress is plain lines
 * on stderr with one line per phase (the delta pass once, not a second `truncate`), no escape
 * sequences anywhere unless FORCE_COLOR asks for colour, and then only on the verdict words;
 * NO_COLOR wins over FORCE_COLOR; --quiet and DELTA_AUDIT_QUIET=1 silence stderr.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { wantsColour } from "../../src/edge";
import { cli } from "../security/helpers";

let dir: string;
let n = 0;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-output-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The demo in a fresh folder, with the colour variables set only as given. */
function demo(env: Record<string, string>, flags: string[] = []) {
  return cli([...flags, "demo", "--out", join(dir, `demo-${n++}`)], { timeoutMs: 120_000, env: { NO_COLOR: "", FORCE_COLOR: "", DELTA_AUDIT_QUIET: "", ...env } });
}

const ESC = /\x1b/;
const SGR = /\x1b\[[0-9;]*m/g;

describe("progress and colour through pipes", () => {
  it("without a TTY: plain progress lines, one per phase, and no escape sequences", async () => {
    const r = await demo({});
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(ESC);
    expect(r.stderr).not.toMatch(ESC);
    const phases = r.stderr.split("\n").filter((l) => /^[a-z+ 0-9]+: \d+\/\d+ /.test(l)).map((l) => l.split(":")[0]);
    // two scans, each: the one delta pass, then elicitation per variant
    const once = ["spectrum+truncate", "elicit base", "elicit full", "elicit rank1", "elicit contrast"];
    expect(phases).toEqual([...once, ...once]);
    expect(r.stderr).not.toMatch(/^truncate:/m);
    expect(r.stderr).toMatch(/^spectrum\+truncate: 4\/4 \(100%\) [\d.]+\/s in [\d.]+s$/m);
    expect(r.stdout).toMatch(/verdict: {5}FAIL \(expected fail\)/);
  });

  it("FORCE_COLOR colours the verdict words only; NO_COLOR wins over it", async () => {
    const forced = await demo({ FORCE_COLOR: "1" });
    expect(forced.status, forced.stderr).toBe(0);
    expect(forced.stdout).toContain("verdict:     \x1b[1;31mFAIL\x1b[0m (expected fail)");
    expect(forced.stdout).toContain("verdict:     \x1b[1;32mPASS\x1b[0m (expected pass)");
    expect(forced.stdout.match(SGR)).toHaveLength(4);
    // progress is not coloured, and stderr is not a TTY: no bar escapes either
    expect(forced.stderr).not.toMatch(ESC);

    const both = await demo({ FORCE_COLOR: "1", NO_COLOR: "1" });
    expect(both.status, both.stderr).toBe(0);
    expect(both.stdout).not.toMatch(ESC);

    // scan's summary: the same rule, on the demo's own organism
    const org = join(dir, "demo-1", "quirk", "organism");
    const scan = await cli(["scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--out", join(dir, "scan")], { timeoutMs: 120_000, env: { FORCE_COLOR: "1", NO_COLOR: "" } });
    expect(scan.status, scan.stderr).toBe(1);
    expect(scan.stdout).toMatch(/^verdict: \x1b\[1;31mfail\x1b\[0m \(fail-on high\)$/m);
  });

  it("--quiet (before or after the subcommand) and DELTA_AUDIT_QUIET=1 leave stderr empty", async () => {
    for (const run of [demo({}, ["--quiet"]), cli(["demo", "--quiet", "--out", join(dir, "quiet-after")], { timeoutMs: 120_000, env: { DELTA_AUDIT_QUIET: "" } }), demo({ DELTA_AUDIT_QUIET: "1" })]) {
      const r = await run;
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toBe("");
      expect(r.stdout).toMatch(/verdict: {5}PASS/);
    }
  });
});

describe("wantsColour", () => {
  it("a TTY unless NO_COLOR; FORCE_COLOR without one, unless it says 0 or false; NO_COLOR wins", () => {
    expect(wantsColour({}, true)).toBe(true);
    expect(wantsColour({}, false)).toBe(false);
    expect(wantsColour({ NO_COLOR: "1" }, true)).toBe(false);
    expect(wantsColour({ NO_COLOR: "" }, true)).toBe(true); // no-color.org: empty is unset
    expect(wantsColour({ FORCE_COLOR: "1" }, false)).toBe(true);
    expect(wantsColour({ FORCE_COLOR: "0" }, true)).toBe(false);
    expect(wantsColour({ FORCE_COLOR: "false" }, true)).toBe(false);
    expect(wantsColour({ FORCE_COLOR: "1", NO_COLOR: "1" }, false)).toBe(false);
  });
});
