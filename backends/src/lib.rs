//! The facade: one dependency, and the backend is chosen by a cargo feature or at run time.
//!
//! | feature  | backend | runs on |
//! |---|---|---|
//! | `fast-cpu` (default) | [`BackendKind::FastCpu`]: `backend_fast_cpu::FastCpuBackend`, f32 on faer/gemm with rayon | native targets |
//! | `cpu` (default) | [`BackendKind::Cpu`]: `backend_cpu::CpuBackend`, the f64-accumulating oracle every backend is held to | everywhere |
//! | `webgpu` | [`BackendKind::WebGpu`]: `backend_webgpu::WebGpuBackend`, WGSL kernels on wgpu | Vulkan, Metal, DX12 |
//! | `wasm` | [`BackendKind::Wasm`]: WebGPU in a browser, else the fast CPU engine compiled into the module (implies `webgpu`) | `wasm32-unknown-unknown`, with [`create_async`] |
//!
//! Switching backend is one line in the caller's `Cargo.toml`:
//!
//! ```toml
//! backends = { path = "../backends", features = ["webgpu"] }
//! ```
//!
//! and, at run time, the environment variable [`BACKEND_ENV`] (`BACKEND=fast-cpu`,
//! `BACKEND=cpu`, `BACKEND=webgpu`, `BACKEND=wasm`; unset or `auto` lets
//! [`default_backend`] choose).
//!
//! Everything an ML framework needs is re-exported: the trait, its enums and errors
//! ([`backend_api`]), the owned, typed [`Buffer`] (freed on drop), and the helpers of
//! [`ComputeBackendExt`] (`upload`, `copy_htod_slice`, `copy_dtoh_vec`, the row-major
//! matrix products), so raw bytes never need handling:
//!
//! ```
//! use backends::{Buffer, UnaryOp};
//!
//! fn main() -> Result<(), backends::BackendError> {
//!     let b = backends::default_backend()?; // GPU when there is one, else the fast CPU backend
//!     let x = Buffer::from_slice(&*b, &[-1.0f32, 2.0, -3.0])?;
//!     b.unary(UnaryOp::Relu, x.ptr(), x.ptr(), x.len())?; // in place
//!     assert_eq!(x.read()?, [0.0, 2.0, 0.0]);
//!     Ok(()) // x is freed when it goes out of scope
//! }
//! ```
//!
//! Row-major matrix products, with errors that name the operands as the caller passed
//! them (the column-major `gemm` underneath takes them swapped):
//!
//! ```
//! use backends::ComputeBackendExt;
//!
//! fn main() -> Result<(), backends::BackendError> {
//!     let b = backends::default_backend()?;
//!     // C[2 x 2] = A[2 x 3] * B[3 x 2], all row-major.
//!     let a = b.buffer_from(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//!     let m = b.buffer_from(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0])?;
//!     let c = b.buffer_zeros::<f32>(4)?;
//!     b.matmul_row_major(2, 3, 2, a.ptr(), m.ptr(), c.ptr())?;
//!     assert_eq!(c.read()?, [4.0, 5.0, 10.0, 11.0]);
//!
//!     // A y = x W^T layer with a PyTorch-layout weight W [n x k]:
//!     let w = b.buffer_from(&[1.0f32, 1.0, 1.0, 0.0, 0.0, 2.0])?; // 2 x 3
//!     b.linear_row_major(2, 3, 2, a.ptr(), w.ptr(), c.ptr())?;
//!     assert_eq!(c.read()?, [6.0, 6.0, 15.0, 12.0]);
//!
//!     // Errors are in these terms: a holds 2 x 3, so k = 4 reads past its end.
//!     let b4 = b.buffer_zeros::<f32>(4 * 2)?;
//!     let e = b.matmul_row_major(2, 4, 2, a.ptr(), b4.ptr(), c.ptr()).unwrap_err();
//!     assert!(e.to_string().contains("matmul_row_major: operand a range"), "{e}");
//!     Ok(())
//! }
//! ```
//!
//! A backend that is not compiled in, or cannot start, is an error that says why and how
//! to get it — never a panic:
//!
//! ```
//! use backends::BackendKind;
//!
//! match backends::create(BackendKind::Wasm) {
//!     Ok(_) => unreachable!("the browser backend needs a browser"),
//!     Err(e) => assert!(e.to_string().contains("wasm"), "{e}"),
//! }
//! assert!("tpu".parse::<BackendKind>().is_err());
//! ```
//!
//! # How [`default_backend`] chooses
//!
//! 1. `BACKEND=<kind>` set: exactly that backend, or an error (unknown name, not compiled
//!    in, or it failed to start).
//! 2. Otherwise, with `webgpu` compiled in: the WebGPU backend when wgpu finds a hardware
//!    adapter on Vulkan, Metal or DX12, or when `BACKEND_ADAPTER` names an adapter. A
//!    software adapter (lavapipe, SwiftShader, WARP) is slower than the CPU backend, so it
//!    is used only when asked for (`BACKEND=webgpu`).
//! 3. Otherwise the fast CPU backend (`fast-cpu`). The oracle (`cpu`) is chosen only when
//!    it is the one CPU backend compiled in, or asked for with `BACKEND=cpu`: it is the
//!    reference every backend is checked against, plain f64 loops, not what to run.
//!
//! [`select`] returns the same choice together with the reason, for logs.

