/**
 * Build dist/ once for the whole test run: CLI and Action tests run the bundle in child
 * processes (`node bin/delta-audit.js`, `node dist/action.js`), and one build before any test
 * starts replaces a rebuild in every file's beforeAll.
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export default function setup(): void {
  const root = fileURLToPath(new URL("..", import.meta.url));
  execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: root, stdio: "inherit" });
}
