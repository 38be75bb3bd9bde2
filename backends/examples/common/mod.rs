//! What both examples share: an arena of device buffers that plans their activations, the row-major gemm recipe, and a
//! harness that runs a model on the selected backend and on every other one available,
//! compares the outputs and prints timings.

use std::sync::OnceLock;
use std::time::Instant;

use backends::backend_api::memory::{ArenaPlan, PlannedArena, TensorLife, plan_arena};
use backends::{
    BackendError, BackendKind, BackendResult, BackendTranspose, ComputeBackend, ComputeBackendExt,
};

/// Deterministic values in `[-scale, scale]` (splitmix64), so every backend gets the same
/// weights and inputs.
pub(crate) fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let unit = (z >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
            (unit * 2.0 - 1.0) * scale
        })
        .collect()
}

/// Device memory of one forward pass. Weights and constants (`upload`, `filled`) are
/// allocations of their own; activations (`alloc`, ended by `done`) come from the
/// arena's mode:
///
/// - **recording**: one allocation per activation, freed at `done`, and the life of each
///   (the steps from its `alloc` to its `done`) written down for [`Arena::plan`];
/// - **planned**: the activations are aliases into one [`PlannedArena`] laid out by
///   `plan_arena` from a recording of the same graph, handed out in the recorded order;
///   `done` frees the alias, so a use after `done` is a stale-pointer error rather than a
///   read of bytes another activation now owns.
///
/// Everything is freed when the arena drops (also on errors).
pub(crate) struct Arena<'a> {
    pub(crate) b: &'a dyn ComputeBackend,
    ptrs: Vec<u64>,
    mode: Mode<'a>,
    step: usize,
}

enum Mode<'a> {
    Recording {
        lives: Vec<TensorLife>,
        /// The activation each pointer is, while it is allocated.
        open: Vec<(u64, usize)>,
    },
    Planned {
        arena: PlannedArena<'a>,
        /// Bytes of each planned activation, to check the graph against its plan.
        bytes: Vec<usize>,
        next: usize,
    },
}

/// Offsets in a planned arena are multiples of this (the contract's allocation
/// alignment, so every activation is as aligned as a plain allocation).
pub(crate) const PLAN_ALIGN: usize = backends::backend_api::ALLOC_ALIGN as usize;

impl<'a> Arena<'a> {
    /// An arena that records activation lives (one allocation each).
    pub(crate) fn new(b: &'a dyn ComputeBackend) -> Self {
        Self {
            b,
            ptrs: Vec::new(),
            mode: Mode::Recording {
                lives: Vec::new(),
                open: Vec::new(),
            },
            step: 0,
        }
    }

    /// An arena whose activations are the tensors of `plan`, in its order.
    pub(crate) fn planned(b: &'a dyn ComputeBackend, plan: &ArenaPlan) -> BackendResult<Self> {
        Ok(Self {
            b,
            ptrs: Vec::new(),
            mode: Mode::Planned {
                arena: PlannedArena::new(b, plan)?,
                bytes: plan.bytes.clone(),
                next: 0,
            },
            step: 0,
        })
    }

    /// Room for an activation of `n` f32 values, live until [`Arena::done`] (or the end).
    pub(crate) fn alloc(&mut self, n: usize) -> BackendResult<u64> {
        self.step += 1;
        match &mut self.mode {
            Mode::Recording { lives, open } => {
                let p = self.b.alloc(n * 4)?;
                open.push((p, lives.len()));
                lives.push(TensorLife {
                    bytes: n * 4,
                    first_use: self.step,
                    last_use: usize::MAX,
                });
                Ok(p)
            }
            Mode::Planned { arena, bytes, next } => {
                let i = *next;
                if bytes.get(i) != Some(&(n * 4)) {
                    return Err(BackendError::InvalidArgument(format!(
                        "planned arena: activation {i} of {} bytes is not the recorded graph's \
                         ({:?} bytes)",
                        n * 4,
                        bytes.get(i)
                    )));
                }
                *next += 1;
                Ok(arena.ptr(i))
            }
        }
    }

