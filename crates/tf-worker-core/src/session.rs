//! One client's session: its handles, its allocations, its deferred error,
//! and the dispatch of its requests to the backend. Everything a client sends
//! is validated here against this session's own tables, so a client can only
//! name contexts it retained and device ranges it allocated.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tf_protocol::exec_msgs::handle::is_default_stream;
use tf_protocol::status::{cu, nvml};
use tf_protocol::{
    caps, encode_reply, Body, FrameHeader, Hello, HelloAck, InitReply, ProtocolError, Request,
};

use crate::backend::{BackendCtx, Status};
use crate::calls::CoreCalls;
use crate::worker::Worker;

/// Client-visible context ids: a tag in the high bits so a stray integer is
/// never mistaken for one, the device ordinal + 1 in the low bits.
const CTX_TAG: u64 = 0x7C7C_0000_0000_0000;

pub fn ctx_handle(dev: i32) -> u64 {
    CTX_TAG | (dev as u32 as u64 + 1)
}

/// What the connection loop should do after a request.
pub enum Outcome {
    /// Send this reply payload.
    Reply(Vec<u8>),
    /// A validated device-to-host copy: the reply is the status followed by
    /// `size` bytes read from `src`, copied straight into the transport.
    DeviceToHost {
        ctx: BackendCtx,
        src: u64,
        size: usize,
    },
    /// Nothing to send (an enqueue call, or Goodbye's acknowledgement is implicit).
    Silent,
    /// The client said goodbye: close after sending nothing.
    Close,
}

pub struct Session {
    pub id: u64,
    pub(crate) worker: Arc<Worker>,
    hello_done: bool,
    /// Primary-context retains this session holds, per device.
    pub(crate) retained: HashMap<i32, u32>,
    /// Device allocations: start → (size, context).
    pub(crate) allocs: BTreeMap<u64, (u64, BackendCtx)>,
    /// First error of an enqueue call, reported by the next synchronous call.
    deferred: Status,
    devices: usize,
    peer: String,
    pub(crate) nvml: crate::nvml::NvmlState,
    pub(crate) ctxs: crate::ctx::CtxState,
    pub(crate) exec: crate::exec::ExecState,
    pub(crate) mem: crate::mem::MemState,
    pub(crate) graph: crate::graph::GraphState,
    pub(crate) arrays: crate::array::ArrayState,
    /// Primary contexts this session keeps alive until it ends (`device_ctx`).
    anchors: HashMap<i32, BackendCtx>,
    /// `TF_CALL_STATS`: time spent per request, logged when the session ends.
    stats: crate::stats::CallStats,
    /// Host nodes' way back to the client, from the first host node on
    /// (`crate::host_calls`); the receiver until the connection loop takes it.
    host_calls: Option<Arc<crate::host_calls::HostCalls>>,
    host_events: Option<std::sync::mpsc::Receiver<crate::host_calls::Event>>,
}

impl Session {
    pub fn new(worker: Arc<Worker>, peer: String) -> Self {
        let id = worker.next_session_id();
        worker.session_started();
        Self {
            id,
            worker,
            hello_done: false,
            retained: HashMap::new(),
            allocs: BTreeMap::new(),
            deferred: 0,
            devices: 0,
            peer,
            nvml: Default::default(),
            ctxs: Default::default(),
            exec: Default::default(),
            mem: Default::default(),
            graph: Default::default(),
            arrays: Default::default(),
            anchors: HashMap::new(),
            stats: Default::default(),
            host_calls: None,
            host_events: None,
        }
    }

    /// A hook that runs the client's host function `id` (see
    /// `crate::host_calls`); the first one switches the session over.
    pub(crate) fn host_hook(&mut self, id: u64) -> Result<crate::host_calls::HostHook, Status> {
        let calls = match &self.host_calls {
            Some(c) => Arc::clone(c),
            None => {
                let (c, rx) = crate::host_calls::HostCalls::new();
                self.host_calls = Some(Arc::clone(&c));
                self.host_events = Some(rx);
                c
            }
        };
        calls.hook(id)
    }

