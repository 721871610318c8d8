/**
 * `npm run bench [-- FILTER]`: runs every `bench/*.bench.ts` module's exported `run()` in turn
 * (each prints its own measurements and ratios). FILTER keeps only files whose name contains
 * it, e.g. `npm run bench -- spectrum`. `BENCH_QUICK=1` asks every bench for a small smoke
 * version of itself. `BENCH_SHAPE=8b|3b|1b|small|tiny` picks the checkpoint shape of
 * precision.bench.ts (low-precision engine; default small, tiny under BENCH_QUICK).
 */
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const filter = process.argv.slice(2).find((a) => !a.startsWith("-"));
const files = readdirSync(here)
  .filter((f) => f.endsWith(".bench.ts"))
  .filter((f) => !filter || f.includes(filter))
  .sort();
if (files.length === 0) {
  console.error(`no bench/*.bench.ts matches '${filter ?? ""}'`);
  process.exit(2);
}
let failed = 0;
for (const f of files) {
  console.log(`\n== ${f}${process.env.BENCH_QUICK === "1" ? " (BENCH_QUICK)" : ""}`);
  try {
    const mod = (await import(pathToFileURL(join(here, f)).href)) as { run?: () => Promise<unknown> };
    if (typeof mod.run !== "function") throw new Error(`${f} exports no run()`);
    await mod.run();
  } catch (err) {
    failed++;
    console.error(`${f} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
