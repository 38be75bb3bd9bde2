//! Host memory imported as device memory (feature `host-import`, Vulkan only), through
//! `VK_EXT_external_memory_host` and wgpu's hal interop: the backend's one module of
//! unsafe code besides the cooperative-matrix opt-in.
//!
//! wgpu does not enable the extension itself. [`open`] opens the device through the
//! Vulkan hal adapter with the extension added (`open_with_callback`), then hands it to
//! wgpu (`create_device_from_hal`). [`Imported::new`] makes a `VkBuffer` bound to
//! `VkDeviceMemory` allocated *from* the host pages (`VkImportMemoryHostPointerInfoEXT`)
//! and wraps it as a `wgpu::Buffer` (`from_raw_externally_owned`: wgpu-hal neither destroys
//! the buffer nor frees the memory; [`Imported::release`] does, once wgpu has let go).
//!
//! The pages around the lent bytes are imported whole (Vulkan wants
//! `minImportedHostPointerAlignment`, 4 KiB here); the address space hands out only the
//! lent bytes, and every kernel writes inside its operands, so the bytes around them are
//! never written.

use std::ffi::{CStr, c_void};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ash::vk;
use backend_api::{BackendError, BackendResult};
use wgpu::hal::api::Vulkan;

const EXT: &CStr = ash::ext::external_memory_host::NAME;
const HANDLE: vk::ExternalMemoryHandleTypeFlags =
    vk::ExternalMemoryHandleTypeFlags::HOST_ALLOCATION_EXT;

fn device_error(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::DeviceError(format!("with_host_memory: {what}: {e}"))
}

/// Whether `adapter` is a Vulkan adapter offering `VK_EXT_external_memory_host`.
pub(crate) fn supported(adapter: &wgpu::Adapter) -> bool {
    // SAFETY: the hal adapter is only read, and dropped before `adapter` is used again.
    let hal = unsafe { adapter.as_hal::<Vulkan>() };
    hal.is_some_and(|a| a.physical_device_capabilities().supports_extension(EXT))
}

/// Opens `adapter`'s device as `request_device` would, with `VK_EXT_external_memory_host`
/// enabled too. Only for an adapter for which [`supported`] is true.
pub(crate) fn open(
    adapter: &wgpu::Adapter,
    desc: &wgpu::DeviceDescriptor<'_>,
) -> BackendResult<(wgpu::Device, wgpu::Queue)> {
    let open = {
        // SAFETY: as in `supported`.
        let hal = unsafe { adapter.as_hal::<Vulkan>() }
            .ok_or_else(|| device_error("opening the device", "not a Vulkan adapter"))?;
        // SAFETY: the features and limits are the descriptor's, which wgpu checks against
        // the adapter's in `create_device_from_hal` as in `request_device`; the callback
        // only adds an extension the adapter reports (`supported`), and turns nothing off.
        unsafe {
            hal.open_with_callback(
                desc.required_features,
                &desc.required_limits,
                &desc.memory_hints,
                Some(Box::new(
                    |args: wgpu::hal::vulkan::CreateDeviceCallbackArgs<'_, '_, '_>| {
                        if !args.extensions.contains(&EXT) {
                            args.extensions.push(EXT);
                        }
                    },
                )),
            )
        }
        .map_err(|e| device_error("opening the device with VK_EXT_external_memory_host", e))?
    };
    // SAFETY: `open` was made by this adapter's own hal adapter, with the descriptor's
    // features and limits.
    unsafe { adapter.create_device_from_hal(open, desc) }
        .map_err(|e| device_error("opening the device", e))
}

/// Host pages imported as one `wgpu::Buffer`.
pub(crate) struct Imported {
    /// The buffer over the pages; the lent bytes start at `offset` in it.
    pub buffer: Arc<wgpu::Buffer>,
    pub offset: u64,
    /// Bytes of the buffer from `offset` to its end.
    pub size: u64,
    raw_device: ash::Device,
    raw_buffer: vk::Buffer,
    raw_memory: vk::DeviceMemory,
    /// Set when wgpu-hal drops its `Buffer` (its drop callback).
    let_go: Arc<AtomicBool>,
}

