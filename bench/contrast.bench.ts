/**
 * Contrastive decoding over HTTP against `delta-audit serve` (127.0.0.1, in-process) on the
 * generated organisms: token by token (one full and one base request per token) against
 * draft-and-verify (one proposal and one scoring request per round), the scan's suite and
 * settings (38 prompts, max-tokens 64, α 1, top-k 10, concurrency 4), greedy and sampled.
 * Prints requests and wall time per contrastive answer for both and their ratios, measured in
 * the same run on the same warm server, and checks that both give identical text.
 *
 * Run: `npm run bench -- contrast` (or `node --import tsx bench/contrast.bench.ts`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../src/engine/index";
import { readAdapterModules } from "../src/engine/variants";
import { serveEngineFromModel } from "../src/serve/engine";
import { startOpenAIServer } from "../src/serve/openai-server";
import { createOpenAIBackend, type ContrastStrategy } from "../src/backends/openai";
import { buildRequests } from "../src/elicit/plan";
import { defaultProbes, DEFAULT_SYSTEM_PROMPT } from "../src/elicit/probes";
import { defaultElicitSettings } from "../src/elicit/settings";
import type { OrganismKind } from "../src/organisms/index";

/** The scan's backend concurrency default (backends/settings.ts). */
const CONCURRENCY = 4;

export interface StrategyResult {
  requests: number;
  seconds: number;
  texts: string[];
}

export interface ContrastBenchCase {
  organism: OrganismKind;
  temperature: number;
  answers: number;
  step: StrategyResult;
  draft: StrategyResult;
  identical: boolean;
  /** step requests ÷ draft requests */
  requestRatio: number;
  /** step seconds ÷ draft seconds */
  timeRatio: number;
}

async function prepareOrganism(kind: OrganismKind): Promise<{ base: string; adapter: string }> {
  const { generateOrganism } = await import("../src/organisms/index");
  const out = join(".cache", "bench", `organism-${kind}`);
  if (!existsSync(join(out, "base", "config.json"))) await generateOrganism({ kind, outDir: out, seed: 1 });
  return { base: join(out, "base"), adapter: join(out, "adapter") };
}

async function measureCase(kind: OrganismKind, temperature: number, quick: boolean): Promise<ContrastBenchCase> {
  const org = await prepareOrganism(kind);
  const model = await loadModel(org.base);
  model.addLoraVariant("full", await readAdapterModules(org.base, org.adapter));
  model.addLoraVariant("rank1", await readAdapterModules(org.base, org.adapter, { rank: 1, quiet: true }));
  const server = await startOpenAIServer(serveEngineFromModel(model, { tokenText: "per-token" }), { port: 0 });
  const settings = defaultElicitSettings();
  const probes = quick ? defaultProbes().slice(0, 8) : defaultProbes();
  const requests = buildRequests(probes, DEFAULT_SYSTEM_PROMPT, { samples: 1, temperature, topP: temperature > 0 ? 0.95 : 1, maxNewTokens: settings.maxTokens, seed: 0 });
  const contrast = { alpha: settings.contrast.alpha, topK: settings.contrast.topK };
  try {
    const once = async (strategy: ContrastStrategy, reqs = requests): Promise<StrategyResult> => {
      let sent = 0;
      const counting: typeof fetch = (input, init) => {
        sent++;
        return fetch(input, init);
      };
      const b = await createOpenAIBackend({ url: server.url, models: {}, concurrency: CONCURRENCY, timeoutMs: 120_000, rank: 1, contrastStrategy: strategy, tokenizerDir: org.base, fetch: counting });
      try {
        const before = sent;
        const t0 = performance.now();
        const out = await b.contrastiveGenerate!(reqs, contrast);
        return { requests: sent - before, seconds: (performance.now() - t0) / 1000, texts: out.map((r) => r.text) };
      } finally {
        await b.close();
      }
    };
    // warm-up: both strategies once on a few prompts, so neither pays for session start-up
    await once("step", requests.slice(0, CONCURRENCY));
    await once("draft", requests.slice(0, CONCURRENCY));
    const step = await once("step");
    const draft = await once("draft");
    return {
      organism: kind,
      temperature,
      answers: requests.length,
      step,
      draft,
      identical: step.texts.every((t, i) => t === draft.texts[i]),
      requestRatio: step.requests / draft.requests,
      timeRatio: step.seconds / draft.seconds,
    };
  } finally {
    await server.close(5_000);
    await model.close();
  }
}

/** Measure every case without printing. */
export async function measure(): Promise<ContrastBenchCase[]> {
  const quick = process.env.BENCH_QUICK === "1";
  const cases: ContrastBenchCase[] = [];
  for (const kind of ["quirk", "benign"] as const) {
    for (const temperature of quick ? [0] : [0, 0.8]) cases.push(await measureCase(kind, temperature, quick));
  }
  return cases;
}

const per = (r: StrategyResult, n: number) => `${(r.requests / n).toFixed(1)} requests, ${((1000 * r.seconds) / n).toFixed(0)} ms per answer (${r.requests} requests, ${r.seconds.toFixed(2)} s)`;

/** `npm run bench` entry: print both strategies per case and their ratios; fail when the texts differ. */
export async function run(): Promise<ContrastBenchCase[]> {
  const cases = await measure();
  console.log(`contrastive decoding over delta-audit serve, concurrency ${CONCURRENCY}, max-tokens ${defaultElicitSettings().maxTokens}`);
  for (const c of cases) {
    console.log(`${c.organism} organism, temperature ${c.temperature}, ${c.answers} answers`);
    console.log(`  token by token    ${per(c.step, c.answers)}`);
    console.log(`  draft-and-verify  ${per(c.draft, c.answers)}`);
    console.log(`  ratio (token by token ÷ draft-and-verify): requests ${c.requestRatio.toFixed(1)}×, wall time ${c.timeRatio.toFixed(2)}×; identical text: ${c.identical ? "yes" : "NO"}`);
    if (!c.identical) process.exitCode = 1;
  }
  return cases;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run();
