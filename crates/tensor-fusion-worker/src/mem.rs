//! VMM, stream-ordered memory pools and stream memory operations on the
//! vendor driver: `MemBackend` for [`RealBackend`]. Entry points are
//! optional like the rest (`crate::loader::resolve`), so a driver without
//! one fails only that call with `CUDA_ERROR_NOT_SUPPORTED`.
//!
//! The worker core validates every address range, allocation handle and
//! pool before a call gets here; the handles passed in are the driver's own.

use std::ffi::{c_uint, c_void};

use tf_protocol::mem_msgs::{pool_attr_is_wide, Access, AllocProp, Location, PoolProps, ValueOp};
use tf_protocol::status::cu;
use tf_worker_core::mem::{Dst, Src};
use tf_worker_core::{BResult, BackendCtx, MemBackend};

use crate::exec::{check, need, CuResult, Ptr};
use crate::loader::{resolve, Loaded};
use crate::real_backend::RealBackend;

/// `CUmemLocation`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawLocation {
    kind: u32,
    id: i32,
}

/// `CUmemAllocationProp`.
#[repr(C)]
struct RawAllocProp {
    kind: u32,
    handle_types: u32,
    location: RawLocation,
    win32: *mut c_void,
    compression: u8,
    rdma: u8,
    usage: u16,
    reserved: [u8; 4],
}

/// `CUmemAccessDesc`.
#[repr(C)]
struct RawAccess {
    location: RawLocation,
    flags: u32,
}

/// `CUmemPoolProps`.
#[repr(C)]
struct RawPoolProps {
    kind: u32,
    handle_types: u32,
    location: RawLocation,
    win32: *mut c_void,
    max_size: usize,
    usage: u16,
    rdma: u8,
    reserved: [u8; 53],
}

/// `CUDA_MEMCPY2D` (memory types: 1 host, 2 device).
#[repr(C)]
struct RawCopy2D {
    src_x: usize,
    src_y: usize,
    src_type: u32,
    src_host: *const c_void,
    src_device: u64,
    src_array: *mut c_void,
    src_pitch: usize,
    dst_x: usize,
    dst_y: usize,
    dst_type: u32,
    dst_host: *mut c_void,
    dst_device: u64,
    dst_array: *mut c_void,
    dst_pitch: usize,
    width: usize,
    height: usize,
}

const _: () = assert!(std::mem::size_of::<RawCopy2D>() == 128);
const _: () = assert!(std::mem::size_of::<RawAllocProp>() == 32);
const _: () = assert!(std::mem::size_of::<RawAccess>() == 12);
const _: () = assert!(std::mem::size_of::<RawPoolProps>() == 88);

fn raw_loc(l: Location) -> RawLocation {
    RawLocation {
        kind: l.kind,
        id: l.id,
    }
}

fn raw_prop(p: &AllocProp) -> RawAllocProp {
    RawAllocProp {
        kind: p.kind,
        handle_types: p.handle_types,
        location: raw_loc(p.location),
        win32: std::ptr::null_mut(),
        compression: p.compression,
        rdma: p.rdma,
        usage: p.usage,
        reserved: [0; 4],
    }
}

fn raw_access(d: &[Access]) -> Vec<RawAccess> {
    d.iter()
        .map(|a| RawAccess {
            location: raw_loc(a.location),
            flags: a.flags,
        })
        .collect()
}

fn size(v: u64) -> BResult<usize> {
    usize::try_from(v).map_err(|_| cu::INVALID_VALUE)
}

