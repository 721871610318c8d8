/**
 * Layer attribution: which layers' rank-k components alone still produce a finding. The probes
 * whose truncated answers showed it are re-run on the truncation cut to groups of layers —
 * halves, then quarters, bisecting while the behaviour persists — and, within the smallest group,
 * to its attention or its MLP modules. Pure logic: the variant runs come from an injected
 * function (the scan builds it with elicit/attribution.ts), as the investigator's judge model does.
 */
import { variantForRank } from "../chat/types";
import type { ElicitationReport } from "../elicit/types";
import type { AttributionStep, Finding, LayerAttribution, ModuleKind } from "./types";
import { behaviourTest, type BehaviourTest } from "./behaviour";
import type { BehaviourFamily } from "./lexicons";

/**
 * Extra variant runs per finding at most. Bisecting L layers costs at most 2 runs per halving
 * (the first half, and the second when the first lost it) plus 2 for the module kinds:
 * 2·⌈log₂ L⌉ + 2 = 16 for an 80-layer model. Each run is only the finding's probes.
 */
export const MAX_ATTRIBUTION_RUNS = 16;

/**
 * A group "still produces" the behaviour when its answers show it at least half as often as the
 * whole truncation's did on the same probes: the group carries most of it, not a trace.
 */
export const ATTRIBUTION_KEEP = 0.5;

/** One paragraph, shown by the README and next to a report's attributed findings. */
export const ATTRIBUTION_DEFINITION =
  "Layer attribution (high and medium findings, embedded engine): the interrogation probes whose answers on the rank-k truncation showed the finding are re-run " +
  "with the truncation cut to groups of layers — the first half of the adapted layers, else the second half, then quarters, bisecting while the group alone " +
  `still produces it (its answers show it at least ${ATTRIBUTION_KEEP} × as often as the whole truncation's did) — and, within the smallest such group, to its ` +
  "attention modules (q, k, v, o) or its MLP modules (gate, up, down) alone. " +
  `Each step is one extra variant run over those probes, at most ${MAX_ATTRIBUTION_RUNS} per finding; the cost is stated with the result. ` +
  "When neither half produces it alone, the behaviour needs both, and the group before the split is the answer.";

export const ATTENTION_TYPES: readonly string[] = Object.freeze(["q", "k", "v", "o"]);
export const MLP_TYPES: readonly string[] = Object.freeze(["gate", "up", "down"]);

/** What one group's run gave: each re-run probe's answers, and its cost. */
export interface GroupRunResult {
  responses: ReadonlyMap<string, readonly string[]>;
  requests: number;
  seconds: number;
}

/**
 * Run the probes `probeIds` on a variant of `from`'s modules that `keep` accepts (by layer and
 * module type, as the spectrum names them: q, k, v, o, gate, up, down).
 */
export type GroupRun = (from: string, keep: (layer: number, type: string) => boolean, probeIds: readonly string[]) => Promise<GroupRunResult>;

/** A module of the truncation, as the spectrum describes it. */
export interface AdaptedModule {
  layer: number;
  type: string;
  /** ‖ΔW‖_F: a full fine-tune's unchanged module (0) has no components to keep */
  frobenius?: number;
}

export interface AttributionRequest {
  finding: Finding;
  elicitation: ElicitationReport;
  /** the truncation's modules (spectrum.modules) */
  modules: readonly AdaptedModule[];
  shows: BehaviourTest;
  run: GroupRun;
  maxRuns?: number;
}

const kindOf = (type: string): ModuleKind | undefined => (ATTENTION_TYPES.includes(type) ? "attention" : MLP_TYPES.includes(type) ? "mlp" : undefined);

/** The attribution of one finding, or undefined when the truncation showed it on no interrogation probe. */
export async function attributeFinding(req: AttributionRequest): Promise<LayerAttribution | undefined> {
  const { elicitation: e, shows, run } = req;
  const maxRuns = req.maxRuns ?? MAX_ATTRIBUTION_RUNS;
  const variant = variantForRank(e.rank);
  const probes: string[] = [];
  let shown = 0;
  for (const p of e.probes) {
    if (p.kind !== "probe") continue;
    const k = (p.responses[variant] ?? []).filter(shows).length;
    if (k > 0) probes.push(p.id);
    shown += k;
  }
  const adapted = req.modules.filter((m) => m.layer >= 0 && kindOf(m.type) !== undefined && (m.frobenius ?? 1) > 0);
  if (probes.length === 0 || adapted.length === 0) return undefined;

  const steps: AttributionStep[] = [];
  const cost = { runs: 0, requests: 0, seconds: 0 };
  let complete = true;
  /** one run: undefined when the budget is spent */
  const test = async (layers: number[], modules: ModuleKind): Promise<boolean | undefined> => {
    if (cost.runs >= maxRuns) {
      complete = false;
      return undefined;
    }
    const inLayers = new Set(layers);
    const r = await run(variant, (layer, type) => inLayers.has(layer) && (modules === "all" || kindOf(type) === modules), probes);
    cost.runs++;
    cost.requests += r.requests;
    cost.seconds += r.seconds;
    let k = 0;
    let n = 0;
    for (const id of probes) {
      for (const text of r.responses.get(id) ?? []) {
        n++;
        if (shows(text)) k++;
      }
    }
    const persists = k > 0 && k >= ATTRIBUTION_KEEP * shown;
    steps.push({ layers, modules, k, n, persists });
    return persists;
  };

  let group = [...new Set(adapted.map((m) => m.layer))].sort((a, b) => a - b);
  bisect: while (group.length > 1) {
    const half = Math.ceil(group.length / 2);
    for (const part of [group.slice(0, half), group.slice(half)]) {
      const persists = await test(part, "all");
      if (persists === undefined) break bisect;
      if (persists) {
        group = part;
        continue bisect;
      }
    }
    break; // neither half alone: the behaviour needs both
  }

  const inGroup = new Set(group);
  const types = new Set(adapted.filter((m) => inGroup.has(m.layer)).map((m) => m.type));
  const kinds = (["attention", "mlp"] as const).filter((k) => [...types].some((t) => kindOf(t) === k));
  let modules: ModuleKind = kinds.length === 1 ? kinds[0]! : "all";
  if (kinds.length === 2) {
    for (const kind of kinds) {
      const persists = await test(group, kind);
      if (persists === undefined) break;
      if (persists) {
        modules = kind;
        break;
      }
    }
  }
  const order = [...ATTENTION_TYPES, ...MLP_TYPES];
  const moduleTypes = order.filter((t) => types.has(t) && (modules === "all" || kindOf(t) === modules));
  cost.seconds = Math.round(cost.seconds * 100) / 100;
  return { variant, probes, shown, layers: group, modules, moduleTypes, steps, cost, complete };
}

/** Severities attribution runs for: a low or info finding is not worth the extra runs. */
const ATTRIBUTED: ReadonlySet<string> = new Set(["high", "medium"]);

/**
 * Attribute every high and medium finding the judges can re-test (differential terms, lexicon
 * families), in order, each within its own MAX_ATTRIBUTION_RUNS.
 */
export async function attributeFindings(
  findings: Finding[],
  e: ElicitationReport,
  modules: readonly AdaptedModule[],
  families: readonly BehaviourFamily[],
  run: GroupRun,
): Promise<void> {
  for (const f of findings) {
    if (!ATTRIBUTED.has(f.severity)) continue;
    const shows = behaviourTest(f, families);
    if (!shows) continue;
    const a = await attributeFinding({ finding: f, elicitation: e, modules, shows, run });
    if (a) f.attribution = a;
  }
}
