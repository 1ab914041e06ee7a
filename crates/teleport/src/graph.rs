//! Stream capture and CUDA graphs (issue 3).
//!
//! Captures run on the worker: between `cuStreamBeginCapture` and
//! `cuStreamEndCapture` the launches, memsets and device copies this client
//! enqueues reach the worker's capturing stream like any other work. Graph
//! and executable-graph ids are minted here, so launching, uploading and
//! destroying graphs never waits for the worker; ending a capture,
//! instantiating and updating are synchronous because their errors matter
//! at the call.
//!
//! Capture status. While no capture is under way in this process (the
//! usual case: PyTorch asks before many allocations), `cuStreamIsCapturing`
//! and `cuStreamGetCaptureInfo*` answer "none" here; otherwise the worker
//! is asked, since other streams join a capture through event waits.
//!
//! Explicit graph building (`cuGraphCreate`, `cuGraphAdd*Node`, node
//! queries, kernel node parameters) is in `build`.
//!
//! Host memory in graphs. A graph replays on the worker, later, where this
//! process's memory does not exist. A copy between pinned memory and the
//! device on a capturing stream, or a copy node with a pinned side, names
//! the range's *mirror* in the session process (same address, see
//! `crate::mapped`): pushed before each graph launch, pulled after the
//! waits that follow. Pageable memory cannot be mirrored: such copies
//! answer `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED` (captured) or
//! `CUDA_ERROR_NOT_SUPPORTED` (nodes), with a log line.
//!
//! Host functions in graphs (`cuLaunchHostFunc` while capturing, host
//! nodes): the worker's node calls back (`HOST_CALL`, see
//! `tf_worker_core::host_calls`) and the function runs here, in stream
//! order, while the application waits for the GPU (its next synchronizing
//! call), with pinned mirrors brought in before and sent back after.
//! Functions are named on the wire by ids minted here ([`host_fn_id`]), so
//! the worker can only ask for functions the application gave.
//!
//! Not remoted: the node kinds and per-node updates that `build` does not
//! list.

mod build;

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use tf_protocol::graph_msgs::{handle, GraphRequest};
use tf_protocol::status::cu;
use tf_protocol::Request;

use crate::cuda::{guard, out, session};
use crate::exec::{ctx_or_zero, mint, wire_stream};

type CUresult = u32;
type Handle = *mut c_void;

/// `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED`.
pub(crate) const CAPTURE_UNSUPPORTED: CUresult = 900;
/// `CUDA_GRAPH_INSTANTIATE_FLAG_UPLOAD`: only meaningful with parameters.
const FLAG_UPLOAD: u64 = 2;

/// Captures begun and not yet ended in this process.
static CAPTURES: AtomicUsize = AtomicUsize::new(0);
/// Streams capturing because this process began it there: (stream, graph,
/// begun in global mode).
static ORIGINS: Mutex<Vec<(u64, u64, bool)>> = Mutex::new(Vec::new());
/// Captures begun in global mode and not yet ended.
static GLOBAL_CAPTURES: AtomicUsize = AtomicUsize::new(0);
/// The capture mode last applied to the worker thread running this
/// client's calls (the driver's default, global, at first).
static WORKER_MODE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

thread_local! {
    /// This thread's `CUstreamCaptureMode` (global by default).
    static MODE: Cell<c_uint> = const { Cell::new(0) };
    /// Captures this thread began and has not ended.
    static BEGAN: Cell<usize> = const { Cell::new(0) };
}

/// `CU_STREAM_CAPTURE_MODE_THREAD_LOCAL`, `CU_STREAM_CAPTURE_MODE_RELAXED`.
const THREAD_LOCAL: c_uint = 1;
const RELAXED: c_uint = 2;

