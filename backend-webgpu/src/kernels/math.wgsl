// Accurate f32 elementwise functions with IEEE special cases.
//
// WGSL's builtins promise little (exp within 3 + 2|x| ulp, log only absolutely near 1,
// sin/cos within 2^-11 absolute, division only for normal divisors, nothing for NaN), so
// the elementwise kernels use these instead: range reduction plus minimax polynomials
// (the Cephes single-precision coefficients), with every special value handled
// explicitly. Elementwise kernels are bandwidth-bound; the extra arithmetic is free.

// 2^e for e in [-126, 127], exactly.
fn pow2i(e: i32) -> f32 {
    return f32_from_bits(u32(e + 127) << 23u);
}

fn exp_acc(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    if (x > 88.72283935546875) {
        return inf_f32();
    }
    if (x < -103.97208) {
        return 0.0;
    }
    let k = round(x * 1.4426950408889634);
    // x - k ln2 in two steps: ln2_hi has few mantissa bits, so k * ln2_hi is exact.
    let r = (x - k * 0.693145751953125) - k * 1.428606765330187e-6;
    var p = 1.9875691500e-4;
    p = p * r + 1.3981999507e-3;
    p = p * r + 8.3334519073e-3;
    p = p * r + 4.1665795894e-2;
    p = p * r + 1.6666665459e-1;
    p = p * r + 5.0000001201e-1;
    let er = p * (r * r) + r + 1.0;
    let ki = i32(k);
    let k1 = ki / 2;
    return er * pow2i(k1) * pow2i(ki - k1);
}

fn log_acc(x_in: f32) -> f32 {
    var x = x_in;
    if (is_nan(x) || x < 0.0) {
        return nan_f32();
    }
    if (x == 0.0) {
        return -inf_f32();
    }
    if (is_inf(x)) {
        return x;
    }
    var e = 0;
    if (x < 1.17549435e-38) {
        // Subnormal (where the device keeps them): scale into the normal range.
        x = x * 8388608.0;
        e = -23;
    }
    let bits = bitcast<u32>(x);
    e = e + i32((bits >> 23u) & 0xffu) - 127;
    var m = f32_from_bits((bits & 0x007fffffu) | 0x3f800000u);
    if (m > 1.41421356) {
        m = m * 0.5;
        e = e + 1;
    }
    let f = m - 1.0;
    let z = f * f;
    var p = 7.0376836292e-2;
    p = p * f - 1.1514610310e-1;
    p = p * f + 1.1676998740e-1;
    p = p * f - 1.2420140846e-1;
    p = p * f + 1.4249322787e-1;
    p = p * f - 1.6668057665e-1;
    p = p * f + 2.0000714765e-1;
    p = p * f - 2.4999993993e-1;
    p = p * f + 3.3333331174e-1;
    let fe = f32(e);
    var y = f * z * p;
    y = y - 2.12194440e-4 * fe;
    y = y - 0.5 * z;
    return (f + y) + 0.693359375 * fe;
}

// Reduces |x| to the octant j (0..3) and the remainder in [-pi/4, pi/4]; valid to ~1 ulp
// of the result for |x| <= 8192 (beyond, the reduction loses bits, as in Cephes).
struct Reduced {
    r: f32,
    j: u32,
    swap_sign: bool,
}

fn reduce_quarter_pi(ax: f32) -> Reduced {
    var j = u32(ax * 1.27323954473516);
    var y = f32(j);
    if ((j & 1u) == 1u) {
        j = j + 1u;
        y = y + 1.0;
    }
    j = j & 7u;
    let r = ((ax - y * 0.78515625) - y * 2.4187564849853515625e-4) - y * 3.77489497744594108e-8;
    var out: Reduced;
    out.r = r;
    out.swap_sign = j > 3u;
    out.j = select(j, j - 4u, j > 3u);
    return out;
}

fn sin_poly(r: f32) -> f32 {
    let z = r * r;
    return ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
}

fn cos_poly(r: f32) -> f32 {
    let z = r * r;
    return ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - 0.5 * z + 1.0;
}

fn sin_acc(x: f32) -> f32 {
    if (is_nan(x) || is_inf(x)) {
        return nan_f32();
    }
    let q = reduce_quarter_pi(abs(x));
    let y = select(sin_poly(q.r), cos_poly(q.r), q.j == 1u || q.j == 2u);
    var negative = q.swap_sign;
    if (x < 0.0) {
        negative = !negative;
    }
    return select(y, -y, negative);
}

