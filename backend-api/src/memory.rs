//! Scoped device memory over any backend: typed slices from a heap, from frame arenas
//! that die at every reset, from caller-managed heap arenas, and arenas planned for a
//! whole graph.
//!
//! Everything here works on any [`ComputeBackend`] through its own methods: a frame or
//! arena slice is an [`alias`](ComputeBackend::alias) into one backing allocation, and a
//! reset [`retire`](ComputeBackend::retire)s every alias of the epoch at once. So physical
//! memory is reused every frame while addresses never are: a stale slice, or any raw
//! pointer taken from one, is an `InvalidArgument` that says "stale" on every op of every
//! backend, never a silent read of the next frame's data.
//!
//! ```
//! # use backend_api::memory::{FrameArena, Heap};
//! # use backend_api::{ComputeBackend, BackendResult, UnaryOp};
//! fn frame_loop(b: &dyn ComputeBackend, frames: usize) -> BackendResult<Vec<f32>> {
//!     let weights = Heap::new(b).alloc::<f32>(4)?;           // lives until freed
//!     weights.write(&[1.0, -2.0, 3.0, -4.0])?;
//!     let frame = FrameArena::new(b, 1 << 20, 256)?;           // one allocation, reused
//!     let mut last = Vec::new();
//!     for _ in 0..frames {
//!         let x = frame.alloc::<f32>(4)?;                      // an alias: costs nothing
//!         b.unary(UnaryOp::Relu, weights.ptr(), x.ptr(), 4)?;
//!         last = x.read()?;
//!         frame.reset()?;                                      // x is stale from here on
//!         assert!(!x.is_alive());
//!     }
//!     weights.free()?;
//!     Ok(last)
//! }
//! ```

use std::marker::PhantomData;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{BackendResult, ComputeBackend, ComputeBackendExt, Retired, invalid};

/// The backend a slice or arena works on (`Debug` prints its name).
#[derive(Clone, Copy)]
struct BackendRef<'b>(&'b dyn ComputeBackend);

impl std::fmt::Debug for BackendRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}

impl<'b> std::ops::Deref for BackendRef<'b> {
    type Target = dyn ComputeBackend + 'b;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

/// Where a [`Slice`] lives, and so what ends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum SliceKind {
    /// An allocation of its own, ended by [`Slice::free`].
    Heap,
    /// A bump slice of a [`FrameArena`], ended by the arena's next reset.
    Frame,
    /// A bump slice of a [`HeapArena`], ended when its owner resets it.
    Arena,
}

/// The element types a slice may hold. Storage only: which types an op computes on is
/// the op's [`DType`](crate::DType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ElemType {
    /// `f32`.
    F32,
    /// IEEE half (`half::f16`).
    F16,
    /// bfloat16 (`half::bf16`).
    BF16,
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `u8`.
    U8,
}

impl ElemType {
    /// Every element type, in declaration order.
    pub const ALL: [ElemType; 6] = [
        ElemType::F32,
        ElemType::F16,
        ElemType::BF16,
        ElemType::U32,
        ElemType::I32,
        ElemType::U8,
    ];

    /// The lower-case name (`"f32"`, `"bf16"`, ...), as error messages and the JS API say it.
    pub const fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "f32",
            ElemType::F16 => "f16",
            ElemType::BF16 => "bf16",
            ElemType::U32 => "u32",
            ElemType::I32 => "i32",
            ElemType::U8 => "u8",
        }
    }

    /// The type whose [`name`](Self::name) is `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Bytes per element.
    pub const fn size_bytes(self) -> usize {
        match self {
            ElemType::F32 | ElemType::U32 | ElemType::I32 => 4,
            ElemType::F16 | ElemType::BF16 => 2,
            ElemType::U8 => 1,
        }
    }
}

/// A type a [`Slice`] can hold.
pub trait Element: bytemuck::Pod {
    /// Its [`ElemType`].
    const TYPE: ElemType;
}

macro_rules! element {
    ($($t:ty => $e:ident),*) => { $( impl Element for $t { const TYPE: ElemType = ElemType::$e; } )* };
}
element!(f32 => F32, half::f16 => F16, half::bf16 => BF16, u32 => U32, i32 => I32, u8 => U8);