use std::fmt;
use std::str::FromStr;

pub use backend_api::half;
pub use backend_api::memory::{self, ElemType, Element};
pub use backend_api::{
    self, AttentionArgs, AttentionMask, BackendError, BackendFuture, BackendResult,
    BackendTranspose, BinaryOp, Buffer, ComputeBackend, ComputeBackendExt, Conv2dArgs, DType,
    HeadTensor, HostView, MapMode, MemoryInfo, QuantFormat, ReduceOp, RowOp, UnaryOp, UnaryParamOp,
};
#[cfg(feature = "cpu")]
pub use backend_cpu;
#[cfg(all(feature = "fast-cpu", not(target_arch = "wasm32")))]
pub use backend_fast_cpu;
#[cfg(feature = "wasm")]
pub use backend_wasm;
#[cfg(feature = "webgpu")]
pub use backend_webgpu;

/// The environment variable that overrides [`default_backend`]'s choice: `cpu`,
/// `webgpu` or `wasm` (case-insensitive); unset, empty or `auto` lets it choose.
pub const BACKEND_ENV: &str = "BACKEND";

/// The environment variable of the WebGPU backend that names an adapter (a substring of
/// its name or API, e.g. `nvidia`, `llvmpipe`, `vulkan`).
pub const ADAPTER_ENV: &str = "BACKEND_ADAPTER";

/// A backend this facade knows, whether or not it is compiled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendKind {
    /// The CPU oracle (feature `cpu`).
    Cpu,
    /// The fast CPU backend (feature `fast-cpu`, native targets).
    FastCpu,
    /// wgpu on Vulkan, Metal or DX12 (feature `webgpu`).
    WebGpu,
    /// WebGPU in a browser (feature `wasm`, target `wasm32-unknown-unknown`).
    Wasm,
}

impl BackendKind {
    /// Every kind, in order of preference when several could run.
    pub const ALL: [BackendKind; 4] = [
        BackendKind::WebGpu,
        BackendKind::Wasm,
        BackendKind::FastCpu,
        BackendKind::Cpu,
    ];

    /// The name used by [`BACKEND_ENV`], `FromStr` and the runner's `--backend`.
    pub const fn name(self) -> &'static str {
        match self {
            BackendKind::Cpu => "cpu",
            BackendKind::FastCpu => "fast-cpu",
            BackendKind::WebGpu => "webgpu",
            BackendKind::Wasm => "wasm",
        }
    }

    /// The cargo feature of this crate that compiles the backend in.
    pub const fn feature(self) -> &'static str {
        self.name()
    }

    /// True when the backend is compiled into this build.
    pub const fn is_compiled(self) -> bool {
        match self {
            BackendKind::Cpu => cfg!(feature = "cpu"),
            BackendKind::FastCpu => cfg!(all(feature = "fast-cpu", not(target_arch = "wasm32"))),
            BackendKind::WebGpu => cfg!(feature = "webgpu"),
            BackendKind::Wasm => cfg!(feature = "wasm"),
        }
    }

    /// The kinds compiled into this build.
    pub fn compiled() -> Vec<BackendKind> {
        Self::ALL.into_iter().filter(|k| k.is_compiled()).collect()
    }

    fn not_compiled(self) -> BackendError {
        BackendError::Unsupported(format!(
            "the {name} backend is not compiled in: enable the `{feature}` feature of the \
             `backends` crate (backends = {{ ..., features = [\"{feature}\"] }}); compiled in: {have}",
            name = self.name(),
            feature = self.feature(),
            have = names(&Self::compiled()),
        ))
    }
}

