//! The whole conformance suite on the WebGPU backend, on whatever adapter wgpu finds (or
//! `BACKEND_ADAPTER` names). Without an adapter the tests say so loudly and pass, unless
//! `BACKEND_REQUIRE_ADAPTER=1` (set by CI), which turns a missing adapter into a failure.

use std::sync::OnceLock;

use backend_api::{ComputeBackend, ComputeBackendExt};
use backend_webgpu::WebGpuBackend;
use conformance::{Check, Config, Profile, run_check};

fn backend() -> Option<&'static WebGpuBackend> {
    static BACKEND: OnceLock<Option<WebGpuBackend>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let mut b = WebGpuBackend::new();
            match b.init() {
                Ok(()) => {
                    eprintln!("conformance on {}", b.name());
                    Some(b)
                }
                Err(e) => {
                    conformance::skip_without_adapter(&e);
                    None
                }
            }
        })
        .as_ref()
}

fn config(b: &WebGpuBackend) -> Config {
    let software = b.adapter().is_some_and(|a| a.is_software());
    let mut config = Config::from_env(if software { 24 } else { 64 })
        .with_profile(Profile::for_device(software));
    if let Some(a) = b.adapter() {
        config.expected = conformance::known::expectations_for(b.name(), &a.label(), &a.driver);
    }
    config
}

fn check(c: Check) {
    if let Some(b) = backend() {
        conformance::assert_check(b, b.name(), c, &config(b));
    }
}

conformance::check_tests!(mod webgpu, check);

/// Runs one case of `check`, given as its JSON replay, and records it if it fails.
fn replay(b: &WebGpuBackend, check: Check, case: String, failures: &mut Vec<String>) {
    let mut config = Config::new(1).only(&[check]);
    config.replay = Some(case.clone());
    let report = run_check(b, check, &config);
    if !report.ok() {
        failures.push(format!("{case}: {:?}", report.failures));
    }
}

#[test]
fn uninitialized_backend_refuses_every_call() {
    conformance::check_uninitialized(&WebGpuBackend::new()).unwrap();
}

#[test]
fn a_kernel_that_fails_to_build_is_an_error() {
    let Some(b) = backend() else {
        return;
    };
    let e = b
        .try_build_kernel("@compute @workgroup_size(1) fn main() { let x: f32 = undefined_thing; }")
        .unwrap_err();
    assert!(
        matches!(e, backend_api::BackendError::DeviceError(_)),
        "{e}"
    );
    b.try_build_kernel("@compute @workgroup_size(1) fn main() {}")
        .unwrap();
}

#[test]
fn memory_limit_refuses_and_the_backend_stays_usable() {
    if backend().is_none() {
        return;
    }
    let mut b = WebGpuBackend::with_options(backend_webgpu::WebGpuOptions {
        memory_limit: Some(64 << 20),
        ..backend_webgpu::WebGpuOptions::from_env().expect("the environment")
    });
    b.init().unwrap();
    let mut held = Vec::new();
    let refused = loop {
        match b.alloc(8 << 20) {
            Ok(p) => held.push(p),
            Err(e) => break e,
        }
        assert!(held.len() < 100, "the limit was never enforced");
    };
    assert!(refused.is_out_of_memory(), "{refused}");
    assert!(refused.to_string().contains("limit"), "{refused}");
    assert!(!held.is_empty());
    for p in held {
        b.free(p).unwrap();
    }
    let p = b.alloc(8 << 20).expect("memory is back after freeing");
    b.free(p).unwrap();
}

