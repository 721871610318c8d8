/**
 * ORT-backed dense kernels: matmul, Gram (XᵀX), products with a transposed operand, batched
 * products. The heavy, tall products of the spectrum and truncation code run here, in ONNX
 * Runtime's GEMM, not in JavaScript loops.
 *
 * Each kernel is a one-node graph with symbolic dims, so one session serves every shape and
 * sessions are cached per graph pattern (op + attributes + dtype) for the life of the process.
 */
import { createSession, ort } from "./ort";
import { OnnxType, type OnnxNode, type OnnxTypeCode } from "./onnx-proto";

/** Opset of the kernel graphs: Gemm with optional C (11+) and MatMul batching are stable there. */
const KERNEL_OPSET = 17;

type Precision = "float32" | "float64";
type Pattern = "matmul" | "gemm" | "gram" | "gram64";

interface Kernel {
  session: ort.InferenceSession;
}

const cache = new Map<string, Promise<Kernel>>();

/**
 * ORT's intra-op threads spin while waiting for work by default. Kernel calls are short and
 * interleaved with reads and JavaScript on the same few cores, so spinning threads only take
 * CPU from that other work: off unless asked (DELTA_AUDIT_ORT_SPIN=1, read by the CLI, for A/B
 * measurements). Intra-op threads: ORT's default (one per core) unless set
 * (DELTA_AUDIT_ORT_THREADS=N). On a loaded 2-core machine N=1 measured ≈ 20% less CPU for the
 * 70B-shaped spectrum (no waiting on a descheduled partner thread); on an idle one two threads
 * finish the Grams sooner.
 */
export interface KernelSettings {
  spinning: boolean;
  /** undefined = ORT's default */
  threads?: number;
}

const kernelSession: KernelSettings = { spinning: false, threads: undefined };

/**
 * Set by the edge (edge.ts, for the CLI and the Action) before the first kernel runs; sessions already built keep the
 * settings they were built with.
 */
export function configureKernels(settings: Partial<KernelSettings>): void {
  if (settings.spinning !== undefined) kernelSession.spinning = settings.spinning;
  if ("threads" in settings) kernelSession.threads = settings.threads;
}

function onnxType(p: Precision): OnnxTypeCode {
  return p === "float64" ? OnnxType.DOUBLE : OnnxType.FLOAT;
}

async function buildKernel(pattern: Pattern, transA: boolean, transB: boolean, precision: Precision, batched: boolean): Promise<Kernel> {
  const t = onnxType(precision);
  let node: OnnxNode;
  let inputs: { name: string; type: OnnxTypeCode; shape: string[] }[];
  if (pattern === "matmul") {
    const lead = batched ? ["b"] : [];
    node = { op: "MatMul", inputs: ["X", "Y"], outputs: ["Z"] };
    inputs = [
      { name: "X", type: t, shape: [...lead, "m", "k"] },
      { name: "Y", type: t, shape: [...lead, "k", "n"] },
    ];
  } else if (pattern === "gram") {
    // Gemm reads X transposed in place (no copy of the tall operand)
    node = { op: "Gemm", inputs: ["X", "X"], outputs: ["Z"], attrs: { transA: 1 } };
    inputs = [{ name: "X", type: t, shape: ["m", "n"] }];
  } else if (pattern === "gram64") {
    // float32 in, float64 out: products of float32 values are exact in float64, so the Gram
    // carries no accumulation error worth speaking of (see gram64 below)
    const cast: OnnxNode = { op: "Cast", inputs: ["X"], outputs: ["X64"], attrs: { to: OnnxType.DOUBLE } };
    const g: OnnxNode = {
      op: "Gemm",
      inputs: ["X64", "X64"],
      outputs: ["Z"],
      attrs: { transA: transA ? 1 : 0, transB: transB ? 1 : 0 },
    };
    const session = await createSession(
      {
        graph: {
          name: "kernel_gram64",
          nodes: [cast, g],
          inputs: [{ name: "X", type: OnnxType.FLOAT, shape: ["m", "n"] }],
          outputs: [{ name: "Z", type: OnnxType.DOUBLE }],
        },
        opsets: { "": KERNEL_OPSET },
      },
      kernelSession,
    );
    return { session };
  } else {
    node = { op: "Gemm", inputs: ["X", "Y"], outputs: ["Z"], attrs: { transA: transA ? 1 : 0, transB: transB ? 1 : 0 } };
    inputs = [
      { name: "X", type: t, shape: transA ? ["k", "m"] : ["m", "k"] },
      { name: "Y", type: t, shape: transB ? ["n", "k"] : ["k", "n"] },
    ];
  }
  const session = await createSession(
    { graph: { name: `kernel_${pattern}`, nodes: [node], inputs, outputs: [{ name: "Z", type: t }] }, opsets: { "": KERNEL_OPSET } },
    kernelSession,
  );
  return { session };
}

