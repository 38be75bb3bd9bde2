//! A Wasm guest whose linear memory the backend computes on: the guest fills matrices at
//! its own addresses, calls `gemm`, `unary`, `binary`, `softmax`, `attention` imported from
//! the module `"backend"` with those addresses, and reads the results at the same ones.
//!
//! - On the fast CPU backend ([`Device::in_place`]) the guest's memory is lent to the
//!   backend for each call ([`FastCpuBackend::with_host_memory`]): guest address `p` is
//!   device address `base + p`, and nothing is copied ([`Copies::bytes`] stays 0).
//! - On a Vulkan adapter with `VK_EXT_external_memory_host` ([`Device::in_place_webgpu`])
//!   the guest's pages are imported as device memory for each call
//!   ([`WebGpuBackend::with_host_memory`]): kernels read and write them in place.
//! - On any other backend ([`Device::staged`]) each operand is copied to a device
//!   allocation and each output back: the fallback, whose bytes [`Copies`] counts, with the
//!   backend's own staging copies (`memory_info().staged_bytes`) on top.
//!
//! Guest input is untrusted. Every pointer and size is checked before the backend sees it
//! (the operand's bytes inside the guest's memory as it is at this call, f32 alignment,
//! an output overlapping an input only exactly), and refused with the op, the operand and
//! the range; the backend then validates the call as any other. A refused call returns a
//! non-zero [`code`] to the guest and writes nothing. The guest runs under a fuel budget
//! (no hang) and a memory cap.
//!
//! The guest's ABI (all `i32`; results are [`code`]s):
//!
//! | import | does |
//! |---|---|
//! | `gemm(m, n, k, a, b, c)` | row-major `C[m,n] = A[m,k] · B[k,n]` |
//! | `unary(op, x, y, n)` | `y = op(x)`, `op` the index of a [`UnaryOp`] in [`UnaryOp::ALL`] |
//! | `binary(op, a, b, y, n)` | `y = a op b`, `op` an index in [`BinaryOp::ALL`] |
//! | `softmax(x, y, rows, cols)` | row-wise softmax |
//! | `attention(batch, heads, kv_heads, seq_q, seq_kv, dim, causal, q, k, v, o)` | GQA attention, `[b, h, s, d]` tensors, scale `1/sqrt(d)` |
//! | `last_error(ptr, cap)` | copies the last error's message (UTF-8, cut at `cap`) to `ptr`; returns its length, or -1 if `[ptr, ptr + cap)` is not guest memory |

use std::path::{Path, PathBuf};
use std::process::Command;

use backend_api::{
    AttentionArgs, BackendError, BackendResult, BackendTranspose, BinaryOp, ComputeBackend,
    HeadTensor, Operand, UnaryOp, fmt_range,
};
pub use backend_fast_cpu::FastCpuBackend;
pub use backend_webgpu::WebGpuBackend;
use wasmi::{Caller, Config, Engine, Extern, Instance, Linker, Memory, Module, Store};

/// What host functions return to the guest.
pub mod code {
    /// The call ran.
    pub const OK: i32 = 0;
    /// A pointer, size, shape or op code was refused (nothing was written).
    pub const INVALID_ARGUMENT: i32 = 1;
    /// The backend does not do this.
    pub const UNSUPPORTED: i32 = 2;
    /// The device memory the call needs could not be had.
    pub const OUT_OF_MEMORY: i32 = 3;
    /// The device failed.
    pub const DEVICE: i32 = 4;
    /// The backend was not initialised.
    pub const NOT_INITIALIZED: i32 = 5;

    pub(crate) fn of(e: &backend_api::BackendError) -> i32 {
        use backend_api::BackendError as E;
        match e {
            E::InvalidArgument(_) => INVALID_ARGUMENT,
            E::Unsupported(_) => UNSUPPORTED,
            E::OutOfMemory(_) => OUT_OF_MEMORY,
            E::DeviceError(_) => DEVICE,
            E::NotInitialized => NOT_INITIALIZED,
            _ => DEVICE,
        }
    }
}

