//! NVML, resolved from the vendor's `libnvidia-ml.so.1` by ABI name, with
//! safe wrappers returning `nvmlReturn_t` errors, and the real backend's
//! `NvmlBackend`.
//!
//! NVML is optional for the worker: without it CUDA still works, and NVML
//! requests answer `NVML_ERROR_LIBRARY_NOT_FOUND` (decided by the caller).
//!
//! Clients number devices as CUDA does, so every device index here is a
//! CUDA ordinal, mapped once to the NVML handle with the same UUID: NVML's
//! own order (PCI bus order) may differ from CUDA's (fastest first), and the
//! worker's `CUDA_VISIBLE_DEVICES` hides devices from CUDA only.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void, CString};
use std::path::PathBuf;
use std::sync::OnceLock;

use tf_protocol::nvml_msgs::{FieldId, FieldValue, NvmlAnswer, Query};
use tf_protocol::status::nvml;
use tf_protocol::{NvmlDeviceInfo, NvmlInitReply};
use tf_worker_core::BResult;

use crate::cuda::c_text;
use crate::loader::{resolve, Loaded};
use crate::real_backend::RealBackend;

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

/// `nvmlPciInfo_t` as `nvmlDeviceGetPciInfo_v3` fills it.
#[repr(C)]
#[derive(Default)]
struct NvmlPciInfo {
    bus_id_legacy: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
    bus_id: [c_char; 32],
}

/// `nvmlBAR1Memory_t`.
#[repr(C)]
#[derive(Default)]
struct NvmlBar1Memory {
    total: u64,
    free: u64,
    used: u64,
}

/// `nvmlUtilization_t`.
#[repr(C)]
#[derive(Default)]
struct NvmlUtilization {
    gpu: c_uint,
    memory: c_uint,
}

/// `nvmlGpuFabricInfo_t` (`nvmlDeviceGetGpuFabricInfo`).
#[repr(C)]
#[derive(Default)]
struct NvmlGpuFabricInfo {
    cluster_uuid: [u8; 16],
    status: c_uint,
    clique_id: c_uint,
    state: u8,
}

/// `nvmlGpuFabricInfo_v3_t` (`nvmlDeviceGetGpuFabricInfoV`); version 2 is
/// its first 36 bytes (no `healthSummary`).
#[repr(C)]
#[derive(Default)]
struct NvmlGpuFabricInfoV3 {
    version: c_uint,
    cluster_uuid: [u8; 16],
    status: c_uint,
    clique_id: c_uint,
    state: u8,
    health_mask: c_uint,
    health_summary: u8,
}

/// `nvmlGpuFabricInfo_v2` and `nvmlGpuFabricInfo_v3`: `NVML_STRUCT_VERSION`.
const FABRIC_V2: c_uint = 36 | 2 << 24;
const FABRIC_V3: c_uint = 40 | 3 << 24;

/// `nvmlFieldValue_t`; `value` is the 8-byte `nvmlValue_t` union.
#[repr(C)]
#[derive(Default, Clone, Copy)]
struct NvmlFieldValue {
    field_id: c_uint,
    scope_id: c_uint,
    timestamp: i64,
    latency_usec: i64,
    value_type: c_uint,
    nvml_return: c_uint,
    value: u64,
}

/// Buffer sizes from nvml.h (`NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE`,
/// `NVML_SYSTEM_NVML_VERSION_BUFFER_SIZE`, `NVML_DEVICE_NAME_V2_BUFFER_SIZE`,
/// `NVML_DEVICE_UUID_V2_BUFFER_SIZE`), rounded up where the text may grow
/// (serial: 30, VBIOS: 32).
const VERSION_BUF: usize = 80;
const NAME_BUF: usize = 96;
const UUID_BUF: usize = 96;
const SMALL_TEXT_BUF: usize = 64;

