//! One `#[test]` per check, stamped into a backend's test crate by [`check_tests!`]: the
//! list of checks is written here once, and every backend (CPU, WebGPU, the wasm wrapper
//! natively and in a browser) gets the same tests.
//!
//! ```ignore
//! fn check(c: conformance::Check) {
//!     conformance::assert_check(&backend(), "cpu", c, &config());
//! }
//! conformance::check_tests!(mod cpu, check);   // tests cpu::gemm, cpu::misuse, ...
//! ```
//!
//! A new check is one line in [`__for_each_check!`], which also defines the
//! [`Check`](crate::Check) enum, its names and its regression file; the suite, and its
//! arm in the driver, are the rest.

/// Stamps a module of tests, one per check of [`Check::ALL`](crate::Check::ALL), each
/// calling `run(check)`.
///
/// - `check_tests!(mod NAME, run)`: `#[test] fn gemm() { super::run(Check::Gemm) }` and so
///   on, for every check; `ordering` and `threads` are ignored under Miri (fixed sizes,
///   too slow for an interpreter).
/// - `check_tests!(async mod NAME, run, ATTRIBUTE)`: `#[ATTRIBUTE] async fn gemm() {
///   super::run(Check::Gemm).await }` for every check a single-threaded page can run
///   (all but `threads`), for `wasm_bindgen_test`.
///
/// `run` is a function of the calling module; the module name shows in each test's name
/// (`cpu::gemm`, `webgpu::misuse`), and the check's report names the backend and adapter.
#[macro_export]
macro_rules! check_tests {
    (mod $module:ident, $run:ident) => {
        $crate::__for_each_check!(__sync_check_tests($module, $run));
    };
    (async mod $module:ident, $run:ident, $attr:meta) => {
        $crate::__for_each_check!(__async_check_tests($module, $run, $attr));
    };
}

/// The one list of checks: the [`Check`](crate::Check) enum, its names, its committed
/// regression files and the tests [`check_tests!`] stamps are all generated from it. Each
/// entry is the check's name, its variant, its kind and its documentation. Kinds:
/// `property` (generated cases, regressions in `regressions/NAME.json`), `plain`, `slow`
/// (ignored under Miri) and `threads` (ignored under Miri, and not in a browser page,
/// which has one thread). New checks go last: a check's position seeds its cases, so an
/// insertion would change every later check's cases (and the printed case seeds).
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_check {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            gemm Gemm property "`gemm`: transposes, leading dims, alpha/beta, NaN in C with beta 0.",
            batched_gemm BatchedGemm property "`batched_gemm`: gaps between batches, shared A or B.",
            gemm_ex GemmEx property "`gemm_ex`: f16/bf16/f32 inputs.",
            conv2d Conv2d property "`conv2d_forward`: stride, padding, any filter size.",
            attention Attention property "`attention`: causal and not, `seq_q != seq_kv`.",
            reduce Reduce property "`reduce`: every op and axis, empty axes, long rows.",
            rows Rows property "`softmax`, `log_softmax`, `layer_norm`, `rms_norm`: in place, gamma/beta, large means, long rows.",
            unary Unary property "`unary`: every op, in place and not, special values.",
            binary Binary property "`binary`: every op, every aliasing, special values.",
            copy Copy property "`copy_htod` / `copy_dtoh` / `copy_dtod` at any byte offset.",
            cast Cast property "`cast` between f32, f16 and bf16.",
            misuse Misuse plain "Every bad-input class: errors, no panics, memory intact.",
            memory Memory plain "Scoped memory: aliases, frame and heap arenas, handles, planned arenas, `copy_dtoh_many`.",
            ordering Ordering slow "Program order under batching.",
            threads Threads threads "Threads sharing one backend.",
            attention_ex AttentionEx property "`attention_ex`: GQA/MQA, `[b, s, h, d]` strides, KV caches read in place, broadcast masks with `-inf` rows, soft cap, sliding window, its own V head size.",
            binary_broadcast BinaryBroadcast property "`binary_broadcast`: every op, NumPy broadcasting over 0 to 6 dimensions, zero-size dimensions, in place on an input that is not broadcast.",
            gather Gather property "`gather`: out-of-range indices (zero rows), empty tables, long rows, values copied bit for bit.",
            conv2d_ex Conv2dEx property "`conv2d_forward_ex`: depthwise and grouped, dilation, asymmetric padding, bias, empty inputs.",
            gemm_q GemmQ property "`gemm_q`: Q8_0 and Q4_0 weights at any byte offset, B f32 or f16, alpha/beta, NaN in C with beta 0.",
            unary_param UnaryParam property "`unary_param`: LeakyRelu, Elu, Selu, Celu, HardSigmoid, Clip with random parameters, in place and not, special values.",
            half_storage HalfStorage property "`unary_ex`, `binary_ex`, `reduce_ex`, `rows_ex` on f16 and bf16 storage: every op, mid-word starts and ends, values at the top of the range, sums of 10^5 ones, softmax and norms over rows of 1 to 300 columns.",
        }
    };
}

