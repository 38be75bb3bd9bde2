//! Scoped memory ([`Check::Memory`]): aliases, frame and heap arenas with epochs,
//! handles, planned arenas and `copy_dtoh_many`, through the backend's own calls (so the
//! browser runs the same probes through the async driver).

use backend_api::memory::{
    FrameArena, Heap, HeapArena, PlannedArena, SliceHandle, SliceKind, TensorLife, plan_arena,
};
use backend_api::{
    ALLOC_ALIGN, BackendError, BackendTranspose, BinaryOp, ComputeBackend, DType, MapMode,
    ReduceOp, UnaryOp,
};

use crate::Check;
use crate::data::{from_bytes, to_bytes};
use crate::report::CheckReport;

type Probe = Result<(), String>;

async fn read(b: &dyn ComputeBackend, p: u64, n: usize) -> Result<Vec<f32>, String> {
    let mut out = vec![0u8; 4 * n];
    b.copy_dtoh_async(&mut out, p)
        .await
        .map_err(|e| format!("reading {n} f32 at {p:#x}: {e}"))?;
    Ok(from_bytes(&out))
}

fn ok<T>(what: &str, r: Result<T, BackendError>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// `r` must be an `InvalidArgument` whose message contains every one of `words`.
fn refused<T: std::fmt::Debug>(what: &str, r: Result<T, BackendError>, words: &[&str]) -> Probe {
    match r {
        Err(BackendError::InvalidArgument(m)) => match words.iter().find(|w| !m.contains(*w)) {
            None => Ok(()),
            Some(w) => Err(format!("{what}: the error does not say {w:?}: {m}")),
        },
        other => Err(format!("{what}: want InvalidArgument, got {other:?}")),
    }
}

/// Alias arithmetic: fresh congruent addresses, the parent's bytes both ways, pointer
/// arithmetic inside, a range past the alias refused, no memory cost.
async fn alias_arithmetic(b: &dyn ComputeBackend) -> Probe {
    let n = 64;
    let p = ok("alloc", b.alloc(4 * n))?;
    let run = async {
        let v: Vec<f32> = (0..n).map(|i| i as f32).collect();
        ok("copy_htod", b.copy_htod(p, &to_bytes(&v)))?;
        let a = ok("alias", b.alias(p + 20, 4 * 32))?;
        if a % ALLOC_ALIGN != (p + 20) % ALLOC_ALIGN || (a >= p && a < p + 4 * n as u64) {
            return Err(format!(
                "alias {a:#x} of {:#x}: not fresh and congruent mod 256",
                p + 20
            ));
        }
        let through = read(b, a + 8, 4).await?;
        if through != v[7..11] {
            return Err(format!(
                "through the alias: {through:?}, want {:?}",
                &v[7..11]
            ));
        }
        ok("write through alias", b.copy_htod(a, &to_bytes(&[-1.0f32])))?;
        if read(b, p + 20, 1).await? != [-1.0] {
            return Err("a write through the alias is not seen through the parent".into());
        }
        ok("op through alias", b.unary(UnaryOp::Neg, a, a, 32))?;
        if read(b, p + 24, 1).await? != [-6.0] {
            return Err("an op through the alias did not change the parent's bytes".into());
        }
        refused(
            "a range past the alias",
            b.unary(UnaryOp::Neg, a, a, 33),
            &["alias"],
        )?;
        refused(
            "an alias past its allocation",
            b.alias(p + 4, 4 * n),
            &["alias", "past the end"],
        )?;
        // Aliases cost no memory. Other threads (tests sharing the backend) may allocate
        // meanwhile, so an alias counted as memory is caught by every one of a few tries
        // giving a different figure.
        if b.memory_info().is_ok() {
            let mut seen = Vec::new();
            let unchanged = (0..8).any(|_| {
                let x = b.memory_info().map(|i| i.allocated_bytes);
                let alias = b.alias(p, 4 * 16);
                let y = b.memory_info().map(|i| i.allocated_bytes);
                if let Ok(alias) = alias {
                    let _ = b.free(alias);
                }
                seen.push((x.clone(), y.clone()));
                matches!((x, y), (Ok(x), Ok(y)) if x == y)
            });
            if !unchanged {
                return Err(format!(
                    "aliases cost device memory: allocated_bytes before/after an alias: {seen:?}"
                ));
            }
        }
        // free retires the alias alone.
        ok("free(alias)", b.free(a))?;
        refused(
            "a freed alias",
            b.unary(UnaryOp::Neg, a, a, 1),
            &["stale", "free"],
        )?;
        ok(
            "the parent after free(alias)",
            b.unary(UnaryOp::Neg, p, p, 1),
        )?;
        let c = ok("alias", b.alias(p, 16))?;
        ok("free(parent)", b.free(p))?;
        refused(
            "an alias of a freed allocation",
            b.copy_htod(c, &[0u8; 4]),
            &["stale"],
        )
    };
    let r = run.await;
    let _ = b.free(p);
    r
}

/// Overlap rules compare physical bytes: an output aliasing an input through an alias
/// is refused, exactly as with the parent's own addresses; in place through an alias of
/// the same bytes is in place.
async fn physical_overlap(b: &dyn ComputeBackend) -> Probe {
    let p = ok("alloc", b.alloc(1024))?;
    let run = async {
        let a = ok("alias", b.alias(p, 1024))?;
        ok("copy_htod", b.copy_htod(p, &to_bytes(&[2.0f32; 256])))?;
        refused(
            "unary: output overlaps input through an alias",
            b.unary(UnaryOp::Neg, p, a + 4, 8),
            &["unary", "alias"],
        )?;
        refused(
            "copy_dtod between an alias and its parent",
            b.copy_dtod(a + 8, p, 16),
            &["copy_dtod", "overlap"],
        )?;
        refused(
            "gemm: C aliases A through an alias",
            b.gemm(
                BackendTranspose::NoTrans,
                BackendTranspose::NoTrans,
                2,
                2,
                2,
                1.0,
                p,
                2,
                p + 256,
                2,
                0.0,
                a,
                2,
            ),
            &["gemm", "overlaps"],
        )?;
        ok("in place through an alias", b.unary(UnaryOp::Neg, p, a, 8))?;
        if read(b, p, 1).await? != [-2.0] {
            return Err("in place through an alias did not run in place".into());
        }
        Ok(())
    };
    let r = run.await;
    let _ = b.free(p);
    r
}

/// One probe per op of the trait on a stale frame slice: each is `InvalidArgument`
/// saying "stale", and the data of another allocation is intact.
async fn frame_reset(b: &dyn ComputeBackend) -> Probe {
    let keep = ok("alloc", b.alloc(64))?;
    let frame = ok("FrameArena::new", FrameArena::new(b, 4096, 256))?;
    let run = async {
        let sentinel: Vec<f32> = (0..16).map(|i| 0.5 + i as f32).collect();
        ok("copy_htod", b.copy_htod(keep, &to_bytes(&sentinel)))?;
        let x = ok("frame alloc", frame.alloc::<f32>(64))?;
        let y = ok("frame alloc", frame.alloc::<f32>(64))?;
        ok("slice write", x.write(&[1.0; 64]))?;
        ok(
            "op on live slices",
            b.unary(UnaryOp::Neg, x.ptr(), y.ptr(), 64),
        )?;
        if y.read_async().await.map_err(|e| e.to_string())? != vec![-1.0; 64] {
            return Err("an op on live frame slices gave wrong data".into());
        }
        let (e0, handle) = (frame.epoch(), x.handle());
        ok("reset", frame.reset())?;
        if frame.epoch() != e0 + 1 || x.is_alive() || frame.used() != 0 {
            return Err("reset did not end the epoch".into());
        }
        refused("assert_alive", x.assert_alive(), &["stale"])?;
        refused("slice read", x.read(), &["stale"])?;
        let (s, o) = (x.ptr(), keep);
        let nt = BackendTranspose::NoTrans;
        let probes: Vec<(&str, Result<(), BackendError>)> = vec![
            (
                "gemm",
                b.gemm(nt, nt, 2, 2, 2, 1.0, s, 2, o, 2, 0.0, o + 16, 2),
            ),
            (
                "batched_gemm",
                b.batched_gemm(nt, nt, 2, 2, 2, 1.0, o, 2, 4, s, 2, 4, 0.0, o + 32, 2, 4, 1),
            ),
            (
                "gemm_ex",
                b.gemm_ex(
                    nt,
                    nt,
                    2,
                    2,
                    2,
                    1.0,
                    o,
                    DType::F32,
                    2,
                    o + 16,
                    DType::F32,
                    2,
                    0.0,
                    s,
                    2,
                ),
            ),
            (
                "conv2d_forward",
                b.conv2d_forward(
                    s,
                    &[1, 1, 2, 2],
                    o,
                    &[1, 1, 1, 1],
                    o + 16,
                    &[1, 1, 2, 2],
                    &[1, 1],
                    &[0, 0],
                ),
            ),
            (
                "attention",
                b.attention(o, o + 16, o + 32, s, 1, 1, 1, 1, 4, 0.5, false),
            ),
            ("reduce", b.reduce(ReduceOp::Sum, s, o, &[2, 2], 1)),
            ("unary", b.unary(UnaryOp::Relu, o, s, 4)),
            ("binary", b.binary(BinaryOp::Add, o, s, o + 32, 4)),
            ("copy_htod", b.copy_htod(s, &[0u8; 16])),
            ("copy_dtod", b.copy_dtod(o, s, 16)),
            ("cast", b.cast(s, DType::F32, o, DType::F16, 4)),
            ("alias", b.alias(s, 16).map(drop)),
            ("free", b.free(s)),
        ];
        for (name, r) in probes {
            refused(&format!("{name} on a stale frame slice"), r, &["stale"])?;
        }
        let mut buf = [0u8; 16];
        refused(
            "copy_dtoh on a stale frame slice",
            b.copy_dtoh_async(&mut buf, s).await,
            &["stale"],
        )?;
        if read(b, keep, 16).await? != sentinel {
            return Err("data of another allocation changed under the stale-slice probes".into());
        }
        // The handle is refused after the reset; a fresh slice works at the same bytes.
        refused(
            "from_handle after reset",
            frame.from_handle::<f32>(&handle).map(drop),
            &["stale"],
        )?;
        let z = ok("frame alloc after reset", frame.alloc::<f32>(64))?;
        if z.ptr() == x.ptr() {
            return Err("a frame reuses an address".into());
        }
        ok("slice write", z.write(&[3.0; 64]))?;
        if z.read_async().await.map_err(|e| e.to_string())? != vec![3.0; 64] {
            return Err("a slice of the next frame reads wrong data".into());
        }
        refused("free of a frame slice", z.free(), &["Frame"])
    };
    let r = run.await;
    drop(frame);
    let _ = b.free(keep);
    r
}

/// A full arena is `OutOfMemory` and stays usable; handles round-trip through serde and
/// check kind, type and epoch; heap slices free; planned arenas place live tensors apart.
async fn arenas_and_handles(b: &dyn ComputeBackend) -> Probe {
    let arena = ok("HeapArena::new", HeapArena::new(b, 1024, 16))?;
    let a = ok("arena alloc", arena.alloc::<u32>(200))?;
    match arena.alloc::<f32>(100) {
        Err(BackendError::OutOfMemory(m)) if m.contains("arena") => {}
        other => return Err(format!("a full arena: want OutOfMemory, got {other:?}")),
    }
    ok("a live slice of a full arena", a.write(&[7; 200]))?;
    let small = ok("arena alloc that fits", arena.alloc_aligned::<u8>(8, 64))?;
    if small.ptr() % 64 != 0 && (small.ptr() - a.ptr()) % 64 != 0 {
        return Err(format!("alloc_aligned(64) gave {:#x}", small.ptr()));
    }
    let json = serde_json::to_string(&a.handle()).map_err(|e| e.to_string())?;
    let back: SliceHandle = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    if back != a.handle() || back.kind != SliceKind::Arena || back.epoch != Some(0) {
        return Err(format!("the handle did not round-trip: {json}"));
    }
    let again = ok("from_handle", arena.from_handle::<u32>(&back))?;
    if again.read_async().await.map_err(|e| e.to_string())? != vec![7; 200] {
        return Err("a slice from a handle reads other data".into());
    }
    refused(
        "from_handle with another type",
        arena.from_handle::<f32>(&back).map(drop),
        &["U32"],
    )?;
    ok("arena reset", arena.reset())?;
    refused(
        "from_handle after reset",
        arena.from_handle::<u32>(&back).map(drop),
        &["stale"],
    )?;
    refused(
        "an arena slice after reset",
        b.copy_htod(a.ptr(), &[0u8; 4]),
        &["stale", "arena reset"],
    )?;

    let heap = Heap::new(b);
    let h = ok("heap alloc", heap.alloc::<f32>(10))?;
    ok("heap write", h.write(&[1.5; 10]))?;
    let h2 = ok("heap from_handle", heap.from_handle::<f32>(&h.handle()))?;
    if h2.read_async().await.map_err(|e| e.to_string())? != vec![1.5; 10] {
        return Err("a heap slice from a handle reads other data".into());
    }
    refused(
        "a heap write of the wrong length",
        h.write(&[1.0; 3]),
        &["3 elements"],
    )?;
    ok("heap free", h.free())?;
    refused(
        "a freed heap slice",
        b.copy_htod(h2.ptr(), &[0u8; 4]),
        &["freed", "use after free"],
    )?;

    // Four tensors of a chain: x0 -> x1 -> x2 -> x3.
    let lives: Vec<TensorLife> = (0..4)
        .map(|i| TensorLife {
            bytes: 256,
            first_use: i,
            last_use: i + 1,
        })
        .collect();
    let plan = ok("plan_arena", plan_arena(&lives, 256))?;
    let planned = ok("PlannedArena::new", PlannedArena::new(b, &plan))?;
    ok("x0", b.copy_htod(planned.ptr(0), &to_bytes(&[1.0f32; 64])))?;
    for i in 0..3 {
        ok(
            "step",
            b.unary(UnaryOp::Neg, planned.ptr(i), planned.ptr(i + 1), 64),
        )?;
    }
    if read(b, planned.ptr(3), 64).await? != vec![-1.0; 64] {
        return Err("a chain through a planned arena gave wrong data".into());
    }
    drop(planned);
    Ok(())
}

/// `copy_dtoh_many` equals the loop of `copy_dtoh`s, and a bad entry fails the call with
/// no destination written.
async fn dtoh_many(b: &dyn ComputeBackend) -> Probe {
    let p = ok("alloc", b.alloc(4096))?;
    let run = async {
        let v: Vec<f32> = (0..1024).map(|i| i as f32 * 0.25).collect();
        ok("copy_htod", b.copy_htod(p, &to_bytes(&v)))?;
        ok("op", b.unary(UnaryOp::Neg, p, p, 512))?; // queued before the reads
        let want: Vec<f32> = v
            .iter()
            .enumerate()
            .map(|(i, &x)| if i < 512 { -x } else { x })
            .collect();
        let (mut a, mut c, mut d) = (vec![0u8; 4], vec![0u8; 400], vec![0u8; 3]);
        {
            let mut reads: Vec<(u64, &mut [u8])> = vec![
                (p + 4 * 1000, &mut a[..]),
                (p + 4 * 500, &mut c[..]),
                (p + 1, &mut d[..]),
            ];
            ok(
                "copy_dtoh_many_async",
                b.copy_dtoh_many_async(&mut reads).await,
            )?;
        }
        let mut one = vec![0u8; 3];
        ok("copy_dtoh", b.copy_dtoh_async(&mut one, p + 1).await)?;
        if from_bytes(&a) != want[1000..1001] || from_bytes(&c) != want[500..600] || d != one {
            return Err("copy_dtoh_many read other bytes than copy_dtoh".into());
        }
        let (mut e, mut f) = (vec![0xAAu8; 8], vec![0xAAu8; 8]);
        let r = {
            let mut reads: Vec<(u64, &mut [u8])> = vec![(p, &mut e[..]), (p + 4092, &mut f[..])];
            b.copy_dtoh_many_async(&mut reads).await
        };
        refused(
            "copy_dtoh_many with an entry past the end",
            r,
            &["copy_dtoh"],
        )?;
        if e != [0xAA; 8] || f != [0xAA; 8] {
            return Err("a failed copy_dtoh_many wrote a destination".into());
        }
        Ok(())
    };
    let r = run.await;
    let _ = b.free(p);
    r
}

/// Host views (`map_host`, docs/ZERO-COPY.md): fill A and B through views, gemm, read C
/// through a view; the bytes staged by each view (0 where the backend says its views are
/// zero-copy, at least the viewed bytes otherwise); and what a live view refuses. A backend
/// without views (or, in a browser, without blocking reads) is noted, not failed.
async fn host_views(b: &dyn ComputeBackend) -> Result<Option<String>, String> {
    let n = 8;
    let bytes = 4 * n * n;
    let a = ok("alloc", b.alloc(bytes))?;
    let bm = ok("alloc", b.alloc(bytes))?;
    let c = ok("alloc", b.alloc(bytes))?;
    let run = async {
        match b.map_host(a, 4, MapMode::Read) {
            Err(BackendError::Unsupported(m)) => {
                return Ok(Some(format!("host views not offered here: {m}")));
            }
            r => ok("map_host Read", r)?
                .finish()
                .map_err(|e| format!("finish: {e}"))?,
        }
        let zero_copy = b.host_view_is_zero_copy();
        let staged =
            || -> Result<u64, String> { Ok(ok("memory_info", b.memory_info())?.staged_bytes) };
        let check_staged = |what: &str, delta: u64| -> Probe {
            if zero_copy && delta != 0 {
                return Err(format!(
                    "{what}: the backend says its views are zero-copy, yet it staged {delta} bytes"
                ));
            }
            if !zero_copy && delta < bytes as u64 {
                return Err(format!(
                    "{what}: a staged view of {bytes} bytes counted only {delta} staged bytes"
                ));
            }
            Ok(())
        };
        // A through a Write view.
        let av: Vec<f32> = (0..n * n).map(|i| (i as f32) * 0.5 - 7.0).collect();
        let s0 = staged()?;
        let mut view = ok("map_host A Write", b.map_host(a, bytes, MapMode::Write))?;
        ok("bytes_mut", view.bytes_mut())?.copy_from_slice(&to_bytes(&av));
        ok("finish A", view.finish())?;
        check_staged("A's Write view", staged()? - s0)?;
        // B = 2 I: written with copy_htod, then seen and changed through a ReadWrite view.
        let two_i: Vec<f32> = (0..n * n)
            .map(|i| if i % (n + 1) == 0 { 2.0 } else { 0.0 })
            .collect();
        ok("copy_htod B", b.copy_htod(bm, &to_bytes(&two_i)))?;
        let mut view = ok(
            "map_host B ReadWrite",
            b.map_host(bm, bytes, MapMode::ReadWrite),
        )?;
        if from_bytes(&view) != two_i {
            return Err("a ReadWrite view does not show the device bytes".into());
        }
        ok("bytes_mut", view.bytes_mut())?[..4].copy_from_slice(&3f32.to_le_bytes());
        ok("finish B", view.finish())?;
        ok(
            "gemm",
            b.gemm(
                BackendTranspose::NoTrans,
                BackendTranspose::NoTrans,
                n,
                n,
                n,
                1.0,
                a,
                n,
                bm,
                n,
                0.0,
                c,
                n,
            ),
        )?;
        // C = A * B: column j of C is 2 * column j of A, and column 0 is 3 * column 0.
        let want: Vec<f32> = (0..n * n)
            .map(|i| av[i] * if i < n { 3.0 } else { 2.0 })
            .collect();
        let s1 = staged()?;
        let mut view = ok("map_host C Read", b.map_host(c, bytes, MapMode::Read))?;
        check_staged("C's Read view", staged()? - s1)?;
        if from_bytes(&view) != want {
            return Err(format!(
                "C through a Read view: {:?}, want {want:?}",
                from_bytes(&view)
            ));
        }
        // While the view lives: its bytes are refused to every other use.
        refused(
            "unary on bytes under a live view",
            b.unary(UnaryOp::Relu, c, c, n * n),
            &["host view"],
        )?;
        refused(
            "copy_htod into bytes under a live view",
            b.copy_htod(c + 8, &[0; 4]),
            &["host view"],
        )?;
        refused(
            "free of an allocation under a live view",
            b.free(c),
            &["host view"],
        )?;
        refused(
            "a second view of the same bytes",
            b.map_host(c + 4, 4, MapMode::Read).map(drop),
            &["host view"],
        )?;
        refused(
            "bytes_mut of a Read view",
            view.bytes_mut().map(drop),
            &["Read"],
        )?;
        ok("finish C", view.finish())?;
        // Afterwards the bytes are usable again, and unchanged.
        if read(b, c, n * n).await? != want {
            return Err("C after its view ended".into());
        }
        ok("unary after the view", b.unary(UnaryOp::Neg, c, c, n * n))?;
        // Views are checked like any other range.
        refused(
            "a view past the allocation",
            b.map_host(a + 4, bytes, MapMode::Read).map(drop),
            &["map_host", "past the end"],
        )?;
        let al = ok("alias", b.alias(a, 64))?;
        ok("retire", b.retire(al, backend_api::Retired::FrameReset))?;
        refused(
            "a view through a stale alias",
            b.map_host(al, 4, MapMode::Read).map(drop),
            &["stale"],
        )?;
        let gone = ok("alloc", b.alloc(64))?;
        ok("free", b.free(gone))?;
        refused(
            "a view of a freed pointer",
            b.map_host(gone, 4, MapMode::Write).map(drop),
            &["freed"],
        )?;
        // A view that is dropped instead of finished ends too.
        drop(ok("map_host", b.map_host(a, 4, MapMode::Write))?);
        ok("unary after a dropped view", b.unary(UnaryOp::Neg, a, a, 1))?;
        Ok(None)
    };
    let r = run.await;
    for p in [a, bm, c] {
        let _ = b.free(p);
    }
    r
}

pub(crate) async fn run(b: &dyn ComputeBackend) -> CheckReport {
    let mut report = CheckReport::new(Check::Memory);
    let results = [
        ("alias arithmetic", alias_arithmetic(b).await),
        ("physical overlap", physical_overlap(b).await),
        ("frame reset", frame_reset(b).await),
        ("arenas and handles", arenas_and_handles(b).await),
        ("copy_dtoh_many", dtoh_many(b).await),
    ];
    match host_views(b).await {
        Ok(None) => report.passed += 1,
        Ok(Some(note)) => report.notes.push(note),
        Err(m) => report.fail(format!("host views: {m}")),
    }
    for (name, r) in results {
        match r {
            Ok(()) => report.passed += 1,
            Err(m) => report.fail(format!("{name}: {m}")),
        }
    }
    report
}
