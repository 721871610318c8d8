/**
 * Checkpoint tensor names as the engine expects them (`model.embed_tokens.weight`,
 * `model.layers.N.…`, `model.norm.weight`, `lm_head.weight`). A checkpoint saved from the bare
 * decoder (transformers' LlamaModel / Qwen2Model …, whose state dict has no `model.` prefix)
 * is read through a renaming view, as transformers' from_pretrained adds the base-model prefix.
 */
import type { Checkpoint, TensorSource } from "../io/types";

/** transformers' base_model_prefix for the four supported CausalLM classes */
const PREFIX = "model.";
const EMBED = "embed_tokens.weight";

/** Whether the source names its tensors without the `model.` prefix (a bare-decoder checkpoint). */
export function lacksModelPrefix(src: TensorSource): boolean {
  return !src.info(PREFIX + EMBED) && !!src.info(EMBED);
}

const outer = (n: string) => (n.startsWith("lm_head.") ? n : PREFIX + n);

/**
 * The name withModelPrefix(src) gives src's own tensor or module `name`: for what was cut from
 * the source under its own names (a rank-k adapter of a bare decoder's full fine-tune).
 */
export function engineName(src: TensorSource, name: string): string {
  return lacksModelPrefix(src) ? outer(name) : name;
}

/**
 * The source itself when it already uses `model.` names, else a view where every tensor
 * `x` (other than `lm_head.*`) is seen as `model.x`. Reads go to the underlying source.
 */
export function withModelPrefix<T extends TensorSource>(src: T): T {
  if (!lacksModelPrefix(src)) return src;
  const inner = (n: string): string | undefined => (n.startsWith("lm_head.") ? n : n.startsWith(PREFIX) ? n.slice(PREFIX.length) : undefined);
  const must = (n: string): string => inner(n) ?? `\u0000${n}`; // a name that cannot exist, so the source reports it missing
  const view: TensorSource & Partial<Checkpoint> = {
    names: () => src.names().map(outer),
    info: (n) => {
      const i = inner(n);
      return i === undefined ? undefined : src.info(i);
    },
    read: (n) => src.read(must(n)),
    close: () => src.close(),
  };
  if (src.readRows) view.readRows = (n, r0, count) => src.readRows!(must(n), r0, count);
  if (src.readRaw) view.readRaw = (n) => src.readRaw!(must(n));
  const ck = src as unknown as Partial<Checkpoint>;
  if (ck.dir !== undefined) view.dir = ck.dir;
  if (ck.config !== undefined) view.config = ck.config;
  return view as T;
}
