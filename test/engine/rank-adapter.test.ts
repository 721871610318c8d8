/**
 * The `rank<k>` variant read from the folder the delta pass wrote (what scan ships as
 * rank1-adapter/) is the model the in-memory truncation gives: LoRA, full fine-tune, and a
 * bare decoder's full fine-tune whose tensors lack the `model.` prefix.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { loadSubject } from "../../src/engine/variants";
import { createEmbeddedBackend, type EmbeddedBackend } from "../../src/backends/embedded";
import { openAdapter, writeAdapter } from "../../src/io/peft";
import { openCheckpoint } from "../../src/io/checkpoint";
import { deltaPass } from "../../src/delta/pass";
import type { LoadedModel } from "../../src/engine/model";
import {
  SUBJECT_CONFIG as config,
  SUBJECT_IDS as IDS,
  SUBJECT_MODULES as MODULES,
  compareLogits,
  onCleanup,
  randomLora,
  randomWeights,
  runCleanups,
  writeModel,
  type WrittenModel,
} from "./fixtures";

afterAll(runCleanups);

async function tempFolder(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "da-rank-"));
  onCleanup(() => rm(root, { recursive: true, force: true }));
  return root;
}

async function model(weights: Map<string, Float32Array>): Promise<WrittenModel> {
  const m = await writeModel(config, weights);
  onCleanup(m.cleanup);
  return m;
}

/** The same variant of two loaded models gives the same logits (float tolerance), and differs from `full`. */
async function expectSameVariant(a: LoadedModel, b: LoadedModel, variant: string): Promise<void> {
  const x = await a.logits(IDS, variant);
  const y = await b.logits(IDS, variant);
  for (let p = 0; p < IDS.length; p++) {
    const { maxDiff, tol } = compareLogits(x[p]!, y[p]!);
    expect(maxDiff, `position ${p}`).toBeLessThanOrEqual(tol);
  }
  const full = await a.logits(IDS, "full");
  expect(compareLogits(x[5]!, full[5]!).maxDiff).toBeGreaterThan(1e-3);
}

/** base + a rank-3 change on two modules, written as a full fine-tune with the given tensor names. */
function fineTuned(weights: Map<string, Float32Array>, seed: number): Map<string, Float32Array> {
  const ft = new Map(weights);
  for (const m of randomLora(weights, config, ["model.layers.0.mlp.down_proj", "model.layers.1.self_attn.q_proj"], 3, seed, 1)) {
    const w = Float32Array.from(ft.get(`${m.name}.weight`)!);
    for (let o = 0; o < m.outFeatures; o++)
      for (let i = 0; i < m.inFeatures; i++) {
        let s = 0;
        for (let r = 0; r < m.rank; r++) s += m.B[o * m.rank + r]! * m.A[r * m.inFeatures + i]!;
        w[o * m.inFeatures + i] += s;
      }
    ft.set(`${m.name}.weight`, w);
  }
  return ft;
}

/** A full fine-tune's rank<k> loaded from the pass's folder is the one loadSubject truncates in memory. */
async function expectFolderIsInMemory(model: string, finetuned: string, rank: number, rankAdapterDir: string): Promise<void> {
  const fromFolder = await loadSubject({ model, finetuned, rank, rankAdapterDir, threads: 1, quiet: true });
  const inMemory = await loadSubject({ model, finetuned, rank, threads: 1, quiet: true });
  try {
    await expectSameVariant(fromFolder, inMemory, `rank${rank}`);
  } finally {
    await fromFolder.close();
    await inMemory.close();
  }
}

async function writeFullPassFolder(baseDir: string, ftDir: string, rank: number): Promise<string> {
  const out = join(await tempFolder(), `rank${rank}-adapter`);
  const base = await openCheckpoint(baseDir);
  const ft = await openCheckpoint(ftDir);
  try {
    await deltaPass({ kind: "full", base, finetuned: ft }, rank, out, { quiet: true });
  } finally {
    await base.close();
    await ft.close();
  }
  return out;
}

describe("rank<k> from the delta pass's folder", () => {
  it("LoRA: the embedded backend's rank2 read from the folder is the in-memory rank2", async () => {
    const base = await model(randomWeights(config, 171));
    const lora = randomLora(base.weights, config, MODULES, 4, 172, 2);
    const dir = join(await tempFolder(), "adapter");
    await writeAdapter(dir, { r: 4, lora_alpha: 8, target_modules: ["q_proj", "v_proj", "down_proj"] }, lora);
    const rankDir = join(await tempFolder(), "rank2-adapter");
    const b = await openCheckpoint(base.dir);
    const adapter = await openAdapter(dir, { base: b });
    try {
      await deltaPass({ kind: "lora", adapter }, 2, rankDir, { quiet: true });
    } finally {
      await adapter.close();
      await b.close();
    }
    const fromFolder = (await createEmbeddedBackend({ base: base.dir, adapter: dir, rank: 2, rankAdapterDir: rankDir, threads: 1, quiet: true })) as EmbeddedBackend;
    const inMemory = await loadSubject({ model: base.dir, adapter: dir, rank: 2, threads: 1, quiet: true });
    try {
      expect(fromFolder.variants()).toEqual(["base", "full", "rank2"]);
      await expectSameVariant(fromFolder.model, inMemory, "rank2");
    } finally {
      await fromFolder.close();
      await inMemory.close();
    }
    // a folder of another rank is refused, not served under the wrong name
    await expect(loadSubject({ model: base.dir, adapter: dir, rank: 3, rankAdapterDir: rankDir, threads: 1, quiet: true })).rejects.toThrow(/has rank 2, but this folder should hold the rank-3 truncation/);
  });

  it("full fine-tune: rank1 read from the folder is the in-memory rank1", async () => {
    const base = await model(randomWeights(config, 181));
    const ft = await model(fineTuned(base.weights, 182));
    await expectFolderIsInMemory(base.dir, ft.dir, 1, await writeFullPassFolder(base.dir, ft.dir, 1));
  });

  it("full fine-tune of a bare decoder (no `model.` prefix): the folder's names are mapped as the checkpoint's", async () => {
    const bare = (w: Map<string, Float32Array>) => new Map([...w].map(([n, v]) => [n.startsWith("model.") ? n.slice("model.".length) : n, v]));
    const weights = randomWeights(config, 191);
    const base = await model(bare(weights));
    const ft = await model(bare(fineTuned(weights, 192)));
    const rankDir = await writeFullPassFolder(base.dir, ft.dir, 1);
    const written = await openAdapter(rankDir);
    expect(written.moduleNames()[0]).toMatch(/^layers\./);
    await written.close();
    await expectFolderIsInMemory(base.dir, ft.dir, 1, rankDir);
  });
});
