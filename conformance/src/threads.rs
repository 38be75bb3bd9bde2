//! Several threads sharing one backend, each allocating, computing and reading back its
//! own data: no lost or mixed-up results, no deadlock.

use backend_api::{BackendError, BackendTranspose, BinaryOp, ComputeBackend, UnaryOp};
use backend_cpu::reference;

use crate::Check;
use crate::data::{Rng, from_bytes, to_bytes};
use crate::report::CheckReport;
use crate::tolerance::{Tol, compare};

fn worker(b: &dyn ComputeBackend, id: usize, rounds: usize) -> Result<(), String> {
    let mut rng = Rng::new(1000 + id as u64);
    for round in 0..rounds {
        let n = 64 + rng.below(4000);
        let x = rng.fill(n, -2.0, 2.0);
        let e = |e: BackendError| format!("thread {id} round {round}: {e}");
        let px = b.alloc(4 * n).map_err(e)?;
        let py = b.alloc(4 * n).map_err(e)?;
        let run = || -> Result<Vec<f32>, BackendError> {
            b.copy_htod(px, &to_bytes(&x))?;
            b.unary(UnaryOp::Square, px, py, n)?;
            b.binary(BinaryOp::Add, py, px, py, n)?;
            let mut out = vec![0u8; 4 * n];
            b.copy_dtoh(&mut out, py)?;
            Ok(from_bytes(&out))
        };
        let got = run();
        let _ = b.free(px);
        let _ = b.free(py);
        let got = got.map_err(e)?;
        let want: Vec<f32> = x
            .iter()
            .map(|&v| reference::binary(BinaryOp::Add, v * v, v))
            .collect();
        compare(&format!("thread {id} round {round}"), &got, &want, |_| {
            Tol::rel(2.0 * f64::from(f32::EPSILON))
        })
        .map_err(|m| m.to_string())?;

        // A small gemm per round too.
        let (m, k) = (16 + rng.below(40), 8 + rng.below(40));
        let a = rng.fill(m * k, -1.0, 1.0);
        let pa = b.alloc(4 * m * k).map_err(e)?;
        let pc = b.alloc(4 * m * m).map_err(e)?;
        let run = || -> Result<Vec<f32>, BackendError> {
            b.copy_htod(pa, &to_bytes(&a))?;
            b.gemm(
                BackendTranspose::NoTrans,
                BackendTranspose::Trans,
                m,
                m,
                k,
                1.0,
                pa,
                m,
                pa,
                m,
                0.0,
                pc,
                m,
            )?;
            let mut out = vec![0u8; 4 * m * m];
            b.copy_dtoh(&mut out, pc)?;
            Ok(from_bytes(&out))
        };
        let got = run();
        let _ = b.free(pa);
        let _ = b.free(pc);
        let got = got.map_err(e)?;
        let mut want = vec![0.0; m * m];
        reference::gemm(false, true, m, m, k, 1.0, &a, m, &a, m, 0.0, &mut want, m);
        let abs: Vec<f32> = a.iter().map(|v| v.abs()).collect();
        let mut bound = vec![0.0; m * m];
        reference::gemm(
            false, true, m, m, k, 1.0, &abs, m, &abs, m, 0.0, &mut bound, m,
        );
        compare(
            &format!("thread {id} round {round} gemm"),
            &got,
            &want,
            |i| Tol::dot(k, bound[i]),
        )
        .map_err(|m| m.to_string())?;
    }
    Ok(())
}

pub(crate) fn run(b: &dyn ComputeBackend, threads: usize) -> CheckReport {
    let mut report = CheckReport::new(Check::Threads);
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|id| s.spawn(move || worker(b, id, 12)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a thread panicked".to_string()))
            })
            .collect()
    });
    for r in results {
        match r {
            Ok(()) => report.passed += 1,
            Err(m) => report.fail(m),
        }
    }
    report
}
