/**
 * io/hub.ts against a local server that answers like the Hugging Face Hub (model info with
 * sha, recursive tree listing, resolve/ with Range probes, gated repos), checking the
 * standard cache layout on disk.
 */
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { existsSync, lstatSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BackendError, InputError } from "../../src/errors";
import { hubCacheDir, parseHubId, resolveHubModel, repoFolderName } from "../../src/io/hub";

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
