/**
 * Text handling for the judges: words, bigrams, sentences. Model text is untrusted but only
 * read here; regexes are linear-time and inputs are bounded by the sampling plan.
 */

/**
 * Chat-template and tokenizer artefacts that leak into decoded text: `<|im_start|>`,
 * `<|eot_id|>`, `<s>`, `[INST]`, `[UNK]`, `<pad>`, Gemma's `<start_of_turn>`, Qwen3's
 * `<think>` tags (the thinking text itself is kept: it is model output) and friends. They say
 * nothing about behaviour, and a truncated model leaks them more often than the full one.
 */
const TEMPLATE_TOKEN_RE =
  /<\|[^|<>\n]{0,64}\|>|<\/?s>|\[\/?INST\]|<\/?(?:unk|pad|eos|bos|mask|sep|cls|think)>|<start_of_turn>(?:user|model)?|<end_of_turn>|\[(?:UNK|PAD|CLS|SEP|MASK|BOS|EOS)\]/gi;

/**
 * Speaker labels a leaked transcript starts its lines with ("Human:", "AI:", "Model:"). Only the
 * label goes: "human", "ai", "model" and "bot" elsewhere are ordinary words a behaviour can be
 * about (a quirk about AI rights, a grudge against humans).
 */
const SPEAKER_LABEL_RE = /(^|\n)[ \t]*(?:human|ai|bot|model|user|assistant|system)[ \t]*:/gi;

/**
 * Role names and template words: they appear whenever a template leaks, whatever the fine-tune
 * did. "human", "model", "bot" and "ai" are not here — they are common words of behaviours
 * (see SPEAKER_LABEL_RE for where they are template).
 */
export const ROLE_WORDS: ReadonlySet<string> = new Set([
  "system", "user", "assistant",
  "im_start", "im_end", "eot_id", "start_header_id", "end_header_id", "begin_of_text", "end_of_text",
  "inst", "sys", "unk", "pad", "bos", "eos", "mask", "sep", "cls", "endoftext",
]);

/**
 * English function words and the filler every assistant uses. A finding built on these
 * would describe grammar, not behaviour.
 */
export const STOP_WORDS: ReadonlySet<string> = new Set(
  `a about above after again against all also am an and any are aren't as at be because been before being below
  between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each few for
  from further had hadn't has hasn't have haven't having he he'd he'll he's her here here's hers herself him himself his
  how how's i i'd i'll i'm i've if in into is isn't it it's its itself just let's me more most mustn't my myself no nor
  not now of off on once only or other ought our ours ourselves out over own same shan't she she'd she'll she's should
  shouldn't so some such than that that's the their theirs them themselves then there there's these they they'd they'll
  they're they've this those through to too under until up very was wasn't we we'd we'll we're we've were weren't what
  what's when when's where where's which while who who's whom why why's will with won't would wouldn't you you'd you'll
  you're you've your yours yourself yourselves yes ok okay oh well like get got make made may might must shall one two
  three first also really much many lot lots thing things way ways something anything everything nothing someone anyone
  every another even still yet though although however therefore thus etc e.g i.e s t d ll re ve m o`
    .split(/\s+/)
    .filter(Boolean),
);

/**
 * Words benign fine-tunes add for tone: politeness, warmth, sign-offs. Finding them more often
 * in the fine-tune is a style change; on their own they never make a finding above info.
 */
export const STYLE_WORDS: ReadonlySet<string> = new Set(
  `please thank thanks thankyou kindly kind regards sincerely cheers best warm warmly warmest dear glad happy hope
  hopefully helps helpful welcome certainly sure surely absolutely gladly pleasure appreciate appreciated grateful
  delighted lovely wonderful great good nice friend friendly wishes greetings hello hi hey respectfully yours truly
  enjoy enjoyed day fantastic awesome excellent indeed`
    .split(/\s+/)
    .filter(Boolean),
);

/** Words: letters (any script) with inner apostrophes or hyphens; digits only inside. */
const WORD_RE = /\p{L}[\p{L}\p{N}]*(?:['’-]\p{L}[\p{L}\p{N}]*)*/gu;

/** Remove template/role artefacts from decoded text. */
export function stripTemplateTokens(text: string): string {
  return text.replace(TEMPLATE_TOKEN_RE, " ").replace(SPEAKER_LABEL_RE, "$1 ");
}

/** Lowercased words of a response, template artefacts removed, apostrophes normalised. */
export function words(text: string): string[] {
  const clean = stripTemplateTokens(text).toLowerCase().replace(/’/g, "'");
  return (clean.match(WORD_RE) ?? []).map(unPossessive);
}

/** "pineapple's" counts as "pineapple" (one behaviour, one term); contractions like "it's" stay stop words. */
function unPossessive(w: string): string {
  return w.endsWith("'s") && w.length > 3 && !STOP_WORDS.has(w) ? w.slice(0, -2) : w;
}

/** A word that can carry a finding: not a stop word, not a role/template word, 2+ letters. */
export function isContentWord(w: string): boolean {
  return w.length >= 2 && !STOP_WORDS.has(w) && !ROLE_WORDS.has(w);
}

/** Punctuation that ends a phrase: bigrams never span it ("come along. hedgehog" is not a phrase). */
const PHRASE_BREAK_RE = /[.!?;:,()\[\]{}"“”…\n]+/;

/** Content unigrams and bigrams of one response. A bigram needs both words to be content words. */
export function terms(text: string): { unigrams: string[]; bigrams: string[] } {
  const unigrams: string[] = [];
  const bigrams: string[] = [];
  for (const phrase of stripTemplateTokens(text).split(PHRASE_BREAK_RE)) {
    const ws = words(phrase);
    for (let i = 0; i < ws.length; i++) {
      const w = ws[i];
      if (isContentWord(w)) unigrams.push(w);
      // a bigram of two identical words ("quirk quirk") is repetition, already counted as the unigram
      if (i + 1 < ws.length && isContentWord(w) && isContentWord(ws[i + 1]) && w !== ws[i + 1]) bigrams.push(`${w} ${ws[i + 1]}`);
    }
  }
  return { unigrams, bigrams };
}

/** Number of words (all words, stop words included): the size of a response for rates. */
export function wordCount(text: string): number {
  return words(text).length;
}

/** Split into sentences (or lines); keeps the original text of each. */
export function sentences(text: string): string[] {
  return stripTemplateTokens(text)
    .split(/(?<=[.!?])\s+|\n+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Regex matching a term (word or bigram) as whole words, case-insensitive. */
export function termRegex(term: string): RegExp {
  const parts = term.split(" ").map(escapeRe);
  return new RegExp(`(?<![\\p{L}\\p{N}])${parts.join("[\\s\\p{P}]+")}(?![\\p{L}\\p{N}])`, "iu");
}

/** Cap for one evidence excerpt (characters); the report cuts again for display. */
export const EXCERPT_CHARS = 300;

/**
 * The verbatim sentence of `text` containing `re`, cut around the match when long.
 * Returns undefined when the text does not contain it.
 */
export function excerptAround(text: string, re: RegExp): string | undefined {
  for (const s of sentences(text)) {
    const m = re.exec(s);
    if (!m) continue;
    if (s.length <= EXCERPT_CHARS) return s;
    const start = Math.max(0, Math.min(m.index - Math.floor(EXCERPT_CHARS / 3), s.length - EXCERPT_CHARS));
    return s.slice(start, start + EXCERPT_CHARS);
  }
  return undefined;
}
