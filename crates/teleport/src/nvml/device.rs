//! Device queries: static facts (answered from the per-device cache) and
//! readings (asked for on every call), written into NVML's C structs with
//! the layouts of `nvml.h`, the process lists, and field values.

use std::ffi::{c_char, c_int, c_uint, c_ulonglong, c_void};

use tf_protocol::nvml_msgs::{FieldId, NvmlFieldValues, NvmlRequest, Query, MAX_FIELD_VALUES};
use tf_protocol::status::nvml::{self as nv, ARGUMENT_VERSION_MISMATCH};
use tf_protocol::Request;

use super::{
    answer, ask, guard, handle, nonnull, nums, out, out_str, NvmlDevice, NvmlMemory, NvmlReturn,
};

/// `NVML_VALUE_NOT_AVAILABLE` as the unsigned instance ids of a non-MIG process.
const NO_INSTANCE: c_uint = 0xFFFF_FFFF;

/// `NVML_STRUCT_VERSION(name, ver)`: the struct's size and version.
const fn struct_version<T>(ver: u32) -> u32 {
    std::mem::size_of::<T>() as u32 | ver << 24
}

/// `nvmlPciInfo_t` (the layout of `nvmlDeviceGetPciInfo_v2` and `_v3`).
#[repr(C)]
struct PciInfo {
    bus_id_legacy: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
    bus_id: [c_char; 32],
}

/// What the first `nvmlDeviceGetPciInfo` filled and its callers' struct
/// shares with today's: `busId[16]` (legacy form) up to `pciSubSystemId`.
/// Its callers' struct ends in reserved words instead of `busId[32]`, so
/// nothing past this prefix is written.
#[repr(C)]
struct PciInfoV1Prefix {
    bus_id: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
}

