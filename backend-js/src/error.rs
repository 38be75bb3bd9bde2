//! Errors as JavaScript: every `BackendError` becomes an instance of the package's
//! `BackendError` subclass for its kind (`js/errors.js`), carrying `kind` and the message.

use backend_api::BackendError;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/js/errors.js")]
extern "C" {
    #[wasm_bindgen(js_name = makeError)]
    fn make_error(kind: &str, message: &str) -> JsValue;
}

/// What every exported call returns on failure: the JS error object.
pub(crate) type JsResult<T> = Result<T, JsValue>;

/// The kind's name, as `error.kind` carries it.
pub(crate) fn kind_of(e: &BackendError) -> &'static str {
    match e {
        BackendError::InvalidArgument(_) => "InvalidArgument",
        BackendError::Unsupported(_) => "Unsupported",
        BackendError::OutOfMemory(_) => "OutOfMemory",
        BackendError::DeviceError(_) => "DeviceError",
        BackendError::NotInitialized => "NotInitialized",
        _ => "DeviceError",
    }
}

/// The JS error for `e`: its message is the Rust message without the kind's prefix.
pub(crate) fn to_js(e: BackendError) -> JsValue {
    let kind = kind_of(&e);
    let message = match e {
        BackendError::InvalidArgument(m)
        | BackendError::Unsupported(m)
        | BackendError::OutOfMemory(m)
        | BackendError::DeviceError(m) => m,
        BackendError::NotInitialized => "the backend is not initialised".to_string(),
        other => other.to_string(),
    };
    make_error(kind, &message)
}

/// An `InvalidArgumentError` with `message`.
pub(crate) fn invalid(message: impl AsRef<str>) -> JsValue {
    make_error("InvalidArgument", message.as_ref())
}

/// An `OutOfMemoryError` with `message`.
pub(crate) fn oom(message: impl AsRef<str>) -> JsValue {
    make_error("OutOfMemory", message.as_ref())
}

/// An `UnsupportedError` with `message`.
pub(crate) fn unsupported(message: impl AsRef<str>) -> JsValue {
    make_error("Unsupported", message.as_ref())
}

/// `?` on backend results inside exported functions.
pub(crate) trait IntoJs<T> {
    /// The JS error in place of the `BackendError`.
    fn js(self) -> JsResult<T>;
}

impl<T> IntoJs<T> for Result<T, BackendError> {
    fn js(self) -> JsResult<T> {
        self.map_err(to_js)
    }
}
