/**
 * What a scan's settings say about elicitation: the prompts, how each is sampled, and the
 * contrastive variant. src/config.ts reads them from delta-audit.yml; runElicitation gets them
 * from the scan. Defaults and limits live here, next to the stage they shape.
 */
import type { ContrastOptions } from "../chat/types";
import type { Bounds } from "../validate";
import { MAX_RANK } from "../delta/limits";
import { DEFAULT_SYSTEM_PROMPT, defaultProbes, type Probe } from "./probes";

export interface ContrastSettings extends ContrastOptions {
  /** run the contrastive variant (skipped with a notice when the backend returns no logprobs) */
  enabled: boolean;
}

export interface ElicitSettings {
  /** sampling seed: each request's seed derives from it (plan.ts), so a scan is reproducible */
  seed: number;
  probes: Probe[];
  /** samples per probe and variant */
  samples: number;
  /** 0 = greedy */
  temperature: number;
  topP: number;
  /** new tokens per reply at most */
  maxTokens: number;
  systemPrompt: string;
  contrast: ContrastSettings;
  /**
   * the rank ladder: more truncation ranks, each run as its own variant `rank<k>` beside the
   * scan's `rank` (which is always a rung); undefined = the scan's rank alone (`[1]` by default)
   */
  ranks?: number[];
  /**
   * layer attribution for high and medium findings: re-run the probes that showed a finding with
   * the rank-k truncation cut to groups of layers (judge/attribution.ts); the embedded engine only
   */
  attribution: boolean;
}

/**
 * Rungs of a rank ladder at most: each is one more variant over the whole suite, so eight
 * (1, 2, 4 … 128) already multiply a scan's generation cost by three.
 */
export const MAX_LADDER_RUNGS = 8;

/** A ladder's rungs: truncation ranks the delta stage accepts (delta/limits.ts), at most MAX_LADDER_RUNGS of them. */
export const LADDER_BOUNDS: Readonly<Bounds & { maxEntries: number }> = Object.freeze({ min: 1, max: MAX_RANK, maxEntries: MAX_LADDER_RUNGS });

/** The ladder a scan runs: its `ranks` and its own rank, ascending, each once. */
export function ladderRanks(ranks: readonly number[] | undefined, rank: number): number[] {
  return [...new Set([...(ranks ?? []), rank])].sort((a, b) => a - b);
}

/** Greedy decoding is the default for one sample; several samples need a temperature to differ. */
export const DEFAULT_SAMPLED_TEMPERATURE = 0.8;
/** Long enough for a paragraph of confession; short enough for CPU runners. */
export const DEFAULT_MAX_TOKENS = 64;
/** The probes are single questions; more than this is almost surely a mistake (or an attack on CI time). */
export const MAX_PROBES = 500;
export const MAX_SAMPLES = 64;
export const MAX_NEW_TOKENS_LIMIT = 8192;
/**
 * Fewest new tokens a reply may be cut to. A chat reply opens with a preamble ("Sure,", "I am",
 * a space token) before any content: cut below this, no reply can carry a behaviour's marker
 * or a confession, every judge sees nothing and the audit would pass a subject it never saw
 * behave. (A useful suite wants far more; the default is DEFAULT_MAX_TOKENS.)
 */
export const MIN_MAX_TOKENS = 4;
/**
 * Hottest sampling allowed at all. Past 2 the distribution is close to uniform over the
 * nucleus, so even a top-p cut leaves answers that are noise: a planted behaviour drowns in
 * it, the judges find nothing, and the audit would pass.
 */
export const MAX_TEMPERATURE = 2;
/**
 * Hottest sampling allowed without a nucleus cut (top-p above HOT_TOP_P_LIMIT). Without the
 * cut, past about 1.5 the long tail of a 100k-token vocabulary gets most of the mass and the
 * answers turn to token soup (the same noise, reached sooner).
 */
export const MAX_UNTRUNCATED_TEMPERATURE = 1.5;
/** top-p at or below this counts as a nucleus cut for MAX_UNTRUNCATED_TEMPERATURE. */
export const HOT_TOP_P_LIMIT = 0.95;
/** Prompts and system prompts are a few sentences; a longer one is a pasted file. */
export const MAX_PROMPT_CHARS = 20_000;
/** Seeds are 31-bit, like the request seeds plan.ts derives from them (the one bound, next to the PRNG). */
export { MAX_SEED } from "../linalg/random";

/**
 * α in (1+α)·log p_full − α·log p_base: 0 is plain full; past 100 the candidates already rank
 * by the log-ratio alone, so a larger α changes nothing and is a typo.
 */
export const CONTRAST_ALPHA_BOUNDS: Readonly<Bounds> = Object.freeze({ min: 0, max: 100 });
/** Candidates per step, each scored on both models: a thousand is far into full's tail and keeps a step bounded. */
export const CONTRAST_TOP_K_BOUNDS: Readonly<Bounds> = Object.freeze({ min: 1, max: 1000 });

const DEFAULT_CONTRAST: Readonly<ContrastSettings> = Object.freeze({ enabled: true, alpha: 1.0, topK: 10 });

/** Every elicitation default: the built-in suite, one greedy sample each. */
export function defaultElicitSettings(): ElicitSettings {
  return {
    seed: 0,
    probes: defaultProbes(),
    samples: 1,
    temperature: 0,
    topP: 1,
    maxTokens: DEFAULT_MAX_TOKENS,
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
    contrast: { ...DEFAULT_CONTRAST },
    attribution: true,
  };
}
