/**
 * Chat templates come from the checkpoint's tokenizer_config.json, so whoever made the model
 * controls them: `{% for i in range(10**9) %}` or a string doubled forty times would stall or
 * exhaust any command that renders a prompt. @huggingface/jinja renders synchronously (a timer
 * cannot interrupt it), so the render is checked from inside: every node the interpreter
 * evaluates passes a clock and size check, and `range` refuses huge counts before building them.
 */
import { Environment, Interpreter, type Template } from "@huggingface/jinja";

/** Wall-clock budget of one render; real templates take well under a millisecond. */
export const MAX_RENDER_MS = 1000;
/** Largest rendered prompt (or intermediate string) in characters, about 1 MB; prompts are a few KB. */
export const MAX_RENDER_CHARS = 1_000_000;
/** Most items `range()` or any intermediate list may hold; templates loop over messages (tens). */
export const MAX_RENDER_ITEMS = 100_000;

/** A template that ran past its budget (not a template bug the model's author could fix by input). */
export class TemplateBudgetError extends Error {}

interface Evaluated {
  type: string;
  value: unknown;
}
type Evaluate = (this: unknown, node: unknown, env: unknown) => Evaluated;
type SetVariable = (this: unknown, name: string, value: unknown) => unknown;

/** Python's range() (what the library's global does) but refusing a count over the budget before building it. */
function boundedRange(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start];
  if (step === 0) throw new Error("range() step must not be zero");
  const count = Math.max(0, Math.ceil((stop - start) / step));
  if (!Number.isFinite(count) || count > MAX_RENDER_ITEMS) {
    throw new TemplateBudgetError(`range() of ${count} items is over the ${MAX_RENDER_ITEMS}-item budget of a template render`);
  }
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(start + i * step);
  return out;
}

function checkSize(v: Evaluated | undefined): void {
  if (!v) return;
  if (typeof v.value === "string" && v.value.length > MAX_RENDER_CHARS) {
    throw new TemplateBudgetError(`renders over ${MAX_RENDER_CHARS} characters (the budget of a template render)`);
  }
  if (Array.isArray(v.value) && v.value.length > MAX_RENDER_ITEMS) {
    throw new TemplateBudgetError(`builds a list of over ${MAX_RENDER_ITEMS} items (the budget of a template render)`);
  }
}

/**
 * `template.render(items)` within MAX_RENDER_MS and MAX_RENDER_CHARS, else TemplateBudgetError.
 * The interpreter's one dispatch method (and the environment's setter, through which the
 * library installs its global `range`) are wrapped for the duration of this call only: the
 * render is synchronous, so nothing else can run while the wrappers are in place.
 */
export function renderWithBudget(template: Template, items: Record<string, unknown>): string {
  const proto = Interpreter.prototype as unknown as { evaluate: Evaluate };
  const evaluate = proto.evaluate;
  const env = Environment.prototype as unknown as { set: SetVariable };
  const set = env.set;
  const deadline = performance.now() + MAX_RENDER_MS;
  proto.evaluate = function (node, env) {
    // the clock is read at every node (~50 ns; a node costs more): an empty inner loop runs
    // between two nodes, so sparser reads let a nested loop overrun the budget by seconds
    if (performance.now() > deadline) {
      throw new TemplateBudgetError(`took over ${MAX_RENDER_MS} ms to render (a loop that does not end?)`);
    }
    const v = evaluate.call(this, node, env);
    checkSize(v);
    return v;
  };
  env.set = function (name, value) {
    // only the library's own global is a plain JS function named range; template `set`s are runtime values
    return set.call(this, name, name === "range" && typeof value === "function" ? boundedRange : value);
  };
  try {
    const out = template.render(items);
    if (out.length > MAX_RENDER_CHARS) throw new TemplateBudgetError(`renders over ${MAX_RENDER_CHARS} characters (the budget of a template render)`);
    return out;
  } catch (err) {
    // "Invalid string length" or a stack overflow: a template that explodes faster than the checks see
    if (err instanceof RangeError) throw new TemplateBudgetError(`exhausts the render budget (${err.message})`);
    throw err;
  } finally {
    proto.evaluate = evaluate;
    env.set = set;
  }
}