/// A backend that can use host memory in place for the length of a call.
pub trait LendMemory: Send + Sync {
    /// The backend.
    fn backend(&self) -> &dyn ComputeBackend;
    /// Runs `f` with `memory` lent as one allocation at the address `f` receives.
    fn lend(&self, memory: &mut [u8], f: &mut dyn FnMut(u64)) -> BackendResult<()>;
}

impl LendMemory for FastCpuBackend {
    fn backend(&self) -> &dyn ComputeBackend {
        self
    }

    fn lend(&self, memory: &mut [u8], f: &mut dyn FnMut(u64)) -> BackendResult<()> {
        self.with_host_memory(memory, f)
    }
}

impl LendMemory for WebGpuBackend {
    fn backend(&self) -> &dyn ComputeBackend {
        self
    }

    fn lend(&self, memory: &mut [u8], f: &mut dyn FnMut(u64)) -> BackendResult<()> {
        self.with_host_memory(memory, f)
    }
}

/// The backend a guest's calls run on, and how its memory reaches it.
pub enum Device {
    /// The guest's memory is the device memory: no copies.
    InPlace(Box<dyn LendMemory>),
    /// Operands copied to device allocations and outputs back: any backend.
    Staged(Box<dyn ComputeBackend>),
}

impl Device {
    /// The fast CPU backend, computing on the guest's memory in place.
    pub fn in_place() -> BackendResult<Self> {
        let mut b = FastCpuBackend::new();
        b.init()?;
        Ok(Device::InPlace(Box::new(b)))
    }

    /// The WebGPU backend on the adapter the environment selects, importing the guest's
    /// pages as device memory; `Unsupported` where the adapter cannot import host memory
    /// (not Vulkan, or no `VK_EXT_external_memory_host`).
    pub fn in_place_webgpu() -> BackendResult<Self> {
        let mut b = WebGpuBackend::new();
        b.init()?;
        if !b.host_import_supported() {
            return Err(BackendError::Unsupported(format!(
                "{}: cannot import host memory (VK_EXT_external_memory_host)",
                b.name()
            )));
        }
        Ok(Device::InPlace(Box::new(b)))
    }

    /// `backend` (initialised), reached by copying operands in and results out.
    pub fn staged(backend: Box<dyn ComputeBackend>) -> Self {
        Device::Staged(backend)
    }

    /// The backend itself.
    pub fn backend(&self) -> &dyn ComputeBackend {
        match self {
            Device::InPlace(b) => b.backend(),
            Device::Staged(b) => b.as_ref(),
        }
    }

    /// Whether guest memory reaches the backend without copies.
    pub fn is_zero_copy(&self) -> bool {
        matches!(self, Device::InPlace(_))
    }
}

/// Bytes copied between the guest's memory and the device, summed over calls.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copies {
    /// Host functions that ran (refused calls not counted).
    pub calls: u64,
    /// Guest bytes copied to device allocations.
    pub to_device: u64,
    /// Device bytes copied back into the guest's memory.
    pub to_guest: u64,
    /// Bytes the backend staged through buffers of its own on the way
    /// (`memory_info().staged_bytes`).
    pub staged: u64,
}

impl Copies {
    /// Every byte copied.
    pub fn bytes(&self) -> u64 {
        self.to_device + self.to_guest + self.staged
    }
}

/// A guest failed to load or to run.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The module was refused, an import is missing, the guest trapped or ran out of fuel.
    #[error("wasm: {0}")]
    Wasm(#[from] wasmi::Error),
    /// The guest exports no linear memory named `memory`.
    #[error("the guest exports no memory named `memory`")]
    NoMemory,
}

/// What the host functions share through the store.
struct HostState {
    device: Device,
    copies: Copies,
    last_error: Option<BackendError>,
    limits: wasmi::StoreLimits,
}

/// A loaded guest module and the device its calls run on.
pub struct Guest {
    store: Store<HostState>,
    instance: Instance,
    memory: Memory,
    fuel: u64,
}

/// Default fuel for one export call (about as many Wasm instructions).
pub const DEFAULT_FUEL: u64 = 2_000_000_000;

/// Default cap on the guest's linear memory.
pub const DEFAULT_MEMORY_CAP: usize = 256 << 20;

