//! SHMEM-only behaviour: error messages, ring wrap-around, several clients
//! including other processes, reclaiming the slot of a killed client,
//! worker exit and restart.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use tf_transport::{connect_shmem, FrameHeader, ShmServer, TransportError};

const CHILD_ENV: &str = "TF_TRANSPORT_TEST_CHILD";

/// Not a test: the body of the child processes the tests below start (it
/// does nothing unless started by them).
#[test]
fn child_process_entry() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut it = spec.split(' ');
    let (mode, path, size) = (
        it.next().unwrap(),
        Path::new(it.next().unwrap()),
        it.next().unwrap().parse().unwrap(),
    );
    match mode {
        "echo" => {
            let mut c = connect_shmem(path, size).unwrap();
            for i in 0..300u64 {
                let data = random_bytes((i as usize * 131) % 20_000, i + std::process::id() as u64);
                assert_eq!(call(&mut c, OP_ECHO, i, &[&data]), data);
            }
            println!("child done");
        }
        "hang" => {
            let mut c = connect_shmem(path, size).unwrap();
            assert_eq!(call(&mut c, OP_ECHO, 1, &[b"hi"]), b"hi");
            println!("child ready");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "worker" => {
            let _w = Worker::start(ShmServer::create(path, size).unwrap());
            println!("worker ready");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(mode: &str, shm: &TempShm, size_mb: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(
            CHILD_ENV,
            format!("{mode} {} {size_mb}", shm.name.display()),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the child's stdout until `line` appears.
fn wait_for_line(child: &mut Child, line: &str) {
    let out = child.stdout.as_mut().unwrap();
    let mut r = BufReader::new(out);
    let mut s = String::new();
    loop {
        s.clear();
        assert!(
            r.read_line(&mut s).unwrap() > 0,
            "child exited before printing {line:?}"
        );
        // libtest prints "test child_process_entry ... " before the line.
        if s.trim_end().ends_with(line) {
            return;
        }
    }
}

/// A worker serving `server` until dropped; returns the per-connection
/// errors' descriptions through the join handle of each connection.
struct Worker {
    server: Arc<ShmServer>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(server: ShmServer) -> Self {
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let (s, f) = (Arc::clone(&server), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !f.load(Ordering::Relaxed) {
                if let Some(c) = s.accept(Duration::from_millis(10)).unwrap() {
                    std::thread::spawn(move || serve(c));
                }
            }
        });
        Self {
            server,
            stop,
            thread: Some(thread),
        }
    }

    /// Waits until every slot is free again.
    fn wait_all_free(&self, limit: Duration) -> Duration {
        let t = Instant::now();
        while self.server.slots_in_use() != 0 {
            assert!(
                t.elapsed() < limit,
                "{} slots still in use after {limit:?}",
                self.server.slots_in_use()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        t.elapsed()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn child_processes_and_threads_share_a_region() {
    let shm = TempShm::new("procs");
    let worker = Worker::start(ShmServer::create(&shm.name, 32).unwrap());
    let mut children: Vec<Child> = (0..2).map(|_| spawn_child("echo", &shm, 32)).collect();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let shm = &shm;
            s.spawn(move || {
                let mut c = connect_shmem(&shm.name, 32).unwrap();
                for i in 0..300u64 {
                    let data = random_bytes((i as usize * 57) % 30_000, t * 1000 + i);
                    assert_eq!(call(&mut c, OP_ECHO, i, &[&data]), data);
                }
            });
        }
    });
    for c in &mut children {
        assert!(c.wait().unwrap().success());
    }
    // Every client, in-process or not, released its slot.
    worker.wait_all_free(Duration::from_secs(2));
}

#[test]
fn killed_client_process_frees_its_slot_within_a_second() {
    let shm = TempShm::new("kill");
    // Two slots: both taken by the end, so the killed client's was reused.
    let server = ShmServer::create(&shm.name, 4).unwrap();
    assert_eq!(server.slot_count(), 2);
    let worker = Worker::start(server);
    let mut child = spawn_child("hang", &shm, 4);
    wait_for_line(&mut child, "child ready");
    let _other = connect_shmem(&shm.name, 4).unwrap();
    assert_eq!(worker.server.slots_in_use(), 2);
    child.kill().unwrap(); // SIGKILL: no destructor runs
    let killed = Instant::now();
    child.wait().unwrap();
    while worker.server.slots_in_use() != 1 {
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "slot not freed within 1 s of SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    eprintln!(
        "slot of the killed client freed after {:?}",
        killed.elapsed()
    );
    let mut again = connect_shmem(&shm.name, 4).unwrap();
    assert_eq!(call(&mut again, OP_ECHO, 1, &[b"reused"]), b"reused");
}

#[test]
fn rings_wrap_around_with_frames_intact() {
    let shm = TempShm::new("wrap");
    let worker = Worker::start(ShmServer::create(&shm.name, 4).unwrap());
    let mut c = connect_shmem(&shm.name, 4).unwrap();
    let max = c.max_payload();
    assert_eq!(max, worker.server.max_payload());
    let mut sent = 0usize;
    for round in 0..300u64 {
        // Bursts of three odd-sized frames: the ring is partly full when a
        // frame meets its end, so pads and wraps happen in many positions.
        let sizes: Vec<usize> = (0..3)
            .map(|k| ((round * 7919 + k * 104_729) as usize) % (max / 3))
            .collect();
        let datas: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(k, &n)| random_bytes(n, round * 3 + k as u64))
            .collect();
        for (k, d) in datas.iter().enumerate() {
            c.send(FrameHeader::request(OP_ECHO, 0, round * 3 + k as u64), &[d])
                .unwrap();
            sent += d.len();
        }
        for (k, d) in datas.iter().enumerate() {
            c.recv(|h, p| {
                assert_eq!(h.request_id, round * 3 + k as u64);
                assert!(p == &d[..], "round {round} frame {k} corrupted");
            })
            .unwrap();
        }
    }
    // Many times the ring's size went through each ring.
    assert!(sent > 20 * 2 * max, "{sent}");
}

#[test]
fn error_messages_name_the_fix() {
    let shm = TempShm::new("errors");
    let file = shm.file();
    let server = ShmServer::create(&shm.name, 4).unwrap();

    let err = connect_shmem(&shm.name, 16).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "shared memory size mismatch: {} is 4 MiB but the connection info says 16 MiB; use the worker's -M value",
            file.display()
        )
    );

    let _a = connect_shmem(&shm.name, 4).unwrap();
    let _b = connect_shmem(&shm.name, 4).unwrap();
    let err = connect_shmem(&shm.name, 4).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "all 2 client slots in {} are in use; start another worker or stop a client",
            file.display()
        )
    );
    assert_eq!(server.refused(), 1);
    // The worker's accept logs the refusal (tracing::warn!) and goes on.
    assert!(server.accept(Duration::ZERO).unwrap().is_some());

    let junk = TempShm::new("junk");
    std::fs::write(junk.file(), random_bytes(4 << 20, 5)).unwrap();
    let err = connect_shmem(&junk.name, 4).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} is not a tensor-fusion shared memory region (no worker started with -n shmem -m ... ?)",
            junk.file().display()
        )
    );
    std::fs::write(junk.file(), b"tiny").unwrap();
    assert!(matches!(
        connect_shmem(&junk.name, 4).unwrap_err(),
        TransportError::ShmNotARegion { .. }
    ));

    let missing = TempShm::new("missing");
    let err = connect_shmem(&missing.name, 4).unwrap_err();
    assert!(
        err.to_string()
            .contains("is a tensor-fusion-worker running with -n shmem"),
        "{err}"
    );

    let err = ShmServer::create(&missing.name, 2).unwrap_err();
    assert!(
        err.to_string().contains("at least 4 MiB is needed"),
        "{err}"
    );
    for e in [err, connect_shmem(&shm.name, 16).unwrap_err()] {
        assert!(!e.is_peer_gone(), "{e}");
    }
}

