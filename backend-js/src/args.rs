//! JavaScript arguments, checked: numbers that must be device addresses or sizes, and the
//! fields of the option objects that the larger ops take. A wrong argument is an
//! `InvalidArgumentError` naming the op and the operand, never a silently truncated
//! value (wasm-bindgen's own `u32`/`u64` conversions wrap, so every number arrives as
//! `f64` and is checked here).

use js_sys::{Array, Reflect};
use wasm_bindgen::prelude::*;

use crate::error::{JsResult, invalid};

/// The largest integer a JS number holds exactly (`Number.MAX_SAFE_INTEGER`).
pub(crate) const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

/// A device address: an integer in `0..=2^53 - 1`.
pub(crate) fn ptr(op: &str, name: &str, v: f64) -> JsResult<u64> {
    if v.is_finite() && v.fract() == 0.0 && (0.0..=MAX_SAFE).contains(&v) {
        Ok(v as u64)
    } else {
        Err(invalid(format!(
            "{op}: {name} = {v} is not a device address (an integer in 0..2^53)"
        )))
    }
}

/// A device address as a JS number, refused (never rounded) past 2^53 - 1.
pub(crate) fn ptr_out(op: &str, p: u64) -> JsResult<f64> {
    if p <= MAX_SAFE as u64 {
        Ok(p as f64)
    } else {
        Err(invalid(format!(
            "{op}: the address {p:#x} does not fit a JS number exactly (past 2^53)"
        )))
    }
}

/// A count or a size: an integer in `0..=u32::MAX` (this module's `usize`).
pub(crate) fn size(op: &str, name: &str, v: f64) -> JsResult<usize> {
    if v.is_finite() && v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
        Ok(v as usize)
    } else {
        Err(invalid(format!(
            "{op}: {name} = {v} is not a size (an integer in 0..2^32)"
        )))
    }
}

/// The field `name` of the options object `obj` (`undefined` when absent).
fn field(op: &str, obj: &JsValue, name: &str) -> JsResult<JsValue> {
    if !obj.is_object() {
        return Err(invalid(format!("{op}: the arguments must be an object")));
    }
    Reflect::get(obj, &JsValue::from_str(name))
        .map_err(|_| invalid(format!("{op}: cannot read the field {name}")))
}

/// A required number field.
fn number(op: &str, obj: &JsValue, name: &str) -> JsResult<f64> {
    let v = field(op, obj, name)?;
    v.as_f64()
        .ok_or_else(|| invalid(format!("{op}: {name} must be a number (got {v:?})")))
}

/// `v` as a number, `None` when it is absent (`undefined` or `null`).
fn opt_number_value(op: &str, name: &str, v: &JsValue) -> JsResult<Option<f64>> {
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.as_f64().map(Some).ok_or_else(|| {
        invalid(format!(
            "{op}: {name} must be a number, null or absent (got {v:?})"
        ))
    })
}

/// A number field, `None` when absent; the field is read once.
fn opt_number(op: &str, obj: &JsValue, name: &str) -> JsResult<Option<f64>> {
    opt_number_value(op, name, &field(op, obj, name)?)
}

/// A number field, `default` when absent.
fn number_or(op: &str, obj: &JsValue, name: &str, default: f64) -> JsResult<f64> {
    Ok(opt_number(op, obj, name)?.unwrap_or(default))
}

/// A required device-address field.
pub(crate) fn ptr_field(op: &str, obj: &JsValue, name: &str) -> JsResult<u64> {
    ptr(op, name, number(op, obj, name)?)
}

/// An optional device-address field (`undefined` or `null`: none).
pub(crate) fn opt_ptr_field(op: &str, obj: &JsValue, name: &str) -> JsResult<Option<u64>> {
    opt_number(op, obj, name)?
        .map(|n| ptr(op, name, n))
        .transpose()
}

/// An optional device address `v` (`undefined` or `null`: none) given as an argument.
pub(crate) fn opt_ptr(op: &str, name: &str, v: &JsValue) -> JsResult<Option<u64>> {
    opt_number_value(op, name, v)?
        .map(|n| ptr(op, name, n))
        .transpose()
}