/// A freed large allocation's buffer serves the next allocation of about its size until
/// the next synchronize, which gives it back; memory the limit would refuse takes the
/// cached buffers back first; and a reused buffer starts a new allocation (a stale
/// pointer stays stale).
#[test]
fn freed_large_buffers_are_reused_until_synchronize() {
    if backend().is_none() {
        return;
    }
    let mut b = WebGpuBackend::with_options(backend_webgpu::WebGpuOptions {
        memory_limit: Some(64 << 20),
        ..backend_webgpu::WebGpuOptions::from_env().expect("the environment")
    });
    b.init().unwrap();
    let reserved = |b: &WebGpuBackend| b.memory_info().unwrap().reserved_bytes;
    let base = reserved(&b);
    let p = b.alloc(24 << 20).unwrap();
    b.copy_htod(p, &[7u8; 64]).unwrap();
    b.free(p).unwrap();
    assert_eq!(reserved(&b), base + (24 << 20), "the freed buffer is kept");
    // A little smaller: the same buffer, no more memory.
    let q = b.alloc((24 << 20) - 4096).unwrap();
    assert_eq!(reserved(&b), base + (24 << 20));
    assert_ne!(p, q);
    let mut back = [0u8; 4];
    assert!(
        b.copy_dtoh(&mut back, p).is_err(),
        "the old pointer is stale"
    );
    b.copy_htod(q, &[1, 2, 3, 4]).unwrap();
    b.copy_dtoh(&mut back, q).unwrap();
    assert_eq!(back, [1, 2, 3, 4]);
    b.free(q).unwrap();
    // Half the size: not this buffer (a quarter more at most), a new one.
    let r = b.alloc(12 << 20).unwrap();
    assert_eq!(reserved(&b), base + (36 << 20));
    b.free(r).unwrap();
    b.synchronize().unwrap();
    assert_eq!(reserved(&b), base, "synchronize gives the buffers back");
    // 24 MiB cached and 48 MiB asked of a 64 MiB limit: the cache goes first.
    let p = b.alloc(24 << 20).unwrap();
    b.free(p).unwrap();
    let big = b
        .alloc(48 << 20)
        .expect("the cached buffer is given back for it");
    assert_eq!(reserved(&b), base + (48 << 20));
    b.free(big).unwrap();
}

/// Reads of up to 256 bytes go through one fixed staging buffer whose mapping is
/// scheduled with the submission; reads just above it through the pool. Both, at every
/// offset within a word, alone, several in one call, and from four threads at once (only
/// one can hold the fixed buffer), read what was written.
#[test]
fn small_reads_round_trip() {
    if backend().is_none() {
        return;
    }
    let mut b = WebGpuBackend::with_options(backend_webgpu::WebGpuOptions {
        unified_memory: false,
        ..backend_webgpu::WebGpuOptions::from_env().expect("the environment")
    });
    b.init().unwrap();
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let p = b.alloc(data.len()).unwrap();
    b.copy_htod(p, &data).unwrap();
    for len in [1usize, 3, 4, 5, 64, 252, 253, 255, 256, 257, 260, 300] {
        for offset in [0usize, 1, 2, 3, 256, 1001] {
            let mut back = vec![0u8; len];
            b.copy_dtoh(&mut back, p + offset as u64).unwrap();
            assert_eq!(back, data[offset..offset + len], "len {len} at {offset}");
        }
    }
    let mut outs: Vec<Vec<u8>> = (0..8).map(|i| vec![0u8; 5 + i]).collect();
    let mut reads: Vec<(u64, &mut [u8])> = outs
        .iter_mut()
        .enumerate()
        .map(|(i, o)| (p + 3 + 29 * i as u64, o.as_mut_slice()))
        .collect();
    b.copy_dtoh_many(&mut reads).unwrap();
    for (i, o) in outs.iter().enumerate() {
        let at = 3 + 29 * i;
        assert_eq!(o[..], data[at..at + o.len()], "read {i} of many");
    }
    let b = &b;
    std::thread::scope(|s| {
        for t in 0..4usize {
            let data = &data;
            s.spawn(move || {
                for round in 0..50usize {
                    let at = (t * 97 + round * 13) % 3800;
                    let len = 1 + (t + round) % 200;
                    let mut back = vec![0u8; len];
                    b.copy_dtoh(&mut back, p + at as u64).unwrap();
                    assert_eq!(back, data[at..at + len], "thread {t} round {round}");
                }
            });
        }
    });
    b.free(p).unwrap();
}