impl Imported {
    /// Imports the pages holding `host` into device memory as a buffer with `usage`
    /// (without map flags). `host` must stay borrowed and untouched until
    /// [`release`](Self::release) returns: `with_host_memory` holds its `&mut` for that
    /// long, and releases before it returns or unwinds.
    pub(crate) fn new(
        device: &wgpu::Device,
        usage: wgpu::BufferUsages,
        host: &mut [u8],
    ) -> BackendResult<Self> {
        // SAFETY: the hal device is only read here, while `device` lives.
        let hal = unsafe { device.as_hal::<Vulkan>() }
            .ok_or_else(|| device_error("importing", "not a Vulkan device"))?;
        if !hal.enabled_device_extensions().contains(&EXT) {
            return Err(BackendError::Unsupported(
                "with_host_memory: the device was opened without VK_EXT_external_memory_host"
                    .into(),
            ));
        }
        let raw = hal.raw_device().clone();
        let instance = hal.shared_instance().raw_instance();
        let phd = hal.raw_physical_device();

        let mut host_props = vk::PhysicalDeviceExternalMemoryHostPropertiesEXT::default();
        let mut props = vk::PhysicalDeviceProperties2::default().push_next(&mut host_props);
        // SAFETY: a query on the physical device of a live instance, into structures
        // that live across the call.
        unsafe { instance.get_physical_device_properties2(phd, &mut props) };
        let align = host_props.min_imported_host_pointer_alignment.max(1);

        let addr = host.as_mut_ptr() as u64;
        let start = addr / align * align;
        let end = (addr + host.len() as u64).div_ceil(align) * align;
        let size = (end - start).max(align);
        let offset = addr - start;

        let ext = ash::ext::external_memory_host::Device::new(instance, &raw);
        let mut pointer_props = vk::MemoryHostPointerPropertiesEXT::default();
        // SAFETY: `start` is aligned as the device asks and lies in the page holding the
        // first lent byte, which is mapped; the output structure lives across the call.
        let r = unsafe {
            (ext.fp().get_memory_host_pointer_properties_ext)(
                raw.handle(),
                HANDLE,
                start as *const c_void,
                &mut pointer_props,
            )
        };
        if r != vk::Result::SUCCESS {
            return Err(device_error("vkGetMemoryHostPointerPropertiesEXT", r));
        }

        let mut external = vk::ExternalMemoryBufferCreateInfo::default().handle_types(HANDLE);
        let buffer_info = vk::BufferCreateInfo::default()
            .size(size)
            .usage(
                vk::BufferUsageFlags::STORAGE_BUFFER
                    | vk::BufferUsageFlags::TRANSFER_SRC
                    | vk::BufferUsageFlags::TRANSFER_DST,
            )
            .sharing_mode(vk::SharingMode::EXCLUSIVE)
            .push_next(&mut external);
        // SAFETY: a valid create info on a live device; the buffer is destroyed by
        // `release` or below on failure.
        let raw_buffer = unsafe { raw.create_buffer(&buffer_info, None) }
            .map_err(|e| device_error("vkCreateBuffer", e))?;
        // SAFETY: `raw_buffer` was just created on `raw`.
        let reqs = unsafe { raw.get_buffer_memory_requirements(raw_buffer) };
        let types = reqs.memory_type_bits & pointer_props.memory_type_bits;
        // SAFETY: a query on the physical device of a live instance.
        let mem_props = unsafe { instance.get_physical_device_memory_properties(phd) };
        let pick = |flags: vk::MemoryPropertyFlags| {
            (0..mem_props.memory_type_count).find(|&i| {
                types & (1 << i) != 0
                    && mem_props.memory_types[i as usize]
                        .property_flags
                        .contains(flags)
            })
        };
        // Coherent memory, so that the device's writes reach the host's view of the pages
        // without flushes of ours.
        let Some(type_index) = pick(vk::MemoryPropertyFlags::HOST_COHERENT)
            .or_else(|| pick(vk::MemoryPropertyFlags::empty()))
        else {
            // SAFETY: created above, used by nothing.
            unsafe { raw.destroy_buffer(raw_buffer, None) };
            return Err(BackendError::Unsupported(format!(
                "with_host_memory: no memory type can import these host pages (buffer types \
                 {:#x}, host pointer types {:#x})",
                reqs.memory_type_bits, pointer_props.memory_type_bits
            )));
        };
        let mut import = vk::ImportMemoryHostPointerInfoEXT::default()
            .handle_type(HANDLE)
            .host_pointer(start as *mut c_void);
        let alloc_info = vk::MemoryAllocateInfo::default()
            .allocation_size(size.max(reqs.size))
            .memory_type_index(type_index)
            .push_next(&mut import);
        // SAFETY: the host range [start, start + size) is whole pages around the lent
        // bytes, mapped and kept alive by the caller's borrow until `release` frees this
        // memory; the allocation info is valid and lives across the call.
        let raw_memory = match unsafe { raw.allocate_memory(&alloc_info, None) } {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: created above, used by nothing.
                unsafe { raw.destroy_buffer(raw_buffer, None) };
                return Err(device_error("vkAllocateMemory (host pointer import)", e));
            }
        };
        // SAFETY: both handles are live and unbound; offset 0 meets the alignment.
        if let Err(e) = unsafe { raw.bind_buffer_memory(raw_buffer, raw_memory, 0) } {
            // SAFETY: created above, used by nothing.
            unsafe {
                raw.destroy_buffer(raw_buffer, None);
                raw.free_memory(raw_memory, None);
            }
            return Err(device_error("vkBindBufferMemory", e));
        }
        drop(hal);

