//! The model's rules: whether a call is valid, and the effects the oracle predicts for
//! the valid ones.

use backend_api::validate::{self, AttentionPlan, BroadcastPlan, GatherPlan, GemmPlan, GemmQPlan};
use backend_api::{
    AttentionArgs, BackendTranspose, Conv2dArgs, DType, GemmArgs, Operand, ReduceOp, UnaryParamOp,
};
use backend_cpu::reference;

use super::call::Op;
use super::machine::Machine;
use super::memory::{AliasRec, Loc, Value};
use crate::tolerance::{Tol, reduce_tolerance};

/// Where a `gather`'s table (`None` when it has no rows), indices and output are.
pub(super) type GatherLocs = [Option<Loc>; 3];

/// Allocation sizes from here up are refused by every device: `OutOfMemory` is required.
pub const HUGE_ALLOC: u64 = 1 << 40;

/// Is `x` an input whose result every device computes within the conformance
/// tolerances? Zeros, NaN and infinities are tested by the suite; finite values must be
/// normal (subnormals may be flushed) and moderate.
pub(super) fn tame(x: f32) -> bool {
    !x.is_finite() || x == 0.0 || (x.is_normal() && (2f32.powi(-60)..=64.0).contains(&x.abs()))
}

/// Why `unary_param` refuses these parameters, or `None` when it takes them.
pub(super) fn bad_param(op: UnaryParamOp, a: f32, b: f32) -> Option<String> {
    let finite = |name: &str, v: f32| (!v.is_finite()).then(|| format!("{op}: {name} = {v}"));
    match op {
        UnaryParamOp::LeakyRelu | UnaryParamOp::Elu => finite("a", a),
        UnaryParamOp::Selu | UnaryParamOp::HardSigmoid => finite("a", a).or(finite("b", b)),
        UnaryParamOp::Celu => finite("a", a).or((a == 0.0).then(|| format!("{op}: a = 0"))),
        UnaryParamOp::Clip => {
            (a.is_nan() || b.is_nan() || a > b).then(|| format!("{op}: bounds {a}, {b}"))
        }
    }
}

pub(super) fn tame_finite(x: f32) -> bool {
    x.is_finite() && tame(x)
}

/// The range `[p, p + bytes)` as u128 (never overflows).
pub(super) fn ranges_overlap(p: u64, q: u64, bytes_p: u128, bytes_q: u128) -> bool {
    let (p, q) = (u128::from(p), u128::from(q));
    p < q + bytes_q && q < p + bytes_p
}

pub(super) fn trans(t: BackendTranspose) -> bool {
    !matches!(t, BackendTranspose::NoTrans)
}

/// What the model expects of a call.
#[derive(Debug)]
pub(super) enum Expect {
    /// Success.
    Ok,
    /// `InvalidArgument`, for this reason.
    Invalid(String),
    /// `InvalidArgument` whose message says "stale": the call's only fault is a pointer
    /// into an alias retired recently enough that the backend still knows why.
    Stale(String),
    /// `OutOfMemory`.
    OutOfMemory,
}

/// How many of the most recently retired aliases a backend keeps the reason of (the
/// "stale" message): `backend_api::AddressSpace` keeps 2^14. The model requires "stale"
/// only for aliases retired well within it.
pub(super) const STALE_KEPT: u64 = 1 << 14;

/// Retirements of one tree may be counted in another order than the backend's; a
/// margin larger than any tree (at most [`MAX_ALIASES`] aliases).
const STALE_MARGIN: u64 = 256;

/// How a refusal that only the physical bytes explain ends (two operands overlap through
/// an alias): counted in [`Stats::physical_overlaps`](super::Stats::physical_overlaps).
pub(super) const PHYSICAL: &str = "in physical bytes";

/// Live aliases at most; an alias beyond becomes a retire.
pub(super) const MAX_ALIASES: usize = 48;

/// Where a pointer lies (its range's one-past-the-end address included).
pub(super) enum Where {
    /// In the live alias starting there.
    Alias(u64, AliasRec),
    /// In the live allocation with this index in `live`.
    Alloc(usize),
    /// In an alias retired recently enough for the backend to say "stale".
    Stale(u64),
    /// Nowhere the model knows (made up, freed, or retired long ago).
    Nowhere,
}

