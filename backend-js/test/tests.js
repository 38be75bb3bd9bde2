// The JS API tests of backend-js, in a page: every member of Backend, the driver and the
// slices, the errors' kinds, and a gemm and attention against the CPU oracle's values
// (fixture.json, made natively by backend-js/tests/fixture.rs). run.py opens this page
// with ?engine=webgpu and ?engine=cpu and fails unless every test passes.
//
// State for the driver: <body data-state="running|done|error" data-ok="true|false">,
// the results as JSON in #report-json: { engine, backend, ok, tests: [{ name, ok, error }] }.

import init, {
  Backend, BackendError, InvalidArgumentError, UnsupportedError, OutOfMemoryError,
  DeviceError, NotInitializedError,
} from "./pkg/index.js";

const params = new URLSearchParams(location.search);
const engine = params.get("engine") ?? "auto";
const only = params.get("only");
// run.py serves the page with COOP/COEP headers when it passes isolated=1.
const isolated = params.get("isolated") === "1";
const tests = [];
const test = (name, fn) => tests.push({ name, fn });

// ---- helpers ------------------------------------------------------------------------

class Failure extends Error {}
function assert(cond, message) {
  if (!cond) throw new Failure(message);
}
function eq(got, want, what) {
  assert(Object.is(got, want) || got === want, `${what}: got ${got}, want ${want}`);
}
function close(got, want, tol, what) {
  assert(got.length === want.length, `${what}: ${got.length} values, want ${want.length}`);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    assert(err <= tol * (1 + Math.abs(want[i])), `${what}[${i}]: got ${got[i]}, want ${want[i]} (tolerance ${tol})`);
  }
}
// Runs fn and checks that it throws (or rejects with) a BackendError of `cls`/`kind`
// whose message contains `text`.
async function throwsKind(fn, cls, kind, text, what) {
  let caught = null;
  try {
    await fn();
  } catch (e) {
    caught = e;
  }
  assert(caught !== null, `${what}: did not throw`);
  assert(caught instanceof Error, `${what}: threw a non-Error ${caught}`);
  assert(caught instanceof BackendError, `${what}: threw ${caught} (not a BackendError)`);
  assert(caught instanceof cls, `${what}: threw ${caught.name} (${caught.message}), want ${cls.name}`);
  eq(caught.kind, kind, `${what}: kind`);
  if (text) assert(caught.message.includes(text), `${what}: message ${JSON.stringify(caught.message)} lacks ${JSON.stringify(text)}`);
  return caught;
}
// input(seed, len): the formula backend-js/tests/fixture.rs uses.
function input(seed, len) {
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) out[i] = ((i * 7919 + seed * 104729) % 1000) / 500 - 1;
  return out;
}

let b; // the backend under test
let fixture;

// ---- the backend ----------------------------------------------------------------------

test("create gives the engine asked for, with a name and adapter info", async () => {
  eq(b.engine, engine === "auto" ? b.engine : engine, "engine");
  assert(typeof b.name === "string" && b.name.length > 0, "name is a non-empty string");
  if (b.engine === "webgpu") {
    const info = b.adapterInfo;
    assert(info && typeof info.backend === "string", "adapterInfo.backend");
    assert(Array.isArray(info.features), "adapterInfo.features is an array");
    assert(info.maxBufferSize > 0, "adapterInfo.maxBufferSize");
    eq(b.fallbackReason, undefined, "fallbackReason on WebGPU");
  } else {
    eq(b.adapterInfo, undefined, "adapterInfo on the CPU engine");
    assert(b.name.includes("fast-cpu"), `the CPU engine's name: ${b.name}`);
  }
});

test("create refuses an unknown engine and a missing canvas", async () => {
  await throwsKind(() => Backend.create(undefined, "tpu"), InvalidArgumentError, "InvalidArgument", "tpu", "engine tpu");
  await throwsKind(() => Backend.create("no-such-canvas", "cpu"), InvalidArgumentError, "InvalidArgument", "no-such-canvas", "missing canvas");
});

test("Backend.create in a dedicated worker, without a canvas", async () => {
  const w = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
  const reply = await new Promise((resolve, reject) => {
    w.onmessage = (e) => resolve(e.data);
    w.onerror = (e) => reject(new Failure(`the worker failed: ${e.message}`));
    w.postMessage({ engine: b.engine });
  });
  w.terminate();
  assert(!reply.error, `the worker: ${reply.error}`);
  eq(reply.engine, b.engine, "the worker's engine");
  close(reply.out, [1, 0, 3, 0], 0, "relu in the worker");
  eq(reply.canvasError, "InvalidArgument", "a canvas asked for in a worker");
});

