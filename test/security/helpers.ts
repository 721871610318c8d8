/** Shared fixtures for the hostile-input tests: the real CLI as a child process, a generated organism, file snapshots. */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll } from "vitest";
import { generateOrganism } from "../../src/organisms/index";

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

/** A generated organism (base/, adapter/, finetuned/) in a temporary folder, shared by a test file. */
export interface OrganismFixture {
  /** the temporary folder (the organism is under org/; copies go next to it) */
  readonly dir: string;
  /** the organism's folder */
  readonly org: string;
  /**
   * A copy of the organism's `part` folder with `file` replaced: by `content` when it is text
   * or bytes, else by what `content(path)` puts at that path (a FIFO, a symlink) after the
   * original is removed. Resolves to the copy's folder.
   */
  modelWith(part: "base" | "adapter", file: string, content: string | Uint8Array | ((path: string) => Promise<void>)): Promise<string>;
  /** the organism's own `part/file` as JSON, to derive an edited copy from */
  json(part: "base" | "adapter", file: string): Promise<Record<string, unknown>>;
}

/** Generate one quirk organism before the file's tests (removed after them); `prefix` names the temporary folder. */
export function organismFixture(prefix: string, seed = 5): OrganismFixture {
  let dir = "";
  let copies = 0;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), prefix));
    await generateOrganism({ kind: "quirk", outDir: join(dir, "org"), seed });
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  return {
    get dir() {
      return dir;
    },
    get org() {
      return join(dir, "org");
    },
    async modelWith(part, file, content) {
      const copy = join(dir, `${part}-${++copies}-${file.replace(/\W+/g, "-")}`);
      await cp(join(dir, "org", part), copy, { recursive: true });
      await rm(join(copy, file), { force: true });
      if (typeof content === "function") await content(join(copy, file));
      else await writeFile(join(copy, file), content);
      return copy;
    },
    async json(part, file) {
      return JSON.parse(await readFile(join(dir, "org", part, file), "utf8")) as Record<string, unknown>;
    },
  };
}
