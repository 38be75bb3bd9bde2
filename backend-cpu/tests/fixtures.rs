//! The oracle checked against something other than itself: numpy float64 fixtures.
//!
//! `fixtures/gen_fixtures.py` computes every op in float64 with numpy (and Python's
//! `math.erfc` for GELU) on deterministic random and special inputs and writes the JSON
//! files in `fixtures/`, which are committed. This test runs every case through
//! [`CpuBackend`] via the [`ComputeBackend`] trait (alloc, copy_htod, the op, copy_dtoh),
//! with every operand at an interior pointer `p + offset` between guard bytes, and checks:
//!
//! - each result equals the numpy value rounded to f32 within 1 f32 ulp; for dot-product
//!   and sum ops plus `2^-44 * mag`, where `mag` (from the fixture) is the sum of the
//!   absolute values of the terms: room for f64 summation in another order than numpy's;
//! - ops that IEEE defines as one correctly rounded result (add, sub, mul, div, sqrt,
//!   recip, square, abs, neg, floor, ceil, max, min, relu, casts) match bit for bit,
//!   including the sign of zero (except max/min/relu, where the sign of a zero result
//!   is unspecified);
//! - NaN matches NaN and infinities match in sign;
//! - every byte the op must not write (gemm's padding rows, gaps between batches, guard
//!   bytes around every operand, the inputs) is unchanged;
//! - separately ([`signed_zeros_match_numpy`]), a zero result has numpy's sign wherever
//!   IEEE or BLAS defines it (`tanh(-0) = -0`, an empty sum is +0, `C = beta * C` keeps a
//!   -0), which the 1-ulp rule above does not see.
//!
//! Failures are collected per family and reported together: case, index, got, want, diff
//! and tolerance.

use std::fmt::Write as _;
use std::path::PathBuf;

use backend_api::{
    AttentionArgs, AttentionMask, BackendTranspose, BinaryOp, ComputeBackend, Conv2dArgs, DType,
    GemmArgs, HeadTensor, QuantFormat, ReduceOp, RowOp, UnaryOp, UnaryParamOp,
};
use backend_cpu::{CpuBackend, reference};
use serde::Deserialize;
use serde::de::DeserializeOwned;

// ---------------------------------------------------------------------------------------------
// Loading

