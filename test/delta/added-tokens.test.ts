/**
 * The delta stage on a full fine-tune that adds tokens (embed_tokens and lm_head grown by the
 * same rows): the spectrum is measured on the shared rows and equals dense float64 references
 * computed here on the sliced matrices; growth that is not a vocabulary extension is refused;
 * the rank-k folder (scan's and `truncate`'s) keeps the added rows bit-exactly, with the
 * fine-tune's tokenizer files, and passes them on when it is truncated again.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { fullSpectrum } from "../../src/delta/spectrum";
import { deltaPass, withDeltaSubject, writeRankAdapter } from "../../src/delta/pass";
import { ADDED_ROWS_FILE, ADDED_ROWS_FORMAT, openAddedRows } from "../../src/delta/vocab-growth";
import { InputError } from "../../src/errors";
import { openCheckpoint } from "../../src/io/checkpoint";
import { openAdapter } from "../../src/io/peft";
import { SafetensorsFile, writeSafetensors } from "../../src/io/safetensors";
import type { DType } from "../../src/io/types";
import { releaseKernels } from "../../src/linalg/kernels";
import { frob, lcg, randomF32, referenceSvd } from "../linalg/reference";
import { fullPair, tempDir, type Tensor } from "./fixtures";

const ADDED = 3;
const EMBED = "model.embed_tokens.weight";
const HEAD = "lm_head.weight";
const SIGMA_RTOL = 1e-4;

const dirs: string[] = [];
afterAll(async () => {
  await releaseKernels();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** fullPair with the fine-tune's vocabulary matrices grown by ADDED rows (lm_head's shared rows drifted too). */
function addedTokenPair(seed: number): { base: Tensor[]; ft: Tensor[]; linear: string[] } {
  const pair = fullPair(seed);
  const next = lcg(seed + 1000);
  const ft = pair.ft.map((t) => {
    if (t.name !== EMBED && t.name !== HEAD) return t;
    const [V, H] = t.shape as [number, number];
    const data = new Float32Array((V + ADDED) * H);
    data.set(t.data);
    if (t.name === HEAD) for (let i = 0; i < V * H; i++) data[i]! += 0.02 * next();
    data.set(randomF32(ADDED * H, next), V * H);
    return { name: t.name, shape: [V + ADDED, H], data };
  });
  return { ...pair, ft };
}

/** Write a checkpoint folder with a config.json of our choosing and per-tensor dtypes. */
async function writeFolder(dir: string, tensors: Tensor[], config: Record<string, unknown>, dtypes: Record<string, DType> = {}): Promise<string> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "llama", _name_or_path: "test/base", ...config }));
  await writeSafetensors(
    join(dir, "model.safetensors"),
    tensors.map((t) => ({ name: t.name, dtype: dtypes[t.name] ?? ("F32" as const), shape: t.shape, data: t.data })),
  );
  return dir;
}

async function writePair(pair: { base: Tensor[]; ft: Tensor[] }, ftConfig: Record<string, unknown> = {}, dtypes: Record<string, DType> = {}) {
  const root = tempDir("added");
  dirs.push(root);
  const base = await writeFolder(join(root, "base"), pair.base, { vocab_size: 50 });
  const ft = await writeFolder(join(root, "ft"), pair.ft, { vocab_size: 50 + ADDED, ...ftConfig }, dtypes);
  return { root, base, ft };
}

