/**
 * `load-adapter` in a scan (issue 12): the server is given a folder that exists when it loads
 * the rank-1 adapter and stays where it is for as long as it is loaded — not the scan's
 * staging folder, which is renamed when the report is done — and the adapter is unloaded when
 * the scan ends, also when the scan fails. A recording fake server checks the folder on disk at
 * load and at unload.
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
});
