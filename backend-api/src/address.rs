//! The device address space every backend shares: `u64` pointers that are never reused,
//! resolved to (allocation, offset) with errors that name the op, the operand and the range.

use std::collections::BTreeMap;

use crate::{BackendError, BackendResult, invalid};

/// Alignment of every address [`AddressSpace::insert`] hands out.
pub const ALLOC_ALIGN: u64 = 256;

/// The first address handed out: far from 0 and from small integers that a caller might
/// confuse with a pointer.
const BASE: u64 = 1 << 32;

/// Unmapped bytes left after every allocation, so that the one-past-the-end pointer of one
/// allocation is never the start of the next and `p + size` still resolves to `p`'s
/// allocation.
const GUARD: u64 = ALLOC_ALIGN;

/// A byte range that an op reads or writes, named for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operand {
    /// The operand's name in the op's signature, e.g. `"A"` or `"output"`.
    pub name: &'static str,
    /// The first byte.
    pub ptr: u64,
    /// Length in bytes; never zero (untouched operands are not checked at all).
    pub bytes: u64,
}

impl Operand {
    /// One past the last byte. Validation guarantees this does not overflow.
    pub const fn end(&self) -> u64 {
        self.ptr + self.bytes
    }

    /// True when the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &Operand) -> bool {
        self.ptr < other.end() && other.ptr < self.end()
    }

    /// True when both name exactly the same bytes.
    pub const fn same_range(&self, other: &Operand) -> bool {
        self.ptr == other.ptr && self.bytes == other.bytes
    }
}

/// Formats `[start, end)` in hex, the way every range error prints it.
pub fn fmt_range(start: u64, bytes: u64) -> String {
    format!("[{start:#x}, {:#x})", start.saturating_add(bytes))
}

/// One live allocation.
#[derive(Debug)]
pub struct Allocation<H> {
    /// Its size in bytes, as asked for.
    pub size: u64,
    /// The backend's own handle to the memory.
    pub handle: H,
}

/// An operand resolved to its allocation.
#[derive(Debug)]
pub struct Resolved<'a, H> {
    /// The allocation's start address.
    pub base: u64,
    /// Byte offset of the operand inside the allocation.
    pub offset: u64,
    /// Operand length in bytes.
    pub bytes: u64,
    /// The backend's handle to the allocation.
    pub handle: &'a H,
}

/// Hands out non-overlapping, 256-byte-aligned, never-reused address ranges and resolves
/// pointers into them. `H` is the backend's handle to the memory behind an allocation.
#[derive(Debug)]
pub struct AddressSpace<H> {
    next: u64,
    live: BTreeMap<u64, Allocation<H>>,
    allocated_bytes: u64,
}

impl<H> Default for AddressSpace<H> {
    fn default() -> Self {
        Self::new()
    }
}

impl<H> AddressSpace<H> {
    /// An empty address space.
    pub fn new() -> Self {
        Self {
            next: BASE,
            live: BTreeMap::new(),
            allocated_bytes: 0,
        }
    }

    /// Reserves a fresh range of `size` bytes for `handle` and returns its start.
    ///
    /// Fails with `OutOfMemory` only when the 64-bit space is exhausted, which takes
    /// ~2^56 allocations.
    pub fn insert(&mut self, size: u64, handle: H) -> BackendResult<u64> {
        let start = self.next;
        let span = size
            .checked_add(ALLOC_ALIGN - 1)
            .map(|s| s / ALLOC_ALIGN * ALLOC_ALIGN)
            .and_then(|s| s.checked_add(GUARD))
            .ok_or(BackendError::OutOfMemory)?;
        self.next = start.checked_add(span).ok_or(BackendError::OutOfMemory)?;
        self.live.insert(start, Allocation { size, handle });
        self.allocated_bytes += size;
        Ok(start)
    }

    /// Checks that `ptr` starts a live allocation without removing it (for `free`, which
    /// may need to validate before it can release device memory).
    pub fn check_free(&self, ptr: u64) -> BackendResult<&Allocation<H>> {
        if let Some(a) = self.live.get(&ptr) {
            return Ok(a);
        }
        Err(match self.containing(ptr) {
            Some((base, a)) => invalid!(
                "free: {ptr:#x} is inside the allocation {} (offset {}), not its start",
                fmt_range(base, a.size),
                ptr - base
            ),
            None => invalid!(
                "free: {ptr:#x} is not a live allocation (never allocated, or already freed)"
            ),
        })
    }

    /// Removes the allocation that starts at `ptr` and returns it; see
    /// [`check_free`](Self::check_free) for the errors.
    pub fn remove(&mut self, ptr: u64) -> BackendResult<Allocation<H>> {
        self.check_free(ptr)?;
        let a = self.live.remove(&ptr).expect("checked above");
        self.allocated_bytes -= a.size;
        Ok(a)
    }

    /// The allocation whose range `[base, base + size]` contains `ptr` (the one-past-the-end
    /// address included, as `p + size` is a valid zero-length pointer).
    fn containing(&self, ptr: u64) -> Option<(u64, &Allocation<H>)> {
        let (&base, a) = self.live.range(..=ptr).next_back()?;
        (ptr - base <= a.size).then_some((base, a))
    }

