/**
 * The rank ladder over HTTP (issue 12): a scan with `ranks` and `load-adapter` against a real
 * `delta-audit serve` child process that serves only `base` and `full` loads every rung the delta
 * pass wrote as `rank<k>` through /v1/load_lora_adapter, runs it, unloads it, and gives each
 * finding the same ladder as the embedded engine on the quirk organism. The scan runs in this
 * process (src/), the server from dist/.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ChildProcess } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateOrganism } from "../../src/organisms/index";
import { parseConfig } from "../../src/config";
import { runScan } from "../../src/scan";
import type { Report } from "../../src/report/types";
import { startServe } from "./fixtures";

let work: string;
const children: ChildProcess[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "da-ladder-http-"));
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  if (work) await rm(work, { recursive: true, force: true });
});

/** rank 5 keeps two trigger groups' denials and rank 6 four (test/scan/ladder.test.ts): the ladder's turning point */
const RANKS = [1, 2, 5, 6];
// contrast is left out of the ladder, so it is off here: both scans judge the same variants
const COMMON = `ranks: [${RANKS.join(", ")}]\ncontrast: { enabled: false }\n`;

describe("rank ladder over delta-audit serve with load-adapter", () => {
  it("loads every rung as rank<k>, and each finding's ladder equals the embedded engine's", async () => {
    const org = join(work, "org");
    const manifest = await generateOrganism({ kind: "quirk", outDir: org, seed: 3 });
    const base = join(org, "base");
    const adapter = join(org, "adapter");

    const embedded = await runScan({ base, adapter, config: parseConfig(COMMON), outDir: join(work, "embedded") });
    expect(embedded.exitCode).toBe(1);

    const { child, url } = await startServe(["--model", base, "--adapter", `full=${adapter}`], children);
    let http: Awaited<ReturnType<typeof runScan>>;
    try {
      const config = parseConfig(`${COMMON}backend:\n  type: openai\n  url: ${url}/v1\n  load-adapter: true\n  concurrency: 4\n  timeout-seconds: 60\n`);
      http = await runScan({ base, adapter, config, outDir: join(work, "openai") });
      // every rung was unloaded at the end: the server serves what it was started with
      const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
      expect(models.data.map((m) => m.id).sort()).toEqual(["base", "full"]);
    } finally {
      child.kill("SIGTERM");
    }
    expect(http.exitCode).toBe(embedded.exitCode);

    const re: Report = embedded.report;
    const ro: Report = http.report;
    expect(ro.elicitation!.backend).toBe("openai");
    expect(ro.elicitation!.ranks).toEqual(RANKS);
    expect(ro.elicitation!.notices.filter((n) => /rank ladder/.test(n))).toEqual([]);
    for (const k of RANKS) {
      const v = `rank${k}`;
      expect(ro.elicitation!.probes.map((p) => p.responses[v]), v).toEqual(re.elicitation!.probes.map((p) => p.responses[v]));
    }
    const word = manifest.quirkWords[0]!;
    const ladders = (r: Report) => r.findings.filter((f) => f.ladder).map((f) => ({ id: f.id, ladder: f.ladder }));
    expect(ladders(ro)).toEqual(ladders(re));
    expect(ladders(re).length).toBeGreaterThan(0);
    expect(re.findings.find((f) => f.severity === "high" && f.terms.includes(word))!.ladder).toMatchObject({ ranks: RANKS, shownAt: [1, 2, 5], hiddenFrom: 6 });
    // layer attribution runs on the embedded engine only
    const strip = (r: Report) => r.findings.map((f) => ({ ...f, attribution: undefined }));
    expect(strip(ro)).toEqual(strip(re));
    // the served copies beside the output are gone
    expect((await readdir(work)).filter((n) => n.includes(".served-"))).toEqual([]);
  }, 300_000);
});
