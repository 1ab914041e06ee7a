//! Streams, events, launches, asynchronous memsets and copies.

use std::sync::Arc;

use tf_protocol::encode_reply;
use tf_protocol::exec_msgs::{
    handle, layout_size, Elapsed, ExecRequest, IntReply, Launch, Memset, Shape,
};
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
    let elem = u64::from(m.elem);
    if !matches!(m.elem, 1 | 2 | 4) || !m.dst.is_multiple_of(elem) {
        return Err(cu::INVALID_VALUE);
    }
    let row = m.width.checked_mul(elem).ok_or(cu::INVALID_VALUE)?;
    let extent = match m.height {
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

pub(super) fn dispatch(s: &mut Session, r: ExecRequest<'_>) -> Outcome {
    use ExecRequest as E;
    let w = Arc::clone(&s.worker);
    let b = w.backend();
    match r {
        E::StreamCreate {
            ctx,
            stream,
            flags,
            priority,
        } => reply((|| {
            if !handle::is(handle::STREAM, stream) || s.exec.streams.contains_key(&stream) {
                return Err(cu::INVALID_HANDLE);
            }
            let c = s.ctx(ctx)?;
            let real = b.stream_create(c, flags, priority)?;
            s.exec.streams.insert(stream, Stream { ctx: c, real });
            Ok(())
        })()),
        E::StreamDestroy { stream } => reply((|| {
            let st = s.exec.streams.remove(&stream).ok_or(cu::INVALID_HANDLE)?;
            b.stream_destroy(st.ctx, st.real)
        })()),
        E::StreamSynchronize { ctx, stream } => reply((|| {
            let (c, real) = resolve_stream(s, ctx, stream, None)?;
            b.stream_synchronize(c, real)?;
            s.take_deferred()
        })()),
        E::StreamQuery { ctx, stream } => reply((|| {
            s.take_deferred()?;
            let (c, real) = resolve_stream(s, ctx, stream, None)?;
            ready(b.stream_query(c, real)?)
        })()),
        E::StreamWaitEvent {
            ctx,
            stream,
            event: e,
            flags,
        } => reply((|| {
            let (ectx, ereal) = event(s, e)?;
            let (c, real) = resolve_stream(s, ctx, stream, Some(ectx))?;
            b.stream_wait_event(c, real, ereal, flags)
        })()),
        E::StreamGetPriority { ctx, stream } => reply((|| {
            let (c, real) = resolve_stream(s, ctx, stream, None)?;
            b.stream_get_priority(c, real).map(IntReply)
        })()),
        E::EventCreate {
            ctx,
            event: e,
            flags,
        } => reply((|| {
            if !handle::is(handle::EVENT, e) || s.exec.events.contains_key(&e) {
                return Err(cu::INVALID_HANDLE);
            }
            let c = s.ctx(ctx)?;
            let real = b.event_create(c, flags)?;
            s.exec.events.insert(e, Event { ctx: c, real });
            Ok(())
        })()),
        E::EventRecord {
            ctx,
            event: e,
            stream,
            flags,
        } => reply((|| {
            let (ectx, ereal) = event(s, e)?;
            let (_, real) = resolve_stream(s, ctx, stream, Some(ectx))?;
            b.event_record(ectx, ereal, real, flags)
        })()),
        E::EventSynchronize { event: e } => reply((|| {
            let (c, real) = event(s, e)?;
            b.event_synchronize(c, real)?;
            s.take_deferred()
        })()),
        E::EventQuery { event: e } => reply((|| {
            s.take_deferred()?;
            let (c, real) = event(s, e)?;
            ready(b.event_query(c, real)?)
        })()),
        E::EventElapsedTime { start, end } => reply((|| {
            let (c, a) = event(s, start)?;
            let (_, z) = event(s, end)?;
            b.event_elapsed(c, a, z).map(Elapsed)
        })()),
        E::EventDestroy { event: e } => reply((|| {
            let ev = s.exec.events.remove(&e).ok_or(cu::INVALID_HANDLE)?;
            b.event_destroy(ev.ctx, ev.real)
        })()),
        // The parent dispatches everything else.
        _ => reply::<()>(Err(cu::NOT_SUPPORTED)),
    }
}
