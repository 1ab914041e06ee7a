//! Pinned host memory and pointer attributes, answered in the client.
//!
//! Page-locked host memory exists to speed up DMA between host and GPU;
//! here the GPU is behind a connection, so `cuMemHostAlloc` memory is plain
//! (zeroed, page-aligned) memory of this process and `cuMemHostRegister`
//! only records the range. What matters is that the application's
//! bookkeeping works: the ranges are tracked, so `cuMemHostGetFlags`,
//! `cuMemFreeHost` and pointer queries answer as the driver would. The
//! device address of pinned memory is its host address (unified
//! addressing); kernels reach small pinned ranges through mirrors in the
//! session's process (`crate::mapped`). Devices still report
//! `CAN_MAP_HOST_MEMORY = 0`, so libraries prefer their other paths.
//!
//! Device allocations are tracked too (start, size, context), so
//! `cuPointerGetAttribute(s)` on device pointers needs no round trip.

use std::collections::BTreeMap;
use std::ffi::{c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tf_protocol::status::cu;

use crate::cuda::{current_ctx, guard, inventory, known_ctx, out};

/// `CU_MEMHOSTALLOC_DEVICEMAP`.
const DEVICEMAP: u32 = 2;

const HOST_MEMORY_ALREADY_REGISTERED: u32 = 712;
const HOST_MEMORY_NOT_REGISTERED: u32 = 713;

/// `CU_MEMHOSTALLOC_*` (PORTABLE, DEVICEMAP, WRITECOMBINED).
const HOSTALLOC_FLAGS: u32 = 0x7;
/// `CU_MEMHOSTREGISTER_*` (PORTABLE, DEVICEMAP, IOMEMORY, READ_ONLY).
const HOSTREGISTER_FLAGS: u32 = 0xF;

/// `CUmemorytype`.
const MEMORYTYPE_HOST: u32 = 1;
const MEMORYTYPE_DEVICE: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `cuMemHostAlloc` / `cuMemAllocHost`: we own the mapping.
    HostAlloc,
    /// `cuMemHostRegister`: the application owns the memory.
    HostRegistered,
    Device,
}

#[derive(Clone, Copy, Debug)]
struct Range {
    size: u64,
    kind: Kind,
    /// Context handle it was allocated or registered in.
    ctx: u64,
    flags: u32,
    /// Process-unique, never reused (`CU_POINTER_ATTRIBUTE_BUFFER_ID`).
    id: u64,
}

static RANGES: Mutex<BTreeMap<u64, Range>> = Mutex::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// Tracked host ranges: while there are none, copies and memsets skip the
/// lookup that routes pinned memory to `crate::uva_host`.
static HOST: AtomicU64 = AtomicU64::new(0);
/// Tracked host ranges small enough to be mirrored for kernels
/// (`crate::mapped`): while there are none, launches skip the scan.
static SMALL_HOST: AtomicU64 = AtomicU64::new(0);
/// Bounds of every small host range there has been (never shrunk): launch
/// parameters outside them need no lookup (the launch path is hot).
static SMALL_LO: AtomicU64 = AtomicU64::new(u64::MAX);
static SMALL_HI: AtomicU64 = AtomicU64::new(0);

fn is_small_host(x: &Range) -> bool {
    x.kind != Kind::Device && x.size <= crate::mapped::MAX_ONE
}

fn ranges() -> std::sync::MutexGuard<'static, BTreeMap<u64, Range>> {
    RANGES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tracked range containing `p`.
fn find(p: u64) -> Option<(u64, Range)> {
    let r = ranges();
    let (start, range) = r.range(..=p).next_back()?;
    (p < start + range.size.max(1)).then_some((*start, *range))
}

fn insert(start: u64, size: u64, kind: Kind, ctx: u64, flags: u32) {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let range = Range {
        size,
        kind,
        ctx,
        flags,
        id,
    };
    if kind != Kind::Device {
        HOST.fetch_add(1, Ordering::Relaxed);
    }
    if is_small_host(&range) {
        SMALL_LO.fetch_min(start, Ordering::Relaxed);
        SMALL_HI.fetch_max(start.saturating_add(size), Ordering::Relaxed);
        SMALL_HOST.fetch_add(1, Ordering::Relaxed);
    }
    ranges().insert(start, range);
}

/// A host range left the table (freed or unregistered).
fn host_range_gone(start: u64, x: &Range) {
    HOST.fetch_sub(1, Ordering::Relaxed);
    if is_small_host(x) {
        SMALL_HOST.fetch_sub(1, Ordering::Relaxed);
    }
    // Small ranges may be mirrored for kernels, any for graph copies.
    crate::mapped::forget(start);
}

