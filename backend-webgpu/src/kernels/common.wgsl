// Shared helpers: IEEE special values built at run time (WGSL forbids NaN and infinity
// in constant expressions), bit-level NaN/inf tests that no fast-math assumption can
// remove, and exact f16/bf16 conversions done on the bits.

fn f32_from_bits(bits: u32) -> f32 {
    return bitcast<f32>(bits);
}

fn nan_f32() -> f32 {
    return f32_from_bits(0x7fc00000u);
}

fn inf_f32() -> f32 {
    return f32_from_bits(0x7f800000u);
}

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn is_inf(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
}

// The adapter's own f16 conversions (`unpack2x16float`, `pack2x16float`) in place of the
// bit arithmetic below: set only where a probe at initialisation found them exact on
// every f16 value and on the rounding boundaries (WGSL promises neither round-to-nearest-
// even, infinity on overflow, nor subnormals), see `hw_f16.rs`.
override HW_F16: bool = false;

// f16 bits (low 16 bits of h) to f32 bits, exactly: subnormals become normal f32.
fn f16_to_f32_bits(h: u32) -> u32 {
    if (HW_F16) {
        return bitcast<u32>(unpack2x16float(h & 0xffffu).x);
    }
    // Normal values (the common case): rebias the exponent, no further branch.
    let ef = (h >> 10u) & 0x1fu;
    if (ef != 0u && ef != 31u) {
        return ((h & 0x8000u) << 16u) | (((h & 0x7fffu) << 13u) + 0x38000000u);
    }
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        if (m == 0u) {
            return sign;
        }
        // m * 2^-24: shift the leading one up to bit 10.
        let s = countLeadingZeros(m) - 21u;
        let mm = (m << s) & 0x3ffu;
        return sign | ((113u - s) << 23u) | (mm << 13u);
    }
    if (e == 31u) {
        return sign | 0x7f800000u | (m << 13u);
    }
    return sign | ((e + 112u) << 23u) | (m << 13u);
}

// f32 bits to f16 bits, rounding to nearest even; overflow gives infinity, NaN stays NaN.
fn f32_to_f16_bits(x: u32) -> u32 {
    if (HW_F16) {
        return pack2x16float(vec2<f32>(bitcast<f32>(x), 0.0)) & 0xffffu;
    }
    let sign = (x >> 16u) & 0x8000u;
    // The normal f16 range, 2^-14 <= |x| < 65520 (what rounds to 65504 at most): rebias
    // the exponent and round to nearest even on the low 13 bits; a carry into the
    // exponent is the correctly rounded result.
    let a = x & 0x7fffffffu;
    if (a >= 0x38800000u && a < 0x477ff000u) {
        let b = a - 0x38000000u;
        return sign | ((b + 0xfffu + ((b >> 13u) & 1u)) >> 13u);
    }
    let e = i32((x >> 23u) & 0xffu);
    var m = x & 0x7fffffu;
    if (e == 255) {
        return sign | 0x7c00u | select(0u, 0x200u | (m >> 13u), m != 0u);
    }
    let ee = e - 112;
    if (ee >= 31) {
        return sign | 0x7c00u;
    }
    if (ee <= 0) {
        if (ee < -10) {
            return sign;
        }
        m = m | 0x800000u;
        let shift = u32(14 - ee);
        let half = 1u << (shift - 1u);
        let rem = m & ((1u << shift) - 1u);
        var r = m >> shift;
        if (rem > half || (rem == half && (r & 1u) == 1u)) {
            r = r + 1u;
        }
        return sign | r;
    }
    var r = (u32(ee) << 10u) | (m >> 13u);
    let rem = m & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u) == 1u)) {
        r = r + 1u;
    }
    return sign | r;
}

// f32 bits to bf16 bits, rounding to nearest even; NaN stays a (quiet) NaN.
fn f32_to_bf16_bits(x: u32) -> u32 {
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return (x >> 16u) | 0x40u;
    }
    return (x + 0x7fffu + ((x >> 16u) & 1u)) >> 16u;
}

// Element types of the gemm and cast kernels, as override constants.
const DTYPE_F32: u32 = 0u;
const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;

// Element `i` of type `dtype` from a word array, as f32 bits.
fn decode_bits(word: u32, i: u32, dtype: u32) -> u32 {
    if (dtype == DTYPE_F32) {
        return word;
    }
    let h = select(word & 0xffffu, word >> 16u, (i & 1u) == 1u);
    if (dtype == DTYPE_F16) {
        return f16_to_f32_bits(h);
    }
    return h << 16u;
}

// Both 16-bit elements of a word of `dtype` (f16 or bf16), low half first: one
// `unpack2x16float` where the adapter's conversions are exact.
fn decode_pair(word: u32, dtype: u32) -> vec2<f32> {
    if (dtype == DTYPE_F16 && HW_F16) {
        return unpack2x16float(word);
    }
    return vec2<f32>(bitcast<f32>(decode_bits(word, 0u, dtype)), bitcast<f32>(decode_bits(word, 1u, dtype)));
}

// Two f32 values rounded to `dtype` (f16 or bf16) as one word, `v.x` in the low half:
// `decode_pair`'s inverse, one `pack2x16float` where the adapter's conversions are exact.
fn encode_pair(v: vec2<f32>, dtype: u32) -> u32 {
    if (dtype == DTYPE_F16 && HW_F16) {
        return pack2x16float(v);
    }
    return (encode_bits(v.x, dtype) & 0xffffu) | (encode_bits(v.y, dtype) << 16u);
}

// f32 `x` rounded to 16-bit `dtype` (f16 or bf16), as the low 16 bits: `decode_bits`'s
// inverse for the store.
fn encode_bits(x: f32, dtype: u32) -> u32 {
    if (dtype == DTYPE_F16) {
        return f32_to_f16_bits(bitcast<u32>(x));
    }
    return f32_to_bf16_bits(bitcast<u32>(x));
}

// The index of a thread in a 1-D problem laid out over a 2-D grid of workgroups (the
// grid is 2-D when more than 65535 workgroups are needed).
fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, wg_size: u32) -> u32 {
    return (wid.x + wid.y * nwg.x) * wg_size + lid;
}
