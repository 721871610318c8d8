import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { openAdapter } from "../../src/io/peft";
import { bestRankK, denseDelta, diffFrob, frob, referenceSvd } from "../linalg/reference";
import { DOWN1, fullPair, makeModules, Q0, tempDir, V0, writeAdapterDir, writeCheckpointDir } from "./fixtures";

const root = new URL("../..", import.meta.url).pathname;
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [`${root}bin/delta-audit.js`, ...args], { encoding: "utf8", env: { ...process.env, DELTA_AUDIT_QUIET: "1" } });

const dirs: string[] = [];
let work: string;
let adapterDir: string;
const mods = makeModules([[Q0, 24, 16, 4], [V0, 8, 16, 4], [DOWN1, 16, 40, 6]], 77);
// scales as PEFT computes them for the config below (rslora: alpha/√r; v_proj alpha from alpha_pattern)
const scales: Record<string, number> = { [Q0]: 12 / 2, [V0]: 5 / 2, [DOWN1]: 12 / Math.sqrt(6) };

beforeAll(async () => {
  work = tempDir("cli");
  dirs.push(work);
  adapterDir = await writeAdapterDir(join(work, "adapter"), mods, {
    r: 4,
    lora_alpha: 12,
    use_rslora: true,
    rank_pattern: { "model\\.layers\\.1\\.mlp\\.down_proj": 6 },
    alpha_pattern: { v_proj: 5 },
  });
});
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("delta-audit spectrum / truncate", () => {
  it("spectrum --adapter prints a table and writes the spectrum JSON", () => {
    const json = join(work, "spectrum.json");
    const r = cli("spectrum", "--adapter", adapterDir, "--json", json);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/stable rank/);
    expect(r.stdout).toContain(DOWN1);
    const out = JSON.parse(readFileSync(json, "utf8"));
    expect(Object.keys(out)).toEqual(["spectrum"]);
    for (const m of mods) {
      const got = out.spectrum.modules.find((x: { name: string }) => x.name === m.name);
      const ref = referenceSvd(denseDelta(m.B, m.A, m.out, m.r, m.inf, scales[m.name]!), m.out, m.inf);
      got.sigma.forEach((s: number, i: number) => expect(Math.abs(s - ref.s[i]!)).toBeLessThanOrEqual(1e-4 * ref.s[i]!));
    }
    expect(out.spectrum.summary.modules).toBe(3);
  });

  it("truncate --rank 1 writes an adapter whose ΔW is the dense best rank-1", async () => {
    const out = join(work, "rank1");
    const r = cli("truncate", "--adapter", adapterDir, "--rank", "1", "--out", out);
    expect(r.status, r.stderr).toBe(0);
    const back = await openAdapter(out);
    expect(back.config.r).toBe(1);
    expect(back.config.lora_alpha).toBe(1);
    for (const m of mods) {
      const t = await back.readModule(m.name);
      const D = denseDelta(m.B, m.A, m.out, m.r, m.inf, scales[m.name]!);
      const want = bestRankK(referenceSvd(D, m.out, m.inf), 1, m.out, m.inf);
      expect(diffFrob(denseDelta(t.B, t.A, t.outFeatures, 1, t.inFeatures, t.scale), want)).toBeLessThan(1e-5 * frob(D));
    }
    await back.close();
  });

  it("spectrum and truncate accept a full fine-tune (--base --finetuned)", async () => {
    const pair = fullPair(13);
    const base = await writeCheckpointDir(join(work, "base"), pair.base);
    const ft = await writeCheckpointDir(join(work, "ft"), pair.ft);
    const json = join(work, "full.json");
    const r = cli("spectrum", "--base", base, "--finetuned", ft, "--json", json, "--top-k", "3");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/other changed tensors/);
    const spec = JSON.parse(readFileSync(json, "utf8")).spectrum;
    expect(spec.modules).toHaveLength(4);
    expect(spec.modules[0].sigma).toHaveLength(3);
    expect(spec.otherChanges.map((o: { name: string }) => o.name).sort()).toEqual(["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"]);

    // the unchanged k_proj is no update: not among the largest, and written without factors
    expect(r.stdout).not.toContain("k_proj");
    // this pair's noise is ~1e-6 of ‖ΔW‖²_F: the top 3 hold all else, so nothing is marked an estimate
    expect(r.stdout).not.toContain("~");

    const out = join(work, "full-rank2");
    const t = cli("truncate", "--base", base, "--finetuned", ft, "--rank", "2", "--out", out);
    expect(t.status, t.stderr).toBe(0);
    const back = await openAdapter(out);
    expect(back.moduleNames()).toEqual(pair.linear.filter((n) => !n.includes("k_proj")));
    expect(back.config.base_model_name_or_path).toBe("test/base");
    const q = await back.readModule(Q0);
    const b = pair.base.find((x) => x.name === `${Q0}.weight`)!;
    const f = pair.ft.find((x) => x.name === `${Q0}.weight`)!;
    const D = Float64Array.from(f.data, (x, i) => x - b.data[i]!);
    expect(diffFrob(denseDelta(q.B, q.A, 24, 2, 16, q.scale), bestRankK(referenceSvd(D, 24, 16), 2, 24, 16))).toBeLessThan(1e-4 * frob(D));
    await back.close();
  });

  it("spectrum marks an effective rank from a top-k SVD with an unseen tail as an estimate", async () => {
    const pair = fullPair(15, 0.05);
    const base = await writeCheckpointDir(join(work, "base-noisy"), pair.base);
    const ft = await writeCheckpointDir(join(work, "ft-noisy"), pair.ft);
    const json = join(work, "noisy.json");
    const r = cli("spectrum", "--base", base, "--finetuned", ft, "--json", json, "--top-k", "3");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.match(/ ~\d/g)).toHaveLength(3);
    expect(r.stdout).toContain("~ effective rank estimated from the top singular values only");
    const spec = JSON.parse(readFileSync(json, "utf8")).spectrum;
    expect(spec.modules.map((m: { effectiveRankEstimated?: true }) => m.effectiveRankEstimated ?? false)).toEqual([true, false, true, true]);
    // a LoRA spectrum knows every σ: nothing is an estimate
    const lora = cli("spectrum", "--adapter", adapterDir);
    expect(lora.stdout).not.toContain("~");
  });

  it("truncate refuses a rank above what the subject can hold instead of padding with zeros", async () => {
    const uniform = await writeAdapterDir(join(work, "uniform"), makeModules([[Q0, 24, 16, 4], [V0, 8, 16, 4]], 79), { r: 4, lora_alpha: 8 });
    const pair = fullPair(14);
    const base = await writeCheckpointDir(join(work, "base-ceiling"), pair.base);
    const ft = await writeCheckpointDir(join(work, "ft-ceiling"), pair.ft);
    const cases: Array<[string[], RegExp]> = [
      [["--adapter", uniform, "--rank", "5"], /--rank: 5 is above what the truncation can keep: the adapter's rank is 4; give --rank 4 or less/],
      // rank_pattern: q and v have r = 4, down_proj 6
      [["--adapter", adapterDir, "--rank", "6"], /--rank: 6 .*the adapter's rank is 4 \(its smallest, model\.layers\.0\.self_attn\.q_proj\)/],
      // k_proj and v_proj are 8×16
      [["--base", base, "--finetuned", ft, "--rank", "9"], /--rank: 9 .*k_proj can hold at most rank 8; give --rank 8 or less/],
    ];
    for (const [args, msg] of cases) {
      const out = join(work, "too-high");
      const r = cli("truncate", ...args, "--out", out);
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(existsSync(out)).toBe(false);
    }
    // the ceiling itself is accepted
    const ok = cli("truncate", "--adapter", uniform, "--rank", "4", "--out", join(work, "uniform-4"));
    expect(ok.status, ok.stderr).toBe(0);
  });

  it("exits 2 with a one-line message on bad input, and writes nothing", () => {
    const cases: Array<[string[], RegExp]> = [
      [["spectrum"], /--adapter/],
      [["spectrum", "--finetuned", adapterDir], /--base/],
      [["spectrum", "--adapter", join(work, "missing")], /missing: does not exist/],
      [["spectrum", "--base", join(work, "missing-base"), "--finetuned", adapterDir], /missing-base: does not exist/],
      [["spectrum", "--adapter", join(adapterDir, "adapter_config.json")], /adapter_config\.json: is not a folder/],
      [["spectrum", "--adapter", adapterDir, "--finetuned", adapterDir], /not both/],
      [["spectrum", "--adapter", adapterDir, "--top-k", "0"], /--top-k/],
      [["truncate", "--adapter", adapterDir, "--out", join(work, "x")], /--rank/],
      [["truncate", "--adapter", adapterDir, "--rank", "abc", "--out", join(work, "x")], /--rank/],
      [["truncate", "--adapter", adapterDir, "--rank", "1"], /--out/],
    ];
    for (const [args, msg] of cases) {
      const r = cli(...args);
      expect(r.status, `${args.join(" ")}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(existsSync(join(work, "x"))).toBe(false);
  });

  it("leaves no partial output when a later module fails mid-way", async () => {
    // the last module holds a NaN: the first modules are truncated and streamed before it fails
    const bad = makeModules([[Q0, 24, 16, 4], [V0, 8, 16, 4], [DOWN1, 16, 40, 4]], 78);
    bad[2]!.A[5] = Number.NaN;
    const broken = await writeAdapterDir(join(work, "broken"), bad, { r: 4, lora_alpha: 8 });
    const out = join(work, "broken-out");
    const r = cli("truncate", "--adapter", broken, "--rank", "1", "--out", out);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/non-finite/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(work).filter((e) => e.includes("broken-out"))).toEqual([]);
  });
});