/// A required size field.
pub(crate) fn size_field(op: &str, obj: &JsValue, name: &str) -> JsResult<usize> {
    size(op, name, number(op, obj, name)?)
}

/// A size field, `default` when absent.
pub(crate) fn size_field_or(
    op: &str,
    obj: &JsValue,
    name: &str,
    default: usize,
) -> JsResult<usize> {
    size(op, name, number_or(op, obj, name, default as f64)?)
}

/// An optional size field.
pub(crate) fn opt_size_field(op: &str, obj: &JsValue, name: &str) -> JsResult<Option<usize>> {
    opt_number(op, obj, name)?
        .map(|n| size(op, name, n))
        .transpose()
}

/// A float field, `default` when absent.
pub(crate) fn f64_field_or(op: &str, obj: &JsValue, name: &str, default: f64) -> JsResult<f64> {
    number_or(op, obj, name, default)
}

/// An optional float field.
pub(crate) fn opt_f64_field(op: &str, obj: &JsValue, name: &str) -> JsResult<Option<f64>> {
    opt_number(op, obj, name)
}

/// A boolean field, `default` when absent.
pub(crate) fn bool_field_or(op: &str, obj: &JsValue, name: &str, default: bool) -> JsResult<bool> {
    let v = field(op, obj, name)?;
    if v.is_undefined() || v.is_null() {
        return Ok(default);
    }
    v.as_bool()
        .ok_or_else(|| invalid(format!("{op}: {name} must be a boolean (got {v:?})")))
}

/// A string field, `default` when absent.
pub(crate) fn str_field_or(op: &str, obj: &JsValue, name: &str, default: &str) -> JsResult<String> {
    let v = field(op, obj, name)?;
    if v.is_undefined() || v.is_null() {
        return Ok(default.to_string());
    }
    v.as_string()
        .ok_or_else(|| invalid(format!("{op}: {name} must be a string (got {v:?})")))
}

/// A shape: an array of sizes.
pub(crate) fn shape(op: &str, name: &str, v: &JsValue) -> JsResult<Vec<usize>> {
    if !Array::is_array(v) {
        return Err(invalid(format!(
            "{op}: {name} must be an array of sizes (got {v:?})"
        )));
    }
    Array::from(v)
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let n = d.as_f64().ok_or_else(|| {
                invalid(format!("{op}: {name}[{i}] must be a number (got {d:?})"))
            })?;
            size(op, &format!("{name}[{i}]"), n)
        })
        .collect()
}

/// A shape field of exactly `N` sizes, `default` when absent.
pub(crate) fn fixed_field<const N: usize>(
    op: &str,
    obj: &JsValue,
    name: &str,
    default: Option<[usize; N]>,
) -> JsResult<[usize; N]> {
    let v = field(op, obj, name)?;
    if v.is_undefined() || v.is_null() {
        return default.ok_or_else(|| invalid(format!("{op}: {name} is required")));
    }
    let s = shape(op, name, &v)?;
    s.as_slice().try_into().map_err(|_| {
        invalid(format!(
            "{op}: {name} must have {N} entries (got {})",
            s.len()
        ))
    })
}

/// The named variant of one of the trait's enums (`"relu"`, `"add"`, `"f16"`, ...).
pub(crate) fn named<T: Copy + std::fmt::Display>(
    op: &str,
    what: &str,
    name: &str,
    from_name: impl Fn(&str) -> Option<T>,
    all: &[T],
) -> JsResult<T> {
    from_name(name).ok_or_else(|| {
        let known: Vec<String> = all.iter().map(ToString::to_string).collect();
        invalid(format!(
            "{op}: unknown {what} {name:?}; known: {}",
            known.join(", ")
        ))
    })
}

/// A sub-object field (`undefined` when absent).
pub(crate) fn object_field(op: &str, obj: &JsValue, name: &str) -> JsResult<JsValue> {
    field(op, obj, name)
}
