/**
 * The workflow run's GitHub context, read from the runner's environment and event payload
 * (GITHUB_EVENT_PATH). The payload is data GitHub wrote, but fields a fork controls (branch
 * names, titles) are never used for anything but display.
 */
import { readFileSync } from "node:fs";
import { InputError } from "../errors";

export interface GitHubContext {
  eventName: string;
  owner: string;
  repo: string;
  /** REST base URL: GITHUB_API_URL (GitHub Enterprise Server) or api.github.com */
  apiUrl: string;
  serverUrl: string;
  /** the commit the check run is attached to: the PR head on pull requests, else GITHUB_SHA */
  headSha: string;
  /** set on pull_request / pull_request_target events */
  pullNumber?: number;
  /** the PR comes from another repository: its token is read-only on `pull_request` */
  isFork: boolean;
  runId?: string;
  workspace: string;
  /** link to this workflow run, for messages */
  runUrl?: string;
}

export const DEFAULT_API_URL = "https://api.github.com";
const PULL_REQUEST_EVENTS = new Set(["pull_request", "pull_request_target"]);
const SHA = /^[0-9a-f]{40}$/;

export function readContext(env: NodeJS.ProcessEnv = process.env): GitHubContext {
  const repository = env.GITHUB_REPOSITORY ?? "";
  const [owner, repo, ...rest] = repository.split("/");
  if (!owner || !repo || rest.length) {
    throw new InputError(`Invalid repository '${repository}'. Expected format {owner}/{repo}`, "GITHUB_REPOSITORY");
  }
  const eventName = env.GITHUB_EVENT_NAME ?? "";
  let payload: Record<string, any> = {};
  if (env.GITHUB_EVENT_PATH) {
    try {
      payload = JSON.parse(readFileSync(env.GITHUB_EVENT_PATH, "utf8"));
    } catch (err) {
      throw new InputError(`cannot read the event payload: ${(err as Error).message}`, "GITHUB_EVENT_PATH");
    }
  }
  const pr = PULL_REQUEST_EVENTS.has(eventName) ? payload.pull_request : undefined;
  const prHead = typeof pr?.head?.sha === "string" && SHA.test(pr.head.sha) ? (pr.head.sha as string) : undefined;
  const headSha = prHead ?? env.GITHUB_SHA ?? "";
  if (!SHA.test(headSha)) throw new InputError(`Invalid commit '${headSha}'. Expected a 40-hex sha`, "GITHUB_SHA");
  const pullNumber = typeof pr?.number === "number" && Number.isInteger(pr.number) && pr.number > 0 ? (pr.number as number) : undefined;
  const headRepo = pr?.head?.repo?.full_name;
  const isFork = pr !== undefined && (typeof headRepo !== "string" || headRepo.toLowerCase() !== repository.toLowerCase());
  const serverUrl = (env.GITHUB_SERVER_URL || "https://github.com").replace(/\/+$/, "");
  return {
    eventName,
    owner,
    repo,
    apiUrl: (env.GITHUB_API_URL || DEFAULT_API_URL).replace(/\/+$/, ""),
    serverUrl,
    headSha,
    pullNumber,
    isFork,
    runId: env.GITHUB_RUN_ID,
    workspace: env.GITHUB_WORKSPACE || process.cwd(),
    runUrl: env.GITHUB_RUN_ID ? `${serverUrl}/${owner}/${repo}/actions/runs/${env.GITHUB_RUN_ID}` : undefined,
  };
}

export function isPullRequestEvent(ctx: GitHubContext): boolean {
  return ctx.pullNumber !== undefined;
}
