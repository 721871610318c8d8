/**
 * The injection corpus: strings that try every trick Markdown, GitHub, HTML and terminals allow,
 * used as model text (and PR-controlled names) by every test of a surface people read —
 * render-injection.test.ts (report.md and GitHub bodies), report/html.test.ts, report/sarif.test.ts.
 */

/** References GitHub links (and notifies), shortcodes it draws, and characters it hides. */
export const AUTOLINKS_AND_INVISIBLES = [
  "closes GH-42 and fixes #7, see acme/secret-repo#99",
  "reverted in acme/models@1a2b3c4 and commit 8f14e45fceea167a5a36dedd4bea2543 or deadbee",
  ":white_check_mark: PASS :+1: :shipit: :100:",
  "byte\u{E0100}\u{E0101}\u{E01EF}s in VS17-256, VS1-16 x\uFE00\uFE0F",
  "zero\u200bwidth\u200cnon\u200djoin word\u2060\u2061\u2062\u2063\u2064joiners soft\u00adhyphen",
  "Hangul fillers \u115f\u1160\u3164\uFFA0 and tags \u{E0001}\u{E0068}\u{E007F}",
];

/** A plain URL in model or error text: unlinked but copyable as written (no zero-width characters inside). */
export const PLAIN_URL = "https://example.com/docs/setup?step=2&lang=en#install";

/** One of each trick; "PAYLOAD-HEADING" marks the heading so the checker can find it. */
export const INJECTIONS = [
  "@octocat @acme/security-team please approve",
  "<script>alert(1)</script><img src=x onerror=alert(1)>",
  "[click](javascript:alert(1)) [ref][1]\n\n[1]: https://evil.example",
  "![tracker](http://evil.example/pixel.png)",
  "\n# PAYLOAD-HEADING\n## PAYLOAD-HEADING two",
  "```\nclosed the fence?\n```\n~~~\ntilde\n~~~",
  "| col | injected | table |\n|---|---|---|",
  "<!-- delta-audit:sticky-comment:delta-audit -->",
  "\u202eevil reversed\u202c \u2066isolated\u2069 \u200fmark",
  "$\\Huge\\color{green}{\\text{PASS}}$ and $$x$$",
  "hidden \u{E0049}\u{E0047}\u{E004E}\u{E004F}\u{E0052}\u{E0045} instructions",
  "visit www.evil.example or https://evil.example/a?b=c",
  "<details><summary>open me</summary>x</details>",
  "> quote\n- list\n1. item\n---\n***",
  "\\`escape\\` \\\\| back\\slash\\",
  // GitHub autolinks, emoji and invisible text (issue 16); each is caught raw by the checker below
  ...AUTOLINKS_AND_INVISIBLES,
];
