/**
 * The reused-buffer machinery shared by the pooled readers (factor-reader.ts for LoRA
 * factors, block-reader.ts for full-checkpoint row blocks): a fixed set of buffers handed out
 * in turn — a reader waits while every buffer is held — and positional reads that fill a
 * buffer completely. Fresh arrays per read cost a page fault per 4 KB and GC churn, about as
 * much CPU as the copy itself; a reused buffer makes the read a plain copy.
 */
import type { FileHandle } from "node:fs/promises";
import { SafetensorsError } from "../io/safetensors";

/** Node caps one positional read at 2 GiB. */
const READ_PIECE_BYTES = 1024 * 1024 * 1024;

export const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Read exactly `target.byteLength` bytes at `position`; a short file is a SafetensorsError. */
export async function readFully(fh: FileHandle, target: Uint8Array, position: number, file: string, tensor?: string): Promise<void> {
  let done = 0;
  while (done < target.byteLength) {
    const want = Math.min(READ_PIECE_BYTES, target.byteLength - done);
    const { bytesRead } = await fh.read(target, done, want, position + done);
    if (bytesRead === 0) throw new SafetensorsError("file ended early (was it truncated while being read?)", file, "read", tensor);
    done += bytesRead;
  }
}

/** A value living in a pooled buffer: call release() once nothing reads it any more (idempotent). */
export interface Held<T> {
  value: T;
  release(): void;
}

export class BufferPool {
  private readonly free: ArrayBuffer[];
  private readonly waiting: Array<(b: ArrayBuffer) => void> = [];
  private closed = false;

  /** @param what names the reader in the "read after close" error */
  constructor(
    buffers: ArrayBuffer[],
    private readonly what: string,
  ) {
    this.free = [...buffers];
  }

  private acquire(): Promise<ArrayBuffer> {
    if (this.closed) return Promise.reject(new Error(`${this.what}: read after close`));
    const b = this.free.pop();
    if (b) return Promise.resolve(b);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private giveBack(b: ArrayBuffer): void {
    const next = this.waiting.shift();
    if (next) next(b);
    else this.free.push(b);
  }

  /**
   * Lend a buffer to `fill`, which may swap it for a larger one (returned as `buffer`); the
   * buffer comes back to the pool on release(), or at once when `fill` throws.
   */
  async lend<T>(fill: (buffer: ArrayBuffer) => Promise<{ value: T; buffer: ArrayBuffer }>): Promise<Held<T>> {
    let buffer = await this.acquire();
    try {
      const filled = await fill(buffer);
      buffer = filled.buffer;
      let released = false;
      const held = buffer;
      return {
        value: filled.value,
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

  close(): void {
    this.closed = true;
  }
}
