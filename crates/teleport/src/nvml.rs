//! The remoted NVML: initialization, system facts, device handles and the
//! device queries of `device`. What cannot change comes once and is cached:
//! versions and device identities with `nvmlInit`, every other static fact
//! of a device with its first use (one round trip per device), and the
//! static answers too numerous for that (NvLink capabilities, one per link
//! and capability) on their first use. Readings
//! (memory, utilization, temperature, clocks, ...) are asked for on every
//! call. A value the worker cannot provide is `NVML_ERROR_NOT_SUPPORTED`.
//!
//! NVML shares the process's one session with CUDA (`client()`), and the
//! worker numbers NVML devices as CUDA does, so index N is the same GPU in
//! both APIs. Every function here is an export target and runs inside
//! [`guard`], so a panic becomes `NVML_ERROR_UNKNOWN` instead of unwinding
//! into C.

mod device;
mod export_table;

use std::collections::HashMap;
use std::ffi::{c_char, c_uint, c_void, CStr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use tf_protocol::nvml_msgs::{NvmlAnswer, NvmlDeviceFacts, NvmlRequest, Query};
use tf_protocol::status::nvml as nv;
use tf_protocol::{Body, NvmlInitReply, Request};

use crate::client::client;
use crate::error::ClientError;

type NvmlReturn = u32;

/// A device's static facts: `(query opcode, arg)` → answer or status.
type Facts = HashMap<(u32, u32), Result<NvmlAnswer, NvmlReturn>>;

/// The handle an application gets is the address of one of these, so a
/// handle can be validated by looking it up.
pub struct NvmlDevice {
    pub index: u32,
    facts: OnceLock<Result<Facts, NvmlReturn>>,
    /// Answers of [`CACHED_ON_USE`] queries, kept from their first answer.
    cached: Mutex<Facts>,
}

/// Queries whose answers cannot change while the worker's driver is loaded
/// but that are too many to fetch with the facts (NVML has up to 36 links
/// and 6 capabilities): each `(query, arg)` is asked once, then answered
/// from [`NvmlDevice::cached`].
const CACHED_ON_USE: &[Query] = &[Query::NvLinkCapability];

/// Is this answer of a [`CACHED_ON_USE`] query as lasting as the fact? A
/// value, or a status about the device or the arguments (a link or
/// capability that does not exist, a function the worker's NVML lacks);
/// not a lost connection or any other passing failure.
fn lasting(a: &Result<NvmlAnswer, NvmlReturn>) -> bool {
    matches!(
        a,
        Ok(_) | Err(nv::NOT_SUPPORTED | nv::INVALID_ARGUMENT | nv::FUNCTION_NOT_FOUND)
    )
}

struct Nvml {
    info: NvmlInitReply,
    handles: Box<[NvmlDevice]>,
}

static STATE: OnceLock<Result<Nvml, NvmlReturn>> = OnceLock::new();
/// nvmlInit/nvmlShutdown nest, as in the real library.
static REFS: AtomicU32 = AtomicU32::new(0);

#[repr(C)]
pub struct NvmlMemory {
    pub total: u64,
    pub free: u64,
    pub used: u64,
}

/// Runs an export body, turning a panic into `NVML_ERROR_UNKNOWN`.
fn guard(f: impl FnOnce() -> Result<(), NvmlReturn>) -> NvmlReturn {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => nv::SUCCESS,
        Ok(Err(e)) => e,
        Err(_) => {
            tracing::error!(
                "internal error (panic) in the tensor-fusion client; answering NVML_ERROR_UNKNOWN"
            );
            nv::UNKNOWN
        }
    }
}

fn state() -> Result<&'static Nvml, NvmlReturn> {
    if REFS.load(Ordering::Acquire) == 0 {
        return Err(nv::UNINITIALIZED);
    }
    STATE
        .get()
        .ok_or(nv::UNINITIALIZED)?
        .as_ref()
        .map_err(|e| *e)
}