    /// Ends activation `p`: no op after this one reads or writes it.
    pub(crate) fn done(&mut self, p: u64) -> BackendResult<()> {
        self.step += 1;
        if let Mode::Recording { lives, open } = &mut self.mode {
            let at = open.iter().position(|&(q, _)| q == p).ok_or_else(|| {
                BackendError::InvalidArgument(format!("done: {p:#x} is not an open activation"))
            })?;
            lives[open.swap_remove(at).1].last_use = self.step;
        }
        self.b.free(p)
    }

    /// The recorded graph's activations placed by `plan_arena`: activations never ended
    /// live to the last step.
    pub(crate) fn plan(&self) -> BackendResult<ArenaPlan> {
        let Mode::Recording { lives, .. } = &self.mode else {
            return Err(BackendError::InvalidArgument(
                "plan: only a recording arena has a graph to plan".into(),
            ));
        };
        let end = self.step + 1;
        let lives: Vec<TensorLife> = lives
            .iter()
            .map(|t| TensorLife {
                last_use: t.last_use.min(end),
                ..*t
            })
            .collect();
        plan_arena(&lives, PLAN_ALIGN)
    }

    /// `data` on the device, in an allocation of its own.
    pub(crate) fn upload(&mut self, data: &[f32]) -> BackendResult<u64> {
        let p = self.b.upload(data)?;
        self.ptrs.push(p);
        Ok(p)
    }

    /// `n` copies of `v` on the device.
    pub(crate) fn filled(&mut self, n: usize, v: f32) -> BackendResult<u64> {
        self.upload(&vec![v; n])
    }

    /// Row-major `C[m x n] = A[m x k] * B[k x n] + beta * C`, through the column-major gemm:
    /// a row-major matrix is the column-major matrix of its transpose, so this is
    /// `C^T = B^T * A^T` with the operands and sizes swapped.
    pub(crate) fn matmul(
        &self,
        a: u64,
        b: u64,
        c: u64,
        (m, k, n): (usize, usize, usize),
        beta: f64,
    ) -> BackendResult<()> {
        use BackendTranspose::NoTrans;
        self.b
            .gemm(NoTrans, NoTrans, n, m, k, 1.0, b, n, a, k, beta, c, n)
    }

    /// Row-major `C[m x n] = col[m] * row[n]`: how a vector is broadcast over rows or
    /// columns with the ops the trait has (a gemm with `k = 1`).
    pub(crate) fn outer(
        &self,
        col: u64,
        row: u64,
        c: u64,
        m: usize,
        n: usize,
    ) -> BackendResult<()> {
        self.matmul(col, row, c, (m, 1, n), 0.0)
    }
}

impl Drop for Arena<'_> {
    fn drop(&mut self) {
        for p in self.ptrs.drain(..) {
            let _ = self.b.free(p);
        }
        if let Mode::Recording { open, .. } = &mut self.mode {
            for (p, _) in open.drain(..) {
                let _ = self.b.free(p);
            }
        }
        // A planned arena frees its one allocation when it drops.
    }
}

