//! SHMEM transport: frames through rings in a shared-memory region.
//!
//! The worker creates the region ([`ShmServer::create`]); clients map the
//! same bytes, on the same host through the /dev/shm file or inside a VM
//! through QEMU's ivshmem PCI BAR ([`crate::connect_shmem`]). Nothing but the
//! region crosses that boundary: no futex, eventfd, socket or pid. So
//!
//! * synchronisation is atomics in the region plus polling with backoff
//!   (spin, then yield, then sleeps growing to 1 ms);
//! * liveness is heartbeat counters: the worker bumps one in the header,
//!   each client one in its slot, every [`HEARTBEAT_EVERY`]. A client that
//!   shows no sign of life for [`CLIENT_DEAD_AFTER`] is dead (its slot is
//!   freed within a second of a SIGKILL); a worker that shows none for
//!   [`WORKER_DEAD_AFTER`], or whose epoch changed (restart), is gone.
//!   Counters are compared with the local clock of the observer, so no
//!   clock is shared. Signs of life are the heartbeat and the ring indices
//!   the peer writes, so a busy peer whose heartbeat thread is starved of
//!   CPU is not declared dead; and an observer that was itself starved
//!   (more than 100 ms between two looks) restarts its clock instead of
//!   blaming the peer.
//!
//! Slots move FREE → CLAIMED (client, compare-exchange) → ACTIVE (worker's
//! accept) → CLIENT_CLOSED or WORKER_CLOSED (whoever leaves first) →
//! RESETTING → FREE (whoever leaves last, or the worker on behalf of a dead
//! client). The control word also carries a generation bumped by every
//! claim, so a side that was presumed dead cannot touch its successor's
//! slot state, and each side re-checks that the slot is still its own
//! before publishing or consuming a frame. (A client that was merely frozen
//! for longer than [`CLIENT_DEAD_AFTER`], e.g. a paused VM, finds its slot
//! gone at its next call and fails with a peer-gone error, without touching
//! the frames of the slot's next owner; only a freeze in the middle of
//! copying a frame into the ring, with a new client claiming the slot
//! during that freeze, could still scribble on that client's ring.)
//!
//! See `region.rs` for the layout and `ring.rs` for the rings.

mod client;
mod region;
mod ring;
mod server;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tf_protocol::FrameHeader;

use crate::backoff::Backoff;
use crate::error::TransportError;
use region::{ctl_gen, ctl_state, state, Region, REGION_MAGIC, WORKER_SERVING};
pub use region::{resolve_path, MAX_SLOTS, MIN_REGION_MB};
use ring::{Consumer, Producer, RingError, Step};
pub use server::ShmServer;

/// How often each side bumps its heartbeat counter.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(50);
/// A client whose heartbeat stands still this long is dead: its worker-side
/// connection fails and its slot is freed.
pub const CLIENT_DEAD_AFTER: Duration = Duration::from_millis(600);
/// A worker whose heartbeat stands still this long is dead. Longer than
/// for clients: a worker stalled for a moment (swapping, a long driver call
/// on the heartbeat's core) must not make every client give up.
pub const WORKER_DEAD_AFTER: Duration = Duration::from_secs(3);

/// Which end of a slot a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Worker,
}

/// An observer that has not looked for this long was itself starved of CPU
/// (a polling waiter looks every millisecond or so): it cannot tell whether
/// the peer was starved too, so it restarts its clock rather than declare
/// the peer dead on an overloaded machine.
const OBSERVER_GAP: Duration = Duration::from_millis(100);

/// Tracks a peer's signs of life against our own clock.
#[derive(Debug, Clone, Copy)]
struct Watch {
    last: u64,
    since: Instant,
    looked: Instant,
    limit: Duration,
}

impl Watch {
    fn new(value: u64, limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            last: value,
            since: now,
            looked: now,
            limit,
        }
    }

    /// False once `value` has not changed for longer than the limit.
    fn alive(&mut self, value: u64, now: Instant) -> bool {
        let gap = now.saturating_duration_since(self.looked);
        self.looked = now;
        if value != self.last || gap > OBSERVER_GAP {
            self.last = value;
            self.since = now;
            return true;
        }
        now.saturating_duration_since(self.since) <= self.limit
    }
}

/// The sum of everything the peer of `side` bumps: its heartbeat and the
/// ring indices it writes. All only grow during a session, so the sum
/// changes whenever any of them does: a peer busy sending or consuming is
/// alive even if its heartbeat thread is starved of CPU.
fn peer_signs(region: &Region, slot: usize, side: Side) -> u64 {
    let c = region.channel(slot);
    let (beat, a, b) = match side {
        Side::Client => (&region.header().heartbeat, c.resp_head, c.req_tail),
        Side::Worker => (&region.slot(slot).client_heartbeat, c.req_head, c.resp_tail),
    };
    beat.load(Ordering::Relaxed)
        .wrapping_add(a.load(Ordering::Relaxed))
        .wrapping_add(b.load(Ordering::Relaxed))
}

