//! State shared by all sessions of one worker: the backend, the memory limit
//! and its accounting, cached device facts, and the accept loops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tf_protocol::frame::FLAG_RESPONSE;
use tf_protocol::messages::{control, DATA_OUTPUT_FOLLOWS};
use tf_protocol::status::cu;
use tf_protocol::{DeviceInfo, FrameHeader, NvmlInitReply};
use tf_transport::Connection;

use crate::backend::{BResult, Backend, BackendCtx};
use crate::session::{Outcome, Session};

pub struct Worker {
    backend: Box<dyn Backend>,
    /// `TF_CUDA_MEMORY_LIMIT` in bytes; `None` = unlimited.
    limit: Option<u64>,
    /// Bytes charged against `limit` by all clients of the worker.
    used: Ledger,
    sessions: AtomicU64,
    devices: OnceLock<Vec<DeviceInfo>>,
    primary: Mutex<HashMap<i32, (BackendCtx, u32)>>,
    last_warn: Mutex<Option<Instant>>,
    /// Sessions alive now.
    active: AtomicU64,
    /// The sticky status of a kernel fault that lost the GPU context for
    /// every client of this process (0 while healthy); see [`Worker::note_status`].
    fault: AtomicU32,
    /// Exit once a fault happened and the last session is gone (the CLI
    /// sets it: a supervisor then restarts the worker).
    exit_on_fault: AtomicBool,
    /// This process serves one session of a worker that runs a process per
    /// session: a fault then loses only this client's context.
    process_per_session: AtomicBool,
    /// This process's descriptor 1, captured for its one client (a process
    /// per session): what the driver prints there (device printf) is sent
    /// to the client before the next answer.
    output: OnceLock<tf_isolation::StdoutCapture>,
}

/// Where the bytes charged against the memory limit are counted: in this
/// process (one process serves every session), or in memory shared with
/// the worker's other session processes (a process per session): counter 0
/// of the shared page holds the worker's total, counter `slot` what this
/// process charged, which the parent returns should the process die
/// without returning it (a crash, or a context lost to a kernel fault).
pub enum Ledger {
    Local(AtomicU64),
    Shared {
        page: tf_isolation::SharedCounter,
        slot: usize,
    },
}

impl Ledger {
    /// Bytes charged by all clients of the worker.
    fn get(&self) -> &AtomicU64 {
        match self {
            Self::Local(a) => a,
            Self::Shared { page, .. } => page.get(0),
        }
    }

    /// Also counts `size` bytes as this process's (after charging them).
    fn mine_add(&self, size: u64) {
        if let Self::Shared { page, slot } = self {
            page.get(*slot).fetch_add(size, Ordering::Relaxed);
        }
    }

    fn mine_sub(&self, size: u64) {
        if let Self::Shared { page, slot } = self {
            page.get(*slot).fetch_sub(size, Ordering::Relaxed);
        }
    }
}

/// Statuses after which the CUDA context is unusable (sticky kernel faults):
/// illegal address, hardware stack error, illegal instruction, misaligned
/// address, invalid address space, invalid PC, launch failure.
pub fn is_sticky_fault(status: u32) -> bool {
    matches!(status, 700 | 714..=719)
}

impl Worker {
    pub fn new(backend: Box<dyn Backend>, limit_bytes: Option<u64>) -> Arc<Self> {
        Self::with_ledger(backend, limit_bytes, Ledger::Local(AtomicU64::new(0)))
    }

    /// A worker whose memory accounting is `ledger` (a session process
    /// passes the ledger it shares with its parent and siblings).
    pub fn with_ledger(
        backend: Box<dyn Backend>,
        limit_bytes: Option<u64>,
        ledger: Ledger,
    ) -> Arc<Self> {
        Arc::new(Self {
            backend,
            limit: limit_bytes,
            used: ledger,
            sessions: AtomicU64::new(0),
            devices: OnceLock::new(),
            primary: Mutex::new(HashMap::new()),
            last_warn: Mutex::new(None),
            active: AtomicU64::new(0),
            fault: AtomicU32::new(0),
            exit_on_fault: AtomicBool::new(false),
            process_per_session: AtomicBool::new(false),
            output: OnceLock::new(),
        })
    }

    /// Makes the process exit when the GPU context was lost to a kernel
    /// fault and the last client has gone (set by the worker binary).
    pub fn set_exit_on_fault(&self, on: bool) {
        self.exit_on_fault.store(on, Ordering::Relaxed);
    }

    /// Marks this process as one session's process (a process per session).
    pub fn set_process_per_session(&self) {
        self.process_per_session.store(true, Ordering::Relaxed);
    }

