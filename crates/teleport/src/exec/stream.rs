//! Streams and events (ids minted here, created without a round trip),
//! synchronization points, asynchronous memsets, and the per-thread default
//! stream of `_ptsz`/`_ptds` entry points and `CU_STREAM_PER_THREAD`.

use std::cell::RefCell;
use std::ffi::{c_float, c_int, c_uint, c_ushort, c_void};

use tf_protocol::exec_msgs::{handle, Elapsed, ExecRequest, IntReply, Memset, MemsetOp};
use tf_protocol::status::cu;
use tf_protocol::Request;

use super::{ctx_or_zero, mint, read, write, CUresult, StreamInfo};
use crate::cuda::{guard, out, session};

type Handle = *mut c_void;

const STREAM_LEGACY: u64 = 1;
const STREAM_PER_THREAD: u64 = 2;
/// `CU_STREAM_NON_BLOCKING` is the only stream flag.
const STREAM_FLAGS: u32 = 1;

/// This thread's per-thread default streams, one per context. Each is an
/// ordinary blocking stream on the worker: like the real per-thread stream
/// it is ordered with the legacy stream, and unlike the worker thread's own
/// per-thread stream it is not shared with the client's other threads.
struct PerThread(Vec<(u64, u64)>);

impl Drop for PerThread {
    /// The thread is gone: so are its streams.
    fn drop(&mut self) {
        let streams = std::mem::take(&mut self.0);
        let _ = std::panic::catch_unwind(|| {
            let Some(c) = crate::client::existing() else {
                return;
            };
            for (_, stream) in streams {
                write().streams.remove(&stream);
                let _ = c.enqueue(&Request::Exec(ExecRequest::StreamDestroy { stream }));
            }
        });
    }
}

thread_local! {
    static PER_THREAD: RefCell<PerThread> = const { RefCell::new(PerThread(Vec::new())) };
}

fn per_thread_stream() -> Result<u64, CUresult> {
    let ctx = crate::cuda::current_ctx()?;
    // `try_with`: during thread exit the per-thread streams are gone and
    // the per-thread stream means the legacy one (a destructor's last work).
    let known = PER_THREAD.try_with(|p| {
        p.borrow()
            .0
            .iter()
            .find(|(c, _)| *c == ctx)
            .map(|(_, s)| *s)
    });
    match known {
        Ok(Some(s)) => return Ok(s),
        Ok(None) => {}
        Err(_) => return Ok(STREAM_LEGACY),
    }
    let stream = create(ctx, 0, None)?;
    let _ = PER_THREAD.try_with(|p| p.borrow_mut().0.push((ctx, stream)));
    Ok(stream)
}

/// The wire id of a stream argument: default streams as CUDA numbers them
/// (the per-thread one as this thread's own stream), created streams as
/// their ids. `per_thread`: the entry point is a `_ptsz`/`_ptds` one, where
/// `NULL` means the per-thread default stream.
pub(crate) fn wire_stream(s: u64, per_thread: bool) -> Result<u64, CUresult> {
    match s {
        0 if per_thread => per_thread_stream(),
        0 | STREAM_LEGACY => Ok(s),
        STREAM_PER_THREAD => per_thread_stream(),
        id if read().streams.contains_key(&id) => Ok(id),
        _ => Err(cu::INVALID_HANDLE),
    }
}

/// Mints a stream id and enqueues its creation.
fn create(ctx: u64, flags: u32, priority: Option<i32>) -> Result<u64, CUresult> {
    if flags & !STREAM_FLAGS != 0 {
        return Err(cu::INVALID_VALUE);
    }
    let stream = mint(handle::STREAM);
    session()?.enqueue(&Request::Exec(ExecRequest::StreamCreate {
        ctx,
        stream,
        flags,
        priority,
    }))?;
    write().streams.insert(
        stream,
        StreamInfo {
            ctx,
            flags,
            // The worker clamps a requested priority to the device's range.
            priority: if priority.is_none() { Some(0) } else { None },
        },
    );
    Ok(stream)
}

