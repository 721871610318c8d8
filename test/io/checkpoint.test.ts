import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { linearModuleNames, moduleType, openCheckpoint, readJsonFile } from "../../src/io/checkpoint";
import { SafetensorsError, writeSafetensors } from "../../src/io/safetensors";
import { randomFloats, rng, withTempDir, writeJson, expectInputError } from "./helpers";

const CONFIG = { model_type: "llama", hidden_size: 4, num_hidden_layers: 2 };

/** A tiny Llama-shaped tensor set: embeddings, norms and the seven linear modules per layer. */
function tinyLlama(seed: number) {
  const rand = rng(seed);
  const t = (name: string, shape: number[]) => ({ name, dtype: "F32" as const, shape, data: randomFloats(shape.reduce((a, b) => a * b, 1), rand) });
  const out = [t("model.embed_tokens.weight", [10, 4]), t("model.norm.weight", [4]), t("lm_head.weight", [10, 4])];
  for (let l = 0; l < 2; l++) {
    const p = `model.layers.${l}`;
    out.push(
      t(`${p}.input_layernorm.weight`, [4]),
      t(`${p}.self_attn.q_proj.weight`, [4, 4]),
      t(`${p}.self_attn.k_proj.weight`, [2, 4]),
      t(`${p}.self_attn.v_proj.weight`, [2, 4]),
      t(`${p}.self_attn.o_proj.weight`, [4, 4]),
      t(`${p}.self_attn.q_proj.bias`, [4]),
      t(`${p}.mlp.gate_proj.weight`, [6, 4]),
      t(`${p}.mlp.up_proj.weight`, [6, 4]),
      t(`${p}.mlp.down_proj.weight`, [4, 6]),
    );
  }
  return out;
}

describe("openCheckpoint", () => {
  it("opens a single-file checkpoint and reads tensors lazily", async () => {
    await withTempDir(async (dir) => {
      const tensors = tinyLlama(1);
      await writeJson(join(dir, "config.json"), CONFIG);
      await writeSafetensors(join(dir, "model.safetensors"), tensors);
      const ckpt = await openCheckpoint(dir);
      expect(ckpt.dir).toBe(dir);
      expect(ckpt.config.model_type).toBe("llama");
      expect(ckpt.names()).toEqual(tensors.map((t) => t.name));
      for (const t of tensors) expect(await ckpt.read(t.name)).toEqual(t.data);
      expect(ckpt.info("model.layers.1.mlp.down_proj.weight")?.shape).toEqual([4, 6]);
      await ckpt.close();
    });
  });

  it("opens a sharded checkpoint through weight_map and reads from the right shard", async () => {
    await withTempDir(async (dir) => {
      const tensors = tinyLlama(2);
      const half = Math.floor(tensors.length / 2);
      const shards = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
      await writeSafetensors(join(dir, shards[0]!), tensors.slice(0, half));
      await writeSafetensors(join(dir, shards[1]!), tensors.slice(half));
      const weightMap = Object.fromEntries(tensors.map((t, i) => [t.name, shards[i < half ? 0 : 1]]));
      await writeJson(join(dir, "config.json"), CONFIG);
      await writeJson(join(dir, "model.safetensors.index.json"), { metadata: { total_size: 0 }, weight_map: weightMap });
      const ckpt = await openCheckpoint(dir);
      expect(new Set(ckpt.names())).toEqual(new Set(tensors.map((t) => t.name)));
      for (const t of tensors) {
        expect(await ckpt.read(t.name)).toEqual(t.data);
        expect(ckpt.info(t.name)!.file).toBe(join(dir, weightMap[t.name]!));
      }
      await ckpt.close();
    });
  });

  it("validates the shard index: missing shard, tensor not in its shard, path escapes, bad map", async () => {
    await withTempDir(async (dir) => {
      const tensors = tinyLlama(3);
      await writeJson(join(dir, "config.json"), CONFIG);
      await writeSafetensors(join(dir, "a.safetensors"), tensors.slice(0, 3));
      const index = join(dir, "model.safetensors.index.json");
      await writeJson(index, { weight_map: { [tensors[0]!.name]: "a.safetensors", x: "b.safetensors" } });
      await expectInputError(openCheckpoint(dir), "model.safetensors.index.json", "b.safetensors", "missing");
      await writeJson(index, { weight_map: { [tensors[0]!.name]: "a.safetensors", [tensors[5]!.name]: "a.safetensors" } });
      await expectInputError(openCheckpoint(dir), tensors[5]!.name, "does not contain");
      await writeJson(index, { weight_map: { w: "../a.safetensors" } });
      await expectInputError(openCheckpoint(dir), "not a plain file name");
      await writeJson(index, { weight_map: { w: "a.bin" } });
      await expectInputError(openCheckpoint(dir), "not a .safetensors file");
      await writeJson(index, { weight_map: ["a.safetensors"] });
      await expectInputError(openCheckpoint(dir), "weight_map");
      await writeJson(index, { weight_map: {} });
      await expectInputError(openCheckpoint(dir), "empty");
    });
  });

  it("prefers model.safetensors over an index when both exist (as transformers does)", async () => {
    await withTempDir(async (dir) => {
      const tensors = tinyLlama(6);
      await writeJson(join(dir, "config.json"), CONFIG);
      await writeSafetensors(join(dir, "model.safetensors"), tensors);
      await writeJson(join(dir, "model.safetensors.index.json"), { weight_map: { x: "gone.safetensors" } });
      const ckpt = await openCheckpoint(dir);
      expect(ckpt.names()).toHaveLength(tensors.length);
      await ckpt.close();
    });
  });

  it("propagates malformed shards as SafetensorsError", async () => {
    await withTempDir(async (dir) => {
      await writeJson(join(dir, "config.json"), CONFIG);
      await writeFile(join(dir, "model.safetensors"), new Uint8Array(3));
      const err = await openCheckpoint(dir).catch((e) => e);
      expect(err).toBeInstanceOf(SafetensorsError);
    });
  });

  it("refuses pickle-only checkpoints with a safetensors hint and never reads them", async () => {
    for (const name of ["pytorch_model.bin", "model.pt", "weights.ckpt", "consolidated.00.pth"]) {
      await withTempDir(async (dir) => {
        await writeJson(join(dir, "config.json"), CONFIG);
        // not even a valid pickle: only the refusal path may touch this folder
        await writeFile(join(dir, name), "\x80\x04garbage");
        await expectInputError(openCheckpoint(dir), name, /safetensors/, /never unpickles/);
      });
    }
  });

  it("explains missing config, invalid config, missing weights, stray shards, missing folder", async () => {
    await withTempDir(async (dir) => {
      await expectInputError(openCheckpoint(join(dir, "nope")), "nope: does not exist");
      await expectInputError(openCheckpoint(join(dir, "nope", "deeper")), "does not exist");
      await expectInputError(openCheckpoint(dir), "config.json");
      await writeFile(join(dir, "config.json"), "{ not json");
      await expectInputError(openCheckpoint(dir), "config.json", "not valid JSON");
      await writeFile(join(dir, "config.json"), "[1]");
      await expectInputError(openCheckpoint(dir), "config.json", "not a JSON object");
      await writeJson(join(dir, "config.json"), CONFIG);
      await expectInputError(openCheckpoint(dir), "no model.safetensors");
      await writeSafetensors(join(dir, "model-00001-of-00002.safetensors"), tinyLlama(4).slice(0, 2));
      await expectInputError(openCheckpoint(dir), "model.safetensors.index.json");
    });
  });
});

