//! The WGSL kernels, one file per op family, their parameter blocks, and the pipeline
//! cache keyed by (kernel, entry point, override constants).

use std::collections::HashMap;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

/// The one table of kernels: each kernel's name, file, whether it is compiled with the
/// math library, the entry points and override constants the Rust side may name (a naga
/// test checks each exists in the module, and [`Pipelines::get`] refuses, in debug builds
/// and so in every test, a key naming one not listed), and its parameter block (a naga
/// test checks its size against the WGSL struct). A new kernel is one entry here and its
/// `.wgsl` file.
macro_rules! kernels {
    ($(
        $(#[$doc:meta])*
        $kernel:ident {
            name: $name:literal,
            file: $file:literal,
            math: $math:literal,
            entries: [$($entry:literal),* $(,)?],
            constants: [$($constant:literal),* $(,)?],
            params: $params:ty $(,)?
        }
    ),* $(,)?) => {
        /// One kernel file (plus the shared helpers it is compiled with).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub(crate) enum Kernel {
            $( $(#[$doc])* $kernel, )*
        }

        impl Kernel {
            /// Every kernel.
            #[cfg(test)]
            pub(crate) const ALL: &'static [Kernel] = &[$(Kernel::$kernel),*];

            pub(crate) fn name(self) -> &'static str {
                match self { $( Kernel::$kernel => $name, )* }
            }

            /// The entry points the Rust side may dispatch.
            pub(crate) fn entries(self) -> &'static [&'static str] {
                match self { $( Kernel::$kernel => &[$($entry),*], )* }
            }

            /// The override constants the Rust side may set.
            pub(crate) fn constants(self) -> &'static [&'static str] {
                match self { $( Kernel::$kernel => &[$($constant),*], )* }
            }

            /// The kernel's own file.
            fn file(self) -> &'static str {
                match self { $( Kernel::$kernel => include_str!($file), )* }
            }

            /// Compiled with `math.wgsl`.
            fn needs_math(self) -> bool {
                match self { $( Kernel::$kernel => $math, )* }
            }

            /// Bytes of the Rust parameter block.
            #[cfg(test)]
            fn params_size(self) -> usize {
                match self { $( Kernel::$kernel => size_of::<$params>(), )* }
            }
        }
    };
}

kernels! {
    Unary {
        name: "unary",
        file: "unary.wgsl",
        math: true,
        entries: ["main", "in_place", "main4", "in_place4", "packed16", "packed16x8"],
        constants: ["OP", "DTYPE", "IN_PLACE"],
        params: params::Unary,
    },
    Binary {
        name: "binary",
        file: "binary.wgsl",
        math: true,
        entries: [
            "main", "out_is_a", "out_is_b", "all_same", "a_is_b", "main4", "out_is_a4",
            "out_is_b4", "all_same4", "a_is_b4", "packed16", "packed16x8",
        ],
        constants: ["OP", "DTYPE", "ALIAS"],
        params: params::Binary,
    },
    Broadcast {
        name: "broadcast",
        file: "broadcast.wgsl",
        math: true,
        entries: ["main", "out_is_a", "out_is_b", "main4", "out_is_a4", "out_is_b4", "half"],
        constants: ["OP", "DTYPE", "IN_PLACE"],
        params: params::Broadcast,
    },
    Gather {
        name: "gather",
        file: "gather.wgsl",
        math: false,
        entries: ["main"],
        constants: [],
        params: params::Gather,
    },
    Copy {
        name: "copy",
        file: "copy.wgsl",
        math: false,
        entries: ["main", "within"],
        constants: [],
        params: params::Copy,
    },
    Cast {
        name: "cast",
        file: "cast.wgsl",
        math: false,
        entries: ["main"],
        constants: ["SRC", "DST"],
        params: params::Cast,
    },
    Reduce {
        name: "reduce",
        file: "reduce.wgsl",
        math: true,
        entries: ["rows", "rows4", "cols", "cols4", "rows8h"],
        constants: ["OP", "COLS", "COLS4", "DTYPE", "ROWS8H"],
        params: params::Reduce,
    },
    Rows {
        name: "rows",
        file: "rows.wgsl",
        math: true,
        entries: ["main", "cached4"],
        constants: ["OP", "IN_PLACE"],
        params: params::Rows,
    },
    Gemm {
        name: "gemm",
        file: "gemm.wgsl",
        math: false,
        entries: ["main", "tiled", "skinny"],
        constants: [
            "A_TYPE", "B_TYPE", "B_IN_A", "TRANS_A", "TRANS_B", "C_VEC4", "NB", "NS", "SK_B_VEC",
        ],
        params: params::Gemm,
    },
    Conv2d {
        name: "conv2d",
        file: "conv2d.wgsl",
        math: false,
        entries: ["main", "implicit"],
        constants: ["F_IN_X", "F_VEC4", "NB"],
        params: params::Conv2d,
    },
    GemmQ {
        name: "gemm_q",
        file: "gemm_q.wgsl",
        math: false,
        entries: ["main", "decode", "decode_row", "decode_vec", "decode_rows", "dequant"],
        constants: ["FORMAT", "B_F16", "COLS", "ROW_WARPS", "RPT", "WARPS_K"],
        params: params::GemmQ,
    },
    Conv2dEx {
        name: "conv2d_ex",
        file: "conv2d_ex.wgsl",
        math: false,
        entries: ["main", "depthwise4", "tiled"],
        constants: ["TW"],
        params: params::Conv2dEx,
    },
    Attention {
        name: "attention",
        file: "attention.wgsl",
        math: false,
        entries: ["main", "fast", "split", "combine"],
        constants: ["D", "STAGES", "VEC_LOADS", "FEATURES", "DTYPE"],
        params: params::Attention,
    },
    /// gemm_ex on matrix units; built only where the adapter has cooperative matrices.
    GemmCoop {
        name: "gemm_coop",
        file: "gemm_coop.wgsl",
        math: false,
        entries: ["main", "tiled"],
        constants: ["TRANS_A", "TRANS_B"],
        params: params::Gemm,
    },
}