test("alloc, write, read, readF32, copy, free, memoryInfo", async () => {
  const before = b.memoryInfo();
  const p = b.alloc(64);
  assert(Number.isSafeInteger(p) && p > 0, `alloc returns a safe integer address: ${p}`);
  b.write(p, new Float32Array([1, 2, 3, 4]));
  b.write(p + 16, new Uint32Array([0x3f800000])); // 1.0f, through another view type
  const q = b.alloc(64);
  b.copy(q, p, 20);
  eq(b.memoryInfo().liveAllocations, before.liveAllocations + 2, "liveAllocations");
  close(await b.readF32(q, 5), [1, 2, 3, 4, 1], 0, "readF32 after copy");
  const dst = new Uint8Array(8);
  await b.read(p + 4, dst);
  close(new Float32Array(dst.buffer), [2, 3], 0, "read into a Uint8Array");
  const dv = new DataView(new ArrayBuffer(4));
  await b.read(p, dv);
  eq(dv.getFloat32(0, true), 1, "read into a DataView");
  b.free(p);
  b.free(q);
  eq(b.memoryInfo().liveAllocations, before.liveAllocations, "liveAllocations after free");
  await throwsKind(() => b.readF32(p, 1), InvalidArgumentError, "InvalidArgument", "", "read after free");
});

test("readMany: several reads at once, all or nothing", async () => {
  const p = b.uploadF32([1, 2, 3, 4, 5, 6, 7, 8]);
  const a = new Float32Array(2);
  const c = new Uint8Array(4);
  await b.readMany([[p + 8, a], [p + 28, c]]);
  close(a, [3, 4], 0, "the first read");
  eq(new Float32Array(c.buffer)[0], 8, "the second read");
  const untouched = new Float32Array([9, 9]);
  await throwsKind(() => b.readMany([[p, untouched], [p + 28, new Float32Array(4)]]), InvalidArgumentError, "InvalidArgument", "copy_dtoh", "a read past the end");
  close(untouched, [9, 9], 0, "no destination written after a refused readMany");
  await throwsKind(() => b.readMany([[p]]), InvalidArgumentError, "InvalidArgument", "pair", "a malformed entry");
  b.free(p);
});

test("alias and retire: a retired alias is refused", async () => {
  const p = b.uploadF32([5, 6, 7, 8]);
  const a = b.alias(p + 4, 8);
  assert(a !== p + 4, "an alias is a new address");
  close(await b.readF32(a, 2), [6, 7], 0, "read through the alias");
  b.retire(a);
  await throwsKind(() => b.readF32(a, 2), InvalidArgumentError, "InvalidArgument", "", "read through a retired alias");
  close(await b.readF32(p, 4), [5, 6, 7, 8], 0, "the allocation survives");
  b.free(p);
});

test("numbers that are not addresses or sizes are refused, never wrapped", async () => {
  const p = b.uploadF32([1, 2, 3, 4]);
  for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) {
    await throwsKind(() => b.unary("relu", bad, p, 4), InvalidArgumentError, "InvalidArgument", "unary: x", `unary x = ${bad}`);
  }
  for (const bad of [-1, 0.5, 2 ** 32, 2 ** 32 + 4]) {
    await throwsKind(() => b.unary("relu", p, p, bad), InvalidArgumentError, "InvalidArgument", "unary: n", `unary n = ${bad}`);
  }
  await throwsKind(() => b.alloc(-8), InvalidArgumentError, "InvalidArgument", "alloc: bytes", "alloc(-8)");
  await throwsKind(() => b.unary("nope", p, p, 4), InvalidArgumentError, "InvalidArgument", "unknown unary op", "unknown op");
  await throwsKind(() => b.unary("relu", p, p, 4, "f64"), InvalidArgumentError, "InvalidArgument", "unknown dtype", "unknown dtype");
  await throwsKind(() => b.gemm({ m: 2, n: 2, k: 2, a: p, b: p }), InvalidArgumentError, "InvalidArgument", "gemm: c", "gemm without c");
  await throwsKind(() => b.gemm(null), InvalidArgumentError, "InvalidArgument", "object", "gemm(null)");
  // Out of the allocation: the backend's own check, and the data survives it.
  await throwsKind(() => b.unary("relu", p, p, 5), InvalidArgumentError, "InvalidArgument", "", "n past the allocation");
  close(await b.readF32(p, 4), [1, 2, 3, 4], 0, "data after the refused call");
  b.free(p);
});

test("errors are Error subclasses with their kind", async () => {
  for (const [cls, kind] of [
    [InvalidArgumentError, "InvalidArgument"], [UnsupportedError, "Unsupported"],
    [OutOfMemoryError, "OutOfMemory"], [DeviceError, "DeviceError"], [NotInitializedError, "NotInitialized"],
  ]) {
    const e = new cls("m");
    assert(e instanceof Error && e instanceof BackendError, `${cls.name} extends BackendError`);
    eq(e.kind, kind, `${cls.name}.kind`);
    eq(e.message, "m", `${cls.name}.message`);
  }
  await throwsKind(() => b.driver.requireSharedMemory(), UnsupportedError, "Unsupported", "not shared", "requireSharedMemory");
  await throwsKind(() => b.createFrameArena(2 ** 32 - 1), OutOfMemoryError, "OutOfMemory", "", "a 4 GiB device arena");
  await throwsKind(() => b.driver.heap.allocU8(2 ** 32 - 16), OutOfMemoryError, "OutOfMemory", "", "a 4 GiB host slice");
});