/// Whether any small host range exists (see `crate::mapped`).
pub(crate) fn has_small_host_ranges() -> bool {
    SMALL_HOST.load(Ordering::Relaxed) > 0
}

/// The page-aligned host range of at most `max` bytes containing `p`, as
/// `(start, size)`: one that can be mirrored at its address.
pub(crate) fn small_host_range(p: u64, max: u64) -> Option<(u64, u64)> {
    if p < SMALL_LO.load(Ordering::Relaxed) || p >= SMALL_HI.load(Ordering::Relaxed) {
        return None;
    }
    let (start, x) = find(p)?;
    (x.kind != Kind::Device && x.size <= max && x.size > 0 && start.is_multiple_of(4096))
        .then_some((start, x.size))
}

/// The page-aligned pinned or registered range holding all of
/// `[p, p + len)`, as `(start, size)`: one that can be mirrored.
pub(crate) fn host_range_of(p: u64, len: u64) -> Option<(u64, u64)> {
    let end = p.checked_add(len)?;
    let (start, x) = find(p)?;
    (x.kind != Kind::Device && end <= start + x.size && start.is_multiple_of(4096))
        .then_some((start, x.size))
}

/// Called by `cuMemAlloc` after the worker allocated.
pub(crate) fn device_allocated(ctx: u64, ptr: u64, size: u64) {
    insert(ptr, size, Kind::Device, ctx, 0);
}

/// Called by `cuMemFree` after the worker freed.
pub(crate) fn device_freed(ptr: u64) {
    let mut r = ranges();
    if r.get(&ptr).is_some_and(|x| x.kind == Kind::Device) {
        r.remove(&ptr);
    }
}

/// Called when VMM mappings in `[start, start + size)` are unmapped.
pub(crate) fn device_range_freed(start: u64, size: u64) {
    let end = start.saturating_add(size);
    ranges().retain(|s, x| !(x.kind == Kind::Device && *s >= start && *s < end));
}

/// Whether `p` lies in device memory this client knows (allocations, pool
/// allocations, VMM mappings, module globals).
pub(crate) fn is_device(p: u64) -> bool {
    find(p).is_some_and(|(_, x)| x.kind == Kind::Device)
}

/// Whether `p` lies in host memory this client tracks (pinned or registered).
pub(crate) fn is_host(p: u64) -> bool {
    find(p).is_some_and(|(_, x)| x.kind != Kind::Device)
}

/// Whether `[p, p + len)` lies inside one pinned or registered host range
/// this client tracks.
pub(crate) fn host_span(p: u64, len: u64) -> bool {
    if HOST.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let Some(end) = p.checked_add(len) else {
        return false;
    };
    find(p).is_some_and(|(start, x)| x.kind != Kind::Device && end <= start + x.size)
}

/// The device memory of a context that went away went with it.
pub(crate) fn context_gone(ctx: u64) {
    ranges().retain(|_, x| !(x.kind == Kind::Device && x.ctx == ctx));
}

fn page() -> usize {
    // SAFETY: sysconf has no preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).unwrap_or(4096).max(4096)
}

fn host_alloc(pp: *mut *mut c_void, size: usize, flags: u32) -> Result<(), u32> {
    if pp.is_null() || size == 0 || flags & !HOSTALLOC_FLAGS != 0 {
        return Err(cu::INVALID_VALUE);
    }
    let ctx = current_ctx()?;
    let len = size.div_ceil(page()) * page();
    // SAFETY: an anonymous private mapping; no address hint.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(cu::OUT_OF_MEMORY);
    }
    insert(p as u64, size as u64, Kind::HostAlloc, ctx, flags);
    if super::may_log() {
        tracing::trace!(ptr = ?p, size, flags, "pinned host allocation");
    }
    out(pp, p)
}

/// `cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)`.
unsafe extern "C" fn cu_mem_host_alloc(pp: *mut *mut c_void, size: usize, flags: c_uint) -> u32 {
    guard(|| host_alloc(pp, size, flags))
}

/// `cuMemAllocHost_v2(void **pp, size_t bytesize)`.
unsafe extern "C" fn cu_mem_alloc_host(pp: *mut *mut c_void, size: usize) -> u32 {
    guard(|| host_alloc(pp, size, 0))
}

/// `cuMemFreeHost(void *p)`.
unsafe extern "C" fn cu_mem_free_host(p: *mut c_void) -> u32 {
    guard(|| {
        inventory()?;
        let mut r = ranges();
        let range = match r.get(&(p as u64)) {
            Some(x) if x.kind == Kind::HostAlloc => *x,
            _ => return Err(cu::INVALID_VALUE),
        };
        r.remove(&(p as u64));
        drop(r);
        host_range_gone(p as u64, &range);
        let len = (range.size as usize).div_ceil(page()) * page();
        // SAFETY: exactly the mapping host_alloc created, unmapped once
        // (its range was removed above under the lock).
        unsafe { libc::munmap(p, len) };
        Ok(())
    })
}

