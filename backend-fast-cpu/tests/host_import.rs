//! `FastCpuBackend::with_host_memory`: host bytes used in place, and every way the import
//! could outlive or escape its scope refused. Miri runs this file (`scripts/test-reliability`),
//! since it is what exercises the crate's only unsafe code.
#![cfg(feature = "host-import")]

use backend_api::{
    BackendError, BackendTranspose, BinaryOp, ComputeBackend, ComputeBackendExt, MapMode, UnaryOp,
};
use backend_fast_cpu::FastCpuBackend;

fn backend() -> FastCpuBackend {
    let mut b = FastCpuBackend::with_memory_limit(1 << 20);
    b.init().unwrap();
    b
}

fn invalid(e: BackendError, needles: &[&str]) {
    let BackendError::InvalidArgument(msg) = &e else {
        panic!("want InvalidArgument, got {e:?}")
    };
    for n in needles {
        assert!(msg.contains(n), "{msg:?} does not name {n:?}");
    }
}

/// f32 words as the bytes handed to the backend (a `[f32]` is 4-byte aligned).
fn bytes(words: &mut [f32]) -> &mut [u8] {
    bytemuck::cast_slice_mut(words)
}

#[test]
fn ops_read_and_write_the_lent_bytes_in_place() {
    let b = backend();
    // a = [1, 2, 3, 4], b = [10, 20, 30, 40], out at 8..12, unary in place at 12..16.
    let mut mem = [
        1.0f32, 2., 3., 4., 10., 20., 30., 40., 0., 0., 0., 0., -1., 5., -7., 2.,
    ];
    let staged = b.memory_info().unwrap().staged_bytes;
    b.with_host_memory(bytes(&mut mem), |base| {
        // Both inputs lie in the output's allocation, on either side of nothing: borrowed.
        b.binary(BinaryOp::Add, base, base + 16, base + 32, 4)
            .unwrap();
        b.unary(UnaryOp::Relu, base + 48, base + 48, 4).unwrap();
        // An input after the output.
        b.binary(BinaryOp::Mul, base + 48, base + 16, base, 4)
            .unwrap();
    })
    .unwrap();
    assert_eq!(mem[8..12], [11., 22., 33., 44.]);
    assert_eq!(mem[12..16], [0., 5., 0., 2.]);
    assert_eq!(mem[0..4], [0., 100., 0., 80.]);
    assert_eq!(b.memory_info().unwrap().staged_bytes, staged);
}

#[test]
fn imported_and_own_allocations_mix() {
    let b = backend();
    let own = b.upload(&[1.0f32, 1., 1., 1.]).unwrap();
    let mut mem = [2.0f32, 3., 4., 5., 0., 0., 0., 0.];
    b.with_host_memory(bytes(&mut mem), |base| {
        // Imported input, own output; then own input, imported output.
        b.binary(BinaryOp::Sub, base, own, own, 4).unwrap();
        b.binary(BinaryOp::Add, own, base, base + 16, 4).unwrap();
        b.copy_htod(base, bytemuck::cast_slice(&[9.0f32])).unwrap();
        let mut back = [0.0f32; 2];
        b.copy_dtoh(bytemuck::cast_slice_mut(&mut back), base + 16)
            .unwrap();
        assert_eq!(back, [3., 5.]);
    })
    .unwrap();
    assert_eq!(b.copy_dtoh_vec::<f32>(own, 4).unwrap(), [1., 2., 3., 4.]);
    assert_eq!(mem, [9., 3., 4., 5., 3., 5., 7., 9.]);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "faer's gemm is too slow under Miri; the elementwise tests cover the import"
)]
fn gemm_over_one_lent_range() {
    let b = backend();
    // Column-major A (2x3), B (3x2), C (2x2), one after the other.
    let mut mem = [
        1.0f32, 2., 3., 4., 5., 6., 1., 0., 0., 1., 1., 1., 0., 0., 0., 0.,
    ];
    b.with_host_memory(bytes(&mut mem), |base| {
        let (a, bb, c) = (base, base + 24, base + 48);
        b.gemm(
            BackendTranspose::NoTrans,
            BackendTranspose::NoTrans,
            2,
            2,
            3,
            1.0,
            a,
            2,
            bb,
            3,
            0.0,
            c,
            2,
        )
    })
    .unwrap()
    .unwrap();
    // A = [[1, 3, 5], [2, 4, 6]], B's columns [1, 0, 0] and [1, 1, 1].
    assert_eq!(mem[12..], [1., 2., 9., 12.]);
}

