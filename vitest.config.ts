import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // dist/ is built once before any test (CLI and Action tests run it in child processes)
    globalSetup: ["test/global-setup.ts"],
    // ONNX Runtime sessions and generated organisms take seconds on a 2-core machine
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
    env: { DELTA_AUDIT_QUIET: "1" },
  },
});
