//! TEST ONLY. A [`Backend`] that keeps "device memory" in host memory, so the
//! whole client ↔ worker path (protocol, transports, sessions, limits, fault
//! handling) can be exercised in CI without a GPU. It never ships: the
//! `tensor-fusion-worker` binary only has the real-driver backend.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use tf_protocol::status::{cu, nvml};
use tf_protocol::{DeviceInfo, NvmlDeviceInfo, NvmlInitReply};
use tf_worker_core::{BResult, Backend, BackendCtx};

/// Addresses handed out start here, like a GPU's virtual address space, and
/// are never reused so a stale pointer cannot alias a newer allocation.
const BASE: u64 = 0x7f00_0000_0000;
const ALIGN: u64 = 256;
const CTX_BASE: u64 = 0x1000;

type Block = Arc<Mutex<Vec<u8>>>;

pub struct HostBackend {
    devices: usize,
    total: u64,
    state: Mutex<State>,
    blocks: RwLock<BTreeMap<u64, Block>>,
    ctx: host_ctx::HostCtx,
    exec: host_exec::HostExec,
    mem: host_mem::HostMem,
    graph: host_graph::HostGraph,
    arrays: host_array::HostArrays,
    /// Lines `tf_test_printf` launches printed, written to standard output
    /// at the next synchronization, as the driver does with device printf.
    printf: Mutex<String>,
}

#[derive(Default)]
struct State {
    next: u64,
    used: u64,
    retains: BTreeMap<i32, u32>,
}

impl HostBackend {
    /// `TF_TEST_DEVICES` (default 1) devices of `TF_TEST_DEVICE_MEM_MB` (default 16384) each.
    pub fn from_env() -> Self {
        let num = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Self::new(
            num("TF_TEST_DEVICES", 1) as usize,
            num("TF_TEST_DEVICE_MEM_MB", 16384) << 20,
        )
    }

    pub fn new(devices: usize, total_bytes: u64) -> Self {
        Self {
            devices,
            total: total_bytes,
            state: Mutex::new(State {
                next: BASE,
                ..State::default()
            }),
            blocks: RwLock::new(BTreeMap::new()),
            ctx: Default::default(),
            exec: Default::default(),
            mem: Default::default(),
            graph: Default::default(),
            arrays: Default::default(),
            printf: Mutex::new(String::new()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_ctx(&self, ctx: BackendCtx) -> BResult<()> {
        if self.ctx.is_created(ctx) {
            return Ok(());
        }
        let dev = ctx.checked_sub(CTX_BASE).ok_or(cu::INVALID_CONTEXT)?;
        if dev as usize >= self.devices
            || self
                .state()
                .retains
                .get(&(dev as i32))
                .copied()
                .unwrap_or(0)
                == 0
        {
            return Err(cu::INVALID_CONTEXT);
        }
        Ok(())
    }

    /// The block holding `[ptr, ptr+len)` and the offset of `ptr` in it.
    fn find(&self, ptr: u64, len: u64) -> BResult<(Block, usize)> {
        let blocks = self.blocks.read().unwrap_or_else(|e| e.into_inner());
        let (start, block) = blocks.range(..=ptr).next_back().ok_or(cu::INVALID_VALUE)?;
        let size = block.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
        if ptr + len > start + size {
            return Err(cu::INVALID_VALUE);
        }
        Ok((Arc::clone(block), (ptr - start) as usize))
    }

    fn uuid(dev: usize) -> [u8; 16] {
        let mut u = *b"TF-TEST-DEVICE-0";
        u[15] = b'0' + (dev % 10) as u8;
        u
    }
}

fn lock(b: &Block) -> std::sync::MutexGuard<'_, Vec<u8>> {
    b.lock().unwrap_or_else(|e| e.into_inner())
}

// `impl NvmlBackend for HostBackend` (test values) lives in `host_nvml`.
mod host_nvml;
// `impl CtxBackend for HostBackend` (contexts, limits, test tables) lives in `host_ctx`.
mod host_ctx;
// `impl ExecBackend for HostBackend` (bookkeeping; only `tf_test_*` kernels run) lives in `host_exec`.
mod host_exec;
// `impl MemBackend for HostBackend` (VMM, pools, stream values) lives in `host_mem`.
mod host_mem;
// `impl GraphBackend for HostBackend` (captures, explicit graphs replayed
// in dependency order) lives in `host_graph`.
mod host_graph;
// `impl ArrayBackend for HostBackend` (arrays as packed host buffers) lives in `host_array`.
mod host_array;
// The `tf_test_*` kernels that launches and graph replays really run.
mod host_kernels;
// Linking (joins the inputs' PTX) and tensor maps (a deterministic fill).
pub mod host_link;

impl Backend for HostBackend {
    fn describe(&self) -> String {
        format!(
            "host memory, TEST ONLY ({} device(s) of {} MiB)",
            self.devices,
            self.total >> 20
        )
    }

    fn driver_version(&self) -> BResult<i32> {
        Ok(13000)
    }

    fn init(&self) -> BResult<Vec<DeviceInfo>> {
        Ok((0..self.devices)
            .map(|d| DeviceInfo {
                name: format!("TensorFusion Test Device {d} (host memory)"),
                uuid: Self::uuid(d),
                total_mem: self.total,
                pci_bus_id: format!("0000:{:02x}:00.0", d + 1),
                // Every attribute cudart asks for (see host_ctx).
                attributes: host_ctx::device_attributes(d),
            })
            .collect())
    }

    fn primary_ctx_retain(&self, dev: i32) -> BResult<BackendCtx> {
        if dev < 0 || dev as usize >= self.devices {
            return Err(cu::INVALID_DEVICE);
        }
        *self.state().retains.entry(dev).or_insert(0) += 1;
        Ok(CTX_BASE + dev as u64)
    }

    fn primary_ctx_release(&self, dev: i32) -> BResult<()> {
        let mut s = self.state();
        match s.retains.get_mut(&dev) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Ok(())
            }
            _ => Err(cu::INVALID_CONTEXT),
        }
    }

