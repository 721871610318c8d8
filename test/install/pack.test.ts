/**
 * The release artifact as a user gets it: `npm pack` (of the dist/ that the global setup
 * built), then the README's install commands run by the real npm against the real registry,
 * through the local npm cache (--prefer-offline): `npm install -g --ignore-scripts` into a
 * temporary prefix and `npx --ignore-scripts`, then `delta-audit demo` from that install.
 *
 * onnxruntime-node's install script is the only one in the installed tree, and on Linux x64 it
 * otherwise fetches the CUDA provider from nuget.org. It honours GLOBAL_AGENT_HTTP(S)_PROXY
 * (global-agent), so every npm here runs with those pointed at a local proxy that records and
 * refuses each connection: an attempt to fetch CUDA files shows up, and cannot download
 * hundreds of MB. npm's own registry traffic does not use that proxy.
 */
import { spawn } from "node:child_process";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const root = fileURLToPath(new URL("../..", import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));
const ORT_VERSION: string = lock.packages["node_modules/onnxruntime-node"].version;

/** An install from a warm npm cache takes ~10 s on 2 cores; a cold one downloads ~115 MB (onnxruntime-node). */
const INSTALL_TIMEOUT_MS = 170_000;
/** The packed package is ~4.3 MB unpacked (two bundles, templates, README); far more means something slipped in. */
const MAX_UNPACKED_BYTES = 10 * 1024 * 1024;
/** What npm prints about configuration it does not know, or install scripts it holds back. */
const CONFIG_WARNING = /Unknown \w+ config|^npm warn (config|install-scripts)\b/im;
/** onnxruntime-node's CUDA and TensorRT execution providers (Linux .so, Windows .dll). */
const CUDA_PROVIDER_FILE = /onnxruntime_providers_(cuda|tensorrt|shared)\b/;
/** How long `npm ping` may wait for the registry before the install tests give up on it. */
const REGISTRY_PING_TIMEOUT_MS = 20_000;
/** Errors npm reports when it cannot reach the registry. */
const NETWORK_ERROR = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|ENOTCACHED|ERR_SOCKET_TIMEOUT)\b/;
/**
 * npm settings an outer `npm test` exports that say where the registry, cache and proxy are;
 * every other npm_* variable (its own config, this package's fields) must not configure the
 * npm under test, which is to behave as on a user's machine.
 */
const KEPT_NPM_CONFIG = new Set(["registry", "cache", "userconfig", "globalconfig", "cafile", "ca", "strict_ssl", "proxy", "https_proxy", "noproxy"]);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Asynchronous on purpose: the recording proxy answers from this process while npm runs. */
function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs = INSTALL_TIMEOUT_MS - 10_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, shell: process.platform === "win32", timeout: timeoutMs });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** Records every request and CONNECT it receives and refuses them all. */
async function startRecordingProxy(): Promise<{ server: Server; url: string; seen: string[] }> {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    res.writeHead(403).end();
  });
  server.on("connect", (req, socket) => {
    seen.push(`CONNECT ${req.url}`);
    socket.end("HTTP/1.1 403 Forbidden\r\n\r\n");
  });
  await new Promise<void>((done) => server.listen(0, "127.0.0.1", done));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

function allFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...allFiles(path));
    else out.push(path);
  }
  return out;
}

/** Every package folder under a node_modules tree (scoped ones included), nested ones too. */
function packageDirs(nodeModules: string): string[] {
  const dirs: string[] = [];
  if (!existsSync(nodeModules)) return dirs;
  for (const name of readdirSync(nodeModules)) {
    if (name.startsWith(".")) continue;
    const path = join(nodeModules, name);
    const children = name.startsWith("@") ? readdirSync(path).map((n) => join(path, n)) : [path];
    for (const dir of children) {
      if (!existsSync(join(dir, "package.json"))) continue;
      dirs.push(dir, ...packageDirs(join(dir, "node_modules")));
    }
  }
  return dirs;
}

/** The packages whose install would run a script (what `--ignore-scripts` skips), by name. */
function packagesWithInstallScripts(nodeModules: string): string[] {
  return packageDirs(nodeModules)
    .filter((dir) => {
      const scripts = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")).scripts ?? {};
      return Boolean(scripts.preinstall || scripts.install || scripts.postinstall || existsSync(join(dir, "binding.gyp")));
    })
    .map((dir) => relative(nodeModules, dir).split(sep).filter((p) => p !== "node_modules").join(" > "))
    .sort();
}

