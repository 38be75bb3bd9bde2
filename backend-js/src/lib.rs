//! The browser package: a JavaScript/TypeScript API over `WasmBackend`.
//!
//! `scripts/build-js` compiles this crate to WebAssembly, runs `wasm-bindgen --target web`
//! (which writes the TypeScript types) and assembles the npm package (`backend-js/package/`
//! holds its `package.json` and README). From JavaScript:
//!
//! - `Backend`: `await Backend.create(canvas?, engine?)`, every op of the
//!   `ComputeBackend` trait and its extensions on device pointers that are JS numbers
//!   (device addresses stay below 2^53; one that would not is refused, never rounded),
//!   `write`/`read`/`readF32`, `upload(slice, ptr)`/`download(ptr, slice)` straight from
//!   and into linear memory, device frame and heap arenas.
//! - `Driver` (`backend.driver`): the seed WasmGPU.driver's surface over
//!   the module's linear memory — typed views, heap slices, the frame arena whose slices
//!   die at `reset()`, heap arenas, handles.
//! - Errors: every failure is a `BackendError` (an `Error` subclass per kind:
//!   `InvalidArgumentError`, `UnsupportedError`, `OutOfMemoryError`, `DeviceError`,
//!   `NotInitializedError`) with `kind` and the message (`js/errors.js`).
//!
//! Every number from JavaScript is checked (`args`): a negative, fractional, infinite or
//! too-large size or address is an `InvalidArgumentError` naming the op and the operand,
//! never a value wrapped by a conversion.
//!
//! Natively the crate is empty, apart from the tests that make the JS tests' fixture.

#[cfg(target_arch = "wasm32")]
mod args;
#[cfg(target_arch = "wasm32")]
pub mod backend;
#[cfg(all(target_arch = "wasm32", feature = "conformance"))]
mod conformance_run;
#[cfg(target_arch = "wasm32")]
pub mod device;
#[cfg(target_arch = "wasm32")]
pub mod driver;
#[cfg(target_arch = "wasm32")]
mod error;
#[cfg(target_arch = "wasm32")]
mod types;
