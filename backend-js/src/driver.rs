//! `backend.driver`: the module's linear memory as the seed WasmGPU.driver shows it to
//! JavaScript — typed views, and typed slices from a heap, from the driver's frame arena
//! (every slice dies at `frame.reset()`) and from caller-managed heap arenas.
//!
//! The bytes are Rust allocations inside linear memory (a `Vec<u8>` per heap slice, one
//! per arena), so `backend.upload(slice, ptr)` hands them to the backend in place and
//! views are plain typed arrays over `memory.buffer`. Host addresses are reused by the
//! allocator, so liveness is not a property of the address: a heap slice carries the
//! id of its allocation, an arena slice the arena's id and epoch, and every use checks
//! them. A view is re-derived from `memory.buffer` at each `view()`, so one taken after
//! the memory grew is never a detached buffer.

use std::cell::RefCell;
use std::collections::HashMap;

use backend_api::memory::ElemType;
use js_sys::{Array, Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::args;
use crate::error::{JsResult, invalid, oom, unsupported};

/// The element types of host slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostDType {
    F32,
    U32,
    I32,
    U8,
}

impl HostDType {
    const ALL: [HostDType; 4] = [Self::F32, Self::U32, Self::I32, Self::U8];

    /// The storage type it is (host slices hold the types that have a typed array).
    const fn elem(self) -> ElemType {
        match self {
            Self::F32 => ElemType::F32,
            Self::U32 => ElemType::U32,
            Self::I32 => ElemType::I32,
            Self::U8 => ElemType::U8,
        }
    }

    pub(crate) const fn size(self) -> usize {
        self.elem().size_bytes()
    }

    pub(crate) const fn name(self) -> &'static str {
        self.elem().name()
    }

    fn from_name(op: &str, name: &str) -> JsResult<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == name)
            .ok_or_else(|| {
                invalid(format!(
                    "{op}: unknown dtype {name:?}; known: f32, u32, i32, u8"
                ))
            })
    }

    /// A typed array of this type over `buffer`.
    fn view(self, buffer: &JsValue, byte_offset: usize, len: usize) -> JsValue {
        let (o, l) = (byte_offset as u32, len as u32);
        match self {
            Self::F32 => js_sys::Float32Array::new_with_byte_offset_and_length(buffer, o, l).into(),
            Self::U32 => js_sys::Uint32Array::new_with_byte_offset_and_length(buffer, o, l).into(),
            Self::I32 => js_sys::Int32Array::new_with_byte_offset_and_length(buffer, o, l).into(),
            Self::U8 => js_sys::Uint8Array::new_with_byte_offset_and_length(buffer, o, l).into(),
        }
    }
}

/// What a slice lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Heap,
    Frame,
    Arena,
}

impl Kind {
    const fn name(self) -> &'static str {
        match self {
            Self::Heap => "heap",
            Self::Frame => "frame",
            Self::Arena => "arena",
        }
    }
}

/// One heap slice's allocation.
#[derive(Debug)]
struct Block {
    buf: Vec<u8>,
    /// Offset of the aligned start in `buf`.
    start: usize,
}

/// A frame or heap arena: one allocation, bump-allocated, reset by epochs.
#[derive(Debug)]
struct ArenaState {
    kind: Kind,
    buf: Vec<u8>,
    /// Offset of the aligned start in `buf`.
    start: usize,
    capacity: usize,
    align: usize,
    used: usize,
    epoch: u64,
}

impl ArenaState {
    fn base(&self) -> usize {
        self.buf.as_ptr() as usize + self.start
    }
}

/// Every host allocation of the module.
#[derive(Debug, Default)]
struct Host {
    heap: HashMap<u64, Block>,
    arenas: HashMap<u64, ArenaState>,
    next_id: u64,
    /// The driver's frame arena (created at its first use).
    frame: Option<u64>,
    frame_capacity: Option<usize>,
}

thread_local! {
    static HOST: RefCell<Host> = RefCell::new(Host::default());
}

/// The frame arena's capacity until `driver.frame.reserve` changes it.
pub(crate) const DEFAULT_FRAME_BYTES: usize = 4 << 20;