    /// Whether this process serves one session only (its address space is
    /// that client's: mapped host memory can be mirrored at the client's
    /// addresses).
    pub fn is_process_per_session(&self) -> bool {
        self.process_per_session.load(Ordering::Relaxed)
    }

    /// Sends what the driver prints to this process's standard output (device
    /// printf) to the client: the process serves one client only.
    pub fn set_output_capture(&self, capture: tf_isolation::StdoutCapture) {
        let _ = self.output.set(capture);
    }

    /// Watches every status a session answers. A sticky kernel fault loses
    /// the context that all sessions share, and on driver 580 not even a
    /// reset makes the device usable again in this process: say so once,
    /// refuse new clients (`cuInit`), and exit when the last one has gone.
    pub fn note_status(&self, session: u64, status: u32) {
        if is_sticky_fault(status)
            && self
                .fault
                .compare_exchange(0, status, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            if self.process_per_session.load(Ordering::Relaxed) {
                tracing::warn!(
                    session,
                    status,
                    "a kernel of client session {session} faulted (CUDA error {status}): this client's GPU context is lost, as it would be natively (its later calls fail with that error); the worker's other clients run in their own processes and are not affected"
                );
                return;
            }
            tracing::error!(
                session,
                status,
                "a kernel of client session {session} faulted (CUDA error {status}): the GPU context shared by this worker's clients is lost and cannot be recovered in this process; new clients are refused, and the worker exits when its last client has gone (restart it, or let its supervisor do so)"
            );
        }
    }

    /// The sticky fault that lost the GPU context, or 0.
    pub fn fault(&self) -> u32 {
        self.fault.load(Ordering::Acquire)
    }

    pub(crate) fn session_started(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn session_ended(&self) {
        let left = self.active.fetch_sub(1, Ordering::AcqRel) - 1;
        let fault = self.fault();
        if left == 0 && fault != 0 && self.exit_on_fault.load(Ordering::Relaxed) {
            tracing::error!(
                status = fault,
                "exiting: the GPU context was lost to a faulting kernel (CUDA error {fault}) and no client is left; restart tensor-fusion-worker"
            );
            std::process::exit(3);
        }
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Makes the next session id `id` (a session process serves the id its
    /// parent assigned, so logs of all processes agree).
    pub fn set_next_session_id(&self, id: u64) {
        self.sessions.store(id.saturating_sub(1), Ordering::Relaxed);
    }

    pub fn next_session_id(&self) -> u64 {
        self.sessions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Bytes allocated by all clients now.
    pub fn used_bytes(&self) -> u64 {
        self.used.get().load(Ordering::Relaxed)
    }

    /// Device facts, fetched from the backend once (they cannot change) with
    /// total memory capped by the limit.
    pub fn devices(&self) -> BResult<Vec<DeviceInfo>> {
        if let Some(d) = self.devices.get() {
            return Ok(d.clone());
        }
        let mut devs = self.backend.init()?;
        for d in &mut devs {
            d.total_mem = self.cap(d.total_mem);
        }
        Ok(self.devices.get_or_init(|| devs).clone())
    }

    fn cap(&self, total: u64) -> u64 {
        self.limit.map_or(total, |l| l.min(total))
    }

    pub fn primary_ctx(&self, dev: i32) -> Option<BackendCtx> {
        self.primary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&dev)
            .map(|(c, _)| *c)
    }

    /// The worker holds one backend retain per device while any session holds one.
    pub fn retain_primary(&self, dev: i32) -> BResult<()> {
        let mut p = self.primary.lock().unwrap_or_else(|e| e.into_inner());
        match p.get_mut(&dev) {
            Some((_, n)) => *n += 1,
            None => {
                let c = self.backend.primary_ctx_retain(dev)?;
                p.insert(dev, (c, 1));
            }
        }
        Ok(())
    }

    pub fn release_primary(&self, dev: i32) -> BResult<()> {
        let mut p = self.primary.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, n)) = p.get_mut(&dev) else {
            return Err(cu::INVALID_CONTEXT);
        };
        *n -= 1;
        if *n == 0 {
            p.remove(&dev);
            self.backend.primary_ctx_release(dev)?;
        }
        Ok(())
    }

    /// Counts `size` bytes against the memory limit before they are
    /// allocated, so concurrent sessions can never overshoot together. Every
    /// allocation path (plain, VMM, pools) charges here.
    pub fn charge(&self, size: u64) -> BResult<()> {
        if let Some(limit) = self.limit {
            let mut cur = self.used.get().load(Ordering::Relaxed);
            loop {
                let next = cur
                    .checked_add(size)
                    .filter(|n| *n <= limit)
                    .ok_or(cu::OUT_OF_MEMORY)?;
                match self.used.get().compare_exchange_weak(
                    cur,
                    next,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.used.mine_add(size);
                        return Ok(());
                    }
                    Err(c) => cur = c,
                }
            }
        }
        self.used.get().fetch_add(size, Ordering::Relaxed);
        self.used.mine_add(size);
        Ok(())
    }