/// What identifies a slice across a boundary (a message to a worker, a saved graph):
/// serialisable, and turned back into a slice only while it is still alive
/// ([`Heap::from_handle`], [`FrameArena::from_handle`], [`HeapArena::from_handle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SliceHandle {
    /// Where it lives.
    pub kind: SliceKind,
    /// Its element type.
    pub dtype: ElemType,
    /// Its device address.
    pub ptr: u64,
    /// Its length in elements.
    pub len: usize,
    /// The arena epoch it belongs to (`None` for heap slices).
    pub epoch: Option<u64>,
}

/// The liveness of an arena's slices: the epoch now current.
#[derive(Debug)]
struct Epoch(AtomicU64);

/// `len` elements of `T` on the device, from a [`Heap`], a [`FrameArena`] or a
/// [`HeapArena`]. Copies to and from it go through the backend's own calls, so every
/// check of the contract applies; a frame or arena slice whose epoch has passed refuses
/// them here, and its pointer is refused by every op of the backend.
#[derive(Debug)]
pub struct Slice<'b, T: Element> {
    backend: BackendRef<'b>,
    kind: SliceKind,
    ptr: u64,
    len: usize,
    epoch: Option<(u64, &'b Epoch)>,
    _t: PhantomData<T>,
}

impl<'b, T: Element> Slice<'b, T> {
    /// The device address of the first element.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }

    /// Elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a slice of no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes.
    pub fn byte_len(&self) -> usize {
        self.len * size_of::<T>()
    }

    /// Where it lives.
    pub fn kind(&self) -> SliceKind {
        self.kind
    }

    /// Its element type.
    pub fn dtype(&self) -> ElemType {
        T::TYPE
    }

    /// The arena epoch it belongs to (`None` for heap slices).
    pub fn epoch(&self) -> Option<u64> {
        self.epoch.map(|(e, _)| e)
    }

    /// False once its arena was reset (heap slices are alive until freed, which consumes
    /// them).
    pub fn is_alive(&self) -> bool {
        self.epoch
            .is_none_or(|(e, now)| now.0.load(Ordering::Acquire) == e)
    }

    /// `InvalidArgument` saying the slice is stale, unless it is alive.
    pub fn assert_alive(&self) -> BackendResult<()> {
        match self.epoch {
            Some((e, now)) if now.0.load(Ordering::Acquire) != e => Err(invalid!(
                "slice {:#x} ({} x {:?}) is stale: it belongs to epoch {e} of its {} and the arena \
                 has been reset to epoch {}",
                self.ptr,
                self.len,
                T::TYPE,
                if self.kind == SliceKind::Frame {
                    "frame arena"
                } else {
                    "heap arena"
                },
                now.0.load(Ordering::Acquire)
            )),
            _ => Ok(()),
        }
    }

    /// Copies `src` into the slice; `src` must have exactly [`len`](Self::len) elements.
    pub fn write(&self, src: &[T]) -> BackendResult<()> {
        if src.len() != self.len {
            return Err(invalid!(
                "slice write: {} elements into a slice of {}",
                src.len(),
                self.len
            ));
        }
        self.write_prefix(src, false)
    }

    /// Copies `src` (at most [`len`](Self::len) elements) to the start of the slice, and
    /// with `zero_fill` zeroes the rest.
    pub fn write_prefix(&self, src: &[T], zero_fill: bool) -> BackendResult<()> {
        self.assert_alive()?;
        if src.len() > self.len {
            return Err(invalid!(
                "slice write: {} elements into a slice of {}",
                src.len(),
                self.len
            ));
        }
        self.backend.copy_htod_slice(self.ptr, src)?;
        if zero_fill && src.len() < self.len {
            let tail = vec![0u8; (self.len - src.len()) * size_of::<T>()];
            self.backend
                .copy_htod(self.ptr + std::mem::size_of_val(src) as u64, &tail)?;
        }
        Ok(())
    }

    /// Reads the slice back.
    pub fn read(&self) -> BackendResult<Vec<T>> {
        self.assert_alive()?;
        self.backend.copy_dtoh_vec(self.ptr, self.len)
    }

    /// Reads the slice back without blocking (the browser's path).
    pub async fn read_async(&self) -> BackendResult<Vec<T>> {
        self.assert_alive()?;
        self.backend.copy_dtoh_vec_async(self.ptr, self.len).await
    }

