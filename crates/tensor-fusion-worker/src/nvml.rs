//! NVML, resolved from the vendor's `libnvidia-ml.so.1` by ABI name, with
//! safe wrappers returning `nvmlReturn_t` errors.
//!
//! NVML is optional for the worker: without it CUDA still works, and NVML
//! requests answer `NVML_ERROR_LIBRARY_NOT_FOUND` (decided by the caller).

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::path::PathBuf;
use std::sync::OnceLock;

use tf_protocol::status::nvml;
use tf_protocol::{NvmlDeviceInfo, NvmlInitReply};
use tf_worker_core::BResult;

use crate::cuda::c_text;
use crate::loader::{resolve, Loaded};

type NvmlReturn = u32;
type NvmlDevice = *mut c_void;

/// `nvmlMemory_t` (version 1, what `nvmlDeviceGetMemoryInfo` fills).
#[repr(C)]
#[derive(Default)]
struct NvmlMemory {
    total: u64,
    free: u64,
    used: u64,
}

/// `nvmlPciInfo_t` as `nvmlDeviceGetPciInfo_v3` fills it. Only `bus_id` is
/// read; the other fields exist to give it its C offset.
#[repr(C)]
#[allow(dead_code)]
struct NvmlPciInfo {
    bus_id_legacy: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
    bus_id: [c_char; 32],
}