type FnInit = unsafe extern "C" fn() -> NvmlReturn;
type FnShutdown = unsafe extern "C" fn() -> NvmlReturn;
type FnGetString = unsafe extern "C" fn(*mut c_char, c_uint) -> NvmlReturn;
type FnCudaDriverVersion = unsafe extern "C" fn(*mut c_int) -> NvmlReturn;
type FnDeviceGetCount = unsafe extern "C" fn(*mut c_uint) -> NvmlReturn;
type FnHandleByIndex = unsafe extern "C" fn(c_uint, *mut NvmlDevice) -> NvmlReturn;
type FnHandleByText = unsafe extern "C" fn(*const c_char, *mut NvmlDevice) -> NvmlReturn;
type FnDeviceGetString = unsafe extern "C" fn(NvmlDevice, *mut c_char, c_uint) -> NvmlReturn;
type FnPciInfo = unsafe extern "C" fn(NvmlDevice, *mut NvmlPciInfo) -> NvmlReturn;
type FnMemoryInfo = unsafe extern "C" fn(NvmlDevice, *mut NvmlMemory) -> NvmlReturn;
type FnBar1 = unsafe extern "C" fn(NvmlDevice, *mut NvmlBar1Memory) -> NvmlReturn;
type FnUtilization = unsafe extern "C" fn(NvmlDevice, *mut NvmlUtilization) -> NvmlReturn;
/// `(device, unsigned int / enum *)`: enums are `int`-sized in NVML's ABI.
type FnU32 = unsafe extern "C" fn(NvmlDevice, *mut c_uint) -> NvmlReturn;
type FnDevice = unsafe extern "C" fn(NvmlDevice) -> NvmlReturn;
/// `(device, unsigned int / enum selector, unsigned int *)`.
type FnArgU32 = unsafe extern "C" fn(NvmlDevice, c_uint, *mut c_uint) -> NvmlReturn;
/// `(device, unsigned int / int / enum *, same *)`.
type FnPair = unsafe extern "C" fn(NvmlDevice, *mut c_uint, *mut c_uint) -> NvmlReturn;
type FnEccCount = unsafe extern "C" fn(NvmlDevice, c_uint, c_uint, *mut c_ulonglong) -> NvmlReturn;
/// `nvmlDeviceGetNvLinkCapability(device, link, capability, *capResult)`.
type FnNvLinkCap = unsafe extern "C" fn(NvmlDevice, c_uint, c_uint, *mut c_uint) -> NvmlReturn;
type FnFabric = unsafe extern "C" fn(NvmlDevice, *mut NvmlGpuFabricInfo) -> NvmlReturn;
type FnFabricV = unsafe extern "C" fn(NvmlDevice, *mut NvmlGpuFabricInfoV3) -> NvmlReturn;
type FnFieldValues = unsafe extern "C" fn(NvmlDevice, c_int, *mut NvmlFieldValue) -> NvmlReturn;

/// Queries answered by an `FnU32` entry point.
const U32_QUERIES: &[(Query, &str)] = &[
    (Query::Brand, "nvmlDeviceGetBrand"),
    (Query::Architecture, "nvmlDeviceGetArchitecture"),
    (Query::MinorNumber, "nvmlDeviceGetMinorNumber"),
    (
        Query::PowerDefaultLimit,
        "nvmlDeviceGetPowerManagementDefaultLimit",
    ),
    (Query::NumFans, "nvmlDeviceGetNumFans"),
    (Query::PowerUsage, "nvmlDeviceGetPowerUsage"),
    (Query::PowerLimit, "nvmlDeviceGetPowerManagementLimit"),
    (Query::EnforcedPowerLimit, "nvmlDeviceGetEnforcedPowerLimit"),
    (Query::FanSpeed, "nvmlDeviceGetFanSpeed"),
    (Query::PerformanceState, "nvmlDeviceGetPerformanceState"),
    (Query::PersistenceMode, "nvmlDeviceGetPersistenceMode"),
    (Query::ComputeMode, "nvmlDeviceGetComputeMode"),
    (Query::DisplayMode, "nvmlDeviceGetDisplayMode"),
    (Query::DisplayActive, "nvmlDeviceGetDisplayActive"),
    (Query::VirtualizationMode, "nvmlDeviceGetVirtualizationMode"),
    (Query::MaxMigDeviceCount, "nvmlDeviceGetMaxMigDeviceCount"),
    (
        Query::MaxPcieLinkGeneration,
        "nvmlDeviceGetMaxPcieLinkGeneration",
    ),
    (Query::MaxPcieLinkWidth, "nvmlDeviceGetMaxPcieLinkWidth"),
    (
        Query::CurrPcieLinkGeneration,
        "nvmlDeviceGetCurrPcieLinkGeneration",
    ),
    (Query::CurrPcieLinkWidth, "nvmlDeviceGetCurrPcieLinkWidth"),
];