unsafe extern "C" fn cu_stream_create(ph: *mut Handle, flags: c_uint) -> CUresult {
    guard(|| {
        if ph.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let s = create(crate::cuda::current_ctx()?, flags, None)?;
        out(ph, s as Handle)
    })
}

unsafe extern "C" fn cu_stream_create_with_priority(
    ph: *mut Handle,
    flags: c_uint,
    priority: c_int,
) -> CUresult {
    guard(|| {
        if ph.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let s = create(crate::cuda::current_ctx()?, flags, Some(priority))?;
        out(ph, s as Handle)
    })
}

unsafe extern "C" fn cu_stream_destroy(s: Handle) -> CUresult {
    guard(|| {
        let stream = s as u64;
        write().streams.remove(&stream).ok_or(cu::INVALID_HANDLE)?;
        session()?.enqueue(&Request::Exec(ExecRequest::StreamDestroy { stream }))
    })
}

fn stream_call(
    s: Handle,
    per_thread: bool,
    make: impl FnOnce(u64, u64) -> ExecRequest<'static>,
) -> Result<(), CUresult> {
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = ctx_or_zero()?;
    session()?.call::<()>(&Request::Exec(make(ctx, stream)))
}

fn known_event(e: Handle) -> Result<u64, CUresult> {
    let id = e as u64;
    if read().events.contains(&id) {
        Ok(id)
    } else {
        Err(cu::INVALID_HANDLE)
    }
}

fn stream_info<T>(
    s: Handle,
    per_thread: bool,
    default: T,
    get: impl FnOnce(&StreamInfo) -> T,
) -> Result<T, CUresult> {
    let id = wire_stream(s as u64, per_thread)?;
    if handle::is_default_stream(id) {
        return Ok(default);
    }
    let st = read();
    match st.streams.get(&id) {
        // Per-thread default streams report like the default stream.
        Some(_) if s as u64 == 0 || s as u64 == STREAM_PER_THREAD => Ok(default),
        Some(info) => Ok(get(info)),
        None => Err(cu::INVALID_HANDLE),
    }
}

fn priority(s: Handle, per_thread: bool) -> Result<c_int, CUresult> {
    match stream_info(s, per_thread, Some(0), |i| i.priority)? {
        Some(p) => Ok(p),
        None => {
            let stream = s as u64;
            let ctx = ctx_or_zero()?;
            let IntReply(p) =
                session()?.call::<IntReply>(&Request::Exec(ExecRequest::StreamGetPriority {
                    ctx,
                    stream,
                }))?;
            if let Some(info) = write().streams.get_mut(&stream) {
                info.priority = Some(p);
            }
            Ok(p)
        }
    }
}

fn stream_ctx(s: Handle, per_thread: bool) -> Result<u64, CUresult> {
    match stream_info(s, per_thread, None, |i| Some(i.ctx))? {
        Some(c) => Ok(c),
        None => crate::cuda::current_ctx(),
    }
}

fn event_record(
    e: Handle,
    s: Handle,
    per_thread: bool,
    flags: Option<u32>,
) -> Result<(), CUresult> {
    let event = known_event(e)?;
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = ctx_or_zero()?;
    session()?.enqueue(&Request::Exec(ExecRequest::EventRecord {
        ctx,
        event,
        stream,
        flags,
    }))
}

fn wait_event(s: Handle, e: Handle, flags: c_uint, per_thread: bool) -> Result<(), CUresult> {
    let event = known_event(e)?;
    let stream = wire_stream(s as u64, per_thread)?;
    let ctx = ctx_or_zero()?;
    session()?.enqueue(&Request::Exec(ExecRequest::StreamWaitEvent {
        ctx,
        stream,
        event,
        flags,
    }))
}

