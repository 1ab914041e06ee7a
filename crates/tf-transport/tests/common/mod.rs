//! Test workers and helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tf_protocol::frame::FLAG_RESPONSE;
use tf_transport::{
    connect_native, connect_shmem, Connection, FrameHeader, NativeListener, ShmServer,
};

/// Echo the payload back.
pub const OP_ECHO: u32 = 1;
/// Answer with the 8-byte checksum of the payload only.
pub const OP_SUM: u32 = 2;
/// Answer with `len` (u64) pseudo-random bytes from `seed` (u64).
pub const OP_GENERATE: u32 = 3;

/// A unique /dev/shm file name, removed on drop.
pub struct TempShm {
    pub name: PathBuf,
}

impl TempShm {
    pub fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Self {
            name: PathBuf::from(format!(
                "/tf-transport-test-{}-{n}-{tag}",
                std::process::id()
            )),
        }
    }

    /// The file behind `/name`.
    pub fn file(&self) -> PathBuf {
        Path::new("/dev/shm").join(self.name.strip_prefix("/").unwrap())
    }
}

impl Drop for TempShm {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.file());
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), no dependency needed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v.truncate(len);
    v
}

/// FNV-1a over 8-byte words (fast enough for 64 MiB in a debug build).
pub fn checksum(b: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        h = (h ^ u64::from_le_bytes(c.try_into().unwrap())).wrapping_mul(0x100_0000_01b3);
    }
    for &x in chunks.remainder() {
        h = (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Serves one connection until the client leaves: answers OP_* requests.
pub fn serve(mut conn: Connection) {
    loop {
        let req = conn.recv(|h, p| (h, p.to_vec()));
        let (h, payload) = match req {
            Ok(r) => r,
            Err(e) if e.is_peer_gone() => return,
            Err(e) => panic!("worker recv: {e}"),
        };
        let resp = FrameHeader {
            flags: FLAG_RESPONSE,
            opcode: h.opcode,
            length: 0,
            request_id: h.request_id,
        };
        let sent = match h.opcode {
            OP_ECHO => conn.send(resp, &[&payload]),
            OP_SUM => conn.send(resp, &[&checksum(&payload).to_le_bytes()]),
            OP_GENERATE => {
                let len = u64::from_le_bytes(payload[..8].try_into().unwrap()) as usize;
                let seed = u64::from_le_bytes(payload[8..16].try_into().unwrap());
                conn.send(resp, &[&random_bytes(len, seed)])
            }
            other => panic!("unknown test opcode {other}"),
        };
        match sent {
            Ok(()) => {}
            Err(e) if e.is_peer_gone() => return,
            Err(e) => panic!("worker send: {e}"),
        }
    }
}

/// A worker (accept loop + one thread per connection) running the test
/// protocol over one transport, stopped on drop.
pub struct Harness {
    pub kind: &'static str,
    connect: Box<dyn Fn() -> Connection + Send + Sync>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _shm: Option<TempShm>,
}

impl Harness {
    pub fn tcp() -> Self {
        let listener = NativeListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Some(c) = listener.accept_timeout(Duration::from_millis(20)).unwrap() {
                    std::thread::spawn(move || serve(c));
                }
            }
        });
        Self {
            kind: "tcp",
            connect: Box::new(move || {
                connect_native("127.0.0.1", port, Duration::from_secs(5)).unwrap()
            }),
            stop,
            thread: Some(thread),
            _shm: None,
        }
    }

    pub fn shm(size_mb: u64) -> Self {
        let shm = TempShm::new("harness");
        let server = ShmServer::create(&shm.name, size_mb).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                if let Some(c) = server.accept(Duration::from_millis(20)).unwrap() {
                    std::thread::spawn(move || serve(c));
                }
            }
        });
        let name = shm.name.clone();
        Self {
            kind: "shm",
            connect: Box::new(move || connect_shmem(&name, size_mb).unwrap()),
            stop,
            thread: Some(thread),
            _shm: Some(shm),
        }
    }

    /// One harness per transport.
    pub fn all() -> Vec<Self> {
        vec![Self::tcp(), Self::shm(64)]
    }

    pub fn connect(&self) -> Connection {
        (self.connect)()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One request, one answer, returning the answer's payload.
pub fn call(conn: &mut Connection, opcode: u32, id: u64, parts: &[&[u8]]) -> Vec<u8> {
    conn.send(FrameHeader::request(opcode, 0, id), parts)
        .unwrap();
    conn.recv(|h, p| {
        assert!(h.is_response());
        assert_eq!(h.request_id, id);
        assert_eq!(h.opcode, opcode);
        assert_eq!(h.length as usize, p.len());
        p.to_vec()
    })
    .unwrap()
}