/// `bytes` zeroed bytes plus room to align the start to `align`, or `OutOfMemoryError`.
fn zeroed(op: &str, bytes: usize, align: usize) -> JsResult<(Vec<u8>, usize)> {
    let total = bytes
        .checked_add(align)
        .ok_or_else(|| invalid(format!("{op}: {bytes} bytes overflow the address space")))?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(total).map_err(|_| {
        oom(format!(
            "{op}: the module's memory cannot grow by {total} bytes"
        ))
    })?;
    buf.resize(total, 0);
    let addr = buf.as_ptr() as usize;
    let start = addr.next_multiple_of(align) - addr;
    Ok((buf, start))
}

/// `len` elements of `dtype` in bytes, and the alignment: `align` (default the element
/// size) must be a power of two; it is raised to the element size.
fn layout(
    op: &str,
    dtype: HostDType,
    len: f64,
    align: Option<f64>,
) -> JsResult<(usize, usize, usize)> {
    let len = args::size(op, "len", len)?;
    let align = match align {
        None => dtype.size(),
        Some(a) => args::size(op, "align", a)?,
    };
    if !align.is_power_of_two() {
        return Err(invalid(format!(
            "{op}: align {align} must be a power of two"
        )));
    }
    let bytes = len
        .checked_mul(dtype.size())
        .ok_or_else(|| invalid(format!("{op}: {len} elements overflow the address space")))?;
    Ok((len, bytes, align.max(dtype.size())))
}

/// The module's `WebAssembly.Memory`.
fn memory() -> js_sys::WebAssembly::Memory {
    wasm_bindgen::memory().unchecked_into()
}

/// `memory.buffer` now (a new object after each growth).
pub(crate) fn memory_buffer() -> JsValue {
    memory().buffer()
}

/// The `BYTES_PER_ELEMENT` of a typed-array constructor.
fn bytes_per_element(op: &str, ctor: &JsValue) -> JsResult<usize> {
    if !ctor.is_function() {
        return Err(invalid(format!(
            "{op}: ctor must be a typed-array constructor such as Float32Array"
        )));
    }
    Reflect::get(ctor, &"BYTES_PER_ELEMENT".into())
        .ok()
        .and_then(|v| v.as_f64())
        .filter(|&b| b >= 1.0)
        .map(|b| b as usize)
        .ok_or_else(|| {
            invalid(format!(
                "{op}: ctor must be a typed-array constructor such as Float32Array (it has no BYTES_PER_ELEMENT)"
            ))
        })
}

/// The byte length of an `ArrayBuffer` or `SharedArrayBuffer`.
fn byte_length(op: &str, buffer: &JsValue) -> JsResult<usize> {
    if !(buffer.is_instance_of::<js_sys::ArrayBuffer>()
        || buffer.is_instance_of::<js_sys::SharedArrayBuffer>())
    {
        return Err(invalid(format!(
            "{op}: buffer must be an ArrayBuffer or a SharedArrayBuffer"
        )));
    }
    Reflect::get(buffer, &"byteLength".into())
        .ok()
        .and_then(|v| v.as_f64())
        .map(|b| b as usize)
        .ok_or_else(|| invalid(format!("{op}: buffer has no byteLength")))
}

/// `new ctor(buffer, ptr, len)` after checking the range and the alignment.
fn view_on(op: &str, ctor: &JsValue, buffer: &JsValue, ptr: f64, len: f64) -> JsResult<JsValue> {
    let bpe = bytes_per_element(op, ctor)?;
    let ptr = args::size(op, "ptr", ptr)?;
    let len = args::size(op, "len", len)?;
    let have = byte_length(op, buffer)?;
    if ptr % bpe != 0 {
        return Err(invalid(format!(
            "{op}: ptr {ptr} is not a multiple of the element size {bpe}"
        )));
    }
    let end = len.checked_mul(bpe).and_then(|b| b.checked_add(ptr));
    match end {
        Some(end) if end <= have => {}
        _ => {
            return Err(invalid(format!(
                "{op}: {len} elements of {bpe} bytes at {ptr} leave the buffer's {have} bytes"
            )));
        }
    }
    Reflect::construct(
        ctor.unchecked_ref::<js_sys::Function>(),
        &Array::of3(
            buffer,
            &JsValue::from(ptr as f64),
            &JsValue::from(len as f64),
        ),
    )
}

