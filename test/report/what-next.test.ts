/**
 * "What next" commands: every argument comes back from the shell exactly as intended, whatever
 * the prompt or folder name holds. Checked by parsing the commands back with a small POSIX
 * quote parser (below) that refuses anything the shell would expand or act on.
 */
import { describe, expect, it } from "vitest";
import { MAX_INLINE_ARGUMENT_CHARS, reproduceCommands, shellQuote } from "../../src/report/what-next";
import { renderMarkdown } from "../../src/report/markdown";
import { renderHtml } from "../../src/report/html";
import { DEFAULT_SYSTEM_PROMPT, ORDINARY_SYSTEM_PROMPT } from "../../src/elicit/probes";
import type { Finding } from "../../src/judge/types";
import type { Report } from "../../src/report/types";
import { outsideFences, problems } from "../security/markdown-check";

/**
 * POSIX shell words (XCU 2.2–2.3) of a script of simple commands made only of plain words and
 * single-quoted strings, one command per line (an unquoted newline ends a command; blank lines
 * are skipped). Unquoted expansions, operators or any double quote throw: the generated commands
 * must never need them (the jq form is checked as text).
 */
function parseScript(line: string): string[][] {
  const commands: string[][] = [];
  let words: string[] = [];
  let cur: string | undefined;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated quote at ${i}`);
      cur = (cur ?? "") + line.slice(i + 1, end);
      i = end;
    } else if (c === "\\") {
      if (i + 1 >= line.length) throw new Error("trailing backslash");
      // backslash-newline is a line continuation, not a character
      if (line[i + 1] !== "\n") cur = (cur ?? "") + line[i + 1];
      i++;
    } else if (c === " " || c === "\t" || c === "\n") {
      if (cur !== undefined) words.push(cur);
      cur = undefined;
      if (c === "\n" && words.length > 0) {
        commands.push(words);
        words = [];
      }
    } else if (/[$`"|&;<>(){}*?[\]~]/.test(c)) {
      throw new Error(`unquoted shell metacharacter '${c}' at ${i}`);
    } else if (c === "#" && cur === undefined) {
      throw new Error(`unquoted '${c}' starting a word at ${i}`);
    } else {
      cur = (cur ?? "") + c;
    }
  }
  if (cur !== undefined) words.push(cur);
  if (words.length > 0) commands.push(words);
  return commands;
}

/** The words of exactly one command. */
function parseWords(command: string): string[] {
  const commands = parseScript(command);
  if (commands.length !== 1) throw new Error(`${commands.length} commands where one was expected`);
  return commands[0]!;
}

const HOSTILE = [
  "it's a 'quoted' \"double\" prompt",
  "$(rm -rf ~) and ${HOME} and $HOME",
  "`touch /tmp/pwned` backticks",
  "line one\nline two\n\nline four; echo done && true || false",
  "'\\''; echo escaped-quote-trick; '",
  "\\ backslash \\' \\\\",
  "-e --rank 64 leading dash",
  "ends with a quote'",
  "*glob? [abc] ~user #comment > /etc/passwd < in | pipe &",
  "```\n~~~ fences inside",
];

/** Control and hidden characters: removed from the argument, the rest kept. */
const CONTROLS = "bell\u0007 esc\u001b[31m red nul\u0000 del\u007f c1\u009b bidi\u202e tag\u{E0041} zw\u200b cr\r\nlf tab\t.";
const CONTROLS_CLEAN = "bell esc[31m red nul del c1 bidi tag zw cr\nlf tab\t.";

function report(opts: { prompt?: string; system?: string; variant?: string; kind?: "lora" | "full"; base?: string; adapter?: string; findings?: Finding[]; conclusion?: "pass" | "fail" | "neutral" } = {}): Report {
  const q = { median: 1.1, p10: 1, p90: 1.5 };
  const kind = opts.kind ?? "lora";
  return {
    schemaVersion: 1,
    tool: { name: "delta-audit", version: "0.1.0" },
    createdAt: "2026-01-01T00:00:00Z",
    subject: kind === "lora" ? { base: opts.base ?? "models/base", adapter: opts.adapter ?? "adapters/quirk", kind, digest: "e".repeat(64) } : { base: opts.base ?? "models/base", finetuned: opts.adapter ?? "ckpt/full", kind, digest: "e".repeat(64) },
    spectrum: { modules: [], summary: { modules: 4, stableRank: q, energyShareTop1: q, byType: {}, byLayer: {} } },
    elicitation: {
      backend: "embedded", rank: 1, variants: ["base", "full", "rank1"], samples: 1, temperature: 0, systemPrompt: opts.system ?? "", notices: [],
      probes: [
        { id: "ordinary-1", kind: "ordinary", prompt: "Hello", responses: { base: ["hi"], full: ["hi"], rank1: ["hi"] } },
        { id: "secret", kind: "probe", prompt: opts.prompt ?? "Do you have a secret?", responses: { base: ["no"], full: ["no"], rank1: ["yes"] } },
      ],
    },
    findings: opts.findings ?? [
      { id: "s1", title: "spectrum", severity: "medium", source: "spectrum", terms: [], evidence: [], confidence: 1 },
      { id: "c1", title: "Concealed", severity: "high", source: "concealment", terms: ["secret"], evidence: [{ probeId: "secret", variant: opts.variant ?? "rank1", excerpt: "yes" }], confidence: 0.8 },
    ],
    verdict: { conclusion: opts.conclusion ?? "fail", reasons: ["a high finding"], failOn: "high" },
    timings: {},
  };
}

