//! The one way this workspace reads its environment variables.
//!
//! Every variable follows the same rules: the value is trimmed, and an empty value counts
//! as unset. A value that does not parse is refused: [`parse`] returns `InvalidArgument`
//! naming the variable, the value and what was expected, and the constructors that read it
//! hand that error on (the backends' `new()` stays infallible and `init()` returns it), so
//! a typo never silently becomes the default. A switch is on for
//! `1`, `true`, `yes` or `on` (any case) and off otherwise. Constructors never read the
//! environment behind an explicit option: `Default` is pure, and the `from_env()` /
//! `with_env()` constructors of each crate's options are where the variables apply. The
//! table of every variable, with what it does, is in `docs/USAGE.md`.

use std::str::FromStr;

use crate::BackendResult;

/// The trimmed value of `name`, or `None` when it is unset, empty or not Unicode.
pub fn var(name: &str) -> Option<String> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

/// `name` parsed as a `T`: `Ok(None)` when unset, `InvalidArgument` naming the variable,
/// its value and the type expected when it does not parse.
pub fn parse<T: FromStr>(name: &str) -> BackendResult<Option<T>> {
    var(name).map(|v| parse_value(name, &v)).transpose()
}

/// The parsing rule of [`parse`], on a value.
fn parse_value<T: FromStr>(name: &str, v: &str) -> BackendResult<T> {
    v.parse().map_err(|_| {
        crate::invalid!(
            "environment variable {name}={v:?}: expected {}; unset it or fix the value",
            expected::<T>()
        )
    })
}

/// What a `T` looks like, for [`parse`]'s error.
fn expected<T>() -> String {
    let name = std::any::type_name::<T>();
    match name {
        "u8" | "u16" | "u32" | "u64" | "usize" => {
            format!("an unsigned integer ({name}), e.g. 1073741824")
        }
        "i8" | "i16" | "i32" | "i64" | "isize" => format!("an integer ({name})"),
        "f32" | "f64" => format!("a number ({name})"),
        _ => format!("a {name}"),
    }
}

/// True when `name` is set to `1`, `true`, `yes` or `on` (any case).
pub fn flag(name: &str) -> bool {
    var(name).is_some_and(|v| is_on(&v))
}

/// The switch rule of [`flag`], on a value.
fn is_on(v: &str) -> bool {
    ["1", "true", "yes", "on"]
        .iter()
        .any(|on| v.eq_ignore_ascii_case(on))
}

/// The variable that caps the bytes a CPU backend (the oracle or the fast one) built with
/// `from_env` may allocate.
pub const CPU_MEMORY_LIMIT: &str = "CPU_BACKEND_MEMORY_LIMIT";

/// The cap a CPU backend built with `from_env` gets: [`CPU_MEMORY_LIMIT`] where it is set
/// (read first, so Miri's isolation never sees `/proc` when it is), else
/// [`host_memory_limit`]; `InvalidArgument` when it is set to something other than a
/// byte count.
pub fn cpu_memory_limit() -> BackendResult<u64> {
    Ok(parse(CPU_MEMORY_LIMIT)?.unwrap_or_else(host_memory_limit))
}

/// The CPU backends' allocation rule: `bytes` more may be allocated while `held` are
/// when they fit under `limit`; otherwise the `OutOfMemory` that gives all three.
pub fn check_cpu_limit(bytes: u64, held: u64, limit: u64) -> BackendResult<()> {
    use crate::fmt_bytes;
    if bytes > limit.saturating_sub(held) {
        return Err(crate::oom!(
            "alloc: {} asked with {} of the {} limit already allocated (the limit: {CPU_MEMORY_LIMIT}, or half of physical memory)",
            fmt_bytes(bytes),
            fmt_bytes(held),
            fmt_bytes(limit),
        ));
    }
    Ok(())
}

/// The `OutOfMemory` of a CPU backend whose host refused `bytes` under the cap.
pub fn host_refused(bytes: u64) -> crate::BackendError {
    crate::oom!("alloc: the host refused {}", crate::fmt_bytes(bytes))
}

/// The CPU backends' default cap: half of physical memory where it can be read, else 4 GiB,
/// so that allocating until refusal ends in `OutOfMemory`, not in the kernel's OOM killer.
/// Reads `/proc/meminfo` (not the environment).
pub fn host_memory_limit() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    total_kib.map_or(4 << 30, |kib| kib * 1024 / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches() {
        for v in ["1", "true", "YES", "On"] {
            assert!(is_on(v), "{v}");
        }
        for v in ["0", "false", "off", "", "2", "enable"] {
            assert!(!is_on(v), "{v}");
        }
    }

    #[test]
    fn unset_variables_read_as_none() {
        assert_eq!(var("BACKEND_API_TEST_SURELY_UNSET_VARIABLE"), None);
        assert_eq!(
            parse::<u64>("BACKEND_API_TEST_SURELY_UNSET_VARIABLE"),
            Ok(None)
        );
        assert!(!flag("BACKEND_API_TEST_SURELY_UNSET_VARIABLE"));
    }

    #[test]
    #[cfg_attr(miri, ignore = "Miri isolates the environment: PATH is not there")]
    fn set_variables_are_trimmed_and_parsed() {
        // PATH is set in every test environment and is not a number.
        assert!(var("PATH").is_some());
        let e = parse::<u64>("PATH").unwrap_err();
        assert!(e.is_invalid_argument());
        assert!(
            e.to_string().contains("PATH=") && e.to_string().contains("u64"),
            "{e}"
        );
    }

    #[test]
    fn values_that_do_not_parse_are_refused_with_what_was_expected() {
        assert_eq!(parse_value::<u64>("X", "42"), Ok(42));
        let e = parse_value::<u64>("CPU_BACKEND_MEMORY_LIMIT", "abc").unwrap_err();
        let m = e.to_string();
        assert!(e.is_invalid_argument(), "{m}");
        assert!(m.contains("CPU_BACKEND_MEMORY_LIMIT=\"abc\""), "{m}");
        assert!(m.contains("unsigned integer"), "{m}");
        assert!(parse_value::<u32>("X", "-1").is_err());
        assert!(parse_value::<u64>("X", "1e9").is_err());
    }
}