/// `cuMemHostRegister_v2(void *p, size_t bytesize, unsigned int Flags)`.
unsafe extern "C" fn cu_mem_host_register(p: *mut c_void, size: usize, flags: c_uint) -> u32 {
    guard(|| {
        if p.is_null() || size == 0 || flags & !HOSTREGISTER_FLAGS != 0 {
            return Err(cu::INVALID_VALUE);
        }
        let ctx = current_ctx()?;
        let (start, end) = (p as u64, p as u64 + size as u64);
        let r = ranges();
        let overlaps = r
            .range(..end)
            .any(|(s, x)| s + x.size > start && x.kind != Kind::Device);
        drop(r);
        if overlaps {
            return Err(HOST_MEMORY_ALREADY_REGISTERED);
        }
        insert(start, size as u64, Kind::HostRegistered, ctx, flags);
        Ok(())
    })
}

/// `cuMemHostUnregister(void *p)`.
unsafe extern "C" fn cu_mem_host_unregister(p: *mut c_void) -> u32 {
    guard(|| {
        inventory()?;
        let mut r = ranges();
        match r.get(&(p as u64)).copied() {
            Some(x) if x.kind == Kind::HostRegistered => {
                r.remove(&(p as u64));
                drop(r);
                host_range_gone(p as u64, &x);
                Ok(())
            }
            _ => Err(HOST_MEMORY_NOT_REGISTERED),
        }
    })
}

/// `cuMemHostGetDevicePointer_v2(CUdeviceptr *pdptr, void *p, unsigned int Flags)`.
unsafe extern "C" fn cu_mem_host_get_device_pointer(
    pdptr: *mut u64,
    p: *mut c_void,
    flags: c_uint,
) -> u32 {
    guard(|| {
        inventory()?;
        if pdptr.is_null() || flags != 0 {
            return Err(cu::INVALID_VALUE);
        }
        match find(p as u64) {
            // With unified addressing the device address of pinned memory
            // is its host address, as the driver answers. Kernels given it
            // reach small ranges through a mirror on the worker
            // (`crate::mapped`); larger ones are not mapped for them.
            Some((_, x)) if x.kind != Kind::Device => out(pdptr, p as u64),
            _ => Err(cu::INVALID_VALUE),
        }
    })
}

/// `cuMemHostGetFlags(unsigned int *pFlags, void *p)`.
unsafe extern "C" fn cu_mem_host_get_flags(pflags: *mut c_uint, p: *mut c_void) -> u32 {
    guard(|| {
        inventory()?;
        match find(p as u64) {
            // The real driver reports every page-locked range as mapped
            // (CU_MEMHOSTALLOC_DEVICEMAP) under unified addressing, whatever
            // the application asked for; answer the same.
            Some((_, x)) if x.kind != Kind::Device => out(pflags, x.flags | DEVICEMAP),
            _ => Err(cu::INVALID_VALUE),
        }
    })
}

/// One attribute's value, as the bytes the driver writes. Booleans are
/// written as 32-bit integers, which is what applications pass.
enum Value {
    U32(u32),
    I32(i32),
    U64(u64),
}

/// `CUpointer_attribute` of a tracked range, `None` when the attribute has
/// no value for it (or is not supported here).
fn attribute(attr: u32, p: u64, start: u64, x: &Range) -> Option<Value> {
    let host = x.kind != Kind::Device;
    let ordinal = known_ctx(x.ctx).unwrap_or(-1);
    Some(match attr {
        1 => Value::U64(x.ctx),
        2 => Value::U32(if host {
            MEMORYTYPE_HOST
        } else {
            MEMORYTYPE_DEVICE
        }),
        // Device memory is reached at its own address; host memory is not
        // mapped into the device.
        3 if !host => Value::U64(p),
        4 if host => Value::U64(p),
        // SYNC_MEMOPS, IS_MANAGED.
        6 | 8 => Value::U32(0),
        // IS_LEGACY_CUDA_IPC_CAPABLE, IS_GPU_DIRECT_RDMA_CAPABLE: what driver
        // 580 answers for cuMemAlloc memory (the worker's allocations are
        // exactly that); host memory is neither.
        10 | 15 => Value::U32(u32::from(!host)),
        7 | 20 => Value::U64(x.id),
        9 => Value::I32(ordinal),
        11 | 19 => Value::U64(start),
        12 | 18 => Value::U64(x.size),
        13 => Value::U32(1),
        14 => Value::U64(0),
        // CU_POINTER_ATTRIBUTE_ACCESS_FLAG_READWRITE.
        16 => Value::U32(3),
        17 => Value::U64(0),
        _ => return None,
    })
}

