/**
 * The validation toolkit (src/validate.ts): every helper refuses with an InputError (exit 2)
 * that names the file / flag / input and the key path, quotes the bad value and says what was
 * expected; the integer flag parser takes decimal digits only.
 */
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import {
  boolean,
  choiceFlag,
  envVarName,
  fileOrigin,
  httpUrl,
  inputOrigin,
  integer,
  integerFlag,
  itemPath,
  list,
  mapping,
  namedOrigin,
  number,
  numberFlag,
  oneOf,
  parseBoolean,
  parseChoice,
  parseHttpUrl,
  parseInteger,
  required,
  requiredFlag,
  text,
  urlFlag,
} from "../../src/validate";

/** The message of the InputError `f` throws (and that it is one, exit 2). */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(InputError);
    expect((e as InputError).exitCode).toBe(2);
    return (e as Error).message;
  }
  throw new Error("expected an InputError");
}

describe("key paths", () => {
  it("joins keys and indexes", () => {
    expect(refusal(() => mapping(fileOrigin("f.yml"), { probes: 1 }, "", ["rank"]))).toBe("f.yml: probes: unknown key (allowed: rank)");
    expect(refusal(() => mapping(fileOrigin("f.yml"), { kind: 1 }, itemPath("probes.extra", 2), ["id"]))).toBe("f.yml: probes.extra[2].kind: unknown key (allowed: id)");
  });
});

