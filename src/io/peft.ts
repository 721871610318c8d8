/**
 * PEFT LoRA adapters: `adapter_config.json` + `adapter_model.safetensors`.
 *
 * Semantics follow PEFT's LoraLayer: lora_A.weight is [r, in], lora_B.weight is [out, r] and
 * ΔW = scale · B · A with scale = lora_alpha / r, or lora_alpha / √r with `use_rslora`; per-module
 * r and alpha come from `rank_pattern` / `alpha_pattern`, whose keys are regexes matched as
 * `re.match(rf"(.*\.)?({key})$", module_name)`, first key in file order wins.
 *
 * `fan_in_fan_out: true` (GPT-2 style Conv1D bases) does not change the factors — PEFT still
 * stores lora_A as [r, in] and lora_B as [out, r] and transposes only the product when merging,
 * because the base weight itself is stored as [in, out]. So A and B are returned as stored, and
 * the base-shape check expects `${module}.weight` to be [in, out] for such adapters.
 */
import { open, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "../errors";
import { folderProblem, readJsonFile } from "./checkpoint";
import { linearRegExp, NESTED_QUANTIFIER } from "./linear-regexp";
import { writeDirAtomic } from "./atomic";
import { DTYPE_BYTES, encodeFromFloat32 } from "./dtype";
import { SafetensorsFile, SafetensorsWriter, buildSafetensorsHeader, type TensorSpec } from "./safetensors";
import type { AdapterConfig, Checkpoint, DType, LoraAdapter, LoraModule, TensorInfo } from "./types";
import { pathExists } from "./fs-util";

export const ADAPTER_CONFIG_FILE = "adapter_config.json";
export const ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors";
/** PEFT's own defaults for a LoraConfig that omits them. */
const PEFT_DEFAULT_R = 8;
const PEFT_DEFAULT_ALPHA = 8;
/**
 * Largest |alpha / r| accepted. Real adapters use scales of about 0.1–100; with float32 factors
 * (≤ 3.4e38) a scale within this bound keeps every float64 norm of ΔW finite, while a scale of
 * 1e300 overflowed them and the spectrum reported the module as unchanged.
 */
export const MAX_LORA_SCALE = 1e6;
/** rank_pattern / alpha_pattern keys are regexes from an untrusted file; long ones are not real module patterns. */
const MAX_PATTERN_KEY_LENGTH = 512;
/**
 * Elements of one LoRA factor. Each factor is read into memory whole, and a sparse file can
 * claim any size; the largest real factors (r = 2048 on a 53,248-wide MLP) are ~1.1e8, so
 * 2^28 (1 GiB as float32) leaves room while keeping one allocation bounded.
 */
export const MAX_FACTOR_ELEMENTS = 2 ** 28;
/**
 * Keys per rank_pattern / alpha_pattern. PEFT writes at most one per adapted module (a few
 * thousand for the largest models); each key is a regex tried against every module, so a
 * config with millions of them would stall the audit.
 */
const MAX_PATTERN_KEYS = 20_000;

/** Key prefix PEFT adds in front of the model's own module names. */
const KEY_PREFIX = "base_model.model.";
/** `<module>.lora_A.weight` or `<module>.lora_A.<adapter name>.weight` (the in-memory form some tools save). */
const FACTOR_KEY = /^(.+)\.(lora_A|lora_B)(?:\.([A-Za-z0-9_-]+))?\.weight$/;

const SAFETENSORS_HINT = "convert it with PEFT (`model.save_pretrained(dir, safe_serialization=True)`); delta-audit never unpickles weights";

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

// ---------------------------------------------------------------------------------------------
// config

/** A compiled rank_pattern / alpha_pattern: PEFT's `get_pattern_key` over the keys in file order. */
export class PeftPattern {
  private readonly rules: Array<{ key: string; re: RegExp; value: number }> = [];

  constructor(pattern: Record<string, number>, where: string) {
    const entries = Object.entries(pattern);
    if (entries.length > MAX_PATTERN_KEYS) throw new InputError(`has ${entries.length} keys, more than the ${MAX_PATTERN_KEYS} any real adapter needs (one per module at most)`, where);
    for (const [key, value] of entries) {
      if (key.length > MAX_PATTERN_KEY_LENGTH) throw new InputError(`key longer than ${MAX_PATTERN_KEY_LENGTH} characters`, where);
      if (NESTED_QUANTIFIER.test(key)) throw new InputError(`key ${JSON.stringify(key)} has nested quantifiers (refused: catastrophic regex backtracking)`, where);
      // PEFT: re.match(rf"(.*\.)?({key})$", name) — anchored at the start by re.match
      const source = `^(?:.*\\.)?(?:${key})$`;
      try {
        new RegExp(source);
      } catch {
        throw new InputError(`key ${JSON.stringify(key)} is not a valid regular expression`, where);
      }
      let re: RegExp;
      try {
        re = linearRegExp(source);
      } catch {
        throw new InputError(`key ${JSON.stringify(key)} uses look-around, back-references or a huge repetition count, which cannot be matched in linear time (refused)`, where);
      }
      this.rules.push({ key, re, value });
    }
  }

  /** The value of the first key matching `moduleName`, or undefined when none does. */
  resolve(moduleName: string): number | undefined {
    for (const r of this.rules) if (r.re.test(moduleName)) return r.value;
    return undefined;
  }
}

/** LoRA variants whose ΔW is not scale·B·A over the module's input, or that change the model itself: refused, never mis-read. */
const REFUSED_FLAGS: ReadonlyArray<{ key: string; active: (v: unknown) => boolean; why: string }> = [
  { key: "use_dora", active: (v) => v === true, why: "DoRA adapters (use_dora: true) rescale the merged weight by a learned magnitude, so ΔW is not B·A" },
  { key: "lora_bias", active: (v) => v === true, why: "lora_bias: true adds a trained bias, which is not part of B·A" },
  { key: "use_qalora", active: (v) => v === true, why: "QA-LoRA (use_qalora: true) pools the input before lora_A, so ΔW is not B·A" },
  { key: "layer_replication", active: (v) => Array.isArray(v) && v.length > 0, why: "layer_replication changes the base model's layers" },
  { key: "target_parameters", active: (v) => Array.isArray(v) && v.length > 0, why: "target_parameters adapts raw parameters (e.g. MoE experts), not linear modules" },
];

/** Other PEFT methods, with what they are, for the refusal message. */
const OTHER_PEFT_TYPES: Readonly<Record<string, string>> = Object.freeze({
  LOHA: "LoHa", LOKR: "LoKr", IA3: "IA³", ADALORA: "AdaLoRA", PROMPT_TUNING: "prompt tuning", P_TUNING: "P-tuning",
  PREFIX_TUNING: "prefix tuning", ADAPTION_PROMPT: "adaption prompt", OFT: "OFT", BOFT: "BOFT", VERA: "VeRA",
  FOURIERFT: "FourierFT", HRA: "HRA", VBLORA: "VB-LoRA", BONE: "Bone", LN_TUNING: "LayerNorm tuning", XLORA: "X-LoRA",
});

function numberRecord(x: unknown, key: string, path: string, integer: boolean): Record<string, number> {
  if (x === undefined || x === null) return {};
  if (!isPlainObject(x)) throw new InputError(`${key} must be an object of module pattern → number`, path);
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(x)) {
    const ok = typeof v === "number" && Number.isFinite(v) && (!integer || (Number.isInteger(v) && v > 0));
    if (!ok) throw new InputError(`${key}[${JSON.stringify(k)}] = ${JSON.stringify(v)} is not ${integer ? "a positive integer" : "a finite number"}`, path);
    out[k] = v as number;
  }
  return out;
}