fn load<T: DeserializeOwned>(file: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e} (run fixtures/gen_fixtures.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn backend() -> CpuBackend {
    let mut be = CpuBackend::new();
    be.init().expect("CpuBackend::init");
    be
}

fn f64_of(bits: u64) -> f64 {
    f64::from_bits(bits)
}

fn f32_bytes(bits: &[u64]) -> Vec<u8> {
    bits.iter()
        .flat_map(|&b| u32::try_from(b).expect("u32 bit pattern").to_le_bytes())
        .collect()
}

fn u16_bytes(bits: &[u64]) -> Vec<u8> {
    bits.iter()
        .flat_map(|&b| u16::try_from(b).expect("u16 bit pattern").to_le_bytes())
        .collect()
}

/// Bytes of an operand stored as `dtype`, from its bit patterns in the fixture.
fn dtype_bytes(dtype: DType, bits: &[u64]) -> Vec<u8> {
    match dtype {
        DType::F32 => f32_bytes(bits),
        DType::F16 | DType::BF16 => u16_bytes(bits),
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn u16s(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn trans(name: &str) -> BackendTranspose {
    BackendTranspose::from_name(name).unwrap_or_else(|| panic!("transpose {name:?}"))
}

fn dtype(name: &str) -> DType {
    DType::from_name(name).unwrap_or_else(|| panic!("dtype {name:?}"))
}

/// IEEE binary16 bits to f64, written out here so the check does not lean on the `half`
/// crate the oracle uses.
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let mant = f64::from(h & 0x3ff);
    match exp {
        0 => sign * mant * 2f64.powi(-24),
        31 if mant == 0.0 => sign * f64::INFINITY,
        31 => f64::NAN,
        _ => sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// bfloat16 bits to f64: the top half of an f32.
fn bf16_to_f64(h: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(h) << 16))
}

// ---------------------------------------------------------------------------------------------
// Device memory: operands at interior pointers between guard bytes

const GUARD: u8 = 0xA5;
/// Guard bytes before every operand (and after the last); not a multiple of 256, so every
/// operand sits at an interior pointer.
const GUARD_LEN: usize = 20;
/// An f32 signalling NaN, used to prefill outputs so that an element the op forgets to
/// write cannot pass.
const UNWRITTEN: u32 = 0x7FA5_A5A5;

#[derive(Clone, Copy)]
struct Placed {
    alloc: usize,
    offset: usize,
    len: usize,
}

/// Operands laid out in one allocation (`shared`) or one allocation each, with guard bytes
/// around each. After the op, [`Placement::finish`] reads every allocation back and returns the
/// output's bytes, or an error if any other byte changed.
struct Placement<'a> {
    be: &'a dyn ComputeBackend,
    shared: bool,
    allocs: Vec<(u64, Vec<u8>)>,
}

impl<'a> Placement<'a> {
    fn new(be: &'a dyn ComputeBackend, shared: bool) -> Self {
        Self {
            be,
            shared,
            allocs: Vec::new(),
        }
    }

    /// Places `data` aligned to `align` (2 or 4). Operands aligned to 2 are put at an
    /// address that is 2 mod 4, to catch 4-byte assumptions.
    fn put(&mut self, data: &[u8], align: usize) -> Placed {
        if !self.shared || self.allocs.is_empty() {
            self.allocs.push((0, Vec::new()));
        }
        let alloc = self.allocs.len() - 1;
        let buf = &mut self.allocs[alloc].1;
        let mut offset = (buf.len() + GUARD_LEN).next_multiple_of(4);
        if align == 2 {
            offset += 2;
        }
        buf.resize(offset, GUARD);
        buf.extend_from_slice(data);
        Placed {
            alloc,
            offset,
            len: data.len(),
        }
    }

    /// An output of `len` f32 values, prefilled with [`UNWRITTEN`].
    fn put_output(&mut self, len: usize) -> Placed {
        let data: Vec<u8> = (0..len).flat_map(|_| UNWRITTEN.to_le_bytes()).collect();
        self.put(&data, 4)
    }

    fn upload(&mut self) {
        for (ptr, buf) in &mut self.allocs {
            buf.resize(buf.len() + GUARD_LEN, GUARD);
            *ptr = self.be.alloc(buf.len()).expect("alloc");
            self.be.copy_htod(*ptr, buf).expect("copy_htod");
        }
    }

    fn ptr(&self, p: Placed) -> u64 {
        self.allocs[p.alloc].0 + p.offset as u64
    }

    /// The bytes of `out` after the op; every other byte must be as uploaded.
    fn finish(&self, out: Placed) -> Result<Vec<u8>, String> {
        let mut result = Vec::new();
        for (ai, (ptr, before)) in self.allocs.iter().enumerate() {
            let mut after = vec![0u8; before.len()];
            self.be
                .copy_dtoh(&mut after, *ptr)
                .map_err(|e| format!("copy_dtoh: {e}"))?;
            for (i, (&x, &y)) in after.iter().zip(before).enumerate() {
                let inside = ai == out.alloc && (out.offset..out.offset + out.len).contains(&i);
                if !inside && x != y {
                    return Err(format!(
                        "byte {i} of allocation {ai} outside the output changed: {y:#04x} -> {x:#04x}"
                    ));
                }
            }
            if ai == out.alloc {
                result = after[out.offset..out.offset + out.len].to_vec();
            }
        }
        Ok(result)
    }
}

impl Drop for Placement<'_> {
    fn drop(&mut self) {
        for (ptr, _) in &self.allocs {
            if *ptr != 0 {
                let _ = self.be.free(*ptr);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison

/// How a result is compared with the numpy value `want` (f64), after rounding it to f32.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Rule {
    /// Within 1 f32 ulp, plus `2^-44 * mag` for sums.
    Ulp1,
    /// Bit-identical to the rounded value, sign of zero included.
    Exact,
    /// Equal to the rounded value; `-0 == +0`.
    ExactAnyZero,
}

/// The allowance for f64 summation order: 2^-44 per unit of `sum |terms|`.
const SUM_ORDER: f64 = 1.0 / (1u64 << 44) as f64;

/// Orders f32 values by their position on the number line, `-0` and `+0` together.
fn ordinal(x: f32) -> i64 {
    let b = x.to_bits();
    let mag = i64::from(b & 0x7fff_ffff);
    if b >> 31 == 1 { -mag } else { mag }
}

/// The spacing of f32 values just above `|x|` (finite `x`).
fn ulp(x: f32) -> f64 {
    let a = x.abs();
    if a == f32::MAX {
        2f64.powi(104)
    } else {
        f64::from(f32::from_bits(a.to_bits() + 1)) - f64::from(a)
    }
}

/// `None` when `got` passes, else `(diff, tolerance)`.
fn mismatch(got: f32, want: f64, mag: f64, rule: Rule) -> Option<(f64, f64)> {
    if want.is_nan() || got.is_nan() {
        return if want.is_nan() && got.is_nan() {
            None
        } else {
            Some((f64::NAN, 0.0))
        };
    }
    let w = want as f32;
    let diff = (f64::from(got) - want).abs();
    match rule {
        Rule::Exact => (got.to_bits() != w.to_bits()).then_some((diff, 0.0)),
        Rule::ExactAnyZero => (got != w).then_some((diff, 0.0)),
        Rule::Ulp1 => {
            if want.is_infinite() {
                // An infinite result is exact: only the same infinity matches.
                return (got != w).then_some((diff, 0.0));
            }
            if (ordinal(got) - ordinal(w)).abs() <= 1 {
                return None;
            }
            let tol = if w.is_finite() {
                ulp(w) + SUM_ORDER * mag
            } else {
                0.0
            };
            (!(got.is_finite() && diff <= tol)).then_some((diff, tol))
        }
    }
}

/// Failures of one test, reported together at the end.
#[derive(Default)]
struct Report {
    /// Check only the sign of zero results (see [`signed_zeros_match_numpy`]).
    strict_zeros: bool,
    cases: usize,
    values: usize,
    text: String,
    failures: usize,
}

impl Report {
    fn new(strict_zeros: bool) -> Self {
        Self {
            strict_zeros,
            ..Self::default()
        }
    }

    fn fail(&mut self, case: &str, message: impl std::fmt::Display) {
        self.failures += 1;
        if self.failures <= 60 {
            let _ = writeln!(self.text, "{case}: {message}");
        }
    }

    /// Compares `got[i]` with `want[i]` (f64 bit patterns) for every `i` in `indices`.
    fn compare(
        &mut self,
        case: &str,
        got: &[f32],
        want: &[u64],
        mag: Option<&[u64]>,
        rule: Rule,
        indices: impl IntoIterator<Item = usize>,
    ) {
        let mut failed_here = 0;
        for i in indices {
            let w = f64_of(want[i]);
            let m = mag.map_or(0.0, |m| f64_of(m[i]));
            let bad = if self.strict_zeros {
                // A zero result must have numpy's sign (where the op defines it).
                let w32 = w as f32;
                if rule == Rule::ExactAnyZero || w32 != 0.0 || got[i] != 0.0 {
                    continue;
                }
                (got[i].to_bits() != w32.to_bits()).then_some((0.0, 0.0))
            } else {
                mismatch(got[i], w, m, rule)
            };
            self.values += 1;
            if let Some((diff, tol)) = bad {
                failed_here += 1;
                if failed_here <= 8 {
                    self.fail(
                        case,
                        format!(
                            "[{i}] got {:e} ({:#010x}) want {w:e} (f32 {:e}) diff {diff:e} tol {tol:e} ({rule:?}, mag {m:e})",
                            got[i],
                            got[i].to_bits(),
                            w as f32,
                        ),
                    );
                } else {
                    self.failures += 1;
                }
            }
        }
    }

    /// The bytes at the output must stay exactly as they were (padding, gaps).
    fn untouched(
        &mut self,
        case: &str,
        got: &[f32],
        input_bits: &[u64],
        indices: impl IntoIterator<Item = usize>,
    ) {
        for i in indices {
            self.values += 1;
            if u64::from(got[i].to_bits()) != input_bits[i] {
                self.fail(
                    case,
                    format!(
                        "[{i}] must not be written: was {:#010x}, now {:#010x} ({:e})",
                        input_bits[i],
                        got[i].to_bits(),
                        got[i]
                    ),
                );
            }
        }
    }

    fn merge(&mut self, other: Report) {
        self.cases += other.cases;
        self.values += other.values;
        self.failures += other.failures;
        self.text += &other.text;
    }

    fn done(self, family: &str) {
        assert!(self.cases > 0, "{family}: no cases");
        if self.failures > 0 {
            panic!(
                "{family}: {} of {} values failed in {} cases:\n{}",
                self.failures, self.values, self.cases, self.text
            );
        }
        eprintln!(
            "{family}: {} cases, {} values, all match numpy",
            self.cases, self.values
        );
    }
}

// ---------------------------------------------------------------------------------------------
// gemm, batched_gemm, gemm_ex

#[derive(Deserialize)]
struct GemmFile {
    cases: Vec<GemmCase>,
}

#[derive(Deserialize)]
struct GemmCase {
    name: String,
    ta: String,
    tb: String,
    m: usize,
    n: usize,
    k: usize,
    alpha: u64,
    beta: u64,
    lda: usize,
    ldb: usize,
    ldc: usize,
    #[serde(default)]
    stride_a: usize,
    #[serde(default)]
    stride_b: usize,
    #[serde(default)]
    stride_c: usize,
    #[serde(default = "one")]
    batch: usize,
    #[serde(default = "f32_name")]
    a_dtype: String,
    #[serde(default = "f32_name")]
    b_dtype: String,
    a: Vec<u64>,
    b: Vec<u64>,
    c: Vec<u64>,
    want: Vec<u64>,
    mag: Vec<u64>,
}

fn one() -> usize {
    1
}

fn f32_name() -> String {
    "f32".into()
}

#[derive(Clone, Copy, PartialEq)]
enum GemmKind {
    Plain,
    Batched,
    Ex,
}

impl GemmCase {
    /// Whether element `i` of the C buffer is an output (row < m of a column < n of some
    /// batch), as opposed to padding or a gap that must stay untouched.
    fn is_output(&self, i: usize) -> bool {
        let span = self.ldc * self.n;
        (0..self.batch).any(|b| {
            let Some(rel) = i.checked_sub(b * self.stride_c) else {
                return false;
            };
            rel < span && rel % self.ldc < self.m
        })
    }
}

fn run_gemm_family(file: &str, kind: GemmKind, strict_zeros: bool) -> Report {
    let be = backend();
    let fixture: GemmFile = load(file);
    let mut report = Report::new(strict_zeros);
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let (da, db) = (dtype(&case.a_dtype), dtype(&case.b_dtype));
        let mut mem = Placement::new(&be, ci % 2 == 0);
        let pa = mem.put(&dtype_bytes(da, &case.a), da.size_bytes());
        let pb = mem.put(&dtype_bytes(db, &case.b), db.size_bytes());
        let pc = mem.put(&f32_bytes(&case.c), 4);
        mem.upload();
        let (ta, tb) = (trans(&case.ta), trans(&case.tb));
        let (alpha, beta) = (f64_of(case.alpha), f64_of(case.beta));
        let (a, b, c) = (mem.ptr(pa), mem.ptr(pb), mem.ptr(pc));
        let (m, n, k) = (case.m, case.n, case.k);
        let result = match kind {
            GemmKind::Plain => be.gemm(
                ta, tb, m, n, k, alpha, a, case.lda, b, case.ldb, beta, c, case.ldc,
            ),
            GemmKind::Batched => be.batched_gemm(
                ta,
                tb,
                m,
                n,
                k,
                alpha,
                a,
                case.lda,
                case.stride_a,
                b,
                case.ldb,
                case.stride_b,
                beta,
                c,
                case.ldc,
                case.stride_c,
                case.batch,
            ),
            GemmKind::Ex => be.gemm_ex(
                ta, tb, m, n, k, alpha, a, da, case.lda, b, db, case.ldb, beta, c, case.ldc,
            ),
        };
        if let Err(e) = result {
            report.fail(&case.name, format!("returned {e}"));
            continue;
        }
        let got = match mem.finish(pc) {
            Ok(bytes) => f32s(&bytes),
            Err(e) => {
                report.fail(&case.name, e);
                continue;
            }
        };
        let outputs: Vec<usize> = (0..got.len()).filter(|&i| case.is_output(i)).collect();
        let others: Vec<usize> = (0..got.len()).filter(|&i| !case.is_output(i)).collect();
        report.compare(
            &case.name,
            &got,
            &case.want,
            Some(&case.mag),
            Rule::Ulp1,
            outputs,
        );
        report.untouched(&case.name, &got, &case.c, others);
    }
    report
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn gemm_matches_numpy() {
    run_gemm_family("gemm.json", GemmKind::Plain, false).done("gemm.json");
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn batched_gemm_matches_numpy() {
    run_gemm_family("batched_gemm.json", GemmKind::Batched, false).done("batched_gemm.json");
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn gemm_ex_matches_numpy() {
    run_gemm_family("gemm_ex.json", GemmKind::Ex, false).done("gemm_ex.json");
}

// ---------------------------------------------------------------------------------------------
// conv2d

#[derive(Deserialize)]
struct ConvFile {
    cases: Vec<ConvCase>,
}

#[derive(Deserialize)]
struct ConvCase {
    name: String,
    input_shape: Vec<usize>,
    filter_shape: Vec<usize>,
    output_shape: Vec<usize>,
    stride: Vec<usize>,
    padding: Vec<usize>,
    input: Vec<u64>,
    filter: Vec<u64>,
    want: Vec<u64>,
    mag: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn conv2d_matches_numpy() {
    run_conv2d(false).done("conv2d.json");
}

fn run_conv2d(strict_zeros: bool) -> Report {
    let be = backend();
    let fixture: ConvFile = load("conv2d.json");
    let mut report = Report::new(strict_zeros);
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let mut mem = Placement::new(&be, ci % 2 == 1);
        let pi = mem.put(&f32_bytes(&case.input), 4);
        let pf = mem.put(&f32_bytes(&case.filter), 4);
        let po = mem.put_output(case.want.len());
        mem.upload();
        let result = be.conv2d_forward(
            mem.ptr(pi),
            &case.input_shape,
            mem.ptr(pf),
            &case.filter_shape,
            mem.ptr(po),
            &case.output_shape,
            &case.stride,
            &case.padding,
        );
        if let Err(e) = result {
            report.fail(&case.name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let got = f32s(&bytes);
                report.compare(
                    &case.name,
                    &got,
                    &case.want,
                    Some(&case.mag),
                    Rule::Ulp1,
                    0..got.len(),
                );
            }
            Err(e) => report.fail(&case.name, e),
        }
    }
    report
}

#[derive(Deserialize)]
struct ConvExFile {
    cases: Vec<ConvExCase>,
}

#[derive(Deserialize)]
struct ConvExCase {
    name: String,
    input_shape: [usize; 4],
    filter_shape: [usize; 4],
    output_shape: [usize; 4],
    stride: [usize; 2],
    padding: [usize; 4],
    dilation: [usize; 2],
    groups: usize,
    input: Vec<u64>,
    filter: Vec<u64>,
    bias: Option<Vec<u64>>,
    want: Vec<u64>,
    mag: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn conv2d_ex_matches_numpy() {
    run_conv2d_ex(false).done("conv2d_ex.json");
}

fn run_conv2d_ex(strict_zeros: bool) -> Report {
    let be = backend();
    let fixture: ConvExFile = load("conv2d_ex.json");
    let mut report = Report::new(strict_zeros);
    let mut depthwise = false;
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        depthwise |= case.groups > 1 && case.filter_shape[1] == 1;
        let mut mem = Placement::new(&be, ci % 2 == 1);
        let pi = mem.put(&f32_bytes(&case.input), 4);
        let pf = mem.put(&f32_bytes(&case.filter), 4);
        let pb = case.bias.as_ref().map(|b| mem.put(&f32_bytes(b), 4));
        let po = mem.put_output(case.want.len());
        mem.upload();
        let mut args = Conv2dArgs::new(
            mem.ptr(pi),
            case.input_shape,
            mem.ptr(pf),
            case.filter_shape,
            mem.ptr(po),
            case.output_shape,
        )
        .stride(case.stride)
        .padding(case.padding)
        .dilation(case.dilation)
        .groups(case.groups);
        if let Some(pb) = pb {
            args = args.bias(mem.ptr(pb));
        }
        if let Err(e) = be.conv2d_forward_ex(&args) {
            report.fail(&case.name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let got = f32s(&bytes);
                report.compare(
                    &case.name,
                    &got,
                    &case.want,
                    Some(&case.mag),
                    Rule::Ulp1,
                    0..got.len(),
                );
            }
            Err(e) => report.fail(&case.name, e),
        }
    }
    assert!(depthwise, "conv2d_ex.json has a depthwise case");
    report
}

// ---------------------------------------------------------------------------------------------
// attention

#[derive(Deserialize)]
struct AttentionFile {
    cases: Vec<AttentionCase>,
}

#[derive(Deserialize)]
struct AttentionCase {
    name: String,
    batch: usize,
    heads: usize,
    seq_q: usize,
    seq_kv: usize,
    head_dim: usize,
    scale: u64,
    causal: bool,
    q: Vec<u64>,
    k: Vec<u64>,
    v: Vec<u64>,
    want: Vec<u64>,
    mag: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn attention_matches_numpy() {
    run_attention(false).done("attention.json");
}

fn run_attention(strict_zeros: bool) -> Report {
    let be = backend();
    let fixture: AttentionFile = load("attention.json");
    let mut report = Report::new(strict_zeros);
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let mut mem = Placement::new(&be, ci % 2 == 0);
        let pq = mem.put(&f32_bytes(&case.q), 4);
        let pk = mem.put(&f32_bytes(&case.k), 4);
        let pv = mem.put(&f32_bytes(&case.v), 4);
        let po = mem.put_output(case.want.len());
        mem.upload();
        let result = be.attention(
            mem.ptr(pq),
            mem.ptr(pk),
            mem.ptr(pv),
            mem.ptr(po),
            case.batch,
            case.heads,
            case.seq_q,
            case.seq_kv,
            case.head_dim,
            f64_of(case.scale),
            case.causal,
        );
        if let Err(e) = result {
            report.fail(&case.name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let got = f32s(&bytes);
                report.compare(
                    &case.name,
                    &got,
                    &case.want,
                    Some(&case.mag),
                    Rule::Ulp1,
                    0..got.len(),
                );
            }
            Err(e) => report.fail(&case.name, e),
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// attention_ex

#[derive(Deserialize)]
struct AttentionExFile {
    cases: Vec<AttentionExCase>,
}

#[derive(Deserialize)]
struct AttentionExCase {
    name: String,
    batch: usize,
    heads: usize,
    kv_heads: usize,
    seq_q: usize,
    seq_kv: usize,
    head_dim: usize,
    v_head_dim: usize,
    scale: u64,
    causal: bool,
    softcap: Option<u64>,
    window: Option<usize>,
    q: Vec<u64>,
    q_strides: [usize; 3],
    k: Vec<u64>,
    k_strides: [usize; 3],
    v: Vec<u64>,
    v_strides: [usize; 3],
    o_len: usize,
    o_strides: [usize; 3],
    mask: Option<Vec<u64>>,
    mask_dims: Option<[usize; 2]>,
    /// Logical `[batch, heads, seq_q, v_head_dim]`.
    want: Vec<u64>,
    mag: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn attention_ex_matches_numpy() {
    run_attention_ex(false).done("attention_ex.json");
}

fn run_attention_ex(strict_zeros: bool) -> Report {
    use backend_api::{AttentionArgs, AttentionMask, HeadTensor};
    let be = backend();
    let fixture: AttentionExFile = load("attention_ex.json");
    let mut report = Report::new(strict_zeros);
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let mut mem = Placement::new(&be, ci % 2 == 0);
        let pq = mem.put(&f32_bytes(&case.q), 4);
        let pk = mem.put(&f32_bytes(&case.k), 4);
        let pv = mem.put(&f32_bytes(&case.v), 4);
        let pm = case.mask.as_ref().map(|m| mem.put(&f32_bytes(m), 4));
        let po = mem.put_output(case.o_len);
        mem.upload();
        let mut args = AttentionArgs::new(
            case.batch,
            case.heads,
            case.kv_heads,
            case.seq_q,
            case.seq_kv,
            case.head_dim,
            HeadTensor::new(mem.ptr(pq), case.q_strides),
            HeadTensor::new(mem.ptr(pk), case.k_strides),
            HeadTensor::new(mem.ptr(pv), case.v_strides),
            HeadTensor::new(mem.ptr(po), case.o_strides),
        )
        .scale(f64_of(case.scale))
        .causal(case.causal)
        .v_head_dim(case.v_head_dim);
        args.softcap = case.softcap.map(f64_of);
        args.window = case.window;
        args.mask = pm
            .zip(case.mask_dims)
            .map(|(pm, [batch, heads])| AttentionMask {
                ptr: mem.ptr(pm),
                batch,
                heads,
            });
        if let Err(e) = be.attention_ex(&args) {
            report.fail(&case.name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let o = f32s(&bytes);
                // The logical rows, gathered through O's strides; the rest must be as
                // uploaded.
                let dv = case.v_head_dim;
                let mut got = Vec::with_capacity(case.want.len());
                let mut written = vec![false; o.len()];
                for b in 0..case.batch {
                    for h in 0..case.heads {
                        for i in 0..case.seq_q {
                            let at = b * case.o_strides[0]
                                + h * case.o_strides[1]
                                + i * case.o_strides[2];
                            got.extend_from_slice(&o[at..][..dv]);
                            written[at..][..dv].fill(true);
                        }
                    }
                }
                if let Some(i) = (0..o.len()).find(|&i| !written[i] && o[i].to_bits() != UNWRITTEN)
                {
                    report.fail(
                        &case.name,
                        format!("O[{i}] outside the output rows was written"),
                    );
                    continue;
                }
                report.compare(
                    &case.name,
                    &got,
                    &case.want,
                    Some(&case.mag),
                    Rule::Ulp1,
                    0..got.len(),
                );
            }
            Err(e) => report.fail(&case.name, e),
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// reduce

#[derive(Deserialize)]
struct ReduceFile {
    cases: Vec<ReduceCase>,
}

#[derive(Deserialize)]
struct ReduceCase {
    name: String,
    op: String,
    shape: Vec<usize>,
    axis: usize,
    input: Vec<u64>,
    want: Vec<u64>,
    mag: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn reduce_matches_numpy() {
    run_reduce(false).done("reduce.json");
}

fn run_reduce(strict_zeros: bool) -> Report {
    let be = backend();
    let mut cases = load::<ReduceFile>("reduce.json").cases;
    cases.extend(load::<ReduceFile>("reduce_ex.json").cases);
    let mut report = Report::new(strict_zeros);
    let mut seen = Vec::new();
    for (ci, case) in cases.iter().enumerate() {
        report.cases += 1;
        let op = ReduceOp::from_name(&case.op).unwrap_or_else(|| panic!("reduce op {:?}", case.op));
        seen.push(op);
        let rule = match op {
            ReduceOp::Max | ReduceOp::Min => Rule::ExactAnyZero,
            _ => Rule::Ulp1,
        };
        let mut mem = Placement::new(&be, ci % 3 != 0);
        let pi = mem.put(&f32_bytes(&case.input), 4);
        let po = mem.put_output(case.want.len());
        mem.upload();
        if let Err(e) = be.reduce(op, mem.ptr(pi), mem.ptr(po), &case.shape, case.axis) {
            report.fail(&case.name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let got = f32s(&bytes);
                report.compare(
                    &case.name,
                    &got,
                    &case.want,
                    Some(&case.mag),
                    rule,
                    0..got.len(),
                );
            }
            Err(e) => report.fail(&case.name, e),
        }
    }
    for &op in ReduceOp::ALL {
        assert!(seen.contains(&op), "reduce*.json have no case for {op}");
    }
    report
}

// ---------------------------------------------------------------------------------------------
// row ops: softmax, log_softmax, layer_norm, rms_norm

#[derive(Deserialize)]
struct RowsFile {
    cases: Vec<RowsCase>,
}

#[derive(Deserialize)]
struct RowsCase {
    name: String,
    op: String,
    rows: usize,
    cols: usize,
    eps: u64,
    input: Vec<u64>,
    gamma: Option<Vec<u64>>,
    beta: Option<Vec<u64>>,
    want: Vec<u64>,
    mag: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn row_ops_match_numpy() {
    run_rows(false).done("rows.json");
}

fn run_rows(strict_zeros: bool) -> Report {
    let be = backend();
    let fixture: RowsFile = load("rows.json");
    let mut report = Report::new(strict_zeros);
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let eps = f64::from_bits(case.eps);
        // Every other case runs in place (y is x).
        let in_place = ci % 2 == 1;
        let mut mem = Placement::new(&be, ci % 3 != 0);
        let pi = mem.put(&f32_bytes(&case.input), 4);
        let pg = case.gamma.as_ref().map(|g| mem.put(&f32_bytes(g), 4));
        let pb = case.beta.as_ref().map(|b| mem.put(&f32_bytes(b), 4));
        let po = if in_place {
            pi
        } else {
            mem.put_output(case.want.len())
        };
        mem.upload();
        let (x, y) = (mem.ptr(pi), mem.ptr(po));
        let (g, b) = (pg.map(|p| mem.ptr(p)), pb.map(|p| mem.ptr(p)));
        let (rows, cols) = (case.rows, case.cols);
        let r = match case.op.as_str() {
            "softmax" => be.softmax(x, y, rows, cols),
            "log_softmax" => be.log_softmax(x, y, rows, cols),
            "layer_norm" => be.layer_norm(x, g, b, y, rows, cols, eps),
            "rms_norm" => be.rms_norm(x, g, y, rows, cols, eps),
            other => panic!("row op {other:?}"),
        };
        if let Err(e) = r {
            report.fail(&case.name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let got = f32s(&bytes);
                report.compare(
                    &case.name,
                    &got,
                    &case.want,
                    Some(&case.mag),
                    Rule::Ulp1,
                    0..got.len(),
                );
            }
            Err(e) => report.fail(&case.name, e),
        }
    }
    report
}

// ---------------------------------------------------------------------------------------------
// unary, binary

#[derive(Deserialize)]
struct OpCase {
    op: String,
    want: Vec<u64>,
}

#[derive(Deserialize)]
struct UnaryFile {
    input: Vec<u64>,
    cases: Vec<OpCase>,
}

#[derive(Deserialize)]
struct BinaryFile {
    a: Vec<u64>,
    b: Vec<u64>,
    cases: Vec<OpCase>,
}

fn unary_rule(op: UnaryOp) -> Rule {
    match op {
        UnaryOp::Abs
        | UnaryOp::Neg
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Sqrt
        | UnaryOp::Recip
        | UnaryOp::Square
        | UnaryOp::Round => Rule::Exact,
        UnaryOp::Sign | UnaryOp::HardSwish => Rule::ExactAnyZero,
        UnaryOp::Relu => Rule::ExactAnyZero,
        // sigmoid tanh exp log gelu silu rsqrt sin cos: libm-dependent in the last f64 bit.
        _ => Rule::Ulp1,
    }
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn unary_matches_numpy() {
    run_unary(false).done("unary.json");
}

fn run_unary(strict_zeros: bool) -> Report {
    let mut report = Report::new(strict_zeros);
    let mut seen = Vec::new();
    for file in ["unary.json", "unary_ex.json"] {
        run_unary_file(file, &mut report, &mut seen);
    }
    for &op in UnaryOp::ALL {
        assert!(seen.contains(&op), "unary*.json have no case for {op}");
    }
    report
}

fn run_unary_file(file: &str, report: &mut Report, seen: &mut Vec<UnaryOp>) {
    let be = backend();
    let fixture: UnaryFile = load(file);
    let n = fixture.input.len();
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let op = UnaryOp::from_name(&case.op).unwrap_or_else(|| panic!("unary op {:?}", case.op));
        seen.push(op);
        let name = format!("unary {op}");
        let in_place = ci % 2 == 1;
        let mut mem = Placement::new(&be, ci % 3 != 2);
        let pi = mem.put(&f32_bytes(&fixture.input), 4);
        let po = if in_place { pi } else { mem.put_output(n) };
        mem.upload();
        if let Err(e) = be.unary(op, mem.ptr(pi), mem.ptr(po), n) {
            report.fail(&name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let got = f32s(&bytes);
                report.compare(&name, &got, &case.want, None, unary_rule(op), 0..n);
            }
            Err(e) => report.fail(&name, e),
        }
    }
}

#[derive(Deserialize)]
struct UnaryParamFile {
    input: Vec<u64>,
    cases: Vec<UnaryParamCase>,
}

#[derive(Deserialize)]
struct UnaryParamCase {
    op: String,
    /// f32 bits.
    a: u32,
    b: u32,
    want: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn unary_param_matches_numpy() {
    let be = backend();
    let fixture: UnaryParamFile = load("unary_param.json");
    let n = fixture.input.len();
    let mut report = Report::new(false);
    let mut seen = Vec::new();
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let op = UnaryParamOp::from_name(&case.op)
            .unwrap_or_else(|| panic!("unary_param op {:?}", case.op));
        seen.push(op);
        let (a, b) = (f32::from_bits(case.a), f32::from_bits(case.b));
        let name = format!("unary_param {op}({a}, {b})");
        let mut mem = Placement::new(&be, ci % 3 != 2);
        let pi = mem.put(&f32_bytes(&fixture.input), 4);
        let po = if ci % 2 == 1 { pi } else { mem.put_output(n) };
        mem.upload();
        if let Err(e) = be.unary_param(op, a, b, mem.ptr(pi), mem.ptr(po), n) {
            report.fail(&name, format!("returned {e}"));
            continue;
        }
        let rule = match op {
            // (Clip of -0 at a bound of +0 may give either zero.)
            UnaryParamOp::Clip | UnaryParamOp::LeakyRelu | UnaryParamOp::HardSigmoid => {
                Rule::ExactAnyZero
            }
            // expm1: libm-dependent in the last f64 bit.
            _ => Rule::Ulp1,
        };
        match mem.finish(po) {
            Ok(bytes) => report.compare(&name, &f32s(&bytes), &case.want, None, rule, 0..n),
            Err(e) => report.fail(&name, e),
        }
    }
    for &op in UnaryParamOp::ALL {
        assert!(seen.contains(&op), "unary_param.json has no case for {op}");
    }
    report.done("unary_param.json");
}

fn binary_rule(op: BinaryOp) -> Rule {
    match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Mod => {
            Rule::Exact
        }
        BinaryOp::Max | BinaryOp::Min => Rule::ExactAnyZero,
        _ => Rule::Ulp1,
    }
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn binary_matches_numpy() {
    run_binary(false).done("binary.json");
}

fn run_binary(strict_zeros: bool) -> Report {
    let mut report = Report::new(strict_zeros);
    let mut seen = Vec::new();
    for file in ["binary.json", "binary_ex.json"] {
        run_binary_file(file, &mut report, &mut seen);
    }
    for &op in BinaryOp::ALL {
        assert!(seen.contains(&op), "binary*.json have no case for {op}");
    }
    report
}

fn run_binary_file(file: &str, report: &mut Report, seen: &mut Vec<BinaryOp>) {
    let be = backend();
    let fixture: BinaryFile = load(file);
    let n = fixture.a.len();
    assert_eq!(n, fixture.b.len());
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let op = BinaryOp::from_name(&case.op).unwrap_or_else(|| panic!("binary op {:?}", case.op));
        seen.push(op);
        let name = format!("binary {op}");
        let mut mem = Placement::new(&be, ci % 2 == 0);
        let pa = mem.put(&f32_bytes(&fixture.a), 4);
        let pb = mem.put(&f32_bytes(&fixture.b), 4);
        // Out of place, in place over a, in place over b, in turn.
        let po = match ci % 3 {
            0 => mem.put_output(n),
            1 => pa,
            _ => pb,
        };
        mem.upload();
        if let Err(e) = be.binary(op, mem.ptr(pa), mem.ptr(pb), mem.ptr(po), n) {
            report.fail(&name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let got = f32s(&bytes);
                report.compare(&name, &got, &case.want, None, binary_rule(op), 0..n);
            }
            Err(e) => report.fail(&name, e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gemm_q (weights quantized by the `gguf` package: gen_quant_fixtures.py)

#[derive(Deserialize)]
struct GemmQFile {
    cases: Vec<GemmQCase>,
    /// f32 weights and the bytes gguf quantizes them to.
    quantize: Vec<QuantizeCase>,
}

#[derive(Deserialize)]
struct QuantizeCase {
    name: String,
    format: String,
    rows: usize,
    k: usize,
    w: Vec<u32>,
    want: Vec<u8>,
}

/// `QuantFormat::quantize` against `gguf.quants.quantize`, byte for byte (rounding
/// boundaries, an all-zero block and a negative extreme included).
#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn quantize_matches_gguf() {
    let fixture: GemmQFile = load("gemm_q.json");
    assert!(!fixture.quantize.is_empty());
    for case in &fixture.quantize {
        let format = QuantFormat::from_name(&case.format).expect("q8_0 or q4_0");
        let w: Vec<f32> = case.w.iter().map(|&b| f32::from_bits(b)).collect();
        let got = format.quantize(&w, case.rows, case.k).expect("valid shape");
        assert_eq!(got.len(), case.want.len(), "{}: length", case.name);
        if let Some(i) = (0..got.len()).find(|&i| got[i] != case.want[i]) {
            let block = i / format.block_bytes();
            panic!(
                "{}: byte {i} (block {block}) is {:#04x}, gguf wrote {:#04x}",
                case.name, got[i], case.want[i]
            );
        }
    }
}

#[derive(Deserialize)]
struct GemmQCase {
    name: String,
    format: String,
    m: usize,
    n: usize,
    k: usize,
    alpha: f64,
    beta: f64,
    a: Vec<u8>,
    b: Vec<u64>,
    c: Vec<u64>,
    want: Vec<u64>,
    mag: Vec<u64>,
    row0: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn gemm_q_matches_gguf() {
    let be = backend();
    let fixture: GemmQFile = load("gemm_q.json");
    let mut report = Report::new(false);
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let format = QuantFormat::from_name(&case.format).expect("q8_0 or q4_0");
        // The oracle's dequantization against gguf's, value for value.
        let row0 = backend_cpu::reference::dequantize(format, &case.a, 1, case.k);
        for (j, (&got, &want)) in row0.iter().zip(&case.row0).enumerate() {
            assert_eq!(f64::from(got), f64_of(want), "{}: A[0, {j}]", case.name);
        }
        let mut mem = Placement::new(&be, ci % 2 == 0);
        let pa = mem.put(&case.a, 2);
        let pb = mem.put(&f32_bytes(&case.b), 4);
        let pc = mem.put(&f32_bytes(&case.c), 4);
        mem.upload();
        let (m, n, k) = (case.m, case.n, case.k);
        let r = be.gemm_q(
            format,
            m,
            n,
            k,
            case.alpha,
            mem.ptr(pa),
            mem.ptr(pb),
            DType::F32,
            k,
            case.beta,
            mem.ptr(pc),
            m,
        );
        if let Err(e) = r {
            report.fail(&case.name, format!("returned {e}"));
            continue;
        }
        match mem.finish(pc) {
            Ok(bytes) => {
                let got = f32s(&bytes);
                report.compare(
                    &case.name,
                    &got,
                    &case.want,
                    Some(&case.mag),
                    Rule::Ulp1,
                    0..m * n,
                );
            }
            Err(e) => report.fail(&case.name, e),
        }
    }
    report.done("gemm_q.json");
}

// ---------------------------------------------------------------------------------------------
// binary_broadcast, gather

#[derive(Deserialize)]
struct BroadcastFile {
    cases: Vec<BroadcastCase>,
}

#[derive(Deserialize)]
struct BroadcastCase {
    op: String,
    a_shape: Vec<usize>,
    b_shape: Vec<usize>,
    out_shape: Vec<usize>,
    a: Vec<u64>,
    b: Vec<u64>,
    want: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn binary_broadcast_matches_numpy() {
    run_broadcast(false).done("binary_broadcast.json");
}

fn run_broadcast(strict_zeros: bool) -> Report {
    let be = backend();
    let fixture: BroadcastFile = load("binary_broadcast.json");
    let mut report = Report::new(strict_zeros);
    let mut ranks = [false; 7];
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let op = BinaryOp::from_name(&case.op).unwrap_or_else(|| panic!("binary op {:?}", case.op));
        ranks[case.out_shape.len()] = true;
        let name = format!(
            "binary_broadcast {op} {:?} {:?} -> {:?}",
            case.a_shape, case.b_shape, case.out_shape
        );
        let n: usize = case.out_shape.iter().product();
        let mut mem = Placement::new(&be, ci % 2 == 0);
        let pa = mem.put(&f32_bytes(&case.a), 4);
        let pb = mem.put(&f32_bytes(&case.b), 4);
        // In place over an input that is not broadcast, every third case where one is.
        let po = match (ci % 3, case.a.len() == n, case.b.len() == n) {
            (1, true, _) => pa,
            (2, _, true) => pb,
            _ => mem.put_output(n),
        };
        mem.upload();
        let r = be.binary_broadcast(
            op,
            mem.ptr(pa),
            &case.a_shape,
            mem.ptr(pb),
            &case.b_shape,
            mem.ptr(po),
            &case.out_shape,
        );
        if let Err(e) = r {
            report.fail(&name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let got = f32s(&bytes);
                report.compare(&name, &got, &case.want, None, binary_rule(op), 0..n);
            }
            Err(e) => report.fail(&name, e),
        }
    }
    assert_eq!(
        ranks, [true; 7],
        "binary_broadcast.json covers output ranks 0 to 6"
    );
    report
}

#[derive(Deserialize)]
struct GatherFile {
    cases: Vec<GatherCase>,
}

#[derive(Deserialize)]
struct GatherCase {
    rows: usize,
    cols: usize,
    table: Vec<u64>,
    indices: Vec<u32>,
    want: Vec<u64>,
}

/// Gathered values are copies: bit for bit (NaN payloads and -0 included).
#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn gather_matches_numpy() {
    let be = backend();
    let fixture: GatherFile = load("gather.json");
    let mut out_of_range = 0;
    for (ci, case) in fixture.cases.iter().enumerate() {
        let n = case.indices.len();
        let mut mem = Placement::new(&be, ci % 2 == 0);
        let pt = mem.put(&f32_bytes(&case.table), 4);
        let index_bytes: Vec<u8> = case.indices.iter().flat_map(|i| i.to_le_bytes()).collect();
        let pi = mem.put(&index_bytes, 4);
        let po = mem.put_output(n * case.cols);
        mem.upload();
        let (rows, cols) = (case.rows, case.cols);
        be.gather(mem.ptr(pt), rows, cols, mem.ptr(pi), n, mem.ptr(po))
            .unwrap_or_else(|e| panic!("gather case {ci}: {e}"));
        let got = mem
            .finish(po)
            .unwrap_or_else(|e| panic!("gather case {ci}: {e}"));
        let want = f32_bytes(&case.want);
        assert_eq!(
            got, want,
            "gather case {ci} ({rows} x {cols}, indices {:?})",
            case.indices
        );
        out_of_range += case.indices.iter().filter(|&&i| i as usize >= rows).count();
    }
    assert!(out_of_range > 0, "gather.json has out-of-range indices");
}

// ---------------------------------------------------------------------------------------------
// cast

#[derive(Deserialize)]
struct CastFile {
    cases: Vec<CastCase>,
}

#[derive(Deserialize)]
struct CastCase {
    name: String,
    src: String,
    dst: String,
    input: Vec<u64>,
    want: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn cast_matches_numpy() {
    let be = backend();
    let fixture: CastFile = load("cast.json");
    let mut report = Report::default();
    for (ci, case) in fixture.cases.iter().enumerate() {
        report.cases += 1;
        let (src, dst) = (dtype(&case.src), dtype(&case.dst));
        let n = case.input.len();
        let mut mem = Placement::new(&be, ci % 2 == 0);
        let ps = mem.put(&dtype_bytes(src, &case.input), src.size_bytes());
        let pd = mem.put(&vec![GUARD; n * dst.size_bytes()], dst.size_bytes());
        mem.upload();
        if let Err(e) = be.cast(mem.ptr(ps), src, mem.ptr(pd), dst, n) {
            report.fail(&case.name, format!("returned {e}"));
            continue;
        }
        let bytes = match mem.finish(pd) {
            Ok(bytes) => bytes,
            Err(e) => {
                report.fail(&case.name, e);
                continue;
            }
        };
        // Decode what came back to f64 and compare exactly: casts are correctly rounded
        // (narrowing) or exact (widening), sign of zero included.
        let got: Vec<(f64, u32)> = match dst {
            DType::F32 => f32s(&bytes)
                .into_iter()
                .map(|v| (f64::from(v), v.to_bits()))
                .collect(),
            DType::F16 => u16s(&bytes)
                .into_iter()
                .map(|h| (f16_to_f64(h), u32::from(h)))
                .collect(),
            DType::BF16 => u16s(&bytes)
                .into_iter()
                .map(|h| (bf16_to_f64(h), u32::from(h)))
                .collect(),
        };
        for (i, (&(g, raw), &w)) in got.iter().zip(&case.want).enumerate() {
            report.values += 1;
            let w = f64_of(w);
            let ok = if w.is_nan() {
                g.is_nan()
            } else {
                g.to_bits() == w.to_bits()
            };
            if !ok {
                report.fail(
                    &case.name,
                    format!(
                        "[{i}] input {:#x}: got {g:e} (bits {raw:#x}) want {w:e} diff {:e} tol 0",
                        case.input[i],
                        (g - w).abs()
                    ),
                );
            }
        }
    }
    report.done("cast.json");
}

// ---------------------------------------------------------------------------------------------
// The sign of zero

/// Where numpy's result is a zero, the oracle's must be the same zero: an empty sum is +0,
/// BLAS's `C = beta * C` (alpha == 0 or k == 0) keeps a -0 in C, `tanh(-0)` is -0, and so
/// on. The value tests above accept either zero; this test holds the sign (except for
/// max, min and relu, where the contract leaves the sign of a zero result open, and for
/// ops already compared bit for bit).
#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn signed_zeros_match_numpy() {
    let mut report = Report::new(true);
    report.merge(run_gemm_family("gemm.json", GemmKind::Plain, true));
    report.merge(run_gemm_family(
        "batched_gemm.json",
        GemmKind::Batched,
        true,
    ));
    report.merge(run_gemm_family("gemm_ex.json", GemmKind::Ex, true));
    report.merge(run_conv2d(true));
    report.merge(run_conv2d_ex(true));
    report.merge(run_attention(true));
    report.merge(run_attention_ex(true));
    report.merge(run_reduce(true));
    report.merge(run_rows(true));
    report.merge(run_unary(true));
    report.merge(run_binary(true));
    report.merge(run_broadcast(true));
    report.done("signed zeros");
}

// ---------------------------------------------------------------------------------------------
// f16/bf16 storage: unary_ex, binary_ex, reduce_ex, rows_ex and the model ops' _ex forms
// (gen_fixtures.py, half_storage_cases)

#[derive(Deserialize)]
struct HalfFile {
    cases: Vec<HalfCase>,
}

#[derive(Deserialize)]
struct HalfCase {
    name: String,
    dtype: String,
    call: String,
    op: String,
    /// 16-bit patterns; a reduce input of one repeated value is that value and `repeat`.
    a: Vec<u16>,
    #[serde(default)]
    b: Vec<u16>,
    #[serde(default)]
    repeat: Option<usize>,
    #[serde(default)]
    shape: Vec<usize>,
    #[serde(default)]
    axis: usize,
    /// Row ops: the norms' parameters and epsilon (u64 bits).
    #[serde(default)]
    gamma: Vec<u16>,
    #[serde(default)]
    beta: Vec<u16>,
    #[serde(default)]
    eps: u64,
    /// Model ops: broadcast shapes, gather indices, unary_param's parameters (f32 bits),
    /// attention's V, mask (f32 bits) and `[b, h, kvh, sq, skv, d]`, conv's geometry.
    #[serde(default)]
    a_shape: Vec<usize>,
    #[serde(default)]
    b_shape: Vec<usize>,
    #[serde(default)]
    indices: Vec<u32>,
    #[serde(default)]
    params: [u32; 2],
    #[serde(default)]
    v: Vec<u16>,
    #[serde(default)]
    mask: Vec<u32>,
    #[serde(default)]
    dims: Vec<usize>,
    #[serde(default)]
    causal: bool,
    #[serde(default)]
    bias: Vec<u16>,
    #[serde(default)]
    filter_shape: Vec<usize>,
    #[serde(default)]
    stride: [usize; 2],
    #[serde(default)]
    padding: [usize; 4],
    #[serde(default)]
    dilation: [usize; 2],
    #[serde(default)]
    groups: usize,
    /// gemm's alpha and beta (f64 bits); its initial C is in `v`.
    #[serde(default)]
    scalars: [u64; 2],
    want: Vec<u64>,
}

#[test]
#[cfg_attr(miri, ignore = "reads fixtures/*.json, which Miri's isolation forbids")]
fn half_storage_matches_numpy() {
    let be = backend();
    let fixture: HalfFile = load("half_storage.json");
    let mut report = Report::new(false);
    let half_bytes = |v: &[u16], repeat: usize| -> Vec<u8> {
        v.iter()
            .flat_map(|h| h.to_le_bytes())
            .collect::<Vec<u8>>()
            .repeat(repeat)
    };
    for case in &fixture.cases {
        report.cases += 1;
        let dtype = DType::from_name(&case.dtype).expect("f16 or bf16");
        let name = format!("{} ({})", case.name, case.call);
        // Operands at 2 mod 4: they start mid-word.
        let mut mem = Placement::new(&be, true);
        let pa = mem.put(&half_bytes(&case.a, case.repeat.unwrap_or(1)), 2);
        let n = case.want.len();
        // gemm's C starts as its fixture values (gaps included), not as filler.
        let po = match case.call.as_str() {
            "gemm" => mem.put(&half_bytes(&case.v, 1), 2),
            _ => mem.put(&vec![0xA5; 2 * n], 2),
        };
        let result = match case.call.as_str() {
            "gemm" => {
                let pb = mem.put(&half_bytes(&case.b, 1), 2);
                mem.upload();
                let [m, n, k, ldc, stride_c, count] = case.dims[..] else {
                    panic!("dims has 6 entries")
                };
                let [alpha, beta] = case.scalars.map(f64::from_bits);
                let no = BackendTranspose::NoTrans;
                let (a, b, c) = (mem.ptr(pa), mem.ptr(pb), mem.ptr(po));
                be.batched_gemm_ex(
                    &GemmArgs::new(no, no, m, n, k, alpha, a, m, b, k, beta, c, ldc)
                        .with_dtypes(dtype, dtype)
                        .with_c_dtype(dtype)
                        .with_batch(m * k, k * n, stride_c, count),
                )
            }
            "unary" => {
                mem.upload();
                let op = UnaryOp::from_name(&case.op).expect("a unary op");
                be.unary_ex(op, dtype, mem.ptr(pa), mem.ptr(po), n)
            }
            "binary" => {
                let pb = mem.put(&half_bytes(&case.b, 1), 2);
                mem.upload();
                let op = BinaryOp::from_name(&case.op).expect("a binary op");
                be.binary_ex(op, dtype, mem.ptr(pa), mem.ptr(pb), mem.ptr(po), n)
            }
            "broadcast" => {
                let pb = mem.put(&half_bytes(&case.b, 1), 2);
                mem.upload();
                let op = BinaryOp::from_name(&case.op).expect("a binary op");
                let (a, b, o) = (mem.ptr(pa), mem.ptr(pb), mem.ptr(po));
                be.binary_broadcast_ex(
                    op,
                    dtype,
                    a,
                    &case.a_shape,
                    b,
                    &case.b_shape,
                    o,
                    &case.shape,
                )
            }
            "gather" => {
                let idx: Vec<u8> = case.indices.iter().flat_map(|i| i.to_le_bytes()).collect();
                let pi = mem.put(&idx, 4);
                mem.upload();
                let [rows, cols] = [case.shape[0], case.shape[1]];
                be.gather_ex(
                    dtype,
                    mem.ptr(pa),
                    rows,
                    cols,
                    mem.ptr(pi),
                    n / cols,
                    mem.ptr(po),
                )
            }
            "unary_param" => {
                mem.upload();
                let op = UnaryParamOp::from_name(&case.op).expect("a unary_param op");
                let [a, b] = case.params.map(f32::from_bits);
                be.unary_param_ex(op, dtype, a, b, mem.ptr(pa), mem.ptr(po), n)
            }
            "attention" => {
                let pk = mem.put(&half_bytes(&case.b, 1), 2);
                let pv = mem.put(&half_bytes(&case.v, 1), 2);
                let mask: Vec<u8> = case.mask.iter().flat_map(|m| m.to_le_bytes()).collect();
                let pm = mem.put(&mask, 4);
                mem.upload();
                let [b, h, kvh, sq, skv, d] = case.dims[..] else {
                    panic!("dims has 6 entries")
                };
                let t = |p: Placed, heads: usize, rows: usize| {
                    HeadTensor::bhsd(mem.ptr(p), heads, rows, d)
                };
                let args = AttentionArgs::new(
                    b,
                    h,
                    kvh,
                    sq,
                    skv,
                    d,
                    t(pa, h, sq),
                    t(pk, kvh, skv),
                    t(pv, kvh, skv),
                    t(po, h, sq),
                )
                .causal(case.causal)
                .mask(AttentionMask {
                    ptr: mem.ptr(pm),
                    batch: 1,
                    heads: 1,
                })
                .dtype(dtype);
                be.attention_ex(&args)
            }
            "conv" => {
                let pf = mem.put(&half_bytes(&case.b, 1), 2);
                let pb = mem.put(&half_bytes(&case.bias, 1), 2);
                mem.upload();
                let shape4 = |v: &[usize]| -> [usize; 4] { v.try_into().expect("4 dimensions") };
                let [xs, ws] = [shape4(&case.shape), shape4(&case.filter_shape)];
                let (k, g) = (ws[0], case.groups);
                let [top, left, bottom, right] = case.padding;
                let [dh, dw] = case.dilation;
                let oh = (xs[2] + top + bottom - dh * (ws[2] - 1) - 1) / case.stride[0] + 1;
                let ow = (xs[3] + left + right - dw * (ws[3] - 1) - 1) / case.stride[1] + 1;
                let args = Conv2dArgs::new(
                    mem.ptr(pa),
                    xs,
                    mem.ptr(pf),
                    ws,
                    mem.ptr(po),
                    [xs[0], k, oh, ow],
                )
                .stride(case.stride)
                .padding(case.padding)
                .dilation(case.dilation)
                .groups(g)
                .bias(mem.ptr(pb))
                .dtype(dtype);
                be.conv2d_forward_ex(&args)
            }
            "rows" => {
                let pg = (!case.gamma.is_empty()).then(|| mem.put(&half_bytes(&case.gamma, 1), 2));
                let pb = (!case.beta.is_empty()).then(|| mem.put(&half_bytes(&case.beta, 1), 2));
                mem.upload();
                let op = RowOp::from_name(&case.op).expect("a row op");
                be.rows_ex(
                    op,
                    dtype,
                    mem.ptr(pa),
                    pg.map(|p| mem.ptr(p)),
                    pb.map(|p| mem.ptr(p)),
                    mem.ptr(po),
                    case.shape[0],
                    case.shape[1],
                    f64::from_bits(case.eps),
                )
            }
            _ => {
                mem.upload();
                let op = ReduceOp::from_name(&case.op).expect("a reduce op");
                be.reduce_ex(op, dtype, mem.ptr(pa), mem.ptr(po), &case.shape, case.axis)
            }
        };
        if let Err(e) = result {
            report.fail(&name, format!("returned {e}"));
            continue;
        }
        match mem.finish(po) {
            Ok(bytes) => {
                let got = reference::decode(dtype, &bytes);
                // The want is already rounded to the type: equal, up to the sign of zero.
                report.compare(&name, &got, &case.want, None, Rule::ExactAnyZero, 0..n);
            }
            Err(e) => report.fail(&name, e),
        }
    }
    report.done("half_storage.json");
}
