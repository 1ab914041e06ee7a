//! The process's one session with a worker, shared by the CUDA and NVML
//! export layers. Created on first use (cuInit, cuDriverGetVersion,
//! nvmlInit), never torn down before exit.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, OnceLock};
use std::time::Duration;

use tf_protocol::{
    control, decode_data_reply_with_output, decode_reply, frame::FLAG_NO_REPLY, Body, FrameHeader,
    Hello, HelloAck, Request,
};
use tf_settings::{ClientSettings, ConnectionInfo, ConnectionSource, Host};
use tf_transport::Connection;

use crate::error::ClientError;

/// Connecting gives up after this long; the URL fetch has its own deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bulk copies are cut into frames of at most this many bytes, so copies
/// pipeline and no single frame monopolizes a shared-memory ring.
const CHUNK: usize = 8 << 20;

thread_local! {
    /// The last request the worker refused on this thread, as
    /// `(status, cuMemAlloc_v2(ctx=…, size=…))`, for the `call failed`
    /// debug line of the export that sent it (see `cuda::guard`). Only
    /// filled while debug logging is on.
    static REFUSED: RefCell<Option<(u32, String)>> = const { RefCell::new(None) };
}

/// Remembers a refused request for [`take_refused`], when debug logging is on.
fn note_refused(req: &Request<'_>, status: u32) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let _ = REFUSED.try_with(|r| *r.borrow_mut() = Some((status, req.to_string())));
    }
}

/// The request this thread's last synchronous call sent, if the worker
/// refused it with `status`; clears the record either way.
pub(crate) fn take_refused(status: u32) -> Option<String> {
    let (s, call) = REFUSED.try_with(|r| r.borrow_mut().take()).ok()??;
    (s == status).then_some(call)
}

/// Drops the record: the export that sent the request succeeded anyway.
pub(crate) fn forget_refused() {
    let _ = REFUSED.try_with(|r| r.borrow_mut().take());
}

static CLIENT: OnceLock<Result<Client, ClientError>> = OnceLock::new();
static FORKED: AtomicBool = AtomicBool::new(false);
static LOGGING: Once = Once::new();

/// Sets up logging from TF_* variables once; a bad value is reported on stderr.
pub fn ensure_logging() {
    LOGGING.call_once(|| {
        if let Err(e) = tf_settings::logging::init("libteleport") {
            eprintln!("tensor-fusion client: {e}");
        }
    });
}

/// The session, connecting on first use. The result (also a failure) is
/// kept: a misconfigured client fails every call the same way instead of
/// retrying a dead worker on each of them.
pub fn client() -> Result<&'static Client, &'static ClientError> {
    if FORKED.load(Ordering::Relaxed) {
        static FORKED_ERR: ClientError = ClientError::Forked;
        return Err(&FORKED_ERR);
    }
    CLIENT
        .get_or_init(|| {
            ensure_logging();
            let r = Client::connect();
            if let Err(e) = &r {
                // Without TF_ENABLE_LOG, error events still reach stderr.
                tracing::error!("tensor-fusion client: {e}");
            }
            r
        })
        .as_ref()
}

/// The session if one exists already (no connection attempt).
pub fn existing() -> Option<&'static Client> {
    if FORKED.load(Ordering::Relaxed) {
        return None;
    }
    CLIENT.get().and_then(|r| r.as_ref().ok())
}

extern "C" fn after_fork_in_child() {
    // The child shares the parent's socket or ring; touching it would corrupt
    // the parent's session. CUDA behaves the same way on a local GPU.
    if CLIENT.get().is_some() {
        FORKED.store(true, Ordering::Relaxed);
    }
}

struct Link {
    /// `None` once the process is exiting and the connection was closed.
    conn: Option<Connection>,
    next_id: u64,
    /// Enqueue calls sent since the last synchronous round trip.
    unacked: usize,
}

