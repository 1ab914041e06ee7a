//! The CUDA driver API, resolved from the vendor's `libcuda.so.1` by ABI
//! name, with safe wrappers that turn every `CUresult` into a [`BResult`].
//!
//! Signatures are declared by hand (no CUDA headers at build time); they are
//! the ABI of the versioned symbols named, which NVIDIA never changes.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use tf_protocol::status::cu;
use tf_protocol::DeviceInfo;
use tf_worker_core::{BResult, BackendCtx};

use crate::loader::{resolve, Loaded};

type CuResult = u32;
type CuDevice = c_int;
type CuContext = *mut c_void;
type CuDevicePtr = u64;

/// `CUuuid`: 16 raw bytes.
#[repr(C)]
struct CuUuid {
    bytes: [u8; 16],
}

/// `CUDA_ERROR_CONTEXT_IS_DESTROYED`.
const CONTEXT_IS_DESTROYED: u32 = 709;

/// Attribute numbers queried at init: every `CUdevice_attribute` from 1 up
/// to this (CUDA 13 defines fewer than 200).
pub const MAX_ATTRIBUTE: i32 = 200;

/// Attributes reported as 0 whatever the GPU says. The client does not
/// emulate mapped host memory or managed (unified) memory yet: a library
/// that sees them supported takes code paths (`cuMemHostAlloc` with
/// `DEVICEMAP`, `cuMemAllocManaged`, host pointers in kernels) that cannot
/// work across the remoting boundary, while with 0 it takes its ordinary
/// explicit-copy paths.
pub const FORCED_ZERO: &[(i32, &str)] = &[
    (19, "CAN_MAP_HOST_MEMORY"),
    (83, "MANAGED_MEMORY"),
    (88, "PAGEABLE_MEMORY_ACCESS"),
    (89, "CONCURRENT_MANAGED_ACCESS"),
    (91, "CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM"),
    (99, "HOST_REGISTER_SUPPORTED"),
    (100, "PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES"),
    (101, "DIRECT_MANAGED_MEM_ACCESS_FROM_HOST"),
];

type FnInit = unsafe extern "C" fn(c_uint) -> CuResult;
type FnDriverGetVersion = unsafe extern "C" fn(*mut c_int) -> CuResult;
type FnDeviceGetCount = unsafe extern "C" fn(*mut c_int) -> CuResult;
type FnDeviceGet = unsafe extern "C" fn(*mut CuDevice, c_int) -> CuResult;
type FnDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, CuDevice) -> CuResult;
type FnDeviceGetUuid = unsafe extern "C" fn(*mut CuUuid, CuDevice) -> CuResult;
type FnDeviceTotalMem = unsafe extern "C" fn(*mut usize, CuDevice) -> CuResult;
type FnDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, CuDevice) -> CuResult;
type FnDeviceGetPciBusId = unsafe extern "C" fn(*mut c_char, c_int, CuDevice) -> CuResult;
type FnPrimaryCtxRetain = unsafe extern "C" fn(*mut CuContext, CuDevice) -> CuResult;
type FnPrimaryCtxRelease = unsafe extern "C" fn(CuDevice) -> CuResult;
type FnPrimaryCtxGetState = unsafe extern "C" fn(CuDevice, *mut c_uint, *mut c_int) -> CuResult;
type FnCtxSetCurrent = unsafe extern "C" fn(CuContext) -> CuResult;
type FnCtxSynchronize = unsafe extern "C" fn() -> CuResult;
type FnMemAlloc = unsafe extern "C" fn(*mut CuDevicePtr, usize) -> CuResult;
type FnMemFree = unsafe extern "C" fn(CuDevicePtr) -> CuResult;
type FnMemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> CuResult;
type FnMemcpyHtoD = unsafe extern "C" fn(CuDevicePtr, *const c_void, usize) -> CuResult;
type FnMemcpyDtoH = unsafe extern "C" fn(*mut c_void, CuDevicePtr, usize) -> CuResult;
type FnMemcpyDtoD = unsafe extern "C" fn(CuDevicePtr, CuDevicePtr, usize) -> CuResult;
type FnMemsetD8 = unsafe extern "C" fn(CuDevicePtr, u8, usize) -> CuResult;
type FnMemsetD32 = unsafe extern "C" fn(CuDevicePtr, c_uint, usize) -> CuResult;

