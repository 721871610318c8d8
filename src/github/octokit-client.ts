/**
 * The one place Octokit is configured: REST client + retry (5xx, network) + throttling
 * (primary and secondary rate limits), pointed at GITHUB_API_URL so GitHub Enterprise
 * Server works. Only github-helper.ts calls `octokit.rest.*`.
 */
import * as core from "@actions/core";
import { Octokit as Core } from "@octokit/rest";
import { retry } from "@octokit/plugin-retry";
import { throttling } from "@octokit/plugin-throttling";
import { VERSION } from "../version";

export const Octokit = Core.plugin(retry, throttling);
export type OctokitClient = InstanceType<typeof Octokit>;

/** Rate-limited requests are retried this many times before giving up (GitHub asks clients to back off, not hammer). */
const MAX_RATE_LIMIT_RETRIES = 2;

export function createOctokit(token: string, baseUrl: string): OctokitClient {
  return new Octokit({
    auth: token || undefined,
    baseUrl,
    userAgent: `delta-audit/${VERSION}`,
    log: { debug: core.debug, info: core.debug, warn: core.warning, error: core.debug },
    throttle: {
      onRateLimit: (retryAfter: number, options: { method: string; url: string }, _o: unknown, retryCount: number) => {
        core.warning(`GitHub rate limit hit on ${options.method} ${options.url}; retrying in ${retryAfter}s`);
        return retryCount < MAX_RATE_LIMIT_RETRIES;
      },
      onSecondaryRateLimit: (retryAfter: number, options: { method: string; url: string }, _o: unknown, retryCount: number) => {
        core.warning(`GitHub secondary rate limit hit on ${options.method} ${options.url}; retrying in ${retryAfter}s`);
        return retryCount < MAX_RATE_LIMIT_RETRIES;
      },
    },
  });
}
