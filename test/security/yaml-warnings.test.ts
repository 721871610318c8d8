/**
 * The `yaml` package reports unresolved tags and collection-valued keys through
 * process.emitWarning, which Node prints on stderr as extra lines ("(node:123) YAMLWarning: …").
 * The CLI's contract is one stderr line per error and none otherwise: configs, probe files and
 * sweep registries carrying such warnings must not add a line.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli, oneLineError } from "./helpers";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-sec-yamlwarn-"));
  await mkdir(join(dir, "adapter"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const stderrLines = (stderr: string): string[] => stderr.split("\n").filter((l) => l.trim() !== "");

describe("YAML warnings never add a stderr line", () => {
  it("a config error next to an unresolved tag: exactly the one error line", async () => {
    const config = join(dir, "tagged-error.yml");
    await writeFile(config, "rank: !weird 1\nfail-on: !weird critical\n");
    const r = await cli(["scan", "--base", join(dir, "no-base"), "--adapter", join(dir, "adapter"), "--config", config, "--out", join(dir, "out1")]);
    expect(r.status, r.stderr).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/fail-on|rank/);
    expect(r.stderr).not.toMatch(/Warning|TAG_RESOLVE/);
  });

  it("a valid config with an unresolved tag and a probes file with one: the later input error is the only line", async () => {
    const probes = join(dir, "probes.yml");
    await writeFile(probes, "- !weird Tell me about tea.\n- ? [a, b]\n  : x\n");
    const config = join(dir, "tagged-ok.yml");
    await writeFile(config, "fail-on: !weird high\nprobes: {file: probes.yml}\n");
    const r = await cli(["scan", "--base", join(dir, "no-base"), "--adapter", join(dir, "adapter"), "--config", config, "--out", join(dir, "out2")]);
    expect(r.status, r.stderr).toBe(2);
    const line = oneLineError(r.stderr);
    expect(line).not.toMatch(/Warning/);
    expect(r.stderr).not.toMatch(/YAMLWarning|stringified/);
  });

  it("sweep plan on a registry with tags and a collection key: stdout only, zero stderr lines; an error stays one line", async () => {
    const ok = join(dir, "registry.yml");
    await writeFile(ok, "models:\n  - {name: !weird a, base: !weird ./base, adapter: ./adapter}\n");
    const r = await cli(["sweep", "plan", "--registry", ok]);
    expect(r.status, r.stderr).toBe(0);
    expect(stderrLines(r.stderr)).toEqual([]);
    expect(JSON.parse(r.stdout)).toEqual({ include: [{ name: "a", kind: "lora" }] });

    const bad = join(dir, "registry-bad.yml");
    await writeFile(bad, "? [x, y]\n: 1\nmodels: [{name: !weird a, base: b, adapter: ./adapter}]\n");
    const r2 = await cli(["sweep", "plan", "--registry", bad]);
    expect(r2.status, r2.stderr).toBe(2);
    expect(oneLineError(r2.stderr)).toContain(bad);
    expect(r2.stderr).not.toMatch(/Warning|stringified/);
  });
});
