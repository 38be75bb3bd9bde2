//! Why a `WasmBackend` could not be initialised.

use backend_api::BackendError;

/// An initialisation failure of [`WasmBackend`](crate::WasmBackend). Every variant says
/// what was missing and what to do; [`BackendError::from`] keeps that message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebGpuError {
    /// There is no page document here: the code runs in a worker (which has no DOM), or
    /// natively. Use [`WasmBackend::init_without_canvas`](crate::WasmBackend::init_without_canvas).
    /// Converts to [`BackendError::Unsupported`].
    #[error("init_from_canvas: no document ({0})")]
    NoDocument(String),
    /// No element of the page has this id. Converts to [`BackendError::InvalidArgument`].
    #[error("init_from_canvas: no element with id {id:?} in the document")]
    CanvasNotFound {
        /// The id asked for.
        id: String,
    },
    /// The element with this id is not a `<canvas>`. Converts to
    /// [`BackendError::InvalidArgument`].
    #[error("init_from_canvas: element {id:?} is a <{tag}>, not a <canvas>")]
    NotACanvas {
        /// The id asked for.
        id: String,
        /// The element's tag name, lower case.
        tag: String,
    },
    /// The browser exposes no WebGPU (`navigator.gpu` is undefined): an old browser, WebGPU
    /// switched off, or a page that is not a secure context (https or localhost).
    /// Converts to [`BackendError::Unsupported`].
    #[error(
        "this browser exposes no WebGPU (navigator.gpu is undefined): use a browser with \
         WebGPU enabled, from https:// or http://localhost (Chromium on Linux needs \
         --enable-unsafe-webgpu)"
    )]
    WebGpuUnavailable,
    /// Requesting the adapter or the device failed (e.g. the browser has no adapter).
    /// Converts to the wrapped error.
    #[error("WebGPU initialisation failed: {0}")]
    Init(#[source] BackendError),
}

impl From<WebGpuError> for BackendError {
    fn from(e: WebGpuError) -> Self {
        match e {
            WebGpuError::Init(inner) => inner,
            e @ (WebGpuError::CanvasNotFound { .. } | WebGpuError::NotACanvas { .. }) => {
                BackendError::InvalidArgument(e.to_string())
            }
            e @ (WebGpuError::NoDocument(_) | WebGpuError::WebGpuUnavailable) => {
                BackendError::Unsupported(e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_the_kind_and_the_message() {
        let e = BackendError::from(WebGpuError::CanvasNotFound { id: "gpu".into() });
        assert_eq!(
            e,
            BackendError::InvalidArgument(
                "init_from_canvas: no element with id \"gpu\" in the document".into()
            )
        );
        let e = BackendError::from(WebGpuError::NotACanvas {
            id: "x".into(),
            tag: "div".into(),
        });
        assert!(
            matches!(&e, BackendError::InvalidArgument(m) if m.contains("<div>") && m.contains("<canvas>")),
            "{e}"
        );
        let e = BackendError::from(WebGpuError::NoDocument("in a worker".into()));
        assert!(
            matches!(&e, BackendError::Unsupported(m) if m.contains("in a worker")),
            "{e}"
        );
        let e = BackendError::from(WebGpuError::WebGpuUnavailable);
        assert!(
            matches!(&e, BackendError::Unsupported(m) if m.contains("navigator.gpu")),
            "{e}"
        );
        let inner = BackendError::DeviceError("no WebGPU adapter: none".into());
        assert_eq!(BackendError::from(WebGpuError::Init(inner.clone())), inner);
    }

    #[test]
    fn init_failure_keeps_its_source() {
        use std::error::Error as _;
        let e = WebGpuError::Init(BackendError::DeviceError("lost".into()));
        assert!(e.to_string().contains("lost"), "{e}");
        assert_eq!(
            e.source().map(ToString::to_string),
            Some("device error: lost".to_string())
        );
    }
}