describe("values from a YAML/JSON file", () => {
  const f = fileOrigin("delta-audit.yml");
  const at = "probes.extra[2].kind";

  it("each helper names the file and the key path", () => {
    expect(refusal(() => oneOf(f, "x", at, ["probe", "ordinary"]))).toBe('delta-audit.yml: probes.extra[2].kind: expected one of probe, ordinary, got "x"');
    expect(refusal(() => integer(f, 2.5, "samples", { min: 1, max: 64 }))).toBe("delta-audit.yml: samples: expected an integer, got 2.5");
    expect(refusal(() => integer(f, "1", "rank", { min: 1, max: 1024 }))).toBe('delta-audit.yml: rank: expected an integer, got "1"');
    expect(refusal(() => integer(f, 0, "rank", { min: 1, max: 1024 }))).toBe("delta-audit.yml: rank: expected 1..1024, got 0");
    expect(refusal(() => number(f, Number.NaN, "temperature", { min: 0, max: 5 }))).toBe("delta-audit.yml: temperature: expected a number, got NaN");
    expect(refusal(() => number(f, 6, "temperature", { min: 0, max: 5 }))).toBe("delta-audit.yml: temperature: expected 0..5, got 6");
    expect(refusal(() => boolean(f, "yes", "contrast.enabled"))).toBe('delta-audit.yml: contrast.enabled: expected true or false, got "yes"');
    expect(refusal(() => text(f, 3, "llm.model", 10))).toBe("delta-audit.yml: llm.model: expected a string, got 3");
    expect(refusal(() => text(f, "  ", "llm.model", 10))).toBe("delta-audit.yml: llm.model: must not be empty");
    expect(refusal(() => text(f, "x".repeat(11), "llm.model", 10))).toBe("delta-audit.yml: llm.model: longer than 10 characters");
    expect(refusal(() => list(f, {}, "judges", { max: 3 }))).toBe("delta-audit.yml: judges: expected a list, got a mapping");
    expect(refusal(() => list(f, [1, 2, 3, 4], "judges", { max: 3 }))).toBe("delta-audit.yml: judges: at most 3 entries, got 4");
    expect(refusal(() => list(f, [], "models", { min: 1, max: 3 }))).toBe("delta-audit.yml: models: expected a non-empty list");
    expect(refusal(() => list(f, undefined, "models", { min: 1, max: 3 }))).toBe("delta-audit.yml: models: expected a non-empty list, got undefined");
    expect(refusal(() => mapping(f, [1], "backend", ["type"]))).toBe("delta-audit.yml: backend: expected a mapping, got a list");
    expect(refusal(() => mapping(f, { tpye: 1 }, "backend", ["type", "url"]))).toBe("delta-audit.yml: backend.tpye: unknown key (allowed: type, url)");
    expect(refusal(() => mapping(f, { rnak: 1 }, "", ["rank"]))).toBe("delta-audit.yml: rnak: unknown key (allowed: rank)");
    expect(refusal(() => required(f, undefined, "llm.url"))).toBe("delta-audit.yml: llm.url: is required");
    expect(refusal(() => envVarName(f, "sk-123 secret", "llm.api-key-env"))).toBe('delta-audit.yml: llm.api-key-env: expected an environment variable name, got "sk-123 secret"');
    expect(refusal(() => httpUrl(f, "file:///etc/passwd", "backend.url"))).toBe('delta-audit.yml: backend.url: expected an http(s) URL, got "file:///etc/passwd"');
    expect(refusal(() => httpUrl(f, "not a url", "backend.url"))).toMatch(/backend\.url: expected an http\(s\) URL/);
  });

  it("calls a problem with the whole document 'the top level'", () => {
    expect(refusal(() => mapping(f, "just a string", "", ["rank"]))).toBe('delta-audit.yml: the top level: expected a mapping, got "just a string"');
  });

  it("quotes long values cut short, never whole", () => {
    const msg = refusal(() => oneOf(f, "y".repeat(500), "fail-on", ["high"]));
    expect(msg.length).toBeLessThan(140);
    expect(msg).toMatch(/got "y+\.\.\.$/);
  });

  it("returns good values unchanged", () => {
    expect(integer(f, 3, "rank", { min: 1, max: 4 })).toBe(3);
    expect(number(f, 0.5, "top-p", { min: 0, max: 1 })).toBe(0.5);
    expect(oneOf(f, "probe", at, ["probe", "ordinary"])).toBe("probe");
    expect(list(f, [1], "x", { max: 1 })).toEqual([1]);
    expect(mapping(f, { type: "openai" }, "backend", ["type"])).toEqual({ type: "openai" });
    expect(envVarName(f, "VLLM_KEY", "k")).toBe("VLLM_KEY");
    expect(httpUrl(f, "http://127.0.0.1:8000/v1", "u")).toBe("http://127.0.0.1:8000/v1");
  });
});

describe("integer flags", () => {
  const rank = { min: 1, max: 1024 };

  it("refuses everything but plain decimal digits within the bounds", () => {
    for (const bad of ["1e3", "0x10", "", " ", "-1", "+1", "1.5", "1_000", "1,000", "Infinity", "NaN", "abc", "0b11", "١٢"]) {
      expect(() => integerFlag(bad, "--rank", rank), JSON.stringify(bad)).toThrow(InputError);
    }
    expect(() => integerFlag("0", "--rank", rank)).toThrow(InputError);
    expect(() => integerFlag("1025", "--rank", rank)).toThrow(InputError);
  });

  it("refuses huge values instead of rounding them", () => {
    const unbounded = { min: 0, max: Number.MAX_SAFE_INTEGER };
    for (const huge of ["9007199254740993", "99999999999999999999", "1".repeat(400)]) {
      expect(() => integerFlag(huge, "--show", unbounded), huge.slice(0, 20)).toThrow(InputError);
    }
    expect(integerFlag("9007199254740991", "--show", unbounded)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it("names the flag and quotes the value as given", () => {
    expect(refusal(() => integerFlag("0", "--rank", rank))).toBe("--rank: expected 1..1024, got '0'");
    expect(refusal(() => integerFlag("-1", "--rank", rank))).toBe("--rank: expected an integer, got '-1'");
    expect(refusal(() => integerFlag("1e9", "--rank", rank))).toBe("--rank: expected an integer, got '1e9'");
    expect(refusal(() => integerFlag("0", "--show", { min: 1, max: Number.MAX_SAFE_INTEGER }))).toBe("--show: expected an integer of at least 1, got '0'");
    // a flag may describe what it takes in its own words, for both kinds of mistake
    const port = { min: 0, max: 65535, expected: "a port number 0-65535" };
    expect(refusal(() => integerFlag("99999", "--port", port))).toBe("--port: expected a port number 0-65535, got '99999'");
    expect(refusal(() => integerFlag("http", "--port", port))).toBe("--port: expected a port number 0-65535, got 'http'");
  });

  it("accepts digits with surrounding spaces, a sign where negatives are allowed, and leaves an absent flag undefined", () => {
    expect(integerFlag(" 12 ", "--rank", rank)).toBe(12);
    expect(integerFlag("0", "--seed", { min: 0, max: 10 })).toBe(0);
    expect(integerFlag("-3", "--offset", { min: -5, max: 5 })).toBe(-3);
    expect(integerFlag(undefined, "--rank", rank)).toBeUndefined();
    expect(integerFlag(undefined, "--rank", rank) ?? 7).toBe(7);
  });

  it("the same parser serves any origin", () => {
    expect(refusal(() => parseInteger(fileOrigin("reg.yml"), "x", "models[0].rank", rank))).toBe('reg.yml: models[0].rank: expected an integer, got "x"');
    expect(refusal(() => parseInteger(inputOrigin("rank"), "0", "", rank))).toBe("input 'rank': Invalid value '0'. Expected 1..1024");
  });
});

describe("number and choice flags", () => {
  it("takes plain decimal numbers only", () => {
    const b = { min: 0, max: 10 };
    expect(numberFlag("1.3", "--temperature", b)).toBe(1.3);
    expect(numberFlag(".5", "--temperature", b)).toBe(0.5);
    expect(numberFlag("1e-3", "--temperature", b)).toBe(0.001);
    for (const bad of ["", "0x1", "Infinity", "NaN", "1,5", "one", "11", "-0.1"]) expect(() => numberFlag(bad, "--temperature", b), bad).toThrow(InputError);
    expect(refusal(() => numberFlag("11", "--temperature", b))).toBe("--temperature: expected 0..10, got '11'");
    expect(refusal(() => numberFlag("x", "--temperature", b))).toBe("--temperature: expected a number, got 'x'");
  });

  it("names the choices", () => {
    expect(choiceFlag("openai", "--backend", ["embedded", "openai"])).toBe("openai");
    expect(choiceFlag(undefined, "--backend", ["embedded", "openai"])).toBeUndefined();
    expect(refusal(() => choiceFlag("torch", "--backend", ["embedded", "openai"]))).toBe("--backend: expected one of embedded, openai, got 'torch'");
  });
});

describe("Action inputs", () => {
  it("word errors the actions/checkout way", () => {
    expect(refusal(() => parseChoice(inputOrigin("device"), "tpu", "", ["cpu", "cuda"]))).toBe("input 'device': Invalid value 'tpu'. Expected one of: cpu, cuda");
    expect(refusal(() => parseBoolean(inputOrigin("comment"), "yes", ""))).toBe("input 'comment': Invalid value 'yes'. Expected true or false");
  });

  it("accept the YAML 1.2 core booleans", () => {
    for (const t of ["true", "True", "TRUE"]) expect(parseBoolean(inputOrigin("x"), t, "")).toBe(true);
    for (const f of ["false", "False", "FALSE"]) expect(parseBoolean(inputOrigin("x"), f, "")).toBe(false);
    expect(() => parseBoolean(inputOrigin("x"), "1", "")).toThrow(InputError);
  });

  it("a flag or input origin may name a key path too", () => {
    expect(refusal(() => namedOrigin("--adapter").fail("rank", "must be a positive integer"))).toBe("--adapter: rank: must be a positive integer");
    expect(refusal(() => inputOrigin("config").fail("", "does not exist"))).toBe("input 'config': does not exist");
  });
});

describe("server URLs: one rule for the config, flags, Action inputs and backends", () => {
  it("takes absolute http(s) URLs only, at most 2000 characters", () => {
    expect(urlFlag("http://127.0.0.1:8000/v1", "--inference-url")).toBe("http://127.0.0.1:8000/v1");
    expect(urlFlag(undefined, "--inference-url")).toBeUndefined();
    expect(refusal(() => urlFlag("notaurl", "--inference-url"))).toBe("--inference-url: expected an http(s) URL, got 'notaurl'");
    expect(refusal(() => urlFlag("file:///etc/passwd", "--inference-url"))).toBe("--inference-url: expected an http(s) URL, got 'file:///etc/passwd'");
    expect(refusal(() => urlFlag(`https://example.com/${"a".repeat(2000)}`, "--inference-url"))).toBe("--inference-url: longer than 2000 characters");
    expect(refusal(() => parseHttpUrl(inputOrigin("inference-url"), "ftp://x", "", "http(s)://host[:port][/v1]"))).toBe("input 'inference-url': Invalid value 'ftp://x'. Expected http(s)://host[:port][/v1]");
  });

  it("refuses credentials in the URL wherever it comes from, without quoting them", () => {
    const f = fileOrigin("delta-audit.yml");
    for (const refuse of [
      () => httpUrl(f, "https://user:hunter2@api.example.com/v1", "backend.url"),
      () => urlFlag("http://user:hunter2@127.0.0.1:8000/v1", "--inference-url"),
      () => parseHttpUrl(inputOrigin("inference-url"), "https://:hunter2@example.com", ""),
    ]) {
      const msg = refusal(refuse);
      expect(msg).toMatch(/: credentials in the URL are not supported; pass the API key through the environment$/);
      expect(msg).not.toContain("hunter2");
    }
    // a value that is not a URL is quoted without what looks like credentials
    expect(refusal(() => urlFlag("ftp://user:hunter2@host", "--inference-url"))).toBe("--inference-url: expected an http(s) URL, got 'ftp://host'");
  });
});

describe("required flags and environment variables", () => {
  it("a missing or empty required flag says what it names", () => {
    expect(requiredFlag("x", "--out", "the output folder")).toBe("x");
    expect(refusal(() => requiredFlag(undefined, "--out", "the output folder"))).toBe("--out: required: the output folder");
    expect(refusal(() => requiredFlag("", "--out", "the output folder"))).toBe("--out: required: the output folder");
  });

  it("an environment variable is named like a flag", () => {
    expect(refusal(() => parseInteger(namedOrigin("DELTA_AUDIT_ORT_THREADS"), "1e6", "", { min: 1, max: 1024 }))).toBe("DELTA_AUDIT_ORT_THREADS: expected an integer, got '1e6'");
  });
});
