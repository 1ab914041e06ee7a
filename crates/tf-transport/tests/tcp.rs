//! NATIVE-only behaviour: connection errors, framing errors, address forms.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use tf_transport::{connect_native, FrameHeader, NativeListener, TransportError, MAX_PAYLOAD};

#[test]
fn refused_connection_names_the_fix() {
    let port = NativeListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The listener is dropped: nothing listens there any more.
    let err = connect_native("127.0.0.1", port, Duration::from_secs(2)).unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err}");
    let msg = err.to_string();
    let want = format!("cannot reach tensor-fusion-worker at 127.0.0.1:{port}: Connection refused (os error 111); is the worker running with -n native -p {port} and is the port reachable?");
    assert_eq!(msg, want);
    assert!(!err.is_peer_gone());
}

/// A loopback listener with a backlog of 0 that never accepts: once its
/// queue is full, the kernel drops further SYNs and connecting hangs.
/// (A "non-routable" address is no good here: sandboxes may intercept it.)
fn stuck_listener() -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a fresh fd and local, correctly sized
    // sockaddr structures.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len),
            0
        );
        assert_eq!(libc::listen(fd, 0), 0);
        let mut got: libc::sockaddr_in = std::mem::zeroed();
        let mut glen = len;
        assert_eq!(
            libc::getsockname(fd, (&mut got as *mut libc::sockaddr_in).cast(), &mut glen),
            0
        );
        (
            std::os::fd::OwnedFd::from_raw_fd(fd),
            u16::from_be(got.sin_port),
        )
    }
}

#[test]
fn connect_timeout_applies() {
    let (_listener, port) = stuck_listener();
    let mut kept = Vec::new();
    for _ in 0..8 {
        let t = Instant::now();
        match connect_native("127.0.0.1", port, Duration::from_millis(200)) {
            Ok(c) => kept.push(c), // still room in the queue
            Err(err) => {
                let took = t.elapsed();
                assert!(
                    took >= Duration::from_millis(150) && took < Duration::from_secs(2),
                    "{took:?}"
                );
                let want = format!("cannot reach tensor-fusion-worker at 127.0.0.1:{port}: ");
                assert!(err.to_string().starts_with(&want), "{err}");
                assert!(err.to_string().contains("timed out"), "{err}");
                return;
            }
        }
    }
    panic!("the backlog never filled up");
}

#[test]
fn unresolvable_host_is_reported() {
    let err = connect_native("no-such-host.invalid", 9, Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, TransportError::Resolve { .. }), "{err}");
    assert!(err.to_string().contains("no-such-host.invalid"), "{err}");
}

#[test]
fn ipv6_and_host_names() {
    let Ok(listener) = NativeListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipped");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for _ in 0..2 {
            let c = listener.accept().unwrap();
            std::thread::spawn(move || serve(c));
        }
    });
    for host in ["::1", "[::1]"] {
        let mut c = connect_native(host, port, Duration::from_secs(5)).unwrap();
        assert!(
            c.describe().starts_with("native [::1]:"),
            "{}",
            c.describe()
        );
        assert_eq!(call(&mut c, OP_ECHO, 1, &[b"v6"]), b"v6");
    }

    let listener = NativeListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || serve(listener.accept().unwrap()));
    let mut c = connect_native("localhost", port, Duration::from_secs(5)).unwrap();
    assert_eq!(call(&mut c, OP_ECHO, 1, &[b"name"]), b"name");
}

/// A worker connection plus a raw socket to write arbitrary bytes into it.
fn raw_pair() -> (TcpStream, tf_transport::Connection) {
    let listener = NativeListener::bind("127.0.0.1:0").unwrap();
    let raw = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    (raw, listener.accept().unwrap())
}

#[test]
fn corrupt_frames_are_errors_not_panics() {
    let (mut raw, mut worker) = raw_pair();
    raw.write_all(&[0x55; 24]).unwrap();
    let err = worker.recv(|_, _| ()).unwrap_err();
    assert!(matches!(err, TransportError::Protocol { .. }), "{err}");
    assert!(!err.is_peer_gone());

    // A length above the limit is refused before anything is allocated.
    let (mut raw, mut worker) = raw_pair();
    let mut h = FrameHeader::request(1, 0, 1).encode();
    h[12..16].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
    raw.write_all(&h).unwrap();
    let err = worker.recv(|_, _| ()).unwrap_err();
    assert!(err.to_string().contains("exceeds the limit"), "{err}");

    // A frame cut short by the peer leaving: peer gone.
    let (mut raw, mut worker) = raw_pair();
    raw.write_all(&FrameHeader::request(1, 100, 1).encode())
        .unwrap();
    raw.write_all(&[0; 10]).unwrap();
    drop(raw);
    let err = worker.recv(|_, _| ()).unwrap_err();
    assert!(err.is_peer_gone(), "{err}");

    // Half a header, then leaving: peer gone too.
    let (mut raw, mut worker) = raw_pair();
    raw.write_all(&[0; 5]).unwrap();
    drop(raw);
    assert!(worker.recv(|_, _| ()).unwrap_err().is_peer_gone());
}

#[test]
fn frames_split_across_many_writes_are_reassembled() {
    let (mut raw, mut worker) = raw_pair();
    let payload = random_bytes(100_000, 3);
    let frame = tf_protocol::encode_frame(FrameHeader::request(7, 0, 42), &payload);
    std::thread::spawn(move || {
        for chunk in frame.chunks(777) {
            raw.write_all(chunk).unwrap();
        }
        raw
    });
    let got = worker.recv(|h, p| (h.request_id, checksum(p))).unwrap();
    assert_eq!(got, (42, checksum(&payload)));
}