/// `nvmlMemory_v2_t`.
#[repr(C)]
struct MemoryV2 {
    version: c_uint,
    total: c_ulonglong,
    reserved: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlTemperature_v1_t`.
#[repr(C)]
struct TemperatureV1 {
    version: c_uint,
    sensor_type: c_uint,
    temperature: c_int,
}

/// `nvmlBAR1Memory_t`.
#[repr(C)]
struct Bar1Memory {
    total: c_ulonglong,
    free: c_ulonglong,
    used: c_ulonglong,
}

/// `nvmlUtilization_t`.
#[repr(C)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

/// `nvmlProcessInfo_v1_t`.
#[repr(C)]
struct ProcessV1 {
    pid: c_uint,
    used_gpu_memory: c_ulonglong,
}

/// `nvmlProcessInfo_v2_t`, also `nvmlProcessInfo_t` of the `_v3` functions.
#[repr(C)]
struct ProcessV2 {
    pid: c_uint,
    used_gpu_memory: c_ulonglong,
    gpu_instance_id: c_uint,
    compute_instance_id: c_uint,
}

/// `nvmlGpuFabricInfo_t` (`nvmlDeviceGetGpuFabricInfo`).
#[repr(C)]
struct GpuFabricInfo {
    cluster_uuid: [u8; 16],
    status: c_uint,
    clique_id: c_uint,
    state: u8,
}

/// `nvmlGpuFabricInfo_v2_t`.
#[repr(C)]
struct GpuFabricInfoV2 {
    version: c_uint,
    cluster_uuid: [u8; 16],
    status: c_uint,
    clique_id: c_uint,
    state: u8,
    health_mask: c_uint,
}

/// `nvmlGpuFabricInfo_v3_t` (`nvmlGpuFabricInfoV_t`).
#[repr(C)]
struct GpuFabricInfoV3 {
    version: c_uint,
    cluster_uuid: [u8; 16],
    status: c_uint,
    clique_id: c_uint,
    state: u8,
    health_mask: c_uint,
    health_summary: u8,
}

/// `nvmlFieldValue_t`; `value` is the 8-byte `nvmlValue_t` union.
#[repr(C)]
struct FieldValue {
    field_id: c_uint,
    scope_id: c_uint,
    timestamp: i64,
    latency_usec: i64,
    value_type: c_uint,
    nvml_return: c_uint,
    value: u64,
}

/// Fixed-size C text from `s`, cut to fit with its NUL.
fn c_array<const N: usize>(s: &str) -> [c_char; N] {
    let mut a = [0 as c_char; N];
    for (d, b) in a.iter_mut().zip(s.bytes().take(N - 1)) {
        *d = b as c_char;
    }
    a
}

/// `(device, unsigned int / enum *out)`: the answer's one number.
macro_rules! get_u32 {
    ($name:ident, $query:expr) => {
        unsafe extern "C" fn $name(dev: *mut c_void, v: *mut c_uint) -> NvmlReturn {
            guard(|| {
                let h = handle(dev)?;
                nonnull(v)?;
                let [a] = nums::<1>(&answer(h, $query, 0)?)?;
                out(v, a as c_uint)
            })
        }
    };
}

/// `(device, selector, unsigned int *out)`: the answer's one number.
macro_rules! get_arg_u32 {
    ($name:ident, $query:expr) => {
        unsafe extern "C" fn $name(dev: *mut c_void, arg: c_uint, v: *mut c_uint) -> NvmlReturn {
            guard(|| {
                let h = handle(dev)?;
                nonnull(v)?;
                let [a] = nums::<1>(&answer(h, $query, arg)?)?;
                out(v, a as c_uint)
            })
        }
    };
}

/// `(device, T *first, T *second)` with T a 32-bit integer or enum.
macro_rules! get_pair {
    ($name:ident, $query:expr, $t:ty) => {
        unsafe extern "C" fn $name(dev: *mut c_void, a: *mut $t, b: *mut $t) -> NvmlReturn {
            guard(|| {
                let h = handle(dev)?;
                nonnull(a)?;
                nonnull(b)?;
                let [x, y] = nums::<2>(&answer(h, $query, 0)?)?;
                out(a, x as u32 as $t)?;
                out(b, y as u32 as $t)
            })
        }
    };
}

/// `(device, char *buf, unsigned int length)`: the answer's text, refused
/// with `NVML_ERROR_INSUFFICIENT_SIZE` when it does not fit.
macro_rules! get_text {
    ($name:ident, $query:expr) => {
        unsafe extern "C" fn $name(dev: *mut c_void, buf: *mut c_char, len: c_uint) -> NvmlReturn {
            guard(|| {
                let h = handle(dev)?;
                nonnull(buf)?;
                out_str(buf, len, &answer(h, $query, 0)?.text)
            })
        }
    };
}

/// `nvmlDeviceGetP2PStatus(dev1, dev2, index, *status)`, answered here with
/// `NVML_P2P_STATUS_NOT_SUPPORTED`: what driver 580 answers for a device
/// with itself (every index, measured by `tests/gpu/nvml/pynvml_check.py`),
/// and between two devices of the worker peer access is not remoted. The
/// call succeeds, as NCCL requires; NCCL then takes its other paths.
unsafe extern "C" fn get_p2p_status(
    a: *mut c_void,
    b: *mut c_void,
    _index: c_uint,
    status: *mut c_uint,
) -> NvmlReturn {
    guard(|| {
        handle(a)?;
        handle(b)?;
        nonnull(status)?;
        const NOT_SUPPORTED: c_uint = 5;
        out(status, NOT_SUPPORTED)
    })
}

get_u32!(get_brand, Query::Brand);
get_u32!(get_architecture, Query::Architecture);
get_u32!(get_minor_number, Query::MinorNumber);
get_u32!(get_power_default_limit, Query::PowerDefaultLimit);
get_u32!(get_num_fans, Query::NumFans);
get_u32!(get_power_usage, Query::PowerUsage);
get_u32!(get_power_limit, Query::PowerLimit);
get_u32!(get_enforced_power_limit, Query::EnforcedPowerLimit);
get_u32!(get_fan_speed, Query::FanSpeed);
get_u32!(get_performance_state, Query::PerformanceState);
get_u32!(get_persistence_mode, Query::PersistenceMode);
get_u32!(get_compute_mode, Query::ComputeMode);
get_u32!(get_display_mode, Query::DisplayMode);
get_u32!(get_display_active, Query::DisplayActive);
get_u32!(get_virtualization_mode, Query::VirtualizationMode);
get_u32!(get_max_mig_device_count, Query::MaxMigDeviceCount);
get_u32!(get_max_pcie_generation, Query::MaxPcieLinkGeneration);
get_u32!(get_max_pcie_width, Query::MaxPcieLinkWidth);
get_u32!(get_curr_pcie_generation, Query::CurrPcieLinkGeneration);
get_u32!(get_curr_pcie_width, Query::CurrPcieLinkWidth);

unsafe extern "C" fn validate_inforom(dev: *mut c_void) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        answer(h, Query::ValidateInforom, 0).map(|_| ())
    })
}

/// Handles given out are whole devices, never MIG instances.
unsafe extern "C" fn is_mig_device_handle(dev: *mut c_void, is_mig: *mut c_uint) -> NvmlReturn {
    guard(|| {
        handle(dev)?;
        out(is_mig, 0)
    })
}
get_arg_u32!(get_max_clock, Query::MaxClock);
get_arg_u32!(get_default_app_clock, Query::DefaultAppClock);
get_arg_u32!(get_temperature_threshold, Query::TemperatureThreshold);
get_arg_u32!(get_temperature, Query::Temperature);
get_arg_u32!(get_clock, Query::Clock);
get_arg_u32!(get_app_clock, Query::AppClock);
get_arg_u32!(get_fan_speed_of, Query::FanSpeedOf);
get_arg_u32!(get_pcie_throughput, Query::PcieThroughput);
get_arg_u32!(get_nvlink_state, Query::NvLinkState);

/// `nvmlDeviceGetNvLinkCapability`: link and capability travel as one
/// argument, 16 bits each; larger values name no link or capability of any
/// NVML (36 links, 6 capabilities), so they are refused as NVML refuses
/// an invalid link.
unsafe extern "C" fn get_nvlink_capability(
    dev: *mut c_void,
    link: c_uint,
    capability: c_uint,
    result: *mut c_uint,
) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(result)?;
        if link > 0xffff || capability > 0xffff {
            return Err(nv::INVALID_ARGUMENT);
        }
        let [v] = nums::<1>(&answer(
            h,
            Query::NvLinkCapability,
            link | capability << 16,
        )?)?;
        out(result, v as c_uint)
    })
}

/// The fabric answer: `(clusterUuid, status, cliqueId, state, healthMask,
/// healthSummary)`.
type Fabric = ([u8; 16], c_uint, c_uint, u8, c_uint, u8);

/// Asks for the fabric information by the call the application made (`arg`
/// 0: `nvmlDeviceGetGpuFabricInfo`, else the struct version of
/// `nvmlDeviceGetGpuFabricInfoV`), always from the worker: the probe state
/// moves on (not started, in progress, completed) and callers poll it.
fn fabric(h: &NvmlDevice, arg: u32) -> Result<Fabric, NvmlReturn> {
    let [lo, hi, status, clique, state, mask, summary] =
        nums::<7>(&answer(h, Query::GpuFabricInfo, arg)?)?;
    let mut uuid = [0u8; 16];
    uuid[..8].copy_from_slice(&lo.to_le_bytes());
    uuid[8..].copy_from_slice(&hi.to_le_bytes());
    Ok((
        uuid,
        status as c_uint,
        clique as c_uint,
        state as u8,
        mask as c_uint,
        summary as u8,
    ))
}

unsafe extern "C" fn get_gpu_fabric_info(dev: *mut c_void, p: *mut GpuFabricInfo) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(p)?;
        let (cluster_uuid, status, clique_id, state, ..) = fabric(h, 0)?;
        out(
            p,
            GpuFabricInfo {
                cluster_uuid,
                status,
                clique_id,
                state,
            },
        )
    })
}