#[test]
fn killed_worker_is_replaced_and_clients_notice() {
    let shm = TempShm::new("restart");
    let mut w = spawn_child("worker", &shm, 4);
    wait_for_line(&mut w, "worker ready");
    let mut c = connect_shmem(&shm.name, 4).unwrap();
    assert_eq!(call(&mut c, OP_ECHO, 1, &[b"x"]), b"x");

    // No second worker on a region that is being served.
    let err = ShmServer::create(&shm.name, 4).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "another tensor-fusion-worker is serving {} (its heartbeat is advancing); stop it first, or give this worker another -m",
            shm.file().display()
        )
    );

    // Once it is killed, a new worker takes the region over (same file, as
    // QEMU's ivshmem keeps it) and the old client notices the restart at once.
    w.kill().unwrap();
    w.wait().unwrap();
    let worker = Worker::start(ShmServer::create(&shm.name, 4).unwrap());
    let t = Instant::now();
    let err = c.recv(|_, _| ()).unwrap_err();
    assert!(
        err.is_peer_gone() && err.to_string().contains("the worker restarted"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    drop(c);
    assert_eq!(
        worker.server.slots_in_use(),
        0,
        "the old client must not touch the new slots"
    );
    let mut c = connect_shmem(&shm.name, 4).unwrap();
    assert_eq!(call(&mut c, OP_ECHO, 2, &[b"y"]), b"y");
}

#[test]
fn worker_exit_is_noticed() {
    let shm = TempShm::new("exit");
    let server = ShmServer::create(&shm.name, 4).unwrap();
    let mut c = connect_shmem(&shm.name, 4).unwrap();
    drop(server);
    let t = Instant::now();
    let err = c.recv(|_, _| ()).unwrap_err();
    assert!(
        err.is_peer_gone() && err.to_string().contains("exited"),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    let err = connect_shmem(&shm.name, 4).unwrap_err();
    assert!(matches!(err, TransportError::ShmNoWorker { .. }), "{err}");
    // A clean exit needs no liveness probe: the next worker starts at once.
    let t = Instant::now();
    let _server = ShmServer::create(&shm.name, 4).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(200),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn any_file_path_can_hold_the_region() {
    // Like an ivshmem BAR file inside a VM: an arbitrary path, used as is.
    let path = std::env::temp_dir().join(format!(
        "tf-transport-test-{}-plain-file",
        std::process::id()
    ));
    let worker = Worker::start(ShmServer::create(&path, 4).unwrap());
    assert_eq!(worker.server.path(), path);
    let mut c = connect_shmem(&path, 4).unwrap();
    assert_eq!(c.describe(), format!("shmem {} slot 0", path.display()));
    assert_eq!(call(&mut c, OP_ECHO, 1, &[b"bar"]), b"bar");
    drop(c);
    drop(worker);
    std::fs::remove_file(&path).unwrap();
}
