import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { InputError } from "../../src/errors";
import { decodeToFloat32 } from "../../src/io/dtype";
import {
  MAX_HEADER_BYTES,
  SafetensorsError,
  SafetensorsFile,
  SafetensorsWriter,
  parseSafetensorsHeader,
  writeSafetensors,
  type SafetensorsCheck,
} from "../../src/io/safetensors";
import { f32Bytes, randomFloats, rawSafetensors, rng, withTempDir } from "./helpers";

const FILE = "fixture.safetensors";

/** Validate header text as if followed by `bufferLength` bytes of tensor data. */
function parse(headerText: string, bufferLength: number) {
  const bytes = new TextEncoder().encode(headerText);
  return parseSafetensorsHeader(bytes, 8 + bytes.byteLength + bufferLength, FILE);
}

function expectCheck(fn: () => unknown, check: SafetensorsCheck, tensor?: string): SafetensorsError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${check}`).toBeInstanceOf(SafetensorsError);
  const e = caught as SafetensorsError;
  expect(e).toBeInstanceOf(InputError);
  expect(e.exitCode).toBe(2);
  expect(e.check).toBe(check);
  expect(e.message).toContain(FILE);
  expect(e.message).not.toContain("\n");
  if (tensor !== undefined) {
    expect(e.tensor).toBe(tensor);
    expect(e.message).toContain(JSON.stringify(tensor));
  }
  return e;
}

const entry = (dtype: string, shape: unknown, offsets: unknown) => ({ dtype, shape, data_offsets: offsets });
const hdr = (o: Record<string, unknown>) => JSON.stringify(o);

describe("parseSafetensorsHeader: valid headers", () => {
  it("accepts a well-formed header, sorts entries by offset, keeps metadata", () => {
    const h = parse(
      hdr({ __metadata__: { format: "pt" }, b: entry("F16", [2, 1], [8, 12]), a: entry("F32", [2], [0, 8]) }) + "   ",
      12,
    );
    expect(h.metadata).toEqual({ format: "pt" });
    expect(h.entries.map((e) => e.name)).toEqual(["a", "b"]);
    expect(h.entries[1]).toMatchObject({ dtype: "F16", shape: [2, 1], begin: 8, end: 12 });
  });

  it("accepts an empty header and zero-element tensors", () => {
    expect(parse("{}", 0).entries).toEqual([]);
    const h = parse(hdr({ z: entry("BF16", [0, 4], [8, 8]), a: entry("F64", [1], [0, 8]) }), 8);
    expect(h.entries.map((e) => e.name)).toEqual(["a", "z"]);
  });
});

describe("parseSafetensorsHeader: every malformed-header rule", () => {
  it("header length 0", () => {
    expectCheck(() => parse("", 0), "header-length-zero");
  });

  it("header not starting with '{' (leading space, array, string)", () => {
    expectCheck(() => parse(' {"a":1}', 0), "header-start");
    expectCheck(() => parse("[1,2]", 0), "header-start");
    expectCheck(() => parse('"x"', 0), "header-start");
  });

  it("header not UTF-8", () => {
    const bytes = new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d]);
    expectCheck(() => parseSafetensorsHeader(bytes, 8 + bytes.length, FILE), "header-not-utf8");
  });

  it("header not JSON", () => {
    expectCheck(() => parse('{"a":', 0), "header-not-json");
    expectCheck(() => parse("{\x00}", 0), "header-not-json");
  });

  it("__metadata__ not string → string", () => {
    expectCheck(() => parse(hdr({ __metadata__: { k: 1 } }), 0), "metadata");
    expectCheck(() => parse(hdr({ __metadata__: "x" }), 0), "metadata");
    expectCheck(() => parse(hdr({ __metadata__: ["a"] }), 0), "metadata");
  });

  it("duplicate tensor names, including escaped spellings of the same name", () => {
    const a = hdr(entry("F32", [1], [0, 4]));
    const b = hdr(entry("F32", [1], [4, 8]));
    expectCheck(() => parse(`{"w":${a},"w":${b}}`, 8), "duplicate-name", "w");
    expectCheck(() => parse(`{"w":${a}, "\\u0077" : ${b}}`, 8), "duplicate-name", "w");
    // the same name nested inside an entry or metadata is not a duplicate
    expect(parse(`{"__metadata__":{"w":"x"},"w":${a}}`, 4).entries).toHaveLength(1);
  });

  it("entry that is not an object", () => {
    expectCheck(() => parse(hdr({ t: 5 }), 0), "entry-not-object", "t");
    expectCheck(() => parse(hdr({ t: [1] }), 0), "entry-not-object", "t");
  });

  it("unknown or unsupported dtype, naming it and listing the supported ones", () => {
    const e1 = expectCheck(() => parse(hdr({ t: entry("I64", [1], [0, 8]) }), 8), "dtype", "t");
    expect(e1.message).toContain("I64");
    expect(e1.message).toContain("F32, F16, BF16, F64");
    const e2 = expectCheck(() => parse(hdr({ t: entry("Q4_K", [1], [0, 8]) }), 8), "dtype", "t");
    expect(e2.message).toContain("Q4_K");
    expectCheck(() => parse(hdr({ t: { shape: [1], data_offsets: [0, 4] } }), 4), "dtype", "t");
  });

  it("non-integer or negative dims", () => {
    expectCheck(() => parse(hdr({ t: entry("F32", [-1], [0, 4]) }), 4), "shape", "t");
    expectCheck(() => parse(hdr({ t: entry("F32", [1.5], [0, 4]) }), 4), "shape", "t");
    expectCheck(() => parse(hdr({ t: entry("F32", ["2"], [0, 8]) }), 8), "shape", "t");
    expectCheck(() => parse(hdr({ t: entry("F32", "2", [0, 8]) }), 8), "shape", "t");
    expectCheck(() => parse(hdr({ t: entry("F32", [1e300], [0, 4]) }), 4), "shape", "t");
  });

  it("malformed data_offsets", () => {
    expectCheck(() => parse(hdr({ t: entry("F32", [1], [0]) }), 4), "data-offsets", "t");
    expectCheck(() => parse(hdr({ t: entry("F32", [1], [0, "4"]) }), 4), "data-offsets", "t");
    expectCheck(() => parse(hdr({ t: entry("F32", [1], [-4, 0]) }), 4), "data-offsets", "t");
    expectCheck(() => parse(hdr({ t: entry("F32", [1], [0, 4, 8]) }), 4), "data-offsets", "t");
    expectCheck(() => parse(hdr({ t: { dtype: "F32", shape: [1] } }), 4), "data-offsets", "t");
  });

  it("data_offsets out of order (end before begin)", () => {
    expectCheck(() => parse(hdr({ t: entry("F32", [1], [4, 0]) }), 4), "offsets-order", "t");
  });

  it("byte length ≠ shape × dtype size", () => {
    const e = expectCheck(() => parse(hdr({ t: entry("F32", [3], [0, 8]) }), 8), "byte-length", "t");
    expect(e.message).toContain("12");
    expectCheck(() => parse(hdr({ t: entry("BF16", [2, 2], [0, 16]) }), 16), "byte-length", "t");
    // a product past 2^53 must not wrap around to a small number
    expectCheck(() => parse(hdr({ t: entry("F32", [2 ** 40, 2 ** 40], [0, 0]) }), 0), "byte-length", "t");
  });

  it("offsets out of the file", () => {
    expectCheck(() => parse(hdr({ t: entry("F32", [2], [0, 8]) }), 4), "offsets-out-of-file", "t");
  });

  it("overlapping tensors, naming both", () => {
    const e = expectCheck(
      () => parse(hdr({ a: entry("F32", [2], [0, 8]), b: entry("F32", [2], [4, 12]) }), 12),
      "offsets-overlap",
      "b",
    );
    expect(e.message).toContain('"a"');
  });

  it("gaps between tensors or before the first one", () => {
    expectCheck(() => parse(hdr({ a: entry("F32", [2], [0, 8]), b: entry("F32", [2], [12, 20]) }), 20), "offsets-gap", "b");
    expectCheck(() => parse(hdr({ a: entry("F32", [2], [4, 12]) }), 12), "offsets-gap", "a");
  });

  it("file length ≠ 8 + header + buffer (trailing bytes)", () => {
    expectCheck(() => parse(hdr({ a: entry("F32", [2], [0, 8]) }), 9), "file-length");
    expectCheck(() => parse("{}", 1), "file-length");
  });

  it("header running past the end of the file", () => {
    const bytes = new TextEncoder().encode("{}");
    expectCheck(() => parseSafetensorsHeader(bytes, 8 + 1, FILE), "header-truncated");
  });
});

describe("SafetensorsFile.open on broken files", () => {
  async function openBytes(dir: string, bytes: Uint8Array) {
    const path = join(dir, FILE);
    await writeFile(path, bytes);
    return SafetensorsFile.open(path);
  }

  it("zero-byte and too-short files", async () => {
    await withTempDir(async (dir) => {
      for (const n of [0, 1, 7]) {
        const err = await openBytes(dir, new Uint8Array(n)).catch((e) => e);
        expect(err).toBeInstanceOf(SafetensorsError);
        expect((err as SafetensorsError).check).toBe("file-too-short");
      }
    });
  });

  it("huge or lying header lengths fail before allocating", async () => {
    await withTempDir(async (dir) => {
      const huge = await openBytes(dir, rawSafetensors("{}", undefined, 2n ** 63n)).catch((e) => e);
      expect((huge as SafetensorsError).check).toBe("header-too-large");
      const over = await openBytes(dir, rawSafetensors("{}", undefined, BigInt(MAX_HEADER_BYTES + 1))).catch((e) => e);
      expect((over as SafetensorsError).check).toBe("header-too-large");
      const past = await openBytes(dir, rawSafetensors("{}", undefined, 1000n)).catch((e) => e);
      expect((past as SafetensorsError).check).toBe("header-truncated");
      const zero = await openBytes(dir, rawSafetensors("{}", undefined, 0n)).catch((e) => e);
      expect((zero as SafetensorsError).check).toBe("header-length-zero");
    });
  });

  it("every truncation of a valid file is refused with SafetensorsError", async () => {
    await withTempDir(async (dir) => {
      const full = rawSafetensors(hdr({ a: entry("F32", [3], [0, 12]), b: entry("BF16", [2], [12, 16]) }), new Uint8Array(16));
      await openBytes(dir, full).then((f) => f.close());
      for (let cut = 0; cut < full.length; cut++) {
        const err = await openBytes(dir, full.subarray(0, cut)).then(
          async (f) => {
            await f.close();
            return undefined;
          },
          (e) => e,
        );
        expect(err, `cut at ${cut}`).toBeInstanceOf(SafetensorsError);
      }
    });
  });

  it("missing files and folders are InputErrors naming the path", async () => {
    await withTempDir(async (dir) => {
      const missing = await SafetensorsFile.open(join(dir, "nope.safetensors")).catch((e) => e);
      expect(missing).toBeInstanceOf(InputError);
      expect((missing as Error).message).toContain("nope.safetensors");
      const folder = await SafetensorsFile.open(dir).catch((e) => e);
      expect(folder).toBeInstanceOf(InputError);
    });
  });

  it("fuzz: random bytes and mutated valid files only ever throw SafetensorsError", async () => {
    const rand = rng(42);
    const valid = rawSafetensors(
      hdr({ __metadata__: { format: "pt" }, w: entry("F32", [2, 2], [0, 16]), v: entry("F16", [4], [16, 24]) }),
      new Uint8Array(24),
    );
    const check = (bytes: Uint8Array) => {
      // the same rules the reader applies, on the bytes after the 8-byte prefix
      if (bytes.length < 8) return;
      const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
      const header = bytes.subarray(8, 8 + Math.min(n, bytes.length - 8));
      try {
        parseSafetensorsHeader(header.length === n ? header : new Uint8Array(0), bytes.length, FILE);
      } catch (err) {
        expect(err).toBeInstanceOf(SafetensorsError);
      }
    };
    for (let iter = 0; iter < 2000; iter++) {
      const bytes = valid.slice();
      const flips = 1 + Math.floor(rand() * 4);
      for (let k = 0; k < flips; k++) {
        const at = 8 + Math.floor(rand() * (bytes.length - 8));
        bytes[at] = rand() < 0.5 ? Math.floor(rand() * 256) : "{}[],:\"0123456789-. e".charCodeAt(Math.floor(rand() * 21));
      }
      check(bytes);
    }
    await withTempDir(async (dir) => {
      // mutated and cut copies of a valid file, through the real reader
      for (let iter = 0; iter < 150; iter++) {
        let bytes = valid.slice();
        const at = Math.floor(rand() * bytes.length);
        bytes[at] = Math.floor(rand() * 256);
        if (rand() < 0.3) bytes = bytes.subarray(0, Math.floor(rand() * bytes.length));
        const result = await openBytes(dir, bytes).then(
          async (f) => {
            for (const n of f.names()) await f.read(n);
            await f.close();
          },
          (e) => e,
        );
        if (result !== undefined) expect(result).toBeInstanceOf(SafetensorsError);
      }
      for (let iter = 0; iter < 60; iter++) {
        const len = Math.floor(rand() * 300);
        const bytes = new Uint8Array(len);
        for (let i = 0; i < len; i++) bytes[i] = Math.floor(rand() * 256);
        if (iter % 3 === 0 && len >= 8) new DataView(bytes.buffer).setBigUint64(0, BigInt(Math.floor(rand() * len)), true);
        const result = await openBytes(dir, bytes).then(
          (f) => f.close(),
          (e) => e,
        );
        if (result !== undefined) expect(result).toBeInstanceOf(SafetensorsError);
      }
    });
  });
});

describe("writeSafetensors → SafetensorsFile round trip", () => {
  it("writes a spec-conforming file (checked by hand) that reads back exactly", async () => {
    await withTempDir(async (dir) => {
      const rand = rng(7);
      const tensors = [
        { name: "model.layers.0.mlp.up_proj.weight", dtype: "F32" as const, shape: [5, 3], data: randomFloats(15, rand) },
        { name: "h", dtype: "F16" as const, shape: [7], data: randomFloats(7, rand) },
        { name: "b", dtype: "BF16" as const, shape: [2, 3], data: randomFloats(6, rand) },
        { name: "d", dtype: "F64" as const, shape: [3], data: randomFloats(3, rand) },
        { name: "empty", dtype: "F32" as const, shape: [0, 3], data: new Float32Array(0) },
        { name: "scalar", dtype: "F32" as const, shape: [], data: new Float32Array([2.5]) },
      ];
      const path = join(dir, "out.safetensors");
      await writeSafetensors(path, tensors, { format: "pt", note: "ünïcode" });

      // independent parse of the bytes
      const bytes = new Uint8Array(await readFile(path));
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      expect(n % 8).toBe(0);
      const headerText = new TextDecoder().decode(bytes.subarray(8, 8 + n));
      expect(headerText.trimEnd()).toBe(headerText.replace(/ +$/, ""));
      const header = JSON.parse(headerText);
      expect(header.__metadata__).toEqual({ format: "pt", note: "ünïcode" });
      let pos = 0;
      for (const t of tensors) {
        const e = header[t.name];
        expect(e.dtype).toBe(t.dtype);
        expect(e.shape).toEqual(t.shape);
        expect(e.data_offsets[0]).toBe(pos);
        pos = e.data_offsets[1];
      }
      expect(bytes.length).toBe(8 + n + pos);
      const f32 = header["model.layers.0.mlp.up_proj.weight"].data_offsets;
      expect(bytes.subarray(8 + n + f32[0], 8 + n + f32[1])).toEqual(f32Bytes(tensors[0]!.data));

      const f = await SafetensorsFile.open(path);
      expect(f.names()).toEqual(tensors.map((t) => t.name));
      expect(f.metadata.note).toBe("ünïcode");
      for (const t of tensors) {
        const got = await f.read(t.name);
        expect(got.length).toBe(t.data.length);
        const tol = t.dtype === "F16" ? 2 ** -11 : t.dtype === "BF16" ? 2 ** -8 : 0;
        for (let i = 0; i < got.length; i++) expect(Math.abs(got[i]! - t.data[i]!)).toBeLessThanOrEqual(tol * Math.abs(t.data[i]!));
        const info = f.info(t.name)!;
        expect(info.file).toBe(path);
        expect(Array.from(await f.readRaw(t.name))).toEqual(Array.from(bytes.subarray(info.offset, info.offset + info.byteLength)));
      }
      expect(await f.readRows("model.layers.0.mlp.up_proj.weight", 2, 2)).toEqual(tensors[0]!.data.subarray(6, 12));
      await expect(f.readRows("model.layers.0.mlp.up_proj.weight", 4, 2)).rejects.toThrow(RangeError);
      await expect(f.read("nope")).rejects.toBeInstanceOf(InputError);
      await f.close();
      await f.close(); // idempotent
      expect((await readdir(dir)).sort()).toEqual(["out.safetensors"]);
    });
  });

  it("decodes large half-precision tensors in chunks identically to a whole-buffer decode", async () => {
    await withTempDir(async (dir) => {
      const rand = rng(8);
      const n = 9_000_001; // more than one 16 MB decode chunk of BF16, odd length
      const data = randomFloats(n, rand, 3);
      const path = join(dir, "big.safetensors");
      await writeSafetensors(path, [{ name: "w", dtype: "BF16", shape: [n], data }]);
      const f = await SafetensorsFile.open(path);
      const got = await f.read("w");
      const ref = decodeToFloat32(await f.readRaw("w"), "BF16", n);
      expect(Buffer.from(got.buffer).equals(Buffer.from(ref.buffer))).toBe(true);
      const rows = await f.readRows("w", n - 5, 5);
      expect(rows).toEqual(ref.subarray(n - 5));
      await f.close();
    });
  });

  it("refuses invalid input without leaving files behind, and never clobbers an existing file", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "keep.safetensors");
      await writeFile(path, "old");
      await expect(writeSafetensors(path, [{ name: "x", dtype: "F32", shape: [3], data: new Float32Array(2) }])).rejects.toThrow();
      await expect(writeSafetensors(path, [{ name: "__metadata__", dtype: "F32", shape: [1], data: new Float32Array(1) }])).rejects.toThrow();
      await expect(
        writeSafetensors(path, [
          { name: "x", dtype: "F32", shape: [1], data: new Float32Array(1) },
          { name: "x", dtype: "F32", shape: [1], data: new Float32Array(1) },
        ]),
      ).rejects.toThrow();
      expect(await readFile(path, "utf8")).toBe("old");
      expect(await readdir(dir)).toEqual(["keep.safetensors"]);
    });
  });
});

describe("SafetensorsWriter (streaming)", () => {
  it("accepts tensors in chunks, in header order, and produces a readable file", async () => {
    await withTempDir(async (dir) => {
      const rand = rng(9);
      const a = randomFloats(1000, rand);
      const b = randomFloats(64, rand);
      const path = join(dir, "s.safetensors");
      const w = await SafetensorsWriter.create(path, [
        { name: "a", dtype: "F32", shape: [10, 100] },
        { name: "z", dtype: "F32", shape: [0] },
        { name: "b", dtype: "F16", shape: [64] },
      ]);
      expect(w.next).toBe("a");
      for (let i = 0; i < 1000; i += 300) await w.write("a", a.subarray(i, i + 300));
      expect(w.next).toBe("b"); // the empty tensor needs no data
      await w.write("b", b);
      expect(w.next).toBeUndefined();
      await w.finish();
      const f = await SafetensorsFile.open(path);
      expect(await f.read("a")).toEqual(a);
      expect((await f.read("z")).length).toBe(0);
      await f.close();
    });
  });

  it("rejects out-of-order or excess data and incomplete files, removing its temp file", async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, "s.safetensors");
      const specs = [
        { name: "a", dtype: "F32" as const, shape: [2] },
        { name: "b", dtype: "F32" as const, shape: [2] },
      ];
      const w1 = await SafetensorsWriter.create(path, specs);
      await expect(w1.write("b", new Float32Array(2))).rejects.toThrow(/expected data for "a"/);
      const w2 = await SafetensorsWriter.create(path, specs);
      await expect(w2.write("a", new Float32Array(3))).rejects.toThrow(/only 2 remain/);
      const w3 = await SafetensorsWriter.create(path, specs);
      await w3.write("a", new Float32Array(2));
      await expect(w3.finish()).rejects.toThrow(/"b" was not fully written/);
      const w4 = await SafetensorsWriter.create(path, specs);
      await w4.abort();
      expect(await readdir(dir)).toEqual([]);
    });
  });
});