/// `nvmlDeviceGetGpuFabricInfoV`: version 2 or 3 of the struct, as the
/// caller's `version` says; only that version's bytes are written.
unsafe extern "C" fn get_gpu_fabric_info_v(
    dev: *mut c_void,
    p: *mut GpuFabricInfoV3,
) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(p)?;
        // SAFETY: non-null; the caller passes a versioned fabric struct whose
        // version field (first in every version) it set.
        let version = unsafe { (*p).version };
        if version == struct_version::<GpuFabricInfoV2>(2) {
            let (cluster_uuid, status, clique_id, state, health_mask, _) = fabric(h, 2)?;
            out(
                p.cast::<GpuFabricInfoV2>(),
                GpuFabricInfoV2 {
                    version,
                    cluster_uuid,
                    status,
                    clique_id,
                    state,
                    health_mask,
                },
            )
        } else if version == struct_version::<GpuFabricInfoV3>(3) {
            let (cluster_uuid, status, clique_id, state, health_mask, health_summary) =
                fabric(h, 3)?;
            out(
                p,
                GpuFabricInfoV3 {
                    version,
                    cluster_uuid,
                    status,
                    clique_id,
                    state,
                    health_mask,
                    health_summary,
                },
            )
        } else {
            Err(ARGUMENT_VERSION_MISMATCH)
        }
    })
}

