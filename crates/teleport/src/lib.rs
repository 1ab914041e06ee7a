//! libteleport.so — the TensorFusion client core.
//!
//! `libcuda.so.1` and `libnvidia-ml.so.1` are thin export layers: each of
//! their exported symbols tail-jumps through a slot table that they fill, at
//! load time, from [`teleport_cuda_table`] / [`teleport_nvml_table`]. So both
//! libraries share this one library's state: one session per process, one
//! connection, one set of client-side handles.
//!
//! Entries not implemented yet point at generated stubs that log their name
//! once and answer `*_ERROR_NOT_SUPPORTED` (see `unsupported`).

pub mod client;
mod cuda;
pub mod error;
mod nvml;
mod generated {
    pub(crate) mod stubs;
}
mod unsupported;

use std::ffi::c_void;
use std::sync::OnceLock;

use tf_api::{cuda_fn as c, nvml_fn as n, CUDA_API_HASH, CUDA_COUNT, NVML_API_HASH, NVML_COUNT};

type Entry = *const c_void;

struct Table<const N: usize>([Entry; N]);
// SAFETY: the table holds addresses of functions, immutable once built.
unsafe impl<const N: usize> Sync for Table<N> {}
// SAFETY: as above.
unsafe impl<const N: usize> Send for Table<N> {}

fn cuda_table() -> &'static [Entry; CUDA_COUNT] {
    static T: OnceLock<Table<CUDA_COUNT>> = OnceLock::new();
    &T.get_or_init(|| {
        let mut t: [Entry; CUDA_COUNT] =
            std::array::from_fn(|i| generated::stubs::CUDA_STUBS[i] as Entry);
        let mut set = |i: usize, f: Entry| t[i] = f;
        use cuda::*;
        set(c::cuInit, cu_init as Entry);
        set(c::cuDriverGetVersion, cu_driver_get_version as Entry);
        set(c::cuDeviceGetCount, cu_device_get_count as Entry);
        set(c::cuDeviceGet, cu_device_get as Entry);
        set(c::cuDeviceGetName, cu_device_get_name as Entry);
        set(c::cuDeviceGetUuid, cu_device_get_uuid as Entry);
        set(c::cuDeviceGetUuid_v2, cu_device_get_uuid as Entry);
        set(c::cuDeviceGetPCIBusId, cu_device_get_pci_bus_id as Entry);
        set(c::cuDeviceGetAttribute, cu_device_get_attribute as Entry);
        set(c::cuDeviceTotalMem_v2, cu_device_total_mem as Entry);
        set(c::cuDeviceTotalMem, cu_device_total_mem_v1 as Entry);
        set(
            c::cuDevicePrimaryCtxRetain,
            cu_device_primary_ctx_retain as Entry,
        );
        set(
            c::cuDevicePrimaryCtxRelease,
            cu_device_primary_ctx_release as Entry,
        );
        set(
            c::cuDevicePrimaryCtxRelease_v2,
            cu_device_primary_ctx_release as Entry,
        );
        set(
            c::cuDevicePrimaryCtxGetState,
            cu_device_primary_ctx_get_state as Entry,
        );
        set(c::cuCtxGetCurrent, cu_ctx_get_current as Entry);
        set(c::cuCtxSetCurrent, cu_ctx_set_current as Entry);
        set(c::cuCtxGetDevice, cu_ctx_get_device as Entry);
        set(c::cuCtxSynchronize, cu_ctx_synchronize as Entry);
        set(c::cuMemAlloc_v2, cu_mem_alloc as Entry);
        set(c::cuMemFree_v2, cu_mem_free as Entry);
        set(c::cuMemGetInfo_v2, cu_mem_get_info as Entry);
        set(c::cuMemcpyHtoD_v2, cu_memcpy_htod as Entry);
        set(c::cuMemcpyHtoDAsync_v2, cu_memcpy_htod_async as Entry);
        set(c::cuMemcpyDtoH_v2, cu_memcpy_dtoh as Entry);
        set(c::cuMemcpyDtoHAsync_v2, cu_memcpy_dtoh_async as Entry);
        set(c::cuMemcpyDtoD_v2, cu_memcpy_dtod as Entry);
        set(c::cuMemcpyDtoDAsync_v2, cu_memcpy_dtod_async as Entry);
        set(c::cuMemsetD8_v2, cu_memset_d8 as Entry);
        set(c::cuMemsetD32_v2, cu_memset_d32 as Entry);
        set(c::cuGetErrorString, cu_get_error_string as Entry);
        set(c::cuGetErrorName, cu_get_error_name as Entry);
        Table(t)
    })
    .0
}

fn nvml_table() -> &'static [Entry; NVML_COUNT] {
    static T: OnceLock<Table<NVML_COUNT>> = OnceLock::new();
    &T.get_or_init(|| {
        let mut t: [Entry; NVML_COUNT] =
            std::array::from_fn(|i| generated::stubs::NVML_STUBS[i] as Entry);
        let mut set = |i: usize, f: Entry| t[i] = f;
        use nvml::*;
        set(n::nvmlInit_v2, nvml_init as Entry);
        set(n::nvmlInit, nvml_init as Entry);
        set(n::nvmlInitWithFlags, nvml_init_with_flags as Entry);
        set(n::nvmlShutdown, nvml_shutdown as Entry);
        set(n::nvmlDeviceGetCount_v2, nvml_device_get_count as Entry);
        set(n::nvmlDeviceGetCount, nvml_device_get_count as Entry);
        set(
            n::nvmlDeviceGetHandleByIndex_v2,
            nvml_device_get_handle_by_index as Entry,
        );
        set(
            n::nvmlDeviceGetHandleByIndex,
            nvml_device_get_handle_by_index as Entry,
        );
        set(n::nvmlDeviceGetName, nvml_device_get_name as Entry);
        set(n::nvmlDeviceGetUUID, nvml_device_get_uuid as Entry);
        set(
            n::nvmlDeviceGetMemoryInfo,
            nvml_device_get_memory_info as Entry,
        );
        set(
            n::nvmlSystemGetDriverVersion,
            nvml_system_get_driver_version as Entry,
        );
        set(n::nvmlErrorString, nvml_error_string as Entry);
        Table(t)
    })
    .0
}

fn register_exit_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain extern "C" fn; atexit has no other contract.
        unsafe { libc::atexit(cuda::at_exit) };
    });
}

/// Called by libcuda.so.1 at load: the addresses its exports jump to.
/// Returns null when the two libraries were generated from different API
/// lists (mixed releases), which libcuda reports.
#[unsafe(no_mangle)]
pub extern "C" fn teleport_cuda_table(api_hash: u64, count: usize) -> *const Entry {
    if api_hash != CUDA_API_HASH || count != CUDA_COUNT {
        return std::ptr::null();
    }
    register_exit_hook();
    cuda_table().as_ptr()
}

/// Called by libnvidia-ml.so.1 at load, as [`teleport_cuda_table`].
#[unsafe(no_mangle)]
pub extern "C" fn teleport_nvml_table(api_hash: u64, count: usize) -> *const Entry {
    if api_hash != NVML_API_HASH || count != NVML_COUNT {
        return std::ptr::null();
    }
    register_exit_hook();
    nvml_table().as_ptr()
}
