//! Virtual memory management, stream-ordered memory pools, stream memory
//! operations and address-range queries (issue 3).
//!
//! Domain module of the worker: the backend methods this domain needs (each
//! `NOT_SUPPORTED` by default), the per-session state and the dispatch.
//!
//! Isolation. A session only names its own reservations, physical
//! allocations, mappings and pools. `cuMemMap` must target a range inside one
//! of its reservations and a handle it created; copies may touch mapped
//! ranges (also spanning adjacent mappings, as PyTorch's expandable segments
//! do) and live pool allocations. Device pools are per session: the
//! "default pool" of a device is a pool this session created, and
//! `cuDeviceSetMemPool` changes only this session's current pool, so one
//! tenant's pool attributes never reach another's allocations.
//!
//! Memory limit. Physical allocations (`cuMemCreate`) and pool allocations
//! are charged to the worker's limit when made and returned when released
//! or freed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tf_protocol::mem_msgs::{handle, Access, AllocProp, Location, MemRequest, PoolProps};
use tf_protocol::mem_msgs::{Copy2D, Pitched, ValueOp, BATCH_OP_SIZE};
use tf_protocol::status::cu;

use crate::backend::{BResult, BackendCtx, Status};
use crate::exec::resolve_stream;
use crate::session::{reply, Outcome, Session};
use crate::worker::Worker;

fn unsupported<T>() -> BResult<T> {
    Err(cu::NOT_SUPPORTED)
}

/// `CU_MEM_LOCATION_TYPE_DEVICE`.
const LOCATION_DEVICE: u32 = 1;
/// `CU_MEM_ALLOCATION_TYPE_PINNED`.
const ALLOCATION_PINNED: u32 = 1;

/// The source of a 2D copy: packed host bytes or device memory.
pub enum Src<'a> {
    Host(&'a [u8]),
    Device(Pitched),
}

/// The destination of a 2D copy: a packed host buffer or device memory.
pub enum Dst<'a> {
    Host(&'a mut [u8]),
    Device(Pitched),
}

