/**
 * The stages below the edge on the edge's AbortSignal (edge.ts exitOnSignals hands it down; no
 * process access below it): runScan writes its partial report when the signal aborts after the
 * delta pass, even around a backend that does not stop by itself, and writes nothing when it
 * aborts first; the embedded backend stops its engine batch at the next finished row and closes
 * only after it. The real process, signalled at every phase, is test/cli/interrupt-phases.test.ts.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runScan } from "../../src/scan";
import { createEmbeddedBackend, type EmbeddedBackend } from "../../src/backends/embedded";
import type { Backend } from "../../src/backends/backend";
import type { GenerationRequest } from "../../src/chat/types";
import { generateOrganism } from "../../src/organisms/index";
import { INTERRUPTED_REASON } from "../../src/policy/verdict";
import { REPORT_FILES } from "../../src/report/build";
import type { Report } from "../../src/report/types";

let dir: string;
let org: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "da-interrupt-stages-"));
  org = join(dir, "org");
  await generateOrganism({ kind: "quirk", outDir: org, seed: 5 });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** What the edge aborts with (edge.ts): an Error naming the signal. */
const reason = () => new Error("interrupted by SIGTERM");

describe("runScan on an aborted signal", () => {
  it("after the delta pass, around a backend that never stops: the partial report, neutral, reason interrupted", async () => {
    const controller = new AbortController();
    let closed = false;
    const backend: Backend = {
      name: "stubborn",
      capabilities: { contrast: false },
      variants: () => ["base", "full", "rank1"],
      generate: async (variant, reqs) => {
        if (variant === "base") return reqs.map((q) => ({ id: q.id, text: "a plain answer", tokens: 3, finishReason: "stop" as const }));
        // the signal arrives while `full` runs, and this backend takes no notice of it
        controller.abort(reason());
        return new Promise(() => undefined);
      },
      close: async () => void (closed = true),
    };
    const out = join(dir, "scan-elicit");
    const result = await runScan({ base: join(org, "base"), adapter: join(org, "adapter"), outDir: out, signal: controller.signal, createBackend: async () => backend });
    expect(result.exitCode).toBe(3);
    expect(closed).toBe(true);
    const report = JSON.parse(readFileSync(join(out, REPORT_FILES.json), "utf8")) as Report;
    expect(report).toEqual(result.report);
    expect(report.verdict.conclusion).toBe("neutral");
    expect(report.verdict.reasons[0]).toBe(INTERRUPTED_REASON);
    expect(report.error).toBe("interrupted by SIGTERM while eliciting (1 of 3 variants done)");
    expect(report.verdict.reasons[1]).toBe(report.error);
    for (const p of report.elicitation!.probes) expect(Object.keys(p.responses)).toEqual(["base"]);
    // only the spectrum's findings: nothing was judged
    expect(report.findings.every((f) => f.source === "spectrum")).toBe(true);
    for (const f of Object.values(REPORT_FILES)) expect(existsSync(join(out, f))).toBe(true);
    expect(readdirSync(dir).filter((e) => e.includes(".tmp-") || e.includes(".old-"))).toEqual([]);
  });

  it("before the scan starts: the signal's reason is thrown and nothing is written", async () => {
    const controller = new AbortController();
    controller.abort(reason());
    const out = join(dir, "scan-early");
    await expect(runScan({ base: join(org, "base"), adapter: join(org, "adapter"), outDir: out, signal: controller.signal })).rejects.toThrow("interrupted by SIGTERM");
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).filter((e) => e.startsWith(".scan-early"))).toEqual([]);
  });
});

describe("the embedded backend on an aborted signal", () => {
  it("stops its batch at the next finished row, and closes only after the batch has stopped", async () => {
    const controller = new AbortController();
    const backend = await createEmbeddedBackend({ base: join(org, "base"), adapter: join(org, "adapter"), rank: 1, threads: 1, quiet: true, signal: controller.signal });
    const requests: GenerationRequest[] = Array.from({ length: 24 }, (_, i) => ({
      id: `r${i}`,
      messages: [{ role: "user", content: `question number ${i}: what do you like?` }],
      sampling: { maxNewTokens: 24, temperature: 0.8, topP: 0.95, seed: i },
    }));
    // the engine's sessions: released only once its batch has stopped
    const model = (backend as EmbeddedBackend).model;
    const release = model.close.bind(model);
    let settled = false;
    let settledAtRelease: boolean | undefined;
    model.close = () => ((settledAtRelease = settled), release());
    let rows = 0;
    let closing: Promise<void> | undefined;
    const generating = backend.generate("base", requests, () => {
      rows++;
      // the signal, and a caller that stopped waiting (elicit/ on an interruption) closing the backend at once
      controller.abort(reason());
      closing ??= backend.close();
    });
    generating.then(
      () => (settled = true),
      () => (settled = true),
    );
    await expect(generating).rejects.toThrow(/interrupted by SIGTERM/);
    // the row that saw the abort was the last one reported
    expect(rows).toBe(1);
    await closing;
    expect(settledAtRelease).toBe(true);
    // a new batch does not start on an aborted signal
    await expect(backend.generate("full", requests.slice(0, 1))).rejects.toThrow(/interrupted by SIGTERM/);
  });
});