    /// Once, after the first host node: what the connection loop needs to
    /// serve the session in two threads.
    pub(crate) fn host_calls_begun(
        &mut self,
    ) -> Option<(
        Arc<crate::host_calls::HostCalls>,
        std::sync::mpsc::Receiver<crate::host_calls::Event>,
    )> {
        let rx = self.host_events.take()?;
        Some((Arc::clone(self.host_calls.as_ref()?), rx))
    }

    /// Handles one frame. Malformed requests get `CUDA_ERROR_INVALID_VALUE`
    /// and a rate-limited warning; they never end the session.
    pub fn handle(&mut self, header: FrameHeader, payload: &[u8]) -> Outcome {
        let req = match Request::decode(header.opcode, payload) {
            Ok(r) => r,
            Err(e) => return self.refuse(header, e),
        };
        if !self.hello_done && !matches!(req, Request::Hello(_)) {
            self.worker.warn_limited(&format!(
                "client {} sent a request before the handshake; closing",
                self.peer
            ));
            return Outcome::Close;
        }
        // The call with its arguments (`cuMemAlloc_v2(ctx=0x7c7c…, size=4096)`),
        // formatted only when debug logging is on.
        let _span =
            tracing::debug_span!("call", session = self.id, call = %req, bytes = payload.len())
                .entered();
        let timer = self.stats.start();
        let out = crate::calls::route(self, req);
        self.stats.record(header.opcode, timer);
        if let Outcome::Reply(ref p) = out {
            // Failures are what one reads a debug log for.
            if p.len() >= 4 && p[..4] != [0; 4] {
                let status = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                tracing::debug!(status, "call failed");
                self.worker.note_status(self.id, status);
            }
        }
        if header.is_no_reply() {
            if let Outcome::Reply(ref p) = out {
                let status = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
                if status != 0 && self.deferred == 0 {
                    tracing::debug!(
                        status,
                        "enqueue call failed; reported at the next synchronous call"
                    );
                    self.deferred = status;
                    self.worker.note_status(self.id, status);
                }
            }
            return Outcome::Silent;
        }
        out
    }

    fn refuse(&mut self, header: FrameHeader, e: ProtocolError) -> Outcome {
        self.worker.warn_limited(&format!(
            "client {}: malformed request (opcode {}): {e}",
            self.peer, header.opcode
        ));
        if header.is_no_reply() {
            if self.deferred == 0 {
                self.deferred = cu::INVALID_VALUE;
            }
            return Outcome::Silent;
        }
        Outcome::Reply(encode_reply::<()>(cu::INVALID_VALUE, None))
    }

    /// A synchronous call first reports the deferred error of earlier enqueue calls.
    pub(crate) fn take_deferred(&mut self) -> Result<(), Status> {
        match std::mem::take(&mut self.deferred) {
            0 => Ok(()),
            s => Err(s),
        }
    }

    pub(crate) fn ctx(&self, handle: u64) -> Result<BackendCtx, Status> {
        if handle & !0xFFFF_FFFF != CTX_TAG {
            // Contexts of cuCtxCreate: the ctx domain's own table.
            return self.ctxs.resolve(handle).ok_or(cu::INVALID_CONTEXT);
        }
        let dev = (handle & 0xFFFF_FFFF) as i64 - 1;
        match self.retained.get(&(dev as i32)) {
            Some(n) if *n > 0 => self
                .worker
                .primary_ctx(dev as i32)
                .ok_or(cu::INVALID_CONTEXT),
            _ => Err(cu::INVALID_CONTEXT),
        }
    }

    /// The device of a context id this session may name.
    pub(crate) fn ctx_device(&self, handle: u64) -> Result<i32, Status> {
        self.ctx(handle)?;
        if handle & !0xFFFF_FFFF == CTX_TAG {
            return Ok((handle & 0xFFFF_FFFF) as i32 - 1);
        }
        self.ctxs.device(handle).ok_or(cu::INVALID_CONTEXT)
    }

