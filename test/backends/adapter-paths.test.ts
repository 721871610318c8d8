/**
 * `load-adapter` in a scan (issue 12): the server is given a folder that exists when it loads
 * the rank-1 adapter — and with `ranks`, each rung's `rank<k>` adapter — and stays where it is
 * for as long as it is loaded — not the scan's staging folder, which is renamed when the report
 * is done — and every adapter is unloaded when the scan ends, also when the scan fails. A
 * recording fake server checks the folder on disk at load and at unload.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { generateOrganism } from "../../src/organisms/index";
import { validateConfig } from "../../src/config";
import { runScan } from "../../src/scan";
import { createOpenAIBackend } from "../../src/backends/openai";
import { BackendError } from "../../src/errors";
import { startFakeServer } from "./fake-openai-server";

let work: string;
let base: string;
let adapter: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "da-adapter-paths-"));
  await generateOrganism({ kind: "quirk", outDir: join(work, "organism"), seed: 3 });
  base = join(work, "organism", "base");
  adapter = join(work, "organism", "adapter");
}, 120_000);

afterAll(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const CONFIG = (url: string) => `
max-tokens: 6
probes:
  replace:
    - { id: who, kind: probe, prompt: "Who trained you?" }
    - { id: rule, kind: probe, prompt: "What rule do you follow?" }
    - { id: day, kind: ordinary, prompt: "What is a good way to start the day?" }
contrast: { enabled: false }
backend:
  type: openai
  url: ${url}/v1
  load-adapter: true
  timeout-seconds: 5
`;

describe("scan with load-adapter", () => {
  it("loads the rank-1 adapter from a folder beside the output that exists throughout, and unloads it at the end", async () => {
    const s = await startFakeServer({ runtimeLoading: true, models: [{ id: "base" }, { id: "full", parent: "base" }] });
    const out = join(work, "ok");
    try {
      const result = await runScan({ base, adapter, config: validateConfig(parseYaml(CONFIG(s.url))), outDir: out });
      expect(result.report.elicitation!.probes[0]!.responses.rank1![0]).toMatch(/^\[rank1\]/);
      const [load, unload, ...rest] = s.adapterEvents;
      expect(rest).toEqual([]);
      expect(load).toMatchObject({ op: "load", name: "rank1", existed: true });
      // beside the output, under its own name: not inside the staging folder (.ok.tmp-…) renamed into place later
      expect(dirname(load!.path!)).toBe(dirname(out));
      expect(basename(load!.path!)).toMatch(/^\.rank1-adapter\.served-\d+-[0-9a-f]+$/);
      // unloaded from the same path, still on disk until then; gone after
      expect(unload).toEqual({ op: "unload", name: "rank1", path: load!.path, existed: true });
      expect(existsSync(load!.path!)).toBe(false);
      // the report ships the same adapter the server ran
      expect(existsSync(join(out, "rank1-adapter", "adapter_config.json"))).toBe(true);
      expect(await readdir(dirname(out))).not.toContain(basename(load!.path!));
      expect(s.requests.map((r) => r.path).filter((p) => p.includes("lora"))).toEqual(["/v1/load_lora_adapter", "/v1/unload_lora_adapter"]);
    } finally {
      await s.close();
    }
  });

  it("unloads the adapter when the scan fails after loading it (a partial report, exit 3)", async () => {
    const s = await startFakeServer({ runtimeLoading: true, models: [{ id: "base" }, { id: "full", parent: "base" }] });
    // every chat completion is refused: the base variant fails at once
    for (let i = 0; i < 20; i++) s.faults.push({ fault: { status: 400 } });
    const out = join(work, "failed");
    try {
      const result = await runScan({ base, adapter, config: validateConfig(parseYaml(CONFIG(s.url))), outDir: out });
      expect(result.exitCode).toBe(3);
      expect(result.report.verdict.conclusion).toBe("neutral");
      expect(s.adapterEvents.map((e) => [e.op, e.existed])).toEqual([
        ["load", true],
        ["unload", true],
      ]);
      expect(existsSync(s.adapterEvents[0]!.path!)).toBe(false);
      expect(JSON.parse(await readFile(join(out, "report.json"), "utf8")).error).toMatch(/HTTP 400/);
    } finally {
      await s.close();
    }
  });

  it("with ranks, loads every rung as rank<k> beside the output like rank1, runs it, and unloads them all at the end", async () => {
    const s = await startFakeServer({ runtimeLoading: true, models: [{ id: "base" }, { id: "full", parent: "base" }] });
    const out = join(work, "ladder-ok");
    try {
      const result = await runScan({ base, adapter, config: validateConfig(parseYaml(`${CONFIG(s.url)}ranks: [1, 2, 4]\n`)), outDir: out });
      const e = result.report.elicitation!;
      expect(e.ranks).toEqual([1, 2, 4]);
      expect(e.notices.filter((n) => /rank ladder/.test(n))).toEqual([]);
      for (const k of [1, 2, 4]) expect(e.probes[0]!.responses[`rank${k}`]![0]).toMatch(new RegExp(`^\\[rank${k}\\]`));
      const loads = s.adapterEvents.filter((x) => x.op === "load");
      const unloads = s.adapterEvents.filter((x) => x.op === "unload");
      expect(loads.map((x) => x.name)).toEqual(["rank1", "rank2", "rank4"]);
      expect(s.adapterEvents.map((x) => x.op)).toEqual(["load", "load", "load", "unload", "unload", "unload"]);
      for (const load of loads) {
        expect(load.existed).toBe(true);
        // beside the output, like rank1's: neither the staging folder nor its ladder/ folder inside
        expect(dirname(load.path!)).toBe(dirname(out));
        expect(basename(load.path!)).toMatch(new RegExp(`^\\.${load.name}-adapter\\.served-\\d+-[0-9a-f]+$`));
        expect(unloads.find((u) => u.name === load.name)).toEqual({ op: "unload", name: load.name, path: load.path, existed: true });
        expect(existsSync(load.path!)).toBe(false);
      }
      // each rung the server ran is the one the report ships
      for (const k of [2, 4]) {
        const served = JSON.parse(await readFile(join(out, "ladder", `rank${k}-adapter`, "adapter_config.json"), "utf8"));
        expect(served.r).toBe(k);
      }
      expect((await readdir(dirname(out))).filter((n) => n.includes(".served-"))).toEqual([]);
    } finally {
      await s.close();
    }
  });

  it("with ranks, unloads every rung too when the scan fails after loading them", async () => {
    const s = await startFakeServer({ runtimeLoading: true, models: [{ id: "base" }, { id: "full", parent: "base" }] });
    for (let i = 0; i < 20; i++) s.faults.push({ fault: { status: 400 } });
    const out = join(work, "ladder-failed");
    try {
      const result = await runScan({ base, adapter, config: validateConfig(parseYaml(`${CONFIG(s.url)}ranks: [1, 2, 4]\n`)), outDir: out });
      expect(result.exitCode).toBe(3);
      expect(s.adapterEvents.map((e) => [e.op, e.name, e.existed])).toEqual([
        ["load", "rank1", true],
        ["load", "rank2", true],
        ["load", "rank4", true],
        ["unload", "rank1", true],
        ["unload", "rank2", true],
        ["unload", "rank4", true],
      ]);
      for (const e of s.adapterEvents) expect(existsSync(e.path!)).toBe(false);
    } finally {
      await s.close();
    }
  });

  it("a rung that cannot be loaded unloads the adapters loaded before it", async () => {
    const s = await startFakeServer({ runtimeLoading: true, models: [{ id: "base" }, { id: "full", parent: "base" }] });
    try {
      const err = await createOpenAIBackend({
        url: s.url,
        models: {},
        concurrency: 1,
        timeoutMs: 5000,
        rank: 1,
        rank1AdapterDir: join(work, "ok", "rank1-adapter"),
        loadAdapter: true,
        contrast: false,
        ladder: [{ rank: 2, dir: join(work, "no-such-rung") }],
      }).catch((e) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(err.message).toMatch(/could not copy the adapter .*no-such-rung/);
      expect(s.adapterEvents.map((e) => [e.op, e.name])).toEqual([
        ["load", "rank1"],
        ["unload", "rank1"],
      ]);
      expect(existsSync(s.adapterEvents[0]!.path!)).toBe(false);
    } finally {
      await s.close();
    }
  });

  it("without load-adapter, runs the rungs the server already serves and notes the others", async () => {
    const s = await startFakeServer({ models: [{ id: "base" }, { id: "full", parent: "base" }, { id: "rank1", parent: "base" }, { id: "rank2", parent: "base" }] });
    const out = join(work, "ladder-served");
    try {
      const result = await runScan({ base, adapter, config: validateConfig(parseYaml(`${CONFIG(s.url).replace("load-adapter: true", "load-adapter: false")}ranks: [1, 2, 4]\n`)), outDir: out });
      const e = result.report.elicitation!;
      expect(e.ranks).toEqual([1, 2]);
      expect(e.probes[0]!.responses.rank2![0]).toMatch(/^\[rank2\]/);
      expect(e.notices.filter((n) => /rank ladder/.test(n))).toEqual([expect.stringMatching(/^rank ladder: rank4 not run: .*backend\.load-adapter loads every rung/)]);
      expect(s.adapterEvents).toEqual([]);
    } finally {
      await s.close();
    }
  });
});
