//! The remoted CUDA driver slice: initialization, devices, primary contexts,
//! memory, copies and sets, error strings. Device facts are cached from the
//! `cuInit` reply and answered locally; the current context is per thread,
//! kept in the client, and sent with each call that needs one.
//!
//! Every function here is an export target: its body runs inside
//! [`guard`] so a panic becomes `CUDA_ERROR_UNKNOWN` instead of unwinding
//! into C.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::{Mutex, OnceLock};

use tf_protocol::status::{cu, cuda_error};
use tf_protocol::{InitReply, Request};

use crate::client::{client, existing, Client};

type CUresult = u32;
type CUdevice = c_int;
type CUdeviceptr = u64;
type CUcontext = *mut c_void;
type CUstream = *mut c_void;

static INIT: OnceLock<Result<InitReply, CUresult>> = OnceLock::new();
/// Primary contexts this process retained: device → (handle, count).
static PRIMARY: Mutex<Option<HashMap<CUdevice, (u64, u32)>>> = Mutex::new(None);

thread_local! {
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

/// Runs an export body, turning a panic into `CUDA_ERROR_UNKNOWN`. A
/// failing call is logged at debug level with the place of the export that
/// answered it, so a debug log shows which call a library tripped over.
#[track_caller]
pub(crate) fn guard(f: impl FnOnce() -> Result<(), CUresult>) -> CUresult {
    let at = std::panic::Location::caller();
    let started = crate::stats::start();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    crate::stats::record_site(at, started);
    match r {
        Ok(Ok(())) => {
            if tracing::enabled!(tracing::Level::DEBUG) {
                // A refusal this export handled itself is not its failure.
                crate::client::forget_refused();
            }
            cu::SUCCESS
        }
        Ok(Err(code)) => {
            if tracing::enabled!(tracing::Level::DEBUG) && crate::runtime::may_log() {
                // The worker's refusal of the request this export sent,
                // with its arguments, when that is what failed it.
                match crate::client::take_refused(code) {
                    Some(call) => tracing::debug!(status = code, at = %at, %call, "call failed"),
                    None => tracing::debug!(status = code, at = %at, "call failed"),
                }
            }
            code
        }
        Err(_) => {
            if crate::runtime::may_log() {
                tracing::error!(
                "internal error (panic) in the tensor-fusion client; answering CUDA_ERROR_UNKNOWN"
            );
            }
            cu::UNKNOWN
        }
    }
}

pub(crate) fn session() -> Result<&'static Client, CUresult> {
    client().map_err(|e| e.cuda())
}

pub(crate) fn inventory() -> Result<&'static InitReply, CUresult> {
    match INIT.get() {
        Some(Ok(r)) => Ok(r),
        Some(Err(e)) => Err(*e),
        None => Err(cu::NOT_INITIALIZED),
    }
}

pub(crate) fn device(dev: CUdevice) -> Result<&'static tf_protocol::DeviceInfo, CUresult> {
    let inv = inventory()?;
    usize::try_from(dev)
        .ok()
        .and_then(|d| inv.devices.get(d))
        .ok_or(cu::INVALID_DEVICE)
}

pub(crate) fn current_ctx() -> Result<u64, CUresult> {
    inventory()?;
    match CURRENT.with(Cell::get) {
        0 => Err(cu::INVALID_CONTEXT),
        c => Ok(c),
    }
}

/// The wire id of a stream: a default stream, or one the client created
/// (`exec`); anything else is `CUDA_ERROR_INVALID_HANDLE`.
pub(crate) fn stream_arg(s: CUstream) -> Result<u64, CUresult> {
    crate::exec::wire_stream(s as u64, false)
}

/// Writes through an out-pointer supplied by the application.
pub(crate) fn out<T>(p: *mut T, v: T) -> Result<(), CUresult> {
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: non-null; the CUDA API contract makes the caller pass a valid,
    // writable pointer to a T.
    unsafe { p.write(v) };
    Ok(())
}

/// Copies a NUL-terminated string into a caller buffer of `len` bytes, truncating.
pub(crate) fn out_str(buf: *mut c_char, len: c_int, s: &str) -> Result<(), CUresult> {
    if buf.is_null() || len <= 0 {
        return Err(cu::INVALID_VALUE);
    }
    let n = s.len().min(len as usize - 1);
    // SAFETY: the caller promises `len` writable bytes at `buf`; we write n+1 <= len.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    Ok(())
}

pub(crate) unsafe extern "C" fn cu_init(flags: c_uint) -> CUresult {
    guard(|| {
        let c = session()?;
        INIT.get_or_init(|| c.call::<InitReply>(&Request::Init { flags }))
            .as_ref()
            .map(|_| ())
            .map_err(|e| *e)
    })
}

