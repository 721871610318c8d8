/**
 * A minimal ONNX ModelProto encoder, written against onnx/onnx.proto (IR version 10).
 * It encodes only what delta-audit's graphs use: nodes, attributes, typed inputs/outputs
 * with symbolic dims, and initializers as raw little-endian data.
 *
 * Field numbers are the ones in onnx.proto; see the comments on each message.
 */

/** ONNX TensorProto.DataType codes (onnx.proto). */
export const OnnxType = Object.freeze({
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  BFLOAT16: 16,
} as const);
export type OnnxTypeCode = (typeof OnnxType)[keyof typeof OnnxType];

/** A dimension: a fixed size, or a symbolic name bound at run time. */
export type Dim = number | string;

export type AttrValue =
  | { kind: "int"; value: number }
  | { kind: "float"; value: number }
  | { kind: "string"; value: string }
  | { kind: "ints"; value: readonly number[] }
  | { kind: "floats"; value: readonly number[] }
  | { kind: "tensor"; value: OnnxTensor }
  | { kind: "graph"; value: OnnxGraph };

export interface OnnxNode {
  op: string;
  inputs: readonly string[];
  outputs: readonly string[];
  name?: string;
  domain?: string;
  attrs?: Record<string, AttrValue | number | string | readonly number[]>;
}

export interface OnnxValueInfo {
  name: string;
  type: OnnxTypeCode;
  /** undefined = rank unknown */
  shape?: readonly Dim[];
}

export interface OnnxTensor {
  name: string;
  type: OnnxTypeCode;
  dims: readonly number[];
  /** raw little-endian bytes, as TensorProto.raw_data (ignored when `external` is set) */
  data: Uint8Array;
  /**
   * Keep the bytes out of the protobuf (which cannot exceed 2 GB): they live in an external
   * data file — on disk next to the model, or supplied in memory through ORT's
   * SessionOptions.externalData under the same `location`.
   */
  external?: { location: string; offset?: number; length?: number };
}

export interface OnnxGraph {
  name: string;
  nodes: readonly OnnxNode[];
  inputs: readonly OnnxValueInfo[];
  outputs: readonly OnnxValueInfo[];
  initializers?: readonly OnnxTensor[];
}

export interface OnnxModel {
  graph: OnnxGraph;
  /** domain → version; "" is the default ONNX domain */
  opsets: Record<string, number>;
  irVersion?: number;
  producer?: string;
}

/** Protobuf wire-format writer: varints, length-delimited fields, fixed32. */
class PbWriter {
  private chunks: Uint8Array[] = [];
  private buf = new Uint8Array(256);
  private pos = 0;

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.flush();
    if (n > this.buf.length) this.buf = new Uint8Array(Math.max(n, this.buf.length * 2));
  }
  private flush(): void {
    if (this.pos > 0) this.chunks.push(this.buf.slice(0, this.pos));
    this.pos = 0;
  }
  varint(v: number | bigint): void {
    // int64 fields: negative numbers are encoded as 10-byte two's complement
    let x = BigInt.asUintN(64, BigInt(v));
    this.ensure(10);
    while (x >= 0x80n) {
      this.buf[this.pos++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.buf[this.pos++] = Number(x);
  }
  tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number): void {
    this.tag(field, 0);
    this.varint(v);
  }
  float(field: number, v: number): void {
    this.tag(field, 5);
    this.ensure(4);
    new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4).setFloat32(0, v, true);
    this.pos += 4;
  }
  bytes(field: number, data: Uint8Array): void {
    this.tag(field, 2);
    this.varint(data.length);
    this.flush();
    this.chunks.push(data);
  }
  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }
  message(field: number, build: (w: PbWriter) => void): void {
    const inner = new PbWriter();
    build(inner);
    this.bytes(field, inner.finish());
  }
  finish(): Uint8Array {
    this.flush();
    let total = 0;
    for (const c of this.chunks) total += c.length;
    const out = new Uint8Array(total);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.length;
    }
    this.chunks = [out];
    return out;
  }
}

// TensorProto: dims=1, data_type=2, name=8, raw_data=9, external_data=13, data_location=14
// (StringStringEntryProto: key=1, value=2; DataLocation EXTERNAL=1)
function writeTensor(w: PbWriter, t: OnnxTensor): void {
  for (const d of t.dims) w.int(1, d);
  w.int(2, t.type);
  w.string(8, t.name);
  if (!t.external) {
    w.bytes(9, t.data);
    return;
  }
  const entries: [string, string][] = [["location", t.external.location]];
  if (t.external.offset !== undefined) entries.push(["offset", String(t.external.offset)]);
  if (t.external.length !== undefined) entries.push(["length", String(t.external.length)]);
  for (const [k, v] of entries) {
    w.message(13, (e) => {
      e.string(1, k);
      e.string(2, v);
    });
  }
  w.int(14, 1);
}