fn names(kinds: &[BackendKind]) -> String {
    if kinds.is_empty() {
        return "none".to_string();
    }
    kinds
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = BackendError;

    /// `fast-cpu` (also `fast_cpu`, `fastcpu`); `cpu` (also `oracle`); `webgpu` (also
    /// `wgpu`, `gpu`); `wasm` (also `browser`). Case-insensitive.
    fn from_str(s: &str) -> BackendResult<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" | "oracle" => Ok(BackendKind::Cpu),
            "fast-cpu" | "fast_cpu" | "fastcpu" => Ok(BackendKind::FastCpu),
            "webgpu" | "wgpu" | "gpu" => Ok(BackendKind::WebGpu),
            "wasm" | "browser" => Ok(BackendKind::Wasm),
            _ => Err(BackendError::InvalidArgument(format!(
                "unknown backend {s:?}: expected one of fast-cpu, cpu, webgpu, wasm"
            ))),
        }
    }
}

/// Creates and initialises a backend of `kind`.
///
/// Errors: `Unsupported` when the kind is not compiled in (the message names the feature
/// to enable) or cannot run here (the browser backend natively; a blocking `init` in a
/// browser — use [`create_async`]); otherwise whatever the backend's `init` returns, e.g.
/// `DeviceError` when wgpu finds no adapter.
pub fn create(kind: BackendKind) -> BackendResult<Box<dyn ComputeBackend>> {
    if !kind.is_compiled() {
        return Err(kind.not_compiled());
    }
    match kind {
        BackendKind::Cpu => create_cpu(),
        BackendKind::FastCpu => create_fast_cpu(),
        BackendKind::WebGpu => create_webgpu(),
        BackendKind::Wasm => Err(BackendError::Unsupported(
            if cfg!(target_arch = "wasm32") {
                "wasm: initialising blocks, and a browser cannot block: use \
                 backends::create_async(BackendKind::Wasm)"
            } else {
                "the wasm backend runs WebGPU inside a browser: build for \
                 wasm32-unknown-unknown and use backends::create_async(BackendKind::Wasm); \
                 natively, use the webgpu backend"
            }
            .to_string(),
        )),
    }
}

#[cfg(feature = "cpu")]
fn create_cpu() -> BackendResult<Box<dyn ComputeBackend>> {
    let mut b = backend_cpu::CpuBackend::new();
    b.init()?;
    Ok(Box::new(b))
}

#[cfg(not(feature = "cpu"))]
fn create_cpu() -> BackendResult<Box<dyn ComputeBackend>> {
    Err(BackendKind::Cpu.not_compiled())
}

#[cfg(all(feature = "fast-cpu", not(target_arch = "wasm32")))]
fn create_fast_cpu() -> BackendResult<Box<dyn ComputeBackend>> {
    let mut b = backend_fast_cpu::FastCpuBackend::new();
    b.init()?;
    Ok(Box::new(b))
}

#[cfg(not(all(feature = "fast-cpu", not(target_arch = "wasm32"))))]
fn create_fast_cpu() -> BackendResult<Box<dyn ComputeBackend>> {
    Err(BackendKind::FastCpu.not_compiled())
}

#[cfg(all(feature = "webgpu", not(target_arch = "wasm32")))]
fn create_webgpu() -> BackendResult<Box<dyn ComputeBackend>> {
    let mut b = backend_webgpu::WebGpuBackend::new();
    b.init()?;
    Ok(Box::new(b))
}

#[cfg(all(feature = "webgpu", target_arch = "wasm32"))]
fn create_webgpu() -> BackendResult<Box<dyn ComputeBackend>> {
    Err(BackendError::Unsupported(
        "webgpu: initialising blocks, and a browser cannot block: use backends::create_async"
            .to_string(),
    ))
}