test("every elementwise, row and reduce op through the JS API", async () => {
  const x = [-2, -0.5, 0, 0.5, 1, 3];
  const px = b.uploadF32(x);
  const py = b.alloc(24);
  b.unary("relu", px, py, 6);
  close(await b.readF32(py, 6), x.map((v) => Math.max(v, 0)), 0, "relu");
  b.unary("exp", px, py, 6);
  close(await b.readF32(py, 6), x.map(Math.exp), 1e-5, "exp");
  b.unaryParam("clip", -1, 1, px, py, 6);
  close(await b.readF32(py, 6), x.map((v) => Math.min(Math.max(v, -1), 1)), 0, "clip");
  b.binary("mul", px, px, py, 6);
  close(await b.readF32(py, 6), x.map((v) => v * v), 0, "mul");
  const pb = b.uploadF32([10, 20, 30]);
  b.binaryBroadcast("add", px, [2, 3], pb, [3], py, [2, 3]);
  close(await b.readF32(py, 6), [8, 19.5, 30, 10.5, 21, 33], 0, "binaryBroadcast");
  const pr = b.alloc(12);
  b.reduce("sum", px, pr, [2, 3], 1);
  close(await b.readF32(pr, 2), [-2.5, 4.5], 1e-6, "reduce sum");
  b.reduce("max", px, pr, [2, 3], 0);
  close(await b.readF32(pr, 3), [0.5, 1, 3], 0, "reduce max over axis 0");
  b.softmax(px, py, 2, 3);
  const sm = (r) => { const m = Math.max(...r); const e = r.map((v) => Math.exp(v - m)); const s = e.reduce((a, c) => a + c); return e.map((v) => v / s); };
  close(await b.readF32(py, 6), [...sm(x.slice(0, 3)), ...sm(x.slice(3))], 1e-5, "softmax");
  b.logSoftmax(px, py, 2, 3);
  close(await b.readF32(py, 6), [...sm(x.slice(0, 3)), ...sm(x.slice(3))].map(Math.log), 1e-5, "logSoftmax");
  const ln = (r) => { const m = r.reduce((a, c) => a + c) / r.length; const v = r.reduce((a, c) => a + (c - m) ** 2, 0) / r.length; return r.map((c) => (c - m) / Math.sqrt(v + 1e-5)); };
  b.layerNorm(px, null, null, py, 2, 3, 1e-5);
  close(await b.readF32(py, 6), [...ln(x.slice(0, 3)), ...ln(x.slice(3))], 1e-4, "layerNorm");
  const gamma = b.uploadF32([1, 2, 3]);
  const rms = (r) => { const s = Math.sqrt(r.reduce((a, c) => a + c * c, 0) / r.length + 1e-6); return r.map((c, i) => (c / s) * (i + 1)); };
  b.rmsNorm(px, gamma, py, 2, 3, 1e-6);
  close(await b.readF32(py, 6), [...rms(x.slice(0, 3)), ...rms(x.slice(3))], 1e-4, "rmsNorm");
  const idx = b.alloc(8);
  b.write(idx, new Uint32Array([1, 0]));
  b.gather(px, 2, 3, idx, 2, py);
  close(await b.readF32(py, 6), [...x.slice(3), ...x.slice(0, 3)], 0, "gather");
  const ph = b.alloc(12);
  b.cast(px, "f32", ph, "f16", 6);
  b.unary("abs", ph, ph, 6, "f16");
  b.cast(ph, "f16", py, "f32", 6);
  close(await b.readF32(py, 6), x.map(Math.abs), 0, "cast f16 + unary f16");
  // Row ops on f16 storage, each result exact in f16: softmax of equal values is 1/4
  // (0x3400); the RMS norm of 2s (gamma 3) is 3 / sqrt(1 + 1e-6 / 4), which rounds to 3
  // (0x4200); log_softmax of equal values is -ln 4, 0xbfb1 in bf16.
  const hx = b.alloc(8), hy = b.alloc(8), hg = b.alloc(8);
  b.write(hx, new Uint16Array([0x4000, 0x4000, 0x4000, 0x4000])); // 2.0
  b.write(hg, new Uint16Array([0x4200, 0x4200, 0x4200, 0x4200])); // 3.0
  const halves = async (p) => { const h = new Uint16Array(4); await b.read(p, h); return Array.from(h); };
  b.softmax(hx, hy, 1, 4, "f16");
  eq(JSON.stringify(await halves(hy)), JSON.stringify([0x3400, 0x3400, 0x3400, 0x3400]), "softmax f16");
  b.rmsNorm(hx, hg, hy, 1, 4, 1e-6, "f16");
  eq(JSON.stringify(await halves(hy)), JSON.stringify([0x4200, 0x4200, 0x4200, 0x4200]), "rmsNorm f16");
  b.logSoftmax(hx, hy, 1, 4, "bf16");
  eq(JSON.stringify(await halves(hy)), JSON.stringify([0xbfb1, 0xbfb1, 0xbfb1, 0xbfb1]), "logSoftmax bf16 (of bf16 2s)");
  b.layerNorm(hx, null, null, hy, 2, 2, 1e-5, "f16");
  eq(JSON.stringify(await halves(hy)), JSON.stringify([0, 0, 0, 0]), "layerNorm f16 of constant rows");
  await throwsKind(() => b.softmax(hx, hy, 1, 4, "f8"), InvalidArgumentError, "InvalidArgument", "f8", "softmax with an unknown dtype");
  for (const p of [px, py, pb, pr, gamma, idx, ph, hx, hy, hg]) b.free(p);
});