pub(crate) unsafe extern "C" fn cu_driver_get_version(v: *mut c_int) -> CUresult {
    guard(|| {
        if v.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        out(v, session()?.ack.driver_version)
    })
}

pub(crate) unsafe extern "C" fn cu_device_get_count(n: *mut c_int) -> CUresult {
    guard(|| out(n, inventory()?.devices.len() as c_int))
}

pub(crate) unsafe extern "C" fn cu_device_get(d: *mut CUdevice, ordinal: c_int) -> CUresult {
    guard(|| {
        device(ordinal)?;
        out(d, ordinal)
    })
}

pub(crate) unsafe extern "C" fn cu_device_get_name(
    name: *mut c_char,
    len: c_int,
    dev: CUdevice,
) -> CUresult {
    guard(|| out_str(name, len, &device(dev)?.name))
}

pub(crate) unsafe extern "C" fn cu_device_get_uuid(uuid: *mut [u8; 16], dev: CUdevice) -> CUresult {
    guard(|| out(uuid, device(dev)?.uuid))
}

pub(crate) unsafe extern "C" fn cu_device_get_pci_bus_id(
    id: *mut c_char,
    len: c_int,
    dev: CUdevice,
) -> CUresult {
    guard(|| out_str(id, len, &device(dev)?.pci_bus_id))
}

pub(crate) unsafe extern "C" fn cu_device_total_mem(bytes: *mut usize, dev: CUdevice) -> CUresult {
    guard(|| out(bytes, device(dev)?.total_mem as usize))
}

/// The legacy `unsigned int` variant: saturates like the real driver.
pub(crate) unsafe extern "C" fn cu_device_total_mem_v1(
    bytes: *mut c_uint,
    dev: CUdevice,
) -> CUresult {
    guard(|| out(bytes, device(dev)?.total_mem.min(u32::MAX as u64) as c_uint))
}

pub(crate) unsafe extern "C" fn cu_device_get_attribute(
    v: *mut c_int,
    attrib: c_int,
    dev: CUdevice,
) -> CUresult {
    guard(|| {
        let d = device(dev)?;
        let found = d
            .attributes
            .iter()
            .find(|(a, _)| *a == attrib)
            .ok_or(cu::INVALID_VALUE)?;
        out(v, found.1)
    })
}

pub(crate) unsafe extern "C" fn cu_device_primary_ctx_retain(
    pctx: *mut CUcontext,
    dev: CUdevice,
) -> CUresult {
    guard(|| {
        if pctx.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        device(dev)?;
        let handle = session()?.call::<u64>(&Request::PrimaryCtxRetain { dev })?;
        let mut p = PRIMARY.lock().unwrap_or_else(|e| e.into_inner());
        let e = p
            .get_or_insert_with(HashMap::new)
            .entry(dev)
            .or_insert((handle, 0));
        e.1 += 1;
        let count = e.1;
        drop(p);
        crate::ctx::primary_retained(dev, handle, count);
        out(pctx, handle as CUcontext)
    })
}

pub(crate) unsafe extern "C" fn cu_device_primary_ctx_release(dev: CUdevice) -> CUresult {
    guard(|| {
        device(dev)?;
        session()?.call::<()>(&Request::PrimaryCtxRelease { dev })?;
        let mut p = PRIMARY.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = p.get_or_insert_with(HashMap::new).get_mut(&dev) {
            e.1 = e.1.saturating_sub(1);
            let (handle, count) = *e;
            drop(p);
            // Context-local storage destructors run when the count reaches 0.
            crate::ctx::primary_released(dev, handle, count);
        }
        Ok(())
    })
}

pub(crate) fn known_ctx(handle: u64) -> Option<CUdevice> {
    let p = PRIMARY.lock().unwrap_or_else(|e| e.into_inner());
    let primary = p
        .as_ref()
        .and_then(|m| m.iter().find(|(_, (h, n))| *h == handle && *n > 0))
        .map(|(d, _)| *d);
    drop(p);
    // Contexts of `cuCtxCreate` live in the ctx module.
    primary.or_else(|| crate::ctx::created_ctx_device(handle))
}

/// After `cuDevicePrimaryCtxReset`: this process holds no retain any more.
pub(crate) fn forget_primary(dev: CUdevice) {
    let mut p = PRIMARY.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = p.get_or_insert_with(HashMap::new).get_mut(&dev) {
        e.1 = 0;
    }
}

/// The calling thread's current context handle (0: none), without checks.
pub(crate) fn current_handle() -> u64 {
    CURRENT.with(Cell::get)
}

/// Replaces the calling thread's current context (the context stack's top).
pub(crate) fn set_current_handle(h: u64) {
    CURRENT.with(|c| c.set(h));
}

