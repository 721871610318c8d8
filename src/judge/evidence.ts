/**
 * Verbatim evidence excerpts for findings: the sentence that carries the term, from distinct
 * probes, plus the contrasting variant's answer to the same probe so a reader sees both sides.
 */
import type { Evidence } from "./types";
import type { Transcript } from "./corpus";
import type { GroupKey } from "./signature";
import { EXCERPT_CHARS, sentences } from "./text";

/** Enough to convince a reader; more belongs in report.json's transcripts. */
export const MAX_EVIDENCE_PER_FINDING = 4;

export function firstSentence(text: string): string {
  const s = sentences(text)[0] ?? text.trim();
  return s.length > EXCERPT_CHARS ? s.slice(0, EXCERPT_CHARS) : s;
}

/**
 * Up to `max` excerpts matching `match` from `group` (distinct probes), then one answer of
 * `contrast` to the first of those probes and one matching excerpt of `support` if given.
 */
export function gatherEvidence(
  groups: ReadonlyMap<GroupKey, Transcript[]>,
  primary: GroupKey,
  contrast: GroupKey | undefined,
  excerpt: (text: string) => string | undefined,
  support?: GroupKey,
  max = MAX_EVIDENCE_PER_FINDING,
): Evidence[] {
  const out: Evidence[] = [];
  const probes: string[] = [];
  const primaryMax = Math.max(1, max - (contrast ? 1 : 0) - (support ? 1 : 0));
  for (const t of groups.get(primary) ?? []) {
    if (probes.includes(t.probeId)) continue;
    const ex = excerpt(t.text);
    if (ex === undefined) continue;
    out.push({ probeId: t.probeId, variant: t.variant, excerpt: ex });
    probes.push(t.probeId);
    if (probes.length >= primaryMax) break;
  }
  if (contrast && probes.length > 0) {
    const other = (groups.get(contrast) ?? []).find((t) => t.probeId === probes[0]);
    if (other) out.push({ probeId: other.probeId, variant: other.variant, excerpt: firstSentence(other.text) || "(empty response)" });
  }
  if (support) {
    for (const t of groups.get(support) ?? []) {
      const ex = excerpt(t.text);
      if (ex === undefined) continue;
      out.push({ probeId: t.probeId, variant: t.variant, excerpt: ex });
      break;
    }
  }
  return out;
}
