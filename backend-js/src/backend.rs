//! `Backend`: every call of the `ComputeBackend` trait and its extensions, on device
//! pointers that are JS numbers, with every argument checked (`args`) and every error a
//! `BackendError` subclass (`error`).

use std::rc::Rc;

use backend_api::{
    AttentionArgs, AttentionMask, BackendTranspose, BinaryOp, ComputeBackend, ComputeBackendExt,
    Conv2dArgs, DType, HeadTensor, QuantFormat, ReduceOp, RowOp, UnaryOp, UnaryParamOp,
};
use backend_wasm::{Engine, WasmBackend};
use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::args::{self, ptr, ptr_out, size};
use crate::device::DeviceArena;
use crate::driver::{Driver, WasmSlice};
use crate::error::{IntoJs, JsResult, invalid, to_js};

/// A compute backend in the browser: WebGPU, or the fast CPU engine where WebGPU is
/// missing or a software adapter. See docs/WEB.md.
#[wasm_bindgen]
#[derive(Debug, Clone)]
pub struct Backend {
    pub(crate) inner: Rc<WasmBackend>,
}

/// `name` as a variant of one of the trait's enums, or `InvalidArgumentError` listing them.
macro_rules! parse {
    ($op:expr, $what:literal, $ty:ty, $name:expr) => {
        args::named($op, $what, &$name, <$ty>::from_name, <$ty>::ALL)
    };
}

fn set(o: &Object, k: &str, v: impl Into<JsValue>) {
    let _ = Reflect::set(o, &k.into(), &v.into());
}

/// The bytes of an `ArrayBuffer` or of any `ArrayBufferView`, as a `Uint8Array`.
fn bytes_of(op: &str, name: &str, v: &JsValue) -> JsResult<js_sys::Uint8Array> {
    if v.is_instance_of::<js_sys::ArrayBuffer>() || v.is_instance_of::<js_sys::SharedArrayBuffer>()
    {
        return Ok(js_sys::Uint8Array::new(v));
    }
    if js_sys::ArrayBuffer::is_view(v) {
        let get = |k: &str| Reflect::get(v, &k.into()).ok();
        let buffer = get("buffer").unwrap_or(JsValue::UNDEFINED);
        let off = get("byteOffset").and_then(|x| x.as_f64()).unwrap_or(0.0);
        let len = get("byteLength").and_then(|x| x.as_f64()).unwrap_or(0.0);
        return Ok(js_sys::Uint8Array::new_with_byte_offset_and_length(
            &buffer, off as u32, len as u32,
        ));
    }
    Err(invalid(format!(
        "{op}: {name} must be a typed array, a DataView or an ArrayBuffer"
    )))
}

fn dtype_arg(op: &str, dtype: Option<String>) -> JsResult<DType> {
    match dtype {
        None => Ok(DType::F32),
        Some(d) => parse!(op, "dtype", DType, d),
    }
}

/// The `HeadTensor` in field `name` of `obj`: `{ ptr, batchStride?, headStride?,
/// rowStride? }` or a bare address (then contiguous `[b, h, s, d]`, `dense`'s strides).
fn head_tensor(op: &str, obj: &JsValue, name: &str, dense: HeadTensor) -> JsResult<HeadTensor> {
    let v = &args::object_field(op, obj, name)?;
    if let Some(p) = v.as_f64() {
        return Ok(HeadTensor {
            ptr: ptr(op, name, p)?,
            ..dense
        });
    }
    if !v.is_object() {
        return Err(invalid(format!(
            "{op}: {name} must be an address or {{ ptr, batchStride, headStride, rowStride }}"
        )));
    }
    Ok(HeadTensor {
        ptr: args::ptr_field(op, v, "ptr")?,
        batch_stride: args::size_field_or(op, v, "batchStride", dense.batch_stride)?,
        head_stride: args::size_field_or(op, v, "headStride", dense.head_stride)?,
        row_stride: args::size_field_or(op, v, "rowStride", dense.row_stride)?,
    })
}

/// `InvalidArgumentError` unless the page has a `<canvas>` with id `id`.
fn check_canvas(id: &str) -> JsResult<()> {
    let document =
        Reflect::get(&js_sys::global(), &"document".into()).unwrap_or(JsValue::UNDEFINED);
    if document.is_undefined() {
        return Err(invalid(format!(
            "Backend.create: canvas {id:?} given where there is no document (a worker?): leave it out"
        )));
    }
    let get = Reflect::get(&document, &"getElementById".into())?;
    let el = get
        .unchecked_ref::<js_sys::Function>()
        .call1(&document, &id.into())?;
    if el.is_null() {
        return Err(invalid(format!(
            "Backend.create: no element with id {id:?}"
        )));
    }
    if !Reflect::get(&el, &"getContext".into())?.is_function() {
        return Err(invalid(format!(
            "Backend.create: the element {id:?} is not a canvas"
        )));
    }
    Ok(())
}

