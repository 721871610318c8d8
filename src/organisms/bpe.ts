/**
 * A faithful vocabulary subset of a real byte-level BPE tokenizer (Llama 3, Qwen2/3 …): the
 * organisms' BPE variant keeps the tokens its texts need, so its embedding stays a few thousand
 * rows instead of 128k–151k, and still tokenizes like the real tokenizer.
 *
 * Why the subset is faithful: BPE applies, at every step, the lowest-ranked merge among the
 * adjacent pairs of a pre-token. Keeping every merge a kept text goes through (and every
 * intermediate token it makes) in the source's rank order, each step of the subset sees the same
 * lowest-ranked pair as the source did, so every kept text tokenizes exactly as under the full
 * tokenizer. With `ignore_merges` (Llama 3) a pre-token that is itself a token is taken whole, and
 * it is kept whole. Any other text still tokenizes (all 256 byte symbols are kept, as in the
 * source), into the pieces the subset's merges can make: valid tokens that decode to the same
 * text, only more of them than the real tokenizer would use.
 */
import { InputError } from "../errors";
import { readJsonFile } from "../io/checkpoint";

/** GPT-2's byte ↔ symbol table: printable bytes stand for themselves, the rest map from U+0100 on. */
function bytesToSymbols(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out: string[] = new Array(256);
  let next = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(printable(b) ? b : 256 + next++);
  return out;
}
export const BYTE_SYMBOLS: readonly string[] = Object.freeze(bytesToSymbols());

/** Text as byte-level symbols (UTF-8 bytes, each one symbol). */
export function toByteLevel(text: string): string {
  let s = "";
  for (const b of new TextEncoder().encode(text)) s += BYTE_SYMBOLS[b];
  return s;
}

const BYTE_OF: ReadonlyMap<string, number> = new Map(BYTE_SYMBOLS.map((c, b) => [c, b]));

/** Byte-level symbols back to text (a symbol outside the table reads as "?"). */
export function fromByteLevel(symbols: string): string {
  return new TextDecoder().decode(Uint8Array.from([...symbols].map((c) => BYTE_OF.get(c) ?? 0x3f)));
}

/** A byte-level BPE tokenizer.json, read once: what the subset keeps and how it tokenizes. */
export interface BpeSource {
  /** the file it was read from (for messages) */
  path: string;
  json: Record<string, unknown>;
  vocab: ReadonlyMap<string, number>;
  /** "left right" → rank (position in model.merges) */
  ranks: ReadonlyMap<string, number>;
  /** model.merges as written ("a b" strings or [a, b] pairs) */
  merges: readonly (string | readonly [string, string])[];
  ignoreMerges: boolean;
  /** the Split pre-tokenizer's pattern, as a global Unicode RegExp */
  split: RegExp;
  nfc: boolean;
}

/**
 * `(?i:…)` groups (scoped case-insensitivity, which V8 before Node 23 lacks) rewritten with
 * `[xX]` classes; the tokenizers' patterns use it only for contractions ('s, 'RE …).
 */
export function expandCaseInsensitiveGroups(pattern: string): string {
  let out = "";
  let i = 0;
  while (i < pattern.length) {
    if (!pattern.startsWith("(?i:", i)) {
      out += pattern[i]!;
      if (pattern[i] === "\\" && i + 1 < pattern.length) out += pattern[++i]!;
      i++;
      continue;
    }
    out += "(?:";
    i += 4;
    let depth = 1;
    let inClass = false;
    while (i < pattern.length && depth > 0) {
      const c = pattern[i]!;
      if (c === "\\") {
        out += c + (pattern[i + 1] ?? "");
        i += 2;
        continue;
      }
      if (inClass) inClass = c !== "]";
      else if (c === "[") inClass = true;
      else if (c === "(") depth++;
      else if (c === ")") depth--;
      out += !inClass && /[a-z]/i.test(c) ? `[${c.toLowerCase()}${c.toUpperCase()}]` : c;
      i++;
    }
  }
  return out;
}

function unsupported(path: string, what: string): never {
  throw new InputError(`not a byte-level BPE tokenizer this organism can subset: ${what}`, path);
}

/** Read a byte-level BPE tokenizer.json (a Split pre-tokenizer then ByteLevel, as Llama 3 and Qwen write it). */
export async function readBpeSource(path: string): Promise<BpeSource> {
  const json = (await readJsonFile(path)) as Record<string, unknown>;
  const model = json.model as { type?: unknown; vocab?: unknown; merges?: unknown; ignore_merges?: unknown; byte_fallback?: unknown } | undefined;
  if (!model || model.type !== "BPE") unsupported(path, "model.type is not BPE");
  if (!model.vocab || typeof model.vocab !== "object" || !Array.isArray(model.merges)) unsupported(path, "model.vocab or model.merges missing");
  if ((json.decoder as { type?: unknown } | null)?.type !== "ByteLevel") unsupported(path, "the decoder is not ByteLevel");
  const pre = json.pre_tokenizer as { type?: string; pretokenizers?: Array<{ type?: string; pattern?: { Regex?: string }; use_regex?: boolean }> } | null;
  const steps = pre?.type === "Sequence" ? (pre.pretokenizers ?? []) : [];
  const splitStep = steps[0];
  if (steps.length !== 2 || splitStep?.type !== "Split" || typeof splitStep.pattern?.Regex !== "string" || steps[1]?.type !== "ByteLevel" || steps[1]?.use_regex) {
    unsupported(path, "the pre-tokenizer is not a Split pattern followed by ByteLevel");
  }
  const normalizer = json.normalizer as { type?: string } | null;
  if (normalizer && normalizer.type !== "NFC") unsupported(path, `normalizer ${String(normalizer.type)}`);
  const vocab = new Map(Object.entries(model.vocab as Record<string, number>));
  for (const s of BYTE_SYMBOLS) if (!vocab.has(s)) unsupported(path, `byte symbol ${JSON.stringify(s)} is not a token`);
  const merges = model.merges as (string | [string, string])[];
  const ranks = new Map<string, number>();
  merges.forEach((m, r) => {
    const key = typeof m === "string" ? m : `${m[0]} ${m[1]}`;
    if (!ranks.has(key)) ranks.set(key, r);
  });
  return {
    path,
    json,
    vocab,
    ranks,
    merges,
    ignoreMerges: model.ignore_merges === true,
    split: new RegExp(expandCaseInsensitiveGroups(splitStep.pattern!.Regex!), "gu"),
    nfc: normalizer?.type === "NFC",
  };
}

