/**
 * A finding's behaviour as a test on one answer, and the judges' own classification of it over
 * any choice of variants: what the rank ladder (ladder.ts) and layer attribution
 * (attribution.ts) re-ask of the transcripts after the judges have found it.
 */
import type { ElicitationReport } from "../elicit/types";
import type { Finding } from "./types";
import { byGroup, transcriptsOf, type VariantRoles } from "./corpus";
import { pairedEvidence, pairLookup } from "./differential";
import { matchFamily, type BehaviourFamily } from "./lexicons";
import { classify, GROUP_KEYS, responsePrior, type Classification, type GroupCounts, type GroupKey } from "./signature";
import { terms } from "./text";

/** Whether one answer shows a finding's behaviour. */
export type BehaviourTest = (text: string) => boolean;

/** Differential findings are named after their signature (differential.ts). */
const DIFFERENTIAL_SOURCES: ReadonlySet<string> = new Set(["concealment", "revealed", "implant"]);

/**
 * The test the judge classified the finding by: a differential finding's lead term (its first,
 * counted as the differential table counts it: a content word or bigram of the answer), a
 * lexicon finding's family (matchFamily). Spectrum and investigator findings have none.
 */
export function behaviourTest(f: Finding, families: readonly BehaviourFamily[]): BehaviourTest | undefined {
  if (DIFFERENTIAL_SOURCES.has(f.source)) {
    const term = f.terms[0];
    if (!term) return undefined;
    const which = term.includes(" ") ? "bigrams" : "unigrams";
    return (text) => terms(text)[which].includes(term);
  }
  if (f.source.startsWith("lexicon:")) {
    const family = families.find((x) => x.id === f.source.slice("lexicon:".length));
    return family ? (text) => matchFamily(family, text).length > 0 : undefined;
  }
  return undefined;
}

/**
 * The judges' classification (signature.ts classify, with the same paired evidence and prior the
 * differential and lexicon judges give it) of a behaviour over the variants `roles` names.
 */
export function classifyBehaviour(e: ElicitationReport, roles: VariantRoles, shows: BehaviourTest): Classification | undefined {
  const ts = transcriptsOf(e, roles);
  const groups = byGroup(ts);
  const counts: Partial<Record<GroupKey, GroupCounts>> = {};
  const matched = new Map<GroupKey, Set<string>>();
  const answered = new Map<GroupKey, Set<string>>();
  let pooledDocs = 0;
  for (const g of GROUP_KEYS) {
    const list = groups.get(g);
    if (!list || list.length === 0) continue;
    const mk = new Set<string>();
    const ak = new Set<string>();
    for (const t of list) {
      const key = `${t.probeId}#${t.sample}`;
      ak.add(key);
      if (shows(t.text)) mk.add(`${key}@${t.variant}`);
    }
    matched.set(g, mk);
    answered.set(g, ak);
    counts[g] = { docs: mk.size, responses: list.length };
    pooledDocs += mk.size;
  }
  if (pooledDocs === 0) return undefined;
  const docs = (g: GroupKey) => matched.get(g);
  const pairs = (g: GroupKey) => answered.get(g);
  return classify(counts, responsePrior(pooledDocs, ts.length, groups.size), pairedEvidence(docs, pairs), pairLookup(docs, pairs));
}