/// The linear memory of this module, seen from JavaScript. See the [module docs](self).
#[wasm_bindgen]
#[derive(Debug, Default)]
pub struct Driver {}

#[wasm_bindgen]
impl Driver {
    /// The driver of this module (there is one linear memory, so every `Driver` is the same).
    #[wasm_bindgen(constructor)]
    pub fn new() -> Driver {
        Driver {}
    }

    /// `memory.buffer` now: an `ArrayBuffer`, or a `SharedArrayBuffer` when the module's
    /// memory is shared. A new object after every growth: take it again, never keep it.
    #[wasm_bindgen(unchecked_return_type = "ArrayBuffer | SharedArrayBuffer")]
    pub fn buffer(&self) -> JsValue {
        memory_buffer()
    }

    /// A `Uint8Array` over the whole linear memory now.
    pub fn bytes(&self) -> js_sys::Uint8Array {
        js_sys::Uint8Array::new(&memory_buffer())
    }

    /// Whether the module's memory is a `SharedArrayBuffer` (a build with threads, served
    /// cross-origin isolated). This build's is not.
    #[wasm_bindgen(js_name = isSharedMemory)]
    pub fn is_shared_memory(&self) -> bool {
        memory_buffer().is_instance_of::<js_sys::SharedArrayBuffer>()
    }

    /// Whether the page (or worker) is cross-origin isolated (served with
    /// `Cross-Origin-Opener-Policy: same-origin` and `Cross-Origin-Embedder-Policy:
    /// require-corp`), the condition for a `SharedArrayBuffer` memory.
    #[wasm_bindgen(js_name = crossOriginIsolated)]
    pub fn cross_origin_isolated(&self) -> bool {
        js_sys::Reflect::get(&js_sys::global(), &"crossOriginIsolated".into())
            .ok()
            .and_then(|v| v.as_bool())
            .unwrap_or(false)
    }

    /// Throws `UnsupportedError` unless the memory is shared; the message says whether
    /// the page is cross-origin isolated.
    #[wasm_bindgen(js_name = requireSharedMemory)]
    pub fn require_shared_memory(&self) -> JsResult<()> {
        if self.is_shared_memory() {
            return Ok(());
        }
        let isolated = self.cross_origin_isolated();
        Err(unsupported(format!(
            "requireSharedMemory: this module's memory is not shared (built without threads; the page is {}cross-origin isolated)",
            if isolated { "" } else { "not " }
        )))
    }

    /// `new ctor(memory.buffer, ptr, len)`: `len` elements at byte address `ptr`, checked
    /// against the memory's size and the element alignment.
    #[wasm_bindgen(unchecked_return_type = "ArrayBufferView")]
    pub fn view(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TypedArrayConstructor")] ctor: JsValue,
        ptr: f64,
        len: f64,
    ) -> JsResult<JsValue> {
        view_on("view", &ctor, &memory_buffer(), ptr, len)
    }

    /// `new ctor(buffer, ptr, len)` on a buffer of your choice, checked the same way.
    #[wasm_bindgen(js_name = viewOn, unchecked_return_type = "ArrayBufferView")]
    pub fn view_on(
        &self,
        #[wasm_bindgen(unchecked_param_type = "TypedArrayConstructor")] ctor: JsValue,
        #[wasm_bindgen(unchecked_param_type = "ArrayBuffer | SharedArrayBuffer")] buffer: JsValue,
        ptr: f64,
        len: f64,
    ) -> JsResult<JsValue> {
        view_on("viewOn", &ctor, &buffer, ptr, len)
    }

    /// The heap: slices that live until `free()`.
    #[wasm_bindgen(getter)]
    pub fn heap(&self) -> Heap {
        Heap {}
    }

    /// The driver's frame arena (4 MiB until `reserve` says otherwise): slices that die
    /// at its `reset()`.
    #[wasm_bindgen(getter)]
    pub fn frame(&self) -> JsResult<Arena> {
        HOST.with_borrow_mut(|h| {
            if let Some(id) = h.frame {
                return Ok(Arena { id });
            }
            let cap = h.frame_capacity.unwrap_or(DEFAULT_FRAME_BYTES);
            let id = new_arena(h, "frame", Kind::Frame, cap, 16)?;
            h.frame = Some(id);
            Ok(Arena { id })
        })
    }