/// What this domain needs from a backend. Handles and pools are the
/// backend's own values; every call that takes a context runs with it
/// current.
#[allow(unused_variables)]
pub trait MemBackend {
    fn address_reserve(
        &self,
        ctx: BackendCtx,
        size: u64,
        alignment: u64,
        addr: u64,
        flags: u64,
    ) -> BResult<u64> {
        unsupported()
    }
    fn address_free(&self, ctx: BackendCtx, ptr: u64, size: u64) -> BResult<()> {
        unsupported()
    }
    fn mem_create(&self, ctx: BackendCtx, size: u64, prop: &AllocProp, flags: u64) -> BResult<u64> {
        unsupported()
    }
    fn mem_release(&self, ctx: BackendCtx, handle: u64) -> BResult<()> {
        unsupported()
    }
    fn mem_map(
        &self,
        ctx: BackendCtx,
        ptr: u64,
        size: u64,
        offset: u64,
        handle: u64,
        flags: u64,
    ) -> BResult<()> {
        unsupported()
    }
    fn mem_unmap(&self, ctx: BackendCtx, ptr: u64, size: u64) -> BResult<()> {
        unsupported()
    }
    fn mem_set_access(
        &self,
        ctx: BackendCtx,
        ptr: u64,
        size: u64,
        descs: &[Access],
    ) -> BResult<()> {
        unsupported()
    }
    fn mem_get_access(&self, ctx: BackendCtx, location: Location, ptr: u64) -> BResult<u64> {
        unsupported()
    }
    fn granularity(&self, ctx: BackendCtx, prop: &AllocProp, option: u32) -> BResult<u64> {
        unsupported()
    }
    /// Takes one more reference on the allocation mapped at `ptr`.
    fn retain_handle(&self, ctx: BackendCtx, ptr: u64) -> BResult<u64> {
        unsupported()
    }
    fn pool_create(&self, ctx: BackendCtx, props: &PoolProps) -> BResult<u64> {
        unsupported()
    }
    fn pool_destroy(&self, ctx: BackendCtx, pool: u64) -> BResult<()> {
        unsupported()
    }
    /// `value` is an `int` or a `cuuint64_t` as the attribute is defined.
    fn pool_set_attribute(&self, ctx: BackendCtx, pool: u64, attr: u32, value: u64) -> BResult<()> {
        unsupported()
    }
    fn pool_get_attribute(&self, ctx: BackendCtx, pool: u64, attr: u32) -> BResult<u64> {
        unsupported()
    }
    fn pool_trim(&self, ctx: BackendCtx, pool: u64, keep: u64) -> BResult<()> {
        unsupported()
    }
    fn pool_set_access(&self, ctx: BackendCtx, pool: u64, descs: &[Access]) -> BResult<()> {
        unsupported()
    }
    fn pool_get_access(&self, ctx: BackendCtx, pool: u64, location: Location) -> BResult<u64> {
        unsupported()
    }
    fn alloc_from_pool(&self, ctx: BackendCtx, size: u64, pool: u64, stream: u64) -> BResult<u64> {
        unsupported()
    }
    fn free_async(&self, ctx: BackendCtx, ptr: u64, stream: u64) -> BResult<()> {
        unsupported()
    }
    /// Frees a pool allocation at once (session end: `cuMemFree` accepts them).
    fn free_now(&self, ctx: BackendCtx, ptr: u64) -> BResult<()> {
        unsupported()
    }
    fn stream_value(&self, ctx: BackendCtx, stream: u64, op: &ValueOp) -> BResult<()> {
        unsupported()
    }
    /// A 2D copy of `rows` rows of `width` bytes; `stream` `None` for the
    /// synchronous form. Host sides are packed (pitch = width). Returns once
    /// a host destination holds the data.
    fn memcpy_2d(
        &self,
        ctx: BackendCtx,
        stream: Option<u64>,
        width: u64,
        rows: u64,
        src: Src<'_>,
        dst: Dst<'_>,
    ) -> BResult<()> {
        unsupported()
    }
    /// `cuMemAllocPitch`: `(ptr, pitch)`.
    fn mem_alloc_pitch(
        &self,
        ctx: BackendCtx,
        width: u64,
        height: u64,
        elem: u32,
    ) -> BResult<(u64, u64)> {
        unsupported()
    }
    /// `ops`: validated `CUstreamBatchMemOpParams` records.
    fn batch_mem_op(&self, ctx: BackendCtx, stream: u64, flags: u32, ops: &[u8]) -> BResult<()> {
        unsupported()
    }
}

/// A physical allocation of this session.
#[derive(Debug, Clone, Copy)]
struct Phys {
    real: u64,
    size: u64,
    /// References the application holds (create + retains − releases).
    refs: u32,
    dev: i32,
}

/// Device objects are used in the session's anchored primary context of
/// their device (`Session::device_ctx`), never in a context the
/// application may have destroyed since.
#[derive(Debug, Clone, Copy)]
struct Pool {
    real: u64,
    dev: i32,
}

#[derive(Debug, Default)]
pub struct MemState {
    /// Reserved address ranges: start → size.
    reservations: BTreeMap<u64, u64>,
    /// Physical allocations by id.
    phys: HashMap<u64, Phys>,
    /// Mappings: start → (size, allocation id).
    mappings: BTreeMap<u64, (u64, u64)>,
    pools: HashMap<u64, Pool>,
    /// The per-session "default pool" of each device (created on demand).
    default_pool: HashMap<i32, u64>,
    /// The pool `cuMemAllocAsync` uses, when not the default.
    current_pool: HashMap<i32, u64>,
    /// Live stream-ordered allocations: start → (size, device).
    pool_allocs: BTreeMap<u64, (u64, i32)>,
    next: u64,
}

impl MemState {
    fn mint(&mut self, kind: u64) -> u64 {
        self.next += 1;
        handle::make(kind, self.next)
    }

