//! The model of device memory: per allocation, host bytes, each known, approximate or
//! unknown.

use std::collections::BTreeMap;

use crate::tolerance::Tol;

const UNKNOWN: u8 = 0;
pub(super) const KNOWN: u8 = 1;
const APPROX: u8 = 2;

/// One allocation's modelled contents.
#[derive(Debug, Clone)]
pub(super) struct ModelMem {
    pub(super) bytes: Vec<u8>,
    pub(super) state: Vec<u8>,
    /// Approximate f32 values by byte offset: (the oracle's value, the tolerance).
    pub(super) approx: BTreeMap<usize, (f32, Tol)>,
}

/// A byte range copied out of a [`ModelMem`], approximate values fully inside it included.
pub(super) struct Segment {
    bytes: Vec<u8>,
    state: Vec<u8>,
    approx: Vec<(usize, f32, Tol)>,
}

/// What the model predicts for one f32 output element.
#[derive(Clone, Copy)]
pub(super) enum Value {
    Exact(f32),
    Approx(f32, Tol),
    Unknown,
}

impl ModelMem {
    pub(super) fn new(size: usize) -> Self {
        Self {
            bytes: vec![0; size],
            state: vec![UNKNOWN; size],
            approx: BTreeMap::new(),
        }
    }

    /// Forgets approximate values that share a byte with `[s, e)`; their bytes outside
    /// the range become unknown.
    fn clobber(&mut self, s: usize, e: usize) {
        let keys: Vec<usize> = self
            .approx
            .range(s.saturating_sub(3)..e)
            .map(|(&k, _)| k)
            .collect();
        for k in keys {
            self.approx.remove(&k);
            for i in k..k + 4 {
                if i < s || i >= e {
                    self.state[i] = UNKNOWN;
                }
            }
        }
    }

    pub(super) fn write_known(&mut self, off: usize, data: &[u8]) {
        let end = off + data.len();
        self.clobber(off, end);
        self.bytes[off..end].copy_from_slice(data);
        self.state[off..end].fill(KNOWN);
    }

    pub(super) fn write_value(&mut self, off: usize, v: Value) {
        self.clobber(off, off + 4);
        // Rust leaves the sign and payload of a computed NaN unspecified (Miri picks them
        // at random): any NaN is the exact result.
        let v = match v {
            Value::Exact(x) if x.is_nan() => Value::Approx(x, Tol::EXACT),
            v => v,
        };
        match v {
            Value::Exact(x) => {
                self.bytes[off..off + 4].copy_from_slice(&x.to_le_bytes());
                self.state[off..off + 4].fill(KNOWN);
            }
            Value::Approx(x, tol) => {
                self.bytes[off..off + 4].copy_from_slice(&x.to_le_bytes());
                self.state[off..off + 4].fill(APPROX);
                self.approx.insert(off, (x, tol));
            }
            Value::Unknown => self.state[off..off + 4].fill(UNKNOWN),
        }
    }

    /// The f32 at `off` when all its bytes are known.
    pub(super) fn known_f32(&self, off: usize) -> Option<f32> {
        self.state[off..off + 4]
            .iter()
            .all(|&s| s == KNOWN)
            .then(|| f32::from_le_bytes(self.bytes[off..off + 4].try_into().expect("4 bytes")))
    }

    /// The `len` bytes at `off` when all are known.
    pub(super) fn known_bytes(&self, off: usize, len: usize) -> Option<&[u8]> {
        self.state[off..off + len]
            .iter()
            .all(|&s| s == KNOWN)
            .then(|| &self.bytes[off..off + len])
    }

    /// Marks `[off, off + len)` unknown (written with values the model does not predict).
    pub(super) fn forget(&mut self, off: usize, len: usize) {
        self.clobber(off, off + len);
        self.state[off..off + len].fill(UNKNOWN);
    }

    pub(super) fn segment(&self, off: usize, len: usize) -> Segment {
        let mut state = self.state[off..off + len].to_vec();
        let mut approx = Vec::new();
        for (&k, &(v, tol)) in self.approx.range(off.saturating_sub(3)..off + len) {
            if k >= off && k + 4 <= off + len {
                approx.push((k - off, v, tol));
            } else {
                // Part of an approximate value: its bytes alone mean nothing.
                for i in k.max(off)..(k + 4).min(off + len) {
                    state[i - off] = UNKNOWN;
                }
            }
        }
        Segment {
            bytes: self.bytes[off..off + len].to_vec(),
            state,
            approx,
        }
    }

    pub(super) fn paste(&mut self, off: usize, seg: &Segment) {
        let end = off + seg.bytes.len();
        self.clobber(off, end);
        self.bytes[off..end].copy_from_slice(&seg.bytes);
        self.state[off..end].copy_from_slice(&seg.state);
        for &(k, v, tol) in &seg.approx {
            self.approx.insert(off + k, (v, tol));
        }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Live {
    pub(super) base: u64,
    pub(super) size: usize,
    pub(super) mem: ModelMem,
}

/// An operand located in the model: (index into `live`, byte offset).
pub(super) type Loc = (usize, usize);

/// A live alias in the model: the bytes `offset..offset + bytes` of the allocation at
/// `root`, made from `parent` (the start of the live alias its pointer lay in, else
/// `root`).
#[derive(Debug, Clone, Copy)]
pub(super) struct AliasRec {
    pub(super) bytes: usize,
    pub(super) root: u64,
    pub(super) offset: usize,
    pub(super) parent: u64,
}
