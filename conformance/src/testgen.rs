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
//! A new check is one line in [`__for_each_check!`] (and its `Check` variant); the
//! stamped `every_check_has_a_test` test fails where the two lists disagree.

/// Stamps a module of tests, one per check of [`Check::ALL`](crate::Check::ALL), each
/// calling `run(check)`.
///
/// - `check_tests!(mod NAME, run)`: `#[test] fn gemm() { super::run(Check::Gemm) }` and so
///   on, for every check; `ordering` and `threads` are ignored under Miri (fixed sizes,
///   too slow for an interpreter). Also a test that the module covers every check.
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

/// The one list of checks that [`check_tests!`] stamps, each with its test name and kind:
/// `plain`, `slow` (ignored under Miri) or `threads` (ignored under Miri, and not in a
/// browser page, which has one thread).
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_check {
    ($callback:ident $args:tt) => {
        $crate::$callback! { $args
            gemm Gemm plain,
            batched_gemm BatchedGemm plain,
            gemm_ex GemmEx plain,
            conv2d Conv2d plain,
            attention Attention plain,
            reduce Reduce plain,
            unary Unary plain,
            binary Binary plain,
            copy Copy plain,
            cast Cast plain,
            misuse Misuse plain,
            ordering Ordering slow,
            threads Threads threads,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sync_check_tests {
    (($module:ident, $run:ident) $($name:ident $check:ident $kind:ident,)*) => {
        mod $module {
            $( $crate::__sync_check_test!($run, $name, $check, $kind); )*

            /// The stamped tests cover every check of the suite.
            #[test]
            fn every_check_has_a_test() {
                assert_eq!(
                    [$($crate::Check::$check),*].as_slice(),
                    $crate::Check::ALL,
                    "conformance::__for_each_check! and Check::ALL disagree"
                );
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sync_check_test {
    ($run:ident, $name:ident, $check:ident, plain) => {
        #[test]
        fn $name() {
            super::$run($crate::Check::$check);
        }
    };
    ($run:ident, $name:ident, $check:ident, $kind:ident) => {
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
    (($module:ident, $run:ident, $attr:meta) $($name:ident $check:ident $kind:ident,)*) => {
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