/// A model's graph: runs on an [`Arena`], returns its output.
pub(crate) type Graph<W> = fn(&mut Arena<'_>, &W) -> BackendResult<Vec<f32>>;

/// What planning the activations of a graph gave.
#[derive(Debug, Clone)]
pub(crate) struct PlanReport {
    pub(crate) plan: ArenaPlan,
    /// Bytes of the activations allocated one by one.
    pub(crate) sum: usize,
    /// The output of the recording run (one allocation per activation).
    pub(crate) unplanned: Vec<f32>,
    /// The output of the planned run.
    pub(crate) planned: Vec<f32>,
}

impl PlanReport {
    /// Plan size against the sum of the activations and against the bytes live at once.
    pub(crate) fn describe(&self) -> String {
        let kib = |b: usize| b as f64 / 1024.0;
        format!(
            "activations: {} tensors, {:.1} KiB allocated one by one; planned arena {:.1} KiB \
             ({:.0}% of that; the most live at once is {:.1} KiB, so the plan is {:.2}x the \
             lower bound); planned output {} the unplanned one",
            self.plan.bytes.len(),
            kib(self.sum),
            kib(self.plan.size),
            100.0 * self.plan.size as f64 / self.sum.max(1) as f64,
            kib(self.plan.peak_live),
            self.plan.size as f64 / self.plan.peak_live.max(1) as f64,
            if self.planned == self.unplanned {
                "equals, bit for bit,"
            } else {
                "DIFFERS from"
            },
        )
    }
}

/// Runs `graph` once recording its activations' lives, plans them, and runs it again
/// with every activation in the planned arena.
pub(crate) fn plan_and_run<W: ?Sized>(
    b: &dyn ComputeBackend,
    graph: Graph<W>,
    w: &W,
) -> BackendResult<PlanReport> {
    let (unplanned, plan) = record(b, graph, w)?;
    let planned = run_planned(b, graph, w, &plan)?;
    Ok(PlanReport {
        sum: plan.bytes.iter().sum(),
        plan,
        unplanned,
        planned,
    })
}

/// The plan of `graph`'s activations, recorded once (on `b`) and kept in `cell`: a plan
/// depends on the graph, not on the backend.
pub(crate) fn cached_plan<W: ?Sized>(
    cell: &'static OnceLock<ArenaPlan>,
    b: &dyn ComputeBackend,
    graph: Graph<W>,
    w: &W,
) -> BackendResult<&'static ArenaPlan> {
    if let Some(plan) = cell.get() {
        return Ok(plan);
    }
    let (_, plan) = record(b, graph, w)?;
    Ok(cell.get_or_init(|| plan))
}

/// One run of `graph` in a recording arena (an allocation per activation, freed when the
/// run ends): its output and the plan of its activations.
fn record<W: ?Sized>(
    b: &dyn ComputeBackend,
    graph: Graph<W>,
    w: &W,
) -> BackendResult<(Vec<f32>, ArenaPlan)> {
    let mut rec = Arena::new(b);
    let out = graph(&mut rec, w)?;
    Ok((out, rec.plan()?))
}

/// One run of `graph` with its activations in a planned arena.
pub(crate) fn run_planned<W: ?Sized>(
    b: &dyn ComputeBackend,
    graph: Graph<W>,
    w: &W,
    plan: &ArenaPlan,
) -> BackendResult<Vec<f32>> {
    let mut ar = Arena::planned(b, plan)?;
    graph(&mut ar, w)
}

/// Outputs of two backends agree when `|got - want| <= ATOL + RTOL * |want|` everywhere.
/// f32 kernels that sum in another order than the CPU oracle's f64 loops differ by about
/// `K * 2^-24` relative (K = 256 here, ~2e-5); the bound leaves room for the GPU's
/// `exp`, `inverseSqrt` and `erf` approximations, and flags any real bug (a wrong index
/// or mask moves outputs by O(0.1)).
pub(crate) const RTOL: f64 = 1e-4;
/// See [`RTOL`].
pub(crate) const ATOL: f64 = 1e-4;

/// The largest `|got - want| / (ATOL + RTOL * |want|)`; over 1 is a mismatch.
pub(crate) fn worst_ratio(want: &[f32], got: &[f32]) -> Result<f64, String> {
    if want.len() != got.len() {
        return Err(format!("{} outputs, expected {}", got.len(), want.len()));
    }
    let mut worst = 0.0f64;
    for (i, (&w, &g)) in want.iter().zip(got).enumerate() {
        let (w, g) = (f64::from(w), f64::from(g));
        if !w.is_finite() || !g.is_finite() {
            return Err(format!("output {i}: {g} vs {w}: not finite"));
        }
        worst = worst.max((g - w).abs() / (ATOL + RTOL * w.abs()));
    }
    Ok(worst)
}

