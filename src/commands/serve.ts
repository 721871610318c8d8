/**
 * `delta-audit serve`: the embedded engine as an OpenAI-compatible server, so a CPU runner can
 * serve a small model to several jobs and the `openai` backend can be tested end to end.
 *
 *   delta-audit serve --model DIR [--adapter NAME=DIR[@rankK] ...] [--finetuned NAME=DIR[@rankK] ...]
 *                     [--port P] [--host 127.0.0.1]
 *
 * The base model is served as `base`; each adapter or fine-tune under its NAME. `@rankK` serves
 * the adapter (or the fine-tune's ΔW) truncated to rank K — the audit's `rank1` variant.
 */
import type { Command } from "commander";
import { isAbsolute, resolve } from "node:path";
import { InputError } from "../errors";
import { log } from "../progress";
import { DEVICES } from "../linalg/device";
import { requireDevice } from "../linalg/ort";
import { choiceFlag, integerFlag, type Bounds } from "../validate";
import { DEFAULT_MAX_BATCH, DEFAULT_MAX_TOKENS_LIMIT, SHUTDOWN_GRACE_MS, startOpenAIServer } from "../serve/openai-server";
import { parseVariantSpec, serveEngineFromModel } from "../serve/engine";
import { resolveModelRef } from "../io/model-ref";
import { PRECISION_CHOICES } from "../engine/precision";

/** vLLM's default port, so client configs carry over. */
export const DEFAULT_PORT = 8000;
/** The API key for clients, when set (kept out of argv so it does not show in `ps`). */
export const SERVE_API_KEY_ENV = "DELTA_AUDIT_SERVE_API_KEY";
/** 0 asks the system for any free port. */
const PORT: Bounds = { min: 0, max: 65535, expected: "a port number 0-65535" };
const POSITIVE: Bounds = { min: 1, max: Number.MAX_SAFE_INTEGER, expected: "a positive integer" };

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

interface ServeFlags {
  model: string;
  adapter: string[];
  finetuned: string[];
  port: string;
  host: string;
  device: string;
  maxTokens: string;
  maxBatch: string;
  runtimeAdapters?: boolean;
  precision?: string;
}

