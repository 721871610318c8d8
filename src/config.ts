/**
 * `delta-audit.yml`: a scan's settings. ScanConfig is composed of what each stage declares it
 * needs — elicit/settings.ts, judge/settings.ts, backends/settings.ts, policy's `fail-on` and
 * the truncation rank — and this file reads it, checking every key with src/validate.ts.
 * Every problem is an InputError (exit 2) naming the config file and the key path,
 * e.g. `delta-audit.yml: probes.extra[2].kind: expected one of probe, ordinary, got "x"`.
 * Unknown keys are errors too: a typo must not silently fall back to a default.
 *
 * Only the top floor (scan.ts, the commands, the Action) imports this file; the stages get
 * their own part of ScanConfig.
 */
import { existsSync, realpathSync } from "node:fs";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { InputError } from "./errors";
import { parseYamlText, readTextFileSync } from "./io/read-text";
import { MAX_RANK } from "./delta/limits";
import {
  ADAPTER_FIELDS,
  BACKEND_TYPES,
  CONCURRENCY_BOUNDS,
  DEADLINE_SECONDS_BOUNDS,
  defaultBackendSettings,
  ID_SLOT_BOUNDS,
  LORA_SCALE_BOUNDS,
  MAX_LORA_ID,
  PRIORITY_BOUNDS,
  REQUEST_EXTRA_FIELDS,
  STEERING_FIELDS,
  TIMEOUT_SECONDS_BOUNDS,
  TRAINED_LORA_SCALE,
  TRANSPORT_FIELDS,
  VARIANT_ROLES,
  type BackendSettings,
  type BackendType,
} from "./backends/settings";
import { DEVICES, type Device } from "./linalg/device";
import { defaultEngineSettings, type EngineSettings } from "./engine/settings";
import { PRECISION_CHOICES, type PrecisionChoice } from "./engine/precision";
import { defaultProbes, type Probe, type ProbeKind } from "./elicit/probes";
import {
  CONTRAST_ALPHA_BOUNDS,
  CONTRAST_TOP_K_BOUNDS,
  DEFAULT_SAMPLED_TEMPERATURE,
  defaultElicitSettings,
  HOT_TOP_P_LIMIT,
  MAX_NEW_TOKENS_LIMIT,
  MAX_PROBES,
  MAX_PROMPT_CHARS,
  MAX_SAMPLES,
  MAX_SEED,
  MAX_TEMPERATURE,
  MAX_UNTRUNCATED_TEMPERATURE,
  MIN_MAX_TOKENS,
  DEFAULT_MAX_TOKENS,
  LADDER_BOUNDS,
  type ContrastSettings,
  type ElicitSettings,
} from "./elicit/settings";
import {
  DEFAULT_LLM_TIMEOUT_SECONDS,
  DEFAULT_MAX_HYPOTHESES,
  defaultJudgeSettings,
  JUDGES,
  LLM_TIMEOUT_SECONDS_BOUNDS,
  MAX_HYPOTHESES,
  MAX_PATTERN_CHARS,
  STABLE_RANK_WARNING_BOUNDS,
  type CustomBehaviour,
  type JudgeSettings,
  type LlmSettings,
  type SpectrumWarnings,
} from "./judge/settings";
import { SEVERITIES } from "./judge/types";
import { checkBehaviourPattern } from "./judge/lexicons";
import { DEFAULT_FAIL_ON, FAIL_ON, type FailOn } from "./policy/severity";
import { boolean, envVarName, fileOrigin, httpUrl, integer, integerSet, itemPath, list, mapping, number, oneOf, required, showValue, text, type Origin } from "./validate";

/** The resolved configuration (every default applied, probes expanded): each stage's settings, composed. */
export interface ScanConfig extends ElicitSettings, JudgeSettings {
  /** k of the truncated variant rank<k> (the method's default is 1) */
  rank: number;
  failOn: FailOn;
  backend: BackendSettings;
  engine: EngineSettings;
}

/** The method: keep the dominant direction of every ΔW. */
export const DEFAULT_RANK = 1;

export function defaultConfig(): ScanConfig {
  return {
    rank: DEFAULT_RANK,
    failOn: DEFAULT_FAIL_ON,
    ...defaultElicitSettings(),
    ...defaultJudgeSettings(),
    backend: defaultBackendSettings(),
    engine: defaultEngineSettings(),
  };
}