/// Capture modes. Every application thread's calls run on one worker
/// thread, which is also the one capturing (always in thread-local mode,
/// see `tf_worker_core::graph`). Natively a call that is "unsafe" during a
/// capture (an allocation, a registration) is refused, and invalidates the
/// capture, only when made by the capturing thread, or by any thread in
/// global mode while a global capture is under way; relaxed threads are
/// never refused. So while a capture is under way, before each request the
/// worker thread is given the mode that refuses exactly what the calling
/// thread would be refused: this thread's own when it began a capture,
/// thread-local (refusing) for a global-mode thread during a global
/// capture, relaxed otherwise. `Some(mode)` when it must change (the
/// caller sends `CaptureMode` ahead of its request, holding the link).
pub(crate) fn worker_mode_needed() -> Option<c_uint> {
    if CAPTURES.load(Ordering::Acquire) == 0 {
        return None;
    }
    let mine = MODE.with(|m| m.get());
    let want = if mine == RELAXED {
        RELAXED
    } else if BEGAN.with(|b| b.get()) > 0 {
        mine
    } else if mine == 0 && GLOBAL_CAPTURES.load(Ordering::Acquire) > 0 {
        THREAD_LOCAL
    } else {
        RELAXED
    };
    (WORKER_MODE.swap(want, Ordering::AcqRel) != want).then_some(want)
}

/// The request applying a capture mode to the worker's thread.
pub(crate) fn capture_mode_request(mode: c_uint) -> Request<'static> {
    Request::Graph(GraphRequest::CaptureMode { mode })
}

fn origins() -> std::sync::MutexGuard<'static, Vec<(u64, u64, bool)>> {
    ORIGINS.lock().unwrap_or_else(|e| e.into_inner())
}

fn call<B: tf_protocol::Body>(g: GraphRequest<'_>) -> Result<B, CUresult> {
    session()?.call::<B>(&Request::Graph(g))
}

fn enqueue(g: GraphRequest<'_>) -> Result<(), CUresult> {
    session()?.enqueue(&Request::Graph(g))
}

/// `(status, capture id, graph id)` of a stream (its wire id); status 0
/// when not capturing.
pub(crate) fn capture_status(stream: u64) -> Result<(c_int, u64, u64), CUresult> {
    if CAPTURES.load(Ordering::Acquire) == 0 {
        return Ok((0, 0, 0));
    }
    let ctx = ctx_or_zero()?;
    let (status, id, graph) = call::<(u64, u64, u64)>(GraphRequest::CaptureInfo { ctx, stream })?;
    Ok((status as c_int, id, graph))
}

/// Fails host-memory work on a capturing stream (see the module docs).
pub(crate) fn refuse_in_capture(stream: u64) -> Result<(), CUresult> {
    match capture_status(stream)? {
        (0, ..) => Ok(()),
        _ => Err(CAPTURE_UNSUPPORTED),
    }
}

/// A host function with its argument, as the application gave it.
#[derive(Clone, Copy)]
pub(crate) struct HostFn {
    pub f: unsafe extern "C" fn(*mut c_void),
    pub data: *mut c_void,
}

// SAFETY: the pointers are the application's, handed back to its own
// function on some thread, as the driver does.
unsafe impl Send for HostFn {}

/// Host functions graphs may call, by the id the worker is told (looked
/// up at every host node reached).
static HOST_FNS: Mutex<Option<std::collections::HashMap<u64, HostFn>>> = Mutex::new(None);
static NEXT_HOST_FN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Registers a host function; its id goes on the wire. Ids are never
/// reused, and the functions stay known for the life of the process (a
/// graph or a copy of it may call them at any later replay).
pub(crate) fn host_fn_id(f: HostFn) -> u64 {
    let id = NEXT_HOST_FN.fetch_add(1, Ordering::Relaxed);
    HOST_FNS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(Default::default)
        .insert(id, f);
    id
}

/// The host function registered as `id`.
pub(crate) fn host_fn(id: u64) -> Option<HostFn> {
    let g = HOST_FNS.lock().unwrap_or_else(|e| e.into_inner());
    g.as_ref()?.get(&id).copied()
}

/// Runs host function `id` for a graph the worker replays.
pub(crate) fn run_host_fn(id: u64) {
    match host_fn(id) {
        // SAFETY: the application's function with its own argument, as it
        // registered them; called once per node reached, as CUDA does.
        Some(h) => unsafe { (h.f)(h.data) },
        None => tracing::warn!(
            id,
            "the worker asked for a host function this process never registered; ignored"
        ),
    }
}

