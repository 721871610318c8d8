/**
 * A scan of a full fine-tune that adds tokens, end to end with the embedded engine: the quirk
 * organism built with added special tokens is audited (not refused), its planted behaviour is
 * still caught, the added tokens are listed as the fine-tune's tokenizer decodes them (an info
 * finding), and rank1-adapter/ carries their rows. Hostile token texts (very long, control and
 * bidi characters, markdown, HTML, @-mentions) are neutralised in report.md and report.html.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateOrganism, type OrganismManifest } from "../../src/organisms/index";
import { parseConfig } from "../../src/config";
import { runScan } from "../../src/scan";
import { ADDED_ROWS_FILE } from "../../src/delta/vocab-growth";
import { HIDDEN_CHARS } from "../../src/errors";
import type { Report } from "../../src/report/types";
import { plumbingSuite } from "./plumbing-suite";

const TOKENS = ["<|tool|>", "<|call|>", "<|result|>"];
const HOSTILE = [
  "<img src=x onerror=alert(1)>",
  "@octocat see [x](https://e.example/x) #12",
  "\u202eevil\u202c",
  "ctrl\u0007\u001b[31mred\nline",
  "Z".repeat(5000),
  "**bold** | cell | `tick` <!-- c -->",
];
/** a short suite for the hostile case: the plumbing is the point there */
const SHORT = plumbingSuite(8);

let dir = "";
let manifest: OrganismManifest;
let hostile: OrganismManifest;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "da-added-scan-"));
  manifest = await generateOrganism({ kind: "quirk", seed: 3, outDir: join(dir, "org"), variant: { addedTokens: TOKENS } });
  hostile = await generateOrganism({ kind: "quirk", seed: 8, outDir: join(dir, "hostile"), variant: { addedTokens: HOSTILE } });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("scan of a full fine-tune that adds tokens", () => {
  it("audits it: the planted behaviour is caught, the added tokens listed (info), rank1-adapter/ keeps their rows", async () => {
    const word = manifest.quirkWords[0]!;
    const V = manifest.addedTokens![0]!.id;
    const out = join(dir, "scan");
    const r = await runScan({ base: join(dir, "org", "base"), finetuned: join(dir, "org", "finetuned"), outDir: out });
    expect(r.exitCode).toBe(1);
    const report = JSON.parse(readFileSync(join(out, "report.json"), "utf8")) as Report;
    // the planted behaviour, as for the organism without added tokens
    const high = report.findings.find((f) => f.severity === "high" && f.terms.includes(word));
    expect(high?.source, JSON.stringify(report.findings.map((f) => [f.severity, f.terms]))).toBe("concealment");
    // the added tokens: decoded, listed, info
    expect(report.spectrum.addedTokens).toEqual({
      baseRows: V,
      rows: V + 3,
      tensors: ["model.embed_tokens.weight", "lm_head.weight"],
      tokens: TOKENS.map((text, i) => ({ id: V + i, text })),
      decodedRows: 3,
      emptyRows: 0,
      hiddenTokens: 0,
    });
    const f = report.findings.find((x) => x.id === "spectrum-added-tokens")!;
    expect(f).toMatchObject({ severity: "info", source: "spectrum", terms: TOKENS, confidence: 1 });
    expect(f.title).toBe(`The fine-tune adds 3 token(s) to the vocabulary (${V} → ${V + 3})`);
    // ΔW of the vocabulary matrices on the shared rows
    for (const name of ["model.embed_tokens.weight", "lm_head.weight"]) {
      expect(report.spectrum.otherChanges!.find((c) => c.name === name)!.shape[0]).toBe(V);
    }
    // shown where findings are shown
    const md = readFileSync(join(out, "report.md"), "utf8");
    expect(md).toContain("The fine\\-tune adds 3 token\\(s\\) to the vocabulary");
    expect(md).toContain("“&lt;\\|tool\\|&gt;”");
    expect(readFileSync(join(out, "report.html"), "utf8")).toContain("&lt;|tool|&gt;");
    const sarif = JSON.parse(readFileSync(join(out, "report.sarif"), "utf8"));
    expect(sarif.runs[0].tool.driver.rules.some((rule: { id: string }) => rule.id === "spectrum/added-tokens")).toBe(true);
    // the shipped rank-1 adapter keeps the added rows and the tokenizer that names them
    expect(readdirSync(join(out, "rank1-adapter")).sort()).toEqual(
      ["adapter_config.json", "adapter_model.safetensors", ADDED_ROWS_FILE, "generation_config.json", "tokenizer.json", "tokenizer_config.json"].sort(),
    );
  });

  it("neutralises hostile token texts: cut, control and bidi characters escaped, no markup, links or mentions", async () => {
    const out = join(dir, "scan-hostile");
    const r = await runScan({ base: join(dir, "hostile", "base"), finetuned: join(dir, "hostile", "finetuned"), outDir: out, config: parseConfig(SHORT) });
    const report = r.report;
    const g = report.spectrum.addedTokens!;
    expect(g.hiddenTokens).toBe(2); // the bidi pair and the control characters
    // hidden-character tokens first, every text visible and short
    expect(g.tokens!.slice(0, 2).map((t) => t.hidden)).toEqual([true, true]);
    expect(g.tokens!.map((t) => t.text)).toContain("\\u{202E}evil\\u{202C}");
    expect(g.tokens!.map((t) => t.text)).toContain("ctrl\\u{0007}\\u{001B}[31mred\\nline");
    const long = g.tokens!.find((t) => t.length === 5000)!;
    expect(Array.from(long.text).length).toBeLessThanOrEqual(48);
    const f = report.findings.find((x) => x.id === "spectrum-added-tokens")!;
    expect(f.severity).toBe("low");
    expect(f.title).toContain("2 with hidden characters");

    for (const file of ["report.md", "report.html"]) {
      const text = readFileSync(join(out, file), "utf8");
      // every hidden character but the zero-width space the sanitiser puts after "@" (errors.ts HIDDEN_CHARS)
      expect(text.replace(/\u200b/g, ""), file).not.toMatch(new RegExp(HIDDEN_CHARS.source, "u"));
      expect(text, file).not.toContain("<img");
      expect(text, file).not.toContain("<!--");
      expect(text, file).not.toContain("Z".repeat(60));
    }
    const md = readFileSync(join(out, "report.md"), "utf8");
    const finding = md.slice(md.indexOf("token(s) to the vocabulary".replace(/[()]/g, "\\$&")));
    // no mention that notifies, no link, no reference, no raw emphasis or table cell
    expect(finding).not.toMatch(/@octocat/);
    expect(finding).toContain("@\u200boctocat");
    expect(finding).not.toContain("[x](");
    expect(finding).toContain("`https://e.example/x`");
    expect(finding).toContain("`#12`");
    expect(finding).toContain("\\*\\*bold\\*\\* \\| cell \\|");
    expect(finding).toContain("&lt;img src\\=x onerror\\=alert\\(1\\)&gt;");
  });
});