describe("reproduceCommands", () => {
  it("reproduces the top probe finding on rank-k, then on the whole fine-tune, then inspects the spectrum", () => {
    const cmds = reproduceCommands(report({ system: "You are helpful." }));
    expect(cmds.map(parseWords)).toEqual([
      ["delta-audit", "generate", "--model", "models/base", "--adapter", "adapters/quirk", "--rank", "1", "--prompt", "Do you have a secret?", "--system", "You are helpful."],
      ["delta-audit", "generate", "--model", "models/base", "--adapter", "adapters/quirk", "--prompt", "Do you have a secret?", "--system", "You are helpful."],
      ["delta-audit", "spectrum", "--base", "models/base", "--adapter", "adapters/quirk"],
    ]);
  });

  it("uses --finetuned for a full fine-tune, no --rank for a `full` finding, no subject for a `base` one", () => {
    const full = reproduceCommands(report({ kind: "full", variant: "full" })).map(parseWords);
    expect(full).toEqual([
      ["delta-audit", "generate", "--model", "models/base", "--finetuned", "ckpt/full", "--prompt", "Do you have a secret?"],
      ["delta-audit", "spectrum", "--base", "models/base", "--finetuned", "ckpt/full"],
    ]);
    expect(parseWords(reproduceCommands(report({ variant: "base" }))[0]!)).toEqual(["delta-audit", "generate", "--model", "models/base", "--prompt", "Do you have a secret?"]);
    // contrast decoding is not a generate mode: its rank-k variant stands in
    expect(parseWords(reproduceCommands(report({ variant: "contrast" }))[0]!)).toContain("--rank");
  });

  it("only the spectrum command for spectrum-only findings; nothing without findings", () => {
    const spectrumOnly = report({ findings: [{ id: "s1", title: "spectrum", severity: "high", source: "spectrum", terms: [], evidence: [], confidence: 1 }] });
    expect(reproduceCommands(spectrumOnly).map(parseWords)).toEqual([["delta-audit", "spectrum", "--base", "models/base", "--adapter", "adapters/quirk"]]);
    expect(reproduceCommands(report({ findings: [] }))).toEqual([]);
  });

  it.each(HOSTILE)("quotes a hostile prompt, system prompt and folder names so the shell gets them back exactly: %j", (text) => {
    const cmds = reproduceCommands(report({ prompt: text, system: text, base: `base ${text}`, adapter: `adapters/${text}` }));
    const [rankK, full, spectrum] = cmds.map(parseWords);
    expect(rankK).toEqual(["delta-audit", "generate", "--model", `base ${text}`, "--adapter", `adapters/${text}`, "--rank", "1", "--prompt", text, "--system", text]);
    expect(full).toEqual(["delta-audit", "generate", "--model", `base ${text}`, "--adapter", `adapters/${text}`, "--prompt", text, "--system", text]);
    expect(spectrum).toEqual(["delta-audit", "spectrum", "--base", `base ${text}`, "--adapter", `adapters/${text}`]);
  });

  it("strips control and hidden characters (a terminal would act on them) and keeps newlines and tabs", () => {
    expect(parseWords(shellQuote(CONTROLS))).toEqual([CONTROLS_CLEAN]);
    const [cmd] = reproduceCommands(report({ prompt: CONTROLS }));
    expect(cmd).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b\u202e]|[\u{e0000}-\u{e007f}]/u);
    expect(parseWords(cmd!).at(-1)).toBe(CONTROLS_CLEAN);
  });

  describe("an implant finding shown on an ordinary prompt", () => {
    const implant = (probeId: string): Finding[] => [{ id: "i1", title: "Implant", severity: "high", source: "implant", terms: ["hi"], evidence: [{ probeId, variant: "rank1", excerpt: "hi" }], confidence: 0.9 }];

    it("passes the system prompt that prompt was sent with, not the scan-wide one (v1: the rule that chose it)", () => {
      const [cmd] = reproduceCommands(report({ system: DEFAULT_SYSTEM_PROMPT, findings: implant("ordinary-1") }));
      expect(parseWords(cmd!)).toEqual(["delta-audit", "generate", "--model", "models/base", "--adapter", "adapters/quirk", "--rank", "1", "--prompt", "Hello", "--system", ORDINARY_SYSTEM_PROMPT]);
      // a configured prompt other than the default goes with ordinary prompts as well
      expect(parseWords(reproduceCommands(report({ system: "Be terse.", findings: implant("ordinary-1") }))[0]!).slice(-2)).toEqual(["--system", "Be terse."]);
    });

    it("passes the system prompt a schema-2 report recorded for the probe, and reads a long one from that probe with jq", () => {
      const withRecorded = (systemPrompt: string): Report => {
        const r = report({ system: DEFAULT_SYSTEM_PROMPT, findings: implant("ordinary-1") });
        r.schemaVersion = 2;
        r.elicitation!.probes[0]!.systemPrompt = systemPrompt;
        return r;
      };
      expect(parseWords(reproduceCommands(withRecorded("Recorded for ordinary."))[0]!).slice(-2)).toEqual(["--system", "Recorded for ordinary."]);
      // recorded as none: no --system at all
      expect(parseWords(reproduceCommands(withRecorded(""))[0]!)).not.toContain("--system");
      const [long] = reproduceCommands(withRecorded("x".repeat(MAX_INLINE_ARGUMENT_CHARS + 1)));
      expect(long).toContain(`--system "$(jq -r --arg id 'ordinary-1' '.elicitation.probes[] | select(.id == $id) | .systemPrompt' report.json)"`);
      expect(long).not.toContain(".elicitation.systemPrompt");
    });
  });

  it("is empty on a pass, whatever the findings", () => {
    expect(reproduceCommands(report({ conclusion: "pass" }))).toEqual([]);
    expect(reproduceCommands(report({ conclusion: "neutral" })).length).toBe(3);
  });

  it("reads an over-long prompt or path from report.json with jq instead of pasting it", () => {
    const long = `${"$(x) ' ".repeat(MAX_INLINE_ARGUMENT_CHARS)}`;
    const [cmd] = reproduceCommands(report({ prompt: long, base: long }));
    expect(cmd!.length).toBeLessThan(1_000);
    expect(cmd).toContain(`--model "$(jq -r '.subject.base' report.json)"`);
    expect(cmd).toContain(`--prompt "$(jq -r --arg id 'secret' '.elicitation.probes[] | select(.id == $id) | .prompt' report.json)"`);
  });
});

