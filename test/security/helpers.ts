/** Shared fixtures for the hostile-input tests: the real CLI as a child process, a generated organism, file snapshots. */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

export const root = new URL("../..", import.meta.url).pathname;

export interface CliRun {
  status: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run `delta-audit …` (the built bin) with a hard wall-clock limit: a hang is a test failure, not a stuck suite. */
export function cli(args: string[], opts: { cwd?: string; timeoutMs?: number; env?: Record<string, string> } = {}): Promise<CliRun> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [`${root}bin/delta-audit.js`, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, DELTA_AUDIT_QUIET: "1", ...opts.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

/** sha256 of every file under `dir` (relative path → digest), to prove a folder was left unchanged. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(p).isDirectory()) walk(p, r);
      else out[r] = createHash("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  if (existsSync(dir)) walk(dir, "");
  return out;
}

/** The one-line error contract: exactly one non-empty stderr line starting `delta-audit: `, no stack frames. */
export function oneLineError(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "" && !/^\S+: \d+\/\d+ \(\d+%\)/.test(l));
  if (lines.length !== 1) throw new Error(`expected one error line on stderr, got ${lines.length}:\n${stderr}`);
  const line = lines[0]!;
  if (!line.startsWith("delta-audit: ")) throw new Error(`error line does not start with 'delta-audit: ': ${line}`);
  if (/\n\s+at /.test(stderr)) throw new Error(`stack trace on stderr:\n${stderr}`);
  return line;
}
