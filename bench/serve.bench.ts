/**
 * Load test of `delta-audit serve` on a generated organism: N concurrent clients send a fixed
 * number of chat completions (bounded count and duration) to the server on 127.0.0.1; the
 * same requests are then sent one at a time. Reports requests/s, p50/p99 latency, failures and
 * lost requests for both, and the batched/sequential throughput ratio — in the same run, on
 * the same warm model.
 *
 * Run: `node --import tsx bench/serve.bench.ts` (or through `npm run bench`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadModel } from "../src/engine/index";
import { startOpenAIServer, type RunningServer } from "../src/serve/openai-server";
import { readAdapterModules } from "../src/engine/variants";
import { serveEngineFromModel } from "../src/serve/engine";
import { INTERROGATION_PROBES, ORDINARY_PROMPTS } from "../src/elicit/probes";

export const BENCH_ORGANISM_DIR = join(".cache", "bench", "organism-quirk");
/** Concurrent clients: four scans at the default backend concurrency of 4 sharing one server. */
export const DEFAULT_CLIENTS = 16;
export const DEFAULT_REQUESTS = 192;
/** Long enough to be a sentence, short enough to keep the bench to a minute on 2 cores. */
export const DEFAULT_MAX_TOKENS = 24;
/** Hard bound on each phase: the bench reports what finished instead of running on. */
export const DEFAULT_MAX_PHASE_MS = 120_000;

export interface PhaseResult {
  clients: number;
  /** requests sent */
  sent: number;
  ok: number;
  failed: number;
  /** sent but never answered (neither success nor an error status) — must be 0 */
  lost: number;
  seconds: number;
  requestsPerSecond: number;
  tokensPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** engine batches the server ran, and the largest */
  batches: number;
  maxBatch: number;
  /** the first failure's message, when any failed */
  firstError?: string;
}

export interface ServeBenchResult {
  organism: string;
  maxTokens: number;
  batched: PhaseResult;
  sequential: PhaseResult;
  /** batched requests/s ÷ sequential requests/s */
  speedup: number;
}

export interface ServeBenchOptions {
  clients?: number;
  requests?: number;
  maxTokens?: number;
  maxPhaseMs?: number;
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

async function prepareOrganism(): Promise<{ base: string; adapter: string }> {
  const { generateOrganism } = await import("../src/organisms/index");
  const out = BENCH_ORGANISM_DIR;
  if (!existsSync(join(out, "base", "config.json"))) await generateOrganism({ kind: "quirk", outDir: out, seed: 1 });
  return { base: join(out, "base"), adapter: join(out, "adapter") };
}

function prompts(n: number): string[] {
  const all = [...INTERROGATION_PROBES, ...ORDINARY_PROMPTS].map((p) => p.prompt);
  return Array.from({ length: n }, (_, i) => all[i % all.length]!);
}

async function phase(server: RunningServer, clients: number, texts: string[], variantOf: (i: number) => string, maxTokens: number, maxMs: number): Promise<PhaseResult> {
  const before = server.stats();
  const latencies: number[] = [];
  let next = 0;
  let ok = 0;
  let failed = 0;
  let sent = 0;
  let tokens = 0;
  let firstError: string | undefined;
  const t0 = performance.now();
  const deadline = t0 + maxMs;
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= texts.length || performance.now() > deadline) return;
      sent++;
      const start = performance.now();
      try {
        const res = await fetch(`${server.url}/v1/chat/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ model: variantOf(i), messages: [{ role: "user", content: texts[i] }], max_tokens: maxTokens, temperature: 0, seed: i }),
          signal: AbortSignal.timeout(Math.max(1, Math.round(deadline + 30_000 - performance.now()))),
        });
        const body = (await res.json()) as { usage?: { completion_tokens?: number }; error?: { message?: string } };
        if (res.ok) {
          ok++;
          tokens += body.usage?.completion_tokens ?? 0;
          latencies.push(performance.now() - start);
        } else {
          failed++;
          firstError ??= `HTTP ${res.status}: ${body.error?.message}`;
        }
      } catch (err) {
        failed++;
        firstError ??= String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, worker));
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const after = server.stats();
  return {
    clients,
    sent,
    ok,
    failed,
    lost: sent - ok - failed,
    seconds,
    requestsPerSecond: ok / seconds,
    tokensPerSecond: tokens / seconds,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    batches: after.batches - before.batches,
    maxBatch: after.maxBatch,
    firstError,
  };
}

/** Measure the load test without printing (tests and other harnesses call this). */
export async function measure(opts: ServeBenchOptions = {}): Promise<ServeBenchResult> {
  const quick = process.env.BENCH_QUICK === "1";
  const clients = opts.clients ?? (quick ? 4 : DEFAULT_CLIENTS);
  const requests = opts.requests ?? (quick ? 24 : DEFAULT_REQUESTS);
  const maxTokens = opts.maxTokens ?? DEFAULT_MAX_TOKENS;
  const maxMs = opts.maxPhaseMs ?? DEFAULT_MAX_PHASE_MS;
  const org = await prepareOrganism();
  const model = await loadModel(org.base);
  model.addLoraVariant("full", await readAdapterModules(org.base, org.adapter));
  model.addLoraVariant("rank1", await readAdapterModules(org.base, org.adapter, { rank: 1, quiet: true }));
  const server = await startOpenAIServer(serveEngineFromModel(model), { port: 0 });
  try {
    const texts = prompts(requests);
    // the three variants in blocks, the way a scan sends them (elicitation runs variant by variant)
    const variants = ["base", "full", "rank1"];
    const block = Math.ceil(texts.length / variants.length);
    const variantOf = (i: number) => variants[Math.min(variants.length - 1, Math.floor(i / block))]!;
    // warm-up: build both ONNX sessions (plain and LoRA) before timing
    await phase(server, 2, texts.slice(0, 2), variantOf, 2, maxMs);
    const batched = await phase(server, clients, texts, variantOf, maxTokens, maxMs);
    const sequential = await phase(server, 1, texts, variantOf, maxTokens, maxMs);
    return { organism: org.adapter, maxTokens, batched, sequential, speedup: batched.requestsPerSecond / sequential.requestsPerSecond };
  } finally {
    await server.close(5_000);
    await model.close();
  }
}

function show(name: string, p: PhaseResult): string {
  return (
    `${name.padEnd(10)} clients ${String(p.clients).padStart(3)}  ok ${p.ok}/${p.sent}  failed ${p.failed}  lost ${p.lost}  ` +
    `${p.requestsPerSecond.toFixed(2)} req/s  ${p.tokensPerSecond.toFixed(1)} tok/s  p50 ${p.p50Ms.toFixed(0)} ms  p99 ${p.p99Ms.toFixed(0)} ms  ` +
    `batches ${p.batches} (max ${p.maxBatch})  ${p.seconds.toFixed(1)} s` +
    (p.firstError ? `\n           first failure: ${p.firstError}` : "")
  );
}

/** `npm run bench` entry: measure, print the comparison, flag lost or failed requests. */
export async function run(opts: ServeBenchOptions = {}): Promise<ServeBenchResult> {
  const r = await measure(opts);
  console.log(`serve load test on ${r.organism}, max_tokens ${r.maxTokens}`);
  console.log(show("batched", r.batched));
  console.log(show("sequential", r.sequential));
  console.log(`batched/sequential throughput: ${r.speedup.toFixed(2)}×`);
  if (r.batched.lost + r.sequential.lost + r.batched.failed + r.sequential.failed > 0) {
    console.error("requests were lost or failed");
    process.exitCode = 1;
  }
  return r;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await run();