export function register(program: Command): void {
  program
    .command("serve")
    .description("serve the embedded engine as an OpenAI-compatible server (base + adapters by name)")
    .requiredOption("--model <dir|id>", "base model checkpoint folder or Hub id org/name[@rev] (served as 'base')")
    .option("--adapter <name=dir[@rankK]>", "LoRA adapter (folder or Hub id) served as NAME; @rankK truncates it to rank K (repeatable)", (v: string, acc: string[]) => [...acc, v], [])
    .option("--finetuned <name=dir[@rankK]>", "full fine-tuned checkpoint (folder or Hub id) served as NAME; @rankK serves its ΔW truncated to rank K (repeatable)", (v: string, acc: string[]) => [...acc, v], [])
    .option("--port <p>", "port (0 = any free port)", String(DEFAULT_PORT))
    .option("--host <addr>", "address to bind", "127.0.0.1")
    .option("--device <cpu|cuda>", "where the engine runs", "cpu")
    .option("--precision <p>", "how base weights are stored: auto (default: by free memory and model size), f32, bf16, int8 or int4")
    .option("--max-tokens <n>", "largest max_tokens a request may ask for", String(DEFAULT_MAX_TOKENS_LIMIT))
    .option("--max-batch <n>", "most requests decoding at once (the KV cache's memory grows with them)", String(DEFAULT_MAX_BATCH))
    .option("--runtime-adapters", "allow POST /v1/load_lora_adapter (on by default when bound to loopback)")
    .action(async (flags: ServeFlags) => {
      const port = integerFlag(flags.port, "--port", PORT);
      const device = choiceFlag(flags.device, "--device", DEVICES);
      const precisionChoice = choiceFlag(flags.precision, "--precision", PRECISION_CHOICES);
      const maxTokensLimit = integerFlag(flags.maxTokens, "--max-tokens", POSITIVE);
      const maxBatch = integerFlag(flags.maxBatch, "--max-batch", POSITIVE);
      const adapters = flags.adapter.map((v) => parseVariantSpec(v, "--adapter"));
      const finetuned = flags.finetuned.map((v) => parseVariantSpec(v, "--finetuned"));
      const names = [...adapters, ...finetuned].map((s) => s.name);
      const dup = names.find((n, i) => names.indexOf(n) !== i);
      if (dup) throw new InputError(`variant name '${dup}' is given twice`, "--adapter/--finetuned");
      const loopback = LOOPBACK.has(flags.host);
      // runtime loading reads any folder the server can see: only by default on loopback
      const runtimeAdapters = flags.runtimeAdapters ?? loopback;
      if (!loopback) log(`serve: binding ${flags.host}: the server is reachable from other machines${process.env[SERVE_API_KEY_ENV] ? "" : ` and has no API key (set ${SERVE_API_KEY_ENV})`}`);

      // every model argument is a folder or a Hub id (io/model-ref.ts), fetched before anything loads
      requireDevice(device);
      const base = await resolveModelRef(flags.model, { what: "--model" });
      for (const v of adapters) v.dir = (await resolveModelRef(v.dir, { what: `--adapter ${v.name}` })).dir;
      for (const v of finetuned) v.dir = (await resolveModelRef(v.dir, { what: `--finetuned ${v.name}` })).dir;

      const { loadModel } = await import("../engine/index");
      const { addFinetunedVariant, readAdapterModules, readFinetuneLowRank } = await import("../engine/variants");
      const { decideSubjectPrecision, DEFAULT_WORKLOAD } = await import("../engine/subject-precision");
      // every variant runs on one base at this precision; the variants' factors (or a fine-tune's
      // copy) and the KV cache of --max-batch rows are counted
      const served = [...adapters.map((a) => ({ kind: "adapter" as const, dir: a.dir, rank: a.rank })), ...finetuned.map((f) => ({ kind: "finetuned" as const, dir: f.dir, rank: f.rank }))];
      const { precision } = await decideSubjectPrecision({ model: base.dir, precision: precisionChoice, device, served, workload: { ...DEFAULT_WORKLOAD, batch: maxBatch } });
      log(`serve: loading ${base.label} at ${precision}`);
      const model = await loadModel(base.dir, { device, precision });
      void model.tokenizer; // fail now (exit 2) when the folder has no tokenizer
      for (const a of adapters) {
        log(`serve: adapter ${a.name} from ${a.dir}${a.rank ? ` truncated to rank ${a.rank}` : ""}`);
        model.addLoraVariant(a.name, await readAdapterModules(base.dir, a.dir, { rank: a.rank, quiet: true }));
      }
      for (const f of finetuned) {
        if (f.rank !== undefined) {
          log(`serve: fine-tune ${f.name} from ${f.dir}, ΔW truncated to rank ${f.rank}`);
          model.addLoraVariant(f.name, await readFinetuneLowRank(base.dir, f.dir, f.rank, { quiet: true }));
        } else {
          log(`serve: fine-tune ${f.name} from ${f.dir}`);
          await addFinetunedVariant(model, f.name, f.dir);
        }
      }

      const apiKey = process.env[SERVE_API_KEY_ENV] || undefined;
      const server = await startOpenAIServer(serveEngineFromModel(model), {
        host: flags.host,
        port,
        // a Hub model is named {org}/{name}@{commit}, as every report names it
        modelId: base.hub ? base.label : isAbsolute(base.dir) ? base.dir : resolve(base.dir),
        maxTokensLimit,
        maxBatch,
        apiKey,
        runtimeAdapters,
        log: (line) => log(`serve: ${line}`),
      });
      // the URL goes to stdout, alone on its line, so scripts and tests can read it
      process.stdout.write(`listening on ${server.url}\n`);
      log(`serve: variants ${model.variants().join(", ")}; OpenAI base URL ${server.url}/v1`);

      await new Promise<void>((done) => {
        let stopping = false;
        const stop = (sig: string) => {
          if (stopping) {
            log(`serve: ${sig} again, exiting now`);
            process.exit(130);
          }
          stopping = true;
          log(`serve: ${sig}: finishing queued requests (up to ${SHUTDOWN_GRACE_MS / 1000}s), then stopping`);
          void server
            .close()
            .then(() => model.close())
            .finally(() => {
              process.off("SIGINT", onInt);
              process.off("SIGTERM", onTerm);
              done();
            });
        };
        const onInt = () => stop("SIGINT");
        const onTerm = () => stop("SIGTERM");
        process.on("SIGINT", onInt);
        process.on("SIGTERM", onTerm);
      });
    });
}
