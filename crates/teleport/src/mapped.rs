//! Mapped host memory, emulated for small pinned buffers that kernels use
//! as flags and semaphores (XLA's autotuning "delay kernel" spins on one).
//!
//! With unified addressing a kernel may be handed a pinned host pointer and
//! dereference it. Here that memory lives in the application's process, so
//! the worker keeps a *mirror* of the range at the same address in the
//! client's session process, registered with the driver (a process per
//! session makes the address free and private). When a launch passes a
//! pointer into a small pinned range (at most [`MAX_ONE`] bytes, [`MAX_ALL`]
//! in all), the mirror is created with the range's contents before the
//! launch is sent.
//!
//! Coherence: before every request the client pushes the bytes the
//! application changed in its mirrored ranges since the last push (so a
//! kernel launched after a host write sees it, and a kernel already
//! spinning on a flag sees it at the application's next call, e.g. the
//! synchronization XLA does after releasing its semaphore); after calls
//! that wait for the GPU (context, stream and event synchronization and
//! queries) it pulls what kernels wrote — the points where a native
//! program may rely on it. Nothing of this runs while no range is mirrored.
//!
//! Graphs. A pinned copy captured into a graph, or a copy node with a
//! pinned side, names the range's mirror (of any size up to
//! [`GRAPH_MAX_ALL`] in all): the graph reads or writes the mirror at each
//! replay. Such mirrors are pushed only before graph launches (a replay is
//! the only reader), and those a graph writes are pulled after waits that
//! follow a launch, and before a host node's function runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tf_protocol::exec_msgs::ExecRequest;
use tf_protocol::graph_msgs::GraphRequest;
use tf_protocol::mem_msgs::{HostBytes, MemRequest, MAX_HOST_MIRROR};
use tf_protocol::status::cu;
use tf_protocol::Request;

/// Largest pinned range mirrored for kernels.
pub(crate) const MAX_ONE: u64 = 64 << 10;
/// Most bytes mirrored for kernels per process.
const MAX_ALL: u64 = 1 << 20;
/// Most bytes mirrored for graphs per process (the worker's limit too).
pub(crate) const GRAPH_MAX_ALL: u64 = 256 << 20;

struct Mirror {
    start: u64,
    /// What the worker's copy holds, as far as this process knows.
    shadow: Vec<u8>,
    /// Kernels may read it at any time: pushed before every request.
    kernels: bool,
    /// A graph writes it: pulled after waits that follow a graph launch.
    graph_writes: bool,
}

static MIRRORS: Mutex<Vec<Mirror>> = Mutex::new(Vec::new());
/// Any mirror exists (the fast path of every request reads only this).
static ANY: AtomicBool = AtomicBool::new(false);
/// A graph ran since mirrors that graphs write were last pulled.
static GRAPH_PULL_DUE: AtomicBool = AtomicBool::new(false);
/// Ranges the worker refused to mirror (thread isolation, address in use):
/// not asked again.
static REFUSED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn mirrors() -> MutexGuard<'static, Vec<Mirror>> {
    MIRRORS.lock().unwrap_or_else(|e| e.into_inner())
}

fn refused() -> MutexGuard<'static, Vec<u64>> {
    REFUSED.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn any() -> bool {
    ANY.load(Ordering::Acquire)
}

/// The application's bytes of a mirrored range.
fn current(start: u64, len: usize) -> &'static [u8] {
    // SAFETY: only ranges this client tracks as pinned host memory of this
    // process are mirrored, and a mirror is dropped (`forget`) before its
    // range is freed or unregistered. Racing application writes are as
    // benign as a DMA reading the buffer.
    unsafe { std::slice::from_raw_parts(start as *const u8, len) }
}

/// Called with a launch's packed parameters: mirrors the small pinned
/// ranges named by pointer-sized, pointer-aligned words.
pub(crate) fn note_launch(ctx: u64, params: &[u8]) {
    if !crate::runtime::host_memory::has_small_host_ranges() {
        return;
    }
    for w in params.chunks_exact(8) {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        if let Some((start, len)) = crate::runtime::host_memory::small_host_range(v, MAX_ONE) {
            if let Err(why) = ensure(ctx, start, len, true, false) {
                tracing::warn!(addr = start, len, "a kernel was given pinned host memory that cannot be mapped for it: {why}; the kernel will fault on the worker");
            }
        }
    }
}