impl Guest {
    /// Instantiates the module `wasm` (binary) with the `"backend"` imports on `device`.
    pub fn load(wasm: &[u8], device: Device) -> Result<Self, GuestError> {
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm)?;
        let state = HostState {
            device,
            copies: Copies::default(),
            last_error: None,
            limits: wasmi::StoreLimitsBuilder::new()
                .memory_size(DEFAULT_MEMORY_CAP)
                .instances(1)
                .build(),
        };
        let mut store = Store::new(&engine, state);
        store.limiter(|s| &mut s.limits);
        let mut linker = Linker::<HostState>::new(&engine);
        link(&mut linker)?;
        store.set_fuel(DEFAULT_FUEL)?;
        let instance = linker.instantiate_and_start(&mut store, &module)?;
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or(GuestError::NoMemory)?;
        Ok(Guest {
            store,
            instance,
            memory,
            fuel: DEFAULT_FUEL,
        })
    }

    /// Calls the export `name`, which takes `params` and returns `R`, with a fresh fuel
    /// budget.
    pub fn call<P, R>(&mut self, name: &str, params: P) -> Result<R, GuestError>
    where
        P: wasmi::WasmParams,
        R: wasmi::WasmResults,
    {
        self.store.set_fuel(self.fuel)?;
        let f = self.instance.get_typed_func::<P, R>(&self.store, name)?;
        Ok(f.call(&mut self.store, params)?)
    }

    /// Sets the fuel each later [`call`](Self::call) starts with.
    pub fn set_fuel(&mut self, fuel: u64) {
        self.fuel = fuel;
    }

    /// The guest's memory as it is now.
    pub fn memory(&self) -> &[u8] {
        self.memory.data(&self.store)
    }

    /// Bytes copied so far.
    pub fn copies(&self) -> Copies {
        self.store.data().copies
    }

    /// The error of the last refused host call, if any call was refused.
    pub fn last_error(&self) -> Option<&BackendError> {
        self.store.data().last_error.as_ref()
    }

    /// The device the calls run on.
    pub fn device(&self) -> &Device {
        &self.store.data().device
    }
}

/// Environment variable naming a prebuilt demo guest (`.wasm`) that [`demo_guest`] reads
/// instead of building one (for machines without cargo, such as a lent GPU host).
pub const DEMO_GUEST_ENV: &str = "WASM_HOST_DEMO_GUEST";

/// The demo guest's module: the file `WASM_HOST_DEMO_GUEST` names, else
/// [`build_guest`] of [`demo_guest_dir`].
pub fn demo_guest() -> std::io::Result<Vec<u8>> {
    match std::env::var_os(DEMO_GUEST_ENV) {
        Some(path) => std::fs::read(path),
        None => build_guest(&demo_guest_dir(), None),
    }
}

/// The demo guest's crate (`wasm-host/guest`), built by [`build_guest`].
pub fn demo_guest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guest")
}

/// Builds the guest crate at `crate_dir` for `wasm32-unknown-unknown` (release) with the
/// cargo that runs this process (`$CARGO`, else `cargo`), into `target_dir` (default:
/// `$CARGO_TARGET_DIR/wasm-guest`, else `target/wasm-guest` of this workspace: a target
/// directory of its own, so that it never waits for the lock of the build running this),
/// and returns the module's bytes. Needs the `wasm32-unknown-unknown` target
/// (`rustup target add wasm32-unknown-unknown`, which `scripts/setup` does).
pub fn build_guest(crate_dir: &Path, target_dir: Option<&Path>) -> std::io::Result<Vec<u8>> {
    let target_dir = target_dir.map(Path::to_path_buf).unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
            .join("wasm-guest")
    });
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = crate_dir.join("Cargo.toml");
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "cargo build of {} for wasm32-unknown-unknown failed ({status})",
            manifest.display()
        )));
    }
    let toml = std::fs::read_to_string(&manifest)?;
    let name = toml
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .ok_or_else(|| std::io::Error::other(format!("no package name in {}", manifest.display())))?
        .replace('-', "_");
    std::fs::read(
        target_dir
            .join("wasm32-unknown-unknown/release")
            .join(format!("{name}.wasm")),
    )
}