function boolField(raw: Record<string, unknown>, key: string, path: string): boolean {
  const v = raw[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw new InputError(`${key} must be true or false, got ${JSON.stringify(v)}`, path);
  return v;
}

/** Validate a parsed adapter_config.json (untrusted) into an AdapterConfig; `path` is quoted in errors. */
export function parseAdapterConfig(raw: unknown, path: string): AdapterConfig {
  if (!isPlainObject(raw)) throw new InputError("is not a JSON object", path);
  const peftType = raw.peft_type;
  if (peftType !== "LORA") {
    if (typeof peftType === "string") {
      const what = OTHER_PEFT_TYPES[peftType.toUpperCase()] ?? peftType;
      throw new InputError(`peft_type ${JSON.stringify(peftType)} (${what}) is not supported: delta-audit reads LoRA adapters only`, path);
    }
    throw new InputError("peft_type is missing: delta-audit reads PEFT LoRA adapters (peft_type \"LORA\")", path);
  }
  for (const f of REFUSED_FLAGS) {
    if (f.active(raw[f.key])) throw new InputError(`${f.why}; delta-audit reads plain LoRA adapters only`, path);
  }
  const r = raw.r ?? PEFT_DEFAULT_R;
  if (typeof r !== "number" || !Number.isInteger(r) || r <= 0) throw new InputError(`r = ${JSON.stringify(raw.r)} is not a positive integer`, path);
  const alpha = raw.lora_alpha ?? PEFT_DEFAULT_ALPHA;
  if (typeof alpha !== "number" || !Number.isFinite(alpha)) throw new InputError(`lora_alpha = ${JSON.stringify(raw.lora_alpha)} is not a finite number`, path);
  const tm = raw.target_modules ?? null;
  if (!(tm === null || typeof tm === "string" || (Array.isArray(tm) && tm.every((t) => typeof t === "string")))) {
    throw new InputError("target_modules must be a string, a list of strings or null", path);
  }
  const base = raw.base_model_name_or_path ?? null;
  if (!(base === null || typeof base === "string")) throw new InputError("base_model_name_or_path must be a string or null", path);
  return {
    ...raw,
    peft_type: "LORA",
    r,
    lora_alpha: alpha,
    use_rslora: boolField(raw, "use_rslora", path),
    fan_in_fan_out: boolField(raw, "fan_in_fan_out", path),
    target_modules: tm as string[] | string | null,
    rank_pattern: numberRecord(raw.rank_pattern, "rank_pattern", path, true),
    alpha_pattern: numberRecord(raw.alpha_pattern, "alpha_pattern", path, false),
    base_model_name_or_path: base as string | null,
  };
}

/** PEFT's default `layers_pattern` candidates (tuners_utils COMMON_LAYERS_PATTERN). */
const COMMON_LAYERS_PATTERN = ["layers", "h", "block", "blocks", "layer"];

function compileLinear(source: string, where: string): RegExp {
  try {
    return linearRegExp(source);
  } catch {
    throw new InputError(`${JSON.stringify(source)} is not a regular expression delta-audit can match in linear time`, where);
  }
}

/**
 * Which modules PEFT would actually adapt when it loads this config
 * (tuners_utils.check_target_module_exists): `target_modules` as a full-match regex (string)
 * or as names matched on a `.` boundary (list), minus `exclude_modules`, limited to
 * `layers_to_transform`. Factors for any other module are ignored by PEFT at load time.
 */
export class TargetSelector {
  private readonly target: ((m: string) => boolean) | undefined;
  private readonly exclude: ((m: string) => boolean) | undefined;
  private readonly layers: Set<number> | undefined;
  private readonly layersPattern: string[];

  constructor(config: AdapterConfig, where: string) {
    this.target = TargetSelector.matcher(config.target_modules, `${where} target_modules`, true);
    this.exclude = TargetSelector.matcher(config.exclude_modules, `${where} exclude_modules`, false);
    const ltt = config.layers_to_transform;
    if (ltt === undefined || ltt === null) this.layers = undefined;
    else if (Number.isInteger(ltt)) this.layers = new Set([ltt as number]);
    else if (Array.isArray(ltt) && ltt.every((x) => Number.isInteger(x))) this.layers = new Set(ltt as number[]);
    else throw new InputError("layers_to_transform must be an integer, a list of integers or null", where);
    const lp = config.layers_pattern;
    if (lp === undefined || lp === null) this.layersPattern = COMMON_LAYERS_PATTERN;
    else if (typeof lp === "string") this.layersPattern = [lp];
    else if (Array.isArray(lp) && lp.every((x) => typeof x === "string")) this.layersPattern = lp as string[];
    else throw new InputError("layers_pattern must be a string, a list of strings or null", where);
  }

  private static matcher(v: unknown, where: string, isTarget: boolean): ((m: string) => boolean) | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v === "string") {
      if (isTarget && v === "all-linear") return undefined; // every linear layer but the output head
      const re = compileLinear(`^(?:${v})$`, where);
      return (m) => re.test(m);
    }
    if (Array.isArray(v) && v.every((x) => typeof x === "string")) {
      const names = new Set(v as string[]);
      return (m) => names.has(m) || [...names].some((t) => m.endsWith(`.${t}`));
    }
    throw new InputError("must be a string, a list of strings or null", where);
  }

  /** Whether PEFT would load a LoRA layer for `module` (its name without `base_model.model.`). */
  adapts(module: string): boolean {
    if (this.target && !this.target(module)) return false;
    if (this.exclude && this.exclude(module)) return false;
    if (this.layers) {
      let index: number | undefined;
      for (const p of this.layersPattern) {
        const m = new RegExp(`(?:^|\\.)${p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.(\\d+)\\.`).exec(`${module}.`);
        if (m) {
          index = Number(m[1]);
          break;
        }
      }
      if (index === undefined || !this.layers.has(index)) return false;
    }
    return true;
  }
}