/// A graph copy names pinned memory `[p, p + len)` (`writes`: the graph
/// writes it): mirrors its whole range. `Err` is said once in the log by
/// the caller's error, here as the status to return.
pub(crate) fn for_graph(ctx: u64, p: u64, len: u64, writes: bool) -> Result<(), u32> {
    let Some((start, size)) = crate::runtime::host_memory::host_range_of(p, len) else {
        tracing::warn!(addr = p, len, "a graph copy names host memory that is not pinned (cuMemHostAlloc or page-aligned cuMemHostRegister): a graph replays on the worker, which can only reach pinned memory of this process through a mirror");
        return Err(cu::NOT_SUPPORTED);
    };
    ensure(ctx, start, size, false, writes).map_err(|why| {
        tracing::warn!(
            addr = start,
            len = size,
            "a graph copy names pinned host memory that cannot be mirrored on the worker: {why}"
        );
        cu::NOT_SUPPORTED
    })
}

/// Mirrors `[start, start + len)` unless it is already (then widens what it
/// is used for), or was refused.
fn ensure(ctx: u64, start: u64, len: u64, kernels: bool, writes: bool) -> Result<(), String> {
    if let Some(m) = mirrors().iter_mut().find(|m| m.start == start) {
        m.kernels |= kernels;
        m.graph_writes |= writes;
        return Ok(());
    }
    if refused().contains(&start) {
        return Err("refused before".into());
    }
    let refuse = |why: String| {
        refused().push(start);
        Err(why)
    };
    let g = mirrors();
    let (k_bytes, all): (u64, u64) = g.iter().fold((0, 0), |(k, a), m| {
        let n = m.shadow.len() as u64;
        (if m.kernels { k + n } else { k }, a + n)
    });
    drop(g);
    if kernels && k_bytes + len > MAX_ALL {
        return refuse(
            "more mapped host memory than this client mirrors for kernels (1 MiB)".into(),
        );
    }
    if all + len > GRAPH_MAX_ALL {
        return refuse(format!(
            "more pinned memory than this client mirrors ({} MiB)",
            GRAPH_MAX_ALL >> 20
        ));
    }
    let data = current(start, len as usize).to_vec();
    let sent = crate::cuda::session().and_then(|s| {
        let first = data.len().min(MAX_HOST_MIRROR);
        s.call::<()>(&Request::Mem(MemRequest::HostMirror {
            ctx,
            addr: start,
            size: len,
            data: &data[..first],
        }))?;
        // The rest as writes (a frame carries at most MAX_HOST_MIRROR).
        for (i, part) in data[first..].chunks(MAX_HOST_MIRROR).enumerate() {
            let addr = start + (first + i * MAX_HOST_MIRROR) as u64;
            s.enqueue(&Request::Mem(MemRequest::HostMirrorWrite {
                addr,
                data: part,
            }))?;
        }
        Ok(())
    });
    match sent {
        Ok(()) => {
            mirrors().push(Mirror {
                start,
                shadow: data,
                kernels,
                graph_writes: writes,
            });
            ANY.store(true, Ordering::Release);
            tracing::debug!(addr = start, len, kernels, "pinned host memory mirrored");
            Ok(())
        }
        Err(s) => refuse(format!(
            "the worker answered {s} (it needs TF_SESSION_ISOLATION=process)"
        )),
    }
}

/// Whether a request launches a graph (graph mirrors are pushed first).
pub(crate) fn launches_graph(req: &Request<'_>) -> bool {
    matches!(req, Request::Graph(GraphRequest::Launch { .. }))
}

/// The application's writes since the last push, as `(addr, bytes)` runs
/// of changed bytes (only those, so that a push never overwrites what a
/// kernel wrote next to them), of the mirrors kernels use and, before a
/// graph launch (`graphs`), of all; the shadows are updated (the caller
/// sends the runs before its request).
pub(crate) fn take_host_writes(graphs: bool) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut g = mirrors();
    for m in g.iter_mut().filter(|m| m.kernels || graphs) {
        let now = current(m.start, m.shadow.len());
        if now == m.shadow.as_slice() {
            continue;
        }
        for (from, to) in changed_runs(&m.shadow, now) {
            for at in (from..to).step_by(MAX_HOST_MIRROR) {
                let end = (at + MAX_HOST_MIRROR).min(to);
                out.push((m.start + at as u64, now[at..end].to_vec()));
            }
        }
        m.shadow.copy_from_slice(now);
    }
    if graphs && g.iter().any(|m| m.graph_writes) {
        GRAPH_PULL_DUE.store(true, Ordering::Release);
    }
    out
}

