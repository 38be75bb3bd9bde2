//! The guest of `wasm-host`: everything here runs inside the Wasm sandbox. It fills
//! matrices in its own linear memory, hands their addresses to the host's backend
//! (`gemm`, `unary`, `binary`, `softmax`, `attention` of the import module `"backend"`),
//! and reads the results at the same addresses, checking them against loops of its own.
//!
//! The `hostile_*` exports misuse the same imports on purpose: the host must refuse each
//! call (code 1, `INVALID_ARGUMENT`) and write nothing.

// Calling an import is `unsafe` in Rust whatever it does; each call site says why it is
// sound. The host validates every pointer, so a wrong one is refused, not followed.
#![deny(unsafe_op_in_unsafe_fn)]

#[link(wasm_import_module = "backend")]
unsafe extern "C" {
    fn gemm(m: i32, n: i32, k: i32, a: i32, b: i32, c: i32) -> i32;
    fn unary(op: i32, x: i32, y: i32, n: i32) -> i32;
    fn binary(op: i32, a: i32, b: i32, y: i32, n: i32) -> i32;
    fn softmax(x: i32, y: i32, rows: i32, cols: i32) -> i32;
    #[allow(clippy::too_many_arguments)]
    fn attention(
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
        o: i32,
    ) -> i32;
    fn last_error(ptr: i32, cap: i32) -> i32;
}

/// Indices in `UnaryOp::ALL` / `BinaryOp::ALL` (the host's op codes).
const RELU: i32 = 0;
const NEG: i32 = 7;
const ADD: i32 = 0;

/// A guest address as the ABI passes it.
fn addr<T>(p: *const T) -> i32 {
    p as usize as i32
}

/// Deterministic values in [-0.5, 0.5).
fn fill(v: &mut [f32], seed: usize) {
    for (i, x) in v.iter_mut().enumerate() {
        *x = ((i * 37 + seed * 11) % 101) as f32 / 101.0 - 0.5;
    }
}

fn max_diff(a: &[f32], b: &[f64]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - y).abs() as f32)
        .fold(0.0, f32::max)
}

const M: usize = 16;
const K: usize = 32;
const N: usize = 24;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const SEQ_Q: usize = 8;
const SEQ_KV: usize = 16;
const D: usize = 16;