/// One export per stream function and per-thread variant.
macro_rules! stream_exports {
    ($pt:expr, $sync:ident, $query:ident, $wait:ident, $prio:ident, $flags:ident, $ctx:ident, $capturing:ident, $record:ident, $record_flags:ident) => {
        unsafe extern "C" fn $sync(s: Handle) -> CUresult {
            guard(|| {
                stream_call(s, $pt, |ctx, stream| ExecRequest::StreamSynchronize {
                    ctx,
                    stream,
                })
            })
        }
        unsafe extern "C" fn $query(s: Handle) -> CUresult {
            guard(|| {
                stream_call(s, $pt, |ctx, stream| ExecRequest::StreamQuery {
                    ctx,
                    stream,
                })
            })
        }
        unsafe extern "C" fn $wait(s: Handle, e: Handle, flags: c_uint) -> CUresult {
            guard(|| wait_event(s, e, flags, $pt))
        }
        unsafe extern "C" fn $prio(s: Handle, p: *mut c_int) -> CUresult {
            guard(|| out(p, priority(s, $pt)?))
        }
        unsafe extern "C" fn $flags(s: Handle, f: *mut c_uint) -> CUresult {
            guard(|| out(f, stream_info(s, $pt, 0, |i| i.flags)?))
        }
        unsafe extern "C" fn $ctx(s: Handle, c: *mut Handle) -> CUresult {
            guard(|| out(c, stream_ctx(s, $pt)? as Handle))
        }
        /// Answered here while no capture is under way (`crate::graph`).
        unsafe extern "C" fn $capturing(s: Handle, status: *mut c_int) -> CUresult {
            guard(|| {
                let (st, ..) = crate::graph::capture_status(wire_stream(s as u64, $pt)?)?;
                out(status, st)
            })
        }
        unsafe extern "C" fn $record(e: Handle, s: Handle) -> CUresult {
            guard(|| event_record(e, s, $pt, None))
        }
        unsafe extern "C" fn $record_flags(e: Handle, s: Handle, flags: c_uint) -> CUresult {
            guard(|| event_record(e, s, $pt, Some(flags)))
        }
    };
}
stream_exports!(
    false,
    cu_stream_synchronize,
    cu_stream_query,
    cu_stream_wait_event,
    cu_stream_get_priority,
    cu_stream_get_flags,
    cu_stream_get_ctx,
    cu_stream_is_capturing,
    cu_event_record,
    cu_event_record_with_flags
);
stream_exports!(
    true,
    cu_stream_synchronize_ptsz,
    cu_stream_query_ptsz,
    cu_stream_wait_event_ptsz,
    cu_stream_get_priority_ptsz,
    cu_stream_get_flags_ptsz,
    cu_stream_get_ctx_ptsz,
    cu_stream_is_capturing_ptsz,
    cu_event_record_ptsz,
    cu_event_record_with_flags_ptsz
);

/// `cuStreamGetCaptureInfo*`: the status and id (`crate::graph`); the
/// graph being captured when asked; no dependency nodes (nodes are not
/// remoted: the count is 0 and the arrays null). cuSOLVER asks this before
/// every call, PyTorch before allocations during a capture.
fn capture_info(
    s: Handle,
    pt: bool,
    status: *mut c_int,
    id: *mut u64,
    graph: *mut usize,
    rest: &[*mut usize],
) -> Result<(), CUresult> {
    let (st, cid, g) = crate::graph::capture_status(wire_stream(s as u64, pt)?)?;
    out(status, st)?;
    if !id.is_null() {
        out(id, cid)?;
    }
    if !graph.is_null() {
        out(graph, g as usize)?;
    }
    for p in rest.iter().filter(|p| !p.is_null()) {
        out(*p, 0)?;
    }
    Ok(())
}