        let let_go = Arc::new(AtomicBool::new(false));
        let flag = let_go.clone();
        // SAFETY: the buffer was created on this device, bound to its memory, and outlives
        // the wgpu buffer (`release` destroys it only after wgpu let go, or after the
        // device finished all work and the last wgpu handle was dropped); it is never
        // mapped through wgpu (`usage` carries no map flags).
        let hal_buffer = unsafe {
            wgpu::hal::vulkan::Buffer::from_raw_externally_owned(
                raw_buffer,
                Box::new(move || flag.store(true, Ordering::Release)),
            )
        };
        let desc = wgpu::BufferDescriptor {
            label: Some("imported host memory"),
            size,
            usage: usage - wgpu::BufferUsages::MAP_READ - wgpu::BufferUsages::MAP_WRITE,
            mapped_at_creation: false,
        };
        // SAFETY: `hal_buffer` is a buffer of this device, with the usage the descriptor
        // states (storage, copy source and destination) and its size.
        let buffer = unsafe { device.create_buffer_from_hal::<Vulkan>(hal_buffer, &desc) };
        Ok(Imported {
            buffer: Arc::new(buffer),
            offset,
            size: size - offset,
            raw_device: raw,
            raw_buffer,
            raw_memory,
            let_go,
        })
    }

    /// Ends the import. The caller has waited for every submission (`synchronize`) and
    /// removed the buffer from the address space, so `buffer` is the last handle; the
    /// buffer is destroyed through wgpu, wgpu polled until it let go, then the Vulkan
    /// buffer and memory are destroyed, after which nothing refers to the host pages.
    pub(crate) fn release(self, device: &wgpu::Device) {
        let Imported {
            buffer,
            raw_device,
            raw_buffer,
            raw_memory,
            let_go,
            ..
        } = self;
        buffer.destroy();
        drop(buffer);
        for _ in 0..100 {
            if let_go.load(Ordering::Acquire) {
                break;
            }
            let _ = device.poll(wgpu::PollType::wait_indefinitely());
        }
        if !let_go.load(Ordering::Acquire) {
            // All work has finished and wgpu destroyed the buffer (`destroy`), so no
            // submission can use it again; wgpu-hal's object lingers, holding only the
            // handle, which wgpu-hal never destroys for an externally owned buffer.
            tracing::warn!("with_host_memory: wgpu still holds the imported buffer's handle");
        }
        // SAFETY: the device finished every submission (the caller synchronized), wgpu
        // destroyed its buffer over `raw_buffer` and never destroys the raw handle itself;
        // no other reference to either handle exists.
        unsafe {
            raw_device.destroy_buffer(raw_buffer, None);
            raw_device.free_memory(raw_memory, None);
        }
    }
}
