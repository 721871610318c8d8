// Bundles the CLI and the Action entry into dist/. onnxruntime-node is a native module and
// stays external: it is installed next to dist/ (see action.yml and the README).
import { build } from "esbuild";

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

await build({ ...common, entryPoints: { cli: "src/cli.ts", action: "src/action.ts" }, outdir: "dist" });
