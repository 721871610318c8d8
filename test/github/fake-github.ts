/**
 * A small HTTP server on 127.0.0.1 that answers like the parts of the GitHub REST API the
 * Action uses, records every request, and enforces GitHub's documented limits (422 on a
 * comment body over 65,536 chars, a check-run summary/text over 65,535, more than 50
 * annotations per request) so tests fail the way GitHub would.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface RecordedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  body: any;
  auth?: string;
}

export interface FakeComment {
  id: number;
  body: string;
  user: { login: string; type: "Bot" | "User" };
}

export interface FakeGitHubOptions {
  /** answer every write with 403 "Resource not accessible by integration" (a fork PR's token) */
  readOnly?: boolean;
  prFiles?: string[];
  comments?: FakeComment[];
  /** URL prefix, like GitHub Enterprise Server's /api/v3 */
  prefix?: string;
  /** answer this many requests with 502 Bad Gateway first (transient server trouble) */
  failFirst?: number;
}

export interface FakeGitHub {
  url: string;
  requests: RecordedRequest[];
  checkRuns: Map<number, any>;
  comments: FakeComment[];
  options: FakeGitHubOptions;
  close(): Promise<void>;
}

const LIMIT_BODY = 65_536;
const LIMIT_OUTPUT = 65_535;
const LIMIT_ANNOTATIONS = 50;

export async function startFakeGitHub(options: FakeGitHubOptions = {}): Promise<FakeGitHub> {
  const requests: RecordedRequest[] = [];
  const checkRuns = new Map<number, any>();
  const comments: FakeComment[] = [...(options.comments ?? [])];
  let nextId = 1000;
  const prefix = options.prefix ?? "";
  let baseUrl = "";

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "application/json; charset=utf-8", ...headers });
    res.end(JSON.stringify(body));
  };
  const page = (res: ServerResponse, items: unknown[], q: URLSearchParams, path: string) => {
    const per = Math.min(100, Number(q.get("per_page") ?? 30));
    const p = Number(q.get("page") ?? 1);
    const slice = items.slice((p - 1) * per, p * per);
    const headers: Record<string, string> = {};
    if (p * per < items.length) headers.link = `<${baseUrl}${path}?per_page=${per}&page=${p + 1}>; rel="next"`;
    send(res, 200, slice, headers);
  };
  const validateOutput = (output: any): string | undefined => {
    if (!output) return undefined;
    if (typeof output.summary === "string" && output.summary.length > LIMIT_OUTPUT) return "output.summary is too long (maximum is 65535 characters)";
    if (typeof output.text === "string" && output.text.length > LIMIT_OUTPUT) return "output.text is too long (maximum is 65535 characters)";
    if (Array.isArray(output.annotations) && output.annotations.length > LIMIT_ANNOTATIONS) return "Only 50 annotations are allowed per request";
    return undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString("utf8");
    const u = new URL(req.url ?? "/", "http://x");
    let path = u.pathname;
    const body = raw ? JSON.parse(raw) : undefined;
    requests.push({ method: req.method ?? "", path, query: u.searchParams, body, auth: req.headers.authorization });
    if ((options.failFirst ?? 0) > 0) {
      options.failFirst!--;
      return send(res, 502, { message: "Server Error" });
    }
    if (!path.startsWith(prefix)) return send(res, 404, { message: "Not Found" });
    path = path.slice(prefix.length);
    const write = req.method !== "GET";
    if (write && options.readOnly) {
      return send(res, 403, { message: "Resource not accessible by integration", documentation_url: "https://docs.github.com/rest" });
    }
    let m: RegExpMatchArray | null;
    // GET /user answers for personal access tokens only; Actions tokens get 403, as on GitHub
    if (req.method === "GET" && path === "/user") {
      const pat = req.headers.authorization?.match(/^token (ghp_\w+)$/);
      return pat ? send(res, 200, { login: `user-${pat[1]}`, type: "User" }) : send(res, 403, { message: "Resource not accessible by integration" });
    }
    if (req.method === "POST" && (m = path.match(/^\/repos\/[^/]+\/[^/]+\/check-runs$/))) {
      const err = validateOutput(body?.output);
      if (err) return send(res, 422, { message: err });
      const id = nextId++;
      checkRuns.set(id, { id, ...body, annotations: [...(body?.output?.annotations ?? [])], updates: [] });
      return send(res, 201, { id, ...body });
    }
    if (req.method === "PATCH" && (m = path.match(/^\/repos\/[^/]+\/[^/]+\/check-runs\/(\d+)$/))) {
      const run = checkRuns.get(Number(m[1]));
      if (!run) return send(res, 404, { message: "Not Found" });
      const err = validateOutput(body?.output);
      if (err) return send(res, 422, { message: err });
      run.updates.push(body);
      Object.assign(run, { ...body, output: body.output ?? run.output });
      run.annotations.push(...(body?.output?.annotations ?? []));
      return send(res, 200, run);
    }
    if (req.method === "GET" && (m = path.match(/^\/repos\/[^/]+\/[^/]+\/pulls\/\d+\/files$/))) {
      return page(res, (options.prFiles ?? []).map((filename) => ({ filename, status: "modified" })), u.searchParams, u.pathname);
    }
    if (req.method === "GET" && (m = path.match(/^\/repos\/[^/]+\/[^/]+\/issues\/\d+\/comments$/))) {
      return page(res, comments, u.searchParams, u.pathname);
    }
    if (req.method === "POST" && (m = path.match(/^\/repos\/[^/]+\/[^/]+\/issues\/\d+\/comments$/))) {
      if (typeof body?.body !== "string" || body.body.length > LIMIT_BODY) return send(res, 422, { message: "Body is too long (maximum is 65536 characters)" });
      const pat = req.headers.authorization?.match(/^token (ghp_\w+)$/);
      const user: FakeComment["user"] = pat ? { login: `user-${pat[1]}`, type: "User" } : { login: "github-actions[bot]", type: "Bot" };
      const c: FakeComment = { id: nextId++, body: body.body, user };
      comments.push(c);
      return send(res, 201, c);
    }
    if (req.method === "PATCH" && (m = path.match(/^\/repos\/[^/]+\/[^/]+\/issues\/comments\/(\d+)$/))) {
      const c = comments.find((x) => x.id === Number(m![1]));
      if (!c) return send(res, 404, { message: "Not Found" });
      if (typeof body?.body !== "string" || body.body.length > LIMIT_BODY) return send(res, 422, { message: "Body is too long (maximum is 65536 characters)" });
      c.body = body.body;
      return send(res, 200, c);
    }
    send(res, 404, { message: "Not Found" });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => send(res, 500, { message: String(err) }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  baseUrl = `http://127.0.0.1:${port}`;
  return {
    url: `${baseUrl}${prefix}`,
    requests,
    checkRuns,
    comments,
    options,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