/// The first failure of several operands, `Stale` only when every failure is one.
pub(super) fn combine<T>(results: Vec<Result<T, Expect>>) -> Result<Vec<T>, Expect> {
    let mut ok = Vec::with_capacity(results.len());
    let mut first = None;
    let mut all_stale = true;
    for r in results {
        match r {
            Ok(v) => ok.push(v),
            Err(e) => {
                let why = match e {
                    Expect::Stale(why) => why,
                    Expect::Invalid(why) => {
                        all_stale = false;
                        why
                    }
                    Expect::Ok | Expect::OutOfMemory => unreachable!("not a refusal"),
                };
                first.get_or_insert(why);
            }
        }
    }
    match first {
        None => Ok(ok),
        Some(why) if all_stale => Err(Expect::Stale(why)),
        Some(why) => Err(Expect::Invalid(why)),
    }
}

impl Machine<'_> {
    // -----------------------------------------------------------------------------------
    // The model's rules

    /// Where `ptr` lies: in a live alias, a live allocation, a recently retired alias (in
    /// a run that has the backend to itself: other threads retire aliases too), or none.
    pub(super) fn find(&self, ptr: u64) -> Where {
        if let Some((&start, a)) = self.aliases.range(..=ptr).next_back()
            && ptr - start <= a.bytes as u64
        {
            return Where::Alias(start, *a);
        }
        if let Some((&base, &i)) = self.by_base.range(..=ptr).next_back()
            && ptr - base <= self.live[i].size as u64
        {
            return Where::Alloc(i);
        }
        if !self.opts.shared
            && let Some((&start, &(bytes, ordinal))) = self.stale.range(..=ptr).next_back()
            && ptr - start <= bytes as u64
            && self.retired_count - ordinal < STALE_KEPT - STALE_MARGIN
        {
            return Where::Stale(start);
        }
        Where::Nowhere
    }

    /// Locates `[ptr, ptr + bytes)` (`bytes` may be 0: then `ptr` may be one past the
    /// end) in one live allocation, directly or through a live alias; no alignment.
    pub(super) fn locate_span(&self, name: &str, ptr: u64, bytes: u128) -> Result<Loc, Expect> {
        let range = format!("{name} [{ptr:#x}, +{bytes})");
        match self.find(ptr) {
            Where::Alias(start, a) => {
                let off = ptr - start;
                if u128::from(off) + bytes <= a.bytes as u128 {
                    Ok((self.by_base[&a.root], a.offset + off as usize))
                } else {
                    Err(Expect::Invalid(format!(
                        "{range} runs past the end of its alias [{start:#x}, +{})",
                        a.bytes
                    )))
                }
            }
            Where::Alloc(i) => {
                let off = ptr - self.live[i].base;
                if u128::from(off) + bytes <= self.live[i].size as u128 {
                    Ok((i, off as usize))
                } else {
                    Err(Expect::Invalid(format!(
                        "{range} is not inside one live allocation"
                    )))
                }
            }
            Where::Stale(start) => Err(Expect::Stale(format!(
                "{range} points into the retired alias at {start:#x}"
            ))),
            Where::Nowhere => Err(Expect::Invalid(format!(
                "{range} is not inside one live allocation"
            ))),
        }
    }

    /// Locates `[ptr, ptr + bytes)` (`bytes > 0`) in one live allocation, `align`-aligned.
    pub(super) fn locate(
        &self,
        name: &str,
        ptr: u64,
        bytes: u128,
        align: u64,
    ) -> Result<Loc, Expect> {
        if !ptr.is_multiple_of(align) {
            return Err(Expect::Invalid(format!(
                "{name} {ptr:#x} is not {align}-byte aligned"
            )));
        }
        if u128::from(ptr) + bytes > u128::from(u64::MAX) {
            // Refused before any pointer is looked at.
            return Err(Expect::Invalid(format!(
                "{name} [{ptr:#x}, +{bytes}) wraps past the end of the address space"
            )));
        }
        self.locate_span(name, ptr, bytes)
    }

    /// [`locate`](Self::locate) for each `(name, ptr, bytes, align)`.
    pub(super) fn locate_all(&self, ops: &[(&str, u64, u128, u64)]) -> Result<Vec<Loc>, Expect> {
        combine(
            ops.iter()
                .map(|&(name, p, bytes, align)| self.locate(name, p, bytes, align))
                .collect(),
        )
    }

    /// The physical address of a located operand: its allocation's own address.
    pub(super) fn phys(&self, (i, off): Loc) -> u64 {
        self.live[i].base + off as u64
    }

    /// What `free`, `retire` (which refuse anything but a start) and `alias` expect of a
    /// pointer that names nothing they accept.
    pub(super) fn refusal(&self, ptr: u64, why: &str) -> Expect {
        match self.find(ptr) {
            Where::Stale(start) => Expect::Stale(format!(
                "{ptr:#x} points into the retired alias at {start:#x}"
            )),
            _ => Expect::Invalid(format!("{ptr:#x} {why}")),
        }
    }

    /// `alias(ptr, bytes)`: the range must lie in one live allocation or live alias.
    /// Returns the root allocation, the offset in it and the parent.
    pub(super) fn want_alias(&self, ptr: u64, bytes: usize) -> (Option<(u64, usize, u64)>, Expect) {
        match self.locate_span("ptr", ptr, bytes as u128) {
            Ok(loc) => {
                let root = self.live[loc.0].base;
                let parent = match self.find(ptr) {
                    Where::Alias(start, _) => start,
                    _ => root,
                };
                (Some((root, loc.1, parent)), Expect::Ok)
            }
            Err(e) => (None, e),
        }
    }

    pub(super) fn read_f32s(&self, (i, off): Loc, n: usize) -> Vec<Option<f32>> {
        let mem = &self.live[i].mem;
        (0..n).map(|e| mem.known_f32(off + 4 * e)).collect()
    }

    /// `n` elements of `dtype` at `loc`, widened to f32; `None` where a byte is unknown.
    pub(super) fn read_typed(&self, loc: Loc, n: usize, dtype: DType) -> Vec<Option<f32>> {
        if dtype == DType::F32 {
            return self.read_f32s(loc, n);
        }
        let mem = &self.live[loc.0].mem;
        (0..n)
            .map(|e| {
                let at = loc.1 + 2 * e;
                mem.known_bytes(at, 2)
                    .map(|b| reference::decode(dtype, b)[0])
            })
            .collect()
    }

    pub(super) fn want_of(loc: &Result<Option<Loc>, Expect>) -> Expect {
        match loc {
            Ok(_) => Expect::Ok,
            Err(Expect::Stale(why)) => Expect::Stale(why.clone()),
            Err(Expect::Invalid(why)) => Expect::Invalid(why.clone()),
            Err(_) => unreachable!("not a refusal"),
        }
    }

    /// `copy_dtod`: both ranges in live allocations; overlapping physical bytes are
    /// refused unless the ranges are the same bytes (a no-op). The backend checks the
    /// addresses as given first, then the physical bytes they name.
    pub(super) fn want_dtod(
        &self,
        dst: u64,
        src: u64,
        bytes: usize,
    ) -> (Option<(Loc, Loc)>, Expect) {
        if bytes == 0 {
            return (None, Expect::Ok);
        }
        let len = bytes as u128;
        if ranges_overlap(dst, src, len, len) && dst != src {
            return (None, Expect::Invalid("src and dst overlap".into()));
        }
        let locs = match self.locate_all(&[("src", src, len, 1), ("dst", dst, len, 1)]) {
            Ok(l) => l,
            Err(e) => return (None, e),
        };
        let (s, d) = (locs[0], locs[1]);
        let (ps, pd) = (self.phys(s), self.phys(d));
        if ranges_overlap(pd, ps, len, len) && pd != ps {
            return (
                None,
                Expect::Invalid(format!("src and dst overlap {PHYSICAL}")),
            );
        }
        ((pd != ps).then_some((s, d)), Expect::Ok)
    }

    /// unary and binary: every input and the output `4 * n` bytes, f32-aligned, in live
    /// allocations; the output equal to an input's physical range or disjoint from it.
    pub(super) fn want_elementwise(
        &self,
        inputs: &[(&str, u64)],
        output: u64,
        n: usize,
    ) -> (Option<Vec<Loc>>, Expect) {
        self.want_elementwise_typed(inputs, output, n, 4)
    }

    /// [`want_elementwise`](Self::want_elementwise) for elements of `size` bytes (2: f16 and
    /// bf16 storage).
    pub(super) fn want_elementwise_typed(
        &self,
        inputs: &[(&str, u64)],
        output: u64,
        n: usize,
        size: u64,
    ) -> (Option<Vec<Loc>>, Expect) {
        if n == 0 {
            return (None, Expect::Ok);
        }
        let bytes = u128::from(size) * n as u128;
        let all: Vec<(&str, u64, u128, u64)> = inputs
            .iter()
            .chain(&[("output", output)])
            .map(|&(name, p)| (name, p, bytes, size))
            .collect();
        // Alignment first, then overlap of the addresses as given, then the ranges.
        for &(name, p, _, _) in &all {
            if !p.is_multiple_of(size) {
                return (
                    None,
                    Expect::Invalid(format!("{name} {p:#x} is not {size}-byte aligned")),
                );
            }
        }
        for &(name, p) in inputs {
            if p != output && ranges_overlap(p, output, bytes, bytes) {
                return (
                    None,
                    Expect::Invalid(format!("output partially overlaps {name}")),
                );
            }
        }
        let locs = match self.locate_all(&all) {
            Ok(l) => l,
            Err(e) => return (None, e),
        };
        let po = self.phys(locs[inputs.len()]);
        for (&(name, _), &l) in inputs.iter().zip(&locs) {
            let pi = self.phys(l);
            if pi != po && ranges_overlap(pi, po, bytes, bytes) {
                return (
                    None,
                    Expect::Invalid(format!("output partially overlaps {name} {PHYSICAL}")),
                );
            }
        }
        (Some(locs), Expect::Ok)
    }

    /// `attention_ex`: the scalars, shapes, strides and the overlaps of the addresses as
    /// given follow the shared validation (held to the contract by its unit tests and the
    /// misuse suite); what the model adds is where the operands are: in live
    /// allocations or aliases, not retired, and O physically disjoint from the inputs.
    /// Returns the plan and O's location when the call is valid and writes something.
    pub(super) fn want_attention_ex(
        &self,
        args: &AttentionArgs,
    ) -> (Option<(AttentionPlan, Loc)>, Expect) {
        let plan = match validate::attention_ex(args) {
            Err(e) => return (None, Expect::Invalid(e.to_string())),
            Ok(None) => return (None, Expect::Ok),
            Ok(Some(p)) => p,
        };
        let inputs: Vec<_> = [plan.q, plan.k, plan.v, plan.mask]
            .into_iter()
            .flatten()
            .collect();
        match self.locate_disjoint(&inputs, &plan.o, "O") {
            Ok((_, o_loc)) => (Some((plan, o_loc)), Expect::Ok),
            Err(e) => (None, e),
        }
    }

    /// Locates `inputs` and `output` (each in one live allocation or alias) and requires
    /// the output physically disjoint from every input; `out_name` is how the refusal
    /// names it. Returns the inputs' and the output's locations. Alignment is not checked
    /// here: the shared validation that made the operands did (per dtype: A of `gemm_q` is
    /// 2-byte aligned, f32 operands 4-byte).
    fn locate_disjoint(
        &self,
        inputs: &[Operand],
        output: &Operand,
        out_name: &str,
    ) -> Result<(Vec<Loc>, Loc), Expect> {
        let all: Vec<(&str, u64, u128, u64)> = inputs
            .iter()
            .chain([output])
            .map(|o| (o.name, o.ptr, u128::from(o.bytes), 1))
            .collect();
        let mut locs = self.locate_all(&all)?;
        let out_loc = locs.pop().expect("the output was located");
        let po = self.phys(out_loc);
        for (input, &l) in inputs.iter().zip(&locs) {
            if ranges_overlap(self.phys(l), po, input.bytes.into(), output.bytes.into()) {
                return Err(Expect::Invalid(format!(
                    "{out_name} overlaps {} {PHYSICAL}",
                    input.name
                )));
            }
        }
        Ok((locs, out_loc))
    }

    /// `gemm_q`: sizes, scalars and the overlaps as given follow the shared validation;
    /// the model adds where the operands are and that C is physically disjoint from A
    /// and B. Returns the plan and C's location.
    pub(super) fn want_gemm_q(&self, op: &Op) -> (Option<(GemmQPlan, Loc)>, Expect) {
        let &Op::GemmQ {
            format,
            m,
            n,
            k,
            alpha,
            a,
            b,
            b_dtype,
            ldb,
            beta,
            c,
            ldc,
        } = op
        else {
            unreachable!("want_gemm_q of another op")
        };
        let plan = match validate::gemm_q(format, m, n, k, alpha, a, b, b_dtype, ldb, beta, c, ldc)
        {
            Err(e) => return (None, Expect::Invalid(e.to_string())),
            Ok(None) => return (None, Expect::Ok),
            Ok(Some(p)) => p,
        };
        let inputs: Vec<_> = [plan.a, plan.b].into_iter().flatten().collect();
        match self.locate_disjoint(&inputs, &plan.c, "C") {
            Ok((_, c_loc)) => (Some((plan, c_loc)), Expect::Ok),
            Err(e) => (None, e),
        }
    }

    /// `conv2d_forward_ex`: shapes, scalars and the overlaps as given follow the shared
    /// validation; the model adds where the operands are and that the output is
    /// physically disjoint from every input. Returns the output's location and size.
    /// `batched_gemm_ex`: the shared validation, then where A, B and C are and that C is
    /// physically disjoint from A and B. Returns the plan and C's location.
    pub(super) fn want_gemm_ex(&self, args: &GemmArgs) -> (Option<(GemmPlan, Loc)>, Expect) {
        let plan = match validate::gemm("batched_gemm_ex", args) {
            Err(e) => return (None, Expect::Invalid(e.to_string())),
            Ok(None) => return (None, Expect::Ok),
            Ok(Some(p)) => p,
        };
        let inputs: Vec<_> = [plan.a, plan.b].into_iter().flatten().collect();
        match self.locate_disjoint(&inputs, &plan.c, "C") {
            Ok((_, c_loc)) => (Some((plan, c_loc)), Expect::Ok),
            Err(e) => (None, e),
        }
    }

    pub(super) fn want_conv2d_ex(&self, args: &Conv2dArgs) -> (Option<(Loc, usize)>, Expect) {
        let plan = match validate::conv2d_ex(args) {
            Err(e) => return (None, Expect::Invalid(e.to_string())),
            Ok(None) => return (None, Expect::Ok),
            Ok(Some(p)) => p,
        };
        let inputs: Vec<_> = [plan.input, plan.filter, plan.bias]
            .into_iter()
            .flatten()
            .collect();
        match self.locate_disjoint(&inputs, &plan.output, "output") {
            Ok((_, out_loc)) => (Some((out_loc, plan.output.bytes as usize)), Expect::Ok),
            Err(e) => (None, e),
        }
    }

    /// `binary_broadcast`: shapes and the overlaps of the addresses as given follow the
    /// shared validation; the model adds where the operands are, and that the output is
    /// physically an input's exact range (one that is not broadcast) or disjoint from it.
    /// Returns the plan and the locations of a, b and the output.
    pub(super) fn want_broadcast(
        &self,
        dtype: DType,
        a: (u64, &[usize]),
        b: (u64, &[usize]),
        out: (u64, &[usize]),
    ) -> (Option<(BroadcastPlan, Vec<Loc>)>, Expect) {
        let plan = match dtype {
            DType::F32 => validate::binary_broadcast(a.0, a.1, b.0, b.1, out.0, out.1),
            _ => validate::binary_broadcast_ex(dtype, a.0, a.1, b.0, b.1, out.0, out.1),
        };
        let plan = match plan {
            Err(e) => return (None, Expect::Invalid(e.to_string())),
            Ok(None) => return (None, Expect::Ok),
            Ok(Some(p)) => p,
        };
        let ops = [plan.a, plan.b, plan.output];
        let all: Vec<(&str, u64, u128, u64)> = ops
            .iter()
            .map(|o| {
                (
                    o.name,
                    o.ptr,
                    u128::from(o.bytes),
                    dtype.size_bytes() as u64,
                )
            })
            .collect();
        let locs = match self.locate_all(&all) {
            Ok(l) => l,
            Err(e) => return (None, e),
        };
        let po = self.phys(locs[2]);
        for (input, &l) in ops[..2].iter().zip(&locs) {
            let pi = self.phys(l);
            let same = pi == po && input.bytes == plan.output.bytes;
            if !same && ranges_overlap(pi, po, input.bytes.into(), plan.output.bytes.into()) {
                return (
                    None,
                    Expect::Invalid(format!(
                        "output partially overlaps {} {PHYSICAL}",
                        input.name
                    )),
                );
            }
        }
        (Some((plan, locs)), Expect::Ok)
    }

    /// `gather`: sizes and the overlaps as given follow the shared validation; the
    /// model adds where the operands are and that the output is physically disjoint
    /// from the table and the indices. Returns the plan and the locations of the table
    /// (if it has rows), the indices and the output.
    pub(super) fn want_gather(
        &self,
        dtype: DType,
        table: u64,
        (rows, cols): (usize, usize),
        indices: u64,
        n: usize,
        output: u64,
    ) -> (Option<(GatherPlan, GatherLocs)>, Expect) {
        let plan = match dtype {
            DType::F32 => validate::gather(table, rows, cols, indices, n, output),
            _ => validate::gather_ex(dtype, table, rows, cols, indices, n, output),
        };
        let plan = match plan {
            Err(e) => return (None, Expect::Invalid(e.to_string())),
            Ok(None) => return (None, Expect::Ok),
            Ok(Some(p)) => p,
        };
        let inputs: Vec<_> = [plan.table, Some(plan.indices)]
            .into_iter()
            .flatten()
            .collect();
        let (locs, out_loc) = match self.locate_disjoint(&inputs, &plan.output, "output") {
            Ok(l) => l,
            Err(e) => return (None, e),
        };
        let mut named = [None, None, Some(out_loc)];
        let first = usize::from(plan.table.is_none());
        for (slot, l) in named.iter_mut().skip(first).zip(locs) {
            *slot = Some(l);
        }
        (Some((plan, named)), Expect::Ok)
    }

    pub(super) fn want_reduce(
        &self,
        input: u64,
        output: u64,
        shape: &[usize],
        axis: usize,
        size: u64,
    ) -> (Option<ModelReduce>, Expect) {
        let invalid = |why: String| (None, Expect::Invalid(why));
        if shape.is_empty() {
            return invalid("empty shape".into());
        }
        if axis >= shape.len() {
            return invalid(format!("axis {axis} out of range for {shape:?}"));
        }
        let prod = |d: &[usize]| d.iter().fold(1u128, |a, &x| a.saturating_mul(x as u128));
        let (outer, inner, total) = (prod(&shape[..axis]), prod(&shape[axis + 1..]), prod(shape));
        if total > u128::from(u64::MAX) {
            return invalid("size overflow".into());
        }
        let out = outer * inner;
        if out == 0 {
            return (None, Expect::Ok);
        }
        let size128 = u128::from(size);
        let (out_bytes, in_bytes) = (size128 * out, size128 * total);
        let mut ops = vec![("output", output, out_bytes, size)];
        if total > 0 {
            ops.push(("input", input, in_bytes, size));
            for &(name, p, _, _) in &ops {
                if !p.is_multiple_of(size) {
                    return invalid(format!("{name} {p:#x} is not {size}-byte aligned"));
                }
            }
            if ranges_overlap(input, output, in_bytes, out_bytes) {
                return invalid("output overlaps input".into());
            }
        }
        let locs = match self.locate_all(&ops) {
            Ok(l) => l,
            Err(e) => return (None, e),
        };
        let o = locs[0];
        let i = locs.get(1).copied();
        if let Some(i) = i
            && ranges_overlap(self.phys(i), self.phys(o), in_bytes, out_bytes)
        {
            return invalid(format!("output overlaps input {PHYSICAL}"));
        }
        let plan = ModelReduce {
            input: i,
            output: o,
            outer: outer as usize,
            len: shape[axis],
            inner: inner as usize,
        };
        (Some(plan), Expect::Ok)
    }

    /// `reduce_ex`'s outputs: where they go, and the oracle's f64 result of each (`None`
    /// where an input byte is unknown), for `store_typed` to round once to `dtype`.
    pub(super) fn want_reduce_typed(
        &self,
        f: ReduceOp,
        dtype: DType,
        p: &ModelReduce,
    ) -> (Loc, Vec<Option<f64>>) {
        let want = self
            .reduce_inputs(p, dtype)
            .into_iter()
            .map(|vals| {
                vals.map(|v| {
                    let mut out = [0.0f64];
                    reference::reduce64(f, &v, &mut out, 1, p.len, 1);
                    out[0]
                })
            })
            .collect();
        (p.output, want)
    }

    /// The `len` inputs of each output of a reduce, in output order (`None` where an input
    /// byte is unknown).
    fn reduce_inputs(&self, p: &ModelReduce, dtype: DType) -> Vec<Option<Vec<f32>>> {
        let x = match p.input {
            Some(l) => self.read_typed(l, p.outer * p.len * p.inner, dtype),
            None => Vec::new(),
        };
        (0..p.outer * p.inner)
            .map(|oi| {
                let (o, ii) = (oi / p.inner, oi % p.inner);
                (0..p.len)
                    .map(|l| x[(o * p.len + l) * p.inner + ii])
                    .collect()
            })
            .collect()
    }

    pub(super) fn apply_reduce(&mut self, f: ReduceOp, p: &ModelReduce) {
        let exact = self.opts.exact;
        for (oi, vals) in self.reduce_inputs(p, DType::F32).into_iter().enumerate() {
            let v = match vals {
                Some(vals)
                    if exact
                        || vals.iter().all(|&v| {
                            tame(v) && (f != ReduceOp::Prod || !(v.abs() > 2.0 && v.is_finite()))
                        }) =>
                {
                    let mut out = [0.0f32];
                    reference::reduce(f, &vals, &mut out, 1, p.len, 1);
                    if exact {
                        Value::Exact(out[0])
                    } else {
                        let abs: f64 = vals.iter().map(|v| f64::from(v.abs())).sum();
                        Value::Approx(out[0], reduce_tolerance(f, p.len, abs))
                    }
                }
                _ => Value::Unknown,
            };
            let (li, ooff) = p.output;
            self.live[li].mem.write_value(ooff + 4 * oi, v);
        }
    }

    pub(super) fn want_gemm(
        &self,
        g: &ModelGemmCall,
        a: u64,
        b: u64,
        c: u64,
    ) -> (Option<ModelGemm>, Expect) {
        let invalid = |why: String| (None, Expect::Invalid(why));
        let (rows_a, cols_a) = if g.ta { (g.k, g.m) } else { (g.m, g.k) };
        let (rows_b, cols_b) = if g.tb { (g.n, g.k) } else { (g.k, g.n) };
        if g.lda < rows_a.max(1) || g.ldb < rows_b.max(1) || g.ldc < g.m.max(1) {
            return invalid("a leading dimension is too small".into());
        }
        if g.m == 0 || g.n == 0 {
            return (None, Expect::Ok);
        }
        let extent = |rows: usize, cols: usize, ld: usize| {
            4 * (ld as u128 * (cols as u128 - 1) + rows as u128)
        };
        let ext_c = extent(g.m, g.n, g.ldc);
        let reads_ab = g.alpha != 0.0 && g.k != 0;
        let (ext_a, ext_b) = if reads_ab {
            (extent(rows_a, cols_a, g.lda), extent(rows_b, cols_b, g.ldb))
        } else {
            (0, 0)
        };
        let mut ops = vec![("C", c, ext_c, 4)];
        if reads_ab {
            ops.push(("A", a, ext_a, 4));
            ops.push(("B", b, ext_b, 4));
            for &(name, p, _, _) in &ops {
                if !p.is_multiple_of(4) {
                    return invalid(format!("{name} {p:#x} is not 4-byte aligned"));
                }
            }
            if ranges_overlap(c, a, ext_c, ext_a) || ranges_overlap(c, b, ext_c, ext_b) {
                return invalid("C overlaps A or B".into());
            }
        }
        let locs = match self.locate_all(&ops) {
            Ok(l) => l,
            Err(e) => return (None, e),
        };
        let lc = locs[0];
        let mut ab = None;
        if reads_ab {
            let (la, lb) = (locs[1], locs[2]);
            let pc = self.phys(lc);
            if ranges_overlap(pc, self.phys(la), ext_c, ext_a)
                || ranges_overlap(pc, self.phys(lb), ext_c, ext_b)
            {
                return invalid(format!("C overlaps A or B {PHYSICAL}"));
            }
            ab = Some((la, lb, (ext_a / 4) as usize, (ext_b / 4) as usize));
        }
        let plan = ModelGemm {
            ab,
            c: lc,
            ext_c: (ext_c / 4) as usize,
        };
        (Some(plan), Expect::Ok)
    }

    pub(super) fn apply_gemm(&mut self, g: &ModelGemmCall, p: ModelGemm) {
        let (a, b) = match p.ab {
            Some((la, lb, ea, eb)) => (self.read_f32s(la, ea), self.read_f32s(lb, eb)),
            None => (Vec::new(), Vec::new()),
        };
        let c = self.read_f32s(p.c, p.ext_c);
        let reads_ab = p.ab.is_some();
        let exact = self.opts.exact;
        let ok = |v: Option<f32>| v.filter(|&x| exact || tame_finite(x));
        let mut out = Vec::with_capacity(g.m * g.n);
        for j in 0..g.n {
            for i in 0..g.m {
                // Row i of op(A), column j of op(B) and, when read, C(i, j).
                let row: Option<Vec<f32>> = if reads_ab {
                    (0..g.k)
                        .map(|l| {
                            ok(if g.ta {
                                a[l + i * g.lda]
                            } else {
                                a[i + l * g.lda]
                            })
                        })
                        .collect()
                } else {
                    Some(Vec::new())
                };
                let col: Option<Vec<f32>> = if reads_ab {
                    (0..g.k)
                        .map(|l| {
                            ok(if g.tb {
                                b[j + l * g.ldb]
                            } else {
                                b[l + j * g.ldb]
                            })
                        })
                        .collect()
                } else {
                    Some(Vec::new())
                };
                let old = if g.beta != 0.0 {
                    ok(c[i + j * g.ldc])
                } else {
                    Some(0.0)
                };
                let v = match (row, col, old) {
                    (Some(row), Some(col), Some(old)) => {
                        // The oracle's own gemm on the 1 x 1 problem: same order of terms.
                        let one = |alpha: f64, beta: f64, row: &[f32], col: &[f32], old: f32| {
                            let mut cc = [old];
                            reference::gemm(
                                false,
                                false,
                                1,
                                1,
                                g.k,
                                alpha,
                                row,
                                1,
                                col,
                                g.k.max(1),
                                beta,
                                &mut cc,
                                1,
                            );
                            cc[0]
                        };
                        let want = one(g.alpha, g.beta, &row, &col, old);
                        if exact {
                            Value::Exact(want)
                        } else {
                            let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
                            let bound = one(
                                g.alpha.abs(),
                                g.beta.abs(),
                                &abs(&row),
                                &abs(&col),
                                old.abs(),
                            );
                            Value::Approx(want, Tol::dot(g.k, f64::from(bound)))
                        }
                    }
                    _ => Value::Unknown,
                };
                out.push((i + j * g.ldc, v));
            }
        }
        let (ci, coff) = p.c;
        for (e, v) in out {
            self.live[ci].mem.write_value(coff + 4 * e, v);
        }
    }
}

pub(super) struct ModelReduce {
    input: Option<Loc>,
    output: Loc,
    outer: usize,
    len: usize,
    inner: usize,
}

pub(super) struct ModelGemmCall {
    pub(super) ta: bool,
    pub(super) tb: bool,
    pub(super) m: usize,
    pub(super) n: usize,
    pub(super) k: usize,
    pub(super) alpha: f64,
    pub(super) lda: usize,
    pub(super) ldb: usize,
    pub(super) beta: f64,
    pub(super) ldc: usize,
}

pub(super) struct ModelGemm {
    /// A and B with their extents in elements, when read.
    ab: Option<(Loc, Loc, usize, usize)>,
    c: Loc,
    ext_c: usize,
}
