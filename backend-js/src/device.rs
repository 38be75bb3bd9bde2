//! Device-side arenas for JavaScript (`backend.createFrameArena`, `createHeapArena`):
//! the scoped memory of `backend_api::memory` over the trait's `alias` and `retire`.
//! One backing allocation; every slice is a fresh alias into it; `reset()` retires the
//! epoch's root alias (and so every slice of the epoch) and starts a new one, so a stale
//! slice's address is refused by every op, never read as the next frame's data.

use std::cell::RefCell;
use std::rc::Rc;

use backend_api::memory::ElemType;
use backend_api::{ComputeBackend, Retired};
use backend_wasm::WasmBackend;
use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::args::{self, ptr_out};
use crate::error::{IntoJs, JsResult, invalid, oom};

#[derive(Debug)]
struct State {
    backing: u64,
    root: u64,
    capacity: usize,
    align: usize,
    used: usize,
    epoch: u64,
    released: bool,
}

/// A device arena: frame (`backend.createFrameArena`) or heap (`createHeapArena`).
#[wasm_bindgen]
#[derive(Debug)]
pub struct DeviceArena {
    backend: Rc<WasmBackend>,
    frame: bool,
    state: Rc<RefCell<State>>,
}

impl DeviceArena {
    pub(crate) fn new(
        backend: Rc<WasmBackend>,
        frame: bool,
        cap_bytes: f64,
        align: Option<f64>,
    ) -> JsResult<DeviceArena> {
        let op = if frame {
            "createFrameArena"
        } else {
            "createHeapArena"
        };
        let capacity = args::size(op, "capBytes", cap_bytes)?;
        let align = match align {
            None => 256,
            Some(a) => args::size(op, "align", a)?,
        };
        if !align.is_power_of_two() {
            return Err(invalid(format!(
                "{op}: align {align} must be a power of two"
            )));
        }
        let backing = backend.alloc(capacity).js()?;
        let root = match backend.alias(backing, capacity) {
            Ok(r) => r,
            Err(e) => {
                let _ = backend.free(backing);
                return Err(crate::error::to_js(e));
            }
        };
        Ok(DeviceArena {
            backend,
            frame,
            state: Rc::new(RefCell::new(State {
                backing,
                root,
                capacity,
                align,
                used: 0,
                epoch: 0,
                released: false,
            })),
        })
    }

    fn retired(&self) -> Retired {
        if self.frame {
            Retired::FrameReset
        } else {
            Retired::ArenaReset
        }
    }
}

#[wasm_bindgen]
impl DeviceArena {
    /// `"frame"` or `"arena"`.
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        if self.frame { "frame" } else { "arena" }.to_string()
    }

    /// The epoch now.
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> f64 {
        self.state.borrow().epoch as f64
    }

    /// Bytes handed out in this epoch.
    #[wasm_bindgen(getter)]
    pub fn used(&self) -> f64 {
        self.state.borrow().used as f64
    }

    /// The arena's size in bytes; it never grows.
    #[wasm_bindgen(getter)]
    pub fn capacity(&self) -> f64 {
        self.state.borrow().capacity as f64
    }

    /// `len` elements of `dtype` (`"f32"`, `"f16"`, `"bf16"`, `"u32"`, `"i32"`, `"u8"`),
    /// contents unspecified, at a multiple of `align`; `OutOfMemoryError` when full.
    pub fn alloc(&self, dtype: String, len: f64, align: Option<f64>) -> JsResult<DeviceSlice> {
        let op = "deviceArena.alloc";
        let elem = ElemType::from_name(&dtype).ok_or_else(|| {
            let known: Vec<&str> = ElemType::ALL.iter().map(|t| t.name()).collect();
            invalid(format!(
                "{op}: unknown dtype {dtype:?}; known: {}",
                known.join(", ")
            ))
        })?;
        let size = elem.size_bytes();
        let len = args::size(op, "len", len)?;
        let align = match align {
            None => 1,
            Some(a) => args::size(op, "align", a)?,
        };
        if !align.is_power_of_two() {
            return Err(invalid(format!(
                "{op}: align {align} must be a power of two"
            )));
        }
        let bytes = len
            .checked_mul(size)
            .ok_or_else(|| invalid(format!("{op}: {len} elements overflow")))?;
        let mut st = self.state.borrow_mut();
        if st.released {
            return Err(invalid(format!("{op}: the arena was released")));
        }
        let align = align.max(st.align).max(size);
        let start = st.used.next_multiple_of(align);
        if start > st.capacity || bytes > st.capacity - start {
            return Err(oom(format!(
                "{op}: {bytes} bytes at offset {start} do not fit the arena's {} bytes; arenas never grow",
                st.capacity
            )));
        }
        let p = self.backend.alias(st.root + start as u64, bytes).js()?;
        st.used = start + bytes;
        Ok(DeviceSlice {
            state: self.state.clone(),
            kind: self.kind(),
            dtype: elem,
            ptr: p,
            len,
            epoch: st.epoch,
        })
    }

    /// Ends every slice of this epoch (their addresses become stale on every op).
    pub fn reset(&self) -> JsResult<()> {
        let mut st = self.state.borrow_mut();
        if st.released {
            return Err(invalid("deviceArena.reset: the arena was released"));
        }
        let fresh = self.backend.alias(st.backing, st.capacity).js()?;
        self.backend.retire(st.root, self.retired()).js()?;
        st.root = fresh;
        st.used = 0;
        st.epoch += 1;
        Ok(())
    }

    /// Frees the arena's device memory; every slice dies.
    pub fn release(&self) -> JsResult<()> {
        let mut st = self.state.borrow_mut();
        if st.released {
            return Ok(());
        }
        self.backend.free(st.backing).js()?;
        st.released = true;
        st.epoch += 1;
        Ok(())
    }
}

