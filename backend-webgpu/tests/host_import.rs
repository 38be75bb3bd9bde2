//! `WebGpuBackend::with_host_memory` (feature `host-import`): host memory imported as
//! Vulkan device memory through `VK_EXT_external_memory_host`, kernels reading and
//! writing it in place, the bytes around it untouched, every escape refused.
//!
//! Without an adapter the tests say so and pass, unless `BACKEND_REQUIRE_ADAPTER=1`; on
//! lavapipe, which has the extension, an import that is not offered fails.
#![cfg(feature = "host-import")]

use backend_api::{
    BackendError, BackendTranspose, BinaryOp, ComputeBackend, ComputeBackendExt, MapMode, UnaryOp,
};
use backend_webgpu::{WebGpuBackend, WebGpuOptions};

fn backend() -> Option<WebGpuBackend> {
    let mut b = WebGpuBackend::with_options(WebGpuOptions::from_env().expect("the environment"));
    if let Err(e) = b.init() {
        conformance::skip_without_adapter(&e);
        return None;
    }
    if !b.host_import_supported() {
        let name = b.name().to_string();
        assert!(
            !name.contains("llvmpipe"),
            "{name}: lavapipe offers VK_EXT_external_memory_host, but the device was not opened with it"
        );
        eprintln!("SKIPPED host import: {name} has no VK_EXT_external_memory_host");
        return None;
    }
    Some(b)
}

fn invalid(e: BackendError, needles: &[&str]) {
    let BackendError::InvalidArgument(msg) = &e else {
        panic!("want InvalidArgument, got {e:?}")
    };
    for n in needles {
        assert!(msg.contains(n), "{msg:?} does not name {n:?}");
    }
}

/// Host memory with guard words around the part that is lent: `GUARD` f32 on each side.
const GUARD: usize = 16;
const FENCE: f32 = -12345.5;

fn fenced(words: usize) -> Vec<f32> {
    let mut v = vec![FENCE; words + 2 * GUARD];
    v[GUARD..GUARD + words].fill(0.0);
    v
}

fn fences_intact(v: &[f32]) {
    let n = v.len();
    assert!(
        v[..GUARD].iter().all(|&x| x == FENCE),
        "bytes before the import written"
    );
    assert!(
        v[n - GUARD..].iter().all(|&x| x == FENCE),
        "bytes after the import written"
    );
}

#[test]
fn kernels_work_on_imported_memory_in_place() {
    let Some(b) = backend() else { return };
    // a (n), b (n), out (n), then a 48x40 A, 40x32 B, 48x32 C for gemm: several pages.
    let n = 300;
    let (m, k, nn) = (48, 40, 32);
    let words = 3 * n + m * k + k * nn + m * nn;
    let mut host = fenced(words);
    let lent = &mut host[GUARD..GUARD + words];
    for i in 0..n {
        lent[i] = i as f32 - 150.0;
        lent[n + i] = 2.0;
    }
    let (ga, gb) = (3 * n, 3 * n + m * k);
    for i in 0..m * k {
        lent[ga + i] = ((i * 7) % 13) as f32 - 6.0;
    }
    for i in 0..k * nn {
        lent[gb + i] = ((i * 5) % 11) as f32 - 5.0;
    }
    let a = lent[ga..ga + m * k].to_vec();
    let bm = lent[gb..gb + k * nn].to_vec();
    let staged = b.memory_info().unwrap().staged_bytes;
    let live = b.memory_info().unwrap().live_allocations;
    b.with_host_memory(bytemuck::cast_slice_mut(lent), |base| {
        let at = |w: usize| base + 4 * w as u64;
        b.binary(BinaryOp::Mul, at(0), at(n), at(2 * n), n).unwrap();
        b.unary(UnaryOp::Relu, at(2 * n), at(2 * n), n).unwrap();
        // Column-major C (m x nn) = A (m x k) · B (k x nn).
        b.gemm(
            BackendTranspose::NoTrans,
            BackendTranspose::NoTrans,
            m,
            nn,
            k,
            1.0,
            at(ga),
            m,
            at(gb),
            k,
            0.0,
            at(gb + k * nn),
            m,
        )
        .unwrap();
        assert_eq!(b.memory_info().unwrap().live_allocations, live + 1);
    })
    .unwrap();
    let lent = &host[GUARD..GUARD + words];
    for i in 0..n {
        assert_eq!(
            lent[2 * n + i],
            (2.0 * (i as f32 - 150.0)).max(0.0),
            "element {i}"
        );
    }
    let c = &lent[gb + k * nn..];
    for col in 0..nn {
        for row in 0..m {
            let want: f32 = (0..k).map(|p| a[p * m + row] * bm[col * k + p]).sum();
            assert_eq!(c[col * m + row], want, "C[{row}, {col}]");
        }
    }
    fences_intact(&host);
    assert_eq!(
        b.memory_info().unwrap().staged_bytes,
        staged,
        "kernels staged bytes"
    );
    assert_eq!(b.memory_info().unwrap().live_allocations, live);
}