/// `nvmlDeviceGetFieldValues(device, valuesCount, values)`: the fields go to
/// the worker, at most [`MAX_FIELD_VALUES`] a request (a longer list takes
/// several), and each entry gets NVML's own status, type, value and timing
/// for it; `fieldId` and `scopeId` stay as the caller set them. The call
/// fails only as NVML's does (invalid device or arguments, a lost
/// connection); a field the device lacks fails in its entry. The worker
/// forwards only fields that cannot show the board's physical memory (the
/// session sees its own limit; see `nvml_field_values` in tf-worker-core).
unsafe extern "C" fn get_field_values(
    dev: *mut c_void,
    count: c_int,
    values: *mut FieldValue,
) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(values)?;
        // A count of 0 is refused, as driver 580's NVML does.
        let n = usize::try_from(count)
            .ok()
            .filter(|n| *n > 0)
            .ok_or(nv::INVALID_ARGUMENT)?;
        // SAFETY: non-null; the caller passes `count` (> 0) valid, writable
        // nvmlFieldValue_t.
        let entries = unsafe { std::slice::from_raw_parts_mut(values, n) };
        for chunk in entries.chunks_mut(MAX_FIELD_VALUES) {
            let fields = chunk
                .iter()
                .map(|e| FieldId {
                    field: e.field_id,
                    scope: e.scope_id,
                })
                .collect();
            let r: NvmlFieldValues = ask(&Request::Nvml(NvmlRequest::FieldValues {
                index: h.index,
                fields,
            }))?;
            if r.values.len() != chunk.len() {
                tracing::warn!(
                    asked = chunk.len(),
                    got = r.values.len(),
                    "NVML field values from the worker do not match the fields asked for"
                );
                return Err(nv::UNKNOWN);
            }
            for (e, v) in chunk.iter_mut().zip(r.values) {
                e.timestamp = v.timestamp;
                e.latency_usec = v.latency_us;
                e.value_type = v.value_type;
                e.nvml_return = v.status;
                e.value = v.value;
            }
        }
        Ok(())
    })
}

get_pair!(get_compute_capability, Query::ComputeCapability, c_int);
get_pair!(
    get_power_limit_constraints,
    Query::PowerLimitConstraints,
    c_uint
);
get_pair!(get_ecc_mode, Query::EccMode, c_uint);
get_pair!(get_mig_mode, Query::MigMode, c_uint);
get_text!(get_serial, Query::Serial);
get_text!(get_vbios_version, Query::VbiosVersion);

/// The PCI facts: `(busIdLegacy, domain, bus, device, ids..., busId)`.
fn pci(h: &NvmlDevice) -> Result<PciInfo, NvmlReturn> {
    let a = answer(h, Query::PciInfo, 0)?;
    let [domain, bus, device, id, sub] = nums::<5>(&a)?.map(|v| v as c_uint);
    Ok(PciInfo {
        // NVML_DEVICE_PCI_BUS_ID_LEGACY_FMT
        bus_id_legacy: c_array(&format!("{domain:04X}:{bus:02X}:{device:02X}.0")),
        domain,
        bus,
        device,
        pci_device_id: id,
        pci_sub_system_id: sub,
        bus_id: c_array(&a.text),
    })
}

