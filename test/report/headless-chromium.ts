/**
 * A real headless Chromium for the report.html tests, driven through the DevTools protocol over
 * `--remote-debugging-pipe` (fd 3 in, fd 4 out, one JSON message per NUL): no WebSocket client
 * and no port to find. It loads a page and records what a reviewer's browser would do with it:
 * every network request, console message, exception, log entry (CSP violations land there)
 * and dialog.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { StringDecoder } from "node:string_decoder";

/** Names Debian, Ubuntu and Google ship Chromium under; CHROMIUM_BIN overrides. */
const CANDIDATES = ["chromium", "chromium-browser", "google-chrome-stable", "google-chrome"];
/** A page that loads no resource does so in well under this on a 2-core runner. */
const LOAD_TIMEOUT_MS = 30_000;

/** The Chromium binary on PATH (or CHROMIUM_BIN), or undefined where there is none. */
export function findChromium(): string | undefined {
  const explicit = process.env.CHROMIUM_BIN;
  const dirs = (process.env.PATH ?? "").split(delimiter).filter(Boolean);
  const candidates = explicit ? [explicit] : CANDIDATES.flatMap((n) => dirs.map((d) => join(d, n)));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  return undefined;
}

interface Message {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

/** What one page load did. */
export interface PageLog {
  requests: string[];
  console: { type: string; text: string }[];
  exceptions: string[];
  logEntries: { level: string; source: string; text: string }[];
  dialogs: string[];
}

export class Browser {
  private next = 1;
  private readonly pending = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  private readonly listeners = new Set<(m: Message) => void>();
  private readonly stderr: string[] = [];

  private constructor(
    private readonly proc: ChildProcess,
    private readonly profile: string,
  ) {
    const decoder = new StringDecoder("utf8");
    let buffer = "";
    (proc.stdio[4] as Readable).on("data", (chunk: Buffer) => {
      buffer += decoder.write(chunk);
      let end: number;
      while ((end = buffer.indexOf("\0")) >= 0) {
        const msg = JSON.parse(buffer.slice(0, end)) as Message;
        buffer = buffer.slice(end + 1);
        if (msg.id !== undefined) {
          const p = this.pending.get(msg.id);
          this.pending.delete(msg.id);
          if (msg.error) p?.reject(new Error(msg.error.message));
          else p?.resolve(msg.result ?? {});
        } else for (const l of this.listeners) l(msg);
      }
    });
    proc.stderr?.on("data", (d: Buffer) => this.stderr.push(d.toString()));
    proc.on("exit", () => {
      for (const p of this.pending.values()) p.reject(new Error(`chromium exited: ${this.stderr.join("").slice(-2000)}`));
      this.pending.clear();
    });
  }

  static launch(bin: string): Browser {
    const profile = mkdtempSync(join(tmpdir(), "da-chromium-"));
    const proc = spawn(
      bin,
      [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--remote-debugging-pipe",
        `--user-data-dir=${profile}`,
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--font-render-hinting=none",
        "about:blank",
      ],
      { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] },
    );
    return new Browser(proc, profile);
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.next++;
    const msg = JSON.stringify(sessionId ? { id, method, params, sessionId } : { id, method, params });
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      (this.proc.stdio[3] as Writable).write(`${msg}\0`);
    });
  }

  /** A fresh tab, its protocol session attached, with the domains the log needs enabled. */
  async newPage(): Promise<Page> {
    const { targetId } = (await this.send("Target.createTarget", { url: "about:blank" })) as { targetId: string };
    const { sessionId } = (await this.send("Target.attachToTarget", { targetId, flatten: true })) as { sessionId: string };
    const page = new Page(this, sessionId);
    this.listeners.add((m) => {
      if (m.sessionId === sessionId && m.method) page.event(m.method, m.params ?? {});
    });
    for (const domain of ["Page", "Runtime", "Log", "Network"]) await page.send(`${domain}.enable`);
    return page;
  }

  async close(): Promise<void> {
    await this.send("Browser.close").catch(() => undefined);
    await new Promise<void>((resolve) => {
      if (this.proc.exitCode !== null || this.proc.signalCode !== null) resolve();
      else {
        const t = setTimeout(() => this.proc.kill("SIGKILL"), 5_000);
        this.proc.once("exit", () => {
          clearTimeout(t);
          resolve();
        });
      }
    });
    rmSync(this.profile, { recursive: true, force: true });
  }
}

