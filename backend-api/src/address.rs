//! The device address space every backend shares: `u64` pointers that are never reused,
//! resolved to (allocation, offset) with errors that name the op, the operand and the range.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::{BackendResult, invalid};

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

/// Why an alias stopped being usable: the stale-pointer errors say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Retired {
    /// `free` of the alias itself.
    Freed,
    /// The frame arena it lived in was reset.
    FrameReset,
    /// The heap or planned arena it lived in was reset or dropped.
    ArenaReset,
    /// What it was an alias of (an allocation or another alias) was retired first.
    ParentRetired,
}

impl Retired {
    /// How the errors phrase it: "retired by ...".
    pub const fn describe(self) -> &'static str {
        match self {
            Retired::Freed => "free",
            Retired::FrameReset => "a frame reset",
            Retired::ArenaReset => "an arena reset",
            Retired::ParentRetired => "freeing what it aliased",
        }
    }
}

/// A live host view's bytes: `[start, end)` of the allocation at `base`.
#[derive(Debug, Clone, Copy)]
struct View {
    base: u64,
    start: u64,
    end: u64,
    /// The backend lent the whole allocation: every byte of it is refused.
    whole: bool,
}

/// A live alias: a fresh address range naming bytes of a live allocation.
#[derive(Debug, Clone, Copy)]
struct Alias {
    /// What it was made from: an allocation's start or another alias's start.
    parent: u64,
    /// The allocation whose bytes it names.
    root: u64,
    /// Byte offset of the alias's first byte in `root`.
    offset: u64,
    /// Its length.
    bytes: u64,
}

/// How many retired aliases keep their precise reason; older ones still fail, with a
/// generic message (so that 10^5 frame resets do not grow the host's memory).
const RETIRED_KEPT: usize = 1 << 14;

/// How many freed allocations are remembered, so that a use after free says so; older
/// ones still fail, as "not inside any live allocation".
const FREED_KEPT: usize = 1 << 14;

