/**
 * The one Handlebars setup: finds templates/, registers its partials and the sanitising
 * helpers, and compiles each template once. report.md (report/markdown.ts) and the GitHub
 * bodies (github/render.ts) both render through it.
 *
 * Templates compile with noEscape: HTML escaping is not markdown escaping, so values reach a
 * template already neutralised (by the caller's view model, or by a helper below) and the
 * template only lays them out.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Handlebars from "handlebars";
import { fencedBlock, inlineCode, neutraliseInline } from "./sanitize";

/** One excerpt of model text through the `inline` and `code` helpers (PR comment, check run). */
export const EXCERPT_CHARS = 280;
/** One response through the `fence` helper (check-run text). */
export const TRANSCRIPT_CHARS = 400;

/** The file that marks the templates folder. */
const MARKER_TEMPLATE = "report.md.hbs";
/**
 * How far up from this module templates/ may sit: two levels from src/report/, one from the
 * dist/ bundle; a few more for installs that nest the package.
 */
const MAX_LEVELS_UP = 6;
const TEMPLATE_SUFFIX = ".md.hbs";

let foundDir: string | undefined;

/** templates/ at the package root, found by walking up from this module (src/report/ or dist/). */
export function findTemplatesDir(): string {
  if (foundDir) return foundDir;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < MAX_LEVELS_UP; i++) {
    const candidate = join(dir, "templates");
    if (existsSync(join(candidate, MARKER_TEMPLATE))) return (foundDir = candidate);
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`templates/${MARKER_TEMPLATE} not found next to the delta-audit package`);
}

const text = (v: unknown) => String(v ?? "");

/**
 * A Handlebars environment for one templates folder: partials from its partials/ folder
 * (`partials/finding.md.hbs` is `{{> finding}}`) and the helpers templates use on raw values:
 * `{{{inline x}}}` (one neutralised line; a list is joined with commas), `{{{code x}}}` (inline
 * code) and `{{{fence x}}}` (a fenced block).
 */
function environment(dir: string): typeof Handlebars {
  const hb = Handlebars.create();
  hb.registerHelper("inline", (v: unknown) => neutraliseInline(Array.isArray(v) ? v.join(", ") : text(v), EXCERPT_CHARS));
  hb.registerHelper("code", (v: unknown) => inlineCode(text(v), EXCERPT_CHARS));
  hb.registerHelper("fence", (v: unknown) => fencedBlock(text(v), TRANSCRIPT_CHARS));
  const partials = join(dir, "partials");
  if (existsSync(partials)) {
    for (const f of readdirSync(partials)) {
      if (f.endsWith(TEMPLATE_SUFFIX)) hb.registerPartial(f.slice(0, -TEMPLATE_SUFFIX.length), readFileSync(join(partials, f), "utf8"));
    }
  }
  return hb;
}

interface TemplateSet {
  hb: typeof Handlebars;
  compiled: Map<string, HandlebarsTemplateDelegate>;
}

const sets = new Map<string, TemplateSet>();

/**
 * Render `templates/<name>` with `view`. `dir` replaces the package's templates/ (an edge may
 * pass its own folder; nothing here reads the environment). Compiled templates are cached.
 */
export function renderTemplate(name: string, view: object, dir: string = findTemplatesDir()): string {
  let set = sets.get(dir);
  if (!set) {
    set = { hb: environment(dir), compiled: new Map() };
    sets.set(dir, set);
  }
  let t = set.compiled.get(name);
  if (!t) {
    t = set.hb.compile(readFileSync(join(dir, name), "utf8"), { noEscape: true, strict: false });
    set.compiled.set(name, t);
  }
  return t(view);
}
