//! One module per op family: a case type (serializable, so a shrunk failure can be
//! printed and replayed), a proptest strategy, and an async check against the oracle.

pub mod attention;
pub mod broadcast;
pub mod cast;
pub mod conv;
pub mod copy;
pub mod elementwise;
pub mod gemm;
pub mod gemm_q;
pub mod half;
pub mod reduce;
pub mod rows;

use backend_api::ComputeBackend;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::tolerance::Closeness;
use crate::{Check, Profile};

/// An op family's cases and its check.
pub(crate) trait Suite {
    /// One case: sizes, flags and a data seed.
    type Case: Clone + std::fmt::Debug + Serialize + DeserializeOwned + 'static;

    /// Cases for `check` within the profile's size limits.
    fn strategy(check: Check, profile: &Profile) -> BoxedStrategy<Self::Case>;

    /// Labels of the case's special features (e.g. `"non-finite"`), which expected
    /// failures may name.
    fn tags(case: &Self::Case) -> Vec<&'static str>;

    /// What kind of case this is within the check (the function of a unary case, the
    /// type pair of a cast), so reports can say which one comes closest to its bound.
    fn kind(case: &Self::Case) -> String {
        let _ = case;
        String::new()
    }

    /// Runs the case on `backend` and compares with the oracle.
    async fn run(
        backend: &dyn ComputeBackend,
        check: Check,
        case: &Self::Case,
    ) -> Result<Closeness, String>;
}

/// A dimension: often tiny (0 to 4, where edge cases live), otherwise up to `max`, past
/// any kernel tile.
pub(crate) fn dim(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![2 => 0..=4usize, 3 => 1..=max.max(1)]
}

/// The storage type of an op that takes one: f32 most of the time, f16 and bf16 a sixth
/// each.
pub(crate) fn storage() -> impl Strategy<Value = backend_api::DType> {
    use backend_api::DType;
    prop_oneof![4 => Just(DType::F32), 1 => Just(DType::F16), 1 => Just(DType::BF16)]
}