    fn primary_ctx_state(&self, dev: i32) -> BResult<(u32, bool)> {
        Ok((0, self.state().retains.get(&dev).copied().unwrap_or(0) > 0))
    }

    fn ctx_synchronize(&self, ctx: BackendCtx) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.flush_printf();
        Ok(())
    }

    fn mem_alloc(&self, ctx: BackendCtx, size: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let ptr = {
            let mut s = self.state();
            if s.used + size > self.total {
                return Err(cu::OUT_OF_MEMORY);
            }
            let p = s.next;
            s.next += size.div_ceil(ALIGN) * ALIGN + ALIGN;
            s.used += size;
            p
        };
        // Random-looking initial contents: real device memory is not zeroed,
        // and zeros would hide copies that never happened.
        let mut v = vec![0u8; size as usize];
        for (i, b) in v.iter_mut().enumerate().step_by(4096) {
            *b = (i >> 12) as u8 ^ 0xA5;
        }
        self.blocks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ptr, Arc::new(Mutex::new(v)));
        Ok(ptr)
    }

    fn mem_free(&self, ctx: BackendCtx, ptr: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        let b = self
            .blocks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ptr)
            .ok_or(cu::INVALID_VALUE)?;
        self.state().used -= lock(&b).len() as u64;
        Ok(())
    }

    fn mem_get_info(&self, ctx: BackendCtx) -> BResult<(u64, u64)> {
        self.check_ctx(ctx)?;
        Ok((self.total - self.state().used, self.total))
    }

    fn memcpy_htod(&self, ctx: BackendCtx, dst: u64, src: &[u8]) -> BResult<()> {
        self.check_ctx(ctx)?;
        let (b, off) = self.find(dst, src.len() as u64)?;
        lock(&b)[off..off + src.len()].copy_from_slice(src);
        Ok(())
    }

    fn memcpy_dtoh(&self, ctx: BackendCtx, dst: &mut [u8], src: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        let (b, off) = self.find(src, dst.len() as u64)?;
        dst.copy_from_slice(&lock(&b)[off..off + dst.len()]);
        self.flush_printf();
        Ok(())
    }

    fn memcpy_dtod(&self, ctx: BackendCtx, dst: u64, src: u64, size: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        let (db, doff) = self.find(dst, size)?;
        let (sb, soff) = self.find(src, size)?;
        let n = size as usize;
        if Arc::ptr_eq(&db, &sb) {
            lock(&db).copy_within(soff..soff + n, doff);
        } else {
            let tmp = lock(&sb)[soff..soff + n].to_vec();
            lock(&db)[doff..doff + n].copy_from_slice(&tmp);
        }
        Ok(())
    }

    fn memset_d8(&self, ctx: BackendCtx, dst: u64, value: u8, count: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        let (b, off) = self.find(dst, count)?;
        lock(&b)[off..off + count as usize].fill(value);
        Ok(())
    }

    fn memset_d32(&self, ctx: BackendCtx, dst: u64, value: u32, count: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        let (b, off) = self.find(dst, count * 4)?;
        for chunk in lock(&b)[off..off + 4 * count as usize].chunks_exact_mut(4) {
            chunk.copy_from_slice(&value.to_le_bytes());
        }
        Ok(())
    }

    fn nvml_init(&self) -> BResult<NvmlInitReply> {
        Ok(NvmlInitReply {
            driver_version: "580.0-test".into(),
            nvml_version: "13.580.0-test".into(),
            cuda_driver_version: 13000,
            devices: (0..self.devices)
                .map(|d| NvmlDeviceInfo {
                    name: format!("TensorFusion Test Device {d} (host memory)"),
                    uuid: host_nvml::uuid_text(&Self::uuid(d)),
                    pci_bus_id: host_nvml::bus_id(d),
                })
                .collect(),
        })
    }

    fn nvml_memory(&self, index: u32) -> BResult<(u64, u64, u64)> {
        if index as usize >= self.devices {
            return Err(nvml::INVALID_ARGUMENT);
        }
        let used = self.state().used;
        Ok((self.total, self.total - used, used))
    }
}