fn cos_acc(x: f32) -> f32 {
    if (is_nan(x) || is_inf(x)) {
        return nan_f32();
    }
    let q = reduce_quarter_pi(abs(x));
    let y = select(cos_poly(q.r), sin_poly(q.r), q.j == 1u || q.j == 2u);
    let negative = q.swap_sign != (q.j > 1u);
    return select(y, -y, negative);
}

fn tanh_acc(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    let ax = abs(x);
    if (ax < 0.625) {
        let z = x * x;
        return ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z + 1.33314422036e-1) * z
            - 3.33332819422e-1) * z * x + x;
    }
    if (ax > 9.1) {
        return select(1.0, -1.0, x < 0.0);
    }
    let t = 1.0 - 2.0 / (exp_acc(2.0 * ax) + 1.0);
    return select(t, -t, x < 0.0);
}

fn sigmoid_acc(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp_acc(-x));
    }
    // e / (1 + e) keeps full relative accuracy as the result becomes tiny.
    let e = exp_acc(x);
    return e / (1.0 + e);
}

// erfc(z) with fractional error below 1.2e-7 everywhere (Numerical Recipes' erfcc).
fn erfc_acc(z: f32) -> f32 {
    let az = abs(z);
    let t = 1.0 / (1.0 + 0.5 * az);
    var p = 0.17087277;
    p = p * t - 0.82215223;
    p = p * t + 1.48851587;
    p = p * t - 1.13520398;
    p = p * t + 0.27886807;
    p = p * t - 0.18628806;
    p = p * t + 0.09678418;
    p = p * t + 0.37409196;
    p = p * t + 1.00002368;
    p = p * t - 1.26551223;
    // WGSL's exp is within 3 + 2|x| ulp; relative accuracy matters only where gelu is
    // above its absolute tolerance (|x| < 6, so |arg| < 19), where that is < 2e-6.
    let ans = t * exp(-az * az + p);
    return select(ans, 2.0 - ans, z < 0.0);
}

fn gelu_acc(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    if (is_inf(x)) {
        // IEEE arithmetic of x/2 * (1 + erf(x/sqrt 2)): inf at +inf, -inf * 0 = NaN at -inf
        // (as PyTorch computes it).
        return select(x, nan_f32(), x < 0.0);
    }
    return 0.5 * x * erfc_acc(-x * 0.70710678118654752);
}

// a / b with IEEE results for zero, infinite and huge divisors, where WGSL's division
// promises nothing.
fn div_acc(a: f32, b: f32) -> f32 {
    if (is_nan(a) || is_nan(b)) {
        return nan_f32();
    }
    let negative = (bitcast<u32>(a) ^ bitcast<u32>(b)) >= 0x80000000u;
    if (b == 0.0) {
        if (a == 0.0) {
            return nan_f32();
        }
        return select(inf_f32(), -inf_f32(), negative);
    }
    if (is_inf(b)) {
        if (is_inf(a)) {
            return nan_f32();
        }
        return select(0.0, -0.0, negative);
    }
    if (is_inf(a)) {
        return select(inf_f32(), -inf_f32(), negative);
    }
    if (abs(b) > 8.507059e37) {
        // |b| > 2^126: scale both by 2^-4, exactly.
        return (a * 0.0625) / (b * 0.0625);
    }
    return a / b;
}

fn sqrt_acc(x: f32) -> f32 {
    if (is_nan(x) || x < 0.0) {
        return nan_f32();
    }
    if (x == 0.0 || is_inf(x)) {
        return x;
    }
    return sqrt(x);
}

fn rsqrt_acc(x: f32) -> f32 {
    if (is_nan(x) || x < 0.0) {
        return nan_f32();
    }
    if (x == 0.0) {
        return select(inf_f32(), -inf_f32(), bitcast<u32>(x) != 0u);
    }
    if (is_inf(x)) {
        return 0.0;
    }
    return inverseSqrt(x);
}

fn max_nan(a: f32, b: f32) -> f32 {
    if (is_nan(a) || is_nan(b)) {
        return nan_f32();
    }
    return max(a, b);
}

