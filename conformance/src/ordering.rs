//! Program order must hold whatever a backend batches: writes, ops, overwrites, frees
//! and reuse interleaved, then read back.

use backend_api::{BackendError, BinaryOp, ComputeBackend, UnaryOp};

use crate::Check;
use crate::data::{Rng, from_bytes, to_bytes};
use crate::report::CheckReport;

async fn read(b: &dyn ComputeBackend, p: u64, n: usize) -> Result<Vec<f32>, BackendError> {
    let mut out = vec![0u8; 4 * n];
    b.copy_dtoh_async(&mut out, p).await?;
    Ok(from_bytes(&out))
}

fn expect_eq(what: &str, got: &[f32], want: &[f32]) -> Result<(), String> {
    match got
        .iter()
        .zip(want)
        .position(|(g, w)| g.to_bits() != w.to_bits())
    {
        None => Ok(()),
        Some(i) => Err(format!(
            "{what}: element {i} is {} but program order gives {}",
            got[i], want[i]
        )),
    }
}

/// Write, op, overwrite the op's input, op again, read both results.
async fn overwrite_after_queued_op(b: &dyn ComputeBackend, n: usize) -> Result<(), String> {
    let mut rng = Rng::new(1);
    let (v1, v2) = (rng.fill(n, -1.0, 1.0), rng.fill(n, -1.0, 1.0));
    let [x, y, z] = [0; 3].map(|_| b.alloc(4 * n));
    let (x, y, z) = (
        x.map_err(|e| e.to_string())?,
        y.map_err(|e| e.to_string())?,
        z.map_err(|e| e.to_string())?,
    );
    let run = async {
        b.copy_htod(x, &to_bytes(&v1))?;
        b.unary(UnaryOp::Neg, x, y, n)?;
        b.copy_htod(x, &to_bytes(&v2))?; // must not overtake the queued op
        b.unary(UnaryOp::Neg, x, z, n)?;
        Ok::<_, BackendError>((read(b, y, n).await?, read(b, z, n).await?))
    };
    let result = run.await.map_err(|e| e.to_string());
    for p in [x, y, z] {
        let _ = b.free(p);
    }
    let (got_y, got_z) = result?;
    let neg = |v: &[f32]| v.iter().map(|x| -x).collect::<Vec<_>>();
    expect_eq(
        "first result (copy_htod overtook a queued op?)",
        &got_y,
        &neg(&v1),
    )?;
    expect_eq("second result", &got_z, &neg(&v2))
}

/// A long chain of dependent in-place ops, read once at the end.
async fn dependent_chain(b: &dyn ComputeBackend, n: usize, steps: usize) -> Result<(), String> {
    let x = b.alloc(4 * n).map_err(|e| e.to_string())?;
    let one = b.alloc(4 * n).map_err(|e| e.to_string())?;
    let run = async {
        b.copy_htod(x, &to_bytes(&vec![0.0f32; n]))?;
        b.copy_htod(one, &to_bytes(&vec![1.0f32; n]))?;
        for _ in 0..steps {
            b.binary(BinaryOp::Add, x, one, x, n)?;
        }
        b.copy_dtod(one, x, 4 * n)?;
        b.binary(BinaryOp::Add, one, x, x, n)?;
        read(b, x, n).await
    };
    let result = run.await.map_err(|e| e.to_string());
    let _ = b.free(x);
    let _ = b.free(one);
    expect_eq("dependent chain", &result?, &vec![2.0 * steps as f32; n])
}

/// Free while an op that reads the allocation is queued, then allocate and overwrite
/// fresh memory (which a pool may take from the freed range): the queued op must still
/// see the old data.
async fn free_while_queued(b: &dyn ComputeBackend, n: usize) -> Result<(), String> {
    let mut rng = Rng::new(2);
    let v = rng.fill(n, -3.0, 3.0);
    let src = b.alloc(4 * n).map_err(|e| e.to_string())?;
    let dst = b.alloc(4 * n).map_err(|e| e.to_string())?;
    let mut fresh = Vec::new();
    let run = async {
        b.copy_htod(src, &to_bytes(&v))?;
        b.unary(UnaryOp::Abs, src, dst, n)?;
        b.free(src)?;
        for i in 0..4 {
            let p = b.alloc(4 * n)?;
            fresh.push(p);
            b.copy_htod(p, &to_bytes(&vec![i as f32 + 100.0; n]))?;
        }
        read(b, dst, n).await
    };
    let result = run.await.map_err(|e| e.to_string());
    for p in fresh.into_iter().chain([dst]) {
        let _ = b.free(p);
    }
    expect_eq(
        "op queued before free",
        &result?,
        &v.iter().map(|x| x.abs()).collect::<Vec<_>>(),
    )
}

/// copy_dtod and ops interleaved on one allocation.
async fn dtod_interleaved(b: &dyn ComputeBackend, n: usize) -> Result<(), String> {
    let mut rng = Rng::new(3);
    let v = rng.fill(n, -2.0, 2.0);
    let buf = b.alloc(4 * 3 * n).map_err(|e| e.to_string())?;
    let (p0, p1, p2) = (buf, buf + 4 * n as u64, buf + 8 * n as u64);
    let run = async {
        b.copy_htod(p0, &to_bytes(&v))?;
        b.unary(UnaryOp::Square, p0, p1, n)?; // p1 = v^2
        b.copy_dtod(p2, p1, 4 * n)?; // p2 = v^2
        b.binary(BinaryOp::Add, p1, p2, p1, n)?; // p1 = 2 v^2
        b.copy_dtod(p0, p1, 4 * n)?; // p0 = 2 v^2
        b.synchronize_async().await?;
        b.unary(UnaryOp::Neg, p0, p0, n)?;
        read(b, buf, 3 * n).await
    };
    let result = run.await.map_err(|e| e.to_string());
    let _ = b.free(buf);
    let got = result?;
    let sq: Vec<f32> = v.iter().map(|x| x * x).collect();
    let twice: Vec<f32> = sq.iter().map(|x| x + x).collect();
    expect_eq(
        "p0",
        &got[..n],
        &twice.iter().map(|x| -x).collect::<Vec<_>>(),
    )?;
    expect_eq("p1", &got[n..2 * n], &twice)?;
    expect_eq("p2", &got[2 * n..], &sq)
}

pub(crate) async fn run(b: &dyn ComputeBackend) -> CheckReport {
    let mut report = CheckReport::new(Check::Ordering);
    for n in [1usize, 1000, 70_000] {
        let results = [
            (
                "overwrite after a queued op",
                overwrite_after_queued_op(b, n).await,
            ),
            ("dependent chain", dependent_chain(b, n, 64).await),
            ("free while queued", free_while_queued(b, n).await),
            ("copy_dtod interleaved", dtod_interleaved(b, n).await),
        ];
        for (name, r) in results {
            match r {
                Ok(()) => report.passed += 1,
                Err(m) => report.fail(format!("{name} (n = {n}): {m}")),
            }
        }
    }
    report
}
