//! TEST ONLY: `MemBackend` over host memory. A physical allocation is a
//! block; mapping it puts the same block at the mapped address, so copies
//! through the mapping reach it (whole allocations only, at offset 0).
//! Pools allocate plain blocks. Stream values act at once: a write stores
//! the value, a wait succeeds when its condition already holds (nothing
//! else could ever change the memory here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tf_protocol::mem_msgs::{Access, AllocProp, Location, PoolProps, ValueOp};
use tf_protocol::status::cu;
use tf_worker_core::mem::{Dst, Src};
use tf_worker_core::{BResult, Backend, BackendCtx, MemBackend};

use crate::{lock, Block, HostBackend, ALIGN};

/// The test device's allocation granularity (as a real GPU's: 2 MiB).
pub const GRANULARITY: u64 = 2 << 20;

#[derive(Default)]
pub(crate) struct HostMem {
    state: Mutex<MemTables>,
}

#[derive(Default)]
struct MemTables {
    next: u64,
    phys: HashMap<u64, (Block, u32)>,
    pools: HashMap<u64, HashMap<u32, u64>>,
    /// Host mirrors (mapped host memory) by address: plain buffers here,
    /// not at the client's address (host kernels reach them by lookup).
    mirrors: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl HostMem {
    fn t(&self) -> std::sync::MutexGuard<'_, MemTables> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the mirror bytes `[addr, addr + n)`.
    pub(crate) fn in_mirror<T>(
        &self,
        addr: u64,
        n: usize,
        f: impl FnOnce(&mut [u8]) -> T,
    ) -> BResult<T> {
        let mut t = self.t();
        let (start, m) = t
            .mirrors
            .range_mut(..=addr)
            .next_back()
            .ok_or(cu::INVALID_VALUE)?;
        let off = (addr - start) as usize;
        let span = m
            .get_mut(off..off.checked_add(n).ok_or(cu::INVALID_VALUE)?)
            .ok_or(cu::INVALID_VALUE)?;
        Ok(f(span))
    }
}

impl MemBackend for HostBackend {
    fn host_mirror_create(
        &self,
        ctx: BackendCtx,
        addr: u64,
        size: u64,
        data: &[u8],
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        let mut m = vec![0u8; usize::try_from(size).map_err(|_| cu::INVALID_VALUE)?];
        m.get_mut(..data.len())
            .ok_or(cu::INVALID_VALUE)?
            .copy_from_slice(data);
        self.mem.t().mirrors.insert(addr, m);
        Ok(())
    }

    fn host_mirror_copy(
        &self,
        ctx: BackendCtx,
        stream: u64,
        dst: u64,
        src: u64,
        size: u64,
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.exec.check_stream(stream)?;
        let n = usize::try_from(size).map_err(|_| cu::INVALID_VALUE)?;
        let mut buf = vec![0u8; n];
        // Work here happens at once: the side in a mirror is the host one.
        if self
            .mem
            .in_mirror(src, n, |m| buf.copy_from_slice(m))
            .is_ok()
        {
            self.memcpy_htod(ctx, dst, &buf)
        } else {
            self.memcpy_dtoh(ctx, &mut buf, src)?;
            self.mem.in_mirror(dst, n, |m| m.copy_from_slice(&buf))
        }
    }

    fn host_mirror_write(&self, addr: u64, data: &[u8]) -> BResult<()> {
        self.mem
            .in_mirror(addr, data.len(), |m| m.copy_from_slice(data))
    }

    fn host_mirror_read(&self, addr: u64, out: &mut [u8]) -> BResult<()> {
        let n = out.len();
        self.mem.in_mirror(addr, n, |m| out.copy_from_slice(m))
    }

    fn host_mirror_drop(&self, ctx: BackendCtx, addr: u64, _len: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.mem
            .t()
            .mirrors
            .remove(&addr)
            .map(|_| ())
            .ok_or(cu::INVALID_VALUE)
    }