describe("readJsonFile", () => {
  it("reads JSON (BOM tolerated) and gives one-line errors for missing, folder, too large, invalid", async () => {
    await withTempDir(async (dir) => {
      const p = join(dir, "x.json");
      await writeFile(p, "\ufeff{\"a\": [1, 2]}");
      expect(await readJsonFile(p)).toEqual({ a: [1, 2] });
      await expectInputError(readJsonFile(join(dir, "missing.json")), "missing.json", "not found");
      await mkdir(join(dir, "sub"));
      await expectInputError(readJsonFile(join(dir, "sub")), "not a file");
      await expectInputError(readJsonFile(p, 4), "x.json", "limit");
      await writeFile(p, "{\"a\":\n\n");
      await expectInputError(readJsonFile(p), "x.json", "not valid JSON");
    });
  });
});

describe("module names", () => {
  it("lists 2-D weights inside decoder layers without the .weight suffix", async () => {
    await withTempDir(async (dir) => {
      await writeJson(join(dir, "config.json"), CONFIG);
      await writeSafetensors(join(dir, "model.safetensors"), tinyLlama(5));
      const ckpt = await openCheckpoint(dir);
      const names = linearModuleNames(ckpt);
      expect(names).toHaveLength(14);
      expect(names).toContain("model.layers.0.self_attn.q_proj");
      expect(names).toContain("model.layers.1.mlp.down_proj");
      expect(names.some((n) => n.includes("embed") || n.includes("norm") || n.includes("lm_head") || n.endsWith("bias"))).toBe(false);
      await ckpt.close();
    });
  });

  it("classifies module type and layer", () => {
    expect(moduleType("model.layers.12.self_attn.q_proj")).toEqual({ type: "q", layer: 12 });
    expect(moduleType("model.layers.3.self_attn.k_proj.weight")).toEqual({ type: "k", layer: 3 });
    expect(moduleType("model.layers.0.self_attn.v_proj")).toEqual({ type: "v", layer: 0 });
    expect(moduleType("model.layers.0.self_attn.o_proj")).toEqual({ type: "o", layer: 0 });
    expect(moduleType("model.layers.7.mlp.gate_proj")).toEqual({ type: "gate", layer: 7 });
    expect(moduleType("model.layers.7.mlp.up_proj")).toEqual({ type: "up", layer: 7 });
    expect(moduleType("model.layers.7.mlp.down_proj")).toEqual({ type: "down", layer: 7 });
    expect(moduleType("model.layers.1.block_sparse_moe.experts.3.w2")).toEqual({ type: "down", layer: 1 });
    expect(moduleType("transformer.h.5.attn.c_attn")).toEqual({ type: "other", layer: 5 });
    expect(moduleType("lm_head")).toEqual({ type: "other", layer: -1 });
    expect(moduleType("model.embed_tokens")).toEqual({ type: "other", layer: -1 });
  });
});