    /// `[ptr, ptr+len)` lies in this session's mapped ranges (consecutive
    /// mappings count as one range) or inside one live pool allocation.
    pub fn covers(&self, ptr: u64, len: u64) -> bool {
        let Some(end) = ptr.checked_add(len) else {
            return false;
        };
        if let Some((start, (size, _))) = self.pool_allocs.range(..=ptr).next_back() {
            if end <= start + size {
                return true;
            }
        }
        let mut at = ptr;
        let Some((start, (size, _))) = self.mappings.range(..=at).next_back() else {
            return false;
        };
        if *start + *size <= at {
            return false;
        }
        at = start + size;
        while at < end {
            match self.mappings.get(&at) {
                Some((size, _)) => at += size,
                None => return false,
            }
        }
        true
    }

    fn reservation_holds(&self, ptr: u64, size: u64) -> bool {
        let Some(end) = ptr.checked_add(size) else {
            return false;
        };
        matches!(self.reservations.range(..=ptr).next_back(),
            Some((start, len)) if end <= start + len)
    }

    fn overlaps_mapping(&self, ptr: u64, end: u64) -> bool {
        if let Some((start, (size, _))) = self.mappings.range(..ptr.max(1)).next_back() {
            if start + size > ptr {
                return true;
            }
        }
        self.mappings.range(ptr..end).next().is_some()
    }

    /// Frees everything a departed session left: mappings, physical
    /// allocations, reservations, pool allocations, then its pools.
    /// `ctx`: a live context of the session (an anchored primary context).
    pub fn cleanup(&mut self, w: &Worker, ctx: Option<BackendCtx>) {
        let b = w.backend();
        let Some(ctx) = ctx else {
            return;
        };
        let (mappings, allocations) = (self.mappings.len(), self.phys.len());
        let (reservations, pool_allocs) = (self.reservations.len(), self.pool_allocs.len());
        let pools = self.pools.len();
        let mut failed = 0u32;
        for (ptr, (size, _)) in std::mem::take(&mut self.mappings) {
            failed += u32::from(b.mem_unmap(ctx, ptr, size).is_err());
        }
        for (_, p) in std::mem::take(&mut self.phys) {
            for _ in 0..p.refs {
                failed += u32::from(b.mem_release(ctx, p.real).is_err());
            }
            w.uncharge(p.size);
        }
        for (ptr, size) in std::mem::take(&mut self.reservations) {
            failed += u32::from(b.address_free(ctx, ptr, size).is_err());
        }
        for (ptr, (size, _)) in std::mem::take(&mut self.pool_allocs) {
            failed += u32::from(b.free_now(ctx, ptr).is_err());
            w.uncharge(size);
        }
        for (_, p) in std::mem::take(&mut self.pools) {
            failed += u32::from(b.pool_destroy(ctx, p.real).is_err());
        }
        if mappings + allocations + reservations + pool_allocs + pools > 0 {
            tracing::info!(
                mappings,
                allocations,
                reservations,
                pool_allocs,
                pools,
                failed,
                "released the session's VMM memory and pools"
            );
        }
    }
}

/// `cuMemFree` of a live pool allocation: freed at once, as CUDA allows.
pub(crate) fn free_pool_alloc_now(s: &mut Session, ptr: u64) -> Result<(), Status> {
    let (size, dev) = *s.mem.pool_allocs.get(&ptr).ok_or(cu::INVALID_VALUE)?;
    let c = s.device_ctx(Some(dev))?;
    s.worker.backend().free_now(c, ptr)?;
    s.mem.pool_allocs.remove(&ptr);
    s.worker.uncharge(size);
    Ok(())
}

/// The device named by a location, which must be one of the worker's.
fn location_device(s: &Session, l: &Location) -> Result<i32, Status> {
    if l.kind != LOCATION_DEVICE {
        return Err(cu::INVALID_VALUE);
    }
    s.check_dev(l.id).map_err(|_| cu::INVALID_DEVICE)?;
    Ok(l.id)
}