/// One backend's run of a model.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) millis: f64,
    /// Against the first row's output; `None` for the first row.
    pub(crate) worst_ratio: Option<f64>,
    pub(crate) output: Vec<f32>,
}

/// An example's exit: success, or the error printed and failure.
#[cfg_attr(test, allow(dead_code, reason = "only the examples' main calls it"))]
pub(crate) fn exit_code(r: Result<(), String>) -> std::process::ExitCode {
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A model's forward pass: reads its weights, returns its output.
pub(crate) type Forward = fn(&dyn ComputeBackend) -> BackendResult<Vec<f32>>;

fn timed(b: &dyn ComputeBackend, forward: Forward, reps: usize) -> BackendResult<(Vec<f32>, f64)> {
    // The first pass builds the GPU pipelines; time the ones after it.
    let out = forward(b)?;
    let start = Instant::now();
    for _ in 0..reps {
        forward(b)?;
    }
    b.synchronize()?;
    let millis = start.elapsed().as_secs_f64() * 1e3 / reps.max(1) as f64;
    Ok((out, millis))
}

/// Runs `forward` on the backend the feature and `BACKEND` select, then on every other
/// backend compiled in that starts, and compares each output with the first. Prints a
/// table; errors when an output differs or a backend fails.
pub(crate) fn run_everywhere(
    what: &str,
    forward: Forward,
    reps: usize,
) -> Result<Vec<Row>, String> {
    let selected = backends::select().map_err(|e| format!("no backend: {e}"))?;
    println!("{what}");
    println!(
        "selected: {} ({})",
        selected.backend.name(),
        selected.reason
    );
    let mut runs: Vec<(BackendKind, Box<dyn ComputeBackend>)> =
        vec![(selected.kind, selected.backend)];
    for kind in BackendKind::compiled() {
        if kind == selected.kind {
            continue;
        }
        match backends::create(kind) {
            Ok(b) => runs.push((kind, b)),
            Err(e) => println!("not compared: {kind}: {e}"),
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut problems = Vec::new();
    for (_, b) in &runs {
        let (output, millis) =
            timed(b.as_ref(), forward, reps).map_err(|e| format!("{}: {e}", b.name()))?;
        let worst_ratio = match rows.first() {
            None => None,
            Some(first) => match worst_ratio(&first.output, &output) {
                Ok(r) => Some(r),
                Err(e) => {
                    problems.push(format!("{} vs {}: {e}", b.name(), first.name));
                    Some(f64::INFINITY)
                }
            },
        };
        rows.push(Row {
            name: b.name().to_string(),
            millis,
            worst_ratio,
            output,
        });
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(8).max(8);
    println!(
        "{:<width$}  {:>12}  {:>22}",
        "backend", "ms/forward", "error/tolerance"
    );
    for r in &rows {
        let cmp = match r.worst_ratio {
            None => "(reference)".to_string(),
            Some(x) if x <= 1.0 => format!("{x:.2e} ok"),
            Some(x) => format!("{x:.2e} MISMATCH"),
        };
        println!("{:<width$}  {:>12.3}  {:>22}", r.name, r.millis, cmp);
        if r.worst_ratio.is_some_and(|x| x > 1.0) && problems.is_empty() {
            problems.push(format!(
                "{} differs from {} beyond |diff| <= {ATOL:e} + {RTOL:e} * |want|",
                r.name, rows[0].name
            ));
        }
    }
    println!("tolerance: |diff| <= {ATOL:e} + {RTOL:e} * |want| against the first row");
    if rows.len() == 1 {
        println!(
            "only one backend available: nothing to compare (build with --features webgpu and \
             install a Vulkan driver to compare with a GPU)"
        );
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        Err(problems.join("; "))
    }
}
