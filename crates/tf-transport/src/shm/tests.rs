//! Tests that need the region's internals: corrupting a live ring.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;
use crate::Connection;

/// A unique /dev/shm file, removed on drop.
struct TempRegion(PathBuf);

impl TempRegion {
    fn new(name: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Self(PathBuf::from(format!(
            "/dev/shm/tf-transport-unit-{}-{n}-{name}",
            std::process::id()
        )))
    }
}

impl Drop for TempRegion {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn pair(path: &TempRegion) -> (ShmServer, ShmConnection, ShmConnection) {
    let server = ShmServer::create(&path.0, MIN_REGION_MB).unwrap();
    let client = ShmConnection::connect(&path.0, MIN_REGION_MB).unwrap();
    let Some(Connection::Shm(worker)) = server.accept(Duration::from_secs(5)).unwrap() else {
        panic!("no client accepted");
    };
    (server, client, worker)
}

#[test]
fn corrupt_frame_header_in_the_ring_is_an_error() {
    let path = TempRegion::new("corrupt-header");
    let (_server, mut client, mut worker) = pair(&path);
    client
        .send(FrameHeader::request(1, 0, 1), &[b"hello"])
        .unwrap();
    let ch = client.live.region.channel(client.live.slot);
    // SAFETY: the first byte of the request ring, inside the mapping; the
    // frame is published and nobody else writes it now.
    unsafe { *ch.req ^= 0xff };
    let err = worker.recv(|_, _| ()).unwrap_err();
    assert!(matches!(err, TransportError::Protocol { .. }), "{err}");
    assert!(!err.is_peer_gone());
    assert!(
        err.to_string().contains("not a TensorFusion frame"),
        "{err}"
    );
}

#[test]
fn corrupt_length_and_indices_are_errors() {
    let path = TempRegion::new("corrupt-len");
    let (_server, mut client, mut worker) = pair(&path);
    client
        .send(FrameHeader::request(1, 0, 1), &[b"hello"])
        .unwrap();
    let ch = client.live.region.channel(client.live.slot);
    // SAFETY: bytes 12..16 (the length field) of the published frame.
    unsafe { ch.req.add(12).cast::<u32>().write_unaligned(1 << 20) };
    let err = worker.recv(|_, _| ()).unwrap_err();
    assert!(matches!(err, TransportError::CorruptRing { .. }), "{err}");

    let path = TempRegion::new("corrupt-index");
    let (_server, client, mut worker) = pair(&path);
    let ch = client.live.region.channel(client.live.slot);
    ch.req_head.store(u64::MAX - 7, Ordering::Release);
    let err = worker.recv(|_, _| ()).unwrap_err();
    assert!(matches!(err, TransportError::CorruptRing { .. }), "{err}");
}

#[test]
fn slot_state_follows_the_protocol() {
    let path = TempRegion::new("states");
    let (server, client, worker) = pair(&path);
    let region = Arc::clone(&client.live.region);
    let slot = client.live.slot;
    let st = || ctl_state(region.slot(slot).ctl.load(Ordering::Acquire));
    assert_eq!(st(), state::ACTIVE);
    drop(worker);
    assert_eq!(st(), state::WORKER_CLOSED);
    drop(client);
    assert_eq!(st(), state::FREE);
    assert_eq!(server.slots_in_use(), 0);

    // Client first, then worker.
    let client = ShmConnection::connect(&path.0, MIN_REGION_MB).unwrap();
    let Some(worker) = server.accept(Duration::from_secs(5)).unwrap() else {
        panic!()
    };
    drop(client);
    assert_eq!(server.slots_in_use(), 1);
    drop(worker);
    assert_eq!(server.slots_in_use(), 0);

    // A client that leaves before being accepted: freed by the next scan.
    let client = ShmConnection::connect(&path.0, MIN_REGION_MB).unwrap();
    drop(client);
    assert_eq!(server.slots_in_use(), 1);
    assert!(server.accept(Duration::ZERO).unwrap().is_none());
    assert_eq!(server.slots_in_use(), 0);
}

#[test]
fn client_that_stops_heart_beating_is_dropped_within_a_second() {
    let path = TempRegion::new("silent-client");
    let (server, mut client, mut worker) = pair(&path);
    // Simulates a frozen or killed client: the heartbeat stops, nothing is
    // released (the connection is leaked, not dropped).
    let Owner::Client(hb) = &mut client.owner else {
        panic!()
    };
    hb.stop();
    std::mem::forget(client);
    let t = Instant::now();
    let err = worker.recv(|_, _| ()).unwrap_err();
    let took = t.elapsed();
    assert!(
        err.is_peer_gone() && err.to_string().contains("heartbeat"),
        "{err}"
    );
    assert!(
        // The worker counts from the last change it saw, just before `t`.
        took >= CLIENT_DEAD_AFTER - HEARTBEAT_EVERY * 2 && took < Duration::from_secs(1),
        "{took:?}"
    );
    drop(worker);
    assert_eq!(server.slots_in_use(), 0);
}

#[test]
fn stalled_worker_heartbeat_is_noticed() {
    let path = TempRegion::new("silent-worker");
    // A region initialised as served, but with no heartbeat thread: like a
    // worker that hangs (or was SIGKILLed) after creating it.
    let _region = Region::create(&path.0, MIN_REGION_MB).unwrap();
    let mut client = ShmConnection::connect(&path.0, MIN_REGION_MB).unwrap();
    let t = Instant::now();
    let err = client.recv(|_, _| ()).unwrap_err();
    let took = t.elapsed();
    assert!(
        err.is_peer_gone() && err.to_string().contains("heartbeat"),
        "{err}"
    );
    assert!(
        took >= WORKER_DEAD_AFTER && took < WORKER_DEAD_AFTER + Duration::from_secs(1),
        "{took:?}"
    );
    // Sending into a full ring notices it too, rather than waiting forever.
    let mut client = ShmConnection::connect(&path.0, MIN_REGION_MB).unwrap();
    let chunk = vec![0u8; client.max_payload()];
    let t = Instant::now();
    let err = loop {
        if let Err(e) = client.send(FrameHeader::request(1, 0, 1), &[&chunk]) {
            break e;
        }
    };
    assert!(err.is_peer_gone(), "{err}");
    assert!(t.elapsed() < WORKER_DEAD_AFTER + Duration::from_secs(1));
}

#[test]
fn client_presumed_dead_cannot_touch_the_next_owners_frames() {
    let path = TempRegion::new("zombie");
    let (server, mut zombie, mut worker) = pair(&path);
    // Frozen for longer than CLIENT_DEAD_AFTER (a paused VM, a stolen vCPU):
    // its heartbeat stops but it is not gone.
    let Owner::Client(hb) = &mut zombie.owner else {
        panic!()
    };
    hb.stop();
    assert!(worker.recv(|_, _| ()).unwrap_err().is_peer_gone());
    drop(worker);
    // The slot goes to the next client, which gets a response queued.
    let mut next = ShmConnection::connect(&path.0, MIN_REGION_MB).unwrap();
    assert_eq!(next.live.slot, zombie.live.slot);
    let Some(Connection::Shm(mut worker)) = server.accept(Duration::from_secs(5)).unwrap() else {
        panic!()
    };
    worker
        .send(FrameHeader::request(3, 0, 33), &[b"for next"])
        .unwrap();
    // The zombie wakes up: neither its recv nor its send touch that ring.
    let err = zombie
        .recv_timeout(Duration::from_secs(1), |_, _| ())
        .unwrap_err();
    assert!(
        err.is_peer_gone() && err.to_string().contains("reclaimed"),
        "{err}"
    );
    assert!(zombie
        .send(FrameHeader::request(1, 0, 1), &[b"junk"])
        .unwrap_err()
        .is_peer_gone());
    drop(zombie);
    let got = next.recv(|h, p| (h.request_id, p.to_vec())).unwrap();
    assert_eq!(got, (33, b"for next".to_vec()));
    next.send(FrameHeader::request(4, 0, 44), &[b"req"])
        .unwrap();
    assert_eq!(worker.recv(|h, _| h.request_id).unwrap(), 44);
}

#[test]
fn reconnecting_at_once_waits_for_the_slot_being_released() {
    let path = TempRegion::new("settle");
    let (server, a, worker_a) = pair(&path);
    let _b = ShmConnection::connect(&path.0, MIN_REGION_MB).unwrap();
    // Both slots taken; A leaves, but its worker-side session ends later.
    drop(a);
    let ender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(worker_a);
    });
    let t = Instant::now();
    let _c = ShmConnection::connect(&path.0, MIN_REGION_MB).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(90),
        "{:?}",
        t.elapsed()
    );
    ender.join().unwrap();
    assert_eq!(server.refused(), 0);
    // Nothing on its way to FREE: refused at once.
    let t = Instant::now();
    assert!(matches!(
        ShmConnection::connect(&path.0, MIN_REGION_MB),
        Err(TransportError::ShmSlotsFull { .. })
    ));
    assert!(t.elapsed() < Duration::from_millis(50));
}

