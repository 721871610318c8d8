/**
 * The rank ladder's part of the delta pass: several truncations (rank 1, 2, 4, 8 …) from one
 * walk. The walk decomposes each ΔW once at the ladder's top rank K; its factors hold the
 * components in descending σ with √σ on each side (walk.ts rankKModule), so the best rank-k
 * approximation for every k ≤ K is the first k of them (Eckart–Young): each rung's adapter is a
 * slice of the same factors, streamed to its own folder while the walk goes (pass.ts
 * writeRankAdapters).
 */
import { InputError } from "../errors";
import type { LoraModule } from "../io/types";
import type { DeltaSubject } from "./pass";

/** One truncation the pass writes: the rank-k adapter in `dir`. */
export interface RankOutput {
  rank: number;
  dir: string;
}

/** The best rank-k approximation kept in a rank-K module of the walk (k ≤ K): its first k components. */
export function leadingComponents(m: LoraModule, k: number): LoraModule {
  if (k === m.rank) return m;
  if (!Number.isInteger(k) || k < 1 || k > m.rank) throw new Error(`internal: cannot keep ${k} of the ${m.rank} components of ${m.name}`);
  const B = new Float32Array(m.outFeatures * k);
  for (let o = 0; o < m.outFeatures; o++) for (let j = 0; j < k; j++) B[o * k + j] = m.B[o * m.rank + j]!;
  return { ...m, rank: k, A: m.A.slice(0, k * m.inFeatures), B };
}

/**
 * A rung above an adapter's rank r would be that adapter padded with zeros, which is the full
 * fine-tune again and no rung of a ladder: refused before anything is read or written. (The scan's
 * own `rank` is not refused: policy reads rank ≥ the adapter's as a neutral measurement.) A full
 * fine-tune has no such ceiling below MAX_RANK that matters for a ladder.
 */
export function checkLadderFits(subject: DeltaSubject, ranks: readonly number[], where = "ranks"): void {
  if (subject.kind !== "lora") return;
  const names = subject.adapter.moduleNames();
  if (names.length === 0) return; // the walk refuses an adapter without modules
  const r = Math.max(...names.map((n) => subject.adapter.moduleInfo(n).rank));
  const over = ranks.filter((k) => k > r);
  if (over.length > 0) {
    throw new InputError(`${over.join(", ")} ${over.length === 1 ? "is" : "are"} above the adapter's rank (${r}): a truncation to ${over.length === 1 ? "it" : "them"} is the adapter itself padded with zeros; list ranks up to ${r}`, where);
  }
}

/**
 * A stream fed by the walk: the pass pushes each module as the walk computes it, and a rung's
 * writer reads them at its own pace. A failure of the walk reaches the writer (it must not end as
 * if the walk had simply ended); a writer that stopped reading lets pushed modules go.
 */
export class ModuleFeed implements AsyncIterable<LoraModule> {
  private readonly items: LoraModule[] = [];
  private waiting?: () => void;
  private ended = false;
  private closed = false;
  private failure?: { error: unknown };

  push(m: LoraModule): void {
    if (this.closed) return;
    this.items.push(m);
    this.wake();
  }

  end(): void {
    this.ended = true;
    this.wake();
  }

  fail(error: unknown): void {
    this.failure = { error };
    this.wake();
  }

  private wake(): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<LoraModule> {
    try {
      for (;;) {
        if (this.failure) throw this.failure.error;
        const next = this.items.shift();
        if (next) yield next;
        else if (this.ended) return;
        else await new Promise<void>((ok) => (this.waiting = ok));
      }
    } finally {
      this.closed = true;
      this.items.length = 0;
    }
  }
}

/** The first k components of every module of a stream of rank-K modules. */
export async function* leading(modules: AsyncIterable<LoraModule>, k: number): AsyncGenerator<LoraModule> {
  for await (const m of modules) yield leadingComponents(m, k);
}