/// A round trip to the worker. The client reports a broken connection as
/// a sticky `CUresult`; NVML callers get NVML's word for it instead.
fn ask<B: Body>(req: &Request<'_>) -> Result<B, NvmlReturn> {
    let c = client().map_err(|e| e.nvml())?;
    c.call::<B>(req).map_err(|s| {
        let lost = ClientError::Lost(String::new());
        if s == lost.cuda() {
            lost.nvml()
        } else {
            s
        }
    })
}

fn handle(dev: *mut c_void) -> Result<&'static NvmlDevice, NvmlReturn> {
    let s = state()?;
    s.handles
        .iter()
        .find(|h| std::ptr::eq(*h, dev as *const NvmlDevice))
        .ok_or(nv::INVALID_ARGUMENT)
}

fn handle_ptr(h: &NvmlDevice) -> *mut c_void {
    h as *const NvmlDevice as *mut c_void
}

/// The cached static facts of a device, fetched on first use.
fn facts(h: &NvmlDevice) -> Result<&Facts, NvmlReturn> {
    h.facts
        .get_or_init(|| {
            let r = ask::<NvmlDeviceFacts>(&Request::Nvml(NvmlRequest::DeviceFacts {
                index: h.index,
            }))?;
            Ok(r.facts.into_iter().map(|(o, a, v)| ((o, a), v)).collect())
        })
        .as_ref()
        .map_err(|e| *e)
}

/// The answer to `q` about a device: from the cached facts when it is one
/// of them, else from the worker (kept for next time for the
/// [`CACHED_ON_USE`] queries).
fn answer(h: &NvmlDevice, q: Query, arg: u32) -> Result<NvmlAnswer, NvmlReturn> {
    let key = (q.opcode(), arg);
    if let Ok(f) = facts(h) {
        if let Some(a) = f.get(&key) {
            return a.clone();
        }
    }
    let keep = CACHED_ON_USE.contains(&q);
    let cached = || h.cached.lock().unwrap_or_else(|e| e.into_inner());
    if keep {
        if let Some(a) = cached().get(&key) {
            return a.clone();
        }
    }
    let a = ask(&Request::Nvml(NvmlRequest::Query {
        query: q,
        index: h.index,
        arg,
    }));
    if keep && lasting(&a) {
        cached().insert(key, a.clone());
    }
    a
}

/// The first `N` numbers of an answer; a shorter one is a worker bug.
fn nums<const N: usize>(a: &NvmlAnswer) -> Result<[u64; N], NvmlReturn> {
    a.nums
        .get(..N)
        .and_then(|s| <[u64; N]>::try_from(s).ok())
        .ok_or_else(|| {
            tracing::warn!(
                got = a.nums.len(),
                want = N,
                "short NVML answer from the worker"
            );
            nv::UNKNOWN
        })
}

fn nonnull<T>(p: *const T) -> Result<(), NvmlReturn> {
    if p.is_null() {
        Err(nv::INVALID_ARGUMENT)
    } else {
        Ok(())
    }
}

fn out<T>(p: *mut T, v: T) -> Result<(), NvmlReturn> {
    nonnull(p)?;
    // SAFETY: non-null; the NVML contract makes the caller pass a valid, writable T.
    unsafe { p.write(v) };
    Ok(())
}

/// NVML refuses (rather than truncates) a buffer that is too small.
fn out_str(buf: *mut c_char, len: c_uint, s: &str) -> Result<(), NvmlReturn> {
    nonnull(buf)?;
    if s.len() + 1 > len as usize {
        return Err(nv::INSUFFICIENT_SIZE);
    }
    // SAFETY: the caller promises `len` writable bytes; we write s.len()+1 <= len.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        *buf.add(s.len()) = 0;
    }
    Ok(())
}

/// Copies as much of `s` as fits in `len` bytes with its NUL (for the few
/// NVML functions documented to crop).
fn out_str_cropped(buf: *mut c_char, len: c_uint, s: &str) -> Result<(), NvmlReturn> {
    nonnull(buf)?;
    if len == 0 {
        return Err(nv::INVALID_ARGUMENT);
    }
    let n = s.len().min(len as usize - 1);
    // SAFETY: the caller promises `len` writable bytes; we write n+1 <= len.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    Ok(())
}

