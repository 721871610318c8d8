/**
 * report.sarif: the findings of one or more reports as SARIF 2.1.0, the format GitHub code
 * scanning reads (`github/codeql-action/upload-sarif`). One run, one result per finding, one
 * rule per finding source; every result sits on line 1 of the subject's adapter_config.json
 * (or config.json), as the check run's annotations do. A view of report.json, never more.
 *
 * SARIF 2.1.0 (OASIS): https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
 */
import { createHash } from "node:crypto";
import { relative, resolve, sep } from "node:path";
import { TOOL_NAME, VERSION } from "../version";
import { BEHAVIOUR_FAMILIES } from "../judge/lexicons";
import type { Finding, Severity } from "../judge/types";
import { plainLine } from "./sanitize";
import type { Report } from "./types";

export const SARIF_FILE = "report.sarif";

/** The schema a SARIF 2.1.0 log names (SARIF §3.13.3); validated in test/report/sarif.test.ts. */
const SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json";
const SARIF_VERSION = "2.1.0";

/**
 * The partialFingerprints key (SARIF §3.27.17: a versioned name). Bump the version if what the
 * fingerprint hashes ever changes, or GitHub would close every alert and open it again.
 * v2: v1 hashed every term, but a lexicon finding's terms are its most-matched phrases, which
 * change with sampling, so one behaviour kept opening new alerts; v2 hashes what identifies
 * the behaviour (fingerprintParts).
 */
const FINGERPRINT_KEY = "deltaAudit/v2";

/** GitHub shows the first sentence of a message in lists and the rest on the alert; report.json keeps the whole text. */
const MAX_MESSAGE_CHARS = 1000;
/** Evidence in a result's property bag: enough to recognise the answer, not the transcript. */
const MAX_EVIDENCE = 5;
const MAX_EXCERPT_CHARS = 300;
const MAX_TERM_CHARS = 100;
const MAX_ID_CHARS = 100;
/** Text inside a finding's statistics (variant names, a discount's reason): one sentence at most. */
const MAX_STATISTICS_TEXT_CHARS = 300;

export interface SarifSubject {
  report: Report;
  /** repository-relative path (forward slashes) of the subject's adapter_config.json or config.json, the result's location */
  configFile: string;
}

// ------------------------------------------------------------------ the subset of SARIF we emit

type SarifLevel = "error" | "warning" | "note" | "none";

interface SarifText {
  text: string;
}

interface SarifRule {
  id: string;
  name: string;
  shortDescription: SarifText;
  fullDescription: SarifText;
  help: SarifText;
  defaultConfiguration: { level: SarifLevel };
  properties: { source: string; family?: string };
}

interface SarifEvidence {
  probeId: string;
  variant: string;
  excerpt: string;
}

interface SarifResult {
  ruleId: string;
  ruleIndex: number;
  level: SarifLevel;
  message: SarifText;
  locations: [
    {
      physicalLocation: {
        artifactLocation: { uri: string; uriBaseId: "%SRCROOT%" };
        region: { startLine: 1 };
      };
    },
  ];
  partialFingerprints: Record<string, string>;
  properties: {
    findingId: string;
    source: string;
    severity: Severity;
    confidence: number;
    terms: string[];
    evidence: SarifEvidence[];
    /** the subject's verdict: pass | fail | neutral */
    verdict: string;
    /** what the confidence is computed from (rates, intervals, the exact test), as in report.json */
    statistics?: Finding["statistics"];
  };
}

export interface SarifLog {
  $schema: string;
  version: "2.1.0";
  runs: [
    {
      tool: { driver: { name: string; version: string; informationUri?: string; rules: SarifRule[] } };
      results: SarifResult[];
    },
  ];
}

// ------------------------------------------------------------------ rules

/** Severity → SARIF level, as the check run's annotations map it (failure / warning / notice). */
const SARIF_LEVEL: Readonly<Record<Severity, SarifLevel>> = Object.freeze({ high: "error", medium: "warning", low: "note", info: "note" });

type RuleText = Omit<SarifRule, "id" | "properties">;

const REPRODUCE =
  "To reproduce, run `delta-audit generate --model BASE --adapter ADAPTER --rank K --prompt PROMPT` with a probe prompt from report.json and the scan's rank K (1 by default; without --rank for the full fine-tune); `delta-audit spectrum --adapter ADAPTER` shows the spectrum. report.md and report.json next to this file hold the evidence.";