    /// Its serialisable handle.
    pub fn handle(&self) -> SliceHandle {
        SliceHandle {
            kind: self.kind,
            dtype: T::TYPE,
            ptr: self.ptr,
            len: self.len,
            epoch: self.epoch(),
        }
    }

    /// Frees a heap slice. Frame and arena slices end with their arena's reset: freeing
    /// one is `InvalidArgument` (and it stays usable).
    pub fn free(self) -> BackendResult<()> {
        match self.kind {
            SliceKind::Heap => self.backend.free(self.ptr),
            kind => Err(invalid!(
                "slice free: {:#x} is a {kind:?} slice, which its arena's reset ends; only heap \
                 slices are freed one by one",
                self.ptr
            )),
        }
    }
}

/// Checks a handle against what the caller expects.
fn check_handle<T: Element>(h: &SliceHandle, kind: SliceKind) -> BackendResult<()> {
    if h.kind != kind {
        return Err(invalid!(
            "from_handle: the handle is of a {:?} slice, not a {kind:?} one",
            h.kind
        ));
    }
    if h.dtype != T::TYPE {
        return Err(invalid!(
            "from_handle: the handle holds {:?}, not {:?}",
            h.dtype,
            T::TYPE
        ));
    }
    Ok(())
}

/// Bytes of `len` elements of `T`, overflow-checked.
fn bytes_of<T: Element>(op: &str, len: usize) -> BackendResult<usize> {
    len.checked_mul(size_of::<T>())
        .ok_or_else(|| invalid!("{op}: {len} elements of {:?} overflow usize", T::TYPE))
}

/// Slices that are allocations of their own.
#[derive(Debug, Clone, Copy)]
pub struct Heap<'b> {
    backend: BackendRef<'b>,
}

impl<'b> Heap<'b> {
    /// The heap of `backend`.
    pub fn new(backend: &'b dyn ComputeBackend) -> Self {
        Self {
            backend: BackendRef(backend),
        }
    }

    /// A fresh allocation of `len` elements (contents unspecified).
    pub fn alloc<T: Element>(&self, len: usize) -> BackendResult<Slice<'b, T>> {
        let ptr = self.backend.alloc(bytes_of::<T>("heap alloc", len)?)?;
        Ok(self.slice(ptr, len))
    }

    fn slice<T: Element>(&self, ptr: u64, len: usize) -> Slice<'b, T> {
        Slice {
            backend: self.backend,
            kind: SliceKind::Heap,
            ptr,
            len,
            epoch: None,
            _t: PhantomData,
        }
    }

    /// The heap slice a handle names. The backend checks the range when it is used; a
    /// handle of another kind or element type is `InvalidArgument`.
    pub fn from_handle<T: Element>(&self, h: &SliceHandle) -> BackendResult<Slice<'b, T>> {
        check_handle::<T>(h, SliceKind::Heap)?;
        Ok(self.slice(h.ptr, h.len))
    }
}

/// The bump arena behind [`FrameArena`] and [`HeapArena`].
#[derive(Debug)]
struct Arena<'b> {
    backend: BackendRef<'b>,
    kind: SliceKind,
    retired: Retired,
    backing: u64,
    capacity: usize,
    align: usize,
    epoch: Epoch,
    /// The current epoch's alias over the whole backing allocation (slices are aliases
    /// made from it, so one retire ends them all) and the bump offset.
    state: Mutex<(u64, usize)>,
}

