/**
 * io/hub.ts against a local server that answers like the Hugging Face Hub (model info with
 * sha, recursive tree listing, resolve/ with Range probes, gated repos), checking the
 * standard cache layout on disk; network faults; io/model-ref.ts's rule for model arguments.
 */
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import { createServer as createNetServer, type AddressInfo } from "node:net";
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendError, InputError } from "../../src/errors";
import { hubCacheDir, hubOptionsFromEnv, parseHubId, resolveHubModel, repoFolderName } from "../../src/io/hub";
import { isHubIdShaped, resolveModelRef } from "../../src/io/model-ref";

const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const files: Record<string, Buffer> = {
  "config.json": Buffer.from(JSON.stringify({ model_type: "llama", hidden_size: 8 })),
  "model.safetensors": Buffer.alloc(5000, 7),
  "tokenizer.json": Buffer.from('{"model":{"type":"BPE"}}'),
  "pytorch_model.bin": Buffer.from("PICKLE-NEVER-FETCH"),
  "README.md": Buffer.from("# card"),
  "onnx/model.onnx": Buffer.alloc(100, 1),
};
const LFS = new Set(["model.safetensors", "pytorch_model.bin", "onnx/model.onnx"]);
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

interface Req {
  method: string;
  path: string;
  auth?: string;
  range?: string;
}
let server: Server;
let hubUrl: string;
const requests: Req[] = [];
/** repo names that need `Authorization: Bearer hf_good` */
const gated = new Set(["acme/gated"]);
let corrupt = false;

beforeAll(async () => {
  server = createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    const path = decodeURIComponent(u.pathname);
    requests.push({ method: req.method ?? "", path, auth: req.headers.authorization, range: req.headers.range as string | undefined });
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    let m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/);
    const repoOf = (name: string) => {
      if (name !== "acme/tiny" && name !== "acme/gated") return "missing";
      if (gated.has(name) && req.headers.authorization !== "Bearer hf_good") return "denied";
      return "ok";
    };
    if (m) {
      const st = repoOf(m[1]!);
      if (st === "missing") return json(404, { error: "Repository not found" });
      if (st === "denied") return json(401, { error: "Access to model acme/gated is restricted" });
      return json(200, { _id: "x", id: m[1], sha: COMMIT, private: false, downloads: 0, likes: 0, lastModified: "2025-01-01T00:00:00Z" });
    }
    m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/);
    if (m) {
      if (repoOf(m[1]!) !== "ok") return json(404, { error: "not found" });
      const entries = Object.entries(files).map(([p, b]) =>
        LFS.has(p) ? { type: "file", path: p, size: b.length, oid: gitOid(Buffer.from(`pointer ${p}`)), lfs: { oid: sha256(b), size: b.length, pointerSize: 130 } } : { type: "file", path: p, size: b.length, oid: gitOid(b) },
      );
      return json(200, [{ type: "directory", path: "onnx", size: 0, oid: "d".repeat(40) }, ...entries]);
    }
    m = path.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    if (m) {
      if (repoOf(m[1]!) !== "ok") return json(404, { error: "not found" });
      let body = files[m[3]!];
      if (!body) {
        res.writeHead(404, { "X-Error-Code": "EntryNotFound" });
        return res.end();
      }
      if (corrupt && m[3] === "model.safetensors") body = Buffer.alloc(body.length, 9);
      const etag = LFS.has(m[3]!) ? sha256(body) : gitOid(body);
      const range = req.headers.range?.match(/^bytes=(\d+)-(\d+)$/);
      if (range) {
        const a = Number(range[1]);
        const b = Math.min(Number(range[2]), body.length - 1);
        res.writeHead(206, { "content-range": `bytes ${a}-${b}/${body.length}`, etag: `"${etag}"`, "x-linked-etag": `"${etag}"` });
        return res.end(body.subarray(a, b + 1));
      }
      res.writeHead(200, { "content-length": String(body.length), etag: `"${etag}"` });
      return res.end(body);
    }
    json(404, { error: "no route" });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  hubUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const fresh = () => mkdtempSync(join(tmpdir(), "da-hub-"));

