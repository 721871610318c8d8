/**
 * What a scan's settings say about elicitation: the prompts, how each is sampled, and the
 * contrastive variant. src/config.ts reads them from delta-audit.yml; runElicitation gets them
 * from the scan. Defaults and limits live here, next to the stage they shape.
 */
import type { ContrastOptions } from "../chat/types";
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
}

/** Greedy decoding is the default for one sample; several samples need a temperature to differ. */
export const DEFAULT_SAMPLED_TEMPERATURE = 0.8;
/** Long enough for a paragraph of confession; short enough for CPU runners. */
export const DEFAULT_MAX_TOKENS = 64;
/** The probes are single questions; more than this is almost surely a mistake (or an attack on CI time). */
export const MAX_PROBES = 500;
export const MAX_SAMPLES = 64;
export const MAX_NEW_TOKENS_LIMIT = 8192;
/** Prompts and system prompts are a few sentences; a longer one is a pasted file. */
export const MAX_PROMPT_CHARS = 20_000;
/** Seeds are 31-bit, like the request seeds plan.ts derives from them. */
export const MAX_SEED = 2 ** 31 - 1;

export const DEFAULT_CONTRAST: Readonly<ContrastSettings> = Object.freeze({ enabled: true, alpha: 1.0, topK: 10 });

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
  };
}
