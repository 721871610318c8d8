/**
 * A GitHub Actions workflow file of this repository (.github/workflows/), read with the `yaml`
 * package as GitHub reads it: the fields the workflow tests look at, typed once.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";

export interface WorkflowStep {
  id?: string;
  name?: string;
  if?: string;
  uses?: string;
  run?: string;
  "working-directory"?: string;
  with?: Record<string, string | boolean | number>;
  env?: Record<string, string>;
}

export interface WorkflowJob {
  needs?: string | string[];
  if?: string;
  permissions?: Record<string, string>;
  outputs?: Record<string, string>;
  strategy?: { "fail-fast"?: boolean; "max-parallel"?: number; matrix?: string };
  steps: WorkflowStep[];
}

export interface WorkflowFile {
  on: {
    push?: { tags?: string[]; branches?: string[] };
    schedule?: Array<{ cron: string }>;
    workflow_dispatch?: { inputs?: Record<string, { type?: string; default?: unknown }> };
  };
  permissions?: Record<string, string>;
  concurrency?: { group?: string; "cancel-in-progress"?: boolean };
  env: Record<string, string>;
  jobs: Record<string, WorkflowJob>;
}

const root = fileURLToPath(new URL("../..", import.meta.url));

/** .github/workflows/<file>, parsed (`env` is {} when the file sets none). */
export function readWorkflow(file: string): WorkflowFile {
  const w = parse(readFileSync(join(root, ".github", "workflows", file), "utf8")) as WorkflowFile;
  return { ...w, env: w.env ?? {} };
}