/// A C string argument, or `INVALID_ARGUMENT`.
fn in_str<'a>(p: *const c_char) -> Result<&'a str, NvmlReturn> {
    nonnull(p)?;
    // SAFETY: non-null; the caller passes a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| nv::INVALID_ARGUMENT)
}

pub(crate) unsafe extern "C" fn nvml_init() -> NvmlReturn {
    guard(|| {
        // Connect first: a connection failure is not cached here (the
        // client keeps it and logs it once).
        client().map_err(|e| e.nvml())?;
        STATE
            .get_or_init(|| {
                let info = ask::<NvmlInitReply>(&Request::NvmlInit)?;
                let handles = (0..info.devices.len() as u32)
                    .map(|index| NvmlDevice {
                        index,
                        facts: OnceLock::new(),
                        cached: Mutex::new(Facts::new()),
                    })
                    .collect();
                Ok(Nvml { info, handles })
            })
            .as_ref()
            .map_err(|e| *e)?;
        REFS.fetch_add(1, Ordering::AcqRel);
        Ok(())
    })
}

/// The flags (`NVML_INIT_FLAG_NO_GPUS`, `NVML_INIT_FLAG_NO_ATTACH`) only
/// relax what the real library checks on its host; nothing to do here.
pub(crate) unsafe extern "C" fn nvml_init_with_flags(_flags: c_uint) -> NvmlReturn {
    // SAFETY: no arguments.
    unsafe { nvml_init() }
}

pub(crate) unsafe extern "C" fn nvml_shutdown() -> NvmlReturn {
    guard(|| {
        REFS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1))
            .map(|_| ())
            .map_err(|_| nv::UNINITIALIZED)
    })
}

pub(crate) unsafe extern "C" fn nvml_system_get_driver_version(
    v: *mut c_char,
    len: c_uint,
) -> NvmlReturn {
    guard(|| out_str(v, len, &state()?.info.driver_version))
}

pub(crate) unsafe extern "C" fn nvml_system_get_nvml_version(
    v: *mut c_char,
    len: c_uint,
) -> NvmlReturn {
    guard(|| out_str(v, len, &state()?.info.nvml_version))
}

/// Both versions: v1 and v2 differ only in where the real library reads the
/// number (libcuda or the kernel module); the worker's answer serves both.
pub(crate) unsafe extern "C" fn nvml_system_get_cuda_driver_version(v: *mut i32) -> NvmlReturn {
    guard(|| out(v, state()?.info.cuda_driver_version))
}

/// The name of a process of the client's own system (the process list
/// reports client pids): argv[0] as the kernel has it, else the short name.
pub(crate) unsafe extern "C" fn nvml_system_get_process_name(
    pid: c_uint,
    name: *mut c_char,
    len: c_uint,
) -> NvmlReturn {
    guard(|| {
        state()?;
        nonnull(name)?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok();
        let argv0 = cmdline
            .as_deref()
            .and_then(|c| c.split(|b| *b == 0).next())
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned());
        let text = match argv0 {
            Some(a) => a,
            None => std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|s| s.trim_end().to_owned())
                .map_err(|_| nv::NOT_FOUND)?,
        };
        out_str_cropped(name, len, &text)
    })
}

pub(crate) unsafe extern "C" fn nvml_device_get_count(n: *mut c_uint) -> NvmlReturn {
    guard(|| out(n, state()?.handles.len() as c_uint))
}

pub(crate) unsafe extern "C" fn nvml_device_get_handle_by_index(
    i: c_uint,
    dev: *mut *mut c_void,
) -> NvmlReturn {
    guard(|| {
        let h = state()?
            .handles
            .get(i as usize)
            .ok_or(nv::INVALID_ARGUMENT)?;
        out(dev, handle_ptr(h))
    })
}

pub(crate) unsafe extern "C" fn nvml_device_get_handle_by_uuid(
    uuid: *const c_char,
    dev: *mut *mut c_void,
) -> NvmlReturn {
    guard(|| {
        let s = state()?;
        let uuid = in_str(uuid)?;
        nonnull(dev)?;
        let i = s
            .info
            .devices
            .iter()
            .position(|d| d.uuid == uuid)
            .ok_or(nv::NOT_FOUND)?;
        out(dev, handle_ptr(&s.handles[i]))
    })
}