    /// A caller-managed arena of `capBytes` bytes whose slices start at multiples of
    /// `align` (a power of two, default 16): slices die at its `reset()` or `release()`.
    #[wasm_bindgen(js_name = createHeapArena)]
    pub fn create_heap_arena(
        &self,
        #[wasm_bindgen(js_name = capBytes)] cap_bytes: f64,
        align: Option<f64>,
    ) -> JsResult<Arena> {
        let op = "createHeapArena";
        let cap = args::size(op, "capBytes", cap_bytes)?;
        let align = match align {
            None => 16,
            Some(a) => args::size(op, "align", a)?,
        };
        if !align.is_power_of_two() {
            return Err(invalid(format!(
                "{op}: align {align} must be a power of two"
            )));
        }
        HOST.with_borrow_mut(|h| new_arena(h, op, Kind::Arena, cap, align))
            .map(|id| Arena { id })
    }

    /// A view of the slice that `handle` (from `slice.handle()`) names, on `buffer`;
    /// `InvalidArgumentError` when the slice is no longer alive or the handle is malformed.
    #[wasm_bindgen(js_name = viewFromHandle, unchecked_return_type = "ArrayBufferView")]
    pub fn view_from_handle(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ArrayBuffer | SharedArrayBuffer")] buffer: JsValue,
        #[wasm_bindgen(unchecked_param_type = "SliceHandle")] handle: JsValue,
    ) -> JsResult<JsValue> {
        let s = WasmSlice::from_handle(&handle)?;
        s.assert_alive()?;
        let ctor = Reflect::get(&s.dtype.view(&memory_buffer(), 0, 0), &"constructor".into())?;
        view_on("viewFromHandle", &ctor, &buffer, s.ptr as f64, s.len as f64)
    }

    /// A slice again from its handle, while it is alive.
    #[wasm_bindgen(js_name = sliceFromHandle)]
    pub fn slice_from_handle(
        &self,
        #[wasm_bindgen(unchecked_param_type = "SliceHandle")] handle: JsValue,
    ) -> JsResult<WasmSlice> {
        let s = WasmSlice::from_handle(&handle)?;
        s.assert_alive()?;
        Ok(s)
    }

    /// Bytes the heap, the frame and the heap arenas hold now (capacity, not use).
    #[wasm_bindgen(js_name = hostBytes)]
    pub fn host_bytes(&self) -> f64 {
        HOST.with_borrow(|h| {
            let heap: usize = h.heap.values().map(|b| b.buf.len()).sum();
            let arenas: usize = h.arenas.values().map(|a| a.buf.len()).sum();
            (heap + arenas) as f64
        })
    }
}

fn new_arena(h: &mut Host, op: &str, kind: Kind, capacity: usize, align: usize) -> JsResult<u64> {
    let (buf, start) = zeroed(op, capacity, align)?;
    h.next_id += 1;
    let id = h.next_id;
    h.arenas.insert(
        id,
        ArenaState {
            kind,
            buf,
            start,
            capacity,
            align,
            used: 0,
            epoch: 0,
        },
    );
    Ok(id)
}

/// The heap of host slices (`driver.heap`).
#[wasm_bindgen]
#[derive(Debug)]
pub struct Heap {}

#[wasm_bindgen]
impl Heap {
    /// `len` elements of f32, at a multiple of `align` (default the element size).
    #[wasm_bindgen(js_name = allocF32)]
    pub fn alloc_f32(&self, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        self.alloc(HostDType::F32, len, align)
    }

    /// `len` elements of u32, at a multiple of `align` (default the element size).
    #[wasm_bindgen(js_name = allocU32)]
    pub fn alloc_u32(&self, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        self.alloc(HostDType::U32, len, align)
    }

    /// `len` elements of i32, at a multiple of `align` (default the element size).
    #[wasm_bindgen(js_name = allocI32)]
    pub fn alloc_i32(&self, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        self.alloc(HostDType::I32, len, align)
    }

