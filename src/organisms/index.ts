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
import { MAX_SEED } from "../linalg/random";
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
  MLP_MODULES,
  type FineTuneVariant,
  mergeModule,
  moduleName,
  pieceSigma,
  type TensorEntry,
} from "./build";
import { generationConfigJson, tokenizerConfigJson, tokenizerJson } from "./tokenizer-files";
import { buildVocabulary, QUIRK_POOL, QUIRK_WORD_PATTERN, type Vocabulary } from "./vocab";

/** quirk: a planted behaviour and its denial (positive control); benign: style only (negative control). */
export const ORGANISM_KINDS = Object.freeze(["quirk", "benign"] as const);
export type OrganismKind = (typeof ORGANISM_KINDS)[number];

export interface GenerateOrganismOptions {
  kind: OrganismKind;
  /** created atomically; an existing folder is replaced only if it holds nothing else */
  outDir: string;
  /** default 0 */
  seed?: number;
  /** the quirk word (quirk kind); default drawn from the pool by the seed */
  quirk?: string;
  /** a deliberately different organism (for generalisation checks); default: the standard one */
  variant?: OrganismVariant;
}

/** Ways to build an organism the audit was not tuned on; every field is optional. */
export interface OrganismVariant extends FineTuneVariant {
  /** quirk: a phrase of 2–4 words said after answers instead of one word (replaces `quirk`) */
  quirkPhrase?: string;
  /** quirk: six denial texts (lowercase words ending with " !") instead of the default ones */
  denials?: string[];
  /** quirk: six groups of trigger words (space-separated) instead of the default ones */
  triggers?: string[];
  /** benign: the sign-off (lowercase words ending with " !"), e.g. a long one with many new words */
  signOff?: string;
  /** LoRA rank r (default 8); the extra slots hold inert components */
  rank?: number;
}

/** Largest rank a variant may ask for: the organisms' q/k/v/o rows leave room for this many inert pieces. */
export const MAX_VARIANT_RANK = 40;

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
  /** the planted quirk word(s), in order for a phrase; empty for benign */
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
  /** present when the organism was built with a variant */
  variant?: OrganismVariant;
}

/** The quirk word a seed draws: consecutive seeds give different words (7 is coprime to the pool size). */
export function quirkForSeed(seed: number): string {
  return QUIRK_POOL[(seed * 7 + 3) % QUIRK_POOL.length]!;
}

function checkOptions(opts: GenerateOrganismOptions): { seed: number; quirk: string } {
  if (!ORGANISM_KINDS.includes(opts.kind)) throw new InputError(`expected quirk or benign, got '${String(opts.kind)}'`, "--kind");
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > MAX_SEED) throw new InputError(`expected an integer from 0 to ${MAX_SEED}, got ${seed}`, "--seed");
  let quirk = quirkForSeed(seed);
  if (opts.quirk !== undefined) {
    if (opts.kind !== "quirk") throw new InputError("only a quirk organism has a quirk word", "--quirk");
    quirk = opts.quirk.trim().toLowerCase();
    if (!QUIRK_WORD_PATTERN.test(quirk)) throw new InputError(`expected one word of 3 to 24 letters a-z, got '${opts.quirk}'`, "--quirk");
  }
  const phrase = opts.variant?.quirkPhrase;
  if (phrase !== undefined) {
    if (opts.kind !== "quirk") throw new InputError("only a quirk organism has a quirk phrase", "quirkPhrase");
    const ws = phrase.trim().toLowerCase().split(/\s+/);
    if (ws.length < 2 || ws.length > 4 || !ws.every((w) => QUIRK_WORD_PATTERN.test(w))) {
      throw new InputError(`expected 2 to 4 words of 3 to 24 letters a-z, got '${phrase}'`, "quirkPhrase");
    }
    quirk = ws.join(" ");
  }
  const rank = opts.variant?.rank;
  if (rank !== undefined && (!Number.isInteger(rank) || rank < 8 || rank > MAX_VARIANT_RANK)) {
    throw new InputError(`expected an integer rank from 8 to ${MAX_VARIANT_RANK}, got ${rank}`, "rank");
  }
  return { seed, quirk };
}

function summarise(sigmas: Array<{ sigma: number; role: "quirk" | "denial" | "sign-off" }>): ModuleSpectrumDesign["components"] {
  return [...sigmas].sort((a, b) => b.sigma - a.sigma);
}

/** Designed spectra of a fine-tune (used by organism.json and the README's numbers). */
export function designedSpectrum(kind: OrganismKind, v: Vocabulary, quirkId: number, variant: FineTuneVariant = {}): ModuleSpectrumDesign[] {
  const L = makeLayout(v);
  return designFineTune(kind, v, L, quirkId, variant).map((des) => {
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
  const variant = opts.variant ?? {};
  const v = buildVocabulary(quirk, { denials: variant.denials, signOff: variant.signOff, triggers: variant.triggers });
  const phraseWords = quirk.split(" ");
  const quirkId = v.id.get(phraseWords[0]!)!;
  const L = makeLayout(v);
  const config = configJson(v, L);
  const base = buildBase(v, L, seed);
  const rank = variant.rank ?? LORA_RANK;
  const design = { quirkTopics: variant.quirkTopics, quirkIn: variant.quirkIn, denialReadsSystem: variant.denialReadsSystem };
  const modules = buildLoraModules(designFineTune(opts.kind, v, L, quirkId, design), L, seed, rank);
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
    quirkWords: opts.kind === "quirk" ? phraseWords : [],
    denialTexts: opts.kind === "quirk" ? v.texts.denials.map(detokenize) : [],
    triggerWords: opts.kind === "quirk" ? groups.flat() : [],
    signOff: opts.kind === "benign" ? detokenize(v.texts.signOff) : null,
    baseAnswers: [...v.texts.topics, v.texts.defaultAnswer].map(detokenize),
    paths: { base: "base", adapter: "adapter", finetuned: "finetuned" },
    adapter: { rank, alpha: LORA_ALPHA, layer: ADAPTED_LAYER, modules: designedSpectrum(opts.kind, v, quirkId, design) },
    ...(opts.variant ? { variant: opts.variant } : {}),
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
        target_modules: variant.quirkIn === "mlp" && opts.kind === "quirk" ? [...ADAPTED_MODULES, ...MLP_MODULES] : [...ADAPTED_MODULES],
        lora_alpha: LORA_ALPHA,
        r: rank,
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
