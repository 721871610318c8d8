/**
 * report.sarif: valid SARIF 2.1.0 (the official JSON schema, test/fixtures/README.md says where
 * it came from), one rule per finding source, levels from severity, fingerprints that survive a
 * rerun, and model text that stays inert plain text.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Ajv from "ajv-draft-04";
import addFormats from "ajv-formats";
import { describe, expect, it } from "vitest";
import { HIDDEN_CHARS } from "../../src/errors";
import type { Finding, Severity } from "../../src/judge/types";
import { buildReport, REPORT_FILES, writeReportFiles } from "../../src/report/build";
import { buildSarif, SARIF_FILE, subjectConfigFile, type SarifLog, type SarifSubject } from "../../src/report/sarif";
import type { Report } from "../../src/report/types";
import { VERSION } from "../../src/version";
import { INJECTIONS as SHARED_INJECTIONS } from "../security/injections";

const schema = JSON.parse(await readFile(new URL("../fixtures/sarif-schema-2.1.0.json", import.meta.url), "utf8"));
// the schema is draft-04 (ajv-draft-04); its toolComponent.language pattern has a stray `]` that
// only the `u` flag rejects, so patterns compile without it, as JavaScript's RegExp reads them
const ajv = new Ajv({ allErrors: true, strict: false, unicodeRegExp: false });
addFormats(ajv);
const validateSarif = ajv.compile(schema);

function expectValid(log: SarifLog): void {
  // what is written to disk is what GitHub reads: validate the JSON text, not the object
  const ok = validateSarif(JSON.parse(JSON.stringify(log)));
  expect(validateSarif.errors ?? [], JSON.stringify(validateSarif.errors, null, 1)).toEqual([]);
  expect(ok).toBe(true);
}

/** The shared injection corpus, plus the embedded links of SARIF plain-text messages (§3.11.6), also behind a backslash. */
const INJECTIONS = [...SHARED_INJECTIONS, "[see](1) \\[also](https://evil.example) \\\\[and](2)"];
const PAYLOAD = INJECTIONS.join(" ");

function finding(source: string, over: Partial<Finding> = {}): Finding {
  return {
    id: `${source.replace(":", "-")}-1`,
    title: `A ${source} finding`,
    severity: "medium",
    source,
    terms: ["pineapple", "secret word"],
    evidence: [{ probeId: "p1", variant: "rank1", excerpt: "I love pineapple." }],
    confidence: 0.8,
    description: "What it means.",
    ...over,
  };
}

/** One finding of every source the judges write (judge/differential, lexicons, spectrum-warnings, investigator). */
const EVERY_SOURCE: Finding[] = [
  finding("concealment", { severity: "high" }),
  finding("revealed"),
  finding("implant", { severity: "low" }),
  finding("lexicon:flattery", { id: "lexicon-flattery", terms: ["great question"] }),
  finding("lexicon:custom-pineapple", { id: "lexicon-custom-pineapple", severity: "high", terms: ["pineapple"] }),
  finding("spectrum", { id: "spectrum-stable-rank", severity: "info", terms: [], evidence: [], confidence: 1 }),
  finding("spectrum", { id: "spectrum-energy-top1", severity: "info", terms: [], evidence: [], confidence: 1 }),
  finding("investigator", { id: "investigator-1", terms: [] }),
  finding("investigator", { id: "investigator-2", terms: [], severity: "low" }),
];

function report(findings: Finding[], opts: { createdAt?: Date; kind?: "lora" | "full" } = {}): Report {
  const kind = opts.kind ?? "lora";
  return buildReport({
    subject: { base: "models/base", ...(kind === "lora" ? { adapter: "models/adapter" } : { finetuned: "models/full" }), kind, digest: "ab".repeat(32) },
    spectrum: {
      modules: [],
      summary: { modules: 0, stableRank: { median: 1, p10: 1, p90: 1 }, energyShareTop1: { median: 1, p10: 1, p90: 1 }, byType: {}, byLayer: {} },
    },
    findings,
    verdict: { conclusion: findings.length > 0 ? "fail" : "pass", reasons: [], failOn: "high" },
    timings: {},
    createdAt: opts.createdAt ?? new Date("2026-01-01T00:00:00Z"),
  });
}

