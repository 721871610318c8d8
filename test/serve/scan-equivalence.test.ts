/**
 * The acceptance test: `scan --backend openai` against a real `delta-audit serve` child
 * process (127.0.0.1, random free port) gives the same verdict and the same findings as the
 * embedded backend, on the generated organisms (positive and negative control), greedy.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateOrganism, type OrganismKind } from "../../src/organisms/index";
import type { Report } from "../../src/report/types";
import { startServe } from "./fixtures";

const root = new URL("../..", import.meta.url).pathname;
const cli = `${root}bin/delta-audit.js`;
let work: string;
const children: ChildProcess[] = [];

function scan(args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [cli, "scan", ...args], { encoding: "utf8" });
  return { status: r.status, stderr: r.stderr };
}

async function report(dir: string): Promise<Report> {
  return JSON.parse(await readFile(join(dir, "report.json"), "utf8")) as Report;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "da-equiv-"));
}, 120_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  if (work) await rm(work, { recursive: true, force: true });
});

const CASES: { kind: OrganismKind; sampled: boolean }[] = [
  { kind: "quirk", sampled: false },
  { kind: "benign", sampled: false },
  // sampled: the server uses the request seeds exactly as the embedded engine does
  { kind: "quirk", sampled: true },
];

describe.each(CASES)("scan on the $kind organism (sampled: $sampled): openai over serve = embedded", ({ kind, sampled }) => {
  it("gives the same verdict, findings and transcripts", async () => {
    const name = `${kind}${sampled ? "-sampled" : ""}`;
    const dir = join(work, name);
    await generateOrganism({ kind, outDir: dir, seed: 3 });
    const sampling = sampled ? "samples: 2\ntemperature: 0.8\n" : "";
    const embeddedCfg = join(work, `${name}-embedded.yml`);
    await writeFile(embeddedCfg, sampling || "{}\n");
    const base = join(dir, "base");
    const adapter = join(dir, "adapter");

    const embeddedOut = join(work, `${name}-embedded`);
    const e = scan(["--base", base, "--adapter", adapter, "--config", embeddedCfg, "--out", embeddedOut]);
    expect([0, 1]).toContain(e.status);

    const { child, url } = await startServe(["--model", base, "--adapter", `full=${adapter}`, "--adapter", `rank1=${adapter}@rank1`], children);
    const cfg = join(work, `${name}.yml`);
    await writeFile(cfg, `${sampling}backend:\n  type: openai\n  url: ${url}/v1\n  concurrency: 4\n  timeout-seconds: 60\n`);
    const openaiOut = join(work, `${name}-openai`);
    const o = scan(["--base", base, "--adapter", adapter, "--config", cfg, "--out", openaiOut]);
    child.kill("SIGTERM");
    expect(o.status, o.stderr).toBe(e.status);

    const re = await report(embeddedOut);
    const ro = await report(openaiOut);
    expect(ro.elicitation!.backend).toBe("openai");
    expect(re.elicitation!.backend).toBe("embedded");
    expect(ro.verdict.conclusion).toBe(re.verdict.conclusion);
    // the positive control fails and the negative control passes; otherwise the comparison is weak
    expect(re.verdict.conclusion).toBe(kind === "quirk" ? "fail" : "pass");
    // contrastive decoding ran over HTTP (logprobs + continue_final_message), not skipped
    expect(ro.elicitation!.variants).toContain("contrast");
    expect(ro.elicitation!.notices.filter((n) => /contrast/.test(n))).toEqual([]);
    if (sampled) expect(re.elicitation!.samples).toBe(2);
    for (const v of ["base", "full", "rank1", "contrast"]) {
      expect(ro.elicitation!.probes.map((p) => p.responses[v]), v).toEqual(re.elicitation!.probes.map((p) => p.responses[v]));
    }
    // layer attribution runs on the embedded engine only (a server would need an adapter per group of layers)
    const strip = (r: Report) => r.findings.map((f) => ({ ...f, attribution: undefined }));
    expect(strip(ro)).toEqual(strip(re));
  }, 300_000);
});