test("the model ops take f16 and bf16 storage (results exact in the type)", async () => {
  const put = (bits) => { const p = b.alloc(2 * bits.length); b.write(p, new Uint16Array(bits)); return p; };
  const bitsOf = async (p, n) => { const h = new Uint16Array(n); await b.read(p, h); return JSON.stringify(Array.from(h)); };
  const same = async (p, want, what) => eq(await bitsOf(p, want.length), JSON.stringify(want), what);
  const made = [];
  const keep = (p) => { made.push(p); return p; };
  // binaryBroadcast f16: [[1, 2], [3, 4]] + [0.5, 1] = [[1.5, 3], [3.5, 5]].
  const ba = keep(put([0x3c00, 0x4000, 0x4200, 0x4400])), bb = keep(put([0x3800, 0x3c00])), bo = keep(b.alloc(8));
  b.binaryBroadcast("add", ba, [2, 2], bb, [2], bo, [2, 2], "f16");
  await same(bo, [0x3e00, 0x4200, 0x4300, 0x4500], "binaryBroadcast f16");
  // gather bf16: rows [1, 2], [3, 4], [5, 6] by indices [2, 7 (out of range), 0].
  const table = keep(put([0x3f80, 0x4000, 0x4040, 0x4080, 0x40a0, 0x40c0]));
  const gi = keep(b.alloc(12)), go = keep(b.alloc(12));
  b.write(gi, new Uint32Array([2, 7, 0]));
  b.gather(table, 3, 2, gi, 3, go, "bf16");
  await same(go, [0x40a0, 0x40c0, 0, 0, 0x3f80, 0x4000], "gather bf16");
  // unaryParam f16: clip(-1, 1) of [2, -3, 0.5, -0.25].
  const ux = keep(put([0x4000, 0xc200, 0x3800, 0xb400])), uy = keep(b.alloc(8));
  b.unaryParam("clip", -1, 1, ux, uy, 4, "f16");
  await same(uy, [0x3c00, 0xbc00, 0x3800, 0xb400], "unaryParam clip f16");
  // attention f16: one query over two equal keys weighs both values 1/2: O = [2, 3].
  const q = keep(put([0x3c00, 0])), k = keep(put([0x3c00, 0x3c00, 0x3c00, 0x3c00]));
  const v = keep(put([0x3c00, 0x4000, 0x4200, 0x4400])), o = keep(b.alloc(4));
  b.attention({ batch: 1, heads: 1, seqQ: 1, seqKv: 2, headDim: 2, q, k, v, o, dtype: "f16" });
  await same(o, [0x4000, 0x4200], "attention f16");
  // conv2d f16, depthwise 1x1 with a bias: [1, 2] * 2 + 1 and [3, 4] * 0.5 - 1.
  const cx = keep(put([0x3c00, 0x4000, 0x4200, 0x4400])), cw = keep(put([0x4000, 0x3800]));
  const cb = keep(put([0x3c00, 0xbc00])), cy = keep(b.alloc(8));
  b.conv2d({ input: cx, inputShape: [1, 2, 1, 2], filter: cw, filterShape: [2, 1, 1, 1], output: cy, outputShape: [1, 2, 1, 2], groups: 2, bias: cb, dtype: "f16" });
  await same(cy, [0x4200, 0x4500, 0x3800, 0x3c00], "conv2d f16");
  // gemmEx with an f16 C, two batches sharing A = 2I: C_i = 2 B_i, B_0 = [[1, 2], [3, 4]]
  // and B_1 = [[0.5, 1], [1.5, 2]] (column-major), bf16 B.
  const ga = keep(put([0x4000, 0, 0, 0x4000]));
  const gb = keep(put([0x3f80, 0x4040, 0x4000, 0x4080, 0x3f00, 0x3fc0, 0x3f80, 0x4000]));
  const gc = keep(b.alloc(16));
  b.gemmEx({ m: 2, n: 2, k: 2, a: ga, b: gb, c: gc, aDtype: "f16", bDtype: "bf16", cDtype: "f16", batch: 2, strideA: 0, strideB: 4, strideC: 4 });
  await same(gc, [0x4000, 0x4600, 0x4400, 0x4800, 0x3c00, 0x4200, 0x4000, 0x4400], "gemmEx f16 x bf16 -> f16, batched");
  await throwsKind(() => b.gather(table + 1, 3, 2, gi, 3, go, "bf16"), InvalidArgumentError, "InvalidArgument", "2-byte aligned", "gather bf16 at an odd address");
  for (const p of made) b.free(p);
});

test("gemm matches the CPU oracle (fixture)", async () => {
  const g = fixture.gemm;
  const a = b.uploadF32(input(g.seedA, g.m * g.k));
  const bb = b.uploadF32(input(g.seedB, g.n * g.k));
  const c = b.alloc(g.m * g.n * 4);
  b.gemm({ m: g.m, n: g.n, k: g.k, alpha: g.alpha, a, b: bb, c, transB: g.transB });
  close(await b.readF32(c, g.m * g.n), g.c, 1e-5 * g.k, "gemm");
  // The same product through batchedGemm (batch 2, B shared) and gemmEx (f32 inputs).
  const c2 = b.alloc(2 * g.m * g.n * 4);
  b.batchedGemm({ m: g.m, n: g.n, k: g.k, alpha: g.alpha, a, b: bb, c: c2, transB: true, batch: 2, strideA: 0, strideB: 0, strideC: g.m * g.n });
  const both = await b.readF32(c2, 2 * g.m * g.n);
  close(both.subarray(g.m * g.n), g.c, 1e-5 * g.k, "batchedGemm, second batch");
  b.gemmEx({ m: g.m, n: g.n, k: g.k, alpha: g.alpha, a, aDtype: "f32", b: bb, bDtype: "f32", c, transB: true });
  close(await b.readF32(c, g.m * g.n), g.c, 1e-5 * g.k, "gemmEx");
  for (const p of [a, bb, c, c2]) b.free(p);
});

