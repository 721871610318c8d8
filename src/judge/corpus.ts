/**
 * Transcripts of one elicitation, indexed by group (variant × prompt kind) for the judges.
 */
import { variantForRank } from "../chat/types";
import type { ElicitationReport } from "../elicit/types";
import type { GroupKey } from "./signature";

export interface Transcript {
  probeId: string;
  kind: "probe" | "ordinary";
  variant: string;
  sample: number;
  text: string;
  group: GroupKey;
}

/** Which variant plays which role; `truncated` is variantForRank(k). */
export interface VariantRoles {
  base: string;
  full: string;
  truncated: string;
  contrast?: string;
}

export function rolesFor(rank: number): VariantRoles {
  return { base: "base", full: "full", truncated: variantForRank(rank), contrast: "contrast" };
}

export function groupOf(roles: VariantRoles, variant: string, kind: "probe" | "ordinary"): GroupKey | undefined {
  const o = kind === "ordinary";
  if (variant === roles.truncated) return o ? "RO" : "R";
  if (variant === roles.full) return o ? "FO" : "F";
  if (variant === roles.base) return o ? "BO" : "B";
  if (roles.contrast && variant === roles.contrast) return o ? "CO" : "C";
  return undefined;
}

/**
 * Every answer the judges may weigh, grouped by role. A variant elicit/ marked unreliable (its
 * text may not be what the model said: ElicitationReport.unreliable) is left out.
 */
export function transcriptsOf(e: ElicitationReport, roles: VariantRoles): Transcript[] {
  const out: Transcript[] = [];
  const unreliable = e.unreliable ?? {};
  for (const p of e.probes) {
    for (const [variant, texts] of Object.entries(p.responses)) {
      if (Object.hasOwn(unreliable, variant)) continue;
      const group = groupOf(roles, variant, p.kind);
      if (!group || !Array.isArray(texts)) continue;
      texts.forEach((text, sample) => {
        if (typeof text === "string") out.push({ probeId: p.id, kind: p.kind, variant, sample, text, group });
      });
    }
  }
  return out;
}

export function byGroup(ts: readonly Transcript[]): Map<GroupKey, Transcript[]> {
  const m = new Map<GroupKey, Transcript[]>();
  for (const t of ts) {
    const list = m.get(t.group);
    if (list) list.push(t);
    else m.set(t.group, [t]);
  }
  return m;
}