/// One operand of a host call: guest bytes `[ptr, ptr + bytes)` (`bytes` may be 0 here,
/// unlike in the backend's checked operands), and whether the call writes them.
#[derive(Debug, Clone, Copy)]
struct Span {
    range: Operand,
    output: bool,
}

fn invalid(msg: String) -> BackendError {
    BackendError::InvalidArgument(msg)
}

/// `dims` f32 values as bytes, refused if the product overflows.
fn f32_bytes(op: &str, name: &str, dims: &[u32]) -> BackendResult<u64> {
    dims.iter()
        .try_fold(4u64, |acc, &d| acc.checked_mul(u64::from(d)))
        .ok_or_else(|| {
            invalid(format!(
                "{op}: {name} of {dims:?} f32 values overflows 64 bits"
            ))
        })
}

fn input(op: &str, name: &'static str, ptr: i32, dims: &[u32]) -> BackendResult<Span> {
    Ok(Span {
        range: Operand {
            name,
            ptr: u64::from(ptr as u32),
            bytes: f32_bytes(op, name, dims)?,
        },
        output: false,
    })
}

fn output(op: &str, name: &'static str, ptr: i32, dims: &[u32]) -> BackendResult<Span> {
    Ok(Span {
        output: true,
        ..input(op, name, ptr, dims)?
    })
}

/// Checks every span against the guest's memory of `len` bytes as it is now.
fn check_spans(op: &str, spans: &[Span], len: usize) -> BackendResult<()> {
    for s in spans.iter().map(|s| &s.range) {
        if s.end() > len as u64 {
            return Err(invalid(format!(
                "{op}: {} {} ({} bytes) lies outside the guest's memory of {len} bytes",
                s.name,
                fmt_range(s.ptr, s.bytes),
                s.bytes
            )));
        }
        if s.ptr % 4 != 0 {
            return Err(invalid(format!(
                "{op}: {} at {:#x} is not 4-byte aligned for f32",
                s.name, s.ptr
            )));
        }
    }
    let ranges = |output: bool| spans.iter().filter(move |s| s.output == output);
    for o in ranges(true).map(|s| &s.range) {
        for i in ranges(false).map(|s| &s.range) {
            let touch = o.bytes > 0 && i.bytes > 0 && o.overlaps(i);
            if touch && !o.same_range(i) {
                return Err(invalid(format!(
                    "{op}: {} {} partly overlaps {} {}",
                    o.name,
                    fmt_range(o.ptr, o.bytes),
                    i.name,
                    fmt_range(i.ptr, i.bytes)
                )));
            }
        }
    }
    Ok(())
}

/// Runs one host call: checks `spans` against the guest's memory, hands `run` the
/// operands' device addresses (in the order of `spans`), and returns the guest's code.
fn host_call(
    caller: &mut Caller<'_, HostState>,
    op: &'static str,
    spans: BackendResult<Vec<Span>>,
    run: impl FnOnce(&dyn ComputeBackend, &[u64]) -> BackendResult<()>,
) -> i32 {
    let result = match caller.get_export("memory").and_then(Extern::into_memory) {
        None => Err(invalid(format!("{op}: the guest exports no memory"))),
        Some(memory) => {
            let (bytes, state) = memory.data_and_store_mut(&mut *caller);
            spans
                .and_then(|spans| {
                    check_spans(op, &spans, bytes.len())?;
                    Ok(spans)
                })
                .and_then(|spans| {
                    // What the backend stages on the way, on either path.
                    let staged_before = state.device.backend().memory_info()?.staged_bytes;
                    let result = match &state.device {
                        Device::InPlace(lender) => in_place(lender.as_ref(), &spans, bytes, run),
                        Device::Staged(backend) => {
                            staged(backend.as_ref(), &spans, bytes, &mut state.copies, run)
                        }
                    };
                    let staged_after = state.device.backend().memory_info()?.staged_bytes;
                    state.copies.staged += staged_after.saturating_sub(staged_before);
                    result
                })
                .map(|()| state.copies.calls += 1)
        }
    };
    match result {
        Ok(()) => code::OK,
        Err(e) => {
            let c = code::of(&e);
            caller.data_mut().last_error = Some(e);
            c
        }
    }
}