impl<'b> Arena<'b> {
    fn new(
        backend: &'b dyn ComputeBackend,
        kind: SliceKind,
        retired: Retired,
        capacity: usize,
        align: usize,
    ) -> BackendResult<Self> {
        if !align.is_power_of_two() {
            return Err(invalid!("arena: align {align} must be a power of two"));
        }
        let backing = backend.alloc(capacity)?;
        let root = match backend.alias(backing, capacity) {
            Ok(r) => r,
            Err(e) => {
                let _ = backend.free(backing);
                return Err(e);
            }
        };
        Ok(Self {
            backend: BackendRef(backend),
            kind,
            retired,
            backing,
            capacity,
            align,
            epoch: Epoch(AtomicU64::new(0)),
            state: Mutex::new((root, 0)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, usize)> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn alloc<T: Element>(&self, len: usize, align: usize) -> BackendResult<Slice<'_, T>> {
        let align = align.max(self.align).max(size_of::<T>());
        if !align.is_power_of_two() {
            return Err(invalid!(
                "arena alloc: align {align} must be a power of two"
            ));
        }
        let bytes = bytes_of::<T>("arena alloc", len)?;
        let mut st = self.lock();
        let (root, used) = *st;
        // Offsets are aligned relative to the backing allocation, which is 256-aligned.
        let start = used.next_multiple_of(align);
        if start > self.capacity || bytes > self.capacity - start {
            return Err(crate::oom!(
                "arena alloc: {} at offset {start} do not fit the arena's {} ({used} bytes used); arenas never grow",
                crate::fmt_bytes(bytes as u64),
                crate::fmt_bytes(self.capacity as u64)
            ));
        }
        let ptr = self.backend.alias(root + start as u64, bytes)?;
        st.1 = start + bytes;
        Ok(Slice {
            backend: self.backend,
            kind: self.kind,
            ptr,
            len,
            epoch: Some((self.epoch.0.load(Ordering::Acquire), &self.epoch)),
            _t: PhantomData,
        })
    }

    fn reset(&self) -> BackendResult<()> {
        let mut st = self.lock();
        let fresh = self.backend.alias(self.backing, self.capacity)?;
        self.backend.retire(st.0, self.retired)?;
        self.epoch.0.fetch_add(1, Ordering::AcqRel);
        *st = (fresh, 0);
        Ok(())
    }

    fn used(&self) -> usize {
        self.lock().1
    }

    fn revive<T: Element>(&self, h: &SliceHandle) -> BackendResult<Slice<'_, T>> {
        check_handle::<T>(h, self.kind)?;
        let now = self.epoch.0.load(Ordering::Acquire);
        if h.epoch != Some(now) {
            return Err(invalid!(
                "from_handle: the slice {:#x} is stale: its epoch is {:?} and the arena's is {now}",
                h.ptr,
                h.epoch
            ));
        }
        Ok(Slice {
            backend: self.backend,
            kind: self.kind,
            ptr: h.ptr,
            len: h.len,
            epoch: Some((now, &self.epoch)),
            _t: PhantomData,
        })
    }
}

impl Drop for Arena<'_> {
    fn drop(&mut self) {
        // Frees the backing allocation, which retires every alias into it.
        let _ = self.backend.free(self.backing);
    }
}

macro_rules! arena_type {
    ($(#[$doc:meta])* $name:ident, $kind:ident, $retired:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name<'b>(Arena<'b>);

        impl<'b> $name<'b> {
            /// An arena of `capacity` bytes in one allocation, whose slices start at
            /// multiples of `align` (a power of two; raised to the element size).
            pub fn new(
                backend: &'b dyn ComputeBackend,
                capacity: usize,
                align: usize,
            ) -> BackendResult<Self> {
                Arena::new(backend, SliceKind::$kind, Retired::$retired, capacity, align).map(Self)
            }

            /// A slice of `len` elements (contents unspecified) at the next aligned
            /// offset; `OutOfMemory` when the arena is full (it never grows; the backend
            /// and every live slice stay usable).
            pub fn alloc<T: Element>(&self, len: usize) -> BackendResult<Slice<'_, T>> {
                self.0.alloc(len, 1)
            }

            /// [`alloc`](Self::alloc) at a multiple of `align` (a power of two).
            pub fn alloc_aligned<T: Element>(
                &self,
                len: usize,
                align: usize,
            ) -> BackendResult<Slice<'_, T>> {
                self.0.alloc(len, align)
            }

            /// Ends every slice of the current epoch (their pointers become stale on
            /// every op) and starts the next epoch with the whole capacity free.
            pub fn reset(&self) -> BackendResult<()> {
                self.0.reset()
            }

            /// The current epoch (0 at creation, one more per reset).
            pub fn epoch(&self) -> u64 {
                self.0.epoch.0.load(Ordering::Acquire)
            }

            /// Bytes handed out this epoch, alignment padding included.
            pub fn used(&self) -> usize {
                self.0.used()
            }

            /// The arena's size in bytes.
            pub fn capacity(&self) -> usize {
                self.0.capacity
            }

            /// The slice a handle names, while its epoch is current and its kind and
            /// element type match; otherwise `InvalidArgument` saying which.
            pub fn from_handle<T: Element>(&self, h: &SliceHandle) -> BackendResult<Slice<'_, T>> {
                self.0.revive(h)
            }
        }
    };
}