describe("resolveHubModel", () => {
  it("downloads only safetensors/config/tokenizer files into the standard cache layout, then reuses it", async () => {
    const cacheDir = fresh();
    requests.length = 0;
    const r = await resolveHubModel("acme/tiny", { cacheDir, hubUrl, quiet: true });
    const storage = join(cacheDir, "models--acme--tiny");
    expect(r.commit).toBe(COMMIT);
    expect(r.dir).toBe(join(storage, "snapshots", COMMIT));
    expect(readFileSync(join(storage, "refs", "main"), "utf8")).toBe(COMMIT);
    expect(r.downloaded.sort()).toEqual(["config.json", "model.safetensors", "tokenizer.json"]);
    // snapshot entries are relative symlinks into blobs/, named by LFS sha256 or git blob sha1
    for (const name of r.downloaded) {
      const link = join(r.dir, name);
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      const etag = LFS.has(name) ? sha256(files[name]!) : gitOid(files[name]!);
      expect(readlinkSync(link)).toBe(join("..", "..", "blobs", etag));
      expect(readFileSync(link).equals(files[name]!)).toBe(true);
    }
    expect(readdirSync(r.dir).sort()).toEqual(["config.json", "model.safetensors", "tokenizer.json"]);
    const fetched = requests.filter((q) => q.path.includes("/resolve/")).map((q) => q.path);
    expect(fetched.some((p) => /pytorch_model\.bin|README|onnx/.test(p))).toBe(false);
    expect(readdirSync(join(storage, "blobs")).some((f) => f.endsWith(".incomplete"))).toBe(false);

    requests.length = 0;
    const again = await resolveHubModel("acme/tiny@main", { cacheDir, hubUrl, quiet: true });
    expect(again.downloaded).toEqual([]);
    expect(requests.some((q) => q.path.includes("/resolve/"))).toBe(false);

    // offline: no request at all, the cached snapshot is returned
    requests.length = 0;
    const off = await resolveHubModel("acme/tiny", { cacheDir, hubUrl, offline: true, quiet: true });
    expect(off.dir).toBe(r.dir);
    expect(requests.length).toBe(0);
    // and an unreachable hub falls back to the cached snapshot
    const down = await resolveHubModel("acme/tiny", { cacheDir, hubUrl: "http://127.0.0.1:1", quiet: true });
    expect(down.dir).toBe(r.dir);
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it("rejects a download whose bytes do not match the listed hash, leaving no blob behind", async () => {
    const cacheDir = fresh();
    corrupt = true;
    try {
      const err = await resolveHubModel("acme/tiny", { cacheDir, hubUrl, quiet: true }).catch((e) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(String(err.message)).toMatch(/corrupt/);
      const blobs = readdirSync(join(cacheDir, "models--acme--tiny", "blobs"));
      expect(blobs).not.toContain(sha256(files["model.safetensors"]!));
      expect(blobs.some((f) => f.endsWith(".incomplete"))).toBe(false);
    } finally {
      corrupt = false;
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });

  it("sends HF_TOKEN for gated models and explains a missing token as an input error", async () => {
    const cacheDir = fresh();
    const denied = await resolveHubModel("acme/gated", { cacheDir, hubUrl, quiet: true }).catch((e) => e);
    expect(denied).toBeInstanceOf(InputError);
    expect(denied.message).toMatch(/HF_TOKEN/);
    requests.length = 0;
    const ok = await resolveHubModel("acme/gated", { cacheDir, hubUrl, accessToken: "hf_good", quiet: true });
    expect(existsSync(join(ok.dir, "config.json"))).toBe(true);
    expect(requests.every((q) => q.auth === "Bearer hf_good")).toBe(true);
    const missing = await resolveHubModel("acme/nope", { cacheDir, hubUrl, quiet: true }).catch((e) => e);
    expect(missing).toBeInstanceOf(InputError);
    expect(missing.message).toMatch(/not found/);
    rmSync(cacheDir, { recursive: true, force: true });
  });
});

describe("Hub ids and cache location", () => {
  it("parses org/name[@revision] and rejects paths and junk", () => {
    expect(parseHubId("meta-llama/Llama-3.2-1B")).toEqual({ repo: "meta-llama/Llama-3.2-1B", revision: "main" });
    expect(parseHubId("org/name@v1.0")).toEqual({ repo: "org/name", revision: "v1.0" });
    expect(parseHubId("org/name@" + COMMIT).revision).toBe(COMMIT);
    for (const bad of ["./models/base", "/abs/path", "a/b/c", "org/..", "org/name@../x", "org/name@", "", "org/na me"]) {
      expect(() => parseHubId(bad), bad).toThrow(InputError);
    }
  });

  it("follows HF_HUB_CACHE, then HF_HOME, like huggingface_hub", () => {
    expect(hubCacheDir({ HF_HUB_CACHE: "/c", HF_HOME: "/h" })).toBe("/c");
    expect(hubCacheDir({ HF_HOME: "/h" })).toBe(join("/h", "hub"));
    expect(hubCacheDir({ XDG_CACHE_HOME: "/x" })).toBe(join("/x", "huggingface", "hub"));
    expect(repoFolderName("org/name")).toBe("models--org--name");
  });
});

describe("network faults", () => {
  /** a fetch that fails as undici does when the name does not resolve or the port is closed */
  const failing = (code: string): typeof fetch => async () => {
    throw new TypeError("fetch failed", { cause: Object.assign(new Error(`getaddrinfo ${code} hub.invalid`), { code }) });
  };

  it("says the Hub cannot be reached and why, as a fault (exit 3), never naming the token", async () => {
    const cacheDir = fresh();
    for (const [code, reason] of [["ENOTFOUND", "host not found"], ["EAI_AGAIN", "host not found"], ["ECONNREFUSED", "connection refused"]]) {
      const err = await resolveHubModel("acme/tiny", { cacheDir, hubUrl: "http://hub.invalid", accessToken: "hf_secret_value", fetch: failing(code!), quiet: true }).catch((e) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(err.message).toBe(`acme/tiny: cannot reach the Hugging Face Hub at http://hub.invalid (${reason}) and it is not cached; check the network or HF_ENDPOINT`);
      expect(err.message).not.toContain("hf_secret_value");
    }
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it("gives up on a Hub that accepts the connection and never answers (HF_HUB_DOWNLOAD_TIMEOUT)", async () => {
    const held: import("node:net").Socket[] = [];
    const silent = createNetServer((socket) => void held.push(socket));
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const { timeoutMs } = hubOptionsFromEnv({ HF_HUB_DOWNLOAD_TIMEOUT: "0.3" });
      expect(timeoutMs).toBe(300);
      const err = await resolveHubModel("acme/tiny", { cacheDir: fresh(), hubUrl: url, timeoutMs, quiet: true }).catch((e) => e);
      expect(err).toBeInstanceOf(BackendError);
      expect(err.message).toBe(`acme/tiny: cannot reach the Hugging Face Hub at ${url} (no answer within 0.3 s) and it is not cached; check the network or HF_ENDPOINT`);
      expect(held.length).toBeGreaterThanOrEqual(1); // it did connect: the wait was for an answer
      for (const bad of ["0", "-1", "soon", "1e9"]) {
        expect(() => hubOptionsFromEnv({ HF_HUB_DOWNLOAD_TIMEOUT: bad }), bad).toThrow(/^HF_HUB_DOWNLOAD_TIMEOUT: expected a number of seconds/);
      }
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }
  });

  it("refuses an HF_ENDPOINT that is not an http(s) URL", async () => {
    const err = await resolveHubModel("acme/tiny", { cacheDir: fresh(), hubUrl: "ftp://mirror", quiet: true }).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toBe("HF_ENDPOINT: expected an http(s) URL, got 'ftp://mirror'");
  });
});

describe("one rule for model arguments (io/model-ref.ts)", () => {
  it("takes {org}/{name}[@{revision}] as a Hub id, a single word or a path as a folder", () => {
    for (const id of ["acme/tiny", "acme/tiny@v1.0", `acme/tiny@${COMMIT}`]) expect(isHubIdShaped(id), id).toBe(true);
    for (const path of ["tiny", "./acme/tiny", "/abs/acme", "acme/tiny/sub", "../acme/tiny", "~/acme", " acme/tiny"]) expect(isHubIdShaped(path), path).toBe(false);
  });

  it("an existing folder wins over a Hub id of the same name; a missing path is left to its opener", async () => {
    const cwd = fresh();
    mkdirSync(join(cwd, "acme", "tiny"), { recursive: true });
    const never = async () => {
      throw new Error("the Hub must not be asked");
    };
    expect(await resolveModelRef("acme/tiny", { what: "--base", cwd, hub: never })).toEqual({ dir: join(cwd, "acme", "tiny"), label: "acme/tiny" });
    expect(await resolveModelRef("missing-folder", { what: "--base", hub: never })).toEqual({ dir: "missing-folder", label: "missing-folder" });
    rmSync(cwd, { recursive: true, force: true });
  });

  it("labels a Hub model {org}/{name}@{commit} and names the argument in its errors", async () => {
    const cacheDir = fresh();
    const ref = await resolveModelRef("acme/tiny@main", { what: "--adapter", hub: (spec) => resolveHubModel(spec, { cacheDir, hubUrl, quiet: true }) });
    expect(ref.label).toBe(`acme/tiny@${COMMIT}`);
    expect(ref.dir).toBe(join(cacheDir, "models--acme--tiny", "snapshots", COMMIT));
    const err = await resolveModelRef("acme/nope", { what: "--adapter", hub: (spec) => resolveHubModel(spec, { cacheDir, hubUrl, quiet: true }) }).catch((e) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err.message).toBe("--adapter: acme/nope: repository not found on the Hugging Face Hub (HTTP 404)");
    // with local: false (a name from a pull request's file) a folder is never picked, a legacy id is fine
    const local = await resolveModelRef("./x", { what: "base_model_name_or_path", local: false }).catch((e) => e);
    expect(local.message).toBe("base_model_name_or_path: './x' is not a Hub model id ({org}/{name}[@{revision}])");
    rmSync(cacheDir, { recursive: true, force: true });
  });

  it("reads the token `huggingface-cli login` stored when HF_TOKEN is not set", () => {
    const home = fresh();
    writeFileSync(join(home, "token"), "hf_from_login\n");
    expect(hubOptionsFromEnv({ HF_HOME: home }).accessToken).toBe("hf_from_login");
    expect(hubOptionsFromEnv({ HF_HOME: home, HF_TOKEN: "hf_env" }).accessToken).toBe("hf_env");
    expect(hubOptionsFromEnv({ HF_HOME: home, HF_TOKEN_PATH: join(home, "absent") }).accessToken).toBeUndefined();
    expect(hubOptionsFromEnv({ HF_HOME: home, HF_HUB_OFFLINE: "1" }).offline).toBe(true);
    rmSync(home, { recursive: true, force: true });
  });
});