describe("the spectrum of a fine-tune that adds tokens", () => {
  it("is measured on the shared rows and equals dense references on the sliced matrices", async () => {
    const pair = addedTokenPair(5);
    const { base: baseDir, ft: ftDir } = await writePair(pair);
    const base = await openCheckpoint(baseDir);
    const ft = await openCheckpoint(ftDir);
    const report = await fullSpectrum(base, ft, { topK: 4, quiet: true });
    await Promise.all([base.close(), ft.close()]);

    expect(report.addedTokens).toEqual({ baseRows: 50, rows: 53, tensors: [EMBED, HEAD] });
    // the vocabulary matrices: ΔT over rows [0, 50) only, computed here in float64
    for (const name of [EMBED, HEAD]) {
      const b = pair.base.find((t) => t.name === name)!;
      const f = pair.ft.find((t) => t.name === name)!;
      const D = Float64Array.from(b.data, (x, i) => f.data[i]! - x);
      const change = report.otherChanges!.find((c) => c.name === name)!;
      expect(change.shape).toEqual([50, 16]);
      expect(Math.abs(change.frobenius - frob(D))).toBeLessThanOrEqual(1e-9 * frob(D));
      expect(Math.abs(change.relative - frob(D) / frob(b.data))).toBeLessThanOrEqual(1e-9);
    }
    // the decoder linears as before: dense float64 SVD of ΔW
    expect(report.modules.map((m) => m.name)).toEqual(pair.linear);
    for (const m of report.modules) {
      const b = pair.base.find((t) => t.name === `${m.name}.weight`)!;
      const f = pair.ft.find((t) => t.name === `${m.name}.weight`)!;
      const D = Float64Array.from(f.data, (x, i) => x - b.data[i]!);
      if (frob(D) === 0) continue;
      const ref = referenceSvd(D, b.shape[0]!, b.shape[1]!);
      m.sigma.forEach((s, i) => expect(Math.abs(s - ref.s[i]!)).toBeLessThanOrEqual(SIGMA_RTOL * ref.s[0]!));
    }
  });

  it("refuses growth that is not a vocabulary extension, naming the file", async () => {
    // lm_head grows by one row fewer than embed_tokens
    const uneven = addedTokenPair(6);
    uneven.ft = uneven.ft.map((t) => (t.name === HEAD ? { ...t, shape: [52, 16], data: t.data.slice(0, 52 * 16) } : t));
    const a = await writePair(uneven);
    // config.json's vocab_size disagrees with the rows
    const b = await writePair(addedTokenPair(7), { vocab_size: 60 });
    // a decoder linear that gained rows is not an added token
    const linear = addedTokenPair(8);
    linear.ft = linear.ft.map((t) => (t.name.endsWith("v_proj.weight") ? { ...t, shape: [9, 16], data: new Float32Array(9 * 16) } : t));
    const c = await writePair(linear);
    const cases: Array<[{ base: string; ft: string }, RegExp, string]> = [
      [a, /lm_head\.weight" has 52 rows.*grows from 50 to 53/, a.ft],
      [b, /vocab_size 60 disagrees with the 53 rows/, join(b.ft, "config.json")],
      [c, /v_proj\.weight" has shape \[9,16\] but the base has \[8,16\]/, c.ft],
    ];
    for (const [dirsOf, message, file] of cases) {
      const base = await openCheckpoint(dirsOf.base);
      const ft = await openCheckpoint(dirsOf.ft);
      try {
        const err = await fullSpectrum(base, ft, { quiet: true }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(InputError);
        expect((err as InputError).message).toMatch(message);
        expect((err as InputError).file).toBe(file);
      } finally {
        await Promise.all([base.close(), ft.close()]);
      }
    }
  });
});

describe("the rank-k folder of a fine-tune that adds tokens", () => {
  it("keeps the added rows bit-exactly (the fine-tune's dtype) with its tokenizer files, says so, and loads", async () => {
    const pair = addedTokenPair(9);
    // BF16 vocabulary matrices: the rows must come through as the same bytes, not re-encoded floats
    const { root, base, ft } = await writePair(pair, {}, { [EMBED]: "BF16", [HEAD]: "F16" });
    writeFileSync(join(ft, "tokenizer.json"), '{"version": "1.0", "model": {"type": "WordLevel"}}\n');
    writeFileSync(join(ft, "tokenizer_config.json"), '{"chat_template": "{{ messages }}"}\n');
    const notices: string[] = [];
    for (const [out, measure] of [[join(root, "truncated"), false], [join(root, "pass"), true]] as const) {
      await withDeltaSubject({ kind: "full", base, finetuned: ft }, async (s) => {
        if (measure) {
          const spectrum = await deltaPass(s, 2, out, { quiet: true, onNotice: (m) => notices.push(m) });
          expect(spectrum.addedTokens).toEqual({ baseRows: 50, rows: 53, tensors: [EMBED, HEAD] });
        } else await writeRankAdapter(s, 2, out, { quiet: true, onNotice: (m) => notices.push(m) });
      });
      // a PEFT adapter of the changed decoder linears, as without added tokens
      const adapter = await openAdapter(out);
      expect(adapter.moduleNames()).toEqual(pair.linear.filter((n) => !n.includes("k_proj")));
      expect(adapter.config.modules_to_save).toBeNull();
      await adapter.close();
      // the added rows: the fine-tune's bytes [50·rowBytes, end) of each tensor, as they are
      const rows = await SafetensorsFile.open(join(out, ADDED_ROWS_FILE));
      const src = await SafetensorsFile.open(join(ft, "model.safetensors"));
      try {
        expect(rows.metadata).toEqual({ format: ADDED_ROWS_FORMAT, first_row: "50", vocab_size: "53" });
        expect(rows.names()).toEqual([EMBED, HEAD]);
        for (const name of [EMBED, HEAD]) {
          const info = rows.info(name)!;
          expect(info.dtype).toBe(src.info(name)!.dtype);
          expect(info.shape).toEqual([ADDED, 16]);
          const whole = await src.readRaw(name);
          const rowBytes = whole.byteLength / 53;
          expect(Buffer.from(await rows.readRaw(name)).equals(Buffer.from(whole.subarray(50 * rowBytes)))).toBe(true);
        }
      } finally {
        await Promise.all([rows.close(), src.close()]);
      }
      for (const f of ["tokenizer.json", "tokenizer_config.json"]) expect(readFileSync(join(out, f), "utf8")).toBe(readFileSync(join(ft, f), "utf8"));
      // and the engine's reader takes them as the rows [50, 53) of the base's matrices
      const baseCk = await openCheckpoint(base);
      const opened = (await openAddedRows(out, baseCk))!;
      try {
        expect(opened).toMatchObject({ baseRows: 50, rows: 53, firstRow: 0, tensors: [EMBED, HEAD] });
        const ftCk = await openCheckpoint(ft);
        const decoded = await ftCk.readRows!(EMBED, 50, ADDED);
        await ftCk.close();
        expect(await opened.source.readRows!(EMBED, 0, ADDED)).toEqual(decoded);
      } finally {
        await Promise.all([opened.source.close(), baseCk.close()]);
      }
    }
    expect(notices).toHaveLength(2);
    expect(notices[0]).toMatch(/adds 3 token row\(s\) \(vocabulary 50 → 53\); the rank-2 adapter keeps them as they are.*added_token_rows\.safetensors with the fine-tune's tokenizer\.json, tokenizer_config\.json/);

    // truncated again as a LoRA subject, the folder passes its rows on (the same bytes) and reports them
    const again = join(root, "again");
    const spectrum = await withDeltaSubject({ kind: "lora", adapter: join(root, "truncated") }, (s) => deltaPass(s, 1, again, { quiet: true, onNotice: () => undefined }));
    expect(spectrum.addedTokens).toEqual({ baseRows: 50, rows: 53, tensors: [EMBED, HEAD] });
    expect(readFileSync(join(again, ADDED_ROWS_FILE)).equals(readFileSync(join(root, "truncated", ADDED_ROWS_FILE)))).toBe(true);
    expect(readFileSync(join(again, "tokenizer.json"), "utf8")).toBe(readFileSync(join(ft, "tokenizer.json"), "utf8"));
  });

  it("refuses a tokenizer file that links out of the fine-tune's folder, writing nothing", async () => {
    const { root, base, ft } = await writePair(addedTokenPair(10));
    writeFileSync(join(root, "secret.json"), '{"token": "hunter2"}\n');
    symlinkSync(join(root, "secret.json"), join(ft, "tokenizer.json"));
    const out = join(root, "out");
    const err = await withDeltaSubject({ kind: "full", base, finetuned: ft }, (s) => writeRankAdapter(s, 1, out, { quiet: true, onNotice: () => undefined })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).file).toBe(join(ft, "tokenizer.json"));
    expect(existsSync(out)).toBe(false);
  });

  it("without added tokens, the folder is the PEFT adapter alone (unchanged behaviour)", async () => {
    const root = tempDir("plain");
    dirs.push(root);
    const pair = fullPair(11);
    const base = await writeFolder(join(root, "base"), pair.base, {});
    const ft = await writeFolder(join(root, "ft"), pair.ft, {});
    writeFileSync(join(ft, "tokenizer.json"), "{}\n");
    const notices: string[] = [];
    await withDeltaSubject({ kind: "full", base, finetuned: ft }, (s) => writeRankAdapter(s, 1, join(root, "out"), { quiet: true, onNotice: (m) => notices.push(m) }));
    const { readdirSync } = await import("node:fs");
    expect(readdirSync(join(root, "out")).sort()).toEqual(["adapter_config.json", "adapter_model.safetensors"]);
    expect(notices).toEqual([]);
  });
});