/// Queries answered by an `FnArgU32` entry point.
const ARG_QUERIES: &[(Query, &str)] = &[
    (Query::MaxClock, "nvmlDeviceGetMaxClockInfo"),
    (
        Query::DefaultAppClock,
        "nvmlDeviceGetDefaultApplicationsClock",
    ),
    (
        Query::TemperatureThreshold,
        "nvmlDeviceGetTemperatureThreshold",
    ),
    (Query::Temperature, "nvmlDeviceGetTemperature"),
    (Query::Clock, "nvmlDeviceGetClockInfo"),
    (Query::AppClock, "nvmlDeviceGetApplicationsClock"),
    (Query::FanSpeedOf, "nvmlDeviceGetFanSpeed_v2"),
    // `nvmlPcieUtilCounter_t` and `nvmlEnableState_t *` are int-sized.
    (Query::PcieThroughput, "nvmlDeviceGetPcieThroughput"),
    (Query::NvLinkState, "nvmlDeviceGetNvLinkState"),
];

/// Queries answered by an `FnPair` entry point.
const PAIR_QUERIES: &[(Query, &str)] = &[
    (
        Query::ComputeCapability,
        "nvmlDeviceGetCudaComputeCapability",
    ),
    (
        Query::PowerLimitConstraints,
        "nvmlDeviceGetPowerManagementLimitConstraints",
    ),
    (Query::EccMode, "nvmlDeviceGetEccMode"),
    (Query::MigMode, "nvmlDeviceGetMigMode"),
];

/// Queries answered by an `FnDeviceGetString` entry point.
const TEXT_QUERIES: &[(Query, &str)] = &[
    (Query::Serial, "nvmlDeviceGetSerial"),
    (Query::VbiosVersion, "nvmlDeviceGetVbiosVersion"),
];

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
    handle_by_uuid: Option<FnHandleByText>,
    handle_by_bus_id: Option<FnHandleByText>,
    device_name: Option<FnDeviceGetString>,
    device_uuid: Option<FnDeviceGetString>,
    pci_info: Option<FnPciInfo>,
    memory_info: Option<FnMemoryInfo>,
    bar1: Option<FnBar1>,
    validate_inforom: Option<FnDevice>,
    utilization: Option<FnUtilization>,
    total_ecc_errors: Option<FnEccCount>,
    nvlink_capability: Option<FnNvLinkCap>,
    fabric: Option<FnFabric>,
    fabric_v: Option<FnFabricV>,
    field_values: Option<FnFieldValues>,
    u32s: HashMap<Query, FnU32>,
    args: HashMap<Query, FnArgU32>,
    pairs: HashMap<Query, FnPair>,
    texts: HashMap<Query, FnDeviceGetString>,
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