/// Defines [`Check`](crate::Check) from [`__for_each_check!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __define_checks {
    (() $($name:ident $check:ident $kind:ident $doc:literal,)*) => {
        /// One part of the suite.
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize,
            serde::Deserialize,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum Check {
            $( #[doc = $doc] $check, )*
        }

        impl Check {
            /// Every check, in the order the suite runs them.
            pub const ALL: &'static [Check] = &[$(Check::$check),*];

            /// The name used in reports and on the command line.
            pub const fn name(self) -> &'static str {
                match self {
                    $( Check::$check => stringify!($name), )*
                }
            }

            /// True for the property checks that generate cases.
            pub const fn is_property(self) -> bool {
                match self {
                    $( Check::$check => $crate::__check_kind_is_property!($kind), )*
                }
            }

            /// The regression cases committed under `regressions/` (a JSON list; `[]` for
            /// the checks that generate no cases).
            pub(crate) fn regressions(self) -> &'static str {
                match self {
                    $( Check::$check => $crate::__check_regressions!($name $kind), )*
                }
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __check_kind_is_property {
    (property) => {
        true
    };
    ($other:ident) => {
        false
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __check_regressions {
    ($name:ident property) => {
        include_str!(concat!("../regressions/", stringify!($name), ".json"))
    };
    ($name:ident $other:ident) => {
        "[]"
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sync_check_tests {
    (($module:ident, $run:ident) $($name:ident $check:ident $kind:ident $doc:literal,)*) => {
        mod $module {
            $( $crate::__sync_check_test!($run, $name, $check, $kind); )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sync_check_test {
    ($run:ident, $name:ident, $check:ident, slow) => {
        $crate::__sync_check_test!(@miri_ignored $run, $name, $check);
    };
    ($run:ident, $name:ident, $check:ident, threads) => {
        $crate::__sync_check_test!(@miri_ignored $run, $name, $check);
    };
    ($run:ident, $name:ident, $check:ident, $kind:ident) => {
        #[test]
        fn $name() {
            super::$run($crate::Check::$check);
        }
    };
    (@miri_ignored $run:ident, $name:ident, $check:ident) => {
        #[test]
        #[cfg_attr(
            miri,
            ignore = "fixed sizes (up to 70 000 elements, or 4 threads x 12 rounds): hours under Miri"
        )]
        fn $name() {
            super::$run($crate::Check::$check);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __async_check_tests {
    (($module:ident, $run:ident, $attr:meta) $($name:ident $check:ident $kind:ident $doc:literal,)*) => {
        mod $module {
            #[allow(unused_imports, reason = "the attribute's macro, e.g. wasm_bindgen_test")]
            use super::*;
            $( $crate::__async_check_test!($run, $attr, $name, $check, $kind); )*
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __async_check_test {
    ($run:ident, $attr:meta, $name:ident, $check:ident, threads) => {};
    ($run:ident, $attr:meta, $name:ident, $check:ident, $kind:ident) => {
        #[$attr]
        async fn $name() {
            super::$run($crate::Check::$check).await;
        }
    };
}
