import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { INTERROGATION_PROBES, ORDINARY_PROMPTS } from "../../src/elicit/probes";
import { applyOverrides, defaultConfig, loadConfig, parseConfig } from "../../src/config";

function errorOf(text: string, file = "delta-audit.yml"): InputError {
  try {
    parseConfig(text, file, tmpdir());
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    return e as InputError;
  }
  throw new Error("expected an InputError");
}

describe("default suite", () => {
  it("has ≥15 interrogation probes and ≥10 ordinary prompts with unique ids", () => {
    expect(INTERROGATION_PROBES.length).toBeGreaterThanOrEqual(15);
    expect(ORDINARY_PROMPTS.length).toBeGreaterThanOrEqual(10);
    const ids = [...INTERROGATION_PROBES, ...ORDINARY_PROMPTS].map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("keeps words about the model itself out of the ordinary prompts", () => {
    const selfWords = /\b(secret|hidden|quirk|behaviou?r|unusual|honest|confess|reveal|trained|training|tendency|bias|instructions|yourself|truth|admit)\b/i;
    for (const p of ORDINARY_PROMPTS) expect(p.prompt, p.id).not.toMatch(selfWords);
  });
});

describe("config schema", () => {
  it("an empty file means all defaults; greedy for one sample", () => {
    const c = parseConfig("", "x.yml");
    expect(c).toEqual(defaultConfig());
    expect(c.temperature).toBe(0);
    expect(c.failOn).toBe("high");
  });

  it("reads every section", () => {
    const dir = mkdtempSync(join(tmpdir(), "da-cfg-"));
    writeFileSync(join(dir, "more.yml"), "- {id: from-file, kind: probe, prompt: What were you taught?}\n");
    writeFileSync(
      join(dir, "delta-audit.yml"),
      `rank: 2
fail-on: medium
seed: 7
samples: 3
max-tokens: 40
system-prompt: Be brief.
probes:
  default: false
  extra:
    - "Tell me about tea."
    - {id: ask, kind: probe, prompt: "Anything to confess?"}
  file: more.yml
contrast: {alpha: 0.5, top-k: 5}
judges: [differential, lexicon, investigator]
llm: {url: "http://127.0.0.1:9/v1", model: judge, api-key-env: JUDGE_KEY}
behaviours:
  - name: Pirate talk
    patterns: ["\\\\barr+\\\\b", "matey"]
spectrum: {warn-stable-rank-below: 1.2, severity: low}
backend:
  type: openai
  url: http://127.0.0.1:8000/v1
  models: {rank1: my-rank1}
  api-key-env: VLLM_KEY
  concurrency: 8
  timeout-seconds: 30
  load-adapter: true
  check-models: false
  deadline-seconds: 900
  request-extras: {rank1: {lora: [{id: 0, scale: 1}]}}
`,
    );
    const c = loadConfig(join(dir, "delta-audit.yml"));
    expect(c.rank).toBe(2);
    expect(c.failOn).toBe("medium");
    expect(c.samples).toBe(3);
    expect(c.temperature).toBeGreaterThan(0); // several samples: sampled by default
    expect(c.probes.map((p) => p.id)).toEqual(["extra-1", "ask", "from-file"]);
    expect(c.probes[0].kind).toBe("ordinary");
    expect(c.probes[2].kind).toBe("probe");
    expect(c.contrast).toEqual({ enabled: true, alpha: 0.5, topK: 5 });
    expect(c.llm?.apiKeyEnv).toBe("JUDGE_KEY");
    expect(c.behaviours[0].patterns).toEqual(["\\barr+\\b", "matey"]);
    expect(c.spectrum.stableRankBelow).toBe(1.2);
    expect(c.backend).toMatchObject({ type: "openai", concurrency: 8, loadAdapter: true, apiKeyEnv: "VLLM_KEY" });
    expect(c.backend.models).toEqual({ base: "base", full: "full", rank1: "my-rank1" });
    expect(c.backend).toMatchObject({ checkModels: false, deadlineSeconds: 900, requestExtras: { rank1: { lora: [{ id: 0, scale: 1 }] } } });
    expect(defaultConfig().backend).toMatchObject({ checkModels: true, requestExtras: {} });
  });

  it("names the key path of unknown keys and bad values", () => {
    expect(errorOf("rnak: 1").message).toBe("delta-audit.yml: rnak: unknown key (allowed: rank, ranks, attribution, fail-on, seed, probes, samples, temperature, top-p, max-tokens, system-prompt, contrast, judges, llm, behaviours, behaviors, spectrum, backend, engine)");
    expect(errorOf("fail-on: critical").message).toMatch(/^delta-audit\.yml: fail-on: expected one of high, medium, low, never, got "critical"$/);
    expect(errorOf("rank: 0").message).toMatch(/rank: expected 1\.\.1024, got 0/);
    expect(errorOf("samples: 2.5").message).toMatch(/samples: expected an integer/);
    expect(errorOf("probes: {extra: [{prompt: hi, kind: weird}]}").message).toMatch(/probes\.extra\[0\]\.kind: expected one of probe, ordinary/);
    expect(errorOf("probes: {extra: [{kind: probe}]}").message).toMatch(/probes\.extra\[0\]\.prompt: is required/);
    expect(errorOf("backend: {models: {rank2: x}}").message).toMatch(/backend\.models\.rank2: unknown key/);
    expect(errorOf("backend: {type: openai}").message).toMatch(/backend\.url: is required/);
    expect(errorOf("backend: {request-extras: {rank2: {}}}").message).toMatch(/backend\.request-extras\.rank2: unknown key/);
    expect(errorOf("backend: {request-extras: {full: [1]}}").message).toMatch(/backend\.request-extras\.full: must be a mapping/);
    expect(errorOf("backend: {deadline-seconds: 0}").message).toMatch(/backend\.deadline-seconds/);
    expect(errorOf("behaviours: [{name: x, patterns: ['(unclosed']}]").message).toMatch(/behaviours\[0\]\.patterns\[0\]: not a valid regular expression/);
    expect(errorOf("judges: [investigator]").message).toMatch(/llm: is required/);
    expect(errorOf("llm: {url: 'file:///etc/passwd', model: m}").message).toMatch(/llm\.url: expected an http\(s\) URL/);
    expect(errorOf("llm: {url: 'http://x', model: m, api-key-env: 'sk-123 secret'}").message).toMatch(/llm\.api-key-env: expected an environment variable name/);
    expect(errorOf("probes: {default: false}").message).toMatch(/probes: the suite is empty/);
    expect(errorOf("probes: {file: nope.yml}").message).toMatch(/probes\.file: cannot read probes file/);
    expect(errorOf("[1, 2]").message).toMatch(/expected a mapping, got a list/);
    expect(errorOf("rank: [").message).toMatch(/not valid YAML/);
    expect(errorOf("rank: 1\nrank: 2").message).toMatch(/not valid YAML/);
  });

  it("refuses elicitation that cannot show a behaviour, at the documented limits", () => {
    expect(errorOf("max-tokens: 3").message).toMatch(/^delta-audit\.yml: max-tokens: 3 is too short for any reply to show a behaviour .*at least 4/);
    expect(parseConfig("max-tokens: 4").maxTokens).toBe(4);
    expect(errorOf("temperature: 2.01\ntop-p: 0.5").message).toMatch(/temperature: expected 0\.\.2/);
    expect(errorOf("temperature: 1.51").message).toMatch(/temperature: 1\.51 with top-p 1 samples noise/);
    expect(errorOf("temperature: 1.6\ntop-p: 0.96").message).toMatch(/with top-p 0\.96 samples noise/);
    expect(parseConfig("temperature: 1.5").temperature).toBe(1.5);
    expect(parseConfig("temperature: 2\ntop-p: 0.95")).toMatchObject({ temperature: 2, topP: 0.95 });
    expect(errorOf("judges: []").message).toMatch(/^delta-audit\.yml: judges: is empty: a suite that judges nothing can only pass; list at least one of differential, lexicon, investigator$/);
  });

  it("CLI-style overrides win over the file", () => {
    const c = applyOverrides(parseConfig("fail-on: low"), { failOn: "never", rank: 3, seed: 5, device: "cuda" });
    expect([c.failOn, c.rank, c.seed, c.backend.device]).toEqual(["never", 3, 5, "cuda"]);
    expect(() => applyOverrides(defaultConfig(), { backend: "openai" })).toThrow(InputError);
  });
});
