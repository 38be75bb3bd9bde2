//! The TypeScript declarations of the option objects and results that the exported
//! functions take as `JsValue` (wasm-bindgen writes them into the package's `.d.ts`).

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS: &'static str = r#"
/** A typed-array constructor: Float32Array, Uint32Array, Int32Array, Uint8Array, ... */
export type TypedArrayConstructor =
  | Float32ArrayConstructor | Float64ArrayConstructor | Uint32ArrayConstructor | Int32ArrayConstructor
  | Uint16ArrayConstructor | Int16ArrayConstructor | Uint8ArrayConstructor | Int8ArrayConstructor;

/** Where a host slice lives. */
export type SliceKind = "heap" | "frame" | "arena";
/** The element types of host slices. */
export type HostDType = "f32" | "u32" | "i32" | "u8";
/** The element types of device data. */
export type DType = "f32" | "f16" | "bf16" | "u32" | "i32" | "u8";

/** What names a host slice across a boundary (plain data; survives postMessage/JSON). */
export interface SliceHandle {
  kind: SliceKind;
  dtype: HostDType;
  ptr: number;
  length: number;
  /** The heap allocation's or the arena's id. */
  owner: number;
  /** The arena epoch (frame and arena slices only). */
  epoch?: number;
}

/** What names a device slice. */
export interface DeviceSliceHandle {
  kind: "frame" | "arena";
  dtype: DType;
  ptr: number;
  length: number;
  epoch: number;
}

/** The adapter as wgpu and the browser describe it. */
export interface AdapterInfo {
  name: string;
  backend: string;
  deviceType: string;
  driver: string;
  features: string[];
  maxBufferSize: number;
  maxStorageBinding: number;
  maxWorkgroupStorage: number;
  maxInvocations: number;
  subgroupMinSize: number;
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}

/** Device memory in use. */
export interface MemoryInfo {
  allocatedBytes: number;
  reservedBytes: number;
  liveAllocations: number;
  /** Bytes copied through intermediate buffers since create (0: transfers in place). */
  stagedBytes: number;
}

/** BLAS sgemm: C = alpha * op(A) * op(B) + beta * C, column-major f32. */
export interface GemmArgs {
  m: number; n: number; k: number;
  a: number; b: number; c: number;
  transA?: boolean; transB?: boolean;
  /** Default: the rows of A as stored. */
  lda?: number; ldb?: number; ldc?: number;
  /** Default 1. */
  alpha?: number;
  /** Default 0 (C is only written). */
  beta?: number;
}

/** `batch` gemms; strides in elements (0 shares an operand). */
export interface BatchedGemmArgs extends GemmArgs {
  batch: number;
  strideA: number; strideB: number; strideC: number;
}

/** gemm with A, B and C each f32/f16/bf16 (default f32); batched when `batch` is given. */
export interface GemmExArgs extends GemmArgs {
  aDtype?: DType; bDtype?: DType; cDtype?: DType;
  /** Batch count; then strides in elements of each operand's type (0 shares A or B). */
  batch?: number;
  strideA?: number; strideB?: number; strideC?: number;
}

/** C (m x n, f32) = alpha * dequant(A) * B + beta * C; A m x k in GGML blocks. */
export interface GemmQArgs {
  format: "q8_0" | "q4_0";
  m: number; n: number; k: number;
  a: number; b: number; c: number;
  bDtype?: "f32" | "f16";
  ldb?: number; ldc?: number;
  alpha?: number; beta?: number;
}

/** NCHW convolution (cross-correlation), filter [K, C/groups, R, S]. */
export interface Conv2dArgs {
  input: number; inputShape: [number, number, number, number];
  filter: number; filterShape: [number, number, number, number];
  output: number; outputShape: [number, number, number, number];
  /** Default [1, 1]. */
  stride?: [number, number];
  /** [h, w] or [top, bottom, left, right]; default zeros. */
  padding?: [number, number] | [number, number, number, number];
  /** Default [1, 1]. */
  dilation?: [number, number];
  /** Default 1. */
  groups?: number;
  bias?: number | null;
  /** Storage of input, filter, bias and output; default "f32". */
  dtype?: DType;
}

/** An attention operand: an address of a contiguous [b, h, s, d] tensor, or strides (elements). */
export type HeadTensor = number | { ptr: number; batchStride?: number; headStride?: number; rowStride?: number };

/** Fused attention: O = softmax(scale * Q K^T + mask) V, with GQA, causal, window, soft cap. */
export interface AttentionArgs {
  batch: number; heads: number; seqQ: number; seqKv: number; headDim: number;
  /** Default heads; heads % kvHeads == 0. */
  kvHeads?: number;
  /** Default headDim. */
  vHeadDim?: number;
  q: HeadTensor; k: HeadTensor; v: HeadTensor; o: HeadTensor;
  /** Default 1 / sqrt(headDim). */
  scale?: number;
  causal?: boolean;
  /** An additive [seqQ, seqKv] f32 mask, shared or per batch/head. */
  mask?: number | { ptr: number; batch?: number; heads?: number } | null;
  softcap?: number | null;
  window?: number | null;
  /** Storage of Q, K, V and O (the mask stays f32); default "f32". */
  dtype?: DType;
}
"#;
