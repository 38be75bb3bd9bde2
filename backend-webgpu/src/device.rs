//! The options, finding an adapter, and the optional features we open the device with
//! (turning wgpu's errors into `BackendError`s is `errors.rs`).

use backend_api::{BackendError, BackendResult};

/// Environment variable that overrides the adapter choice: a case-insensitive substring
/// of the adapter's name or backend (`llvmpipe`, `nvidia`, `vulkan`, `gl`, ...).
pub const ADAPTER_ENV: &str = "BACKEND_ADAPTER";

/// How [`WebGpuBackend`](crate::WebGpuBackend) chooses and uses an adapter.
///
/// `Default` reads no environment variable; [`WebGpuOptions::from_env`] (what
/// [`WebGpuBackend::new`](crate::WebGpuBackend::new) uses) applies them, and options built
/// explicitly keep what they say.
#[derive(Debug, Clone)]
pub struct WebGpuOptions {
    /// Case-insensitive substring of the adapter's name or backend; `None` picks the best
    /// adapter (hardware over software, Vulkan/Metal/DX12 over GL). From the environment:
    /// [`ADAPTER_ENV`].
    pub adapter: Option<String>,
    /// Discrete or integrated GPU first, when both exist.
    pub power_preference: wgpu::PowerPreference,
    /// The graphics APIs to look at.
    pub backends: wgpu::Backends,
    /// On adapters whose memory the host can map directly (integrated GPUs, Apple
    /// Silicon, lavapipe: `MAPPABLE_PRIMARY_BUFFERS`), copy to and from device memory
    /// with one copy instead of two.
    pub unified_memory: bool,
    /// Use matrix units (NVIDIA tensor cores via Vulkan cooperative matrices) for
    /// `gemm_ex` with f16 inputs where the adapter offers 16x16x16 f16 -> f32. This rests on
    /// wgpu's *experimental* cooperative-matrix support, which wgpu documents as possibly
    /// unsound, so it is off unless asked for here or with `BACKEND_TENSOR_CORES=1`.
    pub cooperative_matrix: bool,
    /// Refuse (`OutOfMemory`) allocations beyond this many bytes held from the device.
    /// Software adapters allocate host memory, so "allocate until the device refuses"
    /// would otherwise end in the host's OOM killer.
    pub memory_limit: Option<u64>,
    /// Kernel-choice and latency knobs; the defaults are the ones measured best on an
    /// NVIDIA H200 (docs/PERFORMANCE.md).
    pub tuning: Tuning,
    /// The directory where compiled pipelines are kept between processes (wgpu's
    /// `PipelineCache`, on Vulkan; a file per adapter, driver and crate version), or
    /// `None` for none. `Default` has none; [`from_env`](Self::from_env) uses
    /// `$XDG_CACHE_HOME/backend-webgpu` (else `~/.cache/backend-webgpu`) unless
    /// [`PIPELINE_CACHE_ENV`] names another directory or is `off`. Native only.
    pub pipeline_cache: Option<std::path::PathBuf>,
}

/// Tuning knobs of [`WebGpuOptions`]. Results never depend on them, only speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// The tiled gemm and conv kernels use 128x64 tiles when 128x128 ones would number
    /// fewer than this (0: never for that reason). `BACKEND_GEMM_NARROW_BELOW`.
    pub gemm_narrow_below: usize,
    /// How long a small readback polls the device before it blocks (zero: block at
    /// once). `BACKEND_READBACK_SPIN_US`, in microseconds.
    pub readback_spin: std::time::Duration,
    /// Depthwise convolutions load their input tile into workgroup memory
    /// (`conv2d_ex.wgsl::tiled`) where it fits, instead of computing four outputs of a
    /// row per thread from global memory. Off by default: on an H100 it took 1.3 to 1.8
    /// times as long on MobileNetV2's layers (docs/PERFORMANCE.md).
    /// `BACKEND_DEPTHWISE_TILED=1` turns it on.
    pub depthwise_tiled: bool,
    /// Depthwise convolutions run the general kernel, one thread per output
    /// (`conv2d_ex.wgsl::main`), for measuring it against the others.
    /// `BACKEND_DEPTHWISE_DIRECT=1`.
    pub depthwise_direct: bool,
    /// `gemm_q` with few columns (n <= 4) runs this kernel instead of the one chosen by
    /// B's alignment and the rows, for measuring one against another (`vec` and `rows`
    /// only where B's columns start on 4 elements, else `row`).
    /// `BACKEND_GEMM_Q_DECODE=decode|row|vec|rows`.
    pub gemm_q_decode: Option<GemmQDecode>,
    /// Kernels convert f16 with the adapter's `pack2x16float`/`unpack2x16float` where a
    /// probe at initialisation finds them exact (every f16 value widened, rounding
    /// boundaries narrowed); else, or with `BACKEND_HW_F16=0`, the exact bit arithmetic.
    pub hw_f16: bool,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            gemm_narrow_below: 192,
            readback_spin: std::time::Duration::from_micros(500),
            depthwise_tiled: false,
            depthwise_direct: false,
            gemm_q_decode: None,
            hw_f16: true,
        }
    }
}

