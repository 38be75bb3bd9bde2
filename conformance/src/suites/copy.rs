//! copy_htod, copy_dtoh and copy_dtod at any byte offset.

use backend_api::ComputeBackend;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use super::Suite;
use crate::data::Rng;
use crate::harness::{Dev, op_failed};
use crate::tolerance::{Closeness, unchanged};
use crate::{Check, Profile};

/// Which copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopyKind {
    /// Host to device.
    Htod,
    /// Device to host.
    Dtoh,
    /// Device to device, separate allocations.
    Dtod,
    /// Device to device within one allocation (disjoint ranges).
    DtodSameAllocation,
}

/// One copy case: `bytes` bytes at byte offsets that need not be aligned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyCase {
    /// Which copy.
    pub kind: CopyKind,
    /// Bytes copied.
    pub bytes: usize,
    /// Byte offset of the source inside its allocation (device sources).
    pub src_offset: usize,
    /// Byte offset of the destination (device destinations).
    pub dst_offset: usize,
    /// Seed of the data.
    pub seed: u64,
}

pub(crate) struct CopySuite;

impl Suite for CopySuite {
    type Case = CopyCase;

    fn strategy(_: Check, p: &Profile) -> BoxedStrategy<CopyCase> {
        let kind = proptest::sample::select(
            &[
                CopyKind::Htod,
                CopyKind::Dtoh,
                CopyKind::Dtod,
                CopyKind::DtodSameAllocation,
            ][..],
        );
        let bytes = prop_oneof![2 => 0..=16usize, 3 => 0..=p.copy_max];
        (kind, bytes, 0..8usize, 0..8usize, any::<u64>())
            .prop_map(|(kind, bytes, src_offset, dst_offset, seed)| CopyCase {
                kind,
                bytes,
                src_offset,
                dst_offset,
                seed,
            })
            .boxed()
    }

    fn tags(_: &CopyCase) -> Vec<&'static str> {
        vec![]
    }

    async fn run(b: &dyn ComputeBackend, _: Check, c: &CopyCase) -> Result<Closeness, String> {
        let mut rng = Rng::new(c.seed);
        let data = rng.bytes(c.bytes);
        let mut dev = Dev::new(b);
        let done = Closeness {
            elements: c.bytes,
            ..Closeness::default()
        };
        match c.kind {
            CopyKind::Htod => {
                let old = rng.bytes(c.bytes);
                let dst = dev.put(&mut rng, &old, c.dst_offset, 5)?;
                b.copy_htod(dst.ptr, &data)
                    .map_err(|e| op_failed("copy_htod", e))?;
                unchanged(
                    "destination after copy_htod",
                    &dev.output(&dst, "dst").await?,
                    &data,
                )?;
            }
            CopyKind::Dtoh => {
                let src = dev.put(&mut rng, &data, c.src_offset, 5)?;
                let mut got = vec![0xa5u8; c.bytes];
                b.copy_dtoh_async(&mut got, src.ptr)
                    .await
                    .map_err(|e| op_failed("copy_dtoh", e))?;
                unchanged("copy_dtoh result", &got, &data)?;
            }
            CopyKind::Dtod => {
                let src = dev.put(&mut rng, &data, c.src_offset, 5)?;
                let old = rng.bytes(c.bytes);
                let dst = dev.put(&mut rng, &old, c.dst_offset, 5)?;
                b.copy_dtod(dst.ptr, src.ptr, c.bytes)
                    .map_err(|e| op_failed("copy_dtod", e))?;
                unchanged(
                    "destination after copy_dtod",
                    &dev.output(&dst, "dst").await?,
                    &data,
                )?;
                dev.unchanged(&src, "src").await?;
            }
            CopyKind::DtodSameAllocation => {
                // [lead | src | gap | dst | tail] in one allocation.
                let gap = c.dst_offset;
                let mut contents = data.clone();
                contents.extend(rng.bytes(gap + c.bytes));
                let whole = dev.put(&mut rng, &contents, c.src_offset, 5)?;
                let dst_ptr = whole.ptr + (c.bytes + gap) as u64;
                b.copy_dtod(dst_ptr, whole.ptr, c.bytes)
                    .map_err(|e| op_failed("copy_dtod", e))?;
                let got = dev.output(&whole, "src, gap and dst").await?;
                let mut want = contents.clone();
                want[c.bytes + gap..].copy_from_slice(&data);
                unchanged("src, gap and dst after copy_dtod", &got, &want)?;
            }
        }
        Ok(done)
    }
}