export class Page {
  log: PageLog = { requests: [], console: [], exceptions: [], logEntries: [], dialogs: [] };
  private waiters: { method: string; resolve: () => void }[] = [];

  constructor(
    private readonly browser: Browser,
    private readonly sessionId: string,
  ) {}

  send(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.browser.send(method, params, this.sessionId);
  }

  event(method: string, p: Record<string, unknown>): void {
    if (method === "Network.requestWillBeSent") this.log.requests.push(String((p.request as { url: string }).url));
    else if (method === "Runtime.consoleAPICalled") this.log.console.push({ type: String(p.type), text: JSON.stringify(p.args) });
    else if (method === "Runtime.exceptionThrown") this.log.exceptions.push(JSON.stringify(p.exceptionDetails));
    else if (method === "Log.entryAdded") {
      const e = p.entry as { level: string; source: string; text: string };
      this.log.logEntries.push({ level: e.level, source: e.source, text: e.text });
    } else if (method === "Page.javascriptDialogOpening") {
      this.log.dialogs.push(String(p.message));
      void this.send("Page.handleJavaScriptDialog", { accept: false });
    }
    this.waiters = this.waiters.filter((w) => (w.method === method ? (w.resolve(), false) : true));
  }

  private waitFor(method: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${method}`)), LOAD_TIMEOUT_MS);
      this.waiters.push({ method, resolve: () => (clearTimeout(t), resolve()) });
    });
  }

  /** Load `url` at a viewport `width` wide in a light or dark colour scheme; resets the log. */
  async load(url: string, opts: { width: number; height?: number; scheme?: "light" | "dark" }): Promise<PageLog> {
    await this.send("Emulation.setDeviceMetricsOverride", { width: opts.width, height: opts.height ?? 900, deviceScaleFactor: 1, mobile: opts.width < 600 });
    await this.send("Emulation.setEmulatedMedia", { features: [{ name: "prefers-color-scheme", value: opts.scheme ?? "light" }] });
    this.log = { requests: [], console: [], exceptions: [], logEntries: [], dialogs: [] };
    const loaded = this.waitFor("Page.loadEventFired");
    await this.send("Page.navigate", { url });
    await loaded;
    // let the inline script's first pass and any late console message arrive
    await this.evaluate("new Promise((r) => requestAnimationFrame(() => setTimeout(r, 50)))");
    return this.log;
  }

  /** The value of `expression` (awaited when it is a promise), as JSON. */
  async evaluate<T = unknown>(expression: string): Promise<T> {
    const r = (await this.send("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true })) as { result: { value: T }; exceptionDetails?: unknown };
    if (r.exceptionDetails) throw new Error(`evaluate failed: ${JSON.stringify(r.exceptionDetails)}`);
    return r.result.value;
  }

  /** A PNG of the page from `y` (CSS px), at most `maxHeight` tall (the whole page by default). */
  async screenshot(opts: { y?: number; maxHeight?: number } = {}): Promise<Buffer> {
    const m = (await this.send("Page.getLayoutMetrics")) as { cssContentSize: { width: number; height: number } };
    const y = opts.y ?? 0;
    const height = Math.max(1, Math.min(m.cssContentSize.height - y, opts.maxHeight ?? Infinity));
    const { data } = (await this.send("Page.captureScreenshot", { format: "png", captureBeyondViewport: true, clip: { x: 0, y, width: m.cssContentSize.width, height, scale: 1 } })) as { data: string };
    return Buffer.from(data, "base64");
  }
}