/// A pinned ↔ device copy on `stream` (`to_host`: device to host): while
/// the stream captures, it is captured as a copy naming the pinned range's
/// mirror and `Ok(true)` is returned; `Ok(false)` when not capturing (the
/// caller copies as usual). Pageable memory cannot be captured (900).
pub(crate) fn capture_host_copy(
    stream: u64,
    dst: u64,
    src: u64,
    n: u64,
    to_host: bool,
) -> Result<bool, CUresult> {
    if capture_status(stream)?.0 == 0 {
        return Ok(false);
    }
    let ctx = ctx_or_zero()?;
    let host = if to_host { dst } else { src };
    if crate::mapped::for_graph(ctx, host, n, to_host).is_err() {
        return Err(CAPTURE_UNSUPPORTED);
    }
    session()?.enqueue(&Request::Mem(
        tf_protocol::mem_msgs::MemRequest::HostMirrorCopy {
            ctx,
            stream,
            dst,
            src,
            size: n,
        },
    ))?;
    Ok(true)
}

/// `cuLaunchHostFunc` on a capturing stream: captured as a host node
/// (`Ok(true)`); `Ok(false)` when the stream is not capturing.
pub(crate) fn capture_host_fn(stream: u64, f: HostFn) -> Result<bool, CUresult> {
    if capture_status(stream)?.0 == 0 {
        return Ok(false);
    }
    let ctx = ctx_or_zero()?;
    let call = host_fn_id(f);
    enqueue(GraphRequest::LaunchHostFunc { ctx, stream, call })?;
    Ok(true)
}

fn begin(s: Handle, mode: c_uint, per_thread: bool) -> Result<(), CUresult> {
    if mode > 2 {
        return Err(cu::INVALID_VALUE);
    }
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = crate::cuda::current_ctx()?;
    let graph = mint(handle::GRAPH);
    call::<()>(GraphRequest::BeginCapture {
        ctx,
        stream,
        graph,
        mode,
    })?;
    CAPTURES.fetch_add(1, Ordering::AcqRel);
    let global = mode == 0;
    if global {
        GLOBAL_CAPTURES.fetch_add(1, Ordering::AcqRel);
    }
    BEGAN.with(|b| b.set(b.get() + 1));
    origins().push((stream, graph, global));
    Ok(())
}

fn end(s: Handle, graph_out: *mut Handle, per_thread: bool) -> Result<(), CUresult> {
    if graph_out.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = ctx_or_zero()?;
    let origin = {
        let mut o = origins();
        let at = o.iter().position(|(st, ..)| *st == stream);
        at.map(|i| o.swap_remove(i))
    };
    let r = call::<()>(GraphRequest::EndCapture { ctx, stream });
    let graph = origin.map(|(_, g, global)| {
        CAPTURES.fetch_sub(1, Ordering::AcqRel);
        if global {
            GLOBAL_CAPTURES.fetch_sub(1, Ordering::AcqRel);
        }
        BEGAN.with(|b| b.set(b.get().saturating_sub(1)));
        g
    });
    r?;
    out(graph_out, graph.unwrap_or(0) as Handle)
}

fn instantiate(graph: Handle, flags: u64) -> Result<u64, CUresult> {
    let graph = graph as u64;
    if !handle::is(handle::GRAPH, graph) {
        return Err(cu::INVALID_VALUE);
    }
    let exec = mint(handle::GRAPH_EXEC);
    call::<()>(GraphRequest::Instantiate {
        ctx: ctx_or_zero()?,
        graph,
        exec,
        flags,
    })?;
    Ok(exec)
}

fn exec_arg(e: Handle) -> Result<u64, CUresult> {
    let e = e as u64;
    if handle::is(handle::GRAPH_EXEC, e) {
        Ok(e)
    } else {
        Err(cu::INVALID_VALUE)
    }
}

fn launch(e: Handle, s: Handle, per_thread: bool, upload: bool) -> Result<(), CUresult> {
    let exec = exec_arg(e)?;
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = ctx_or_zero()?;
    enqueue(if upload {
        GraphRequest::Upload { ctx, exec, stream }
    } else {
        GraphRequest::Launch { ctx, exec, stream }
    })
}