#[test]
fn the_import_can_be_neither_freed_nor_mapped_and_is_gone_after() {
    let b = backend();
    let mut mem = [1.0f32; 8];
    let before = b.memory_info().unwrap();
    let (base, alias) = b
        .with_host_memory(bytes(&mut mem), |base| {
            invalid(b.free(base).unwrap_err(), &["free", "imported"]);
            invalid(
                b.map_host(base + 4, 4, MapMode::Read).unwrap_err(),
                &["map_host", "imported"],
            );
            let info = b.memory_info().unwrap();
            assert_eq!(info.allocated_bytes, before.allocated_bytes + 32);
            // Not counted against the 1 MiB limit: a 1 MiB allocation still fits.
            let own = b.alloc(1 << 20).unwrap();
            b.free(own).unwrap();
            let alias = b.alias(base, 16).unwrap();
            b.unary(UnaryOp::Neg, alias, alias, 4).unwrap();
            (base, alias)
        })
        .unwrap();
    assert_eq!(mem[..4], [-1.0; 4]);
    assert_eq!(mem[4..], [1.0; 4]);
    // Both addresses are dead, with the reason, and the memory was not touched.
    invalid(
        b.unary(UnaryOp::Neg, base, base, 4).unwrap_err(),
        &["unary"],
    );
    invalid(
        b.unary(UnaryOp::Neg, alias, alias, 4).unwrap_err(),
        &["unary"],
    );
    assert_eq!(mem[..4], [-1.0; 4]);
    assert_eq!(
        b.memory_info().unwrap().allocated_bytes,
        before.allocated_bytes
    );
}

#[test]
fn a_bad_range_is_refused_before_anything_is_written() {
    let b = backend();
    let mut mem = [3.0f32; 4];
    b.with_host_memory(bytes(&mut mem), |base| {
        // The output runs 4 bytes past the lent range.
        invalid(
            b.unary(UnaryOp::Neg, base, base + 4, 4).unwrap_err(),
            &["unary", "output"],
        );
        invalid(
            b.unary(UnaryOp::Neg, base, base, 5).unwrap_err(),
            &["unary"],
        );
    })
    .unwrap();
    assert_eq!(mem, [3.0; 4]);
}

#[test]
fn unaligned_memory_is_refused() {
    let b = backend();
    let mut words = [0u32; 3];
    let raw: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    let e = b.with_host_memory(&mut raw[1..9], |_| ()).unwrap_err();
    invalid(e, &["with_host_memory", "aligned"]);
    assert_eq!(b.memory_info().unwrap().live_allocations, 0);
}

#[test]
fn a_panic_in_the_scope_ends_the_import() {
    let b = backend();
    let mut mem = [2.0f32; 4];
    let base = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.with_host_memory(bytes(&mut mem), |base| {
            b.unary(UnaryOp::Neg, base, base, 4).unwrap();
            std::panic::panic_any(base)
        })
    }))
    .unwrap_err();
    let base = *base.downcast::<u64>().unwrap();
    assert_eq!(mem, [-2.0; 4]);
    invalid(
        b.unary(UnaryOp::Neg, base, base, 4).unwrap_err(),
        &["unary"],
    );
    assert_eq!(mem, [-2.0; 4]);
    assert_eq!(b.memory_info().unwrap().live_allocations, 0);
    // The backend goes on serving.
    let x = b.upload(&[1.0f32]).unwrap();
    b.unary(UnaryOp::Neg, x, x, 1).unwrap();
    assert_eq!(b.copy_dtoh_vec::<f32>(x, 1).unwrap(), [-1.0]);
}

#[test]
fn an_uninitialised_backend_imports_nothing() {
    let b = FastCpuBackend::with_memory_limit(1 << 20);
    let mut mem = [0.0f32; 2];
    assert!(matches!(
        b.with_host_memory(bytes(&mut mem), |_| ()),
        Err(BackendError::NotInitialized)
    ));
}
