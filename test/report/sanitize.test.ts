/** neutraliseInline on GitHub's autolink, emoji and invisible-text forms, exactly; cutting documents; the one list of hidden characters. */
import { describe, expect, it } from "vitest";
import { oneLine } from "../../src/errors";
import { cutDocument, fencedBlock, neutraliseInline, plainLine } from "../../src/report/sanitize";
import { outsideFences } from "../security/markdown-check";

describe("neutraliseInline", () => {
  it("shows references, SHAs, URLs and shortcodes as inline code", () => {
    expect(neutraliseInline("fixes #12, GH-3 and acme/repo#4")).toBe("fixes `#12`, `GH-3` and `acme/repo#4`");
    expect(neutraliseInline("in acme/repo@abcdef1 or 0123456789abcdef0123456789abcdef01234567")).toBe("in `acme/repo@abcdef1` or `0123456789abcdef0123456789abcdef01234567`");
    expect(neutraliseInline(":white_check_mark: :+1: :-1: :100:")).toBe("`:white_check_mark:` `:+1:` `:-1:` `:100:`");
    expect(neutraliseInline("see https://x.example/a_b?c=1&d=2#e), then www.y.example.")).toBe("see `https://x.example/a_b?c=1&d=2#e`\\), then `www.y.example`.");
  });

  it("leaves prose alone: times, ratios, short hex words, long digests", () => {
    expect(neutraliseInline(`at 12:30:45, 3:4, cafe, ${"f".repeat(64)}`)).toBe(`at 12:30:45, 3:4, cafe, ${"f".repeat(64)}`);
    expect(neutraliseInline("@octocat")).toBe("@\u200boctocat");
  });

  it("drops invisible characters that can carry hidden text", () => {
    const hidden = "\u{E0100}\u{E01EF}\uFE00\uFE0F\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\u00ad\u115f\u1160\u3164\uFFA0\u{E0001}\u{E007F}\u034f\u180e";
    expect(neutraliseInline(`a${hidden}b`)).toBe("ab");
    expect(fencedBlock(`a${hidden}b`)).toBe("```text\nab\n```");
  });
});

describe("cutDocument", () => {
  const NOTE = "\n\n_…cut here._\n";
  // model text holding a shorter fence: fencedBlock wraps it in a longer one
  const doc = ["# Report", "", "Intro line.", "", fencedBlock(["before", "```", "inner line", "~~~", ...Array.from({ length: 40 }, (_, i) => `model line ${i}`)].join("\n"), 10_000), "", "After the block."].join("\n");

  it("closes the fence that is open where it cuts, however short the fences inside it", () => {
    expect(doc).toMatch(/^````text$/m);
    const at = doc.indexOf("model line 20");
    const out = cutDocument(doc, at + NOTE.length, NOTE);
    expect(out.length).toBeLessThanOrEqual(at + NOTE.length);
    expect(out).toContain("\n```\ninner line\n");
    const { lines, unclosed, fencedLines } = outsideFences(out);
    expect(unclosed).toBe(false);
    expect(lines).toContain("_…cut here._");
    expect(fencedLines.join("\n")).not.toContain("cut here");
    expect(out.endsWith(`\n\`\`\`\`${NOTE}`)).toBe(true);
  });

  it("keeps every cut within the limit with the fence closed and the note outside it", () => {
    for (let max = NOTE.length + 12; max < doc.length; max += 7) {
      const out = cutDocument(doc, max, NOTE);
      expect(out.length, `max ${max}`).toBeLessThanOrEqual(max);
      const { lines, unclosed } = outsideFences(out);
      expect(unclosed, `max ${max}`).toBe(false);
      expect(lines, `max ${max}`).toContain("_…cut here._");
    }
  });
});

describe("carriage returns and the one list of hidden characters", () => {
  it("a carriage return in a fenced block breaks the line (alone or before \\n)", () => {
    expect(fencedBlock("a\rb\r\nc")).toBe("```text\na\nb\nc\n```");
  });

  it("oneLine (stderr, core.info) blanks zero-width characters, variation selectors and tags, not only controls", () => {
    const hidden = "\u200b\u200d\u2060\ufe0f\u{E0100}\u{E0041}\u00ad";
    expect(oneLine(`ig${hidden}nore\n::error::x\u2028y`)).toBe(`ig${" ".repeat(Array.from(hidden).length)}nore ::error::x y`);
    for (const ch of Array.from(hidden)) {
      expect(oneLine(`a${ch}b`)).toBe("a b");
      expect(plainLine(`a${ch}b`, 10)).toBe("ab");
    }
  });
});