impl Tuning {
    /// This tuning with every tuning variable that is set applied over it:
    /// `BACKEND_GEMM_NARROW_BELOW`, `BACKEND_READBACK_SPIN_US`, `BACKEND_DEPTHWISE_TILED`,
    /// `BACKEND_DEPTHWISE_DIRECT`, `BACKEND_GEMM_Q_DECODE`, `BACKEND_HW_F16` (the rules:
    /// [`backend_api::env`]); `InvalidArgument` naming the variable when a value does not
    /// parse. [`WebGpuOptions::with_env`] applies these and the adapter's variables.
    pub fn with_env(mut self) -> BackendResult<Self> {
        use backend_api::env;
        if let Some(n) = env::parse(NARROW_BELOW_ENV)? {
            self.gemm_narrow_below = n;
        }
        if let Some(us) = env::parse(READBACK_SPIN_ENV)? {
            self.readback_spin = std::time::Duration::from_micros(us);
        }
        if env::var(DEPTHWISE_TILED_ENV).is_some() {
            self.depthwise_tiled = env::flag(DEPTHWISE_TILED_ENV);
        }
        if env::var(DEPTHWISE_DIRECT_ENV).is_some() {
            self.depthwise_direct = env::flag(DEPTHWISE_DIRECT_ENV);
        }
        if let Some(v) = env::var(GEMM_Q_DECODE_ENV) {
            self.gemm_q_decode = Some(GemmQDecode::parse(&v).ok_or_else(|| {
                BackendError::InvalidArgument(format!(
                    "{GEMM_Q_DECODE_ENV}: {v:?} is none of decode, row, vec, rows"
                ))
            })?);
        }
        if env::var(HW_F16_ENV).is_some() {
            self.hw_f16 = env::flag(HW_F16_ENV);
        }
        Ok(self)
    }
}

impl Default for WebGpuOptions {
    fn default() -> Self {
        Self {
            adapter: None,
            power_preference: wgpu::PowerPreference::HighPerformance,
            backends: wgpu::Backends::all(),
            unified_memory: true,
            cooperative_matrix: false,
            memory_limit: None,
            tuning: Tuning::default(),
            pipeline_cache: None,
        }
    }
}

impl WebGpuOptions {
    /// Options that pick the adapter whose name or backend contains `selector` (and read
    /// no environment variable).
    pub fn adapter(selector: &str) -> Self {
        Self {
            adapter: Some(selector.to_string()),
            ..Self::default()
        }
    }

    /// The defaults with the environment applied ([`with_env`](Self::with_env)).
    pub fn from_env() -> BackendResult<Self> {
        Self::default().with_env()
    }

    /// These options with every variable that is set applied over them:
    /// `BACKEND_ADAPTER`, `BACKEND_TENSOR_CORES`, `BACKEND_GEMM_NARROW_BELOW`,
    /// `BACKEND_READBACK_SPIN_US`, `BACKEND_DEPTHWISE_TILED`, `BACKEND_DEPTHWISE_DIRECT`,
    /// `BACKEND_GEMM_Q_DECODE`, `BACKEND_HW_F16` (through [`Tuning::with_env`]),
    /// `BACKEND_PIPELINE_CACHE` (the rules: [`backend_api::env`]); `InvalidArgument`
    /// naming the variable when a value does not parse.
    pub fn with_env(mut self) -> BackendResult<Self> {
        use backend_api::env;
        if let Some(a) = env::var(ADAPTER_ENV) {
            self.adapter = Some(a);
        }
        if env::var(TENSOR_CORES_ENV).is_some() {
            self.cooperative_matrix = env::flag(TENSOR_CORES_ENV);
        }
        self.tuning = self.tuning.with_env()?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            self.pipeline_cache = match env::var(PIPELINE_CACHE_ENV) {
                Some(v) if ["off", "0", "false", "no"].contains(&v.to_lowercase().as_str()) => None,
                Some(dir) => Some(dir.into()),
                None => crate::pipeline_cache::default_dir(),
            };
        }
        Ok(self)
    }

    /// The adapter selector in effect (`self.adapter`, blank counting as none).
    pub fn selector(&self) -> Option<String> {
        self.adapter
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
}