type FnMemcpyAsync = unsafe extern "C" fn(u64, u64, usize, *mut c_void) -> CuResult;
type FnReserve = unsafe extern "C" fn(*mut u64, usize, usize, u64, u64) -> CuResult;
type FnRange = unsafe extern "C" fn(u64, usize) -> CuResult;
type FnCreate = unsafe extern "C" fn(*mut u64, usize, *const RawAllocProp, u64) -> CuResult;
type FnRelease = unsafe extern "C" fn(u64) -> CuResult;
type FnMap = unsafe extern "C" fn(u64, usize, usize, u64, u64) -> CuResult;
type FnSetAccess = unsafe extern "C" fn(u64, usize, *const RawAccess, usize) -> CuResult;
type FnGetAccess = unsafe extern "C" fn(*mut u64, *const RawLocation, u64) -> CuResult;
type FnGranularity = unsafe extern "C" fn(*mut usize, *const RawAllocProp, c_uint) -> CuResult;
type FnRetain = unsafe extern "C" fn(*mut u64, *mut c_void) -> CuResult;
type FnPoolCreate = unsafe extern "C" fn(*mut Ptr, *const RawPoolProps) -> CuResult;
type FnPool = unsafe extern "C" fn(Ptr) -> CuResult;
type FnPoolAttr = unsafe extern "C" fn(Ptr, c_uint, *mut c_void) -> CuResult;
type FnPoolTrim = unsafe extern "C" fn(Ptr, usize) -> CuResult;
type FnPoolSetAccess = unsafe extern "C" fn(Ptr, *const RawAccess, usize) -> CuResult;
type FnPoolGetAccess = unsafe extern "C" fn(*mut c_uint, Ptr, *const RawLocation) -> CuResult;
type FnAllocFromPool = unsafe extern "C" fn(*mut u64, usize, Ptr, Ptr) -> CuResult;
type FnFreeAsync = unsafe extern "C" fn(u64, Ptr) -> CuResult;
type FnFree = unsafe extern "C" fn(u64) -> CuResult;
type FnValue32 = unsafe extern "C" fn(Ptr, u64, u32, c_uint) -> CuResult;
type FnValue64 = unsafe extern "C" fn(Ptr, u64, u64, c_uint) -> CuResult;
type FnCopy2D = unsafe extern "C" fn(*const RawCopy2D) -> CuResult;
type FnCopy2DAsync = unsafe extern "C" fn(*const RawCopy2D, Ptr) -> CuResult;
type FnAllocPitch = unsafe extern "C" fn(*mut u64, *mut usize, usize, usize, c_uint) -> CuResult;
type FnSync = unsafe extern "C" fn(Ptr) -> CuResult;
type FnBatch = unsafe extern "C" fn(Ptr, c_uint, *mut c_void, c_uint) -> CuResult;
type FnHostRegister = unsafe extern "C" fn(*mut c_void, usize, c_uint) -> CuResult;
type FnHostUnregister = unsafe extern "C" fn(*mut c_void) -> CuResult;
type FnHostDevicePtr = unsafe extern "C" fn(*mut u64, *mut c_void, c_uint) -> CuResult;

/// The driver's entry points for this domain.
pub(crate) struct MemDriver {
    reserve: Option<FnReserve>,
    address_free: Option<FnRange>,
    create: Option<FnCreate>,
    release: Option<FnRelease>,
    map: Option<FnMap>,
    unmap: Option<FnRange>,
    set_access: Option<FnSetAccess>,
    get_access: Option<FnGetAccess>,
    granularity: Option<FnGranularity>,
    retain: Option<FnRetain>,
    pool_create: Option<FnPoolCreate>,
    pool_destroy: Option<FnPool>,
    pool_set_attr: Option<FnPoolAttr>,
    pool_get_attr: Option<FnPoolAttr>,
    pool_trim: Option<FnPoolTrim>,
    pool_set_access: Option<FnPoolSetAccess>,
    pool_get_access: Option<FnPoolGetAccess>,
    alloc_from_pool: Option<FnAllocFromPool>,
    free_async: Option<FnFreeAsync>,
    free: Option<FnFree>,
    wait32: Option<FnValue32>,
    wait64: Option<FnValue64>,
    write32: Option<FnValue32>,
    write64: Option<FnValue64>,
    batch: Option<FnBatch>,
    copy_2d: Option<FnCopy2D>,
    copy_2d_async: Option<FnCopy2DAsync>,
    alloc_pitch: Option<FnAllocPitch>,
    stream_sync: Option<FnSync>,
    host_register: Option<FnHostRegister>,
    memcpy_async: Option<FnMemcpyAsync>,
    host_unregister: Option<FnHostUnregister>,
    host_device_ptr: Option<FnHostDevicePtr>,
}

