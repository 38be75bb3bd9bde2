//! The call language ([`Op`]) and how calls are drawn from a [`Source`] and the model's
//! state ([`Machine::generate`]).

use backend_api::{BackendTranspose, BinaryOp, ReduceOp, UnaryOp};

use super::machine::Machine;
use super::rules::{HUGE_ALLOC, trans};
use super::source::{Fill, Source};

/// One call of the language, with concrete arguments.
#[derive(Debug, Clone, PartialEq)]
#[expect(missing_docs, reason = "the fields are the trait method's arguments")]
pub enum Op {
    Alloc {
        bytes: usize,
    },
    Free {
        ptr: u64,
    },
    CopyHtod {
        dst: u64,
        len: usize,
        fill: Fill,
    },
    CopyDtoh {
        src: u64,
        len: usize,
    },
    CopyDtod {
        dst: u64,
        src: u64,
        bytes: usize,
    },
    Unary {
        op: UnaryOp,
        input: u64,
        output: u64,
        n: usize,
    },
    Binary {
        op: BinaryOp,
        a: u64,
        b: u64,
        output: u64,
        n: usize,
    },
    Reduce {
        op: ReduceOp,
        input: u64,
        output: u64,
        shape: Vec<usize>,
        axis: usize,
    },
    Gemm {
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
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
    },
    Synchronize,
    MemoryInfo,
    /// Reads every live allocation back whole and checks it.
    CheckAll,
}

impl Op {
    /// The trait method's name (what an `InvalidArgument` message must mention).
    pub fn name(&self) -> &'static str {
        match self {
            Op::Alloc { .. } => "alloc",
            Op::Free { .. } => "free",
            Op::CopyHtod { .. } => "copy_htod",
            Op::CopyDtoh { .. } => "copy_dtoh",
            Op::CopyDtod { .. } => "copy_dtod",
            Op::Unary { .. } => "unary",
            Op::Binary { .. } => "binary",
            Op::Reduce { .. } => "reduce",
            Op::Gemm { .. } => "gemm",
            Op::Synchronize => "synchronize",
            Op::MemoryInfo => "memory_info",
            Op::CheckAll => "check_all",
        }
    }
}

