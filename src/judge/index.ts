/**
 * Judging: transcripts (+ spectrum) → findings. Pure logic: the optional investigator asks
 * its judge model through a completion function the caller builds (backends/chat-completion.ts).
 */
import type { ElicitationReport } from "../elicit/types";
import { bySeverity, type Finding } from "./types";
import type { SpectrumReport } from "../delta/types";
import type { JudgeSettings } from "./settings";
import { rolesFor, transcriptsOf } from "./corpus";
import { differentialFindings } from "./differential";
import { investigate, type InvestigatorOptions } from "./investigator";
import { BEHAVIOUR_FAMILIES, customFamilies, lexiconFindings, type BehaviourFamily } from "./lexicons";
import { attachLadders } from "./ladder";
import { spectrumFindings } from "./spectrum-warnings";

export { differentialFindings } from "./differential";
export { lexiconFindings, BEHAVIOUR_FAMILIES, customFamilies, matchFamily } from "./lexicons";
export { investigate, validateHypotheses, investigatorPrompt, InvestigatorError } from "./investigator";
export { spectrumFindings } from "./spectrum-warnings";
export { transcriptsOf, rolesFor } from "./corpus";
export { attachLadders, rankLadder, LADDER_DEFINITION } from "./ladder";
export { attributeFindings, attributeFinding, ATTRIBUTION_DEFINITION, MAX_ATTRIBUTION_RUNS, type GroupRun, type GroupRunResult } from "./attribution";

/** The behaviour families the lexicon judge matches under these settings (built-in when listed, plus the config's own). */
export function judgedFamilies(settings: JudgeSettings): BehaviourFamily[] {
  return [...(settings.judges.includes("lexicon") ? BEHAVIOUR_FAMILIES : []), ...customFamilies(settings.behaviours)];
}

export interface JudgeResult {
  findings: Finding[];
  notices: string[];
}

export interface JudgeOptions {
  /** the investigator's judge model, wired at the edge; required when the config lists it */
  investigator?: InvestigatorOptions;
}

/** Worst first, then most confident; ids stay as the judges made them. */
export function sortFindings(findings: Finding[]): Finding[] {
  return findings.sort((a, b) => bySeverity(a, b) || a.id.localeCompare(b.id));
}

export async function runJudges(
  elicitation: ElicitationReport | undefined,
  spectrum: SpectrumReport,
  settings: JudgeSettings,
  opts: JudgeOptions = {},
): Promise<JudgeResult> {
  const findings: Finding[] = [...spectrumFindings(spectrum, settings.spectrum)];
  const notices: string[] = [];
  if (!elicitation) return { findings: sortFindings(findings), notices };
  const roles = rolesFor(elicitation.rank);
  const ts = transcriptsOf(elicitation, roles);
  if (settings.judges.includes("differential")) findings.push(...differentialFindings(ts, { truncatedName: roles.truncated }));
  const families = judgedFamilies(settings);
  if (families.length > 0) findings.push(...lexiconFindings(ts, families));
  // each rung of a rank ladder re-judged in the truncated role (ladder.ts)
  attachLadders(findings, elicitation, families);
  if (settings.judges.includes("investigator")) {
    if (!opts.investigator) notices.push("investigator skipped: no LLM endpoint configured");
    else {
      try {
        findings.push(...(await investigate(ts, opts.investigator)));
      } catch (e) {
        // the investigator is an optional second opinion: its failure is reported, not fatal
        notices.push(`investigator failed: ${(e as Error).message}`);
      }
    }
  }
  return { findings: sortFindings(findings), notices };
}
