/**
 * exitOnSignals' own rules, on an event emitter standing in for the process: the first signal
 * waits for the staging cleanup (bounded), a second one exits at once, and a command that owns
 * the signal (serve) is left to it. The real process is covered in test/security/interrupt.test.ts.
 */
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { exitOnSignals } from "../../src/edge";

function setup(cleanup: () => Promise<void>, cleanupMs = 60_000) {
  const target = new EventEmitter();
  const exits: number[] = [];
  let cleanups = 0;
  exitOnSignals({ target, exit: (c) => void exits.push(c), cleanupMs, cleanup: () => (cleanups++, cleanup()) });
  return { target, exits, cleanups: () => cleanups };
}

const never = () => new Promise<void>(() => undefined);
const tick = () => new Promise((r) => setTimeout(r, 20));

describe("exitOnSignals", () => {
  it("exits 143 on SIGTERM once the cleanup is done, and not before", async () => {
    let done!: () => void;
    const s = setup(() => new Promise<void>((r) => (done = r)));
    s.target.emit("SIGTERM");
    await tick();
    expect(s.cleanups()).toBe(1);
    expect(s.exits).toEqual([]);
    done();
    await tick();
    expect(s.exits).toEqual([143]);
  });

  it("a second SIGINT exits 130 at once while the first one's cleanup still runs", async () => {
    const s = setup(never);
    s.target.emit("SIGINT");
    await tick();
    expect(s.exits).toEqual([]);
    s.target.emit("SIGINT");
    expect(s.exits).toEqual([130]);
    expect(s.cleanups()).toBe(1);
  });

  it("a cleanup that hangs is cut off after its time", async () => {
    const s = setup(never, 30);
    s.target.emit("SIGTERM");
    await new Promise((r) => setTimeout(r, 120));
    expect(s.exits).toEqual([143]);
  });

  it("stands by when the command listens for the signal itself", async () => {
    const s = setup(async () => undefined);
    s.target.on("SIGTERM", () => undefined);
    s.target.emit("SIGTERM");
    await tick();
    expect(s.cleanups()).toBe(0);
    expect(s.exits).toEqual([]);
  });
});