/// Writes a value where the caller's attribute data lives.
fn put(data: *mut c_void, v: Value) -> Result<(), u32> {
    match v {
        Value::U32(v) => out(data.cast::<u32>(), v),
        Value::I32(v) => out(data.cast::<i32>(), v),
        Value::U64(v) => out(data.cast::<u64>(), v),
    }
}

/// `cuPointerGetAttribute(void *data, CUpointer_attribute attribute, CUdeviceptr ptr)`.
unsafe extern "C" fn cu_pointer_get_attribute(data: *mut c_void, attr: c_uint, ptr: u64) -> u32 {
    guard(|| {
        inventory()?;
        if data.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let (start, x) = find(ptr).ok_or(cu::INVALID_VALUE)?;
        put(
            data,
            attribute(attr, ptr, start, &x).ok_or(cu::INVALID_VALUE)?,
        )
    })
}

/// `cuPointerGetAttributes(unsigned int numAttributes, CUpointer_attribute
/// *attributes, void **data, CUdeviceptr ptr)`. Unlike the single query,
/// an unknown pointer is no error: every attribute gets its "null" value.
unsafe extern "C" fn cu_pointer_get_attributes(
    n: c_uint,
    attrs: *const c_uint,
    data: *mut *mut c_void,
    ptr: u64,
) -> u32 {
    guard(|| {
        inventory()?;
        if n == 0 || attrs.is_null() || data.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let found = find(ptr);
        for i in 0..n as usize {
            // SAFETY: the caller passes `n` attributes and `n` data pointers.
            let (attr, d) = unsafe { (*attrs.add(i), *data.add(i)) };
            if d.is_null() {
                continue;
            }
            let v = match &found {
                Some((start, x)) => attribute(attr, ptr, *start, x),
                None => None,
            };
            let v = v.unwrap_or(match attr {
                // An unregistered pointer has no device ordinal.
                9 => Value::I32(-2),
                2 | 6 | 8 | 10 | 13 | 15 | 16 => Value::U32(0),
                1 | 3 | 4 | 7 | 11 | 12 | 14 | 17 | 18 | 19 | 20 => Value::U64(0),
                _ => return Err(cu::INVALID_VALUE),
            });
            put(d, v)?;
        }
        Ok(())
    })
}

/// Points the export slots of the functions implemented here at them.
pub(super) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    set(c::cuMemHostAlloc, cu_mem_host_alloc as Entry);
    set(c::cuMemAllocHost_v2, cu_mem_alloc_host as Entry);
    set(c::cuMemFreeHost, cu_mem_free_host as Entry);
    set(c::cuMemHostRegister_v2, cu_mem_host_register as Entry);
    set(c::cuMemHostUnregister, cu_mem_host_unregister as Entry);
    set(
        c::cuMemHostGetDevicePointer_v2,
        cu_mem_host_get_device_pointer as Entry,
    );
    set(c::cuMemHostGetFlags, cu_mem_host_get_flags as Entry);
    set(c::cuPointerGetAttribute, cu_pointer_get_attribute as Entry);
    set(
        c::cuPointerGetAttributes,
        cu_pointer_get_attributes as Entry,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_find_inside_and_not_past_the_end() {
        device_allocated(0x77, 0x7000_0000_0000, 4096);
        let (s, x) = find(0x7000_0000_0fff).unwrap();
        assert_eq!((s, x.kind, x.ctx), (0x7000_0000_0000, Kind::Device, 0x77));
        assert!(find(0x7000_0000_1000).is_none());
        let v = attribute(2, 0x7000_0000_0010, s, &x).unwrap();
        assert!(matches!(v, Value::U32(MEMORYTYPE_DEVICE)));
        assert!(attribute(4, 0x7000_0000_0010, s, &x).is_none());
        assert!(matches!(attribute(12, 0, s, &x), Some(Value::U64(4096))));
        device_freed(0x7000_0000_0000);
        assert!(find(0x7000_0000_0000).is_none());
    }

    #[test]
    fn buffer_ids_are_unique() {
        device_allocated(1, 0x7100_0000_0000, 16);
        device_allocated(1, 0x7100_0000_1000, 16);
        let a = find(0x7100_0000_0000).unwrap().1.id;
        let b = find(0x7100_0000_1000).unwrap().1.id;
        assert_ne!(a, b);
        device_freed(0x7100_0000_0000);
        device_freed(0x7100_0000_1000);
    }
}
