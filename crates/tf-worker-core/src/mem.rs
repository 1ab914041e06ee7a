//! Virtual memory management, stream-ordered memory pools, stream memory
//! operations and address-range queries (issue 3).
//!
//! Domain module of the worker: the backend methods this domain needs (each
//! `NOT_SUPPORTED` by default), the per-session state and its requests (the
//! generated `MemCalls` trait).
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

use tf_protocol::mem_msgs::{handle, Access, AllocProp, Location, PoolProps};
use tf_protocol::mem_msgs::{BatchOp, Copy2D, Pitched, ValueOp};
use tf_protocol::status::cu;

use crate::backend::{BResult, BackendCtx, Status};
use crate::calls::MemCalls;
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
    /// Mapped host memory: host memory of this process at exactly
    /// `[addr, addr + size)` (page-aligned, not in use), starting with
    /// `data` (zeros after it), registered with the driver so that kernels
    /// and copies reach it at that address.
    fn host_mirror_create(
        &self,
        ctx: BackendCtx,
        addr: u64,
        size: u64,
        data: &[u8],
    ) -> BResult<()> {
        unsupported()
    }
    /// A stream-ordered copy of `size` bytes between a host mirror and
    /// device memory (both checked by the caller), as `cuMemcpyAsync`
    /// does it with unified addressing; on a capturing stream it becomes a
    /// copy node naming the mirror.
    fn host_mirror_copy(
        &self,
        ctx: BackendCtx,
        stream: u64,
        dst: u64,
        src: u64,
        size: u64,
    ) -> BResult<()> {
        unsupported()
    }
    /// Writes `data` at `addr`, inside a mirror this backend created.
    fn host_mirror_write(&self, addr: u64, data: &[u8]) -> BResult<()> {
        unsupported()
    }
    /// Reads `out.len()` bytes at `addr`, inside a mirror.
    fn host_mirror_read(&self, addr: u64, out: &mut [u8]) -> BResult<()> {
        unsupported()
    }
    /// Unregisters and unmaps the mirror at `addr` of `len` bytes.
    fn host_mirror_drop(&self, ctx: BackendCtx, addr: u64, len: u64) -> BResult<()> {
        unsupported()
    }
}

/// `[addr, addr + len)` lies inside one of the session's host mirrors.
pub(crate) fn mirror_span(s: &Session, addr: u64, len: u64) -> Result<(), Status> {
    let end = addr.checked_add(len).ok_or(cu::INVALID_VALUE)?;
    match s.mem.mirrors.range(..=addr).next_back() {
        Some((start, (n, _))) if end <= start + n => Ok(()),
        _ => Err(cu::INVALID_VALUE),
    }
}

/// Most bytes of host mirrors one session keeps (pinned memory of the
/// worker's host: kernels' flags are small, graph copies name whole
/// staging buffers).
const MAX_MIRRORED: u64 = 256 << 20;

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
    /// Host mirrors (mapped host memory): start → (size, context).
    mirrors: BTreeMap<u64, (u64, BackendCtx)>,
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
        for (addr, (size, c)) in std::mem::take(&mut self.mirrors) {
            let _ = b.host_mirror_drop(c, addr, size);
        }
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

fn find_pool(s: &Session, id: u64) -> Result<Pool, Status> {
    s.mem.pools.get(&id).copied().ok_or(cu::INVALID_VALUE)
}

/// The session's default pool of `dev`, created on first use.
fn default_pool(s: &mut Session, dev: i32) -> Result<u64, Status> {
    if let Some(id) = s.mem.default_pool.get(&dev) {
        return Ok(*id);
    }
    let ctx = s.device_ctx(Some(dev))?;
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
    for op in BatchOp::records(ops) {
        match op {
            // Atomic reductions and anything newer are not forwarded.
            BatchOp::Other(_) => return Err(cu::NOT_SUPPORTED),
            _ => {
                if let Some((addr, len)) = op.touches() {
                    s.check_range(addr, len)?;
                }
            }
        }
    }
    Ok(())
}

/// Checks one device side of a 2D copy: every row inside this session's memory.
fn check_side(s: &Session, p: &Pitched, width: u64, rows: u64) -> Result<(), Status> {
    if p.pitch < width {
        return Err(cu::INVALID_VALUE);
    }
    let extent =
        tf_protocol::pitched_offset(p.pitch, 0, width, rows - 1, 0).ok_or(cu::INVALID_VALUE)?;
    s.check_range(p.ptr, extent)
}