fn session_ctx(s: &mut Session, dev: Option<i32>) -> Result<BackendCtx, Status> {
    s.device_ctx(dev)
}

fn pool(s: &Session, id: u64) -> Result<Pool, Status> {
    s.mem.pools.get(&id).copied().ok_or(cu::INVALID_VALUE)
}

/// The session's default pool of `dev`, created on first use.
fn default_pool(s: &mut Session, dev: i32) -> Result<u64, Status> {
    if let Some(id) = s.mem.default_pool.get(&dev) {
        return Ok(*id);
    }
    let ctx = session_ctx(s, Some(dev))?;
    let props = PoolProps {
        kind: ALLOCATION_PINNED,
        location: Location {
            kind: LOCATION_DEVICE,
            id: dev,
        },
        ..PoolProps::default()
    };
    let real = s.worker.backend().pool_create(ctx, &props)?;
    let id = s.mem.mint(handle::POOL);
    s.mem.pools.insert(id, Pool { real, dev });
    s.mem.default_pool.insert(dev, id);
    Ok(id)
}

/// Checks every operation of a batch and the memory it touches.
fn check_batch(s: &Session, ops: &[u8]) -> Result<(), Status> {
    const WAIT_32: u32 = 1;
    const WRITE_32: u32 = 2;
    const FLUSH: u32 = 3;
    const WAIT_64: u32 = 4;
    const WRITE_64: u32 = 5;
    const BARRIER: u32 = 6;
    for op in ops.chunks_exact(BATCH_OP_SIZE) {
        let word = |at: usize| u64::from_le_bytes(op[at..at + 8].try_into().unwrap_or([0; 8]));
        let kind = u32::from_le_bytes([op[0], op[1], op[2], op[3]]);
        let len = match kind {
            WAIT_32 | WRITE_32 => 4,
            WAIT_64 | WRITE_64 => 8,
            FLUSH | BARRIER => continue,
            // Atomic reductions and anything newer are not forwarded.
            _ => return Err(cu::NOT_SUPPORTED),
        };
        // `address` follows the 4-byte operation and its padding.
        s.check_range(word(8), len)?;
    }
    Ok(())
}

/// Checks one device side of a 2D copy: every row inside this session's memory.
fn check_side(s: &Session, p: &Pitched, width: u64, rows: u64) -> Result<(), Status> {
    if p.pitch < width {
        return Err(cu::INVALID_VALUE);
    }
    let extent = (rows - 1)
        .checked_mul(p.pitch)
        .and_then(|e| e.checked_add(width))
        .ok_or(cu::INVALID_VALUE)?;
    s.check_range(p.ptr, extent)
}

fn copy_2d(s: &mut Session, c: Copy2D<'_>) -> Outcome {
    let r = (|| {
        if c.dst.is_none() {
            s.take_deferred()?;
        }
        let packed = c.packed().ok_or(cu::INVALID_VALUE)?;
        if packed == 0 {
            return Ok(vec![0; 4]);
        }
        for side in [c.src, c.dst].iter().flatten() {
            check_side(s, side, c.width, c.rows)?;
        }
        let (ctx, stream) = match c.stream {
            Some(st) => {
                let (ctx, real) = resolve_stream(s, c.ctx, st, None)?;
                if c.src.is_none() || c.dst.is_none() {
                    crate::graph::refuse_host_copy_in_capture(s, ctx, real)?;
                }
                (ctx, Some(real))
            }
            None => (s.ctx(c.ctx)?, None),
        };
        let src = match c.src {
            Some(p) => Src::Device(p),
            None => Src::Host(c.data),
        };
        let b = s.worker.backend();
        match c.dst {
            Some(p) => {
                b.memcpy_2d(ctx, stream, c.width, c.rows, src, Dst::Device(p))?;
                Ok(vec![0; 4])
            }
            None => {
                if packed > tf_protocol::MAX_PAYLOAD as u64 - 4 {
                    return Err(cu::INVALID_VALUE);
                }
                let mut out = vec![0u8; 4 + packed as usize];
                b.memcpy_2d(ctx, stream, c.width, c.rows, src, Dst::Host(&mut out[4..]))?;
                Ok(out)
            }
        }
    })();
    match r {
        Ok(out) => Outcome::Reply(out),
        Err(status) => Outcome::Reply(tf_protocol::encode_reply::<()>(status, None)),
    }
}

