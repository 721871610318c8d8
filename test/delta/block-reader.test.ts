import { afterAll, describe, expect, it } from "vitest";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openCheckpoint } from "../../src/io/checkpoint";
import { writeSafetensors } from "../../src/io/safetensors";
import type { Checkpoint, DType } from "../../src/io/types";
import { TensorBlockReader } from "../../src/delta/block-reader";
import { fullSpectrum } from "../../src/delta/spectrum";
import { releaseKernels } from "../../src/linalg/kernels";
import { lcg, randomF32 } from "../linalg/reference";
import { tempDir } from "./fixtures";

const dirs: string[] = [];
afterAll(async () => {
  await releaseKernels();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const bf16 = (x: Float32Array) => {
  const u = new Uint32Array(Float32Array.from(x).buffer);
  for (let i = 0; i < u.length; i++) u[i] = u[i]! & 0xffff0000;
  return new Float32Array(u.buffer);
};

interface T {
  name: string;
  shape: number[];
  data: Float32Array;
  dtype: DType;
}

/** A checkpoint folder split over shards (one tensor list per shard) with an index. */
async function writeSharded(dir: string, shards: T[][]): Promise<string> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "llama" }));
  const weightMap: Record<string, string> = {};
  for (const [i, shard] of shards.entries()) {
    const file = `model-0000${i + 1}-of-0000${shards.length}.safetensors`;
    await writeSafetensors(join(dir, file), shard);
    for (const t of shard) weightMap[t.name] = file;
  }
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  return dir;
}

/** The same checkpoint without file offsets: the block reader declines it and readRows is used. */
function withoutOffsets(c: Checkpoint): Checkpoint {
  return {
    dir: c.dir,
    config: c.config,
    names: () => c.names(),
    info: (n) => {
      const i = c.info(n);
      return i && ({ ...i, file: undefined, offset: undefined } as unknown as typeof i);
    },
    read: (n) => c.read(n),
    readRows: (n, s, k) => c.readRows!(n, s, k),
    close: () => c.close(),
  };
}

describe("TensorBlockReader in fullSpectrum", () => {
  it("gives the same spectrum as readRows over BF16 shards, misaligned F32 and multi-block tensors", async () => {
    const next = lcg(77);
    // DOWN is 20 MB in float32: more than one 16 MB row block, so buffers are reused
    const DOWN = "model.layers.1.mlp.down_proj.weight";
    const Q = "model.layers.0.self_attn.q_proj.weight";
    const NORM = "model.layers.0.input_layernorm.weight";
    const shapes: Array<[string, number[]]> = [[NORM, [33]], [Q, [40, 24]], [DOWN, [5000, 1000]]];
    const base: T[] = [];
    const ft: T[] = [];
    for (const [name, shape] of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      const b = bf16(randomF32(n, next));
      const f = bf16(Float32Array.from(b, (x, i) => x + (i % 7 === 0 ? 0.05 * next() : 0)));
      base.push({ name, shape, data: b, dtype: "F32" });
      ft.push({ name, shape, data: f, dtype: "BF16" });
    }
    // base: one file where a 33-element BF16 norm first leaves the F32 tensors after it misaligned
    const baseDir = await writeSharded(tempDir("blk-base"), [[{ ...base[0]!, dtype: "BF16" }, base[1]!, base[2]!]]);
    // fine-tune: BF16 over two shards
    const ftDir = await writeSharded(tempDir("blk-ft"), [[ft[0]!, ft[1]!], [ft[2]!]]);
    dirs.push(baseDir, ftDir);
    const b = await openCheckpoint(baseDir);
    const f = await openCheckpoint(ftDir);
    expect(b.info(Q)!.offset % 4).not.toBe(0);
    expect(TensorBlockReader.open([b, f], 4)).toBeDefined();
    expect(TensorBlockReader.open([withoutOffsets(b), f], 4)).toBeUndefined();
    const pooled = await fullSpectrum(b, f, { topK: 3, quiet: true });
    const plain = await fullSpectrum(withoutOffsets(b), withoutOffsets(f), { topK: 3, quiet: true });
    expect(pooled.modules.map((m) => [m.name, m.frobenius, ...m.sigma])).toEqual(plain.modules.map((m) => [m.name, m.frobenius, ...m.sigma]));
    expect(pooled.otherChanges).toEqual(plain.otherChanges);
    expect(pooled.otherChanges!.map((c) => c.name)).toEqual([NORM]);
    // and the Frobenius norm of ΔW over the blocks is the float64 sum (to its rounding)
    let f2 = 0;
    for (let i = 0; i < ft[2]!.data.length; i++) f2 += (ft[2]!.data[i]! - base[2]!.data[i]!) ** 2;
    const got = pooled.modules.find((m) => m.name === "model.layers.1.mlp.down_proj")!.frobenius;
    expect(Math.abs(got - Math.sqrt(f2))).toBeLessThan(1e-12 * Math.sqrt(f2));
    await b.close();
    await f.close();
  });

  it("refuses rows outside the tensor and reports a file truncated after opening", async () => {
    const dir = await writeSharded(tempDir("blk-trunc"), [[{ name: "model.layers.0.mlp.up_proj.weight", shape: [4, 3], data: new Float32Array(12).fill(1), dtype: "F32" }]]);
    dirs.push(dir);
    const c = await openCheckpoint(dir);
    const reader = TensorBlockReader.open([c], 1)!;
    const info = c.info("model.layers.0.mlp.up_proj.weight")!;
    await expect(reader.readRows(info, 3, 2)).rejects.toThrow(/outside tensor/);
    const block = await reader.readRows(info, 1, 2);
    expect(Array.from(block.data)).toEqual(new Array(6).fill(1));
    block.release();
    // the bytes vanish under the reader: an error naming the file, never a hang
    writeFileSync(info.file, new Uint8Array(8));
    await expect(reader.readRows(info, 0, 4)).rejects.toThrow(/ended early/);
    await reader.close();
    await c.close();
  });
});