fn min_nan(a: f32, b: f32) -> f32 {
    if (is_nan(a) || is_nan(b)) {
        return nan_f32();
    }
    return min(a, b);
}

fn is_odd_integer(y: f32) -> bool {
    // |y| >= 2^24 is always even.
    let ay = abs(y);
    return ay < 16777216.0 && floor(ay) == ay && (u32(ay) & 1u) == 1u;
}

fn is_integer(y: f32) -> bool {
    return floor(y) == y;
}

// IEEE 754 / C99 pow, special cases included.
fn pow_acc(x: f32, y: f32) -> f32 {
    if (y == 0.0 || x == 1.0) {
        return 1.0;
    }
    if (is_nan(x) || is_nan(y)) {
        return nan_f32();
    }
    let ax = abs(x);
    if (is_inf(y)) {
        if (ax == 1.0) {
            return 1.0;
        }
        let big = (ax > 1.0) == (y > 0.0);
        return select(0.0, inf_f32(), big);
    }
    let odd = is_odd_integer(y);
    let negative = x < 0.0 && odd;
    if (x == 0.0 || is_inf(x)) {
        // |x| is 0 or inf: the result is 0 or inf, negative only for odd y and x < 0
        // (including -0).
        let neg = odd && bitcast<u32>(x) >= 0x80000000u;
        let big = (ax == 0.0) == (y < 0.0);
        let v = select(0.0, inf_f32(), big);
        return select(v, -v, neg);
    }
    if (x < 0.0 && !is_integer(y)) {
        return nan_f32();
    }
    let r = exp_acc(y * log_acc(ax));
    return select(r, -r, negative);
}

// ---- The model-ops family: erf, softplus, inverse trigonometric and hyperbolic functions,
// fmod. Each handles NaN, infinities and zeros explicitly and keeps the relative accuracy
// of the contract's 1e-5 bound (see conformance's unary_tolerance) over the whole range.

const LN2_F: f32 = 0.693147180559945;
const PI_F: f32 = 3.14159265358979;
const PIO2_F: f32 = 1.57079632679490;
const PIO4_F: f32 = 0.785398163397448;

// e^x - 1 with full relative accuracy near 0: a Taylor polynomial below 0.35 (the first
// omitted term is < 1e-9 of the result), e^x - 1 above (exact subtraction, ~7 ulp).
fn expm1_acc(x: f32) -> f32 {
    if (abs(x) < 0.35) {
        return x * (1.0 + x * (0.5 + x * (1.6666667e-1 + x * (4.1666668e-2 + x * (8.3333338e-3
            + x * (1.3888889e-3 + x * (1.9841270e-4 + x * 2.4801587e-5)))))));
    }
    return exp_acc(x) - 1.0;
}

// log(1 + x) with full relative accuracy near 0: 2 atanh(s), s = x / (2 + x), as its odd
// series on [-0.3, 0.5] (|s| <= 0.2: the first omitted term is below 1e-10 of the
// result), log(1 + x) elsewhere. (Correcting log(1 + x) by x / ((1 + x) - 1) does not
// survive compilers that fold (1 + x) - 1 into x, as Mesa's does.)
fn log1p_acc(x: f32) -> f32 {
    if (is_nan(x) || x < -1.0) {
        return nan_f32();
    }
    if (x == -1.0) {
        return -inf_f32();
    }
    if (is_inf(x)) {
        return x;
    }
    if (x >= -0.3 && x <= 0.5) {
        let s = x / (2.0 + x);
        let z = s * s;
        var p = 1.0 / 13.0;
        p = p * z + 1.0 / 11.0;
        p = p * z + 1.0 / 9.0;
        p = p * z + 1.0 / 7.0;
        p = p * z + 1.0 / 5.0;
        p = p * z + 1.0 / 3.0;
        return 2.0 * s + 2.0 * s * z * p;
    }
    return log_acc(1.0 + x);
}

