//! Virtual memory management, stream-ordered memory pools, stream memory
//! operations, address-range queries and host functions (issue 3).
//!
//! VMM and pool calls are synchronous: the application must see an
//! out-of-memory or a bad range at the call, and they are rare (PyTorch's
//! expandable segments map one 2 MiB-granular chunk at a time). What never
//! changes is answered here: an allocation's properties (kept from
//! `cuMemCreate`) and the allocation granularity (asked once per
//! property set). `cuMemFreeAsync` and the stream memory operations are
//! enqueued, like every other stream-ordered call.
//!
//! Host functions (`cuLaunchHostFunc`, `cuStreamAddCallback`) run here, in
//! the client, after the stream's earlier work is complete: the stream is
//! synchronized and the function called before the call returns, so later
//! work on the stream is only issued after it ran. That keeps stream order
//! exactly; the cost is that the launching thread waits for the stream.
//! On a capturing stream a host function becomes a host node instead
//! (`crate::graph`).

use std::collections::HashMap;
use std::ffi::{c_uint, c_void};
use std::sync::{Mutex, MutexGuard};

use tf_protocol::exec_msgs::ExecRequest;
use tf_protocol::mem_msgs::{
    pool_attr_is_wide, Access, AllocProp, Location, MemRequest, PoolProps, ValueOp, BATCH_OP_SIZE,
    MAX_ACCESS_DESCS, MAX_BATCH_OPS,
};
use tf_protocol::status::cu;
use tf_protocol::Request;

use crate::cuda::{guard, out, session};
use crate::exec::{ctx_or_zero, wire_stream};

type CUresult = u32;
type Handle = *mut c_void;

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

/// `CUmemPoolProps` (its reserved tail is not read).
#[repr(C)]
struct RawPoolProps {
    kind: u32,
    handle_types: u32,
    location: RawLocation,
    win32: *mut c_void,
    max_size: usize,
    usage: u16,
    rdma: u8,
}

/// What never changes: properties of this process's allocations, and the
/// granularity answers.
#[derive(Default)]
struct Facts {
    props: HashMap<u64, AllocProp>,
    granularity: HashMap<(AllocProp, u32), u64>,
}

static FACTS: Mutex<Option<Facts>> = Mutex::new(None);

fn facts() -> MutexGuard<'static, Option<Facts>> {
    FACTS.lock().unwrap_or_else(|e| e.into_inner())
}

fn with_facts<T>(f: impl FnOnce(&mut Facts) -> T) -> T {
    f(facts().get_or_insert_with(Facts::default))
}

fn loc(l: RawLocation) -> Location {
    Location {
        kind: l.kind,
        id: l.id,
    }
}

/// Reads an application's `CUmemAllocationProp`.
fn read_prop(p: *const RawAllocProp) -> Result<AllocProp, CUresult> {
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: non-null; the API contract makes it a readable CUmemAllocationProp.
    let p = unsafe { &*p };
    Ok(AllocProp {
        kind: p.kind,
        handle_types: p.handle_types,
        location: loc(p.location),
        compression: p.compression,
        rdma: p.rdma,
        usage: p.usage,
    })
}