/// `BACKEND_TENSOR_CORES`: see [`WebGpuOptions::cooperative_matrix`].
pub const TENSOR_CORES_ENV: &str = "BACKEND_TENSOR_CORES";
/// `BACKEND_GEMM_NARROW_BELOW`: see [`Tuning::gemm_narrow_below`].
pub const NARROW_BELOW_ENV: &str = "BACKEND_GEMM_NARROW_BELOW";
/// `BACKEND_READBACK_SPIN_US`: see [`Tuning::readback_spin`].
pub const READBACK_SPIN_ENV: &str = "BACKEND_READBACK_SPIN_US";
/// `BACKEND_DEPTHWISE_TILED`: see [`Tuning::depthwise_tiled`].
pub const DEPTHWISE_TILED_ENV: &str = "BACKEND_DEPTHWISE_TILED";
/// `BACKEND_PIPELINE_CACHE`: a directory for compiled pipelines, or `off`; see
/// [`WebGpuOptions::pipeline_cache`].
pub const PIPELINE_CACHE_ENV: &str = "BACKEND_PIPELINE_CACHE";
/// `BACKEND_HW_F16`: see [`Tuning::hw_f16`].
pub const HW_F16_ENV: &str = "BACKEND_HW_F16";
/// `BACKEND_GEMM_Q_DECODE`: see [`Tuning::gemm_q_decode`].
pub const GEMM_Q_DECODE_ENV: &str = "BACKEND_GEMM_Q_DECODE";

/// `BACKEND_DEPTHWISE_DIRECT`: see [`Tuning::depthwise_direct`].
pub const DEPTHWISE_DIRECT_ENV: &str = "BACKEND_DEPTHWISE_DIRECT";

/// The `gemm_q` kernels for few columns (`kernels/gemm_q.wgsl`), named as in
/// `BACKEND_GEMM_Q_DECODE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmQDecode {
    /// `decode`: 8 lanes a block, a row's blocks 4 at a time.
    Decode,
    /// `decode_row`: 32 lanes a row, B read as scalars.
    Row,
    /// `decode_vec`: 4 warps a row, B read 4 elements a load.
    Vec,
    /// `decode_rows`: several rows a thread, B read 4 elements a load.
    Rows,
}

impl GemmQDecode {
    /// The kernel named `name` (`decode`, `row`, `vec`, `rows`; any case).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_lowercase().as_str() {
            "decode" => Some(Self::Decode),
            "row" => Some(Self::Row),
            "vec" => Some(Self::Vec),
            "rows" => Some(Self::Rows),
            _ => None,
        }
    }
}

/// What an adapter is and can do, for listings and reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterSummary {
    /// The adapter's name, e.g. `NVIDIA H200` or `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// `Vulkan`, `Metal`, `Dx12`, `Gl` or `BrowserWebGpu`.
    pub backend: String,
    /// `DiscreteGpu`, `IntegratedGpu`, `VirtualGpu`, `Cpu` or `Other`.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
    /// The optional features this backend uses that the adapter has.
    pub features: Vec<String>,
    /// `max_buffer_size` in bytes.
    pub max_buffer_size: u64,
    /// `max_storage_buffer_binding_size` in bytes.
    pub max_storage_binding: u64,
    /// Workgroup memory in bytes.
    pub max_workgroup_storage: u32,
    /// Invocations per workgroup.
    pub max_invocations: u32,
    /// Smallest subgroup size (0 when unknown).
    pub subgroup_min_size: u32,
}

impl AdapterSummary {
    pub(crate) fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let f = adapter.features();
        let features = [
            (wgpu::Features::SHADER_F16, "shader-f16"),
            (wgpu::Features::SUBGROUP, "subgroups"),
            (wgpu::Features::TIMESTAMP_QUERY, "timestamp-query"),
            (
                wgpu::Features::MAPPABLE_PRIMARY_BUFFERS,
                "mappable-primary-buffers",
            ),
            (
                wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX,
                "cooperative-matrix",
            ),
        ]
        .iter()
        .filter(|(bit, _)| f.contains(*bit))
        .map(|(_, name)| name.to_string())
        .collect();
        Self {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            features,
            max_buffer_size: limits.max_buffer_size,
            max_storage_binding: limits.max_storage_buffer_binding_size,
            max_workgroup_storage: limits.max_compute_workgroup_storage_size,
            max_invocations: limits.max_compute_invocations_per_workgroup,
            subgroup_min_size: info.subgroup_min_size,
        }
    }

    /// `name (backend)`, the string adapter selectors match against.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.backend)
    }

    /// True for software adapters (lavapipe, SwiftShader, WARP).
    pub fn is_software(&self) -> bool {
        self.device_type == "Cpu"
    }
}

fn instance(options: &WebGpuOptions) -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = options.backends;
    wgpu::Instance::new(desc)
}