function kernel(pattern: Pattern, transA = false, transB = false, precision: Precision = "float32", batched = false): Promise<Kernel> {
  const key = `${pattern}:${transA ? 1 : 0}${transB ? 1 : 0}:${precision}:${batched ? "b" : ""}`;
  let k = cache.get(key);
  if (!k) {
    k = buildKernel(pattern, transA, transB, precision, batched);
    // a failed build must not poison the cache
    k.catch(() => cache.delete(key));
    cache.set(key, k);
  }
  return k;
}

type FloatArray = Float32Array | Float64Array;

function tensor(data: FloatArray, dims: number[]): ort.Tensor {
  return data instanceof Float64Array ? new ort.Tensor("float64", data, dims) : new ort.Tensor("float32", data, dims);
}

function precisionOf(a: FloatArray, b?: FloatArray): Precision {
  const p: Precision = a instanceof Float64Array ? "float64" : "float32";
  if (b && (b instanceof Float64Array ? "float64" : "float32") !== p) throw new Error("kernel operands must share one precision");
  return p;
}

function checkLength(what: string, data: FloatArray, rows: number, cols: number): void {
  if (data.length !== rows * cols) throw new Error(`${what}: expected ${rows}×${cols} = ${rows * cols} values, got ${data.length}`);
}

async function runKernel<T extends FloatArray>(k: Kernel, feeds: Record<string, ort.Tensor>): Promise<T> {
  const out = await k.session.run(feeds);
  return out.Z!.data as T;
}

/** A row-major matrix handed to the kernels. */
export interface Mat<T extends FloatArray = Float32Array> {
  data: T;
  rows: number;
  cols: number;
}

/** X·Y for X [m,k], Y [k,n] (torch.matmul). */
export async function matmul<T extends FloatArray>(x: Mat<T>, y: Mat<T>): Promise<Mat<T>> {
  if (x.cols !== y.rows) throw new Error(`matmul: inner dims differ (${x.rows}×${x.cols} · ${y.rows}×${y.cols})`);
  checkLength("matmul X", x.data, x.rows, x.cols);
  checkLength("matmul Y", y.data, y.rows, y.cols);
  const k = await kernel("matmul", false, false, precisionOf(x.data, y.data));
  const data = await runKernel<T>(k, { X: tensor(x.data, [x.rows, x.cols]), Y: tensor(y.data, [y.rows, y.cols]) });
  return { data, rows: x.rows, cols: y.cols };
}

/**
 * op(X)·op(Y) where op transposes when asked (torch.addmm / BLAS gemm semantics):
 * the transposed operand is read in place by ORT's GEMM, never copied here.
 */
export async function gemm<T extends FloatArray>(x: Mat<T>, y: Mat<T>, opts: { transA?: boolean; transB?: boolean } = {}): Promise<Mat<T>> {
  const ta = opts.transA ?? false;
  const tb = opts.transB ?? false;
  checkLength("gemm X", x.data, x.rows, x.cols);
  checkLength("gemm Y", y.data, y.rows, y.cols);
  const [m, kx] = ta ? [x.cols, x.rows] : [x.rows, x.cols];
  const [ky, n] = tb ? [y.cols, y.rows] : [y.rows, y.cols];
  if (kx !== ky) throw new Error(`gemm: inner dims differ (${m}×${kx} · ${ky}×${n})`);
  const k = await kernel("gemm", ta, tb, precisionOf(x.data, y.data));
  const data = await runKernel<T>(k, { X: tensor(x.data, [x.rows, x.cols]), Y: tensor(y.data, [y.rows, y.cols]) });
  return { data, rows: m, cols: n };
}