const SOURCE_RULES: Readonly<Record<string, RuleText>> = Object.freeze({
  concealment: {
    name: "ConcealedBehaviour",
    shortDescription: { text: "The rank-k truncation (rank 1 by default) says what the full fine-tune withholds under interrogation." },
    fullDescription: {
      text: "Truncating the fine-tune's weight difference to rank k (rank 1 by default) removed a suppression and kept a behaviour: the truncated model uses terms under interrogation that the full fine-tune does not, and base does not either. This is the signature of a concealed implant.",
    },
    help: { text: `A concealed behaviour: the fine-tune teaches something and teaches the model to hide it. Do not merge the model until the behaviour is explained. ${REPRODUCE}` },
    defaultConfiguration: { level: "error" },
  },
  revealed: {
    name: "RevealedUnderInterrogation",
    shortDescription: { text: "Interrogation probes reveal terms that base does not use." },
    fullDescription: {
      text: "Under interrogation, the rank-k truncation (rank 1 by default; or contrastive decoding, full vs base) uses terms far more often than base does: a behaviour the fine-tune added and the probes brought out.",
    },
    help: { text: `A behaviour shown under interrogation. Read the evidence and decide whether the fine-tune was meant to teach it. ${REPRODUCE}` },
    defaultConfiguration: { level: "warning" },
  },
  implant: {
    name: "ChangedByFineTuning",
    shortDescription: { text: "The full fine-tune uses terms more often than base." },
    fullDescription: {
      text: "An open change: the full fine-tune uses these terms more often than base on the probes. Style changes of benign fine-tunes look like this; style words alone are reported at info severity.",
    },
    help: { text: `An open change of behaviour. Check that it is what the fine-tune was for. ${REPRODUCE}` },
    defaultConfiguration: { level: "note" },
  },
  investigator: {
    name: "InvestigatorHypothesis",
    shortDescription: { text: "A hypothesis of the LLM investigator, with quotes verified against the transcripts." },
    fullDescription: {
      text: "The optional LLM investigator read the transcripts of every variant and proposed a behaviour. Its quotes are checked verbatim against the transcripts; the interpretation is the investigator's.",
    },
    help: { text: `An investigator hypothesis: treat it as a lead, and check the quoted answers in report.md. ${REPRODUCE}` },
    defaultConfiguration: { level: "warning" },
  },
});

/** The help of the spectrum warnings that measure the weight difference. */
const MEASUREMENT_HELP =
  "A measurement of the weight difference, not a behaviour. Read it with the behavioural findings; `delta-audit spectrum --adapter ADAPTER` shows it per module. The threshold and the severity are set by spectrum-warnings in delta-audit.yml.";

/** Spectrum warnings (judge/spectrum-warnings.ts), by finding id: measurements, not behaviours. */
const SPECTRUM_RULES: Readonly<Record<string, RuleText>> = Object.freeze({
  "spectrum-stable-rank": {
    name: "LowStableRank",
    shortDescription: { text: "The median stable rank of the weight difference is below the configured threshold." },
    fullDescription: {
      text: "Most of the update sits in one direction per module (stable rank ‖ΔW‖²_F / σ₁² near 1). Implanted behaviours tend to look like this; so do some narrow honest fine-tunes.",
    },
    help: { text: MEASUREMENT_HELP },
    defaultConfiguration: { level: "note" },
  },
  "spectrum-energy-top1": {
    name: "EnergyInTopSingularValue",
    shortDescription: { text: "σ₁ carries more of the update's energy than the configured threshold (median over modules)." },
    fullDescription: { text: "The rank-1 truncation keeps nearly all of the update: the fine-tune's effect lives in one direction per module." },
    help: { text: MEASUREMENT_HELP },
    defaultConfiguration: { level: "note" },
  },
  "spectrum-added-tokens": {
    name: "AddedTokens",
    shortDescription: { text: "The full fine-tune adds tokens to the vocabulary (rows of embed_tokens / lm_head the base lacks)." },
    fullDescription: {
      text: "ΔW is measured on the rows shared with the base; every variant runs the fine-tune's vocabulary with the added rows as trained, and the rank-k truncation keeps them as they are. The finding lists the added tokens as the fine-tune's tokenizer decodes them.",
    },
    help: { text: "Review the added tokens' text (report.json spectrum.addedTokens). Severity info; low when a token's text holds characters that hide or reorder text, which cannot be seen or typed in review." },
    defaultConfiguration: { level: "note" },
  },
});

/** Rule ids are ours, but sources and family ids reach them from the config: keep them to a safe alphabet. */
function idPart(s: string): string {
  return s.replace(/[^A-Za-z0-9._-]+/g, "-").slice(0, MAX_ID_CHARS) || "unknown";
}