#[test]
fn copies_and_own_allocations_mix_with_the_import() {
    let Some(b) = backend() else { return };
    let own = b.upload(&[1.0f32; 8]).unwrap();
    let mut host = fenced(16);
    b.with_host_memory(
        bytemuck::cast_slice_mut(&mut host[GUARD..GUARD + 16]),
        |base| {
            b.copy_htod(base, bytemuck::cast_slice(&[5.0f32; 8]))
                .unwrap();
            b.binary(BinaryOp::Add, base, own, base + 32, 8).unwrap();
            b.binary(BinaryOp::Sub, base + 32, own, own, 8).unwrap();
            assert_eq!(b.copy_dtoh_vec::<f32>(base + 32, 8).unwrap(), [6.0; 8]);
        },
    )
    .unwrap();
    assert_eq!(host[GUARD..GUARD + 8], [5.0; 8]);
    assert_eq!(host[GUARD + 8..GUARD + 16], [6.0; 8]);
    assert_eq!(b.copy_dtoh_vec::<f32>(own, 8).unwrap(), [5.0; 8]);
    fences_intact(&host);
}

#[test]
fn the_import_can_be_neither_freed_nor_mapped_and_is_gone_after() {
    let Some(b) = backend() else { return };
    let mut host = fenced(64);
    for x in &mut host[GUARD..GUARD + 64] {
        *x = 3.0;
    }
    let (base, alias) = b
        .with_host_memory(
            bytemuck::cast_slice_mut(&mut host[GUARD..GUARD + 64]),
            |base| {
                invalid(b.free(base).unwrap_err(), &["free", "imported"]);
                invalid(
                    b.map_host(base, 16, MapMode::Read).unwrap_err(),
                    &["map_host", "imported"],
                );
                let alias = b.alias(base, 64).unwrap();
                b.unary(UnaryOp::Neg, alias, alias, 16).unwrap();
                (base, alias)
            },
        )
        .unwrap();
    assert_eq!(host[GUARD..GUARD + 16], [-3.0; 16]);
    assert_eq!(host[GUARD + 16..GUARD + 64], [3.0; 48]);
    invalid(
        b.unary(UnaryOp::Neg, base, base, 4).unwrap_err(),
        &["unary"],
    );
    invalid(
        b.unary(UnaryOp::Neg, alias, alias, 4).unwrap_err(),
        &["unary"],
    );
    b.synchronize().unwrap();
    assert_eq!(host[GUARD..GUARD + 16], [-3.0; 16]);
    fences_intact(&host);
}

#[test]
fn unaligned_or_ragged_memory_is_refused() {
    let Some(b) = backend() else { return };
    let mut words = vec![0u32; 16];
    let raw: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    invalid(
        b.with_host_memory(&mut raw[1..17], |_| ()).unwrap_err(),
        &["with_host_memory", "aligned"],
    );
    invalid(
        b.with_host_memory(&mut raw[4..18], |_| ()).unwrap_err(),
        &["with_host_memory", "multiple of 4"],
    );
}

#[test]
fn a_panic_in_the_scope_ends_the_import() {
    let Some(b) = backend() else { return };
    let mut host = fenced(32);
    host[GUARD..GUARD + 32].fill(2.0);
    let live = b.memory_info().unwrap().live_allocations;
    let base = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        b.with_host_memory(
            bytemuck::cast_slice_mut(&mut host[GUARD..GUARD + 32]),
            |base| {
                b.unary(UnaryOp::Neg, base, base, 32).unwrap();
                std::panic::panic_any(base)
            },
        )
    }))
    .unwrap_err();
    let base = *base.downcast::<u64>().unwrap();
    // The recorded negation finished before the import ended.
    assert_eq!(host[GUARD..GUARD + 32], [-2.0; 32]);
    invalid(
        b.unary(UnaryOp::Neg, base, base, 32).unwrap_err(),
        &["unary"],
    );
    assert_eq!(b.memory_info().unwrap().live_allocations, live);
    let x = b.upload(&[1.0f32]).unwrap();
    b.unary(UnaryOp::Neg, x, x, 1).unwrap();
    assert_eq!(b.copy_dtoh_vec::<f32>(x, 1).unwrap(), [-1.0]);
    fences_intact(&host);
}