test("attention (GQA, causal, with and without a mask) matches the CPU oracle (fixture)", async () => {
  for (const f of [fixture.attention, fixture.attentionMasked]) {
    const q = b.uploadF32(input(f.seedQ, f.batch * f.heads * f.seqQ * f.headDim));
    const k = b.uploadF32(input(f.seedK, f.batch * f.kvHeads * f.seqKv * f.headDim));
    const v = b.uploadF32(input(f.seedV, f.batch * f.kvHeads * f.seqKv * f.headDim));
    const o = b.alloc(f.o.length * 4);
    const mask = f.maskSeed === null ? null : b.uploadF32(input(f.maskSeed, f.seqQ * f.seqKv));
    b.attention({ batch: f.batch, heads: f.heads, kvHeads: f.kvHeads, seqQ: f.seqQ, seqKv: f.seqKv, headDim: f.headDim, q, k, v, o, causal: f.causal, mask });
    close(await b.readF32(o, f.o.length), f.o, 1e-4, `attention${mask === null ? "" : " with a mask"}`);
    for (const p of [q, k, v, o, mask]) if (p !== null) b.free(p);
  }
});

test("conv2d (grouped, padded, with bias) and gemmQ through the JS API", async () => {
  // A depthwise 3x3 conv of a 1x2x3x3 input with a filter of ones: each output is the
  // sum of the input's 3x3 window (zero padded) plus the bias.
  const x = b.uploadF32(Array.from({ length: 18 }, (_, i) => i));
  const w = b.uploadF32(new Array(18).fill(1));
  const bias = b.uploadF32([100, 200]);
  const y = b.alloc(18 * 4);
  b.conv2d({ input: x, inputShape: [1, 2, 3, 3], filter: w, filterShape: [2, 1, 3, 3], output: y, outputShape: [1, 2, 3, 3], padding: [1, 1], groups: 2, bias });
  const want = [];
  for (let c = 0; c < 2; c++) for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
    let s = c === 0 ? 100 : 200;
    for (let di = -1; di <= 1; di++) for (let dj = -1; dj <= 1; dj++) {
      const ii = i + di, jj = j + dj;
      if (ii >= 0 && ii < 3 && jj >= 0 && jj < 3) s += c * 9 + ii * 3 + jj;
    }
    want.push(s);
  }
  close(await b.readF32(y, 18), want, 1e-6, "conv2d");
  // Q8_0: one block of 32 weights per row (f16 scale 1.0 = 0x3c00, then 32 int8 values);
  // A is 2 x 32, B is 32 x 1 of ones: C[i] = sum of row i's int8 values.
  const blocks = new Uint8Array(2 * 34);
  const dv = new DataView(blocks.buffer);
  const rowsums = [0, 0];
  for (let r = 0; r < 2; r++) {
    dv.setUint16(r * 34, 0x3c00, true);
    for (let i = 0; i < 32; i++) {
      const q = ((i * 7 + r * 13) % 31) - 15;
      dv.setInt8(r * 34 + 2 + i, q);
      rowsums[r] += q;
    }
  }
  const qa = b.alloc(blocks.length);
  b.write(qa, blocks);
  const ones = b.uploadF32(new Array(32).fill(1));
  const c = b.alloc(8);
  b.gemmQ({ format: "q8_0", m: 2, n: 1, k: 32, a: qa, b: ones, c });
  close(await b.readF32(c, 2), rowsums, 1e-6, "gemmQ q8_0");
  await throwsKind(() => b.gemmQ({ format: "q3_k", m: 2, n: 1, k: 32, a: qa, b: ones, c }), InvalidArgumentError, "InvalidArgument", "unknown format", "gemmQ format");
  for (const p of [x, w, bias, y, qa, ones, c]) b.free(p);
});

test("synchronize resolves, and a device error of queued work rejects with its kind", async () => {
  await b.synchronize();
  // Nothing this API can queue fails on the device after validation; synchronize must
  // still resolve again after a refused call.
  await throwsKind(() => b.softmax(1, 2, 1, 1), InvalidArgumentError, "InvalidArgument", "", "softmax on unallocated addresses");
  await b.synchronize();
});

// ---- the driver: linear memory -----------------------------------------------------

