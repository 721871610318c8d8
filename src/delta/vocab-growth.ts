/**
 * Full fine-tunes that add tokens (special or chat tokens: `resize_token_embeddings` grows
 * embed_tokens and lm_head by the same rows, and config.json's vocab_size with them). Such a
 * fine-tune is audited, not refused:
 * - ΔW (and the other-changes norms) cover the rows shared with the base, [0, baseRows): the
 *   walk reads the fine-tune through `sharedRows`, a view cut to the base's shapes;
 * - the added rows [baseRows, rows) have no base counterpart, so there is no difference to
 *   measure or truncate: they are carried as they are. The engine runs every variant (base,
 *   full, rank-k) on the fine-tune's vocabulary, the base padded with the fine-tune's rows
 *   (`withAddedRows`), and the rank-k adapter folder holds them in ADDED_ROWS_FILE next to the
 *   LoRA factors, with the fine-tune's tokenizer files (`writeAddedRows`, `openAddedRows`).
 *
 * ADDED_ROWS_FILE is a plain safetensors file: each grown tensor under the fine-tune's own
 * name, only its added rows ([rows − baseRows, …], the fine-tune's dtype, bytes copied
 * verbatim), and `__metadata__` {format, first_row: baseRows, vocab_size: rows}. PEFT ignores
 * files it does not know, so the adapter still loads as a LoRA over the base; a consumer who
 * wants the added tokens resizes the base's embeddings to vocab_size and copies these rows in
 * (README, "How it works"). A file of full rows would repeat the base's shared rows, which the
 * consumer already has.
 */
import { open, readdir, realpath, rename, rmdir, writeFile } from "node:fs/promises";
import { basename, dirname, join, sep } from "node:path";
import { InputError } from "../errors";
import { isVocabularyTensor, MAX_JSON_BYTES } from "../io/checkpoint";
import { encodeFromFloat32 } from "../io/dtype";
import { pathExists } from "../io/fs-util";
import { parseJsonText, readTextFile } from "../io/read-text";
import { buildSafetensorsHeader, SafetensorsFile, type TensorSpec } from "../io/safetensors";
import type { Checkpoint, TensorInfo, TensorSource } from "../io/types";
import { readFully } from "./buffer-pool";
import type { VocabularyGrowth } from "./types";

/** The added rows of a rank-k adapter cut from a fine-tune that added tokens. */
export const ADDED_ROWS_FILE = "added_token_rows.safetensors";
/** `__metadata__.format` of ADDED_ROWS_FILE. */
export const ADDED_ROWS_FORMAT = "delta-audit added-token rows v1";

/**
 * Tokenizer files a rank-k folder carries from such a fine-tune: its added ids mean nothing to
 * the base's tokenizer. Read bounded (MAX_JSON_BYTES) and copied verbatim; config.json is not
 * copied (a folder with one reads as a model, not an adapter).
 */