/// `[from, to)` runs where `a` and `b` differ (equal stretches shorter than
/// 16 bytes are bridged: one message instead of many).
fn changed_runs(a: &[u8], b: &[u8]) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for i in (0..a.len().min(b.len())).filter(|&i| a[i] != b[i]) {
        match runs.last_mut() {
            Some((_, to)) if i < *to + 16 => *to = i + 1,
            _ => runs.push((i, i + 1)),
        }
    }
    runs
}

/// Whether a request waits for GPU work, after which kernel writes to
/// mapped memory must be visible.
pub(crate) fn waits_for_gpu(req: &Request<'_>) -> bool {
    matches!(
        req,
        Request::CtxSynchronize { .. }
            | Request::Exec(
                ExecRequest::StreamSynchronize { .. }
                    | ExecRequest::StreamQuery { .. }
                    | ExecRequest::EventSynchronize { .. }
                    | ExecRequest::EventQuery { .. }
            )
    )
}

/// Brings what kernels and graphs wrote to the mirrors into the
/// application's memory: the mirrors kernels use, and those graphs write
/// when a graph ran since (or, `host_call`, a graph is at a host node and
/// goes on after it). `read(addr, size)` fetches mirror bytes (at most
/// `MAX_HOST_MIRROR` at a time). Only bytes that changed are written.
pub(crate) fn pull(host_call: bool, read: &mut dyn FnMut(u64, u64) -> Option<Vec<u8>>) {
    let graphs = host_call || GRAPH_PULL_DUE.swap(false, Ordering::AcqRel);
    let starts: Vec<(u64, usize)> = mirrors()
        .iter()
        .filter(|m| m.kernels || (graphs && m.graph_writes))
        .map(|m| (m.start, m.shadow.len()))
        .collect();
    for (start, len) in starts {
        let mut bytes = Vec::with_capacity(len);
        for at in (0..len).step_by(MAX_HOST_MIRROR) {
            let n = MAX_HOST_MIRROR.min(len - at);
            match read(start + at as u64, n as u64) {
                Some(b) if b.len() == n => bytes.extend_from_slice(&b),
                _ => break,
            }
        }
        if bytes.len() != len {
            continue;
        }
        let mut g = mirrors();
        let Some(m) = g.iter_mut().find(|m| m.start == start) else {
            continue;
        };
        for (from, to) in changed_runs(&m.shadow, &bytes) {
            // SAFETY: as in `current`; the range is writable pinned memory
            // of this process, tracked and mirrored (checked under the lock).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    bytes[from..].as_ptr(),
                    (start + from as u64) as *mut u8,
                    to - from,
                )
            };
            m.shadow[from..to].copy_from_slice(&bytes[from..to]);
        }
    }
}

/// The mirror-read request `pull` sends.
pub(crate) fn read_request(addr: u64, size: u64) -> Request<'static> {
    Request::Mem(MemRequest::HostMirrorRead { addr, size })
}

/// Decodes a mirror-read answer.
pub(crate) type ReadAnswer = HostBytes;

/// The range at `start` is being freed or unregistered: drop its mirror.
pub(crate) fn forget(start: u64) {
    {
        let mut r = refused();
        if !r.is_empty() {
            // A later range may start here and deserves its own chance.
            r.retain(|s| *s != start);
        }
    }
    if !any() {
        return;
    }
    let mut g = mirrors();
    let Some(i) = g.iter().position(|m| m.start == start) else {
        return;
    };
    g.swap_remove(i);
    ANY.store(!g.is_empty(), Ordering::Release);
    drop(g);
    if let Ok(s) = crate::cuda::session() {
        let _ = s.enqueue(&Request::Mem(MemRequest::HostMirrorDrop { addr: start }));
    }
}

#[cfg(test)]
mod tests {
    use super::changed_runs;

    #[test]
    fn changed_runs_cover_every_difference_and_bridge_short_gaps() {
        let a = [0u8; 64];
        let mut b = a;
        assert!(changed_runs(&a, &b).is_empty());
        b[3] = 1;
        b[10] = 1;
        b[40] = 1;
        b[41] = 1;
        assert_eq!(changed_runs(&a, &b), vec![(3, 11), (40, 42)]);
    }
}