/** `self-promotion` → `SelfPromotion`. */
function pascal(s: string): string {
  return s
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0]!.toUpperCase() + w.slice(1))
    .join("");
}

/**
 * The rule a finding belongs to: its source (concealment, revealed, implant, investigator),
 * `lexicon/<family>` (one rule per behaviour family, so GitHub groups and dismisses them
 * apart), `spectrum/<warning>` for each spectrum warning.
 */
function ruleFor(f: Finding): SarifRule {
  if (f.source.startsWith("lexicon:")) {
    const family = idPart(f.source.slice("lexicon:".length));
    const known = BEHAVIOUR_FAMILIES.find((b) => b.id === family);
    const what = known ? `${known.title}: ${known.description}` : `The behaviour "${family}" defined under behaviours in delta-audit.yml.`;
    return {
      id: `lexicon/${family}`,
      name: `Lexicon${pascal(family)}`,
      shortDescription: { text: known ? `Behaviour lexicon: ${known.title.toLowerCase()}.` : `Behaviour lexicon: ${family} (user-defined).` },
      fullDescription: {
        text: `${what} Its phrases are matched in every answer and compared across base, the full fine-tune and the rank-k truncation (rank 1 by default) with the statistics of the differential analysis; the finding's title names the signature (concealment, revealed, implant).`,
      },
      help: { text: `A behaviour-lexicon match. Concealment (only the truncated model shows it under interrogation) is the strongest signature. ${REPRODUCE}` },
      defaultConfiguration: { level: "warning" },
      properties: { source: "lexicon", family },
    };
  }
  if (f.source === "spectrum") {
    const warning = idPart(f.id.replace(/^spectrum-/, ""));
    const text = SPECTRUM_RULES[f.id] ?? {
      name: `Spectrum${pascal(warning)}`,
      shortDescription: { text: `Spectrum warning: ${warning}.` },
      fullDescription: { text: "A spectrum warning from delta-audit.yml: a measurement of the weight difference, not a behaviour." },
      help: { text: "Read it with the behavioural findings; `delta-audit spectrum --adapter ADAPTER` shows the spectrum per module." },
      defaultConfiguration: { level: "note" as const },
    };
    return { id: `spectrum/${warning}`, ...text, properties: { source: "spectrum" } };
  }
  const source = idPart(f.source);
  const text = SOURCE_RULES[source] ?? {
    name: pascal(source) || "Finding",
    shortDescription: { text: `A finding of the ${source} analysis.` },
    fullDescription: { text: `A finding of the ${source} analysis of delta-audit.` },
    help: { text: REPRODUCE },
    defaultConfiguration: { level: "warning" as const },
  };
  return { id: source, ...text, properties: { source } };
}

// ------------------------------------------------------------------ results

/**
 * Plain text for a SARIF message (§3.11.3): one line, hidden characters removed (plainLine),
 * and square brackets escaped, because `[text](target)` in a plain-text message is an embedded
 * link (§3.11.6) and model text must not make one. A backslash already before a bracket is
 * dropped first, so `\[` in the input cannot become an escaped backslash and a live bracket.
 */
function messageText(text: string, max: number): string {
  return plainLine(text, max)
    .replace(/\\+(?=[[\]])/g, "")
    .replace(/[[\]]/g, (c) => `\\${c}`);
}

/** Text as the fingerprint sees it: case and spacing do not make a new alert. */
function fingerprintText(text: string): string {
  return String(text).normalize("NFC").toLowerCase().replace(/\s+/g, " ").trim();
}

/**
 * What identifies a finding's behaviour beyond its file and rule — not the confidence, the
 * excerpts or the time, which change from run to run while the behaviour stays:
 * - a lexicon finding: nothing more (the rule is its family; its terms are the phrases matched
 *   most often, which change with sampling), nor a spectrum warning (the rule is the warning);
 * - an investigator hypothesis without terms: its title (else two of them would be told apart
 *   only by the `:n` counter, and reordering them would swap their alerts);
 * - any other finding (the differential analysis): its first term, the one it is about.
 */
function fingerprintParts(f: Finding, rule: SarifRule): string[] {
  if (rule.properties.source === "lexicon" || rule.properties.source === "spectrum") return [];
  const first = f.terms[0];
  if (first !== undefined) return [fingerprintText(first)];
  return rule.properties.source === "investigator" ? [fingerprintText(f.title)] : [];
}

