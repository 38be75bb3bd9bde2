//! The Wasm-guest chain: the demo guest (`wasm-host/guest`) fills matrices in its linear
//! memory, calls `gemm`, `unary`, `softmax`, `binary` and GQA `attention` on its own
//! pointers, and checks what it reads back at the same pointers. Run on every device this
//! machine has, with the bytes copied per round trip, then timed on a larger gemm:
//!
//! ```sh
//! cargo run --release -p wasm-host --example guest_chain            # n = 512, 20 reps
//! cargo run --release -p wasm-host --example guest_chain -- 1024 10
//! ```

use std::time::Instant;

use backends::BackendKind;
use wasm_host::{Device, FastCpuBackend, Guest};

fn devices() -> Vec<(String, Device)> {
    let mut out = Vec::new();
    match Device::in_place() {
        Ok(d) => out.push(("fast-cpu, in place".to_string(), d)),
        Err(e) => eprintln!("fast-cpu: {e}"),
    }
    match Device::in_place_webgpu() {
        Ok(d) => out.push((format!("{}, in place", d.backend().name()), d)),
        Err(e) => eprintln!("webgpu in place: not run: {e}"),
    }
    let mut fast = FastCpuBackend::new();
    match backend_api::ComputeBackend::init(&mut fast) {
        Ok(()) => out.push((
            "fast-cpu, staged".to_string(),
            Device::staged(Box::new(fast)),
        )),
        Err(e) => eprintln!("fast-cpu: {e}"),
    }
    for kind in [BackendKind::Cpu, BackendKind::WebGpu] {
        match backends::create(kind) {
            Ok(b) => out.push((format!("{}, staged", b.name()), Device::staged(b))),
            Err(e) => eprintln!("{}: not run: {e}", kind.name()),
        }
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let n = args.first().copied().unwrap_or(512);
    let reps = args.get(1).copied().unwrap_or(20);
    let wasm = wasm_host::demo_guest()?;
    println!(
        "demo guest: {} bytes of wasm; `run` = gemm 16x32x24, relu in place, softmax, add, GQA attention (4/2 heads)",
        wasm.len()
    );
    println!(
        "{:<44} {:>10} {:>6} {:>12} {:>12} {:>12} | gemm {n}: ms/call {:>12}",
        "device", "max diff", "calls", "to device", "to guest", "staged", "bytes/call"
    );
    for (name, device) in devices() {
        let mut g = Guest::load(&wasm, device)?;
        let err: f32 = g.call("run", ())?;
        let c = g.copies();
        if !(0.0..1e-4).contains(&err) {
            return Err(format!("{name}: the guest's check failed ({err})").into());
        }
        // Timed: `reps` gemms of n x n (the oracle only at small n: f64 loops).
        let slow = name.starts_with("cpu") && n > 256;
        let (ms, bytes) = if slow {
            (f64::NAN, 0)
        } else {
            let _: i32 = g.call("gemm_round_trips", (n as i32, 1))?; // warm-up
            let before = g.copies();
            let t = Instant::now();
            let code: i32 = g.call("gemm_round_trips", (n as i32, reps as i32))?;
            let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
            if code != 0 {
                return Err(format!("{name}: gemm refused: {:?}", g.last_error()).into());
            }
            (ms, (g.copies().bytes() - before.bytes()) / reps as u64)
        };
        println!(
            "{:<44} {:>10.2e} {:>6} {:>12} {:>12} {:>12} | {:>17.3} {:>12}",
            name, err, c.calls, c.to_device, c.to_guest, c.staged, ms, bytes
        );
    }
    Ok(())
}
