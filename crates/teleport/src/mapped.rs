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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tf_protocol::exec_msgs::ExecRequest;
use tf_protocol::mem_msgs::{HostBytes, MemRequest};
use tf_protocol::Request;

use crate::client::Client;

/// Largest pinned range mirrored.
pub(crate) const MAX_ONE: u64 = 64 << 10;
/// Most bytes mirrored per process.
const MAX_ALL: u64 = 1 << 20;

struct Mirror {
    start: u64,
    /// What the worker's copy holds, as far as this process knows.
    shadow: Vec<u8>,
}

static MIRRORS: Mutex<Vec<Mirror>> = Mutex::new(Vec::new());
/// Any mirror exists (the fast path of every request reads only this).
static ANY: AtomicBool = AtomicBool::new(false);
/// Ranges the worker refused to mirror (thread isolation, address in use):
/// not asked again.
static REFUSED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

fn mirrors() -> MutexGuard<'static, Vec<Mirror>> {
    MIRRORS.lock().unwrap_or_else(|e| e.into_inner())
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
            ensure(ctx, start, len);
        }
    }
}

/// Mirrors `[start, start + len)` unless it is already, or was refused.
fn ensure(ctx: u64, start: u64, len: u64) {
    if mirrors().iter().any(|m| m.start == start)
        || REFUSED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&start)
    {
        return;
    }
    let refuse = |why: &str| {
        REFUSED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(start);
        tracing::warn!(addr = start, len, "a kernel was given pinned host memory that cannot be mapped for it: {why}; the kernel will fault on the worker");
    };
    let mirrored: usize = mirrors().iter().map(|m| m.shadow.len()).sum();
    if mirrored as u64 + len > MAX_ALL {
        return refuse("more mapped host memory than this client mirrors (1 MiB)");
    }
    let data = current(start, len as usize).to_vec();
    let sent = crate::cuda::session().and_then(|s| {
        s.call::<()>(&Request::Mem(MemRequest::HostMirror {
            ctx,
            addr: start,
            data: &data,
        }))
    });
    match sent {
        Ok(()) => {
            mirrors().push(Mirror {
                start,
                shadow: data,
            });
            ANY.store(true, Ordering::Release);
            tracing::debug!(addr = start, len, "pinned host memory mirrored for kernels");
        }
        Err(s) => refuse(&format!(
            "the worker answered {s} (it needs TF_SESSION_ISOLATION=process)"
        )),
    }
}

/// The application's writes since the last push, as `(addr, bytes)` runs
/// of changed bytes (only those, so that a push never overwrites what a
/// kernel wrote next to them); the shadows are updated (the caller sends
/// the runs before its request).
pub(crate) fn take_host_writes() -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for m in mirrors().iter_mut() {
        let now = current(m.start, m.shadow.len());
        if now == m.shadow.as_slice() {
            continue;
        }
        for (from, to) in changed_runs(&m.shadow, now) {
            out.push((m.start + from as u64, now[from..to].to_vec()));
        }
        m.shadow.copy_from_slice(now);
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

/// Brings kernel writes to the mirrors into the application's memory.
pub(crate) fn pull(client: &Client) {
    let starts: Vec<(u64, usize)> = mirrors()
        .iter()
        .map(|m| (m.start, m.shadow.len()))
        .collect();
    for (start, len) in starts {
        let Ok(HostBytes(bytes)) =
            client.call::<HostBytes>(&Request::Mem(MemRequest::HostMirrorRead {
                addr: start,
                size: len as u64,
            }))
        else {
            continue;
        };
        let mut g = mirrors();
        let Some(m) = g.iter_mut().find(|m| m.start == start) else {
            continue;
        };
        if bytes.len() == len && bytes != m.shadow {
            // SAFETY: as in `current`; the range is writable pinned memory
            // of this process, tracked and mirrored (checked under the lock).
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start as *mut u8, len) };
            m.shadow.copy_from_slice(&bytes);
        }
    }
}

/// The range at `start` is being freed or unregistered: drop its mirror.
pub(crate) fn forget(start: u64) {
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
