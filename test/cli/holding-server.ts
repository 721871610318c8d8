/**
 * An OpenAI-compatible server on 127.0.0.1 for interruption tests: it answers `base` and holds
 * every request for another model until the client goes away, so a scan stays inside its
 * elicitation for as long as a test wants (no sleeping, no race with a fast or loaded machine).
 * It offers no logprobs, so contrast is switched off with a notice and the suite is base, full,
 * rank1. `models` records the model of every chat request, in order.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface HoldingServer {
  url: string;
  /** model names of the chat requests received, in order */
  models: string[];
  close(): Promise<void>;
}

export async function startHoldingServer(): Promise<HoldingServer> {
  const models: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((req, res) => {
    let raw = "";
    req.on("data", (c) => (raw += c));
    req.on("end", () => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, { "content-type": "application/json" });
        res.end(JSON.stringify(body));
      };
      if (req.method === "GET" && req.url === "/v1/models") {
        return send(200, { object: "list", data: [{ id: "base" }, { id: "full", parent: "base", root: "/adapters/full" }, { id: "rank1", parent: "base", root: "/adapters/rank1" }].map((m) => ({ object: "model", ...m })) });
      }
      if (req.method !== "POST" || req.url !== "/v1/chat/completions") return send(404, { detail: "Not Found" });
      const body = JSON.parse(raw) as { model: string; logprobs?: boolean };
      // no logprobs: contrast is switched off with a notice, and the suite is base, full, rank1
      if (body.logprobs) return send(400, { error: { message: "logprobs are not supported" } });
      models.push(body.model);
      if (body.model !== "base") return; // held until the client goes away
      send(200, { id: "c", object: "chat.completion", model: "base", choices: [{ index: 0, message: { role: "assistant", content: "a plain answer" }, finish_reason: "stop" }], usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 } });
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    models,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((ok) => server.close(() => ok()));
    },
  };
}