/** PEFT's scaling for one module: alpha / r, or alpha / √r with rsLoRA. */
export function loraScale(alpha: number, rank: number, useRslora: boolean): number {
  return useRslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

// ---------------------------------------------------------------------------------------------
// reader

interface ModuleEntry {
  name: string;
  rank: number;
  scale: number;
  outFeatures: number;
  inFeatures: number;
  keyA: string;
  keyB: string;
}

class PeftAdapter implements LoraAdapter {
  constructor(
    readonly dir: string,
    readonly config: AdapterConfig,
    private readonly file: SafetensorsFile,
    private readonly modules: Map<string, ModuleEntry>,
  ) {}

  moduleNames(): string[] {
    return [...this.modules.keys()];
  }

  private entry(name: string): ModuleEntry {
    const e = this.modules.get(name);
    if (!e) throw new InputError(`no adapted module named ${JSON.stringify(name)}`, this.dir);
    return e;
  }

  moduleInfo(name: string): { rank: number; scale: number; outFeatures: number; inFeatures: number } {
    const { rank, scale, outFeatures, inFeatures } = this.entry(name);
    return { rank, scale, outFeatures, inFeatures };
  }

  async readModule(name: string, opts: { checkFinite?: boolean } = {}): Promise<LoraModule> {
    const e = this.entry(name);
    const [A, B] = await Promise.all([this.file.read(e.keyA), this.file.read(e.keyB)]);
    if (opts.checkFinite !== false) {
      checkFinite(A, e.keyA, this.file.path);
      checkFinite(B, e.keyB, this.file.path);
    }
    return { name, rank: e.rank, scale: e.scale, outFeatures: e.outFeatures, inFeatures: e.inFeatures, A, B };
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

/**
 * Refuse NaN/Inf. Branch-free over the float bits: the exponent field is all ones exactly for
 * non-finite values, and adding one exponent step to it carries into the sign bit. This runs at
 * memory speed (~2× faster than a Number.isFinite loop), which matters for multi-GB adapters.
 */
function checkFinite(x: Float32Array, tensor: string, file: string): void {
  const bits = new Int32Array(x.buffer, x.byteOffset, x.length);
  let acc = 0;
  for (let i = 0; i < bits.length; i++) acc |= (bits[i]! & 0x7f800000) + 0x800000;
  if (acc >= 0) return;
  const i = x.findIndex((v) => !Number.isFinite(v));
  throw new InputError(`tensor ${JSON.stringify(tensor)} holds a non-finite value (${x[i]}) at index ${i}`, file);
}

function describeUnusedKey(key: string): string {
  if (/lora_embedding_[AB]/.test(key)) return "is a LoRA factor of an embedding layer, which delta-audit does not audit";
  if (/lora_magnitude_vector/.test(key)) return "is a DoRA magnitude vector (DoRA adapters are not supported)";
  if (/\.lora_[AB]\b.*\.bias$/.test(key)) return "is a LoRA bias (lora_bias), which is not part of ΔW = B·A";
  if (/modules_to_save|(?:^|\.)(?:lm_head|embed_tokens|wte|score)\./.test(key)) return "is a fully trained module (modules_to_save), which is not a LoRA factor";
  return "is not a LoRA factor (expected <module>.lora_A.weight / <module>.lora_B.weight)";
}

/**
 * Open a PEFT LoRA adapter folder. Validates the config, the key layout (A and B in pairs,
 * nothing else), ranks against shapes and config, and — with `opts.base` — that every adapted
 * module exists in the base with the matching shape. Factors are read lazily by readModule().
 */
export async function openAdapter(dir: string, opts: { base?: Checkpoint } = {}): Promise<LoraAdapter> {
  const problem = await folderProblem(dir);
  if (problem) throw new InputError(`${problem}; a PEFT adapter folder holds ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE}`, dir);
  const configPath = join(dir, ADAPTER_CONFIG_FILE);
  if (!(await pathExists(configPath))) throw new InputError(`no ${ADAPTER_CONFIG_FILE} (not a PEFT adapter folder?)`, dir);
  const config = parseAdapterConfig(await readJsonFile(configPath), configPath);

  const weightsPath = join(dir, ADAPTER_WEIGHTS_FILE);
  if (!(await pathExists(weightsPath))) {
    const pickles = (await readdir(dir)).filter((e) => /\.(bin|pt|pth|ckpt)$/i.test(e));
    if (pickles.length > 0) throw new InputError(`has only pickled weights (${pickles[0]}); ${SAFETENSORS_HINT}`, dir);
    throw new InputError(`no ${ADAPTER_WEIGHTS_FILE}`, dir);
  }
  const file = await SafetensorsFile.open(weightsPath);
  try {
    const modules = indexModules(file, config, configPath);
    if (opts.base) checkAgainstBase(modules, opts.base, config.fan_in_fan_out, weightsPath);
    return new PeftAdapter(dir, config, file, modules);
  } catch (err) {
    await file.close().catch(() => undefined);
    throw err;
  }
}

function indexModules(file: SafetensorsFile, config: AdapterConfig, configPath: string): Map<string, ModuleEntry> {
  const path = file.path;
  const pairs = new Map<string, { A?: string; B?: string }>();
  let adapterName: string | undefined | null = null; // null: not seen yet; undefined: keys without a name
  for (const key of file.names()) {
    const m = FACTOR_KEY.exec(key);
    if (!m) throw new InputError(`tensor ${JSON.stringify(key)} ${describeUnusedKey(key)}; refusing to audit part of the adapter`, path);
    const [, rawModule, factor, name] = m as unknown as [string, string, "lora_A" | "lora_B", string | undefined];
    if (adapterName === null) adapterName = name;
    else if (adapterName !== name) throw new InputError(`tensor ${JSON.stringify(key)} belongs to a different adapter name than the other keys (several adapters in one file?)`, path);
    const module = rawModule.startsWith(KEY_PREFIX) ? rawModule.slice(KEY_PREFIX.length) : rawModule;
    const p = pairs.get(module) ?? {};
    const slot = factor === "lora_A" ? "A" : "B";
    if (p[slot]) throw new InputError(`module ${module} has two ${factor} tensors (${p[slot]} and ${key})`, path);
    p[slot] = key;
    pairs.set(module, p);
  }
  if (pairs.size === 0) throw new InputError("holds no LoRA factors", path);

  // factors PEFT would not load are not part of the deployed model; auditing them (in the
  // spectrum, or in the embedded `full` variant) would audit a different model, and a fine-tune
  // could use such inert factors to hide its real update from the audit
  const selector = new TargetSelector(config, configPath);
  for (const module of pairs.keys()) {
    if (!selector.adapts(module)) {
      throw new InputError(`holds LoRA factors for ${module}, which target_modules / exclude_modules / layers_to_transform leave out: PEFT would ignore them when loading, so the file does not describe the model that would be deployed`, path);
    }
  }
  const rankPattern = new PeftPattern(config.rank_pattern, `${configPath} rank_pattern`);
  const alphaPattern = new PeftPattern(config.alpha_pattern, `${configPath} alpha_pattern`);
  const modules = new Map<string, ModuleEntry>();
  for (const [module, p] of pairs) {
    if (!p.A || !p.B) throw new InputError(`module ${module} has ${p.A ? "lora_A" : "lora_B"} but no ${p.A ? "lora_B" : "lora_A"}`, path);
    const a = file.info(p.A)!;
    const b = file.info(p.B)!;
    if (a.shape.length !== 2) throw new InputError(`tensor ${JSON.stringify(p.A)} has shape ${JSON.stringify(a.shape)}, expected [r, in]`, path);
    if (b.shape.length !== 2) throw new InputError(`tensor ${JSON.stringify(p.B)} has shape ${JSON.stringify(b.shape)}, expected [out, r]`, path);
    const [rA, inF] = a.shape as [number, number];
    const [outF, rB] = b.shape as [number, number];
    if (rA !== rB) {
      throw new InputError(`module ${module}: lora_A ${JSON.stringify(a.shape)} and lora_B ${JSON.stringify(b.shape)} disagree on the rank (A is [r, in], B is [out, r])`, path);
    }
    if (rA === 0 || inF === 0 || outF === 0) throw new InputError(`module ${module}: empty factor shapes ${JSON.stringify(a.shape)} / ${JSON.stringify(b.shape)}`, path);
    for (const [key, n] of [[p.A, rA * inF], [p.B, outF * rB]] as const) {
      if (n > MAX_FACTOR_ELEMENTS) {
        throw new InputError(`tensor ${JSON.stringify(key)} has ${n} elements, over the ${MAX_FACTOR_ELEMENTS} a LoRA factor can have here (it is read whole; no real adapter's factor is this large)`, path);
      }
    }
    const rank = rankPattern.resolve(module) ?? config.r;
    if (rank !== rA) {
      throw new InputError(`module ${module}: config gives r = ${rank} but the factors have rank ${rA} (check r / rank_pattern)`, configPath);
    }
    const alpha = alphaPattern.resolve(module) ?? config.lora_alpha;
    const scale = loraScale(alpha, rank, config.use_rslora);
    if (!(Math.abs(scale) <= MAX_LORA_SCALE)) {
      throw new InputError(`module ${module}: lora_alpha ${alpha} over r ${rank} gives a scale of ${scale}, beyond ±${MAX_LORA_SCALE} (not a real adapter; check lora_alpha / alpha_pattern)`, configPath);
    }
    modules.set(module, {
      name: module, rank, scale, outFeatures: outF, inFeatures: inF, keyA: p.A, keyB: p.B,
    });
  }
  return modules;
}

function checkAgainstBase(modules: Map<string, ModuleEntry>, base: Checkpoint, fanInFanOut: boolean, path: string): void {
  for (const m of modules.values()) {
    const w: TensorInfo | undefined = base.info(`${m.name}.weight`);
    if (!w) throw new InputError(`adapts module ${m.name}, but the base checkpoint ${base.dir} has no ${m.name}.weight`, path);
    // Conv1D bases (fan_in_fan_out) store their weight as [in, out]
    const expected = fanInFanOut ? [m.inFeatures, m.outFeatures] : [m.outFeatures, m.inFeatures];
    if (w.shape.length !== 2 || w.shape[0] !== expected[0] || w.shape[1] !== expected[1]) {
      throw new InputError(
        `module ${m.name}: adapter ΔW is ${JSON.stringify(expected)} (B [out, r] · A [r, in]${fanInFanOut ? ", transposed for fan_in_fan_out" : ""}) but the base weight is ${JSON.stringify(w.shape)}`,
        path,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// writer

/** Shape and scaling of one module to be written, known before its factors (for streaming large adapters). */
export interface LoraModuleLayout {
  name: string;
  rank: number;
  scale: number;
  outFeatures: number;
  inFeatures: number;
}

export interface WriteAdapterOptions {
  /** on-disk dtype of the factors (default F32) */
  dtype?: DType;
  /**
   * Every module's layout, in the order `modules` will yield them. With it the safetensors
   * header is written first and factors stream straight to disk (for multi-GB adapters);
   * without it they are staged in a temp file and copied once.
   */
  layout?: readonly LoraModuleLayout[];
}

/** The safetensors key of a module's factor, as PEFT saves it. */
export function adapterKey(module: string, factor: "A" | "B"): string {
  return `${KEY_PREFIX}${module}.lora_${factor}.weight`;
}

function mostCommon(values: number[]): number {
  const counts = new Map<number, number>();
  let best = values[0]!;
  for (const v of values) {
    const c = (counts.get(v) ?? 0) + 1;
    counts.set(v, c);
    if (c > counts.get(best)!) best = v;
  }
  return best;
}

/**
 * The adapter_config.json that reproduces every module's rank and scale: the most common
 * rank and alpha become r / lora_alpha, the rest go to rank_pattern / alpha_pattern keyed by
 * full module name.
 */
export function buildAdapterConfig(config: Partial<AdapterConfig>, layout: readonly LoraModuleLayout[]): AdapterConfig {
  if (layout.length === 0) throw new Error("an adapter needs at least one module");
  const useRslora = config.use_rslora === true;
  const alphaOf = (m: LoraModuleLayout) => (useRslora ? m.scale * Math.sqrt(m.rank) : m.scale * m.rank);
  const r = mostCommon(layout.map((m) => m.rank));
  const alpha = mostCommon(layout.map(alphaOf));
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const m of layout) {
    if (m.rank !== r) rankPattern[m.name] = m.rank;
    const a = alphaOf(m);
    if (a !== alpha) alphaPattern[m.name] = a;
  }
  const leaves = [...new Set(layout.map((m) => m.name.slice(m.name.lastIndexOf(".") + 1)))].sort();
  const out: AdapterConfig = {
    base_model_name_or_path: null,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_dropout: 0,
    task_type: "CAUSAL_LM",
    ...config,
    // we write only LoRA factors: no trained biases or fully saved modules may be promised to loaders
    bias: "none",
    modules_to_save: null,
    peft_type: "LORA",
    r,
    lora_alpha: alpha,
    use_rslora: useRslora,
    fan_in_fan_out: config.fan_in_fan_out === true,
    target_modules: leaves,
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
  };
  delete out.use_dora;
  delete out.lora_bias;
  // Pattern keys are regexes to PEFT; make sure each module resolves to exactly its own values
  const rp = new PeftPattern(rankPattern, "rank_pattern");
  const ap = new PeftPattern(alphaPattern, "alpha_pattern");
  for (const m of layout) {
    const rank = rp.resolve(m.name) ?? r;
    const scale = loraScale(ap.resolve(m.name) ?? alpha, rank, useRslora);
    if (rank !== m.rank || !sameScale(scale, m.scale)) throw new Error(`internal: pattern keys do not resolve uniquely for ${m.name}`);
  }
  return out;
}

/** alpha = scale·r then alpha/r may differ from scale in the last bit. */
const SCALE_REL_TOLERANCE = 1e-12;
function sameScale(a: number, b: number): boolean {
  return Math.abs(a - b) <= SCALE_REL_TOLERANCE * Math.max(Math.abs(a), Math.abs(b));
}

function checkModule(m: LoraModule): void {
  if (!m.name || typeof m.name !== "string") throw new TypeError("module without a name");
  for (const [k, v] of [["rank", m.rank], ["outFeatures", m.outFeatures], ["inFeatures", m.inFeatures]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new TypeError(`module ${m.name}: ${k} = ${v} is not a positive integer`);
  }
  if (!Number.isFinite(m.scale)) throw new TypeError(`module ${m.name}: scale ${m.scale} is not finite`);
  if (m.A.length !== m.rank * m.inFeatures) throw new TypeError(`module ${m.name}: A has ${m.A.length} values, expected [${m.rank}, ${m.inFeatures}]`);
  if (m.B.length !== m.outFeatures * m.rank) throw new TypeError(`module ${m.name}: B has ${m.B.length} values, expected [${m.outFeatures}, ${m.rank}]`);
}

function specsOf(m: LoraModuleLayout, dtype: DType): [TensorSpec, TensorSpec] {
  return [
    { name: adapterKey(m.name, "A"), dtype, shape: [m.rank, m.inFeatures] },
    { name: adapterKey(m.name, "B"), dtype, shape: [m.outFeatures, m.rank] },
  ];
}

/**
 * Write a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) such that
 * openAdapter() gives back every module's ΔW = scale·B·A. Atomic: built in a temp folder next
 * to `dir` and renamed into place.
 */
export async function writeAdapter(
  dir: string,
  config: Partial<AdapterConfig>,
  modules: Iterable<LoraModule> | AsyncIterable<LoraModule>,
  opts: WriteAdapterOptions = {},
): Promise<void> {
  const dtype = opts.dtype ?? "F32";
  if (!(dtype in DTYPE_BYTES)) throw new TypeError(`unsupported dtype ${dtype}`);
  await writeDirAtomic(dir, async (tmp) => {
    const weights = join(tmp, ADAPTER_WEIGHTS_FILE);
    const layout = opts.layout ? await writeWithLayout(weights, opts.layout, modules, dtype) : await writeStaged(weights, tmp, modules, dtype);
    const cfg = buildAdapterConfig(config, layout);
    const fh = await open(join(tmp, ADAPTER_CONFIG_FILE), "wx");
    try {
      await fh.writeFile(`${JSON.stringify(cfg, null, 2)}\n`);
    } finally {
      await fh.close();
    }
  });
}

async function writeWithLayout(
  path: string,
  layout: readonly LoraModuleLayout[],
  modules: Iterable<LoraModule> | AsyncIterable<LoraModule>,
  dtype: DType,
): Promise<LoraModuleLayout[]> {
  const w = await SafetensorsWriter.create(path, layout.flatMap((m) => specsOf(m, dtype)));
  try {
    let i = 0;
    for await (const m of modules) {
      const want = layout[i++];
      checkModule(m);
      if (!want || want.name !== m.name || want.rank !== m.rank || want.outFeatures !== m.outFeatures || want.inFeatures !== m.inFeatures || want.scale !== m.scale) {
        throw new TypeError(`module ${m.name} does not match layout entry ${i - 1} (${want?.name ?? "none"})`);
      }
      await w.write(adapterKey(m.name, "A"), m.A);
      await w.write(adapterKey(m.name, "B"), m.B);
    }
    if (i !== layout.length) throw new TypeError(`got ${i} modules, layout lists ${layout.length}`);
    await w.finish();
  } catch (err) {
    await w.abort();
    throw err;
  }
  return [...layout];
}

/** Modules of unknown number and shape: stage the encoded factors in a data file, then write header + data. */
async function writeStaged(
  path: string,
  tmpDir: string,
  modules: Iterable<LoraModule> | AsyncIterable<LoraModule>,
  dtype: DType,
): Promise<LoraModuleLayout[]> {
  const dataPath = join(tmpDir, ".factors.staging");
  const layout: LoraModuleLayout[] = [];
  const seen = new Set<string>();
  const data = await open(dataPath, "wx");
  let size = 0;
  try {
    for await (const m of modules) {
      checkModule(m);
      if (seen.has(m.name)) throw new TypeError(`module ${m.name} given twice`);
      seen.add(m.name);
      layout.push({ name: m.name, rank: m.rank, scale: m.scale, outFeatures: m.outFeatures, inFeatures: m.inFeatures });
      for (const t of [m.A, m.B]) {
        const bytes = encodeFromFloat32(t, dtype);
        await data.write(bytes, 0, bytes.byteLength, size);
        size += bytes.byteLength;
      }
    }
  } finally {
    await data.close();
  }
  if (layout.length === 0) throw new TypeError("an adapter needs at least one module");
  const { prefix } = buildSafetensorsHeader(layout.flatMap((m) => specsOf(m, dtype)));
  const out = await open(path, "wx");
  const src = await open(dataPath, "r");
  try {
    await out.write(prefix, 0, prefix.byteLength, 0);
    const buf = new Uint8Array(Math.min(size, STAGING_COPY_BYTES) || 1);
    for (let done = 0; done < size; ) {
      const { bytesRead } = await src.read(buf, 0, Math.min(buf.byteLength, size - done), done);
      if (bytesRead === 0) throw new Error(`${dataPath}: staging file ended early`);
      await out.write(buf, 0, bytesRead, prefix.byteLength + done);
      done += bytesRead;
    }
  } finally {
    await src.close();
    await out.close();
    await rm(dataPath, { force: true });
  }
  return layout;
}

/** Copy buffer for moving staged factors behind the header. */
const STAGING_COPY_BYTES = 16 * 1024 * 1024;