/// Every entry point used. A symbol this driver lacks is `None`, and only
/// the calls that need it fail (with `CUDA_ERROR_NOT_SUPPORTED`).
struct Fns {
    init: Option<FnInit>,
    driver_get_version: Option<FnDriverGetVersion>,
    device_get_count: Option<FnDeviceGetCount>,
    device_get: Option<FnDeviceGet>,
    device_get_name: Option<FnDeviceGetName>,
    device_get_uuid: Option<FnDeviceGetUuid>,
    device_total_mem: Option<FnDeviceTotalMem>,
    device_get_attribute: Option<FnDeviceGetAttribute>,
    device_get_pci_bus_id: Option<FnDeviceGetPciBusId>,
    primary_ctx_retain: Option<FnPrimaryCtxRetain>,
    primary_ctx_release: Option<FnPrimaryCtxRelease>,
    primary_ctx_get_state: Option<FnPrimaryCtxGetState>,
    ctx_set_current: Option<FnCtxSetCurrent>,
    ctx_synchronize: Option<FnCtxSynchronize>,
    mem_alloc: Option<FnMemAlloc>,
    mem_free: Option<FnMemFree>,
    mem_get_info: Option<FnMemGetInfo>,
    memcpy_htod: Option<FnMemcpyHtoD>,
    memcpy_dtoh: Option<FnMemcpyDtoH>,
    memcpy_dtod: Option<FnMemcpyDtoD>,
    memset_d8: Option<FnMemsetD8>,
    memset_d32: Option<FnMemsetD32>,
}

/// The context current on this thread as far as this module set it:
/// `(driver instance, release epoch, context)`. CUDA's current context is
/// per thread and sessions run on their own threads, so each thread keeps
/// its own record and skips `cuCtxSetCurrent` when it would change nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Current {
    api: u64,
    epoch: u64,
    ctx: u64,
}

thread_local! {
    static CURRENT: Cell<Current> = const { Cell::new(Current { api: 0, epoch: 0, ctx: 0 }) };
}

/// Bumped by every primary-context release: a release may destroy a context
/// that other threads still have current, so they must set it again.
static RELEASE_EPOCH: AtomicU64 = AtomicU64::new(0);
/// Distinguishes driver instances in [`CURRENT`] (tests open several).
static NEXT_API_ID: AtomicU64 = AtomicU64::new(1);

fn check(r: CuResult) -> BResult<()> {
    if r == cu::SUCCESS {
        Ok(())
    } else {
        Err(r)
    }
}

fn need<T>(f: Option<T>) -> BResult<T> {
    f.ok_or(cu::NOT_SUPPORTED)
}

