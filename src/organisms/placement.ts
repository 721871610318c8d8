/**
 * Where an organism's fine-tune sits: how many decoder layers the model has, which one holds the
 * planted behaviour, and whether the adapter also covers every other linear module with inert
 * pieces only. Layer attribution (judge/attribution.ts) is checked against organisms placed so:
 * it must find the planted layer among several, and the planted module kind (attention or MLP)
 * among adapted modules of both kinds.
 *
 * The standard organism has two layers (roles in layer 0; the topic head and every fine-tune
 * piece in layer 1). Placed, layer 0 stays, the planted layer is the old layer 1 under its new
 * index, and every other layer passes the residual stream through: zero attention weights (a
 * zero value writes nothing) and layer 0's MLP, which writes only inert dims.
 */
import { InputError } from "../errors";
import type { LoraModule } from "../io/types";
import { seededRng } from "./random";
import {
  ADAPTED_LAYER,
  ADAPTED_MODULES,
  ARCH,
  buildLoraModules,
  inertOutputs,
  MLP_MODULES,
  type AdaptedModule,
  type Layout,
  type ModuleDesign,
  type TensorEntry,
} from "./build";

/** The placement options of an organism variant; every field optional (the standard organism: 2 layers, planted in 1, adapter on the planted modules only). */
export interface PlacementVariant {
  /** decoder layers, 2 to MAX_ORGANISM_LAYERS (default 2) */
  layers?: number;
  /** the layer holding the topic head and every planted piece, 1 to layers − 1 (default 1) */
  plantedLayer?: number;
  /**
   * the adapter covers all seven linear modules (q, k, v, o, gate, up, down) of every layer;
   * those without a planted piece hold inert pieces only (outputs nothing reads), so the planted
   * layer and module kind are a few of many adapted modules
   */
  adaptAll?: boolean;
}

/** A resolved placement. */
export interface Placement {
  layers: number;
  plantedLayer: number;
  adaptAll: boolean;
}

/** Enough layers for a bisection to take several steps; the organism stays a few MB. */
export const MAX_ORGANISM_LAYERS = 8;

/**
 * σ of the one larger inert piece of a module that holds only inert pieces (the others are
 * NOISE_FRACTION of it, as in planted modules): small against every planted σ (the smallest,
 * o_proj's sign-off, is 0.625), so these modules change no answer at any rank.
 */
export const INERT_MODULE_SIGMA = 0.05;

export const ALL_MODULES: readonly AdaptedModule[] = Object.freeze([...ADAPTED_MODULES, ...MLP_MODULES]);

/** Check and resolve a variant's placement (InputError naming the option). */
export function placementOf(v: PlacementVariant): Placement {
  const layers = v.layers ?? 2;
  if (!Number.isInteger(layers) || layers < 2 || layers > MAX_ORGANISM_LAYERS) throw new InputError(`expected an integer from 2 to ${MAX_ORGANISM_LAYERS}, got ${layers}`, "layers");
  const plantedLayer = v.plantedLayer ?? ADAPTED_LAYER;
  if (!Number.isInteger(plantedLayer) || plantedLayer < 1 || plantedLayer > layers - 1) {
    throw new InputError(`expected an integer from 1 to ${layers - 1} (layer 0 tracks roles), got ${plantedLayer}`, "plantedLayer");
  }
  return { layers, plantedLayer, adaptAll: v.adaptAll ?? false };
}

const LAYER_RE = /^model\.layers\.(\d+)\./;

/** A module or tensor name moved from the standard planted layer to `layer`. */
export function atLayer(name: string, layer: number): string {
  return name.replace(`model.layers.${ADAPTED_LAYER}.`, `model.layers.${layer}.`);
}

/** The base checkpoint's tensors with the placement's layers (the standard two unchanged). */
export function placeBase(tensors: readonly TensorEntry[], p: Placement): TensorEntry[] {
  if (p.layers === 2 && p.plantedLayer === ADAPTED_LAYER) return [...tensors];
  const layer0 = tensors.filter((t) => LAYER_RE.exec(t.name)?.[1] === "0");
  const planted = tensors.filter((t) => LAYER_RE.exec(t.name)?.[1] === String(ADAPTED_LAYER));
  const passThrough = (layer: number): TensorEntry[] =>
    layer0.map((t) => {
      const name = t.name.replace("model.layers.0.", `model.layers.${layer}.`);
      // attention weights zero: every value is zero, so the block adds nothing; the norms and the inert MLP stay
      const data = t.name.includes(".self_attn.") ? new Float32Array(t.data.length) : t.data;
      return { name, shape: [...t.shape], data };
    });
  const layers: TensorEntry[] = [];
  for (let l = 0; l < p.layers; l++) {
    if (l === 0) layers.push(...layer0);
    else if (l === p.plantedLayer) layers.push(...planted.map((t) => ({ ...t, name: atLayer(t.name, l) })));
    else layers.push(...passThrough(l));
  }
  const rest = tensors.filter((t) => !LAYER_RE.test(t.name));
  const embed = rest.filter((t) => t.name === "model.embed_tokens.weight");
  return [...embed, ...layers, ...rest.filter((t) => t.name !== "model.embed_tokens.weight")];
}

