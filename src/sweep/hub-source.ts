/**
 * What a sweep asks the Hugging Face Hub at plan time, through @huggingface/hub with an
 * injectable hub URL, token and `fetch` (as io/hub.ts does; tests answer from a local server):
 * the models of an author or organisation (listModels, following its pagination), a revision's
 * commit sha (modelInfo), and an adapter's adapter_config.json (its base_model_name_or_path).
 *
 * Access problems of one model (401, 403, 404) are that model's: the caller records it as
 * skipped with the reason. Anything else (the Hub unreachable, a 5xx) stops the plan, exit 3:
 * without the listing there is no telling what to audit.
 */
import { downloadFile, listModels, modelInfo } from "@huggingface/hub";
import { BackendError, InputError } from "../errors";
import { DEFAULT_HUB_URL, looksLikeHubId, parseHubId, type ResolveHubOptions } from "../io/hub";
import type { HubSource } from "./registry";

/** The Hub settings a plan uses: io/hub.ts's, as the commands read them from HF_*. */
export type HubAccess = Pick<ResolveHubOptions, "hubUrl" | "accessToken" | "fetch" | "offline">;

const COMMIT_SHA = /^[0-9a-f]{40}$/;
/** adapter_config.json is a few hundred bytes; a megabyte is not one. */
const MAX_ADAPTER_CONFIG_BYTES = 1 << 20;
const ADAPTER_CONFIG = "adapter_config.json";

/** One model a Hub source found. */
export interface HubListing {
  /** `org/name` */
  repo: string;
  sha: string;
  /** lora: the repository holds adapter_config.json (or says it is a peft library model) */
  kind: "lora" | "full";
  /** the model card's base_model, when it names one Hub id */
  cardBase?: string;
  /** present when the repository cannot be audited as found */
  problem?: string;
}

/** A model's access problem, worded for the index: the reason it was skipped. */
export class HubAccessProblem extends Error {}

function common(access: HubAccess) {
  if (access.offline) throw new InputError("HF_HUB_OFFLINE is set, but a Hub source or Hub id needs the Hub to find revisions", "HF_HUB_OFFLINE");
  return {
    hubUrl: (access.hubUrl ?? DEFAULT_HUB_URL).replace(/\/+$/, ""),
    ...(access.fetch ? { fetch: access.fetch } : {}),
    ...(access.accessToken ? { accessToken: access.accessToken } : {}),
  };
}

function statusOf(err: unknown): number | undefined {
  const s = (err as { statusCode?: unknown })?.statusCode;
  return typeof s === "number" ? s : undefined;
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!.slice(0, 300);
}

/** 401/403/404 → HubAccessProblem (the model's); other failures → BackendError (the run's). */
function classify(err: unknown, what: string): Error {
  if (err instanceof InputError || err instanceof BackendError || err instanceof HubAccessProblem) return err;
  const status = statusOf(err);
  if (status === 401 || status === 403) return new HubAccessProblem(`${what} needs access: set HF_TOKEN to a token that can read it (HTTP ${status})`);
  if (status === 404) return new HubAccessProblem(`${what} was not found on the Hub (HTTP 404)`);
  if (err instanceof TypeError && /access token/i.test(err.message)) return new InputError(firstLine(err), "HF_TOKEN");
  return new BackendError(`the Hub failed on ${what}: ${firstLine(err)}`, { cause: err });
}

/** `*` any run of characters, `?` one; the whole name must match. */
export function nameGlob(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\-]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".");
  return new RegExp(`^${body}$`, "i");
}

function baseModelsOf(card: unknown, tags: readonly string[]): string[] {
  const out: string[] = [];
  const b = (card as { base_model?: unknown } | undefined)?.base_model;
  for (const x of Array.isArray(b) ? b : [b]) if (typeof x === "string") out.push(x);
  // the Hub tags fine-tunes `base_model:<id>` and `base_model:<relation>:<id>` (adapter, finetune, quantized, merge)
  for (const t of tags) {
    const m = /^base_model:(?:(?:adapter|finetune|quantized|merge):)?(.+)$/.exec(t);
    if (m) out.push(m[1]!);
  }
  return out;
}

/**
 * The models of one Hub source, filtered as the registry asks (the Hub filters the listing by
 * author, search and library; the name glob, the library and the base model are checked here
 * as well, so a Hub that ignores a filter cannot widen the sweep).
 */
