//! Worker side: creating the region, accepting clients, reclaiming slots.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::region::{ctl, ctl_gen, ctl_state, state, Region, WORKER_EXITED};
use super::{Owner, ShmConnection, Side, Watch, CLIENT_DEAD_AFTER, HEARTBEAT_EVERY};
use crate::backoff::Backoff;
use crate::error::TransportError;
use crate::Connection;

/// The worker's end of a shared-memory region.
///
/// [`ShmServer::accept`] hands out a [`Connection`] for each slot a client
/// claims; run one thread per connection. Keep calling `accept` (e.g. in a
/// loop with a timeout) for as long as the worker serves: besides accepting,
/// it frees slots whose client left or died while no connection was
/// attached, and logs a warning when clients were turned away.
///
/// The worker's heartbeat runs as long as the server or any connection it
/// handed out is alive. Dropping the last of them marks the region as having
/// no worker; the file stays, so that a restarted worker (and QEMU's ivshmem
/// device) keeps using the same one.
#[derive(Debug)]
pub struct ShmServer {
    shared: Arc<ServerShared>,
}

/// State shared by the server and its connections.
pub(super) struct ServerShared {
    region: Arc<Region>,
    epoch: u64,
    /// Slot has a worker-side connection.
    attached: Vec<AtomicBool>,
    /// Serialises accept scans; holds their bookkeeping.
    scan: Mutex<ScanState>,
}

struct ScanState {
    /// For slots the worker left while the client was alive: the client's
    /// heartbeat, to free the slot should the client die without releasing.
    closed: Vec<Option<(u64, Watch)>>,
    /// `refused` as last reported.
    refused_seen: u64,
}