/// Lower is better: hardware before software, native APIs before GL.
#[cfg(not(target_arch = "wasm32"))]
fn rank(info: &wgpu::AdapterInfo, power: wgpu::PowerPreference) -> (u8, u8) {
    let api = match info.backend {
        wgpu::Backend::Vulkan
        | wgpu::Backend::Metal
        | wgpu::Backend::Dx12
        | wgpu::Backend::BrowserWebGpu => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    let (first, second) = match power {
        wgpu::PowerPreference::LowPower => (
            wgpu::DeviceType::IntegratedGpu,
            wgpu::DeviceType::DiscreteGpu,
        ),
        _ => (
            wgpu::DeviceType::DiscreteGpu,
            wgpu::DeviceType::IntegratedGpu,
        ),
    };
    let kind = match info.device_type {
        t if t == first => 0,
        t if t == second => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        _ => 4,
    };
    (kind, api)
}

/// Every adapter wgpu finds for `options.backends` (native only).
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters(options: &WebGpuOptions) -> Vec<AdapterSummary> {
    let instance = instance(options);
    pollster::block_on(instance.enumerate_adapters(options.backends))
        .iter()
        .map(AdapterSummary::of)
        .collect()
}

fn matches(summary: &AdapterSummary, selector: &str) -> bool {
    summary
        .label()
        .to_lowercase()
        .contains(&selector.to_lowercase())
}

/// Finds the adapter the options ask for.
pub(crate) async fn choose_adapter(options: &WebGpuOptions) -> BackendResult<wgpu::Adapter> {
    let instance = instance(options);
    let selector = options.selector();
    #[cfg(not(target_arch = "wasm32"))]
    {
        let adapters = instance.enumerate_adapters(options.backends).await;
        let found: Vec<String> = adapters
            .iter()
            .map(|a| AdapterSummary::of(a).label())
            .collect();
        let mut candidates: Vec<wgpu::Adapter> = adapters
            .into_iter()
            .filter(|a| {
                selector
                    .as_deref()
                    .is_none_or(|s| matches(&AdapterSummary::of(a), s))
            })
            .collect();
        candidates.sort_by_key(|a| rank(&a.get_info(), options.power_preference));
        candidates.into_iter().next().ok_or_else(|| match selector {
            Some(s) => BackendError::DeviceError(format!(
                "no adapter matches {ADAPTER_ENV}/adapter {s:?}; adapters found: {}",
                if found.is_empty() {
                    "none".to_string()
                } else {
                    found.join(", ")
                }
            )),
            None => BackendError::DeviceError(
                "no GPU adapter found. On Linux without a GPU, install a software Vulkan driver \
                 (Debian/Ubuntu: apt-get install mesa-vulkan-drivers) to run on lavapipe"
                    .to_string(),
            ),
        })
    }
    #[cfg(target_arch = "wasm32")]
    {
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: options.power_preference,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| BackendError::DeviceError(format!("no WebGPU adapter: {e}")))?;
        if let Some(s) = selector
            && !matches(&AdapterSummary::of(&adapter), &s)
        {
            return Err(BackendError::DeviceError(format!(
                "the browser's adapter {} does not match {s:?}",
                AdapterSummary::of(&adapter).label()
            )));
        }
        Ok(adapter)
    }
}

/// The optional features requested when the adapter has them.
pub(crate) fn wanted_features(adapter: &wgpu::Adapter, options: &WebGpuOptions) -> wgpu::Features {
    let info = adapter.get_info();
    let mut wanted =
        wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY;
    // Mapping device-local memory of a discrete GPU is slow; only unified-memory devices
    // gain from it.
    let unified = matches!(
        info.device_type,
        wgpu::DeviceType::IntegratedGpu | wgpu::DeviceType::Cpu
    );
    if options.unified_memory && unified {
        wanted |= wgpu::Features::MAPPABLE_PRIMARY_BUFFERS;
    }
    if options.pipeline_cache.is_some() && !cfg!(target_arch = "wasm32") {
        wanted |= wgpu::Features::PIPELINE_CACHE;
    }
    if options.cooperative_matrix && has_f16_matrix_units(adapter) {
        wanted |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    }
    adapter.features() & wanted
}

/// True when the adapter multiplies 16x16x16 f16 tiles into f32 on matrix units.
pub(crate) fn has_f16_matrix_units(adapter: &wgpu::Adapter) -> bool {
    adapter
        .features()
        .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX | wgpu::Features::SHADER_F16)
        && adapter.cooperative_matrix_properties().iter().any(|p| {
            (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
                && p.ab_type == wgpu::CooperativeScalarType::F16
                && p.cr_type == wgpu::CooperativeScalarType::F32
        })
}