pub(crate) unsafe extern "C" fn cu_ctx_get_current(pctx: *mut CUcontext) -> CUresult {
    guard(|| {
        inventory()?;
        out(pctx, CURRENT.with(Cell::get) as CUcontext)
    })
}

pub(crate) unsafe extern "C" fn cu_ctx_set_current(ctx: CUcontext) -> CUresult {
    guard(|| {
        inventory()?;
        let h = ctx as u64;
        if h != 0 && known_ctx(h).is_none() {
            return Err(cu::INVALID_CONTEXT);
        }
        CURRENT.with(|c| c.set(h));
        Ok(())
    })
}

pub(crate) unsafe extern "C" fn cu_ctx_get_device(dev: *mut CUdevice) -> CUresult {
    guard(|| {
        let h = current_ctx()?;
        out(dev, known_ctx(h).ok_or(cu::INVALID_CONTEXT)?)
    })
}

pub(crate) unsafe extern "C" fn cu_ctx_synchronize() -> CUresult {
    guard(|| {
        let ctx = current_ctx()?;
        session()?.call::<()>(&Request::CtxSynchronize { ctx })
    })
}

pub(crate) unsafe extern "C" fn cu_mem_alloc(dptr: *mut CUdeviceptr, size: usize) -> CUresult {
    guard(|| {
        if dptr.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let ctx = current_ctx()?;
        let p = session()?.call::<u64>(&Request::MemAlloc {
            ctx,
            size: size as u64,
        })?;
        // Tracked so pointer queries are answered locally.
        crate::runtime::host_memory::device_allocated(ctx, p, size as u64);
        out(dptr, p)
    })
}

pub(crate) unsafe extern "C" fn cu_mem_free(dptr: CUdeviceptr) -> CUresult {
    guard(|| {
        let ctx = current_ctx()?;
        if dptr == 0 {
            return Ok(());
        }
        session()?.call::<()>(&Request::MemFree { ctx, ptr: dptr })?;
        crate::runtime::host_memory::device_freed(dptr);
        Ok(())
    })
}

pub(crate) unsafe extern "C" fn cu_mem_get_info(free: *mut usize, total: *mut usize) -> CUresult {
    guard(|| {
        if free.is_null() || total.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let ctx = current_ctx()?;
        let (f, t) = session()?.call::<(u64, u64)>(&Request::MemGetInfo { ctx })?;
        out(free, f as usize)?;
        out(total, t as usize)
    })
}

/// Borrows the application's host buffer for the duration of a call.
pub(crate) fn host<'a>(p: *const c_void, n: usize) -> Result<&'a [u8], CUresult> {
    if n == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: the CUDA contract: `p` points to `n` readable bytes for the call.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) })
}

pub(crate) fn host_mut<'a>(p: *mut c_void, n: usize) -> Result<&'a mut [u8], CUresult> {
    if n == 0 {
        return Ok(&mut []);
    }
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: the CUDA contract: `p` points to `n` writable bytes for the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) })
}

fn htod(
    dst: CUdeviceptr,
    src: *const c_void,
    n: usize,
    stream: Option<CUstream>,
) -> Result<(), CUresult> {
    let ctx = current_ctx()?;
    let stream = stream.map(stream_arg).transpose()?;
    if crate::uva_host::is_host_span(dst, n as u64) {
        // The "device" side is pinned memory of this process.
        return crate::uva_host::copy(dst, src as u64, n, stream);
    }
    if let Some(s) = stream {
        // Captured, the copy reads the pinned range's mirror at each replay.
        if crate::graph::capture_host_copy(s, dst, src as u64, n as u64, false)? {
            return Ok(());
        }
    }
    session()?.copy_to_device(ctx, stream, dst, host(src, n)?)
}

fn dtoh(
    dst: *mut c_void,
    src: CUdeviceptr,
    n: usize,
    stream: Option<CUstream>,
) -> Result<(), CUresult> {
    let ctx = current_ctx()?;
    let stream = stream.map(stream_arg).transpose()?;
    if crate::uva_host::is_host_span(src, n as u64) {
        return crate::uva_host::copy(dst as u64, src, n, stream);
    }
    if let Some(s) = stream {
        if crate::graph::capture_host_copy(s, dst as u64, src, n as u64, true)? {
            return Ok(());
        }
    }
    session()?.copy_from_device(ctx, stream, src, host_mut(dst, n)?)
}

