/**
 * Every model argument takes a Hub id `{org}/{name}[@{revision}]` as well as a folder: the real
 * CLI in child processes, against a local server that answers like the Hugging Face Hub
 * (test/github/fake-hub.ts) serving a generated organism, into a Hugging Face cache in a temp
 * folder. The same commands on the local folders are the reference; each failure is one line
 * with its exit code, and no token is ever printed.
 */
import { spawn } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism } from "../../src/organisms/index";
import { startFakeHub, type FakeHub } from "../github/fake-hub";
import { cudaAvailable } from "../../src/linalg/ort";

const root = new URL("../..", import.meta.url).pathname;
const GOOD_TOKEN = "hf_good_token_for_the_gated_repo";
const WRONG_TOKEN = "hf_wrong_token_never_printed";

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

let work: string;
let org: string;
let hub: FakeHub;
/** the cache the successful runs fill, and the offline run reads */
let cache: string;
/** HF_HOME: no stored login unless a test writes one */
let hfHome: string;

/** The Hub settings every run starts from: this hub, this cache, no token, online. */
const hubEnv = (over: Record<string, string> = {}): Record<string, string> => ({
  HF_ENDPOINT: hub.url,
  HF_HUB_CACHE: cache,
  HF_HOME: hfHome,
  HF_TOKEN: "",
  HUGGING_FACE_HUB_TOKEN: "",
  HF_TOKEN_PATH: "",
  HF_HUB_OFFLINE: "",
  ...over,
});

