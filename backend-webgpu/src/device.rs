//! Finding an adapter, opening a device with the adapter's own limits and the optional
//! features we can use, and turning wgpu's asynchronous errors into `BackendError`s.

use std::sync::{Arc, Mutex, PoisonError};

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
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            gemm_narrow_below: 192,
            readback_spin: std::time::Duration::from_micros(500),
        }
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
    pub fn from_env() -> Self {
        Self::default().with_env()
    }

    /// These options with every variable that is set applied over them:
    /// `BACKEND_ADAPTER`, `BACKEND_TENSOR_CORES`, `BACKEND_GEMM_NARROW_BELOW`,
    /// `BACKEND_READBACK_SPIN_US` (the rules: [`backend_api::env`]).
    pub fn with_env(mut self) -> Self {
        use backend_api::env;
        if let Some(a) = env::var(ADAPTER_ENV) {
            self.adapter = Some(a);
        }
        if env::var(TENSOR_CORES_ENV).is_some() {
            self.cooperative_matrix = env::flag(TENSOR_CORES_ENV);
        }
        if let Some(n) = env::parse(NARROW_BELOW_ENV) {
            self.tuning.gemm_narrow_below = n;
        }
        if let Some(us) = env::parse(READBACK_SPIN_ENV) {
            self.tuning.readback_spin = std::time::Duration::from_micros(us);
        }
        self
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

/// Collects errors wgpu reports asynchronously (the uncaptured-error handler and the
/// device-lost callback) until the next sync point takes them.
#[derive(Default)]
pub(crate) struct ErrorSink {
    pending: Mutex<Option<BackendError>>,
    lost: Mutex<Option<String>>,
    /// Recorded causes whose "invalid due to a previous error" echo has not come yet.
    unechoed: Mutex<u32>,
}

impl ErrorSink {
    pub(crate) fn install(device: &wgpu::Device) -> Arc<Self> {
        let sink = Arc::new(Self::default());
        let s = sink.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| s.record(e)));
        let s = sink.clone();
        device.set_device_lost_callback(move |reason, message| {
            *s.lost.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(format!("{reason:?}: {message}"));
        });
        sink
    }

    fn record(&self, e: wgpu::Error) {
        let err = match e {
            wgpu::Error::OutOfMemory { .. } => BackendError::OutOfMemory,
            other => {
                BackendError::DeviceError(format!("queued work failed: {}", with_sources(&other)))
            }
        };
        tracing::error!(error = %err, "wgpu reported an error");
        // A failed command buffer is followed by "... is invalid due to a previous error"
        // when it is submitted. Where its cause was recorded here, the echo adds nothing,
        // and in a browser it can arrive after that sync point returned and would fail the
        // next, unrelated one: drop one echo per recorded cause, keep any other.
        let mut unechoed = self.unechoed.lock().unwrap_or_else(PoisonError::into_inner);
        if is_echo(&err) {
            if *unechoed > 0 {
                *unechoed -= 1;
                return;
            }
        } else if matches!(err, BackendError::DeviceError(_)) {
            *unechoed += 1;
        }
        drop(unechoed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(err);
    }

    /// The error to report at a sync point: device loss (forever), else the first error
    /// since the last sync point.
    pub(crate) fn take(&self) -> BackendResult<()> {
        self.check_lost()?;
        match self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `DeviceError` once the device is lost; every call checks this.
    pub(crate) fn check_lost(&self) -> BackendResult<()> {
        match &*self.lost.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(why) => Err(BackendError::DeviceError(format!(
                "the device was lost ({why}); this backend can no longer be used: create a new one"
            ))),
            None => Ok(()),
        }
    }

    /// Records a loss the device-lost callback has not (yet) reported.
    pub(crate) fn mark_lost(&self, why: &str) {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| why.to_string());
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// True for the follow-up error of an invalid command buffer, which only repeats that an
/// earlier error happened.
fn is_echo(e: &BackendError) -> bool {
    matches!(e, BackendError::DeviceError(m) if m.contains("due to a previous error"))
}

/// An error and its chain of causes on one line (wgpu's own text is often just
/// "Validation Error"; the causes say what was wrong).
pub(crate) fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    // wgpu's messages span several lines ("Validation Error\n\nCaused by: ..."): one
    // line reads better inside another error.
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Validation and out-of-memory error scopes around a few calls whose failure must be
/// reported by the call itself (buffer and pipeline creation). Natively wgpu reports
/// these synchronously, so popping needs no waiting. In a browser the scopes would
/// resolve later, so none are pushed and the uncaptured-error handler reports instead.
pub(crate) struct ErrorScope {
    #[cfg(not(target_arch = "wasm32"))]
    scopes: [wgpu::ErrorScopeGuard; 2],
}

impl ErrorScope {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            Self {
                scopes: [oom, validation],
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = device;
            Self {}
        }
    }

    /// The first error caught, if any.
    pub(crate) fn pop(self) -> Option<wgpu::Error> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let [oom, validation] = self.scopes;
            let oom = pollster::block_on(oom.pop());
            let validation = pollster::block_on(validation.pop());
            oom.or(validation)
        }
        #[cfg(target_arch = "wasm32")]
        {
            None
        }
    }
}

#[cfg(test)]
mod echo_tests {
    use super::*;

    #[test]
    fn only_the_echo_of_an_earlier_error_is_dropped() {
        let echo = BackendError::DeviceError(
            "queued work failed: Validation Error: [Invalid CommandBuffer] is invalid due to a previous error".into(),
        );
        assert!(is_echo(&echo));
        assert!(!is_echo(&BackendError::DeviceError(
            "queued work failed: binding size too small".into()
        )));
        assert!(!is_echo(&BackendError::OutOfMemory));
    }
}