fn read_access(d: *const RawAccess, count: usize) -> Result<Vec<Access>, CUresult> {
    if d.is_null() || count == 0 || count > MAX_ACCESS_DESCS {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: the caller passes `count` readable descriptors at `d`.
    let d = unsafe { std::slice::from_raw_parts(d, count) };
    Ok(d.iter()
        .map(|a| Access {
            location: loc(a.location),
            flags: a.flags,
        })
        .collect())
}

fn read_loc(l: *const RawLocation) -> Result<Location, CUresult> {
    if l.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: non-null; a readable CUmemLocation by the API contract.
    Ok(loc(unsafe { *l }))
}

fn call<B: tf_protocol::Body>(m: MemRequest<'_>) -> Result<B, CUresult> {
    session()?.call::<B>(&Request::Mem(m))
}

fn size(v: usize) -> u64 {
    v as u64
}

// --- virtual memory management ---

unsafe extern "C" fn cu_mem_address_reserve(
    ptr: *mut u64,
    sz: usize,
    alignment: usize,
    addr: u64,
    flags: u64,
) -> CUresult {
    guard(|| {
        if ptr.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let p = call::<u64>(MemRequest::AddressReserve {
            size: size(sz),
            alignment: size(alignment),
            addr,
            flags,
        })?;
        out(ptr, p)
    })
}

unsafe extern "C" fn cu_mem_address_free(ptr: u64, sz: usize) -> CUresult {
    guard(|| {
        call::<()>(MemRequest::AddressFree {
            ptr,
            size: size(sz),
        })
    })
}

unsafe extern "C" fn cu_mem_create(
    handle: *mut u64,
    sz: usize,
    prop: *const RawAllocProp,
    flags: u64,
) -> CUresult {
    guard(|| {
        let prop = read_prop(prop)?;
        if handle.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let h = call::<u64>(MemRequest::Create {
            size: size(sz),
            prop,
            flags,
        })?;
        with_facts(|f| f.props.insert(h, prop));
        out(handle, h)
    })
}

unsafe extern "C" fn cu_mem_release(handle: u64) -> CUresult {
    guard(|| {
        call::<()>(MemRequest::Release { handle })?;
        // The properties stay known while mappings or retains may name the
        // handle again; they are a few bytes.
        Ok(())
    })
}

unsafe extern "C" fn cu_mem_map(
    ptr: u64,
    sz: usize,
    offset: usize,
    handle: u64,
    flags: u64,
) -> CUresult {
    guard(|| {
        call::<()>(MemRequest::Map {
            ptr,
            size: size(sz),
            offset: size(offset),
            handle,
            flags,
        })?;
        crate::runtime::host_memory::device_allocated(ctx_or_zero()?, ptr, size(sz));
        Ok(())
    })
}

unsafe extern "C" fn cu_mem_unmap(ptr: u64, sz: usize) -> CUresult {
    guard(|| {
        call::<()>(MemRequest::Unmap {
            ptr,
            size: size(sz),
        })?;
        crate::runtime::host_memory::device_range_freed(ptr, size(sz));
        Ok(())
    })
}

unsafe extern "C" fn cu_mem_set_access(
    ptr: u64,
    sz: usize,
    desc: *const RawAccess,
    count: usize,
) -> CUresult {
    guard(|| {
        let descs = read_access(desc, count)?;
        call::<()>(MemRequest::SetAccess {
            ptr,
            size: size(sz),
            descs,
        })
    })
}

unsafe extern "C" fn cu_mem_get_access(
    flags: *mut u64,
    location: *const RawLocation,
    ptr: u64,
) -> CUresult {
    guard(|| {
        let location = read_loc(location)?;
        if flags.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let f = call::<u64>(MemRequest::GetAccess { location, ptr })?;
        out(flags, f)
    })
}

unsafe extern "C" fn cu_mem_get_allocation_granularity(
    granularity: *mut usize,
    prop: *const RawAllocProp,
    option: c_uint,
) -> CUresult {
    guard(|| {
        let prop = read_prop(prop)?;
        if granularity.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let known = with_facts(|f| f.granularity.get(&(prop, option)).copied());
        let g = match known {
            Some(g) => g,
            None => {
                let g = call::<u64>(MemRequest::Granularity { prop, option })?;
                with_facts(|f| f.granularity.insert((prop, option), g));
                g
            }
        };
        out(granularity, g as usize)
    })
}

unsafe extern "C" fn cu_mem_get_allocation_properties_from_handle(
    prop: *mut RawAllocProp,
    handle: u64,
) -> CUresult {
    guard(|| {
        let p = with_facts(|f| f.props.get(&handle).copied()).ok_or(cu::INVALID_VALUE)?;
        out(
            prop,
            RawAllocProp {
                kind: p.kind,
                handle_types: p.handle_types,
                location: RawLocation {
                    kind: p.location.kind,
                    id: p.location.id,
                },
                win32: std::ptr::null_mut(),
                compression: p.compression,
                rdma: p.rdma,
                usage: p.usage,
                reserved: [0; 4],
            },
        )
    })
}

unsafe extern "C" fn cu_mem_retain_allocation_handle(handle: *mut u64, addr: Handle) -> CUresult {
    guard(|| {
        if handle.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let h = call::<u64>(MemRequest::RetainHandle { ptr: addr as u64 })?;
        out(handle, h)
    })
}

// --- stream-ordered allocation and pools ---

fn alloc_async(
    dptr: *mut u64,
    sz: usize,
    pool: u64,
    s: Handle,
    per_thread: bool,
) -> Result<(), CUresult> {
    if dptr.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = crate::cuda::current_ctx()?;
    let p = call::<u64>(MemRequest::AllocAsync {
        ctx,
        size: size(sz),
        pool,
        stream,
    })?;
    // Pointer queries on it are answered locally, as for cuMemAlloc.
    crate::runtime::host_memory::device_allocated(ctx, p, size(sz));
    out(dptr, p)
}

fn free_async(ptr: u64, s: Handle, per_thread: bool) -> Result<(), CUresult> {
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = crate::cuda::current_ctx()?;
    session()?.enqueue(&Request::Mem(MemRequest::FreeAsync { ctx, ptr, stream }))?;
    crate::runtime::host_memory::device_freed(ptr);
    Ok(())
}

/// A pool handle from the application: pools are nonzero ids.
fn pool_arg(p: Handle) -> Result<u64, CUresult> {
    match p as u64 {
        0 => Err(cu::INVALID_VALUE),
        id => Ok(id),
    }
}

unsafe extern "C" fn cu_device_get_default_mem_pool(pool: *mut Handle, dev: i32) -> CUresult {
    guard(|| {
        crate::cuda::device(dev)?;
        let p = call::<u64>(MemRequest::DevicePool {
            dev,
            current: false,
        })?;
        out(pool, p as Handle)
    })
}

unsafe extern "C" fn cu_device_get_mem_pool(pool: *mut Handle, dev: i32) -> CUresult {
    guard(|| {
        crate::cuda::device(dev)?;
        let p = call::<u64>(MemRequest::DevicePool { dev, current: true })?;
        out(pool, p as Handle)
    })
}

unsafe extern "C" fn cu_device_set_mem_pool(dev: i32, pool: Handle) -> CUresult {
    guard(|| {
        crate::cuda::device(dev)?;
        call::<()>(MemRequest::DeviceSetPool {
            dev,
            pool: pool_arg(pool)?,
        })
    })
}

unsafe extern "C" fn cu_mem_pool_create(pool: *mut Handle, props: *const RawPoolProps) -> CUresult {
    guard(|| {
        if pool.is_null() || props.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: non-null; a readable CUmemPoolProps by the API contract.
        let p = unsafe { &*props };
        let id = call::<u64>(MemRequest::PoolCreate {
            props: PoolProps {
                kind: p.kind,
                handle_types: p.handle_types,
                location: loc(p.location),
                max_size: size(p.max_size),
                usage: p.usage,
                rdma: p.rdma,
            },
        })?;
        out(pool, id as Handle)
    })
}

unsafe extern "C" fn cu_mem_pool_destroy(pool: Handle) -> CUresult {
    guard(|| {
        call::<()>(MemRequest::PoolDestroy {
            pool: pool_arg(pool)?,
        })
    })
}

unsafe extern "C" fn cu_mem_pool_set_attribute(
    pool: Handle,
    attr: c_uint,
    value: Handle,
) -> CUresult {
    guard(|| {
        if value.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let v = if pool_attr_is_wide(attr) {
            // SAFETY: the attribute's value is a cuuint64_t at `value`.
            unsafe { value.cast::<u64>().read_unaligned() }
        } else {
            // SAFETY: the attribute's value is an int-sized value at `value`.
            u64::from(unsafe { value.cast::<u32>().read_unaligned() })
        };
        call::<()>(MemRequest::PoolSetAttribute {
            pool: pool_arg(pool)?,
            attr,
            value: v,
        })
    })
}

unsafe extern "C" fn cu_mem_pool_get_attribute(
    pool: Handle,
    attr: c_uint,
    value: Handle,
) -> CUresult {
    guard(|| {
        if value.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let v = call::<u64>(MemRequest::PoolGetAttribute {
            pool: pool_arg(pool)?,
            attr,
        })?;
        if pool_attr_is_wide(attr) {
            // SAFETY: the caller provides a writable cuuint64_t for this attribute.
            unsafe { value.cast::<u64>().write_unaligned(v) };
        } else {
            // SAFETY: the caller provides a writable int-sized value.
            unsafe { value.cast::<u32>().write_unaligned(v as u32) };
        }
        Ok(())
    })
}

unsafe extern "C" fn cu_mem_pool_trim_to(pool: Handle, keep: usize) -> CUresult {
    guard(|| {
        call::<()>(MemRequest::PoolTrimTo {
            pool: pool_arg(pool)?,
            keep: size(keep),
        })
    })
}

unsafe extern "C" fn cu_mem_pool_set_access(
    pool: Handle,
    desc: *const RawAccess,
    count: usize,
) -> CUresult {
    guard(|| {
        let descs = read_access(desc, count)?;
        call::<()>(MemRequest::PoolSetAccess {
            pool: pool_arg(pool)?,
            descs,
        })
    })
}

unsafe extern "C" fn cu_mem_pool_get_access(
    flags: *mut c_uint,
    pool: Handle,
    location: *const RawLocation,
) -> CUresult {
    guard(|| {
        let location = read_loc(location)?;
        if flags.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let f = call::<u64>(MemRequest::PoolGetAccess {
            pool: pool_arg(pool)?,
            location,
        })?;
        out(flags, f as c_uint)
    })
}

// --- stream memory operations ---

fn value_op(
    s: Handle,
    addr: u64,
    value: u64,
    flags: c_uint,
    wide: bool,
    write: bool,
    per_thread: bool,
) -> Result<(), CUresult> {
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = ctx_or_zero()?;
    session()?.enqueue(&Request::Mem(MemRequest::Value(ValueOp {
        ctx,
        stream,
        addr,
        value,
        flags,
        wide,
        write,
    })))
}

fn batch(
    s: Handle,
    count: c_uint,
    params: *const u8,
    flags: c_uint,
    per_thread: bool,
) -> Result<(), CUresult> {
    let n = count as usize;
    if params.is_null() || n == 0 || n > MAX_BATCH_OPS {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: the caller passes `count` CUstreamBatchMemOpParams (48 bytes each).
    let ops = unsafe { std::slice::from_raw_parts(params, n * BATCH_OP_SIZE) };
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = ctx_or_zero()?;
    session()?.enqueue(&Request::Mem(MemRequest::BatchMemOp {
        ctx,
        stream,
        flags,
        ops,
    }))
}

// --- host functions ---

type HostFn = unsafe extern "C" fn(*mut c_void);
type StreamCallback = unsafe extern "C" fn(Handle, CUresult, *mut c_void);

/// Waits for the stream's earlier work (`Ok`) or its error (`Err`).
fn drain(s: Handle, per_thread: bool) -> Result<Result<(), CUresult>, CUresult> {
    let stream = wire_stream(s as u64, per_thread)?;
    // Waiting would end a capture (a host function is captured as a host
    // node instead; a stream callback cannot be captured, as natively).
    crate::graph::refuse_in_capture(stream)?;
    let ctx = ctx_or_zero()?;
    Ok(
        session()?.call::<()>(&Request::Exec(ExecRequest::StreamSynchronize {
            ctx,
            stream,
        })),
    )
}

fn launch_host_func(
    s: Handle,
    f: Option<HostFn>,
    data: *mut c_void,
    per_thread: bool,
) -> Result<(), CUresult> {
    let f = f.ok_or(cu::INVALID_VALUE)?;
    let stream = wire_stream(s as u64, per_thread)?;
    if crate::graph::capture_host_fn(stream, crate::graph::HostFn { f, data })? {
        return Ok(());
    }
    // Unlike stream callbacks, a host function is not called after an error.
    drain(s, per_thread)??;
    // SAFETY: the application's host function with its own argument, called
    // once, on an application thread, as CUDA would.
    unsafe { f(data) };
    Ok(())
}

fn add_callback(
    s: Handle,
    cb: Option<StreamCallback>,
    data: *mut c_void,
    flags: c_uint,
    per_thread: bool,
) -> Result<(), CUresult> {
    let cb = cb.ok_or(cu::INVALID_VALUE)?;
    if flags != 0 {
        return Err(cu::INVALID_VALUE);
    }
    let status = match drain(s, per_thread)? {
        Ok(()) => cu::SUCCESS,
        Err(e) => e,
    };
    // SAFETY: the application's callback with the stream it named, the
    // stream's status and its own argument, called once.
    unsafe { cb(s, status, data) };
    Ok(())
}

// --- address ranges ---

unsafe extern "C" fn cu_mem_get_address_range(
    base: *mut u64,
    sz: *mut usize,
    ptr: u64,
) -> CUresult {
    guard(|| {
        let (b, n) = call::<(u64, u64)>(MemRequest::AddressRange { ptr })?;
        if !base.is_null() {
            out(base, b)?;
        }
        if !sz.is_null() {
            out(sz, n as usize)?;
        }
        Ok(())
    })
}

/// The entry points that take a stream, once per default-stream flavour.
macro_rules! stream_entries {
    ($pt:expr, $alloc:ident, $alloc_pool:ident, $free:ident, $w32:ident, $w64:ident, $wr32:ident, $wr64:ident, $batch:ident, $host:ident, $host2:ident, $cb:ident) => {
        unsafe extern "C" fn $alloc(dptr: *mut u64, sz: usize, s: Handle) -> CUresult {
            guard(|| alloc_async(dptr, sz, 0, s, $pt))
        }
        unsafe extern "C" fn $alloc_pool(
            dptr: *mut u64,
            sz: usize,
            pool: Handle,
            s: Handle,
        ) -> CUresult {
            guard(|| alloc_async(dptr, sz, pool_arg(pool)?, s, $pt))
        }
        unsafe extern "C" fn $free(ptr: u64, s: Handle) -> CUresult {
            guard(|| free_async(ptr, s, $pt))
        }
        unsafe extern "C" fn $w32(s: Handle, addr: u64, v: u32, flags: c_uint) -> CUresult {
            guard(|| value_op(s, addr, u64::from(v), flags, false, false, $pt))
        }
        unsafe extern "C" fn $w64(s: Handle, addr: u64, v: u64, flags: c_uint) -> CUresult {
            guard(|| value_op(s, addr, v, flags, true, false, $pt))
        }
        unsafe extern "C" fn $wr32(s: Handle, addr: u64, v: u32, flags: c_uint) -> CUresult {
            guard(|| value_op(s, addr, u64::from(v), flags, false, true, $pt))
        }
        unsafe extern "C" fn $wr64(s: Handle, addr: u64, v: u64, flags: c_uint) -> CUresult {
            guard(|| value_op(s, addr, v, flags, true, true, $pt))
        }
        unsafe extern "C" fn $batch(
            s: Handle,
            count: c_uint,
            params: *const u8,
            flags: c_uint,
        ) -> CUresult {
            guard(|| batch(s, count, params, flags, $pt))
        }
        unsafe extern "C" fn $host(s: Handle, f: Option<HostFn>, data: *mut c_void) -> CUresult {
            guard(|| launch_host_func(s, f, data, $pt))
        }
        /// `cuLaunchHostFunc_v2`: the sync mode only matters for graphs.
        unsafe extern "C" fn $host2(
            s: Handle,
            f: Option<HostFn>,
            data: *mut c_void,
            _mode: c_uint,
        ) -> CUresult {
            guard(|| launch_host_func(s, f, data, $pt))
        }
        unsafe extern "C" fn $cb(
            s: Handle,
            cb: Option<StreamCallback>,
            data: *mut c_void,
            flags: c_uint,
        ) -> CUresult {
            guard(|| add_callback(s, cb, data, flags, $pt))
        }
    };
}

stream_entries!(
    false,
    cu_mem_alloc_async,
    cu_mem_alloc_from_pool_async,
    cu_mem_free_async,
    cu_stream_wait_value32,
    cu_stream_wait_value64,
    cu_stream_write_value32,
    cu_stream_write_value64,
    cu_stream_batch_mem_op,
    cu_launch_host_func,
    cu_launch_host_func_v2,
    cu_stream_add_callback
);
stream_entries!(
    true,
    cu_mem_alloc_async_ptsz,
    cu_mem_alloc_from_pool_async_ptsz,
    cu_mem_free_async_ptsz,
    cu_stream_wait_value32_ptsz,
    cu_stream_wait_value64_ptsz,
    cu_stream_write_value32_ptsz,
    cu_stream_write_value64_ptsz,
    cu_stream_batch_mem_op_ptsz,
    cu_launch_host_func_ptsz,
    cu_launch_host_func_v2_ptsz,
    cu_stream_add_callback_ptsz
);

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    let entries: &[(usize, Entry)] = &[
        (c::cuMemAddressReserve, cu_mem_address_reserve as Entry),
        (c::cuMemAddressFree, cu_mem_address_free as Entry),
        (c::cuMemCreate, cu_mem_create as Entry),
        (c::cuMemRelease, cu_mem_release as Entry),
        (c::cuMemMap, cu_mem_map as Entry),
        (c::cuMemUnmap, cu_mem_unmap as Entry),
        (c::cuMemSetAccess, cu_mem_set_access as Entry),
        (c::cuMemGetAccess, cu_mem_get_access as Entry),
        (
            c::cuMemGetAllocationGranularity,
            cu_mem_get_allocation_granularity as Entry,
        ),
        (
            c::cuMemGetAllocationPropertiesFromHandle,
            cu_mem_get_allocation_properties_from_handle as Entry,
        ),
        (
            c::cuMemRetainAllocationHandle,
            cu_mem_retain_allocation_handle as Entry,
        ),
        (
            c::cuDeviceGetDefaultMemPool,
            cu_device_get_default_mem_pool as Entry,
        ),
        (c::cuDeviceGetMemPool, cu_device_get_mem_pool as Entry),
        (c::cuDeviceSetMemPool, cu_device_set_mem_pool as Entry),
        (c::cuMemPoolCreate, cu_mem_pool_create as Entry),
        (c::cuMemPoolDestroy, cu_mem_pool_destroy as Entry),
        (c::cuMemPoolSetAttribute, cu_mem_pool_set_attribute as Entry),
        (c::cuMemPoolGetAttribute, cu_mem_pool_get_attribute as Entry),
        (c::cuMemPoolTrimTo, cu_mem_pool_trim_to as Entry),
        (c::cuMemPoolSetAccess, cu_mem_pool_set_access as Entry),
        (c::cuMemPoolGetAccess, cu_mem_pool_get_access as Entry),
        (
            c::cuMemGetAddressRange_v2,
            cu_mem_get_address_range as Entry,
        ),
        (c::cuMemAllocAsync, cu_mem_alloc_async as Entry),
        (c::cuMemAllocAsync_ptsz, cu_mem_alloc_async_ptsz as Entry),
        (
            c::cuMemAllocFromPoolAsync,
            cu_mem_alloc_from_pool_async as Entry,
        ),
        (
            c::cuMemAllocFromPoolAsync_ptsz,
            cu_mem_alloc_from_pool_async_ptsz as Entry,
        ),
        (c::cuMemFreeAsync, cu_mem_free_async as Entry),
        (c::cuMemFreeAsync_ptsz, cu_mem_free_async_ptsz as Entry),
        // The v1 names have the same signatures; their flag meanings are a
        // subset of v2's.
        (c::cuStreamWaitValue32, cu_stream_wait_value32 as Entry),
        (c::cuStreamWaitValue32_v2, cu_stream_wait_value32 as Entry),
        (
            c::cuStreamWaitValue32_ptsz,
            cu_stream_wait_value32_ptsz as Entry,
        ),
        (
            c::cuStreamWaitValue32_v2_ptsz,
            cu_stream_wait_value32_ptsz as Entry,
        ),
        (c::cuStreamWaitValue64, cu_stream_wait_value64 as Entry),
        (c::cuStreamWaitValue64_v2, cu_stream_wait_value64 as Entry),
        (
            c::cuStreamWaitValue64_ptsz,
            cu_stream_wait_value64_ptsz as Entry,
        ),
        (
            c::cuStreamWaitValue64_v2_ptsz,
            cu_stream_wait_value64_ptsz as Entry,
        ),
        (c::cuStreamWriteValue32, cu_stream_write_value32 as Entry),
        (c::cuStreamWriteValue32_v2, cu_stream_write_value32 as Entry),
        (
            c::cuStreamWriteValue32_ptsz,
            cu_stream_write_value32_ptsz as Entry,
        ),
        (
            c::cuStreamWriteValue32_v2_ptsz,
            cu_stream_write_value32_ptsz as Entry,
        ),
        (c::cuStreamWriteValue64, cu_stream_write_value64 as Entry),
        (c::cuStreamWriteValue64_v2, cu_stream_write_value64 as Entry),
        (
            c::cuStreamWriteValue64_ptsz,
            cu_stream_write_value64_ptsz as Entry,
        ),
        (
            c::cuStreamWriteValue64_v2_ptsz,
            cu_stream_write_value64_ptsz as Entry,
        ),
        (c::cuStreamBatchMemOp_v2, cu_stream_batch_mem_op as Entry),
        (
            c::cuStreamBatchMemOp_v2_ptsz,
            cu_stream_batch_mem_op_ptsz as Entry,
        ),
        (c::cuLaunchHostFunc, cu_launch_host_func as Entry),
        (c::cuLaunchHostFunc_ptsz, cu_launch_host_func_ptsz as Entry),
        (c::cuLaunchHostFunc_v2, cu_launch_host_func_v2 as Entry),
        (
            c::cuLaunchHostFunc_v2_ptsz,
            cu_launch_host_func_v2_ptsz as Entry,
        ),
        (c::cuStreamAddCallback, cu_stream_add_callback as Entry),
        (
            c::cuStreamAddCallback_ptsz,
            cu_stream_add_callback_ptsz as Entry,
        ),
    ];
    crate::set_each(set, entries);
}
