/**
 * Low-precision engine benchmark (issue 14), every ratio measured in the same run:
 *  - a Llama-family checkpoint of the chosen shape (bench/llama-checkpoint.ts: BF16 on disk,
 *    random weights, rank-16 LoRA on all seven projections): peak RSS of a `generate` on the
 *    LoRA variant at int8; batch-1 decode tokens/s against the memory-bandwidth roofline on the
 *    bytes actually read per token (int8 linears and head, the float32 LoRA factors, the KV
 *    cache read at that step), with the read bandwidth of every core measured here; batch 8
 *    over batch 1 tokens/s; the default suite's projected scan time;
 *  - the Qwen2.5-0.5B-shaped checkpoint of engine.bench.ts: int8 against f32 decode per token.
 * Each measurement runs in a child process, so its peak RSS is its own.
 *
 *   node --expose-gc --import tsx bench/precision.bench.ts [--shape 8b|3b|1b|small|tiny] [--skip-qwen]
 *   BENCH_SHAPE=8b npm run bench -- precision
 *
 * Default shape: small (tiny with BENCH_QUICK=1). The 8b shape writes ~16 GB and needs ~10 GB
 * of RAM: run it on a machine that has them.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { measureReadBandwidth } from "./bandwidth";
import { LORA_RANK, SHAPES, configJson, ensureLlamaCheckpoint, loraParams } from "./llama-checkpoint";

const QUICK = process.env.BENCH_QUICK === "1";
const here = fileURLToPath(import.meta.url);

/** Targets from issue 14. */
export const TARGETS = Object.freeze({ peakRssBytes8b: 12e9, rooflineBatch1: 0.5, batch8OverBatch1: 4, int8OverF32Qwen: 2 });

const PROMPT_TOKENS = 32;
const DECODE_STEPS = 16;
const PREFILL_TOKENS = 128;

function argValue(name: string): string | undefined {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
}

function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

/** Run this file in a child with the given mode; its last stdout line is JSON. */
function child<T>(args: string[]): T {
  const r = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", here, ...args], { encoding: "utf8", maxBuffer: 1 << 26, stdio: ["ignore", "pipe", "inherit"] });
  const last = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0) throw new Error(`child ${args.join(" ")} failed (${r.status})`);
  return JSON.parse(last) as T;
}

// ------------------------------------------------------------------ children

/** The read-bandwidth probe (bench/bandwidth.ts: every core, the best partition). */
async function bandwidth(): Promise<number> {
  return (await measureReadBandwidth(QUICK ? 256 * 2 ** 20 : 2 ** 30)).bytesPerSecond;
}
interface DecodeMeasure {
  loadSeconds: number;
  /** VmHWM after load + one generate (the `generate` command's work) */
  generatePeakRss: number;
  stepSeconds1: number;
  stepSeconds8: number;
  prefillTokensPerSecond: number;
  /** KV tokens in the cache during the batch-1 steps (mean) */
  meanContext: number;
  precision: string;
}

const median = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;

/** Load (with the LoRA variant when given), generate once, then time decode steps at batch 1 and 8. */
async function decodeChild(model: string, adapter: string | undefined, precision: "f32" | "int8" | "int4"): Promise<DecodeMeasure> {
  const { loadSubject } = await import("../src/engine/variants");
  const t0 = performance.now();
  const m = await loadSubject({ model, adapter, precision, quiet: true });
  const loadSeconds = (performance.now() - t0) / 1000;
  const V = m.config.vocabSize;
  const variant = adapter ? "full" : "base";
  const prompt = (k: number, n: number) => Array.from({ length: n }, (_, i) => 3 + ((i * 7919 + k * 104729) % (V - 3)));
  await m.generate([{ promptIds: prompt(0, PROMPT_TOKENS), sampling: { maxNewTokens: PROMPT_TOKENS, temperature: 0, topP: 1, seed: 0 } }], variant);
  const generatePeakRss = peakRssBytes();
  const steps = async (batch: number) => {
    const s = await m.openStream(Array.from({ length: batch }, (_, k) => prompt(k + 1, PROMPT_TOKENS)), variant);
    const t: number[] = [];
    for (let i = 0; i < DECODE_STEPS; i++) {
      const t1 = performance.now();
      await s.next(Array.from({ length: batch }, (_, k) => 3 + ((k * 131 + i * 17) % (V - 3))));
      t.push((performance.now() - t1) / 1000);
    }
    return median(t);
  };
  const stepSeconds1 = await steps(1);
  const stepSeconds8 = await steps(8);
  const t2 = performance.now();
  await m.openStream([prompt(99, PREFILL_TOKENS)], variant);
  const prefillTokensPerSecond = PREFILL_TOKENS / ((performance.now() - t2) / 1000);
  await m.close();
  return { loadSeconds, generatePeakRss, stepSeconds1, stepSeconds8, prefillTokensPerSecond, meanContext: PROMPT_TOKENS + DECODE_STEPS / 2, precision };
}