pub struct Client {
    link: Mutex<Link>,
    /// Nonzero once the connection is lost: a sticky CUresult.
    lost: AtomicU32,
    /// A sticky kernel fault the worker reported (0 if none): like the
    /// driver with a faulted context, every later call that reaches the
    /// worker answers it without asking.
    fault: AtomicU32,
    pub ack: HelloAck,
    max_pending: usize,
    chunk: usize,
    pub target: String,
    pub calls: AtomicU64,
}

impl Client {
    fn connect() -> Result<Client, ClientError> {
        let settings = ClientSettings::from_env()?;
        if let ConnectionSource::Url(url) = &settings.connection {
            tracing::info!(%url, "fetching connection info");
        }
        let info = settings.resolve_connection()?;
        let conn = match &info {
            ConnectionInfo::Native { host, port, .. } => {
                let host = match host {
                    Host::V6(a) => a.to_string(),
                    other => other.to_url_host(),
                };
                tf_transport::connect_native(&host, *port, CONNECT_TIMEOUT)
            }
            ConnectionInfo::Shmem { path, size_mb, .. } => {
                tf_transport::connect_shmem(&tf_settings::shm_file_path(path), *size_mb)
            }
        }
        .map_err(ClientError::Connect)?;
        let target = conn.describe();
        // A quarter of a SHMEM ring per chunk keeps up to four chunks in
        // flight, so both sides copy at once; TCP frames are capped at CHUNK.
        let chunk = CHUNK.min(conn.max_payload() / 2).max(4096);
        let mut link = Link {
            conn: Some(conn),
            next_id: 1,
            unacked: 0,
        };
        let hello = Request::Hello(Hello {
            capabilities: tf_protocol::caps::ALL,
            pid: std::process::id(),
            connection_id: info.id().to_string(),
            program: program_name(),
        });
        let ack = match round_trip::<HelloAck>(&mut link, &hello) {
            Ok(Ok(ack)) => ack,
            Ok(Err(status)) => return Err(ClientError::Handshake(status)),
            Err(e) => return Err(ClientError::Lost(e)),
        };
        // SAFETY: registering a plain extern "C" fn with no captured state.
        unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        tracing::info!(worker = %ack.worker_version, session = ack.session_id, %target, "connected");
        Ok(Client {
            link: Mutex::new(link),
            lost: AtomicU32::new(0),
            fault: AtomicU32::new(0),
            ack,
            max_pending: settings.max_cache_request_count,
            chunk,
            target,
            calls: AtomicU64::new(0),
        })
    }

    /// Most bulk bytes one frame carries (copies and images are cut into this).
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_connected(&self) -> Result<(), u32> {
        match self.lost.load(Ordering::Relaxed) {
            0 => Ok(()),
            s => Err(s),
        }
    }

    fn check_lost(&self) -> Result<(), u32> {
        match self.lost.load(Ordering::Relaxed) {
            0 => match self.fault.load(Ordering::Relaxed) {
                0 => Ok(()),
                f => Err(f),
            },
            s => Err(s),
        }
    }

