//! Host nodes of graphs: the client's host functions, called from a replay.
//!
//! A graph replays on the worker, but its host nodes name functions of the
//! application. The backend gives the driver a host node whose function is
//! a [`HostHook`]: when the replay reaches it, the hook asks the connection
//! loop to send a `HOST_CALL` frame (the client's id of the function) and
//! waits; the client runs the function and answers `HOST_CALL_DONE`; the
//! hook returns and the graph goes on. So the function runs in stream order
//! exactly, in the application's process, as natively.
//!
//! The connection loop cannot wait in the driver while a hook waits for the
//! client (a synchronization that waits for a host node would never end),
//! so from the first host node on a session runs in two threads: the
//! thread that served it so far goes on executing requests (its
//! thread-local driver state, such as the capture mode, stays), and a new
//! thread does the connection's I/O ([`serve_io`]). A host call is sent
//! while the client waits for an answer (or at once, read at its next
//! call); answers are held back while a call is out, so the client sees
//! nothing but what it asked during its function: its reads and writes of
//! host mirrors (graph copies into and out of pinned memory), served here
//! without the executing thread. The cost, a hand-off per request, is paid
//! only by sessions that have host nodes.
//!
//! A client that goes away releases every waiting hook (its function is then
//! not called), so the driver's thread is never stuck.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tf_protocol::frame::{FLAG_NO_REPLY, FLAG_RESPONSE};
use tf_protocol::mem_msgs::{HostBytes, MemRequest};
use tf_protocol::messages::control;
use tf_protocol::status::cu;
use tf_protocol::{FrameHeader, Request};
use tf_transport::Connection;

use crate::session::{reply, Outcome, Session};
use crate::worker::Worker;

/// Runs one host node's function in the client (blocks until it ran, or
/// the client is gone). Given to the backend for its host nodes.
#[derive(Clone)]
pub struct HostHook(Arc<dyn Fn() + Send + Sync>);

impl HostHook {
    /// Calls the client's function and waits for it (on a driver thread).
    pub fn run(&self) {
        (self.0)()
    }

    /// A hook that runs `f` (tests and backends that replay graphs
    /// themselves).
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for HostHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostHook")
    }
}

/// Most host functions one session may name (each costs the backend a
/// small record the driver points to for as long as the process lives).
pub const MAX_HOST_CALLS: usize = 1 << 16;

/// A hook's wait for the client.
#[derive(Default)]
pub(crate) struct Gate {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut d = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*d {
            d = self.cv.wait(d).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// What the connection loop hears from the executing thread and the hooks.
pub(crate) enum Event {
    /// A request was executed (answers only matter when one is expected).
    Done(FrameHeader, Outcome),
    /// A host node was reached: run the client's function `id`.
    Call(u64, Arc<Gate>),
}

/// A session's host calls: the hooks' way to the connection loop.
pub struct HostCalls {
    tx: Mutex<Sender<Event>>,
    /// Gates of calls not yet answered (opened all at once on close).
    open: Mutex<Vec<Arc<Gate>>>,
    closed: AtomicBool,
    hooks: AtomicUsize,
}

impl HostCalls {
    pub(crate) fn new() -> (Arc<Self>, Receiver<Event>) {
        let (tx, rx) = channel();
        let me = Arc::new(Self {
            tx: Mutex::new(tx),
            open: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            hooks: AtomicUsize::new(0),
        });
        (me, rx)
    }

    /// A hook that runs the client's function `id`; `TOO_MANY` past
    /// [`MAX_HOST_CALLS`].
    pub(crate) fn hook(self: &Arc<Self>, id: u64) -> Result<HostHook, u32> {
        if self.hooks.fetch_add(1, Ordering::Relaxed) >= MAX_HOST_CALLS {
            self.hooks.fetch_sub(1, Ordering::Relaxed);
            return Err(cu::OUT_OF_MEMORY);
        }
        let me = Arc::clone(self);
        Ok(HostHook::new(move || me.call(id)))
    }