    /// `len` elements of u8, at a multiple of `align` (default the element size).
    #[wasm_bindgen(js_name = allocU8)]
    pub fn alloc_u8(&self, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        self.alloc(HostDType::U8, len, align)
    }
}

impl Heap {
    fn alloc(&self, dtype: HostDType, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        let op = "heap.alloc";
        let (len, bytes, align) = layout(op, dtype, len, align)?;
        let (buf, start) = zeroed(op, bytes, align)?;
        let ptr = buf.as_ptr() as usize + start;
        HOST.with_borrow_mut(|h| {
            h.next_id += 1;
            let id = h.next_id;
            h.heap.insert(id, Block { buf, start });
            Ok(WasmSlice {
                kind: Kind::Heap,
                dtype,
                ptr,
                len,
                owner: id,
                epoch: None,
            })
        })
    }
}

/// A frame arena (`driver.frame`) or a heap arena (`driver.createHeapArena`).
#[wasm_bindgen]
#[derive(Debug)]
pub struct Arena {
    id: u64,
}

#[wasm_bindgen]
impl Arena {
    /// `len` elements of f32, at a multiple of `align` (default the element size).
    #[wasm_bindgen(js_name = allocF32)]
    pub fn alloc_f32(&self, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        self.alloc(HostDType::F32, len, align)
    }

    /// `len` elements of u32, at a multiple of `align` (default the element size).
    #[wasm_bindgen(js_name = allocU32)]
    pub fn alloc_u32(&self, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        self.alloc(HostDType::U32, len, align)
    }

    /// `len` elements of i32, at a multiple of `align` (default the element size).
    #[wasm_bindgen(js_name = allocI32)]
    pub fn alloc_i32(&self, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        self.alloc(HostDType::I32, len, align)
    }

    /// `len` elements of u8, at a multiple of `align` (default the element size).
    #[wasm_bindgen(js_name = allocU8)]
    pub fn alloc_u8(&self, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        self.alloc(HostDType::U8, len, align)
    }

    /// `"frame"` or `"arena"`.
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> JsResult<String> {
        self.with(|a| Ok(a.kind.name().to_string()))
    }

    /// The epoch now: slices of earlier epochs are dead.
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> JsResult<f64> {
        self.with(|a| Ok(a.epoch as f64))
    }

    /// Bytes handed out in this epoch (alignment padding included).
    #[wasm_bindgen(getter)]
    pub fn used(&self) -> JsResult<f64> {
        self.with(|a| Ok(a.used as f64))
    }

    /// The arena's size in bytes; it never grows.
    #[wasm_bindgen(getter)]
    pub fn capacity(&self) -> JsResult<f64> {
        self.with(|a| Ok(a.capacity as f64))
    }

    /// Ends every slice of this epoch and frees the whole capacity for the next one.
    pub fn reset(&self) -> JsResult<()> {
        HOST.with_borrow_mut(|h| {
            let a = h.arenas.get_mut(&self.id).ok_or_else(released)?;
            a.epoch += 1;
            a.used = 0;
            Ok(())
        })
    }

    /// Resets the frame arena and gives it `capBytes` bytes (frame only: a heap arena's
    /// size is fixed at creation).
    pub fn reserve(&self, #[wasm_bindgen(js_name = capBytes)] cap_bytes: f64) -> JsResult<()> {
        let op = "frame.reserve";
        let cap = args::size(op, "capBytes", cap_bytes)?;
        HOST.with_borrow_mut(|h| {
            let a = h.arenas.get_mut(&self.id).ok_or_else(released)?;
            if a.kind != Kind::Frame {
                return Err(invalid(format!(
                    "{op}: only the frame arena is resized; create a new heap arena instead"
                )));
            }
            let (buf, start) = zeroed(op, cap, a.align)?;
            a.buf = buf;
            a.start = start;
            a.capacity = cap;
            a.used = 0;
            a.epoch += 1;
            h.frame_capacity = Some(cap);
            Ok(())
        })
    }

    /// Frees a heap arena's memory: every slice of it dies. The frame arena refuses.
    pub fn release(&self) -> JsResult<()> {
        HOST.with_borrow_mut(|h| {
            let a = h.arenas.get(&self.id).ok_or_else(released)?;
            if a.kind == Kind::Frame {
                return Err(invalid(
                    "release: the driver's frame arena lives as long as the module; reset() it instead",
                ));
            }
            h.arenas.remove(&self.id);
            Ok(())
        })
    }
}