test("driver: cross-origin isolation is reported as the page is served", async () => {
  const d = b.driver;
  eq(d.crossOriginIsolated(), isolated, "crossOriginIsolated()");
  eq(globalThis.crossOriginIsolated, isolated, "the browser's crossOriginIsolated");
  // This build's memory is never shared (no threads), isolated or not; the error says
  // which the page is.
  eq(d.isSharedMemory(), false, "isSharedMemory()");
  const e = await throwsKind(() => d.requireSharedMemory(), UnsupportedError, "Unsupported", "not shared", "requireSharedMemory");
  assert(e.message.includes(isolated ? "page is cross-origin isolated" : "page is not cross-origin isolated"), `requireSharedMemory's message: ${e.message}`);
});

test("driver: buffer, bytes, isSharedMemory, view and viewOn", async () => {
  const d = b.driver;
  const buf = d.buffer();
  assert(buf instanceof ArrayBuffer, "buffer() is the memory's ArrayBuffer");
  eq(d.bytes().byteLength, buf.byteLength, "bytes() spans the memory");
  eq(d.isSharedMemory(), false, "isSharedMemory (this build has no threads)");
  const s = d.heap.allocF32(4);
  s.write([1, 2, 3, 4]);
  close(d.view(Float32Array, s.ptr, 4), [1, 2, 3, 4], 0, "view(Float32Array, ptr, len)");
  close(d.viewOn(Uint8Array, d.buffer(), s.ptr, 4), [0, 0, 128, 63], 0, "viewOn(Uint8Array) sees 1.0f's bytes");
  await throwsKind(() => d.view(Float32Array, s.ptr + 1, 1), InvalidArgumentError, "InvalidArgument", "multiple", "misaligned view");
  await throwsKind(() => d.view(Float32Array, buf.byteLength - 4, 2), InvalidArgumentError, "InvalidArgument", "leave", "view past the memory");
  await throwsKind(() => d.view(Object, 0, 1), InvalidArgumentError, "InvalidArgument", "typed-array constructor", "view(Object)");
  await throwsKind(() => d.viewOn(Float32Array, {}, 0, 1), InvalidArgumentError, "InvalidArgument", "ArrayBuffer", "viewOn a non-buffer");
  s.free();
});

test("heap slices: members, write, free, and a freed slice refused", async () => {
  const d = b.driver;
  for (const [alloc, dtype, ctor, size] of [
    ["allocF32", "f32", Float32Array, 4], ["allocU32", "u32", Uint32Array, 4],
    ["allocI32", "i32", Int32Array, 4], ["allocU8", "u8", Uint8Array, 1],
  ]) {
    const s = d.heap[alloc](5, 64);
    eq(s.kind, "heap", `${alloc} kind`);
    eq(s.dtype, dtype, `${alloc} dtype`);
    eq(s.length, 5, `${alloc} length`);
    eq(s.byteLength, 5 * size, `${alloc} byteLength`);
    eq(s.ptr % 64, 0, `${alloc} align 64`);
    eq(s.epoch, undefined, `${alloc} epoch`);
    assert(s.isAlive(), `${alloc} isAlive`);
    s.assertAlive();
    assert(s.buffer() === d.buffer(), `${alloc} buffer()`);
    const v = s.view();
    assert(v instanceof ctor, `${alloc} view() is a ${ctor.name}`);
    close(v, [0, 0, 0, 0, 0], 0, `${alloc} starts zeroed`);
    s.write(new ctor([9, 8, 7, 6, 5, 4]), 1);
    close(s.view(), [8, 7, 6, 5, 4], 0, `${alloc} write with srcOffset`);
    s.write([1, 2], 0, true);
    close(s.view(), [1, 2, 0, 0, 0], 0, `${alloc} write with zeroFill`);
    s.write([3]);
    close(s.view(), [3, 2, 0, 0, 0], 0, `${alloc} write of a prefix`);
    await throwsKind(() => s.write([1, 2, 3, 4, 5, 6]), InvalidArgumentError, "InvalidArgument", "do not fit", `${alloc} write too long`);
    await throwsKind(() => s.write([1], 2), InvalidArgumentError, "InvalidArgument", "srcOffset", `${alloc} srcOffset past src`);
    s.free();
    assert(!s.isAlive(), `${alloc} dead after free`);
    await throwsKind(() => s.view(), InvalidArgumentError, "InvalidArgument", "freed", `${alloc} view after free`);
    await throwsKind(() => s.free(), InvalidArgumentError, "InvalidArgument", "freed", `${alloc} double free`);
  }
  await throwsKind(() => d.heap.allocF32(4, 3), InvalidArgumentError, "InvalidArgument", "power of two", "align 3");
  await throwsKind(() => d.heap.allocF32(-1), InvalidArgumentError, "InvalidArgument", "len", "len -1");
});