    fn memcpy_2d(
        &self,
        ctx: BackendCtx,
        stream: Option<u64>,
        width: u64,
        rows: u64,
        src: Src<'_>,
        mut dst: Dst<'_>,
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        if let Some(s) = stream {
            self.exec.check_stream(s)?;
        }
        let w = width as usize;
        for r in 0..rows {
            let row: Vec<u8> = match &src {
                Src::Host(b) => b[r as usize * w..][..w].to_vec(),
                Src::Device(p) => {
                    let (b, off) = self.find(p.ptr + r * p.pitch, width)?;
                    let v = lock(&b)[off..off + w].to_vec();
                    v
                }
            };
            match &mut dst {
                Dst::Host(b) => b[r as usize * w..][..w].copy_from_slice(&row),
                Dst::Device(p) => {
                    let (b, off) = self.find(p.ptr + r * p.pitch, width)?;
                    lock(&b)[off..off + w].copy_from_slice(&row);
                }
            }
        }
        Ok(())
    }
    fn mem_alloc_pitch(
        &self,
        ctx: BackendCtx,
        width: u64,
        height: u64,
        _elem: u32,
    ) -> BResult<(u64, u64)> {
        // Rows padded to 512 bytes, as GPUs commonly do.
        let pitch = width.div_ceil(512) * 512;
        let ptr = Backend::mem_alloc(self, ctx, pitch * height)?;
        Ok((ptr, pitch))
    }
    fn address_reserve(
        &self,
        ctx: BackendCtx,
        size: u64,
        alignment: u64,
        _addr: u64,
        _flags: u64,
    ) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let align = alignment.max(GRANULARITY);
        let mut s = self.state();
        let p = s.next.div_ceil(align) * align;
        s.next = p + size.div_ceil(ALIGN) * ALIGN + ALIGN;
        Ok(p)
    }
    fn address_free(&self, ctx: BackendCtx, _ptr: u64, _size: u64) -> BResult<()> {
        self.check_ctx(ctx)
    }
    fn mem_create(
        &self,
        ctx: BackendCtx,
        size: u64,
        _prop: &AllocProp,
        _flags: u64,
    ) -> BResult<u64> {
        self.check_ctx(ctx)?;
        if !size.is_multiple_of(GRANULARITY) {
            return Err(cu::INVALID_VALUE);
        }
        {
            let mut s = self.state();
            if s.used + size > self.total {
                return Err(cu::OUT_OF_MEMORY);
            }
            s.used += size;
        }
        let mut t = self.mem.t();
        t.next += 1;
        let h = t.next;
        t.phys
            .insert(h, (Arc::new(Mutex::new(vec![0x5A; size as usize])), 1));
        Ok(h)
    }
    fn mem_release(&self, ctx: BackendCtx, handle: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        let mut t = self.mem.t();
        let (block, refs) = t.phys.get_mut(&handle).ok_or(cu::INVALID_VALUE)?;
        *refs -= 1;
        if *refs == 0 {
            let size = lock(block).len() as u64;
            t.phys.remove(&handle);
            self.state().used -= size;
        }
        Ok(())
    }
    fn mem_map(
        &self,
        ctx: BackendCtx,
        ptr: u64,
        size: u64,
        offset: u64,
        handle: u64,
        _flags: u64,
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        let t = self.mem.t();
        let (block, _) = t.phys.get(&handle).ok_or(cu::INVALID_VALUE)?;
        if offset != 0 || size != lock(block).len() as u64 {
            return Err(cu::NOT_SUPPORTED);
        }
        self.blocks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ptr, Arc::clone(block));
        Ok(())
    }
    fn mem_unmap(&self, ctx: BackendCtx, ptr: u64, size: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
        let inside: Vec<u64> = blocks.range(ptr..ptr + size).map(|(k, _)| *k).collect();
        for k in inside {
            blocks.remove(&k);
        }
        Ok(())
    }
    fn mem_set_access(&self, ctx: BackendCtx, ptr: u64, size: u64, _d: &[Access]) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.find(ptr, size.min(1)).map(|_| ())
    }
    fn mem_get_access(&self, ctx: BackendCtx, _l: Location, ptr: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        self.find(ptr, 1)?;
        // CU_MEM_ACCESS_FLAGS_PROT_READWRITE
        Ok(3)
    }
    fn granularity(&self, ctx: BackendCtx, _prop: &AllocProp, _option: u32) -> BResult<u64> {
        self.check_ctx(ctx)?;
        Ok(GRANULARITY)
    }
    fn retain_handle(&self, ctx: BackendCtx, ptr: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let (block, _) = self.find(ptr, 1)?;
        let mut t = self.mem.t();
        let (h, entry) = t
            .phys
            .iter_mut()
            .find(|(_, (b, _))| Arc::ptr_eq(b, &block))
            .ok_or(cu::INVALID_VALUE)?;
        entry.1 += 1;
        Ok(*h)
    }
    fn pool_create(&self, ctx: BackendCtx, _props: &PoolProps) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let mut t = self.mem.t();
        t.next += 1;
        let p = t.next;
        t.pools.insert(p, HashMap::new());
        Ok(p)
    }
    fn pool_destroy(&self, ctx: BackendCtx, pool: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.mem
            .t()
            .pools
            .remove(&pool)
            .map(|_| ())
            .ok_or(cu::INVALID_VALUE)
    }
    fn pool_set_attribute(&self, ctx: BackendCtx, pool: u64, attr: u32, value: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        let mut t = self.mem.t();
        t.pools
            .get_mut(&pool)
            .ok_or(cu::INVALID_VALUE)?
            .insert(attr, value);
        Ok(())
    }
    fn pool_get_attribute(&self, ctx: BackendCtx, pool: u64, attr: u32) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let t = self.mem.t();
        let attrs = t.pools.get(&pool).ok_or(cu::INVALID_VALUE)?;
        Ok(attrs.get(&attr).copied().unwrap_or(0))
    }
    fn pool_trim(&self, ctx: BackendCtx, pool: u64, _keep: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.mem
            .t()
            .pools
            .get(&pool)
            .map(|_| ())
            .ok_or(cu::INVALID_VALUE)
    }
    fn alloc_from_pool(&self, ctx: BackendCtx, size: u64, pool: u64, stream: u64) -> BResult<u64> {
        self.exec.check_stream(stream)?;
        self.mem.t().pools.get(&pool).ok_or(cu::INVALID_VALUE)?;
        Backend::mem_alloc(self, ctx, size)
    }
    fn free_async(&self, ctx: BackendCtx, ptr: u64, stream: u64) -> BResult<()> {
        self.exec.check_stream(stream)?;
        Backend::mem_free(self, ctx, ptr)
    }
    fn free_now(&self, ctx: BackendCtx, ptr: u64) -> BResult<()> {
        Backend::mem_free(self, ctx, ptr)
    }
    fn batch_mem_op(&self, ctx: BackendCtx, stream: u64, _flags: u32, ops: &[u8]) -> BResult<()> {
        for rec in tf_protocol::mem_msgs::BatchOp::records(ops) {
            let tf_protocol::mem_msgs::BatchOp::Value {
                addr,
                value,
                flags,
                wide,
                write,
            } = rec
            else {
                continue;
            };
            let op = ValueOp {
                ctx,
                stream,
                addr,
                value,
                flags,
                wide,
                write,
            };
            self.stream_value(ctx, stream, &op)?;
        }
        Ok(())
    }
    fn stream_value(&self, ctx: BackendCtx, stream: u64, op: &ValueOp) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.exec.check_stream(stream)?;
        let n = if op.wide { 8 } else { 4 };
        let (b, off) = self.find(op.addr, n as u64)?;
        let mut mem = lock(&b);
        let cell = &mut mem[off..off + n];
        if op.write {
            cell.copy_from_slice(&op.value.to_le_bytes()[..n]);
            return Ok(());
        }
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(cell);
        let cur = u64::from_le_bytes(v);
        let want = if op.wide {
            op.value
        } else {
            op.value & 0xFFFF_FFFF
        };
        // CU_STREAM_WAIT_VALUE_GEQ / EQ / AND / NOR (the low bits of flags).
        let holds = match op.flags & 0x3 {
            0 => {
                if op.wide {
                    cur as i64 >= want as i64
                } else {
                    cur as u32 as i32 >= want as u32 as i32
                }
            }
            1 => cur == want,
            2 => cur & want != 0,
            _ => !(cur | want) != 0,
        };
        if holds {
            Ok(())
        } else {
            // Nothing here could ever satisfy it: fail instead of waiting forever.
            Err(cu::NOT_SUPPORTED)
        }
    }
}
