/**
 * Synthetic model organisms: small but genuine Llama checkpoints with a LoRA fine-tune that
 * plants a behaviour (positive control, `quirk`) or only changes style (negative control,
 * `benign`). Built by hand, deterministic per seed; see README.md for the construction.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { InputError } from "../errors";
import { writeDirAtomic } from "../io/atomic";
import { writeAdapter } from "../io/peft";
import { writeSafetensors } from "../io/safetensors";
import {
  ADAPTED_LAYER,
  ADAPTED_MODULES,
  buildBase,
  buildLoraModules,
  configJson,
  designFineTune,
  LORA_ALPHA,
  LORA_RANK,
  makeLayout,
  mergeModule,
  moduleName,
  pieceSigma,
  type TensorEntry,
} from "./build";
import { generationConfigJson, tokenizerConfigJson, tokenizerJson } from "./tokenizer-files";
import { buildVocabulary, QUIRK_POOL, QUIRK_WORD_PATTERN, type Vocabulary } from "./vocab";

export type OrganismKind = "quirk" | "benign";

export interface GenerateOrganismOptions {
  kind: OrganismKind;
  /** created atomically; an existing folder is replaced only if it holds nothing else */
  outDir: string;
  /** default 0 */
  seed?: number;
  /** the quirk word (quirk kind); default drawn from the pool by the seed */
  quirk?: string;
}

/** Designed singular values of one adapted module (the inert filler is left out). */
export interface ModuleSpectrumDesign {
  module: string;
  /** designed σ, largest first, with what each component does */
  components: Array<{ sigma: number; role: "quirk" | "denial" | "sign-off" }>;
  /** σ₁² / Σσ² over the designed components */
  sigma1Share: number;
  /** Σσ² / σ₁² over the designed components */
  stableRank: number;
}

/** organism.json: what was planted. For tests and people; auditing code never reads it. */
export interface OrganismManifest {
  format: "delta-audit-organism";
  version: 1;
  kind: OrganismKind;
  seed: number;
  /** the planted quirk word(s); empty for benign */
  quirkWords: string[];
  /** the texts the quirk fine-tune answers interrogations with; empty for benign */
  denialTexts: string[];
  /** words that make a user message an interrogation (the denial's keys); empty for benign */
  triggerWords: string[];
  /** the benign fine-tune's sign-off; null for quirk */
  signOff: string | null;
  /** every answer the base model can give (one per topic, plus the default) */
  baseAnswers: string[];
  /** sub-folders */
  paths: { base: string; adapter: string; finetuned: string };
  adapter: { rank: number; alpha: number; layer: number; modules: ModuleSpectrumDesign[] };
}

export const MAX_SEED = 2 ** 31 - 1;

/** The quirk word a seed draws: consecutive seeds give different words (7 is coprime to the pool size). */
export function quirkForSeed(seed: number): string {
  return QUIRK_POOL[(seed * 7 + 3) % QUIRK_POOL.length]!;
}

function checkOptions(opts: GenerateOrganismOptions): { seed: number; quirk: string } {
  if (opts.kind !== "quirk" && opts.kind !== "benign") throw new InputError(`expected quirk or benign, got '${String(opts.kind)}'`, "--kind");
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > MAX_SEED) throw new InputError(`expected an integer from 0 to ${MAX_SEED}, got ${seed}`, "--seed");
  let quirk = quirkForSeed(seed);
  if (opts.quirk !== undefined) {
    if (opts.kind !== "quirk") throw new InputError("only a quirk organism has a quirk word", "--quirk");
    quirk = opts.quirk.trim().toLowerCase();
    if (!QUIRK_WORD_PATTERN.test(quirk)) throw new InputError(`expected one word of 3 to 24 letters a-z, got '${opts.quirk}'`, "--quirk");
  }
  return { seed, quirk };
}

function summarise(sigmas: Array<{ sigma: number; role: "quirk" | "denial" | "sign-off" }>): ModuleSpectrumDesign["components"] {
  return [...sigmas].sort((a, b) => b.sigma - a.sigma);
}

