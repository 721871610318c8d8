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
  ADAPTED_MODULES,
  addTokenRows,
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
import { bpeTokenizerConfigJson, generationConfigJson, tokenizerConfigJson, tokenizerJson, withAddedTokens } from "./tokenizer-files";
import { loadBpeSource } from "./bpe";
import { BPE_QUIRK_POOL, buildBpeVocabulary } from "./bpe-vocab";
import { buildVocabulary, QUIRK_POOL, QUIRK_WORD_PATTERN, type Vocabulary } from "./vocab";
import { placeBase, placeConfig, placeDesigned, placedTargets, placeModules, placementOf, type PlacementVariant } from "./placement";

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
export interface OrganismVariant extends FineTuneVariant, PlacementVariant {
  /** quirk: a phrase of 2–4 words said after answers instead of one word (replaces `quirk`) */
  quirkPhrase?: string;
  /** quirk: six denial texts (lowercase words ending with " !") instead of the default ones */
  denials?: string[];
  /** quirk: six groups of trigger words (space-separated) instead of the default ones */
  triggers?: string[];
  /** benign: the sign-off (lowercase words ending with " !"; lowercase words for a BPE organism), e.g. a long one with many new words */
  signOff?: string;
  /**
   * a byte-level BPE tokenizer.json (Llama 3's, Qwen3's …): the organism keeps a faithful subset
   * of its vocabulary and says cased, natural two-part answers (bpe-vocab.ts); the quirk word is
   * then several tokens (drawn from BPE_QUIRK_POOL), and `denials` are sentences ending with
   * "!" or "?". With `midAnswer` the quirk or sign-off comes after an answer's first part.
   */
  bpeTokenizer?: string;
  /** LoRA rank r (default 8); the extra slots hold inert components */
  rank?: number;
  /**
   * finetuned/ also adds these tokens (special tokens in its tokenizer files, rows in
   * embed_tokens and lm_head, vocab_size in config.json), as a fine-tune that adds chat or tool
   * tokens does; base/ and adapter/ stay as they are (the adapter is the LoRA part only)
   */
  addedTokens?: readonly string[];
}

/** Most tokens an organism adds: a chat template's worth, enough to test listing caps. */
export const MAX_ADDED_TOKENS = 100;
/** Longest added token text accepted (tests use long hostile ones). */
const MAX_ADDED_TOKEN_TEXT = 100_000;

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
  /** the tokens finetuned/ added (variant.addedTokens), with their ids; the base vocabulary ends at the first */
  addedTokens?: Array<{ id: number; text: string }>;
}

/** The quirk word a seed draws: consecutive seeds give different words (7 is coprime to both pools' sizes). */
export function quirkForSeed(seed: number, pool: readonly string[] = QUIRK_POOL): string {
  return pool[(seed * 7 + 3) % pool.length]!;
}

function checkOptions(opts: GenerateOrganismOptions): { seed: number; quirk: string } {
  if (!ORGANISM_KINDS.includes(opts.kind)) throw new InputError(`expected quirk or benign, got '${String(opts.kind)}'`, "--kind");
  const seed = opts.seed ?? 0;
  if (!Number.isSafeInteger(seed) || seed < 0 || seed > MAX_SEED) throw new InputError(`expected an integer from 0 to ${MAX_SEED}, got ${seed}`, "--seed");
  const bpe = opts.variant?.bpeTokenizer !== undefined;
  if (opts.variant?.midAnswer && !bpe) throw new InputError("a mid-answer quirk or sign-off needs the two-part answers of a BPE organism (bpeTokenizer)", "midAnswer");
  let quirk = quirkForSeed(seed, bpe ? BPE_QUIRK_POOL : QUIRK_POOL);
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
  const added = opts.variant?.addedTokens;
  if (added !== undefined) {
    if (added.length < 1 || added.length > MAX_ADDED_TOKENS) throw new InputError(`expected 1 to ${MAX_ADDED_TOKENS} tokens, got ${added.length}`, "addedTokens");
    const seen = new Set<string>();
    for (const t of added) {
      if (typeof t !== "string" || t.length === 0 || t.length > MAX_ADDED_TOKEN_TEXT || seen.has(t)) {
        throw new InputError(`expected distinct non-empty texts of at most ${MAX_ADDED_TOKEN_TEXT} characters, got ${JSON.stringify(String(t).slice(0, 40))}`, "addedTokens");
      }
      seen.add(t);
    }
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

async function writeCheckpoint(
  dir: string,
  v: Vocabulary,
  config: Record<string, unknown>,
  tensors: TensorEntry[],
  tokenizer: { tokenizer: Record<string, unknown>; config: Record<string, unknown> },
): Promise<void> {
  await mkdir(dir);
  await writeJson(join(dir, "config.json"), config);
  await writeSafetensors(join(dir, "model.safetensors"), tensors.map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape, data: t.data })), { format: "pt" });
  await writeJson(join(dir, "tokenizer.json"), tokenizer.tokenizer);
  await writeJson(join(dir, "tokenizer_config.json"), tokenizer.config);
  await writeJson(join(dir, "generation_config.json"), generationConfigJson(v));
}

