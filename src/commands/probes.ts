/**
 * `delta-audit probes [--json]`: the built-in elicitation suite (interrogation probes and
 * ordinary prompts, with the system prompts they are sent with) and the built-in behaviour
 * lexicons (families of phrase patterns), so users can choose which to keep and write their
 * own in delta-audit.yml (`probes: {default, replace, extra, file}`, `behaviours:`).
 * `--json` prints one JSON object; without it, readable tables.
 */
import type { Command } from "commander";
import { oneLine } from "../errors";
import { DEFAULT_SYSTEM_PROMPT, ORDINARY_SYSTEM_PROMPT, defaultProbes, type ProbeKind } from "../elicit/probes";
import { BEHAVIOUR_FAMILIES } from "../judge/lexicons";

/** What `probes --json` prints. */
interface ProbeCatalogue {
  systemPrompts: { default: string; ordinary: string };
  probes: { id: string; kind: ProbeKind; prompt: string }[];
  /** each pattern as a RegExp holds it: its source and its flags (case, Unicode) */
  lexicons: { id: string; title: string; description: string; patterns: { source: string; flags: string }[] }[];
}

function probeCatalogue(): ProbeCatalogue {
  return {
    systemPrompts: { default: DEFAULT_SYSTEM_PROMPT, ordinary: ORDINARY_SYSTEM_PROMPT },
    probes: defaultProbes().map(({ id, kind, prompt }) => ({ id, kind, prompt })),
    lexicons: BEHAVIOUR_FAMILIES.map((f) => ({ id: f.id, title: f.title, description: f.description, patterns: f.patterns.map((p) => ({ source: p.source, flags: p.flags })) })),
  };
}

/**
 * Rows as columns padded to the widest cell; the last column is left ragged. Every cell is made
 * one printable line (errors.ts oneLine), as delta/table.ts does: a prompt or a user-visible
 * text with a newline or an escape would otherwise break the table or act on the terminal.
 */
function table(header: string[], rawRows: string[][]): string[] {
  const rows = rawRows.map((r) => r.map(oneLine));
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)];
}

function formatCatalogue(c: ProbeCatalogue): string {
  const out: string[] = [];
  out.push(`PROBES (${c.probes.length}: ${c.probes.filter((p) => p.kind === "probe").length} interrogation, ${c.probes.filter((p) => p.kind === "ordinary").length} ordinary)`, "");
  out.push(...table(["ID", "KIND", "PROMPT"], c.probes.map((p) => [p.id, p.kind, p.prompt])));
  out.push("", "System prompt (configurable with system-prompt):", `  ${c.systemPrompts.default}`);
  out.push("Ordinary prompts are sent with this one while system-prompt is left at its default:", `  ${c.systemPrompts.ordinary}`);
  out.push("", `LEXICONS (${c.lexicons.length} behaviour families; a family matches a response when any pattern does)`, "");
  out.push(...table(["ID", "TITLE", "DESCRIPTION"], c.lexicons.map((l) => [l.id, l.title, l.description])));
  for (const l of c.lexicons) {
    out.push("", `${l.id} patterns:`);
    for (const p of l.patterns) out.push(`  ${oneLine(`/${p.source}/${p.flags}`)}`);
  }
  out.push(
    "",
    "Choose and extend them in delta-audit.yml: probes: {default: false, replace: [...], extra: [...], file: probes.yml};",
    "behaviours: [{name: ..., patterns: [...]}] adds your own families. `delta-audit probes --json` prints all of this as one JSON object.",
  );
  return `${out.join("\n")}\n`;
}

export function register(program: Command): void {
  program
    .command("probes")
    .description("list the built-in probes (ids, kinds, prompts) and behaviour lexicons (ids, titles, patterns)")
    .option("--json", "print one JSON object instead of tables")
    .action((args: { json?: boolean }) => {
      const c = probeCatalogue();
      process.stdout.write(args.json ? `${JSON.stringify(c, null, 2)}\n` : formatCatalogue(c));
    });
}
