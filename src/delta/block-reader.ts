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
import { SafetensorsError } from "../io/safetensors";
import type { TensorInfo, TensorSource } from "../io/types";

/** Node caps one positional read at 2 GiB. */
const READ_PIECE_BYTES = 1024 * 1024 * 1024;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A decoded block in a pooled buffer: call release() once it has been consumed. */
export interface HeldBlock {
  data: Float32Array;
  release(): void;
}

export class TensorBlockReader {
  private readonly handles = new Map<string, Promise<FileHandle>>();
  private readonly free: ArrayBuffer[] = [];
  private readonly waiting: Array<(b: ArrayBuffer) => void> = [];
  private closed = false;

  private constructor(private readonly buffers: number) {
    for (let i = 0; i < buffers; i++) this.free.push(new ArrayBuffer(0));
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

  private acquire(): Promise<ArrayBuffer> {
    if (this.closed) return Promise.reject(new Error("block reader: read after close"));
    const b = this.free.pop();
    if (b) return Promise.resolve(b);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private giveBack(b: ArrayBuffer): void {
    const next = this.waiting.shift();
    if (next) next(b);
    else this.free.push(b);
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
    let buffer = await this.acquire();
    try {
      // grow a buffer only when a larger block than any before comes along
      if (buffer.byteLength < need) buffer = new ArrayBuffer(need);
      const data = new Float32Array(buffer, 0, count);
      const raw = inPlace ? new Uint8Array(buffer, 0, 4 * count) : new Uint8Array(buffer, 4 * count, count * size);
      let done = 0;
      while (done < raw.byteLength) {
        const { bytesRead } = await fh.read(raw, done, Math.min(READ_PIECE_BYTES, raw.byteLength - done), position + done);
        if (bytesRead === 0) throw new SafetensorsError("file ended early (was it truncated while being read?)", info.file, "read", info.name);
        done += bytesRead;
      }
      if (!inPlace) decodeInto(raw, info.dtype, count, data);
      let released = false;
      const held = buffer;
      return {
        data,
        release: () => {
          if (released) return;
          released = true;
          this.giveBack(held);
        },
      };
    } catch (err) {
      this.giveBack(buffer);
      throw err;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const h of this.handles.values()) await (await h.catch(() => undefined))?.close();
    this.handles.clear();
  }
}
