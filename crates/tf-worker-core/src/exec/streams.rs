//! Streams, events, launches, asynchronous memsets and copies.

use tf_protocol::encode_reply;
use tf_protocol::exec_msgs::{handle, layout_size, Elapsed, IntReply, Launch, Memset, Shape};
use tf_protocol::status::cu;

use super::{reply, Event, Stream};
use crate::backend::{BackendCtx, Status};
use crate::session::{Outcome, Session};

/// `CUlaunchAttributeID`s whose value starts with a `CUevent`.
const ATTR_PROGRAMMATIC_EVENT: u32 = 7;
const ATTR_LAUNCH_COMPLETION_EVENT: u32 = 12;
/// Graph-only: its value is an output (a device node handle).
const ATTR_DEVICE_UPDATABLE_KERNEL_NODE: u32 = 13;

/// The context and real handle of a stream. A default stream (0, 1, 2)
/// belongs to the client's current context `ctx`, or `fallback` when the
/// caller knows better (an event's context).
pub(crate) fn resolve_stream(
    s: &Session,
    ctx: u64,
    stream: u64,
    fallback: Option<BackendCtx>,
) -> Result<(BackendCtx, u64), Status> {
    if handle::is_default_stream(stream) {
        let c = match (s.ctx(ctx), fallback) {
            (Ok(c), _) => c,
            (Err(_), Some(f)) => f,
            (Err(e), None) => return Err(e),
        };
        return Ok((c, stream));
    }
    let st = s.exec.streams.get(&stream).ok_or(cu::INVALID_HANDLE)?;
    Ok((st.ctx, st.real))
}

fn event(s: &Session, e: u64) -> Result<(BackendCtx, u64), Status> {
    let e = s.exec.events.get(&e).ok_or(cu::INVALID_HANDLE)?;
    Ok((e.ctx, e.real))
}

/// Translates a launch shape to backend handles: the stream, and the events
/// inside attribute values.
pub(super) fn resolve_shape(
    s: &Session,
    ctx: u64,
    fallback: Option<BackendCtx>,
    mut shape: Shape,
) -> Result<(BackendCtx, Shape), Status> {
    let (c, stream) = resolve_stream(s, ctx, shape.stream, fallback)?;
    shape.stream = stream;
    for a in &mut shape.attrs {
        match a.id {
            ATTR_PROGRAMMATIC_EVENT | ATTR_LAUNCH_COMPLETION_EVENT => {
                let mut id = [0u8; 8];
                id.copy_from_slice(&a.value[..8]);
                let (_, real) = event(s, u64::from_le_bytes(id))?;
                a.value[..8].copy_from_slice(&real.to_le_bytes());
            }
            ATTR_DEVICE_UPDATABLE_KERNEL_NODE => return Err(cu::NOT_SUPPORTED),
            _ => {}
        }
    }
    Ok((c, shape))
}

pub(super) fn launch(s: &mut Session, l: Launch<'_>) -> Result<(), Status> {
    let f = s.exec.funcs.get(&l.func).ok_or(cu::INVALID_HANDLE)?;
    let (func, fctx, layout) = (f.func, f.ctx, f.layout.clone());
    if let Some(layout) = &layout {
        if l.params.len() < layout_size(layout) {
            return Err(cu::INVALID_VALUE);
        }
    }
    // A module's function runs in its module's context; a kernel in the
    // stream's, or the caller's for a default stream.
    let (c, shape) = resolve_shape(s, l.ctx, fctx, l.shape)?;
    let c = if handle::is_default_stream(shape.stream) {
        fctx.unwrap_or(c)
    } else {
        c
    };
    s.worker
        .backend()
        .launch(c, func, l.api, &shape, l.params, layout.as_deref())
}

pub(super) fn memset(s: &mut Session, m: Memset) -> Result<(), Status> {
    let (c, stream) = resolve_stream(s, m.ctx, m.stream, None)?;
    // 1, 2 or 4: the opcode chose it.
    let elem = u64::from(m.op.elem());
    if !m.dst.is_multiple_of(elem) {
        return Err(cu::INVALID_VALUE);
    }
    let row = m.width.checked_mul(elem).ok_or(cu::INVALID_VALUE)?;
    let extent = match m.op.height() {
        None => row,
        Some(0) => 0,
        Some(h) => {
            if h > 1 && m.pitch < row {
                return Err(cu::INVALID_VALUE);
            }
            m.pitch
                .checked_mul(h - 1)
                .and_then(|v| v.checked_add(row))
                .ok_or(cu::INVALID_VALUE)?
        }
    };
    if extent > 0 {
        s.check_range(m.dst, extent)?;
    }
    s.worker
        .backend()
        .memset_async(c, stream, &Memset { stream, ..m })
}

pub(crate) fn memcpy_htod_async(
    s: &mut Session,
    ctx: u64,
    stream: u64,
    dst: u64,
    data: &[u8],
) -> Outcome {
    reply((|| {
        let (c, real) = resolve_stream(s, ctx, stream, None)?;
        s.check_range(dst, data.len() as u64)?;
        crate::graph::refuse_host_copy_in_capture(s, c, real)?;
        s.worker.backend().memcpy_htod_async(c, real, dst, data)
    })())
}