fn released() -> JsValue {
    invalid("arena: this arena was released")
}

impl Arena {
    fn with<T>(&self, f: impl FnOnce(&ArenaState) -> JsResult<T>) -> JsResult<T> {
        HOST.with_borrow(|h| f(h.arenas.get(&self.id).ok_or_else(released)?))
    }

    fn alloc(&self, dtype: HostDType, len: f64, align: Option<f64>) -> JsResult<WasmSlice> {
        let op = "arena.alloc";
        let (len, bytes, align) = layout(op, dtype, len, align)?;
        HOST.with_borrow_mut(|h| {
            let a = h.arenas.get_mut(&self.id).ok_or_else(released)?;
            let align = align.max(a.align);
            let base = a.base();
            // Aligned in absolute addresses (the base is aligned to the arena's align only).
            let start = (base + a.used).next_multiple_of(align) - base;
            if start > a.capacity || bytes > a.capacity - start {
                return Err(oom(format!(
                    "{op}: {bytes} bytes at offset {start} do not fit the {} arena's {} bytes ({} used); arenas never grow",
                    a.kind.name(),
                    a.capacity,
                    a.used
                )));
            }
            a.used = start + bytes;
            Ok(WasmSlice {
                kind: a.kind,
                dtype,
                ptr: base + start,
                len,
                owner: self.id,
                epoch: Some(a.epoch),
            })
        })
    }
}

/// `length` elements of `dtype` in the module's linear memory, from the heap, the frame
/// arena or a heap arena.
#[wasm_bindgen]
#[derive(Debug, Clone)]
pub struct WasmSlice {
    kind: Kind,
    dtype: HostDType,
    ptr: usize,
    len: usize,
    /// The heap allocation's id, or the arena's.
    owner: u64,
    /// The arena epoch (`None` for heap slices).
    epoch: Option<u64>,
}

#[wasm_bindgen]
impl WasmSlice {
    /// `"heap"`, `"frame"` or `"arena"`.
    #[wasm_bindgen(getter, unchecked_return_type = "SliceKind")]
    pub fn kind(&self) -> String {
        self.kind.name().to_string()
    }

    /// `"f32"`, `"u32"`, `"i32"` or `"u8"`.
    #[wasm_bindgen(getter, unchecked_return_type = "HostDType")]
    pub fn dtype(&self) -> String {
        self.dtype.name().to_string()
    }

    /// The byte address in linear memory.
    #[wasm_bindgen(getter)]
    pub fn ptr(&self) -> f64 {
        self.ptr as f64
    }