    /// Returns bytes of an allocation that is gone (or never came).
    pub fn uncharge(&self, size: u64) {
        self.used.mine_sub(size);
        self.used.get().fetch_sub(size, Ordering::Relaxed);
    }

    /// Allocates within the memory limit.
    pub fn alloc(&self, ctx: BackendCtx, size: u64) -> BResult<u64> {
        self.charge(size)?;
        self.backend
            .mem_alloc(ctx, size)
            .inspect_err(|_| self.uncharge(size))
    }

    pub fn free(&self, ctx: BackendCtx, ptr: u64, size: u64) -> BResult<()> {
        self.backend.mem_free(ctx, ptr)?;
        self.uncharge(size);
        Ok(())
    }

    /// `(free, total)` as a client sees it: total capped by the limit, free
    /// bounded by what the limit leaves.
    pub fn mem_get_info(&self, ctx: BackendCtx) -> BResult<(u64, u64)> {
        let (free, total) = self.backend.mem_get_info(ctx)?;
        Ok(match self.limit {
            Some(l) => (free.min(l.saturating_sub(self.used_bytes())), l.min(total)),
            None => (free, total),
        })
    }

    pub fn nvml_init(&self) -> BResult<NvmlInitReply> {
        self.backend.nvml_init()
    }

    /// NVML `(total, free, used)` as one client sees its virtual GPU: total
    /// = min(limit, physical); used = what this client allocated; free =
    /// what it could still allocate (the limit left by all clients, and no
    /// more than is physically free).
    pub fn nvml_view(&self, phys_total: u64, phys_free: u64, mine: u64) -> (u64, u64, u64) {
        let total = self.cap(phys_total);
        let used = mine.min(total);
        let left = self.limit.map_or(phys_free, |l| {
            phys_free.min(l.saturating_sub(self.used_bytes()))
        });
        (total, left.min(total - used), used)
    }

    /// Warnings a client can trigger are rate-limited (one per second) so a
    /// hostile client cannot flood the log.
    pub fn warn_limited(&self, msg: &str) {
        let mut last = self.last_warn.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            *last = Some(Instant::now());
            tracing::warn!("{msg}");
        }
    }
}

/// Most bytes of device output one frame carries.
const OUTPUT_CHUNK: usize = 1 << 20;

/// Sends what was printed to the captured standard output since the last
/// answer (device printf) as `OUTPUT` frames, before the next answer. A
/// note on stdout says how much was dropped, if the buffer overflowed.
fn send_output(
    worker: &Worker,
    session: u64,
    conn: &mut Connection,
) -> Result<(), tf_transport::TransportError> {
    let Some(capture) = worker.output.get() else {
        return Ok(());
    };
    let mut out = capture.take();
    if out.dropped > 0 {
        worker.warn_limited(&format!(
            "session {session}: {} bytes of device printf output were dropped (more than {} MiB between two answers)",
            out.dropped,
            OUTPUT_BUFFER >> 20
        ));
        out.bytes.extend_from_slice(
            format!(
                "\n[tensor-fusion: {} bytes of device printf output were dropped: more than {} MiB between two synchronizations]\n",
                out.dropped,
                OUTPUT_BUFFER >> 20
            )
            .as_bytes(),
        );
    }
    let chunk = OUTPUT_CHUNK.min(conn.max_payload()).max(1);
    for part in out.bytes.chunks(chunk) {
        let h = FrameHeader {
            flags: FLAG_RESPONSE,
            opcode: control::OUTPUT,
            length: 0,
            request_id: 0,
        };
        conn.send(h, &[part])?;
    }
    Ok(())
}

/// Requests after which the driver may have written device printf output:
/// the points where it flushes its printf buffer (synchronizations,
/// blocking copies, module loads and unloads, context destruction), and
/// the client's own requests for pending output (`Ping`, `Goodbye`).
/// Checking for output costs a flush and a read, so other answers skip it;
/// output printed at a launch goes with the next of these.
fn may_print(opcode: u32) -> bool {
    use tf_api::op;
    use tf_protocol::messages::control;
    matches!(
        opcode,
        op::cuCtxSynchronize
            | op::cuStreamSynchronize
            | op::cuEventSynchronize
            | op::cuMemcpyHtoD_v2
            | op::cuMemcpyDtoH_v2
            | op::cuMemcpyDtoD_v2
            | op::cuMemcpyDtoHAsync_v2
            | op::cuMemcpy2DUnaligned_v2
            | op::cuModuleLoadData
            | op::cuModuleUnload
            | op::cuLibraryUnload
            | op::cuDevicePrimaryCtxReset_v2
            | op::cuCtxDestroy_v2
    ) || opcode == control::PING
        || opcode == control::GOODBYE
}