    /// The primary context of `dev` (default: a device this session already
    /// uses, else 0), kept alive for the whole session by an anchor retain.
    /// Context-free calls (VMM, pools) run in it, and the session's cleanup
    /// can always rely on it: when the application releases its last retain
    /// (cudart does at exit), the real context must not go away under the
    /// streams, events and memory still to be released.
    pub(crate) fn device_ctx(&mut self, dev: Option<i32>) -> Result<BackendCtx, Status> {
        let dev = dev
            .or_else(|| self.anchors.keys().next().copied())
            .unwrap_or(0);
        self.check_dev(dev)?;
        if let Some(c) = self.anchors.get(&dev) {
            return Ok(*c);
        }
        self.worker.retain_primary(dev)?;
        match self.worker.primary_ctx(dev) {
            Some(c) => {
                self.anchors.insert(dev, c);
                Ok(c)
            }
            None => {
                let _ = self.worker.release_primary(dev);
                Err(cu::INVALID_CONTEXT)
            }
        }
    }

    /// The range must lie inside one allocation of this session.
    pub(crate) fn check_range(&self, ptr: u64, len: u64) -> Result<(), Status> {
        let end = ptr.checked_add(len).ok_or(cu::INVALID_VALUE)?;
        match self.allocs.range(..=ptr).next_back() {
            Some((start, (size, _))) if end <= start + size => Ok(()),
            // Globals of the session's modules (cuModuleGetGlobal) are its memory too.
            _ if self.exec.covers(ptr, len) => Ok(()),
            // Mapped VMM ranges and stream-ordered pool allocations.
            _ if self.mem.covers(ptr, len) => Ok(()),
            _ => Err(cu::INVALID_VALUE),
        }
    }

    pub(crate) fn check_dev(&self, dev: i32) -> Result<(), Status> {
        if dev < 0 || dev as usize >= self.devices {
            return Err(cu::INVALID_DEVICE);
        }
        Ok(())
    }

    fn retain(&mut self, dev: i32) -> Result<u64, Status> {
        self.check_dev(dev)?;
        self.worker.retain_primary(dev)?;
        *self.retained.entry(dev).or_insert(0) += 1;
        self.device_ctx(Some(dev))?;
        Ok(ctx_handle(dev))
    }

    fn release(&mut self, dev: i32) -> Result<(), Status> {
        self.check_dev(dev)?;
        match self.retained.get_mut(&dev) {
            Some(n) if *n > 0 => {
                *n -= 1;
                self.worker.release_primary(dev)
            }
            _ => Err(cu::INVALID_CONTEXT),
        }
    }
}

/// A reply with a body, or the error status alone.
pub(crate) fn reply<B: Body>(r: Result<B, Status>) -> Outcome {
    match r {
        Ok(b) => Outcome::Reply(encode_reply(0, Some(&b))),
        Err(s) => Outcome::Reply(encode_reply::<B>(s, None)),
    }
}

/// The core requests: handshake, devices, primary contexts, memory, NVML
/// start-up. The other domains are implemented in their modules.
impl CoreCalls for Session {
    fn hello(&mut self, h: Hello) -> Outcome {
        self.hello_done = true;
        self.nvml.client_pid = h.pid;
        tracing::info!(session = self.id, peer = %self.peer, pid = h.pid, program = %h.program,
            connection_id = %h.connection_id, "client connected");
        reply(
            self.worker
                .backend()
                .driver_version()
                .map(|driver_version| HelloAck {
                    capabilities: caps::ALL & h.capabilities,
                    session_id: self.id,
                    worker_version: format!("tensor-fusion-worker {}", env!("CARGO_PKG_VERSION")),
                    driver_version,
                }),
        )
    }

    fn goodbye(&mut self) -> Outcome {
        Outcome::Close
    }

    fn ping(&mut self) -> Outcome {
        reply(self.take_deferred())
    }