// erf: its Maclaurin series below 0.5 (the first omitted term < 3e-11), 1 - erfc above,
// +-1 from 4 on (erf(4) rounds to 1 in f32).
fn erf_acc(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    let ax = abs(x);
    if (ax < 0.5) {
        let z = x * x;
        var p = -1.3227513e-5; // -1 / (7! * 15)
        p = p * z + 1.0683761e-4; // 1 / (6! * 13)
        p = p * z - 7.5757576e-4; // -1 / (5! * 11)
        p = p * z + 4.6296296e-3; // 1 / (4! * 9)
        p = p * z - 2.3809524e-2; // -1 / (3! * 7)
        p = p * z + 1.0e-1; // 1 / (2! * 5)
        p = p * z - 3.3333333e-1; // -1 / 3
        p = p * z + 1.0;
        return 1.1283791670955126 * x * p;
    }
    if (ax >= 4.0) {
        return select(1.0, -1.0, x < 0.0);
    }
    let r = 1.0 - erfc_acc(ax);
    return select(r, -r, x < 0.0);
}

// log(1 + e^x): x + log1p(e^-x) above 0, log1p(e^x) below.
fn softplus_acc(x: f32) -> f32 {
    if (x > 0.0) {
        return x + log1p_acc(exp_acc(-x));
    }
    return log1p_acc(exp_acc(x));
}

fn tan_acc(x: f32) -> f32 {
    if (is_nan(x) || is_inf(x)) {
        return nan_f32();
    }
    // tan has period pi: only whether the octant is 0 or 2 (mod 4) matters.
    let q = reduce_quarter_pi(abs(x));
    let z = q.r * q.r;
    var t = 9.38540185543e-3;
    t = t * z + 3.11992232697e-3;
    t = t * z + 2.44301354525e-2;
    t = t * z + 5.34112807005e-2;
    t = t * z + 1.33387994085e-1;
    t = t * z + 3.33331568548e-1;
    t = t * z * q.r + q.r;
    if (q.j == 2u) {
        t = div_acc(-1.0, t);
    }
    return select(t, -t, x < 0.0);
}

// asin of 0 <= a <= 1: the odd polynomial below 0.5, pi/2 - 2 asin(sqrt((1 - a) / 2)) above.
fn asin_pos(a: f32) -> f32 {
    var x = a;
    var z = a * a;
    let big = a > 0.5;
    if (big) {
        z = 0.5 * (1.0 - a);
        x = sqrt_acc(z);
    }
    var p = 4.2163199048e-2;
    p = p * z + 2.4181311049e-2;
    p = p * z + 4.5470025998e-2;
    p = p * z + 7.4953002686e-2;
    p = p * z + 1.6666752422e-1;
    let r = p * z * x + x;
    return select(r, PIO2_F - (r + r), big);
}

fn asin_acc(x: f32) -> f32 {
    if (is_nan(x) || abs(x) > 1.0) {
        return nan_f32();
    }
    let r = asin_pos(abs(x));
    return select(r, -r, x < 0.0);
}

fn acos_acc(x: f32) -> f32 {
    if (is_nan(x) || abs(x) > 1.0) {
        return nan_f32();
    }
    if (x < -0.5) {
        return PI_F - 2.0 * asin_pos(sqrt_acc(0.5 * (1.0 + x)));
    }
    if (x > 0.5) {
        return 2.0 * asin_pos(sqrt_acc(0.5 * (1.0 - x)));
    }
    return PIO2_F - asin_acc(x);
}

fn atan_acc(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    var a = abs(x);
    var base = 0.0;
    if (a > 2.414213562373095) {
        base = PIO2_F;
        a = -div_acc(1.0, a);
    } else if (a > 0.4142135623730950) {
        base = PIO4_F;
        a = (a - 1.0) / (a + 1.0);
    }
    let z = a * a;
    var p = 8.05374449538e-2;
    p = p * z - 1.38776856032e-1;
    p = p * z + 1.99777106478e-1;
    p = p * z - 3.33329491539e-1;
    let r = base + (p * z * a + a);
    return select(r, -r, x < 0.0);
}

// e^|x| / 2 for |x| where e^|x| overflows but the half does not: e^(|x|/2) squared, halved
// first.
fn half_exp_big(ax: f32) -> f32 {
    let e = exp_acc(0.5 * ax);
    return (0.5 * e) * e;
}

fn sinh_acc(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    let ax = abs(x);
    var r: f32;
    if (ax <= 1.0) {
        let z = x * x;
        return ((2.03721912945e-4 * z + 8.33028376239e-3) * z + 1.66667160211e-1) * z * x + x;
    } else if (ax > 80.0) {
        r = half_exp_big(ax);
    } else {
        let e = exp_acc(ax);
        r = 0.5 * e - 0.5 / e;
    }
    return select(r, -r, x < 0.0);
}

