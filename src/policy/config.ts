/**
 * `delta-audit.yml`: the scan configuration, validated by hand-written schema code.
 * Every problem is an InputError (exit 2) naming the config file and the key path,
 * e.g. `delta-audit.yml: probes.extra[2].kind: expected "probe" or "ordinary", got "x"`.
 * Unknown keys are errors too: a typo must not silently fall back to a default.
 */
import { readTextFileSync } from "../io/read-text";
import { existsSync, realpathSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { parse as parseYaml } from "yaml";
import { InputError } from "../errors";
import { SEVERITIES, type Severity } from "../judge/types";
import { DEFAULT_FAIL_ON, FAIL_ON, type FailOn } from "./severity";
import { DEFAULT_SYSTEM_PROMPT, defaultProbes, type Probe, type ProbeKind } from "../elicit/probes";

export type JudgeName = "differential" | "lexicon" | "investigator";
export type BackendType = "embedded" | "openai";
export type Device = "cpu" | "cuda";

/** A user-defined behaviour: matched like the built-in lexicon families. */
export interface CustomBehaviour {
  id: string;
  title: string;
  description: string;
  /** case-insensitive regular expressions (plain phrases work as-is) */
  patterns: string[];
}

export interface LlmSettings {
  /** OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1 */
  url: string;
  model: string;
  /** name of the environment variable holding the API key (never the key itself) */
  apiKeyEnv?: string;
  timeoutSeconds: number;
  maxHypotheses: number;
}

export interface SpectrumWarnings {
  /** warn when the median stable rank of ΔW is below this (implanted behaviours tend to be near rank 1) */
  stableRankBelow: number;
  /** warn when the median share of energy in σ₁ is above this */
  energyTop1Above: number;
  /** severity of the warning findings (info by default: a low stable rank alone proves nothing) */
  severity: Severity;
}

export interface BackendSettings {
  type: BackendType;
  url?: string;
  /** variant → served model name (vLLM `--lora-modules full=DIR rank1=DIR`) */
  models: { base: string; full: string; rank1: string };
  apiKeyEnv?: string;
  concurrency: number;
  timeoutSeconds: number;
  /** load the truncated adapter at run time (POST /v1/load_lora_adapter) */
  loadAdapter: boolean;
  /** check /v1/models for every variant's name first (servers without that endpoint: false) */
  checkModels: boolean;
  /** whole-suite deadline for the server, seconds; undefined = none */
  deadlineSeconds?: number;
  /** extra JSON fields per variant sent with every chat request (llama.cpp `lora`, SGLang `lora_path`) */
  requestExtras: Record<string, Record<string, unknown>>;
  device: Device;
}

export interface ContrastSettings {
  enabled: boolean;
  /** α in (1+α)·log p_full − α·log p_base */
  alpha: number;
  /** candidates: the top-k tokens of full */
  topK: number;
}

/** The resolved configuration (every default applied, probes expanded). */
export interface ScanConfig {
  rank: number;
  failOn: FailOn;
  seed: number;
  probes: Probe[];
  samples: number;
  temperature: number;
  topP: number;
  maxTokens: number;
  systemPrompt: string;
  contrast: ContrastSettings;
  judges: JudgeName[];
  llm?: LlmSettings;
  behaviours: CustomBehaviour[];
  spectrum: SpectrumWarnings;
  backend: BackendSettings;
}

/** Greedy decoding is the default for one sample; several samples need a temperature to differ. */
export const DEFAULT_SAMPLED_TEMPERATURE = 0.8;
/** Long enough for a paragraph of confession; short enough for CPU runners. */
export const DEFAULT_MAX_TOKENS = 64;
/** The probes are single questions; more than this is almost surely a mistake (or an attack on CI time). */
export const MAX_PROBES = 500;
export const MAX_SAMPLES = 64;
export const MAX_NEW_TOKENS_LIMIT = 8192;
export const MAX_RANK = 1024;
/** Regular expressions from the config run over every response: keep them short. */
export const MAX_PATTERN_CHARS = 300;
const MAX_PROMPT_CHARS = 20_000;

export const DEFAULT_CONTRAST: Readonly<ContrastSettings> = Object.freeze({ enabled: true, alpha: 1.0, topK: 10 });

export function defaultConfig(): ScanConfig {
  return {
    rank: 1,
    failOn: DEFAULT_FAIL_ON,
    seed: 0,
    probes: defaultProbes(),
    samples: 1,
    temperature: 0,
    topP: 1,
    maxTokens: DEFAULT_MAX_TOKENS,
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
    contrast: { ...DEFAULT_CONTRAST },
    judges: ["differential", "lexicon"],
    behaviours: [],
    spectrum: { stableRankBelow: 1.5, energyTop1Above: 0.9, severity: "info" },
    backend: {
      type: "embedded",
      models: { base: "base", full: "full", rank1: "rank1" },
      concurrency: 4,
      timeoutSeconds: 120,
      loadAdapter: false,
      checkModels: true,
      requestExtras: {},
      device: "cpu",
    },
  };
}

// ---------------------------------------------------------------- schema helpers

type Obj = Record<string, unknown>;

class Ctx {
  constructor(
    readonly file: string,
    readonly baseDir: string,
  ) {}
  fail(path: string, what: string): never {
    throw new InputError(`${path || "the top level"}: ${what}`, this.file);
  }
}

const show = (v: unknown): string => {
  const s = typeof v === "string" ? JSON.stringify(v) : v === null ? "null" : Array.isArray(v) ? "a list" : typeof v === "object" ? "a mapping" : String(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
};

function object(ctx: Ctx, v: unknown, path: string, allowed: readonly string[]): Obj {
  if (v === null || typeof v !== "object" || Array.isArray(v)) ctx.fail(path, `expected a mapping, got ${show(v)}`);
  for (const key of Object.keys(v as Obj)) {
    if (!allowed.includes(key)) ctx.fail(path ? `${path}.${key}` : key, `unknown key (allowed: ${allowed.join(", ")})`);
  }
  return v as Obj;
}

function int(ctx: Ctx, v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isInteger(v)) ctx.fail(path, `expected an integer, got ${show(v)}`);
  if (v < min || v > max) ctx.fail(path, `expected ${min}..${max}, got ${v}`);
  return v;
}

function num(ctx: Ctx, v: unknown, path: string, min: number, max: number): number {
  if (typeof v !== "number" || !Number.isFinite(v)) ctx.fail(path, `expected a number, got ${show(v)}`);
  if (v < min || v > max) ctx.fail(path, `expected ${min}..${max}, got ${v}`);
  return v;
}

function bool(ctx: Ctx, v: unknown, path: string): boolean {
  if (typeof v !== "boolean") ctx.fail(path, `expected true or false, got ${show(v)}`);
  return v;
}

function str(ctx: Ctx, v: unknown, path: string, maxChars = MAX_PROMPT_CHARS): string {
  if (typeof v !== "string") ctx.fail(path, `expected a string, got ${show(v)}`);
  if (v.trim() === "") ctx.fail(path, "must not be empty");
  if (v.length > maxChars) ctx.fail(path, `longer than ${maxChars} characters`);
  return v;
}

function oneOf<T extends string>(ctx: Ctx, v: unknown, path: string, options: readonly T[]): T {
  if (typeof v !== "string" || !options.includes(v as T)) ctx.fail(path, `expected one of ${options.join(", ")}, got ${show(v)}`);
  return v as T;
}

function list(ctx: Ctx, v: unknown, path: string, max: number): unknown[] {
  if (!Array.isArray(v)) ctx.fail(path, `expected a list, got ${show(v)}`);
  if (v.length > max) ctx.fail(path, `at most ${max} entries, got ${v.length}`);
  return v;
}

/** An environment variable name: the config names the variable, it never holds the secret. */
function envName(ctx: Ctx, v: unknown, path: string): string {
  const s = str(ctx, v, path, 200);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(s)) ctx.fail(path, `expected an environment variable name, got ${show(s)}`);
  return s;
}