/// `nvmlDeviceGetPciInfo_v2` and `_v3` (same struct).
unsafe extern "C" fn get_pci_info(dev: *mut c_void, p: *mut PciInfo) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(p)?;
        out(p, pci(h)?)
    })
}

/// The first `nvmlDeviceGetPciInfo`: see [`PciInfoV1Prefix`].
unsafe extern "C" fn get_pci_info_v1(dev: *mut c_void, p: *mut PciInfoV1Prefix) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(p)?;
        let i = pci(h)?;
        out(
            p,
            PciInfoV1Prefix {
                bus_id: i.bus_id_legacy,
                domain: i.domain,
                bus: i.bus,
                device: i.device,
                pci_device_id: i.pci_device_id,
                pci_sub_system_id: i.pci_sub_system_id,
            },
        )
    })
}

/// `(total, free, used)` as this client sees the device: total is
/// min(memory limit, physical), used is what the worker's clients allocated.
fn memory(h: &NvmlDevice) -> Result<(u64, u64, u64), NvmlReturn> {
    ask(&Request::NvmlMemoryInfo { index: h.index })
}

unsafe extern "C" fn get_memory_info(dev: *mut c_void, m: *mut NvmlMemory) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(m)?;
        let (total, free, used) = memory(h)?;
        out(m, NvmlMemory { total, free, used })
    })
}

/// `nvmlDeviceGetMemoryInfo_v2`: nothing is reserved in the client's view.
unsafe extern "C" fn get_memory_info_v2(dev: *mut c_void, m: *mut MemoryV2) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(m)?;
        // SAFETY: non-null; the caller passes an nvmlMemory_v2_t whose
        // version field it set.
        let version = unsafe { (*m).version };
        if version != struct_version::<MemoryV2>(2) {
            return Err(ARGUMENT_VERSION_MISMATCH);
        }
        let (total, free, used) = memory(h)?;
        out(
            m,
            MemoryV2 {
                version,
                total,
                reserved: 0,
                free,
                used,
            },
        )
    })
}

unsafe extern "C" fn get_bar1_memory(dev: *mut c_void, m: *mut Bar1Memory) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(m)?;
        let [total, free, used] = nums::<3>(&answer(h, Query::Bar1Memory, 0)?)?;
        out(m, Bar1Memory { total, free, used })
    })
}

unsafe extern "C" fn get_utilization(dev: *mut c_void, u: *mut Utilization) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(u)?;
        let [gpu, memory] = nums::<2>(&answer(h, Query::Utilization, 0)?)?;
        out(
            u,
            Utilization {
                gpu: gpu as c_uint,
                memory: memory as c_uint,
            },
        )
    })
}

/// `nvmlDeviceGetTemperatureV`: the sensor comes in the struct.
unsafe extern "C" fn get_temperature_v(dev: *mut c_void, t: *mut TemperatureV1) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(t)?;
        // SAFETY: non-null; the caller passes an nvmlTemperature_t with its
        // version and sensor set.
        let (version, sensor) = unsafe { ((*t).version, (*t).sensor_type) };
        if version != struct_version::<TemperatureV1>(1) {
            return Err(ARGUMENT_VERSION_MISMATCH);
        }
        let [v] = nums::<1>(&answer(h, Query::Temperature, sensor)?)?;
        // SAFETY: as above; only the output field is written.
        unsafe { (*t).temperature = v as c_int };
        Ok(())
    })
}

unsafe extern "C" fn get_total_ecc_errors(
    dev: *mut c_void,
    error_type: c_uint,
    counter_type: c_uint,
    count: *mut c_ulonglong,
) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        nonnull(count)?;
        if error_type > 0xff || counter_type > 0xff {
            return Err(nv::INVALID_ARGUMENT);
        }
        let arg = error_type | counter_type << 8;
        let [n] = nums::<1>(&answer(h, Query::TotalEccErrors, arg)?)?;
        out(count, n)
    })
}

