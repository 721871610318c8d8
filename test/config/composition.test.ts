/**
 * ScanConfig is the composition of what each stage declares (elicit/settings.ts,
 * judge/settings.ts, backends/settings.ts, policy's fail-on, the truncation rank), and the
 * stages take their own part of it: none of them imports src/config.ts.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, expectTypeOf, it } from "vitest";
import { DEFAULT_RANK, defaultConfig, parseConfig, type ScanConfig } from "../../src/config";
import { defaultElicitSettings, type ElicitSettings } from "../../src/elicit/settings";
import { defaultJudgeSettings, type JudgeSettings } from "../../src/judge/settings";
import { defaultBackendSettings, type BackendSettings } from "../../src/backends/settings";
import { DEFAULT_FAIL_ON, type FailOn } from "../../src/policy/severity";
import { runJudges } from "../../src/judge/index";
import { createBackend, type BackendFactory, type BackendRequest } from "../../src/backends/index";

const src = resolve(import.meta.dirname, "../../src");

describe("ScanConfig", () => {
  it("is the stages' settings, composed", () => {
    expectTypeOf<ScanConfig>().branded.toEqualTypeOf<ElicitSettings & JudgeSettings & { rank: number; failOn: FailOn; backend: BackendSettings }>();
    expect(defaultConfig()).toEqual({
      rank: DEFAULT_RANK,
      failOn: DEFAULT_FAIL_ON,
      ...defaultElicitSettings(),
      ...defaultJudgeSettings(),
      backend: defaultBackendSettings(),
    });
  });

  it("no stage section overlaps another: each key has one owner", () => {
    const elicit = Object.keys(defaultElicitSettings());
    const judge = [...Object.keys(defaultJudgeSettings()), "llm"];
    const own = ["rank", "failOn", "backend"];
    const all = [...elicit, ...judge, ...own];
    expect(new Set(all).size).toBe(all.length);
    const parsed = parseConfig("samples: 2\njudges: [lexicon]\nllm: {url: 'http://127.0.0.1:9/v1', model: m}\nbackend: {concurrency: 2}\n");
    expect(Object.keys(parsed).sort()).toEqual([...all].sort());
  });

  it("stages take their own settings, not ScanConfig", () => {
    expectTypeOf(runJudges).parameter(2).toEqualTypeOf<JudgeSettings>();
    expectTypeOf(createBackend).parameter(0).toEqualTypeOf<BackendRequest>();
    expectTypeOf<BackendRequest["settings"]>().toEqualTypeOf<BackendSettings>();
    expectTypeOf<Parameters<BackendFactory>>().toEqualTypeOf<[BackendRequest]>();
  });

  it("no folder below config.ts imports it", () => {
    const offenders: string[] = [];
    for (const dir of readdirSync(src, { withFileTypes: true })) {
      // the units above config.ts: they compose the scan and may read its settings
      if (!dir.isDirectory() || ["github", "sweep", "commands"].includes(dir.name)) continue;
      const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith(".ts") ? [join(d, e.name)] : []));
      for (const file of walk(join(src, dir.name))) {
        for (const m of readFileSync(file, "utf8").matchAll(/(?:from|import\()\s*"(\.[^"]+)"/g)) {
          if (resolve(dirname(file), m[1]!) === join(src, "config")) offenders.push(relative(src, file));
        }
      }
    }
    expect(offenders).toEqual([]);
    // and policy/ is the verdict and fail-on only
    expect(readdirSync(join(src, "policy")).sort()).toEqual(["severity.ts", "verdict.ts"]);
  });
});