/// Text from a NUL-terminated buffer the driver filled (lossy, bounded by
/// the buffer even if the driver forgot the terminator).
pub(crate) fn c_text(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Keeps the attributes whose query succeeds, then forces [`FORCED_ZERO`].
/// `CUDA_ERROR_INVALID_VALUE` means this driver does not know the number;
/// any other error is skipped too (and logged) rather than failing init.
pub fn collect_attributes(query: impl Fn(i32) -> BResult<i32>) -> Vec<(i32, i32)> {
    let mut attrs: Vec<(i32, i32)> = (1..=MAX_ATTRIBUTE)
        .filter_map(|a| match query(a) {
            Ok(v) => Some((a, v)),
            Err(cu::INVALID_VALUE) => None,
            Err(e) => {
                tracing::debug!(
                    attribute = a,
                    status = e,
                    "device attribute query failed; not reported"
                );
                None
            }
        })
        .collect();
    for (forced, _) in FORCED_ZERO {
        match attrs.iter_mut().find(|(a, _)| a == forced) {
            Some(entry) => entry.1 = 0,
            None => attrs.push((*forced, 0)),
        }
    }
    attrs.sort_unstable();
    attrs
}

/// The CUDA driver of this host.
pub struct Cuda {
    pub path: PathBuf,
    id: u64,
    /// `cuInit(0)`'s result: it is called once per process.
    init_status: OnceLock<CuResult>,
    f: Fns,
}

impl Cuda {
    pub fn new(loaded: &Loaded) -> Self {
        let lib = loaded.lib;
        // SAFETY: for every `resolve` below, the type alias above is the C
        // signature of the versioned ABI symbols it is resolved for.
        let f = unsafe {
            Fns {
                init: resolve(lib, &["cuInit"]),
                driver_get_version: resolve(lib, &["cuDriverGetVersion"]),
                device_get_count: resolve(lib, &["cuDeviceGetCount"]),
                device_get: resolve(lib, &["cuDeviceGet"]),
                device_get_name: resolve(lib, &["cuDeviceGetName"]),
                // Both versions take the same arguments; _v2 also answers
                // for MIG instances, the old one is for drivers before 11.4.
                device_get_uuid: resolve(lib, &["cuDeviceGetUuid_v2", "cuDeviceGetUuid"]),
                device_total_mem: resolve(lib, &["cuDeviceTotalMem_v2"]),
                device_get_attribute: resolve(lib, &["cuDeviceGetAttribute"]),
                device_get_pci_bus_id: resolve(lib, &["cuDeviceGetPCIBusId"]),
                primary_ctx_retain: resolve(lib, &["cuDevicePrimaryCtxRetain"]),
                primary_ctx_release: resolve(lib, &["cuDevicePrimaryCtxRelease_v2"]),
                primary_ctx_get_state: resolve(lib, &["cuDevicePrimaryCtxGetState"]),
                ctx_set_current: resolve(lib, &["cuCtxSetCurrent"]),
                ctx_synchronize: resolve(lib, &["cuCtxSynchronize"]),
                mem_alloc: resolve(lib, &["cuMemAlloc_v2"]),
                mem_free: resolve(lib, &["cuMemFree_v2"]),
                mem_get_info: resolve(lib, &["cuMemGetInfo_v2"]),
                memcpy_htod: resolve(lib, &["cuMemcpyHtoD_v2"]),
                memcpy_dtoh: resolve(lib, &["cuMemcpyDtoH_v2"]),
                memcpy_dtod: resolve(lib, &["cuMemcpyDtoD_v2"]),
                memset_d8: resolve(lib, &["cuMemsetD8_v2"]),
                memset_d32: resolve(lib, &["cuMemsetD32_v2"]),
            }
        };
        let id = NEXT_API_ID.fetch_add(1, Ordering::Relaxed);
        Cuda {
            path: loaded.path.clone(),
            id,
            init_status: OnceLock::new(),
            f,
        }
    }

    /// Works before `cuInit`, as on the real driver.
    pub fn driver_version(&self) -> BResult<i32> {
        let f = need(self.f.driver_get_version)?;
        let mut v: c_int = 0;
        // SAFETY: `v` is a valid, writable int for the duration of the call.
        check(unsafe { f(&mut v) })?;
        Ok(v)
    }

    /// `cuInit(0)`, called once; later calls return the first result.
    pub fn init(&self) -> BResult<()> {
        let f = need(self.f.init)?;
        // SAFETY: cuInit takes only a flags word; 0 is the only valid value.
        check(*self.init_status.get_or_init(|| unsafe { f(0) }))
    }

    pub fn device_count(&self) -> BResult<i32> {
        let f = need(self.f.device_get_count)?;
        let mut n: c_int = 0;
        // SAFETY: `n` is a valid, writable int for the duration of the call.
        check(unsafe { f(&mut n) })?;
        Ok(n)
    }

    fn device(&self, ordinal: i32) -> BResult<CuDevice> {
        let f = need(self.f.device_get)?;
        let mut d: CuDevice = 0;
        // SAFETY: `d` is a valid, writable CUdevice; the driver checks the ordinal.
        check(unsafe { f(&mut d, ordinal) })?;
        Ok(d)
    }

    /// Static facts about device `ordinal` (after [`Cuda::init`]).
    pub fn device_info(&self, ordinal: i32) -> BResult<DeviceInfo> {
        let dev = self.device(ordinal)?;

        let get_name = need(self.f.device_get_name)?;
        let mut name: [c_char; 256] = [0; 256];
        // SAFETY: the buffer is writable for the length passed.
        check(unsafe { get_name(name.as_mut_ptr(), name.len() as c_int, dev) })?;

        let get_uuid = need(self.f.device_get_uuid)?;
        let mut uuid = CuUuid { bytes: [0; 16] };
        // SAFETY: `uuid` is a writable CUuuid (16 bytes, the C layout).
        check(unsafe { get_uuid(&mut uuid, dev) })?;

        let total_mem = need(self.f.device_total_mem)?;
        let mut total: usize = 0;
        // SAFETY: `total` is a valid, writable size_t.
        check(unsafe { total_mem(&mut total, dev) })?;

        let get_bus_id = need(self.f.device_get_pci_bus_id)?;
        // "dddd:bb:dd.f" needs 13 bytes; NVIDIA documents 13 as the minimum.
        let mut bus: [c_char; 64] = [0; 64];
        // SAFETY: the buffer is writable for the length passed.
        check(unsafe { get_bus_id(bus.as_mut_ptr(), bus.len() as c_int, dev) })?;

        let get_attr = need(self.f.device_get_attribute)?;
        let attributes = collect_attributes(|attr| {
            let mut v: c_int = 0;
            // SAFETY: `v` is a valid, writable int; the driver rejects an
            // attribute number it does not know with INVALID_VALUE.
            check(unsafe { get_attr(&mut v, attr, dev) })?;
            Ok(v)
        });

        Ok(DeviceInfo {
            name: c_text(&name),
            uuid: uuid.bytes,
            total_mem: total as u64,
            pci_bus_id: c_text(&bus),
            attributes,
        })
    }

    pub fn primary_ctx_retain(&self, ordinal: i32) -> BResult<BackendCtx> {
        let dev = self.device(ordinal)?;
        let f = need(self.f.primary_ctx_retain)?;
        let mut ctx: CuContext = std::ptr::null_mut();
        // SAFETY: `ctx` is a valid, writable CUcontext slot.
        check(unsafe { f(&mut ctx, dev) })?;
        Ok(ctx as u64)
    }

    pub fn primary_ctx_release(&self, ordinal: i32) -> BResult<()> {
        let dev = self.device(ordinal)?;
        let f = need(self.f.primary_ctx_release)?;
        // SAFETY: plain value arguments; the driver checks the device.
        let r = check(unsafe { f(dev) });
        // The context may be gone now, on this thread and on any other that
        // had it current: make every thread set its context again.
        RELEASE_EPOCH.fetch_add(1, Ordering::AcqRel);
        r
    }

    pub fn primary_ctx_state(&self, ordinal: i32) -> BResult<(u32, bool)> {
        let dev = self.device(ordinal)?;
        let f = need(self.f.primary_ctx_get_state)?;
        let (mut flags, mut active): (c_uint, c_int) = (0, 0);
        // SAFETY: both out-pointers are valid and writable for the call.
        check(unsafe { f(dev, &mut flags, &mut active) })?;
        Ok((flags, active != 0))
    }

    /// Makes `ctx` current on the calling thread, unless this thread's
    /// record says it already is.
    fn make_current(&self, ctx: BackendCtx) -> BResult<()> {
        if ctx == 0 {
            // cuCtxSetCurrent(NULL) would unbind instead of failing.
            return Err(cu::INVALID_CONTEXT);
        }
        let want = Current {
            api: self.id,
            epoch: RELEASE_EPOCH.load(Ordering::Acquire),
            ctx,
        };
        if CURRENT.get() == want {
            return Ok(());
        }
        let f = need(self.f.ctx_set_current)?;
        // SAFETY: `ctx` is a context this driver returned from
        // cuDevicePrimaryCtxRetain (the worker only passes back what the
        // backend gave it); the driver validates it.
        match check(unsafe { f(ctx as CuContext) }) {
            Ok(()) => {
                CURRENT.set(want);
                Ok(())
            }
            Err(e) => {
                forget_current();
                Err(e)
            }
        }
    }

    /// Runs `call` with `ctx` current on this thread.
    pub(crate) fn in_ctx<T>(
        &self,
        ctx: BackendCtx,
        call: impl FnOnce() -> BResult<T>,
    ) -> BResult<T> {
        self.make_current(ctx)?;
        let r = call();
        if let Err(cu::INVALID_CONTEXT | CONTEXT_IS_DESTROYED) = r {
            // Whatever is current is not usable: set it again next time.
            forget_current();
        }
        r
    }

    pub fn ctx_synchronize(&self, ctx: BackendCtx) -> BResult<()> {
        let f = need(self.f.ctx_synchronize)?;
        // SAFETY: no arguments; acts on the context made current just before.
        self.in_ctx(ctx, || check(unsafe { f() }))
    }

    pub fn mem_alloc(&self, ctx: BackendCtx, size: u64) -> BResult<u64> {
        let f = need(self.f.mem_alloc)?;
        let size = usize::try_from(size).map_err(|_| cu::OUT_OF_MEMORY)?;
        self.in_ctx(ctx, || {
            let mut p: CuDevicePtr = 0;
            // SAFETY: `p` is a valid, writable CUdeviceptr.
            check(unsafe { f(&mut p, size) })?;
            Ok(p)
        })
    }

    pub fn mem_free(&self, ctx: BackendCtx, ptr: u64) -> BResult<()> {
        let f = need(self.f.mem_free)?;
        // SAFETY: a device address by value; the driver rejects unknown ones.
        self.in_ctx(ctx, || check(unsafe { f(ptr) }))
    }

    pub fn mem_get_info(&self, ctx: BackendCtx) -> BResult<(u64, u64)> {
        let f = need(self.f.mem_get_info)?;
        self.in_ctx(ctx, || {
            let (mut free, mut total): (usize, usize) = (0, 0);
            // SAFETY: both out-pointers are valid and writable for the call.
            check(unsafe { f(&mut free, &mut total) })?;
            Ok((free as u64, total as u64))
        })
    }

    pub fn memcpy_htod(&self, ctx: BackendCtx, dst: u64, src: &[u8]) -> BResult<()> {
        let f = need(self.f.memcpy_htod)?;
        self.in_ctx(ctx, || {
            // SAFETY: `src` is readable for its whole length for the duration
            // of the call, and the synchronous copy has finished reading it
            // when cuMemcpyHtoD returns. The device range is checked by the
            // driver (and by the worker against the session's allocations).
            check(unsafe { f(dst, src.as_ptr().cast(), src.len()) })
        })
    }

    pub fn memcpy_dtoh(&self, ctx: BackendCtx, dst: &mut [u8], src: u64) -> BResult<()> {
        let f = need(self.f.memcpy_dtoh)?;
        self.in_ctx(ctx, || {
            // SAFETY: `dst` is writable for its whole length and exclusively
            // borrowed; the synchronous copy is complete when the call returns.
            check(unsafe { f(dst.as_mut_ptr().cast(), src, dst.len()) })
        })
    }

    pub fn memcpy_dtod(&self, ctx: BackendCtx, dst: u64, src: u64, size: u64) -> BResult<()> {
        let f = need(self.f.memcpy_dtod)?;
        let size = usize::try_from(size).map_err(|_| cu::INVALID_VALUE)?;
        // SAFETY: device addresses by value; the driver validates the ranges.
        self.in_ctx(ctx, || check(unsafe { f(dst, src, size) }))
    }

    pub fn memset_d8(&self, ctx: BackendCtx, dst: u64, value: u8, count: u64) -> BResult<()> {
        let f = need(self.f.memset_d8)?;
        let count = usize::try_from(count).map_err(|_| cu::INVALID_VALUE)?;
        // SAFETY: device address and values by value; the driver validates the range.
        self.in_ctx(ctx, || check(unsafe { f(dst, value, count) }))
    }

    pub fn memset_d32(&self, ctx: BackendCtx, dst: u64, value: u32, count: u64) -> BResult<()> {
        let f = need(self.f.memset_d32)?;
        let count = usize::try_from(count).map_err(|_| cu::INVALID_VALUE)?;
        // SAFETY: device address and values by value; the driver validates the range.
        self.in_ctx(ctx, || check(unsafe { f(dst, value, count) }))
    }
}

/// A context was destroyed: every thread must set its context again.
pub(crate) fn contexts_changed() {
    RELEASE_EPOCH.fetch_add(1, Ordering::AcqRel);
}

fn forget_current() {
    CURRENT.set(Current {
        api: 0,
        epoch: 0,
        ctx: 0,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_skip_unknown_and_force_zero() {
        let attrs = collect_attributes(|a| match a {
            1 => Ok(1024),
            19 | 83 | 89 => Ok(1),
            150 => Err(cu::NOT_SUPPORTED),
            _ => Err(cu::INVALID_VALUE),
        });
        let forced: Vec<(i32, i32)> = FORCED_ZERO.iter().map(|(a, _)| (*a, 0)).collect();
        let mut want = vec![(1, 1024)];
        want.extend(&forced);
        assert_eq!(attrs, want);
        // Absent on this driver: still reported, as 0.
        let attrs = collect_attributes(|a| {
            if a == 2 {
                Ok(7)
            } else {
                Err(cu::INVALID_VALUE)
            }
        });
        let mut want = vec![(2, 7)];
        want.extend(&forced);
        assert_eq!(attrs, want);
    }

    #[test]
    fn c_text_stops_at_nul_or_buffer_end() {
        let buf: Vec<c_char> = b"GPU\0junk".iter().map(|b| *b as c_char).collect();
        assert_eq!(c_text(&buf), "GPU");
        let buf: Vec<c_char> = b"noterm".iter().map(|b| *b as c_char).collect();
        assert_eq!(c_text(&buf), "noterm");
    }
}