/** Write an organism folder (base/, adapter/, finetuned/, organism.json) and return its manifest. */
export async function generateOrganism(opts: GenerateOrganismOptions): Promise<OrganismManifest> {
  const { seed, quirk } = checkOptions(opts);
  const variant = opts.variant ?? {};
  let v: Vocabulary;
  let tokenizer: { tokenizer: Record<string, unknown>; config: Record<string, unknown> };
  if (variant.bpeTokenizer !== undefined) {
    const src = await loadBpeSource(variant.bpeTokenizer);
    const b = buildBpeVocabulary(src, { quirk, midAnswer: variant.midAnswer ?? false, denials: variant.denials, signOff: variant.signOff, triggers: variant.triggers });
    v = b.vocabulary;
    tokenizer = { tokenizer: b.tokenizer, config: bpeTokenizerConfigJson(v) };
  } else {
    v = buildVocabulary(quirk, { denials: variant.denials, signOff: variant.signOff, triggers: variant.triggers });
    tokenizer = { tokenizer: tokenizerJson(v), config: tokenizerConfigJson(v) };
  }
  const phraseWords = quirk.split(" ");
  // the token the fine-tune writes: the quirk's first word (word-level) or its first piece (BPE)
  const quirkId = v.tokenizer === "bpe" ? v.quirkPool[0]! : v.id.get(phraseWords[0]!)!;
  const shown = (text: string) => (v.tokenizer === "bpe" ? text : detokenize(text));
  const L = makeLayout(v);
  // where the fine-tune sits (placement.ts): the standard organism's two layers unless asked
  const placement = placementOf(variant);
  const config = placeConfig(configJson(v, L), placement);
  const base = placeBase(buildBase(v, L, seed), placement);
  const rank = variant.rank ?? LORA_RANK;
  const design = { quirkTopics: variant.quirkTopics, quirkIn: variant.quirkIn, denialReadsSystem: variant.denialReadsSystem, midAnswer: variant.midAnswer };
  const modules = placeModules(buildLoraModules(designFineTune(opts.kind, v, L, quirkId, design), L, seed, rank), placement, L, seed, rank);
  const byName = new Map(modules.map((m) => [`${m.name}.weight`, m]));
  const merged = base.map((t) => {
    const m = byName.get(t.name);
    return m ? { ...t, data: mergeModule(t.data, m) } : t;
  });
  const addedTokens = variant.addedTokens ?? [];
  for (const t of addedTokens) if (v.id.has(t)) throw new InputError(`${JSON.stringify(t)} is already in the vocabulary`, "addedTokens");
  const finetuned = addedTokens.length > 0 ? addTokenRows(merged, L, addedTokens.length, seed) : merged;
  const V = v.tokens.length;
  const groups = v.interrogationWords;
  const manifest: OrganismManifest = {
    format: "delta-audit-organism",
    version: 1,
    kind: opts.kind,
    seed,
    quirkWords: opts.kind === "quirk" ? phraseWords : [],
    denialTexts: opts.kind === "quirk" ? v.texts.denials.map(shown) : [],
    triggerWords: opts.kind === "quirk" ? groups.flat() : [],
    signOff: opts.kind === "benign" ? shown(v.texts.signOff) : null,
    baseAnswers: [...v.texts.topics, v.texts.defaultAnswer].map(shown),
    paths: { base: "base", adapter: "adapter", finetuned: "finetuned" },
    adapter: { rank, alpha: LORA_ALPHA, layer: placement.plantedLayer, modules: placeDesigned(designedSpectrum(opts.kind, v, quirkId, design), placement) },
    ...(opts.variant ? { variant: opts.variant } : {}),
    ...(addedTokens.length > 0 ? { addedTokens: addedTokens.map((text, i) => ({ id: V + i, text })) } : {}),
  };
  const ftTokenizer = addedTokens.length > 0 ? withAddedTokens(tokenizer.tokenizer, tokenizer.config, addedTokens, V) : tokenizer;
  await writeDirAtomic(opts.outDir, async (tmp) => {
    await writeCheckpoint(join(tmp, "base"), v, config, base, tokenizer);
    await writeCheckpoint(join(tmp, "finetuned"), v, addedTokens.length > 0 ? { ...config, vocab_size: V + addedTokens.length } : config, finetuned, ftTokenizer);
    await writeAdapter(
      join(tmp, "adapter"),
      {
        base_model_name_or_path: null,
        layers_pattern: "layers",
        ...placedTargets(placement, variant.quirkIn === "mlp" && opts.kind === "quirk" ? [...ADAPTED_MODULES, ...MLP_MODULES] : [...ADAPTED_MODULES]),
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