macro_rules! capture_entries {
    ($pt:expr, $begin:ident, $begin_v1:ident, $end:ident, $launch:ident, $upload:ident) => {
        unsafe extern "C" fn $begin(s: Handle, mode: c_uint) -> CUresult {
            guard(|| begin(s, mode, $pt))
        }
        /// The first ABI: always the global mode.
        unsafe extern "C" fn $begin_v1(s: Handle) -> CUresult {
            guard(|| begin(s, 0, $pt))
        }
        unsafe extern "C" fn $end(s: Handle, g: *mut Handle) -> CUresult {
            guard(|| end(s, g, $pt))
        }
        unsafe extern "C" fn $launch(e: Handle, s: Handle) -> CUresult {
            guard(|| launch(e, s, $pt, false))
        }
        unsafe extern "C" fn $upload(e: Handle, s: Handle) -> CUresult {
            guard(|| launch(e, s, $pt, true))
        }
    };
}
capture_entries!(
    false,
    cu_stream_begin_capture,
    cu_stream_begin_capture_v1,
    cu_stream_end_capture,
    cu_graph_launch,
    cu_graph_upload
);
capture_entries!(
    true,
    cu_stream_begin_capture_ptsz,
    cu_stream_begin_capture_v1_ptsz,
    cu_stream_end_capture_ptsz,
    cu_graph_launch_ptsz,
    cu_graph_upload_ptsz
);

/// Tells the worker thread running this client's calls, and remembers the
/// mode per application thread as CUDA does.
unsafe extern "C" fn cu_thread_exchange_stream_capture_mode(mode: *mut c_uint) -> CUresult {
    guard(|| {
        if mode.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: non-null; a readable and writable CUstreamCaptureMode.
        let new = unsafe { *mode };
        if new > 2 {
            return Err(cu::INVALID_VALUE);
        }
        // Applied to the worker's thread when this thread's next request
        // needs it (`worker_mode_needed`).
        let old = MODE.with(|m| m.replace(new));
        out(mode, old)
    })
}

unsafe extern "C" fn cu_graph_instantiate_with_flags(
    exec: *mut Handle,
    graph: Handle,
    flags: u64,
) -> CUresult {
    guard(|| {
        if exec.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        out(exec, instantiate(graph, flags)? as Handle)
    })
}

/// The CUDA 11 form: no flags, an error node and a log buffer.
unsafe extern "C" fn cu_graph_instantiate_v2(
    exec: *mut Handle,
    graph: Handle,
    err_node: *mut Handle,
    log: *mut c_char,
    log_len: usize,
) -> CUresult {
    guard(|| {
        if !err_node.is_null() {
            out(err_node, std::ptr::null_mut())?;
        }
        if !log.is_null() && log_len > 0 {
            // SAFETY: the caller provides `log_len` writable bytes.
            unsafe { *log = 0 };
        }
        if exec.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        out(exec, instantiate(graph, 0)? as Handle)
    })
}

/// `CUDA_GRAPH_INSTANTIATE_PARAMS`.
#[repr(C)]
struct InstantiateParams {
    flags: u64,
    upload_stream: Handle,
    err_node: Handle,
    result: c_int,
}

fn instantiate_with_params(
    exec: *mut Handle,
    graph: Handle,
    p: *mut InstantiateParams,
    per_thread: bool,
) -> Result<(), CUresult> {
    if exec.is_null() || p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: non-null; a readable and writable CUDA_GRAPH_INSTANTIATE_PARAMS.
    let params = unsafe { &mut *p };
    params.err_node = std::ptr::null_mut();
    let e = match instantiate(graph, params.flags & !FLAG_UPLOAD) {
        Ok(e) => e,
        Err(code) => {
            params.result = 1; // CUDA_GRAPH_INSTANTIATE_ERROR
            return Err(code);
        }
    };
    params.result = 0;
    out(exec, e as Handle)?;
    if params.flags & FLAG_UPLOAD != 0 {
        launch(e as Handle, params.upload_stream, per_thread, true)?;
    }
    Ok(())
}

unsafe extern "C" fn cu_graph_instantiate_with_params(
    exec: *mut Handle,
    graph: Handle,
    p: *mut InstantiateParams,
) -> CUresult {
    guard(|| instantiate_with_params(exec, graph, p, false))
}

unsafe extern "C" fn cu_graph_instantiate_with_params_ptsz(
    exec: *mut Handle,
    graph: Handle,
    p: *mut InstantiateParams,
) -> CUresult {
    guard(|| instantiate_with_params(exec, graph, p, true))
}

unsafe extern "C" fn cu_graph_exec_destroy(e: Handle) -> CUresult {
    guard(|| enqueue(GraphRequest::ExecDestroy { exec: exec_arg(e)? }))
}