/// The demo: gemm, relu in place, softmax, add, GQA causal attention, each on the guest's
/// own buffers, each checked here. Returns the largest difference from the guest's own
/// f64 loops, or `-code` when the host refused a call.
#[unsafe(no_mangle)]
pub extern "C" fn run() -> f32 {
    let mut a = vec![0.0f32; M * K];
    let mut b = vec![0.0f32; K * N];
    fill(&mut a, 1);
    fill(&mut b, 2);
    let mut c = vec![0.0f32; M * N];
    let mut s = vec![0.0f32; M * N];
    let mut t = vec![0.0f32; M * N];
    // SAFETY: each pointer is that of a live Vec of the length the call's sizes name;
    // the host writes only the output (`c`, then `c` in place, `s`, `t`), which is
    // borrowed mutably here, and reads the others.
    let codes = unsafe {
        [
            gemm(
                M as i32,
                N as i32,
                K as i32,
                addr(a.as_ptr()),
                addr(b.as_ptr()),
                addr(c.as_mut_ptr()),
            ),
            unary(RELU, addr(c.as_ptr()), addr(c.as_mut_ptr()), (M * N) as i32),
            softmax(addr(c.as_ptr()), addr(s.as_mut_ptr()), M as i32, N as i32),
            binary(
                ADD,
                addr(s.as_ptr()),
                addr(c.as_ptr()),
                addr(t.as_mut_ptr()),
                (M * N) as i32,
            ),
        ]
    };
    if let Some(&code) = codes.iter().find(|&&c| c != 0) {
        return -(code as f32);
    }
    let mut want_c = vec![0.0f64; M * N];
    for i in 0..M {
        for j in 0..N {
            let dot: f64 = (0..K)
                .map(|p| f64::from(a[i * K + p]) * f64::from(b[p * N + j]))
                .sum();
            want_c[i * N + j] = dot.max(0.0);
        }
    }
    let mut want_s = vec![0.0f64; M * N];
    for i in 0..M {
        let row = &want_c[i * N..][..N];
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|x| (x - max).exp()).sum();
        for j in 0..N {
            want_s[i * N + j] = (row[j] - max).exp() / sum;
        }
    }
    let want_t: Vec<f64> = want_s.iter().zip(&want_c).map(|(x, y)| x + y).collect();
    let mut err = max_diff(&c, &want_c)
        .max(max_diff(&s, &want_s))
        .max(max_diff(&t, &want_t));

    let mut q = vec![0.0f32; HEADS * SEQ_Q * D];
    let mut k = vec![0.0f32; KV_HEADS * SEQ_KV * D];
    let mut v = vec![0.0f32; KV_HEADS * SEQ_KV * D];
    fill(&mut q, 3);
    fill(&mut k, 4);
    fill(&mut v, 5);
    let mut o = vec![0.0f32; HEADS * SEQ_Q * D];
    // SAFETY: as above; `o` is the only output.
    let code = unsafe {
        attention(
            1,
            HEADS as i32,
            KV_HEADS as i32,
            SEQ_Q as i32,
            SEQ_KV as i32,
            D as i32,
            1,
            addr(q.as_ptr()),
            addr(k.as_ptr()),
            addr(v.as_ptr()),
            addr(o.as_mut_ptr()),
        )
    };
    if code != 0 {
        return -(code as f32);
    }
    let mut want_o = vec![0.0f64; HEADS * SEQ_Q * D];
    let scale = 1.0 / (D as f64).sqrt();
    for h in 0..HEADS {
        let kvh = h / (HEADS / KV_HEADS);
        for i in 0..SEQ_Q {
            // Causal, bottom-right: query i sees keys j <= i + SEQ_KV - SEQ_Q.
            let seen = i + SEQ_KV - SEQ_Q + 1;
            let scores: Vec<f64> = (0..seen)
                .map(|j| {
                    (0..D)
                        .map(|e| {
                            f64::from(q[(h * SEQ_Q + i) * D + e])
                                * f64::from(k[(kvh * SEQ_KV + j) * D + e])
                        })
                        .sum::<f64>()
                        * scale
                })
                .collect();
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for e in 0..D {
                want_o[(h * SEQ_Q + i) * D + e] = (0..seen)
                    .map(|j| {
                        (scores[j] - max).exp() / sum * f64::from(v[(kvh * SEQ_KV + j) * D + e])
                    })
                    .sum();
            }
        }
    }
    err = err.max(max_diff(&o, &want_o));
    err
}

/// Bytes of linear memory now.
fn memory_bytes() -> usize {
    core::arch::wasm32::memory_size(0) * 65536
}

/// A buffer the hostile calls aim at: after them it must still hold its pattern.
static mut SENTINEL: [f32; 64] = [0.0; 64];

/// The sentinel's address, after writing its pattern `i as f32`.
#[unsafe(no_mangle)]
pub extern "C" fn sentinel() -> i32 {
    let p = &raw mut SENTINEL;
    // SAFETY: the guest is single-threaded and nothing else holds a reference to it.
    let s = unsafe { &mut *p };
    for (i, x) in s.iter_mut().enumerate() {
        *x = i as f32;
    }
    addr(p)
}

/// gemm whose output is the sentinel but whose B runs past the end of memory.
#[unsafe(no_mangle)]
pub extern "C" fn hostile_past_end() -> i32 {
    let c = sentinel();
    let b = (memory_bytes() - 8) as i32;
    // SAFETY: the host refuses B before anything runs.
    unsafe { gemm(4, 4, 4, c, b, c + 128) }
}

/// Sizes whose byte counts overflow: 2^32-1 cubed.
#[unsafe(no_mangle)]
pub extern "C" fn hostile_overflow() -> i32 {
    let c = sentinel();
    // SAFETY: refused: the sizes cannot describe any memory.
    unsafe { gemm(-1, -1, -1, c, c, c) }
}

/// An input whose end wraps around 32 bits: [0xffff_fff0, 0x1_0000_0010).
#[unsafe(no_mangle)]
pub extern "C" fn hostile_wrap() -> i32 {
    let s = sentinel();
    // SAFETY: refused: x lies outside memory.
    unsafe { unary(NEG, -16, s, 8) }
}

/// An output that partly overlaps its input (by one element).
#[unsafe(no_mangle)]
pub extern "C" fn hostile_overlap() -> i32 {
    let s = sentinel();
    // SAFETY: refused: y = x + 4 bytes partly overlaps x.
    unsafe { unary(NEG, s, s + 4, 16) }
}

/// An op code past the end of the enum.
#[unsafe(no_mangle)]
pub extern "C" fn hostile_op_code() -> i32 {
    let s = sentinel();
    // SAFETY: refused: no unary op 999.
    unsafe { unary(999, s, s, 16) }
}