impl ShmServer {
    /// Creates (or re-initialises) the region at `path` with `size_mb` MiB:
    /// `/name` means `/dev/shm/name`, any other path is used as is. Clients
    /// attached to a previous worker of the same file see it restarted.
    pub fn create(path: impl AsRef<Path>, size_mb: u64) -> Result<Self, TransportError> {
        let region = Arc::new(Region::create(path.as_ref(), size_mb)?);
        let layout = region.layout();
        let epoch = region.header().epoch.load(Ordering::Relaxed);
        let shared = Arc::new(ServerShared {
            attached: (0..layout.slots).map(|_| AtomicBool::new(false)).collect(),
            scan: Mutex::new(ScanState {
                closed: vec![None; layout.slots as usize],
                refused_seen: 0,
            }),
            region,
            epoch,
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("tf-shm-worker-hb".to_owned())
            .spawn(move || heartbeat(weak))
            .map_err(|source| TransportError::Io {
                peer: format!("shmem {}", path.as_ref().display()),
                source,
            })?;
        tracing::info!(
            path = %shared.region.path().display(),
            size_mb,
            slots = layout.slots,
            max_payload = layout.max_payload(),
            "shared memory region ready"
        );
        Ok(Self { shared })
    }

    /// Waits up to `timeout` for a client to claim a slot and returns its
    /// connection, or `Ok(None)`. Fails only if another worker
    /// re-initialised the region, after which this one cannot serve it.
    pub fn accept(&self, timeout: Duration) -> Result<Option<Connection>, TransportError> {
        let deadline = crate::backoff::deadline_after(timeout);
        let mut backoff = Backoff::new();
        loop {
            if let Some(c) = self.scan()? {
                return Ok(Some(Connection::Shm(c)));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            backoff.snooze();
        }
    }

    fn scan(&self) -> Result<Option<ShmConnection>, TransportError> {
        let sh = &self.shared;
        let region = &sh.region;
        let h = region.header();
        if h.epoch.load(Ordering::Acquire) != sh.epoch {
            return Err(TransportError::PeerGone {
                peer: format!("shmem {}", region.path().display()),
                why: "another worker initialised the region; only one worker may serve a region"
                    .to_owned(),
            });
        }
        let mut st = sh.scan.lock().unwrap_or_else(PoisonError::into_inner);
        let refused = h.refused.load(Ordering::Relaxed);
        if refused != st.refused_seen {
            tracing::warn!(
                "{} client(s) could not connect to {}: all {} client slots are in use; start another worker or stop a client",
                refused.wrapping_sub(st.refused_seen),
                region.path().display(),
                region.layout().slots
            );
            st.refused_seen = refused;
        }
        let now = Instant::now();
        for i in 0..region.layout().slots as usize {
            let s = region.slot(i);
            let c = s.ctl.load(Ordering::Acquire);
            let g = ctl_gen(c);
            match ctl_state(c) {
                state::CLAIMED => {
                    // Attached before ACTIVE is visible, so that no scan can
                    // take an ACTIVE-then-closed slot for an orphan.
                    sh.attached[i].store(true, Ordering::SeqCst);
                    if s.ctl
                        .compare_exchange(
                            c,
                            ctl(g, state::ACTIVE),
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        )
                        .is_err()
                    {
                        sh.attached[i].store(false, Ordering::SeqCst);
                        continue;
                    }
                    st.closed[i] = None;
                    region.prefault_channel(i);
                    tracing::debug!(path = %region.path().display(), slot = i, "accepted shared memory client");
                    let owner = Owner::Worker(Arc::clone(sh));
                    return Ok(Some(ShmConnection::new(
                        Arc::clone(region),
                        i,
                        g,
                        sh.epoch,
                        Side::Worker,
                        owner,
                    )));
                }
                // The client left before we accepted it, or while its
                // connection was being dropped: nobody else will reset it.
                state::CLIENT_CLOSED if !sh.attached[i].load(Ordering::SeqCst) => {
                    sh.reset_if(i, c);
                }
                state::WORKER_CLOSED => {
                    let beat = s.client_heartbeat.load(Ordering::Relaxed);
                    let w = match &mut st.closed[i] {
                        Some((wg, w)) if *wg == g => w,
                        other => &mut other.insert((g, Watch::new(beat, CLIENT_DEAD_AFTER))).1,
                    };
                    if !w.alive(beat, now) && sh.reset_if(i, c) {
                        tracing::debug!(
                            slot = i,
                            "freed the slot of a client that died after its session closed"
                        );
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// The region's file.
    pub fn path(&self) -> &Path {
        self.shared.region.path()
    }

    /// How many clients the region can serve at once.
    pub fn slot_count(&self) -> usize {
        self.shared.region.layout().slots as usize
    }

    /// Largest payload one frame may carry on this region's connections.
    pub fn max_payload(&self) -> usize {
        self.shared.region.layout().max_payload()
    }

    /// Slots not FREE: claimed, active, or not yet reset.
    pub fn slots_in_use(&self) -> usize {
        let r = &self.shared.region;
        (0..r.layout().slots as usize)
            .filter(|&i| ctl_state(r.slot(i).ctl.load(Ordering::Acquire)) != state::FREE)
            .count()
    }

    /// Clients turned away so far because every slot was in use.
    pub fn refused(&self) -> u64 {
        self.shared.region.header().refused.load(Ordering::Relaxed)
    }
}

impl ServerShared {
    /// Frees slot `i` if its control word is still `c`; true if it did.
    fn reset_if(&self, i: usize, c: u64) -> bool {
        let s = self.region.slot(i);
        let g = ctl_gen(c);
        let won = s
            .ctl
            .compare_exchange(
                c,
                ctl(g, state::RESETTING),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if won {
            self.region.free_slot(i, g);
        }
        won
    }

    /// Called when the worker-side connection of slot `slot` is dropped.
    pub(super) fn release(&self, slot: usize, generation: u64, client_dead: bool) {
        let s = self.region.slot(slot);
        loop {
            let c = s.ctl.load(Ordering::Acquire);
            if ctl_gen(c) != generation {
                break;
            }
            let done = match ctl_state(c) {
                // The client is dead: nobody else will free the slot.
                state::ACTIVE if client_dead => self.reset_if(slot, c),
                // The client is alive: it frees the slot when it lets go.
                state::ACTIVE => s
                    .ctl
                    .compare_exchange(
                        c,
                        ctl(generation, state::WORKER_CLOSED),
                        Ordering::AcqRel,
                        Ordering::Relaxed,
                    )
                    .is_ok(),
                state::CLIENT_CLOSED => self.reset_if(slot, c),
                _ => true,
            };
            if done {
                break;
            }
        }
        // After the state change: see the CLIENT_CLOSED arm of `scan`.
        self.attached[slot].store(false, Ordering::SeqCst);
    }
}

impl Drop for ServerShared {
    fn drop(&mut self) {
        let h = self.region.header();
        // Only if the region is still ours: a newer worker may have taken it.
        if h.epoch.load(Ordering::Acquire) == self.epoch {
            h.worker_state.store(WORKER_EXITED, Ordering::Release);
        }
    }
}

impl std::fmt::Debug for ServerShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerShared")
            .field("region", &self.region)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// The worker heartbeat: runs while the server or one of its connections
/// is alive (holds only a weak reference, so it does not keep them alive).
fn heartbeat(shared: Weak<ServerShared>) {
    while let Some(s) = shared.upgrade() {
        s.region.header().heartbeat.fetch_add(1, Ordering::Relaxed);
        drop(s);
        std::thread::sleep(HEARTBEAT_EVERY);
    }
}