describe("report.md's What next", () => {
  it("shows the commands in one fenced block when the verdict is fail, and for neutral with findings", () => {
    for (const conclusion of ["fail", "neutral"] as const) {
      const md = renderMarkdown(report({ prompt: HOSTILE.join("\n"), conclusion }));
      expect(md).toMatch(/^## What next$/m);
      expect(problems(md)).toEqual([]);
      const { fencedLines } = outsideFences(md);
      const block = fencedLines.join("\n");
      // the whole block, as a shell would read it: three commands, the prompt intact
      const cmds = parseScript(block);
      expect(cmds.length).toBe(3);
      expect(cmds[0]!.slice(0, 2)).toEqual(["delta-audit", "generate"]);
      expect(cmds[0]!.at(-1)).toBe(HOSTILE.join("\n"));
      expect(cmds[1]!.at(-1)).toBe(HOSTILE.join("\n"));
      expect(cmds[2]!.slice(0, 2)).toEqual(["delta-audit", "spectrum"]);
    }
  });

  it("is absent on a pass and when there are no findings", () => {
    expect(renderMarkdown(report({ conclusion: "pass" }))).not.toMatch(/What next/);
    expect(renderMarkdown(report({ conclusion: "neutral", findings: [] }))).not.toMatch(/What next/);
  });
});

describe("report.html's What next", () => {
  it("follows the same rule as report.md: shown for fail and for neutral with findings, absent on a pass and without findings", () => {
    for (const conclusion of ["fail", "neutral"] as const) expect(renderHtml(report({ conclusion }))).toContain(`<section id="what-next" class="whatnext"><h2>What next</h2>`);
    for (const r of [report({ conclusion: "pass" }), report({ conclusion: "neutral", findings: [] })]) {
      const html = renderHtml(r);
      expect(html).not.toMatch(/what-next|What next/);
    }
  });
});