/// Buffer sizes from nvml.h (`NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE`,
/// `NVML_SYSTEM_NVML_VERSION_BUFFER_SIZE`, `NVML_DEVICE_NAME_V2_BUFFER_SIZE`,
/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE`).
const VERSION_BUF: usize = 80;
const NAME_BUF: usize = 96;
const UUID_BUF: usize = 96;

type FnInit = unsafe extern "C" fn() -> NvmlReturn;
type FnShutdown = unsafe extern "C" fn() -> NvmlReturn;
type FnGetString = unsafe extern "C" fn(*mut c_char, c_uint) -> NvmlReturn;
type FnCudaDriverVersion = unsafe extern "C" fn(*mut c_int) -> NvmlReturn;
type FnDeviceGetCount = unsafe extern "C" fn(*mut c_uint) -> NvmlReturn;
type FnHandleByIndex = unsafe extern "C" fn(c_uint, *mut NvmlDevice) -> NvmlReturn;
type FnDeviceGetString = unsafe extern "C" fn(NvmlDevice, *mut c_char, c_uint) -> NvmlReturn;
type FnPciInfo = unsafe extern "C" fn(NvmlDevice, *mut NvmlPciInfo) -> NvmlReturn;
type FnMemoryInfo = unsafe extern "C" fn(NvmlDevice, *mut NvmlMemory) -> NvmlReturn;

/// Entry points; a missing one fails only the calls needing it, with
/// `NVML_ERROR_FUNCTION_NOT_FOUND` (NVML's own code for that situation).
struct Fns {
    init: Option<FnInit>,
    shutdown: Option<FnShutdown>,
    driver_version: Option<FnGetString>,
    nvml_version: Option<FnGetString>,
    cuda_driver_version: Option<FnCudaDriverVersion>,
    device_count: Option<FnDeviceGetCount>,
    handle_by_index: Option<FnHandleByIndex>,
    device_name: Option<FnDeviceGetString>,
    device_uuid: Option<FnDeviceGetString>,
    pci_info: Option<FnPciInfo>,
    memory_info: Option<FnMemoryInfo>,
}

fn check(r: NvmlReturn) -> BResult<()> {
    if r == nvml::SUCCESS {
        Ok(())
    } else {
        Err(r)
    }
}

fn need<T>(f: Option<T>) -> BResult<T> {
    f.ok_or(nvml::FUNCTION_NOT_FOUND)
}

/// Calls an NVML function that fills a string buffer of `N` bytes.
fn system_string<const N: usize>(f: Option<FnGetString>) -> BResult<String> {
    let f = need(f)?;
    let mut buf: [c_char; N] = [0; N];
    // SAFETY: the buffer is writable for the length passed.
    check(unsafe { f(buf.as_mut_ptr(), N as c_uint) })?;
    Ok(c_text(&buf))
}

/// This host's NVML.
pub struct Nvml {
    pub path: PathBuf,
    /// `nvmlInit_v2`'s result. NVML counts initializations, so it is called
    /// once for the process and balanced by one `nvmlShutdown` on drop.
    init_status: OnceLock<NvmlReturn>,
    f: Fns,
}

impl Nvml {
    pub fn new(loaded: &Loaded) -> Self {
        let lib = loaded.lib;
        // SAFETY: for every `resolve` below, the type alias above is the C
        // signature of the versioned ABI symbols it is resolved for.
        let f = unsafe {
            Fns {
                init: resolve(lib, &["nvmlInit_v2"]),
                shutdown: resolve(lib, &["nvmlShutdown"]),
                driver_version: resolve(lib, &["nvmlSystemGetDriverVersion"]),
                nvml_version: resolve(lib, &["nvmlSystemGetNVMLVersion"]),
                cuda_driver_version: resolve(
                    lib,
                    &[
                        "nvmlSystemGetCudaDriverVersion_v2",
                        "nvmlSystemGetCudaDriverVersion",
                    ],
                ),
                device_count: resolve(lib, &["nvmlDeviceGetCount_v2"]),
                handle_by_index: resolve(lib, &["nvmlDeviceGetHandleByIndex_v2"]),
                device_name: resolve(lib, &["nvmlDeviceGetName"]),
                device_uuid: resolve(lib, &["nvmlDeviceGetUUID"]),
                pci_info: resolve(lib, &["nvmlDeviceGetPciInfo_v3"]),
                memory_info: resolve(lib, &["nvmlDeviceGetMemoryInfo"]),
            }
        };
        Nvml {
            path: loaded.path.clone(),
            init_status: OnceLock::new(),
            f,
        }
    }

    fn init(&self) -> BResult<()> {
        let f = need(self.f.init)?;
        // SAFETY: nvmlInit_v2 takes no arguments.
        check(*self.init_status.get_or_init(|| unsafe { f() }))
    }

    fn handle(&self, index: u32) -> BResult<NvmlDevice> {
        let f = need(self.f.handle_by_index)?;
        let mut h: NvmlDevice = std::ptr::null_mut();
        // SAFETY: `h` is a valid, writable handle slot; NVML checks the index.
        check(unsafe { f(index, &mut h) })?;
        Ok(h)
    }

    fn device_string<const N: usize>(
        &self,
        f: Option<FnDeviceGetString>,
        dev: NvmlDevice,
    ) -> BResult<String> {
        let f = need(f)?;
        let mut buf: [c_char; N] = [0; N];
        // SAFETY: `dev` is a handle NVML just returned; the buffer is
        // writable for the length passed.
        check(unsafe { f(dev, buf.as_mut_ptr(), N as c_uint) })?;
        Ok(c_text(&buf))
    }

    /// The PCI bus id, or empty where this NVML cannot tell (optional fact).
    fn bus_id(&self, dev: NvmlDevice) -> String {
        let Some(f) = self.f.pci_info else {
            return String::new();
        };
        let mut info = NvmlPciInfo {
            bus_id_legacy: [0; 16],
            domain: 0,
            bus: 0,
            device: 0,
            pci_device_id: 0,
            pci_sub_system_id: 0,
            bus_id: [0; 32],
        };
        // SAFETY: `dev` is a handle NVML just returned; `info` is a writable
        // nvmlPciInfo_t with the layout of nvml.h.
        match check(unsafe { f(dev, &mut info) }) {
            Ok(()) => c_text(&info.bus_id),
            Err(e) => {
                tracing::debug!(
                    status = e,
                    "nvmlDeviceGetPciInfo_v3 failed; bus id not reported"
                );
                String::new()
            }
        }
    }

    /// Initializes NVML (once) and reports versions and every device's
    /// static facts. `cuda_version` answers where this NVML lacks
    /// `nvmlSystemGetCudaDriverVersion`.
    pub fn describe_system(
        &self,
        cuda_version: impl FnOnce() -> Option<i32>,
    ) -> BResult<NvmlInitReply> {
        self.init()?;
        let driver_version = system_string::<VERSION_BUF>(self.f.driver_version)?;
        let nvml_version = system_string::<VERSION_BUF>(self.f.nvml_version)?;
        let cuda_driver_version = match self.f.cuda_driver_version {
            Some(f) => {
                let mut v: c_int = 0;
                // SAFETY: `v` is a valid, writable int for the call.
                check(unsafe { f(&mut v) })?;
                v
            }
            None => cuda_version().ok_or(nvml::FUNCTION_NOT_FOUND)?,
        };
        let count_fn = need(self.f.device_count)?;
        let mut count: c_uint = 0;
        // SAFETY: `count` is a valid, writable unsigned int for the call.
        check(unsafe { count_fn(&mut count) })?;
        let devices = (0..count)
            .map(|i| {
                let dev = self.handle(i)?;
                Ok(NvmlDeviceInfo {
                    name: self.device_string::<NAME_BUF>(self.f.device_name, dev)?,
                    uuid: self.device_string::<UUID_BUF>(self.f.device_uuid, dev)?,
                    pci_bus_id: self.bus_id(dev),
                })
            })
            .collect::<BResult<Vec<_>>>()?;
        Ok(NvmlInitReply {
            driver_version,
            nvml_version,
            cuda_driver_version,
            devices,
        })
    }

    /// Physical `(total, free, used)` of device `index`.
    pub fn memory(&self, index: u32) -> BResult<(u64, u64, u64)> {
        self.init()?;
        let dev = self.handle(index)?;
        let f = need(self.f.memory_info)?;
        let mut m = NvmlMemory::default();
        // SAFETY: `dev` is a handle NVML just returned; `m` is a writable nvmlMemory_t.
        check(unsafe { f(dev, &mut m) })?;
        Ok((m.total, m.free, m.used))
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        if let (Some(&nvml::SUCCESS), Some(shutdown)) = (self.init_status.get(), self.f.shutdown) {
            // SAFETY: balances the one successful nvmlInit_v2 of this instance.
            unsafe { shutdown() };
        }
    }
}
