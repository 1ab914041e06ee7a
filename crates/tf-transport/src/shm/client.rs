//! Client side: claiming a slot, heart-beating, releasing the slot.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::region::{ctl, ctl_gen, ctl_state, state, Region, WORKER_SERVING};
use super::{Owner, ShmConnection, Side, HEARTBEAT_EVERY};
use crate::backoff::{deadline_after, Backoff};
use crate::error::TransportError;

impl ShmConnection {
    /// See [`crate::connect_shmem`].
    pub fn connect(path: &Path, size_mb: u64) -> Result<ShmConnection, TransportError> {
        let region = Arc::new(Region::open(path, size_mb)?);
        let h = region.header();
        let epoch = h.epoch.load(Ordering::Acquire);
        if h.worker_state.load(Ordering::Acquire) != WORKER_SERVING {
            return Err(TransportError::ShmNoWorker {
                path: region.path().to_path_buf(),
            });
        }
        let slots = region.layout().slots;
        let (slot, generation) = claim_any(&region).ok_or_else(|| {
            // Counted so that the worker, whose log the operator reads, can
            // say that clients are being turned away.
            h.refused.fetch_add(1, Ordering::Relaxed);
            TransportError::ShmSlotsFull {
                path: region.path().to_path_buf(),
                slots,
            }
        })?;
        region.prefault_channel(slot);
        let heartbeat = match Heartbeat::start(Arc::clone(&region), slot) {
            Ok(hb) => hb,
            Err(source) => {
                release(&region, slot, generation);
                let peer = format!("shmem {} slot {slot}", region.path().display());
                return Err(TransportError::Io { peer, source });
            }
        };
        tracing::debug!(path = %region.path().display(), slot, "claimed shared memory slot");
        Ok(ShmConnection::new(
            region,
            slot,
            generation,
            epoch,
            Side::Client,
            Owner::Client(heartbeat),
        ))
    }
}

/// How long to wait for a slot that is being released (a client that just
/// left, whose worker-side session is ending) before reporting the table
/// full: a client that reconnects at once would otherwise be refused.
const SETTLE_WAIT: Duration = Duration::from_secs(1);

/// Claims the first free slot, waiting up to [`SETTLE_WAIT`] while none is
/// free but some are on their way to FREE.
fn claim_any(region: &Region) -> Option<(usize, u64)> {
    let slots = region.layout().slots as usize;
    let deadline = deadline_after(SETTLE_WAIT);
    let mut backoff = Backoff::new();
    loop {
        if let Some(claimed) = (0..slots).find_map(|i| claim(region, i)) {
            return Some(claimed);
        }
        let settling = (0..slots).any(|i| {
            let st = ctl_state(region.slot(i).ctl.load(Ordering::Acquire));
            st == state::CLIENT_CLOSED || st == state::RESETTING
        });
        if !settling || Instant::now() >= deadline {
            return None;
        }
        backoff.snooze();
    }
}

/// Tries to claim slot `i`: FREE(g) → CLAIMED(g + 1).
fn claim(region: &Region, i: usize) -> Option<(usize, u64)> {
    let s = region.slot(i);
    let c = s.ctl.load(Ordering::Acquire);
    if ctl_state(c) != state::FREE {
        return None;
    }
    let generation = ctl_gen(c).wrapping_add(1) & (u64::MAX >> 8);
    // AcqRel: acquire the reset rings released with FREE; release our claim.
    s.ctl
        .compare_exchange(
            c,
            ctl(generation, state::CLAIMED),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .ok()?;
    Some((i, generation))
}

/// Releases slot `slot` of generation `generation` when the client's
/// connection is dropped: tells the worker (CLIENT_CLOSED), or frees the slot
/// if the worker has already let go of it (WORKER_CLOSED).
pub(super) fn release(region: &Region, slot: usize, generation: u64) {
    let s = region.slot(slot);
    loop {
        let c = s.ctl.load(Ordering::Acquire);
        if ctl_gen(c) != generation {
            return; // Not ours any more (reclaimed by the worker).
        }
        let done = match ctl_state(c) {
            state::CLAIMED | state::ACTIVE => s
                .ctl
                .compare_exchange(
                    c,
                    ctl(generation, state::CLIENT_CLOSED),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok(),
            state::WORKER_CLOSED => {
                if s.ctl
                    .compare_exchange(
                        c,
                        ctl(generation, state::RESETTING),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
                {
                    region.free_slot(slot, generation);
                    true
                } else {
                    false
                }
            }
            _ => true,
        };
        if done {
            return;
        }
    }
}

/// The client's heartbeat thread for one slot.
pub(super) struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(region: Arc<Region>, slot: usize) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name(format!("tf-shm-hb-{slot}"))
            .spawn(move || {
                let beat = &region.slot(slot).client_heartbeat;
                while !flag.load(Ordering::Acquire) {
                    beat.fetch_add(1, Ordering::Relaxed);
                    // Parked rather than slept so that `stop` ends it at once.
                    std::thread::park_timeout(HEARTBEAT_EVERY);
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops and joins the thread (returns within microseconds).
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop();
    }
}