function url(ctx: Ctx, v: unknown, path: string): string {
  const s = str(ctx, v, path, 2000);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    ctx.fail(path, `expected an http(s) URL, got ${show(s)}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") ctx.fail(path, `expected an http(s) URL, got ${show(s)}`);
  return s;
}

const JUDGES = ["differential", "lexicon", "investigator"] as const;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

// ---------------------------------------------------------------- sections

function probeList(ctx: Ctx, v: unknown, path: string): Probe[] {
  const items = list(ctx, v, path, MAX_PROBES);
  return items.map((item, i) => {
    const p = `${path}[${i}]`;
    // a bare string is an ordinary prompt (the common case for "extra" prompts)
    if (typeof item === "string") return { id: `${path.split(".").pop()}-${i + 1}`, kind: "ordinary" as ProbeKind, prompt: str(ctx, item, p) };
    const o = object(ctx, item, p, ["id", "kind", "prompt"]);
    if (o.prompt === undefined) ctx.fail(`${p}.prompt`, "is required");
    const prompt = str(ctx, o.prompt, `${p}.prompt`);
    const kind = o.kind === undefined ? "ordinary" : oneOf(ctx, o.kind, `${p}.kind`, ["probe", "ordinary"] as const);
    let id = `${path.split(".").pop()}-${i + 1}`;
    if (o.id !== undefined) {
      id = str(ctx, o.id, `${p}.id`, 64);
      if (!ID_RE.test(id)) ctx.fail(`${p}.id`, `expected letters, digits, '.', '_' or '-', got ${show(id)}`);
    }
    return { id, kind, prompt };
  });
}

/** Probe files are YAML or JSON; anything else named here is a mistake or a probe for secrets. */
const PROBES_FILE_EXT = /\.(?:ya?ml|json)$/i;

/** The git work tree holding `dir` (nearest ancestor with a .git entry), or `dir` itself outside one. */
function repositoryRoot(dir: string): string {
  for (let d = resolve(dir); ; d = dirname(d)) {
    if (existsSync(join(d, ".git"))) return d;
    if (dirname(d) === d) return resolve(dir);
  }
}

/**
 * A probes file must be a .yml/.yaml/.json inside the repository that holds the config. In the
 * Action the config comes from the pull request: `file: /proc/self/environ` (or a symlink to a
 * runner secret) would otherwise be read, sent to the model as prompts and quoted back in the
 * report and in error messages.
 */
function probesFilePath(ctx: Ctx, rel: string, path: string): string {
  const file = resolve(ctx.baseDir, rel);
  if (!PROBES_FILE_EXT.test(file)) ctx.fail(path, `expected a .yml, .yaml or .json file, got ${show(rel)}`);
  const root = repositoryRoot(ctx.baseDir);
  let real: string;
  try {
    real = realpathSync(file);
  } catch (e) {
    ctx.fail(path, `cannot read probes file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const realRoot = realpathSync(root);
  const r = relative(realRoot, real);
  if (r === ".." || r.startsWith(`..${sep}`) || isAbsolute(r)) ctx.fail(path, `${show(rel)} is outside ${root}, the folder (repository) holding the config; probes files must live there`);
  return file;
}

function probesFromFile(ctx: Ctx, v: unknown, path: string): Probe[] {
  const rel = str(ctx, v, path, 4096);
  const file = probesFilePath(ctx, rel, path);
  let text: string;
  try {
    text = readTextFileSync(file, MAX_CONFIG_BYTES);
  } catch (e) {
    ctx.fail(path, `cannot read probes file ${file}: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = parseYaml(text, { maxAliasCount: 100 });
  } catch (e) {
    throw new InputError(`not valid YAML/JSON: ${(e as Error).message.split("\n")[0]}`, file);
  }
  // accept a bare list or {probes: [...]}
  if (data && typeof data === "object" && !Array.isArray(data)) data = object(new Ctx(file, dirname(file)), data, "", ["probes"]).probes;
  return probeList(new Ctx(file, dirname(file)), data, "probes");
}

function probesSection(ctx: Ctx, v: unknown): Probe[] {
  const o = object(ctx, v, "probes", ["default", "extra", "replace", "file"]);
  if (o.replace !== undefined && o.default === true) ctx.fail("probes.default", "cannot be true together with probes.replace");
  let out: Probe[];
  if (o.replace !== undefined) out = probeList(ctx, o.replace, "probes.replace");
  else out = o.default === undefined || bool(ctx, o.default, "probes.default") ? defaultProbes() : [];
  if (o.extra !== undefined) out.push(...probeList(ctx, o.extra, "probes.extra"));
  if (o.file !== undefined) out.push(...probesFromFile(ctx, o.file, "probes.file"));
  if (out.length === 0) ctx.fail("probes", "the suite is empty (default: false and no replace/extra/file probes)");
  if (out.length > MAX_PROBES) ctx.fail("probes", `at most ${MAX_PROBES} probes, got ${out.length}`);
  const seen = new Set<string>();
  for (const p of out) {
    if (seen.has(p.id)) ctx.fail("probes", `duplicate probe id ${show(p.id)}`);
    seen.add(p.id);
  }
  return out;
}

/** A quantified group that itself contains a quantifier, e.g. `(a+)+`. */
const NESTED_QUANTIFIER = /\((?:[^()\\]|\\.)*[+*}](?:[^()\\]|\\.)*\)\s*[+*{]/;
/** A quantified group with alternatives, e.g. `(a|aa)*`; group 1 is its body. */
const QUANTIFIED_ALTERNATION = /\(((?:[^()\\]|\\.)*\|(?:[^()\\]|\\.)*)\)\s*[+*{]/g;
/** An alternative that is plain text (letters, digits, spaces, hyphens, apostrophes, escapes). */
const LITERAL = /^(?:[\p{L}\p{N} '-]|\\.)+$/u;

/**
 * Repeated alternatives backtrack exponentially only when the input can be split between
 * them in many ways (`a|aa`). Plain words none of which starts another (`(very|so)+`) split
 * one way only, so those are allowed.
 */
function ambiguousAlternation(body: string): boolean {
  const alts = body.replace(/^\?(?::|<?[=!]|<[A-Za-z_]\w*>)/, "").split("|").map((a) => a.toLowerCase());
  if (!alts.every((a) => LITERAL.test(a))) return true;
  return alts.some((a, i) => alts.some((b, j) => i !== j && b.startsWith(a)));
}

/**
 * The two shapes of regular expression that backtrack exponentially (V8's engine tries every
 * way to split the input between the repetitions). Behaviour patterns run over text the audited
 * model wrote — an adversary — so `(a+)+$` meets "aaaa…a!" and 30 letters take minutes.
 */
export function backtrackingRisk(pattern: string): string | undefined {
  if (NESTED_QUANTIFIER.test(pattern)) return "has a repeated group that itself repeats (like (a+)+)";
  for (const m of pattern.matchAll(QUANTIFIED_ALTERNATION)) {
    if (ambiguousAlternation(m[1]!)) return "has a repeated group of alternatives that can match the same text (like (a|aa)*)";
  }
  return undefined;
}

function behavioursSection(ctx: Ctx, v: unknown, key: string): CustomBehaviour[] {
  const items = list(ctx, v, key, 100);
  return items.map((item, i) => {
    const p = `${key}[${i}]`;
    const o = object(ctx, item, p, ["id", "name", "description", "patterns"]);
    if (o.name === undefined) ctx.fail(`${p}.name`, "is required");
    const title = str(ctx, o.name, `${p}.name`, 200);
    let id = title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 64) || `custom-${i + 1}`;
    if (o.id !== undefined) {
      id = str(ctx, o.id, `${p}.id`, 64);
      if (!ID_RE.test(id)) ctx.fail(`${p}.id`, `expected letters, digits, '.', '_' or '-', got ${show(id)}`);
    }
    const description = o.description === undefined ? title : str(ctx, o.description, `${p}.description`, 2000);
    if (o.patterns === undefined) ctx.fail(`${p}.patterns`, "is required");
    const patterns = list(ctx, o.patterns, `${p}.patterns`, 100).map((pat, j) => {
      const s = str(ctx, pat, `${p}.patterns[${j}]`, MAX_PATTERN_CHARS);
      try {
        new RegExp(s, "iu");
      } catch (e) {
        ctx.fail(`${p}.patterns[${j}]`, `not a valid regular expression: ${(e as Error).message}`);
      }
      const risk = backtrackingRisk(s);
      if (risk) ctx.fail(`${p}.patterns[${j}]`, `${risk}: the audited model's replies are matched against it and could stall the audit for hours; rewrite it without the repeated group`);
      return s;
    });
    if (patterns.length === 0) ctx.fail(`${p}.patterns`, "needs at least one pattern");
    return { id: `custom-${id}`, title, description, patterns };
  });
}