/// Hands out non-overlapping, 256-byte-aligned, never-reused address ranges and resolves
/// pointers into them. `H` is the backend's handle to the memory behind an allocation.
///
/// An *alias* ([`alias`](Self::alias)) is a fresh address range over bytes of a live
/// allocation (`a % 256 == ptr % 256`): [`resolve`](Self::resolve) maps it to the
/// allocation's handle at no cost, and [`physical`](Self::physical) rewrites an operand
/// through it to the allocation's own addresses, so overlap rules can compare physical
/// bytes. Retiring an alias (or what it aliases) makes every pointer into it stale, and
/// the error says so and why.
#[derive(Debug)]
pub struct AddressSpace<H> {
    next: u64,
    live: BTreeMap<u64, Allocation<H>>,
    allocated_bytes: u64,
    aliases: BTreeMap<u64, Alias>,
    /// Live aliases made from each allocation or alias.
    children: HashMap<u64, Vec<u64>>,
    /// Recently retired aliases: start to (length, why).
    retired: BTreeMap<u64, (u64, Retired)>,
    retired_order: VecDeque<u64>,
    /// Recently freed allocations: start to size.
    freed: BTreeMap<u64, u64>,
    freed_order: VecDeque<u64>,
    /// Live host views, by id.
    views: BTreeMap<u64, View>,
    next_view: u64,
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
            aliases: BTreeMap::new(),
            children: HashMap::new(),
            retired: BTreeMap::new(),
            retired_order: VecDeque::new(),
            freed: BTreeMap::new(),
            freed_order: VecDeque::new(),
            views: BTreeMap::new(),
            next_view: 0,
        }
    }

    /// Reserves `size` bytes of fresh addresses starting `skew` bytes after a 256-byte
    /// boundary, plus the guard.
    fn reserve(&mut self, size: u64, skew: u64) -> BackendResult<u64> {
        let start = self.next + skew;
        let span = size
            .checked_add(skew + ALLOC_ALIGN - 1)
            .map(|s| s / ALLOC_ALIGN * ALLOC_ALIGN)
            .and_then(|s| s.checked_add(GUARD));
        let exhausted = || {
            crate::oom!(
                "{}: the 64-bit device address space has no room left",
                crate::fmt_bytes(size)
            )
        };
        self.next = span
            .and_then(|span| self.next.checked_add(span))
            .ok_or_else(exhausted)?;
        Ok(start)
    }

    /// A fresh alias of `ptr..ptr + bytes`, which must lie inside one live allocation or
    /// live alias. The alias's address is congruent to `ptr` modulo 256, so every
    /// alignment rule answers the same through it.
    pub fn alias(&mut self, ptr: u64, bytes: u64) -> BackendResult<u64> {
        let operand = Operand {
            name: "ptr",
            ptr,
            bytes,
        };
        let (root, offset) = self.locate("alias", &operand)?;
        let parent = match self.alias_at(ptr) {
            Some((start, _)) => start,
            None => root,
        };
        let a = self.reserve(bytes, ptr % ALLOC_ALIGN)?;
        self.aliases.insert(
            a,
            Alias {
                parent,
                root,
                offset,
                bytes,
            },
        );
        self.children.entry(parent).or_default().push(a);
        Ok(a)
    }

    /// Retires the live alias starting at `ptr`, and every alias made from it, for `why`.
    pub fn retire(&mut self, ptr: u64, why: Retired) -> BackendResult<()> {
        if !self.aliases.contains_key(&ptr) {
            return Err(match self.stale(ptr) {
                Some(stale) => invalid!("retire: {stale}"),
                None => invalid!("retire: {ptr:#x} is not the start of a live alias"),
            });
        }
        self.retire_tree(ptr, why);
        Ok(())
    }

    fn retire_tree(&mut self, ptr: u64, why: Retired) {
        // A reset retires a whole tree for the same reason; a free, its descendants
        // because their parent went.
        let inherited = match why {
            Retired::Freed => Retired::ParentRetired,
            other => other,
        };
        for child in self.children.remove(&ptr).unwrap_or_default() {
            if self.aliases.contains_key(&child) {
                self.retire_tree(child, inherited);
            }
        }
        if let Some(a) = self.aliases.remove(&ptr) {
            if let Some(siblings) = self.children.get_mut(&a.parent) {
                siblings.retain(|&c| c != ptr);
            }
            self.retired.insert(ptr, (a.bytes, why));
            self.retired_order.push_back(ptr);
            if self.retired_order.len() > RETIRED_KEPT {
                let oldest = self.retired_order.pop_front().expect("non-empty");
                self.retired.remove(&oldest);
            }
        }
    }

    /// The live alias whose range (one-past-the-end included) contains `ptr`.
    fn alias_at(&self, ptr: u64) -> Option<(u64, Alias)> {
        let (&start, a) = self.aliases.range(..=ptr).next_back()?;
        (ptr - start <= a.bytes).then_some((start, *a))
    }

    /// "... is stale" when `ptr` lies in a recently retired alias.
    fn stale(&self, ptr: u64) -> Option<String> {
        let (&start, &(bytes, why)) = self.retired.range(..=ptr).next_back()?;
        (ptr - start <= bytes).then(|| {
            format!(
                "{ptr:#x} is stale: it points into the alias {} that was retired by {}",
                fmt_range(start, bytes),
                why.describe()
            )
        })
    }

    /// "... was freed" when `ptr` lies in a recently freed allocation.
    fn freed(&self, ptr: u64) -> Option<String> {
        let (&start, &size) = self.freed.range(..=ptr).next_back()?;
        (ptr - start <= size).then(|| {
            format!(
                "{ptr:#x} points into the allocation {} that was freed (use after free)",
                fmt_range(start, size)
            )
        })
    }

    /// The allocation and byte offset that `operand` names, through an alias or not.
    fn locate(&self, op: &str, operand: &Operand) -> BackendResult<(u64, u64)> {
        let Operand { name, ptr, bytes } = *operand;
        let range = fmt_range(ptr, bytes);
        if let Some((start, a)) = self.alias_at(ptr) {
            let offset = ptr - start;
            if bytes > a.bytes - offset {
                return Err(invalid!(
                    "{op}: operand {name} range {range} ({bytes} bytes) extends {} bytes past the end of its alias {}",
                    bytes - (a.bytes - offset),
                    fmt_range(start, a.bytes)
                ));
            }
            self.check_views(op, operand, a.root, a.offset + offset)?;
            return Ok((a.root, a.offset + offset));
        }
        let Some((base, a)) = self.containing(ptr) else {
            if let Some(stale) = self.stale(ptr) {
                return Err(invalid!("{op}: operand {name} range {range}: {stale}"));
            }
            if let Some(freed) = self.freed(ptr) {
                return Err(invalid!("{op}: operand {name} range {range}: {freed}"));
            }
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
        self.check_views(op, operand, base, offset)?;
        Ok((base, offset))
    }

    /// Refuses an operand whose bytes a live host view covers.
    fn check_views(
        &self,
        op: &str,
        operand: &Operand,
        base: u64,
        offset: u64,
    ) -> BackendResult<()> {
        if self.views.is_empty() || operand.bytes == 0 {
            return Ok(());
        }
        let end = offset + operand.bytes;
        for v in self.views.values() {
            if v.base == base && (v.whole || (offset < v.end && v.start < end)) {
                return Err(invalid!(
                    "{op}: operand {} range {} touches bytes under a live host view ({} of the allocation at {base:#x}{}); end the view (drop or finish it) first",
                    operand.name,
                    fmt_range(operand.ptr, operand.bytes),
                    fmt_range(base + v.start, v.end - v.start),
                    if v.whole {
                        ", which this backend lends whole"
                    } else {
                        ""
                    }
                ));
            }
        }
        Ok(())
    }

    /// Registers a live host view of `bytes` bytes at `offset` in the allocation at
    /// `base`: until [`end_view`](Self::end_view), every operand touching those bytes (every
    /// byte of the allocation, with `whole`) is refused, and the allocation cannot be
    /// freed. Returns the view's id.
    pub fn add_view(&mut self, base: u64, offset: u64, bytes: u64, whole: bool) -> u64 {
        self.next_view += 1;
        self.views.insert(
            self.next_view,
            View {
                base,
                start: offset,
                end: offset + bytes,
                whole,
            },
        );
        self.next_view
    }

    /// Ends the host view `id` (a no-op for an unknown id).
    pub fn end_view(&mut self, id: u64) {
        self.views.remove(&id);
    }

    /// Number of live host views.
    pub fn view_count(&self) -> usize {
        self.views.len()
    }

    /// `operand` with its address rewritten through any alias to the allocation's own
    /// address (the same bytes), checked as [`resolve`](Self::resolve) checks it.
    pub fn physical(&self, op: &str, operand: &Operand) -> BackendResult<Operand> {
        let (base, offset) = self.locate(op, operand)?;
        Ok(Operand {
            ptr: base + offset,
            ..*operand
        })
    }

    /// [`physical`](Self::physical) over each operand in place, for
    /// [`Executor::physical`](crate::executor::Executor::physical): true when any named
    /// its bytes through an alias. Without live aliases, it checks nothing (each operand
    /// is still resolved when the op runs) and costs nothing.
    pub fn rewrite_physical(&self, op: &str, operands: Vec<&mut Operand>) -> BackendResult<bool> {
        if self.aliases.is_empty() && self.retired.is_empty() {
            return Ok(false);
        }
        let mut any = false;
        for o in operands {
            let p = self.physical(op, o)?;
            any |= p.ptr != o.ptr;
            *o = p;
        }
        Ok(any)
    }

    /// Number of live aliases.
    pub fn alias_count(&self) -> usize {
        self.aliases.len()
    }

    /// Reserves a fresh range of `size` bytes for `handle` and returns its start.
    ///
    /// Fails with `OutOfMemory` only when the 64-bit space is exhausted, which takes
    /// ~2^56 allocations.
    pub fn insert(&mut self, size: u64, handle: H) -> BackendResult<u64> {
        let start = self.reserve(size, 0)?;
        self.live.insert(start, Allocation { size, handle });
        self.allocated_bytes += size;
        Ok(start)
    }

    /// Checks that `ptr` starts a live allocation without removing it (for `free`, which
    /// may need to validate before it can release device memory).
    pub fn check_free(&self, ptr: u64) -> BackendResult<&Allocation<H>> {
        if let Some(a) = self.live.get(&ptr) {
            if let Some(v) = self.views.values().find(|v| v.base == ptr) {
                return Err(invalid!(
                    "free: the allocation {} has a live host view of {}; end the view first",
                    fmt_range(ptr, a.size),
                    fmt_range(ptr + v.start, v.end - v.start)
                ));
            }
            return Ok(a);
        }
        if let Some(stale) = self.stale(ptr) {
            return Err(invalid!("free: {stale}"));
        }
        if let Some((start, a)) = self.alias_at(ptr) {
            return Err(invalid!(
                "free: {ptr:#x} is inside the alias {} (offset {}), not its start",
                fmt_range(start, a.bytes),
                ptr - start
            ));
        }
        Err(match self.containing(ptr) {
            Some((base, a)) => invalid!(
                "free: {ptr:#x} is inside the allocation {} (offset {}), not its start",
                fmt_range(base, a.size),
                ptr - base
            ),
            None if self.freed.contains_key(&ptr) => invalid!(
                "free: {ptr:#x} was already freed (double free of the allocation {})",
                fmt_range(ptr, self.freed[&ptr])
            ),
            None => invalid!(
                "free: {ptr:#x} is not a live allocation (never allocated, or already freed)"
            ),
        })
    }

    /// `free(ptr)`: retires the alias that starts at `ptr` (`Ok(None)`), or removes the
    /// allocation that starts there, retiring every alias into it, and returns it for the
    /// backend to release; see [`check_free`](Self::check_free) for the errors.
    pub fn remove(&mut self, ptr: u64) -> BackendResult<Option<Allocation<H>>> {
        if self.aliases.contains_key(&ptr) {
            self.retire_tree(ptr, Retired::Freed);
            return Ok(None);
        }
        self.check_free(ptr)?;
        self.retire_tree(ptr, Retired::ParentRetired);
        let a = self.live.remove(&ptr).expect("checked above");
        self.allocated_bytes -= a.size;
        self.freed.insert(ptr, a.size);
        self.freed_order.push_back(ptr);
        if self.freed_order.len() > FREED_KEPT {
            let oldest = self.freed_order.pop_front().expect("non-empty");
            self.freed.remove(&oldest);
        }
        Ok(Some(a))
    }

    /// The allocation whose range `[base, base + size]` contains `ptr` (the one-past-the-end
    /// address included, as `p + size` is a valid zero-length pointer).
    fn containing(&self, ptr: u64) -> Option<(u64, &Allocation<H>)> {
        let (&base, a) = self.live.range(..=ptr).next_back()?;
        (ptr - base <= a.size).then_some((base, a))
    }

    /// Resolves an operand of `op` to its allocation (through an alias, if it names one),
    /// or says precisely why it cannot.
    pub fn resolve(&self, op: &str, operand: &Operand) -> BackendResult<Resolved<'_, H>> {
        let (base, offset) = self.locate(op, operand)?;
        Ok(Resolved {
            base,
            offset,
            bytes: operand.bytes,
            handle: &self.live[&base].handle,
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
        assert!(e.to_string().contains("double free"), "{e}");
        // A pointer into freed memory is not silently resolved, and the error says why.
        let e = s.resolve("t", &op("x", p + 8, 4)).unwrap_err().to_string();
        assert!(e.contains("that was freed (use after free)"), "{e}");
        assert!(e.contains(&fmt_range(p, 512)), "{e}");
        // Never allocated: no such claim.
        let e = s
            .resolve("t", &op("x", 0xdead_0000, 4))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not inside any live allocation"), "{e}");
    }

    #[test]
    fn absurd_sizes_do_not_overflow() {
        let mut s = AddressSpace::<()>::new();
        assert!(s.insert(u64::MAX, ()).unwrap_err().is_out_of_memory());
        let e = s.insert(u64::MAX - 1000, ()).unwrap_err();
        assert!(e.to_string().contains("address space has no room"), "{e}");
        // Still usable afterwards.
        s.insert(8, ()).unwrap();
    }

    #[test]
    fn aliases_name_the_parents_bytes_at_fresh_congruent_addresses() {
        let mut s = AddressSpace::new();
        let p = s.insert(1024, 5u8).unwrap();
        let a = s.alias(p + 100, 200).unwrap();
        assert_eq!(a % ALLOC_ALIGN, (p + 100) % ALLOC_ALIGN);
        assert!(s.get(a).is_none() && a > p + 1024);
        let r = s.resolve("t", &op("x", a + 8, 192)).unwrap();
        assert_eq!((r.base, r.offset, *r.handle), (p, 108, 5));
        assert_eq!(s.physical("t", &op("x", a + 8, 4)).unwrap().ptr, p + 108);
        let e = s.resolve("t", &op("x", a + 8, 193)).unwrap_err();
        assert!(e.to_string().contains("past the end of its alias"), "{e}");
        // An alias of an alias names the same allocation.
        let b = s.alias(a + 16, 16).unwrap();
        assert_eq!(s.physical("t", &op("y", b, 16)).unwrap().ptr, p + 116);
        assert_eq!(s.allocated_bytes(), 1024, "aliases cost no memory");
        assert_eq!((s.len(), s.alias_count()), (1, 2));
        // Out of range, or into nothing: refused, naming alias.
        let e = s.alias(p + 1000, 100).unwrap_err();
        assert!(e.to_string().contains("alias: operand ptr"), "{e}");
    }

    #[test]
    fn retired_aliases_are_stale_and_say_why() {
        let mut s = AddressSpace::new();
        let p = s.insert(512, ()).unwrap();
        let a = s.alias(p, 256).unwrap();
        let child = s.alias(a + 64, 64).unwrap();
        let other = s.alias(p + 256, 256).unwrap();
        s.retire(a, Retired::FrameReset).unwrap();
        for ptr in [a, a + 4, child] {
            let e = s.resolve("unary", &op("input", ptr, 4)).unwrap_err();
            assert!(e.is_invalid_argument());
            let m = e.to_string();
            assert!(
                m.contains("unary: operand input")
                    && m.contains("stale")
                    && m.contains("frame reset"),
                "{m}"
            );
        }
        assert!(
            s.retire(a, Retired::FrameReset)
                .unwrap_err()
                .to_string()
                .contains("stale")
        );
        // The sibling and the parent are untouched.
        s.resolve("t", &op("x", other, 256)).unwrap();
        s.resolve("t", &op("x", p, 512)).unwrap();
        // free of an alias retires it alone; free of the allocation retires the rest.
        assert!(s.remove(other).unwrap().is_none());
        assert!(
            s.resolve("t", &op("x", other, 4))
                .unwrap_err()
                .to_string()
                .contains("retired by free")
        );
        let last = s.alias(p + 8, 8).unwrap();
        assert!(s.remove(p).unwrap().is_some());
        let e = s.resolve("t", &op("x", last, 4)).unwrap_err();
        assert!(e.to_string().contains("freeing what it aliased"), "{e}");
        assert!(s.remove(last).unwrap_err().to_string().contains("stale"));
        assert_eq!((s.len(), s.alias_count()), (0, 0));
    }

    #[test]
    #[cfg_attr(miri, ignore = "16 000 retirements: minutes under Miri")]
    fn retired_records_are_bounded() {
        let mut s = AddressSpace::new();
        let p = s.insert(64, ()).unwrap();
        let first = s.alias(p, 4).unwrap();
        s.retire(first, Retired::FrameReset).unwrap();
        for _ in 0..RETIRED_KEPT + 10 {
            let a = s.alias(p, 4).unwrap();
            s.retire(a, Retired::FrameReset).unwrap();
        }
        assert!(s.retired.len() <= RETIRED_KEPT && s.children.values().all(Vec::is_empty));
        let freed_first = s.insert(8, ()).unwrap();
        s.remove(freed_first).unwrap();
        for _ in 0..FREED_KEPT + 10 {
            let q = s.insert(8, ()).unwrap();
            s.remove(q).unwrap();
        }
        assert!(s.freed.len() <= FREED_KEPT && s.freed_order.len() <= FREED_KEPT);
        let e = s.resolve("t", &op("x", freed_first, 4)).unwrap_err();
        assert!(
            e.to_string().contains("not inside any live allocation"),
            "{e}"
        );
        // The oldest still fails, with the generic message.
        let e = s.resolve("t", &op("x", first, 4)).unwrap_err();
        assert!(
            e.to_string().contains("not inside any live allocation"),
            "{e}"
        );
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