macro_rules! capture_exports {
    ($pt:expr, $v1:ident, $v2:ident, $v3:ident) => {
        unsafe extern "C" fn $v1(s: Handle, status: *mut c_int, id: *mut u64) -> CUresult {
            guard(|| capture_info(s, $pt, status, id, std::ptr::null_mut(), &[]))
        }
        unsafe extern "C" fn $v2(
            s: Handle,
            status: *mut c_int,
            id: *mut u64,
            graph: *mut usize,
            deps: *mut usize,
            n: *mut usize,
        ) -> CUresult {
            guard(|| capture_info(s, $pt, status, id, graph, &[deps, n]))
        }
        unsafe extern "C" fn $v3(
            s: Handle,
            status: *mut c_int,
            id: *mut u64,
            graph: *mut usize,
            deps: *mut usize,
            edges: *mut usize,
            n: *mut usize,
        ) -> CUresult {
            guard(|| capture_info(s, $pt, status, id, graph, &[deps, edges, n]))
        }
    };
}
capture_exports!(
    false,
    cu_stream_get_capture_info,
    cu_stream_get_capture_info_v2,
    cu_stream_get_capture_info_v3
);
capture_exports!(
    true,
    cu_stream_get_capture_info_ptsz,
    cu_stream_get_capture_info_v2_ptsz,
    cu_stream_get_capture_info_v3_ptsz
);

unsafe extern "C" fn cu_event_create(pe: *mut Handle, flags: c_uint) -> CUresult {
    guard(|| {
        if pe.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let ctx = crate::cuda::current_ctx()?;
        let event = mint(handle::EVENT);
        session()?.enqueue(&Request::Exec(ExecRequest::EventCreate {
            ctx,
            event,
            flags,
        }))?;
        write().events.insert(event);
        out(pe, event as Handle)
    })
}

unsafe extern "C" fn cu_event_synchronize(e: Handle) -> CUresult {
    guard(|| {
        let event = known_event(e)?;
        session()?.call::<()>(&Request::Exec(ExecRequest::EventSynchronize { event }))
    })
}

unsafe extern "C" fn cu_event_query(e: Handle) -> CUresult {
    guard(|| {
        let event = known_event(e)?;
        session()?.call::<()>(&Request::Exec(ExecRequest::EventQuery { event }))
    })
}

unsafe extern "C" fn cu_event_elapsed_time(ms: *mut c_float, a: Handle, b: Handle) -> CUresult {
    guard(|| {
        if ms.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let (start, end) = (known_event(a)?, known_event(b)?);
        let Elapsed(v) = session()?
            .call::<Elapsed>(&Request::Exec(ExecRequest::EventElapsedTime { start, end }))?;
        out(ms, v)
    })
}

unsafe extern "C" fn cu_event_destroy(e: Handle) -> CUresult {
    guard(|| {
        let event = e as u64;
        if !write().events.remove(&event) {
            return Err(cu::INVALID_HANDLE);
        }
        session()?.enqueue(&Request::Exec(ExecRequest::EventDestroy { event }))
    })
}

/// Enqueues a memset; `m.ctx` and `m.stream` are filled in here.
fn memset(mut m: Memset, s: Handle, per_thread: bool) -> Result<(), CUresult> {
    m.stream = wire_stream(s as u64, per_thread)?;
    if crate::uva_host::memset_span(&m).is_some_and(|n| crate::uva_host::is_host_span(m.dst, n)) {
        // Pinned memory of this process named by a device call.
        return crate::uva_host::memset(&m, Some(m.stream));
    }
    m.ctx = crate::cuda::current_ctx()?;
    session()?.enqueue(&Request::Exec(ExecRequest::MemsetAsync(m)))
}

fn shape(dst: u64, pitch: u64, value: u32, width: u64, op: MemsetOp) -> Memset {
    Memset {
        ctx: 0,
        stream: 0,
        dst,
        pitch,
        value,
        width,
        op,
    }
}