function cli(args: string[], env: Record<string, string> = hubEnv(), timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [`${root}bin/delta-audit.js`, ...args], {
      env: { ...process.env, DELTA_AUDIT_QUIET: "1", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c) => (stdout += c));
    child.stderr.on("data", (c) => (stderr += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

const fresh = (name: string) => {
  const d = join(work, name);
  mkdirSync(d, { recursive: true });
  return d;
};

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "da-hub-ids-"));
  org = join(work, "organism");
  await generateOrganism({ kind: "quirk", outDir: org, seed: 5 });
  // a pickle beside the safetensors, as many Hub repositories have: never fetched (nor loaded locally)
  writeFileSync(join(org, "base", "pytorch_model.bin"), "PICKLE-NEVER-FETCH");
  hub = await startFakeHub({
    "acme/base": { dir: join(org, "base"), revisions: { "v1.0": "9".repeat(40) } },
    "acme/adapter": join(org, "adapter"),
    "acme/gated": { dir: join(org, "adapter"), gated: GOOD_TOKEN },
    "acme/private": { dir: join(org, "adapter"), private: GOOD_TOKEN },
  });
  cache = fresh("hf-cache");
  hfHome = fresh("hf-home");
});
afterAll(async () => {
  await hub?.close();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("Hub ids as model arguments", () => {
  it("spectrum --base org/name --adapter org/name@rev prints what the local folders print, from the standard cache", async () => {
    const local = await cli(["spectrum", "--base", join(org, "base"), "--adapter", join(org, "adapter")]);
    expect(local.status, local.stderr).toBe(0);
    const r = await cli(["spectrum", "--base", "acme/base@v1.0", "--adapter", "acme/adapter@main"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(local.stdout);

    const snapshot = join(cache, "models--acme--adapter", "snapshots", hub.commit);
    expect(readFileSync(join(cache, "models--acme--adapter", "refs", "main"), "utf8")).toBe(hub.commit);
    expect(readFileSync(join(cache, "models--acme--base", "refs", "v1.0"), "utf8")).toBe(hub.commit);
    expect(lstatSync(join(snapshot, "adapter_model.safetensors")).isSymbolicLink()).toBe(true);
    expect(readlinkSync(join(snapshot, "adapter_model.safetensors"))).toMatch(/^\.\.\/\.\.\/blobs\/[0-9a-f]{64}$/);
    // the weights came through the CDN redirect; the pickle was listed but never asked for
    expect(hub.requests.some((q) => q.path.startsWith("/cdn-lfs/"))).toBe(true);
    expect(hub.requests.some((q) => q.path.endsWith("pytorch_model.bin"))).toBe(false);
    expect(existsSync(join(cache, "models--acme--base", "snapshots", hub.commit, "pytorch_model.bin"))).toBe(false);
  });

  it("names a Hub model {org}/{name}@{commit} on stderr", async () => {
    const r = await cli(["spectrum", "--adapter", "acme/adapter"], { ...hubEnv(), DELTA_AUDIT_QUIET: "" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toContain(`hub: --adapter acme/adapter is acme/adapter@${hub.commit}`);
  });

  it("truncate writes the same rank-1 adapter from Hub ids as from folders", async () => {
    const a = join(work, "trunc-local");
    const b = join(work, "trunc-hub");
    const local = await cli(["truncate", "--adapter", join(org, "adapter"), "--rank", "1", "--out", a]);
    expect(local.status, local.stderr).toBe(0);
    const r = await cli(["truncate", "--base", "acme/base", "--adapter", "acme/adapter", "--rank", "1", "--out", b]);
    expect(r.status, r.stderr).toBe(0);
    expect(readFileSync(join(b, "adapter_model.safetensors")).equals(readFileSync(join(a, "adapter_model.safetensors")))).toBe(true);
  });

  it("logits and generate load base and adapter from Hub ids", async () => {
    const ids = ["--ids", "1,2,3,4"];
    const local = await cli(["logits", "--model", join(org, "base"), "--adapter", join(org, "adapter"), ...ids]);
    expect(local.status, local.stderr).toBe(0);
    const r = await cli(["logits", "--model", "acme/base", "--adapter", `acme/adapter@${hub.commit}`, ...ids]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(local.stdout);

    const prompt = ["--prompt", "hello", "--max-new-tokens", "6"];
    const g0 = await cli(["generate", "--model", join(org, "base"), "--adapter", join(org, "adapter"), ...prompt]);
    const g = await cli(["generate", "--model", "acme/base", "--adapter", "acme/adapter", ...prompt]);
    expect(g.status, g.stderr).toBe(0);
    expect(g.stdout).toBe(g0.stdout);
  });

  it("estimate sizes a Hub base and adapter as it sizes the folders, and names them by commit", async () => {
    const memory = (stdout: string) => (JSON.parse(stdout) as { precisions: Array<{ precision: string; memoryBytes: number }> }).precisions.map((p) => [p.precision, p.memoryBytes]);
    const local = await cli(["estimate", "--base", join(org, "base"), "--adapter", join(org, "adapter"), "--json"]);
    expect(local.status, local.stderr).toBe(0);
    const r = await cli(["estimate", "--base", "acme/base@v1.0", "--adapter", "acme/adapter", "--json"]);
    expect(r.status, r.stderr).toBe(0);
    expect(memory(r.stdout)).toEqual(memory(local.stdout));
    const table = await cli(["estimate", "--base", "acme/base", "--adapter", "acme/adapter"]);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toContain(`subject: acme/base@${hub.commit} (`);
    expect(table.stdout).toContain(`+ adapter acme/adapter@${hub.commit}`);
    expect(table.stdout).not.toContain(cache);
  });

  it("scan on the embedded backend audits a Hub base and adapter", async () => {
    const out = join(work, "scan-hub");
    const r = await cli(["scan", "--base", "acme/base", "--adapter", "acme/adapter", "--out", out], hubEnv(), 120_000);
    // the quirk organism fails the default policy: exit 1 with a full report
    expect(r.status, r.stderr).toBe(1);
    const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8"));
    expect(report.verdict.conclusion).toBe("fail");
    expect(report.subject.kind).toBe("lora");
    // the report names the exact revisions (not the runner's cache folders), so its reproduction
    // commands can be run again anywhere
    expect(report.subject.base).toBe(`acme/base@${hub.commit}`);
    expect(report.subject.adapter).toBe(`acme/adapter@${hub.commit}`);
    const md = readFileSync(join(out, "report.md"), "utf8");
    expect(md).toContain(`acme/adapter@${hub.commit}`);
    expect(md).not.toContain(cache);
  });

  it("serve takes a Hub base and a Hub adapter, and names the base by its commit", async () => {
    const child = spawn(process.execPath, [`${root}bin/delta-audit.js`, "serve", "--model", "acme/base", "--adapter", "quirk=acme/adapter@rank1", "--port", "0"], {
      env: { ...process.env, DELTA_AUDIT_QUIET: "1", ...hubEnv() },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        let err = "";
        child.stderr.on("data", (c) => (err += c));
        child.stdout.on("data", (c) => {
          out += c;
          const m = out.match(/listening on (\S+)/);
          if (m) resolve(m[1]!);
        });
        child.on("close", (code) => reject(new Error(`serve exited ${code}: ${err}`)));
      });
      const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: Array<{ id: string; root?: string }> };
      const ids = models.data.map((m) => m.id);
      expect(ids).toEqual(expect.arrayContaining(["base", "quirk"]));
      expect(JSON.stringify(models)).toContain(`acme/base@${hub.commit}`);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });

  it("a second run with HF_HUB_OFFLINE=1 uses the cache and asks the Hub nothing", async () => {
    const before = hub.requests.length;
    const local = await cli(["spectrum", "--base", join(org, "base"), "--adapter", join(org, "adapter")]);
    const r = await cli(["spectrum", "--base", "acme/base@v1.0", "--adapter", "acme/adapter"], hubEnv({ HF_HUB_OFFLINE: "1" }));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe(local.stdout);
    expect(hub.requests.length).toBe(before);
  });

  it("a stored `huggingface-cli login` token opens a gated repository", async () => {
    const home = fresh("login-home");
    writeFileSync(join(home, "token"), `${GOOD_TOKEN}\n`);
    const r = await cli(["spectrum", "--adapter", "acme/gated"], hubEnv({ HF_HOME: home, HF_HUB_CACHE: fresh("login-cache") }));
    expect(r.status, r.stderr).toBe(0);
    expect(hub.requests.filter((q) => q.path.startsWith("/acme/gated/resolve/")).every((q) => q.auth === `Bearer ${GOOD_TOKEN}`)).toBe(true);
    expect(r.stdout + r.stderr).not.toContain(GOOD_TOKEN);
  });
});

describe("Hub failures: one line, the cause, the exit code", () => {
  /** a port nothing listens on */
  let closedPort: number;
  beforeAll(async () => {
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r()));
    closedPort = (s.address() as AddressInfo).port;
    await new Promise<void>((r) => s.close(() => r()));
  });

  const cases: Array<[string, () => string[], () => Record<string, string>, number, () => string]> = [
    [
      "no network (connection refused), nothing cached: exit 3",
      () => ["spectrum", "--adapter", "acme/adapter"],
      () => hubEnv({ HF_ENDPOINT: `http://127.0.0.1:${closedPort}`, HF_HUB_CACHE: fresh("c-refused"), HF_TOKEN: WRONG_TOKEN }),
      3,
      () => `delta-audit: --adapter: acme/adapter: cannot reach the Hugging Face Hub at http://127.0.0.1:${closedPort} (connection refused) and it is not cached; check the network or HF_ENDPOINT`,
    ],
    [
      "gated, no token (401)",
      () => ["spectrum", "--adapter", "acme/gated"],
      () => hubEnv({ HF_HUB_CACHE: fresh("c-gated") }),
      2,
      () => "delta-audit: --adapter: acme/gated: the repository is gated or private (HTTP 401): set HF_TOKEN or run `huggingface-cli login`",
    ],
    [
      "gated, a token without access (403)",
      () => ["spectrum", "--adapter", "acme/gated"],
      () => hubEnv({ HF_HUB_CACHE: fresh("c-gated-403"), HF_TOKEN: WRONG_TOKEN }),
      2,
      () => "delta-audit: --adapter: acme/gated: the repository is gated or private (HTTP 403): the token sent (HF_TOKEN or `huggingface-cli login`) cannot read it: request access on its Hub page or use another token",
    ],
    [
      "private, no token (401 RepoNotFound)",
      () => ["truncate", "--adapter", "acme/private", "--rank", "1", "--out", "unused-out"],
      () => hubEnv({ HF_HUB_CACHE: fresh("c-private") }),
      2,
      () => "delta-audit: --adapter: acme/private: repository not found on the Hugging Face Hub (HTTP 401), or it is private: set HF_TOKEN or run `huggingface-cli login`",
    ],
    [
      "no such repository (404)",
      () => ["logits", "--model", "acme/nope", "--ids", "1"],
      () => hubEnv({ HF_HUB_CACHE: fresh("c-404"), HF_TOKEN: WRONG_TOKEN }),
      2,
      () => "delta-audit: --model: acme/nope: repository not found on the Hugging Face Hub (HTTP 404)",
    ],
    [
      "no such revision",
      () => ["spectrum", "--adapter", "acme/adapter@v9"],
      () => hubEnv({ HF_HUB_CACHE: fresh("c-rev") }),
      2,
      () => "delta-audit: --adapter: acme/adapter@v9: revision 'v9' not found in acme/adapter on the Hugging Face Hub (HTTP 404)",
    ],
    [
      "HF_HUB_OFFLINE=1 with nothing cached",
      () => ["scan", "--base", "acme/base", "--adapter", join(org, "adapter"), "--out", "unused-out"],
      () => hubEnv({ HF_HUB_CACHE: join(work, "c-offline"), HF_HUB_OFFLINE: "1" }),
      2,
      () => `delta-audit: --base: acme/base: not in the Hugging Face cache (${join(work, "c-offline")}) and HF_HUB_OFFLINE is set; run once online or unset HF_HUB_OFFLINE`,
    ],
  ];

  it.each(cases)("%s", async (_name, args, env, code, line) => {
    const before = hub.requests.length;
    const e = env();
    const r = await cli(args(), e);
    expect(r.status, r.stderr).toBe(code);
    expect(r.stderr).toBe(`${line()}\n`);
    expect(r.stdout).toBe("");
    expect(r.stderr).not.toContain(WRONG_TOKEN);
    if (e.HF_HUB_OFFLINE === "1") expect(hub.requests.length).toBe(before);
    expect(existsSync(join(root, "unused-out"))).toBe(false);
  });

  // --device cuda is checked before any heavy work, and a download is heavy work
  it.skipIf(cudaAvailable())("scan and sweep run --device cuda without the CUDA provider: exit 2 before downloading anything", async () => {
    const before = hub.requests.length;
    const scan = await cli(["scan", "--base", "acme/base", "--adapter", "acme/adapter", "--device", "cuda", "--out", join(work, "cuda-out")], hubEnv({ HF_HUB_CACHE: fresh("c-cuda") }));
    expect(scan.status, scan.stderr).toBe(2);
    expect(scan.stderr).toBe("delta-audit: --device cuda: the CUDA execution provider is not installed: reinstall onnxruntime-node with ONNXRUNTIME_NODE_INSTALL=cuda12 (needs CUDA 12 and cuDNN 9) or use the cpu device\n");
    expect(hub.requests.length).toBe(before);

    // sweep run --registry looks the model's revision up (metadata), then must stop before fetching files
    const registry = join(work, "cuda-registry.yml");
    writeFileSync(registry, "models:\n  - { name: m, base: acme/base, adapter: acme/adapter }\n");
    const sweep = await cli(["sweep", "run", "--registry", registry, "--name", "m", "--device", "cuda", "--out", join(work, "cuda-sweep")], hubEnv({ HF_HUB_CACHE: fresh("c-cuda-sweep") }));
    expect(sweep.status, sweep.stderr).toBe(2);
    expect(sweep.stderr).toMatch(/^delta-audit: --device cuda: the CUDA execution provider is not installed/);
    expect(hub.requests.slice(before).filter((q) => q.path.includes("/resolve/") || q.path.startsWith("/cdn-lfs/"))).toEqual([]);

    // logits, generate and serve make the same check, with the same line, before their downloads
    const afterSweep = hub.requests.length;
    for (const args of [
      ["logits", "--model", "acme/base", "--adapter", "acme/adapter", "--ids", "1", "--device", "cuda"],
      ["generate", "--model", "acme/base", "--prompt", "hi", "--device", "cuda"],
      ["serve", "--model", "acme/base", "--port", "0", "--device", "cuda"],
    ]) {
      const r = await cli(args, hubEnv({ HF_HUB_CACHE: fresh(`c-cuda-${args[0]}`) }));
      expect(r.status, `${args[0]}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toBe(scan.stderr);
    }
    expect(hub.requests.length).toBe(afterSweep);
  });

  it("a path that is neither a folder nor shaped like a Hub id still says it does not exist, asking no Hub", async () => {
    const before = hub.requests.length;
    const r = await cli(["spectrum", "--adapter", join(work, "no-such-adapter")]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/^delta-audit: .*no-such-adapter: does not exist; /);
    expect(hub.requests.length).toBe(before);
  });
});