arena_type!(
    /// Scratch memory for one frame (one step of a loop): every slice dies at the next
    /// [`reset`](Self::reset), which the loop calls once per frame.
    FrameArena,
    Frame,
    FrameReset
);

arena_type!(
    /// A caller-managed arena: like a [`FrameArena`], but reset only when its owner says
    /// so (weights of one model, a KV cache of one request).
    HeapArena,
    Arena,
    ArenaReset
);

/// A tensor of a planned graph: its size and the steps that use it (inclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct TensorLife {
    /// Bytes.
    pub bytes: usize,
    /// The first step that writes or reads it.
    pub first_use: usize,
    /// The last step that reads it.
    pub last_use: usize,
}

/// Where [`plan_arena`] puts each tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ArenaPlan {
    /// Byte offset of each tensor, in the order given.
    pub offsets: Vec<usize>,
    /// Bytes of each tensor, in the order given.
    pub bytes: Vec<usize>,
    /// Bytes of the arena.
    pub size: usize,
    /// The most bytes live at one step: no placement can be smaller.
    pub peak_live: usize,
    /// The alignment of every offset.
    pub align: usize,
}

/// Places tensors so that two whose use intervals intersect never share a byte, and the
/// others may: greedy by size (largest first), each at the lowest aligned offset free of
/// every already-placed tensor it is live with. `align` must be a power of two.
pub fn plan_arena(tensors: &[TensorLife], align: usize) -> BackendResult<ArenaPlan> {
    if !align.is_power_of_two() {
        return Err(invalid!("plan_arena: align {align} must be a power of two"));
    }
    for (i, t) in tensors.iter().enumerate() {
        if t.first_use > t.last_use {
            return Err(invalid!(
                "plan_arena: tensor {i} is first used at step {} after its last use at {}",
                t.first_use,
                t.last_use
            ));
        }
    }
    let live_with =
        |a: &TensorLife, b: &TensorLife| a.first_use <= b.last_use && b.first_use <= a.last_use;
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        tensors[b]
            .bytes
            .cmp(&tensors[a].bytes)
            .then(tensors[a].first_use.cmp(&tensors[b].first_use))
            .then(a.cmp(&b))
    });
    let mut offsets = vec![0usize; tensors.len()];
    let mut placed: Vec<usize> = Vec::new();
    let mut size = 0usize;
    for &i in &order {
        let t = &tensors[i];
        // The ranges of tensors live with this one, by start.
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| live_with(t, &tensors[j]) && tensors[j].bytes > 0)
            .map(|&j| (offsets[j], offsets[j] + tensors[j].bytes))
            .collect();
        busy.sort_unstable();
        let mut at = 0usize;
        for (start, end) in busy {
            if t.bytes == 0 || at + t.bytes <= start {
                break;
            }
            at = at.max(end.next_multiple_of(align));
        }
        offsets[i] = at;
        let end = at
            .checked_add(t.bytes)
            .ok_or_else(|| invalid!("plan_arena: the plan overflows usize"))?;
        size = size.max(end);
        placed.push(i);
    }
    let last = tensors.iter().map(|t| t.last_use).max().unwrap_or(0);
    let mut peak_live = 0usize;
    if !tensors.is_empty() {
        // Bytes live at each step, by a sweep over interval ends.
        let mut delta = vec![0i128; last + 2];
        for t in tensors {
            delta[t.first_use] += t.bytes as i128;
            delta[t.last_use + 1] -= t.bytes as i128;
        }
        let mut live = 0i128;
        for d in delta {
            live += d;
            peak_live = peak_live.max(live as usize);
        }
    }
    Ok(ArenaPlan {
        offsets,
        bytes: tensors.iter().map(|t| t.bytes).collect(),
        size,
        peak_live,
        align,
    })
}

/// One allocation holding every tensor of an [`ArenaPlan`], each an alias into it.
#[derive(Debug)]
pub struct PlannedArena<'b> {
    backend: BackendRef<'b>,
    backing: u64,
    ptrs: Vec<u64>,
}