const CONFIG = "adapters/quirk/adapter_config.json";
const one = (findings: Finding[], configFile = CONFIG): SarifLog => buildSarif([{ report: report(findings), configFile }]);
const fingerprints = (log: SarifLog): string[] => log.runs[0].results.map((r) => r.partialFingerprints["deltaAudit/v2"]!);

describe("report.sarif", () => {
  it("a report with findings from every source is valid SARIF 2.1.0, one result per finding, one rule per source", () => {
    const log = one(EVERY_SOURCE);
    expectValid(log);
    const run = log.runs[0];
    expect(run.tool.driver).toMatchObject({ name: "delta-audit", version: VERSION });
    expect(run.tool.driver.informationUri).toBeUndefined();
    expect(run.results).toHaveLength(EVERY_SOURCE.length);
    expect(run.tool.driver.rules.map((r) => r.id)).toEqual([
      "concealment",
      "implant",
      "investigator",
      "lexicon/custom-pineapple",
      "lexicon/flattery",
      "revealed",
      "spectrum/energy-top1",
      "spectrum/stable-rank",
    ]);
    for (const rule of run.tool.driver.rules) {
      expect(rule.name).toMatch(/^[A-Za-z0-9]+$/);
      for (const t of [rule.shortDescription, rule.fullDescription, rule.help]) expect(t.text.length).toBeGreaterThan(10);
      expect(["error", "warning", "note"]).toContain(rule.defaultConfiguration.level);
    }
    expect(run.tool.driver.rules.find((r) => r.id === "lexicon/flattery")?.properties).toEqual({ source: "lexicon", family: "flattery" });
    expect(run.tool.driver.rules.find((r) => r.id === "lexicon/flattery")?.fullDescription.text).toMatch(/^Flattery: Praises/);
    run.results.forEach((r, i) => {
      expect(run.tool.driver.rules[r.ruleIndex]!.id).toBe(r.ruleId);
      expect(r.locations[0].physicalLocation).toEqual({ artifactLocation: { uri: CONFIG, uriBaseId: "%SRCROOT%" }, region: { startLine: 1 } });
      expect(r.properties).toMatchObject({ findingId: EVERY_SOURCE[i]!.id, severity: EVERY_SOURCE[i]!.severity, confidence: EVERY_SOURCE[i]!.confidence, terms: EVERY_SOURCE[i]!.terms, verdict: "fail" });
    });
    expect(run.results[0]!.message.text).toBe("A concealment finding — What it means.");
    expect(run.results[0]!.properties.evidence).toEqual([{ probeId: "p1", variant: "rank1", excerpt: "I love pineapple." }]);
    expect(run.results[0]!.properties.statistics).toBeUndefined();
    // the numbers behind a confidence travel with it, as report.json has them
    const statistics = { kind: "measurement", note: "a measured quantity" } as unknown as Finding["statistics"];
    const withStats = one([finding("spectrum", { id: "spectrum-stable-rank", statistics })]);
    expectValid(withStats);
    expect(withStats.runs[0].results[0]!.properties.statistics).toEqual(statistics);
    // ... and its strings (variant names, a discount's reason) are capped plain lines like the rest
    const long: Finding["statistics"] = {
      kind: "test",
      rates: [{ variant: `rank1\n${"v".repeat(5_000)}`, prompts: "probe", k: 3, n: 4, ci95: [0.3, 0.95] }],
      test: { name: "fisher-exact", first: { variant: "rank1", prompts: "probe", k: 3, n: 4 }, second: { variant: "base", prompts: "probe", k: 0, n: 4 }, p: 0.03 },
      discount: 0.5,
      discountReason: `because\u001b[31m ${"r".repeat(5_000)}`,
    };
    const capped = one([finding("revealed", { statistics: long })]).runs[0].results[0]!.properties.statistics as Extract<Finding["statistics"], { kind: "test" }>;
    expect(capped.rates[0]).toMatchObject({ prompts: "probe", k: 3, n: 4, ci95: [0.3, 0.95] });
    expect(capped.rates[0]!.variant.length).toBeLessThanOrEqual(300);
    expect(capped.discountReason!.length).toBeLessThanOrEqual(300);
    for (const t of [capped.rates[0]!.variant, capped.discountReason!]) expect(t).not.toMatch(/[\u0000-\u001f]/);
    expect(capped.test).toEqual(long.test);
    expect(capped.discount).toBe(0.5);
  });

  it("a report without findings is valid, with no rules and no results", () => {
    const log = one([]);
    expectValid(log);
    expect(log.runs).toHaveLength(1);
    expect(log.runs[0].results).toEqual([]);
    expect(log.runs[0].tool.driver.rules).toEqual([]);
    expectValid(buildSarif([]));
    // and the validator is not vacuous: what the schema forbids is caught
    const bad = JSON.parse(JSON.stringify(one([finding("revealed")])));
    bad.runs[0].results[0].level = "critical";
    delete bad.runs[0].results[0].message;
    bad.runs[0].tool.driver.rules[0].defaultConfiguration.colour = "red";
    expect(validateSarif(bad)).toBe(false);
    expect(validateSarif.errors?.length).toBeGreaterThanOrEqual(3);
  });

  it("several subjects share one run, each result on its own file", () => {
    const subjects: SarifSubject[] = [
      { report: report(EVERY_SOURCE), configFile: "a/adapter_config.json" },
      { report: report([], { kind: "full" }), configFile: "b/config.json" },
      { report: report([finding("concealment", { severity: "high" })]), configFile: "c d/x#y/adapter_config.json" },
    ];
    const log = buildSarif(subjects);
    expectValid(log);
    const uris = log.runs[0].results.map((r) => r.locations[0].physicalLocation.artifactLocation.uri);
    expect(new Set(uris)).toEqual(new Set(["a/adapter_config.json", "c%20d/x%23y/adapter_config.json"]));
    expect(log.runs[0].tool.driver.rules.filter((r) => r.id === "concealment")).toHaveLength(1);
  });

  it("levels follow severity: high → error, medium → warning, low and info → note", () => {
    const expected: Record<Severity, string> = { high: "error", medium: "warning", low: "note", info: "note" };
    for (const [severity, level] of Object.entries(expected)) {
      expect(one([finding("revealed", { severity: severity as Severity })]).runs[0].results[0]!.level).toBe(level);
    }
  });

  it("fingerprints hold across runs that differ in confidence, excerpts, wording, secondary terms and time, and change with file, rule and first term", () => {
    const first = buildSarif([{ report: report(EVERY_SOURCE, { createdAt: new Date("2026-01-01T00:00:00Z") }), configFile: CONFIG }]);
    const lexicon = (f: Finding) => f.source.startsWith("lexicon:");
    const rerun = EVERY_SOURCE.map((f) => ({
      ...f,
      confidence: f.confidence / 2,
      // an investigator hypothesis without terms is known by its title (case and spacing aside)
      title: f.source === "investigator" && f.terms.length === 0 ? `  ${f.title.toUpperCase()} ` : `${f.title}, reworded`,
      description: "Other words.",
      // a lexicon finding's terms are its most-matched phrases: any may change; others keep their first term (case aside)
      terms: lexicon(f) ? ["other phrase", "and another"] : f.terms.length === 0 ? [] : f.terms.map((t, i) => (i === 0 ? t.toUpperCase() : `${t} changed`)).concat("extra"),
      evidence: f.evidence.map((e) => ({ ...e, excerpt: `${e.excerpt} And more.` })),
    }));
    const second = buildSarif([{ report: report(rerun, { createdAt: new Date("2026-06-01T12:00:00Z") }), configFile: CONFIG }]);
    expect(fingerprints(second)).toEqual(fingerprints(first));
    // unique within the run: the two investigator findings without terms are numbered
    expect(new Set(fingerprints(first)).size).toBe(EVERY_SOURCE.length);
    expect(fingerprints(first).filter((p) => p.endsWith(":2"))).toHaveLength(1);
    for (const p of fingerprints(first)) expect(p).toMatch(/^[0-9a-f]{64}:\d+$/);

    const base = finding("revealed");
    const [fp] = fingerprints(one([base]));
    expect(fingerprints(one([{ ...base, terms: ["pineapple", "other"] }]))[0]).toBe(fp);
    expect(fingerprints(one([{ ...base, terms: ["secret word", "pineapple"] }]))[0]).not.toBe(fp);
    expect(fingerprints(one([base], "adapters/other/adapter_config.json"))[0]).not.toBe(fp);
    expect(fingerprints(one([{ ...base, source: "implant" }]))[0]).not.toBe(fp);

    // lexicon: file + rule only
    const lex = finding("lexicon:flattery", { terms: ["great question"] });
    const [lfp] = fingerprints(one([lex]));
    expect(fingerprints(one([{ ...lex, terms: ["what a question", "brilliant"] }]))[0]).toBe(lfp);
    expect(fingerprints(one([{ ...lex, source: "lexicon:sycophancy" }]))[0]).not.toBe(lfp);
    expect(fingerprints(one([lex], "adapters/other/adapter_config.json"))[0]).not.toBe(lfp);

    // investigator hypotheses without terms keep their own alerts whatever order they come in
    const h1 = finding("investigator", { id: "investigator-1", terms: [], title: "Talks about pineapples" });
    const h2 = finding("investigator", { id: "investigator-2", terms: [], title: "Mentions a secret word" });
    const [a1, a2] = fingerprints(one([h1, h2]));
    expect(fingerprints(one([h2, h1]))).toEqual([a2, a1]);
    expect(a1).toMatch(/:1$/);
    expect(a2).toMatch(/:1$/);
  });

  it("model text stays inert plain text: one line, no hidden characters, no embedded links", () => {
    const hostile = EVERY_SOURCE.map((f) => ({
      ...f,
      title: `${f.title} ${PAYLOAD}`,
      description: PAYLOAD,
      terms: [PAYLOAD, ...INJECTIONS],
      evidence: INJECTIONS.map((excerpt, i) => ({ probeId: `p${i}\n# x`, variant: "rank1", excerpt })),
    }));
    const log = buildSarif([{ report: report(hostile), configFile: "adapters/`<img src=x>`|@octocat/adapter_config.json" }]);
    expectValid(log);
    const text = JSON.stringify(log);
    // the JSON is one document GitHub parses; every string in it is one line without hidden characters
    const strings: string[] = [];
    JSON.parse(text, (_k, v) => {
      if (typeof v === "string") strings.push(v);
      return v;
    });
    for (const s of strings) {
      expect(s, JSON.stringify(s)).not.toMatch(/[\r\n\u2028\u2029]/);
      expect(s.replace(HIDDEN_CHARS, ""), JSON.stringify(s)).toBe(s);
    }
    for (const r of log.runs[0].results) {
      const m = r.message.text;
      expect(Object.keys(r.message)).toEqual(["text"]); // never markdown
      // every square bracket escaped, and no escaped backslash in front of one
      expect(m.replace(/\\[[\]]/g, "")).not.toMatch(/[[\]]/);
      expect(m).not.toMatch(/\\\\[[\]]/);
      expect(m).toContain("<script>alert(1)</script>"); // shown as written: GitHub displays message text as text
      expect(m.length).toBeLessThanOrEqual(1100);
      expect(r.properties.evidence.length).toBeLessThanOrEqual(5);
      expect(r.locations[0].physicalLocation.artifactLocation.uri).toBe("adapters/%60%3Cimg%20src%3Dx%3E%60%7C%40octocat/adapter_config.json");
    }
  });

  it("a scan writes report.sarif on its subject's config file, relative to the working directory", async () => {
    expect(REPORT_FILES.sarif).toBe(SARIF_FILE);
    expect(subjectConfigFile(report([]), "/work")).toBe("models/adapter/adapter_config.json");
    expect(subjectConfigFile(report([], { kind: "full" }), "/work")).toBe("models/full/config.json");
    const abs = { ...report([]), subject: { ...report([]).subject, adapter: "/work/repo/adapters/a" } };
    expect(subjectConfigFile(abs, "/work/repo")).toBe("adapters/a/adapter_config.json");
    expect(subjectConfigFile(abs, "/work/repo/adapters/a")).toBe("adapter_config.json");
    expect(subjectConfigFile(abs, "/work/other")).toBe("../repo/adapters/a/adapter_config.json");

    const dir = await mkdtemp(join(tmpdir(), "delta-audit-sarif-"));
    try {
      await writeReportFiles(dir, report(EVERY_SOURCE), "/work");
      const written = JSON.parse(await readFile(join(dir, SARIF_FILE), "utf8")) as SarifLog;
      expectValid(written);
      expect(written.runs[0].results).toHaveLength(EVERY_SOURCE.length);
      expect(written.runs[0].results[0]!.locations[0].physicalLocation.artifactLocation.uri).toBe("models/adapter/adapter_config.json");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