/// Copies larger than the staging chunks (16 MiB): chunked uploads through the staging
/// belt and pipelined readbacks, with and without the unified-memory shortcut, at
/// aligned and unaligned offsets.
#[test]
fn large_copies_round_trip() {
    if backend().is_none() {
        return;
    }
    for unified in [false, true] {
        let mut b = WebGpuBackend::with_options(backend_webgpu::WebGpuOptions {
            unified_memory: unified,
            ..backend_webgpu::WebGpuOptions::from_env().expect("the environment")
        });
        b.init().unwrap();
        let n = (40 << 20) + 12;
        let mut s = 0x1234_5678_u64;
        let data: Vec<u8> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s as u8
            })
            .collect();
        let p = b.alloc(n + 64).unwrap();
        for offset in [0u64, 4, 3] {
            let len = n - 8;
            b.copy_htod(p + offset, &data[..len]).unwrap();
            let mut back = vec![0u8; len];
            b.copy_dtoh(&mut back, p + offset).unwrap();
            assert!(
                back == data[..len],
                "unified {unified}, offset {offset}: round trip differs"
            );
        }
        // A queued op between the upload and the readback must see the new bytes.
        let ones = vec![0x3f80_0000u32.to_le_bytes(); n / 4].concat();
        b.copy_htod(p, &ones).unwrap();
        b.unary(backend_api::UnaryOp::Neg, p, p, n / 4).unwrap();
        let mut back = vec![0u8; n];
        b.copy_dtoh(&mut back, p).unwrap();
        assert!(
            back.chunks_exact(4).all(|c| c == (-1.0f32).to_le_bytes()),
            "unified {unified}: op after upload"
        );
        b.free(p).unwrap();
    }
}