/// Everything needed to decide whether the peer is still there; kept apart
/// from the rings so that a ring's wait callback can borrow it.
struct Liveness {
    region: Arc<Region>,
    slot: usize,
    generation: u64,
    epoch: u64,
    side: Side,
    watch: Watch,
    peer: String,
    /// Why the peer is gone, once known: later calls fail at once.
    gone: Option<String>,
    /// Worker side: the client stopped heart-beating, so the slot is freed
    /// (not handed back to the client) when the connection is dropped.
    client_dead: bool,
}

impl Liveness {
    /// The cheap part, done on every send: is the slot still ours and open?
    fn check_slot(&mut self) -> Result<(), TransportError> {
        if let Some(why) = &self.gone {
            return Err(self.error(why.clone()));
        }
        let c = self.region.slot(self.slot).ctl.load(Ordering::Acquire);
        let why = if ctl_gen(c) != self.generation && self.epoch_changed() {
            return Err(self.restarted());
        } else if ctl_gen(c) != self.generation {
            match self.side {
                Side::Client => "the worker reclaimed this client's slot (no heartbeat from this process for too long, or the worker restarted)",
                Side::Worker => "the slot was taken over (another worker initialised the region?)",
            }
        } else {
            match (self.side, ctl_state(c)) {
                (Side::Client, state::CLAIMED | state::ACTIVE) | (Side::Worker, state::ACTIVE) => return Ok(()),
                (Side::Client, state::WORKER_CLOSED) => "the worker closed this session",
                (Side::Worker, state::CLIENT_CLOSED) => "the client closed the connection",
                (Side::Client, _) => "the worker reclaimed this client's slot (no heartbeat from this process for too long?)",
                (Side::Worker, _) => "the slot was reset",
            }
        };
        Err(self.fail(why.to_owned()))
    }

    /// Whether this side may still touch the slot's rings: same generation,
    /// not yet being reset. Weaker than [`Liveness::check_slot`]: frames the
    /// peer sent before it closed may still be read. Checked before every
    /// publish and every consume (one load of a read-mostly cache line), so
    /// that a side wrongly presumed dead (a frozen VM, a stalled vCPU) does
    /// not eat or scribble on the frames of the slot's next owner.
    fn owns_slot(&mut self) -> Result<(), TransportError> {
        let c = self.region.slot(self.slot).ctl.load(Ordering::Acquire);
        let st = ctl_state(c);
        if ctl_gen(c) == self.generation && st != state::FREE && st != state::RESETTING {
            return Ok(());
        }
        if self.epoch_changed() {
            return Err(self.restarted());
        }
        let why = match self.side {
            Side::Client => "the worker reclaimed this client's slot (no heartbeat from this process for too long, or the worker restarted)",
            Side::Worker => "the slot was reset or taken over",
        };
        Err(self.fail(why.to_owned()))
    }