unsafe extern "C" fn cu_graph_destroy(g: Handle) -> CUresult {
    guard(|| {
        let graph = g as u64;
        if !handle::is(handle::GRAPH, graph) {
            return Err(cu::INVALID_VALUE);
        }
        enqueue(GraphRequest::Destroy { graph })?;
        build::forget_graph(graph);
        Ok(())
    })
}

/// `CUgraphExecUpdateResultInfo`.
#[repr(C)]
struct UpdateInfo {
    result: c_int,
    error_node: Handle,
    error_from_node: Handle,
}

unsafe extern "C" fn cu_graph_exec_update(e: Handle, g: Handle, info: *mut UpdateInfo) -> CUresult {
    guard(|| {
        let exec = exec_arg(e)?;
        let graph = g as u64;
        if info.is_null() || !handle::is(handle::GRAPH, graph) {
            return Err(cu::INVALID_VALUE);
        }
        let r = call::<u64>(GraphRequest::ExecUpdate { exec, graph });
        out(
            info,
            UpdateInfo {
                // CU_GRAPH_EXEC_UPDATE_ERROR when the call itself failed.
                result: r.map_or(1, |v| v as c_int),
                error_node: std::ptr::null_mut(),
                error_from_node: std::ptr::null_mut(),
            },
        )?;
        r.map(|_| ())
    })
}

/// `cuStreamGetId`: a process-unique number per stream, from the wire id.
pub(crate) fn stream_id(wire: u64) -> u64 {
    if tf_protocol::exec_msgs::handle::is_default_stream(wire) {
        (1 << 47) | wire
    } else {
        wire & ((1 << 48) - 1)
    }
}

unsafe extern "C" fn cu_stream_get_id(s: Handle, id: *mut u64) -> CUresult {
    guard(|| out(id, stream_id(wire_stream(s as u64, false)?)))
}

unsafe extern "C" fn cu_stream_get_id_ptsz(s: Handle, id: *mut u64) -> CUresult {
    guard(|| out(id, stream_id(wire_stream(s as u64, true)?)))
}

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    let entries: &[(usize, Entry)] = &[
        (c::cuStreamBeginCapture_v2, cu_stream_begin_capture as Entry),
        (
            c::cuStreamBeginCapture_v2_ptsz,
            cu_stream_begin_capture_ptsz as Entry,
        ),
        (c::cuStreamBeginCapture, cu_stream_begin_capture_v1 as Entry),
        (
            c::cuStreamBeginCapture_ptsz,
            cu_stream_begin_capture_v1_ptsz as Entry,
        ),
        (c::cuStreamEndCapture, cu_stream_end_capture as Entry),
        (
            c::cuStreamEndCapture_ptsz,
            cu_stream_end_capture_ptsz as Entry,
        ),
        (c::cuGraphLaunch, cu_graph_launch as Entry),
        (c::cuGraphLaunch_ptsz, cu_graph_launch_ptsz as Entry),
        (c::cuGraphUpload, cu_graph_upload as Entry),
        (c::cuGraphUpload_ptsz, cu_graph_upload_ptsz as Entry),
        (
            c::cuThreadExchangeStreamCaptureMode,
            cu_thread_exchange_stream_capture_mode as Entry,
        ),
        (
            c::cuGraphInstantiateWithFlags,
            cu_graph_instantiate_with_flags as Entry,
        ),
        (c::cuGraphInstantiate_v2, cu_graph_instantiate_v2 as Entry),
        (c::cuGraphInstantiate, cu_graph_instantiate_v2 as Entry),
        (
            c::cuGraphInstantiateWithParams,
            cu_graph_instantiate_with_params as Entry,
        ),
        (
            c::cuGraphInstantiateWithParams_ptsz,
            cu_graph_instantiate_with_params_ptsz as Entry,
        ),
        (c::cuGraphExecDestroy, cu_graph_exec_destroy as Entry),
        (c::cuGraphDestroy, cu_graph_destroy as Entry),
        (c::cuGraphExecUpdate_v2, cu_graph_exec_update as Entry),
        (c::cuStreamGetId, cu_stream_get_id as Entry),
        (c::cuStreamGetId_ptsz, cu_stream_get_id_ptsz as Entry),
    ];
    crate::set_each(set, entries);
    build::register(set);
}