/** Gram matrix XᵀX [n,n] of X [m,n]. */
export async function gram<T extends FloatArray>(x: Mat<T>): Promise<Mat<T>> {
  checkLength("gram X", x.data, x.rows, x.cols);
  const k = await kernel("gram", true, false, precisionOf(x.data));
  const data = await runKernel<T>(k, { X: tensor(x.data, [x.rows, x.cols]) });
  return { data, rows: x.cols, cols: x.cols };
}

/**
 * Gram matrix of a float32 matrix, accumulated in float64: XᵀX [n,n] (side "cols") or XXᵀ
 * [m,m] (side "rows"). Squaring a matrix squares its condition number, so a float32 Gram
 * would lose the small singular values; in float64 the Gram of float32 data is accurate to
 * ~1e-16·‖X‖², which keeps singular values accurate to ~1e-8·σ₁.
 */
export async function gram64(x: Mat<Float32Array>, side: "cols" | "rows" = "cols"): Promise<Mat<Float64Array>> {
  checkLength("gram64 X", x.data, x.rows, x.cols);
  const k = side === "cols" ? await kernel("gram64", true, false) : await kernel("gram64", false, true);
  const data = await runKernel<Float64Array>(k, { X: tensor(x.data, [x.rows, x.cols]) });
  const n = side === "cols" ? x.cols : x.rows;
  return { data, rows: n, cols: n };
}

/**
 * A LoRA A factor's Gram A·Aᵀ is computed in row halves (A₁A₁ᵀ, A₁A₂ᵀ, A₂A₂ᵀ, the fourth block
 * by symmetry) from this rank up: the halves are contiguous rows, so this saves a quarter of
 * the flops without copying (measured ≈ 15% less CPU per Gram at 64×8192 and 64×28672).
 * Below it the smaller products lose more to overhead than they save.
 */
export const SPLIT_GRAM_MIN_RANK = 16;

let pairKernel: Promise<Kernel> | undefined;

function loraGramKernel(): Promise<Kernel> {
  if (pairKernel) return pairKernel;
  const t = OnnxType.FLOAT;
  // GB = BᵀB (Gemm reads B transposed in place); GA from the two row halves of A
  const nodes: OnnxNode[] = [
    { op: "Gemm", inputs: ["B", "B"], outputs: ["GB"], attrs: { transA: 1 } },
    { op: "Gemm", inputs: ["A1", "A1"], outputs: ["G11"], attrs: { transB: 1 } },
    { op: "Gemm", inputs: ["A1", "A2"], outputs: ["G12"], attrs: { transB: 1 } },
    { op: "Gemm", inputs: ["A2", "A2"], outputs: ["G22"], attrs: { transB: 1 } },
  ];
  const k = createSession(
    {
      graph: {
        name: "kernel_lora_grams",
        nodes,
        inputs: [
          { name: "B", type: t, shape: ["out", "r"] },
          { name: "A1", type: t, shape: ["r1", "in"] },
          { name: "A2", type: t, shape: ["r2", "in"] },
        ],
        outputs: ["GB", "G11", "G12", "G22"].map((name) => ({ name, type: t })),
      },
      opsets: { "": KERNEL_OPSET },
    },
    kernelSession,
  ).then((session) => ({ session }));
  k.catch(() => {
    pairKernel = undefined;
  });
  pairKernel = k;
  return k;
}

/**
 * Both Grams of a LoRA update in one session run (float32): G_B = BᵀB [r,r] for B [out,r] and
 * G_A = A·Aᵀ [r,r] for A [r,in] (A's Gram by row halves from SPLIT_GRAM_MIN_RANK up).
 * One run instead of two halves the per-call overhead, which matters over 560 modules.
 */