    /// Everything: slot, epoch, heartbeat. Done periodically while waiting.
    fn check(&mut self) -> Result<(), TransportError> {
        self.check_slot()?;
        let h = self.region.header();
        let now = Instant::now();
        match self.side {
            Side::Client => {
                if self.epoch_changed() {
                    return Err(self.restarted());
                }
                if h.worker_state.load(Ordering::Acquire) != WORKER_SERVING {
                    return Err(self.fail("the worker exited".to_owned()));
                }
                if !self
                    .watch
                    .alive(peer_signs(&self.region, self.slot, self.side), now)
                {
                    return Err(self.fail(format!(
                        "no heartbeat or activity from the worker for more than {} s (worker killed or hung?)",
                        self.watch.limit.as_secs_f32()
                    )));
                }
            }
            Side::Worker => {
                if self.epoch_changed() {
                    return Err(self.restarted());
                }
                if !self
                    .watch
                    .alive(peer_signs(&self.region, self.slot, self.side), now)
                {
                    self.client_dead = true;
                    return Err(self.fail(format!(
                        "no heartbeat or activity from the client for more than {} ms (client killed?)",
                        self.watch.limit.as_millis()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The region was initialised again since this connection was made.
    fn epoch_changed(&self) -> bool {
        let h = self.region.header();
        h.magic.load(Ordering::Acquire) != REGION_MAGIC
            || h.epoch.load(Ordering::Acquire) != self.epoch
    }

    fn restarted(&mut self) -> TransportError {
        self.fail(match self.side {
            Side::Client => {
                "the worker restarted (the region's epoch changed); reconnect".to_owned()
            }
            Side::Worker => "another worker initialised the region".to_owned(),
        })
    }

    fn fail(&mut self, why: String) -> TransportError {
        self.gone = Some(why.clone());
        self.error(why)
    }

    fn error(&self, why: String) -> TransportError {
        TransportError::PeerGone {
            peer: self.peer.clone(),
            why,
        }
    }
}

/// What a connection keeps alive besides the region.
enum Owner {
    /// Heart-beats for this client until dropped.
    Client(client::Heartbeat),
    /// Keeps the worker's heartbeat (and the server's bookkeeping) alive.
    Worker(Arc<server::ServerShared>),
    /// The worker side of a slot that another process accepted and keeps
    /// (a session process, see [`ShmConnection::adopt`]): that process
    /// heart-beats and releases the slot when this one has exited, so
    /// dropping this end changes nothing in the region.
    Adopted,
}

/// What a session process needs to serve the worker side of a slot its
/// parent accepted: the slot and the generation and epoch it was accepted
/// in, so the child can never serve a slot that has since changed hands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmHandoff {
    pub slot: usize,
    pub generation: u64,
    pub epoch: u64,
}

/// One end of a slot: the client's or the worker's.
pub struct ShmConnection {
    tx: Producer,
    rx: Consumer,
    live: Liveness,
    max_payload: usize,
    // Dropped after the rings' raw pointers are no longer used (see Drop).
    owner: Owner,
}

// SAFETY: the raw pointers in `tx`/`rx` point into the mapping kept alive by
// `live.region` (an Arc), not into thread-local data; the connection is the
// only producer/consumer of its two rings wherever it is moved. It is not
// Sync: `&mut self` is required for every operation.
unsafe impl Send for ShmConnection {}

impl ShmConnection {
    /// Builds one end of slot `slot` (generation `generation`).
    fn new(
        region: Arc<Region>,
        slot: usize,
        generation: u64,
        epoch: u64,
        side: Side,
        owner: Owner,
    ) -> Self {
        let c = region.channel(slot);
        // SAFETY: the indices and ring bytes lie in the mapping, which
        // `live.region` keeps mapped for the connection's lifetime. The
        // claim protocol makes this connection the only client (or the only
        // worker-side connection) of the slot, hence the only producer of
        // one ring and the only consumer of the other.
        let (tx, rx) = unsafe {
            match side {
                Side::Client => (
                    Producer::new(c.req_head, c.req_tail, c.req, c.ring),
                    Consumer::new(c.resp_head, c.resp_tail, c.resp, c.ring),
                ),
                Side::Worker => (
                    Producer::new(c.resp_head, c.resp_tail, c.resp, c.ring),
                    Consumer::new(c.req_head, c.req_tail, c.req, c.ring),
                ),
            }
        };
        let limit = match side {
            Side::Client => WORKER_DEAD_AFTER,
            Side::Worker => CLIENT_DEAD_AFTER,
        };
        let watch = Watch::new(peer_signs(&region, slot, side), limit);
        let peer = format!("shmem {} slot {slot}", region.path().display());
        let max_payload = region.layout().max_payload().min(tx.capacity_payload());
        let live = Liveness {
            region,
            slot,
            generation,
            epoch,
            side,
            watch,
            peer,
            gone: None,
            client_dead: false,
        };
        Self {
            tx,
            rx,
            live,
            max_payload,
            owner,
        }
    }

    /// The worker side of this connection, for a session process to
    /// [`adopt`](Self::adopt) while this one keeps the connection (and with
    /// it the slot) until that process has exited. `None` on the client side.
    pub fn handoff(&self) -> Option<ShmHandoff> {
        matches!(self.owner, Owner::Worker(_)).then_some(ShmHandoff {
            slot: self.live.slot,
            generation: self.live.generation,
            epoch: self.live.epoch,
        })
    }

    /// In a session process: serves the worker side of the slot described by
    /// `h`, which the parent accepted at `path` (a region of `size_mb` MiB).
    /// Fails if the region was re-initialised or the slot is no longer that
    /// client's. The parent's heartbeat keeps the region alive.
    pub fn adopt(path: &Path, size_mb: u64, h: ShmHandoff) -> Result<Self, TransportError> {
        let region = Arc::new(Region::open(path, size_mb)?);
        let peer = format!("shmem {} slot {}", region.path().display(), h.slot);
        let gone = |why: &str| TransportError::PeerGone {
            peer: peer.clone(),
            why: why.to_owned(),
        };
        if region.header().epoch.load(Ordering::Acquire) != h.epoch {
            return Err(gone("the region was re-initialised by another worker"));
        }
        if h.slot >= region.layout().slots as usize {
            return Err(gone("no such slot in this region"));
        }
        let c = region.slot(h.slot).ctl.load(Ordering::Acquire);
        if ctl_gen(c) != h.generation || ctl_state(c) != state::ACTIVE {
            return Err(gone("the client left before its session started"));
        }
        Ok(Self::new(
            region,
            h.slot,
            h.generation,
            h.epoch,
            Side::Worker,
            Owner::Adopted,
        ))
    }

    /// See [`crate::Connection::send`].
    pub fn send(&mut self, header: FrameHeader, parts: &[&[u8]]) -> Result<(), TransportError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.send_with(header, len, |dst| {
            let mut at = 0;
            for p in parts {
                dst[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
        })
    }

    /// See [`crate::Connection::send_with`].
    pub fn send_with(
        &mut self,
        mut header: FrameHeader,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), TransportError> {
        if len > self.max_payload {
            return Err(TransportError::TooLarge {
                len,
                max: self.max_payload,
            });
        }
        self.live.check_slot()?;
        // Cannot truncate: max_payload <= MAX_PAYLOAD, a u32.
        header.length = len as u32;
        let head = header.encode();
        let live = &mut self.live;
        let mut backoff = Backoff::new();
        let step = |s| -> Result<(), TransportError> {
            match s {
                Step::Wait => {
                    backoff.snooze();
                    if backoff.should_check() {
                        live.check()?;
                    }
                    Ok(())
                }
                Step::Publish => live.owns_slot(),
            }
        };
        self.tx
            .write_with(&head, len, step, fill)
            .map_err(|e| self.ring_error(e))
    }

    /// See [`crate::Connection::recv`].
    pub fn recv<R>(
        &mut self,
        f: impl FnOnce(FrameHeader, &[u8]) -> R,
    ) -> Result<R, TransportError> {
        self.recv_until(None, f)
            .map(|r| r.expect("no deadline, no timeout"))
    }

    /// See [`crate::Connection::recv_timeout`].
    pub fn recv_timeout<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(FrameHeader, &[u8]) -> R,
    ) -> Result<Option<R>, TransportError> {
        self.recv_until(Some(crate::backoff::deadline_after(timeout)), f)
    }

    fn recv_until<R>(
        &mut self,
        deadline: Option<Instant>,
        f: impl FnOnce(FrameHeader, &[u8]) -> R,
    ) -> Result<Option<R>, TransportError> {
        let mut backoff = Backoff::new();
        loop {
            if let Some(rec) = self.rx.peek().map_err(|e| self.ring_error(e))? {
                self.live.owns_slot()?;
                // SAFETY: `peek` checked that `len` bytes from `payload` lie
                // inside the ring and were published by the producer, which
                // will not touch them before `consume` releases them. The
                // slice cannot outlive `f` (higher-ranked lifetime).
                let payload = unsafe { std::slice::from_raw_parts(rec.payload, rec.len) };
                let r = f(rec.header, payload);
                self.rx.consume(&rec);
                return Ok(Some(r));
            }
            // A peer that sent a last frame and left: deliver the frame
            // first, report the departure on the next call.
            if let Some(why) = &self.live.gone {
                return Err(self.live.error(why.clone()));
            }
            backoff.snooze();
            if backoff.should_check() {
                if let Err(e) = self.live.check() {
                    // Re-peek: a frame published just before the peer left.
                    if self.rx.peek().map_err(|e| self.ring_error(e))?.is_some() {
                        continue;
                    }
                    return Err(e);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
            }
        }
    }

    /// See [`crate::Connection::max_payload`].
    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    /// See [`crate::Connection::describe`].
    pub fn describe(&self) -> String {
        self.live.peer.clone()
    }

    /// Maps a ring error. Inconsistent ring contents are first blamed on
    /// the peer being gone if it is: a restarted worker resets the indices
    /// under an old client, which is a restart, not corruption.
    fn ring_error<E: Into<TransportError>>(&mut self, e: RingError<E>) -> TransportError {
        let peer = self.live.peer.clone();
        if matches!(e, RingError::Corrupt(_) | RingError::Protocol(_)) {
            if let Err(gone) = self.live.owns_slot().and_then(|()| self.live.check()) {
                return gone;
            }
        }
        match e {
            RingError::Corrupt(why) => TransportError::CorruptRing { peer, why },
            RingError::Protocol(source) => TransportError::Protocol { peer, source },
            RingError::Wait(e) => e.into(),
        }
    }
}

impl From<std::convert::Infallible> for TransportError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

impl Drop for ShmConnection {
    fn drop(&mut self) {
        match &mut self.owner {
            Owner::Client(hb) => {
                // Stop heart-beating first: once the slot is released the
                // counter may belong to the next client.
                hb.stop();
                client::release(&self.live.region, self.live.slot, self.live.generation);
            }
            Owner::Worker(server) => {
                server.release(self.live.slot, self.live.generation, self.live.client_dead);
            }
            Owner::Adopted => {}
        }
    }
}

impl std::fmt::Debug for ShmConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmConnection")
            .field("peer", &self.live.peer)
            .field("side", &self.live.side)
            .field("max_payload", &self.max_payload)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
