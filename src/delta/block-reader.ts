/**
 * Row blocks of checkpoint tensors read into a small pool of reused buffers, for the streaming
 * passes of full fine-tune spectra (ΔW = W_ft − W_base block by block). Fresh arrays per block
 * cost a page fault per 4 KB and GC churn, about as much CPU as the copy itself (see
 * factor-reader.ts for the measurement); reused buffers make the read a plain copy.
 *
 * Offsets come from io's validated headers (TensorInfo.file / offset); sources without them,
 * or files that cannot be opened, make `open` return undefined and callers use readRows.
 */
import { open, type FileHandle } from "node:fs/promises";
import { DTYPE_BYTES, decodeInto } from "../io/dtype";
import type { TensorInfo, TensorSource } from "../io/types";
import { BufferPool, LITTLE_ENDIAN, readFully } from "./buffer-pool";

/** A decoded block in a pooled buffer: call release() once it has been consumed. */
export interface HeldBlock {
  data: Float32Array;
  release(): void;
}

export class TensorBlockReader {
  private readonly handles = new Map<string, Promise<FileHandle>>();
  // buffers start empty and grow to the largest block asked for
  private readonly pool: BufferPool;
  private closed = false;

  private constructor(buffers: number) {
    this.pool = new BufferPool(Array.from({ length: buffers }, () => new ArrayBuffer(0)), "block reader");
  }

  /** A reader holding at most `buffers` blocks at once, when every source gives file offsets. */
  static open(sources: readonly TensorSource[], buffers: number): TensorBlockReader | undefined {
    for (const s of sources) {
      const first = s.names()[0];
      const info = first === undefined ? undefined : s.info(first);
      if (!info || typeof info.file !== "string" || !Number.isSafeInteger(info.offset)) return undefined;
    }
    return new TensorBlockReader(Math.max(1, buffers));
  }

  private handle(file: string): Promise<FileHandle> {
    let h = this.handles.get(file);
    if (!h) {
      h = open(file, "r");
      h.catch(() => this.handles.delete(file));
      this.handles.set(file, h);
    }
    return h;
  }

  /** Rows [rowStart, rowStart + rowCount) of the tensor, decoded to float32. */
  async readRows(info: TensorInfo, rowStart: number, rowCount: number): Promise<HeldBlock> {
    const rows = info.shape.length === 0 ? 1 : info.shape[0]!;
    if (!Number.isSafeInteger(rowStart) || !Number.isSafeInteger(rowCount) || rowStart < 0 || rowCount < 0 || rowStart + rowCount > rows) {
      throw new RangeError(`${info.file}: rows [${rowStart}, ${rowStart + rowCount}) outside tensor ${info.name} with ${rows} rows`);
    }
    const size = DTYPE_BYTES[info.dtype];
    const numel = info.byteLength / size;
    const perRow = rows === 0 ? 0 : numel / rows;
    const count = rowCount * perRow;
    const position = info.offset + rowStart * perRow * size;
    const inPlace = info.dtype === "F32" && LITTLE_ENDIAN && position % 4 === 0;
    const need = 4 * count + (inPlace ? 0 : count * size);
    const fh = await this.handle(info.file);
    const held = await this.pool.lend(async (buffer) => {
      // grow a buffer only when a larger block than any before comes along
      if (buffer.byteLength < need) buffer = new ArrayBuffer(need);
      const data = new Float32Array(buffer, 0, count);
      const raw = inPlace ? new Uint8Array(buffer, 0, 4 * count) : new Uint8Array(buffer, 4 * count, count * size);
      await readFully(fh, raw, position, info.file, info.name);
      if (!inPlace) decodeInto(raw, info.dtype, count, data);
      return { value: data, buffer };
    });
    return { data: held.value, release: held.release };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pool.close();
    for (const h of this.handles.values()) await (await h.catch(() => undefined))?.close();
    this.handles.clear();
  }
}