export async function loraGrams(b: Mat<Float32Array>, a: Mat<Float32Array>): Promise<{ GB: Float32Array; GA: Float32Array }> {
  checkLength("loraGrams B", b.data, b.rows, b.cols);
  checkLength("loraGrams A", a.data, a.rows, a.cols);
  const r = b.cols;
  if (a.rows !== r) throw new Error(`loraGrams: B has ${r} columns but A has ${a.rows} rows`);
  if (r < SPLIT_GRAM_MIN_RANK) {
    const [GB, GA] = await Promise.all([gram(b), gemm(a, a, { transB: true })]);
    return { GB: GB.data, GA: GA.data };
  }
  const r1 = r >> 1;
  const r2 = r - r1;
  const n = a.cols;
  const k = await loraGramKernel();
  const out = await k.session.run({
    B: tensor(b.data, [b.rows, r]),
    A1: tensor(a.data.subarray(0, r1 * n), [r1, n]),
    A2: tensor(a.data.subarray(r1 * n), [r2, n]),
  });
  const G11 = out.G11!.data as Float32Array;
  const G12 = out.G12!.data as Float32Array;
  const G22 = out.G22!.data as Float32Array;
  const GA = new Float32Array(r * r);
  for (let i = 0; i < r1; i++) {
    GA.set(G11.subarray(i * r1, (i + 1) * r1), i * r);
    GA.set(G12.subarray(i * r2, (i + 1) * r2), i * r + r1);
  }
  for (let i = 0; i < r2; i++) {
    const row = (r1 + i) * r;
    for (let j = 0; j < r1; j++) GA[row + j] = G12[j * r2 + i]!;
    GA.set(G22.subarray(i * r2, (i + 1) * r2), row + r1);
  }
  return { GB: out.GB!.data as Float32Array, GA };
}

let congruenceKernel: Promise<Kernel> | undefined;

/**
 * Lᵀ·G·L for square float64 G and L [n,n] in one session run (two GEMMs). For the r×r cores of
 * LoRA spectra: MLAS's float64 GEMM does this 64×64 product several times faster than
 * JavaScript loops, which over 560 modules was a tenth of the spectrum's CPU time.
 */
export async function congruence(g: Float64Array, l: Float64Array, n: number): Promise<Float64Array> {
  checkLength("congruence G", g, n, n);
  checkLength("congruence L", l, n, n);
  if (!congruenceKernel) {
    const t = OnnxType.DOUBLE;
    const k = createSession(
      {
        graph: {
          name: "kernel_congruence",
          nodes: [
            { op: "MatMul", inputs: ["G", "L"], outputs: ["T"] },
            { op: "Gemm", inputs: ["L", "T"], outputs: ["Z"], attrs: { transA: 1 } },
          ],
          inputs: [
            { name: "G", type: t, shape: ["n", "n"] },
            { name: "L", type: t, shape: ["n", "n"] },
          ],
          outputs: [{ name: "Z", type: t }],
        },
        opsets: { "": KERNEL_OPSET },
      },
      // a 64×64 product is over before a second thread could help: handing off costs more
      { ...kernelSession, threads: 1 },
    ).then((session) => ({ session }));
    k.catch(() => {
      congruenceKernel = undefined;
    });
    congruenceKernel = k;
  }
  const k = await congruenceKernel;
  return runKernel<Float64Array>(k, { G: tensor(g, [n, n]), L: tensor(l, [n, n]) });
}

/** Batched X[i]·Y[i] for X [b,m,k], Y [b,k,n], all row-major and contiguous (torch.bmm). */
export async function bmm<T extends FloatArray>(
  x: T,
  y: T,
  dims: { batch: number; m: number; k: number; n: number },
): Promise<T> {
  const { batch, m, k: inner, n } = dims;
  if (x.length !== batch * m * inner || y.length !== batch * inner * n) throw new Error("bmm: operand lengths do not match the dims");
  const k = await kernel("matmul", false, false, precisionOf(x, y), true);
  return runKernel<T>(k, { X: tensor(x, [batch, m, inner]), Y: tensor(y, [batch, inner, n]) });
}

/** Drop every cached session (tests, or before process exit in long-lived hosts). */
export async function releaseKernels(): Promise<void> {
  const all = [...cache.values()];
  cache.clear();
  if (pairKernel) all.push(pairKernel);
  if (congruenceKernel) all.push(congruenceKernel);
  pairKernel = undefined;
  congruenceKernel = undefined;
  for (const k of all) {
    try {
      await (await k).session.release();
    } catch {
      // a session that failed to build has nothing to release
    }
  }
}