/// The guest's memory lent to the backend for the call: guest address `p` is `base + p`.
fn in_place(
    lender: &dyn LendMemory,
    spans: &[Span],
    guest: &mut [u8],
    run: impl FnOnce(&dyn ComputeBackend, &[u64]) -> BackendResult<()>,
) -> BackendResult<()> {
    let mut run = Some(run);
    let mut result = Ok(());
    lender.lend(guest, &mut |base| {
        let ptrs: Vec<u64> = spans.iter().map(|s| base + s.range.ptr).collect();
        if let Some(run) = run.take() {
            result = run(lender.backend(), &ptrs);
        }
    })?;
    result
}

/// The copying fallback: one device allocation per distinct operand range (an output
/// that is exactly an input shares its allocation), inputs copied in, outputs copied back
/// into the guest only when the op succeeded, every allocation freed.
fn staged(
    backend: &dyn ComputeBackend,
    spans: &[Span],
    guest: &mut [u8],
    copies: &mut Copies,
    run: impl FnOnce(&dyn ComputeBackend, &[u64]) -> BackendResult<()>,
) -> BackendResult<()> {
    let mut allocs: Vec<(Operand, u64)> = Vec::new(); // (guest range, device ptr)
    let result = (|| {
        let mut ptrs = Vec::with_capacity(spans.len());
        for s in spans {
            let r = &s.range;
            let known = allocs.iter().find(|(g, _)| g.same_range(r)).map(|a| a.1);
            let dev = match known {
                Some(d) => d,
                None => {
                    let d = backend.alloc(r.bytes as usize)?;
                    allocs.push((*r, d));
                    d
                }
            };
            let is_input = !s.output || spans.iter().any(|i| !i.output && i.range.same_range(r));
            if is_input && known.is_none() && r.bytes > 0 {
                backend.copy_htod(dev, &guest[r.ptr as usize..r.end() as usize])?;
                copies.to_device += r.bytes;
            }
            ptrs.push(dev);
        }
        run(backend, &ptrs)?;
        for (s, &dev) in spans.iter().zip(&ptrs) {
            let r = &s.range;
            if s.output && r.bytes > 0 {
                backend.copy_dtoh(&mut guest[r.ptr as usize..r.end() as usize], dev)?;
                copies.to_guest += r.bytes;
            }
        }
        Ok(())
    })();
    for (_, d) in allocs {
        // A free can only fail for a device error, which the result already reports.
        let _ = backend.free(d);
    }
    result
}

fn op_code<T: Copy>(op: &str, all: &[T], code: i32) -> BackendResult<T> {
    usize::try_from(code)
        .ok()
        .and_then(|i| all.get(i).copied())
        .ok_or_else(|| {
            invalid(format!(
                "{op}: op code {code} is not in 0..{} (the index of the op in its enum's ALL)",
                all.len()
            ))
        })
}

/// A dimension from the guest: any `u32`.
fn dim(v: i32) -> u32 {
    v as u32
}