    /// Elements.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.len as f64
    }

    /// Bytes.
    #[wasm_bindgen(getter, js_name = byteLength)]
    pub fn byte_length(&self) -> f64 {
        (self.len * self.dtype.size()) as f64
    }

    /// The arena epoch it belongs to (`undefined` for heap slices).
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> Option<f64> {
        self.epoch.map(|e| e as f64)
    }

    /// False once freed (heap), once its arena was reset or released.
    #[wasm_bindgen(js_name = isAlive)]
    pub fn is_alive(&self) -> bool {
        HOST.with_borrow(|h| match self.epoch {
            None => h.heap.contains_key(&self.owner),
            Some(e) => h.arenas.get(&self.owner).is_some_and(|a| a.epoch == e),
        })
    }

    /// Throws `InvalidArgumentError` saying why the slice is dead.
    #[wasm_bindgen(js_name = assertAlive)]
    pub fn assert_alive(&self) -> JsResult<()> {
        HOST.with_borrow(|h| match self.epoch {
            None if h.heap.contains_key(&self.owner) => Ok(()),
            None => Err(invalid(format!(
                "slice: the heap slice at {} was freed",
                self.ptr
            ))),
            Some(e) => match h.arenas.get(&self.owner) {
                Some(a) if a.epoch == e => Ok(()),
                Some(a) => Err(invalid(format!(
                    "slice: the {} slice at {} is stale: its epoch is {e} and the arena's is {}",
                    self.kind.name(),
                    self.ptr,
                    a.epoch
                ))),
                None => Err(invalid(format!(
                    "slice: the arena of the slice at {} was released",
                    self.ptr
                ))),
            },
        })
    }

    /// `memory.buffer` now.
    #[wasm_bindgen(unchecked_return_type = "ArrayBuffer | SharedArrayBuffer")]
    pub fn buffer(&self) -> JsValue {
        memory_buffer()
    }

    /// A typed array (`Float32Array`, `Uint32Array`, `Int32Array`, `Uint8Array`) over the
    /// slice, on `memory.buffer` as it is now; `InvalidArgumentError` when the slice is dead.
    #[wasm_bindgen(unchecked_return_type = "Float32Array | Uint32Array | Int32Array | Uint8Array")]
    pub fn view(&self) -> JsResult<JsValue> {
        self.assert_alive()?;
        Ok(self.dtype.view(&memory_buffer(), self.ptr, self.len))
    }

    /// Copies `src` (a typed array or an array of numbers) from element `srcOffset` on into
    /// the start of the slice; with `zeroFill`, the rest of the slice becomes 0. More
    /// elements than the slice holds is an `InvalidArgumentError` (nothing is written).
    pub fn write(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ArrayLike<number>")] src: JsValue,
        #[wasm_bindgen(js_name = srcOffset)] src_offset: Option<f64>,
        #[wasm_bindgen(js_name = zeroFill)] zero_fill: Option<bool>,
    ) -> JsResult<()> {
        let op = "slice.write";
        self.assert_alive()?;
        let from = args::size(op, "srcOffset", src_offset.unwrap_or(0.0))?;
        let src_len = Reflect::get(&src, &"length".into())
            .ok()
            .and_then(|v| v.as_f64())
            .ok_or_else(|| invalid(format!("{op}: src must be a typed array or an array")))?
            as usize;
        if from > src_len {
            return Err(invalid(format!(
                "{op}: srcOffset {from} is past src's {src_len} elements"
            )));
        }
        let n = src_len - from;
        if n > self.len {
            return Err(invalid(format!(
                "{op}: {n} elements do not fit the slice's {}",
                self.len
            )));
        }
        let part = if js_sys::ArrayBuffer::is_view(&src) {
            let sub = Reflect::get(&src, &"subarray".into())?;
            sub.unchecked_ref::<js_sys::Function>()
                .call1(&src, &JsValue::from(from as f64))?
        } else if Array::is_array(&src) {
            Array::from(&src).slice(from as u32, src_len as u32).into()
        } else {
            return Err(invalid(format!(
                "{op}: src must be a typed array or an array"
            )));
        };
        let view = self.dtype.view(&memory_buffer(), self.ptr, self.len);
        let set = Reflect::get(&view, &"set".into())?;
        set.unchecked_ref::<js_sys::Function>()
            .call1(&view, &part)?;
        if zero_fill.unwrap_or(false) && n < self.len {
            let fill = Reflect::get(&view, &"fill".into())?;
            fill.unchecked_ref::<js_sys::Function>().call2(
                &view,
                &JsValue::from(0),
                &JsValue::from(n as f64),
            )?;
        }
        Ok(())
    }

    /// What names the slice across a boundary: `{ kind, dtype, ptr, length, epoch?, owner }`
    /// (plain data; `driver.viewFromHandle` and `driver.sliceFromHandle` turn it back).
    #[wasm_bindgen(unchecked_return_type = "SliceHandle")]
    pub fn handle(&self) -> JsValue {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        set("kind", self.kind.name().into());
        set("dtype", self.dtype.name().into());
        set("ptr", (self.ptr as f64).into());
        set("length", (self.len as f64).into());
        set("owner", (self.owner as f64).into());
        if let Some(e) = self.epoch {
            set("epoch", (e as f64).into());
        }
        o.into()
    }

    /// Frees a heap slice; frame and arena slices refuse (they end at `reset()`).
    #[wasm_bindgen(js_name = free)]
    pub fn free_slice(&self) -> JsResult<()> {
        if self.kind != Kind::Heap {
            return Err(invalid(format!(
                "free: a {} slice ends at its arena's reset(), not at free()",
                self.kind.name()
            )));
        }
        self.assert_alive()?;
        HOST.with_borrow_mut(|h| h.heap.remove(&self.owner));
        Ok(())
    }
}

