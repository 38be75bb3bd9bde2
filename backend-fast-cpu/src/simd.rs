//! Our own loops on the best instruction set the CPU has.
//!
//! The crate is compiled for the target's baseline (SSE2 on x86-64), so the compiler
//! vectorises the elementwise, row and attention loops four lanes wide at most. pulp (the
//! SIMD layer under faer and the gemm crate, safe to call) detects AVX-512 or AVX2+FMA
//! once and runs a closure inside a function compiled for it, into which the closure's
//! loops and `#[inline(always)]` helpers are inlined and vectorised 8 or 16 lanes wide.
//! On wasm32 it is simd128 when the module was built with it, else the plain loops.

/// Runs `f` compiled for the best instruction set found at run time. Whatever `f` calls
/// must be inlined into it (closures and `#[inline(always)]` functions are) to benefit.
#[inline(always)]
pub(crate) fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}