impl MemDriver {
    pub(crate) fn new(loaded: &Loaded) -> Self {
        let lib = loaded.lib;
        // SAFETY: for every `resolve` below, the type alias is the C
        // signature of the versioned ABI symbol it is resolved for
        // (`CUdeviceptr` and `CUmemGenericAllocationHandle` are 64-bit,
        // `size_t` is `usize`, handles are pointers).
        unsafe {
            MemDriver {
                reserve: resolve(lib, &["cuMemAddressReserve"]),
                address_free: resolve(lib, &["cuMemAddressFree"]),
                create: resolve(lib, &["cuMemCreate"]),
                release: resolve(lib, &["cuMemRelease"]),
                map: resolve(lib, &["cuMemMap"]),
                unmap: resolve(lib, &["cuMemUnmap"]),
                set_access: resolve(lib, &["cuMemSetAccess"]),
                get_access: resolve(lib, &["cuMemGetAccess"]),
                granularity: resolve(lib, &["cuMemGetAllocationGranularity"]),
                retain: resolve(lib, &["cuMemRetainAllocationHandle"]),
                pool_create: resolve(lib, &["cuMemPoolCreate"]),
                pool_destroy: resolve(lib, &["cuMemPoolDestroy"]),
                pool_set_attr: resolve(lib, &["cuMemPoolSetAttribute"]),
                pool_get_attr: resolve(lib, &["cuMemPoolGetAttribute"]),
                pool_trim: resolve(lib, &["cuMemPoolTrimTo"]),
                pool_set_access: resolve(lib, &["cuMemPoolSetAccess"]),
                pool_get_access: resolve(lib, &["cuMemPoolGetAccess"]),
                alloc_from_pool: resolve(lib, &["cuMemAllocFromPoolAsync"]),
                free_async: resolve(lib, &["cuMemFreeAsync"]),
                free: resolve(lib, &["cuMemFree_v2"]),
                wait32: resolve(lib, &["cuStreamWaitValue32_v2"]),
                wait64: resolve(lib, &["cuStreamWaitValue64_v2"]),
                write32: resolve(lib, &["cuStreamWriteValue32_v2"]),
                write64: resolve(lib, &["cuStreamWriteValue64_v2"]),
                batch: resolve(lib, &["cuStreamBatchMemOp_v2"]),
                copy_2d: resolve(lib, &["cuMemcpy2DUnaligned_v2"]),
                copy_2d_async: resolve(lib, &["cuMemcpy2DAsync_v2"]),
                alloc_pitch: resolve(lib, &["cuMemAllocPitch_v2"]),
                stream_sync: resolve(lib, &["cuStreamSynchronize"]),
                host_register: resolve(lib, &["cuMemHostRegister_v2", "cuMemHostRegister"]),
                memcpy_async: resolve(lib, &["cuMemcpyAsync"]),
                host_unregister: resolve(lib, &["cuMemHostUnregister"]),
                host_device_ptr: resolve(lib, &["cuMemHostGetDevicePointer_v2"]),
            }
        }
    }
}

impl RealBackend {
    fn md(&self) -> &MemDriver {
        &self.mem
    }
}

/// Host mirrors of this session process, by address (one session per
/// process: see `tf_worker_core::mem`'s `host_mirror`).
static MIRRORS: std::sync::Mutex<std::collections::BTreeMap<u64, tf_isolation::FixedMapping>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn mirrors(
) -> std::sync::MutexGuard<'static, std::collections::BTreeMap<u64, tf_isolation::FixedMapping>> {
    MIRRORS.lock().unwrap_or_else(|e| e.into_inner())
}

/// `CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP`.
const REGISTER_FLAGS: c_uint = 1 | 2;

/// The mirror holding `[addr, addr + n)` and the offset of `addr` in it.
fn in_mirror<T>(
    addr: u64,
    n: usize,
    f: impl FnOnce(&tf_isolation::FixedMapping, usize) -> std::io::Result<T>,
) -> BResult<T> {
    let m = mirrors();
    let (start, map) = m.range(..=addr).next_back().ok_or(cu::INVALID_VALUE)?;
    let off = usize::try_from(addr - start).map_err(|_| cu::INVALID_VALUE)?;
    if off.checked_add(n).is_none_or(|e| e > map.len()) {
        return Err(cu::INVALID_VALUE);
    }
    f(map, off).map_err(|_| cu::INVALID_VALUE)
}

