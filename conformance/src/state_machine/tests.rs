//! Tests of the state machine itself: the alias, reset and batched-read calls run and are
//! judged, deterministically; a backend without aliases is no failure; and backends
//! wrong about aliases or `copy_dtoh_many` in one way each are caught, with a message
//! that names what is wrong.

use std::collections::BTreeSet;
use std::sync::Mutex;

use backend_api::{
    BackendError, BackendResult, BackendTranspose, BinaryOp, ComputeBackend, MemoryInfo, ReduceOp,
    Retired, UnaryOp,
};
use backend_cpu::CpuBackend;

use super::{Options, run_bytes, run_seed};
use crate::data::Rng;

fn cpu() -> CpuBackend {
    let mut b = CpuBackend::with_memory_limit(256 << 20);
    b.init().expect("CPU init cannot fail");
    b
}

fn exact(steps: u64) -> Options {
    Options {
        exact: true,
        ..Options::steps(steps)
    }
}

/// What a [`Wrong`] backend does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// `alias` and `retire` are `Unsupported` (the trait's defaults): not a fault.
    NoAliases,
    /// `free` of an alias returns Ok and retires nothing.
    FreeOfAliasKeepsIt,
    /// `copy_dtoh_many` writes the destinations before a later entry fails.
    ReadManyNotAllOrNothing,
    /// `memory_info` counts live aliases as allocations.
    MemoryInfoCountsAliases,
    /// Stale-pointer errors do not say "stale".
    StaleNotSaid,
}

/// The CPU backend with one [`Fault`].
struct Wrong {
    inner: CpuBackend,
    fault: Fault,
    /// Aliases made and not freed through `free` (the `memory_info` fault's count).
    aliases: Mutex<BTreeSet<u64>>,
}

impl Wrong {
    fn new(fault: Fault) -> Self {
        Self {
            inner: cpu(),
            fault,
            aliases: Mutex::new(BTreeSet::new()),
        }
    }

    fn said<T>(&self, r: BackendResult<T>) -> BackendResult<T> {
        match r {
            Err(BackendError::InvalidArgument(m))
                if self.fault == Fault::StaleNotSaid && m.contains("stale") =>
            {
                Err(BackendError::InvalidArgument(m.replace("stale", "gone")))
            }
            r => r,
        }
    }
}

impl ComputeBackend for Wrong {
    fn name(&self) -> &str {
        "wrong"
    }

    fn init(&mut self) -> BackendResult<()> {
        self.inner.init()
    }

    fn is_initialized(&self) -> bool {
        self.inner.is_initialized()
    }

    fn gemm(
        &self,
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a_ptr: u64,
        lda: usize,
        b_ptr: u64,
        ldb: usize,
        beta: f64,
        c_ptr: u64,
        ldc: usize,
    ) -> BackendResult<()> {
        self.said(self.inner.gemm(
            trans_a, trans_b, m, n, k, alpha, a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc,
        ))
    }

    fn batched_gemm(
        &self,
        trans_a: BackendTranspose,
        trans_b: BackendTranspose,
        m: usize,
        n: usize,
        k: usize,
        alpha: f64,
        a_ptr: u64,
        lda: usize,
        stride_a: usize,
        b_ptr: u64,
        ldb: usize,
        stride_b: usize,
        beta: f64,
        c_ptr: u64,
        ldc: usize,
        stride_c: usize,
        batch_count: usize,
    ) -> BackendResult<()> {
        self.said(self.inner.batched_gemm(
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha,
            a_ptr,
            lda,
            stride_a,
            b_ptr,
            ldb,
            stride_b,
            beta,
            c_ptr,
            ldc,
            stride_c,
            batch_count,
        ))
    }

    fn conv2d_forward(
        &self,
        input_ptr: u64,
        input_shape: &[usize],
        filter_ptr: u64,
        filter_shape: &[usize],
        output_ptr: u64,
        output_shape: &[usize],
        stride: &[usize],
        padding: &[usize],
    ) -> BackendResult<()> {
        self.said(self.inner.conv2d_forward(
            input_ptr,
            input_shape,
            filter_ptr,
            filter_shape,
            output_ptr,
            output_shape,
            stride,
            padding,
        ))
    }

    fn attention(
        &self,
        q_ptr: u64,
        k_ptr: u64,
        v_ptr: u64,
        o_ptr: u64,
        batch: usize,
        heads: usize,
        seq_q: usize,
        seq_kv: usize,
        head_dim: usize,
        scale: f64,
        causal: bool,
    ) -> BackendResult<()> {
        self.said(self.inner.attention(
            q_ptr, k_ptr, v_ptr, o_ptr, batch, heads, seq_q, seq_kv, head_dim, scale, causal,
        ))
    }

    fn reduce(
        &self,
        op: ReduceOp,
        input_ptr: u64,
        output_ptr: u64,
        shape: &[usize],
        axis: usize,
    ) -> BackendResult<()> {
        self.said(self.inner.reduce(op, input_ptr, output_ptr, shape, axis))
    }

    fn unary(&self, op: UnaryOp, input_ptr: u64, output_ptr: u64, n: usize) -> BackendResult<()> {
        self.said(self.inner.unary(op, input_ptr, output_ptr, n))
    }

    fn binary(
        &self,
        op: BinaryOp,
        a_ptr: u64,
        b_ptr: u64,
        output_ptr: u64,
        n: usize,
    ) -> BackendResult<()> {
        self.said(self.inner.binary(op, a_ptr, b_ptr, output_ptr, n))
    }

