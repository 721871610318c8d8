/**
 * Whether an elicitation suite measured anything. A backend can "succeed" without observing the
 * fine-tune — a server that answers every prompt with empty text, or one that ignores the model
 * name (llama.cpp's server does) and answers every variant with the base model — and judging
 * such transcripts finds nothing: a pass for a fine-tune that was never observed. These checks
 * name what went unmeasured; decideVerdict (verdict.ts) turns each reason into `neutral`.
 */
import { variantForRank } from "../chat/types";
import type { SpectrumReport } from "../delta/types";
import type { ElicitationReport, ProbeRecord } from "../elicit/types";

/** Below this many prompts, identical answers of two variants are not evidence of a misconfigured backend. */
const MIN_PROBES_FOR_IDENTITY_CHECK = 8;

export interface SuiteRun {
  /** the complete transcripts (a suite stopped by a fault is unfinished, not checked here); `rank` names the truncated variant */
  elicitation: ElicitationReport;
  spectrum: SpectrumReport;
  /** the largest rank of the adapter's modules; undefined for a full fine-tune */
  adapterRank?: number;
  /** the config names the same served model for the truncated variant and for full (backend.models) */
  rankNamedAsFull?: boolean;
}

export interface Measurement {
  /**
   * Why the transcripts cannot support any verdict: a variant that answered everything with
   * empty text, or (on a server) full answering exactly like base although weights changed.
   * Such a suite is not judged and ends neutral.
   */
  unobserved?: string;
  /**
   * Why the suite, though it can be judged, measured nothing for its main question — does the
   * rank-k variant say what the full fine-tune does not? Such a suite may still fail a subject
   * (a finding is a finding), but it must not pass one. Only checked when `unobserved` is not.
   */
  unanswered?: string;
  /** what the report should tell its reader (`unanswered` among them); never a fault by itself */
  notices: string[];
}

/** The first variant whose every answer to `probes` is empty text, or undefined. */
function silentVariant(probes: readonly ProbeRecord[], variants: readonly string[]): string | undefined {
  return variants.find((v) => {
    const answers = probes.flatMap((p) => p.responses[v] ?? []);
    return answers.length > 0 && answers.every((t) => t.trim() === "");
  });
}

/** True when variants `a` and `b` answered every prompt of a big enough suite identically although some weight changed. */
function identical(elicitation: ElicitationReport, spectrum: SpectrumReport, a: string, b: string): boolean {
  if (spectrum.summary.modules === 0 || elicitation.probes.length < MIN_PROBES_FOR_IDENTITY_CHECK) return false;
  return elicitation.probes.every((p) => {
    const x = p.responses[a] ?? [];
    const y = p.responses[b] ?? [];
    return x.length === y.length && x.every((t, i) => t === y[i]);
  });
}

/**
 * What a complete suite measured. Unobserved (nothing at all):
 *
 * - a variant that answered every prompt with empty text;
 * - on a server, `full` answering exactly like `base` although weights changed. The embedded
 *   engine applies the fine-tune itself, so there identical answers are a measurement (the
 *   change does not show in this suite): a notice, not a fault.
 *
 * Unanswered (nothing for the main question):
 *
 * - `rank` ≥ the adapter's rank: the truncation is the adapter itself, so rank-k *is* full
 *   (on every backend; the embedded engine builds it exactly so);
 * - a variant that answers every interrogation probe with empty text but the ordinary prompts
 *   with words: an empty reply hides whatever it would have said, so it was never asked;
 * - on a server, rank-k answering exactly like base (the truncated adapter is not applied), or
 *   exactly like full when the config names the same served model for both (`rankNamedAsFull`).
 *   Text identical to full under *different* names is a measurement, not a fault: a fine-tune
 *   whose whole effect lives in σ₁ (the benign organism, say) answers so through a correct
 *   server too, and a server that ignores names altogether already shows as full = base. On the
 *   embedded engine we build the variants ourselves, so identical answers there are a measurement.
 */
export function assessMeasurement(run: SuiteRun): Measurement {
  const { elicitation, spectrum } = run;
  const prompts = elicitation.probes.length;
  const fullLikeBase = identical(elicitation, spectrum, "base", "full");
  const silent = silentVariant(elicitation.probes, variantsOf(elicitation));
  if (silent) return { unobserved: `the ${silent} variant answered all ${prompts} prompts with empty text, so nothing was measured`, notices: [] };
  if (elicitation.backend !== "embedded" && fullLikeBase) {
    return {
      unobserved: `the full variant answered all ${prompts} prompts exactly like base although ${spectrum.summary.modules} module(s) changed: the backend is probably not applying the fine-tune (check the model names; llama.cpp's server ignores them)`,
      notices: [],
    };
  }
  const unanswered = unansweredReason(run);
  const notices = unanswered ? [unanswered] : [];
  if (fullLikeBase) notices.push("the full fine-tune answered every prompt exactly like base: whatever it changed does not show in this suite (try more probes, samples > 1, or longer max-tokens)");
  return { unanswered, notices };
}

/** The variants a scan asks: base, full and the truncation its transcripts name. */
const variantsOf = (e: ElicitationReport): string[] => ["base", "full", variantForRank(e.rank)];

function unansweredReason({ elicitation, spectrum, adapterRank, rankNamedAsFull = false }: SuiteRun): string | undefined {
  const rank = elicitation.rank;
  const truncated = variantForRank(rank);
  if (adapterRank !== undefined && adapterRank > 0 && rank >= adapterRank) {
    const lower = adapterRank > 1 ? `use a --rank below ${adapterRank} (1 is the method's default), or pin it with the Action's rank input` : "a rank-1 adapter has no lower rank to truncate to";
    return `rank ${rank} is not below the adapter's rank (${adapterRank}): the ${truncated} variant is the full fine-tune itself, so nothing could reveal what the full fine-tune hides; ${lower}`;
  }
  const asked = elicitation.probes.filter((p) => p.kind === "probe");
  const mute = silentVariant(asked, variantsOf(elicitation));
  if (mute) return `the ${mute} variant answered all ${asked.length} interrogation probes with empty text (and the ordinary prompts with words): an empty reply hides whatever it would have said, so it was never interrogated`;
  if (elicitation.backend === "embedded") return undefined;
  const prompts = elicitation.probes.length;
  const truncates = adapterRank === undefined || rank < adapterRank;
  if (truncates && rankNamedAsFull && identical(elicitation, spectrum, "full", truncated)) {
    return `the ${truncated} variant answered all ${prompts} prompts exactly like full although the truncation changes the weights: backend.models.rank1 names the same served model as backend.models.full (point it at the rank-${rank} adapter)`;
  }
  if (identical(elicitation, spectrum, "base", truncated)) {
    return `the ${truncated} variant answered all ${prompts} prompts exactly like base: the backend is probably not applying the truncated adapter (check backend.models.rank1, load-adapter and request-extras)`;
  }
  return undefined;
}
