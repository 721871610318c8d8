import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { filterChanged, findSubjects } from "../../src/github/subjects";
import { getSettings, readInput } from "../../src/github/input-helper";

function tree(files: string[]): string {
  const root = mkdtempSync(join(tmpdir(), "da-subj-"));
  for (const f of files) {
    mkdirSync(join(root, f, ".."), { recursive: true });
    writeFileSync(join(root, f), "{}");
  }
  return root;
}

describe("findSubjects", () => {
  const root = tree([
    "adapters/quirk/adapter_config.json",
    "adapters/benign/adapter_config.json",
    "adapters/notes/README.md",
    "adapters/nested/deep/x/adapter_config.json",
    "node_modules/pkg/adapter_config.json",
    "models/full/config.json",
  ]);

  it("expands globs to adapter folders, skipping folders without adapter_config.json and node_modules", () => {
    const s = findSubjects(root, "adapter", ["adapters/*"]);
    expect(s.map((x) => x.rel)).toEqual(["adapters/benign", "adapters/quirk"]);
    expect(s[0]!.configFile).toBe("adapters/benign/adapter_config.json");
    expect(findSubjects(root, "adapter", ["**/adapter_config.json"]).map((x) => x.rel)).toEqual(["adapters/benign", "adapters/nested/deep/x", "adapters/quirk"]);
    expect(findSubjects(root, "adapter", ["adapters/*", "!adapters/benign"]).map((x) => x.rel)).toEqual(["adapters/quirk"]);
    expect(findSubjects(root, "finetuned", ["models/full"]).map((x) => x.configFile)).toEqual(["models/full/config.json"]);
  });

  it("rejects a literal path that is not an adapter, naming the input", () => {
    expect(() => findSubjects(root, "adapter", ["adapters/notes"])).toThrow(InputError);
    expect(() => findSubjects(root, "adapter", ["adapters/notes"])).toThrow(/input 'adapter'/);
  });

  it("refuses a subject that is a symlink out of the workspace (a PR can add symlinks)", () => {
    const outside = tree(["secret/adapter_config.json"]);
    const ws = tree(["adapters/ok/adapter_config.json"]);
    symlinkSync(join(outside, "secret"), join(ws, "adapters", "evil"));
    expect(() => findSubjects(ws, "adapter", ["adapters/*"])).toThrow(/outside the workspace/);
    expect(findSubjects(ws, "adapter", ["adapters/ok"]).map((x) => x.rel)).toEqual(["adapters/ok"]);
  });

  it("keeps only subjects the PR touched; a changed policy config keeps all", () => {
    const s = findSubjects(root, "adapter", ["adapters/*"]);
    expect(filterChanged(s, ["adapters/quirk/adapter_model.safetensors", "README.md"]).map((x) => x.rel)).toEqual(["adapters/quirk"]);
    expect(filterChanged(s, ["adapters/quirkier/x"]).map((x) => x.rel)).toEqual([]);
    expect(filterChanged(s, [".github/delta-audit.yml"], ".github/delta-audit.yml").length).toBe(2);
  });
});

describe("input helper", () => {
  it("reads INPUT_ names with hyphens or underscores and validates with the expected form", () => {
    expect(readInput("changed-only", { "INPUT_CHANGED-ONLY": "false" })).toBe("false");
    expect(readInput("changed-only", { INPUT_CHANGED_ONLY: "true" })).toBe("true");
    const ws = tree(["a/adapter_config.json"]);
    const s = getSettings({ env: { INPUT_ADAPTER: "a\n# comment\n", "INPUT_FAIL-ON": "medium" }, workspace: ws, isPullRequest: true });
    expect(s).toMatchObject({ adapterPatterns: ["a"], changedOnly: true, comment: true, checkName: "delta-audit", backend: "embedded", device: "cpu", failOn: "medium" });
    expect(getSettings({ env: { INPUT_ADAPTER: "a" }, workspace: ws, isPullRequest: false }).changedOnly).toBe(false);
    expect(() => getSettings({ env: { INPUT_ADAPTER: "a", INPUT_DEVICE: "tpu" }, workspace: ws, isPullRequest: false })).toThrow(/Invalid value 'tpu'. Expected one of: cpu, cuda/);
    expect(() => getSettings({ env: { INPUT_ADAPTER: "a", INPUT_BACKEND: "openai" }, workspace: ws, isPullRequest: false })).toThrow(/inference-url/);
    expect(() => getSettings({ env: {}, workspace: ws, isPullRequest: false })).toThrow(InputError);
    expect(() => getSettings({ env: { INPUT_ADAPTER: "a", INPUT_COMMENT: "yes" }, workspace: ws, isPullRequest: false })).toThrow(/Expected true or false/);
  });
});