test("frame slices die at reset; free() of a frame slice is refused", async () => {
  const frame = b.driver.frame;
  eq(frame.kind, "frame", "frame.kind");
  const e0 = frame.epoch;
  const s = frame.allocF32(8);
  const u = frame.allocU8(3);
  const w = frame.allocI32(2, 256);
  eq(s.kind, "frame", "slice kind");
  eq(s.epoch, e0, "slice epoch");
  eq(w.ptr % 256, 0, "aligned frame slice");
  assert(u.ptr >= s.ptr + 32 && w.ptr >= u.ptr + 3, "bump allocation");
  assert(frame.used >= 32 + 3 + 8, "used");
  s.write(input(1, 8));
  await throwsKind(() => s.free(), InvalidArgumentError, "InvalidArgument", "reset()", "free() of a frame slice");
  assert(s.isAlive(), "a refused free leaves the slice alive");
  frame.reset();
  eq(frame.epoch, e0 + 1, "epoch after reset");
  eq(frame.used, 0, "used after reset");
  assert(!s.isAlive() && !u.isAlive() && !w.isAlive(), "every slice of the epoch is dead");
  await throwsKind(() => s.view(), InvalidArgumentError, "InvalidArgument", "stale", "view of a stale frame slice");
  await throwsKind(() => s.write([1]), InvalidArgumentError, "InvalidArgument", "stale", "write to a stale frame slice");
  const p = b.alloc(32);
  await throwsKind(() => b.upload(s, p), InvalidArgumentError, "InvalidArgument", "stale", "upload of a stale frame slice");
  await throwsKind(() => b.download(p, s), InvalidArgumentError, "InvalidArgument", "stale", "download into a stale frame slice");
  const again = frame.allocF32(8);
  eq(again.ptr, s.ptr, "the memory is reused by the next epoch");
  assert(again.isAlive(), "the new slice is alive");
  b.free(p);
  frame.reset();
  await throwsKind(() => frame.allocU8(frame.capacity + 1), OutOfMemoryError, "OutOfMemory", "never grow", "a full frame");
  await throwsKind(() => frame.release(), InvalidArgumentError, "InvalidArgument", "reset()", "release of the frame");
  frame.reserve(1 << 16);
  eq(frame.capacity, 1 << 16, "reserve sets the capacity");
});

test("heap arenas: alloc, reset, release; handles round-trip", async () => {
  const d = b.driver;
  const arena = d.createHeapArena(1024, 64);
  eq(arena.kind, "arena", "kind");
  eq(arena.capacity, 1024, "capacity");
  const s = arena.allocF32(4);
  eq(s.kind, "arena", "slice kind");
  eq(s.ptr % 64, 0, "align");
  s.write([1, 2, 3, 4]);
  const h = JSON.parse(JSON.stringify(s.handle())); // plain data: crosses postMessage/JSON
  eq(h.kind, "arena", "handle.kind");
  eq(h.epoch, 0, "handle.epoch");
  close(d.viewFromHandle(d.buffer(), h), [1, 2, 3, 4], 0, "viewFromHandle");
  const back = d.sliceFromHandle(h);
  eq(back.ptr, s.ptr, "sliceFromHandle ptr");
  close(back.view(), [1, 2, 3, 4], 0, "sliceFromHandle view");
  const hh = d.heap.allocU32(3);
  hh.write([7, 8, 9]);
  const hh2 = JSON.parse(JSON.stringify(hh.handle()));
  close(d.viewFromHandle(d.buffer(), hh2), [7, 8, 9], 0, "a heap handle");
  await throwsKind(() => d.viewFromHandle(d.buffer(), { ...hh2, length: 1000 }), InvalidArgumentError, "InvalidArgument", "no heap slice", "a handle longer than its slice");
  await throwsKind(() => d.viewFromHandle(d.buffer(), { ...hh2, kind: "bogus" }), InvalidArgumentError, "InvalidArgument", "kind", "a malformed handle");
  hh.free();
  await throwsKind(() => d.viewFromHandle(d.buffer(), hh2), InvalidArgumentError, "InvalidArgument", "freed", "a freed heap slice's handle");
  arena.reset();
  await throwsKind(() => d.viewFromHandle(d.buffer(), h), InvalidArgumentError, "InvalidArgument", "stale", "a stale handle");
  await throwsKind(() => d.sliceFromHandle(h), InvalidArgumentError, "InvalidArgument", "stale", "sliceFromHandle of a stale handle");
  const t = arena.allocU8(10);
  arena.release();
  assert(!t.isAlive(), "release ends the arena's slices");
  await throwsKind(() => t.view(), InvalidArgumentError, "InvalidArgument", "released", "view after release");
  await throwsKind(() => arena.allocU8(1), InvalidArgumentError, "InvalidArgument", "released", "alloc after release");
  await throwsKind(() => d.createHeapArena(64, 3), InvalidArgumentError, "InvalidArgument", "power of two", "align 3");
});

test("views survive memory growth (re-derived, never detached)", async () => {
  const d = b.driver;
  const s = d.heap.allocF32(4);
  s.write([1, 2, 3, 4]);
  const old = s.view();
  const before = d.buffer().byteLength;
  const big = d.heap.allocU8(before + (16 << 20)); // more than the memory holds: it grows
  assert(d.buffer().byteLength > before, "the memory grew");
  eq(old.byteLength, 0, "a view taken before the growth is detached (as JS defines it)");
  close(s.view(), [1, 2, 3, 4], 0, "slice.view() after the growth");
  close(d.view(Float32Array, s.ptr, 4), [1, 2, 3, 4], 0, "driver.view after the growth");
  big.free();
  s.free();
});