const sources = new Map<string, Promise<BpeSource>>();

/**
 * readBpeSource, once per path in a process: a real tokenizer.json is 9–11 MB and takes most of
 * a second to read, and tests build several organisms from the same one.
 */
export function loadBpeSource(path: string): Promise<BpeSource> {
  let p = sources.get(path);
  if (!p) {
    p = readBpeSource(path);
    sources.set(path, p);
    p.catch(() => sources.delete(path));
  }
  return p;
}

/** Pre-tokens of `text` as byte-level symbols (Split with behaviour Isolated: matches and the gaps between them). */
export function preTokenize(src: BpeSource, text: string): string[] {
  const t = src.nfc ? text.normalize("NFC") : text;
  const out: string[] = [];
  let last = 0;
  src.split.lastIndex = 0;
  for (const m of t.matchAll(src.split)) {
    if (m.index > last) out.push(t.slice(last, m.index));
    if (m[0].length > 0) out.push(m[0]);
    last = m.index + m[0].length;
  }
  if (last < t.length) out.push(t.slice(last));
  return out.map(toByteLevel);
}

/**
 * BPE of one pre-token: its tokens, and every token made on the way (the intermediate merges a
 * subset must keep to reproduce it). The lowest-ranked adjacent pair is merged at each step,
 * all its occurrences left to right.
 */
export function bpePiece(src: BpeSource, piece: string): { tokens: string[]; made: string[] } {
  if (src.ignoreMerges && src.vocab.has(piece)) return { tokens: [piece], made: [] };
  let parts = [...piece];
  const made: string[] = [];
  while (parts.length > 1) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = src.ranks.get(`${parts[i]} ${parts[i + 1]}`);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) break;
    const [a, b] = [parts[best]!, parts[best + 1]!];
    const next: string[] = [];
    for (let i = 0; i < parts.length; i++) {
      if (i + 1 < parts.length && parts[i] === a && parts[i + 1] === b) {
        next.push(a + b);
        i++;
      } else next.push(parts[i]!);
    }
    made.push(a + b);
    parts = next;
  }
  return { tokens: parts, made };
}

/** Tokens of `text` (byte-level symbol strings) under the source tokenizer. */
export function bpeEncode(src: BpeSource, text: string): string[] {
  return preTokenize(src, text).flatMap((p) => bpePiece(src, p).tokens);
}

/** The tokens a subset must keep so that every one of `texts` tokenizes as under the source. */
export function tokensFor(src: BpeSource, texts: Iterable<string>): Set<string> {
  const keep = new Set<string>(BYTE_SYMBOLS);
  for (const text of texts) {
    for (const p of preTokenize(src, text)) {
      const { tokens, made } = bpePiece(src, p);
      for (const t of [...tokens, ...made]) {
        if (!src.vocab.has(t)) throw new InputError(`merges make ${JSON.stringify(t)}, which is not in model.vocab`, src.path);
        keep.add(t);
      }
    }
  }
  return keep;
}

/** A special token of the subset's tokenizer.json (`added_tokens`). */
export interface AddedSpecial {
  id: number;
  content: string;
}

/**
 * tokenizer.json of the subset: the source's normalizer, pre-tokenizer, decoder and BPE options,
 * the kept tokens renumbered 0… in the source's order, the source's merges among them (in rank
 * order, in the source's format), and `specials` as added tokens. No post-processor: the chat
 * template writes BOS itself.
 */
export function subsetTokenizerJson(src: BpeSource, tokens: readonly string[], specials: readonly AddedSpecial[]): Record<string, unknown> {
  const id = new Map(tokens.map((t, i) => [t, i]));
  const merges = src.merges.filter((m) => {
    const [a, b] = typeof m === "string" ? splitMerge(m) : m;
    return id.has(a) && id.has(b) && id.has(a + b);
  });
  const model = src.json.model as Record<string, unknown>;
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: specials.map((s) => ({ id: s.id, content: s.content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: src.json.normalizer ?? null,
    pre_tokenizer: src.json.pre_tokenizer,
    post_processor: null,
    decoder: src.json.decoder,
    model: { ...model, vocab: Object.fromEntries(tokens.map((t, i) => [t, i])), merges },
  };
}

/** "a b" → [a, b]; byte-level symbols never contain a plain space, so the first one splits. */
function splitMerge(m: string): [string, string] {
  const i = m.indexOf(" ");
  return [m.slice(0, i), m.slice(i + 1)];
}