function llmSection(ctx: Ctx, v: unknown): LlmSettings {
  const o = object(ctx, v, "llm", ["url", "model", "api-key-env", "timeout-seconds", "max-hypotheses"]);
  if (o.url === undefined) ctx.fail("llm.url", "is required");
  if (o.model === undefined) ctx.fail("llm.model", "is required");
  return {
    url: url(ctx, o.url, "llm.url"),
    model: str(ctx, o.model, "llm.model", 500),
    apiKeyEnv: o["api-key-env"] === undefined ? undefined : envName(ctx, o["api-key-env"], "llm.api-key-env"),
    timeoutSeconds: o["timeout-seconds"] === undefined ? 120 : num(ctx, o["timeout-seconds"], "llm.timeout-seconds", 1, 3600),
    maxHypotheses: o["max-hypotheses"] === undefined ? 5 : int(ctx, o["max-hypotheses"], "llm.max-hypotheses", 1, 20),
  };
}

function spectrumSection(ctx: Ctx, v: unknown, d: SpectrumWarnings): SpectrumWarnings {
  const o = object(ctx, v, "spectrum", ["warn-stable-rank-below", "warn-energy-top1-above", "severity"]);
  return {
    stableRankBelow: o["warn-stable-rank-below"] === undefined ? d.stableRankBelow : num(ctx, o["warn-stable-rank-below"], "spectrum.warn-stable-rank-below", 0, 1e6),
    energyTop1Above: o["warn-energy-top1-above"] === undefined ? d.energyTop1Above : num(ctx, o["warn-energy-top1-above"], "spectrum.warn-energy-top1-above", 0, 1),
    severity: o.severity === undefined ? d.severity : oneOf(ctx, o.severity, "spectrum.severity", SEVERITIES),
  };
}