/// `(domain, bus, device, function)` of a PCI bus id in any form NVML
/// accepts: `domain:bus:device.function`, `domain:bus:device`,
/// `bus:device.function` (hexadecimal, any case).
fn parse_bus_id(s: &str) -> Option<(u32, u32, u32, u32)> {
    let hex = |t: &str| u32::from_str_radix(t, 16).ok();
    let parts: Vec<&str> = s.trim().split(':').collect();
    let (domain, bus, rest) = match parts[..] {
        [d, b, rest] => (hex(d)?, hex(b)?, rest),
        [b, rest] if rest.contains('.') => (0, hex(b)?, rest),
        _ => return None,
    };
    let (device, function) = match rest.split_once('.') {
        Some((d, f)) => (hex(d)?, hex(f)?),
        None => (hex(rest)?, 0),
    };
    Some((domain, bus, device, function))
}

pub(crate) unsafe extern "C" fn nvml_device_get_handle_by_pci_bus_id(
    bus_id: *const c_char,
    dev: *mut *mut c_void,
) -> NvmlReturn {
    guard(|| {
        let s = state()?;
        let want = parse_bus_id(in_str(bus_id)?).ok_or(nv::INVALID_ARGUMENT)?;
        nonnull(dev)?;
        let i = s
            .info
            .devices
            .iter()
            .position(|d| parse_bus_id(&d.pci_bus_id) == Some(want))
            .ok_or(nv::NOT_FOUND)?;
        out(dev, handle_ptr(&s.handles[i]))
    })
}

pub(crate) unsafe extern "C" fn nvml_device_get_index(
    dev: *mut c_void,
    index: *mut c_uint,
) -> NvmlReturn {
    guard(|| out(index, handle(dev)?.index))
}

pub(crate) unsafe extern "C" fn nvml_device_get_name(
    dev: *mut c_void,
    name: *mut c_char,
    len: c_uint,
) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        out_str(name, len, &state()?.info.devices[h.index as usize].name)
    })
}

pub(crate) unsafe extern "C" fn nvml_device_get_uuid(
    dev: *mut c_void,
    uuid: *mut c_char,
    len: c_uint,
) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        out_str(uuid, len, &state()?.info.devices[h.index as usize].uuid)
    })
}

pub(crate) unsafe extern "C" fn nvml_error_string(code: NvmlReturn) -> *const c_char {
    tf_protocol::status::nvml_error_string(code).as_ptr().cast()
}

/// Points the export slots of the functions implemented here at them.
/// Event sets: the worker forwards no GPU events yet, so a set can be made
/// and waited on but never fires, and registering for events answers
/// NOT_SUPPORTED (what NVML answers for a device without event support).
/// nvidia-smi creates a set at start-up and carries on without events.
static EVENT_SET: u8 = 0;

unsafe extern "C" fn nvml_event_set_create(set: *mut *mut c_void) -> NvmlReturn {
    guard(|| {
        state()?;
        out(set, (&EVENT_SET as *const u8).cast_mut().cast())
    })
}

fn event_set(set: *mut c_void) -> Result<(), NvmlReturn> {
    if std::ptr::eq(set.cast_const().cast::<u8>(), &EVENT_SET) {
        Ok(())
    } else {
        Err(nv::INVALID_ARGUMENT)
    }
}

unsafe extern "C" fn nvml_event_set_free(set: *mut c_void) -> NvmlReturn {
    guard(|| event_set(set))
}

unsafe extern "C" fn nvml_device_register_events(
    dev: *mut c_void,
    _types: u64,
    set: *mut c_void,
) -> NvmlReturn {
    guard(|| {
        handle(dev)?;
        event_set(set)?;
        Err(nv::NOT_SUPPORTED)
    })
}

/// Waits out the timeout: no event can arrive.
unsafe extern "C" fn nvml_event_set_wait(
    set: *mut c_void,
    data: *mut c_void,
    timeout_ms: c_uint,
) -> NvmlReturn {
    guard(|| {
        event_set(set)?;
        if data.is_null() {
            return Err(nv::INVALID_ARGUMENT);
        }
        std::thread::sleep(std::time::Duration::from_millis(timeout_ms.into()));
        Err(nv::TIMEOUT)
    })
}

pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::nvml_fn as n;
    set(n::nvmlEventSetCreate, nvml_event_set_create as Entry);
    set(n::nvmlEventSetFree, nvml_event_set_free as Entry);
    set(
        n::nvmlDeviceRegisterEvents,
        nvml_device_register_events as Entry,
    );
    set(n::nvmlEventSetWait_v2, nvml_event_set_wait as Entry);
    set(n::nvmlEventSetWait, nvml_event_set_wait as Entry);
    set(n::nvmlInit_v2, nvml_init as Entry);
    set(n::nvmlInit, nvml_init as Entry);
    set(n::nvmlInitWithFlags, nvml_init_with_flags as Entry);
    set(n::nvmlShutdown, nvml_shutdown as Entry);
    set(n::nvmlErrorString, nvml_error_string as Entry);
    set(
        n::nvmlSystemGetDriverVersion,
        nvml_system_get_driver_version as Entry,
    );
    set(
        n::nvmlSystemGetNVMLVersion,
        nvml_system_get_nvml_version as Entry,
    );
    for i in [
        n::nvmlSystemGetCudaDriverVersion,
        n::nvmlSystemGetCudaDriverVersion_v2,
    ] {
        set(i, nvml_system_get_cuda_driver_version as Entry);
    }
    set(
        n::nvmlSystemGetProcessName,
        nvml_system_get_process_name as Entry,
    );
    set(n::nvmlDeviceGetCount_v2, nvml_device_get_count as Entry);
    set(n::nvmlDeviceGetCount, nvml_device_get_count as Entry);
    for i in [
        n::nvmlDeviceGetHandleByIndex_v2,
        n::nvmlDeviceGetHandleByIndex,
    ] {
        set(i, nvml_device_get_handle_by_index as Entry);
    }
    set(
        n::nvmlDeviceGetHandleByUUID,
        nvml_device_get_handle_by_uuid as Entry,
    );
    for i in [
        n::nvmlDeviceGetHandleByPciBusId_v2,
        n::nvmlDeviceGetHandleByPciBusId,
    ] {
        set(i, nvml_device_get_handle_by_pci_bus_id as Entry);
    }
    set(n::nvmlDeviceGetIndex, nvml_device_get_index as Entry);
    set(n::nvmlDeviceGetName, nvml_device_get_name as Entry);
    set(n::nvmlDeviceGetUUID, nvml_device_get_uuid as Entry);
    set(
        n::nvmlInternalGetExportTable,
        export_table::nvml_internal_get_export_table as Entry,
    );
    device::register(set);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_in_every_accepted_form() {
        let want = Some((0, 0x1b, 0, 0));
        for s in [
            "00000000:1B:00.0",
            "0000:1b:00.0",
            "0:1b:0",
            "1b:00.0",
            " 00000000:1b:00.0 ",
        ] {
            assert_eq!(parse_bus_id(s), want, "{s}");
        }
        assert_eq!(parse_bus_id("0001:02:03.4"), Some((1, 2, 3, 4)));
        for s in ["", "1b", "1b:00", "zz:00.0", "0:0:0:0", "0:1b:00.x"] {
            assert_eq!(parse_bus_id(s), None, "{s}");
        }
    }

    #[test]
    fn strings_are_refused_or_cropped_as_nvml_does() {
        let mut buf = [1 as c_char; 8];
        assert_eq!(out_str(buf.as_mut_ptr(), 8, "1234567"), Ok(()));
        assert_eq!(buf[7], 0);
        assert_eq!(
            out_str(buf.as_mut_ptr(), 8, "12345678"),
            Err(nv::INSUFFICIENT_SIZE)
        );
        assert_eq!(out_str_cropped(buf.as_mut_ptr(), 4, "abcdef"), Ok(()));
        // SAFETY: the buffer was just NUL-terminated within its length.
        assert_eq!(unsafe { CStr::from_ptr(buf.as_ptr()) }, c"abc");
        assert_eq!(
            out_str_cropped(buf.as_mut_ptr(), 0, "abc"),
            Err(nv::INVALID_ARGUMENT)
        );
    }
}
