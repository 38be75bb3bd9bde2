//! The one table of known differences: places where a backend, on some adapter or
//! driver, differs from the oracle in a way a user would accept, each with its reason.
//!
//! The backends' tests, the `conformance` runner and the browser page all read
//! [`KNOWN_DIFFERENCES`] through [`expectations_for`], so a difference is listed once and
//! excused everywhere it applies, and nowhere else. An entry is strict: a run in which
//! every case it excuses passes fails (the difference went away, so the entry must go).
//!
//! Today the table is empty: every backend passes the whole suite on every adapter this
//! project has run (lavapipe, SwiftShader in Chromium, an NVIDIA H200). An entry looks
//! like this:
//!
//! ```
//! use conformance::known::{KnownDifference, expectations_in};
//! use conformance::Check;
//! const TABLE: &[KnownDifference] = &[KnownDifference {
//!     backend: "webgpu",
//!     adapter: "llvmpipe",
//!     driver: "Mesa 22.",
//!     check: Check::Binary,
//!     tag: Some("non-finite"),
//!     reason: "Mesa 22 folds x - x to 0 for infinite x",
//! }];
//! let hit = expectations_in(TABLE, "webgpu (Vulkan, llvmpipe (LLVM 15))", "llvmpipe (LLVM 15) (Vulkan)", "llvmpipe Mesa 22.3.6");
//! assert_eq!(hit.len(), 1);
//! assert!(expectations_in(TABLE, "cpu", "", "").is_empty());
//! ```

use crate::{Check, Expectation};

/// One known difference, matched by case-insensitive substrings ("" matches anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownDifference {
    /// Part of the backend's name (`ComputeBackend::name`), e.g. `"webgpu"`, `"wasm"`.
    pub backend: &'static str,
    /// Part of the adapter's label (`name (API)`), e.g. `"llvmpipe"`, `"NVIDIA"`.
    pub adapter: &'static str,
    /// Part of the driver's name and version, e.g. `"Mesa 22."`.
    pub driver: &'static str,
    /// The check that differs.
    pub check: Check,
    /// The case tag that differs (e.g. `"non-finite"`), or every case of the check.
    pub tag: Option<&'static str>,
    /// Why, in words a user can check.
    pub reason: &'static str,
}

/// Every known difference of every backend. Empty today: see the [module docs](self).
pub const KNOWN_DIFFERENCES: &[KnownDifference] = &[];

impl KnownDifference {
    /// True when this entry applies to the backend, adapter and driver named.
    pub fn applies(&self, backend: &str, adapter: &str, driver: &str) -> bool {
        let has = |hay: &str, needle: &str| hay.to_lowercase().contains(&needle.to_lowercase());
        has(backend, self.backend) && has(adapter, self.adapter) && has(driver, self.driver)
    }

    /// As a [`Config`](crate::Config) expectation.
    pub fn expectation(&self) -> Expectation {
        Expectation {
            check: self.check,
            tag: self.tag.map(str::to_string),
            reason: self.reason.to_string(),
        }
    }
}

/// The expectations of [`KNOWN_DIFFERENCES`] for this backend, adapter label and driver
/// (pass `""` for what a backend does not have, such as the CPU's adapter).
pub fn expectations_for(backend: &str, adapter: &str, driver: &str) -> Vec<Expectation> {
    expectations_in(KNOWN_DIFFERENCES, backend, adapter, driver)
}

/// [`expectations_for`] over another table (for tests of the matching).
pub fn expectations_in(
    table: &[KnownDifference],
    backend: &str,
    adapter: &str,
    driver: &str,
) -> Vec<Expectation> {
    table
        .iter()
        .filter(|d| d.applies(backend, adapter, driver))
        .map(KnownDifference::expectation)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENTRY: KnownDifference = KnownDifference {
        backend: "webgpu",
        adapter: "NVIDIA",
        driver: "580.",
        check: Check::Attention,
        tag: None,
        reason: "example",
    };

    #[test]
    fn every_field_must_match() {
        assert!(ENTRY.applies(
            "webgpu (Vulkan, NVIDIA H200)",
            "NVIDIA H200 (Vulkan)",
            "NVIDIA 580.159.04"
        ));
        assert!(
            ENTRY.applies("WASM: WEBGPU", "nvidia h200", "580.1"),
            "case-insensitive"
        );
        assert!(!ENTRY.applies("cpu", "NVIDIA H200 (Vulkan)", "NVIDIA 580.159.04"));
        assert!(!ENTRY.applies("webgpu", "llvmpipe (Vulkan)", "580."));
        assert!(!ENTRY.applies("webgpu", "NVIDIA H200", "NVIDIA 575.1"));
        let any = KnownDifference {
            adapter: "",
            driver: "",
            ..ENTRY
        };
        assert!(any.applies("webgpu", "", ""));
    }

    #[test]
    fn expectations_carry_check_tag_and_reason() {
        let tagged = KnownDifference {
            tag: Some("f16"),
            ..ENTRY
        };
        let e = expectations_in(&[ENTRY, tagged], "webgpu", "NVIDIA", "580.1");
        assert_eq!(e.len(), 2);
        assert_eq!((e[0].check, e[0].tag.as_deref()), (Check::Attention, None));
        assert_eq!(e[1].tag.as_deref(), Some("f16"));
        assert_eq!(e[1].reason, "example");
    }
}