export const TOKENIZER_FILES = Object.freeze(["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]);

/** Bytes copied per read when the added rows are copied verbatim. */
const COPY_CHUNK_BYTES = 16 * 1024 * 1024;

type Rows = { rows: number; cols: number };

function matrixRows(info: TensorInfo | undefined): Rows | undefined {
  return info && info.shape.length === 2 ? { rows: info.shape[0]!, cols: info.shape[1]! } : undefined;
}

/**
 * The fine-tune's added vocabulary rows, or undefined when no vocabulary tensor grew. Every
 * vocabulary tensor the two share must grow from the same rows to the same rows (as
 * resize_token_embeddings does), and config.json's vocab_size, when given, must be the new
 * size: a fine-tune whose files disagree is refused, naming them. Other shape differences are
 * left to checkPairing, which refuses them as before.
 */
export function vocabularyGrowth(base: TensorSource, ft: Checkpoint): VocabularyGrowth | undefined {
  const shared = ft.names().filter((n) => isVocabularyTensor(n) && base.info(n));
  const grown = shared.filter((n) => {
    const b = matrixRows(base.info(n));
    const f = matrixRows(ft.info(n));
    return b && f && b.cols === f.cols && f.rows > b.rows;
  });
  if (grown.length === 0) return undefined;
  const first = grown[0]!;
  const baseRows = base.info(first)!.shape[0]!;
  const rows = ft.info(first)!.shape[0]!;
  for (const n of shared) {
    const b = base.info(n)!.shape;
    const f = ft.info(n)!.shape;
    if (b[0] !== baseRows || f[0] !== rows) {
      throw new InputError(
        `tensor ${JSON.stringify(n)} has ${f[0]} rows against the base's ${b[0]}, but ${JSON.stringify(first)} grows from ${baseRows} to ${rows}: a fine-tune that adds tokens grows every vocabulary matrix alike`,
        ft.dir,
      );
    }
  }
  const declared = ft.config.vocab_size;
  if (declared !== undefined && declared !== rows) {
    throw new InputError(`vocab_size ${JSON.stringify(declared)} disagrees with the ${rows} rows of ${JSON.stringify(first)}`, join(ft.dir, "config.json"));
  }
  return { baseRows, rows, tensors: grown };
}

/**
 * Rows [r0, r0 + n) of a tensor: streamed where the source can, else cut from a whole read.
 */
async function rowsOf(src: TensorSource, name: string, r0: number, n: number): Promise<Float32Array> {
  if (src.readRows) return src.readRows(name, r0, n);
  const info = src.info(name);
  if (!info) throw new InputError(`no tensor named ${JSON.stringify(name)}`);
  const all = await src.read(name);
  const per = all.length / info.shape[0]!;
  return all.slice(r0 * per, (r0 + n) * per);
}

function checkRange(name: string, r0: number, n: number, rows: number): void {
  if (!Number.isSafeInteger(r0) || !Number.isSafeInteger(n) || r0 < 0 || n < 0 || r0 + n > rows) {
    throw new RangeError(`rows [${r0}, ${r0 + n}) outside tensor ${name} with ${rows} rows`);
  }
}

/**
 * The fine-tune seen with the base's shapes: each grown tensor cut to its first baseRows rows
 * (a prefix of its bytes, so `info` still describes a byte range and the walk's block reader
 * reads it in place). Everything else reads through.
 */
export function sharedRows(ft: Checkpoint, growth: VocabularyGrowth): Checkpoint {
  const grown = new Set(growth.tensors);
  const { baseRows } = growth;
  const info = (n: string): TensorInfo | undefined => {
    const i = ft.info(n);
    if (!i || !grown.has(n)) return i;
    return { ...i, shape: [baseRows, ...i.shape.slice(1)], byteLength: (i.byteLength / i.shape[0]!) * baseRows };
  };
  return {
    dir: ft.dir,
    config: ft.config,
    names: () => ft.names(),
    info,
    read: (n) => (grown.has(n) ? rowsOf(ft, n, 0, baseRows) : ft.read(n)),
    readRows: (n, r0, count) => {
      if (grown.has(n)) checkRange(n, r0, count, baseRows);
      return rowsOf(ft, n, r0, count);
    },
    close: () => ft.close(),
  };
}

/** Where the added rows come from: `source`'s row `firstRow` is the padded tensor's row baseRows. */
export interface AddedRows {
  /** holds every name of `tensors` (closed with the view) */
  source: TensorSource;
  firstRow: number;
  baseRows: number;
  rows: number;
  /** the padded tensors, named as `base` names them */
  tensors: readonly string[];
}

/**
 * The base with its vocabulary tensors padded to the fine-tune's rows: rows below baseRows read
 * from the base, the rest from `added`. For readers that go through read/readRows (the
 * engine): a padded tensor's `info` gives its shape, but its bytes are no single range of one
 * file. close() closes both sources.
 */
export function withAddedRows<T extends TensorSource>(base: T, added: AddedRows): T {
  const padded = new Set(added.tensors);
  const { baseRows, rows, firstRow, source } = added;
  const readRows = async (n: string, r0: number, count: number): Promise<Float32Array> => {
    if (!padded.has(n)) return rowsOf(base, n, r0, count);
    checkRange(n, r0, count, rows);
    const own = Math.max(0, Math.min(count, baseRows - r0));
    const from = Math.max(r0, baseRows);
    const [head, tail] = await Promise.all([
      own > 0 ? rowsOf(base, n, r0, own) : undefined,
      r0 + count > baseRows ? rowsOf(source, n, firstRow + from - baseRows, r0 + count - from) : undefined,
    ]);
    if (!head) return tail!;
    if (!tail) return head;
    const out = new Float32Array(head.length + tail.length);
    out.set(head);
    out.set(tail, head.length);
    return out;
  };
  const view: TensorSource & Partial<Checkpoint> = {
    names: () => base.names(),
    info: (n) => {
      const i = base.info(n);
      if (!i || !padded.has(n)) return i;
      return { ...i, shape: [rows, ...i.shape.slice(1)], byteLength: (i.byteLength / i.shape[0]!) * rows };
    },
    read: (n) => (padded.has(n) ? readRows(n, 0, rows) : base.read(n)),
    readRows,
    close: async () => {
      await Promise.all([base.close(), source.close()]);
    },
  };
  const ck = base as unknown as Partial<Checkpoint>;
  if (ck.dir !== undefined) view.dir = ck.dir;
  if (ck.config !== undefined) view.config = ck.config;
  return view as T;
}

/**
 * Copy the added rows of each grown tensor into `dir`/ADDED_ROWS_FILE, bytes as they are (the
 * fine-tune's dtype: bit-exact), streamed in chunks. A source tensor not backed by a file
 * range is decoded and re-encoded in its dtype (exact for F32, F16 and BF16).
 */
export async function writeAddedRows(dir: string, ft: Checkpoint, growth: VocabularyGrowth): Promise<void> {
  const added = growth.rows - growth.baseRows;
  const infos = growth.tensors.map((n) => ft.info(n)!);
  const specs: TensorSpec[] = infos.map((i) => ({ name: i.name, dtype: i.dtype, shape: [added, ...i.shape.slice(1)] }));
  const metadata = { format: ADDED_ROWS_FORMAT, first_row: String(growth.baseRows), vocab_size: String(growth.rows) };
  const { prefix } = buildSafetensorsHeader(specs, metadata);
  const path = join(dir, ADDED_ROWS_FILE);
  const out = await open(path, "wx");
  try {
    let at = 0;
    const put = async (bytes: Uint8Array) => {
      for (let done = 0; done < bytes.byteLength; ) {
        const { bytesWritten } = await out.write(bytes, done, bytes.byteLength - done, at + done);
        done += bytesWritten;
      }
      at += bytes.byteLength;
    };
    await put(prefix);
    for (const info of infos) {
      const rowBytes = info.byteLength / info.shape[0]!;
      const start = info.offset + growth.baseRows * rowBytes;
      const length = added * rowBytes;
      if (typeof info.file === "string" && Number.isSafeInteger(info.offset)) {
        const src = await open(info.file, "r");
        try {
          const buf = new Uint8Array(Math.min(COPY_CHUNK_BYTES, Math.max(1, length)));
          for (let done = 0; done < length; ) {
            const n = Math.min(buf.byteLength, length - done);
            await readFully(src, buf.subarray(0, n), start + done, info.file, info.name);
            await put(buf.subarray(0, n));
            done += n;
          }
        } finally {
          await src.close();
        }
      } else {
        await put(encodeFromFloat32(await rowsOf(ft, info.name, growth.baseRows, added), info.dtype));
      }
    }
  } finally {
    await out.close();
  }
}

/** Whether `path` is `dir` or inside it (both real paths). */
const inside = (path: string, dir: string) => path === dir || path.startsWith(dir.endsWith(sep) ? dir : dir + sep);

/**
 * Where a model folder's files may really live: the folder, and for a Hugging Face cache
 * snapshot (`…/snapshots/<revision>`, whose files are links into the repository's `blobs/`) that
 * repository's blobs.
 */
function allowedRoots(realDir: string): string[] {
  const roots = [realDir];
  if (basename(dirname(realDir)) === "snapshots") roots.push(join(dirname(dirname(realDir)), "blobs"));
  return roots;
}

/**
 * Copy the tokenizer files `from` holds (TOKENIZER_FILES) into `to`, each read bounded, checked
 * to be JSON and written new. The copy ends up in an output that may be published (a scan's
 * rank1-adapter/), so a file that is a link out of the model folder (or, for a Hub snapshot, out
 * of its blobs) is refused: a fine-tune from a pull request must not have the audit copy
 * another file of the machine.
 */
export async function copyTokenizerFiles(from: string, to: string): Promise<string[]> {
  const copied: string[] = [];
  const roots = allowedRoots(await realpath(from));
  for (const name of TOKENIZER_FILES) {
    const path = join(from, name);
    if (!(await pathExists(path))) continue;
    const real = await realpath(path);
    if (!roots.some((r) => inside(real, r))) throw new InputError("is a link to a file outside the model folder; only the folder's own tokenizer files are copied", path);
    const text = await readTextFile(path, MAX_JSON_BYTES);
    parseJsonText(text, path);
    await writeFile(join(to, name), text, { flag: "wx" });
    copied.push(name);
  }
  return copied;
}

/**
 * Move every entry of folder `inner` up into its parent `outer` and remove `inner`: the rank-k
 * writer builds its PEFT adapter atomically in a sub-folder of the staging folder it then fills
 * with the added rows.
 */
export async function hoistFolder(inner: string, outer: string): Promise<void> {
  for (const e of await readdir(inner)) await rename(join(inner, e), join(outer, e));
  await rmdir(inner);
}

function metadataInt(file: SafetensorsFile, key: string): number {
  const raw = file.metadata[key];
  const v = raw !== undefined && /^\d{1,15}$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(v)) throw new InputError(`__metadata__.${key} is ${JSON.stringify(raw)}, expected a row count`, file.path);
  return v;
}

/** ADDED_ROWS_FILE opened and checked on its own: its format, row counts and vocabulary tensors. */
async function openRowsFile(path: string): Promise<{ file: SafetensorsFile; growth: VocabularyGrowth }> {
  const file = await SafetensorsFile.open(path);
  try {
    if (file.metadata.format !== ADDED_ROWS_FORMAT) {
      throw new InputError(`__metadata__.format is ${JSON.stringify(file.metadata.format ?? null)}, expected ${JSON.stringify(ADDED_ROWS_FORMAT)}`, path);
    }
    const baseRows = metadataInt(file, "first_row");
    const rows = metadataInt(file, "vocab_size");
    if (rows <= baseRows) throw new InputError(`vocab_size ${rows} is not above first_row ${baseRows}`, path);
    const tensors = file.names();
    if (tensors.length === 0) throw new InputError("holds no rows", path);
    for (const n of tensors) {
      const shape = file.info(n)!.shape;
      if (!isVocabularyTensor(n) || shape.length !== 2 || shape[0] !== rows - baseRows) {
        throw new InputError(`tensor ${JSON.stringify(n)} ${JSON.stringify(shape)} is not the ${rows - baseRows} added rows of a vocabulary matrix`, path);
      }
    }
    return { file, growth: { baseRows, rows, tensors } };
  } catch (err) {
    await file.close().catch(() => undefined);
    throw err;
  }
}

/** The added rows an adapter folder holds (ADDED_ROWS_FILE, checked on its own), or undefined. */
export async function addedRowsIn(dir: string): Promise<VocabularyGrowth | undefined> {
  const path = join(dir, ADDED_ROWS_FILE);
  if (!(await pathExists(path))) return undefined;
  const { file, growth } = await openRowsFile(path);
  await file.close();
  return growth;
}

/**
 * The added rows of an adapter folder (ADDED_ROWS_FILE), checked against the base it extends,
 * or undefined when the folder has none. `nameOf` maps a stored tensor name to the name `base`
 * uses. Each tensor must extend a vocabulary matrix of the base: [vocab_size − first_row, cols]
 * against the base's [first_row, cols]. The caller owns (and closes) `source`.
 */
export async function openAddedRows(dir: string, base: TensorSource, nameOf: (file: TensorSource, name: string) => string = (_f, n) => n): Promise<AddedRows | undefined> {
  const path = join(dir, ADDED_ROWS_FILE);
  if (!(await pathExists(path))) return undefined;
  const { file, growth } = await openRowsFile(path);
  try {
    const tensors = growth.tensors.map((stored) => {
      const name = nameOf(file, stored);
      const cols = file.info(stored)!.shape[1]!;
      const b = matrixRows(base.info(name));
      if (!b || b.rows !== growth.baseRows || b.cols !== cols) {
        throw new InputError(
          `tensor ${JSON.stringify(stored)} extends [${growth.baseRows}, ${cols}], but the base has ${b ? `[${b.rows}, ${b.cols}]` : `no ${name}`}: these rows were cut from a fine-tune of another model`,
          path,
        );
      }
      return name;
    });
    return { source: renamed(file, nameOf), firstRow: 0, baseRows: growth.baseRows, rows: growth.rows, tensors };
  } catch (err) {
    await file.close().catch(() => undefined);
    throw err;
  }
}

/** `file` with each tensor seen under nameOf(file, stored). */
function renamed(file: SafetensorsFile, nameOf: (file: TensorSource, name: string) => string): TensorSource {
  const byName = new Map(file.names().map((n) => [nameOf(file, n), n] as const));
  const must = (n: string) => byName.get(n) ?? `\u0000${n}`;
  return {
    names: () => [...byName.keys()],
    info: (n) => {
      const s = byName.get(n);
      return s === undefined ? undefined : file.info(s);
    },
    read: (n) => file.read(must(n)),
    readRows: (n, r0, count) => file.readRows(must(n), r0, count),
    close: () => file.close(),
  };
}