/// Fills a process list with NVML's count semantics: `*count` in is the
/// room in `infos`; too little room answers `NVML_ERROR_INSUFFICIENT_SIZE`
/// with the room needed in `*count` (`infos` may be null when `*count` is 0).
fn fill_processes<T>(
    count: *mut c_uint,
    infos: *mut T,
    list: &[(u32, u64)],
    make: impl Fn(u32, u64) -> T,
) -> Result<(), NvmlReturn> {
    nonnull(count)?;
    // SAFETY: non-null; the caller passes a valid unsigned int.
    let room = unsafe { *count } as usize;
    if room > 0 {
        nonnull(infos)?;
    }
    let n = list.len() as c_uint;
    if list.len() > room {
        out(count, n)?;
        return Err(nv::INSUFFICIENT_SIZE);
    }
    for (i, (pid, used)) in list.iter().enumerate() {
        // SAFETY: `infos` holds `room` >= list.len() elements (checked above).
        unsafe { infos.add(i).write(make(*pid, *used)) };
    }
    out(count, n)
}

/// This client's own process while it holds a context on the device.
fn compute_processes(dev: *mut c_void) -> Result<Vec<(u32, u64)>, NvmlReturn> {
    let h = handle(dev)?;
    let a = answer(h, Query::ComputeProcesses, 0)?;
    Ok(a.nums
        .chunks_exact(2)
        .map(|p| (p[0] as u32, p[1]))
        .collect())
}

unsafe extern "C" fn get_compute_processes_v1(
    dev: *mut c_void,
    count: *mut c_uint,
    infos: *mut ProcessV1,
) -> NvmlReturn {
    guard(|| {
        let list = compute_processes(dev)?;
        fill_processes(count, infos, &list, |pid, used| ProcessV1 {
            pid,
            used_gpu_memory: used,
        })
    })
}

fn process_v2(pid: u32, used: u64) -> ProcessV2 {
    ProcessV2 {
        pid,
        used_gpu_memory: used,
        gpu_instance_id: NO_INSTANCE,
        compute_instance_id: NO_INSTANCE,
    }
}

/// `_v2` and `_v3` (same struct).
unsafe extern "C" fn get_compute_processes(
    dev: *mut c_void,
    count: *mut c_uint,
    infos: *mut ProcessV2,
) -> NvmlReturn {
    guard(|| {
        let list = compute_processes(dev)?;
        fill_processes(count, infos, &list, process_v2)
    })
}