impl MemBackend for RealBackend {
    fn host_mirror_create(
        &self,
        ctx: BackendCtx,
        addr: u64,
        size: u64,
        data: &[u8],
    ) -> BResult<()> {
        let (reg, unreg, dptr) = (
            need(self.md().host_register)?,
            need(self.md().host_unregister)?,
            need(self.md().host_device_ptr)?,
        );
        let size = usize::try_from(size).map_err(|_| cu::INVALID_VALUE)?;
        let map = tf_isolation::FixedMapping::new(addr, size).map_err(|e| {
            tracing::warn!(addr, len = size, "cannot mirror the client's host memory at its address in this session process: {e}; kernels cannot reach it");
            cu::NOT_SUPPORTED
        })?;
        map.write(0, data).map_err(|_| cu::INVALID_VALUE)?;
        let (p, len) = (addr as *mut c_void, map.len());
        self.capture_relaxed(|| self.cuda.in_ctx(ctx, || {
            // SAFETY: `p` is this process's mapping of `len` bytes, alive
            // until unregistered (the mirror outlives the registration).
            check(unsafe { reg(p, len, REGISTER_FLAGS) })?;
            let mut d = 0u64;
            // SAFETY: a writable output; `p` was just registered.
            let r = check(unsafe { dptr(&mut d, p, 0) });
            if r.is_err() || d != addr {
                // Kernels get the client's host address: only an identity
                // mapping makes that address valid on the device.
                // SAFETY: registered just above.
                unsafe { unreg(p) };
                tracing::warn!(addr, device = d, "this GPU does not map registered host memory at the same address; mapped host memory is not available");
                return Err(cu::NOT_SUPPORTED);
            }
            Ok(())
        }))?;
        mirrors().insert(addr, map);
        Ok(())
    }

    fn host_mirror_write(&self, addr: u64, data: &[u8]) -> BResult<()> {
        in_mirror(addr, data.len(), |m, off| m.write(off, data))
    }

    fn host_mirror_read(&self, addr: u64, out: &mut [u8]) -> BResult<()> {
        let n = out.len();
        in_mirror(addr, n, |m, off| m.read(off, out))
    }