    /// Remembers a sticky kernel fault (700, 714–719) the worker answered.
    fn note_fault(&self, status: u32) {
        if matches!(status, 700 | 714..=719) {
            let _ = self
                .fault
                .compare_exchange(0, status, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Whether a kernel fault made the context unusable.
    pub fn faulted(&self) -> bool {
        self.fault.load(Ordering::Relaxed) != 0
    }

    /// `cuDevicePrimaryCtxReset` after a fault: the reset succeeds, and the
    /// device stays unavailable to this process, as driver 580 answers
    /// (`CUDA_ERROR_DEVICE_UNAVAILABLE`, measured by
    /// `tests/gpu/cuda/illegal_address.cu`).
    pub fn reset_after_fault(&self) {
        if self.faulted() {
            self.fault.store(46, Ordering::Relaxed);
        }
    }

    /// Records a transport failure as the sticky error and logs it once.
    fn fail(&self, why: String) -> u32 {
        let err = ClientError::Lost(why);
        if self.lost.swap(err.cuda(), Ordering::Relaxed) == 0 {
            tracing::error!(
                "tensor-fusion client: {err} ({}); every CUDA call now fails",
                self.target
            );
        }
        err.cuda()
    }

    /// A synchronous call: sends, waits for the answer. `Err` is a CUresult
    /// (the worker's, or the sticky lost-connection error).
    pub fn call<B: Body>(&self, req: &Request<'_>) -> Result<B, u32> {
        if self.faulted() && releases(req) {
            // See `enqueue`: releases answer an empty success.
            if let Ok(b) = B::get(&mut tf_protocol::Reader::new(&[], "release")) {
                return Ok(b);
            }
        }
        if self.faulted() && answered_after_fault(req) {
            self.check_connected()?;
        } else {
            self.check_lost()?;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let _record = Record(req.opcode(), crate::stats::start());
        let mapped = crate::mapped::any();
        let mut link = self.link();
        if let Some(m) = crate::graph::worker_mode_needed() {
            if let Err(why) = send(
                &mut link,
                &crate::graph::capture_mode_request(m),
                FLAG_NO_REPLY,
            ) {
                return Err(self.fail(why));
            }
        }
        if mapped {
            if let Err(why) = push_host_writes(&mut link, crate::mapped::launches_graph(req)) {
                return Err(self.fail(why));
            }
        }
        let out = match round_trip::<B>(&mut link, req) {
            Ok(r) => {
                link.unacked = 0;
                if let Err(status) = r {
                    note_refused(req, status);
                    self.note_fault(status);
                }
                r
            }
            Err(why) => Err(self.fail(why)),
        };
        drop(link);
        if mapped && out.is_ok() && crate::mapped::waits_for_gpu(req) {
            crate::mapped::pull(false, &mut |addr, size| {
                let r = self
                    .call::<crate::mapped::ReadAnswer>(&crate::mapped::read_request(addr, size));
                r.ok().map(|b| b.0)
            });
        }
        out
    }

    /// A synchronous call whose answer is bulk data (a status, then exactly
    /// `dst.len()` bytes), copied into `dst`.
    pub fn call_into(&self, req: &Request<'_>, dst: &mut [u8]) -> Result<(), u32> {
        self.check_lost()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let t = crate::stats::start();
        let _record = Record(req.opcode(), t);
        let mut link = self.link();
        if let Some(m) = crate::graph::worker_mode_needed() {
            if let Err(why) = send(
                &mut link,
                &crate::graph::capture_mode_request(m),
                FLAG_NO_REPLY,
            ) {
                return Err(self.fail(why));
            }
        }
        let mut follows = false;
        let r = (|| {
            let id = send(&mut link, req, 0)?;
            let conn = link.conn.as_mut().ok_or("connection closed at exit")?;
            recv_answer(conn, |h, payload| {
                if h.request_id != id || !h.is_response() {
                    return Err(format!("answer out of order (expected request {id})"));
                }
                let (r, output) =
                    decode_data_reply_with_output(payload).map_err(|e| e.to_string())?;
                follows = output;
                match r {
                    Ok(data) if data.len() == dst.len() => {
                        dst.copy_from_slice(data);
                        Ok(0)
                    }
                    Ok(_) => Err("data reply has the wrong length".to_string()),
                    Err(status) => Ok(status),
                }
            })
            .map_err(|e| e.to_string())?
        })();
        let r = r.and_then(|status| {
            fetch_output(&mut link, follows).map(|late| if status == 0 { late } else { status })
        });
        match r {
            Ok(status) => {
                link.unacked = 0;
                match status {
                    0 => Ok(()),
                    s => {
                        self.note_fault(s);
                        Err(s)
                    }
                }
            }
            Err(why) => Err(self.fail(why)),
        }
    }

    /// An enqueue call: sent without waiting. Its error, if any, is reported
    /// by the next synchronous call. After `TF_MAX_CACHE_REQUEST_COUNT`
    /// unacknowledged calls a round trip bounds the pipeline.
    pub fn enqueue(&self, req: &Request<'_>) -> Result<(), u32> {
        if self.faulted() && releases(req) {
            // Releasing what a faulted context held succeeds, as natively
            // (cudart tears down its modules in cudaDeviceReset); the
            // worker cannot run it in that context and exits anyway.
            return Ok(());
        }
        self.check_lost()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let t = crate::stats::start();
        let _record = Record(req.opcode(), t);
        let mut link = self.link();
        if let Some(m) = crate::graph::worker_mode_needed() {
            if let Err(why) = send(
                &mut link,
                &crate::graph::capture_mode_request(m),
                FLAG_NO_REPLY,
            ) {
                return Err(self.fail(why));
            }
        }
        if crate::mapped::any() {
            if let Err(why) = push_host_writes(&mut link, crate::mapped::launches_graph(req)) {
                return Err(self.fail(why));
            }
        }
        if let Err(why) = send(&mut link, req, FLAG_NO_REPLY) {
            return Err(self.fail(why));
        }
        link.unacked += 1;
        if link.unacked >= self.max_pending {
            link.unacked = 0;
            return match round_trip::<()>(&mut link, &Request::Ping) {
                Ok(r) => r,
                Err(why) => Err(self.fail(why)),
            };
        }
        Ok(())
    }

    /// Host-to-device copy, chunked: every chunk but the last is an enqueue
    /// call, so chunks stream without a round trip each; the last one is
    /// synchronous unless the whole copy is asynchronous.
    pub fn copy_to_device(
        &self,
        ctx: u64,
        stream: Option<u64>,
        dst: u64,
        src: &[u8],
    ) -> Result<(), u32> {
        let _record = Record(
            if stream.is_some() {
                tf_api::op::cuMemcpyHtoDAsync_v2
            } else {
                tf_api::op::cuMemcpyHtoD_v2
            },
            crate::stats::start(),
        );
        let n = src.len().div_ceil(self.chunk).max(1);
        for (i, part) in src
            .chunks(self.chunk)
            .chain((src.is_empty()).then_some(&[][..]))
            .enumerate()
        {
            let req = Request::MemcpyHtoD {
                ctx,
                stream,
                dst: dst + (i * self.chunk) as u64,
                data: part,
            };
            if i + 1 < n || stream.is_some() {
                self.enqueue(&req)?;
            } else {
                self.call::<()>(&req)?;
            }
        }
        Ok(())
    }

    /// Device-to-host copy, chunked and pipelined (a small window of
    /// requests in flight), each answer copied straight into `dst`.
    pub fn copy_from_device(
        &self,
        ctx: u64,
        stream: Option<u64>,
        src: u64,
        dst: &mut [u8],
    ) -> Result<(), u32> {
        let _record = Record(
            if stream.is_some() {
                tf_api::op::cuMemcpyDtoHAsync_v2
            } else {
                tf_api::op::cuMemcpyDtoH_v2
            },
            crate::stats::start(),
        );
        const WINDOW: usize = 4;
        self.check_lost()?;
        self.calls.fetch_add(1, Ordering::Relaxed);
        let chunk = self.chunk;
        let mut link = self.link();
        let total = dst.len();
        let n = total.div_ceil(chunk);
        let mut first_err = 0u32;
        let mut sent = 0;
        let mut follows = false;
        for i in 0..n {
            while sent < n && sent < i + WINDOW {
                let off = sent * chunk;
                let size = chunk.min(total - off) as u64;
                let req = Request::MemcpyDtoH {
                    ctx,
                    stream,
                    src: src + off as u64,
                    size,
                };
                if let Err(why) = send(&mut link, &req, 0) {
                    return Err(self.fail(why));
                }
                sent += 1;
            }
            let off = i * chunk;
            let part = &mut dst[off..(off + chunk).min(total)];
            let Some(conn) = link.conn.as_mut() else {
                return Err(self.fail("connection closed".into()));
            };
            let got = recv_answer(conn, |_, payload| {
                let (r, output) =
                    decode_data_reply_with_output(payload).map_err(|e| e.to_string())?;
                follows |= output;
                match r {
                    Ok(data) if data.len() == part.len() => {
                        part.copy_from_slice(data);
                        Ok(0)
                    }
                    Ok(_) => Err("device-to-host reply has the wrong length".to_string()),
                    Err(status) => Ok(status),
                }
            });
            match got {
                Ok(Ok(0)) => {}
                Ok(Ok(status)) => first_err = if first_err == 0 { status } else { first_err },
                Ok(Err(why)) => return Err(self.fail(why)),
                Err(e) => return Err(self.fail(e.to_string())),
            }
        }
        match fetch_output(&mut link, follows) {
            Ok(late) if first_err == 0 => first_err = late,
            Ok(_) => {}
            Err(why) => return Err(self.fail(why)),
        }
        link.unacked = 0;
        if first_err != 0 {
            self.note_fault(first_err);
            Err(first_err)
        } else {
            Ok(())
        }
    }

    /// At exit: says goodbye and closes the connection, so the worker frees
    /// the session and (SHMEM) the slot at once instead of waiting for the
    /// heartbeat to stop. Later calls from lingering threads fail cleanly.
    pub fn goodbye(&self) {
        let mut link = self.link();
        if self.lost.load(Ordering::Relaxed) == 0 {
            // One round trip first: device printf output still waiting in
            // the worker (printed by the application's last calls, such as
            // the releases at exit) comes before its answer.
            if round_trip::<()>(&mut link, &Request::Ping).is_ok() {
                let _ = send(&mut link, &Request::Goodbye, FLAG_NO_REPLY);
            }
        }
        self.lost
            .store(ClientError::Lost(String::new()).cuda(), Ordering::Relaxed);
        link.conn = None;
    }
}

/// Requests that only release something the application held.
/// Queries the driver still answers for a context lost to a kernel fault:
/// cudart's `cudaDeviceReset` asks for the context's id before it resets
/// the primary context, and natively gets it.
fn answered_after_fault(req: &Request<'_>) -> bool {
    matches!(
        req,
        Request::Ctx(tf_protocol::ctx_msgs::CtxRequest::Info { .. })
    )
}

fn releases(req: &Request<'_>) -> bool {
    use tf_protocol::exec_msgs::ExecRequest as E;
    matches!(
        req,
        Request::PrimaryCtxRelease { .. }
            | Request::Exec(
                E::ModuleUnload { .. }
                    | E::LibraryUnload { .. }
                    | E::StreamDestroy { .. }
                    | E::EventDestroy { .. }
            )
    )
}

/// Records a request's time when dropped (`TF_CALL_STATS`).
struct Record(u32, Option<std::time::Instant>);

impl Drop for Record {
    fn drop(&mut self) {
        crate::stats::record(self.0, self.1);
    }
}

/// Sends, ahead of the next request, what the application wrote to mapped
/// host memory since the last push (`crate::mapped`); before a graph
/// launch (`graphs`) to the mirrors graphs use too.
fn push_host_writes(link: &mut Link, graphs: bool) -> Result<(), String> {
    for (addr, data) in crate::mapped::take_host_writes(graphs) {
        let w =
            Request::Mem(tf_protocol::mem_msgs::MemRequest::HostMirrorWrite { addr, data: &data });
        send(link, &w, FLAG_NO_REPLY)?;
    }
    Ok(())
}

fn send(link: &mut Link, req: &Request<'_>, flags: u16) -> Result<u64, String> {
    let id = link.next_id;
    link.next_id += 1;
    let conn = link.conn.as_mut().ok_or("connection closed at exit")?;
    send_raw(conn, req, id, flags).map_err(|e| e.to_string())?;
    Ok(id)
}

/// Sends and waits for the matching answer. The outer `Err` is a transport
/// or protocol failure (the connection is then unusable).
fn round_trip<B: Body>(link: &mut Link, req: &Request<'_>) -> Result<Result<B, u32>, String> {
    let id = send(link, req, 0)?;
    let conn = link.conn.as_mut().ok_or("connection closed at exit")?;
    recv_answer(conn, |h, payload| {
        if h.request_id != id || !h.is_response() {
            return Err(format!(
                "answer out of order (expected request {id}, got {})",
                h.request_id
            ));
        }
        decode_reply::<B>(payload).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?
}

/// Waits for the next frame that answers a request, writing device output
/// frames (`control::OUTPUT`, sent before the answer they precede) to this
/// process's standard output and running the host functions graphs reach
/// (`control::HOST_CALL`) on the way.
fn recv_answer<R>(
    conn: &mut Connection,
    answer: impl FnMut(FrameHeader, &[u8]) -> R,
) -> Result<R, tf_transport::TransportError> {
    recv_answer_with(
        conn,
        &mut |bytes| write_stdout(bytes),
        &mut run_host_call,
        answer,
    )
}

/// What a frame turned out to be.
enum Got<R> {
    Answer(R),
    Output,
    Call(u64),
}

/// [`recv_answer`] with device output handed to `output` and host calls to
/// `call`. An output or call frame is known by its opcode alone (no request
/// has it); one without the response flag, or with a request id, is said
/// once in the log and otherwise ignored: it must never break the session.
fn recv_answer_with<R>(
    conn: &mut Connection,
    output: &mut dyn FnMut(&[u8]),
    call: &mut dyn FnMut(&mut Connection, u64) -> Result<(), tf_transport::TransportError>,
    mut answer: impl FnMut(FrameHeader, &[u8]) -> R,
) -> Result<R, tf_transport::TransportError> {
    static WARNED: Once = Once::new();
    loop {
        let got = conn.recv(|h, payload| {
            if h.opcode != control::OUTPUT && h.opcode != control::HOST_CALL {
                return Got::Answer(answer(h, payload));
            }
            let well_formed = h.is_response() && !h.is_no_reply() && h.request_id == 0;
            match (h.opcode, payload.get(..8)) {
                (control::OUTPUT, _) if well_formed => output(payload),
                (control::HOST_CALL, Some(id)) if well_formed && payload.len() == 8 => {
                    return Got::Call(u64::from_le_bytes(id.try_into().unwrap_or([0; 8])));
                }
                _ => WARNED.call_once(|| {
                    tracing::warn!(
                        opcode = h.opcode,
                        flags = h.flags,
                        request_id = h.request_id,
                        "ignoring a malformed output or host-call frame from the worker"
                    )
                }),
            }
            Got::Output
        })?;
        match got {
            Got::Answer(r) => return Ok(r),
            Got::Output => {}
            Got::Call(id) => call(conn, id)?,
        }
    }
}

/// Request ids of the requests a host call makes (distinct from the link's).
static CALL_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 63);

/// A graph reached a host node: brings in what graphs wrote to pinned
/// memory, runs the application's function, sends what it wrote, and
/// tells the worker the graph may go on. The worker serves the mirror
/// requests itself meanwhile (the request this thread waits for may be
/// waiting for this very call).
fn run_host_call(conn: &mut Connection, id: u64) -> Result<(), tf_transport::TransportError> {
    let no_call = &mut |_: &mut Connection, id: u64| {
        tracing::warn!(
            id,
            "the worker sent a host call during another one; ignored"
        );
        Ok(())
    };
    if crate::mapped::any() {
        let mut failed = None;
        crate::mapped::pull(true, &mut |addr, size| {
            let req = crate::mapped::read_request(addr, size);
            let rid = CALL_IDS.fetch_add(1, Ordering::Relaxed);
            let r = send_raw(conn, &req, rid, 0).and_then(|()| {
                recv_answer_with(conn, &mut |b| write_stdout(b), no_call, |h, p| {
                    (h.request_id == rid && h.is_response())
                        .then(|| decode_reply::<crate::mapped::ReadAnswer>(p).ok())
                        .flatten()
                })
            });
            match r {
                Ok(Some(Ok(b))) => Some(b.0),
                Ok(_) => None,
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
        if let Some(e) = failed {
            return Err(e);
        }
    }
    crate::graph::run_host_fn(id);
    for (addr, data) in crate::mapped::take_host_writes(true) {
        let w =
            Request::Mem(tf_protocol::mem_msgs::MemRequest::HostMirrorWrite { addr, data: &data });
        send_raw(
            conn,
            &w,
            CALL_IDS.fetch_add(1, Ordering::Relaxed),
            FLAG_NO_REPLY,
        )?;
    }
    let done = FrameHeader {
        flags: FLAG_NO_REPLY,
        opcode: control::HOST_CALL_DONE,
        length: 0,
        request_id: CALL_IDS.fetch_add(1, Ordering::Relaxed),
    };
    conn.send(done, &[&id.to_le_bytes()])
}

/// Sends a request with the given id straight on a connection.
fn send_raw(
    conn: &mut Connection,
    req: &Request<'_>,
    id: u64,
    flags: u16,
) -> Result<(), tf_transport::TransportError> {
    let (fixed, bulk) = req.encode();
    let header = FrameHeader {
        flags,
        opcode: req.opcode(),
        length: 0,
        request_id: id,
    };
    conn.send(header, &[&fixed, bulk])
}

/// Writes device printf output the worker forwarded to this process's
/// standard output (descriptor 1, as the driver does natively: the
/// application's own C stdio buffer is separate, so lines it has not
/// flushed yet come after). A standard output that cannot be written is
/// said once in the log and otherwise ignored.
fn write_stdout(bytes: &[u8]) {
    use std::io::Write;
    static WARNED: Once = Once::new();
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        WARNED.call_once(|| {
            tracing::warn!("cannot write device printf output to standard output: {e}")
        });
    }
}

/// After a device-to-host copy whose answer said that device output
/// follows it: a `Ping`, whose answer comes after that output. Returns
/// the deferred error the `Ping` reported (0 if none).
fn fetch_output(link: &mut Link, follows: bool) -> Result<u32, String> {
    if !follows {
        return Ok(0);
    }
    Ok(round_trip::<()>(link, &Request::Ping)?.err().unwrap_or(0))
}

fn program_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tf_protocol::frame::FLAG_RESPONSE;
    use tf_transport::TcpConnection;

    fn pair() -> (Connection, Connection) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        let c = |s| Connection::Tcp(TcpConnection::from_stream(s).unwrap());
        (c(a), c(b))
    }

    /// Output frames before an answer are handed on in order; malformed
    /// ones are skipped without breaking the wait for the answer.
    #[test]
    fn device_output_frames_come_before_the_answer_and_bad_ones_are_ignored() {
        let (mut client, mut worker) = pair();
        let out = |flags, request_id| FrameHeader {
            flags,
            opcode: control::OUTPUT,
            length: 0,
            request_id,
        };
        worker.send(out(FLAG_RESPONSE, 0), &[b"line 1\n"]).unwrap();
        worker.send(out(0, 0), &[b"not a response\n"]).unwrap();
        worker
            .send(out(FLAG_RESPONSE, 9), &[b"with an id\n"])
            .unwrap();
        worker.send(out(FLAG_RESPONSE, 0), &[b"line 2\n"]).unwrap();
        let answer = FrameHeader {
            flags: FLAG_RESPONSE,
            opcode: control::PING,
            length: 0,
            request_id: 7,
        };
        worker.send(answer, &[&0u32.to_le_bytes()]).unwrap();
        let mut printed = Vec::new();
        let got = recv_answer_with(
            &mut client,
            &mut |b| printed.extend_from_slice(b),
            &mut |_, _| panic!("no host call was sent"),
            |h, p| (h.request_id, p.to_vec()),
        )
        .unwrap();
        assert_eq!(got, (7, vec![0; 4]));
        assert_eq!(printed, b"line 1\nline 2\n");
    }
}
