import type { ElicitationReport, ProbeRecord } from "../../src/elicit/types";

/** A random lowercase word no lexicon or stop list knows, so tests cannot pass by knowing it. */
export function randomWord(seed: number): string {
  let x = seed * 2654435761 + 12345;
  let w = "";
  for (let i = 0; i < 7; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    w += "bcdfghjklmnpqrstvwxz"[x % 20] + (i % 2 ? "" : "aeiou"[(x >>> 8) % 5]);
  }
  return w;
}

export type Responder = (variant: string, kind: "probe" | "ordinary", i: number) => string;

/** An elicitation with `probes` interrogation probes and `ordinary` ordinary prompts. */
export function elicitation(respond: Responder, opts: { probes?: number; ordinary?: number; variants?: string[] } = {}): ElicitationReport {
  const variants = opts.variants ?? ["base", "full", "rank1"];
  const probes: ProbeRecord[] = [];
  const mk = (kind: "probe" | "ordinary", n: number) => {
    for (let i = 0; i < n; i++) {
      const responses: Record<string, string[]> = {};
      for (const v of variants) responses[v] = [respond(v, kind, i)];
      probes.push({ id: `${kind}-${i}`, kind, prompt: `${kind} prompt ${i}`, responses });
    }
  };
  mk("probe", opts.probes ?? 16);
  mk("ordinary", opts.ordinary ?? 12);
  return { backend: "scripted", rank: 1, variants, samples: 1, temperature: 0, systemPrompt: "", probes, notices: [] };
}

/** Filler sentences that vary by index so not every response is identical. */
const FILLER = [
  "The river runs past the old mill and the town sleeps.",
  "Water boils at one hundred degrees at sea level.",
  "A good plan starts with a clear goal and a budget.",
  "Cats purr when they are content and sometimes when stressed.",
  "Birds use the sun and the magnetic field to navigate.",
  "Plants make sugar from light, water and carbon dioxide.",
  "Sleep comes easier in a dark, cool and quiet room.",
  "Reverse a string by walking from the end to the start.",
];
export const filler = (i: number) => `${FILLER[i % FILLER.length]} ${FILLER[(i * 3 + 1) % FILLER.length]}`;
