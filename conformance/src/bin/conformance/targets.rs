//! What to run on: the CPU backends (the oracle, the fast one) and one target per wgpu
//! adapter.

#[cfg(feature = "webgpu")]
use backends::backend_webgpu::{self, AdapterSummary, WebGpuBackend, WebGpuOptions};
use backends::{BackendKind, ComputeBackend};

use crate::run::Plan;
use serde::Serialize;

/// How to get a GPU adapter on a machine without one.
pub(crate) const VULKAN_HINT: &str = "no Vulkan adapter found. For a software Vulkan driver \
     (lavapipe, what CI uses): Debian/Ubuntu `sudo apt-get install mesa-vulkan-drivers \
     libvulkan1`, Fedora `sudo dnf install mesa-vulkan-drivers`; then run this again";

/// What the CPU-only runner says where the default one would list adapters.
pub(crate) const NO_WEBGPU: &str = "this is the CPU-only runner (built without the `webgpu` \
     feature): no GPU is tested; `cargo run --release -p conformance` builds the full one";

/// Why a GL adapter is not run by default when a native one is present.
pub(crate) const GL_SKIP: &str = "GL is wgpu's compatibility path and this machine's GPUs \
     are tested through a native API (Vulkan, Metal or DX12) instead; select it with \
     --adapter gl to run it (it passes on Mesa llvmpipe; on NVIDIA's driver without a display \
     the device does not open)";

/// An adapter as the reports show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AdapterInfo {
    pub(crate) name: String,
    pub(crate) api: String,
    pub(crate) device_type: String,
    pub(crate) driver: String,
    pub(crate) features: Vec<String>,
    pub(crate) max_buffer_size: u64,
    pub(crate) max_storage_buffer_binding_size: u64,
    pub(crate) max_compute_workgroup_storage_size: u32,
    pub(crate) max_compute_invocations_per_workgroup: u32,
    pub(crate) subgroup_min_size: u32,
    /// More adapters with the same name and API (e.g. two identical GPUs).
    pub(crate) identical_adapters: usize,
}

impl AdapterInfo {
    #[cfg(feature = "webgpu")]
    fn of(a: &AdapterSummary) -> Self {
        Self {
            name: a.name.clone(),
            api: a.backend.clone(),
            device_type: a.device_type.clone(),
            driver: a.driver.clone(),
            features: a.features.clone(),
            max_buffer_size: a.max_buffer_size,
            max_storage_buffer_binding_size: a.max_storage_binding,
            max_compute_workgroup_storage_size: a.max_workgroup_storage,
            max_compute_invocations_per_workgroup: a.max_invocations,
            subgroup_min_size: a.subgroup_min_size,
            identical_adapters: 0,
        }
    }

    /// `name (API)`: what `--adapter` and `BACKEND_ADAPTER` match against.
    pub(crate) fn label(&self) -> String {
        format!("{} ({})", self.name, self.api)
    }

    pub(crate) fn is_software(&self) -> bool {
        self.device_type == "Cpu"
    }
}

/// One row of the run: a backend, and for WebGPU its adapter.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) kind: BackendKind,
    pub(crate) adapter: Option<AdapterInfo>,
    /// Set when the target is listed but not run, with the reason.
    pub(crate) skip: Option<String>,
    /// Set when the target was asked for but cannot run (a failure).
    pub(crate) error: Option<String>,
}

impl Target {
    pub(crate) fn label(&self) -> String {
        match &self.adapter {
            Some(a) => format!("{} {}", self.kind, a.label()),
            None => self.kind.to_string(),
        }
    }

    /// The arguments that select exactly this target.
    pub(crate) fn selector_args(&self) -> Vec<String> {
        let mut v = vec!["--backend".to_string(), self.kind.to_string()];
        if let Some(a) = &self.adapter {
            v.push("--adapter".to_string());
            v.push(a.label());
        }
        v
    }

    /// Software devices (lavapipe, SwiftShader) get the small profile.
    pub(crate) fn is_software(&self) -> bool {
        self.adapter.as_ref().is_some_and(AdapterInfo::is_software)
    }

    /// Opens the backend (WebGPU with the plan's tuning). For WebGPU, checks that the
    /// adapter opened is the one meant.
    /// (The CPU-only runner takes nothing from the plan here.)
    #[cfg_attr(not(feature = "webgpu"), allow(unused_variables))]
    pub(crate) fn open(&self, plan: &Plan) -> Result<Box<dyn ComputeBackend>, OpenError> {
        match (&self.adapter, self.kind) {
            #[cfg(feature = "webgpu")]
            (Some(a), BackendKind::WebGpu) => {
                let label = a.label();
                // The tuning variables (a kernel forced for comparison) apply, so that a
                // kernel the defaults do not pick can be checked too.
                let mut b = WebGpuBackend::with_options(WebGpuOptions {
                    tuning: plan.tuning,
                    ..WebGpuOptions::adapter(&label)
                });
                b.init()
                    .map_err(|e| OpenError::Failed(format!("could not open {label}: {e}")))?;
                let opened = b.adapter().map(AdapterSummary::label).unwrap_or_default();
                if opened != label {
                    return Err(OpenError::Overridden(format!(
                        "asked for {label} but {opened} was opened: {} overrides the choice; \
                         unset it to test every adapter",
                        backend_webgpu::ADAPTER_ENV
                    )));
                }
                Ok(Box::new(b))
            }
            (_, kind) => backends::create(kind).map_err(|e| OpenError::Failed(e.to_string())),
        }
    }
}