export async function listHubSource(src: HubSource, access: HubAccess): Promise<HubListing[]> {
  const c = common(access);
  const match = src.match ? nameGlob(src.match) : undefined;
  const out: HubListing[] = [];
  try {
    const listing = listModels({
      ...c,
      search: { owner: src.author, ...(src.search ? { query: src.search } : {}), ...(src.library ? { tags: [src.library] } : {}) },
      additionalFields: ["sha", "library_name", "tags", "cardData", "filePaths"],
      limit: src.limit,
    });
    for await (const item of listing) {
      const repo = String(item.name);
      const [owner, name] = repo.split("/");
      if (!owner || !name || owner.toLowerCase() !== src.author.toLowerCase() || !looksLikeHubId(repo)) continue;
      if (match && !match.test(name)) continue;
      const tags = Array.isArray(item.tags) ? item.tags.filter((t): t is string => typeof t === "string") : [];
      const library = typeof item.library_name === "string" ? item.library_name : undefined;
      if (src.library && library !== src.library && !tags.includes(src.library)) continue;
      const bases = baseModelsOf(item.cardData, tags);
      if (src.baseModel && !bases.some((b) => b.toLowerCase() === src.baseModel!.toLowerCase())) continue;
      const files = Array.isArray(item.filePaths) ? item.filePaths : undefined;
      const isAdapter = files ? files.includes(ADAPTER_CONFIG) : library === "peft" || tags.includes("peft");
      const entry: HubListing = { repo, sha: "", kind: isAdapter ? "lora" : "full" };
      const cardBase = bases.find((b) => looksLikeHubId(b) && !b.includes("@"));
      if (cardBase) entry.cardBase = cardBase;
      if (files && !isAdapter && !(files.includes("config.json") && files.some((f) => f.endsWith(".safetensors")))) {
        entry.problem = "neither a PEFT adapter (adapter_config.json) nor a safetensors checkpoint (config.json + *.safetensors)";
      }
      if (typeof item.sha === "string" && COMMIT_SHA.test(item.sha)) entry.sha = item.sha;
      else {
        try {
          entry.sha = await hubCommit(repo, access);
        } catch (e) {
          if (!(e instanceof HubAccessProblem)) throw e;
          entry.problem = e.message;
        }
      }
      out.push(entry);
    }
  } catch (err) {
    const e = classify(err, `the models of '${src.author}'`);
    // the listing itself is the source's: a 401 there is the token's problem for the whole sweep
    if (e instanceof HubAccessProblem) throw new InputError(e.message, `${src.path}.author`);
    throw e;
  }
  return out;
}

/** The commit sha a Hub id (`org/name[@revision]`) points at now; a commit sha is its own. */
export async function hubCommit(spec: string, access: HubAccess): Promise<string> {
  const { repo, revision } = parseHubId(spec);
  if (COMMIT_SHA.test(revision)) return revision;
  try {
    const info = await modelInfo({ ...common(access), name: repo, revision, additionalFields: ["sha"] });
    const sha = (info as { sha?: unknown }).sha;
    if (typeof sha !== "string" || !COMMIT_SHA.test(sha)) throw new BackendError(`the Hub returned no commit sha for '${spec}'`);
    return sha;
  } catch (err) {
    throw classify(err, `'${spec}'`);
  }
}

/** An adapter's base_model_name_or_path at a commit, when it names a Hub id; undefined when it names none. */
export async function hubAdapterBase(repo: string, sha: string, access: HubAccess): Promise<string | undefined> {
  let text: string;
  try {
    const blob = await downloadFile({ ...common(access), repo: { type: "model", name: repo }, path: ADAPTER_CONFIG, revision: sha });
    if (!blob) throw new HubAccessProblem(`'${repo}' has no ${ADAPTER_CONFIG}`);
    if (blob.size > MAX_ADAPTER_CONFIG_BYTES) throw new HubAccessProblem(`'${repo}' ${ADAPTER_CONFIG} is ${blob.size} bytes, not an adapter config`);
    text = await blob.text();
  } catch (err) {
    throw classify(err, `'${repo}' ${ADAPTER_CONFIG}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new HubAccessProblem(`'${repo}' ${ADAPTER_CONFIG} is not valid JSON`);
  }
  const b = (raw as { base_model_name_or_path?: unknown } | null)?.base_model_name_or_path;
  return typeof b === "string" && looksLikeHubId(b.trim()) ? b.trim() : undefined;
}