/// gemm_ex on whole 64 x 64 x 16 tiles of f16, every transpose pair, with alpha and beta
/// edge values: the shapes the matrix-unit kernel takes (with `BACKEND_TENSOR_CORES=1` on
/// an adapter that has them; elsewhere the same cases check the portable kernel).
#[test]
fn gemm_ex_f16_whole_tiles() {
    use backend_api::{BackendTranspose, DType};
    use conformance::suites::gemm::GemmCase;
    let Some(b) = backend() else {
        return;
    };
    let mut failures = Vec::new();
    let mut seed = 11;
    for (m, n, k) in [
        (64, 64, 16),
        (128, 64, 48),
        (64, 128, 256),
        (128, 128, 32),
        (256, 128, 96),
    ] {
        for ta in [BackendTranspose::NoTrans, BackendTranspose::Trans] {
            for tb in [BackendTranspose::NoTrans, BackendTranspose::Trans] {
                for (alpha, beta) in [(1.0, 0.0), (-1.5, 0.75)] {
                    seed += 1;
                    let case = GemmCase {
                        trans_a: ta,
                        trans_b: tb,
                        m,
                        n,
                        k,
                        pad_a: 0,
                        pad_b: 8,
                        pad_c: 4,
                        alpha,
                        beta,
                        batch: 1,
                        gap_a: Some(0),
                        gap_b: Some(0),
                        gap_c: 0,
                        a_dtype: DType::F16,
                        b_dtype: DType::F16,
                        c_dtype: DType::F32,
                        offsets: [8, 16, 4],
                        specials: false,
                        nan_c: beta == 0.0,
                        seed,
                        row_major: false,
                    };
                    replay(
                        b,
                        Check::GemmEx,
                        serde_json::to_string(&case).unwrap(),
                        &mut failures,
                    );
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The tiled gemm in both widths: shapes of a few 128 x 128 tiles (the kernel then takes
/// 128 x 64 ones) and of 192 or more (it keeps 128 x 128; a batch of 96 for f32, one large
/// matrix for f16), with partial tiles at both edges, every transpose pair, and at least
/// three k-steps (so both stages of workgroup memory are refilled). The property suite's
/// shapes are small and mostly reach only the narrow tile.
#[test]
fn gemm_tiled_wide_and_narrow() {
    use backend_api::{BackendTranspose, DType};
    use conformance::suites::gemm::GemmCase;
    let Some(b) = backend() else {
        return;
    };
    let mut failures = Vec::new();
    let mut seed = 40;
    for (check, dtype, batch, m, n, k) in [
        (Check::Gemm, DType::F32, 1, 132, 68, 36),
        (Check::BatchedGemm, DType::F32, 96, 132, 68, 36),
        (Check::GemmEx, DType::F16, 1, 132, 68, 36),
        (Check::GemmEx, DType::F16, 1, 1540, 1860, 20),
    ] {
        for ta in [BackendTranspose::NoTrans, BackendTranspose::Trans] {
            for tb in [BackendTranspose::NoTrans, BackendTranspose::Trans] {
                seed += 1;
                let (alpha, beta) = if seed % 2 == 0 {
                    (1.0, 0.0)
                } else {
                    (-1.5, 0.75)
                };
                let case = GemmCase {
                    trans_a: ta,
                    trans_b: tb,
                    m,
                    n,
                    k,
                    pad_a: 4,
                    pad_b: 0,
                    pad_c: 4,
                    alpha,
                    beta,
                    batch,
                    gap_a: Some(4),
                    gap_b: Some(0),
                    gap_c: 8,
                    a_dtype: dtype,
                    b_dtype: dtype,
                    c_dtype: DType::F32,
                    offsets: [4, 8, 4],
                    specials: false,
                    nan_c: beta == 0.0,
                    seed,
                    row_major: false,
                };
                replay(
                    b,
                    check,
                    serde_json::to_string(&case).unwrap(),
                    &mut failures,
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The implicit-GEMM convolution in both tile widths: 12288 output positions x 200
/// channels is 192 tiles of 128 x 128 (kept); a fifth of the positions, 34-36 (128 x 64
/// tiles instead); partial channel tiles, stride 1 and 2, padding, scalar and vector
/// filter loads (C * R * S = 18 and 9, 36).
#[test]
fn conv2d_implicit_wide_and_narrow() {
    use conformance::suites::conv::ConvCase;
    let Some(b) = backend() else {
        return;
    };
    let mut failures = Vec::new();
    for (seed, (n, c, hw, stride, padding)) in [
        (3, 2, 64, 1, 1),
        (3, 4, 128, 2, 1),
        (1, 4, 48, 1, 0),
        (1, 1, 96, 2, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let case = ConvCase {
            n,
            c,
            h: hw,
            w: hw,
            k: 200,
            r: 3,
            s: 3,
            stride: [stride; 2],
            padding: [padding; 2],
            offsets: [4, 4, 4],
            specials: false,
            seed: 60 + seed as u64,
        };
        replay(
            b,
            Check::Conv2d,
            serde_json::to_string(&case).unwrap(),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Reductions down long columns, where each thread of the column kernels walks a slice of
/// the reduced axis four elements at a time: scalar (3 columns) and 16-byte (8 columns)
/// paths, slice lengths that leave 0 to 3 elements after the groups of four, every op.
#[test]
fn reduce_long_columns() {
    use backend_api::ReduceOp;
    use conformance::suites::reduce::ReduceCase;
    let Some(b) = backend() else {
        return;
    };
    let mut failures = Vec::new();
    let mut seed = 80;
    for inner in [3, 8] {
        for len in [300, 301, 302, 303] {
            for &op in ReduceOp::ALL {
                seed += 1;
                let case = ReduceCase {
                    op,
                    shape: vec![2, len, inner],
                    axis: 1,
                    offsets: [0, 4],
                    specials: false,
                    seed,
                };
                replay(
                    b,
                    Check::Reduce,
                    serde_json::to_string(&case).unwrap(),
                    &mut failures,
                );
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Depthwise convolutions on the kernel that is off by default (`tiled`, the input tile
/// in workgroup memory): the conv2d_ex check with it turned on.
#[test]
fn conv2d_ex_with_the_tiled_depthwise_kernel() {
    let Some(tiled) = backend() else {
        return;
    };
    let mut options = backend_webgpu::WebGpuOptions::from_env().expect("valid variables");
    options.tuning.depthwise_tiled = true;
    let mut b = WebGpuBackend::with_options(options);
    b.init().expect("the adapter the other tests use");
    conformance::assert_check(&b, b.name(), Check::Conv2dEx, &config(tiled));
}

/// f16/bf16 reductions over long rows of whole 16-byte groups (`reduce.wgsl::rows8h`), the
/// two-pass ones (LogSumExp, L2) included, and the same rows one element off (scalar path).
#[test]
fn half_reductions_over_aligned_rows() {
    use backend_api::{DType, ReduceOp};
    use conformance::suites::half::{HalfCall, HalfCase, HalfData};
    let Some(b) = backend() else {
        return;
    };
    let mut failures = Vec::new();
    for (i, (dtype, op, shape, offset)) in [
        (DType::F16, ReduceOp::Sum, vec![3, 4096], 0),
        (DType::BF16, ReduceOp::Mean, vec![2, 1000], 0),
        (DType::F16, ReduceOp::LogSumExp, vec![2, 800], 0),
        (DType::BF16, ReduceOp::L2, vec![2, 512], 0),
        (DType::F16, ReduceOp::Max, vec![2, 512], 1),
    ]
    .into_iter()
    .enumerate()
    {
        let case = HalfCase {
            dtype,
            call: HalfCall::Reduce(op),
            n: 0,
            shape,
            axis: 1,
            offsets: [offset, 0, 0],
            data: HalfData::Usual,
            specials: i == 4,
            seed: 90 + i as u64,
        };
        replay(
            b,
            Check::HalfStorage,
            serde_json::to_string(&case).unwrap(),
            &mut failures,
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `memory_info().staged_bytes` counts the copies through intermediate buffers: none for a
/// round trip on unified memory mapped in place (lavapipe, integrated GPUs), one each way
/// (the staging belt, the readback staging buffer) with mapping off or on a discrete GPU.
#[test]
fn staged_bytes_count_the_copies() {
    let Some(shared) = backend() else {
        return;
    };
    let a = shared
        .adapter()
        .expect("an initialised backend has an adapter");
    let can_map = a.features.iter().any(|f| f == "mappable-primary-buffers")
        && matches!(a.device_type.as_str(), "Cpu" | "IntegratedGpu");
    let n = 1usize << 20;
    let data: Vec<u8> = (0..n).map(|i| (i * 13 + i / 509) as u8).collect();
    for unified in [true, false] {
        let mut b = WebGpuBackend::with_options(backend_webgpu::WebGpuOptions {
            unified_memory: unified,
            ..backend_webgpu::WebGpuOptions::from_env().expect("the environment")
        });
        b.init().unwrap();
        let p = b.alloc(n).unwrap();
        b.synchronize().unwrap();
        let s0 = b.memory_info().unwrap().staged_bytes;
        b.copy_htod(p, &data).unwrap();
        let s1 = b.memory_info().unwrap().staged_bytes;
        let mut back = vec![0u8; n];
        b.copy_dtoh(&mut back, p).unwrap();
        let s2 = b.memory_info().unwrap().staged_bytes;
        assert!(back == data, "the round trip (unified_memory {unified})");
        let per_copy = if unified && can_map { 0 } else { n as u64 };
        eprintln!(
            "staged bytes on {} (unified_memory {unified}, mappable {can_map}): upload {}, readback {}",
            b.name(),
            s1 - s0,
            s2 - s1
        );
        assert_eq!(s1 - s0, per_copy, "bytes staged by copy_htod");
        assert_eq!(s2 - s1, per_copy, "bytes staged by copy_dtoh");
    }
}

/// On unified memory (lavapipe, integrated GPUs) a `Read` view of an allocation with a
/// buffer of its own (above 1 MiB) maps it in place: no staged bytes, and the whole
/// allocation is refused to other calls while the view lives. Elsewhere the view is
/// staged and counts its copy.
#[test]
fn a_large_read_view_maps_unified_memory_in_place() {
    let Some(b) = backend() else {
        return;
    };
    let a = b.adapter().expect("an initialised backend has an adapter");
    let in_place = a.features.iter().any(|f| f == "mappable-primary-buffers")
        && matches!(a.device_type.as_str(), "Cpu" | "IntegratedGpu");
    let n = 2usize << 20;
    let data: Vec<u8> = (0..n).map(|i| (i * 31 + i / 4093) as u8).collect();
    let p = b.alloc(n).unwrap();
    b.copy_htod(p, &data).unwrap();
    b.synchronize().unwrap();
    let s0 = b.memory_info().unwrap().staged_bytes;
    let view = b
        .map_host(p + 4096, n - 8192, backend_api::MapMode::Read)
        .unwrap();
    let staged = b.memory_info().unwrap().staged_bytes - s0;
    assert!(
        *view == data[4096..n - 4096],
        "the view shows the device bytes"
    );
    if in_place {
        assert_eq!(staged, 0, "an in-place view stages nothing");
        // The whole allocation is mapped, so even bytes outside the view are refused.
        let e = b.unary(backend_api::UnaryOp::Neg, p, p, 4).unwrap_err();
        assert!(e.to_string().contains("host view"), "{e}");
    } else {
        assert!(
            staged >= (n - 8192) as u64,
            "a staged view counts its copy: {staged}"
        );
    }
    view.finish().unwrap();
    b.unary(backend_api::UnaryOp::Neg, p, p, 4).unwrap();
    let mut back = vec![0u8; 16];
    b.copy_dtoh(&mut back, p).unwrap();
    let want: Vec<u8> = data[..16]
        .chunks(4)
        .flat_map(|c| (-f32::from_le_bytes(c.try_into().unwrap())).to_le_bytes())
        .collect();
    assert_eq!(back, want, "the allocation is usable again after the view");
    eprintln!(
        "a Read view of {} bytes on {}: staged {staged} bytes (in place: {in_place})",
        n - 8192,
        b.name()
    );
    b.free(p).unwrap();
}

/// The f16 conversions as the kernels do them, with the adapter's instructions where the
/// probe at initialisation found them exact and with the bit arithmetic otherwise (and
/// always with `Tuning::hw_f16` off): every f16 pattern widened and a spread of f32
/// values narrowed must give the exact results (`half`'s) either way.
#[test]
fn f16_conversions_are_exact_with_and_without_the_hardware_ones() {
    use backend_api::DType;
    use backend_api::half::f16;
    let Some(probed) = backend() else {
        return;
    };
    let mut options = backend_webgpu::WebGpuOptions::from_env().expect("options");
    options.tuning.hw_f16 = false;
    let mut bits_only = WebGpuBackend::with_options(options);
    bits_only.init().expect("the same adapter opens twice");
    eprintln!(
        "f16 conversions: {} on {}",
        if probed.hardware_f16_conversions() {
            "the adapter's (probed exact)"
        } else {
            "bit arithmetic (the adapter's were not exact, or the probe was off)"
        },
        probed.name()
    );
    assert!(!bits_only.hardware_f16_conversions());
    let halves: Vec<u16> = (0..=u16::MAX).collect();
    let wide: Vec<f32> = (0..1 << 16)
        .map(|i: u32| f32::from_bits(i.wrapping_mul(0x9e37_79b9) ^ 0x3f00_0000))
        .chain([
            65519.996,
            65520.0,
            1.0 + 2f32.powi(-11),
            2f32.powi(-25),
            3.0 * 2f32.powi(-26),
        ])
        .collect();
    for b in [probed, &bits_only] {
        let up = b.upload(&halves).unwrap();
        let up_out = b.alloc(4 * halves.len()).unwrap();
        b.cast(up, DType::F16, up_out, DType::F32, halves.len())
            .unwrap();
        let got: Vec<f32> = b.copy_dtoh_vec(up_out, halves.len()).unwrap();
        for (&h, g) in halves.iter().zip(&got) {
            let want = f16::from_bits(h).to_f32();
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "{}: f16 {h:#06x} widened to {g:e}, not {want:e}",
                b.name()
            );
        }
        let down = b.upload(&wide).unwrap();
        let down_out = b.alloc(2 * wide.len()).unwrap();
        b.cast(down, DType::F32, down_out, DType::F16, wide.len())
            .unwrap();
        let got: Vec<u16> = b.copy_dtoh_vec(down_out, wide.len()).unwrap();
        for (&x, &g) in wide.iter().zip(&got) {
            let want = f16::from_f32(x);
            let g = f16::from_bits(g);
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "{}: {x:e} narrowed to {g} ({:#06x}), not {want}",
                b.name(),
                g.to_bits()
            );
        }
        for p in [up, up_out, down, down_out] {
            b.free(p).unwrap();
        }
    }
    // Where the suite ran on the adapter's conversions, the f16 check runs once more on
    // the bit arithmetic, which adapters without exact conversions take.
    if probed.hardware_f16_conversions() {
        let report = run_check(&bits_only, Check::HalfStorage, &config(&bits_only));
        assert!(
            report.ok(),
            "half_storage on the bit arithmetic: {:?}",
            report.failures
        );
    }
}

/// The pipeline cache on disk: a first backend starts cold and writes its compiled
/// pipelines to a file named for the adapter and driver; a second backend on the same
/// directory loads that file (where the adapter keeps a cache: Vulkan) and computes the
/// same results; a damaged file is ignored (a cold start), never handed to the driver.
#[test]
fn the_pipeline_cache_survives_the_process_and_refuses_damaged_files() {
    let Some(shared) = backend() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("backend-webgpu-pc-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let open = || {
        let mut options = backend_webgpu::WebGpuOptions::from_env().expect("options");
        options.pipeline_cache = Some(dir.clone());
        options.tuning.hw_f16 = false;
        let mut b = WebGpuBackend::with_options(options);
        b.init().expect("the same adapter opens again");
        b
    };
    let gemm = |b: &WebGpuBackend| -> Vec<f32> {
        let n = 8;
        let a: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let x = b.upload(&a).unwrap();
        let y = b.alloc(4 * n * n).unwrap();
        use backend_api::BackendTranspose::NoTrans as N;
        b.gemm(N, N, n, n, n, 1.0, x, n, x, n, 0.0, y, n).unwrap();
        let out = b.copy_dtoh_vec(y, n * n).unwrap();
        b.free(x).unwrap();
        b.free(y).unwrap();
        out
    };
    let want = gemm(shared);
    let first = open();
    let Some(loaded) = first.pipeline_cache_loaded() else {
        eprintln!(
            "SKIP pipeline cache: {} keeps none (wgpu has a pipeline cache on Vulkan only)",
            first.name()
        );
        assert_eq!(first.save_pipeline_cache(), None);
        return;
    };
    assert_eq!(loaded, 0, "an empty directory is a cold start");
    assert_eq!(gemm(&first), want);
    let file = first.save_pipeline_cache().expect("a cache has a file");
    drop(first);
    let bytes = std::fs::read(&file).expect("the file was written");
    assert!(
        bytes.starts_with(b"BKWGPC01"),
        "{} is not ours",
        file.display()
    );
    let second = open();
    assert_eq!(
        second.pipeline_cache_loaded(),
        Some(bytes.len() - 16),
        "the second backend loads the first one's pipelines"
    );
    assert_eq!(gemm(&second), want);
    drop(second);
    // Damage the data: the hash refuses it, the backend starts cold and still computes.
    let mut damaged = std::fs::read(&file).unwrap();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x5a;
    std::fs::write(&file, &damaged).unwrap();
    let third = open();
    assert_eq!(
        third.pipeline_cache_loaded(),
        Some(0),
        "a damaged file is ignored"
    );
    assert_eq!(gemm(&third), want);
    drop(third);
    // A directory that cannot be written (here a plain file) costs the cache, not `init`.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::write(&dir, b"not a directory").unwrap();
    let fourth = open();
    assert_eq!(fourth.pipeline_cache_loaded(), Some(0));
    assert_eq!(gemm(&fourth), want);
    assert!(fourth.save_pipeline_cache().is_some_and(|f| !f.exists()));
    drop(fourth);
    let _ = std::fs::remove_file(&dir);
}

/// f16/bf16 broadcasting in place (the output is one input's own range, the other input
/// broadcast), on word-aligned and unaligned outputs of odd length: the in-place kernel
/// and the path through f32 copies, bit for bit against the CPU oracle (add and mul of
/// f16/bf16 values are exact in f32, so one rounding either way).
#[test]
fn half_storage_broadcasts_in_place_like_the_oracle() {
    use backend_api::half::{bf16, f16};
    use backend_api::{BinaryOp, DType};
    let Some(gpu) = backend() else {
        return;
    };
    let mut cpu = backend_cpu::CpuBackend::new();
    cpu.init().unwrap();
    let (rows, cols) = (3usize, 5usize);
    for dtype in [DType::F16, DType::BF16] {
        let bits = |x: f32| match dtype {
            DType::F16 => f16::from_f32(x).to_bits(),
            _ => bf16::from_f32(x).to_bits(),
        };
        // One spare element before (to shift the output off a word) and after.
        let big: Vec<u16> = (0..rows * cols + 2)
            .map(|i| bits(((i * 37 % 23) as f32 - 11.0) * 0.375))
            .collect();
        let small: Vec<u16> = (0..cols).map(|i| bits(i as f32 * 0.625 - 1.5)).collect();
        for op in [BinaryOp::Add, BinaryOp::Mul] {
            for shift in [0usize, 1] {
                for big_is_a in [true, false] {
                    let run = |b: &dyn ComputeBackend| -> Vec<u16> {
                        let x = b.upload(&big).unwrap();
                        let y = b.upload(&small).unwrap();
                        let out = x + 2 * shift as u64;
                        let (a, a_shape, bb, b_shape) = if big_is_a {
                            (out, vec![rows, cols], y, vec![cols])
                        } else {
                            (y, vec![cols], out, vec![rows, cols])
                        };
                        b.binary_broadcast_ex(
                            op,
                            dtype,
                            a,
                            &a_shape,
                            bb,
                            &b_shape,
                            out,
                            &[rows, cols],
                        )
                        .unwrap();
                        let got = b.copy_dtoh_vec(x, big.len()).unwrap();
                        b.free(x).unwrap();
                        b.free(y).unwrap();
                        got
                    };
                    let (want, got) = (run(&cpu), run(gpu));
                    assert_eq!(
                        got,
                        want,
                        "{dtype} {op:?} in place on {}, output shifted {shift}",
                        if big_is_a { "a" } else { "b" }
                    );
                }
            }
        }
    }
}