const COMMON: &str = include_str!("common.wgsl");

/// The override of common.wgsl that switches to the adapter's f16 conversions; every
/// kernel but the self-contained cooperative-matrix one has it.
pub(crate) const HW_F16: &str = "HW_F16";
const MATH: &str = include_str!("math.wgsl");
const BINARY_OP: &str = include_str!("binary_op.wgsl");

impl Kernel {
    /// The complete WGSL source: the shared helpers, the math library where the kernel
    /// needs it, then the kernel.
    pub(crate) fn source(self) -> String {
        if self == Kernel::GemmCoop {
            // Self-contained: its `enable` directives must come first.
            return self.file().to_string();
        }
        let mut s = String::from(COMMON);
        if self.needs_math() {
            s.push_str(MATH);
        }
        s.push_str(&self.op_constants());
        if matches!(self, Kernel::Binary | Kernel::Broadcast) {
            s.push_str(BINARY_OP);
        }
        s.push_str(self.file());
        s
    }

    /// The `OP` codes of the kernels that take one, as WGSL constants generated from the
    /// op enums (`const UNARY_RELU: u32 = 0u;`), so a kernel's `switch OP` names each op
    /// and can never disagree with [`op_code`].
    fn op_constants(self) -> String {
        fn consts<T: Copy + PartialEq>(
            prefix: &str,
            all: &[T],
            name: impl Fn(T) -> &'static str,
        ) -> String {
            all.iter()
                .map(|&op| {
                    format!(
                        "const {prefix}_{}: u32 = {}u;\n",
                        name(op).to_uppercase(),
                        op_code(all, op)
                    )
                })
                .collect()
        }
        use backend_api::validate::RowOp;
        use backend_api::{BinaryOp, ReduceOp, UnaryOp, UnaryParamOp};
        match self {
            Kernel::Unary => {
                let mut s = consts("UNARY", UnaryOp::ALL, UnaryOp::name);
                for &op in UnaryParamOp::ALL {
                    s.push_str(&format!(
                        "const UNARY_PARAM_{}: u32 = {}u;\n",
                        op.name().to_uppercase(),
                        param_op_code(op)
                    ));
                }
                s
            }
            Kernel::Binary | Kernel::Broadcast => consts("BINARY", BinaryOp::ALL, BinaryOp::name),
            Kernel::Reduce => consts("REDUCE", ReduceOp::ALL, ReduceOp::name),
            Kernel::Rows => consts("ROW", RowOp::ALL, RowOp::name),
            _ => String::new(),
        }
    }
}