pub(crate) fn dispatch(s: &mut Session, r: MemRequest<'_>) -> Outcome {
    let w = Arc::clone(&s.worker);
    let b = w.backend();
    use MemRequest as M;
    match r {
        M::Copy2D(c) => copy_2d(s, c),
        M::AllocPitch {
            ctx,
            width,
            height,
            elem,
        } => reply((|| {
            s.take_deferred()?;
            let c = s.ctx(ctx)?;
            if width == 0 || height == 0 || !matches!(elem, 4 | 8 | 16) {
                return Err(cu::INVALID_VALUE);
            }
            let (ptr, pitch) = b.mem_alloc_pitch(c, width, height, elem)?;
            let size = pitch.saturating_mul(height);
            if let Err(e) = w.charge(size) {
                let _ = b.mem_free(c, ptr);
                return Err(e);
            }
            s.allocs.insert(ptr, (size, c));
            Ok((ptr, pitch))
        })()),
        M::AddressReserve {
            size,
            alignment,
            addr,
            flags,
        } => reply((|| {
            if size == 0 {
                return Err(cu::INVALID_VALUE);
            }
            let ctx = session_ctx(s, None)?;
            let ptr = b.address_reserve(ctx, size, alignment, addr, flags)?;
            s.mem.reservations.insert(ptr, size);
            Ok(ptr)
        })()),
        M::AddressFree { ptr, size } => reply((|| {
            if s.mem.reservations.get(&ptr) != Some(&size) {
                return Err(cu::INVALID_VALUE);
            }
            if s.mem.overlaps_mapping(ptr, ptr + size) {
                // Still mapped: the application must unmap first.
                return Err(cu::INVALID_VALUE);
            }
            b.address_free(session_ctx(s, None)?, ptr, size)?;
            s.mem.reservations.remove(&ptr);
            Ok(())
        })()),
        M::Create { size, prop, flags } => reply((|| {
            let dev = location_device(s, &prop.location)?;
            if size == 0 || prop.kind != ALLOCATION_PINNED {
                return Err(cu::INVALID_VALUE);
            }
            let ctx = session_ctx(s, Some(dev))?;
            w.charge(size)?;
            let real = b
                .mem_create(ctx, size, &prop, flags)
                .inspect_err(|_| w.uncharge(size))?;
            let id = s.mem.mint(handle::ALLOCATION);
            s.mem.phys.insert(
                id,
                Phys {
                    real,
                    size,
                    refs: 1,
                    dev,
                },
            );
            Ok(id)
        })()),
        M::Release { handle } => reply((|| {
            let p = *s.mem.phys.get(&handle).ok_or(cu::INVALID_VALUE)?;
            b.mem_release(session_ctx(s, Some(p.dev))?, p.real)?;
            if p.refs <= 1 {
                s.mem.phys.remove(&handle);
                w.uncharge(p.size);
            } else if let Some(e) = s.mem.phys.get_mut(&handle) {
                e.refs -= 1;
            }
            Ok(())
        })()),
        M::Map {
            ptr,
            size,
            offset,
            handle,
            flags,
        } => reply((|| {
            let p = *s.mem.phys.get(&handle).ok_or(cu::INVALID_HANDLE)?;
            let end = ptr.checked_add(size).ok_or(cu::INVALID_VALUE)?;
            if size == 0
                || offset.checked_add(size).is_none_or(|e| e > p.size)
                || !s.mem.reservation_holds(ptr, size)
                || s.mem.overlaps_mapping(ptr, end)
            {
                return Err(cu::INVALID_VALUE);
            }
            b.mem_map(
                session_ctx(s, Some(p.dev))?,
                ptr,
                size,
                offset,
                p.real,
                flags,
            )?;
            s.mem.mappings.insert(ptr, (size, handle));
            Ok(())
        })()),
        M::Unmap { ptr, size } => reply((|| {
            // The range must be made of whole mappings, the first at `ptr`.
            let end = ptr.checked_add(size).ok_or(cu::INVALID_VALUE)?;
            if !s.mem.mappings.contains_key(&ptr) {
                return Err(cu::INVALID_VALUE);
            }
            let inside: Vec<u64> = s
                .mem
                .mappings
                .range(ptr..end)
                .map(|(start, (len, _))| (*start, start + len))
                .map(|(start, stop)| if stop <= end { Ok(start) } else { Err(()) })
                .collect::<Result<_, _>>()
                .map_err(|()| cu::INVALID_VALUE)?;
            b.mem_unmap(session_ctx(s, None)?, ptr, size)?;
            for start in inside {
                s.mem.mappings.remove(&start);
            }
            Ok(())
        })()),
        M::SetAccess { ptr, size, descs } => reply((|| {
            for d in &descs {
                location_device(s, &d.location)?;
            }
            if !s.mem.covers(ptr, size) || s.mem.pool_allocs.contains_key(&ptr) {
                return Err(cu::INVALID_VALUE);
            }
            b.mem_set_access(session_ctx(s, None)?, ptr, size, &descs)
        })()),
        M::GetAccess { location, ptr } => reply((|| {
            location_device(s, &location)?;
            if !s.mem.covers(ptr, 1) {
                return Err(cu::INVALID_VALUE);
            }
            b.mem_get_access(session_ctx(s, None)?, location, ptr)
        })()),
        M::Granularity { prop, option } => reply((|| {
            let dev = location_device(s, &prop.location)?;
            b.granularity(session_ctx(s, Some(dev))?, &prop, option)
        })()),
        M::RetainHandle { ptr } => reply((|| {
            let (start, (size, id)) = s
                .mem
                .mappings
                .range(..=ptr)
                .next_back()
                .map(|(a, b)| (*a, *b))
                .ok_or(cu::INVALID_VALUE)?;
            if ptr >= start + size {
                return Err(cu::INVALID_VALUE);
            }
            let p = *s.mem.phys.get(&id).ok_or(cu::INVALID_VALUE)?;
            b.retain_handle(session_ctx(s, Some(p.dev))?, ptr)?;
            if let Some(e) = s.mem.phys.get_mut(&id) {
                e.refs += 1;
            }
            Ok(id)
        })()),
        M::AllocAsync {
            ctx,
            size,
            pool: pool_id,
            stream,
        } => reply((|| {
            s.take_deferred()?;
            let dev = s.ctx_device(ctx)?;
            let (c, st) = resolve_stream(s, ctx, stream, None)?;
            let id = match pool_id {
                0 => match s.mem.current_pool.get(&dev) {
                    Some(id) => *id,
                    None => default_pool(s, dev)?,
                },
                id => id,
            };
            let p = pool(s, id)?;
            if size == 0 {
                return Err(cu::INVALID_VALUE);
            }
            w.charge(size)?;
            let ptr = b
                .alloc_from_pool(c, size, p.real, st)
                .inspect_err(|_| w.uncharge(size))?;
            s.mem.pool_allocs.insert(ptr, (size, dev));
            Ok(ptr)
        })()),
        M::FreeAsync { ctx, ptr, stream } => reply((|| {
            let (size, _) = *s.mem.pool_allocs.get(&ptr).ok_or(cu::INVALID_VALUE)?;
            let (c, st) = resolve_stream(s, ctx, stream, None)?;
            b.free_async(c, ptr, st)?;
            s.mem.pool_allocs.remove(&ptr);
            w.uncharge(size);
            Ok(())
        })()),
        M::DevicePool { dev, current } => reply((|| {
            s.check_dev(dev)?;
            match s.mem.current_pool.get(&dev) {
                Some(id) if current => Ok(*id),
                _ => default_pool(s, dev),
            }
        })()),
        M::DeviceSetPool { dev, pool: id } => reply((|| {
            s.check_dev(dev)?;
            if pool(s, id)?.dev != dev {
                return Err(cu::INVALID_VALUE);
            }
            s.mem.current_pool.insert(dev, id);
            Ok(())
        })()),
        M::PoolCreate { props } => reply((|| {
            let dev = location_device(s, &props.location)?;
            let ctx = session_ctx(s, Some(dev))?;
            let real = b.pool_create(ctx, &props)?;
            let id = s.mem.mint(handle::POOL);
            s.mem.pools.insert(id, Pool { real, dev });
            Ok(id)
        })()),
        M::PoolDestroy { pool: id } => reply((|| {
            let p = pool(s, id)?;
            if s.mem.default_pool.get(&p.dev) == Some(&id) {
                // As the real driver: a device's default pool is not destroyed.
                return Err(cu::INVALID_VALUE);
            }
            b.pool_destroy(session_ctx(s, Some(p.dev))?, p.real)?;
            s.mem.pools.remove(&id);
            if s.mem.current_pool.get(&p.dev) == Some(&id) {
                s.mem.current_pool.remove(&p.dev);
            }
            Ok(())
        })()),
        M::PoolSetAttribute {
            pool: id,
            attr,
            value,
        } => reply((|| {
            let p = pool(s, id)?;
            b.pool_set_attribute(session_ctx(s, Some(p.dev))?, p.real, attr, value)
        })()),
        M::PoolGetAttribute { pool: id, attr } => reply((|| {
            let p = pool(s, id)?;
            b.pool_get_attribute(session_ctx(s, Some(p.dev))?, p.real, attr)
        })()),
        M::PoolTrimTo { pool: id, keep } => reply((|| {
            let p = pool(s, id)?;
            b.pool_trim(session_ctx(s, Some(p.dev))?, p.real, keep)
        })()),
        M::PoolSetAccess { pool: id, descs } => reply((|| {
            let p = pool(s, id)?;
            for d in &descs {
                location_device(s, &d.location)?;
            }
            b.pool_set_access(session_ctx(s, Some(p.dev))?, p.real, &descs)
        })()),
        M::PoolGetAccess { pool: id, location } => reply((|| {
            let p = pool(s, id)?;
            location_device(s, &location)?;
            b.pool_get_access(session_ctx(s, Some(p.dev))?, p.real, location)
        })()),
        M::Value(v) => reply((|| {
            s.check_range(v.addr, if v.wide { 8 } else { 4 })?;
            let (c, st) = resolve_stream(s, v.ctx, v.stream, None)?;
            b.stream_value(c, st, &v)
        })()),
        M::BatchMemOp {
            ctx,
            stream,
            flags,
            ops,
        } => reply((|| {
            check_batch(s, ops)?;
            let (c, st) = resolve_stream(s, ctx, stream, None)?;
            b.batch_mem_op(c, st, flags, ops)
        })()),
        M::AddressRange { ptr } => reply({
            // Answered from the session's own tables: the base and size of
            // whatever of its memory holds `ptr`.
            let found = s
                .allocs
                .range(..=ptr)
                .next_back()
                .map(|(a, (size, _))| (*a, *size))
                .into_iter()
                .chain(
                    s.mem
                        .pool_allocs
                        .range(..=ptr)
                        .next_back()
                        .map(|(a, (size, _))| (*a, *size)),
                )
                .chain(
                    s.mem
                        .mappings
                        .range(..=ptr)
                        .next_back()
                        .map(|(a, (size, _))| (*a, *size)),
                )
                .find(|(a, size)| ptr < a + size);
            found.ok_or(cu::NOT_FOUND)
        }),
    }
}
