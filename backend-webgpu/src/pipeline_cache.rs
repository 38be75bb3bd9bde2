//! Compiled pipelines kept on disk between processes: wgpu's `PipelineCache` (a Vulkan
//! `VkPipelineCache`), loaded at `init` and saved as pipelines are built and when the
//! backend is dropped, so a second process skips the driver's compilation of every
//! kernel it has seen.
//!
//! One file per adapter and driver and per version of this crate, in the directory of
//! [`WebGpuOptions::pipeline_cache`](crate::WebGpuOptions::pipeline_cache): the name holds
//! wgpu's adapter key (vendor and device), a hash of the driver's name and version and
//! this crate's version, so a driver or library update starts a new file instead of
//! feeding the old data to the driver. The file is `MAGIC`, the FNV-1a hash of the rest,
//! then the data `PipelineCache::get_data` returned; a file whose hash does not match
//! (truncated, damaged) is ignored. Files are replaced atomically (written beside, then
//! renamed), so processes sharing the directory never read half a file.
//!
//! This is the crate's second `unsafe` call into wgpu (`create_pipeline_cache`, whose data
//! must come from `get_data`): see the SAFETY comment in [`DiskCache::open`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The first bytes of a cache file of ours.
const MAGIC: &[u8; 8] = b"BKWGPC01";

/// Pipelines built between two saves.
const SAVE_EVERY: usize = 8;

/// FNV-1a, 64 bits: enough to tell a damaged file from an intact one (not an adversary).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The file's bytes for cache data `data`.
fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&fnv1a(data).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// The cache data in a file's bytes, or `None` when they are not an intact file of ours.
fn decode(file: &[u8]) -> Option<&[u8]> {
    let (magic, rest) = file.split_at_checked(8)?;
    let (hash, data) = rest.split_at_checked(8)?;
    (magic == MAGIC && u64::from_le_bytes(hash.try_into().ok()?) == fnv1a(data)).then_some(data)
}

/// The file for this adapter in `dir`, or `None` where wgpu keeps no cache (not Vulkan).
pub(crate) fn file_for(dir: &Path, info: &wgpu::AdapterInfo) -> Option<PathBuf> {
    let key = wgpu::util::pipeline_cache_key(info)?;
    let driver = fnv1a(format!("{}|{}", info.driver, info.driver_info).as_bytes());
    let version = env!("CARGO_PKG_VERSION");
    Some(dir.join(format!("{key}_driver{driver:016x}_v{version}.bin")))
}

/// The default directory: `$XDG_CACHE_HOME/backend-webgpu`, else
/// `$HOME/.cache/backend-webgpu`.
pub(crate) fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("backend-webgpu"))
}

/// A pipeline cache backed by a file.
pub(crate) struct DiskCache {
    pub(crate) cache: wgpu::PipelineCache,
    path: PathBuf,
    /// Pipelines built since the last save.
    unsaved: AtomicUsize,
    /// Bytes of valid data found at `init` (0: a cold start).
    pub(crate) loaded: usize,
}

impl DiskCache {
    /// The cache of `device` (opened with `Features::PIPELINE_CACHE`) in `dir`, seeded
    /// from the file there when it is intact; `None` where the adapter has no cache.
    pub(crate) fn open(
        device: &wgpu::Device,
        info: &wgpu::AdapterInfo,
        dir: &Path,
    ) -> Option<Self> {
        if !device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let path = file_for(dir, info)?;
        let file = std::fs::read(&path).ok();
        let data = file.as_deref().and_then(decode);
        let loaded = data.map_or(0, <[u8]>::len);
        // SAFETY: `data` is only ever bytes that `PipelineCache::get_data` returned (this
        // module writes them, nothing else writes files with our magic), checked intact by
        // the hash, and from the same adapter (wgpu's key in the file name) and driver (a
        // hash of its name and version in the file name); wgpu checks its own header
        // again (adapter, driver's cache UUID, size) and, with `fallback`, starts an empty
        // cache instead of passing data it finds invalid to the driver.
        #[expect(
            unsafe_code,
            reason = "wgpu's create_pipeline_cache is unsafe: its data must come from get_data"
        )]
        let cache = unsafe {
            device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor {
                label: Some("backend-webgpu pipelines"),
                data,
                fallback: true,
            })
        };
        tracing::info!(path = %path.display(), loaded, "pipeline cache opened");
        Some(Self {
            cache,
            path,
            unsaved: AtomicUsize::new(0),
            loaded,
        })
    }

    /// Counts a newly built pipeline; saves every [`SAVE_EVERY`].
    pub(crate) fn built(&self) {
        if self.unsaved.fetch_add(1, Ordering::Relaxed) + 1 >= SAVE_EVERY {
            self.save();
        }
    }

    /// Writes the cache's data to its file (atomically) if anything was built since the
    /// last save. Failures are logged, never errors: the cache is an optimisation.
    pub(crate) fn save(&self) {
        if self.unsaved.swap(0, Ordering::Relaxed) == 0 {
            return;
        }
        let Some(data) = self.cache.get_data() else {
            return;
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            // A name of this save's own: backends of one process may save at once.
            static SAVES: AtomicUsize = AtomicUsize::new(0);
            let tmp = self.path.with_extension(format!(
                "tmp{}-{}",
                std::process::id(),
                SAVES.fetch_add(1, Ordering::Relaxed)
            ));
            let written = std::fs::write(&tmp, encode(&data))
                .and_then(|()| std::fs::rename(&tmp, &self.path));
            if written.is_err() {
                // Nothing half-written stays behind.
                let _ = std::fs::remove_file(&tmp);
            }
            written
        };
        if let Err(e) = write() {
            tracing::warn!(path = %self.path.display(), error = %e, "pipeline cache not saved");
        }
    }

    /// The file the cache lives in.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_damage_is_refused() {
        let data = b"pipeline bytes".to_vec();
        let file = encode(&data);
        assert_eq!(decode(&file), Some(&data[..]));
        // A flipped byte, a truncation, someone else's file: all refused.
        let mut bad = file.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&bad), None);
        assert_eq!(decode(&file[..file.len() - 1]), None);
        assert_eq!(decode(&file[..7]), None);
        let mut other = file.clone();
        other[0] = b'X';
        assert_eq!(decode(&other), None);
    }

    #[test]
    fn the_file_name_changes_with_the_driver() {
        let mut info = wgpu::AdapterInfo::new(wgpu::DeviceType::DiscreteGpu, wgpu::Backend::Vulkan);
        (info.vendor, info.device) = (0x10de, 0x2330);
        info.driver = "NVIDIA".into();
        info.driver_info = "580.159.04".into();
        let dir = Path::new("/tmp/c");
        let a = file_for(dir, &info).expect("Vulkan has a key");
        info.driver_info = "590.1".into();
        let b = file_for(dir, &info).expect("Vulkan has a key");
        assert_ne!(a, b);
        assert!(a.to_string_lossy().contains(env!("CARGO_PKG_VERSION")));
        info.backend = wgpu::Backend::Gl;
        assert_eq!(file_for(dir, &info), None);
    }
}