/// The `OP` override value of `op`: its position in its enum's `ALL`, which is also what
/// [`Kernel::op_constants`] writes into the WGSL.
pub(crate) fn op_code<T: PartialEq>(all: &[T], op: T) -> u32 {
    all.iter()
        .position(|o| *o == op)
        .expect("ALL lists every variant") as u32
}

/// The unary kernel's `OP` for a parameterised op: after every [`UnaryOp`]'s code.
///
/// [`UnaryOp`]: backend_api::UnaryOp
pub(crate) fn param_op_code(op: backend_api::UnaryParamOp) -> u32 {
    const FIRST: u32 = 64;
    const _: () = assert!(backend_api::UnaryOp::ALL.len() <= FIRST as usize);
    FIRST + op_code(backend_api::UnaryParamOp::ALL, op)
}

/// A pipeline: kernel, entry point and override constants (values as f64 bits, so the
/// key can be hashed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PipelineKey {
    pub kernel: Kernel,
    pub entry: &'static str,
    pub constants: Vec<(&'static str, u64)>,
}

impl PipelineKey {
    pub(crate) fn new(kernel: Kernel, entry: &'static str) -> Self {
        Self {
            kernel,
            entry,
            constants: Vec::new(),
        }
    }

    pub(crate) fn with(mut self, name: &'static str, value: f64) -> Self {
        self.constants.push((name, value.to_bits()));
        self
    }

    fn describe(&self) -> String {
        let consts: Vec<String> = self
            .constants
            .iter()
            .map(|(n, v)| format!("{n}={}", f64::from_bits(*v)))
            .collect();
        format!(
            "{}::{}({})",
            self.kernel.name(),
            self.entry,
            consts.join(", ")
        )
    }
}

/// Compiled modules and pipelines, created on first use.
#[derive(Default)]
pub(crate) struct Pipelines {
    pub(crate) modules: HashMap<Kernel, wgpu::ShaderModule>,
    pub(crate) pipelines: HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>,
    /// The driver's compiled pipelines, kept on disk between processes.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) disk: Option<Arc<crate::pipeline_cache::DiskCache>>,
}

impl Pipelines {
    /// The pipeline for `key`, building it (and its module) if needed. A kernel that
    /// fails to build is a `DeviceError` naming it, not a panic.
    /// The pipeline for `key` if it is built already.
    pub(crate) fn cached(&self, key: &PipelineKey) -> Option<Arc<wgpu::ComputePipeline>> {
        self.pipelines.get(key).cloned()
    }

    pub(crate) fn get(
        &mut self,
        device: &wgpu::Device,
        key: &PipelineKey,
    ) -> backend_api::BackendResult<Arc<wgpu::ComputePipeline>> {
        if let Some(p) = self.pipelines.get(key) {
            return Ok(p.clone());
        }
        let kernel = key.kernel;
        debug_assert!(
            kernel.entries().contains(&key.entry)
                && key
                    .constants
                    .iter()
                    .all(|(c, _)| kernel.constants().contains(c) || *c == HW_F16),
            "{} names an entry point or constant that Kernel::entries/constants do not list",
            key.describe()
        );
        let scope = crate::errors::ErrorScope::push(device);
        let module = self.modules.entry(kernel).or_insert_with(|| {
            device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name()),
                source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
            })
        });
        let constants: Vec<(&str, f64)> = key
            .constants
            .iter()
            .map(|&(n, v)| (n, f64::from_bits(v)))
            .collect();
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(key.entry),
            layout: None,
            module,
            entry_point: Some(key.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                // Every kernel writes workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            #[cfg(not(target_arch = "wasm32"))]
            cache: self.disk.as_ref().map(|d| &d.cache),
            #[cfg(target_arch = "wasm32")]
            cache: None,
        });
        if let Some(e) = scope.pop() {
            // Forget a module that failed, so the error is not cached forever.
            self.modules.remove(&kernel);
            return Err(backend_api::BackendError::DeviceError(format!(
                "kernel {} failed to build: {}",
                key.describe(),
                crate::errors::with_sources(&e)
            )));
        }
        let pipeline = Arc::new(pipeline);
        self.pipelines.insert(key.clone(), pipeline.clone());
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(d) = &self.disk {
            d.built();
        }
        Ok(pipeline)
    }
}

