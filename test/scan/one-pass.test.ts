/**
 * One scan reads and decomposes every module of the subject once: the delta pass measures the
 * spectrum and writes rank1-adapter/ in one walk, and the embedded engine loads that folder as
 * its rank1 variant instead of truncating again. Real files and the real engine; the linalg
 * entry points are wrapped by call-through spies only to count calls.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import * as factored from "../../src/linalg/factored-svd";
import { createBackend } from "../../src/backends/index";
import type { EmbeddedBackend } from "../../src/backends/embedded";
import { PooledFactorReader } from "../../src/delta/factor-reader";
import { adapterSpectrum } from "../../src/delta/spectrum";
import { loadSubject } from "../../src/engine/variants";
import { openAdapter } from "../../src/io/peft";
import { parseConfig } from "../../src/config";
import { runScan } from "../../src/scan";
import { DIRECTIONS_FILE, readDirections } from "../../src/delta/directions";
import type { Report } from "../../src/report/types";
import { compareLogits } from "../engine/fixtures";
import { writeChatFixture, type ChatFixture } from "../serve/fixtures";
import { plumbingSuite } from "./plumbing-suite";

vi.mock("../../src/linalg/factored-svd", async (importOriginal) => {
  const real = await importOriginal<typeof import("../../src/linalg/factored-svd")>();
  return { ...real, factoredTruncation: vi.fn(real.factoredTruncation), factoredSingularValues: vi.fn(real.factoredSingularValues) };
});

/** The plumbing is the point: a few tokens (the config's minimum). */
const TINY = plumbingSuite(4);
const IDS = [1, 2, 3, 4, 5];

let fx: ChatFixture;
beforeAll(async () => {
  fx = await writeChatFixture(31);
});
afterAll(async () => {
  await fx?.cleanup();
});

describe("scan's delta phase", () => {
  it("reads and decomposes each module once, and the engine's rank1 is the rank1-adapter/ the report ships", async () => {
    const probe = await openAdapter(fx.adapterDir);
    const modules = probe.moduleNames();
    const readModule = vi.spyOn(Object.getPrototypeOf(probe) as { readModule: (n: string) => Promise<unknown> }, "readModule");
    await probe.close();
    const pooledRead = vi.spyOn(PooledFactorReader.prototype, "read");
    vi.mocked(factored.factoredTruncation).mockClear();
    vi.mocked(factored.factoredSingularValues).mockClear();
    let rankLogits: Float32Array[] = [];
    let rankDir = "";
    let counted: { truncations: number; singularValues: number; pooled: string[]; reads: Record<string, string[]> } | undefined;
    try {
      const out = join(fx.root, "out-one-pass");
      const result = await runScan({
        base: fx.modelDir,
        adapter: fx.adapterDir,
        config: parseConfig(TINY),
        seed: 3,
        outDir: out,
        createBackend: async (request) => {
          const backend = (await createBackend(request)) as EmbeddedBackend;
          rankDir = request.rankAdapterDir;
          rankLogits = await backend.model.logits(IDS, "rank1");
          return backend;
        },
      });
      expect(result.report.elicitation!.variants).toEqual(["base", "full", "rank1"]);
      const reads: Record<string, string[]> = {};
      for (const [i, call] of readModule.mock.calls.entries()) {
        const dir = (readModule.mock.contexts[i] as { dir: string }).dir;
        (reads[dir] ??= []).push(call[0]);
      }
      counted = {
        truncations: vi.mocked(factored.factoredTruncation).mock.calls.length,
        singularValues: vi.mocked(factored.factoredSingularValues).mock.calls.length,
        pooled: pooledRead.mock.calls.map(([n]) => n),
        reads,
      };
      // the spectrum in the report is the spectrum of the adapter, as `spectrum` measures it
      const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as Report;
      const adapter = await openAdapter(fx.adapterDir);
      try {
        expect(report.spectrum).toEqual(JSON.parse(JSON.stringify(await adapterSpectrum(adapter, { quiet: true }))));
      } finally {
        await adapter.close();
      }
    } finally {
      readModule.mockRestore();
      pooledRead.mockRestore();
    }
    // the pass: one pooled read and one truncation (whose Gram core gives the spectrum) per module
    expect(counted!.pooled).toEqual(modules);
    expect(counted!.truncations).toBe(modules.length);
    expect(counted!.singularValues).toBe(0);
    // the engine: the user's adapter once (the full variant) and the scan's folder once (rank1)
    expect(counted!.reads).toEqual({ [fx.adapterDir]: modules, [rankDir]: modules });
    expect(rankDir.endsWith("rank1-adapter")).toBe(true);

    // and that variant is the in-memory truncation a standalone `generate --rank 1` computes
    const inMemory = await loadSubject({ model: fx.modelDir, adapter: fx.adapterDir, rank: 1, quiet: true });
    try {
      const want = await inMemory.logits(IDS, "rank1");
      want.forEach((w, p) => {
        const { maxDiff, tol } = compareLogits(rankLogits[p]!, w);
        expect(maxDiff, `position ${p}`).toBeLessThanOrEqual(tol);
      });
    } finally {
      await inMemory.close();
    }
  });

  it("keeps `sweep run`'s directions in the same walk: no second read or decomposition of any module", async () => {
    const probe = await openAdapter(fx.adapterDir);
    const modules = probe.moduleNames();
    await probe.close();
    const pooledRead = vi.spyOn(PooledFactorReader.prototype, "read");
    vi.mocked(factored.factoredTruncation).mockClear();
    vi.mocked(factored.factoredSingularValues).mockClear();
    const out = join(fx.root, "out-one-pass-directions");
    try {
      const result = await runScan({
        base: fx.modelDir,
        adapter: fx.adapterDir,
        config: parseConfig(TINY),
        seed: 3,
        outDir: out,
        directions: { k: 4, file: DIRECTIONS_FILE },
      });
      expect(pooledRead.mock.calls.map(([n]) => n)).toEqual(modules);
      expect(vi.mocked(factored.factoredTruncation).mock.calls.length).toBe(modules.length);
      expect(vi.mocked(factored.factoredSingularValues).mock.calls.length).toBe(0);
      const kept = await readDirections(join(out, DIRECTIONS_FILE));
      expect(result.directions).toEqual({ file: DIRECTIONS_FILE, k: 4, modules: kept.length });
      expect(kept.map((m) => m.name).sort()).toEqual(modules.slice().sort());
    } finally {
      pooledRead.mockRestore();
    }
  });
});