/// Graphics and MPS processes, every version: a client runs neither (no
/// graphics context, no MPS server on its side), so the list is empty.
/// The element type does not matter for an empty list.
unsafe extern "C" fn get_no_processes(
    dev: *mut c_void,
    count: *mut c_uint,
    infos: *mut ProcessV2,
) -> NvmlReturn {
    guard(|| {
        handle(dev)?;
        fill_processes(count, infos, &[], process_v2)
    })
}

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::nvml_fn as n;
    let table: &[(usize, Entry)] = &[
        (n::nvmlDeviceGetBrand, get_brand as Entry),
        (n::nvmlDeviceGetArchitecture, get_architecture as Entry),
        (n::nvmlDeviceGetMinorNumber, get_minor_number as Entry),
        (n::nvmlDeviceGetP2PStatus, get_p2p_status as Entry),
        (
            n::nvmlDeviceGetPowerManagementDefaultLimit,
            get_power_default_limit as Entry,
        ),
        (n::nvmlDeviceGetNumFans, get_num_fans as Entry),
        (n::nvmlDeviceGetPowerUsage, get_power_usage as Entry),
        (
            n::nvmlDeviceGetPowerManagementLimit,
            get_power_limit as Entry,
        ),
        (
            n::nvmlDeviceGetEnforcedPowerLimit,
            get_enforced_power_limit as Entry,
        ),
        (n::nvmlDeviceGetFanSpeed, get_fan_speed as Entry),
        (n::nvmlDeviceGetFanSpeed_v2, get_fan_speed_of as Entry),
        (
            n::nvmlDeviceGetPerformanceState,
            get_performance_state as Entry,
        ),
        // The deprecated name of the same query.
        (n::nvmlDeviceGetPowerState, get_performance_state as Entry),
        (
            n::nvmlDeviceGetPersistenceMode,
            get_persistence_mode as Entry,
        ),
        (n::nvmlDeviceGetComputeMode, get_compute_mode as Entry),
        (
            n::nvmlDeviceGetVirtualizationMode,
            get_virtualization_mode as Entry,
        ),
        (
            n::nvmlDeviceGetMaxMigDeviceCount,
            get_max_mig_device_count as Entry,
        ),
        (n::nvmlDeviceValidateInforom, validate_inforom as Entry),
        (
            n::nvmlDeviceIsMigDeviceHandle,
            is_mig_device_handle as Entry,
        ),
        (n::nvmlDeviceGetDisplayMode, get_display_mode as Entry),
        (n::nvmlDeviceGetDisplayActive, get_display_active as Entry),
        (n::nvmlDeviceGetMaxClockInfo, get_max_clock as Entry),
        (
            n::nvmlDeviceGetDefaultApplicationsClock,
            get_default_app_clock as Entry,
        ),
        (
            n::nvmlDeviceGetTemperatureThreshold,
            get_temperature_threshold as Entry,
        ),
        (n::nvmlDeviceGetTemperature, get_temperature as Entry),
        (n::nvmlDeviceGetTemperatureV, get_temperature_v as Entry),
        (n::nvmlDeviceGetClockInfo, get_clock as Entry),
        (n::nvmlDeviceGetApplicationsClock, get_app_clock as Entry),
        (
            n::nvmlDeviceGetCudaComputeCapability,
            get_compute_capability as Entry,
        ),
        (
            n::nvmlDeviceGetPowerManagementLimitConstraints,
            get_power_limit_constraints as Entry,
        ),
        (n::nvmlDeviceGetEccMode, get_ecc_mode as Entry),
        (
            n::nvmlDeviceGetTotalEccErrors,
            get_total_ecc_errors as Entry,
        ),
        (n::nvmlDeviceGetMigMode, get_mig_mode as Entry),
        (n::nvmlDeviceGetSerial, get_serial as Entry),
        (n::nvmlDeviceGetVbiosVersion, get_vbios_version as Entry),
        (n::nvmlDeviceGetPciInfo, get_pci_info_v1 as Entry),
        (n::nvmlDeviceGetPciInfo_v2, get_pci_info as Entry),
        (n::nvmlDeviceGetPciInfo_v3, get_pci_info as Entry),
        (n::nvmlDeviceGetMemoryInfo, get_memory_info as Entry),
        (n::nvmlDeviceGetMemoryInfo_v2, get_memory_info_v2 as Entry),
        (n::nvmlDeviceGetBAR1MemoryInfo, get_bar1_memory as Entry),
        (n::nvmlDeviceGetUtilizationRates, get_utilization as Entry),
        (
            n::nvmlDeviceGetMaxPcieLinkGeneration,
            get_max_pcie_generation as Entry,
        ),
        (
            n::nvmlDeviceGetMaxPcieLinkWidth,
            get_max_pcie_width as Entry,
        ),
        (
            n::nvmlDeviceGetCurrPcieLinkGeneration,
            get_curr_pcie_generation as Entry,
        ),
        (
            n::nvmlDeviceGetCurrPcieLinkWidth,
            get_curr_pcie_width as Entry,
        ),
        (n::nvmlDeviceGetPcieThroughput, get_pcie_throughput as Entry),
        (n::nvmlDeviceGetNvLinkState, get_nvlink_state as Entry),
        (
            n::nvmlDeviceGetNvLinkCapability,
            get_nvlink_capability as Entry,
        ),
        (n::nvmlDeviceGetGpuFabricInfo, get_gpu_fabric_info as Entry),
        (
            n::nvmlDeviceGetGpuFabricInfoV,
            get_gpu_fabric_info_v as Entry,
        ),
        (n::nvmlDeviceGetFieldValues, get_field_values as Entry),
        (
            n::nvmlDeviceGetComputeRunningProcesses,
            get_compute_processes_v1 as Entry,
        ),
        (
            n::nvmlDeviceGetComputeRunningProcesses_v2,
            get_compute_processes as Entry,
        ),
        (
            n::nvmlDeviceGetComputeRunningProcesses_v3,
            get_compute_processes as Entry,
        ),
    ];
    crate::set_each(set, table);
    for i in [
        n::nvmlDeviceGetGraphicsRunningProcesses,
        n::nvmlDeviceGetGraphicsRunningProcesses_v2,
        n::nvmlDeviceGetGraphicsRunningProcesses_v3,
        n::nvmlDeviceGetMPSComputeRunningProcesses,
        n::nvmlDeviceGetMPSComputeRunningProcesses_v2,
        n::nvmlDeviceGetMPSComputeRunningProcesses_v3,
    ] {
        set(i, get_no_processes as Entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sizes and offsets of nvml.h on LP64.
    #[test]
    fn layouts_match_nvml_h() {
        use std::mem::{offset_of, size_of};
        assert_eq!(size_of::<PciInfo>(), 68);
        assert_eq!(offset_of!(PciInfo, bus_id), 36);
        assert_eq!(size_of::<PciInfoV1Prefix>(), 36);
        assert_eq!(size_of::<MemoryV2>(), 40);
        assert_eq!(struct_version::<MemoryV2>(2), 0x0200_0028);
        assert_eq!(struct_version::<TemperatureV1>(1), 0x0100_000C);
        assert_eq!(size_of::<ProcessV1>(), 16);
        assert_eq!(size_of::<ProcessV2>(), 24);
        assert_eq!(offset_of!(ProcessV2, gpu_instance_id), 16);
        assert_eq!(size_of::<Bar1Memory>(), 24);
        assert_eq!(size_of::<GpuFabricInfo>(), 28);
        assert_eq!(offset_of!(GpuFabricInfo, state), 24);
        assert_eq!(struct_version::<GpuFabricInfoV2>(2), 0x0200_0024);
        assert_eq!(struct_version::<GpuFabricInfoV3>(3), 0x0300_0028);
        assert_eq!(offset_of!(GpuFabricInfoV3, health_mask), 32);
        assert_eq!(offset_of!(GpuFabricInfoV3, health_summary), 36);
        assert_eq!(size_of::<FieldValue>(), 40);
        assert_eq!(offset_of!(FieldValue, value_type), 24);
        assert_eq!(offset_of!(FieldValue, nvml_return), 28);
        assert_eq!(offset_of!(FieldValue, value), 32);
    }

    #[test]
    fn process_lists_follow_nvml_count_semantics() {
        let list = [(7, 100), (8, 200)];
        let mk = |pid, used| ProcessV1 {
            pid,
            used_gpu_memory: used,
        };
        let mut n: c_uint = 0;
        let r = fill_processes(&mut n, std::ptr::null_mut(), &list, mk);
        assert_eq!((r, n), (Err(nv::INSUFFICIENT_SIZE), 2));
        let mut n: c_uint = 0;
        let r = fill_processes(&mut n, std::ptr::null_mut(), &[], mk);
        assert_eq!((r, n), (Ok(()), 0));
        let mut n: c_uint = 1;
        assert_eq!(
            fill_processes(&mut n, std::ptr::null_mut(), &list, mk),
            Err(nv::INVALID_ARGUMENT)
        );
        let mut buf = [mk(0, 0), mk(0, 0), mk(0, 0)];
        let mut n: c_uint = 3;
        assert_eq!(fill_processes(&mut n, buf.as_mut_ptr(), &list, mk), Ok(()));
        assert_eq!((n, buf[1].pid, buf[1].used_gpu_memory), (2, 8, 200));
    }

    #[test]
    fn c_arrays_are_cut_and_terminated() {
        let a: [c_char; 4] = c_array("abcdef");
        assert_eq!(a, [b'a' as c_char, b'b' as c_char, b'c' as c_char, 0]);
    }
}