    fn sender(&self) -> Sender<Event> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// On a driver thread: waits until the client ran function `id`.
    fn call(&self, id: u64) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let gate = Arc::new(Gate::default());
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&gate));
        // Closed between the check and the push: `close` may have missed it.
        if self.closed.load(Ordering::Acquire)
            || self
                .sender()
                .send(Event::Call(id, Arc::clone(&gate)))
                .is_err()
        {
            gate.open();
        }
        gate.wait();
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|g| !Arc::ptr_eq(g, &gate));
    }

    /// The client is gone: every waiting hook returns, later ones at once.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for g in self.open.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            g.open();
        }
    }
}

/// Runs the rest of a session in two threads (see the module docs): this
/// thread executes requests, a new one serves the connection. Returns when
/// the client is gone and the session's resources are released.
pub(crate) fn serve_split(
    mut session: Session,
    conn: Connection,
    calls: Arc<HostCalls>,
    events: Receiver<Event>,
) {
    let (jobs, todo) = channel::<(FrameHeader, Vec<u8>)>();
    let done = calls.sender();
    let worker = Arc::clone(&session.worker);
    let io_calls = Arc::clone(&calls);
    let id = session.id;
    let io = std::thread::Builder::new()
        .name(format!("tf-session-{id}-io"))
        .spawn(move || {
            serve_io(&worker, id, conn, jobs, events);
            // No more answers can reach the client: release the hooks so
            // the driver's thread (and the executing one) can finish.
            io_calls.close();
        });
    let io = match io {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(
                session = id,
                "cannot start the session's I/O thread: {e}; closing"
            );
            calls.close();
            return;
        }
    };
    for (h, payload) in todo {
        let out = session.handle(h, &payload);
        let out = crate::worker::materialize(&session.worker, out);
        let close = matches!(out, Outcome::Close);
        if done.send(Event::Done(h, out)).is_err() || close {
            break;
        }
    }
    calls.close();
    drop(session);
    let _ = io.join();
}

