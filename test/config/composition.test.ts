/**
 * ScanConfig is the composition of what each stage declares (elicit/settings.ts,
 * judge/settings.ts, backends/settings.ts, policy's fail-on, the truncation rank), and the
 * stages take their own part of it (that none of them imports src/config.ts is the floors'
 * rule, checked by test/architecture/import-graph.test.ts).
 */
import { describe, expect, expectTypeOf, it } from "vitest";
import { DEFAULT_RANK, parseConfig, type ScanConfig } from "../../src/config";
import { defaultElicitSettings, type ElicitSettings } from "../../src/elicit/settings";
import { defaultJudgeSettings, type JudgeSettings } from "../../src/judge/settings";
import { defaultBackendSettings, type BackendSettings } from "../../src/backends/settings";
import { DEFAULT_FAIL_ON, type FailOn } from "../../src/policy/severity";
import { defaultEngineSettings, type EngineSettings } from "../../src/engine/settings";
import { runJudges } from "../../src/judge/index";
import { createBackend, type BackendFactory, type BackendRequest } from "../../src/backends/index";

describe("ScanConfig", () => {
  it("is the stages' settings, composed", () => {
    expectTypeOf<ScanConfig>().branded.toEqualTypeOf<ElicitSettings & JudgeSettings & { rank: number; failOn: FailOn; backend: BackendSettings; engine: EngineSettings }>();
  });

  it("a file that sets nothing, or only empty sections, keeps each stage's own defaults unchanged", () => {
    const pick = (c: ScanConfig, keys: string[]) => Object.fromEntries(keys.map((k) => [k, c[k as keyof ScanConfig]]));
    for (const text of ["", "{}\n", "probes: {}\ncontrast: {}\nspectrum: {}\nbackend: {}\n"]) {
      const c = parseConfig(text);
      expect(pick(c, Object.keys(defaultElicitSettings())), text).toEqual(defaultElicitSettings());
      expect(pick(c, Object.keys(defaultJudgeSettings())), text).toEqual(defaultJudgeSettings());
      expect(c.backend, text).toEqual(defaultBackendSettings());
      expect(c.engine, text).toEqual(defaultEngineSettings());
      expect([c.rank, c.failOn, c.llm], text).toEqual([DEFAULT_RANK, DEFAULT_FAIL_ON, undefined]);
    }
  });

  it("no stage section overlaps another: each key has one owner", () => {
    const elicit = Object.keys(defaultElicitSettings());
    const judge = [...Object.keys(defaultJudgeSettings()), "llm"];
    const own = ["rank", "failOn", "backend", "engine"];
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
});