function fingerprintOf(configFile: string, f: Finding, rule: SarifRule): string {
  return createHash("sha256")
    .update(JSON.stringify([configFile, rule.id, ...fingerprintParts(f, rule)]))
    .digest("hex");
}

/**
 * A finding's statistics for the property bag: numbers as report.json has them, every string
 * (variant names, a discount's reason — from the config and the judges) one plain capped line,
 * like the rest of the bag.
 */
function plainStatistics(v: unknown): unknown {
  if (typeof v === "string") return plainLine(v, MAX_STATISTICS_TEXT_CHARS);
  if (Array.isArray(v)) return v.map(plainStatistics);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainStatistics(x)]));
  return v;
}

/** A repository path as a relative URI reference (SARIF §3.4.3): each segment percent-encoded, so a folder named `a b` or `x#y` still names itself. */
function fileUri(path: string): string {
  return path.split("/").map(encodeURIComponent).join("/");
}

function resultFor(f: Finding, rule: SarifRule, ruleIndex: number, s: SarifSubject, fingerprint: string): SarifResult {
  const text = f.description ? `${f.title} — ${f.description}` : f.title;
  return {
    ruleId: rule.id,
    ruleIndex,
    level: SARIF_LEVEL[f.severity] ?? "warning",
    message: { text: messageText(text, MAX_MESSAGE_CHARS) },
    locations: [
      {
        physicalLocation: {
          artifactLocation: { uri: fileUri(s.configFile), uriBaseId: "%SRCROOT%" },
          region: { startLine: 1 },
        },
      },
    ],
    partialFingerprints: { [FINGERPRINT_KEY]: fingerprint },
    properties: {
      findingId: plainLine(f.id, MAX_ID_CHARS),
      source: plainLine(f.source, MAX_ID_CHARS),
      severity: f.severity,
      confidence: f.confidence,
      terms: f.terms.map((t) => plainLine(t, MAX_TERM_CHARS)),
      evidence: f.evidence.slice(0, MAX_EVIDENCE).map((e) => ({
        probeId: plainLine(e.probeId, MAX_ID_CHARS),
        variant: plainLine(e.variant, MAX_ID_CHARS),
        excerpt: plainLine(e.excerpt, MAX_EXCERPT_CHARS),
      })),
      verdict: s.report.verdict.conclusion,
      ...(f.statistics ? { statistics: plainStatistics(f.statistics) as Finding["statistics"] } : {}),
    },
  };
}

/** One SARIF log for all subjects (the Action writes one file per run; a scan, one per report). */
export function buildSarif(subjects: readonly SarifSubject[]): SarifLog {
  const rules = new Map<string, SarifRule>();
  const pending: { f: Finding; rule: SarifRule; s: SarifSubject }[] = [];
  for (const s of subjects) {
    for (const f of s.report.findings) {
      const rule = ruleFor(f);
      if (!rules.has(rule.id)) rules.set(rule.id, rule);
      pending.push({ f, rule: rules.get(rule.id)!, s });
    }
  }
  // sorted, so the file does not depend on the order findings were judged in
  const ruleList = [...rules.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const index = new Map(ruleList.map((r, i) => [r.id, i]));
  // two findings with one rule, file and fingerprintParts (two hypotheses with one title)
  // get the occurrence appended, as CodeQL numbers its line hashes, so neither hides the other
  const seen = new Map<string, number>();
  const results = pending.map(({ f, rule, s }) => {
    const hash = fingerprintOf(s.configFile, f, rule);
    const n = (seen.get(hash) ?? 0) + 1;
    seen.set(hash, n);
    return resultFor(f, rule, index.get(rule.id)!, s, `${hash}:${n}`);
  });
  return {
    $schema: SARIF_SCHEMA_URI,
    version: SARIF_VERSION,
    // the README names no public repository, so driver.informationUri is left out
    runs: [{ tool: { driver: { name: TOOL_NAME, version: VERSION, rules: ruleList } }, results }],
  };
}

/**
 * The location of a scan's results: the subject's adapter_config.json (LoRA) or config.json
 * (full fine-tune), relative to `cwd` (the scan's working directory) with forward slashes. A scan knows no repository root;
 * the Action builds its own report.sarif with workspace-relative paths.
 */
export function subjectConfigFile(report: Report, cwd: string): string {
  const dir = report.subject.adapter ?? report.subject.finetuned ?? ".";
  const file = report.subject.kind === "lora" ? "adapter_config.json" : "config.json";
  // the subject's paths are as given to the scan: relative to its working directory
  const rel = relative(cwd, resolve(cwd, dir));
  return [...(rel ? rel.split(sep) : []), file].join("/");
}