/// Most device output a session process keeps between two answers; the
/// excess is dropped (counted), never blocking the driver's write.
pub const OUTPUT_BUFFER: usize = 4 << 20;

/// Sends an answer, preceded by the device output printed since the last
/// one when the request is one after which the driver may have printed.
pub(crate) fn send_answer(
    worker: &Worker,
    session: u64,
    conn: &mut Connection,
    h: FrameHeader,
    payload: &[u8],
) -> Result<(), tf_transport::TransportError> {
    if worker.output.get().is_some() && may_print(h.opcode) {
        send_output(worker, session, conn)?;
    }
    let rh = FrameHeader {
        flags: FLAG_RESPONSE,
        opcode: h.opcode,
        length: 0,
        request_id: h.request_id,
    };
    conn.send(rh, &[payload])
}

/// A device-to-host answer as a plain reply (status, then the bytes), for
/// a connection loop that does not execute requests itself
/// (`crate::host_calls`).
pub(crate) fn materialize(worker: &Worker, out: Outcome) -> Outcome {
    let Outcome::DeviceToHost { ctx, src, size } = out else {
        return out;
    };
    let mut buf = vec![0u8; 4 + size];
    fill_dtoh(worker, ctx, src, &mut buf);
    Outcome::Reply(buf)
}

/// Writes a device-to-host answer into `buf`: the status word, then the
/// `buf.len() - 4` bytes at `src`. The copy synchronized, so the driver may
/// have printed now: the data is already in the answer, so the output can
/// only follow it; `DATA_OUTPUT_FOLLOWS` makes the client ask for it (a
/// `Ping`) before the copy returns.
fn fill_dtoh(worker: &Worker, ctx: BackendCtx, src: u64, buf: &mut [u8]) {
    let (status, data) = buf.split_at_mut(4);
    let mut s = worker
        .backend()
        .memcpy_dtoh(ctx, data, src)
        .err()
        .unwrap_or(0);
    if worker.output.get().is_some_and(|c| c.pending()) {
        s |= DATA_OUTPUT_FOLLOWS;
    }
    status.copy_from_slice(&s.to_le_bytes());
}

/// Serves one client connection until it closes, then frees its resources.
pub fn serve_connection(worker: Arc<Worker>, mut conn: Connection) {
    let peer = conn.describe();
    let mut session = Session::new(worker, peer.clone());
    loop {
        if let Some((calls, events)) = session.host_calls_begun() {
            // The session has host nodes from now on (`crate::host_calls`).
            tracing::debug!(
                session = session.id,
                "host nodes: requests now run beside the connection loop"
            );
            return crate::host_calls::serve_split(session, conn, calls, events);
        }
        let outcome = conn.recv(|h, payload| (h, session.handle(h, payload)));
        match outcome {
            Ok((h, Outcome::Reply(payload))) => {
                if let Err(e) = send_answer(&session.worker, session.id, &mut conn, h, &payload) {
                    tracing::info!(session = session.id, %peer, "client gone while answering: {e}");
                    break;
                }
            }
            Ok((h, Outcome::DeviceToHost { ctx, src, size })) => {
                let rh = FrameHeader {
                    flags: FLAG_RESPONSE,
                    opcode: h.opcode,
                    length: 0,
                    request_id: h.request_id,
                };
                let worker = &session.worker;
                if worker.output.get().is_some() && may_print(h.opcode) {
                    if let Err(e) = send_output(worker, session.id, &mut conn) {
                        tracing::info!(session = session.id, %peer, "client gone while answering: {e}");
                        break;
                    }
                }
                let sent = conn.send_with(rh, 4 + size, |buf| fill_dtoh(worker, ctx, src, buf));
                if let Err(e) = sent {
                    tracing::info!(session = session.id, %peer, "client gone while answering: {e}");
                    break;
                }
            }
            Ok((_, Outcome::Silent)) => {}
            Ok((_, Outcome::Close)) => break,
            Err(e) => {
                if e.is_peer_gone() {
                    tracing::info!(session = session.id, %peer, "client disconnected: {e}");
                } else {
                    tracing::warn!(session = session.id, %peer, "closing connection: {e}");
                }
                break;
            }
        }
    }
}
