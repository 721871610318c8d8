/**
 * The only caller of `octokit.rest.*`: check runs, the sticky PR comment, PR file lists.
 * Every method states the GitHub limit it respects; callers pass already-sized content.
 */
import type { OctokitClient } from "./octokit-client";

/** GitHub accepts at most 50 annotations per check-run request; more are sent in later updates. */
export const MAX_ANNOTATIONS_PER_REQUEST = 50;
/** "List pull request files" returns at most 3000 files in pages of up to 100. */
export const PR_FILES_PER_PAGE = 100;
export const MAX_PR_FILES = 3000;
export const COMMENTS_PER_PAGE = 100;

/** The message GitHub sends with a 403 when the token lacks a permission (fork PRs, missing `permissions:`). */
export const ERROR_NOT_ACCESSIBLE = "Resource not accessible by integration";
/** Same, for personal access tokens without the scope. */
export const ERROR_NOT_ACCESSIBLE_PAT = "Resource not accessible by personal access token";

export type CheckConclusion = "success" | "failure" | "neutral";
export type AnnotationLevel = "notice" | "warning" | "failure";

export interface CheckAnnotation {
  path: string;
  start_line: number;
  end_line: number;
  annotation_level: AnnotationLevel;
  title?: string;
  message: string;
}

export interface CheckOutput {
  title: string;
  summary: string;
  text?: string;
}

export interface RepoRef {
  owner: string;
  repo: string;
}

/** True when an Octokit error means "this token may not do that" rather than a fault. */
export function isPermissionError(err: unknown): boolean {
  const status = (err as { status?: unknown })?.status;
  const message = String((err as { message?: unknown })?.message ?? "");
  if (message.includes(ERROR_NOT_ACCESSIBLE) || message.includes(ERROR_NOT_ACCESSIBLE_PAT)) return true;
  // 403 without a rate-limit reason, or 401/404 for a token that cannot see the resource
  return status === 403 || status === 401;
}

export class GitHubHelper {
  constructor(
    private readonly octokit: OctokitClient,
    private readonly ref: RepoRef,
  ) {}

  async createCheckRun(name: string, headSha: string, output: CheckOutput, detailsUrl?: string): Promise<number> {
    const { data } = await this.octokit.rest.checks.create({
      ...this.ref,
      name,
      head_sha: headSha,
      status: "in_progress",
      started_at: new Date().toISOString(),
      output,
      ...(detailsUrl ? { details_url: detailsUrl } : {}),
    });
    return data.id;
  }

  /**
   * Complete the check run. Annotations go 50 per request: the first batch with the
   * completion, the rest in follow-up updates (GitHub appends them).
   */
  async completeCheckRun(checkRunId: number, conclusion: CheckConclusion, output: CheckOutput, annotations: CheckAnnotation[]): Promise<void> {
    const batches: CheckAnnotation[][] = [];
    for (let i = 0; i < annotations.length; i += MAX_ANNOTATIONS_PER_REQUEST) batches.push(annotations.slice(i, i + MAX_ANNOTATIONS_PER_REQUEST));
    await this.octokit.rest.checks.update({
      ...this.ref,
      check_run_id: checkRunId,
      status: "completed",
      conclusion,
      completed_at: new Date().toISOString(),
      output: { ...output, annotations: batches[0] ?? [] },
    });
    for (const batch of batches.slice(1)) {
      await this.octokit.rest.checks.update({ ...this.ref, check_run_id: checkRunId, output: { title: output.title, summary: output.summary, annotations: batch } });
    }
  }

  /** Paths of every file the pull request touches (renames: both names), paginated. */
  async listPullRequestFiles(pullNumber: number): Promise<string[]> {
    const files = await this.octokit.paginate(this.octokit.rest.pulls.listFiles, { ...this.ref, pull_number: pullNumber, per_page: PR_FILES_PER_PAGE });
    const paths: string[] = [];
    for (const f of files) {
      paths.push(f.filename);
      if (f.previous_filename) paths.push(f.previous_filename);
    }
    return paths;
  }

  /**
   * The login behind a personal access token (GET /user). An Actions or App installation
   * token may not call it (403): then undefined, and only bot comments are ours.
   */
  async viewerLogin(): Promise<string | undefined> {
    try {
      const { data } = await this.octokit.rest.users.getAuthenticated();
      return typeof data.login === "string" ? data.login : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The first comment written by us (a bot — the Actions token — or the token's own user)
   * whose body contains `marker`, across all pages. Anyone can paste the marker into their
   * own comment: we must not write our report into a comment someone else can edit.
   */
  async findComment(issueNumber: number, marker: string): Promise<{ id: number } | undefined> {
    const viewer = await this.viewerLogin();
    for await (const page of this.octokit.paginate.iterator(this.octokit.rest.issues.listComments, { ...this.ref, issue_number: issueNumber, per_page: COMMENTS_PER_PAGE })) {
      const ours = (c: (typeof page.data)[number]) => (viewer ? c.user?.login === viewer : c.user?.type === "Bot");
      const hit = page.data.find((c) => ours(c) && typeof c.body === "string" && c.body.includes(marker));
      if (hit) return { id: hit.id };
    }
    return undefined;
  }

  async createComment(issueNumber: number, body: string): Promise<number> {
    const { data } = await this.octokit.rest.issues.createComment({ ...this.ref, issue_number: issueNumber, body });
    return data.id;
  }

  async updateComment(commentId: number, body: string): Promise<void> {
    await this.octokit.rest.issues.updateComment({ ...this.ref, comment_id: commentId, body });
  }
}
