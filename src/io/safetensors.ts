/**
 * safetensors reader and writer.
 *
 * Format (https://github.com/huggingface/safetensors): u64 little-endian header length N,
 * N bytes of UTF-8 JSON (`{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}`),
 * then the byte buffer; offsets are relative to the buffer, which the tensors cover without
 * gaps or overlaps.
 *
 * We write our own reader because the npm `safetensors` package loads whole files into
 * memory; ours parses the header, validates every rule below, and then reads one tensor at a
 * time with positional reads, so a multi-GB file never sits in memory at once.
 */
import { constants } from "node:fs";
import { open, rename, rm, type FileHandle } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { InputError } from "../errors";
import { DTYPE_BYTES, SUPPORTED_DTYPES, decodeInto, encodeFromFloat32, isSupportedDType } from "./dtype";
import type { DType, TensorInfo, TensorSource } from "./types";

/** The safetensors spec caps the header at 100 MB so a hostile length cannot force a huge allocation. */
export const MAX_HEADER_BYTES = 100_000_000;
/** Bytes of the little-endian u64 that precedes the header. */
const HEADER_LENGTH_BYTES = 8;
/** Header size is padded to this so the buffer starts aligned (what the reference writer does). */
const HEADER_ALIGN = 8;
/** Largest single positional read: Node caps one read at 2 GiB, and smaller reads keep the event loop responsive. */
const READ_CHUNK_BYTES = 64 * 1024 * 1024;
/** Half-precision tensors are decoded through a buffer of this many bytes, so decoding needs no full-size raw copy. */
const DECODE_CHUNK_BYTES = 16 * 1024 * 1024;
/** Encode buffer for non-F32 writes, in elements. */
const ENCODE_CHUNK_ELEMENTS = 4 * 1024 * 1024;

/** Names of the validation rules, carried by SafetensorsError so tests and callers can tell them apart. */
export type SafetensorsCheck =
  | "file-too-short"
  | "header-length-zero"
  | "header-too-large"
  | "header-truncated"
  | "header-not-utf8"
  | "header-start"
  | "header-not-json"
  | "header-not-object"
  | "metadata"
  | "duplicate-name"
  | "entry-not-object"
  | "dtype"
  | "shape"
  | "data-offsets"
  | "offsets-order"
  | "offsets-out-of-file"
  | "offsets-overlap"
  | "offsets-gap"
  | "byte-length"
  | "file-length"
  | "read";

/** A malformed safetensors file (exit 2). The message names the file and, where there is one, the tensor. */
export class SafetensorsError extends InputError {
  constructor(
    message: string,
    file: string,
    readonly check: SafetensorsCheck,
    readonly tensor?: string,
  ) {
    super(tensor === undefined ? message : `tensor ${JSON.stringify(tensor)}: ${message}`, file);
    this.name = "SafetensorsError";
  }
}

/** Every dtype name the safetensors format defines; only SUPPORTED_DTYPES are read. */
const KNOWN_FORMAT_DTYPES = new Set([
  "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
  "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64", "C64",
]);

export interface SafetensorsEntry {
  name: string;
  dtype: DType;
  shape: number[];
  /** [begin, end) relative to the byte buffer */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** total header length N (the JSON bytes, padding included) */
  headerLength: number;
  metadata: Record<string, string>;
  /** tensors sorted by their position in the buffer (file order) */
  entries: SafetensorsEntry[];
}