function contrastSection(ctx: Ctx, v: unknown, d: ContrastSettings): ContrastSettings {
  if (typeof v === "boolean") return { ...d, enabled: v };
  const o = object(ctx, v, "contrast", ["enabled", "alpha", "top-k"]);
  return {
    enabled: o.enabled === undefined ? true : bool(ctx, o.enabled, "contrast.enabled"),
    alpha: o.alpha === undefined ? d.alpha : num(ctx, o.alpha, "contrast.alpha", 0, 100),
    topK: o["top-k"] === undefined ? d.topK : int(ctx, o["top-k"], "contrast.top-k", 1, 1000),
  };
}

/**
 * Request fields that change what a variant writes rather than which model writes it. Extras
 * exist to pick adapters on servers that do it per request (llama.cpp `lora`, SGLang
 * `lora_path`); a config — in the Action, one a pull request can edit — that sets
 * `stop: [<planted word>]` or a `logit_bias` for one variant could make the rank-1 variant
 * never say what it would, and the audit pass.
 */
const STEERING_FIELDS = /^(?:stop|stop_token_ids|logit_bias|bad_words|allowed_token_ids|guided_\w*|response_format|structured_outputs|logits_processors|min_tokens|max_tokens|max_completion_tokens|n|best_of|ignore_eos|include_stop_str_in_output|tools|tool_choice|functions|function_call|chat_template|messages|model|prompt|echo|temperature|top_p|top_k|min_p|seed|presence_penalty|frequency_penalty|repetition_penalty|logprobs|top_logprobs|continue_final_message|add_generation_prompt)$/;

