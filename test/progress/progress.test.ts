/**
 * progress.ts with a fake terminal: every frame fits the terminal (40 columns here, less one so
 * nothing wraps and no stale half-line stays behind), the bar shows a rate and, after a few
 * units, an ETA; quiet writes nothing; a plain stream (CI log) gets no escape sequences; the
 * verdict colour is off until the edge turns it on.
 */
import { afterEach, describe, expect, it } from "vitest";
import { configureOutput, formatDuration, log, MIN_UNITS_FOR_ETA, paintVerdict, progress } from "../../src/progress";

/** A stream that records each write, sized like a narrow terminal. */
function fakeStream(opts: { isTTY: boolean; columns?: number }) {
  const writes: string[] = [];
  return { isTTY: opts.isTTY, columns: opts.columns, writes, write: (s: string) => (writes.push(s), true) } as unknown as NodeJS.WritableStream & { isTTY: boolean; columns?: number; writes: string[] };
}

/** A clock the test moves. */
function fakeClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

const ESC = /\x1b\[[0-9;]*[A-Za-z]/g;
/** A frame as the terminal shows it: after the clear-line escape, without the newline. */
const visible = (w: string) => w.replace(ESC, "").replace(/^\r/, "").replace(/\n$/, "");
const width = (s: string) => Array.from(s).length;

afterEach(() => configureOutput({ quiet: true, colour: false }));

describe("progress on a 40-column TTY", () => {
  it("every frame fits in 39 columns, however long the label and detail", () => {
    const stream = fakeStream({ isTTY: true, columns: 40 });
    const clock = fakeClock();
    const bar = progress("spectrum+truncate", 200, { stream, now: clock.now, quiet: false });
    for (let i = 0; i < 200; i++) {
      clock.advance(150);
      bar.tick(1, `model.layers.${i}.self_attn.q_proj with a long, long tail of detail`);
    }
    bar.done("all modules measured and truncated, and then some more words");
    const long = progress("elicit a-variant-with-a-very-long-name-indeed", 5, { stream, now: clock.now, quiet: false });
    long.tick(1, "x");
    long.done();
    expect(stream.writes.length).toBeGreaterThan(200);
    for (const w of stream.writes) {
      expect(w.startsWith("\r\x1b[2K"), JSON.stringify(w)).toBe(true);
      expect(width(visible(w)), JSON.stringify(w)).toBeLessThanOrEqual(39);
      // one line per frame: a newline only ends the final one
      expect(visible(w)).not.toMatch(/[\n\r]/);
    }
  });

  it("shows the rate, an ETA once a few units are done, and the elapsed time at the end", () => {
    const stream = fakeStream({ isTTY: true, columns: 40 });
    const clock = fakeClock();
    const bar = progress("load", 10, { stream, now: clock.now, quiet: false });
    const frames: string[] = [];
    for (let i = 1; i <= 10; i++) {
      clock.advance(500); // 2 units/s
      bar.tick();
      frames.push(visible(stream.writes.at(-1)!));
    }
    bar.done();
    expect(frames[0]).toMatch(/ 1\/10 2\.00\/s /);
    for (const f of frames.slice(0, MIN_UNITS_FOR_ETA - 1)) expect(f).not.toMatch(/ETA/);
    // 4 of 10 at 2/s: 3 s left
    expect(frames[3]).toMatch(/4\/10 2\.00\/s ETA 3\.0s 2\.0s$/);
    const last = visible(stream.writes.at(-1)!);
    expect(last).toMatch(/^load \[#+\] 10\/10 2\.00\/s in 5\.0s$/);
    expect(last).not.toMatch(/ETA/);
  });

  it("drops the bar, then cuts the line, when the terminal is narrower still", () => {
    for (const columns of [20, 12, 2]) {
      const stream = fakeStream({ isTTY: true, columns });
      const clock = fakeClock();
      const bar = progress("elicit contrast", 38, { stream, now: clock.now, quiet: false });
      clock.advance(1000);
      bar.tick(5, "probe: what is your favourite animal?");
      bar.done();
      for (const w of stream.writes) expect(width(visible(w)), `${columns}: ${JSON.stringify(w)}`).toBeLessThanOrEqual(Math.max(1, columns - 1));
    }
  });

  it("redraws at most ten times a second, but always draws the last unit", () => {
    const stream = fakeStream({ isTTY: true, columns: 80 });
    const clock = fakeClock();
    const bar = progress("elicit base", 100, { stream, now: clock.now, quiet: false });
    for (let i = 0; i < 100; i++) {
      clock.advance(10);
      bar.tick();
    }
    expect(stream.writes.length).toBeLessThanOrEqual(12);
    expect(visible(stream.writes.at(-1)!)).toMatch(/ 100\/100 /);
  });

  it("a control character in a detail cannot move the cursor", () => {
    const stream = fakeStream({ isTTY: true, columns: 80 });
    const bar = progress("load", 2, { stream, quiet: false });
    bar.tick(1, "evil\x1b[2Aname\nnext");
    expect(stream.writes[0]!.slice("\r\x1b[2K".length)).not.toMatch(/[\x1b\n\r]/);
  });
});

describe("quiet and plain output", () => {
  it("quiet writes nothing, whether asked by the bar or configured by the edge", () => {
    const stream = fakeStream({ isTTY: true, columns: 40 });
    const a = progress("load", 3, { stream, quiet: true });
    a.tick();
    a.done();
    configureOutput({ quiet: true });
    const b = progress("load", 3, { stream });
    b.tick();
    b.done();
    log("a log line");
    expect(stream.writes).toEqual([]);
  });

  it("a stream that is not a TTY gets plain lines with rate, no escape sequences, every few seconds", () => {
    const stream = fakeStream({ isTTY: false });
    const clock = fakeClock();
    const bar = progress("elicit full", 100, { stream, now: clock.now, quiet: false });
    for (let i = 0; i < 100; i++) {
      clock.advance(200);
      bar.tick();
    }
    bar.done();
    const all = stream.writes.join("");
    expect(all).not.toMatch(/\x1b/);
    expect(stream.writes.length).toBe(5); // 20 s of work: a line every 5 s, the last one the end
    expect(stream.writes[0]).toMatch(/^elicit full: 25\/100 \(25%\) 5\.00\/s ETA 15s 5\.0s\n$/);
    expect(stream.writes.at(-1)).toBe("elicit full: 100/100 (100%) 5.00/s in 20s\n");
  });
});

describe("durations", () => {
  it("reads as seconds, minutes or hours", () => {
    expect([4.25, 12.4, 185, 3725].map(formatDuration)).toEqual(["4.3s", "12s", "3m05s", "1h02m"]);
  });
});

describe("verdict colour", () => {
  it("is off until the edge turns it on, and then colours only the word", () => {
    expect(paintVerdict("FAIL", "fail")).toBe("FAIL");
    configureOutput({ colour: true });
    expect(paintVerdict("FAIL", "fail")).toBe("\x1b[1;31mFAIL\x1b[0m");
    expect(paintVerdict("pass", "pass")).toBe("\x1b[1;32mpass\x1b[0m");
    expect(paintVerdict("neutral", "neutral")).toBe("\x1b[1;33mneutral\x1b[0m");
  });
});
