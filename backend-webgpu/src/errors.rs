//! Turning wgpu's errors into `BackendError`s: the asynchronous ones (uncaptured errors
//! and device loss) collected until the next sync point, and error scopes around the
//! few calls that must report their own failure.

use std::sync::{Arc, Mutex, PoisonError};

use backend_api::{BackendError, BackendResult};

/// Collects errors wgpu reports asynchronously (the uncaptured-error handler and the
/// device-lost callback) until the next sync point takes them.
#[derive(Default)]
pub(crate) struct ErrorSink {
    pending: Mutex<Option<BackendError>>,
    lost: Mutex<Option<String>>,
    /// Recorded causes whose "invalid due to a previous error" echo has not come yet.
    unechoed: Mutex<u32>,
}

impl ErrorSink {
    pub(crate) fn install(device: &wgpu::Device) -> Arc<Self> {
        let sink = Arc::new(Self::default());
        let s = sink.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| s.record(e)));
        let s = sink.clone();
        device.set_device_lost_callback(move |reason, message| {
            *s.lost.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(format!("{reason:?}: {message}"));
        });
        sink
    }

    fn record(&self, e: wgpu::Error) {
        let err = match e {
            wgpu::Error::OutOfMemory { source } => {
                backend_api::oom!("queued work ran out of device memory: {source}")
            }
            other => {
                BackendError::DeviceError(format!("queued work failed: {}", with_sources(&other)))
            }
        };
        tracing::error!(error = %err, "wgpu reported an error");
        // A failed command buffer is followed by "... is invalid due to a previous error"
        // when it is submitted. Where its cause was recorded here, the echo adds nothing,
        // and in a browser it can arrive after that sync point returned and would fail the
        // next, unrelated one: drop one echo per recorded cause, keep any other.
        let mut unechoed = self.unechoed.lock().unwrap_or_else(PoisonError::into_inner);
        if is_echo(&err) {
            if *unechoed > 0 {
                *unechoed -= 1;
                return;
            }
        } else if matches!(err, BackendError::DeviceError(_)) {
            *unechoed += 1;
        }
        drop(unechoed);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(err);
    }

    /// The error to report at a sync point: device loss (forever), else the first error
    /// since the last sync point.
    pub(crate) fn take(&self) -> BackendResult<()> {
        self.check_lost()?;
        match self
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `DeviceError` once the device is lost; every call checks this.
    pub(crate) fn check_lost(&self) -> BackendResult<()> {
        match &*self.lost.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(why) => Err(BackendError::DeviceError(format!(
                "the device was lost ({why}); this backend can no longer be used: create a new one"
            ))),
            None => Ok(()),
        }
    }

    /// Records a loss the device-lost callback has not (yet) reported.
    pub(crate) fn mark_lost(&self, why: &str) {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| why.to_string());
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// True for the follow-up error of an invalid command buffer, which only repeats that an
/// earlier error happened.
fn is_echo(e: &BackendError) -> bool {
    matches!(e, BackendError::DeviceError(m) if m.contains("due to a previous error"))
}

/// An error and its chain of causes on one line (wgpu's own text is often just
/// "Validation Error"; the causes say what was wrong).
pub(crate) fn with_sources(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    // wgpu's messages span several lines ("Validation Error\n\nCaused by: ..."): one
    // line reads better inside another error.
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Validation and out-of-memory error scopes around a few calls whose failure must be
/// reported by the call itself (buffer and pipeline creation). Natively wgpu reports
/// these synchronously, so popping needs no waiting. In a browser the scopes would
/// resolve later, so none are pushed and the uncaptured-error handler reports instead.
pub(crate) struct ErrorScope {
    #[cfg(not(target_arch = "wasm32"))]
    scopes: [wgpu::ErrorScopeGuard; 2],
}

impl ErrorScope {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
            let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            Self {
                scopes: [oom, validation],
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            let _ = device;
            Self {}
        }
    }

    /// The first error caught, if any.
    pub(crate) fn pop(self) -> Option<wgpu::Error> {
        #[cfg(not(target_arch = "wasm32"))]
        {
            let [oom, validation] = self.scopes;
            let oom = pollster::block_on(oom.pop());
            let validation = pollster::block_on(validation.pop());
            oom.or(validation)
        }
        #[cfg(target_arch = "wasm32")]
        {
            None
        }
    }
}

#[cfg(test)]
mod echo_tests {
    use super::*;

    #[test]
    fn only_the_echo_of_an_earlier_error_is_dropped() {
        let echo = BackendError::DeviceError(
            "queued work failed: Validation Error: [Invalid CommandBuffer] is invalid due to a previous error".into(),
        );
        assert!(is_echo(&echo));
        assert!(!is_echo(&BackendError::DeviceError(
            "queued work failed: binding size too small".into()
        )));
        assert!(!is_echo(&BackendError::OutOfMemory(String::new())));
    }
}