    fn init(&mut self, flags: u32) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            if flags != 0 {
                return Err(cu::INVALID_VALUE);
            }
            if let fault @ 1.. = w.fault() {
                w.warn_limited(&format!(
                    "refusing client {}: this worker lost its GPU context to a faulting kernel (CUDA error {fault}); restart tensor-fusion-worker",
                    self.peer
                ));
                return Err(cu::DEVICE_UNAVAILABLE);
            }
            let devices = w.devices()?;
            self.devices = devices.len();
            Ok(InitReply {
                driver_version: w.backend().driver_version()?,
                devices,
            })
        })())
    }

    fn primary_ctx_retain(&mut self, dev: i32) -> Outcome {
        reply(self.retain(dev))
    }

    fn primary_ctx_release(&mut self, dev: i32) -> Outcome {
        reply(self.release(dev))
    }

    fn primary_ctx_get_state(&mut self, dev: i32) -> Outcome {
        reply((|| {
            self.check_dev(dev)?;
            let (flags, active) = self.worker.backend().primary_ctx_state(dev)?;
            // The client sees its own view: active while it holds a retain.
            let mine = self.retained.get(&dev).copied().unwrap_or(0) > 0;
            Ok((flags, i32::from(mine && active)))
        })())
    }

    fn ctx_synchronize(&mut self, ctx: u64) -> Outcome {
        reply((|| {
            let c = self.ctx(ctx)?;
            self.worker.backend().ctx_synchronize(c)?;
            self.take_deferred()
        })())
    }

    fn mem_alloc(&mut self, ctx: u64, size: u64) -> Outcome {
        reply((|| {
            self.take_deferred()?;
            let c = self.ctx(ctx)?;
            if size == 0 {
                return Err(cu::INVALID_VALUE);
            }
            let ptr = self.worker.alloc(c, size)?;
            self.allocs.insert(ptr, (size, c));
            Ok(ptr)
        })())
    }

    fn mem_free(&mut self, ctx: u64, ptr: u64) -> Outcome {
        reply((|| {
            self.take_deferred()?;
            self.ctx(ctx)?;
            if !self.allocs.contains_key(&ptr) {
                // cuMemFree also frees stream-ordered (pool) allocations.
                return crate::mem::free_pool_alloc_now(self, ptr);
            }
            let (size, c) = self.allocs.get(&ptr).copied().ok_or(cu::INVALID_VALUE)?;
            self.worker.free(c, ptr, size)?;
            self.allocs.remove(&ptr);
            Ok(())
        })())
    }

    fn mem_get_info(&mut self, ctx: u64) -> Outcome {
        reply((|| {
            let c = self.ctx(ctx)?;
            self.worker.mem_get_info(c)
        })())
    }

    fn memcpy_htod(&mut self, ctx: u64, stream: Option<u64>, dst: u64, data: &[u8]) -> Outcome {
        // Copies on streams the client created run in stream order (exec).
        if let Some(st) = stream.filter(|s| !is_default_stream(*s)) {
            return crate::exec::memcpy_htod_async(self, ctx, st, dst, data);
        }
        reply((|| {
            let c = self.ctx(ctx)?;
            self.check_range(dst, data.len() as u64)?;
            self.worker.backend().memcpy_htod(c, dst, data)
        })())
    }

    fn memcpy_dtoh(&mut self, ctx: u64, stream: Option<u64>, src: u64, size: u64) -> Outcome {
        if let Some(st) = stream.filter(|s| !is_default_stream(*s)) {
            return crate::exec::memcpy_dtoh_async(self, ctx, st, src, size);
        }
        let r = (|| {
            self.take_deferred()?;
            let c = self.ctx(ctx)?;
            self.check_range(src, size)?;
            if size > tf_protocol::MAX_PAYLOAD as u64 - 4 {
                return Err(cu::INVALID_VALUE);
            }
            Ok(c)
        })();
        match r {
            // The copy itself runs when the reply is sent, straight
            // into the transport's buffer (see `serve_connection`).
            Ok(c) => Outcome::DeviceToHost {
                ctx: c,
                src,
                size: size as usize,
            },
            Err(s) => Outcome::Reply(encode_reply::<()>(s, None)),
        }
    }

    fn memcpy_dtod(
        &mut self,
        ctx: u64,
        stream: Option<u64>,
        dst: u64,
        src: u64,
        size: u64,
    ) -> Outcome {
        if let Some(st) = stream.filter(|s| !is_default_stream(*s)) {
            return crate::exec::memcpy_dtod_async(self, ctx, st, dst, src, size);
        }
        reply((|| {
            let c = self.ctx(ctx)?;
            self.check_range(dst, size)?;
            self.check_range(src, size)?;
            self.worker.backend().memcpy_dtod(c, dst, src, size)
        })())
    }

    fn memset_d8(&mut self, ctx: u64, dst: u64, value: u8, count: u64) -> Outcome {
        reply((|| {
            let c = self.ctx(ctx)?;
            self.check_range(dst, count)?;
            self.worker.backend().memset_d8(c, dst, value, count)
        })())
    }

    fn memset_d32(&mut self, ctx: u64, dst: u64, value: u32, count: u64) -> Outcome {
        reply((|| {
            let c = self.ctx(ctx)?;
            if !dst.is_multiple_of(4) {
                return Err(cu::INVALID_VALUE);
            }
            self.check_range(dst, count.checked_mul(4).ok_or(cu::INVALID_VALUE)?)?;
            self.worker.backend().memset_d32(c, dst, value, count)
        })())
    }

    fn nvml_init(&mut self) -> Outcome {
        reply(self.worker.nvml_init())
    }

    fn nvml_shutdown(&mut self) -> Outcome {
        reply::<()>(Ok(()))
    }

    fn nvml_memory_info(&mut self, index: u32) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            let (phys_total, phys_free, _used) =
                w.backend()
                    .nvml_memory(index)
                    .map_err(|s| if s == 0 { nvml::UNKNOWN } else { s })?;
            let mine = self.allocs.values().map(|(size, _)| size).sum();
            Ok(w.nvml_view(phys_total, phys_free, mine))
        })())
    }
}