macro_rules! memset_1d {
    ($name:ident, $t:ty, $op:ident, $pt:expr) => {
        unsafe extern "C" fn $name(dst: u64, v: $t, n: usize, s: Handle) -> CUresult {
            guard(|| memset(shape(dst, 0, u32::from(v), n as u64, MemsetOp::$op), s, $pt))
        }
    };
}
macro_rules! memset_2d {
    ($name:ident, $t:ty, $op:ident, $pt:expr) => {
        unsafe extern "C" fn $name(
            dst: u64,
            pitch: usize,
            v: $t,
            w: usize,
            h: usize,
            s: Handle,
        ) -> CUresult {
            let height = h as u64;
            let m = shape(
                dst,
                pitch as u64,
                u32::from(v),
                w as u64,
                MemsetOp::$op { height },
            );
            guard(|| memset(m, s, $pt))
        }
    };
}
/// The memsets without a stream argument: device memsets are asynchronous
/// to the host anyway, so they are the stream form on the default stream
/// (legacy, or the per-thread one for `_ptds`).
macro_rules! memset_sync {
    ($name:ident, $async:ident, $t:ty) => {
        unsafe extern "C" fn $name(dst: u64, v: $t, n: usize) -> CUresult {
            // SAFETY: the same contract, plus the default stream.
            unsafe { $async(dst, v, n, std::ptr::null_mut()) }
        }
    };
    ($name:ident, $async:ident, $t:ty, 2d) => {
        unsafe extern "C" fn $name(dst: u64, pitch: usize, v: $t, w: usize, h: usize) -> CUresult {
            // SAFETY: the same contract, plus the default stream.
            unsafe { $async(dst, pitch, v, w, h, std::ptr::null_mut()) }
        }
    };
}
memset_sync!(cu_memset_d16, cu_memset_d16_async, c_ushort);
memset_sync!(cu_memset_d16_ptds, cu_memset_d16_async_ptsz, c_ushort);
memset_sync!(cu_memset_d2d8, cu_memset_d2d8_async, u8, 2d);
memset_sync!(cu_memset_d2d16, cu_memset_d2d16_async, c_ushort, 2d);
memset_sync!(cu_memset_d2d32, cu_memset_d2d32_async, c_uint, 2d);
memset_sync!(cu_memset_d2d8_ptds, cu_memset_d2d8_async_ptsz, u8, 2d);
memset_sync!(
    cu_memset_d2d16_ptds,
    cu_memset_d2d16_async_ptsz,
    c_ushort,
    2d
);
memset_sync!(cu_memset_d2d32_ptds, cu_memset_d2d32_async_ptsz, c_uint, 2d);

memset_1d!(cu_memset_d8_async, u8, D8, false);
memset_1d!(cu_memset_d16_async, c_ushort, D16, false);
memset_1d!(cu_memset_d32_async, c_uint, D32, false);
memset_1d!(cu_memset_d8_async_ptsz, u8, D8, true);
memset_1d!(cu_memset_d16_async_ptsz, c_ushort, D16, true);
memset_1d!(cu_memset_d32_async_ptsz, c_uint, D32, true);
memset_2d!(cu_memset_d2d8_async, u8, D2D8, false);
memset_2d!(cu_memset_d2d16_async, c_ushort, D2D16, false);
memset_2d!(cu_memset_d2d32_async, c_uint, D2D32, false);
memset_2d!(cu_memset_d2d8_async_ptsz, u8, D2D8, true);
memset_2d!(cu_memset_d2d16_async_ptsz, c_ushort, D2D16, true);
memset_2d!(cu_memset_d2d32_async_ptsz, c_uint, D2D32, true);

/// `NULL` in a `_ptsz` entry point is the per-thread default stream.
fn ptsz(s: Handle) -> Handle {
    if s.is_null() {
        STREAM_PER_THREAD as Handle
    } else {
        s
    }
}