/// Parameter blocks, one per kernel, laid out exactly as the WGSL `Params` structs (the
/// tests compare the sizes with naga's layout).
pub(crate) mod params {
    use super::*;

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Unary {
        pub n: u32,
        pub x_off: u32,
        pub y_off: u32,
        /// Output words of the `packed16` entry.
        pub words: u32,
        /// The first parameter of a `UnaryParamOp`.
        pub a: f32,
        /// The second parameter of a `UnaryParamOp`.
        pub b: f32,
        pub _pad1: u32,
        pub _pad2: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Binary {
        pub n: u32,
        pub a_off: u32,
        pub b_off: u32,
        pub out_off: u32,
        pub zero: u32,
        /// Output words of the `packed16` entry.
        pub words: u32,
        pub _pad: [u32; 2],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Broadcast {
        pub n: u32,
        pub rank: u32,
        pub start: u32,
        pub a_off: u32,
        pub b_off: u32,
        pub out_off: u32,
        pub a_sub: u32,
        pub b_sub: u32,
        pub shape: [u32; 8],
        pub a_strides: [u32; 8],
        pub b_strides: [u32; 8],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Gather {
        pub n: u32,
        pub cols: u32,
        pub rows: u32,
        pub row0: u32,
        pub row1: u32,
        pub first: u32,
        pub t_off: u32,
        pub i_off: u32,
        pub out_off: u32,
        pub _pad: [u32; 3],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Copy {
        pub src_off: u32,
        pub dst_off: u32,
        pub bytes: u32,
        pub first_word: u32,
        pub words: u32,
        pub _pad: [u32; 3],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Cast {
        pub n: u32,
        pub src_off: u32,
        pub dst_off: u32,
        pub words: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Reduce {
        pub outer: u32,
        pub len: u32,
        pub inner: u32,
        pub x_off: u32,
        pub y_off: u32,
        pub _pad: [u32; 3],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Rows {
        pub rows: u32,
        pub cols: u32,
        pub x_off: u32,
        pub y_off: u32,
        pub g_off: u32,
        pub b_off: u32,
        pub flags: u32,
        pub eps: f32,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Gemm {
        pub m: u32,
        pub n: u32,
        pub k: u32,
        pub lda: u32,
        pub ldb: u32,
        pub ldc: u32,
        pub a_off: u32,
        pub b_off: u32,
        pub c_off: u32,
        pub stride_a: u32,
        pub stride_b: u32,
        pub stride_c: u32,
        pub trans_a: u32,
        pub trans_b: u32,
        pub alpha: f32,
        pub beta: f32,
        pub batch_base: u32,
        pub _pad: [u32; 3],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Conv2d {
        pub n: u32,
        pub c: u32,
        pub h: u32,
        pub w: u32,
        pub k: u32,
        pub r: u32,
        pub s: u32,
        pub oh: u32,
        pub ow: u32,
        pub stride_h: u32,
        pub stride_w: u32,
        pub pad_h: u32,
        pub pad_w: u32,
        pub x_off: u32,
        pub f_off: u32,
        pub y_off: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct GemmQ {
        pub m: u32,
        pub n: u32,
        pub k: u32,
        pub a_byte: u32,
        pub b_off: u32,
        pub c_off: u32,
        pub ldb: u32,
        pub ldc: u32,
        pub alpha: f32,
        pub beta: f32,
        pub flags: u32,
        pub _pad: u32,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Conv2dEx {
        pub n: u32,
        pub c: u32,
        pub h: u32,
        pub w: u32,
        pub k: u32,
        pub r: u32,
        pub s: u32,
        pub oh: u32,
        pub ow: u32,
        pub stride_h: u32,
        pub stride_w: u32,
        pub pad_h: u32,
        pub pad_w: u32,
        pub dil_h: u32,
        pub dil_w: u32,
        pub groups: u32,
        pub x_off: u32,
        pub f_off: u32,
        pub y_off: u32,
        pub b_off: u32,
        pub flags: u32,
        pub _pad: [u32; 3],
    }

    #[repr(C)]
    #[derive(Clone, Copy, Pod, Zeroable, Debug)]
    pub(crate) struct Attention {
        pub rows: u32,
        pub seq_q: u32,
        pub seq_kv: u32,
        pub head_dim: u32,
        pub v_dim: u32,
        pub heads: u32,
        pub group: u32,
        /// `ATTENTION_*` bits.
        pub flags: u32,
        pub q_off: u32,
        pub k_off: u32,
        pub v_off: u32,
        pub o_off: u32,
        pub m_off: u32,
        pub window: u32,
        pub scale: f32,
        pub softcap: f32,
        /// `(batch, head, row)` element strides of Q, K, V and O, each followed by one
        /// word (`splits`, `chunk` or padding) as WGSL lays out a vec3 and a u32.
        pub q_s: [u32; 3],
        /// `split`: key chunks per row.
        pub splits: u32,
        pub k_s: [u32; 3],
        /// `split`: keys per chunk.
        pub chunk: u32,
        pub v_s: [u32; 3],
        pub _p2: u32,
        pub o_s: [u32; 3],
        pub _p3: u32,
        /// The mask's `(batch, head)` element strides, padded to a vec4.
        pub m_s: [u32; 4],
    }

    pub(crate) const ATTENTION_CAUSAL: u32 = 1;
    pub(crate) const ATTENTION_MASKED: u32 = 2;
    pub(crate) const ATTENTION_CAPPED: u32 = 4;
    pub(crate) const ATTENTION_WINDOWED: u32 = 8;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(kernel: Kernel) -> naga::Module {
        let src = kernel.source();
        naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
            panic!(
                "{} does not parse:\n{}",
                kernel.name(),
                e.emit_to_string(&src)
            )
        })
    }

    /// Every kernel parses and validates with naga, as wgpu-core would check it: no GPU
    /// needed.
    #[test]
    fn every_kernel_validates_with_naga() {
        for &kernel in Kernel::ALL {
            let m = module(kernel);
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::all(),
            )
            .validate(&m)
            .unwrap_or_else(|e| {
                panic!(
                    "{} does not validate:\n{}",
                    kernel.name(),
                    e.emit_to_string(&kernel.source())
                )
            });
        }
    }

    /// Every entry point and override constant the Rust side names exists in its module,
    /// so a renamed WGSL function or a mistyped constant fails here, without a GPU.
    #[test]
    fn rust_names_exist_in_the_wgsl() {
        for &kernel in Kernel::ALL {
            let m = module(kernel);
            let entries: Vec<&str> = m.entry_points.iter().map(|e| e.name.as_str()).collect();
            for e in kernel.entries() {
                assert!(
                    entries.contains(e),
                    "{} has no entry point {e} (it has {entries:?})",
                    kernel.name()
                );
            }
            let overrides: Vec<&str> = m
                .overrides
                .iter()
                .filter_map(|(_, o)| o.name.as_deref())
                .collect();
            for c in kernel.constants() {
                assert!(
                    overrides.contains(c),
                    "{} has no override constant {c} (it has {overrides:?})",
                    kernel.name()
                );
            }
        }
    }

    fn params_size(kernel: Kernel) -> u32 {
        let m = module(kernel);
        let (_, var) = m
            .global_variables
            .iter()
            .find(|(_, v)| v.name.as_deref() == Some("params"))
            .unwrap_or_else(|| panic!("{} has no params", kernel.name()));
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(m.to_ctx()).unwrap();
        layouter[var.ty].size
    }

    /// Each Rust parameter block has the size of its WGSL struct.
    #[test]
    fn params_match_wgsl_layout() {
        for &kernel in Kernel::ALL {
            let rust = kernel.params_size();
            assert_eq!(
                params_size(kernel) as usize,
                rust,
                "{} params",
                kernel.name()
            );
            assert_eq!(
                rust % 16,
                0,
                "{} params must fill whole 16-byte uniform rows",
                kernel.name()
            );
        }
    }
}