/** config.json with the placement's layer count. */
export function placeConfig(config: Record<string, unknown>, p: Placement): Record<string, unknown> {
  return p.layers === 2 ? config : { ...config, num_hidden_layers: p.layers };
}

const typeOf = (name: string): AdaptedModule => name.slice(name.lastIndexOf(".") + 1) as AdaptedModule;
const layerOf = (name: string): number => Number(LAYER_RE.exec(name)?.[1] ?? -1);
const moduleNameAt = (m: AdaptedModule, layer: number) => `model.layers.${layer}.${(MLP_MODULES as readonly string[]).includes(m) ? "mlp" : "self_attn"}.${m}`;

/** A unit vector on `support` (all `n` entries when null), as sparse pairs. */
function unitOn(n: number, support: number[] | null, rng: { normal(): number }): Array<[number, number]> {
  const idx = support ?? Array.from({ length: n }, (_, i) => i);
  const vals = idx.map(() => rng.normal());
  const s = Math.sqrt(vals.reduce((a, x) => a + x * x, 0));
  return idx.map((i, k) => [i, vals[k]! / s] as [number, number]);
}

/** Shapes of the seven linear modules (out, in). */
function shapeOf(m: AdaptedModule, L: Layout): [number, number] {
  const qkRows = ARCH.heads * ARCH.headDim;
  const intermediate = ARCH.intermediate;
  switch (m) {
    case "o_proj":
      return [L.d, qkRows];
    case "gate_proj":
    case "up_proj":
      return [intermediate, L.d];
    case "down_proj":
      return [L.d, intermediate];
    default:
      return [qkRows, L.d];
  }
}

/**
 * The adapter's modules placed: the planted ones moved to the planted layer, and with adaptAll,
 * an inert-only module for every other linear module of every layer; in layer order, then q, k,
 * v, o, gate, up, down.
 */
export function placeModules(
  planted: readonly LoraModule[],
  p: Placement,
  L: Layout,
  seed: number,
  rank: number,
): LoraModule[] {
  const moved = planted.map((m) => ({ ...m, name: atLayer(m.name, p.plantedLayer) }));
  if (!p.adaptAll) return moved;
  const have = new Set(moved.map((m) => m.name));
  const out: LoraModule[] = [...moved];
  for (let layer = 0; layer < p.layers; layer++) {
    const designs: ModuleDesign[] = [];
    const rng = seededRng(seed * 7919 + 101 * layer + 17);
    for (const m of ALL_MODULES) {
      if (have.has(moduleNameAt(m, layer))) continue;
      const [outFeatures, inFeatures] = shapeOf(m, L);
      const u = unitOn(outFeatures, inertOutputs(m, L, rank), rng);
      const w = unitOn(inFeatures, null, rng);
      designs.push({ module: m, outFeatures, inFeatures, pieces: [{ role: "inert", out: u.map(([i, x]) => [i, x * INERT_MODULE_SIGMA] as [number, number]), in: w }] });
    }
    if (designs.length === 0) continue;
    // built as standard planted-layer modules (buildLoraModules names them so), then moved
    for (const m of buildLoraModules(designs, L, seed * 31 + layer + 1, rank)) out.push({ ...m, name: atLayer(m.name, layer) });
  }
  const order = (name: string) => layerOf(name) * ALL_MODULES.length + ALL_MODULES.indexOf(typeOf(name));
  return out.sort((a, b) => order(a.name) - order(b.name));
}

/** The adapter config's layers_to_transform and target_modules for a placement. */
export function placedTargets(p: Placement, planted: readonly string[]): { layers_to_transform: number[]; target_modules: string[] } {
  if (!p.adaptAll) return { layers_to_transform: [p.plantedLayer], target_modules: [...planted] };
  return { layers_to_transform: Array.from({ length: p.layers }, (_, l) => l), target_modules: [...ALL_MODULES] };
}

/** organism.json's designed spectra under their placed module names. */
export function placeDesigned<T extends { module: string }>(designed: readonly T[], p: Placement): T[] {
  return designed.map((d) => ({ ...d, module: atLayer(d.module, p.plantedLayer) }));
}