impl WasmSlice {
    fn from_handle(handle: &JsValue) -> JsResult<WasmSlice> {
        let op = "fromHandle";
        let kind = match args::str_field_or(op, handle, "kind", "")?.as_str() {
            "heap" => Kind::Heap,
            "frame" => Kind::Frame,
            "arena" => Kind::Arena,
            k => {
                return Err(invalid(format!(
                    "{op}: kind {k:?} is not heap, frame or arena"
                )));
            }
        };
        let dtype = HostDType::from_name(op, &args::str_field_or(op, handle, "dtype", "")?)?;
        let ptr = args::size_field(op, handle, "ptr")?;
        let len = args::size_field(op, handle, "length")?;
        let owner = args::ptr_field(op, handle, "owner")?;
        let epoch = args::opt_ptr_field(op, handle, "epoch")?;
        if (kind == Kind::Heap) != epoch.is_none() {
            return Err(invalid(format!(
                "{op}: a {} handle {} an epoch",
                kind.name(),
                if kind == Kind::Heap {
                    "has no"
                } else {
                    "needs"
                }
            )));
        }
        let s = WasmSlice {
            kind,
            dtype,
            ptr,
            len,
            owner,
            epoch,
        };
        // The handle must describe the slice that lives there, not just a live owner.
        let end = len
            .checked_mul(dtype.size())
            .and_then(|b| b.checked_add(ptr))
            .filter(|_| ptr % dtype.size() == 0);
        let fits = end.is_some_and(|end| {
            HOST.with_borrow(|h| match epoch {
                None => h.heap.get(&owner).is_some_and(|b| {
                    b.buf.as_ptr() as usize + b.start == ptr
                        && end <= b.buf.as_ptr() as usize + b.buf.len()
                }),
                Some(_) => h
                    .arenas
                    .get(&owner)
                    .is_some_and(|a| a.kind == kind && ptr >= a.base() && end <= a.base() + a.used),
            })
        });
        if !fits && s.is_alive() {
            return Err(invalid(format!(
                "{op}: no {} slice of {len} {} at {ptr} in that allocation",
                kind.name(),
                dtype.name()
            )));
        }
        Ok(s)
    }

    /// Calls `f` with the slice's bytes (for uploads), after checking it is alive.
    pub(crate) fn with_bytes<T>(&self, f: impl FnOnce(&[u8]) -> T) -> JsResult<T> {
        self.assert_alive()?;
        let bytes = self.len * self.dtype.size();
        HOST.with_borrow(|h| {
            let (buf, off) = self.locate(h)?;
            Ok(f(&buf[off..off + bytes]))
        })
    }

    /// Copies `src` (the slice's byte length) into the slice, after checking it is alive.
    pub(crate) fn write_bytes(&self, src: &[u8]) -> JsResult<()> {
        self.assert_alive()?;
        HOST.with_borrow_mut(|h| {
            let (buf, off) = match self.epoch {
                None => h.heap.get_mut(&self.owner).map(|b| {
                    let off = self.ptr - b.buf.as_ptr() as usize;
                    (&mut b.buf, off)
                }),
                Some(_) => h.arenas.get_mut(&self.owner).map(|a| {
                    let off = self.ptr - a.buf.as_ptr() as usize;
                    (&mut a.buf, off)
                }),
            }
            .ok_or_else(|| invalid("slice: not alive"))?;
            buf[off..off + src.len()].copy_from_slice(src);
            Ok(())
        })
    }

    fn locate<'h>(&self, h: &'h Host) -> JsResult<(&'h [u8], usize)> {
        match self.epoch {
            None => h
                .heap
                .get(&self.owner)
                .map(|b| (&b.buf[..], self.ptr - b.buf.as_ptr() as usize)),
            Some(_) => h
                .arenas
                .get(&self.owner)
                .map(|a| (&a.buf[..], self.ptr - a.buf.as_ptr() as usize)),
        }
        .ok_or_else(|| invalid("slice: not alive"))
    }

    pub(crate) fn byte_len(&self) -> usize {
        self.len * self.dtype.size()
    }
}