/// A typed range of device memory from a [`DeviceArena`].
#[wasm_bindgen]
#[derive(Debug)]
pub struct DeviceSlice {
    state: Rc<RefCell<State>>,
    kind: String,
    dtype: ElemType,
    ptr: u64,
    len: usize,
    epoch: u64,
}

#[wasm_bindgen]
impl DeviceSlice {
    /// `"frame"` or `"arena"`.
    #[wasm_bindgen(getter)]
    pub fn kind(&self) -> String {
        self.kind.clone()
    }

    /// The element type.
    #[wasm_bindgen(getter)]
    pub fn dtype(&self) -> String {
        self.dtype.name().to_string()
    }

    /// The device address (a fresh alias: never reused).
    #[wasm_bindgen(getter)]
    pub fn ptr(&self) -> JsResult<f64> {
        ptr_out("deviceSlice.ptr", self.ptr)
    }

    /// Elements.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.len as f64
    }

    /// Bytes.
    #[wasm_bindgen(getter, js_name = byteLength)]
    pub fn byte_length(&self) -> f64 {
        (self.len * self.dtype.size_bytes()) as f64
    }

    /// The arena epoch it belongs to.
    #[wasm_bindgen(getter)]
    pub fn epoch(&self) -> f64 {
        self.epoch as f64
    }

    /// False once its arena was reset or released.
    #[wasm_bindgen(js_name = isAlive)]
    pub fn is_alive(&self) -> bool {
        let st = self.state.borrow();
        !st.released && st.epoch == self.epoch
    }

    /// Throws `InvalidArgumentError` once the slice is dead.
    #[wasm_bindgen(js_name = assertAlive)]
    pub fn assert_alive(&self) -> JsResult<()> {
        if self.is_alive() {
            return Ok(());
        }
        Err(invalid(format!(
            "deviceSlice: the {} slice at {:#x} is stale: its epoch is {} and the arena's is {}",
            self.kind,
            self.ptr,
            self.epoch,
            self.state.borrow().epoch
        )))
    }

    /// `{ kind, dtype, ptr, length, epoch }`.
    #[wasm_bindgen(unchecked_return_type = "DeviceSliceHandle")]
    pub fn handle(&self) -> JsResult<JsValue> {
        let o = Object::new();
        let set = |k: &str, v: JsValue| {
            let _ = Reflect::set(&o, &k.into(), &v);
        };
        set("kind", self.kind.as_str().into());
        set("dtype", self.dtype.name().into());
        set("ptr", self.ptr()?.into());
        set("length", (self.len as f64).into());
        set("epoch", (self.epoch as f64).into());
        Ok(o.into())
    }
}