/// The fields every gemm flavour shares, with the trait's defaults (dense leading
/// dimensions, `alpha` 1, `beta` 0).
struct GemmFields {
    ta: BackendTranspose,
    tb: BackendTranspose,
    m: usize,
    n: usize,
    k: usize,
    alpha: f64,
    a: u64,
    lda: usize,
    b: u64,
    ldb: usize,
    beta: f64,
    c: u64,
    ldc: usize,
}

impl GemmFields {
    fn read(op: &str, o: &JsValue) -> JsResult<Self> {
        let (m, n, k) = (
            args::size_field(op, o, "m")?,
            args::size_field(op, o, "n")?,
            args::size_field(op, o, "k")?,
        );
        let (ta, tb) = (transpose(op, o, "transA")?, transpose(op, o, "transB")?);
        let rows_a = if ta.is_transposed() { k } else { m };
        let rows_b = if tb.is_transposed() { n } else { k };
        Ok(Self {
            ta,
            tb,
            m,
            n,
            k,
            alpha: args::f64_field_or(op, o, "alpha", 1.0)?,
            a: args::ptr_field(op, o, "a")?,
            lda: args::size_field_or(op, o, "lda", rows_a.max(1))?,
            b: args::ptr_field(op, o, "b")?,
            ldb: args::size_field_or(op, o, "ldb", rows_b.max(1))?,
            beta: args::f64_field_or(op, o, "beta", 0.0)?,
            c: args::ptr_field(op, o, "c")?,
            ldc: args::size_field_or(op, o, "ldc", m.max(1))?,
        })
    }
}

fn transpose(op: &str, obj: &JsValue, name: &str) -> JsResult<BackendTranspose> {
    if args::bool_field_or(op, obj, name, false)? {
        Ok(BackendTranspose::Trans)
    } else {
        Ok(BackendTranspose::NoTrans)
    }
}

#[wasm_bindgen]
impl Backend {
    /// Opens a backend. `engine`: `"auto"` (default: WebGPU on a hardware adapter, else
    /// the CPU engine), `"webgpu"` (WebGPU or an error, software adapters included) or
    /// `"cpu"`. `canvas`: the id of the page's `<canvas>` (checked even on the CPU
    /// engine); leave it out in a worker.
    #[wasm_bindgen(unchecked_return_type = "Promise<Backend>")]
    pub fn create(
        #[wasm_bindgen(unchecked_optional_param_type = "string")] canvas: Option<String>,
        #[wasm_bindgen(unchecked_optional_param_type = "\"auto\" | \"webgpu\" | \"cpu\"")]
        engine: Option<String>,
    ) -> js_sys::Promise {
        future_to_promise(async move {
            let engine = engine.unwrap_or_else(|| "auto".to_string());
            let canvas = canvas.as_deref();
            let b = match engine.as_str() {
                "auto" => WasmBackend::open(canvas).await,
                "webgpu" => match canvas {
                    Some(id) => WasmBackend::init_from_canvas(id).await,
                    None => WasmBackend::init_without_canvas().await,
                },
                "cpu" => {
                    if let Some(id) = canvas {
                        check_canvas(id)?;
                    }
                    WasmBackend::fast_cpu()
                }
                other => {
                    return Err(invalid(format!(
                        "Backend.create: engine {other:?} is not \"auto\", \"webgpu\" or \"cpu\""
                    )));
                }
            }
            .map_err(|e| to_js(e.into()))?;
            Ok(Backend { inner: Rc::new(b) }.into())
        })
    }

    /// The fast CPU engine, synchronously.
    #[wasm_bindgen(js_name = createCpu)]
    pub fn create_cpu() -> JsResult<Backend> {
        let b = WasmBackend::fast_cpu().map_err(|e| to_js(e.into()))?;
        Ok(Backend { inner: Rc::new(b) })
    }