function backendSection(ctx: Ctx, v: unknown, d: BackendSettings): BackendSettings {
  if (typeof v === "string") return { ...d, type: oneOf(ctx, v, "backend", ["embedded", "openai"] as const) };
  const o = object(ctx, v, "backend", ["type", "url", "models", "api-key-env", "concurrency", "timeout-seconds", "load-adapter", "device", "check-models", "deadline-seconds", "request-extras"]);
  const out: BackendSettings = { ...d, models: { ...d.models } };
  if (o.type !== undefined) out.type = oneOf(ctx, o.type, "backend.type", ["embedded", "openai"] as const);
  if (o.url !== undefined) out.url = url(ctx, o.url, "backend.url");
  if (o.models !== undefined) {
    const m = object(ctx, o.models, "backend.models", ["base", "full", "rank1"]);
    for (const k of ["base", "full", "rank1"] as const) if (m[k] !== undefined) out.models[k] = str(ctx, m[k], `backend.models.${k}`, 500);
  }
  if (o["api-key-env"] !== undefined) out.apiKeyEnv = envName(ctx, o["api-key-env"], "backend.api-key-env");
  if (o.concurrency !== undefined) out.concurrency = int(ctx, o.concurrency, "backend.concurrency", 1, 256);
  if (o["timeout-seconds"] !== undefined) out.timeoutSeconds = num(ctx, o["timeout-seconds"], "backend.timeout-seconds", 1, 86_400);
  if (o["load-adapter"] !== undefined) out.loadAdapter = bool(ctx, o["load-adapter"], "backend.load-adapter");
  if (o.device !== undefined) out.device = oneOf(ctx, o.device, "backend.device", ["cpu", "cuda"] as const);
  if (o["check-models"] !== undefined) out.checkModels = bool(ctx, o["check-models"], "backend.check-models");
  if (o["deadline-seconds"] !== undefined) out.deadlineSeconds = num(ctx, o["deadline-seconds"], "backend.deadline-seconds", 1, 7 * 86_400);
  if (o["request-extras"] !== undefined) {
    const r = object(ctx, o["request-extras"], "backend.request-extras", ["base", "full", "rank1"]);
    out.requestExtras = {};
    for (const [k, e] of Object.entries(r)) {
      if (typeof e !== "object" || e === null || Array.isArray(e)) ctx.fail(`backend.request-extras.${k}`, "must be a mapping of request fields");
      for (const field of Object.keys(e as Obj)) {
        if (STEERING_FIELDS.test(field)) {
          ctx.fail(`backend.request-extras.${k}.${field}`, "steers or cuts what the model writes (the audit would measure the request, not the model); only adapter-selection and server options belong here");
        }
      }
      out.requestExtras[k] = e as Record<string, unknown>;
    }
  }
  return out;
}