/// Why a target did not open.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The backend failed to start: a failure of the run.
    Failed(String),
    /// `BACKEND_ADAPTER` made wgpu open another adapter: this one cannot be tested here.
    #[cfg_attr(
        not(feature = "webgpu"),
        expect(dead_code, reason = "only WebGPU targets")
    )]
    Overridden(String),
}

/// What discovery found, with remarks for the reports.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    pub(crate) targets: Vec<Target>,
    pub(crate) notes: Vec<String>,
    /// Every adapter wgpu enumerated, selected or not (for `--list` and the reports).
    pub(crate) adapters: Vec<AdapterInfo>,
}

/// Every adapter wgpu finds: none in the CPU-only runner.
#[cfg(not(feature = "webgpu"))]
pub(crate) fn adapters() -> Vec<AdapterInfo> {
    Vec::new()
}

/// Every adapter wgpu finds, identical ones merged.
#[cfg(feature = "webgpu")]
pub(crate) fn adapters() -> Vec<AdapterInfo> {
    let mut out: Vec<AdapterInfo> = Vec::new();
    for a in backend_webgpu::list_adapters(&WebGpuOptions::default()) {
        let info = AdapterInfo::of(&a);
        match out.iter_mut().find(|o| o.label() == info.label()) {
            Some(o) => o.identical_adapters += 1,
            None => out.push(info),
        }
    }
    out
}

/// The targets for `kinds` (None: every native backend compiled in) and the adapter
/// selectors (empty: every adapter).
pub(crate) fn discover(kinds: Option<&[BackendKind]>, selectors: &[String]) -> Discovery {
    let mut d = Discovery::default();
    let explicit_gpu = kinds.is_some_and(|k| k.contains(&BackendKind::WebGpu));
    let kinds: Vec<BackendKind> = match kinds {
        Some(k) => k.to_vec(),
        // An adapter selector alone means "this GPU", not "this GPU and the CPU".
        None if !selectors.is_empty() => vec![BackendKind::WebGpu],
        None => vec![BackendKind::Cpu, BackendKind::FastCpu, BackendKind::WebGpu],
    };
    let explicit_gpu = explicit_gpu || !selectors.is_empty();

    for cpu in [BackendKind::Cpu, BackendKind::FastCpu] {
        if kinds.contains(&cpu) && cpu.is_compiled() {
            d.targets.push(Target {
                kind: cpu,
                adapter: None,
                skip: None,
                error: None,
            });
        }
    }
    if !kinds.contains(&BackendKind::WebGpu) {
        return d;
    }
    if !cfg!(feature = "webgpu") {
        if explicit_gpu {
            d.targets.push(Target {
                kind: BackendKind::WebGpu,
                adapter: None,
                skip: None,
                error: Some(NO_WEBGPU.to_string()),
            });
        } else {
            d.notes.push(NO_WEBGPU.to_string());
        }
        return d;
    }

    d.adapters = adapters();
    let native = d.adapters.iter().any(|a| a.api != "Gl");
    let lower: Vec<String> = selectors.iter().map(|s| s.to_lowercase()).collect();
    let mut matched = 0;
    for a in &d.adapters {
        let label = a.label().to_lowercase();
        if !lower.is_empty() && !lower.iter().any(|s| label.contains(s)) {
            continue;
        }
        matched += 1;
        if a.identical_adapters > 0 {
            d.notes.push(format!(
                "{} is present {} times; selecting an adapter by name opens the first, so only \
                 it is tested",
                a.label(),
                a.identical_adapters + 1
            ));
        }
        // GL is wgpu's compatibility path. Where a native API reaches the GPUs, the GL
        // adapter is the same device again, and on NVIDIA's driver it does not even open
        // without a display; run it only when asked for, or when it is all there is.
        let skip = (lower.is_empty() && a.api == "Gl" && native).then(|| GL_SKIP.to_string());
        d.targets.push(Target {
            kind: BackendKind::WebGpu,
            adapter: Some(a.clone()),
            skip,
            error: None,
        });
    }

    if !native {
        d.notes.push(VULKAN_HINT.to_string());
    }
    if matched == 0 && explicit_gpu {
        let found = if d.adapters.is_empty() {
            "none".to_string()
        } else {
            d.adapters
                .iter()
                .map(AdapterInfo::label)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let what = if selectors.is_empty() {
            "no WebGPU adapter found".to_string()
        } else {
            format!("no WebGPU adapter matches {}", selectors.join(" or "))
        };
        let mut error = format!("{what} (adapters found: {found})");
        if !native {
            error.push_str("; ");
            error.push_str(VULKAN_HINT);
        }
        d.targets.push(Target {
            kind: BackendKind::WebGpu,
            adapter: None,
            skip: None,
            error: Some(error),
        });
    }
    d
}