#[cfg(not(feature = "webgpu"))]
fn create_webgpu() -> BackendResult<Box<dyn ComputeBackend>> {
    Err(BackendKind::WebGpu.not_compiled())
}

/// Creates and initialises a backend of `kind` without blocking: the way to start a GPU
/// backend in a browser, where `Wasm` is `backend_wasm::WasmBackend::open(None)` (WebGPU
/// without a canvas, or the fast CPU engine when the browser has no WebGPU adapter or
/// only a software one: its name says which) and `WebGpu` the plain `WebGpuBackend`.
/// Natively it is [`create`] (and `Wasm` is `Unsupported`).
pub async fn create_async(kind: BackendKind) -> BackendResult<Box<dyn ComputeBackend>> {
    #[cfg(all(feature = "wasm", target_arch = "wasm32"))]
    if kind == BackendKind::Wasm {
        let b = backend_wasm::WasmBackend::open(None)
            .await
            .map_err(BackendError::from)?;
        return Ok(Box::new(b));
    }
    #[cfg(all(feature = "webgpu", target_arch = "wasm32"))]
    if kind == BackendKind::WebGpu {
        let mut b = backend_webgpu::WebGpuBackend::new();
        b.init_async().await?;
        return Ok(Box::new(b));
    }
    create(kind)
}

/// A backend chosen by [`select`], with the reason it was chosen.
pub struct Selection {
    /// What was chosen.
    pub kind: BackendKind,
    /// The initialised backend.
    pub backend: Box<dyn ComputeBackend>,
    /// Why, in words for a log line (e.g. `"BACKEND=cpu"`, or the adapter that was found).
    pub reason: String,
}

impl fmt::Debug for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Selection")
            .field("kind", &self.kind)
            .field("backend", &self.backend.name())
            .field("reason", &self.reason)
            .finish()
    }
}

/// The best backend available, initialised: see [the crate docs](crate#how-default_backend-chooses).
///
/// Errors: an unknown or unavailable `BACKEND`, or no backend that starts.
pub fn default_backend() -> BackendResult<Box<dyn ComputeBackend>> {
    select().map(|s| s.backend)
}

/// [`default_backend`], with the kind and the reason for the choice.
pub fn select() -> BackendResult<Selection> {
    let request = backend_api::env::var(BACKEND_ENV);
    select_with(request.as_deref())
}

/// The choice [`select`] makes when [`BACKEND_ENV`] holds `request` (`None`: unset).
pub fn select_with(request: Option<&str>) -> BackendResult<Selection> {
    let request = request.map(str::trim).filter(|r| !r.is_empty());
    if let Some(r) = request.filter(|r| !r.eq_ignore_ascii_case("auto")) {
        let kind: BackendKind = r.parse().map_err(|_| {
            BackendError::InvalidArgument(format!(
                "{BACKEND_ENV}={r:?}: expected one of fast-cpu, cpu, webgpu, wasm, auto"
            ))
        })?;
        let backend = create(kind).map_err(|e| with_context(e, &format!("{BACKEND_ENV}={r}")))?;
        return Ok(Selection {
            kind,
            backend,
            reason: format!("{BACKEND_ENV}={r}"),
        });
    }
    let probe = probe_adapters();
    let plan = plan(
        &BackendKind::compiled(),
        &probe,
        backend_api::env::var(ADAPTER_ENV).as_deref(),
    );
    let mut tried = Vec::new();
    for (kind, reason) in plan {
        match create(kind) {
            Ok(backend) => {
                let reason = if tried.is_empty() {
                    reason
                } else {
                    format!("{reason} ({})", tried.join("; "))
                };
                return Ok(Selection {
                    kind,
                    backend,
                    reason,
                });
            }
            Err(e) => tried.push(format!("{kind} failed: {e}")),
        }
    }
    Err(BackendError::Unsupported(if tried.is_empty() {
        format!(
            "no backend can run here: compiled in: {}",
            names(&BackendKind::compiled())
        )
    } else {
        format!("no backend could start: {}", tried.join("; "))
    }))
}

