/**
 * What a scan's settings say about judging: which judges run, the user's own behaviours, the
 * spectrum warnings and the investigator's LLM. src/config.ts reads them from delta-audit.yml;
 * runJudges gets them from the scan.
 */
import type { Severity } from "./types";
import type { Bounds } from "../validate";

export type JudgeName = "differential" | "lexicon" | "investigator";

/** Every judge, in the order help texts list them. */
export const JUDGES: readonly JudgeName[] = Object.freeze(["differential", "lexicon", "investigator"]);

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

export interface JudgeSettings {
  judges: JudgeName[];
  /** the investigator's endpoint; required when judges lists investigator */
  llm?: LlmSettings;
  behaviours: CustomBehaviour[];
  spectrum: SpectrumWarnings;
}

/** Regular expressions from the config run over every response: keep them short. */
export const MAX_PATTERN_CHARS = 300;
/** A local model answering one investigator prompt; a slow CPU server needs the minutes. */
export const DEFAULT_LLM_TIMEOUT_SECONDS = 120;
/** One investigator prompt may take an hour at most: longer is a hung server, not a slow one. */
export const LLM_TIMEOUT_SECONDS_BOUNDS: Readonly<Bounds> = Object.freeze({ min: 1, max: 3600 });
export const DEFAULT_MAX_HYPOTHESES = 5;
/** Each hypothesis becomes a finding to read: more than this is a list, not a second opinion. */
export const MAX_HYPOTHESES = 20;

/**
 * `spectrum.warn-stable-rank-below`: a stable rank is at most a module's smaller dimension, and
 * no model has one near a million, so a larger threshold (it would warn on everything) is a typo.
 */
export const STABLE_RANK_WARNING_BOUNDS: Readonly<Bounds> = Object.freeze({ min: 0, max: 1e6 });

/** Every judging default: the two judges that need no LLM, the built-in behaviours only. */
export function defaultJudgeSettings(): JudgeSettings {
  return {
    judges: ["differential", "lexicon"],
    behaviours: [],
    spectrum: { stableRankBelow: 1.5, energyTop1Above: 0.9, severity: "info" },
  };
}