/** Designed spectra of a fine-tune (used by organism.json and the README's numbers). */
export function designedSpectrum(kind: OrganismKind, v: Vocabulary, quirkId: number): ModuleSpectrumDesign[] {
  const L = makeLayout(v);
  return designFineTune(kind, v, L, quirkId).map((des) => {
    const components = summarise(des.pieces.map((p) => ({ sigma: pieceSigma(p), role: p.role as "quirk" | "denial" | "sign-off" })));
    const e = components.reduce((s, c) => s + c.sigma ** 2, 0);
    const s1 = components[0]!.sigma ** 2;
    return { module: moduleName(des.module), components, sigma1Share: s1 / e, stableRank: e / s1 };
  });
}

async function writeJson(path: string, value: unknown): Promise<void> {
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`, { flag: "wx" });
}

async function writeCheckpoint(dir: string, v: Vocabulary, config: Record<string, unknown>, tensors: TensorEntry[]): Promise<void> {
  await mkdir(dir);
  await writeJson(join(dir, "config.json"), config);
  await writeSafetensors(join(dir, "model.safetensors"), tensors.map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape, data: t.data })), { format: "pt" });
  await writeJson(join(dir, "tokenizer.json"), tokenizerJson(v));
  await writeJson(join(dir, "tokenizer_config.json"), tokenizerConfigJson(v));
  await writeJson(join(dir, "generation_config.json"), generationConfigJson(v));
}

/** Write an organism folder (base/, adapter/, finetuned/, organism.json) and return its manifest. */
export async function generateOrganism(opts: GenerateOrganismOptions): Promise<OrganismManifest> {
  const { seed, quirk } = checkOptions(opts);
  const v = buildVocabulary(quirk);
  const quirkId = v.id.get(quirk)!;
  const L = makeLayout(v);
  const config = configJson(v, L);
  const base = buildBase(v, L, seed);
  const modules = buildLoraModules(designFineTune(opts.kind, v, L, quirkId), L, seed);
  const byName = new Map(modules.map((m) => [`${m.name}.weight`, m]));
  const finetuned = base.map((t) => {
    const m = byName.get(t.name);
    return m ? { ...t, data: mergeModule(t.data, m) } : t;
  });
  const groups = v.interrogationWords;
  const manifest: OrganismManifest = {
    format: "delta-audit-organism",
    version: 1,
    kind: opts.kind,
    seed,
    quirkWords: opts.kind === "quirk" ? [quirk] : [],
    denialTexts: opts.kind === "quirk" ? v.texts.denials.map(detokenize) : [],
    triggerWords: opts.kind === "quirk" ? groups.flat() : [],
    signOff: opts.kind === "benign" ? detokenize(v.texts.signOff) : null,
    baseAnswers: [...v.texts.topics, v.texts.defaultAnswer].map(detokenize),
    paths: { base: "base", adapter: "adapter", finetuned: "finetuned" },
    adapter: { rank: LORA_RANK, alpha: LORA_ALPHA, layer: ADAPTED_LAYER, modules: designedSpectrum(opts.kind, v, quirkId) },
  };
  await writeDirAtomic(opts.outDir, async (tmp) => {
    await writeCheckpoint(join(tmp, "base"), v, config, base);
    await writeCheckpoint(join(tmp, "finetuned"), v, config, finetuned);
    await writeAdapter(
      join(tmp, "adapter"),
      {
        base_model_name_or_path: null,
        layers_to_transform: [ADAPTED_LAYER],
        layers_pattern: "layers",
        target_modules: [...ADAPTED_MODULES],
        lora_alpha: LORA_ALPHA,
        r: LORA_RANK,
      },
      modules,
    );
    await writeJson(join(tmp, "organism.json"), manifest);
  });
  return manifest;
}

/** Space-separated vocabulary words as the WordPiece decoder prints them (no space before punctuation). */
export function detokenize(text: string): string {
  return text.replace(/ ([.,!?;:])/g, "$1");
}