fn with_context(e: BackendError, context: &str) -> BackendError {
    match e {
        BackendError::Unsupported(m) => BackendError::Unsupported(format!("{context}: {m}")),
        BackendError::DeviceError(m) => BackendError::DeviceError(format!("{context}: {m}")),
        BackendError::InvalidArgument(m) => {
            BackendError::InvalidArgument(format!("{context}: {m}"))
        }
        BackendError::OutOfMemory(m) => BackendError::OutOfMemory(format!("{context}: {m}")),
        other => other,
    }
}

/// The adapters wgpu finds, as (label, is a hardware adapter on a native API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Probe {
    hardware: Vec<String>,
    other: Vec<String>,
}

#[cfg(all(feature = "webgpu", not(target_arch = "wasm32")))]
fn probe_adapters() -> Probe {
    let adapters = backend_webgpu::list_adapters(&backend_webgpu::WebGpuOptions::default());
    classify(
        adapters
            .iter()
            .map(|a| (a.label(), a.is_software(), a.backend.as_str())),
    )
}

/// Sorts adapters, given as (label, is software, API), into hardware adapters on a native
/// API and the rest (software adapters, and GL: wgpu's compatibility path).
#[cfg_attr(
    not(any(test, all(feature = "webgpu", not(target_arch = "wasm32")))),
    expect(dead_code, reason = "only the native webgpu build probes adapters")
)]
fn classify<'a>(adapters: impl IntoIterator<Item = (String, bool, &'a str)>) -> Probe {
    let mut p = Probe::default();
    for (label, software, api) in adapters {
        if !software && api != "Gl" {
            p.hardware.push(label);
        } else {
            p.other.push(label);
        }
    }
    p
}

#[cfg(not(all(feature = "webgpu", not(target_arch = "wasm32"))))]
fn probe_adapters() -> Probe {
    Probe::default()
}

