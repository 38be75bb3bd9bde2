// Type-checks the package's API as a TypeScript user writes it: scripts/test-web runs
// `tsc --noEmit --strict` over this file next to the built package (./pkg). It is never
// run; every member of the API appears at least once, with the types the .d.ts declares.

import init, {
  Backend, Driver, Heap, Arena, WasmSlice, DeviceArena, DeviceSlice,
  BackendError, InvalidArgumentError, UnsupportedError, OutOfMemoryError, DeviceError, NotInitializedError,
  type AdapterInfo, type MemoryInfo, type SliceHandle, type DeviceSliceHandle, type ErrorKind,
  type GemmArgs, type AttentionArgs, type Conv2dArgs, type HostDType, type SliceKind,
} from "./pkg/index.js";

export async function usage(canvas: HTMLCanvasElement): Promise<number> {
  await init();
  const b: Backend = await Backend.create(canvas.id);
  const worker: Backend = await Backend.create(undefined, "webgpu");
  const cpu: Backend = Backend.createCpu();
  const auto: Backend = await Backend.create();
  const engine: "webgpu" | "cpu" = b.engine;
  const name: string = b.name;
  const why: string | undefined = b.fallbackReason;
  const info: AdapterInfo | undefined = b.adapterInfo;
  const features: string[] = info?.features ?? [];

  // Device memory.
  const x: number = b.uploadF32(new Float32Array([1, 2, 3, 4]));
  const y: number = b.alloc(16);
  b.write(y, new Float32Array(4));
  b.copy(y, x, 16);
  const alias: number = b.alias(x, 8);
  b.retire(alias);
  const mem: MemoryInfo = b.memoryInfo();
  const staged: number = mem.stagedBytes;
  const back: Float32Array = await b.readF32(y, 4);
  await b.read(y, new Uint8Array(16));
  await b.readMany([[x, new Float32Array(1)], [y, new Uint8Array(4)]]);
  await b.synchronize();

  // Ops.
  b.unary("relu", x, y, 4);
  b.unary("exp", x, y, 4, "f32");
  b.unaryParam("clip", -1, 1, x, y, 4);
  b.binary("add", x, x, y, 4);
  b.binaryBroadcast("mul", x, [2, 2], x, [2], y, [2, 2]);
  b.reduce("sum", x, y, [2, 2], 1);
  b.softmax(x, y, 2, 2);
  b.logSoftmax(x, y, 2, 2);
  b.layerNorm(x, null, undefined, y, 2, 2, 1e-5);
  b.rmsNorm(x, x, y, 2, 2, 1e-6);
  b.softmax(x, y, 2, 2, "f16");
  b.layerNorm(x, null, null, y, 2, 2, 1e-5, "bf16");
  b.gather(x, 2, 2, y, 1, y);
  b.cast(x, "f32", y, "f16", 4);
  const g: GemmArgs = { m: 2, n: 2, k: 1, a: x, b: x, c: y, transB: true, alpha: 1, beta: 0 };
  b.gemm(g);
  b.batchedGemm({ ...g, batch: 1, strideA: 0, strideB: 0, strideC: 4 });
  b.gemmEx({ ...g, aDtype: "f16", bDtype: "f32" });
  b.gemmQ({ format: "q4_0", m: 1, n: 1, k: 32, a: x, b: x, c: y, bDtype: "f16" });
  const conv: Conv2dArgs = {
    input: x, inputShape: [1, 1, 2, 2], filter: x, filterShape: [1, 1, 1, 1],
    output: y, outputShape: [1, 1, 2, 2], padding: [0, 0, 0, 0], groups: 1, bias: null,
  };
  b.conv2d(conv);
  const att: AttentionArgs = {
    batch: 1, heads: 2, kvHeads: 1, seqQ: 1, seqKv: 2, headDim: 1,
    q: x, k: { ptr: x, rowStride: 1 }, v: x, o: y, causal: true, mask: { ptr: x, heads: 1 },
    window: 2, softcap: null,
  };
  b.attention(att);

  // The driver: linear memory.
  const d: Driver = b.driver;
  const buf: ArrayBuffer | SharedArrayBuffer = d.buffer();
  const bytes: Uint8Array = d.bytes();
  const shared: boolean = d.isSharedMemory();
  const isolated: boolean = d.crossOriginIsolated();
  if (!shared) {
    try {
      d.requireSharedMemory();
    } catch (e) {
      if (e instanceof UnsupportedError) console.log(e.kind, e.message);
    }
  }
  const v: ArrayBufferView = d.view(Float32Array, 0, 4);
  const v2: ArrayBufferView = d.viewOn(Uint8Array, buf, 0, bytes.length);
  const heap: Heap = d.heap;
  const s: WasmSlice = heap.allocF32(4, 16);
  const u: WasmSlice = heap.allocU32(1);
  const i: WasmSlice = heap.allocI32(1);
  const c: WasmSlice = heap.allocU8(1);
  const kind: SliceKind = s.kind;
  const dtype: HostDType = s.dtype;
  const sizes: number = s.ptr + s.length + s.byteLength + (s.epoch ?? 0);
  s.write([1, 2], 0, true);
  s.write(new Float32Array(4));
  const sv: Float32Array | Uint32Array | Int32Array | Uint8Array = s.view();
  s.assertAlive();
  const alive: boolean = s.isAlive();
  const sb: ArrayBuffer | SharedArrayBuffer = s.buffer();
  const h: SliceHandle = s.handle();
  const hv: ArrayBufferView = d.viewFromHandle(d.buffer(), h);
  const again: WasmSlice = d.sliceFromHandle(h);
  b.upload(s, x);
  await b.download(x, s);
  s.free();
  const frame: Arena = d.frame;
  const f: WasmSlice = frame.allocF32(4);
  frame.allocU32(1);
  frame.allocI32(1);
  frame.allocU8(1, 8);
  const stats: number = frame.epoch + frame.used + frame.capacity;
  frame.reset();
  frame.reserve(1 << 20);
  const arena: Arena = d.createHeapArena(1 << 16, 64);
  arena.allocF32(8);
  arena.release();
  const hostBytes: number = d.hostBytes();

  // Device arenas.
  const da: DeviceArena = b.createFrameArena(1 << 16);
  const ds: DeviceSlice = da.alloc("f16", 8, 256);
  const dh: DeviceSliceHandle = ds.handle();
  const dAlive: boolean = ds.isAlive();
  ds.assertAlive();
  const dNums: number = ds.ptr + ds.length + ds.byteLength + ds.epoch + da.epoch + da.used + da.capacity;
  const dk: string = ds.kind + ds.dtype + da.kind;
  da.reset();
  da.release();
  b.createHeapArena(1024, 256).release();

  // Errors.
  try {
    b.free(-1);
  } catch (e) {
    if (e instanceof BackendError) {
      const k: ErrorKind = e.kind;
      console.log(k, e.message, e.name);
    }
    if (e instanceof InvalidArgumentError) {
      const k: "InvalidArgument" = e.kind;
      console.log(k);
    }
    const others = [OutOfMemoryError, DeviceError, NotInitializedError].map((cls) => cls.name);
    console.log(others);
  }
  b.free(x);
  b.free(y);
  console.log(isolated, staged, worker, cpu, auto, engine, name, why, features, mem, back, v, v2, u, i, c, kind, dtype, sizes, sv, alive, sb, hv, again, f, stats, hostBytes, dh, dAlive, dk);
  return back[0];
}