/** Maximum config file size: it is a small hand-written file. */
const MAX_CONFIG_BYTES = 1_000_000;
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ID_CHARS = "letters, digits, '.', '_' or '-'";
const MAX_ID_CHARS = 64;
const MAX_NAME_CHARS = 200;
const MAX_DESCRIPTION_CHARS = 2000;
const MAX_MODEL_NAME_CHARS = 500;
const MAX_PATH_CHARS = 4096;
/** Behaviours and their patterns each run over every response: a hundred is already a lot. */
const MAX_BEHAVIOURS = 100;
const MAX_PATTERNS = 100;

// ---------------------------------------------------------------- probes

function probeList(o: Origin, v: unknown, path: string): Probe[] {
  const items = list(o, v, path, { max: MAX_PROBES });
  const prefix = path.split(".").pop();
  return items.map((item, i) => {
    const p = itemPath(path, i);
    // a bare string is an ordinary prompt (the common case for "extra" prompts)
    if (typeof item === "string") return { id: `${prefix}-${i + 1}`, kind: "ordinary" as ProbeKind, prompt: text(o, item, p, MAX_PROMPT_CHARS) };
    const m = mapping(o, item, p, ["id", "kind", "prompt"]);
    const prompt = text(o, required(o, m.prompt, `${p}.prompt`), `${p}.prompt`, MAX_PROMPT_CHARS);
    const kind = m.kind === undefined ? "ordinary" : oneOf(o, m.kind, `${p}.kind`, ["probe", "ordinary"] as const);
    let id = `${prefix}-${i + 1}`;
    if (m.id !== undefined) {
      id = text(o, m.id, `${p}.id`, MAX_ID_CHARS);
      if (!ID_RE.test(id)) o.mismatch(`${p}.id`, ID_CHARS, id);
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
function probesFilePath(o: Origin, baseDir: string, rel: string, path: string): string {
  const file = resolve(baseDir, rel);
  if (!PROBES_FILE_EXT.test(file)) o.mismatch(path, "a .yml, .yaml or .json file", rel);
  const root = repositoryRoot(baseDir);
  // one message for "outside", "missing" and "a link to somewhere else": a different answer for
  // an existing outside path would let a pull request's config probe the runner's filesystem
  const refuse = (): never => o.fail(path, `cannot read probes file ${showValue(rel)}: it is missing or outside ${root}, the folder (repository) holding the config; probes files must live there`);
  const inside = (p: string, r: string): boolean => {
    const d = relative(r, p);
    return !(d === ".." || d.startsWith(`..${sep}`) || isAbsolute(d));
  };
  // containment of the path as written first, before anything touches the filesystem
  if (!inside(file, root)) refuse();
  let real: string;
  try {
    real = realpathSync(file);
  } catch {
    return refuse();
  }
  if (!inside(real, realpathSync(root))) refuse();
  return file;
}

function probesFromFile(o: Origin, baseDir: string, v: unknown, path: string): Probe[] {
  const rel = text(o, v, path, MAX_PATH_CHARS);
  const file = probesFilePath(o, baseDir, rel, path);
  let source: string;
  try {
    source = readTextFileSync(file, MAX_CONFIG_BYTES);
  } catch (e) {
    o.fail(path, `cannot read probes file ${file}: ${(e as Error).message}`);
  }
  let data = parseYamlText(source, file);
  const inFile = fileOrigin(file);
  // accept a bare list or {probes: [...]}
  if (data && typeof data === "object" && !Array.isArray(data)) data = mapping(inFile, data, "", ["probes"]).probes;
  return probeList(inFile, data, "probes");
}

function probesSection(o: Origin, baseDir: string, v: unknown): Probe[] {
  const m = mapping(o, v, "probes", ["default", "extra", "replace", "file"]);
  if (m.replace !== undefined && m.default === true) o.fail("probes.default", "cannot be true together with probes.replace");
  let out: Probe[];
  if (m.replace !== undefined) out = probeList(o, m.replace, "probes.replace");
  else out = m.default === undefined || boolean(o, m.default, "probes.default") ? defaultProbes() : [];
  if (m.extra !== undefined) out.push(...probeList(o, m.extra, "probes.extra"));
  if (m.file !== undefined) out.push(...probesFromFile(o, baseDir, m.file, "probes.file"));
  if (out.length === 0) o.fail("probes", "the suite is empty (default: false and no replace/extra/file probes)");
  if (out.length > MAX_PROBES) o.fail("probes", `at most ${MAX_PROBES} probes, got ${out.length}`);
  const seen = new Set<string>();
  for (const p of out) {
    if (seen.has(p.id)) o.fail("probes", `duplicate probe id ${showValue(p.id)}`);
    seen.add(p.id);
  }
  return out;
}

// ---------------------------------------------------------------- behaviours

function behaviourPattern(o: Origin, v: unknown, path: string): string {
  const s = text(o, v, path, MAX_PATTERN_CHARS);
  const problem = checkBehaviourPattern(s);
  if (problem) o.fail(path, problem);
  return s;
}

function behavioursSection(o: Origin, v: unknown, key: string): CustomBehaviour[] {
  return list(o, v, key, { max: MAX_BEHAVIOURS }).map((item, i) => {
    const p = itemPath(key, i);
    const m = mapping(o, item, p, ["id", "name", "description", "patterns"]);
    const title = text(o, required(o, m.name, `${p}.name`), `${p}.name`, MAX_NAME_CHARS);
    let id = title.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, MAX_ID_CHARS) || `custom-${i + 1}`;
    if (m.id !== undefined) {
      id = text(o, m.id, `${p}.id`, MAX_ID_CHARS);
      if (!ID_RE.test(id)) o.mismatch(`${p}.id`, ID_CHARS, id);
    }
    const description = m.description === undefined ? title : text(o, m.description, `${p}.description`, MAX_DESCRIPTION_CHARS);
    const patterns = list(o, required(o, m.patterns, `${p}.patterns`), `${p}.patterns`, { max: MAX_PATTERNS }).map((pat, j) => behaviourPattern(o, pat, itemPath(`${p}.patterns`, j)));
    if (patterns.length === 0) o.fail(`${p}.patterns`, "needs at least one pattern");
    return { id: `custom-${id}`, title, description, patterns };
  });
}

// ---------------------------------------------------------------- judges

function llmSection(o: Origin, v: unknown): LlmSettings {
  const m = mapping(o, v, "llm", ["url", "model", "api-key-env", "timeout-seconds", "max-hypotheses"]);
  required(o, m.url, "llm.url");
  required(o, m.model, "llm.model");
  return {
    url: httpUrl(o, m.url, "llm.url"),
    model: text(o, m.model, "llm.model", MAX_MODEL_NAME_CHARS),
    apiKeyEnv: m["api-key-env"] === undefined ? undefined : envVarName(o, m["api-key-env"], "llm.api-key-env"),
    timeoutSeconds: m["timeout-seconds"] === undefined ? DEFAULT_LLM_TIMEOUT_SECONDS : number(o, m["timeout-seconds"], "llm.timeout-seconds", LLM_TIMEOUT_SECONDS_BOUNDS),
    maxHypotheses: m["max-hypotheses"] === undefined ? DEFAULT_MAX_HYPOTHESES : integer(o, m["max-hypotheses"], "llm.max-hypotheses", { min: 1, max: MAX_HYPOTHESES }),
  };
}

function spectrumSection(o: Origin, v: unknown, d: SpectrumWarnings): SpectrumWarnings {
  const m = mapping(o, v, "spectrum", ["warn-stable-rank-below", "warn-energy-top1-above", "severity"]);
  return {
    stableRankBelow: m["warn-stable-rank-below"] === undefined ? d.stableRankBelow : number(o, m["warn-stable-rank-below"], "spectrum.warn-stable-rank-below", STABLE_RANK_WARNING_BOUNDS),
    energyTop1Above: m["warn-energy-top1-above"] === undefined ? d.energyTop1Above : number(o, m["warn-energy-top1-above"], "spectrum.warn-energy-top1-above", { min: 0, max: 1 }),
    severity: m.severity === undefined ? d.severity : oneOf(o, m.severity, "spectrum.severity", SEVERITIES),
  };
}

function contrastSection(o: Origin, v: unknown, d: ContrastSettings): ContrastSettings {
  if (typeof v === "boolean") return { ...d, enabled: v };
  const m = mapping(o, v, "contrast", ["enabled", "alpha", "top-k"]);
  return {
    enabled: m.enabled === undefined ? true : boolean(o, m.enabled, "contrast.enabled"),
    alpha: m.alpha === undefined ? d.alpha : number(o, m.alpha, "contrast.alpha", CONTRAST_ALPHA_BOUNDS),
    topK: m["top-k"] === undefined ? d.topK : integer(o, m["top-k"], "contrast.top-k", CONTRAST_TOP_K_BOUNDS),
  };
}

// ---------------------------------------------------------------- backend

// the request-extras allowlist, and why each field is on it or refused: backends/settings.ts

function loraList(o: Origin, v: unknown, path: string): Array<{ id: number; scale: number }> {
  const items = list(o, v, path, { max: 1 });
  return items.map((item, i) => {
    const p = itemPath(path, i);
    const m = mapping(o, item, p, ["id", "scale"]);
    const id = integer(o, required(o, m.id, `${p}.id`), `${p}.id`, { min: 0, max: MAX_LORA_ID });
    const scale = number(o, required(o, m.scale, `${p}.scale`), `${p}.scale`, LORA_SCALE_BOUNDS);
    if (scale !== TRAINED_LORA_SCALE) {
      o.fail(`${p}.scale`, `must be ${TRAINED_LORA_SCALE}, got ${scale}: a scale steers the adapter (0 switches it off), so the variant would not be the trained model`);
    }
    return { id, scale };
  });
}

function requestExtraValue(o: Origin, field: string, v: unknown, path: string): unknown {
  switch (field) {
    case "lora":
      return loraList(o, v, path);
    case "lora_path":
    case "adapter_id":
      return text(o, v, path, MAX_MODEL_NAME_CHARS);
    case "cache_prompt":
      return boolean(o, v, path);
    case "id_slot":
      return integer(o, v, path, ID_SLOT_BOUNDS);
    case "priority":
      return integer(o, v, path, PRIORITY_BOUNDS);
    default: // "user"
      return text(o, v, path, MAX_NAME_CHARS);
  }
}

function requestExtras(o: Origin, v: unknown): Record<string, Record<string, unknown>> {
  const r = mapping(o, v, "backend.request-extras", VARIANT_ROLES);
  const out: Record<string, Record<string, unknown>> = {};
  const allowed = `allowed: adapter selection (${ADAPTER_FIELDS.join(", ")}) and transport (${TRANSPORT_FIELDS.join(", ")})`;
  for (const [k, e] of Object.entries(r)) {
    if (typeof e !== "object" || e === null || Array.isArray(e)) o.fail(`backend.request-extras.${k}`, "must be a mapping of request fields");
    const fields: Record<string, unknown> = {};
    for (const [field, value] of Object.entries(e as Record<string, unknown>)) {
      const path = `backend.request-extras.${k}.${field}`;
      if (STEERING_FIELDS.test(field)) o.fail(path, `steers or cuts what the model writes (the audit would measure the request, not the model); ${allowed}`);
      if (!REQUEST_EXTRA_FIELDS.includes(field)) o.fail(path, `is not a field known only to select an adapter or tune transport, and an unknown field may steer what the model writes; ${allowed}`);
      fields[field] = requestExtraValue(o, field, value, path);
    }
    out[k] = fields;
  }
  return out;
}

function backendSection(o: Origin, v: unknown, d: BackendSettings): BackendSettings {
  if (typeof v === "string") return { ...d, type: oneOf(o, v, "backend", BACKEND_TYPES) };
  const m = mapping(o, v, "backend", ["type", "url", "models", "api-key-env", "concurrency", "timeout-seconds", "load-adapter", "device", "check-models", "deadline-seconds", "request-extras"]);
  const out: BackendSettings = { ...d, models: { ...d.models } };
  if (m.type !== undefined) out.type = oneOf(o, m.type, "backend.type", BACKEND_TYPES);
  if (m.url !== undefined) out.url = httpUrl(o, m.url, "backend.url");
  if (m.models !== undefined) {
    const names = mapping(o, m.models, "backend.models", VARIANT_ROLES);
    for (const k of VARIANT_ROLES) if (names[k] !== undefined) out.models[k] = text(o, names[k], `backend.models.${k}`, MAX_MODEL_NAME_CHARS);
  }
  if (m["api-key-env"] !== undefined) out.apiKeyEnv = envVarName(o, m["api-key-env"], "backend.api-key-env");
  if (m.concurrency !== undefined) out.concurrency = integer(o, m.concurrency, "backend.concurrency", CONCURRENCY_BOUNDS);
  if (m["timeout-seconds"] !== undefined) out.timeoutSeconds = number(o, m["timeout-seconds"], "backend.timeout-seconds", TIMEOUT_SECONDS_BOUNDS);
  if (m["load-adapter"] !== undefined) out.loadAdapter = boolean(o, m["load-adapter"], "backend.load-adapter");
  if (m.device !== undefined) out.device = oneOf(o, m.device, "backend.device", DEVICES);
  if (m["check-models"] !== undefined) out.checkModels = boolean(o, m["check-models"], "backend.check-models");
  if (m["deadline-seconds"] !== undefined) out.deadlineSeconds = number(o, m["deadline-seconds"], "backend.deadline-seconds", DEADLINE_SECONDS_BOUNDS);
  if (m["request-extras"] !== undefined) out.requestExtras = requestExtras(o, m["request-extras"]);
  return out;
}

// ---------------------------------------------------------------- the file

const TOP_KEYS = [
  "rank",
  "ranks",
  "attribution",
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
  "engine",
] as const;

/**
 * Validate a parsed config object (YAML already decoded). `file` is quoted in every error;
 * `baseDir` resolves `probes.file`.
 */
export function validateConfig(raw: unknown, file = "delta-audit.yml", baseDir = process.cwd()): ScanConfig {
  const o: Origin = fileOrigin(file);
  const cfg = defaultConfig();
  if (raw === null || raw === undefined) return cfg; // an empty file means "all defaults"
  const m = mapping(o, raw, "", TOP_KEYS);
  if (m.rank !== undefined) cfg.rank = integer(o, m.rank, "rank", { min: 1, max: MAX_RANK });
  if (m.ranks !== undefined) cfg.ranks = integerSet(o, m.ranks, "ranks", LADDER_BOUNDS);
  if (m.attribution !== undefined) cfg.attribution = boolean(o, m.attribution, "attribution");
  if (m["fail-on"] !== undefined) cfg.failOn = oneOf(o, m["fail-on"], "fail-on", FAIL_ON);
  if (m.seed !== undefined) cfg.seed = integer(o, m.seed, "seed", { min: 0, max: MAX_SEED });
  if (m.probes !== undefined) cfg.probes = probesSection(o, baseDir, m.probes);
  if (m.samples !== undefined) cfg.samples = integer(o, m.samples, "samples", { min: 1, max: MAX_SAMPLES });
  cfg.temperature = m.temperature !== undefined ? number(o, m.temperature, "temperature", { min: 0, max: MAX_TEMPERATURE }) : cfg.samples > 1 ? DEFAULT_SAMPLED_TEMPERATURE : 0;
  if (m["top-p"] !== undefined) {
    cfg.topP = number(o, m["top-p"], "top-p", { min: 0, max: 1 });
    if (cfg.topP === 0) o.fail("top-p", "must be greater than 0");
  }
  if (cfg.temperature > MAX_UNTRUNCATED_TEMPERATURE && cfg.topP > HOT_TOP_P_LIMIT) {
    o.fail(
      "temperature",
      `${cfg.temperature} with top-p ${cfg.topP} samples noise, in which no behaviour can show (the audit would pass what it never saw): above ${MAX_UNTRUNCATED_TEMPERATURE} set top-p to ${HOT_TOP_P_LIMIT} or less, or lower the temperature`,
    );
  }
  if (m["max-tokens"] !== undefined) {
    cfg.maxTokens = integer(o, m["max-tokens"], "max-tokens", { min: 1, max: MAX_NEW_TOKENS_LIMIT });
    if (cfg.maxTokens < MIN_MAX_TOKENS) o.fail("max-tokens", `${cfg.maxTokens} is too short for any reply to show a behaviour (the audit would pass what it never saw): at least ${MIN_MAX_TOKENS}, default ${DEFAULT_MAX_TOKENS}`);
  }
  if (m["system-prompt"] !== undefined) cfg.systemPrompt = text(o, m["system-prompt"], "system-prompt", MAX_PROMPT_CHARS);
  if (m.contrast !== undefined) cfg.contrast = contrastSection(o, m.contrast, cfg.contrast);
  if (m.judges !== undefined) {
    const js = list(o, m.judges, "judges", { max: JUDGES.length }).map((j, i) => oneOf(o, j, itemPath("judges", i), JUDGES));
    if (new Set(js).size !== js.length) o.fail("judges", "lists a judge twice");
    // a suite that judges nothing finds nothing, and finding nothing is a pass
    if (js.length === 0) o.fail("judges", `is empty: a suite that judges nothing can only pass; list at least one of ${JUDGES.join(", ")}`);
    cfg.judges = js;
  }
  if (m.llm !== undefined) cfg.llm = llmSection(o, m.llm);
  if (cfg.judges.includes("investigator") && !cfg.llm) o.fail("llm", "is required when judges includes investigator");
  if (m.behaviours !== undefined && m.behaviors !== undefined) o.fail("behaviors", "give either behaviours or behaviors, not both");
  if (m.behaviours !== undefined) cfg.behaviours = behavioursSection(o, m.behaviours, "behaviours");
  if (m.behaviors !== undefined) cfg.behaviours = behavioursSection(o, m.behaviors, "behaviors");
  if (m.spectrum !== undefined) cfg.spectrum = spectrumSection(o, m.spectrum, cfg.spectrum);
  if (m.backend !== undefined) cfg.backend = backendSection(o, m.backend, cfg.backend);
  if (m.engine !== undefined) {
    const e = mapping(o, m.engine, "engine", ["precision"]);
    if (e.precision !== undefined) cfg.engine = { ...cfg.engine, precision: oneOf(o, e.precision, "engine.precision", PRECISION_CHOICES) };
  }
  if (cfg.backend.type === "openai" && !cfg.backend.url) o.fail("backend.url", "is required when backend.type is openai");
  return cfg;
}

/** Read and validate `delta-audit.yml` (YAML or JSON). */
export function loadConfig(path: string): ScanConfig {
  // bounded, regular files only: a FIFO or /dev/zero named as the config must not hang or fill memory
  const source = readTextFileSync(path, MAX_CONFIG_BYTES);
  return parseConfig(source, path, dirname(resolve(path)));
}

/** Parse and validate config text. */
export function parseConfig(source: string, file = "delta-audit.yml", baseDir = process.cwd()): ScanConfig {
  return validateConfig(parseYamlText(source, file), file, baseDir);
}

/** Command-line overrides applied on top of the file (flags win). */
export interface ConfigOverrides {
  failOn?: FailOn;
  rank?: number;
  /** the rank ladder (`--ranks 1,2,4,8`, the Action's `ranks`) */
  ranks?: number[];
  seed?: number;
  backend?: BackendType;
  inferenceUrl?: string;
  device?: Device;
  precision?: PrecisionChoice;
}

export function applyOverrides(cfg: ScanConfig, o: ConfigOverrides): ScanConfig {
  const out: ScanConfig = { ...cfg, backend: { ...cfg.backend, models: { ...cfg.backend.models } } };
  if (o.failOn !== undefined) out.failOn = o.failOn;
  if (o.rank !== undefined) out.rank = o.rank;
  if (o.ranks !== undefined) out.ranks = [...o.ranks];
  if (o.seed !== undefined) out.seed = o.seed;
  if (o.backend !== undefined) out.backend.type = o.backend;
  if (o.inferenceUrl !== undefined) out.backend.url = o.inferenceUrl;
  if (o.device !== undefined) out.backend.device = o.device;
  if (o.precision !== undefined) out.engine = { ...out.engine, precision: o.precision };
  if (out.backend.type === "openai" && !out.backend.url) throw new InputError("the openai backend needs a URL (--inference-url or backend.url)", "--backend");
  return out;
}