impl Machine<'_> {
    // -----------------------------------------------------------------------------------
    // Generation

    /// A pointer for an operand: mostly into a live allocation (at its start, an aligned
    /// or unaligned interior offset, its end, or past it), sometimes stale or made up.
    /// Returns it with the bytes left to the end of its allocation (0 when it is not in one).
    fn place(&self, src: &mut Source<'_>) -> (u64, u64) {
        let c = src.u8();
        if c < 210 && !self.live.is_empty() {
            let l = &self.live[src.below(self.live.len() as u64) as usize];
            let size = l.size as u64;
            let off = match src.u8() {
                0..120 => 0,
                120..200 => 4 * src.below(size / 4 + 1),
                200..225 => src.below(size + 1),
                225..240 => size,
                _ => size + 1 + src.below(64),
            };
            return (l.base + off, size.saturating_sub(off));
        }
        if c < 232 && !self.freed.is_empty() {
            let p = self.freed[src.below(self.freed.len() as u64) as usize];
            return (p.wrapping_add(4 * src.below(8)), 0);
        }
        let mut raw = vec![0, 4, 0xdead_0000, u64::MAX - 3, !255u64];
        if !self.opts.shared {
            raw.push(src.u64());
            if let Some(l) = self.live.last() {
                // In the gap after an allocation: unmapped, but close.
                raw.push(l.base + l.size as u64 + 1);
                raw.push((l.base + l.size as u64).next_multiple_of(256) + 256);
            }
        }
        (src.pick(&raw), 0)
    }

    /// A count of `unit`-byte elements for operands with `room` bytes left: mostly one
    /// that fits, sometimes 0, a small guess, just too many, or absurdly many.
    fn count(&self, src: &mut Source<'_>, room: u64, unit: u64) -> usize {
        let fit = room / unit;
        match src.u8() {
            0..190 if fit > 0 => (1 + src.below(fit)) as usize,
            0..190 => 1 + src.below(16) as usize,
            190..200 => fit as usize,
            200..210 => 0,
            210..235 => 1 + src.below(64) as usize,
            235..250 => (fit + 1) as usize,
            _ => src.pick(&[usize::MAX, usize::MAX / 4 + 1, 1 << 40]),
        }
    }

    /// A byte count for a host copy: like [`count`](Self::count), but a host buffer of
    /// that size must exist, so "absurd" is one byte past the end.
    fn host_len(&self, src: &mut Source<'_>, room: u64) -> usize {
        match self.count(src, room, 1) {
            n if n > 1 << 24 => room as usize + 1,
            n => n,
        }
    }

    fn alloc_size(&self, src: &mut Source<'_>) -> usize {
        match src.u8() {
            0..90 => src.below(257) as usize,
            90..180 => 257 + src.below(4096) as usize,
            180..225 => 4 * src.below(16_384) as usize,
            225..232 if self.opts.big_allocs => (1 << 20) + src.below(1 << 20) as usize,
            225..240 => 0,
            _ => src.pick(&[
                HUGE_ALLOC as usize,
                1 << 50,
                usize::MAX,
                usize::MAX - 255,
                1 << 62,
            ]),
        }
    }

    /// The next call, drawn from `src` and the model's state.
    pub fn generate(&self, src: &mut Source<'_>) -> Op {
        let mut kind = src.u8();
        if self.live.is_empty() && kind < 128 {
            kind = 0; // mostly allocate first
        }
        match kind {
            0..28 => {
                let bytes = self.alloc_size(src);
                let full = self.live.len() >= self.opts.max_live
                    || ((bytes as u64) < HUGE_ALLOC
                        && self.live_bytes + bytes as u64 > self.opts.max_bytes);
                if full && !self.live.is_empty() {
                    let l = &self.live[src.below(self.live.len() as u64) as usize];
                    Op::Free { ptr: l.base }
                } else {
                    Op::Alloc { bytes }
                }
            }
            28..46 => {
                let ptr = match src.u8() {
                    0..170 if !self.live.is_empty() => {
                        self.live[src.below(self.live.len() as u64) as usize].base
                    }
                    0..200 if !self.live.is_empty() => {
                        let l = &self.live[src.below(self.live.len() as u64) as usize];
                        l.base + 1 + src.below(l.size as u64 + 8)
                    }
                    _ => self.place(src).0,
                };
                Op::Free { ptr }
            }
            46..86 => {
                let (dst, room) = self.place(src);
                Op::CopyHtod {
                    dst,
                    len: self.host_len(src, room),
                    fill: Fill {
                        seed: src.u64(),
                        raw: src.below(5) == 0,
                    },
                }
            }
            86..114 => {
                let (src_ptr, room) = self.place(src);
                Op::CopyDtoh {
                    src: src_ptr,
                    len: self.host_len(src, room),
                }
            }
            114..134 => {
                let (s, room_s) = self.place(src);
                let (d, room_d) = match src.u8() {
                    0..12 => (s, room_s),
                    12..24 => (s.wrapping_add(1 + src.below(8)), room_s.saturating_sub(8)),
                    _ => self.place(src),
                };
                Op::CopyDtod {
                    dst: d,
                    src: s,
                    bytes: self.count(src, room_s.min(room_d), 1),
                }
            }
            134..166 => {
                let op = src.pick(UnaryOp::ALL);
                let (input, room_i) = self.place(src);
                let (output, room_o) = match src.u8() {
                    0..80 => (input, room_i),
                    80..90 => (input.wrapping_add(4), room_i.saturating_sub(4)),
                    _ => self.place(src),
                };
                Op::Unary {
                    op,
                    input,
                    output,
                    n: self.count(src, room_i.min(room_o), 4),
                }
            }
            166..194 => {
                let op = src.pick(BinaryOp::ALL);
                let (a, room_a) = self.place(src);
                let (b, room_b) = if src.below(6) == 0 {
                    (a, room_a)
                } else {
                    self.place(src)
                };
                let (output, room_o) = match src.u8() {
                    0..50 => (a, room_a),
                    50..75 => (b, room_b),
                    75..85 => (b.wrapping_add(4), room_b.saturating_sub(4)),
                    _ => self.place(src),
                };
                Op::Binary {
                    op,
                    a,
                    b,
                    output,
                    n: self.count(src, room_a.min(room_b).min(room_o), 4),
                }
            }
            194..210 => {
                let op = src.pick(ReduceOp::ALL);
                let rank = match src.u8() {
                    0..8 => 0,
                    _ => 1 + src.below(3) as usize,
                };
                let huge = src.below(32) == 0;
                let shape: Vec<usize> = (0..rank)
                    .map(|_| {
                        if huge {
                            1 + src.below(1 << 40) as usize
                        } else {
                            src.below(9) as usize
                        }
                    })
                    .collect();
                let axis = if src.below(12) == 0 {
                    rank + src.below(2) as usize
                } else {
                    src.below(rank as u64) as usize
                };
                let (input, _) = self.place(src);
                let (output, _) = self.place(src);
                Op::Reduce {
                    op,
                    input,
                    output,
                    shape,
                    axis,
                }
            }
            210..228 => {
                let t = [
                    BackendTranspose::NoTrans,
                    BackendTranspose::Trans,
                    BackendTranspose::ConjTrans,
                ];
                let (trans_a, trans_b) = (src.pick(&t), src.pick(&t));
                let (m, n, k) = (
                    src.below(13) as usize,
                    src.below(13) as usize,
                    src.below(13) as usize,
                );
                let mut ld = |rows: usize| match src.u8() {
                    0..200 => rows.max(1) + src.below(3) as usize,
                    200..225 => rows.max(1) - 1,
                    _ => rows.max(1) + src.below(40) as usize,
                };
                let lda = ld(if trans(trans_a) { k } else { m });
                let ldb = ld(if trans(trans_b) { n } else { k });
                let ldc = ld(m);
                let alpha = src.pick(&[1.0, 1.0, 0.0, -0.5, 2.0]);
                let beta = src.pick(&[0.0, 0.0, 1.0, 0.5, -1.0]);
                let (a, _) = self.place(src);
                let (b, _) = if src.below(8) == 0 {
                    (a, 0)
                } else {
                    self.place(src)
                };
                let (c, _) = if src.below(16) == 0 {
                    (a, 0)
                } else {
                    self.place(src)
                };
                Op::Gemm {
                    trans_a,
                    trans_b,
                    m,
                    n,
                    k,
                    alpha,
                    a,
                    lda,
                    b,
                    ldb,
                    beta,
                    c,
                    ldc,
                }
            }
            228..240 => Op::Synchronize,
            240..248 => Op::MemoryInfo,
            _ => Op::CheckAll,
        }
    }
}