unsafe extern "C" fn cu_memcpy_htod_async_ptsz(
    dst: u64,
    src: *const c_void,
    n: usize,
    s: Handle,
) -> CUresult {
    // SAFETY: the same contract as the export it forwards to.
    unsafe { crate::cuda::cu_memcpy_htod_async(dst, src, n, ptsz(s)) }
}
unsafe extern "C" fn cu_memcpy_dtoh_async_ptsz(
    dst: *mut c_void,
    src: u64,
    n: usize,
    s: Handle,
) -> CUresult {
    // SAFETY: the same contract as the export it forwards to.
    unsafe { crate::cuda::cu_memcpy_dtoh_async(dst, src, n, ptsz(s)) }
}
unsafe extern "C" fn cu_memcpy_dtod_async_ptsz(
    dst: u64,
    src: u64,
    n: usize,
    s: Handle,
) -> CUresult {
    // SAFETY: the same contract as the export it forwards to.
    unsafe { crate::cuda::cu_memcpy_dtod_async(dst, src, n, ptsz(s)) }
}

pub(super) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    set(c::cuStreamCreate, cu_stream_create as Entry);
    set(
        c::cuStreamCreateWithPriority,
        cu_stream_create_with_priority as Entry,
    );
    set(c::cuStreamDestroy, cu_stream_destroy as Entry);
    set(c::cuStreamDestroy_v2, cu_stream_destroy as Entry);
    set(c::cuStreamSynchronize, cu_stream_synchronize as Entry);
    set(
        c::cuStreamSynchronize_ptsz,
        cu_stream_synchronize_ptsz as Entry,
    );
    set(c::cuStreamQuery, cu_stream_query as Entry);
    set(c::cuStreamQuery_ptsz, cu_stream_query_ptsz as Entry);
    set(c::cuStreamWaitEvent, cu_stream_wait_event as Entry);
    set(
        c::cuStreamWaitEvent_ptsz,
        cu_stream_wait_event_ptsz as Entry,
    );
    set(c::cuStreamGetPriority, cu_stream_get_priority as Entry);
    set(
        c::cuStreamGetPriority_ptsz,
        cu_stream_get_priority_ptsz as Entry,
    );
    set(c::cuStreamGetFlags, cu_stream_get_flags as Entry);
    set(c::cuStreamGetFlags_ptsz, cu_stream_get_flags_ptsz as Entry);
    set(c::cuStreamGetCtx, cu_stream_get_ctx as Entry);
    set(c::cuStreamGetCtx_ptsz, cu_stream_get_ctx_ptsz as Entry);
    set(c::cuStreamIsCapturing, cu_stream_is_capturing as Entry);
    set(
        c::cuStreamGetCaptureInfo,
        cu_stream_get_capture_info as Entry,
    );
    set(
        c::cuStreamGetCaptureInfo_v2,
        cu_stream_get_capture_info_v2 as Entry,
    );
    set(
        c::cuStreamGetCaptureInfo_v3,
        cu_stream_get_capture_info_v3 as Entry,
    );
    set(
        c::cuStreamGetCaptureInfo_ptsz,
        cu_stream_get_capture_info_ptsz as Entry,
    );
    set(
        c::cuStreamGetCaptureInfo_v2_ptsz,
        cu_stream_get_capture_info_v2_ptsz as Entry,
    );
    set(
        c::cuStreamGetCaptureInfo_v3_ptsz,
        cu_stream_get_capture_info_v3_ptsz as Entry,
    );
    set(
        c::cuStreamIsCapturing_ptsz,
        cu_stream_is_capturing_ptsz as Entry,
    );
    set(c::cuEventCreate, cu_event_create as Entry);
    set(c::cuEventRecord, cu_event_record as Entry);
    set(c::cuEventRecord_ptsz, cu_event_record_ptsz as Entry);
    set(
        c::cuEventRecordWithFlags,
        cu_event_record_with_flags as Entry,
    );
    set(
        c::cuEventRecordWithFlags_ptsz,
        cu_event_record_with_flags_ptsz as Entry,
    );
    set(c::cuEventSynchronize, cu_event_synchronize as Entry);
    set(c::cuEventQuery, cu_event_query as Entry);
    set(c::cuEventElapsedTime, cu_event_elapsed_time as Entry);
    set(c::cuEventElapsedTime_v2, cu_event_elapsed_time as Entry);
    set(c::cuEventDestroy, cu_event_destroy as Entry);
    set(c::cuEventDestroy_v2, cu_event_destroy as Entry);
    set(c::cuMemsetD16_v2, cu_memset_d16 as Entry);
    set(c::cuMemsetD16_v2_ptds, cu_memset_d16_ptds as Entry);
    set(c::cuMemsetD2D8_v2, cu_memset_d2d8 as Entry);
    set(c::cuMemsetD2D16_v2, cu_memset_d2d16 as Entry);
    set(c::cuMemsetD2D32_v2, cu_memset_d2d32 as Entry);
    set(c::cuMemsetD2D8_v2_ptds, cu_memset_d2d8_ptds as Entry);
    set(c::cuMemsetD2D16_v2_ptds, cu_memset_d2d16_ptds as Entry);
    set(c::cuMemsetD2D32_v2_ptds, cu_memset_d2d32_ptds as Entry);
    set(c::cuMemsetD8Async, cu_memset_d8_async as Entry);
    set(c::cuMemsetD16Async, cu_memset_d16_async as Entry);
    set(c::cuMemsetD32Async, cu_memset_d32_async as Entry);
    set(c::cuMemsetD8Async_ptsz, cu_memset_d8_async_ptsz as Entry);
    set(c::cuMemsetD16Async_ptsz, cu_memset_d16_async_ptsz as Entry);
    set(c::cuMemsetD32Async_ptsz, cu_memset_d32_async_ptsz as Entry);
    set(c::cuMemsetD2D8Async, cu_memset_d2d8_async as Entry);
    set(c::cuMemsetD2D16Async, cu_memset_d2d16_async as Entry);
    set(c::cuMemsetD2D32Async, cu_memset_d2d32_async as Entry);
    set(
        c::cuMemsetD2D8Async_ptsz,
        cu_memset_d2d8_async_ptsz as Entry,
    );
    set(
        c::cuMemsetD2D16Async_ptsz,
        cu_memset_d2d16_async_ptsz as Entry,
    );
    set(
        c::cuMemsetD2D32Async_ptsz,
        cu_memset_d2d32_async_ptsz as Entry,
    );
    // Async copies on the per-thread default stream; the synchronous `_ptds`
    // forms are ordered by the worker's legacy-stream copies, which wait for
    // every blocking stream, the per-thread ones included.
    set(
        c::cuMemcpyHtoDAsync_v2_ptsz,
        cu_memcpy_htod_async_ptsz as Entry,
    );
    set(
        c::cuMemcpyDtoHAsync_v2_ptsz,
        cu_memcpy_dtoh_async_ptsz as Entry,
    );
    set(
        c::cuMemcpyDtoDAsync_v2_ptsz,
        cu_memcpy_dtod_async_ptsz as Entry,
    );
    set(
        c::cuMemcpyHtoD_v2_ptds,
        crate::cuda::cu_memcpy_htod as Entry,
    );
    set(
        c::cuMemcpyDtoH_v2_ptds,
        crate::cuda::cu_memcpy_dtoh as Entry,
    );
    set(
        c::cuMemcpyDtoD_v2_ptds,
        crate::cuda::cu_memcpy_dtod as Entry,
    );
    set(c::cuMemsetD8_v2_ptds, crate::cuda::cu_memset_d8 as Entry);
    set(c::cuMemsetD32_v2_ptds, crate::cuda::cu_memset_d32 as Entry);
}