/// The connection side of [`serve_split`].
fn serve_io(
    worker: &Arc<Worker>,
    session: u64,
    mut conn: Connection,
    jobs: Sender<(FrameHeader, Vec<u8>)>,
    events: Receiver<Event>,
) {
    let peer = conn.describe();
    // Answers the client waits for, the call it runs now, calls not sent
    // yet, answers held back while a call is out.
    let mut waiting = 0usize;
    let mut out: Option<(u64, Arc<Gate>)> = None;
    let mut calls: VecDeque<(u64, Arc<Gate>)> = VecDeque::new();
    let mut held: VecDeque<(FrameHeader, Outcome)> = VecDeque::new();
    let gone = |e: &dyn std::fmt::Display| {
        tracing::info!(session, %peer, "client gone: {e}");
    };
    loop {
        // Deliver what can be: answers (unless a call is out), then calls.
        if out.is_none() {
            while let Some((h, o)) = held.pop_front() {
                match answer(worker, session, &mut conn, h, o) {
                    Ok(true) => return,
                    Ok(false) => waiting = waiting.saturating_sub(1),
                    Err(e) => return gone(&e),
                }
            }
            if let Some((cid, gate)) = calls.pop_front() {
                let h = FrameHeader {
                    flags: FLAG_RESPONSE,
                    opcode: control::HOST_CALL,
                    length: 0,
                    request_id: 0,
                };
                if let Err(e) = conn.send(h, &[&cid.to_le_bytes()]) {
                    gate.open();
                    return gone(&e);
                }
                out = Some((cid, gate));
            }
        }
        // Wait: for the client while it runs a function or may send, for
        // the executing thread while the client waits for an answer.
        let listen = out.is_some() || waiting == 0;
        if listen {
            let got = conn.recv_timeout(Duration::from_millis(2), |h, p| (h, p.to_vec()));
            match got {
                Ok(Some((h, p))) => match frame(worker, &mut conn, &mut out, h, &p) {
                    Ok(true) => {}
                    Ok(false) => {
                        if !h.is_no_reply() {
                            waiting += 1;
                        }
                        if jobs.send((h, p)).is_err() {
                            return;
                        }
                    }
                    Err(e) => return gone(&e),
                },
                Ok(None) => {}
                Err(e) => return gone(&e),
            }
            while let Ok(ev) = events.try_recv() {
                take(ev, &mut held, &mut calls);
            }
        } else {
            match events.recv_timeout(Duration::from_secs(1)) {
                Ok(ev) => take(ev, &mut held, &mut calls),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

fn take(
    ev: Event,
    held: &mut VecDeque<(FrameHeader, Outcome)>,
    calls: &mut VecDeque<(u64, Arc<Gate>)>,
) {
    match ev {
        Event::Done(h, o) => {
            if !h.is_no_reply() || matches!(o, Outcome::Close) {
                held.push_back((h, o));
            }
        }
        Event::Call(id, gate) => calls.push_back((id, gate)),
    }
}

/// Sends an executed request's answer; `Ok(true)`: the session ends.
fn answer(
    worker: &Worker,
    session: u64,
    conn: &mut Connection,
    h: FrameHeader,
    o: Outcome,
) -> Result<bool, tf_transport::TransportError> {
    match o {
        Outcome::Close => Ok(true),
        Outcome::Reply(payload) => {
            crate::worker::send_answer(worker, session, conn, h, &payload)?;
            Ok(false)
        }
        // `materialize` turned bulk answers into replies; nothing else
        // reaches here.
        Outcome::DeviceToHost { .. } | Outcome::Silent => Ok(false),
    }
}

/// Handles a frame that needs no executing thread: the end of a host call,
/// and (while one is out) the client's host-mirror reads and writes.
/// `Ok(false)`: the frame is a request for the executing thread.
fn frame(
    worker: &Worker,
    conn: &mut Connection,
    out: &mut Option<(u64, Arc<Gate>)>,
    h: FrameHeader,
    p: &[u8],
) -> Result<bool, tf_transport::TransportError> {
    if h.opcode == control::HOST_CALL_DONE {
        let id = p
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
        match out.take() {
            Some((cid, gate)) if Some(cid) == id => gate.open(),
            other => {
                *out = other;
                worker.warn_limited("a client finished a host function that was not called");
            }
        }
        return Ok(true);
    }
    if out.is_none()
        || !(h.opcode == control::HOST_MIRROR_READ || h.opcode == control::HOST_MIRROR_WRITE)
    {
        return Ok(false);
    }
    // The executing thread may be waiting for this very call: the backend
    // checks that the range lies in one of this process's mirrors.
    let b = worker.backend();
    let outcome = match Request::decode(h.opcode, p) {
        Ok(Request::Mem(MemRequest::HostMirrorRead { addr, size })) => reply(
            usize::try_from(size)
                .ok()
                .filter(|&n| n <= tf_protocol::mem_msgs::MAX_HOST_MIRROR)
                .ok_or(cu::INVALID_VALUE)
                .and_then(|n| {
                    let mut v = vec![0u8; n];
                    b.host_mirror_read(addr, &mut v).map(|()| HostBytes(v))
                }),
        ),
        Ok(Request::Mem(MemRequest::HostMirrorWrite { addr, data })) => {
            reply(b.host_mirror_write(addr, data))
        }
        _ => reply::<()>(Err(cu::INVALID_VALUE)),
    };
    if h.flags & FLAG_NO_REPLY == 0 {
        if let Outcome::Reply(payload) = outcome {
            let rh = FrameHeader {
                flags: FLAG_RESPONSE,
                opcode: h.opcode,
                length: 0,
                request_id: h.request_id,
            };
            conn.send(rh, &[&payload])?;
        }
    }
    Ok(true)
}
