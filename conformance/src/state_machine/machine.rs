//! [`Machine`]: runs calls on a backend and on the model, and compares; [`run`] and its
//! seeded and fuzzed forms.

use std::collections::{BTreeMap, VecDeque};

use backend_api::validate::AttentionPlan;
use backend_api::{
    BackendError, BinaryOp, ComputeBackend, ComputeBackendExt, DType, MapMode, MemoryInfo, RowOp,
};
use backend_cpu::reference;

use super::call::Op;
use super::memory::{AliasRec, KNOWN, Live, Loc, ModelMem, Value};
use super::rules::{
    Expect, HUGE_ALLOC, ModelGemmCall, PHYSICAL, STALE_KEPT, Where, bad_param, combine, tame,
    tame_finite, trans,
};
use super::source::{Fill, Options, Source};
use super::stats::{Digest, MachineFailure, Stats};
use crate::suites::elementwise::{binary_tolerance, unary_param_tolerance, unary_tolerance};
use crate::tolerance::{check_value, row_tolerance};

/// Runs `call`, turning a panic into an error message (see [`crate::catch_panic`]).
impl Machine<'_> {
    /// The model of a 16-bit output at `loc`: in exact mode (the oracle itself) the
    /// oracle's values rounded once to `dtype`; otherwise (or for a NaN, whose payload is
    /// unspecified, or an unknown input) the bytes become unknown.
    fn store_typed(&mut self, (oi, off): Loc, dtype: DType, want: Vec<Option<f64>>) {
        let size = dtype.size_bytes();
        let exact = self.opts.exact;
        for (e, w) in want.into_iter().enumerate() {
            let at = off + size * e;
            match w {
                Some(w) if exact && !w.is_nan() => {
                    let bytes = reference::encode64(dtype, &[w]);
                    self.live[oi].mem.write_known(at, &bytes);
                }
                _ => self.live[oi].mem.forget(at, size),
            }
        }
    }
}

fn guarded<R>(call: impl FnOnce() -> R) -> Result<R, String> {
    crate::catch_panic(call).map_err(|msg| format!("the backend panicked: {msg}"))
}

/// Drives one backend through calls and checks it against the model.
pub struct Machine<'b> {
    backend: &'b dyn ComputeBackend,
    pub(super) opts: Options,
    seed: Option<u64>,
    pub(super) live: Vec<Live>,
    pub(super) by_base: BTreeMap<u64, usize>,
    /// Recently freed addresses (stale pointers to use).
    pub(super) freed: VecDeque<u64>,
    /// Live aliases by start.
    pub(super) aliases: BTreeMap<u64, AliasRec>,
    /// Live aliases' starts in the order they were made (what the generator picks from,
    /// so that the calls do not depend on the addresses the backend hands out).
    pub(super) alias_order: Vec<u64>,
    /// Retired aliases, the most recent [`STALE_KEPT`]: start -> (length, ordinal of
    /// the retirement).
    pub(super) stale: BTreeMap<u64, (usize, u64)>,
    stale_order: VecDeque<u64>,
    /// Aliases retired so far.
    pub(super) retired_count: u64,
    /// Recently retired aliases (start, length), for stale pointers to use.
    pub(super) retired_recent: VecDeque<(u64, usize)>,
    /// The backend answered `alias` with `Unsupported` before any alias succeeded: no
    /// more aliases in this run.
    pub(super) no_alias: bool,
    /// Likewise for `retire`.
    pub(super) no_retire: bool,
    /// The backend has no host views (`map_host` was `Unsupported`): stop generating them.
    pub(super) no_views: bool,
    /// Some `alias` call succeeded (after which `Unsupported` is a failure).
    alias_made: bool,
    /// Every address range ever handed out: start -> one past the end.
    handed_out: BTreeMap<u64, u64>,
    pub(super) live_bytes: u64,
    history: VecDeque<String>,
    stats: Stats,
    digest: Digest,
    /// Whether the current call was valid (set by `judge`).
    last_valid: bool,
    /// Whether the backend answered the current call with `Unsupported` (an `alias` or
    /// `retire` of a backend without aliases), which is not counted as valid or invalid.
    last_unsupported: bool,
}

const HISTORY: usize = 16;