impl Drop for Session {
    /// Frees everything the client left behind: a crashed or killed client
    /// must not leak device memory or keep contexts alive.
    fn drop(&mut self) {
        if let Some(table) = self.stats.table() {
            tracing::info!(session = self.id, "{table}");
        }
        if self.worker.fault() != 0 {
            // The context was lost to a kernel fault: every release would
            // fail with the fault. Exiting the process releases it all (and
            // the parent settles what the ledger still counts).
            let n = self.allocs.len();
            for (_, (size, _)) in std::mem::take(&mut self.allocs) {
                self.worker.uncharge(size);
            }
            tracing::info!(session = self.id, peer = %self.peer, allocations = n, "session ended; its GPU context was lost to a kernel fault, so its objects are released when its process exits");
            self.worker.session_ended();
            return;
        }
        // Domain state first: streams, modules and the like reference
        // contexts and memory released below.
        let w = Arc::clone(&self.worker);
        // Graphs first: they reference the streams, modules and memory below.
        self.graph.cleanup(&w);
        // Texture objects and arrays before the streams their copies ran on.
        self.arrays.cleanup(&w);
        self.exec.cleanup(&w);
        // VMM memory and pools are device objects: released in a context
        // the session anchored.
        self.mem.cleanup(&w, self.anchors.values().next().copied());
        self.ctxs.cleanup(&w);
        self.nvml.cleanup(&w);
        let n = self.allocs.len();
        let bytes: u64 = self.allocs.values().map(|(s, _)| s).sum();
        for (ptr, (size, c)) in std::mem::take(&mut self.allocs) {
            if let Err(s) = self.worker.free(c, ptr, size) {
                tracing::warn!(
                    session = self.id,
                    ptr,
                    status = s,
                    "freeing a departed client's allocation failed"
                );
            }
        }
        for (dev, count) in std::mem::take(&mut self.retained) {
            for _ in 0..count {
                let _ = self.worker.release_primary(dev);
            }
        }
        // Last: the contexts everything above was released in.
        for (dev, _) in std::mem::take(&mut self.anchors) {
            let _ = self.worker.release_primary(dev);
        }
        tracing::info!(session = self.id, peer = %self.peer, freed_allocations = n, freed_bytes = bytes, "session ended");
        self.worker.session_ended();
    }
}