    fn synchronize(&self) -> BackendResult<()> {
        self.inner.synchronize()
    }

    fn alloc(&self, bytes: usize) -> BackendResult<u64> {
        self.inner.alloc(bytes)
    }

    fn free(&self, ptr: u64) -> BackendResult<()> {
        let alias = self.aliases.lock().expect("unpoisoned").remove(&ptr);
        if alias && self.fault == Fault::FreeOfAliasKeepsIt {
            return Ok(());
        }
        self.said(self.inner.free(ptr))
    }

    fn copy_htod(&self, dst: u64, src: &[u8]) -> BackendResult<()> {
        self.said(self.inner.copy_htod(dst, src))
    }

    fn copy_dtoh(&self, dst: &mut [u8], src: u64) -> BackendResult<()> {
        self.said(self.inner.copy_dtoh(dst, src))
    }

    fn copy_dtod(&self, dst: u64, src: u64, bytes: usize) -> BackendResult<()> {
        self.said(self.inner.copy_dtod(dst, src, bytes))
    }

    fn copy_dtoh_many(&self, reads: &mut [(u64, &mut [u8])]) -> BackendResult<()> {
        if self.fault == Fault::ReadManyNotAllOrNothing {
            for (src, dst) in reads.iter_mut() {
                self.inner.copy_dtoh(dst, *src)?;
            }
            return Ok(());
        }
        self.said(self.inner.copy_dtoh_many(reads))
    }

    fn alias(&self, ptr: u64, bytes: usize) -> BackendResult<u64> {
        if self.fault == Fault::NoAliases {
            return Err(BackendError::Unsupported("alias: not here".into()));
        }
        let a = self.said(self.inner.alias(ptr, bytes))?;
        self.aliases.lock().expect("unpoisoned").insert(a);
        Ok(a)
    }

    fn retire(&self, alias: u64, why: Retired) -> BackendResult<()> {
        if self.fault == Fault::NoAliases {
            return Err(BackendError::Unsupported("retire: not here".into()));
        }
        self.said(self.inner.retire(alias, why))
    }

    fn memory_info(&self) -> BackendResult<MemoryInfo> {
        let mut info = self.inner.memory_info()?;
        if self.fault == Fault::MemoryInfoCountsAliases {
            info.live_allocations += self.aliases.lock().expect("unpoisoned").len() as u64;
        }
        Ok(info)
    }
}

#[test]
fn aliases_resets_and_batched_reads_run_and_repeat() {
    let opts = exact(3000);
    let a = run_seed(&cpu(), 5, &opts).unwrap_or_else(|f| panic!("{f}"));
    let again = run_seed(&cpu(), 5, &opts).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(a, again, "the same seed must give the same run");
    for op in ["alias", "retire", "copy_dtoh_many", "free"] {
        let (valid, invalid) = a.per_op.get(op).copied().unwrap_or_default();
        assert!(
            valid > 0 && invalid > 0,
            "{op}: {valid} valid, {invalid} invalid: {a}"
        );
    }
    assert!(
        a.aliases > 0
            && a.alias_frees > 0
            && a.resets > 0
            && a.retired == a.aliases
            && a.stale_refused > 0
            && a.via_alias > 0
            && a.unsupported.is_empty(),
        "{a}"
    );
    // The new calls are a modest share of the mix.
    let new: u64 = ["alias", "retire", "copy_dtoh_many"]
        .iter()
        .map(|op| a.per_op[op].0 + a.per_op[op].1)
        .sum();
    assert!(
        (a.steps / 12..a.steps / 6).contains(&new),
        "{new} of {}",
        a.steps
    );
}

#[test]
fn a_backend_without_aliases_is_no_failure() {
    let s =
        run_seed(&Wrong::new(Fault::NoAliases), 5, &exact(2000)).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(s.aliases, 0);
    assert!(s.unsupported.contains("alias"), "{s}");
    assert!(
        !s.per_op.contains_key("alias") && s.per_op["copy_dtoh_many"].0 > 0,
        "{s:?}"
    );
}

/// The first failure of `fault` in 20 seeds.
fn caught(fault: Fault) -> String {
    for seed in 0..20 {
        if let Err(f) = run_seed(&Wrong::new(fault), seed, &exact(2000)) {
            return f.to_string();
        }
    }
    panic!("{fault:?} was not caught in 20 seeds");
}

#[test]
fn backends_wrong_about_aliases_are_caught() {
    for (fault, words) in [
        (Fault::FreeOfAliasKeepsIt, "retired alias"),
        (Fault::ReadManyNotAllOrNothing, "all or nothing"),
        (Fault::MemoryInfoCountsAliases, "memory_info says"),
        (Fault::StaleNotSaid, "does not say \"stale\""),
    ] {
        let msg = caught(fault);
        assert!(msg.contains(words), "{fault:?}: {msg}");
        eprintln!(
            "caught {fault:?}: {}",
            msg.lines().next().unwrap_or_default()
        );
    }
}

#[test]
fn fuzzer_bytes_decode_to_runs_that_pass() {
    let mut rng = Rng::new(11);
    for len in [0, 1, 7, 100, 1000, 20_000] {
        for _ in 0..4 {
            let bytes = rng.bytes(len);
            for opts in [exact(10_000), Options::steps(10_000)] {
                run_bytes(&cpu(), &bytes, &opts).unwrap_or_else(|f| panic!("{f}"));
            }
        }
    }
}
