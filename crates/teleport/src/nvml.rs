//! The remoted NVML slice: init/shutdown, device count and handles, name,
//! UUID and memory. Static facts come once with `nvmlInit`; memory is asked
//! for on every call because it changes.

use std::ffi::{c_char, c_uint, c_void};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use tf_protocol::status::nvml as nv;
use tf_protocol::{NvmlInitReply, Request};

use crate::client::client;

type NvmlReturn = u32;

/// The handle an application gets is the address of one of these, so a
/// handle can be validated by looking it up.
pub struct NvmlDevice {
    pub index: u32,
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

fn guard(f: impl FnOnce() -> Result<(), NvmlReturn>) -> NvmlReturn {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(())) => nv::SUCCESS,
        Ok(Err(e)) => e,
        Err(_) => nv::UNKNOWN,
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

fn handle(dev: *mut c_void) -> Result<&'static NvmlDevice, NvmlReturn> {
    let s = state()?;
    s.handles
        .iter()
        .find(|h| std::ptr::eq(*h, dev as *const NvmlDevice))
        .ok_or(nv::INVALID_ARGUMENT)
}

fn out<T>(p: *mut T, v: T) -> Result<(), NvmlReturn> {
    if p.is_null() {
        return Err(nv::INVALID_ARGUMENT);
    }
    // SAFETY: non-null; the NVML contract makes the caller pass a valid, writable T.
    unsafe { p.write(v) };
    Ok(())
}

/// NVML refuses (rather than truncates) a buffer that is too small.
fn out_str(buf: *mut c_char, len: c_uint, s: &str) -> Result<(), NvmlReturn> {
    if buf.is_null() {
        return Err(nv::INVALID_ARGUMENT);
    }
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

pub(crate) unsafe extern "C" fn nvml_init() -> NvmlReturn {
    guard(|| {
        let c = client().map_err(|e| e.nvml())?;
        STATE
            .get_or_init(|| {
                let info = c.call::<NvmlInitReply>(&Request::NvmlInit)?;
                let handles = (0..info.devices.len() as u32)
                    .map(|index| NvmlDevice { index })
                    .collect();
                Ok(Nvml { info, handles })
            })
            .as_ref()
            .map_err(|e| *e)?;
        REFS.fetch_add(1, Ordering::AcqRel);
        Ok(())
    })
}

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
        out(dev, h as *const NvmlDevice as *mut c_void)
    })
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

pub(crate) unsafe extern "C" fn nvml_device_get_memory_info(
    dev: *mut c_void,
    mem: *mut NvmlMemory,
) -> NvmlReturn {
    guard(|| {
        let h = handle(dev)?;
        if mem.is_null() {
            return Err(nv::INVALID_ARGUMENT);
        }
        let c = client().map_err(|e| e.nvml())?;
        let (total, free, used) =
            c.call::<(u64, u64, u64)>(&Request::NvmlMemoryInfo { index: h.index })?;
        out(mem, NvmlMemory { total, free, used })
    })
}

pub(crate) unsafe extern "C" fn nvml_system_get_driver_version(
    v: *mut c_char,
    len: c_uint,
) -> NvmlReturn {
    guard(|| out_str(v, len, &state()?.info.driver_version))
}

pub(crate) unsafe extern "C" fn nvml_error_string(code: NvmlReturn) -> *const c_char {
    tf_protocol::status::nvml_error_string(code).as_ptr().cast()
}

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::nvml_fn as n;
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
}
