//! Device buffers for one case: every operand sits at an interior pointer inside a larger
//! allocation whose bytes before and after it are random sentinels, so that any write
//! outside the named range is caught, and everything is freed when the case ends.

use backend_api::{BackendError, ComputeBackend};

use crate::data::{Rng, to_bytes};

/// An operand placed on the device.
#[derive(Debug, Clone)]
pub(crate) struct Region {
    /// Start of the whole allocation.
    pub(crate) base: u64,
    /// The operand's pointer, `base + lead`.
    pub(crate) ptr: u64,
    /// Bytes before the operand.
    pub(crate) lead: usize,
    /// Operand bytes.
    pub(crate) len: usize,
    /// The whole allocation's contents as uploaded.
    pub(crate) initial: Vec<u8>,
}

/// Turns a backend error in a case into the failure text.
pub(crate) fn op_failed(what: &str, e: BackendError) -> String {
    format!("{what} returned an error on a valid call: {e}")
}

/// Allocations made by one case; freed on drop.
pub(crate) struct Dev<'a> {
    pub(crate) b: &'a dyn ComputeBackend,
    allocs: Vec<u64>,
}

impl<'a> Dev<'a> {
    pub(crate) fn new(b: &'a dyn ComputeBackend) -> Self {
        Self {
            b,
            allocs: Vec::new(),
        }
    }

    /// Uploads `data` with `lead` sentinel bytes before it and `tail` after.
    pub(crate) fn put(
        &mut self,
        rng: &mut Rng,
        data: &[u8],
        lead: usize,
        tail: usize,
    ) -> Result<Region, String> {
        let (before, after) = (rng.bytes(lead), rng.bytes(tail));
        self.place(&before, data, &after)
    }

    /// Uploads f32 data at an interior pointer `lead` elements into its allocation, with
    /// `tail` sentinel elements after it.
    pub(crate) fn put_f32(
        &mut self,
        rng: &mut Rng,
        data: &[f32],
        lead: usize,
        tail: usize,
    ) -> Result<Region, String> {
        let (before, after) = (
            to_bytes(&rng.sentinels(lead)),
            to_bytes(&rng.sentinels(tail)),
        );
        self.place(&before, &to_bytes(data), &after)
    }

    /// Uploads `data` stored as `dtype` (rounded to it) at an interior pointer `lead`
    /// elements into its allocation, with `tail` sentinel elements after it.
    pub(crate) fn put_typed(
        &mut self,
        rng: &mut Rng,
        dtype: backend_api::DType,
        data: &[f32],
        lead: usize,
        tail: usize,
    ) -> Result<Region, String> {
        use backend_cpu::reference::encode;
        let (before, after) = (
            encode(dtype, &rng.sentinels(lead)),
            encode(dtype, &rng.sentinels(tail)),
        );
        self.place(&before, &encode(dtype, data), &after)
    }

    /// Allocates `before + data + after` bytes, uploads them, and returns the region of
    /// `data`.
    fn place(&mut self, before: &[u8], data: &[u8], after: &[u8]) -> Result<Region, String> {
        let initial = [before, data, after].concat();
        let base = self
            .b
            .alloc(initial.len())
            .map_err(|e| op_failed("alloc", e))?;
        self.allocs.push(base);
        self.b
            .copy_htod(base, &initial)
            .map_err(|e| op_failed("copy_htod", e))?;
        Ok(Region {
            base,
            ptr: base + before.len() as u64,
            lead: before.len(),
            len: data.len(),
            initial,
        })
    }

    /// Reads the whole allocation back without blocking.
    pub(crate) async fn fetch(&self, r: &Region) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; r.initial.len()];
        self.b
            .copy_dtoh_async(&mut out, r.base)
            .await
            .map_err(|e| op_failed("copy_dtoh", e))?;
        Ok(out)
    }

    /// Reads an output back, checks the bytes around it are untouched, and returns the
    /// operand's bytes.
    pub(crate) async fn output(&self, r: &Region, what: &str) -> Result<Vec<u8>, String> {
        let all = self.fetch(r).await?;
        crate::tolerance::unchanged(
            &format!("bytes before {what} (the op wrote outside the range it names)"),
            &all[..r.lead],
            &r.initial[..r.lead],
        )?;
        let end = r.lead + r.len;
        crate::tolerance::unchanged(
            &format!("bytes after {what} (the op wrote outside the range it names)"),
            &all[end..],
            &r.initial[end..],
        )?;
        Ok(all[r.lead..end].to_vec())
    }

    /// Checks that an input's whole allocation is exactly as uploaded.
    pub(crate) async fn unchanged(&self, r: &Region, what: &str) -> Result<(), String> {
        let all = self.fetch(r).await?;
        crate::tolerance::unchanged(
            &format!("input {what} (an op must not write its inputs)"),
            &all,
            &r.initial,
        )
    }
}

impl Drop for Dev<'_> {
    fn drop(&mut self) {
        for &p in &self.allocs {
            // A failing free here would only hide the case's own result; the misuse and
            // state-machine checks test free itself.
            let _ = self.b.free(p);
        }
    }
}