fn link(linker: &mut Linker<HostState>) -> Result<(), wasmi::Error> {
    linker.func_wrap(
        "backend",
        "gemm",
        |mut caller: Caller<'_, HostState>, m: i32, n: i32, k: i32, a: i32, b: i32, c: i32| {
            let (m, n, k) = (dim(m), dim(n), dim(k));
            let spans = (|| {
                Ok(vec![
                    input("gemm", "a", a, &[m, k])?,
                    input("gemm", "b", b, &[k, n])?,
                    output("gemm", "c", c, &[m, n])?,
                ])
            })();
            host_call(&mut caller, "gemm", spans, |be, p| {
                let (m, n, k) = (m as usize, n as usize, k as usize);
                // Row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ.
                be.gemm(
                    BackendTranspose::NoTrans,
                    BackendTranspose::NoTrans,
                    n,
                    m,
                    k,
                    1.0,
                    p[1],
                    n.max(1),
                    p[0],
                    k.max(1),
                    0.0,
                    p[2],
                    n.max(1),
                )
            })
        },
    )?;
    linker.func_wrap(
        "backend",
        "unary",
        |mut caller: Caller<'_, HostState>, op: i32, x: i32, y: i32, n: i32| {
            let n = dim(n);
            let op = op_code("unary", UnaryOp::ALL, op);
            let spans = op.clone().and_then(|_| {
                Ok(vec![
                    input("unary", "x", x, &[n])?,
                    output("unary", "y", y, &[n])?,
                ])
            });
            host_call(&mut caller, "unary", spans, |be, p| {
                be.unary(op?, p[0], p[1], n as usize)
            })
        },
    )?;
    linker.func_wrap(
        "backend",
        "binary",
        |mut caller: Caller<'_, HostState>, op: i32, a: i32, b: i32, y: i32, n: i32| {
            let n = dim(n);
            let op = op_code("binary", BinaryOp::ALL, op);
            let spans = op.clone().and_then(|_| {
                Ok(vec![
                    input("binary", "a", a, &[n])?,
                    input("binary", "b", b, &[n])?,
                    output("binary", "y", y, &[n])?,
                ])
            });
            host_call(&mut caller, "binary", spans, |be, p| {
                be.binary(op?, p[0], p[1], p[2], n as usize)
            })
        },
    )?;
    linker.func_wrap(
        "backend",
        "softmax",
        |mut caller: Caller<'_, HostState>, x: i32, y: i32, rows: i32, cols: i32| {
            let (rows, cols) = (dim(rows), dim(cols));
            let spans = (|| {
                Ok(vec![
                    input("softmax", "x", x, &[rows, cols])?,
                    output("softmax", "y", y, &[rows, cols])?,
                ])
            })();
            host_call(&mut caller, "softmax", spans, |be, p| {
                be.softmax(p[0], p[1], rows as usize, cols as usize)
            })
        },
    )?;
    linker.func_wrap(
        "backend",
        "attention",
        |mut caller: Caller<'_, HostState>,
         batch: i32,
         heads: i32,
         kv_heads: i32,
         seq_q: i32,
         seq_kv: i32,
         head_dim: i32,
         causal: i32,
         q: i32,
         k: i32,
         v: i32,
         o: i32| {
            let [b, h, kvh, sq, skv, d] =
                [batch, heads, kv_heads, seq_q, seq_kv, head_dim].map(dim);
            let op = "attention";
            let spans = (|| {
                Ok(vec![
                    input(op, "q", q, &[b, h, sq, d])?,
                    input(op, "k", k, &[b, kvh, skv, d])?,
                    input(op, "v", v, &[b, kvh, skv, d])?,
                    output(op, "o", o, &[b, h, sq, d])?,
                ])
            })();
            host_call(&mut caller, op, spans, |be, p| {
                let [b, h, kvh, sq, skv, d] = [b, h, kvh, sq, skv, d].map(|x| x as usize);
                let args = AttentionArgs::new(
                    b,
                    h,
                    kvh,
                    sq,
                    skv,
                    d,
                    HeadTensor::bhsd(p[0], h, sq, d),
                    HeadTensor::bhsd(p[1], kvh, skv, d),
                    HeadTensor::bhsd(p[2], kvh, skv, d),
                    HeadTensor::bhsd(p[3], h, sq, d),
                )
                .causal(causal != 0);
                be.attention_ex(&args)
            })
        },
    )?;
    linker.func_wrap(
        "backend",
        "last_error",
        |mut caller: Caller<'_, HostState>, ptr: i32, cap: i32| -> i32 {
            let Some(memory) = caller.get_export("memory").and_then(Extern::into_memory) else {
                return -1;
            };
            let (bytes, state) = memory.data_and_store_mut(&mut caller);
            let (start, cap) = (ptr as u32 as usize, cap as u32 as usize);
            let Some(dst) = start
                .checked_add(cap)
                .filter(|&end| end <= bytes.len())
                .map(|end| &mut bytes[start..end])
            else {
                return -1;
            };
            let msg = state
                .last_error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            let n = msg.len().min(dst.len());
            dst[..n].copy_from_slice(&msg.as_bytes()[..n]);
            n as i32
        },
    )?;
    Ok(())
}
