//! Deterministic test data: a small seeded generator, value distributions, and special
//! values (NaN, infinities, signed zeros) injected at random positions.

/// SplitMix64: tiny, fast and good enough to fill test tensors from a case's seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`, rounded to f32.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f32 {
        (lo + (hi - lo) * self.unit()) as f32
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` values uniform in `[lo, hi)`.
    pub fn fill(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    /// Overwrites about `fraction` of `v` (at least one element when `v` is non-empty)
    /// with values drawn from `specials`.
    pub fn sprinkle(&mut self, v: &mut [f32], specials: &[f32], fraction: f64) {
        if v.is_empty() || specials.is_empty() {
            return;
        }
        let count = ((v.len() as f64 * fraction).ceil() as usize).max(1);
        for _ in 0..count {
            let i = self.below(v.len());
            v[i] = specials[self.below(specials.len())];
        }
    }

    /// Puts every value of `specials` into `v` once, at distinct random positions (as
    /// many as fit), then sprinkles more at about `fraction` of the elements.
    pub fn inject(&mut self, v: &mut [f32], specials: &[f32], fraction: f64) {
        let mut slots: Vec<usize> = (0..v.len()).collect();
        for &s in specials.iter().take(v.len()) {
            let i = slots.swap_remove(self.below(slots.len()));
            v[i] = s;
        }
        self.sprinkle(v, specials, fraction);
    }

    /// Random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// Random finite f32 values in `[-1000, 1000)` as sentinels around outputs: any write
    /// that lands on them changes their bits.
    pub fn sentinels(&mut self, n: usize) -> Vec<f32> {
        self.fill(n, -1000.0, 1000.0)
    }
}

/// NaN, both infinities and both zeros.
pub const NON_FINITE_AND_ZEROS: [f32; 5] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];

/// f32 values to bytes.
pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Bytes to f32 values (length a multiple of 4).
pub fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// `v` stored as `dtype` and read back: each value rounded to the type (to nearest even,
/// overflow to infinity), so an oracle fed `v` sees what a backend reads.
pub fn stored(dtype: backend_api::DType, v: &[f32]) -> Vec<f32> {
    match dtype {
        backend_api::DType::F32 => v.to_vec(),
        _ => backend_cpu::reference::decode(dtype, &backend_cpu::reference::encode(dtype, v)),
    }
}

/// The f32 storage type, as serde's default for a case's `dtype`.
pub fn f32_dtype() -> backend_api::DType {
    backend_api::DType::F32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let a = Rng::new(7).fill(100, -2.0, 3.0);
        assert_eq!(a, Rng::new(7).fill(100, -2.0, 3.0));
        assert_ne!(a, Rng::new(8).fill(100, -2.0, 3.0));
        assert!(a.iter().all(|&x| (-2.0..3.0).contains(&x)));
    }

    #[test]
    fn sprinkle_injects_specials() {
        let mut v = vec![1.0f32; 50];
        Rng::new(1).sprinkle(&mut v, &[f32::NAN], 0.1);
        let nans = v.iter().filter(|x| x.is_nan()).count();
        assert!((1..=5).contains(&nans), "{nans}");
    }
}
