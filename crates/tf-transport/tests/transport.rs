//! Behaviour both transports share, run over each of them.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tf_transport::{FrameHeader, TransportError, MAX_PAYLOAD};

#[test]
fn round_trip_with_gathered_parts() {
    for h in Harness::all() {
        let mut c = h.connect();
        assert!(c.describe().starts_with(if h.kind == "tcp" {
            "native 127.0.0.1:"
        } else {
            "shmem /dev/shm/"
        }));
        assert_eq!(call(&mut c, OP_ECHO, 1, &[b"ping"]), b"ping", "{}", h.kind);
        assert_eq!(
            call(&mut c, OP_ECHO, 2, &[b"a", b"", b"bc", b"def"]),
            b"abcdef",
            "{}",
            h.kind
        );
        assert_eq!(call(&mut c, OP_ECHO, 3, &[]), b"", "{}", h.kind);
    }
}

#[test]
fn pipelining_1000_frames_before_reading() {
    for h in Harness::all() {
        let mut c = h.connect();
        for i in 0..1000u64 {
            c.send(
                FrameHeader::request(OP_ECHO, 0, i),
                &[&i.to_le_bytes(), b"payload"],
            )
            .unwrap();
        }
        for i in 0..1000u64 {
            c.recv(|hd, p| {
                assert_eq!(hd.request_id, i, "{}", h.kind);
                assert_eq!(&p[..8], &i.to_le_bytes());
                assert_eq!(&p[8..], b"payload");
            })
            .unwrap();
        }
    }
}

#[test]
fn payloads_from_empty_to_max_payload() {
    for h in Harness::all() {
        let mut c = h.connect();
        let max = c.max_payload();
        if h.kind == "tcp" {
            assert_eq!(max, MAX_PAYLOAD as usize);
        }
        let mut sizes = vec![
            0,
            1,
            7,
            8,
            23,
            24,
            25,
            4095,
            4096,
            4097,
            65535,
            65536,
            65537,
            max / 2 + 3,
            max - 1,
            max,
        ];
        sizes.retain(|&s| s <= max);
        for (i, &len) in sizes.iter().enumerate() {
            let data = random_bytes(len, i as u64 + 1);
            // Host → worker: the worker checks what arrived.
            let sum = call(&mut c, OP_SUM, i as u64, &[&data]);
            assert_eq!(
                sum,
                checksum(&data).to_le_bytes(),
                "{} upload of {len} bytes",
                h.kind
            );
            // Worker → host: generated there, checked here.
            let mut req = (len as u64).to_le_bytes().to_vec();
            req.extend_from_slice(&(i as u64 + 1).to_le_bytes());
            let got = call(&mut c, OP_GENERATE, i as u64, &[&req]);
            assert_eq!(got.len(), len);
            assert!(
                checksum(&got) == checksum(&data) && got == data,
                "{} download of {len} bytes",
                h.kind
            );
        }
        // Echo of the largest one through both directions in one call.
        let data = random_bytes(max, 99);
        assert!(
            call(&mut c, OP_ECHO, 100, &[&data[..max / 3], &data[max / 3..]]) == data,
            "{}",
            h.kind
        );
        let err = c
            .send(FrameHeader::request(OP_ECHO, 0, 1), &[&data, b"x"])
            .unwrap_err();
        assert!(matches!(err, TransportError::TooLarge { .. }), "{err}");
        assert!(err.to_string().contains("max_payload()"), "{err}");
        assert_eq!(
            call(&mut c, OP_ECHO, 101, &[b"still usable"]),
            b"still usable"
        );
    }
}

#[test]
fn recv_timeout_returns_none_then_the_frame() {
    for h in Harness::all() {
        let mut c = h.connect();
        let t = Instant::now();
        assert_eq!(
            c.recv_timeout(Duration::from_millis(50), |_, _| ())
                .unwrap(),
            None
        );
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < Duration::from_secs(2),
            "{} {waited:?}",
            h.kind
        );
        c.send(FrameHeader::request(OP_ECHO, 0, 5), &[b"x"])
            .unwrap();
        let got = c
            .recv_timeout(Duration::from_secs(5), |hd, p| (hd.request_id, p.to_vec()))
            .unwrap();
        assert_eq!(got, Some((5, b"x".to_vec())), "{}", h.kind);
    }
}

#[test]
fn several_clients_at_once() {
    for h in Harness::all() {
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let h = &h;
                s.spawn(move || {
                    let mut c = h.connect();
                    for i in 0..200u64 {
                        let id = t << 32 | i;
                        let data = random_bytes((i as usize * 97) % 5000, id);
                        assert_eq!(
                            call(&mut c, OP_ECHO, id, &[&data]),
                            data,
                            "{} client {t}",
                            h.kind
                        );
                    }
                });
            }
        });
    }
}

#[test]
fn dropping_one_side_is_peer_gone_on_the_other() {
    // Client leaves: the worker's serve() returns (checked implicitly by the
    // harness shutting down); here the worker side leaves.
    let listener = tf_transport::NativeListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut client =
        tf_transport::connect_native("localhost", port, Duration::from_secs(5)).unwrap();
    let worker = listener.accept().unwrap();
    drop(worker);
    let err = client.recv(|_, _| ()).unwrap_err();
    assert!(err.is_peer_gone(), "{err}");

    let shm = TempShm::new("drop");
    let server = tf_transport::ShmServer::create(&shm.name, 8).unwrap();
    let mut client = tf_transport::connect_shmem(&shm.name, 8).unwrap();
    let mut worker = server.accept(Duration::from_secs(5)).unwrap().unwrap();
    // A last frame sent just before leaving is still delivered.
    worker
        .send(FrameHeader::request(9, 0, 9), &[b"bye"])
        .unwrap();
    drop(worker);
    assert_eq!(
        client.recv(|h, p| (h.opcode, p.to_vec())).unwrap(),
        (9, b"bye".to_vec())
    );
    let t = Instant::now();
    let err = client.recv(|_, _| ()).unwrap_err();
    assert!(err.is_peer_gone(), "{err}");
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert!(client
        .send(FrameHeader::request(1, 0, 1), &[])
        .unwrap_err()
        .is_peer_gone());
    drop(client);
    assert_eq!(server.slots_in_use(), 0);

    let mut worker = {
        let client = tf_transport::connect_shmem(&shm.name, 8).unwrap();
        let w = server.accept(Duration::from_secs(5)).unwrap().unwrap();
        drop(client);
        w
    };
    let err = worker.recv(|_, _| ()).unwrap_err();
    assert!(err.is_peer_gone(), "{err}");
    drop(worker);
    assert_eq!(server.slots_in_use(), 0);
}