/// A misaligned f32 output.
#[unsafe(no_mangle)]
pub extern "C" fn hostile_misaligned() -> i32 {
    let s = sentinel();
    // SAFETY: refused: y is not 4-byte aligned.
    unsafe { unary(NEG, s + 128, s + 2, 4) }
}

/// Attention with kv_heads not dividing heads.
#[unsafe(no_mangle)]
pub extern "C" fn hostile_heads() -> i32 {
    let s = sentinel();
    // SAFETY: refused by the backend's validation (3 % 2 != 0); all ranges are inside
    // the sentinel.
    unsafe { attention(1, 3, 2, 1, 1, 4, 0, s, s + 48, s + 80, s + 112) }
}

/// `last_error` asked to write past the end of memory: refused with -1.
#[unsafe(no_mangle)]
pub extern "C" fn hostile_last_error() -> i32 {
    // SAFETY: the host checks [ptr, ptr + cap) against memory before writing.
    unsafe { last_error((memory_bytes() - 4) as i32, 64) }
}

/// Grows memory by `pages`, negates 16 values placed in the new pages in place and
/// checks them; then aims an op at the last 4 bytes with 2 values (past the new end).
/// Returns `100 * first + 10 + second` of the two codes (want 11: 0, then refused), -1 if
/// the values were wrong, -2 if the memory could not grow.
#[unsafe(no_mangle)]
pub extern "C" fn grow_and_use(pages: i32) -> i32 {
    let old = core::arch::wasm32::memory_grow(0, pages as usize);
    if old == usize::MAX {
        return -2;
    }
    let x = (old * 65536) as *mut f32;
    for i in 0..16 {
        // SAFETY: the page at `old` was just added and nothing else uses it.
        unsafe { x.add(i).write(i as f32) };
    }
    // SAFETY: 64 bytes in the new pages; the host sees the grown memory.
    let first = unsafe { unary(NEG, addr(x), addr(x), 16) };
    for i in 0..16 {
        // SAFETY: as above.
        if unsafe { x.add(i).read() } != -(i as f32) {
            return -1;
        }
    }
    // SAFETY: refused: 8 bytes from 4 before the end.
    let second = unsafe {
        unary(
            NEG,
            (memory_bytes() - 4) as i32,
            (memory_bytes() - 4) as i32,
            2,
        )
    };
    first * 100 + 10 + second
}

/// Copies the last error message into a buffer and returns its length.
#[unsafe(no_mangle)]
pub extern "C" fn error_message_len() -> i32 {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is 256 writable bytes.
    unsafe { last_error(addr(buf.as_mut_ptr()), buf.len() as i32) }
}

/// Spins forever: the host's fuel budget must stop it.
#[unsafe(no_mangle)]
pub extern "C" fn spin() -> i32 {
    let mut i: u32 = 0;
    loop {
        i = core::hint::black_box(i.wrapping_add(1));
    }
}

/// Four f32 at a 16-byte aligned address: the WebGPU backend's vectorised gemm wants its
/// operands 16-byte aligned, and in place it sees the guest's own addresses (a `Vec<f32>`
/// is only 8-byte aligned here).
#[derive(Clone, Copy)]
#[repr(C, align(16))]
struct Quad([f32; 4]);

fn quads(len: usize, seed: usize) -> Vec<Quad> {
    let mut flat = vec![0.0f32; len];
    fill(&mut flat, seed);
    flat.chunks(4)
        .map(|c| {
            let mut q = [0.0; 4];
            q[..c.len()].copy_from_slice(c);
            Quad(q)
        })
        .collect()
}

/// `reps` row-major `n x n` gemms on 16-byte aligned buffers filled once, for timing the
/// round trip. Returns the first non-zero code, or 0.
#[unsafe(no_mangle)]
pub extern "C" fn gemm_round_trips(n: i32, reps: i32) -> i32 {
    let len = (n as usize) * (n as usize);
    let a = quads(len, 6);
    let b = quads(len, 7);
    let mut c = quads(len, 0);
    for _ in 0..reps {
        // SAFETY: three live buffers of at least n * n f32; only `c` is written.
        let code = unsafe {
            gemm(
                n,
                n,
                n,
                addr(a.as_ptr()),
                addr(b.as_ptr()),
                addr(c.as_mut_ptr()),
            )
        };
        if code != 0 {
            return code;
        }
    }
    0
}