impl<'b> PlannedArena<'b> {
    /// Allocates the plan's bytes once and aliases each tensor's range.
    pub fn new(backend: &'b dyn ComputeBackend, plan: &ArenaPlan) -> BackendResult<Self> {
        let backing = backend.alloc(plan.size)?;
        let mut arena = Self {
            backend: BackendRef(backend),
            backing,
            ptrs: Vec::with_capacity(plan.offsets.len()),
        };
        for (&off, &bytes) in plan.offsets.iter().zip(&plan.bytes) {
            // On error `arena` drops, which frees the backing allocation.
            arena.ptrs.push(backend.alias(backing + off as u64, bytes)?);
        }
        Ok(arena)
    }

    /// The device address of tensor `i`.
    pub fn ptr(&self, i: usize) -> u64 {
        self.ptrs[i]
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.ptrs.len()
    }

    /// True for a plan of no tensors.
    pub fn is_empty(&self) -> bool {
        self.ptrs.is_empty()
    }
}

impl Drop for PlannedArena<'_> {
    fn drop(&mut self) {
        let _ = self.backend.free(self.backing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*).
    fn rng(seed: u64) -> impl FnMut(usize) -> usize {
        let mut s = seed.max(1);
        move |n| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n.max(1)
        }
    }

    /// Random lifetimes: no two tensors live at one step share a byte, every offset is
    /// aligned, and the size lies between the peak of live bytes and their sum.
    #[test]
    fn plans_never_overlap_live_tensors() {
        let seeds = if cfg!(miri) { 8 } else { 300 };
        for seed in 1..seeds {
            let mut r = rng(seed);
            let n = r(40);
            let steps = 1 + r(30);
            let tensors: Vec<TensorLife> = (0..n)
                .map(|_| {
                    let a = r(steps);
                    let b = a + r(steps - a);
                    TensorLife {
                        bytes: if r(8) == 0 { 0 } else { 1 + r(5000) },
                        first_use: a,
                        last_use: b,
                    }
                })
                .collect();
            let align = 1 << r(9);
            let p = plan_arena(&tensors, align).unwrap();
            let sum: usize = tensors.iter().map(|t| t.bytes).sum();
            assert!(
                p.peak_live <= p.size && p.size <= sum.max(p.peak_live) + align * n,
                "seed {seed}"
            );
            for (i, a) in tensors.iter().enumerate() {
                assert_eq!(p.offsets[i] % align, 0, "seed {seed}");
                for (j, b) in tensors.iter().enumerate().skip(i + 1) {
                    let live = a.first_use <= b.last_use && b.first_use <= a.last_use;
                    let (x, y) = (p.offsets[i], p.offsets[j]);
                    let share = x < y + b.bytes && y < x + a.bytes;
                    assert!(
                        !(live && share),
                        "seed {seed}: tensors {i} and {j} overlap while live"
                    );
                }
                assert!(p.offsets[i] + a.bytes <= p.size);
            }
        }
    }

    #[test]
    fn a_chain_reuses_memory() {
        // x0 -> x1 -> x2 -> x3, each read only by the next step: two buffers suffice.
        let t: Vec<TensorLife> = (0..4)
            .map(|i| TensorLife {
                bytes: 1024,
                first_use: i,
                last_use: i + 1,
            })
            .collect();
        let p = plan_arena(&t, 256).unwrap();
        assert_eq!((p.size, p.peak_live), (2048, 2048));
        assert_ne!(p.offsets[0], p.offsets[1]);
        assert_eq!(p.offsets[0], p.offsets[2]);
    }

    #[test]
    fn bad_plans_are_refused() {
        let t = [TensorLife {
            bytes: 4,
            first_use: 3,
            last_use: 1,
        }];
        assert!(
            plan_arena(&t, 4)
                .unwrap_err()
                .to_string()
                .contains("tensor 0")
        );
        assert!(
            plan_arena(&[], 3)
                .unwrap_err()
                .to_string()
                .contains("power of two")
        );
        assert_eq!(plan_arena(&[], 4).unwrap().size, 0);
    }

    #[test]
    fn elem_types_match_their_rust_types() {
        assert_eq!(<half::f16 as Element>::TYPE.size_bytes(), 2);
        assert_eq!(<u8 as Element>::TYPE.size_bytes(), 1);
        assert_eq!(<i32 as Element>::TYPE, ElemType::I32);
    }
}
