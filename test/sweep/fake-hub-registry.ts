/**
 * A Hugging Face Hub on 127.0.0.1 that answers @huggingface/hub as the real one does, for
 * registry sweeps: `GET /api/models?author=&search=&filter=` (paginated through a `Link: <…>;
 * rel="next"` header, `expand` fields sha, library_name, tags, cardData, siblings),
 * `GET /api/models/{repo}/revision/{rev}` (with `sha`), `GET /api/models/{repo}/tree/{rev}`
 * (git oid, and `lfs` {oid: sha256, size} for .safetensors) and `GET /{repo}/resolve/{rev}/{path}`
 * (Range probes answered 206 + Content-Range). A gated repository's files answer 401 without a
 * token and 403 with another token, as the Hub does; its listing and model info stay public.
 * Repositories can be changed between calls (a new commit: new files, new sha).
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface FakeRepo {
  /** a flat folder whose top-level files are the repository's */
  dir: string;
  sha: string;
  library?: string;
  tags?: string[];
  cardData?: Record<string, unknown>;
  /** files need `Authorization: Bearer <this>` */
  gatedToken?: string;
}

export interface FakeHubRegistry {
  url: string;
  repos: Map<string, FakeRepo>;
  requests: Array<{ path: string; query: string; auth?: string }>;
  close(): Promise<void>;
}

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
const isLfs = (name: string) => name.endsWith(".safetensors");
const files = (dir: string) =>
  readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => e.name)
    .sort();

/** A commit sha for tests: 40 hex characters from a word. */
export function fakeSha(word: string): string {
  return createHash("sha1").update(word).digest("hex");
}

export async function startFakeHubRegistry(repos: Record<string, FakeRepo>, opts: { pageSize?: number } = {}): Promise<FakeHubRegistry> {
  const pageSize = opts.pageSize ?? 2;
  const map = new Map(Object.entries(repos));
  const requests: FakeHubRegistry["requests"] = [];
  let base = "";

  const server: Server = createServer((req, res) => {
    const u = new URL(req.url ?? "/", "http://x");
    const path = decodeURIComponent(u.pathname);
    const auth = req.headers.authorization;
    requests.push({ path, query: u.search, ...(auth ? { auth } : {}) });
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/json", ...headers });
      res.end(JSON.stringify(body));
    };
    const info = (id: string, r: FakeRepo) => ({
      _id: createHash("sha1").update(id).digest("hex").slice(0, 24),
      id,
      sha: r.sha,
      private: false,
      gated: r.gatedToken ? "manual" : false,
      downloads: 0,
      likes: 0,
      lastModified: "2026-01-01T00:00:00.000Z",
      library_name: r.library,
      tags: r.tags ?? (r.library ? [r.library] : []),
      ...(r.cardData ? { cardData: r.cardData } : {}),
      siblings: files(r.dir).map((rfilename) => ({ rfilename })),
    });

    if (path === "/api/models") {
      const author = u.searchParams.get("author");
      const search = u.searchParams.get("search");
      const filters = u.searchParams.getAll("filter");
      const cursor = Number(u.searchParams.get("cursor") ?? 0);
      const all = [...map.entries()]
        .filter(([id]) => !author || id.split("/")[0] === author)
        .filter(([id]) => !search || id.includes(search))
        .filter(([, r]) => filters.every((f) => (r.tags ?? (r.library ? [r.library] : [])).includes(f) || r.library === f))
        .sort(([a], [b]) => a.localeCompare(b));
      const page = all.slice(cursor, cursor + pageSize).map(([id, r]) => info(id, r));
      const next = new URL(`${base}/api/models${u.search}`);
      next.searchParams.set("cursor", String(cursor + pageSize));
      return json(200, page, cursor + pageSize < all.length ? { link: `<${next.href}>; rel="next"` } : {});
    }
    let m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/);
    if (m) {
      const r = map.get(m[1]!);
      return r ? json(200, info(m[1]!, r)) : json(404, { error: "Repository not found" });
    }
    const gate = (r: FakeRepo): boolean => {
      if (!r.gatedToken || auth === `Bearer ${r.gatedToken}`) return false;
      json(auth ? 403 : 401, { error: auth ? "Access to this model is restricted" : "Authentication required" });
      return true;
    };
    m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/tree\/[^/]+$/);
    if (m) {
      const r = map.get(m[1]!);
      if (!r) return json(404, { error: "Repository not found" });
      if (gate(r)) return;
      return json(
        200,
        files(r.dir).map((name) => {
          const b = readFileSync(join(r.dir, name));
          return isLfs(name) ? { type: "file", path: name, size: b.length, oid: gitOid(Buffer.from(name)), lfs: { oid: sha256(b), size: b.length, pointerSize: 134 } } : { type: "file", path: name, size: b.length, oid: gitOid(b) };
        }),
      );
    }
    m = path.match(/^\/([^/]+\/[^/]+)\/resolve\/[^/]+\/([^/]+)$/);
    if (m && map.has(m[1]!)) {
      const r = map.get(m[1]!)!;
      if (gate(r)) return;
      if (!files(r.dir).includes(m[2]!)) {
        res.writeHead(404, { "X-Error-Code": "EntryNotFound" });
        return res.end();
      }
      const b = readFileSync(join(r.dir, m[2]!));
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
    json(404, { error: "Not found" });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url: base, repos: map, requests, close: () => new Promise<void>((r) => server.close(() => r())) };
}