test("upload(slice, ptr) and download(ptr, slice): linear memory to the device and back", async () => {
  const d = b.driver;
  const src = d.heap.allocF32(6);
  src.write([1, -2, 3, -4, 5, -6]);
  const p = b.alloc(24);
  b.upload(src, p);
  b.unary("relu", p, p, 6);
  const dst = d.frame.allocF32(6);
  await b.download(p, dst);
  close(dst.view(), [1, 0, 3, 0, 5, 0], 0, "download into a frame slice");
  // A slice that dies while its download is in flight is not written.
  const late = d.frame.allocF32(6);
  late.write([9, 9, 9, 9, 9, 9]);
  const pending = b.download(p, late);
  d.frame.reset();
  await throwsKind(() => pending, InvalidArgumentError, "InvalidArgument", "stale", "download into a slice reset meanwhile");
  const small = d.heap.allocF32(2);
  await throwsKind(() => b.upload(d.heap.allocF32(1000), p), InvalidArgumentError, "InvalidArgument", "", "upload past the device allocation");
  close(await b.readF32(p, 6), [1, 0, 3, 0, 5, 0], 0, "device data after the refused upload");
  small.free();
  src.free();
  b.free(p);
});

test("copies: an upload from linear memory stages nothing, a download one copy (WebGPU) or none (CPU)", async () => {
  const d = b.driver;
  const n = 1 << 16;
  const src = d.heap.allocF32(n);
  src.write(input(7, n));
  const p = b.alloc(4 * n);
  await b.synchronize();
  const s0 = b.memoryInfo().stagedBytes;
  b.upload(src, p);
  await b.synchronize();
  const s1 = b.memoryInfo().stagedBytes;
  eq(s1 - s0, 0, "bytes staged by upload(slice, ptr)");
  const dst = d.heap.allocF32(n);
  await b.download(p, dst);
  const s2 = b.memoryInfo().stagedBytes;
  // WebGPU: the readback staging buffer, copied once from the mapped ArrayBuffer into
  // linear memory. The CPU engine reads its device memory in place.
  eq(s2 - s1, b.engine === "webgpu" ? 4 * n : 0, "bytes staged by download(ptr, slice)");
  close(dst.view(), src.view(), 0, "the round trip");
  b.write(p, new Float32Array(n));
  await b.synchronize();
  eq(b.memoryInfo().stagedBytes - s2, 0, "bytes staged by write(ptr, Float32Array)");
  src.free();
  dst.free();
  b.free(p);
});

test("device arenas: slices are aliases that die at reset", async () => {
  const arena = b.createFrameArena(4096);
  eq(arena.kind, "frame", "kind");
  const x = arena.alloc("f32", 4);
  const y = arena.alloc("f16", 4);
  eq(x.dtype, "f32", "dtype");
  eq(y.byteLength, 8, "f16 byteLength");
  b.write(x.ptr, new Float32Array([1, -1, 2, -2]));
  b.unary("relu", x.ptr, x.ptr, 4);
  close(await b.readF32(x.ptr, 4), [1, 0, 2, 0], 0, "an op on a device slice");
  const h = x.handle();
  eq(h.epoch, 0, "handle epoch");
  arena.reset();
  assert(!x.isAlive(), "dead after reset");
  await throwsKind(() => x.assertAlive(), InvalidArgumentError, "InvalidArgument", "stale", "assertAlive");
  await throwsKind(() => b.unary("relu", x.ptr, x.ptr, 4), InvalidArgumentError, "InvalidArgument", "stale", "an op on a stale device slice");
  const z = arena.alloc("f32", 4);
  assert(z.ptr !== x.ptr, "addresses are never reused");
  await throwsKind(() => arena.alloc("f32", 2000), OutOfMemoryError, "OutOfMemory", "never grow", "a full device arena");
  await throwsKind(() => arena.alloc("f64", 1), InvalidArgumentError, "InvalidArgument", "dtype", "unknown dtype");
  arena.release();
  assert(!z.isAlive(), "dead after release");
  const heapArena = b.createHeapArena(1024);
  eq(heapArena.kind, "arena", "heap arena kind");
  heapArena.release();
});

// ---- the runner -------------------------------------------------------------------

async function main() {
  await init();
  fixture = await (await fetch("./fixture.json")).json();
  document.body.dataset.state = "running";
  b = await Backend.create("gpu-canvas", engine);
  const results = [];
  const log = document.getElementById("log");
  for (const t of tests) {
    if (only && !t.name.includes(only)) continue;
    document.getElementById("status").textContent = `Running: ${t.name}`;
    let error = null;
    try {
      await t.fn();
    } catch (e) {
      error = `${e && e.name}: ${e && e.message}`;
    }
    results.push({ name: t.name, ok: error === null, error });
    log.textContent += `${error === null ? "ok  " : "FAIL"} ${t.name}${error ? `\n     ${error}` : ""}\n`;
  }
  const ok = results.length > 0 && results.every((r) => r.ok);
  document.getElementById("report-json").textContent = JSON.stringify({ engine: b.engine, backend: b.name, ok, tests: results });
  document.getElementById("status").textContent = ok ? `All ${results.length} tests passed on ${b.name}.` : "Some tests failed.";
  document.body.dataset.ok = String(ok);
  document.body.dataset.state = "done";
}

main().catch((e) => {
  const message = `${e && e.name}: ${e && e.message}`;
  document.getElementById("status").textContent = `The tests could not run: ${message}`;
  document.getElementById("report-json").textContent = JSON.stringify({ ok: false, error: message });
  document.body.dataset.ok = "false";
  document.body.dataset.state = "error";
});