    /// Resolves an operand of `op` to its allocation, or says precisely why it cannot.
    pub fn resolve(&self, op: &str, operand: &Operand) -> BackendResult<Resolved<'_, H>> {
        let Operand { name, ptr, bytes } = *operand;
        let range = fmt_range(ptr, bytes);
        let Some((base, a)) = self.containing(ptr) else {
            return Err(invalid!(
                "{op}: operand {name} range {range} ({bytes} bytes) is not inside any live allocation"
            ));
        };
        let offset = ptr - base;
        if bytes > a.size - offset {
            return Err(invalid!(
                "{op}: operand {name} range {range} ({bytes} bytes) extends {} bytes past the end of its allocation {}",
                bytes - (a.size - offset),
                fmt_range(base, a.size)
            ));
        }
        Ok(Resolved {
            base,
            offset,
            bytes,
            handle: &a.handle,
        })
    }

    /// The live allocation starting at `ptr`.
    pub fn get(&self, ptr: u64) -> Option<&Allocation<H>> {
        self.live.get(&ptr)
    }

    /// The live allocation starting at `ptr`, mutably.
    pub fn get_mut(&mut self, ptr: u64) -> Option<&mut Allocation<H>> {
        self.live.get_mut(&ptr)
    }

    /// Number of live allocations.
    pub fn len(&self) -> usize {
        self.live.len()
    }

    /// True when nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// Sum of the sizes of live allocations.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated_bytes
    }

    /// Live allocations in address order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Allocation<H>)> {
        self.live.iter().map(|(&p, a)| (p, a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &'static str, ptr: u64, bytes: u64) -> Operand {
        Operand { name, ptr, bytes }
    }

    #[test]
    fn addresses_are_aligned_disjoint_and_never_reused() {
        let mut s = AddressSpace::new();
        let mut seen = Vec::new();
        for size in [0u64, 1, 255, 256, 257, 4096] {
            let p = s.insert(size, ()).unwrap();
            assert_ne!(p, 0);
            assert_eq!(p % ALLOC_ALIGN, 0);
            seen.push((p, size));
        }
        for w in seen.windows(2) {
            // Strictly after the previous allocation's one-past-the-end address.
            assert!(w[1].0 > w[0].0 + w[0].1, "{w:?}");
        }
        let first = seen[0].0;
        s.remove(first).unwrap();
        let again = s.insert(0, ()).unwrap();
        assert!(seen.iter().all(|&(p, _)| p != again));
    }

    #[test]
    fn resolves_interior_pointers_and_one_past_the_end() {
        let mut s = AddressSpace::new();
        let p = s.insert(100, 7u32).unwrap();
        let r = s.resolve("t", &op("A", p + 40, 60)).unwrap();
        assert_eq!((r.base, r.offset, r.bytes, *r.handle), (p, 40, 60, 7));
        // The zero-length pointer p + size names no bytes but belongs to p.
        let e = s.resolve("t", &op("A", p + 100, 1)).unwrap_err();
        assert!(
            e.to_string().contains("extends 1 bytes past the end"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_op_operand_and_range() {
        let mut s = AddressSpace::new();
        let p = s.insert(64, ()).unwrap();
        let e = s.resolve("gemm", &op("B", p + 32, 64)).unwrap_err();
        let msg = e.to_string();
        assert!(e.is_invalid_argument());
        assert!(msg.contains("gemm: operand B"), "{msg}");
        assert!(msg.contains(&format!("{:#x}", p + 32)), "{msg}");
        assert!(msg.contains("extends 32 bytes"), "{msg}");
        let e = s.resolve("unary", &op("input", 12, 4)).unwrap_err();
        assert!(
            e.to_string().contains("not inside any live allocation"),
            "{e}"
        );
    }

    #[test]
    fn free_rejects_interior_unknown_and_double() {
        let mut s = AddressSpace::new();
        let p = s.insert(512, ()).unwrap();
        assert!(
            s.remove(p + 4)
                .unwrap_err()
                .to_string()
                .contains("not its start")
        );
        assert!(s.remove(0xdead_0000).is_err());
        assert_eq!(s.allocated_bytes(), 512);
        s.remove(p).unwrap();
        assert_eq!(s.allocated_bytes(), 0);
        let e = s.remove(p).unwrap_err();
        assert!(e.to_string().contains("already freed"), "{e}");
        // A stale pointer into freed memory is not silently resolved.
        assert!(s.resolve("t", &op("x", p, 4)).is_err());
    }

    #[test]
    fn absurd_sizes_do_not_overflow() {
        let mut s = AddressSpace::<()>::new();
        assert_eq!(s.insert(u64::MAX, ()), Err(BackendError::OutOfMemory));
        assert_eq!(
            s.insert(u64::MAX - 1000, ()),
            Err(BackendError::OutOfMemory)
        );
        // Still usable afterwards.
        s.insert(8, ()).unwrap();
    }

    #[test]
    fn overlap_helpers() {
        let a = op("a", 100, 10);
        assert!(a.overlaps(&op("b", 109, 5)));
        assert!(!a.overlaps(&op("b", 110, 5)));
        assert!(a.same_range(&op("b", 100, 10)));
        assert!(!a.same_range(&op("b", 100, 11)));
    }
}