fn cosh_acc(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    let ax = abs(x);
    if (ax > 80.0) {
        return half_exp_big(ax);
    }
    let e = exp_acc(ax);
    return 0.5 * e + 0.5 / e;
}

fn asinh_acc(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    let ax = abs(x);
    var r: f32;
    if (ax > 1e10) {
        r = log_acc(ax) + LN2_F;
    } else if (ax < 0.5) {
        let s = ax * ax;
        r = log1p_acc(ax + s / (1.0 + sqrt_acc(1.0 + s)));
    } else {
        r = log_acc(ax + sqrt_acc(ax * ax + 1.0));
    }
    return select(r, -r, x < 0.0);
}

fn acosh_acc(x: f32) -> f32 {
    if (is_nan(x) || x < 1.0) {
        return nan_f32();
    }
    if (x > 1e10) {
        return log_acc(x) + LN2_F;
    }
    if (x >= 2.0) {
        return log_acc(x + sqrt_acc(x * x - 1.0));
    }
    // x - 1 is exact on [1, 2).
    let t = x - 1.0;
    return log1p_acc(t + sqrt_acc(2.0 * t + t * t));
}

fn atanh_acc(x: f32) -> f32 {
    if (is_nan(x) || abs(x) > 1.0) {
        return nan_f32();
    }
    let ax = abs(x);
    if (ax == 1.0) {
        return select(inf_f32(), -inf_f32(), x < 0.0);
    }
    // atanh(a) = log1p(2a / (1 - a)) / 2; below 0.5 as 2a + 2a^2 / (1 - a), no cancellation.
    var r: f32;
    if (ax < 0.5) {
        r = 0.5 * log1p_acc(2.0 * ax + 2.0 * ax * ax / (1.0 - ax));
    } else {
        r = 0.5 * log1p_acc(2.0 * ax / (1.0 - ax));
    }
    return select(r, -r, x < 0.0);
}

// (mantissa with its leading one at bit 23, unbiased exponent + 127) of a finite, non-zero
// magnitude's bits; subnormals are normalised (their exponent goes below 1).
fn unpack_normal(bits: u32) -> vec2<i32> {
    var e = i32(bits >> 23u);
    var m = bits & 0x7fffffu;
    if (e == 0) {
        let s = countLeadingZeros(m) - 8u;
        m = m << s;
        e = 1 - i32(s);
    } else {
        m = m | 0x800000u;
    }
    return vec2<i32>(i32(m), e);
}

// C fmod, exactly: the remainder of the mantissas' long division, one bit per exponent
// step (at most 277 steps), with the dividend's sign. The result is always representable.
fn fmod_acc(a: f32, b: f32) -> f32 {
    // Zero tested on the bits: a device that flushes subnormals may compare them equal to 0.
    if (is_nan(a) || is_nan(b) || is_inf(a) || (bitcast<u32>(b) & 0x7fffffffu) == 0u) {
        return nan_f32();
    }
    if (is_inf(b)) {
        return a;
    }
    let sign = bitcast<u32>(a) & 0x80000000u;
    let ia = bitcast<u32>(a) & 0x7fffffffu;
    let ib = bitcast<u32>(b) & 0x7fffffffu;
    if (ia < ib) {
        return a;
    }
    if (ia == ib) {
        return f32_from_bits(sign);
    }
    let pa = unpack_normal(ia);
    let pb = unpack_normal(ib);
    var m = u32(pa.x);
    let mb = u32(pb.x);
    for (var e = pa.y; e > pb.y; e = e - 1) {
        if (m >= mb) {
            m = m - mb;
        }
        m = m << 1u;
    }
    if (m >= mb) {
        m = m - mb;
    }
    if (m == 0u) {
        return f32_from_bits(sign);
    }
    // m < mb < 2^24: shift its leading one back to bit 23.
    let s = countLeadingZeros(m) - 8u;
    m = m << s;
    var e = pb.y - i32(s);
    if (e <= 0) {
        // Subnormal: the bits shifted out are zeros (the remainder is representable).
        m = m >> u32(1 - e);
        e = 0;
    }
    return f32_from_bits(sign | (u32(e) << 23u) | (m & 0x7fffffu));
}