impl<'b> Machine<'b> {
    /// A machine with an empty model; `seed` only labels failures.
    pub fn new(backend: &'b dyn ComputeBackend, opts: Options, seed: Option<u64>) -> Self {
        Self {
            backend,
            opts,
            seed,
            live: Vec::new(),
            by_base: BTreeMap::new(),
            freed: VecDeque::new(),
            aliases: BTreeMap::new(),
            alias_order: Vec::new(),
            stale: BTreeMap::new(),
            stale_order: VecDeque::new(),
            retired_count: 0,
            retired_recent: VecDeque::new(),
            no_alias: false,
            no_retire: false,
            no_views: false,
            alias_made: false,
            handed_out: BTreeMap::new(),
            live_bytes: 0,
            history: VecDeque::new(),
            stats: Stats::default(),
            digest: Digest::START,
            last_valid: true,
            last_unsupported: false,
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    fn failure(&self, op: Option<&Op>, message: String) -> Box<MachineFailure> {
        Box::new(MachineFailure {
            backend: self.backend.name().to_string(),
            seed: self.seed,
            step: self.stats.steps,
            op: op.cloned(),
            message,
            live: self.live.iter().map(|l| (l.base, l.size)).collect(),
            history: self.history.iter().cloned().collect(),
        })
    }

    // -----------------------------------------------------------------------------------
    // Running calls

    /// Compares a call's outcome with what the model expects. `Ok(true)`: a valid call
    /// succeeded, apply its effect.
    fn judge<T>(
        &mut self,
        op: &Op,
        got: &Result<T, BackendError>,
        want: &Expect,
    ) -> Result<bool, String> {
        let outcome = match got {
            Ok(_) => 0,
            Err(BackendError::InvalidArgument(_)) => 1,
            Err(BackendError::OutOfMemory(_)) => 2,
            Err(_) => 3,
        };
        self.digest.u64(outcome);
        match (want, got) {
            (Expect::Ok, Ok(_)) => {
                self.stats.valid += 1;
                Ok(true)
            }
            (Expect::Ok, Err(e)) => Err(format!("a valid call failed: {e}")),
            (Expect::Invalid(why) | Expect::Stale(why), Err(BackendError::InvalidArgument(m))) => {
                if !m.contains(op.error_name()) {
                    return Err(format!(
                        "InvalidArgument message {m:?} does not name the op {}",
                        op.error_name()
                    ));
                }
                if matches!(want, Expect::Stale(_)) {
                    if !m.contains("stale") {
                        return Err(format!(
                            "InvalidArgument message {m:?} does not say \"stale\", but the \
                             call's only fault is a pointer into a retired alias ({why})"
                        ));
                    }
                    self.stats.stale_refused += 1;
                }
                if why.ends_with(PHYSICAL) {
                    self.stats.physical_overlaps += 1;
                }
                self.stats.invalid += 1;
                self.last_valid = false;
                Ok(false)
            }
            (Expect::Invalid(why) | Expect::Stale(why), Ok(_)) => Err(format!(
                "succeeded, but the call is invalid ({why}): InvalidArgument required"
            )),
            (Expect::Invalid(why) | Expect::Stale(why), Err(e)) => Err(format!(
                "wrong error for an invalid call ({why}): {e}; InvalidArgument required"
            )),
            (Expect::OutOfMemory, Err(BackendError::OutOfMemory(_))) => {
                self.stats.out_of_memory += 1;
                self.last_valid = false;
                Ok(false)
            }
            (Expect::OutOfMemory, Ok(_)) => {
                Err("an absurd allocation succeeded: OutOfMemory required".into())
            }
            (Expect::OutOfMemory, Err(e)) => Err(format!(
                "an absurd allocation gave {e}: OutOfMemory required"
            )),
        }
    }

    /// Runs one call on the backend and the model.
    pub fn step(&mut self, op: &Op) -> Result<(), Box<MachineFailure>> {
        self.last_valid = true;
        self.last_unsupported = false;
        let via_alias = op
            .data_pointers()
            .into_iter()
            .any(|p| matches!(self.find(p), Where::Alias(..)));
        if let Err(m) = self.run_op(op) {
            return Err(self.failure(Some(op), m));
        }
        if via_alias && self.last_valid {
            self.stats.via_alias += 1;
        }
        if !self.last_unsupported {
            let counts = self.stats.per_op.entry(op.name()).or_default();
            if self.last_valid {
                counts.0 += 1;
            } else {
                counts.1 += 1;
            }
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(format!("{op:?}"));
        if self.opts.transcript {
            self.stats.transcript.push(self.digest.0);
        }
        self.stats.steps += 1;
        self.stats.peak_live = self.stats.peak_live.max(self.live.len());
        Ok(())
    }

    fn run_op(&mut self, op: &Op) -> Result<(), String> {
        let b = self.backend;
        match op {
            &Op::Alloc { bytes } => {
                let want = if bytes as u64 >= HUGE_ALLOC {
                    Expect::OutOfMemory
                } else {
                    Expect::Ok
                };
                let got = guarded(|| b.alloc(bytes))?;
                if self.judge(op, &got, &want)? {
                    self.add_alloc(got.expect("judged Ok"), bytes)?;
                }
            }
            &Op::Free { ptr } => {
                let want = if self.by_base.contains_key(&ptr) || self.aliases.contains_key(&ptr) {
                    Expect::Ok
                } else {
                    self.refusal(ptr, "is not a live allocation or alias")
                };
                let got = guarded(|| b.free(ptr))?;
                if self.judge(op, &got, &want)? {
                    if self.aliases.contains_key(&ptr) {
                        self.retire_alias(ptr);
                        self.stats.alias_frees += 1;
                    } else {
                        self.remove_alloc(ptr);
                        self.stats.frees += 1;
                    }
                }
            }
            &Op::Alias { ptr, bytes } => {
                let (plan, want) = self.want_alias(ptr, bytes);
                let got = guarded(|| b.alias(ptr, bytes))?;
                if let Err(BackendError::Unsupported(_)) = got
                    && !self.alias_made
                {
                    self.unsupported("alias");
                    self.no_alias = true;
                    return Ok(());
                }
                if self.judge(op, &got, &want)?
                    && let Some((root, offset, parent)) = plan
                {
                    let rec = AliasRec {
                        bytes,
                        root,
                        offset,
                        parent,
                    };
                    self.add_alias(got.expect("judged Ok"), ptr, rec)?;
                }
            }
            &Op::Retire { ptr, why } => {
                let want = if self.aliases.contains_key(&ptr) {
                    Expect::Ok
                } else {
                    self.refusal(ptr, "is not the start of a live alias")
                };
                let got = guarded(|| b.retire(ptr, why))?;
                if let Err(BackendError::Unsupported(_)) = got {
                    // Without aliases, or with aliases that only `free` retires.
                    self.unsupported("retire");
                    self.no_retire = true;
                    return Ok(());
                }
                if self.judge(op, &got, &want)? {
                    self.retire_alias(ptr);
                    self.stats.resets += 1;
                }
            }
            Op::ReadMany { reads } => self.read_many(op, reads)?,
            &Op::MapHost { ptr, len, write } => {
                let loc = (len > 0)
                    .then(|| self.locate("ptr", ptr, len as u128, 1))
                    .transpose();
                let mode = if write.is_some() {
                    MapMode::Write
                } else {
                    MapMode::Read
                };
                let data = write.map(|f| f.bytes(len));
                // The view lives only inside this step: read or fill it, then end it.
                let got = guarded(|| {
                    let mut view = b.map_host(ptr, len, mode)?;
                    let seen = view.to_vec();
                    if let Some(d) = &data {
                        view.bytes_mut()?.copy_from_slice(d);
                    }
                    view.finish().map(|()| seen)
                })?;
                if let Err(BackendError::Unsupported(_)) = got {
                    self.unsupported("map_host");
                    self.no_views = true;
                    return Ok(());
                }
                let want = Self::want_of(&loc);
                let seen = got.as_ref().ok().cloned();
                if self.judge(op, &got.map(drop), &want)?
                    && let Ok(Some(l)) = loc
                {
                    match data {
                        Some(d) => self.live[l.0].mem.write_known(l.1, &d),
                        None => self.verify(l, &seen.unwrap_or_default(), "map_host")?,
                    }
                }
            }
            &Op::CopyHtod { dst, len, fill } => {
                let loc = (len > 0)
                    .then(|| self.locate("dst", dst, len as u128, 1))
                    .transpose();
                let data = fill.bytes(len);
                let got = guarded(|| b.copy_htod(dst, &data))?;
                let want = Self::want_of(&loc);
                if self.judge(op, &got, &want)?
                    && let Ok(Some((i, off))) = loc
                {
                    self.live[i].mem.write_known(off, &data);
                }
            }
            &Op::CopyDtoh { src, len } => {
                let loc = (len > 0)
                    .then(|| self.locate("src", src, len as u128, 1))
                    .transpose();
                let mut out = vec![0u8; len];
                let got = guarded(|| b.copy_dtoh(&mut out, src))?;
                let want = Self::want_of(&loc);
                if self.judge(op, &got, &want)?
                    && let Ok(Some(l)) = loc
                {
                    self.verify(l, &out, "copy_dtoh")?;
                }
            }
            &Op::CopyDtod { dst, src, bytes } => {
                let want = self.want_dtod(dst, src, bytes);
                let got = guarded(|| b.copy_dtod(dst, src, bytes))?;
                if self.judge(op, &got, &want.1)?
                    && let Some((s, d)) = want.0
                {
                    let seg = self.live[s.0].mem.segment(s.1, bytes);
                    self.live[d.0].mem.paste(d.1, &seg);
                }
            }
            &Op::Unary {
                op: f,
                param,
                dtype,
                input,
                output,
                n,
            } if dtype != DType::F32 => {
                let size = dtype.size_bytes() as u64;
                let mut plan = self.want_elementwise_typed(&[("input", input)], output, n, size);
                // Bad parameters are refused before the operands are looked at.
                if let Some((g, pa, pb)) = param
                    && let Some(why) = bad_param(g, pa, pb)
                {
                    plan = (None, Expect::Invalid(why));
                }
                let got = guarded(|| match param {
                    Some((g, pa, pb)) => b.unary_param_ex(g, dtype, pa, pb, input, output, n),
                    None => b.unary_ex(f, dtype, input, output, n),
                })?;
                if self.judge(op, &got, &plan.1)?
                    && let Some(locs) = plan.0
                {
                    let x = self.read_typed(locs[0], n, dtype);
                    let want = x.iter().map(|x| {
                        x.map(|x| match param {
                            Some((g, pa, pb)) => reference::unary_param64(g, pa, pb, f64::from(x)),
                            None => reference::unary64(f, f64::from(x)),
                        })
                    });
                    self.store_typed(locs[1], dtype, want.collect());
                }
            }
            &Op::Unary {
                op: f,
                param,
                input,
                output,
                n,
                ..
            } => {
                let mut plan = self.want_elementwise(&[("input", input)], output, n);
                // Bad parameters are refused before the operands are looked at.
                if let Some((g, pa, pb)) = param
                    && let Some(why) = bad_param(g, pa, pb)
                {
                    plan = (None, Expect::Invalid(why));
                }
                let got = guarded(|| match param {
                    Some((g, pa, pb)) => b.unary_param(g, pa, pb, input, output, n),
                    None => b.unary(f, input, output, n),
                })?;
                if self.judge(op, &got, &plan.1)?
                    && let Some(locs) = plan.0
                {
                    let x = self.read_f32s(locs[0], n);
                    let (oi, ooff) = locs[1];
                    let exact = self.opts.exact;
                    for (e, x) in x.into_iter().enumerate() {
                        let v = match (x, param) {
                            (Some(x), None) if exact => Value::Exact(reference::unary(f, x)),
                            (Some(x), None) if tame(x) => {
                                Value::Approx(reference::unary(f, x), unary_tolerance(f))
                            }
                            (Some(x), Some((g, pa, pb))) => {
                                let want = reference::unary_param(g, pa, pb, x);
                                if exact {
                                    Value::Exact(want)
                                } else if tame(x) {
                                    Value::Approx(want, unary_param_tolerance(g, pa, pb, x))
                                } else {
                                    Value::Unknown
                                }
                            }
                            _ => Value::Unknown,
                        };
                        self.live[oi].mem.write_value(ooff + 4 * e, v);
                    }
                }
            }
            &Op::Binary {
                op: f,
                dtype,
                a,
                b: bp,
                output,
                n,
            } if dtype != DType::F32 => {
                let size = dtype.size_bytes() as u64;
                let plan = self.want_elementwise_typed(&[("a", a), ("b", bp)], output, n, size);
                let got = guarded(|| b.binary_ex(f, dtype, a, bp, output, n))?;
                if self.judge(op, &got, &plan.1)?
                    && let Some(locs) = plan.0
                {
                    let xa = self.read_typed(locs[0], n, dtype);
                    let xb = self.read_typed(locs[1], n, dtype);
                    let want = xa.iter().zip(&xb).map(|(x, y)| match (x, y) {
                        (Some(x), Some(y)) => {
                            Some(reference::binary64(f, f64::from(*x), f64::from(*y)))
                        }
                        _ => None,
                    });
                    self.store_typed(locs[2], dtype, want.collect());
                }
            }
            &Op::Binary {
                op: f,
                a,
                b: bp,
                output,
                n,
                ..
            } => {
                let plan = self.want_elementwise(&[("a", a), ("b", bp)], output, n);
                let got = guarded(|| b.binary(f, a, bp, output, n))?;
                if self.judge(op, &got, &plan.1)?
                    && let Some(locs) = plan.0
                {
                    let xa = self.read_f32s(locs[0], n);
                    let xb = self.read_f32s(locs[1], n);
                    let (oi, ooff) = locs[2];
                    let exact = self.opts.exact;
                    let pow_ok = |x: f32, y: f32| {
                        f != BinaryOp::Pow
                            || (!x.is_finite() || x.abs() <= 4.0)
                                && (!y.is_finite() || y.abs() <= 6.0)
                    };
                    for (e, (x, y)) in xa.into_iter().zip(xb).enumerate() {
                        let v = match (x, y) {
                            (Some(x), Some(y)) if exact => Value::Exact(reference::binary(f, x, y)),
                            (Some(x), Some(y)) if tame(x) && tame(y) && pow_ok(x, y) => {
                                Value::Approx(reference::binary(f, x, y), binary_tolerance(f))
                            }
                            _ => Value::Unknown,
                        };
                        self.live[oi].mem.write_value(ooff + 4 * e, v);
                    }
                }
            }
            Op::Reduce {
                op: f,
                dtype,
                input,
                output,
                shape,
                axis,
            } => {
                let size = dtype.size_bytes() as u64;
                let (plan, want) = self.want_reduce(*input, *output, shape, *axis, size);
                let got = guarded(|| match dtype {
                    DType::F32 => b.reduce(*f, *input, *output, shape, *axis),
                    _ => b.reduce_ex(*f, *dtype, *input, *output, shape, *axis),
                })?;
                if self.judge(op, &got, &want)?
                    && let Some(p) = plan
                {
                    if *dtype == DType::F32 {
                        self.apply_reduce(*f, &p);
                    } else {
                        // The oracle's f64 result rounded once to `dtype` (exact mode);
                        // otherwise the output bytes become unknown.
                        let (out, want) = self.want_reduce_typed(*f, *dtype, &p);
                        self.store_typed(out, *dtype, want);
                    }
                }
            }
            &Op::Rows {
                op: f,
                dtype,
                x,
                y,
                rows,
                cols,
            } if dtype != DType::F32 => {
                const EPS: f64 = 1e-5;
                let n = rows.saturating_mul(cols);
                let size = dtype.size_bytes() as u64;
                let plan = if rows.checked_mul(cols).is_none() {
                    (None, Expect::Invalid("rows x cols overflows".into()))
                } else {
                    self.want_elementwise_typed(&[("x", x)], y, n, size)
                };
                let got = guarded(|| b.rows_ex(f, dtype, x, None, None, y, rows, cols, EPS))?;
                if self.judge(op, &got, &plan.1)?
                    && let Some(locs) = plan.0
                {
                    let xs = self.read_typed(locs[0], n, dtype);
                    // The oracle's f64 row rounded once (exact mode); a row with an unknown
                    // value, unknown.
                    let want = xs
                        .chunks(cols)
                        .flat_map(|row| {
                            let known: Option<Vec<f32>> = row.iter().copied().collect();
                            match known {
                                Some(v) => {
                                    let mut out = vec![0.0f64; cols];
                                    reference::rows64(f, &v, &[], &[], &mut out, cols, EPS);
                                    out.into_iter().map(Some).collect::<Vec<_>>()
                                }
                                None => vec![None; cols],
                            }
                        })
                        .collect();
                    self.store_typed(locs[1], dtype, want);
                }
            }
            &Op::Rows {
                op: f,
                x,
                y,
                rows,
                cols,
                ..
            } => {
                const EPS: f64 = 1e-5;
                let n = rows.saturating_mul(cols);
                let plan = if rows.checked_mul(cols).is_none() {
                    (None, Expect::Invalid("rows x cols overflows".into()))
                } else {
                    self.want_elementwise(&[("x", x)], y, n)
                };
                let got = guarded(|| match f {
                    RowOp::Softmax => b.softmax(x, y, rows, cols),
                    RowOp::LogSoftmax => b.log_softmax(x, y, rows, cols),
                    RowOp::LayerNorm => b.layer_norm(x, None, None, y, rows, cols, EPS),
                    RowOp::RmsNorm => b.rms_norm(x, None, y, rows, cols, EPS),
                })?;
                if self.judge(op, &got, &plan.1)?
                    && let Some(locs) = plan.0
                {
                    let xs = self.read_f32s(locs[0], n);
                    let (yi, yoff) = locs[1];
                    let exact = self.opts.exact;
                    for (r, row) in xs.chunks(cols).enumerate() {
                        let known: Option<Vec<f32>> = row.iter().copied().collect();
                        let values: Vec<Value> = match known {
                            Some(v) if exact || v.iter().all(|&x| tame_finite(x)) => {
                                let mut out = vec![0.0f32; cols];
                                reference::rows(f, &v, &[], &[], &mut out, cols, EPS);
                                out.iter()
                                    .zip(&v)
                                    .map(|(&o, &x)| match exact {
                                        true => Value::Exact(o),
                                        false => {
                                            Value::Approx(o, row_tolerance(f, &v, x, 1.0, 0.0, EPS))
                                        }
                                    })
                                    .collect()
                            }
                            _ => vec![Value::Unknown; cols],
                        };
                        for (e, v) in values.into_iter().enumerate() {
                            self.live[yi].mem.write_value(yoff + 4 * (r * cols + e), v);
                        }
                    }
                }
            }
            &Op::GemmQ {
                format,
                m,
                n,
                k,
                alpha,
                a,
                b: bp,
                b_dtype,
                ldb,
                beta,
                c,
                ldc,
            } => {
                let (plan, want) = self.want_gemm_q(op);
                let got = guarded(|| {
                    b.gemm_q(format, m, n, k, alpha, a, bp, b_dtype, ldb, beta, c, ldc)
                })?;
                if self.judge(op, &got, &want)?
                    && let Some((p, (ci, coff))) = plan
                {
                    // C's m rows of each column change; the rows between them must not.
                    for col in 0..p.n {
                        for row in 0..p.m {
                            self.live[ci]
                                .mem
                                .write_value(coff + 4 * (row + col * p.ldc), Value::Unknown);
                        }
                    }
                }
            }
            Op::GemmEx { args } => {
                let (plan, want) = self.want_gemm_ex(args);
                let got = guarded(|| b.batched_gemm_ex(args))?;
                if self.judge(op, &got, &want)?
                    && let Some((p, (ci, coff))) = plan
                {
                    // C's m rows of each column of each batch change (their values are
                    // the conformance suite's business); the bytes between must not.
                    let size = p.c_dtype.size_bytes();
                    for i in 0..p.batch.count {
                        for col in 0..p.n {
                            let at = i * p.batch.stride_c + col * p.ldc;
                            self.live[ci].mem.forget(coff + size * at, size * p.m);
                        }
                    }
                }
            }
            Op::Conv2dEx { args } => {
                let (plan, want) = self.want_conv2d_ex(args);
                let got = guarded(|| b.conv2d_forward_ex(args))?;
                if self.judge(op, &got, &want)?
                    && let Some(((oi, ooff), bytes)) = plan
                {
                    // The values are the conformance suite's business; the bytes around
                    // the output must not change.
                    self.live[oi].mem.forget(ooff, bytes);
                }
            }
            Op::Broadcast {
                op: f,
                dtype,
                a,
                a_shape,
                b: bp,
                b_shape,
                output,
                out_shape,
            } => {
                let (f, dtype, a, bp, output) = (*f, *dtype, *a, *bp, *output);
                let (plan, want) =
                    self.want_broadcast(dtype, (a, a_shape), (bp, b_shape), (output, out_shape));
                let got = guarded(|| match dtype {
                    DType::F32 => b.binary_broadcast(f, a, a_shape, bp, b_shape, output, out_shape),
                    _ => {
                        b.binary_broadcast_ex(f, dtype, a, a_shape, bp, b_shape, output, out_shape)
                    }
                })?;
                if dtype != DType::F32
                    && self.judge(op, &got, &want)?
                    && let Some((p, locs)) = plan
                {
                    let size = dtype.size_bytes() as u64;
                    let xa = self.read_typed(locs[0], (p.a.bytes / size) as usize, dtype);
                    let xb = self.read_typed(locs[1], (p.b.bytes / size) as usize, dtype);
                    let want = (0..p.n).map(|e| {
                        let (ia, ib) = p.sources(e);
                        match (xa[ia], xb[ib]) {
                            (Some(x), Some(y)) => {
                                Some(reference::binary64(f, f64::from(x), f64::from(y)))
                            }
                            _ => None,
                        }
                    });
                    self.store_typed(locs[2], dtype, want.collect());
                } else if dtype == DType::F32
                    && self.judge(op, &got, &want)?
                    && let Some((p, locs)) = plan
                {
                    let xa = self.read_f32s(locs[0], (p.a.bytes / 4) as usize);
                    let xb = self.read_f32s(locs[1], (p.b.bytes / 4) as usize);
                    let (oi, ooff) = locs[2];
                    let exact = self.opts.exact;
                    let pow_ok = |x: f32, y: f32| {
                        f != BinaryOp::Pow
                            || (!x.is_finite() || x.abs() <= 4.0)
                                && (!y.is_finite() || y.abs() <= 6.0)
                    };
                    for e in 0..p.n {
                        let (ia, ib) = p.sources(e);
                        let v = match (xa[ia], xb[ib]) {
                            (Some(x), Some(y)) if exact => Value::Exact(reference::binary(f, x, y)),
                            (Some(x), Some(y)) if tame(x) && tame(y) && pow_ok(x, y) => {
                                Value::Approx(reference::binary(f, x, y), binary_tolerance(f))
                            }
                            _ => Value::Unknown,
                        };
                        self.live[oi].mem.write_value(ooff + 4 * e, v);
                    }
                }
            }
            &Op::Gather {
                dtype,
                table,
                rows,
                cols,
                indices,
                n,
                output,
            } => {
                let (plan, want) = self.want_gather(dtype, table, (rows, cols), indices, n, output);
                let got = guarded(|| match dtype {
                    DType::F32 => b.gather(table, rows, cols, indices, n, output),
                    _ => b.gather_ex(dtype, table, rows, cols, indices, n, output),
                })?;
                if dtype != DType::F32
                    && self.judge(op, &got, &want)?
                    && let Some((p, locs)) = plan
                {
                    // Rows copied exactly; out-of-range rows are zeros.
                    let idx = self.read_f32s(locs[1].expect("indices"), n);
                    let t = locs[0].map(|l| self.read_typed(l, rows * cols, dtype));
                    let want = idx.iter().flat_map(|i| {
                        let row = i.map(|i| i.to_bits() as usize);
                        (0..p.cols).map(move |c| (row, c))
                    });
                    let want = want
                        .map(|(row, c)| match (row, &t) {
                            (Some(i), _) if i >= rows => Some(0.0),
                            (Some(i), Some(t)) => t[i * cols + c].map(f64::from),
                            _ => None,
                        })
                        .collect();
                    self.store_typed(locs[2].expect("output"), dtype, want);
                } else if dtype == DType::F32
                    && self.judge(op, &got, &want)?
                    && let Some((p, locs)) = plan
                {
                    let idx = self.read_f32s(locs[1].expect("indices"), n);
                    let t = locs[0].map(|l| self.read_f32s(l, rows * cols));
                    let (oi, ooff) = locs[2].expect("output");
                    for (r, i) in idx.into_iter().enumerate() {
                        let row = i.map(|i| i.to_bits() as usize);
                        for c in 0..p.cols {
                            let v = match (row, &t) {
                                (Some(i), _) if i >= rows => Value::Exact(0.0),
                                (Some(i), Some(t)) => {
                                    t[i * cols + c].map_or(Value::Unknown, Value::Exact)
                                }
                                _ => Value::Unknown,
                            };
                            self.live[oi].mem.write_value(ooff + 4 * (r * cols + c), v);
                        }
                    }
                }
            }
            Op::AttentionEx { args } => {
                let (plan, want) = self.want_attention_ex(args);
                let got = guarded(|| b.attention_ex(args))?;
                if self.judge(op, &got, &want)?
                    && let Some((p, (oi, ooff))) = plan
                {
                    // O's rows change (their values are the conformance suite's business);
                    // everything between them must not.
                    let size = p.dtype.size_bytes();
                    for row in 0..p.batch * p.heads * p.seq_q {
                        let (bh, i) = (row / p.seq_q, row % p.seq_q);
                        let at = AttentionPlan::at(p.o_strides, bh / p.heads, bh % p.heads, i);
                        self.live[oi]
                            .mem
                            .forget(ooff + size * at, size * p.v_head_dim);
                    }
                }
            }
            &Op::Gemm {
                trans_a,
                trans_b,
                m,
                n,
                k,
                alpha,
                a,
                lda,
                b: bp,
                ldb,
                beta,
                c,
                ldc,
                row_major,
            } => {
                let g = ModelGemmCall {
                    ta: trans(trans_a),
                    tb: trans(trans_b),
                    m,
                    n,
                    k,
                    alpha,
                    lda,
                    ldb,
                    beta,
                    ldc,
                };
                let (plan, want) = self.want_gemm(&g, a, bp, c);
                let got = guarded(|| {
                    if row_major {
                        b.gemm_row_major(
                            trans_b, trans_a, n, m, k, alpha, bp, ldb, a, lda, beta, c, ldc,
                        )
                    } else {
                        b.gemm(
                            trans_a, trans_b, m, n, k, alpha, a, lda, bp, ldb, beta, c, ldc,
                        )
                    }
                })?;
                if self.judge(op, &got, &want)?
                    && let Some(p) = plan
                {
                    self.apply_gemm(&g, p);
                }
            }
            Op::Synchronize => {
                let got = guarded(|| b.synchronize())?;
                self.judge(op, &got, &Expect::Ok)?;
            }
            Op::MemoryInfo => {
                let got = guarded(|| b.memory_info())?;
                self.check_memory_info(got)?;
            }
            Op::CheckAll => self.check_all()?,
        }
        Ok(())
    }

    /// The backend has no `what`: noted, and not judged.
    fn unsupported(&mut self, what: &'static str) {
        self.digest.u64(4);
        self.last_unsupported = true;
        self.stats.unsupported.insert(what);
    }

    /// `copy_dtoh_many`: all or nothing. Valid, every destination must match the model;
    /// invalid, none may have been written.
    fn read_many(&mut self, op: &Op, reads: &[(u64, usize)]) -> Result<(), String> {
        const SENTINEL: u8 = 0xa5;
        let locs = combine(
            reads
                .iter()
                .map(|&(p, len)| {
                    (len > 0)
                        .then(|| self.locate("src", p, len as u128, 1))
                        .transpose()
                })
                .collect(),
        );
        let want = match &locs {
            Ok(_) => Expect::Ok,
            Err(Expect::Stale(why)) => Expect::Stale(why.clone()),
            Err(Expect::Invalid(why)) => Expect::Invalid(why.clone()),
            Err(_) => unreachable!("not a refusal"),
        };
        let mut bufs: Vec<Vec<u8>> = reads.iter().map(|&(_, len)| vec![SENTINEL; len]).collect();
        let b = self.backend;
        let got = guarded(|| {
            let mut entries: Vec<(u64, &mut [u8])> = reads
                .iter()
                .zip(bufs.iter_mut())
                .map(|(&(p, _), buf)| (p, buf.as_mut_slice()))
                .collect();
            b.copy_dtoh_many(&mut entries)
        })?;
        if self.judge(op, &got, &want)? {
            let locs = locs.expect("judged Ok");
            for (e, (loc, buf)) in locs.into_iter().zip(&bufs).enumerate() {
                if let Some(l) = loc {
                    self.verify(l, buf, &format!("copy_dtoh_many entry {e}"))?;
                }
            }
        } else if let Some(e) = bufs.iter().position(|b| b.iter().any(|&x| x != SENTINEL)) {
            return Err(format!(
                "copy_dtoh_many failed, as it must, but wrote destination {e} of {} \
                 (all or nothing: a failed call writes no destination)",
                reads.len()
            ));
        }
        Ok(())
    }

    /// Records a fresh alias `a` of `ptr` that the model located as `rec`.
    fn add_alias(&mut self, a: u64, ptr: u64, rec: AliasRec) -> Result<(), String> {
        let bytes = rec.bytes;
        if a == 0 || a % 256 != ptr % 256 {
            return Err(format!(
                "alias({ptr:#x}, {bytes}) returned {a:#x}: not a non-zero address congruent \
                 to the pointer modulo 256"
            ));
        }
        let end = a + bytes as u64;
        if let Some((&s, &e)) = self.handed_out.range(..=end).next_back()
            && e >= a
        {
            return Err(format!(
                "alias({ptr:#x}, {bytes}) returned {a:#x}, but [{s:#x}, {e:#x}] was handed out \
                 before (alias addresses must be fresh)"
            ));
        }
        self.handed_out.insert(a, end);
        self.aliases.insert(a, rec);
        self.alias_order.push(a);
        self.alias_made = true;
        self.stats.aliases += 1;
        Ok(())
    }

    /// Retires the live alias at `start` and every alias made from it, or from those.
    pub(super) fn retire_alias(&mut self, start: u64) {
        let mut gone = vec![start];
        // Made in order: a parent before its children.
        for &a in &self.alias_order {
            if gone.contains(&self.aliases[&a].parent) && a != start {
                gone.push(a);
            }
        }
        self.retire_all(&gone);
    }

    /// Marks these live aliases retired.
    fn retire_all(&mut self, gone: &[u64]) {
        for &a in gone {
            let rec = self.aliases.remove(&a).expect("a live alias");
            self.retired_count += 1;
            self.stale.insert(a, (rec.bytes, self.retired_count));
            self.stale_order.push_back(a);
            if self.stale_order.len() as u64 > STALE_KEPT {
                let old = self.stale_order.pop_front().expect("non-empty");
                self.stale.remove(&old);
            }
            if self.retired_recent.len() == 64 {
                self.retired_recent.pop_front();
            }
            self.retired_recent.push_back((a, rec.bytes));
            self.stats.retired += 1;
        }
        self.alias_order.retain(|a| !gone.contains(a));
    }

    fn add_alloc(&mut self, ptr: u64, bytes: usize) -> Result<(), String> {
        if ptr == 0 || !ptr.is_multiple_of(256) {
            return Err(format!(
                "alloc returned {ptr:#x}: not a non-zero, 256-byte aligned address"
            ));
        }
        let end = ptr + bytes as u64; // the one-past-the-end pointer belongs to it too
        if let Some((&s, &e)) = self.handed_out.range(..=end).next_back()
            && e >= ptr
        {
            return Err(format!(
                "alloc({bytes}) returned {ptr:#x}, but [{s:#x}, {e:#x}] was handed out before \
                 (addresses must never overlap or be reused)"
            ));
        }
        self.handed_out.insert(ptr, end);
        self.by_base.insert(ptr, self.live.len());
        self.live.push(Live {
            base: ptr,
            size: bytes,
            mem: ModelMem::new(bytes),
        });
        self.live_bytes += bytes as u64;
        self.stats.allocs += 1;
        if self.opts.init_allocs && bytes > 0 {
            let fill = Fill {
                seed: self.stats.steps ^ 0x1ee7,
                raw: false,
            };
            let data = fill.bytes(bytes);
            guarded(|| self.backend.copy_htod(ptr, &data))?
                .map_err(|e| format!("filling a fresh allocation: {e}"))?;
            let i = self.live.len() - 1;
            self.live[i].mem.write_known(0, &data);
        }
        Ok(())
    }

    fn remove_alloc(&mut self, ptr: u64) {
        // Every alias into it goes with it.
        let gone: Vec<u64> = self
            .alias_order
            .iter()
            .copied()
            .filter(|a| self.aliases[a].root == ptr)
            .collect();
        self.retire_all(&gone);
        let i = self.by_base.remove(&ptr).expect("live");
        let gone = self.live.swap_remove(i);
        if i < self.live.len() {
            self.by_base.insert(self.live[i].base, i);
        }
        self.live_bytes -= gone.size as u64;
        if self.freed.len() == 64 {
            self.freed.pop_front();
        }
        self.freed.push_back(ptr);
    }

    /// Compares bytes read back from `loc` with the model, then adopts them.
    fn verify(&mut self, (i, off): Loc, got: &[u8], what: &str) -> Result<(), String> {
        let base = self.live[i].base;
        let mem = &self.live[i].mem;
        let mut exact = 0u64;
        for (j, &g) in got.iter().enumerate() {
            if mem.state[off + j] == KNOWN {
                exact += 1;
                let want = mem.bytes[off + j];
                self.digest.u64(((off + j) as u64) << 8 | u64::from(g));
                if g != want {
                    let diff = got
                        .iter()
                        .enumerate()
                        .filter(|&(k, &g)| mem.state[off + k] == KNOWN && g != mem.bytes[off + k])
                        .count();
                    return Err(format!(
                        "{what}: byte {} of allocation {base:#x} ({} bytes) is {g:#04x}, the \
                         model says {want:#04x} ({diff} known bytes of {} read differ)",
                        off + j,
                        self.live[i].size,
                        got.len()
                    ));
                }
            }
        }
        let mut approx = 0u64;
        for (&k, &(want, tol)) in mem.approx.range(off..off + got.len()) {
            if k + 4 > off + got.len() {
                continue;
            }
            let g = f32::from_le_bytes(got[k - off..k - off + 4].try_into().expect("4 bytes"));
            approx += 1;
            let bits = if g.is_nan() { 0x7fc0_0000 } else { g.to_bits() };
            self.digest.u64((k as u64) << 32 | u64::from(bits));
            if check_value(g, want, tol).is_err() {
                return Err(format!(
                    "{what}: f32 at byte {k} of allocation {base:#x} is {g:e} ({:#010x}), the \
                     oracle says {want:e} ({:#010x}), tolerance atol {:e} + rtol {:e}",
                    g.to_bits(),
                    want.to_bits(),
                    tol.atol,
                    tol.rtol
                ));
            }
        }
        self.stats.bytes_exact += exact;
        self.stats.values_approx += approx;
        self.live[i].mem.write_known(off, got);
        Ok(())
    }

    fn check_all(&mut self) -> Result<(), String> {
        for i in 0..self.live.len() {
            let (base, size) = (self.live[i].base, self.live[i].size);
            let mut out = vec![0u8; size];
            guarded(|| self.backend.copy_dtoh(&mut out, base))?
                .map_err(|e| format!("reading back allocation {base:#x}: {e}"))?;
            self.verify((i, 0), &out, "read-back of every allocation")?;
        }
        Ok(())
    }

    fn check_memory_info(&mut self, got: Result<MemoryInfo, BackendError>) -> Result<(), String> {
        match got {
            Ok(info) => {
                if self.opts.shared {
                    return Ok(());
                }
                let live = self.live.len() as u64;
                if info.live_allocations != live || info.allocated_bytes != self.live_bytes {
                    return Err(format!(
                        "memory_info says {} live allocations of {} bytes, the model {live} of {}",
                        info.live_allocations, info.allocated_bytes, self.live_bytes
                    ));
                }
                if info.reserved_bytes < info.allocated_bytes {
                    return Err(format!(
                        "memory_info: reserved_bytes {} < allocated_bytes {}",
                        info.reserved_bytes, info.allocated_bytes
                    ));
                }
                Ok(())
            }
            Err(BackendError::Unsupported(_)) => Ok(()),
            Err(e) => Err(format!("memory_info failed: {e}")),
        }
    }

    /// The final checks: every allocation read back, every one freed (successfully), and
    /// `memory_info` (where supported and not shared) back at zero.
    pub fn finish(mut self) -> Result<Stats, Box<MachineFailure>> {
        let finish = |m: &mut Self| -> Result<(), String> {
            m.check_all()?;
            let s = m.backend.synchronize();
            m.judge(&Op::Synchronize, &s, &Expect::Ok)?;
            while let Some(l) = m.live.last() {
                let ptr = l.base;
                guarded(|| m.backend.free(ptr))?
                    .map_err(|e| format!("freeing live allocation {ptr:#x}: {e}"))?;
                m.remove_alloc(ptr);
                m.stats.frees += 1;
            }
            let info = guarded(|| m.backend.memory_info())?;
            m.check_memory_info(info)
        };
        match finish(&mut self) {
            Ok(()) => {
                self.stats.digest = self.digest.0;
                Ok(self.stats)
            }
            Err(msg) => Err(self.failure(None, format!("final checks: {msg}"))),
        }
    }
}

/// Runs `opts.steps` calls from `src` (fewer if its bytes run out), then the final
/// checks.
pub fn run(
    backend: &dyn ComputeBackend,
    src: &mut Source<'_>,
    opts: &Options,
    seed: Option<u64>,
) -> Result<Stats, Box<MachineFailure>> {
    let mut m = Machine::new(backend, opts.clone(), seed);
    while m.stats.steps < opts.steps && !src.is_exhausted() {
        let op = m.generate(src);
        m.step(&op)?;
    }
    m.finish()
}

/// [`run`] with calls from a seed.
pub fn run_seed(
    backend: &dyn ComputeBackend,
    seed: u64,
    opts: &Options,
) -> Result<Stats, Box<MachineFailure>> {
    run(backend, &mut Source::from_seed(seed), opts, Some(seed))
}

/// [`run`] with calls decoded from bytes (the fuzz target).
pub fn run_bytes(
    backend: &dyn ComputeBackend,
    bytes: &[u8],
    opts: &Options,
) -> Result<Stats, Box<MachineFailure>> {
    run(backend, &mut Source::from_bytes(bytes), opts, None)
}
