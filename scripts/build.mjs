// Bundles the CLI and the Action entry into dist/. onnxruntime-node is a native module and
// stays external: it is installed next to dist/ (see action.yml and the README).
//
// Outputs are written to a temporary file and renamed into place: test files rebuild dist/
// while other tests run `node bin/delta-audit.js`, and a reader must never see a half-written
// (or truncated, hence empty and silently successful) bundle.
import { build } from "esbuild";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";

const common = {
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  external: ["onnxruntime-node"],
  legalComments: "none",
  logLevel: "warning",
  // CommonJS dependencies call require(); give the ESM bundle one.
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
};

const result = await build({ ...common, entryPoints: { cli: "src/cli.ts", action: "src/action.ts" }, outdir: "dist", write: false });
for (const file of result.outputFiles) {
  mkdirSync(dirname(file.path), { recursive: true });
  const tmp = `${file.path}.tmp-${process.pid}`;
  writeFileSync(tmp, file.contents);
  renameSync(tmp, file.path);
}