pub(crate) fn memcpy_dtod_async(
    s: &mut Session,
    ctx: u64,
    stream: u64,
    dst: u64,
    src: u64,
    size: u64,
) -> Outcome {
    reply((|| {
        let (c, real) = resolve_stream(s, ctx, stream, None)?;
        s.check_range(dst, size)?;
        s.check_range(src, size)?;
        s.worker
            .backend()
            .memcpy_dtod_async(c, real, dst, src, size)
    })())
}

/// Device-to-host copies answer with the data, so they are in place before
/// the application can observe completion.
pub(crate) fn memcpy_dtoh_async(
    s: &mut Session,
    ctx: u64,
    stream: u64,
    src: u64,
    size: u64,
) -> Outcome {
    let r = (|| {
        s.take_deferred()?;
        let (c, real) = resolve_stream(s, ctx, stream, None)?;
        s.check_range(src, size)?;
        crate::graph::refuse_host_copy_in_capture(s, c, real)?;
        if size > tf_protocol::MAX_PAYLOAD as u64 - 4 {
            return Err(cu::INVALID_VALUE);
        }
        let mut out = vec![0u8; 4 + size as usize];
        s.worker
            .backend()
            .memcpy_dtoh_async(c, real, &mut out[4..], src)?;
        Ok(out)
    })();
    match r {
        Ok(out) => Outcome::Reply(out),
        Err(status) => Outcome::Reply(encode_reply::<()>(status, None)),
    }
}

/// `Ok(false)` from a query is `CUDA_ERROR_NOT_READY`.
fn ready(done: bool) -> Result<(), Status> {
    if done {
        Ok(())
    } else {
        Err(cu::NOT_READY)
    }
}

pub(super) fn stream_create(
    s: &mut Session,
    ctx: u64,
    stream: u64,
    flags: u32,
    priority: Option<i32>,
) -> Result<(), Status> {
    if !handle::is(handle::STREAM, stream) || s.exec.streams.contains_key(&stream) {
        return Err(cu::INVALID_HANDLE);
    }
    let c = s.ctx(ctx)?;
    let real = s.worker.backend().stream_create(c, flags, priority)?;
    s.exec.streams.insert(stream, Stream { ctx: c, real });
    Ok(())
}

pub(super) fn stream_destroy(s: &mut Session, stream: u64) -> Result<(), Status> {
    let st = s.exec.streams.remove(&stream).ok_or(cu::INVALID_HANDLE)?;
    s.worker.backend().stream_destroy(st.ctx, st.real)
}

pub(super) fn stream_synchronize(s: &mut Session, ctx: u64, stream: u64) -> Result<(), Status> {
    let (c, real) = resolve_stream(s, ctx, stream, None)?;
    s.worker.backend().stream_synchronize(c, real)?;
    s.take_deferred()
}

pub(super) fn stream_query(s: &mut Session, ctx: u64, stream: u64) -> Result<(), Status> {
    s.take_deferred()?;
    let (c, real) = resolve_stream(s, ctx, stream, None)?;
    ready(s.worker.backend().stream_query(c, real)?)
}

pub(super) fn stream_wait_event(
    s: &mut Session,
    ctx: u64,
    stream: u64,
    e: u64,
    flags: u32,
) -> Result<(), Status> {
    let (ectx, ereal) = event(s, e)?;
    let (c, real) = resolve_stream(s, ctx, stream, Some(ectx))?;
    s.worker.backend().stream_wait_event(c, real, ereal, flags)
}

pub(super) fn stream_get_priority(
    s: &mut Session,
    ctx: u64,
    stream: u64,
) -> Result<IntReply, Status> {
    let (c, real) = resolve_stream(s, ctx, stream, None)?;
    s.worker
        .backend()
        .stream_get_priority(c, real)
        .map(IntReply)
}

pub(super) fn event_create(s: &mut Session, ctx: u64, e: u64, flags: u32) -> Result<(), Status> {
    if !handle::is(handle::EVENT, e) || s.exec.events.contains_key(&e) {
        return Err(cu::INVALID_HANDLE);
    }
    let c = s.ctx(ctx)?;
    let real = s.worker.backend().event_create(c, flags)?;
    s.exec.events.insert(e, Event { ctx: c, real });
    Ok(())
}

pub(super) fn event_record(
    s: &mut Session,
    ctx: u64,
    e: u64,
    stream: u64,
    flags: Option<u32>,
) -> Result<(), Status> {
    let (ectx, ereal) = event(s, e)?;
    let (_, real) = resolve_stream(s, ctx, stream, Some(ectx))?;
    s.worker.backend().event_record(ectx, ereal, real, flags)
}

pub(super) fn event_synchronize(s: &mut Session, e: u64) -> Result<(), Status> {
    let (c, real) = event(s, e)?;
    s.worker.backend().event_synchronize(c, real)?;
    s.take_deferred()
}

pub(super) fn event_query(s: &mut Session, e: u64) -> Result<(), Status> {
    s.take_deferred()?;
    let (c, real) = event(s, e)?;
    ready(s.worker.backend().event_query(c, real)?)
}

pub(super) fn event_elapsed(s: &mut Session, start: u64, end: u64) -> Result<Elapsed, Status> {
    let (c, a) = event(s, start)?;
    let (_, z) = event(s, end)?;
    s.worker.backend().event_elapsed(c, a, z).map(Elapsed)
}

pub(super) fn event_destroy(s: &mut Session, e: u64) -> Result<(), Status> {
    let ev = s.exec.events.remove(&e).ok_or(cu::INVALID_HANDLE)?;
    s.worker.backend().event_destroy(ev.ctx, ev.real)
}
