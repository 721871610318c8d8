import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, expect, it, beforeAll } from "vitest";
import { VERSION } from "../../src/version";

const root = new URL("../..", import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(process.execPath, [`${root}bin/delta-audit.js`, ...args], { encoding: "utf8" });

describe("delta-audit CLI", () => {

  it("keeps src/version.ts in step with package.json", () => {
    const pkg = JSON.parse(readFileSync(`${root}package.json`, "utf8"));
    expect(VERSION).toBe(pkg.version);
  });

  it("prints its version and exits 0", () => {
    const r = run("--version");
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(VERSION);
  });

  it("exits 2 on an unknown command or option, with a message", () => {
    const r = run("no-such-command");
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown command/i);
    const r2 = run("spectrum", "--bogus-flag");
    expect(r2.status).toBe(2);
  });
});
