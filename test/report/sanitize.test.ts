/** neutraliseInline on GitHub's autolink, emoji and invisible-text forms, exactly. */
import { describe, expect, it } from "vitest";
import { fencedBlock, neutraliseInline } from "../../src/report/sanitize";

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