#[test]
fn an_adopted_slot_serves_the_client_and_the_keeper_releases_it() {
    let path = TempRegion::new("adopt");
    let (server, mut client, keeper) = pair(&path);
    let h = keeper.handoff().expect("the worker side can be handed off");
    assert!(client.handoff().is_none(), "a client end is not handed off");
    // What a session process does with the handoff.
    let mut adopted = ShmConnection::adopt(&path.0, MIN_REGION_MB, h).unwrap();
    client
        .send(FrameHeader::request(7, 0, 1), &[b"ping"])
        .unwrap();
    let got = adopted.recv(|h, p| (h.opcode, p.to_vec())).unwrap();
    assert_eq!(got, (7, b"ping".to_vec()));
    adopted
        .send(FrameHeader::request(8, 0, 1), &[b"pong"])
        .unwrap();
    assert_eq!(client.recv(|h, _| h.opcode).unwrap(), 8);
    // The session process ending changes nothing in the region...
    drop(adopted);
    assert_eq!(server.slots_in_use(), 1);
    // ...its keeper releases the slot once the client has gone too.
    drop(client);
    drop(keeper);
    let _ = server.accept(Duration::from_millis(10));
    assert_eq!(server.slots_in_use(), 0);
    // A handoff of a slot that changed hands is refused.
    let stale = ShmConnection::adopt(&path.0, MIN_REGION_MB, h).unwrap_err();
    assert!(stale.to_string().contains("left before"), "{stale}");
    let bad = ShmHandoff {
        epoch: h.epoch + 1,
        ..h
    };
    let err = ShmConnection::adopt(&path.0, MIN_REGION_MB, bad).unwrap_err();
    assert!(err.to_string().contains("re-initialised"), "{err}");
}