// ------------------------------------------------------------------ the run

export interface PrecisionBenchResult {
  shape: string;
  bandwidthBytesPerS: number;
  peakRssBytes: number;
  bytesPerToken: number;
  rooflineRatio: number;
  batch8OverBatch1: number;
  projectedScanSeconds: number;
  qwenInt8OverF32?: number;
}

export async function run(): Promise<PrecisionBenchResult> {
  const shape = argValue("--shape") ?? process.env.BENCH_SHAPE ?? (QUICK ? "tiny" : "small");
  const s = SHAPES[shape];
  if (!s) throw new Error(`unknown --shape '${shape}' (have ${Object.keys(SHAPES).join(", ")})`);
  const dirs = await ensureLlamaCheckpoint(shape);
  const { parseModelConfig } = await import("../src/engine/config");
  const { headBytes, layerBytes } = await import("../src/engine/estimate");
  const { engineWorkload } = await import("../src/scan");
  const { defaultConfig } = await import("../src/config");
  const cfg = parseModelConfig(configJson(s));

  // bandwidth before and after the decode child, the higher taken: a neighbour slowing memory
  // during one probe must not flatter the roofline ratio
  const bwBefore = child<number>(["--child", "bandwidth"]);
  const g = child<DecodeMeasure>(["--child", "decode", dirs.base, dirs.lora, "int8"]);
  const bw = Math.max(bwBefore, child<number>(["--child", "bandwidth"]));

  // bytes the batch-1 step reads: int8 linears and head, float32 LoRA factors, the KV cache at that context, one embedding row
  const weights = cfg.numLayers * layerBytes(cfg, "int8") + headBytes(cfg, "int8");
  const lora = 4 * loraParams(s);
  const kv = 2 * cfg.numLayers * cfg.numKvHeads * cfg.headDim * 4 * g.meanContext;
  const bytesPerToken = weights + lora + kv + 2 * cfg.hiddenSize;
  const rooflineStep = bytesPerToken / bw;
  const tok1 = 1 / g.stepSeconds1;
  const tok8 = 8 / g.stepSeconds8;

  // the default suite: every probe on base, full, rank1 (+ contrast), batches of 8, up to max-tokens steps each
  const work = engineWorkload(defaultConfig());
  const runs = work.variantRuns ?? 3;
  const decodeS = runs * (work.steps ?? 0) * g.stepSeconds8;
  const prefillS = (runs * (work.promptTokens ?? 0)) / g.prefillTokensPerSecond;
  const cores = availableParallelism();
  const projected = g.loadSeconds + decodeS + prefillS;
  // on 4 cores: decode stays bound by memory bandwidth; prefill (compute-bound) scales with cores
  const projected4 = g.loadSeconds + decodeS + (prefillS * cores) / 4;

  let qwen: { f32: DecodeMeasure; int8: DecodeMeasure } | undefined;
  if (!process.argv.includes("--skip-qwen") && !QUICK) {
    const { BENCH_DIR } = await import("./engine.bench");
    if (!existsSync(join(BENCH_DIR, "model.safetensors"))) {
      const r = spawnSync(process.execPath, ["--import", "tsx", join(here, "..", "engine.bench.ts"), "--generate"], { stdio: "inherit" });
      if (r.status !== 0) throw new Error("generating the Qwen2.5-0.5B-shaped checkpoint failed");
    }
    qwen = { f32: child<DecodeMeasure>(["--child", "decode", BENCH_DIR, "-", "f32"]), int8: child<DecodeMeasure>(["--child", "decode", BENCH_DIR, "-", "int8"]) };
  }

  const gb = (b: number) => (b >= 1e8 ? `${(b / 1e9).toFixed(2)} GB` : `${(b / 1e6).toFixed(2)} MB`);
  const ok = (pass: boolean) => (pass ? "ok" : "BELOW TARGET");
  const res: PrecisionBenchResult = {
    shape,
    bandwidthBytesPerS: bw,
    peakRssBytes: g.generatePeakRss,
    bytesPerToken,
    rooflineRatio: rooflineStep / g.stepSeconds1,
    batch8OverBatch1: tok8 / tok1,
    projectedScanSeconds: projected,
    qwenInt8OverF32: qwen ? qwen.f32.stepSeconds1 / qwen.int8.stepSeconds1 : undefined,
  };
  console.log(`precision bench: llama ${shape}-shaped (${cfg.numLayers} layers, hidden ${cfg.hiddenSize}), rank-${LORA_RANK} LoRA on all 7 projections, int8, ${cores} cores`);
  console.log(`  read bandwidth (max b/a)  : ${(bw / 1e9).toFixed(2)} GB/s`);
  console.log(`  load (stream + quantize)  : ${g.loadSeconds.toFixed(1)} s`);
  console.log(`  peak RSS of generate      : ${gb(g.generatePeakRss)}${shape === "8b" ? ` (target ≤ ${gb(TARGETS.peakRssBytes8b)}) ${ok(g.generatePeakRss <= TARGETS.peakRssBytes8b)}` : " (the ≤ 12 GB target applies to --shape 8b)"}`);
  console.log(`  bytes read per token      : ${gb(bytesPerToken)} (int8 weights ${gb(weights)}, LoRA f32 ${gb(lora)}, KV ${gb(kv)}) → roofline ${(bw / bytesPerToken).toFixed(1)} tok/s`);
  console.log(`  decode batch 1            : ${tok1.toFixed(2)} tok/s (step ${(g.stepSeconds1 * 1000).toFixed(1)} ms)`);
  console.log(`  decode batch 8            : ${tok8.toFixed(2)} tok/s`);
  console.log(`  prefill                   : ${g.prefillTokensPerSecond.toFixed(1)} tok/s (${PREFILL_TOKENS} tokens)`);
  // the issue's decode targets are for the 8B shape: a small model's step is dominated by per-run overheads, not bytes
  const target = (text: string, met: boolean) => (shape === "8b" ? `(target ${text}) ${ok(met)}` : `(the ${text} target applies to --shape 8b)`);
  console.log(`  roofline ratio b=1        : ${res.rooflineRatio.toFixed(2)} ${target(`≥ ${TARGETS.rooflineBatch1}`, res.rooflineRatio >= TARGETS.rooflineBatch1)}`);
  console.log(`  batch 8 / batch 1         : ${res.batch8OverBatch1.toFixed(2)}× ${target(`≥ ${TARGETS.batch8OverBatch1}`, res.batch8OverBatch1 >= TARGETS.batch8OverBatch1)}`);
  console.log(`  default-suite scan        : ${runs} variant runs × ${work.steps} steps at batch ${work.batch}, ~${work.promptTokens} prompt tokens each → ${(projected / 60).toFixed(1)} min here, ~${(projected4 / 60).toFixed(1)} min projected on 4 cores (delta pass not included)`);
  if (qwen) {
    console.log(`  Qwen2.5-0.5B f32 decode   : ${(qwen.f32.stepSeconds1 * 1000).toFixed(1)} ms/token (peak ${gb(qwen.f32.generatePeakRss)})`);
    console.log(`  Qwen2.5-0.5B int8 decode  : ${(qwen.int8.stepSeconds1 * 1000).toFixed(1)} ms/token (peak ${gb(qwen.int8.generatePeakRss)})`);
    console.log(`  int8 / f32 speed          : ${res.qwenInt8OverF32!.toFixed(2)}× (target ≥ ${TARGETS.int8OverF32Qwen}) ${ok(res.qwenInt8OverF32! >= TARGETS.int8OverF32Qwen)}`);
  }
  return res;
}

if (process.argv[1] && here === process.argv[1]) {
  const mode = argValue("--child");
  if (mode === "bandwidth") console.log(JSON.stringify(await bandwidth()));
  else if (mode === "decode") {
    const at = process.argv.indexOf("--child");
    const [model, adapter, precision] = process.argv.slice(at + 2, at + 5) as [string, string, "f32" | "int8" | "int4"];
    console.log(JSON.stringify(await decodeChild(model, adapter === "-" ? undefined : adapter, precision)));
  } else await run();
}
