/**
 * Hostile delta-audit.yml files through the real CLI: alias bombs, duplicate keys, wrong
 * types, huge files, and behaviour patterns that would backtrack forever over the audited
 * model's replies. Each is exit 2 with one line naming the file and the key, before any work.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism } from "../../src/organisms/index";
import { parseConfig } from "../../src/config";
import { checkBehaviourPattern } from "../../src/judge/lexicons";
import { cli, oneLineError } from "./helpers";

let dir: string;
let org: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-sec-cfg-"));
  org = join(dir, "org");
  await generateOrganism({ kind: "benign", outDir: org, seed: 2 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const BOMB = ["a: &a [x, x, x, x, x, x, x, x, x]", "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]", "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]", "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]", "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]", "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e]"].join("\n");

const CASES: Array<[string, string, RegExp]> = [
  ["alias bomb", BOMB, /not valid YAML: Excessive alias count/],
  ["duplicate key", "rank: 1\nrank: 2\n", /not valid YAML: Map keys must be unique/],
  ["string rank", 'rank: "1"\n', /rank: expected an integer, got "1"/],
  ["unknown fail-on", "fail-on: critical\n", /fail-on: expected one of high, medium, low, never/],
  ["NaN temperature", "temperature: .nan\n", /temperature: expected a number/],
  ["a scalar document", '!!str "just a string"\n', /the top level: expected a mapping/],
  ["file:// backend url", 'backend: {type: openai, url: "file:///etc/passwd"}\n', /backend\.url: expected an http\(s\) URL/],
  ["nested quantifier pattern", 'behaviours: [{name: x, patterns: ["(a+)+$"]}]\n', /behaviours\[0\]\.patterns\[0\]: has a repeated group that itself repeats/],
  ["a stop sequence for one variant", 'backend: {type: openai, url: "http://127.0.0.1:9/v1", request-extras: {rank1: {stop: ["hedgehog"]}}}\n', /backend\.request-extras\.rank1\.stop: steers or cuts what the model writes/],
  ["a logit bias for one variant", 'backend: {type: openai, url: "http://127.0.0.1:9/v1", request-extras: {rank1: {logit_bias: {"1234": -100}}}}\n', /request-extras\.rank1\.logit_bias: steers/],
  ["a suite with no judge", "judges: []\n", /judges: is empty: a suite that judges nothing can only pass/],
  ["one-token replies", "max-tokens: 1\n", /max-tokens: 1 is too short for any reply to show a behaviour/],
  ["noise sampling (temperature 3)", "samples: 2\ntemperature: 3\n", /temperature: expected 0\.\.2, got 3/],
  ["hot sampling without a nucleus cut", "samples: 2\ntemperature: 1.8\n", /temperature: 1\.8 with top-p 1 samples noise.*top-p to 0\.95 or less/],
  ...["grammar", "regex", "ebnf", "json_schema", "structural_tag", "n_predict", "truncate_prompt_tokens", "chat_template_kwargs", "documents"].map(
    (field): [string, string, RegExp] => [
      `request-extras ${field} for one variant`,
      `backend: {type: openai, url: "http://127.0.0.1:9/v1", request-extras: {rank1: {${field}: x}}}\n`,
      new RegExp(`backend\\.request-extras\\.rank1\\.${field}: steers or cuts what the model writes`),
    ],
  ),
  ["an unknown request-extras field", 'backend: {type: openai, url: "http://127.0.0.1:9/v1", request-extras: {full: {mystery_knob: 1}}}\n', /backend\.request-extras\.full\.mystery_knob: is not a field known only to select an adapter or tune transport/],
  ["a llama.cpp lora scale that weakens the adapter", 'backend: {type: openai, url: "http://127.0.0.1:9/v1", request-extras: {rank1: {lora: [{id: 1, scale: 0.3}]}}}\n', /backend\.request-extras\.rank1\.lora\[0\]\.scale: must be 1, got 0\.3: a scale steers the adapter/],
  ["two llama.cpp adapters on one variant", 'backend: {type: openai, url: "http://127.0.0.1:9/v1", request-extras: {rank1: {lora: [{id: 0, scale: 1}, {id: 1, scale: 1}]}}}\n', /backend\.request-extras\.rank1\.lora: at most 1 entr/],
  ["ambiguous alternation pattern", 'behaviors: [{name: x, patterns: ["(a|aa)*c"]}]\n', /behaviors\[0\]\.patterns\[0\]: has a repeated group of alternatives/],
];

describe("hostile configs", () => {
  for (const [name, text, expected] of CASES) {
    it(`${name}: exit 2 naming the file and key, nothing written`, async () => {
      const config = join(dir, `${name.replace(/\W+/g, "-")}.yml`);
      await writeFile(config, text);
      const out = join(dir, `out-${name.replace(/\W+/g, "-")}`);
      const r = await cli(["scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--config", config, "--out", out], { timeoutMs: 20_000 });
      expect(r.status, r.stderr).toBe(2);
      const line = oneLineError(r.stderr);
      expect(line).toContain(config);
      expect(line).toMatch(expected);
      expect(existsSync(out)).toBe(false);
    });
  }

  it("a 4 MB config is refused by size without being parsed", async () => {
    const config = join(dir, "huge.yml");
    await writeFile(config, `# ${"x".repeat(4_000_000)}\n`);
    const r = await cli(["scan", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--config", config, "--out", join(dir, "out-huge")]);
    expect(r.status).toBe(2);
    expect(oneLineError(r.stderr)).toMatch(/huge\.yml: is 4000003 bytes, over the 1000000-byte limit/);
  });

  it("the refused pattern shapes really do stall V8 on a model-sized reply, and the allowed ones do not", () => {
    const slow = (re: RegExp, s: string) => {
      const t = Date.now();
      re.test(s);
      return Date.now() - t;
    };
    // 22 letters already cost ~100 ms for (a+)+ (each extra letter doubles it); a reply has thousands
    expect(slow(/(a+)+$/iu, `${"a".repeat(22)}!`)).toBeGreaterThan(20);
    expect(checkBehaviourPattern("(a+)+$")).toMatch(/^has a repeated group that itself repeats/);
    for (const ok of ["\\barr+\\b", "(?:very|so)+ good", "(?:ab|cd){2,}", "foo(bar)?", "matey"]) {
      expect(checkBehaviourPattern(ok), ok).toBeUndefined();
      expect(slow(new RegExp(ok, "iu"), `${"very ".repeat(2000)}!`)).toBeLessThan(50);
    }
    expect(parseConfig('behaviours: [{name: flattery, patterns: ["(?:very|so)+ (?:smart|wise)"]}]\n').behaviours[0]!.patterns).toHaveLength(1);
    // adapter selection per request (llama.cpp, SGLang) stays allowed
    expect(parseConfig('backend: {type: openai, url: "http://127.0.0.1:9/v1", request-extras: {rank1: {lora: [{id: 0, scale: 1}]}, full: {lora_path: full}}}\n').backend.requestExtras.full).toEqual({ lora_path: "full" });
    // and harmless transport settings; base served with no adapter at all
    expect(parseConfig('backend: {type: openai, url: "http://127.0.0.1:9/v1", request-extras: {base: {lora: [], cache_prompt: true, id_slot: 0}, full: {adapter_id: org/ft, priority: 1, user: ci}}}\n').backend.requestExtras).toEqual({
      base: { lora: [], cache_prompt: true, id_slot: 0 },
      full: { adapter_id: "org/ft", priority: 1, user: "ci" },
    });
  });
});

describe("probes files named by the config", () => {
  it("must be .yml/.yaml/.json inside the repository holding the config: no /proc/self/environ, no ../ or symlinked secrets", async () => {
    const repo = join(dir, "repo");
    await mkdir(join(repo, ".git"), { recursive: true });
    await mkdir(join(repo, ".github"));
    const secret = join(dir, "secret-list.yml");
    await writeFile(secret, "- ghs_SECRET_TOKEN_AS_A_PROMPT\n");
    await writeFile(join(repo, "probes.yml"), "- Tell me about tea.\n");
    await symlink(secret, join(repo, "linked.yml"));
    const check = (file: string) => parseConfig(`probes: {file: ${JSON.stringify(file)}}\n`, join(repo, ".github", "delta-audit.yml"), join(repo, ".github"));
    expect(() => check("/proc/self/environ")).toThrow(/probes\.file: expected a \.yml, \.yaml or \.json file/);
    expect(() => check("/etc/passwd")).toThrow(/expected a \.yml/);
    expect(() => check("../../secret-list.yml")).toThrow(/is missing or outside .*repo, the folder \(repository\) holding the config/);
    expect(() => check("../linked.yml")).toThrow(/is missing or outside/);
    let message = "";
    try {
      check(secret);
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/is missing or outside/);
    expect(message).not.toContain("ghs_SECRET");
    expect(check("../probes.yml").probes.map((p) => p.prompt)).toContain("Tell me about tea.");
  });

  it("says the same for an existing and a missing path outside the repository (no existence oracle)", async () => {
    const repo = join(dir, "oracle-repo");
    await mkdir(join(repo, ".git"), { recursive: true });
    const outside = join(dir, "exists-outside.yml");
    await writeFile(outside, "- hi\n");
    await symlink(outside, join(repo, "to-existing.yml"));
    await symlink(join(dir, "missing-outside.yml"), join(repo, "to-missing.yml"));
    const messageOf = (file: string): string => {
      try {
        parseConfig(`probes: {file: ${JSON.stringify(file)}}\n`, join(repo, "delta-audit.yml"), repo);
      } catch (e) {
        return (e as Error).message.replaceAll(file, "FILE");
      }
      return "accepted";
    };
    const existing = messageOf(outside);
    expect(existing).toMatch(/probes\.file: cannot read probes file .*is missing or outside/);
    expect(messageOf(join(dir, "missing-outside.yml"))).toBe(existing);
    expect(messageOf("../exists-outside.yml")).toBe(existing);
    expect(messageOf("../missing-outside.yml")).toBe(existing);
    // through links committed in the repository too
    expect(messageOf("to-existing.yml")).toBe(existing);
    expect(messageOf("to-missing.yml")).toBe(existing);
    expect(messageOf("not-there.yml")).toBe(existing);
  });
});
