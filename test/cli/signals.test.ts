/**
 * exitOnSignals' own rules, on an event emitter standing in for the process: the first signal
 * aborts the command's AbortSignal and waits for the command to return (settle) or its grace to
 * pass before the staging cleanup and the exit, all within a hard bound; a second signal exits at
 * once; a command that owns the signal (serve) is left to it. The real process is covered in
 * test/security/interrupt.test.ts and test/cli/interrupt-phases.test.ts.
 */
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import { exitOnSignals, type SignalSeams } from "../../src/edge";

function setup(cleanup: () => Promise<void>, seams: Partial<SignalSeams> = {}) {
  const target = new EventEmitter();
  const exits: number[] = [];
  const lines: string[] = [];
  let cleanups = 0;
  const interruption = exitOnSignals({
    target,
    exit: (c) => void exits.push(c),
    graceMs: 60_000,
    exitMs: 60_000,
    notify: (l) => void lines.push(l),
    cleanup: () => (cleanups++, cleanup()),
    ...seams,
  });
  return { target, exits, lines, interruption, cleanups: () => cleanups };
}

const never = () => new Promise<void>(() => undefined);
const tick = () => new Promise((r) => setTimeout(r, 20));

describe("exitOnSignals", () => {
  it("SIGTERM aborts the command's signal at once and says so; the cleanup and exit 143 wait for the command", async () => {
    let done!: () => void;
    const s = setup(() => new Promise<void>((r) => (done = r)));
    expect(s.interruption.signal.aborted).toBe(false);
    s.target.emit("SIGTERM");
    expect(s.interruption.signal.aborted).toBe(true);
    expect(String(s.interruption.signal.reason)).toMatch(/interrupted by SIGTERM/);
    expect(s.lines).toEqual([expect.stringMatching(/^delta-audit: SIGTERM: stopping/)]);
    await tick();
    // the command has not returned yet: nothing is removed under it
    expect(s.cleanups()).toBe(0);
    const settled = s.interruption.settle();
    await tick();
    expect(s.cleanups()).toBe(1);
    expect(s.exits).toEqual([]);
    done();
    await settled;
    expect(s.exits).toEqual([143]);
  });

  it("a second SIGINT exits 130 at once while the first one's cleanup is held", async () => {
    const s = setup(never);
    s.target.emit("SIGINT");
    void s.interruption.settle();
    await tick();
    expect(s.cleanups()).toBe(1);
    expect(s.exits).toEqual([]);
    s.target.emit("SIGINT");
    expect(s.exits).toEqual([130]);
    expect(s.cleanups()).toBe(1);
  });

  it("a command that does not stop gets its grace, then the cleanup runs and the process exits", async () => {
    const s = setup(async () => undefined, { graceMs: 30 });
    s.target.emit("SIGINT");
    await tick();
    expect(s.cleanups()).toBe(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(s.cleanups()).toBe(1);
    expect(s.exits).toEqual([130]);
  });

  it("a cleanup that hangs is cut off at the hard bound", async () => {
    const s = setup(never, { graceMs: 10, exitMs: 60 });
    s.target.emit("SIGTERM");
    await new Promise((r) => setTimeout(r, 40));
    expect(s.cleanups()).toBe(1);
    expect(s.exits).toEqual([]);
    await new Promise((r) => setTimeout(r, 80));
    expect(s.exits[0]).toBe(143);
  });

  it("settle without a signal returns and exits nothing", async () => {
    const s = setup(async () => undefined);
    await s.interruption.settle();
    expect(s.cleanups()).toBe(0);
    expect(s.exits).toEqual([]);
  });

  it("stands by when the command listens for the signal itself", async () => {
    const s = setup(async () => undefined);
    s.target.on("SIGTERM", () => undefined);
    s.target.emit("SIGTERM");
    await tick();
    expect(s.interruption.signal.aborted).toBe(false);
    expect(s.lines).toEqual([]);
    expect(s.cleanups()).toBe(0);
    expect(s.exits).toEqual([]);
  });
});