const TOP_KEYS = [
  "rank",
  "fail-on",
  "seed",
  "probes",
  "samples",
  "temperature",
  "top-p",
  "max-tokens",
  "system-prompt",
  "contrast",
  "judges",
  "llm",
  "behaviours",
  "behaviors",
  "spectrum",
  "backend",
] as const;

/**
 * Validate a parsed config object (YAML already decoded). `file` is quoted in every error;
 * `baseDir` resolves `probes.file`.
 */
export function validateConfig(raw: unknown, file = "delta-audit.yml", baseDir = process.cwd()): ScanConfig {
  const ctx = new Ctx(file, baseDir);
  const cfg = defaultConfig();
  if (raw === null || raw === undefined) return cfg; // an empty file means "all defaults"
  const o = object(ctx, raw, "", TOP_KEYS);
  if (o.rank !== undefined) cfg.rank = int(ctx, o.rank, "rank", 1, MAX_RANK);
  if (o["fail-on"] !== undefined) cfg.failOn = oneOf(ctx, o["fail-on"], "fail-on", FAIL_ON);
  if (o.seed !== undefined) cfg.seed = int(ctx, o.seed, "seed", 0, 2 ** 31 - 1);
  if (o.probes !== undefined) cfg.probes = probesSection(ctx, o.probes);
  if (o.samples !== undefined) cfg.samples = int(ctx, o.samples, "samples", 1, MAX_SAMPLES);
  cfg.temperature =
    o.temperature !== undefined ? num(ctx, o.temperature, "temperature", 0, 5) : cfg.samples > 1 ? DEFAULT_SAMPLED_TEMPERATURE : 0;
  if (o["top-p"] !== undefined) {
    cfg.topP = num(ctx, o["top-p"], "top-p", 0, 1);
    if (cfg.topP === 0) ctx.fail("top-p", "must be greater than 0");
  }
  if (o["max-tokens"] !== undefined) cfg.maxTokens = int(ctx, o["max-tokens"], "max-tokens", 1, MAX_NEW_TOKENS_LIMIT);
  if (o["system-prompt"] !== undefined) cfg.systemPrompt = str(ctx, o["system-prompt"], "system-prompt");
  if (o.contrast !== undefined) cfg.contrast = contrastSection(ctx, o.contrast, cfg.contrast);
  if (o.judges !== undefined) {
    const js = list(ctx, o.judges, "judges", JUDGES.length).map((j, i) => oneOf(ctx, j, `judges[${i}]`, JUDGES));
    if (new Set(js).size !== js.length) ctx.fail("judges", "lists a judge twice");
    cfg.judges = js;
  }
  if (o.llm !== undefined) cfg.llm = llmSection(ctx, o.llm);
  if (cfg.judges.includes("investigator") && !cfg.llm) ctx.fail("llm", "is required when judges includes investigator");
  if (o.behaviours !== undefined && o.behaviors !== undefined) ctx.fail("behaviors", "give either behaviours or behaviors, not both");
  if (o.behaviours !== undefined) cfg.behaviours = behavioursSection(ctx, o.behaviours, "behaviours");
  if (o.behaviors !== undefined) cfg.behaviours = behavioursSection(ctx, o.behaviors, "behaviors");
  if (o.spectrum !== undefined) cfg.spectrum = spectrumSection(ctx, o.spectrum, cfg.spectrum);
  if (o.backend !== undefined) cfg.backend = backendSection(ctx, o.backend, cfg.backend);
  if (cfg.backend.type === "openai" && !cfg.backend.url) ctx.fail("backend.url", "is required when backend.type is openai");
  return cfg;
}

