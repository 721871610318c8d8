/**
 * What a scan's settings say about the embedded engine (`engine:` in delta-audit.yml, read by
 * src/config.ts): how the base weights are stored. Flags (`--precision`) and the Action's
 * `precision` input override it.
 */
import type { PrecisionChoice } from "./precision";

export interface EngineSettings {
  /** auto (default): the most exact precision that fits in memory (estimate.ts) */
  precision: PrecisionChoice;
}

export function defaultEngineSettings(): EngineSettings {
  return { precision: "auto" };
}
