/**
 * Serves model folders on 127.0.0.1 the way the Hugging Face Hub answers @huggingface/hub:
 *
 *   GET /api/models/{repo}/revision/{rev}   {sha}: a branch, tag or commit; an unknown one is
 *                                           404 X-Error-Code: RevisionNotFound
 *   GET /api/models/{repo}/tree/{rev}       files with git oid, and `lfs` {oid: sha256, size}
 *                                           for .safetensors
 *   GET /{repo}/resolve/{rev}/{path}        small files directly; LFS files 302 to a CDN-like
 *                                           /cdn-lfs/{sha256} on the same origin (X-Linked-ETag,
 *                                           X-Linked-Size), both answering Range probes with 206
 *
 * and its failures: a missing repository is 404 RepoNotFound; a gated one lists publicly but
 * answers its files 401 (no token) or 403 (another token) GatedRepo; a private one answers
 * everything 401 RepoNotFound without a token and 404 with another, as the Hub hides it.
 */
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

export interface FakeRepo {
  /** the folder served (flat: only its top-level files) */
  dir: string;
  /** branch or tag → commit; "main" → the hub's commit unless given */
  revisions?: Record<string, string>;
  /** files need `Authorization: Bearer <gated>`; metadata and the listing stay public, as on the Hub */
  gated?: string;
  /** everything needs `Authorization: Bearer <private>` */
  private?: string;
}

export interface FakeHub {
  url: string;
  commit: string;
  requests: { method: string; path: string; auth?: string; range?: string }[];
  close(): Promise<void>;
}

/** `repos` maps `org/name` to a folder, or to a FakeRepo. */
export async function startFakeHub(repos: Record<string, string | FakeRepo>, commit = "9".repeat(40)): Promise<FakeHub> {
  const requests: FakeHub["requests"] = [];
  const repoOf = (name: string): FakeRepo | undefined => {
    const r = repos[name];
    return typeof r === "string" ? { dir: r } : r;
  };
  const files = (dir: string) => readdirSync(dir, { withFileTypes: true }).filter((e) => e.isFile()).map((e) => e.name);
  const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
  const isLfs = (name: string) => name.endsWith(".safetensors");
  /** sha256 → bytes of every LFS file served so far: the CDN's store */
  const cdn = new Map<string, Buffer>();

  const json = (res: ServerResponse, status: number, body: unknown, errorCode?: string) => {
    res.writeHead(status, { "content-type": "application/json", ...(errorCode ? { "x-error-code": errorCode } : {}) });
    res.end(JSON.stringify(body));
  };
  /** 200 or, for `Range: bytes=a-b`, 206 with Content-Range (how @huggingface/hub probes sizes) */
  const bytes = (req: IncomingMessage, res: ServerResponse, b: Buffer, headers: Record<string, string>) => {
    const range = String(req.headers.range ?? "").match(/^bytes=(\d+)-(\d*)$/);
    if (range) {
      const a = Number(range[1]);
      const z = Math.min(range[2] ? Number(range[2]) : b.length - 1, b.length - 1);
      if (a >= b.length) {
        res.writeHead(416, { "content-range": `bytes */${b.length}` });
        return res.end();
      }
      res.writeHead(206, { ...headers, "content-range": `bytes ${a}-${z}/${b.length}`, "content-length": String(z - a + 1) });
      return res.end(b.subarray(a, z + 1));
    }
    res.writeHead(200, { ...headers, "content-length": String(b.length) });
    res.end(b);
  };
  /** Answer as the Hub does when the request may not see `repo`; true when it answered. */
  const refused = (res: ServerResponse, name: string, repo: FakeRepo | undefined, auth: string | undefined, file: boolean): boolean => {
    let refusal: [number, string, string] | undefined;
    if (!repo) refusal = [404, "Repository not found", "RepoNotFound"];
    else if (repo.private !== undefined && auth !== `Bearer ${repo.private}`) refusal = [auth ? 404 : 401, "Repository not found", "RepoNotFound"];
    else if (file && repo.gated !== undefined && auth !== `Bearer ${repo.gated}`) {
      refusal = auth
        ? [403, `Access to model ${name} is restricted and you are not in the authorized list. Visit https://huggingface.co/${name} to ask for access.`, "GatedRepo"]
        : [401, `Access to model ${name} is restricted. You must have access to it and be authenticated to access it. Please log in.`, "GatedRepo"];
    }
    if (refusal) json(res, refusal[0], { error: refusal[1] }, refusal[2]);
    return refusal !== undefined;
  };
  const commitOf = (repo: FakeRepo, rev: string): string | undefined => {
    const revisions: Record<string, string> = { main: commit, ...repo.revisions };
    if (revisions[rev]) return revisions[rev];
    return Object.values(revisions).includes(rev) ? rev : undefined;
  };

  const server: Server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://x").pathname);
    const auth = req.headers.authorization;
    requests.push({ method: req.method ?? "", path, auth, range: req.headers.range });

    let m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/);
    if (m) {
      const repo = repoOf(m[1]!);
      if (refused(res, m[1]!, repo, auth, false)) return;
      const sha = commitOf(repo!, m[2]!);
      if (!sha) return json(res, 404, { error: `Invalid rev id: ${m[2]}` }, "RevisionNotFound");
      return json(res, 200, { _id: "1", id: m[1], sha, private: repo!.private !== undefined, gated: repo!.gated !== undefined ? "manual" : false });
    }
    m = path.match(/^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/);
    if (m) {
      const repo = repoOf(m[1]!);
      if (refused(res, m[1]!, repo, auth, false)) return;
      if (!commitOf(repo!, m[2]!)) return json(res, 404, { error: `Invalid rev id: ${m[2]}` }, "RevisionNotFound");
      return json(
        res,
        200,
        files(repo!.dir).map((name) => {
          const b = readFileSync(join(repo!.dir, name));
          return isLfs(name) ? { type: "file", path: name, size: b.length, oid: gitOid(Buffer.from(name)), lfs: { oid: sha256(b), size: b.length, pointerSize: 134 } } : { type: "file", path: name, size: b.length, oid: gitOid(b) };
        }),
      );
    }
    m = path.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/([^/]+)$/);
    if (m) {
      const repo = repoOf(m[1]!);
      if (refused(res, m[1]!, repo, auth, true)) return;
      if (!commitOf(repo!, m[2]!)) return json(res, 404, { error: `Invalid rev id: ${m[2]}` }, "RevisionNotFound");
      if (!files(repo!.dir).includes(m[3]!)) {
        res.writeHead(404, { "x-error-code": "EntryNotFound" });
        return res.end();
      }
      const b = readFileSync(join(repo!.dir, m[3]!));
      if (isLfs(m[3]!)) {
        const oid = sha256(b);
        cdn.set(oid, b);
        res.writeHead(302, { location: `/cdn-lfs/${oid}`, "x-linked-etag": `"${oid}"`, "x-linked-size": String(b.length) });
        return res.end();
      }
      return bytes(req, res, b, { etag: `"${gitOid(b)}"` });
    }
    m = path.match(/^\/cdn-lfs\/([0-9a-f]{64})$/);
    if (m && cdn.has(m[1]!)) return bytes(req, res, cdn.get(m[1]!)!, { etag: `"${m[1]}"` });
    json(res, 404, { error: "no route" }, "EntryNotFound");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    commit,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