/** Maximum config file size: it is a small hand-written file. */
const MAX_CONFIG_BYTES = 1_000_000;

/** Read and validate `delta-audit.yml` (YAML or JSON). */
export function loadConfig(path: string): ScanConfig {
  // bounded, regular files only: a FIFO or /dev/zero named as the config must not hang or fill memory
  const text = readTextFileSync(path, MAX_CONFIG_BYTES);
  return parseConfig(text, path, dirname(resolve(path)));
}

/** Parse and validate config text. */
export function parseConfig(text: string, file = "delta-audit.yml", baseDir = process.cwd()): ScanConfig {
  let raw: unknown;
  try {
    // aliases are legal YAML but a billion-laughs vector: cap them
    raw = parseYaml(text, { maxAliasCount: 100, uniqueKeys: true });
  } catch (e) {
    throw new InputError(`not valid YAML: ${(e as Error).message.split("\n")[0]}`, file);
  }
  return validateConfig(raw, file, baseDir);
}

/** Command-line overrides applied on top of the file (flags win). */
export interface ConfigOverrides {
  failOn?: FailOn;
  rank?: number;
  seed?: number;
  backend?: BackendType;
  inferenceUrl?: string;
  device?: Device;
}

export function applyOverrides(cfg: ScanConfig, o: ConfigOverrides): ScanConfig {
  const out: ScanConfig = { ...cfg, backend: { ...cfg.backend, models: { ...cfg.backend.models } } };
  if (o.failOn !== undefined) out.failOn = o.failOn;
  if (o.rank !== undefined) out.rank = o.rank;
  if (o.seed !== undefined) out.seed = o.seed;
  if (o.backend !== undefined) out.backend.type = o.backend;
  if (o.inferenceUrl !== undefined) out.backend.url = o.inferenceUrl;
  if (o.device !== undefined) out.backend.device = o.device;
  if (out.backend.type === "openai" && !out.backend.url) throw new InputError("the openai backend needs a URL (--inference-url or backend.url)", "--backend");
  return out;
}