    fn host_mirror_copy(
        &self,
        ctx: BackendCtx,
        stream: u64,
        dst: u64,
        src: u64,
        size: u64,
    ) -> BResult<()> {
        let f = need(self.md().memcpy_async)?;
        let n = usize::try_from(size).map_err(|_| cu::INVALID_VALUE)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: one side is a registered mirror of this process, the
            // other device memory of the session (both checked by the
            // core); unified addressing tells the driver which is which.
            check(unsafe { f(dst, src, n, stream as *mut c_void) })
        })
    }

    fn host_mirror_drop(&self, ctx: BackendCtx, addr: u64, _len: u64) -> BResult<()> {
        let unreg = need(self.md().host_unregister)?;
        let map = mirrors().remove(&addr).ok_or(cu::INVALID_VALUE)?;
        let r = self.capture_relaxed(|| {
            self.cuda.in_ctx(ctx, || {
                // SAFETY: registered by `host_mirror_create`; unmapped only after.
                check(unsafe { unreg(addr as *mut c_void) })
            })
        });
        drop(map);
        r
    }

    fn memcpy_2d(
        &self,
        ctx: BackendCtx,
        stream: Option<u64>,
        width: u64,
        rows: u64,
        src: Src<'_>,
        dst: Dst<'_>,
    ) -> BResult<()> {
        let d = self.md();
        let (w, h) = (size(width)?, size(rows)?);
        let mut raw = RawCopy2D {
            src_x: 0,
            src_y: 0,
            src_type: 1,
            src_host: std::ptr::null(),
            src_device: 0,
            src_array: std::ptr::null_mut(),
            src_pitch: w,
            dst_x: 0,
            dst_y: 0,
            dst_type: 1,
            dst_host: std::ptr::null_mut(),
            dst_device: 0,
            dst_array: std::ptr::null_mut(),
            dst_pitch: w,
            width: w,
            height: h,
        };
        let host_dst = matches!(dst, Dst::Host(_));
        match src {
            Src::Host(b) => raw.src_host = b.as_ptr().cast(),
            Src::Device(p) => {
                (raw.src_type, raw.src_device, raw.src_pitch) = (2, p.ptr, size(p.pitch)?);
            }
        }
        match dst {
            Dst::Host(b) => raw.dst_host = b.as_mut_ptr().cast(),
            Dst::Device(p) => {
                (raw.dst_type, raw.dst_device, raw.dst_pitch) = (2, p.ptr, size(p.pitch)?);
            }
        }
        self.cuda.in_ctx(ctx, || match stream {
            // SAFETY: `raw` describes host buffers of `width * rows` bytes
            // (the request's data or the reply buffer, alive across the
            // call) and device ranges the core checked.
            None => check(unsafe { need(d.copy_2d)?(&raw) }),
            Some(s) => {
                // SAFETY: as above; the stream is this session's.
                check(unsafe { need(d.copy_2d_async)?(&raw, s as Ptr) })?;
                if host_dst {
                    // The reply carries the data: wait for it.
                    // SAFETY: the same stream.
                    check(unsafe { need(d.stream_sync)?(s as Ptr) })?;
                }
                Ok(())
            }
        })
    }
    fn mem_alloc_pitch(
        &self,
        ctx: BackendCtx,
        width: u64,
        height: u64,
        elem: u32,
    ) -> BResult<(u64, u64)> {
        let f = need(self.md().alloc_pitch)?;
        let (w, h) = (size(width)?, size(height)?);
        self.cuda.in_ctx(ctx, || {
            let (mut p, mut pitch) = (0u64, 0usize);
            // SAFETY: both outputs are writable; the rest by value.
            check(unsafe { f(&mut p, &mut pitch, w, h, elem) })?;
            Ok((p, pitch as u64))
        })
    }
    fn address_reserve(
        &self,
        ctx: BackendCtx,
        sz: u64,
        alignment: u64,
        addr: u64,
        flags: u64,
    ) -> BResult<u64> {
        let f = need(self.md().reserve)?;
        let (sz, alignment) = (size(sz)?, size(alignment)?);
        self.cuda.in_ctx(ctx, || {
            let mut p = 0u64;
            // SAFETY: `p` is a writable CUdeviceptr; the rest by value.
            check(unsafe { f(&mut p, sz, alignment, addr, flags) })?;
            Ok(p)
        })
    }
    fn address_free(&self, ctx: BackendCtx, ptr: u64, sz: u64) -> BResult<()> {
        let f = need(self.md().address_free)?;
        let sz = size(sz)?;
        // SAFETY: a reservation of this session, validated by the core.
        self.cuda.in_ctx(ctx, || check(unsafe { f(ptr, sz) }))
    }
    fn mem_create(&self, ctx: BackendCtx, sz: u64, prop: &AllocProp, flags: u64) -> BResult<u64> {
        let f = need(self.md().create)?;
        let (sz, prop) = (size(sz)?, raw_prop(prop));
        self.cuda.in_ctx(ctx, || {
            let mut h = 0u64;
            // SAFETY: `h` is writable; `prop` is a complete CUmemAllocationProp.
            check(unsafe { f(&mut h, sz, &prop, flags) })?;
            Ok(h)
        })
    }
    fn mem_release(&self, ctx: BackendCtx, handle: u64) -> BResult<()> {
        let f = need(self.md().release)?;
        // SAFETY: an allocation handle this driver returned.
        self.cuda.in_ctx(ctx, || check(unsafe { f(handle) }))
    }
    fn mem_map(
        &self,
        ctx: BackendCtx,
        ptr: u64,
        sz: u64,
        offset: u64,
        handle: u64,
        flags: u64,
    ) -> BResult<()> {
        let f = need(self.md().map)?;
        let (sz, offset) = (size(sz)?, size(offset)?);
        self.cuda.in_ctx(ctx, || {
            // SAFETY: a free range of this session's reservation and its own handle.
            check(unsafe { f(ptr, sz, offset, handle, flags) })
        })
    }
    fn mem_unmap(&self, ctx: BackendCtx, ptr: u64, sz: u64) -> BResult<()> {
        let f = need(self.md().unmap)?;
        let sz = size(sz)?;
        // SAFETY: whole mappings of this session.
        self.cuda.in_ctx(ctx, || check(unsafe { f(ptr, sz) }))
    }
    fn mem_set_access(&self, ctx: BackendCtx, ptr: u64, sz: u64, descs: &[Access]) -> BResult<()> {
        let f = need(self.md().set_access)?;
        let (sz, d) = (size(sz)?, raw_access(descs));
        self.cuda.in_ctx(ctx, || {
            // SAFETY: `d` holds `d.len()` descriptors; the range is mapped by this session.
            check(unsafe { f(ptr, sz, d.as_ptr(), d.len()) })
        })
    }
    fn mem_get_access(&self, ctx: BackendCtx, location: Location, ptr: u64) -> BResult<u64> {
        let f = need(self.md().get_access)?;
        let l = raw_loc(location);
        self.cuda.in_ctx(ctx, || {
            let mut flags = 0u64;
            // SAFETY: `flags` is writable and `l` a complete CUmemLocation.
            check(unsafe { f(&mut flags, &l, ptr) })?;
            Ok(flags)
        })
    }
    fn granularity(&self, ctx: BackendCtx, prop: &AllocProp, option: u32) -> BResult<u64> {
        let f = need(self.md().granularity)?;
        let prop = raw_prop(prop);
        self.cuda.in_ctx(ctx, || {
            let mut g = 0usize;
            // SAFETY: `g` is writable; `prop` is a complete CUmemAllocationProp.
            check(unsafe { f(&mut g, &prop, option) })?;
            Ok(g as u64)
        })
    }
    fn retain_handle(&self, ctx: BackendCtx, ptr: u64) -> BResult<u64> {
        let f = need(self.md().retain)?;
        self.cuda.in_ctx(ctx, || {
            let mut h = 0u64;
            // SAFETY: `h` is writable; `ptr` lies in a mapping of this session.
            check(unsafe { f(&mut h, ptr as *mut c_void) })?;
            Ok(h)
        })
    }
    fn pool_create(&self, ctx: BackendCtx, props: &PoolProps) -> BResult<u64> {
        let f = need(self.md().pool_create)?;
        let raw = RawPoolProps {
            kind: props.kind,
            handle_types: props.handle_types,
            location: raw_loc(props.location),
            win32: std::ptr::null_mut(),
            max_size: size(props.max_size)?,
            usage: props.usage,
            rdma: props.rdma,
            reserved: [0; 53],
        };
        self.cuda.in_ctx(ctx, || {
            let mut p: Ptr = std::ptr::null_mut();
            // SAFETY: `p` is writable; `raw` is a complete CUmemPoolProps.
            check(unsafe { f(&mut p, &raw) })?;
            Ok(p as u64)
        })
    }
    fn pool_destroy(&self, ctx: BackendCtx, pool: u64) -> BResult<()> {
        let f = need(self.md().pool_destroy)?;
        // SAFETY: a pool this driver created for this session.
        self.cuda.in_ctx(ctx, || check(unsafe { f(pool as Ptr) }))
    }
    fn pool_set_attribute(&self, ctx: BackendCtx, pool: u64, attr: u32, value: u64) -> BResult<()> {
        let f = need(self.md().pool_set_attr)?;
        self.cuda.in_ctx(ctx, || {
            let mut wide = value;
            let mut narrow = value as u32;
            let p: *mut c_void = if pool_attr_is_wide(attr) {
                (&mut wide as *mut u64).cast()
            } else {
                (&mut narrow as *mut u32).cast()
            };
            // SAFETY: `p` points at a value of the attribute's own width.
            check(unsafe { f(pool as Ptr, attr, p) })
        })
    }
    fn pool_get_attribute(&self, ctx: BackendCtx, pool: u64, attr: u32) -> BResult<u64> {
        let f = need(self.md().pool_get_attr)?;
        self.cuda.in_ctx(ctx, || {
            // Eight zeroed bytes hold either width; a 32-bit answer is the low half.
            let mut v = 0u64;
            // SAFETY: `v` is writable and at least as wide as any attribute.
            check(unsafe { f(pool as Ptr, attr, (&mut v as *mut u64).cast()) })?;
            Ok(if pool_attr_is_wide(attr) {
                v
            } else {
                v & 0xFFFF_FFFF
            })
        })
    }
    fn pool_trim(&self, ctx: BackendCtx, pool: u64, keep: u64) -> BResult<()> {
        let f = need(self.md().pool_trim)?;
        let keep = size(keep)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: a pool of this session.
            check(unsafe { f(pool as Ptr, keep) })
        })
    }
    fn pool_set_access(&self, ctx: BackendCtx, pool: u64, descs: &[Access]) -> BResult<()> {
        let f = need(self.md().pool_set_access)?;
        let d = raw_access(descs);
        self.cuda.in_ctx(ctx, || {
            // SAFETY: `d` holds `d.len()` descriptors.
            check(unsafe { f(pool as Ptr, d.as_ptr(), d.len()) })
        })
    }
    fn pool_get_access(&self, ctx: BackendCtx, pool: u64, location: Location) -> BResult<u64> {
        let f = need(self.md().pool_get_access)?;
        let l = raw_loc(location);
        self.cuda.in_ctx(ctx, || {
            let mut flags: c_uint = 0;
            // SAFETY: `flags` is writable and `l` a complete CUmemLocation.
            check(unsafe { f(&mut flags, pool as Ptr, &l) })?;
            Ok(u64::from(flags))
        })
    }
    fn alloc_from_pool(&self, ctx: BackendCtx, sz: u64, pool: u64, stream: u64) -> BResult<u64> {
        let f = need(self.md().alloc_from_pool)?;
        let sz = size(sz).map_err(|_| cu::OUT_OF_MEMORY)?;
        self.cuda.in_ctx(ctx, || {
            let mut p = 0u64;
            // SAFETY: `p` is writable; the pool and stream are this session's.
            check(unsafe { f(&mut p, sz, pool as Ptr, stream as Ptr) })?;
            Ok(p)
        })
    }
    fn free_async(&self, ctx: BackendCtx, ptr: u64, stream: u64) -> BResult<()> {
        let f = need(self.md().free_async)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: a live pool allocation of this session.
            check(unsafe { f(ptr, stream as Ptr) })
        })
    }
    fn free_now(&self, ctx: BackendCtx, ptr: u64) -> BResult<()> {
        let f = need(self.md().free)?;
        // SAFETY: a live pool allocation of this session (cuMemFree takes them).
        self.cuda.in_ctx(ctx, || check(unsafe { f(ptr) }))
    }
    fn stream_value(&self, ctx: BackendCtx, stream: u64, op: &ValueOp) -> BResult<()> {
        let d = self.md();
        let s = stream as Ptr;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: the address lies in this session's memory (checked by
            // the core) and the stream is its own; the rest by value.
            check(unsafe {
                match (op.write, op.wide) {
                    (false, false) => need(d.wait32)?(s, op.addr, op.value as u32, op.flags),
                    (false, true) => need(d.wait64)?(s, op.addr, op.value, op.flags),
                    (true, false) => need(d.write32)?(s, op.addr, op.value as u32, op.flags),
                    (true, true) => need(d.write64)?(s, op.addr, op.value, op.flags),
                }
            })
        })
    }
    fn batch_mem_op(&self, ctx: BackendCtx, stream: u64, flags: u32, ops: &[u8]) -> BResult<()> {
        let f = need(self.md().batch)?;
        // Copied into 8-byte aligned storage: the records hold 64-bit fields.
        let mut words = vec![0u64; ops.len().div_ceil(8)];
        for (w, c) in words.iter_mut().zip(ops.chunks(8)) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            *w = u64::from_le_bytes(b);
        }
        let count = (ops.len() / tf_protocol::mem_msgs::BATCH_OP_SIZE) as c_uint;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: `words` holds `count` complete CUstreamBatchMemOpParams
            // whose addresses the core checked against this session's memory.
            check(unsafe { f(stream as Ptr, count, words.as_mut_ptr().cast(), flags) })
        })
    }
}