/// Resolves every `(query, name)` of `table` that the library exports.
///
/// # Safety
/// `T` must be the C signature of every name in `table`.
unsafe fn resolve_table<T: Copy>(
    lib: &'static libloading::Library,
    table: &[(Query, &str)],
) -> HashMap<Query, T> {
    table
        .iter()
        // SAFETY: forwarded from the caller.
        .filter_map(|(q, name)| unsafe { resolve::<T>(lib, &[name]) }.map(|f| (*q, f)))
        .collect()
}

/// NVML's text form of a CUDA device UUID, with the prefix NVML uses for
/// whole GPUs (`GPU-`) or MIG instances (`MIG-`).
pub(crate) fn uuid_text(prefix: &str, u: &[u8; 16]) -> String {
    let hex =
        |r: std::ops::Range<usize>| -> String { u[r].iter().map(|b| format!("{b:02x}")).collect() };
    format!(
        "{prefix}-{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    )
}

/// What identifies a CUDA device to NVML.
pub(crate) struct CudaDevice {
    pub uuid: [u8; 16],
    pub pci_bus_id: String,
}

/// This host's NVML.
pub struct Nvml {
    pub path: PathBuf,
    /// `nvmlInit_v2`'s result. NVML counts initializations, so it is called
    /// once for the process and balanced by one `nvmlShutdown` on drop.
    init_status: OnceLock<NvmlReturn>,
    /// NVML handles (as addresses) in CUDA order, found once.
    order: OnceLock<Vec<usize>>,
    f: Fns,
}

impl Nvml {
    pub fn new(loaded: &Loaded) -> Self {
        let lib = loaded.lib;
        // SAFETY: for every `resolve` below, the type alias above is the C
        // signature of the versioned ABI symbols it is resolved for; the
        // tables list names whose signature is the table's type.
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
                handle_by_uuid: resolve(lib, &["nvmlDeviceGetHandleByUUID"]),
                handle_by_bus_id: resolve(lib, &["nvmlDeviceGetHandleByPciBusId_v2"]),
                device_name: resolve(lib, &["nvmlDeviceGetName"]),
                device_uuid: resolve(lib, &["nvmlDeviceGetUUID"]),
                pci_info: resolve(lib, &["nvmlDeviceGetPciInfo_v3"]),
                memory_info: resolve(lib, &["nvmlDeviceGetMemoryInfo"]),
                bar1: resolve(lib, &["nvmlDeviceGetBAR1MemoryInfo"]),
                validate_inforom: resolve(lib, &["nvmlDeviceValidateInforom"]),
                utilization: resolve(lib, &["nvmlDeviceGetUtilizationRates"]),
                total_ecc_errors: resolve(lib, &["nvmlDeviceGetTotalEccErrors"]),
                nvlink_capability: resolve(lib, &["nvmlDeviceGetNvLinkCapability"]),
                fabric: resolve(lib, &["nvmlDeviceGetGpuFabricInfo"]),
                fabric_v: resolve(lib, &["nvmlDeviceGetGpuFabricInfoV"]),
                field_values: resolve(lib, &["nvmlDeviceGetFieldValues"]),
                u32s: resolve_table(lib, U32_QUERIES),
                args: resolve_table(lib, ARG_QUERIES),
                pairs: resolve_table(lib, PAIR_QUERIES),
                texts: resolve_table(lib, TEXT_QUERIES),
            }
        };
        Nvml {
            path: loaded.path.clone(),
            init_status: OnceLock::new(),
            order: OnceLock::new(),
            f,
        }
    }

    fn init(&self) -> BResult<()> {
        let f = need(self.f.init)?;
        // SAFETY: nvmlInit_v2 takes no arguments.
        check(*self.init_status.get_or_init(|| unsafe { f() }))
    }

    fn handle_by_index(&self, index: u32) -> BResult<NvmlDevice> {
        let f = need(self.f.handle_by_index)?;
        let mut h: NvmlDevice = std::ptr::null_mut();
        // SAFETY: `h` is a valid, writable handle slot; NVML checks the index.
        check(unsafe { f(index, &mut h) })?;
        Ok(h)
    }

    fn handle_by_text(&self, f: Option<FnHandleByText>, text: &str) -> Option<NvmlDevice> {
        let f = f?;
        let text = CString::new(text).ok()?;
        let mut h: NvmlDevice = std::ptr::null_mut();
        // SAFETY: `text` is NUL-terminated and outlives the call; `h` is a
        // writable handle slot.
        (unsafe { f(text.as_ptr(), &mut h) } == nvml::SUCCESS).then_some(h)
    }

    /// NVML's handles in CUDA order: each CUDA device is found by UUID
    /// (whole GPU or MIG instance), else by PCI bus id. Without CUDA
    /// devices (the CUDA driver failed), NVML's own order is used so that
    /// monitoring still works.
    fn order(&self, cuda: impl FnOnce() -> BResult<Vec<CudaDevice>>) -> BResult<&[usize]> {
        self.init()?;
        if let Some(o) = self.order.get() {
            return Ok(o);
        }
        let order = match cuda() {
            Ok(devs) => devs
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let found = ["GPU", "MIG"]
                        .iter()
                        .find_map(|p| self.handle_by_text(self.f.handle_by_uuid, &uuid_text(p, &d.uuid)))
                        .or_else(|| self.handle_by_text(self.f.handle_by_bus_id, &d.pci_bus_id));
                    match found {
                        Some(h) => Ok(h as usize),
                        None => {
                            tracing::warn!(cuda_device = i, "NVML does not know this CUDA device by UUID or PCI bus id; using NVML's device {i}");
                            self.handle_by_index(i as u32).map(|h| h as usize)
                        }
                    }
                })
                .collect::<BResult<Vec<_>>>()?,
            Err(e) => {
                tracing::warn!(status = e, "CUDA devices unavailable; NVML devices keep NVML's order");
                let count_fn = need(self.f.device_count)?;
                let mut count: c_uint = 0;
                // SAFETY: `count` is a valid, writable unsigned int for the call.
                check(unsafe { count_fn(&mut count) })?;
                (0..count)
                    .map(|i| self.handle_by_index(i).map(|h| h as usize))
                    .collect::<BResult<Vec<_>>>()?
            }
        };
        Ok(self.order.get_or_init(|| order))
    }

    /// The NVML handle of CUDA device `index`.
    fn device(
        &self,
        cuda: impl FnOnce() -> BResult<Vec<CudaDevice>>,
        index: u32,
    ) -> BResult<NvmlDevice> {
        self.order(cuda)?
            .get(index as usize)
            .map(|h| *h as NvmlDevice)
            .ok_or(nvml::INVALID_ARGUMENT)
    }

    fn device_string<const N: usize>(
        &self,
        f: Option<FnDeviceGetString>,
        dev: NvmlDevice,
    ) -> BResult<String> {
        let f = need(f)?;
        let mut buf: [c_char; N] = [0; N];
        // SAFETY: `dev` is a handle NVML returned; the buffer is writable for
        // the length passed.
        check(unsafe { f(dev, buf.as_mut_ptr(), N as c_uint) })?;
        Ok(c_text(&buf))
    }

    fn pci_info(&self, dev: NvmlDevice) -> BResult<NvmlPciInfo> {
        let f = need(self.f.pci_info)?;
        let mut info = NvmlPciInfo::default();
        // SAFETY: `dev` is a handle NVML returned; `info` is a writable
        // nvmlPciInfo_t with the layout of nvml.h.
        check(unsafe { f(dev, &mut info) })?;
        Ok(info)
    }

    /// The PCI bus id, or empty where this NVML cannot tell (optional fact).
    fn bus_id(&self, dev: NvmlDevice) -> String {
        match self.pci_info(dev) {
            Ok(info) => c_text(&info.bus_id),
            Err(e) => {
                tracing::debug!(
                    status = e,
                    "nvmlDeviceGetPciInfo_v3 failed; bus id not reported"
                );
                String::new()
            }
        }
    }

    /// Initializes NVML (once) and reports versions and the static facts of
    /// every device CUDA shows, in CUDA order. `cuda_version` answers where
    /// this NVML lacks `nvmlSystemGetCudaDriverVersion`.
    pub(crate) fn describe_system(
        &self,
        cuda: impl FnOnce() -> BResult<Vec<CudaDevice>>,
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
        let devices = self
            .order(cuda)?
            .iter()
            .map(|h| {
                let dev = *h as NvmlDevice;
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

    /// Physical `(total, free, used)` of CUDA device `index`.
    pub(crate) fn memory(
        &self,
        cuda: impl FnOnce() -> BResult<Vec<CudaDevice>>,
        index: u32,
    ) -> BResult<(u64, u64, u64)> {
        let dev = self.device(cuda, index)?;
        let f = need(self.f.memory_info)?;
        let mut m = NvmlMemory::default();
        // SAFETY: `dev` is a handle NVML returned; `m` is a writable nvmlMemory_t.
        check(unsafe { f(dev, &mut m) })?;
        Ok((m.total, m.free, m.used))
    }

    /// Answers one device query (shapes documented on [`Query`]).
    pub(crate) fn query(
        &self,
        cuda: impl FnOnce() -> BResult<Vec<CudaDevice>>,
        index: u32,
        q: Query,
        arg: u32,
    ) -> BResult<NvmlAnswer> {
        let dev = self.device(cuda, index)?;
        let one = |v: c_uint| Ok(NvmlAnswer::nums([u64::from(v)]));
        if let Some(f) = self.f.u32s.get(&q) {
            let mut v: c_uint = 0;
            // SAFETY: `dev` is a handle NVML returned; `v` is writable.
            check(unsafe { f(dev, &mut v) })?;
            return one(v);
        }
        if let Some(f) = self.f.args.get(&q) {
            let mut v: c_uint = 0;
            // SAFETY: as above; NVML validates the selector `arg`.
            check(unsafe { f(dev, arg, &mut v) })?;
            return one(v);
        }
        if let Some(f) = self.f.pairs.get(&q) {
            let (mut a, mut b): (c_uint, c_uint) = (0, 0);
            // SAFETY: as above; both outputs are writable 32-bit slots (the
            // `int *` of the compute capability has the same size).
            check(unsafe { f(dev, &mut a, &mut b) })?;
            return Ok(NvmlAnswer::nums([u64::from(a), u64::from(b)]));
        }
        if let Some(f) = self.f.texts.get(&q) {
            return self
                .device_string::<SMALL_TEXT_BUF>(Some(*f), dev)
                .map(NvmlAnswer::text);
        }
        match q {
            Query::PciInfo => {
                let p = self.pci_info(dev)?;
                Ok(NvmlAnswer {
                    nums: [
                        p.domain,
                        p.bus,
                        p.device,
                        p.pci_device_id,
                        p.pci_sub_system_id,
                    ]
                    .map(u64::from)
                    .to_vec(),
                    text: c_text(&p.bus_id),
                })
            }
            Query::Bar1Memory => {
                let f = need(self.f.bar1)?;
                let mut m = NvmlBar1Memory::default();
                // SAFETY: `dev` is a handle NVML returned; `m` is writable.
                check(unsafe { f(dev, &mut m) })?;
                Ok(NvmlAnswer::nums([m.total, m.free, m.used]))
            }
            Query::Utilization => {
                let f = need(self.f.utilization)?;
                let mut u = NvmlUtilization::default();
                // SAFETY: `dev` is a handle NVML returned; `u` is writable.
                check(unsafe { f(dev, &mut u) })?;
                Ok(NvmlAnswer::nums([u64::from(u.gpu), u64::from(u.memory)]))
            }
            Query::ValidateInforom => {
                let f = need(self.f.validate_inforom)?;
                // SAFETY: `dev` is a handle NVML returned.
                check(unsafe { f(dev) })?;
                Ok(NvmlAnswer::default())
            }
            Query::NvLinkCapability => {
                let f = need(self.f.nvlink_capability)?;
                let mut v: c_uint = 0;
                // SAFETY: `dev` is a handle NVML returned; `v` is writable;
                // NVML validates the link and the capability.
                check(unsafe { f(dev, arg & 0xffff, arg >> 16, &mut v) })?;
                one(v)
            }
            Query::GpuFabricInfo => self.fabric_info(dev, arg),
            Query::TotalEccErrors => {
                let f = need(self.f.total_ecc_errors)?;
                let mut n: c_ulonglong = 0;
                // SAFETY: `dev` is a handle NVML returned; `n` is writable;
                // NVML validates both selectors.
                check(unsafe { f(dev, arg & 0xff, arg >> 8, &mut n) })?;
                Ok(NvmlAnswer::nums([n]))
            }
            // A resolved entry point answered above; the rest are missing
            // from this driver. (Processes are answered by the worker core.)
            _ => Err(if q == Query::ComputeProcesses {
                nvml::NOT_SUPPORTED
            } else {
                nvml::FUNCTION_NOT_FOUND
            }),
        }
    }
}

impl Nvml {
    /// `[uuid 0..8, uuid 8..16, status, cliqueId, state, healthMask,
    /// healthSummary]` by the call the client's application made: `arg` 0
    /// is `nvmlDeviceGetGpuFabricInfo`, 2 and 3 `nvmlDeviceGetGpuFabricInfoV`
    /// with that struct version (a driver that lacks version 3 refuses it,
    /// as it would refuse the application).
    fn fabric_info(&self, dev: NvmlDevice, arg: u32) -> BResult<NvmlAnswer> {
        let uuid = |u: &[u8; 16]| -> [u64; 2] {
            let half = |at: usize| u64::from_le_bytes(std::array::from_fn(|i| u[at + i]));
            [half(0), half(8)]
        };
        if arg == 0 {
            let f = need(self.f.fabric)?;
            let mut i = NvmlGpuFabricInfo::default();
            // SAFETY: `dev` is a handle NVML returned; `i` is a writable
            // nvmlGpuFabricInfo_t.
            check(unsafe { f(dev, &mut i) })?;
            let [a, b] = uuid(&i.cluster_uuid);
            return Ok(NvmlAnswer::nums([
                a,
                b,
                u64::from(i.status),
                u64::from(i.clique_id),
                u64::from(i.state),
                0,
                0,
            ]));
        }
        let version = match arg {
            2 => FABRIC_V2,
            3 => FABRIC_V3,
            _ => return Err(nvml::ARGUMENT_VERSION_MISMATCH),
        };
        let f = need(self.f.fabric_v)?;
        let mut i = NvmlGpuFabricInfoV3 {
            version,
            ..Default::default()
        };
        // SAFETY: `dev` is a handle NVML returned; `i` is a writable
        // nvmlGpuFabricInfo_v3_t, at least as large as the version it names.
        check(unsafe { f(dev, &mut i) })?;
        let [a, b] = uuid(&i.cluster_uuid);
        Ok(NvmlAnswer::nums([
            a,
            b,
            u64::from(i.status),
            u64::from(i.clique_id),
            u64::from(i.state),
            u64::from(i.health_mask),
            if arg == 3 {
                u64::from(i.health_summary)
            } else {
                0
            },
        ]))
    }

    /// `nvmlDeviceGetFieldValues` on CUDA device `index`; each entry keeps
    /// NVML's own status, type, value and timing.
    pub(crate) fn field_values(
        &self,
        cuda: impl FnOnce() -> BResult<Vec<CudaDevice>>,
        index: u32,
        fields: &[FieldId],
    ) -> BResult<Vec<FieldValue>> {
        let dev = self.device(cuda, index)?;
        if fields.is_empty() {
            return Ok(Vec::new());
        }
        let f = need(self.f.field_values)?;
        let mut v: Vec<NvmlFieldValue> = fields
            .iter()
            .map(|f| NvmlFieldValue {
                field_id: f.field,
                scope_id: f.scope,
                ..Default::default()
            })
            .collect();
        let n = c_int::try_from(v.len()).map_err(|_| nvml::INVALID_ARGUMENT)?;
        // SAFETY: `dev` is a handle NVML returned; `v` holds `n` writable
        // nvmlFieldValue_t with their ids set.
        check(unsafe { f(dev, n, v.as_mut_ptr()) })?;
        Ok(v.iter()
            .map(|e| FieldValue {
                status: e.nvml_return,
                value_type: e.value_type,
                value: e.value,
                timestamp: e.timestamp,
                latency_us: e.latency_usec,
            })
            .collect())
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

impl RealBackend {
    /// The CUDA devices, identified for NVML (called once, by `Nvml::order`).
    fn cuda_devices(&self) -> BResult<Vec<CudaDevice>> {
        self.cuda.init()?;
        (0..self.cuda.device_count()?)
            .map(|i| {
                let d = self.cuda.device_info(i)?;
                Ok(CudaDevice {
                    uuid: d.uuid,
                    pci_bus_id: d.pci_bus_id,
                })
            })
            .collect()
    }

    /// `Backend::nvml_init`: versions and every device in CUDA order.
    pub(crate) fn nvml_describe(&self) -> BResult<NvmlInitReply> {
        self.nvml()?
            .describe_system(|| self.cuda_devices(), || self.cuda.driver_version().ok())
    }

    /// `Backend::nvml_memory` of CUDA device `index`.
    pub(crate) fn nvml_memory_of(&self, index: u32) -> BResult<(u64, u64, u64)> {
        self.nvml()?.memory(|| self.cuda_devices(), index)
    }
}

impl tf_worker_core::NvmlBackend for RealBackend {
    fn nvml_query(&self, index: u32, query: Query, arg: u32) -> BResult<NvmlAnswer> {
        self.nvml()?
            .query(|| self.cuda_devices(), index, query, arg)
    }

    fn nvml_field_values(&self, index: u32, fields: &[FieldId]) -> BResult<Vec<FieldValue>> {
        self.nvml()?
            .field_values(|| self.cuda_devices(), index, fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_text_is_nvml_form() {
        let u: [u8; 16] = std::array::from_fn(|i| i as u8 * 17);
        assert_eq!(
            uuid_text("GPU", &u),
            "GPU-00112233-4455-6677-8899-aabbccddeeff"
        );
    }

    /// Sizes and offsets of nvml.h on LP64.
    #[test]
    fn layouts_match_nvml_h() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<NvmlGpuFabricInfo>(), 28);
        assert_eq!(offset_of!(NvmlGpuFabricInfo, state), 24);
        assert_eq!(size_of::<NvmlGpuFabricInfoV3>(), 40);
        assert_eq!(offset_of!(NvmlGpuFabricInfoV3, health_mask), 32);
        assert_eq!(
            FABRIC_V3 & 0xff_ffff,
            size_of::<NvmlGpuFabricInfoV3>() as u32
        );
        assert_eq!(size_of::<NvmlFieldValue>(), 40);
        assert_eq!(offset_of!(NvmlFieldValue, value_type), 24);
        assert_eq!(offset_of!(NvmlFieldValue, value), 32);
    }

    #[test]
    fn query_tables_do_not_overlap() {
        let mut seen = std::collections::HashSet::new();
        for (q, _) in U32_QUERIES
            .iter()
            .chain(ARG_QUERIES)
            .chain(PAIR_QUERIES)
            .chain(TEXT_QUERIES)
        {
            assert!(seen.insert(*q), "{q:?} twice");
        }
    }
}