// ValueInfoProto: name=1, type=2; TypeProto.tensor_type=1; Tensor: elem_type=1, shape=2;
// TensorShapeProto.dim=1; Dimension: dim_value=1, dim_param=2
function writeValueInfo(w: PbWriter, v: OnnxValueInfo): void {
  w.string(1, v.name);
  w.message(2, (tp) =>
    tp.message(1, (tt) => {
      tt.int(1, v.type);
      if (v.shape) {
        tt.message(2, (sh) => {
          for (const d of v.shape!) {
            sh.message(1, (dim) => (typeof d === "number" ? dim.int(1, d) : dim.string(2, d)));
          }
        });
      }
    }),
  );
}

function normaliseAttr(v: AttrValue | number | string | readonly number[]): AttrValue {
  if (typeof v === "number") return Number.isInteger(v) ? { kind: "int", value: v } : { kind: "float", value: v };
  if (typeof v === "string") return { kind: "string", value: v };
  if (Array.isArray(v)) return { kind: "ints", value: v as readonly number[] };
  return v as AttrValue;
}

// AttributeProto: name=1, f=2, i=3, s=4, t=5, g=6, floats=7, ints=8, type=20
// AttributeType: FLOAT=1 INT=2 STRING=3 TENSOR=4 GRAPH=5 FLOATS=6 INTS=7
function writeAttr(w: PbWriter, name: string, raw: AttrValue | number | string | readonly number[]): void {
  const a = normaliseAttr(raw);
  w.string(1, name);
  switch (a.kind) {
    case "float":
      w.float(2, a.value);
      w.int(20, 1);
      break;
    case "int":
      w.int(3, a.value);
      w.int(20, 2);
      break;
    case "string":
      w.string(4, a.value);
      w.int(20, 3);
      break;
    case "tensor":
      w.message(5, (t) => writeTensor(t, a.value));
      w.int(20, 4);
      break;
    case "graph":
      w.message(6, (g) => writeGraph(g, a.value));
      w.int(20, 5);
      break;
    case "floats":
      for (const f of a.value) w.float(7, f);
      w.int(20, 6);
      break;
    case "ints":
      for (const i of a.value) w.int(8, i);
      w.int(20, 7);
      break;
  }
}

// NodeProto: input=1, output=2, name=3, op_type=4, attribute=5, domain=7
function writeNode(w: PbWriter, n: OnnxNode): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  if (n.name) w.string(3, n.name);
  w.string(4, n.op);
  for (const [k, v] of Object.entries(n.attrs ?? {})) w.message(5, (a) => writeAttr(a, k, v));
  if (n.domain) w.string(7, n.domain);
}

// GraphProto: node=1, name=2, initializer=5, input=11, output=12
function writeGraph(w: PbWriter, g: OnnxGraph): void {
  for (const n of g.nodes) w.message(1, (nw) => writeNode(nw, n));
  w.string(2, g.name);
  for (const t of g.initializers ?? []) w.message(5, (tw) => writeTensor(tw, t));
  for (const i of g.inputs) w.message(11, (vw) => writeValueInfo(vw, i));
  for (const o of g.outputs) w.message(12, (vw) => writeValueInfo(vw, o));
}

/** Encode a ModelProto: ir_version=1, producer_name=2, graph=7, opset_import=8. */
export function encodeModel(m: OnnxModel): Uint8Array {
  const w = new PbWriter();
  w.int(1, m.irVersion ?? 10);
  w.string(2, m.producer ?? "delta-audit");
  w.message(7, (g) => writeGraph(g, m.graph));
  for (const [domain, version] of Object.entries(m.opsets)) {
    // OperatorSetIdProto: domain=1, version=2
    w.message(8, (o) => {
      if (domain) o.string(1, domain);
      o.int(2, version);
    });
  }
  return w.finish();
}

/** A float32 / int64 tensor constant as raw bytes, for initializers and Constant nodes. */
export function floatTensor(name: string, dims: readonly number[], values: ArrayLike<number>): OnnxTensor {
  const f = Float32Array.from(values);
  return { name, type: OnnxType.FLOAT, dims, data: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) };
}
export function int64Tensor(name: string, dims: readonly number[], values: ArrayLike<number>): OnnxTensor {
  const a = BigInt64Array.from(Array.from(values, (v) => BigInt(v)));
  return { name, type: OnnxType.INT64, dims, data: new Uint8Array(a.buffer, a.byteOffset, a.byteLength) };
}