fn dtod(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    n: usize,
    stream: Option<CUstream>,
) -> Result<(), CUresult> {
    let (dst_host, src_host) = (
        crate::uva_host::is_host_span(dst, n as u64),
        crate::uva_host::is_host_span(src, n as u64),
    );
    match (dst_host, src_host) {
        (true, true) => {
            let s = stream.map(stream_arg).transpose()?;
            return crate::uva_host::copy(dst, src, n, s);
        }
        (false, true) => return htod(dst, src as *const c_void, n, stream),
        (true, false) => return dtoh(dst as *mut c_void, src, n, stream),
        (false, false) => {}
    }
    let ctx = current_ctx()?;
    let s = stream.map(stream_arg).transpose()?;
    let req = Request::MemcpyDtoD {
        ctx,
        stream: s,
        dst,
        src,
        size: n as u64,
    };
    match s {
        Some(_) => session()?.enqueue(&req),
        None => session()?.call::<()>(&req),
    }
}

pub(crate) unsafe extern "C" fn cu_memcpy_htod(
    dst: CUdeviceptr,
    src: *const c_void,
    n: usize,
) -> CUresult {
    guard(|| htod(dst, src, n, None))
}
pub(crate) unsafe extern "C" fn cu_memcpy_htod_async(
    dst: CUdeviceptr,
    src: *const c_void,
    n: usize,
    s: CUstream,
) -> CUresult {
    guard(|| htod(dst, src, n, Some(s)))
}
pub(crate) unsafe extern "C" fn cu_memcpy_dtoh(
    dst: *mut c_void,
    src: CUdeviceptr,
    n: usize,
) -> CUresult {
    guard(|| dtoh(dst, src, n, None))
}
/// Device-to-host data must be in place before the application can observe
/// completion, so the async form waits for its data too.
pub(crate) unsafe extern "C" fn cu_memcpy_dtoh_async(
    dst: *mut c_void,
    src: CUdeviceptr,
    n: usize,
    s: CUstream,
) -> CUresult {
    guard(|| dtoh(dst, src, n, Some(s)))
}
pub(crate) unsafe extern "C" fn cu_memcpy_dtod(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    n: usize,
) -> CUresult {
    guard(|| dtod(dst, src, n, None))
}
pub(crate) unsafe extern "C" fn cu_memcpy_dtod_async(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    n: usize,
    s: CUstream,
) -> CUresult {
    guard(|| dtod(dst, src, n, Some(s)))
}

/// A synchronous 1D memset of host memory, as the async form describes it.
fn host_memset(dst: u64, value: u32, count: usize, elem: u8) -> tf_protocol::exec_msgs::Memset {
    use tf_protocol::exec_msgs::MemsetOp;
    tf_protocol::exec_msgs::Memset {
        ctx: 0,
        stream: 0,
        dst,
        pitch: 0,
        value,
        width: count as u64,
        op: if elem == 1 {
            MemsetOp::D8
        } else {
            MemsetOp::D32
        },
    }
}

pub(crate) unsafe extern "C" fn cu_memset_d8(
    dst: CUdeviceptr,
    value: u8,
    count: usize,
) -> CUresult {
    guard(|| {
        if crate::uva_host::is_host_span(dst, count as u64) {
            return crate::uva_host::memset(&host_memset(dst, u32::from(value), count, 1), None);
        }
        let ctx = current_ctx()?;
        session()?.call::<()>(&Request::MemsetD8 {
            ctx,
            dst,
            value,
            count: count as u64,
        })
    })
}

pub(crate) unsafe extern "C" fn cu_memset_d32(
    dst: CUdeviceptr,
    value: c_uint,
    count: usize,
) -> CUresult {
    guard(|| {
        if crate::uva_host::is_host_span(dst, (count as u64).saturating_mul(4)) {
            return crate::uva_host::memset(&host_memset(dst, value, count, 4), None);
        }
        let ctx = current_ctx()?;
        session()?.call::<()>(&Request::MemsetD32 {
            ctx,
            dst,
            value,
            count: count as u64,
        })
    })
}

pub(crate) unsafe extern "C" fn cu_get_error_string(
    code: CUresult,
    s: *mut *const c_char,
) -> CUresult {
    guard(|| {
        let (_, text) = cuda_error(code).ok_or(cu::INVALID_VALUE)?;
        out(s, text.as_ptr().cast())
    })
}

pub(crate) unsafe extern "C" fn cu_get_error_name(
    code: CUresult,
    s: *mut *const c_char,
) -> CUresult {
    guard(|| {
        let (name, _) = cuda_error(code).ok_or(cu::INVALID_VALUE)?;
        out(s, name.as_ptr().cast())
    })
}

/// Sends Goodbye at process exit so the worker frees the session at once.
pub(crate) extern "C" fn at_exit() {
    crate::stats::report();
    if let Some(c) = existing() {
        c.goodbye();
    }
}

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
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
}