/**
 * Top-level keys of a JSON object text, in order, duplicates kept.
 * JSON.parse silently keeps the last of two equal keys, so duplicates must be found in the raw text.
 * Assumes `text` already parsed as a JSON object.
 */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) j += 2;
        else if (d === 0x22) break;
        else j++;
      }
      if (depth === 1 && expectKey) {
        keys.push(JSON.parse(text.slice(i, j + 1)) as string);
        expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      depth++;
      if (depth === 1) expectKey = c === 0x7b;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
    } else if (c === 0x2c /* , */ && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

/** Element count of a validated shape, or Infinity when it exceeds the safe-integer range. */
function numelOf(shape: number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return Number.isSafeInteger(n) ? n : Infinity;
}

/**
 * Validate a safetensors header. `headerBytes` are the N bytes after the length prefix and
 * `fileLength` is the size of the whole file. Pure: throws SafetensorsError naming `file`
 * (and the tensor) for the first rule broken.
 */
export function parseSafetensorsHeader(headerBytes: Uint8Array, fileLength: number, file: string): SafetensorsHeader {
  const N = headerBytes.byteLength;
  const fail = (check: SafetensorsCheck, msg: string, tensor?: string): never => {
    throw new SafetensorsError(msg, file, check, tensor);
  };
  if (N === 0) fail("header-length-zero", "header length is 0 (not a safetensors file?)");
  if (N > MAX_HEADER_BYTES) fail("header-too-large", `header length ${N} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  if (fileLength < HEADER_LENGTH_BYTES + N) {
    fail("header-truncated", `header length ${N} runs past the end of the ${fileLength}-byte file (truncated?)`);
  }
  // The spec requires the header to start with '{' (no BOM, no leading whitespace)
  if (headerBytes[0] !== 0x7b) fail("header-start", "header does not start with '{' (not a safetensors file?)");
  let text = "";
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(headerBytes);
  } catch {
    fail("header-not-utf8", "header is not valid UTF-8");
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    fail("header-not-json", `header is not valid JSON (${(err as Error).message.split("\n")[0]})`);
  }
  if (!isPlainObject(parsed)) fail("header-not-object", "header JSON is not an object");
  const obj = parsed as Record<string, unknown>;

  const seen = new Set<string>();
  for (const key of topLevelKeys(text)) {
    if (seen.has(key)) fail("duplicate-name", "appears more than once in the header", key);
    seen.add(key);
  }

  const metadata: Record<string, string> = {};
  if ("__metadata__" in obj) {
    const m = obj.__metadata__;
    if (!isPlainObject(m)) fail("metadata", "__metadata__ must be an object of string → string");
    for (const [k, v] of Object.entries(m as Record<string, unknown>)) {
      if (typeof v !== "string") fail("metadata", `__metadata__[${JSON.stringify(k)}] is not a string`);
      metadata[k] = v as string;
    }
  }

  const entries: SafetensorsEntry[] = [];
  for (const [name, raw] of Object.entries(obj)) {
    if (name === "__metadata__") continue;
    if (!isPlainObject(raw)) fail("entry-not-object", "entry is not an object with dtype, shape, data_offsets", name);
    const e = raw as Record<string, unknown>;
    const dtype = e.dtype;
    if (!isSupportedDType(dtype)) {
      const what = typeof dtype === "string" ? (KNOWN_FORMAT_DTYPES.has(dtype) ? `dtype ${dtype} is not supported` : `unknown dtype ${JSON.stringify(dtype)}`) : "dtype is missing or not a string";
      fail("dtype", `${what}; delta-audit reads ${SUPPORTED_DTYPES.join(", ")}`, name);
    }
    const shape = e.shape;
    if (!Array.isArray(shape)) fail("shape", "shape is missing or not an array", name);
    for (const d of shape as unknown[]) {
      if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
        fail("shape", `shape ${JSON.stringify(shape)} has a dimension that is not a non-negative integer`, name);
      }
    }
    const offs = e.data_offsets;
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
    ) {
      fail("data-offsets", `data_offsets ${JSON.stringify(offs)} is not a pair of non-negative integers`, name);
    }
    const [begin, end] = offs as [number, number];
    if (begin > end) fail("offsets-order", `data_offsets [${begin}, ${end}] end before they begin`, name);
    const numel = numelOf(shape as number[]);
    const size = DTYPE_BYTES[dtype as DType];
    if (numel * size !== end - begin) {
      fail(
        "byte-length",
        `data_offsets cover ${end - begin} bytes but shape ${JSON.stringify(shape)} × ${dtype} needs ${numel * size}`,
        name,
      );
    }
    entries.push({ name, dtype: dtype as DType, shape: shape as number[], begin, end });
  }

  // Tensors must tile the buffer exactly: sorted by position, each starts where the previous ended
  const bufferLength = fileLength - HEADER_LENGTH_BYTES - N;
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  let prev: SafetensorsEntry | undefined;
  for (const e of entries) {
    if (e.end > bufferLength) {
      fail("offsets-out-of-file", `data_offsets [${e.begin}, ${e.end}] run past the ${bufferLength}-byte buffer (truncated file?)`, e.name);
    }
    if (e.begin < pos) fail("offsets-overlap", `data_offsets [${e.begin}, ${e.end}] overlap tensor ${JSON.stringify(prev!.name)}`, e.name);
    if (e.begin > pos) {
      fail("offsets-gap", `data_offsets [${e.begin}, ${e.end}] leave a gap of ${e.begin - pos} unused bytes before this tensor`, e.name);
    }
    pos = e.end;
    prev = e;
  }
  if (pos !== bufferLength) {
    fail(
      "file-length",
      `file is ${fileLength} bytes but 8 + header ${N} + tensors ${pos} = ${HEADER_LENGTH_BYTES + N + pos} (trailing bytes)`,
    );
  }
  return { headerLength: N, metadata, entries };
}

/** Read exactly `length` bytes at `position` into `target` (which must hold them), looping over short reads. */
async function readFully(fh: FileHandle, target: Uint8Array, position: number, file: string, tensor?: string): Promise<void> {
  let done = 0;
  while (done < target.byteLength) {
    const want = Math.min(READ_CHUNK_BYTES, target.byteLength - done);
    const { bytesRead } = await fh.read(target, done, want, position + done);
    if (bytesRead === 0) throw new SafetensorsError("file ended early (was it truncated while being read?)", file, "read", tensor);
    done += bytesRead;
  }
}

/** One safetensors file opened for lazy, random-access reads. */
export class SafetensorsFile implements TensorSource {
  readonly metadata: Record<string, string>;
  private readonly byName = new Map<string, TensorInfo>();
  private readonly order: string[];
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    header: SafetensorsHeader,
  ) {
    this.metadata = header.metadata;
    const base = HEADER_LENGTH_BYTES + header.headerLength;
    this.order = header.entries.map((e) => e.name);
    for (const e of header.entries) {
      this.byName.set(e.name, {
        name: e.name,
        dtype: e.dtype,
        shape: e.shape,
        file: path,
        offset: base + e.begin,
        byteLength: e.end - e.begin,
      });
    }
  }

  /** Open and validate `path`; reads only the header. Throws SafetensorsError for malformed files, InputError when unreadable. */
  static async open(path: string): Promise<SafetensorsFile> {
    let fh: FileHandle;
    try {
      // O_NONBLOCK: opening a FIFO planted as a weights file would otherwise wait forever for
      // a writer; opened this way it fails the regular-file check below (no effect on files)
      fh = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new InputError(code === "ENOENT" ? "file not found" : `cannot open (${code ?? (err as Error).message})`, path);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new InputError("is not a regular file", path);
      const size = st.size;
      if (size < HEADER_LENGTH_BYTES) {
        throw new SafetensorsError(`file is ${size} bytes, too short for the 8-byte header length`, path, "file-too-short");
      }
      const lenBuf = new Uint8Array(HEADER_LENGTH_BYTES);
      await readFully(fh, lenBuf, 0, path);
      const big = new DataView(lenBuf.buffer).getBigUint64(0, true);
      // compare as BigInt before converting: a hostile length must not drive the allocation
      if (big === 0n) parseSafetensorsHeader(new Uint8Array(0), size, path);
      if (big > BigInt(MAX_HEADER_BYTES)) {
        throw new SafetensorsError(`header length ${big} exceeds the ${MAX_HEADER_BYTES}-byte limit`, path, "header-too-large");
      }
      const N = Number(big);
      if (HEADER_LENGTH_BYTES + N > size) {
        throw new SafetensorsError(`header length ${N} runs past the end of the ${size}-byte file (truncated?)`, path, "header-truncated");
      }
      const headerBytes = new Uint8Array(N);
      await readFully(fh, headerBytes, HEADER_LENGTH_BYTES, path);
      const header = parseSafetensorsHeader(headerBytes, size, path);
      return new SafetensorsFile(path, fh, header);
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
  }

  names(): string[] {
    return [...this.order];
  }

  info(name: string): TensorInfo | undefined {
    return this.byName.get(name);
  }

  private need(name: string): TensorInfo {
    if (this.closed) throw new Error(`${this.path}: read after close`);
    const info = this.byName.get(name);
    if (!info) throw new InputError(`no tensor named ${JSON.stringify(name)}`, this.path);
    return info;
  }

  /** The tensor's raw little-endian bytes. */
  async readRaw(name: string): Promise<Uint8Array> {
    const info = this.need(name);
    const out = new Uint8Array(info.byteLength);
    await readFully(this.fh, out, info.offset, this.path, name);
    return out;
  }

  /** Decode the whole tensor to float32 (row-major). Peak memory: the result plus at most one 16 MB chunk. */
  async read(name: string): Promise<Float32Array> {
    const info = this.need(name);
    const numel = info.byteLength / DTYPE_BYTES[info.dtype];
    return this.readElements(info, 0, numel);
  }

  /**
   * Decode rows [rowStart, rowStart + rowCount) of a tensor (first dimension), for streaming
   * through tensors too large to hold in float32 at once (e.g. a 128k × 8192 embedding).
   */
  async readRows(name: string, rowStart: number, rowCount: number): Promise<Float32Array> {
    const info = this.need(name);
    const rows = info.shape.length === 0 ? 1 : info.shape[0]!;
    if (!Number.isSafeInteger(rowStart) || !Number.isSafeInteger(rowCount) || rowStart < 0 || rowCount < 0 || rowStart + rowCount > rows) {
      throw new RangeError(`${this.path}: rows [${rowStart}, ${rowStart + rowCount}) outside tensor ${name} with ${rows} rows`);
    }
    const numel = info.byteLength / DTYPE_BYTES[info.dtype];
    const perRow = rows === 0 ? 0 : numel / rows;
    return this.readElements(info, rowStart * perRow, rowCount * perRow);
  }

  private async readElements(info: TensorInfo, first: number, count: number): Promise<Float32Array> {
    const size = DTYPE_BYTES[info.dtype];
    let out: Float32Array;
    try {
      out = new Float32Array(count);
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      throw new Error(`${this.path}: tensor ${info.name} has ${count} elements, too many to decode at once; read it in row blocks (readRows)`);
    }
    const start = info.offset + first * size;
    if (info.dtype === "F32" && LITTLE_ENDIAN) {
      // read straight into the result: no intermediate copy
      await readFully(this.fh, new Uint8Array(out.buffer), start, this.path, info.name);
      return out;
    }
    const chunkElems = Math.max(1, Math.floor(DECODE_CHUNK_BYTES / size));
    const buf = new Uint8Array(Math.min(count, chunkElems) * size);
    for (let done = 0; done < count; done += chunkElems) {
      const n = Math.min(chunkElems, count - done);
      const bytes = buf.subarray(0, n * size);
      await readFully(this.fh, bytes, start + done * size, this.path, info.name);
      decodeInto(bytes, info.dtype, n, out.subarray(done, done + n));
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.fh.close();
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: number[];
}

export interface TensorData extends TensorSpec {
  data: Float32Array;
}

/** The full prefix of a safetensors file (8-byte length + padded JSON) for tensors laid out in the given order. */
export function buildSafetensorsHeader(
  specs: readonly TensorSpec[],
  metadata?: Record<string, string>,
): { prefix: Uint8Array; byteLengths: number[] } {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new TypeError(`metadata ${JSON.stringify(k)} must be a string`);
    }
    header.__metadata__ = metadata;
  }
  const byteLengths: number[] = [];
  const seen = new Set<string>();
  let pos = 0;
  for (const s of specs) {
    if (s.name === "__metadata__" || seen.has(s.name)) throw new TypeError(`tensor name ${JSON.stringify(s.name)} is reserved or repeated`);
    seen.add(s.name);
    if (!isSupportedDType(s.dtype)) throw new TypeError(`tensor ${s.name}: unsupported dtype ${String(s.dtype)}`);
    if (!s.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new TypeError(`tensor ${s.name}: invalid shape ${JSON.stringify(s.shape)}`);
    const len = numelOf(s.shape) * DTYPE_BYTES[s.dtype];
    if (!Number.isSafeInteger(len)) throw new TypeError(`tensor ${s.name}: shape too large`);
    header[s.name] = { dtype: s.dtype, shape: s.shape, data_offsets: [pos, pos + len] };
    byteLengths.push(len);
    pos += len;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // pad with spaces so the buffer starts 8-byte aligned (spaces are valid trailing JSON whitespace)
  const padded = Math.ceil(json.byteLength / HEADER_ALIGN) * HEADER_ALIGN;
  const prefix = new Uint8Array(HEADER_LENGTH_BYTES + padded).fill(0x20, HEADER_LENGTH_BYTES);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(padded), true);
  prefix.set(json, HEADER_LENGTH_BYTES);
  return { prefix, byteLengths };
}

/** A temp path next to `path` (same filesystem, so the final rename is atomic). */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/**
 * Streaming safetensors writer: the header is fixed up front, then tensor data arrives in
 * order, whole or in chunks, and goes straight to disk. Writes a temp file next to `path`
 * and renames it into place on finish(); abort() (or any failed write) removes it.
 */
export class SafetensorsWriter {
  private index = 0;
  /** elements of specs[index] written so far */
  private written = 0;
  private position: number;
  private state: "open" | "finished" | "aborted" = "open";

  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private readonly fh: FileHandle,
    private readonly specs: readonly TensorSpec[],
    private readonly numels: number[],
    headerBytes: number,
  ) {
    this.position = headerBytes;
  }

  static async create(path: string, specs: readonly TensorSpec[], metadata?: Record<string, string>): Promise<SafetensorsWriter> {
    const { prefix } = buildSafetensorsHeader(specs, metadata);
    const tmp = tempPathFor(path);
    const fh = await open(tmp, "wx");
    try {
      await fh.write(prefix, 0, prefix.byteLength, 0);
    } catch (err) {
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw err;
    }
    const w = new SafetensorsWriter(path, tmp, fh, specs, specs.map((s) => numelOf(s.shape)), prefix.byteLength);
    w.skipEmpty();
    return w;
  }

  /** Move past tensors that are complete (including zero-element ones, which take no data). */
  private skipEmpty(): void {
    while (this.index < this.specs.length && this.written === this.numels[this.index]) {
      this.index++;
      this.written = 0;
    }
  }

  /** The tensor the next write() must be for, or undefined when all are written. */
  get next(): string | undefined {
    return this.specs[this.index]?.name;
  }

  /**
   * Append `data` (all or the next part of tensor `name`'s elements, row-major). Tensors come in
   * header order. F32 data is written from `data` itself: don't modify it until the promise resolves.
   */
  async write(name: string, data: Float32Array): Promise<void> {
    if (this.state !== "open") throw new Error(`${this.path}: write after ${this.state}`);
    try {
      const spec = this.specs[this.index];
      if (!spec || spec.name !== name) {
        throw new Error(`${this.path}: expected data for ${spec ? JSON.stringify(spec.name) : "no more tensors"}, got ${JSON.stringify(name)}`);
      }
      const remaining = this.numels[this.index]! - this.written;
      if (data.length > remaining) throw new Error(`${this.path}: ${data.length} elements for ${name}, only ${remaining} remain`);
      if (spec.dtype === "F32" && LITTLE_ENDIAN) {
        await this.writeBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      } else {
        for (let i = 0; i < data.length; i += ENCODE_CHUNK_ELEMENTS) {
          await this.writeBytes(encodeFromFloat32(data.subarray(i, i + ENCODE_CHUNK_ELEMENTS), spec.dtype));
        }
      }
      this.written += data.length;
      this.skipEmpty();
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  private async writeBytes(bytes: Uint8Array): Promise<void> {
    let done = 0;
    while (done < bytes.byteLength) {
      const want = Math.min(READ_CHUNK_BYTES, bytes.byteLength - done);
      const { bytesWritten } = await this.fh.write(bytes, done, want, this.position + done);
      done += bytesWritten;
    }
    this.position += bytes.byteLength;
  }

  /** Check every tensor is complete, then move the file into place. */
  async finish(): Promise<void> {
    if (this.state !== "open") throw new Error(`${this.path}: finish after ${this.state}`);
    if (this.index < this.specs.length) {
      const missing = this.specs[this.index]!.name;
      await this.abort();
      throw new Error(`${this.path}: tensor ${JSON.stringify(missing)} was not fully written`);
    }
    this.state = "finished";
    try {
      await this.fh.close();
      await rename(this.tmp, this.path);
    } catch (err) {
      await rm(this.tmp, { force: true });
      throw err;
    }
  }

  /** Discard the temp file; the destination is left as it was. */
  async abort(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "aborted";
    await this.fh.close().catch(() => undefined);
    await rm(this.tmp, { force: true });
  }
}

/** Write tensors (in the given order) and optional metadata to `path`, atomically, streaming each tensor. */
export async function writeSafetensors(path: string, tensors: readonly TensorData[], metadata?: Record<string, string>): Promise<void> {
  for (const t of tensors) {
    const numel = numelOf(t.shape);
    if (t.data.length !== numel) {
      throw new TypeError(`tensor ${t.name}: ${t.data.length} values for shape ${JSON.stringify(t.shape)} (${numel})`);
    }
  }
  const w = await SafetensorsWriter.create(path, tensors, metadata);
  for (const t of tensors) if (t.data.length > 0) await w.write(t.name, t.data);
  await w.finish();
}
