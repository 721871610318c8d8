/**
 * Serves model folders on 127.0.0.1 the way the Hugging Face Hub answers @huggingface/hub:
 * `GET /api/models/{repo}/revision/{rev}` (with `sha`), `GET /api/models/{repo}/tree/{rev}`
 * (files with git oid, and `lfs` {oid: sha256, size} for .safetensors), and
 * `GET /{repo}/resolve/{rev}/{path}` answering Range probes with 206 + Content-Range.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface FakeHub {
  url: string;
  commit: string;
  requests: { method: string; path: string }[];
  close(): Promise<void>;
}

/** `repos` maps `org/name` to a local folder (flat: only top-level files are served). */
export async function startFakeHub(repos: Record<string, string>, commit = "9".repeat(40)): Promise<FakeHub> {
  const requests: FakeHub["requests"] = [];
  const files = (dir: string) => readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
  const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
  const isLfs = (name: string) => name.endsWith(".safetensors");

  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    requests.push({ method: req.method ?? "", path });
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json" });
      res.end(JSON.stringify(body));
    };
    let m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/[^/]+$/);
    if (m) return repos[m[1]!] ? json(200, { _id: "1", id: m[1], sha: commit, private: false }) : json(404, { error: "Repository not found" });
    m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/tree\/[^/]+$/);
    if (m) {
      const dir = repos[m[1]!];
      if (!dir) return json(404, { error: "Repository not found" });
      return json(
        200,
        files(dir).map((name) => {
          const b = readFileSync(join(dir, name));
          return isLfs(name) ? { type: "file", path: name, size: b.length, oid: gitOid(Buffer.from(name)), lfs: { oid: sha256(b), size: b.length, pointerSize: 134 } } : { type: "file", path: name, size: b.length, oid: gitOid(b) };
        }),
      );
    }
    m = path.match(/^\/([^/]+\/[^/]+)\/resolve\/[^/]+\/([^/]+)$/);
    if (m && repos[m[1]!] && files(repos[m[1]!]!).includes(m[2]!)) {
      const b = readFileSync(join(repos[m[1]!]!, m[2]!));
      const etag = isLfs(m[2]!) ? sha256(b) : gitOid(b);
      const range = String(req.headers.range ?? "").match(/^bytes=(\d+)-(\d+)$/);
      if (range) {
        const a = Number(range[1]);
        const z = Math.min(Number(range[2]), b.length - 1);
        res.writeHead(206, { "content-range": `bytes ${a}-${z}/${b.length}`, etag: `"${etag}"` });
        return res.end(b.subarray(a, z + 1));
      }
      res.writeHead(200, { "content-length": String(b.length), etag: `"${etag}"` });
      return res.end(b);
    }
    res.writeHead(404, { "X-Error-Code": "EntryNotFound" });
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    commit,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