/// The memory requests. Addresses, handles and pools are checked against
/// this session's tables before the backend sees them.
impl MemCalls for Session {
    /// The reply is raw: the status, then the packed bytes of a host
    /// destination (no `Body` framing), so it builds its `Outcome` itself.
    fn copy_2d(&mut self, c: Copy2D<'_>) -> Outcome {
        let r = (|| {
            if c.dst.is_none() {
                self.take_deferred()?;
            }
            let packed = c.packed().ok_or(cu::INVALID_VALUE)?;
            if packed == 0 {
                return Ok(vec![0; 4]);
            }
            for side in [c.src, c.dst].iter().flatten() {
                check_side(self, side, c.width, c.rows)?;
            }
            let (ctx, stream) = match c.stream {
                Some(st) => {
                    let (ctx, real) = resolve_stream(self, c.ctx, st, None)?;
                    if c.src.is_none() || c.dst.is_none() {
                        crate::graph::refuse_host_copy_in_capture(self, ctx, real)?;
                    }
                    (ctx, Some(real))
                }
                None => (self.ctx(c.ctx)?, None),
            };
            let src = match c.src {
                Some(p) => Src::Device(p),
                None => Src::Host(c.data),
            };
            let b = self.worker.backend();
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

    fn host_mirror(&mut self, ctx: u64, addr: u64, size: u64, data: &[u8]) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            // Only a session's own process may place memory at the client's
            // addresses: threads of one process share one address space.
            if !w.is_process_per_session() {
                return Err(cu::NOT_SUPPORTED);
            }
            let c = self.ctx(ctx)?;
            let len = size;
            if len == 0
                || data.len() as u64 > len
                || data.len() > tf_protocol::mem_msgs::MAX_HOST_MIRROR
                || !addr.is_multiple_of(4096)
                || addr.checked_add(len).is_none()
            {
                return Err(cu::INVALID_VALUE);
            }
            let st = &self.mem;
            let used: u64 = st.mirrors.values().map(|(n, _)| n).sum();
            if used + len > MAX_MIRRORED {
                return Err(cu::OUT_OF_MEMORY);
            }
            let overlaps = st
                .mirrors
                .range(..addr + len)
                .next_back()
                .is_some_and(|(s, (n, _))| s + n > addr);
            if overlaps {
                return Err(cu::INVALID_VALUE);
            }
            w.backend().host_mirror_create(c, addr, len, data)?;
            self.mem.mirrors.insert(addr, (len, c));
            Ok(())
        })())
    }

    fn host_mirror_write(&mut self, addr: u64, data: &[u8]) -> Outcome {
        reply((|| {
            mirror_span(self, addr, data.len() as u64)?;
            self.worker.backend().host_mirror_write(addr, data)
        })())
    }

    fn host_mirror_read(&mut self, addr: u64, size: u64) -> Outcome {
        reply((|| {
            mirror_span(self, addr, size)?;
            let mut out = vec![0u8; size as usize];
            self.worker.backend().host_mirror_read(addr, &mut out)?;
            Ok(tf_protocol::mem_msgs::HostBytes(out))
        })())
    }

    fn host_mirror_copy(
        &mut self,
        ctx: u64,
        stream: u64,
        dst: u64,
        src: u64,
        size: u64,
    ) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            self.take_deferred()?;
            if size == 0 {
                return Err(cu::INVALID_VALUE);
            }
            // One side in a mirror of this session, the other in its device
            // memory: nothing else of the session process is reachable.
            let dst_mirror = mirror_span(self, dst, size).is_ok();
            if dst_mirror {
                self.check_range(src, size)?;
            } else {
                mirror_span(self, src, size)?;
                self.check_range(dst, size)?;
            }
            let (c, st) = crate::exec::resolve_stream(self, ctx, stream, None)?;
            w.backend().host_mirror_copy(c, st, dst, src, size)
        })())
    }

    fn host_call_done(&mut self, id: u64) -> Outcome {
        // The connection loop consumes these while a host call is out; one
        // reaching the session answers nothing that was asked.
        self.worker.warn_limited(&format!(
            "session {}: the client finished host function {id}, which was not called",
            self.id
        ));
        Outcome::Silent
    }

    fn host_mirror_drop(&mut self, addr: u64) -> Outcome {
        reply((|| {
            let (len, c) = self.mem.mirrors.remove(&addr).ok_or(cu::INVALID_VALUE)?;
            self.worker.backend().host_mirror_drop(c, addr, len)
        })())
    }

    fn alloc_pitch(&mut self, ctx: u64, width: u64, height: u64, elem: u32) -> Outcome {
        let w = Arc::clone(&self.worker);
        let b = w.backend();
        reply((|| {
            self.take_deferred()?;
            let c = self.ctx(ctx)?;
            if width == 0 || height == 0 || !matches!(elem, 4 | 8 | 16) {
                return Err(cu::INVALID_VALUE);
            }
            let (ptr, pitch) = b.mem_alloc_pitch(c, width, height, elem)?;
            let size = pitch.saturating_mul(height);
            if let Err(e) = w.charge(size) {
                let _ = b.mem_free(c, ptr);
                return Err(e);
            }
            self.allocs.insert(ptr, (size, c));
            Ok((ptr, pitch))
        })())
    }

    fn address_reserve(&mut self, size: u64, alignment: u64, addr: u64, flags: u64) -> Outcome {
        reply((|| {
            if size == 0 {
                return Err(cu::INVALID_VALUE);
            }
            let ctx = self.device_ctx(None)?;
            let ptr = self
                .worker
                .backend()
                .address_reserve(ctx, size, alignment, addr, flags)?;
            self.mem.reservations.insert(ptr, size);
            Ok(ptr)
        })())
    }

    fn address_free(&mut self, ptr: u64, size: u64) -> Outcome {
        reply((|| {
            if self.mem.reservations.get(&ptr) != Some(&size) {
                return Err(cu::INVALID_VALUE);
            }
            if self.mem.overlaps_mapping(ptr, ptr + size) {
                // Still mapped: the application must unmap first.
                return Err(cu::INVALID_VALUE);
            }
            let ctx = self.device_ctx(None)?;
            self.worker.backend().address_free(ctx, ptr, size)?;
            self.mem.reservations.remove(&ptr);
            Ok(())
        })())
    }

    fn mem_create(&mut self, size: u64, prop: AllocProp, flags: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            let dev = location_device(self, &prop.location)?;
            if size == 0 || prop.kind != ALLOCATION_PINNED {
                return Err(cu::INVALID_VALUE);
            }
            let ctx = self.device_ctx(Some(dev))?;
            w.charge(size)?;
            let real = w
                .backend()
                .mem_create(ctx, size, &prop, flags)
                .inspect_err(|_| w.uncharge(size))?;
            let id = self.mem.mint(handle::ALLOCATION);
            self.mem.phys.insert(
                id,
                Phys {
                    real,
                    size,
                    refs: 1,
                    dev,
                },
            );
            Ok(id)
        })())
    }

    fn mem_release(&mut self, handle: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            let p = *self.mem.phys.get(&handle).ok_or(cu::INVALID_VALUE)?;
            w.backend()
                .mem_release(self.device_ctx(Some(p.dev))?, p.real)?;
            if p.refs <= 1 {
                self.mem.phys.remove(&handle);
                w.uncharge(p.size);
            } else if let Some(e) = self.mem.phys.get_mut(&handle) {
                e.refs -= 1;
            }
            Ok(())
        })())
    }

    fn mem_map(&mut self, ptr: u64, size: u64, offset: u64, handle: u64, flags: u64) -> Outcome {
        reply((|| {
            let p = *self.mem.phys.get(&handle).ok_or(cu::INVALID_HANDLE)?;
            let end = ptr.checked_add(size).ok_or(cu::INVALID_VALUE)?;
            if size == 0
                || offset.checked_add(size).is_none_or(|e| e > p.size)
                || !self.mem.reservation_holds(ptr, size)
                || self.mem.overlaps_mapping(ptr, end)
            {
                return Err(cu::INVALID_VALUE);
            }
            let ctx = self.device_ctx(Some(p.dev))?;
            self.worker
                .backend()
                .mem_map(ctx, ptr, size, offset, p.real, flags)?;
            self.mem.mappings.insert(ptr, (size, handle));
            Ok(())
        })())
    }

    fn mem_unmap(&mut self, ptr: u64, size: u64) -> Outcome {
        reply((|| {
            // The range must be made of whole mappings, the first at `ptr`.
            let end = ptr.checked_add(size).ok_or(cu::INVALID_VALUE)?;
            if !self.mem.mappings.contains_key(&ptr) {
                return Err(cu::INVALID_VALUE);
            }
            let inside: Vec<u64> = self
                .mem
                .mappings
                .range(ptr..end)
                .map(|(start, (len, _))| (*start, start + len))
                .map(|(start, stop)| if stop <= end { Ok(start) } else { Err(()) })
                .collect::<Result<_, _>>()
                .map_err(|()| cu::INVALID_VALUE)?;
            let ctx = self.device_ctx(None)?;
            self.worker.backend().mem_unmap(ctx, ptr, size)?;
            for start in inside {
                self.mem.mappings.remove(&start);
            }
            Ok(())
        })())
    }

    fn mem_set_access(&mut self, ptr: u64, size: u64, descs: Vec<Access>) -> Outcome {
        reply((|| {
            for d in &descs {
                location_device(self, &d.location)?;
            }
            if !self.mem.covers(ptr, size) || self.mem.pool_allocs.contains_key(&ptr) {
                return Err(cu::INVALID_VALUE);
            }
            let ctx = self.device_ctx(None)?;
            self.worker.backend().mem_set_access(ctx, ptr, size, &descs)
        })())
    }

    fn mem_get_access(&mut self, location: Location, ptr: u64) -> Outcome {
        reply((|| {
            location_device(self, &location)?;
            if !self.mem.covers(ptr, 1) {
                return Err(cu::INVALID_VALUE);
            }
            let ctx = self.device_ctx(None)?;
            self.worker.backend().mem_get_access(ctx, location, ptr)
        })())
    }

    fn granularity(&mut self, prop: AllocProp, option: u32) -> Outcome {
        reply((|| {
            let dev = location_device(self, &prop.location)?;
            let ctx = self.device_ctx(Some(dev))?;
            self.worker.backend().granularity(ctx, &prop, option)
        })())
    }

    fn retain_handle(&mut self, ptr: u64) -> Outcome {
        reply((|| {
            let (start, (size, id)) = self
                .mem
                .mappings
                .range(..=ptr)
                .next_back()
                .map(|(a, b)| (*a, *b))
                .ok_or(cu::INVALID_VALUE)?;
            if ptr >= start + size {
                return Err(cu::INVALID_VALUE);
            }
            let p = *self.mem.phys.get(&id).ok_or(cu::INVALID_VALUE)?;
            let ctx = self.device_ctx(Some(p.dev))?;
            self.worker.backend().retain_handle(ctx, ptr)?;
            if let Some(e) = self.mem.phys.get_mut(&id) {
                e.refs += 1;
            }
            Ok(id)
        })())
    }

    fn alloc_async(&mut self, ctx: u64, size: u64, pool: u64, stream: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            self.take_deferred()?;
            let dev = self.ctx_device(ctx)?;
            let (c, st) = resolve_stream(self, ctx, stream, None)?;
            let id = match pool {
                0 => match self.mem.current_pool.get(&dev) {
                    Some(id) => *id,
                    None => default_pool(self, dev)?,
                },
                id => id,
            };
            let p = find_pool(self, id)?;
            if size == 0 {
                return Err(cu::INVALID_VALUE);
            }
            w.charge(size)?;
            let ptr = w
                .backend()
                .alloc_from_pool(c, size, p.real, st)
                .inspect_err(|_| w.uncharge(size))?;
            self.mem.pool_allocs.insert(ptr, (size, dev));
            Ok(ptr)
        })())
    }

    fn free_async(&mut self, ctx: u64, ptr: u64, stream: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            let (size, _) = *self.mem.pool_allocs.get(&ptr).ok_or(cu::INVALID_VALUE)?;
            let (c, st) = resolve_stream(self, ctx, stream, None)?;
            w.backend().free_async(c, ptr, st)?;
            self.mem.pool_allocs.remove(&ptr);
            w.uncharge(size);
            Ok(())
        })())
    }

    fn device_pool(&mut self, dev: i32, current: bool) -> Outcome {
        reply((|| {
            self.check_dev(dev)?;
            match self.mem.current_pool.get(&dev) {
                Some(id) if current => Ok(*id),
                _ => default_pool(self, dev),
            }
        })())
    }

    fn device_set_pool(&mut self, dev: i32, pool: u64) -> Outcome {
        reply((|| {
            self.check_dev(dev)?;
            if find_pool(self, pool)?.dev != dev {
                return Err(cu::INVALID_VALUE);
            }
            self.mem.current_pool.insert(dev, pool);
            Ok(())
        })())
    }

    fn pool_create(&mut self, props: PoolProps) -> Outcome {
        reply((|| {
            let dev = location_device(self, &props.location)?;
            let ctx = self.device_ctx(Some(dev))?;
            let real = self.worker.backend().pool_create(ctx, &props)?;
            let id = self.mem.mint(handle::POOL);
            self.mem.pools.insert(id, Pool { real, dev });
            Ok(id)
        })())
    }

    fn pool_destroy(&mut self, pool: u64) -> Outcome {
        reply((|| {
            let p = find_pool(self, pool)?;
            if self.mem.default_pool.get(&p.dev) == Some(&pool) {
                // As the real driver: a device's default pool is not destroyed.
                return Err(cu::INVALID_VALUE);
            }
            let ctx = self.device_ctx(Some(p.dev))?;
            self.worker.backend().pool_destroy(ctx, p.real)?;
            self.mem.pools.remove(&pool);
            if self.mem.current_pool.get(&p.dev) == Some(&pool) {
                self.mem.current_pool.remove(&p.dev);
            }
            Ok(())
        })())
    }

    fn pool_set_attribute(&mut self, pool: u64, attr: u32, value: u64) -> Outcome {
        reply((|| {
            let p = find_pool(self, pool)?;
            let ctx = self.device_ctx(Some(p.dev))?;
            self.worker
                .backend()
                .pool_set_attribute(ctx, p.real, attr, value)
        })())
    }

    fn pool_get_attribute(&mut self, pool: u64, attr: u32) -> Outcome {
        reply((|| {
            let p = find_pool(self, pool)?;
            let ctx = self.device_ctx(Some(p.dev))?;
            self.worker.backend().pool_get_attribute(ctx, p.real, attr)
        })())
    }

    fn pool_trim_to(&mut self, pool: u64, keep: u64) -> Outcome {
        reply((|| {
            let p = find_pool(self, pool)?;
            let ctx = self.device_ctx(Some(p.dev))?;
            self.worker.backend().pool_trim(ctx, p.real, keep)
        })())
    }

    fn pool_set_access(&mut self, pool: u64, descs: Vec<Access>) -> Outcome {
        reply((|| {
            let p = find_pool(self, pool)?;
            for d in &descs {
                location_device(self, &d.location)?;
            }
            let ctx = self.device_ctx(Some(p.dev))?;
            self.worker.backend().pool_set_access(ctx, p.real, &descs)
        })())
    }

    fn pool_get_access(&mut self, pool: u64, location: Location) -> Outcome {
        reply((|| {
            let p = find_pool(self, pool)?;
            location_device(self, &location)?;
            let ctx = self.device_ctx(Some(p.dev))?;
            self.worker.backend().pool_get_access(ctx, p.real, location)
        })())
    }

    fn stream_value(&mut self, v: ValueOp) -> Outcome {
        reply((|| {
            self.check_range(v.addr, if v.wide { 8 } else { 4 })?;
            let (c, st) = resolve_stream(self, v.ctx, v.stream, None)?;
            self.worker.backend().stream_value(c, st, &v)
        })())
    }

    fn batch_mem_op(&mut self, ctx: u64, stream: u64, flags: u32, ops: &[u8]) -> Outcome {
        reply((|| {
            check_batch(self, ops)?;
            let (c, st) = resolve_stream(self, ctx, stream, None)?;
            self.worker.backend().batch_mem_op(c, st, flags, ops)
        })())
    }

    /// Answered from the session's own tables: the base and size of
    /// whatever of its memory holds `ptr`.
    fn address_range(&mut self, ptr: u64) -> Outcome {
        let found = self
            .allocs
            .range(..=ptr)
            .next_back()
            .map(|(a, (size, _))| (*a, *size))
            .into_iter()
            .chain(
                self.mem
                    .pool_allocs
                    .range(..=ptr)
                    .next_back()
                    .map(|(a, (size, _))| (*a, *size)),
            )
            .chain(
                self.mem
                    .mappings
                    .range(..=ptr)
                    .next_back()
                    .map(|(a, (size, _))| (*a, *size)),
            )
            .find(|(a, size)| ptr < a + size);
        reply(found.ok_or(cu::NOT_FOUND))
    }
}
