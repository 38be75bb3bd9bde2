//! The call language ([`Op`]) and how calls are drawn from a [`Source`] and the model's
//! state ([`Machine::generate`]).

use backend_api::{
    AttentionArgs, AttentionMask, BackendTranspose, BinaryOp, Conv2dArgs, DType, GemmArgs,
    HeadTensor, QuantFormat, ReduceOp, Retired, RowOp, UnaryOp, UnaryParamOp,
};

use super::machine::Machine;
use super::rules::{HUGE_ALLOC, MAX_ALIASES, Where, trans};
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
    /// `unary`, or `unary_param` with its op and parameters when `param` is given, or
    /// `unary_ex` / `unary_param_ex` when `dtype` is not f32.
    Unary {
        op: UnaryOp,
        param: Option<(UnaryParamOp, f32, f32)>,
        dtype: DType,
        input: u64,
        output: u64,
        n: usize,
    },
    /// `binary`, or `binary_ex` when `dtype` is not f32.
    Binary {
        op: BinaryOp,
        dtype: DType,
        a: u64,
        b: u64,
        output: u64,
        n: usize,
    },
    /// `reduce`, or `reduce_ex` when `dtype` is not f32.
    Reduce {
        op: ReduceOp,
        dtype: DType,
        input: u64,
        output: u64,
        shape: Vec<usize>,
        axis: usize,
    },
    /// `softmax`, `log_softmax`, `layer_norm` or `rms_norm` (no gamma or beta, eps
    /// 1e-5): the elementwise rules over `rows * cols` values; `rows_ex` when `dtype` is
    /// not f32.
    Rows {
        op: RowOp,
        dtype: DType,
        x: u64,
        y: u64,
        rows: usize,
        cols: usize,
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
        /// Made as the same product stated row-major, through `gemm_row_major` (A and B,
        /// `lda` and `ldb`, `m` and `n` swapped, and so each transpose flag).
        row_major: bool,
    },
    /// `attention_ex` with small shapes, grouped heads, either layout, sometimes a mask,
    /// a soft cap or a window, and sometimes bad scalars or strides.
    AttentionEx {
        args: AttentionArgs,
    },
    /// `gemm_q` of a few rows and blocks, either format, B f32 or f16, sometimes `k` off
    /// the block size or a short `ldc`.
    GemmQ {
        format: QuantFormat,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a: u64,
        b: u64,
        b_dtype: DType,
        ldb: usize,
        beta: f64,
        c: u64,
        ldc: usize,
    },
    /// `batched_gemm_ex`: A, B and C of any storage type, a few batches.
    GemmEx {
        args: GemmArgs,
    },
    /// `conv2d_forward_ex`: small shapes, groups (depthwise often), dilation, asymmetric
    /// padding, sometimes a bias, sometimes bad scalars or an output shape off by one.
    Conv2dEx {
        args: Conv2dArgs,
    },
    /// `binary_broadcast` over shapes of up to 4 dimensions cut from one base shape,
    /// sometimes with a wrong output shape or too many dimensions.
    Broadcast {
        op: BinaryOp,
        /// `binary_broadcast_ex` when not f32.
        dtype: DType,
        a: u64,
        a_shape: Vec<usize>,
        b: u64,
        b_shape: Vec<usize>,
        output: u64,
        out_shape: Vec<usize>,
    },
    /// `gather` of small tables by indices drawn in and out of range.
    Gather {
        /// `gather_ex` when not f32.
        dtype: DType,
        table: u64,
        rows: usize,
        cols: usize,
        indices: u64,
        n: usize,
        output: u64,
    },
    Synchronize,
    MemoryInfo,
    /// Reads every live allocation back whole and checks it.
    CheckAll,
    /// `alias(ptr, bytes)`: a fresh address for bytes of a live allocation or alias.
    Alias {
        ptr: u64,
        bytes: usize,
    },
    /// `retire(ptr, why)`: a frame or arena reset of a live alias and its descendants.
    Retire {
        ptr: u64,
        why: Retired,
    },
    /// `copy_dtoh_many` of these `(src, len)` reads, all or nothing.
    ReadMany {
        reads: Vec<(u64, usize)>,
    },
    /// `map_host` of `len` bytes at `ptr`, ended in the same step: a `Read` view compared
    /// with the model, or a `Write` view filled with `fill` (as `copy_htod` would write).
    MapHost {
        ptr: u64,
        len: usize,
        write: Option<Fill>,
    },
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
            Op::Unary {
                param: None,
                dtype: DType::F32,
                ..
            } => "unary",
            Op::Unary { param: None, .. } => "unary_ex",
            Op::Unary {
                dtype: DType::F32, ..
            } => "unary_param",
            Op::Unary { .. } => "unary_param_ex",
            Op::Binary {
                dtype: DType::F32, ..
            } => "binary",
            Op::Binary { .. } => "binary_ex",
            Op::Reduce {
                dtype: DType::F32, ..
            } => "reduce",
            Op::Reduce { .. } => "reduce_ex",
            Op::Rows {
                op,
                dtype: DType::F32,
                ..
            } => op.name(),
            Op::Rows { .. } => "rows_ex",
            Op::Gemm {
                row_major: true, ..
            } => "gemm_row_major",
            Op::Gemm { .. } => "gemm",
            Op::AttentionEx { .. } => "attention_ex",
            Op::Conv2dEx { .. } => "conv2d_forward_ex",
            Op::GemmEx { .. } => "batched_gemm_ex",
            Op::GemmQ { .. } => "gemm_q",
            Op::Broadcast {
                dtype: DType::F32, ..
            } => "binary_broadcast",
            Op::Broadcast { .. } => "binary_broadcast_ex",
            Op::Gather {
                dtype: DType::F32, ..
            } => "gather",
            Op::Gather { .. } => "gather_ex",
            Op::Synchronize => "synchronize",
            Op::MemoryInfo => "memory_info",
            Op::CheckAll => "check_all",
            Op::Alias { .. } => "alias",
            Op::Retire { .. } => "retire",
            Op::ReadMany { .. } => "copy_dtoh_many",
            Op::MapHost { .. } => "map_host",
        }
    }

    /// The device pointers of a data call (not alloc, free, alias or retire).
    pub(super) fn data_pointers(&self) -> Vec<u64> {
        match self {
            &Op::CopyHtod { dst, .. } => vec![dst],
            &Op::CopyDtoh { src, .. } => vec![src],
            &Op::CopyDtod { dst, src, .. } => vec![dst, src],
            &Op::Unary { input, output, .. } => vec![input, output],
            &Op::Binary { a, b, output, .. } => vec![a, b, output],
            &Op::Reduce { input, output, .. } => vec![input, output],
            &Op::Rows { x, y, .. } => vec![x, y],
            &Op::Gemm { a, b, c, .. } => vec![a, b, c],
            Op::AttentionEx { args: x } => {
                let mut p = vec![x.q.ptr, x.k.ptr, x.v.ptr, x.o.ptr];
                p.extend(x.mask.map(|m| m.ptr));
                p
            }
            Op::GemmEx { args: x } => vec![x.a_ptr, x.b_ptr, x.c_ptr],
            Op::Conv2dEx { args: x } => {
                let mut p = vec![x.input, x.filter, x.output];
                p.extend(x.bias);
                p
            }
            &Op::GemmQ { a, b, c, .. } => vec![a, b, c],
            &Op::Broadcast { a, b, output, .. } => vec![a, b, output],
            &Op::Gather {
                table,
                indices,
                output,
                ..
            } => vec![table, indices, output],
            Op::ReadMany { reads } => reads.iter().map(|r| r.0).collect(),
            &Op::MapHost { ptr, .. } => vec![ptr],
            _ => Vec::new(),
        }
    }

    /// What an `InvalidArgument` message of the call must mention: its name, except
    /// for `copy_dtoh_many`, whose entries are refused as `copy_dtoh` calls are.
    pub fn error_name(&self) -> &'static str {
        match self {
            Op::ReadMany { .. } => "copy_dtoh",
            op => op.name(),
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
        if c < 210
            && let Some((base, size)) = self.target(src)
        {
            let off = match src.u8() {
                0..120 => 0,
                120..200 => 4 * src.below(size / 4 + 1),
                200..225 => src.below(size + 1),
                225..240 => size,
                _ => size + 1 + src.below(64),
            };
            return (base + off, size.saturating_sub(off));
        }
        if c < 232 && !self.retired_recent.is_empty() && (self.freed.is_empty() || src.u8() < 96) {
            // Into a retired alias, with the room it had: the call fits but is stale.
            let (p, bytes) = self.stale_target(src);
            let off = 4 * src.below(bytes / 4 + 1);
            return (p + off, bytes - off);
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

    /// Another name of the bytes at `ptr` (its allocation's own address, or a live alias
    /// over them), mostly exactly, sometimes 4 bytes after or before: for operands that
    /// overlap only physically. `None` when the bytes have no other name.
    fn twin(&self, src: &mut Source<'_>, ptr: u64) -> Option<(u64, u64)> {
        let (i, off) = match self.find(ptr) {
            Where::Alias(start, a) => (self.by_base[&a.root], a.offset + (ptr - start) as usize),
            Where::Alloc(i) => (i, (ptr - self.live[i].base) as usize),
            Where::Stale(_) | Where::Nowhere => return None,
        };
        let (root, size) = (self.live[i].base, self.live[i].size);
        let mut names = Vec::new();
        if root + off as u64 != ptr {
            names.push((root + off as u64, (size - off) as u64));
        }
        for &a in &self.alias_order {
            let r = &self.aliases[&a];
            if r.root == root && r.offset <= off && off <= r.offset + r.bytes {
                let p = a + (off - r.offset) as u64;
                if p != ptr {
                    names.push((p, (r.offset + r.bytes - off) as u64));
                }
            }
        }
        if names.is_empty() {
            return None;
        }
        let (p, room) = names[src.below(names.len() as u64) as usize];
        Some(match src.u8() {
            0..128 => (p, room),
            128..200 => (p + 4, room.saturating_sub(4)),
            _ => (p.wrapping_sub(4), room + 4),
        })
    }

    /// [`twin`](Self::twin), else [`place`](Self::place).
    fn twin_or_place(&self, src: &mut Source<'_>, ptr: u64) -> (u64, u64) {
        match self.twin(src, ptr) {
            Some(t) => t,
            None => self.place(src),
        }
    }

    /// A live allocation, or a quarter of the time (when there are any) a live alias:
    /// `(start, size)`; `None` when nothing is live.
    fn target(&self, src: &mut Source<'_>) -> Option<(u64, u64)> {
        if self.live.is_empty() {
            return None;
        }
        if !self.alias_order.is_empty() && src.below(4) == 0 {
            return Some(self.alias_target(src));
        }
        let l = &self.live[src.below(self.live.len() as u64) as usize];
        Some((l.base, l.size as u64))
    }

    /// A live alias (there must be one): `(start, size)`.
    fn alias_target(&self, src: &mut Source<'_>) -> (u64, u64) {
        let a = self.alias_order[src.below(self.alias_order.len() as u64) as usize];
        (a, self.aliases[&a].bytes as u64)
    }

    /// A recently retired alias (there must be one): `(start, size)`.
    fn stale_target(&self, src: &mut Source<'_>) -> (u64, u64) {
        let (a, bytes) = self.retired_recent[src.below(self.retired_recent.len() as u64) as usize];
        (a, bytes as u64)
    }

    /// `alias`: mostly of part of a live allocation or (a frame's slice) of a live alias,
    /// sometimes past its end, of a retired alias, or of anything [`place`](Self::place)
    /// draws.
    fn gen_alias(&self, src: &mut Source<'_>) -> Op {
        let from = match src.u8() {
            0..110 if !self.live.is_empty() => {
                let l = &self.live[src.below(self.live.len() as u64) as usize];
                Some((l.base, l.size as u64))
            }
            0..200 if !self.alias_order.is_empty() => Some(self.alias_target(src)),
            0..200 if !self.live.is_empty() => self.target(src),
            200..230 if !self.retired_recent.is_empty() => Some(self.stale_target(src)),
            _ => None,
        };
        let (ptr, room) = match from {
            Some((base, size)) => {
                let off = match src.u8() {
                    0..100 => 0,
                    100..200 => 4 * src.below(size / 4 + 1),
                    200..235 => src.below(size + 1),
                    235..245 => size,
                    _ => size + 1 + src.below(64),
                };
                (base + off, size.saturating_sub(off))
            }
            None => self.place(src),
        };
        let bytes = match src.u8() {
            0..60 => room as usize,
            _ => self.count(src, room, 1),
        };
        Op::Alias { ptr, bytes }
    }

    /// `retire`: mostly of a live alias (often one that has aliases made from it: a frame
    /// reset), sometimes of a retired alias, an allocation or the inside of an alias.
    fn gen_retire(&self, src: &mut Source<'_>) -> Op {
        let why = src.pick(&[
            Retired::FrameReset,
            Retired::FrameReset,
            Retired::ArenaReset,
            Retired::Freed,
            Retired::ParentRetired,
        ]);
        let parents: Vec<u64> = self
            .alias_order
            .iter()
            .copied()
            .filter(|a| self.aliases.values().any(|r| r.parent == *a))
            .collect();
        let ptr = match src.u8() {
            0..90 if !parents.is_empty() => parents[src.below(parents.len() as u64) as usize],
            0..170 if !self.alias_order.is_empty() => self.alias_target(src).0,
            0..200 if !self.retired_recent.is_empty() => {
                let (a, bytes) = self.stale_target(src);
                if src.below(4) == 0 {
                    a + src.below(bytes + 1)
                } else {
                    a
                }
            }
            0..220 if !self.live.is_empty() => {
                self.live[src.below(self.live.len() as u64) as usize].base
            }
            0..235 if !self.alias_order.is_empty() => {
                let (a, bytes) = self.alias_target(src);
                a + 1 + src.below(bytes + 8)
            }
            _ => self.place(src).0,
        };
        Op::Retire { ptr, why }
    }

    /// `copy_dtoh_many` of 1-4 reads: in range, except (a third of the time) one drawn
    /// like `copy_dtoh`'s or out of range on purpose.
    fn gen_read_many(&self, src: &mut Source<'_>) -> Op {
        let n = 1 + src.below(4) as usize;
        let bad = (src.below(3) == 0).then(|| src.below(n as u64) as usize);
        let mut reads = Vec::with_capacity(n);
        for e in 0..n {
            let target = self.target(src);
            let read = match (target, Some(e) == bad) {
                (Some((base, size)), false) => {
                    let off = match src.u8() {
                        0..100 => 0,
                        100..200 => 4 * src.below(size / 4 + 1),
                        _ => src.below(size + 1),
                    };
                    let room = size - off;
                    let len = match src.u8() {
                        0..20 => 0,
                        20..60 => room,
                        _ if room > 0 => 1 + src.below(room),
                        _ => 0,
                    };
                    (base + off, len as usize)
                }
                (Some((base, size)), true) if src.u8() < 96 => {
                    let off = src.below(size + 1);
                    (base + off, (size - off + 1 + src.below(8)) as usize)
                }
                (_, true) if !self.retired_recent.is_empty() && src.u8() < 96 => {
                    let (a, bytes) = self.stale_target(src);
                    (a, 1 + src.below(bytes.max(1)) as usize)
                }
                _ => {
                    let (p, room) = self.place(src);
                    (p, self.host_len(src, room))
                }
            };
            reads.push(read);
        }
        Op::ReadMany { reads }
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
        // One call in eight: aliases, resets and batched reads.
        let family = src.u8();
        if family >= 224 {
            let aliases = !self.no_alias;
            return match family - 224 {
                0..12 if aliases && self.aliases.len() >= MAX_ALIASES && !self.no_retire => {
                    self.gen_retire(src)
                }
                0..12 if aliases && self.aliases.len() < MAX_ALIASES => self.gen_alias(src),
                12..20 if aliases && !self.no_retire => self.gen_retire(src),
                20..26 if !self.no_views => {
                    let (ptr, room) = self.place(src);
                    Op::MapHost {
                        ptr,
                        len: self.host_len(src, room),
                        write: (src.u8() < 128).then(|| Fill {
                            seed: src.u64(),
                            raw: src.below(5) == 0,
                        }),
                    }
                }
                _ => self.gen_read_many(src),
            };
        }
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
                    // free of an alias: what retires it when no frame reset does.
                    0..48 if !self.alias_order.is_empty() => self.alias_target(src).0,
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
                    24..60 => self.twin_or_place(src, s),
                    _ => self.place(src),
                };
                Op::CopyDtod {
                    dst: d,
                    src: s,
                    bytes: self.count(src, room_s.min(room_d), 1),
                }
            }
            156..166 => {
                let op = src.pick(RowOp::ALL);
                let (x, room_x) = self.place(src);
                let (y, room_y) = match src.u8() {
                    0..80 => (x, room_x),
                    80..90 => (x.wrapping_add(4), room_x.saturating_sub(4)),
                    90..150 => self.twin_or_place(src, x),
                    _ => self.place(src),
                };
                // An eighth of them on f16/bf16 storage, now and then mid-word.
                let (dtype, shift) = pick_dtype(src);
                let (x, y) = (x.wrapping_add(shift), y.wrapping_add(shift));
                let n = self.count(src, room_x.min(room_y), dtype.size_bytes() as u64);
                // Mostly a divisor of n as the row length, so the call is valid.
                let cols = match src.u8() {
                    0..230 => {
                        let most = (1 + src.below(64) as usize).min(n.max(1));
                        (1..=most).rev().find(|c| n.is_multiple_of(*c)).unwrap_or(1)
                    }
                    _ => 1 + src.below(8) as usize,
                };
                Op::Rows {
                    op,
                    dtype,
                    x,
                    y,
                    rows: n / cols,
                    cols,
                }
            }
            134..156 => {
                let op = src.pick(UnaryOp::ALL);
                let (input, room_i) = self.place(src);
                let (output, room_o) = match src.u8() {
                    0..80 => (input, room_i),
                    80..90 => (input.wrapping_add(4), room_i.saturating_sub(4)),
                    90..150 => self.twin_or_place(src, input),
                    _ => self.place(src),
                };
                // A quarter of them on f16/bf16 storage (now and then starting mid-word),
                // a quarter of the rest parameterised, now and then with a bad parameter.
                let (dtype, shift) = pick_dtype(src);
                let (input, output) = (input.wrapping_add(shift), output.wrapping_add(shift));
                let param = (src.below(4) == 0).then(|| {
                    let f = src.pick(UnaryParamOp::ALL);
                    let mut v = || match src.below(16) {
                        0 => f32::NAN,
                        1 => f32::INFINITY,
                        2 => 0.0,
                        _ => (src.below(200) as f32 - 100.0) * 0.05,
                    };
                    let (a, b) = (v(), v());
                    (f, a, b)
                });
                Op::Unary {
                    op,
                    param,
                    dtype,
                    input,
                    output,
                    n: self.count(src, room_i.min(room_o), dtype.size_bytes() as u64),
                }
            }
            186..190 => self.gen_broadcast(src),
            190..194 => self.gen_gather(src),
            166..186 => {
                let op = src.pick(BinaryOp::ALL);
                let (dtype, shift) = pick_dtype(src);
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
                    85..100 => self.twin_or_place(src, a),
                    100..115 => self.twin_or_place(src, b),
                    _ => self.place(src),
                };
                Op::Binary {
                    op,
                    dtype,
                    a: a.wrapping_add(shift),
                    b: b.wrapping_add(shift),
                    output: output.wrapping_add(shift),
                    n: self.count(
                        src,
                        room_a.min(room_b).min(room_o),
                        dtype.size_bytes() as u64,
                    ),
                }
            }
            203..206 => self.gen_attention_ex(src),
            206..207 => self.gen_gemm_ex(src),
            207..209 => self.gen_conv2d_ex(src),
            209..210 => self.gen_gemm_q(src),
            194..203 => {
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
                let (output, _) = if src.below(6) == 0 {
                    self.twin_or_place(src, input)
                } else {
                    self.place(src)
                };
                // A quarter on f16/bf16 storage (`reduce_ex`), now and then mid-word.
                let (dtype, shift) = pick_dtype(src);
                Op::Reduce {
                    op,
                    dtype,
                    input: input.wrapping_add(shift),
                    output: output.wrapping_add(shift),
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
                let (c, _) = match src.below(16) {
                    0 => (a, 0),
                    1 => self.twin_or_place(src, a),
                    2 => self.twin_or_place(src, b),
                    _ => self.place(src),
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
                    row_major: src.below(4) == 0,
                }
            }
            228..240 => Op::Synchronize,
            240..248 => Op::MemoryInfo,
            _ => Op::CheckAll,
        }
    }

    /// A `batched_gemm_ex` call over placed operands: A, B and C each f32/f16/bf16, up
    /// to 3 batches, now and then a short `ldc` or batches of C that overlap.
    fn gen_gemm_ex(&self, src: &mut Source<'_>) -> Op {
        let (m, n, k) = (
            src.below(5) as usize,
            src.below(4) as usize,
            src.below(5) as usize,
        );
        let (ta, tb) = (
            src.pick(&[BackendTranspose::NoTrans, BackendTranspose::Trans]),
            src.pick(&[BackendTranspose::NoTrans, BackendTranspose::Trans]),
        );
        let rows = |t: BackendTranspose, r: usize, c: usize| if t.is_transposed() { c } else { r };
        let lda = rows(ta, m, k).max(1) + src.below(2) as usize;
        let ldb = rows(tb, k, n).max(1) + src.below(2) as usize;
        let mut ldc = m.max(1) + src.below(2) as usize;
        if src.below(20) == 0 {
            ldc = m.saturating_sub(1);
        }
        let count = src.below(4) as usize;
        let span = |ld: usize, cols: usize| ld * cols;
        let mut stride_c = span(ldc, n) + src.below(2) as usize;
        if src.below(20) == 0 {
            stride_c = stride_c.saturating_sub(1);
        }
        let (a, _) = self.place(src);
        let (b, _) = self.place(src);
        let (c, _) = match src.below(16) {
            0 => self.twin_or_place(src, b),
            _ => self.place(src),
        };
        let dt = |src: &mut Source<'_>| src.pick(&[DType::F32, DType::F16, DType::BF16]);
        let args = GemmArgs::new(
            ta,
            tb,
            m,
            n,
            k,
            src.pick(&[1.0, 1.0, 0.0, -0.5]),
            a,
            lda,
            b,
            ldb,
            src.pick(&[0.0, 0.0, 1.0, 0.5]),
            c,
            ldc,
        )
        .with_dtypes(dt(src), dt(src))
        .with_c_dtype(dt(src))
        .with_batch(
            span(lda, if ta.is_transposed() { m } else { k }),
            src.pick(&[0, span(ldb, n)]),
            stride_c,
            count,
        );
        Op::GemmEx { args }
    }

    /// A `gemm_q` call over placed operands.
    fn gen_gemm_q(&self, src: &mut Source<'_>) -> Op {
        let format = src.pick(QuantFormat::ALL);
        let (m, n) = (src.below(6) as usize, src.below(4) as usize);
        let mut k = QuantFormat::BLOCK * src.below(4) as usize;
        if src.below(20) == 0 {
            k += 1 + src.below(31) as usize;
        }
        let b_dtype = src.pick(&[DType::F32, DType::F32, DType::F16]);
        let ldb = k.max(1) + src.below(3) as usize;
        let mut ldc = m.max(1) + src.below(3) as usize;
        if src.below(20) == 0 {
            ldc = m.saturating_sub(1);
        }
        let (a, _) = self.place(src);
        let (b, _) = self.place(src);
        let (c, _) = match src.below(16) {
            0 => self.twin_or_place(src, b),
            _ => self.place(src),
        };
        Op::GemmQ {
            format,
            m,
            n,
            k,
            alpha: src.pick(&[1.0, 1.0, 0.0, -0.5]),
            a,
            b,
            b_dtype,
            ldb,
            beta: src.pick(&[0.0, 0.0, 1.0, 0.5]),
            c,
            ldc,
        }
    }

    /// A `conv2d_forward_ex` call over placed operands: groups of 1-2 input channels and
    /// 1-2 filters each, filters up to 3x3, dilation up to 2, padding up to 2 per side;
    /// one call in ten misuse.
    fn gen_conv2d_ex(&self, src: &mut Source<'_>) -> Op {
        let groups = 1 + src.below(3) as usize;
        let (cg, kg) = (src.below(3) as usize, 1 + src.below(2) as usize);
        let (c, k) = (groups * cg, groups * kg);
        let (h, w) = (src.below(6) as usize, src.below(6) as usize);
        let (r, s) = (1 + src.below(3) as usize, 1 + src.below(3) as usize);
        let stride = [1 + src.below(2) as usize, 1 + src.below(2) as usize];
        let dilation = [1 + src.below(2) as usize, 1 + src.below(2) as usize];
        let padding = [0; 4].map(|_: usize| src.below(3) as usize);
        let dim = |x: usize, a: usize, b: usize, f: usize, d: usize, st: usize| {
            (x + a + b)
                .checked_sub(d * (f - 1) + 1)
                .map_or(0, |v| v / st + 1)
        };
        let oh = dim(h, padding[0], padding[2], r, dilation[0], stride[0]);
        let ow = dim(w, padding[1], padding[3], s, dilation[1], stride[1]);
        let (input, _) = self.place(src);
        let (filter, _) = self.place(src);
        let (output, _) = match src.below(16) {
            0 => (input, 0),
            1 => self.twin_or_place(src, filter),
            _ => self.place(src),
        };
        let mut args = Conv2dArgs::new(
            input,
            [1, c, h, w],
            filter,
            [k, cg, r, s],
            output,
            [1, k, oh, ow],
        )
        .stride(stride)
        .padding(padding)
        .dilation(dilation)
        .groups(groups);
        if src.below(2) == 0 {
            args = args.bias(self.place(src).0);
        }
        // f16/bf16 storage a quarter of the time (all operands 4-byte aligned here).
        args = args.dtype(pick_dtype(src).0);
        match src.below(40) {
            0 => args.groups = 0,
            1 => args.dilation = [0, 1],
            2 => args.output_shape[3] += 1,
            3 => args.filter_shape[1] += 1,
            _ => {}
        }
        Op::Conv2dEx { args }
    }

    /// A `binary_broadcast` call: a and b cut from one base shape of up to 4 dimensions
    /// (leading dimensions dropped, some set to 1), the output shape their broadcast
    /// shape; the output mostly its own placement, sometimes an input's (valid only
    /// where that input is not broadcast). One call in ten is misuse: a wrong output
    /// shape, shapes that do not broadcast, or seven dimensions.
    fn gen_broadcast(&self, src: &mut Source<'_>) -> Op {
        let op = src.pick(BinaryOp::ALL);
        let rank = src.below(5) as usize;
        let base: Vec<usize> = (0..rank)
            .map(|_| match src.u8() {
                0..20 => 0,
                20..60 => 1,
                _ => 2 + src.below(4) as usize,
            })
            .collect();
        let mut cut = || -> Vec<usize> {
            let drop = src.below(rank as u64 + 1) as usize;
            base[drop..]
                .iter()
                .map(|&d| if src.below(3) == 0 { 1 } else { d })
                .collect()
        };
        let (mut a_shape, b_shape) = (cut(), cut());
        let r = a_shape.len().max(b_shape.len());
        let at = |s: &[usize], d: usize| {
            if d + s.len() < r {
                1
            } else {
                s[d + s.len() - r]
            }
        };
        let mut out_shape: Vec<usize> = (0..r)
            .map(|d| match (at(&a_shape, d), at(&b_shape, d)) {
                (1, y) => y,
                (x, _) => x,
            })
            .collect();
        match src.below(30) {
            0 if !out_shape.is_empty() => out_shape[0] += 1,
            1 => out_shape = vec![1; 7],
            2 if !a_shape.is_empty() => a_shape[0] += 2,
            _ => {}
        }
        let (dtype, shift) = pick_dtype(src);
        let (a, room_a) = self.place(src);
        let (b, _) = if src.below(6) == 0 {
            (a, room_a)
        } else {
            self.place(src)
        };
        let (output, _) = match src.u8() {
            0..40 => (a, 0),
            40..60 => (b, 0),
            60..80 => self.twin_or_place(src, a),
            _ => self.place(src),
        };
        let [a, b, output] = [a, b, output].map(|p| p.wrapping_add(shift));
        Op::Broadcast {
            op,
            dtype,
            a,
            a_shape,
            b,
            b_shape,
            output,
            out_shape,
        }
    }

    /// A `gather` call of a small table; now and then sizes that overflow, or an output
    /// over the table or the indices.
    fn gen_gather(&self, src: &mut Source<'_>) -> Op {
        let mut rows = src.below(7) as usize;
        let mut cols = src.below(7) as usize;
        let n = src.below(7) as usize;
        if src.below(40) == 0 {
            rows = 1 << 40;
            cols = 1 << 40;
        }
        let (dtype, shift) = pick_dtype(src);
        let (table, _) = self.place(src);
        let (indices, _) = self.place(src);
        let (output, _) = match src.below(16) {
            0 => (table, 0),
            1 => (indices, 0),
            2 => self.twin_or_place(src, table),
            _ => self.place(src),
        };
        let (table, output) = (table.wrapping_add(shift), output.wrapping_add(shift));
        Op::Gather {
            dtype,
            table,
            rows,
            cols,
            indices,
            n,
            output,
        }
    }

    /// An `attention_ex` call: mostly valid shapes over placed operands (which the model
    /// then finds in range or not), sometimes a bad head count, mask or stride.
    fn gen_attention_ex(&self, src: &mut Source<'_>) -> Op {
        let batch = 1 + src.below(2) as usize;
        let kv_heads = 1 + src.below(2) as usize;
        let heads = kv_heads * (1 + src.below(3) as usize);
        let (seq_q, seq_kv) = (src.below(5) as usize, src.below(7) as usize);
        let d = 1 + src.below(8) as usize;
        let dv = if src.below(4) == 0 {
            1 + src.below(8) as usize
        } else {
            d
        };
        let spare = src.below(3) as usize;
        let bshd = src.below(2) == 0;
        let t = |ptr: u64, h: usize, rows: usize, dim: usize| {
            if bshd {
                HeadTensor::bshd(ptr, h, rows, dim)
            } else {
                HeadTensor::bhsd(ptr, h, rows, dim)
            }
        };
        let (q, _) = self.place(src);
        let (k, _) = self.place(src);
        let (v, _) = if src.below(4) == 0 {
            (k, 0)
        } else {
            self.place(src)
        };
        let (o, _) = match src.below(16) {
            0 => (q, 0),
            1 => self.twin_or_place(src, q),
            _ => self.place(src),
        };
        let mut args = AttentionArgs::new(
            batch,
            heads,
            kv_heads,
            seq_q,
            seq_kv,
            d,
            t(q, heads, seq_q, d),
            t(k, kv_heads, seq_kv + spare, d),
            t(v, kv_heads, seq_kv + spare, dv),
            t(o, heads, seq_q + spare, dv),
        )
        .v_head_dim(dv)
        .causal(src.below(2) == 0);
        if src.below(3) == 0 {
            let (m, _) = self.place(src);
            let mb = if src.below(2) == 0 { 1 } else { batch };
            let mh = if src.below(2) == 0 { 1 } else { heads };
            args = args.mask(AttentionMask {
                ptr: m,
                batch: mb,
                heads: mh,
            });
        }
        if src.below(6) == 0 {
            args = args.softcap(src.pick(&[0.5, 4.0, 30.0]));
        }
        if src.below(6) == 0 {
            args = args.window(1 + src.below(4) as usize);
        }
        args = args.dtype(pick_dtype(src).0);
        // Misuse, one call in ten.
        match src.below(40) {
            0 => args.kv_heads = heads + 1,
            1 => args.o.head_stride = 0,
            2 => args.k.row_stride = d.saturating_sub(1),
            3 => args.softcap = Some(f64::NAN),
            _ => {}
        }
        Op::AttentionEx { args }
    }
}

/// The storage of an elementwise call: f32 three times in four, else f16 or bf16, then
/// half the time starting 2 bytes in (mid-word); returns the dtype and that shift.
fn pick_dtype(src: &mut Source<'_>) -> (DType, u64) {
    match src.below(8) {
        0 => (DType::F16, 2 * src.below(2)),
        1 => (DType::BF16, 2 * src.below(2)),
        _ => (DType::F32, 0),
    }
}