/// The backends to try, in order, each with the reason it would be chosen. Pure, so the
/// selection rules are unit-tested without touching the environment or a GPU.
fn plan(
    compiled: &[BackendKind],
    probe: &Probe,
    adapter_env: Option<&str>,
) -> Vec<(BackendKind, String)> {
    let mut plan = Vec::new();
    let native_gpu = compiled.contains(&BackendKind::WebGpu) && !cfg!(target_arch = "wasm32");
    if native_gpu {
        if let Some(a) = adapter_env.map(str::trim).filter(|a| !a.is_empty()) {
            plan.push((
                BackendKind::WebGpu,
                format!("webgpu: {ADAPTER_ENV}={a} asks for a GPU adapter"),
            ));
        } else if let Some(first) = probe.hardware.first() {
            plan.push((
                BackendKind::WebGpu,
                format!("webgpu: hardware adapter {first} found"),
            ));
        }
    }
    let cpus: Vec<BackendKind> = [BackendKind::FastCpu, BackendKind::Cpu]
        .into_iter()
        .filter(|k| compiled.contains(k))
        .collect();
    if let Some(&first) = cpus.first() {
        let name = first.name();
        let why = if !compiled.contains(&BackendKind::WebGpu) {
            format!("{name}: no GPU backend compiled in (enable feature `webgpu` for GPUs)")
        } else if !plan.is_empty() {
            format!("{name}: fallback")
        } else if probe.other.is_empty() {
            format!("{name}: wgpu found no GPU adapter")
        } else {
            format!(
                "{name}: wgpu found only software or GL adapters ({}), slower than the CPU \
                 backends; {BACKEND_ENV}=webgpu uses them",
                probe.other.join(", ")
            )
        };
        let why = if first == BackendKind::Cpu {
            format!(
                "{why}; this is the oracle (plain f64 loops): enable feature `fast-cpu` for \
                 the fast CPU backend"
            )
        } else {
            why
        };
        plan.push((first, why));
        if cpus.len() > 1 {
            plan.push((
                BackendKind::Cpu,
                "cpu: the fast CPU backend did not start".into(),
            ));
        }
    } else if native_gpu && plan.is_empty() {
        // No CPU backend to fall back to: any adapter is better than none.
        plan.push((
            BackendKind::WebGpu,
            "webgpu: the only backend compiled in".to_string(),
        ));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(plan: &[(BackendKind, String)]) -> Vec<BackendKind> {
        plan.iter().map(|(k, _)| *k).collect()
    }

    fn probe(hardware: &[&str], other: &[&str]) -> Probe {
        Probe {
            hardware: hardware.iter().map(|s| s.to_string()).collect(),
            other: other.iter().map(|s| s.to_string()).collect(),
        }
    }

    use BackendKind::{Cpu, FastCpu, WebGpu};

    #[test]
    fn without_a_gpu_the_fast_cpu_backend_is_chosen_never_the_oracle_first() {
        let software = probe(&[], &["llvmpipe (Vulkan)"]);
        for compiled in [&[WebGpu, FastCpu, Cpu][..], &[FastCpu, Cpu]] {
            let p = plan(compiled, &software, None);
            assert_eq!(kinds(&p), [FastCpu, Cpu], "{p:?}");
            assert!(p[0].1.starts_with("fast-cpu"), "{}", p[0].1);
        }
        let p = plan(
            &[WebGpu, FastCpu, Cpu],
            &probe(&["NVIDIA H200 (Vulkan)"], &[]),
            None,
        );
        assert_eq!(kinds(&p), [WebGpu, FastCpu, Cpu]);
        // The oracle alone is chosen, and says what it is.
        let p = plan(&[WebGpu, Cpu], &software, None);
        assert_eq!(kinds(&p), [Cpu]);
        assert!(
            p[0].1.contains("oracle") && p[0].1.contains("fast-cpu"),
            "{}",
            p[0].1
        );
        assert_eq!("fast_cpu".parse::<BackendKind>().unwrap(), FastCpu);
        assert_eq!("oracle".parse::<BackendKind>().unwrap(), Cpu);
    }

    #[test]
    fn names_parse_back_and_unknown_names_are_errors() {
        for k in BackendKind::ALL {
            assert_eq!(k.name().parse::<BackendKind>().unwrap(), k);
            assert_eq!(k.name().to_uppercase().parse::<BackendKind>().unwrap(), k);
        }
        assert_eq!(" wgpu ".parse::<BackendKind>().unwrap(), WebGpu);
        let e = "cuda".parse::<BackendKind>().unwrap_err();
        assert!(matches!(e, BackendError::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains("fast-cpu, cpu, webgpu, wasm"), "{e}");
    }

    #[test]
    fn only_hardware_adapters_on_native_apis_count_as_gpus() {
        let p = classify([
            ("llvmpipe (Vulkan)".to_string(), true, "Vulkan"),
            ("NVIDIA H200/PCIe/SSE2 (Gl)".to_string(), false, "Gl"),
            ("NVIDIA H200 (Vulkan)".to_string(), false, "Vulkan"),
            ("Apple M2 (Metal)".to_string(), false, "Metal"),
        ]);
        assert_eq!(p.hardware, ["NVIDIA H200 (Vulkan)", "Apple M2 (Metal)"]);
        assert_eq!(p.other, ["llvmpipe (Vulkan)", "NVIDIA H200/PCIe/SSE2 (Gl)"]);
    }

    #[test]
    fn a_hardware_adapter_is_preferred_with_the_cpu_as_fallback() {
        let p = plan(&[WebGpu, Cpu], &probe(&["NVIDIA H200 (Vulkan)"], &[]), None);
        assert_eq!(kinds(&p), [WebGpu, Cpu]);
        assert!(p[0].1.contains("NVIDIA H200"), "{}", p[0].1);
    }

    #[test]
    fn software_adapters_are_not_chosen_automatically() {
        let p = plan(
            &[WebGpu, Cpu],
            &probe(&[], &["llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan)"]),
            None,
        );
        assert_eq!(kinds(&p), [Cpu]);
        assert!(
            p[0].1.contains("llvmpipe") && p[0].1.contains("BACKEND=webgpu"),
            "{}",
            p[0].1
        );
    }

    #[test]
    fn the_adapter_variable_asks_for_the_gpu() {
        let p = plan(
            &[WebGpu, Cpu],
            &probe(&[], &["llvmpipe (Vulkan)"]),
            Some("llvmpipe"),
        );
        assert_eq!(kinds(&p), [WebGpu, Cpu]);
        let p = plan(&[WebGpu, Cpu], &probe(&[], &[]), Some("  "));
        assert_eq!(kinds(&p), [Cpu], "a blank variable is unset");
    }

    #[test]
    fn without_webgpu_compiled_in_the_cpu_is_chosen_whatever_the_adapters() {
        let p = plan(
            &[Cpu],
            &probe(&["NVIDIA H200 (Vulkan)"], &[]),
            Some("nvidia"),
        );
        assert_eq!(kinds(&p), [Cpu]);
        assert!(p[0].1.contains("feature `webgpu`"), "{}", p[0].1);
    }

    #[test]
    fn without_the_cpu_any_adapter_is_tried() {
        let p = plan(&[WebGpu], &probe(&[], &["llvmpipe (Vulkan)"]), None);
        if cfg!(target_arch = "wasm32") {
            assert!(p.is_empty());
        } else {
            assert_eq!(kinds(&p), [WebGpu]);
        }
        assert!(plan(&[], &probe(&[], &[]), None).is_empty());
    }

    #[test]
    fn an_override_names_exactly_one_backend() {
        let s = select_with(Some("cpu"));
        if Cpu.is_compiled() {
            let s = s.unwrap();
            assert_eq!(s.kind, Cpu);
            assert_eq!(s.backend.name(), "cpu");
            assert!(s.backend.is_initialized());
            assert_eq!(s.reason, "BACKEND=cpu");
        } else {
            assert!(matches!(s, Err(BackendError::Unsupported(_))));
        }
    }

    #[test]
    fn an_unknown_override_is_an_error_naming_the_choices() {
        let e = select_with(Some("tpu")).unwrap_err();
        assert!(matches!(e, BackendError::InvalidArgument(_)), "{e}");
        let m = e.to_string();
        assert!(
            m.contains("BACKEND=\"tpu\"") && m.contains("cpu, webgpu, wasm, auto"),
            "{m}"
        );
    }

    #[test]
    fn blank_and_auto_mean_choose() {
        for r in [None, Some(""), Some(" auto ")] {
            match select_with(r) {
                Ok(s) => {
                    assert!(s.backend.is_initialized());
                    assert!(!s.reason.is_empty());
                }
                Err(e) => {
                    assert!(BackendKind::compiled().is_empty(), "{e}");
                    assert!(e.to_string().contains("compiled in: none"), "{e}");
                }
            }
        }
    }

    #[test]
    fn the_browser_backend_natively_is_a_clear_error() {
        let e = create(BackendKind::Wasm)
            .err()
            .expect("wasm cannot run natively");
        assert!(matches!(e, BackendError::Unsupported(_)), "{e}");
        let m = e.to_string();
        if BackendKind::Wasm.is_compiled() {
            assert!(m.contains("wasm32-unknown-unknown"), "{m}");
        } else {
            assert!(m.contains("enable the `wasm` feature"), "{m}");
        }
        let e = select_with(Some("wasm")).expect_err("wasm cannot run natively");
        assert!(matches!(e, BackendError::Unsupported(_)), "{e}");
        assert!(e.to_string().contains("BACKEND=wasm"), "{e}");
    }

    #[test]
    fn a_kind_not_compiled_in_names_the_feature() {
        for k in BackendKind::ALL.into_iter().filter(|k| !k.is_compiled()) {
            let e = create(k).err().expect("not compiled in");
            let m = e.to_string();
            assert!(
                m.contains(&format!("enable the `{}` feature", k.feature())),
                "{m}"
            );
        }
        assert_eq!(
            BackendKind::compiled().contains(&Cpu),
            cfg!(feature = "cpu")
        );
        assert_eq!(
            BackendKind::compiled().contains(&WebGpu),
            cfg!(feature = "webgpu")
        );
    }

    #[test]
    fn created_backends_are_initialised() {
        let b = create(Cpu);
        if Cpu.is_compiled() {
            let b = b.unwrap();
            assert!(b.is_initialized());
            let p = b.upload(&[1.0f32, 2.0]).unwrap();
            assert_eq!(b.copy_dtoh_vec::<f32>(p, 2).unwrap(), [1.0, 2.0]);
            b.free(p).unwrap();
        }
    }
}