describe("the npm package (npm pack, then installed with the real npm)", () => {
  let work: string;
  let tarball: string;
  let proxy: Awaited<ReturnType<typeof startRecordingProxy>>;
  let env: NodeJS.ProcessEnv;
  let registry = "the npm registry";
  let npmCache: string | undefined;
  /** Set when `npm ping` fails: the tests that install say so at once instead of timing out. */
  let registryProblem: string | undefined;

  /** npm's output when a command fails, with the one likely cause named when it is the network. */
  function npmFailure(what: string, r: Run): string {
    const output = `${r.stdout}\n${r.stderr}`;
    const cause = NETWORK_ERROR.test(output)
      ? `npm could not reach ${registry}: this test installs the packed tarball's dependencies (onnxruntime-node ${ORT_VERSION}) from it; run it where the registry is reachable (CI is). `
      : "";
    return `${cause}${what} exited ${r.code}:\n${output.slice(-4000)}`;
  }

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), "delta-audit-pack-"));
    proxy = await startRecordingProxy();
    env = { ...process.env };
    for (const key of Object.keys(env)) {
      const lower = key.toLowerCase();
      if (lower.startsWith("npm_config_") ? !KEPT_NPM_CONFIG.has(lower.slice("npm_config_".length)) : lower.startsWith("npm_")) delete env[key];
      // "no variable set by the user": whatever CI sets for its own npm ci must not help here
      if (lower.startsWith("onnxruntime_node_install") || lower.startsWith("global_agent_")) delete env[key];
    }
    delete env.INIT_CWD;
    delete env.FORCE_COLOR;
    Object.assign(env, {
      GLOBAL_AGENT_HTTP_PROXY: proxy.url,
      GLOBAL_AGENT_HTTPS_PROXY: proxy.url,
      NO_COLOR: "1",
    });
    const config = await run("npm", ["config", "get", "registry", "cache"], work, env, 30_000);
    if (config.code === 0) {
      const [reg, cache] = config.stdout.trim().split(/\r?\n/).map((l) => l.replace(/^\w+\s*=\s*/, "").replace(/^"|"$/g, ""));
      registry = reg || registry;
      npmCache = cache || undefined;
    }
    const ping = await run("npm", ["ping", "--fetch-retries=0", `--fetch-timeout=${REGISTRY_PING_TIMEOUT_MS}`], work, env, 60_000);
    if (ping.code !== 0) {
      registryProblem =
        `npm could not reach ${registry} (npm ping exited ${ping.code}): this test installs the packed tarball's ` +
        `dependencies (onnxruntime-node ${ORT_VERSION}) from it; run it where the registry is reachable (CI is).\n` +
        `${ping.stdout}\n${ping.stderr}`.slice(-2000);
    }
  });

  const needsRegistry = () => {
    if (registryProblem) throw new Error(registryProblem);
    expect(tarball, "npm pack failed").toBeDefined();
  };

  afterAll(async () => {
    await new Promise((done) => proxy?.server.close(done));
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("npm pack ships the bin, both bundles, the templates, action.yml and README, and nothing large", async () => {
    const r = await run("npm", ["pack", "--json", "--pack-destination", work], root, env, 60_000);
    expect(r.code, npmFailure("npm pack", r)).toBe(0);
    // the project's .npmrc is read here: every key in it must be one npm 10 and 11 know
    expect(`${r.stdout}\n${r.stderr}`).not.toMatch(CONFIG_WARNING);
    const [packed] = JSON.parse(r.stdout) as { filename: string; unpackedSize: number; files: { path: string }[] }[];
    tarball = join(work, packed.filename);
    expect(existsSync(tarball)).toBe(true);
    expect(packed.filename).toBe(`delta-audit-${pkg.version}.tgz`);

    const templates = allFiles(join(root, "templates")).map((f) => relative(root, f).split(sep).join("/"));
    // npm adds package.json, README and a LICENSE (when there is one) whatever `files` says
    const license = existsSync(join(root, "LICENSE")) ? ["LICENSE"] : [];
    const expected = ["README.md", "action.yml", "bin/delta-audit.js", "dist/action.js", "dist/cli.js", "package.json", ...license, ...templates];
    expect(packed.files.map((f) => f.path).sort()).toEqual(expected.sort());
    expect(packed.unpackedSize).toBeLessThan(MAX_UNPACKED_BYTES);
  }, 90_000);

  it("pins onnxruntime-node exactly, to the lockfile's version, as its only runtime dependency", () => {
    // dist/ bundles every other dependency; onnxruntime-node is a native addon and stays external
    const bundled = "esbuild bundles every other dependency into dist/: declare it in devDependencies (scripts/build.mjs)";
    expect(pkg.dependencies, bundled).toEqual({ "onnxruntime-node": ORT_VERSION });
    expect(ORT_VERSION).toMatch(/^\d+\.\d+\.\d+$/);
    expect(lock.packages[""].dependencies).toEqual(pkg.dependencies);
  });

  it(
    "npm install -g --ignore-scripts needs only the registry, fetches no CUDA files and runs the demo",
    async () => {
      needsRegistry();
      const prefix = join(work, "prefix");
      const r = await run(
        "npm",
        ["install", "--global", "--prefix", prefix, "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund", "--no-update-notifier", tarball],
        work,
        env,
      );
      expect(r.code, npmFailure("npm install -g --ignore-scripts", r)).toBe(0);
      expect(`${r.stdout}\n${r.stderr}`).not.toMatch(CONFIG_WARNING);
      expect(proxy.seen, "an install script tried to download something").toEqual([]);

      const globalModules = process.platform === "win32" ? join(prefix, "node_modules") : join(prefix, "lib", "node_modules");
      const installed = join(globalModules, "delta-audit");
      const ortJson = JSON.parse(readFileSync(join(installed, "node_modules", "onnxruntime-node", "package.json"), "utf8"));
      expect(ortJson.version).toBe(ORT_VERSION);
      expect(JSON.parse(readFileSync(join(installed, "package.json"), "utf8")).dependencies).toEqual({ "onnxruntime-node": ORT_VERSION });
      expect(allFiles(prefix).filter((f) => CUDA_PROVIDER_FILE.test(f))).toEqual([]);
      // --ignore-scripts skips exactly one script: onnxruntime-node's optional CUDA fetch.
      // delta-audit itself has none, and a dependency that gains one must be looked at here.
      expect(packagesWithInstallScripts(globalModules)).toEqual(["delta-audit > onnxruntime-node"]);

      const cwd = join(work, "demo-cwd");
      mkdirSync(cwd);
      const bin = process.platform === "win32" ? join(prefix, "delta-audit.cmd") : join(prefix, "bin", "delta-audit");
      // the node running the tests runs the installed bin (its shebang is `env node`)
      const demo = await run(bin, ["demo"], cwd, { ...env, PATH: `${dirname(process.execPath)}${delimiter}${env.PATH ?? ""}` }, 120_000);
      expect(demo.code, `delta-audit demo exited ${demo.code}:\n${demo.stdout}\n${demo.stderr}`).toBe(0);
      const [quirk, benign] = demo.stdout.split(/\n\s*\n/).filter((b) => b.trim());
      expect(quirk).toMatch(/^quirk organism/m);
      expect(quirk).toMatch(/verdict:\s+FAIL \(expected fail\)/);
      const planted = /planted:\s+(\S+)/.exec(quirk)?.[1];
      expect(planted, quirk).toBeTruthy();
      expect(quirk).toMatch(new RegExp(`top finding: \\[high\\] .*"${planted!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}"`));
      expect(benign).toMatch(/^benign organism/m);
      expect(benign).toMatch(/verdict:\s+PASS \(expected pass\)/);
      for (const kind of ["quirk", "benign"]) {
        expect(statSync(join(cwd, "delta-audit-demo", kind, "report", "report.json")).size).toBeGreaterThan(0);
      }
      expect(proxy.seen).toEqual([]);
    },
    INSTALL_TIMEOUT_MS,
  );

  it(
    "npx --yes --ignore-scripts runs the packed tarball",
    async () => {
      needsRegistry();
      const cwd = join(work, "npx-cwd");
      mkdirSync(cwd);
      try {
        // --package with the absolute path: npx keys its install folder by the spec's text, and a
        // relative ./delta-audit-X.Y.Z.tgz would find the folder an earlier run left behind
        const r = await run("npx", ["--yes", "--ignore-scripts", "--prefer-offline", "--no-update-notifier", "--package", tarball, "--", "delta-audit", "--version"], cwd, env);
        expect(r.code, npmFailure("npx --yes --ignore-scripts", r)).toBe(0);
        expect(r.stdout.trim()).toBe(pkg.version);
        expect(`${r.stdout}\n${r.stderr}`).not.toMatch(CONFIG_WARNING);
        expect(proxy.seen).toEqual([]);
      } finally {
        // npx keeps what it installed (~300 MB, onnxruntime-node for every platform) under <cache>/_npx
        const npx = npmCache ? join(npmCache, "_npx") : undefined;
        for (const dir of npx && existsSync(npx) ? readdirSync(npx) : []) {
          const manifest = join(npx!, dir, "package.json");
          if (existsSync(manifest) && readFileSync(manifest, "utf8").includes(JSON.stringify(tarball).slice(1, -1))) {
            rmSync(join(npx!, dir), { recursive: true, force: true });
          }
        }
      }
    },
    INSTALL_TIMEOUT_MS,
  );

  // Why the README says --ignore-scripts: on Linux x64 onnxruntime-node's installer, run by
  // default, reaches for nuget.org. If a new pinned version stops doing so, this fails and the
  // README's install commands can drop the flag.
  it.runIf(process.platform === "linux" && process.arch === "x64")(
    `without --ignore-scripts, onnxruntime-node ${ORT_VERSION}'s installer reaches beyond the registry (nuget.org) on Linux x64`,
    async () => {
      needsRegistry();
      proxy.seen.length = 0;
      const prefix = join(work, "prefix-with-scripts");
      const r = await run("npm", ["install", "--global", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", "--no-update-notifier", tarball], work, env);
      const output = `${r.stdout}\n${r.stderr}`;
      if (r.code !== 0 && proxy.seen.length === 0) throw new Error(npmFailure("npm install -g", r));
      expect(proxy.seen.length, output).toBeGreaterThan(0);
      expect(new Set(proxy.seen)).toEqual(new Set(["CONNECT api.nuget.org:443"]));
      expect(r.code).not.toBe(0);
      expect(output).toMatch(/onnxruntime-node/);
    },
    INSTALL_TIMEOUT_MS,
  );
});