    /// E.g. `"webgpu (BrowserWebGpu, google swiftshader)"` or `"fast-cpu (wasm simd128, one thread)"`.
    #[wasm_bindgen(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_string()
    }

    /// `"webgpu"` or `"cpu"`.
    #[wasm_bindgen(getter, unchecked_return_type = "\"webgpu\" | \"cpu\"")]
    pub fn engine(&self) -> String {
        match self.inner.engine() {
            Engine::WebGpu => "webgpu",
            Engine::FastCpu => "cpu",
        }
        .to_string()
    }

    /// Why `Backend.create` chose the CPU engine (`undefined` on WebGPU or when asked for).
    #[wasm_bindgen(getter, js_name = fallbackReason)]
    pub fn fallback_reason(&self) -> Option<String> {
        self.inner.fallback_reason().map(str::to_string)
    }

    /// The adapter, as wgpu and the browser describe it; `undefined` on the CPU engine.
    #[wasm_bindgen(getter, js_name = adapterInfo, unchecked_return_type = "AdapterInfo | undefined")]
    pub fn adapter_info(&self) -> JsValue {
        let Some(a) = self.inner.adapter() else {
            return JsValue::UNDEFINED;
        };
        let o = Object::new();
        set(&o, "name", a.name.as_str());
        set(&o, "backend", a.backend.as_str());
        set(&o, "deviceType", a.device_type.as_str());
        set(&o, "driver", a.driver.as_str());
        let features = js_sys::Array::new();
        for f in &a.features {
            features.push(&f.as_str().into());
        }
        set(&o, "features", features);
        set(&o, "maxBufferSize", a.max_buffer_size as f64);
        set(&o, "maxStorageBinding", a.max_storage_binding as f64);
        set(&o, "maxWorkgroupStorage", a.max_workgroup_storage);
        set(&o, "maxInvocations", a.max_invocations);
        set(&o, "subgroupMinSize", a.subgroup_min_size);
        if let Some(i) = self.inner.browser_adapter() {
            set(&o, "vendor", i.vendor.as_str());
            set(&o, "architecture", i.architecture.as_str());
            set(&o, "device", i.device.as_str());
            set(&o, "description", i.description.as_str());
            set(&o, "isFallbackAdapter", i.is_fallback);
        }
        o.into()
    }

    /// The module's linear memory: heap, frame and arena slices, typed views.
    #[wasm_bindgen(getter)]
    pub fn driver(&self) -> Driver {
        Driver::new()
    }

    // ---- memory -------------------------------------------------------------------

    /// `bytes` bytes of device memory (contents unspecified); its address.
    pub fn alloc(&self, bytes: f64) -> JsResult<f64> {
        let p = self.inner.alloc(size("alloc", "bytes", bytes)?).js()?;
        ptr_out("alloc", p)
    }

    /// Frees an allocation (every alias into it dies with it).
    pub fn free(&self, ptr: f64) -> JsResult<()> {
        self.inner.free(args::ptr("free", "ptr", ptr)?).js()
    }

    /// A new, never-reused address for `bytes` bytes at `ptr` (inside one allocation).
    pub fn alias(&self, ptr: f64, bytes: f64) -> JsResult<f64> {
        let p = self
            .inner
            .alias(
                args::ptr("alias", "ptr", ptr)?,
                size("alias", "bytes", bytes)?,
            )
            .js()?;
        ptr_out("alias", p)
    }

    /// Ends an alias: every later use of its addresses is an `InvalidArgumentError`.
    pub fn retire(&self, alias: f64) -> JsResult<()> {
        self.inner
            .retire(
                args::ptr("retire", "alias", alias)?,
                backend_api::Retired::Freed,
            )
            .js()
    }

    /// `{ allocatedBytes, reservedBytes, liveAllocations, stagedBytes }` (`stagedBytes`:
    /// bytes copied through intermediate buffers since `create`; see docs/WEB.md).
    #[wasm_bindgen(js_name = memoryInfo, unchecked_return_type = "MemoryInfo")]
    pub fn memory_info(&self) -> JsResult<JsValue> {
        let m = self.inner.memory_info().js()?;
        let o = Object::new();
        set(&o, "allocatedBytes", m.allocated_bytes as f64);
        set(&o, "reservedBytes", m.reserved_bytes as f64);
        set(&o, "liveAllocations", m.live_allocations as f64);
        set(&o, "stagedBytes", m.staged_bytes as f64);
        Ok(o.into())
    }

    /// Copies the bytes of `src` (any typed array, `DataView` or `ArrayBuffer`) to `dst`.
    pub fn write(
        &self,
        dst: f64,
        #[wasm_bindgen(unchecked_param_type = "ArrayBufferView | ArrayBuffer")] src: JsValue,
    ) -> JsResult<()> {
        let dst = ptr("write", "dst", dst)?;
        let bytes = bytes_of("write", "src", &src)?.to_vec();
        self.inner.copy_htod(dst, &bytes).js()
    }

    /// Allocates room for `data` (a `Float32Array` or an array of numbers) and copies it
    /// there; the address.
    #[wasm_bindgen(js_name = uploadF32)]
    pub fn upload_f32(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Float32Array | ArrayLike<number>")] data: JsValue,
    ) -> JsResult<f64> {
        let v: Vec<f32> = if data.is_instance_of::<js_sys::Float32Array>() {
            data.unchecked_ref::<js_sys::Float32Array>().to_vec()
        } else if js_sys::Array::is_array(&data) {
            js_sys::Float32Array::new(&data).to_vec()
        } else {
            return Err(invalid(
                "uploadF32: data must be a Float32Array or an array of numbers",
            ));
        };
        let p = self.inner.upload(&v).js()?;
        ptr_out("uploadF32", p)
    }

    /// Resolves once the device bytes at `src` fill `dst` (any typed array, `DataView` or
    /// `ArrayBuffer`, its whole byte length).
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn read(
        &self,
        src: f64,
        #[wasm_bindgen(unchecked_param_type = "ArrayBufferView | ArrayBuffer")] dst: JsValue,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let src = ptr("read", "src", src)?;
            let out = bytes_of("read", "dst", &dst)?;
            let mut buf = vec![0u8; out.length() as usize];
            inner.copy_dtoh_async(&mut buf, src).await.js()?;
            out.copy_from(&buf);
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Several reads in one submission and one wait (`copy_dtoh_many`), all or nothing:
    /// `reads` is an array of `[src, dst]` pairs (`dst` any typed array, `DataView` or
    /// `ArrayBuffer`, its whole byte length); a bad entry rejects the promise and no
    /// destination is written.
    #[wasm_bindgen(js_name = readMany, unchecked_return_type = "Promise<void>")]
    pub fn read_many(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Array<[number, ArrayBufferView | ArrayBuffer]>")]
        reads: JsValue,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let op = "readMany";
            if !js_sys::Array::is_array(&reads) {
                return Err(invalid(format!(
                    "{op}: reads must be an array of [src, dst] pairs"
                )));
            }
            let mut plan = Vec::new();
            for (i, entry) in js_sys::Array::from(&reads).iter().enumerate() {
                let pair = js_sys::Array::from(&entry);
                if !js_sys::Array::is_array(&entry) || pair.length() != 2 {
                    return Err(invalid(format!(
                        "{op}: reads[{i}] must be a [src, dst] pair"
                    )));
                }
                let src = pair
                    .get(0)
                    .as_f64()
                    .ok_or_else(|| invalid(format!("{op}: reads[{i}][0] must be a number")))?;
                let src = ptr(op, &format!("reads[{i}] src"), src)?;
                let dst = bytes_of(op, &format!("reads[{i}] dst"), &pair.get(1))?;
                plan.push((src, dst));
            }
            let mut bufs: Vec<Vec<u8>> = plan
                .iter()
                .map(|(_, d)| vec![0u8; d.length() as usize])
                .collect();
            {
                let mut list: Vec<(u64, &mut [u8])> = plan
                    .iter()
                    .zip(bufs.iter_mut())
                    .map(|((src, _), b)| (*src, b.as_mut_slice()))
                    .collect();
                inner.copy_dtoh_many_async(&mut list).await.js()?;
            }
            for ((_, dst), buf) in plan.iter().zip(&bufs) {
                dst.copy_from(buf);
            }
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Resolves to a new `Float32Array` of the `len` floats at `src`.
    #[wasm_bindgen(js_name = readF32, unchecked_return_type = "Promise<Float32Array>")]
    pub fn read_f32(&self, src: f64, len: f64) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let src = ptr("readF32", "src", src)?;
            let len = size("readF32", "len", len)?;
            let bytes = len
                .checked_mul(4)
                .ok_or_else(|| invalid("readF32: len overflows"))?;
            let mut buf = vec![0u8; bytes];
            inner.copy_dtoh_async(&mut buf, src).await.js()?;
            let out = js_sys::Float32Array::new_with_length(len as u32);
            js_sys::Uint8Array::new(&out.buffer()).copy_from(&buf);
            Ok(out.into())
        })
    }

    /// Copies a live host slice to the device at `devicePtr`, straight from linear memory
    /// (no JS-side copy).
    pub fn upload(
        &self,
        slice: &WasmSlice,
        #[wasm_bindgen(js_name = devicePtr)] device_ptr: f64,
    ) -> JsResult<()> {
        let dst = ptr("upload", "devicePtr", device_ptr)?;
        slice.with_bytes(|b| self.inner.copy_htod(dst, b))?.js()
    }

    /// Resolves once the slice's bytes hold the device bytes at `devicePtr`. Rejects
    /// (writing nothing) if the slice died while the copy was in flight.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn download(
        &self,
        #[wasm_bindgen(js_name = devicePtr)] device_ptr: f64,
        slice: &WasmSlice,
    ) -> js_sys::Promise {
        let inner = self.inner.clone();
        let slice = slice.clone();
        future_to_promise(async move {
            let src = ptr("download", "devicePtr", device_ptr)?;
            slice.assert_alive()?;
            let mut buf = vec![0u8; slice.byte_len()];
            inner.copy_dtoh_async(&mut buf, src).await.js()?;
            slice.write_bytes(&buf)?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// `bytes` bytes from `src` to `dst` on the device.
    pub fn copy(&self, dst: f64, src: f64, bytes: f64) -> JsResult<()> {
        let op = "copy";
        self.inner
            .copy_dtod(
                ptr(op, "dst", dst)?,
                ptr(op, "src", src)?,
                size(op, "bytes", bytes)?,
            )
            .js()
    }

    /// Resolves when every queued op has finished; rejects with the first error one hit.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn synchronize(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            inner.synchronize_async().await.js()?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// A device frame arena of `capBytes` bytes: slices are aliases that die at `reset()`.
    #[wasm_bindgen(js_name = createFrameArena)]
    pub fn create_frame_arena(
        &self,
        #[wasm_bindgen(js_name = capBytes)] cap_bytes: f64,
        align: Option<f64>,
    ) -> JsResult<DeviceArena> {
        DeviceArena::new(self.inner.clone(), true, cap_bytes, align)
    }

    /// A caller-managed device arena (slices die at its `reset()` or `release()`).
    #[wasm_bindgen(js_name = createHeapArena)]
    pub fn create_heap_arena(
        &self,
        #[wasm_bindgen(js_name = capBytes)] cap_bytes: f64,
        align: Option<f64>,
    ) -> JsResult<DeviceArena> {
        DeviceArena::new(self.inner.clone(), false, cap_bytes, align)
    }

    // ---- ops ----------------------------------------------------------------------

    /// `C = alpha * op(A) * op(B) + beta * C`, column-major f32 (BLAS `sgemm`).
    pub fn gemm(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GemmArgs")] a: JsValue,
    ) -> JsResult<()> {
        let g = GemmFields::read("gemm", &a)?;
        self.inner
            .gemm(
                g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc,
            )
            .js()
    }

    /// `batch` gemms at element strides `strideA`, `strideB`, `strideC`.
    #[wasm_bindgen(js_name = batchedGemm)]
    pub fn batched_gemm(
        &self,
        #[wasm_bindgen(unchecked_param_type = "BatchedGemmArgs")] a: JsValue,
    ) -> JsResult<()> {
        let op = "batchedGemm";
        let g = GemmFields::read(op, &a)?;
        self.inner
            .batched_gemm(
                g.ta,
                g.tb,
                g.m,
                g.n,
                g.k,
                g.alpha,
                g.a,
                g.lda,
                args::size_field(op, &a, "strideA")?,
                g.b,
                g.ldb,
                args::size_field(op, &a, "strideB")?,
                g.beta,
                g.c,
                g.ldc,
                args::size_field(op, &a, "strideC")?,
                args::size_field(op, &a, "batch")?,
            )
            .js()
    }

    /// gemm with A, B and C each f32/f16/bf16 (`aDtype`, `bDtype`, `cDtype`, default
    /// `"f32"`), f32 accumulation, C rounded once; batched when `batch` is given (with
    /// `strideA`, `strideB`, `strideC` in elements of each operand's type).
    #[wasm_bindgen(js_name = gemmEx)]
    pub fn gemm_ex(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GemmExArgs")] a: JsValue,
    ) -> JsResult<()> {
        let op = "gemmEx";
        let g = GemmFields::read(op, &a)?;
        let dtype = |field: &str| -> JsResult<DType> {
            parse!(
                op,
                "dtype",
                DType,
                args::str_field_or(op, &a, field, "f32")?
            )
        };
        let (ad, bd, cd) = (dtype("aDtype")?, dtype("bDtype")?, dtype("cDtype")?);
        let mut args = backend_api::GemmArgs::new(
            g.ta, g.tb, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc,
        )
        .with_dtypes(ad, bd)
        .with_c_dtype(cd);
        if let Some(count) = args::opt_size_field(op, &a, "batch")? {
            args = args.with_batch(
                args::size_field(op, &a, "strideA")?,
                args::size_field(op, &a, "strideB")?,
                args::size_field(op, &a, "strideC")?,
                count,
            );
        }
        self.inner.batched_gemm_ex(&args).js()
    }

    /// Quantized matmul: `C = alpha * dequant(A) * B + beta * C`, A `m x k` in GGML
    /// blocks (`format`: `"q8_0"` or `"q4_0"`), B `k x n` f32 or f16, C f32.
    #[wasm_bindgen(js_name = gemmQ)]
    pub fn gemm_q(
        &self,
        #[wasm_bindgen(unchecked_param_type = "GemmQArgs")] a: JsValue,
    ) -> JsResult<()> {
        let op = "gemmQ";
        let format = parse!(
            op,
            "format",
            QuantFormat,
            args::str_field_or(op, &a, "format", "")?
        )?;
        let (m, n, k) = (
            args::size_field(op, &a, "m")?,
            args::size_field(op, &a, "n")?,
            args::size_field(op, &a, "k")?,
        );
        let bd = parse!(
            op,
            "dtype",
            DType,
            args::str_field_or(op, &a, "bDtype", "f32")?
        )?;
        self.inner
            .gemm_q(
                format,
                m,
                n,
                k,
                args::f64_field_or(op, &a, "alpha", 1.0)?,
                args::ptr_field(op, &a, "a")?,
                args::ptr_field(op, &a, "b")?,
                bd,
                args::size_field_or(op, &a, "ldb", k.max(1))?,
                args::f64_field_or(op, &a, "beta", 0.0)?,
                args::ptr_field(op, &a, "c")?,
                args::size_field_or(op, &a, "ldc", m.max(1))?,
            )
            .js()
    }

    /// 2-D convolution, NCHW, with stride, padding (`[top, bottom, left, right]` or
    /// `[h, w]`), dilation, groups and an optional bias.
    pub fn conv2d(
        &self,
        #[wasm_bindgen(unchecked_param_type = "Conv2dArgs")] a: JsValue,
    ) -> JsResult<()> {
        let op = "conv2d";
        let padding =
            args::shape(op, "padding", &args::object_field(op, &a, "padding")?).or_else(|e| {
                if args::object_field(op, &a, "padding")?.is_undefined() {
                    Ok(vec![0, 0, 0, 0])
                } else {
                    Err(e)
                }
            })?;
        let padding: [usize; 4] = match padding.as_slice() {
            [h, w] => [*h, *h, *w, *w],
            [t, b, l, r] => [*t, *b, *l, *r],
            p => {
                return Err(invalid(format!(
                    "{op}: padding must have 2 ([h, w]) or 4 ([top, bottom, left, right]) entries (got {})",
                    p.len()
                )));
            }
        };
        let args = Conv2dArgs {
            input: args::ptr_field(op, &a, "input")?,
            input_shape: args::fixed_field(op, &a, "inputShape", None)?,
            filter: args::ptr_field(op, &a, "filter")?,
            filter_shape: args::fixed_field(op, &a, "filterShape", None)?,
            output: args::ptr_field(op, &a, "output")?,
            output_shape: args::fixed_field(op, &a, "outputShape", None)?,
            stride: args::fixed_field(op, &a, "stride", Some([1, 1]))?,
            padding,
            dilation: args::fixed_field(op, &a, "dilation", Some([1, 1]))?,
            groups: args::size_field_or(op, &a, "groups", 1)?,
            bias: args::opt_ptr_field(op, &a, "bias")?,
            dtype: parse!(
                op,
                "dtype",
                DType,
                args::str_field_or(op, &a, "dtype", "f32")?
            )?,
        };
        self.inner.conv2d_forward_ex(&args).js()
    }

    /// Attention with GQA (`kvHeads`), strided operands, an additive `[seqQ, seqKv]` mask
    /// (`mask: { ptr, batch?, heads? }` or an address), causal, sliding window, soft cap.
    pub fn attention(
        &self,
        #[wasm_bindgen(unchecked_param_type = "AttentionArgs")] a: JsValue,
    ) -> JsResult<()> {
        let op = "attention";
        let batch = args::size_field(op, &a, "batch")?;
        let heads = args::size_field(op, &a, "heads")?;
        let kv_heads = args::size_field_or(op, &a, "kvHeads", heads)?;
        let seq_q = args::size_field(op, &a, "seqQ")?;
        let seq_kv = args::size_field(op, &a, "seqKv")?;
        let head_dim = args::size_field(op, &a, "headDim")?;
        let v_head_dim = args::size_field_or(op, &a, "vHeadDim", head_dim)?;
        let dense = |h: usize, s: usize, d: usize| HeadTensor {
            ptr: 0,
            batch_stride: h * s * d,
            head_stride: s * d,
            row_stride: d,
        };
        let mask = args::object_field(op, &a, "mask")?;
        let mask = if mask.is_undefined() || mask.is_null() {
            None
        } else if let Some(p) = mask.as_f64() {
            Some(AttentionMask {
                ptr: ptr(op, "mask", p)?,
                batch: 1,
                heads: 1,
            })
        } else {
            Some(AttentionMask {
                ptr: args::ptr_field(op, &mask, "ptr")?,
                batch: args::size_field_or(op, &mask, "batch", 1)?,
                heads: args::size_field_or(op, &mask, "heads", 1)?,
            })
        };
        let args = AttentionArgs {
            batch,
            heads,
            kv_heads,
            seq_q,
            seq_kv,
            head_dim,
            v_head_dim,
            q: head_tensor(op, &a, "q", dense(heads, seq_q, head_dim))?,
            k: head_tensor(op, &a, "k", dense(kv_heads, seq_kv, head_dim))?,
            v: head_tensor(op, &a, "v", dense(kv_heads, seq_kv, v_head_dim))?,
            o: head_tensor(op, &a, "o", dense(heads, seq_q, v_head_dim))?,
            scale: args::f64_field_or(op, &a, "scale", 1.0 / (head_dim.max(1) as f64).sqrt())?,
            causal: args::bool_field_or(op, &a, "causal", false)?,
            mask,
            softcap: args::opt_f64_field(op, &a, "softcap")?,
            window: args::opt_size_field(op, &a, "window")?,
            dtype: parse!(
                op,
                "dtype",
                DType,
                args::str_field_or(op, &a, "dtype", "f32")?
            )?,
        };
        self.inner.attention_ex(&args).js()
    }

    /// `y[i] = op(x[i])` for `n` elements of `dtype` (`"f32"` default, `"f16"`, `"bf16"`).
    pub fn unary(&self, op: String, x: f64, y: f64, n: f64, dtype: Option<String>) -> JsResult<()> {
        let name = "unary";
        let u = parse!(name, "unary op", UnaryOp, op)?;
        let d = dtype_arg(name, dtype)?;
        self.inner
            .unary_ex(
                u,
                d,
                ptr(name, "x", x)?,
                ptr(name, "y", y)?,
                size(name, "n", n)?,
            )
            .js()
    }

    /// `y[i] = op(x[i]; a, b)`: the parameterised unary ops (`"leaky_relu"`, `"clamp"`, ...)
    /// on `n` elements of `dtype` (`"f32"` default).
    #[wasm_bindgen(js_name = unaryParam)]
    #[allow(clippy::too_many_arguments)]
    pub fn unary_param(
        &self,
        op: String,
        a: f32,
        b: f32,
        x: f64,
        y: f64,
        n: f64,
        dtype: Option<String>,
    ) -> JsResult<()> {
        let name = "unaryParam";
        let u = parse!(name, "unary op", UnaryParamOp, op)?;
        let d = dtype_arg(name, dtype)?;
        self.inner
            .unary_param_ex(
                u,
                d,
                a,
                b,
                ptr(name, "x", x)?,
                ptr(name, "y", y)?,
                size(name, "n", n)?,
            )
            .js()
    }

    /// `out[i] = op(a[i], b[i])` for `n` elements of `dtype`.
    pub fn binary(
        &self,
        op: String,
        a: f64,
        b: f64,
        out: f64,
        n: f64,
        dtype: Option<String>,
    ) -> JsResult<()> {
        let name = "binary";
        let o = parse!(name, "binary op", BinaryOp, op)?;
        let d = dtype_arg(name, dtype)?;
        self.inner
            .binary_ex(
                o,
                d,
                ptr(name, "a", a)?,
                ptr(name, "b", b)?,
                ptr(name, "out", out)?,
                size(name, "n", n)?,
            )
            .js()
    }

    /// `out = op(a, b)` with NumPy broadcasting of `aShape` and `bShape` to `outShape`.
    #[wasm_bindgen(js_name = binaryBroadcast)]
    pub fn binary_broadcast(
        &self,
        op: String,
        a: f64,
        #[wasm_bindgen(js_name = aShape, unchecked_param_type = "number[]")] a_shape: JsValue,
        b: f64,
        #[wasm_bindgen(js_name = bShape, unchecked_param_type = "number[]")] b_shape: JsValue,
        out: f64,
        #[wasm_bindgen(js_name = outShape, unchecked_param_type = "number[]")] out_shape: JsValue,
        dtype: Option<String>,
    ) -> JsResult<()> {
        let name = "binaryBroadcast";
        let o = parse!(name, "binary op", BinaryOp, op)?;
        let d = dtype_arg(name, dtype)?;
        self.inner
            .binary_broadcast_ex(
                o,
                d,
                ptr(name, "a", a)?,
                &args::shape(name, "aShape", &a_shape)?,
                ptr(name, "b", b)?,
                &args::shape(name, "bShape", &b_shape)?,
                ptr(name, "out", out)?,
                &args::shape(name, "outShape", &out_shape)?,
            )
            .js()
    }

    /// Reduces the row-major tensor of `shape` over `axis` (`"sum"`, `"mean"`, `"max"`, ...).
    pub fn reduce(
        &self,
        op: String,
        x: f64,
        y: f64,
        #[wasm_bindgen(unchecked_param_type = "number[]")] shape: JsValue,
        axis: f64,
        dtype: Option<String>,
    ) -> JsResult<()> {
        let name = "reduce";
        let r = parse!(name, "reduce op", ReduceOp, op)?;
        let d = dtype_arg(name, dtype)?;
        self.inner
            .reduce_ex(
                r,
                d,
                ptr(name, "x", x)?,
                ptr(name, "y", y)?,
                &args::shape(name, "shape", &shape)?,
                size(name, "axis", axis)?,
            )
            .js()
    }

    /// Softmax over each of `rows` rows of `cols` values of `dtype` (`"f32"` default).
    pub fn softmax(
        &self,
        x: f64,
        y: f64,
        rows: f64,
        cols: f64,
        dtype: Option<String>,
    ) -> JsResult<()> {
        let none = JsValue::NULL;
        let shape = (rows, cols, 0.0);
        self.row_op("softmax", RowOp::Softmax, x, &none, &none, y, shape, dtype)
    }

    /// Log-softmax over each row (values of `dtype`, `"f32"` default).
    #[wasm_bindgen(js_name = logSoftmax)]
    pub fn log_softmax(
        &self,
        x: f64,
        y: f64,
        rows: f64,
        cols: f64,
        dtype: Option<String>,
    ) -> JsResult<()> {
        let none = JsValue::NULL;
        let shape = (rows, cols, 0.0);
        self.row_op(
            "logSoftmax",
            RowOp::LogSoftmax,
            x,
            &none,
            &none,
            y,
            shape,
            dtype,
        )
    }

    /// Layer norm of each row, with optional `gamma` and `beta` (`null` for none); all of
    /// `dtype` (`"f32"` default).
    #[wasm_bindgen(js_name = layerNorm)]
    pub fn layer_norm(
        &self,
        x: f64,
        #[wasm_bindgen(unchecked_param_type = "number | null | undefined")] gamma: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number | null | undefined")] beta: JsValue,
        y: f64,
        rows: f64,
        cols: f64,
        eps: f64,
        dtype: Option<String>,
    ) -> JsResult<()> {
        let shape = (rows, cols, eps);
        self.row_op(
            "layerNorm",
            RowOp::LayerNorm,
            x,
            &gamma,
            &beta,
            y,
            shape,
            dtype,
        )
    }

    /// RMS norm of each row, with an optional `gamma`; all of `dtype` (`"f32"` default).
    #[wasm_bindgen(js_name = rmsNorm)]
    pub fn rms_norm(
        &self,
        x: f64,
        #[wasm_bindgen(unchecked_param_type = "number | null | undefined")] gamma: JsValue,
        y: f64,
        rows: f64,
        cols: f64,
        eps: f64,
        dtype: Option<String>,
    ) -> JsResult<()> {
        let shape = (rows, cols, eps);
        self.row_op(
            "rmsNorm",
            RowOp::RmsNorm,
            x,
            &gamma,
            &JsValue::NULL,
            y,
            shape,
            dtype,
        )
    }

    /// `out[i] = table[indices[i]]` (rows of `cols` values of `dtype`, `"f32"` default;
    /// `indices` u32).
    #[allow(clippy::too_many_arguments)]
    pub fn gather(
        &self,
        table: f64,
        rows: f64,
        cols: f64,
        indices: f64,
        n: f64,
        out: f64,
        dtype: Option<String>,
    ) -> JsResult<()> {
        let op = "gather";
        let d = dtype_arg(op, dtype)?;
        self.inner
            .gather_ex(
                d,
                ptr(op, "table", table)?,
                size(op, "rows", rows)?,
                size(op, "cols", cols)?,
                ptr(op, "indices", indices)?,
                size(op, "n", n)?,
                ptr(op, "out", out)?,
            )
            .js()
    }

    /// Converts `n` elements from `srcDtype` to `dstDtype`.
    pub fn cast(
        &self,
        src: f64,
        #[wasm_bindgen(js_name = srcDtype)] src_dtype: String,
        dst: f64,
        #[wasm_bindgen(js_name = dstDtype)] dst_dtype: String,
        n: f64,
    ) -> JsResult<()> {
        let op = "cast";
        let sd = parse!(op, "dtype", DType, src_dtype)?;
        let dd = parse!(op, "dtype", DType, dst_dtype)?;
        self.inner
            .cast(
                ptr(op, "src", src)?,
                sd,
                ptr(op, "dst", dst)?,
                dd,
                size(op, "n", n)?,
            )
            .js()
    }
}

impl Backend {
    /// The four row ops: `rows_ex` with the arguments checked under the JS method's `name`;
    /// `shape` is `(rows, cols, eps)`.
    fn row_op(
        &self,
        name: &str,
        kind: RowOp,
        x: f64,
        gamma: &JsValue,
        beta: &JsValue,
        y: f64,
        (rows, cols, eps): (f64, f64, f64),
        dtype: Option<String>,
    ) -> JsResult<()> {
        let d = dtype_arg(name, dtype)?;
        self.inner
            .rows_ex(
                kind,
                d,
                ptr(name, "x", x)?,
                args::opt_ptr(name, "gamma", gamma)?,
                args::opt_ptr(name, "beta", beta)?,
                ptr(name, "y", y)?,
                size(name, "rows", rows)?,
                size(name, "cols", cols)?,
                eps,
            )
            .js()
    }
}
