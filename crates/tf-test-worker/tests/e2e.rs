//! End to end, without a GPU: the C program runs the remoted slice through
//! our libcuda.so.1 / libnvidia-ml.so.1 against `tf-test-worker` over NATIVE
//! and SHMEM, with both injection styles and several clients at once.

mod common;

use std::time::{Duration, Instant};

use common::*;

const MIB: u64 = 1 << 20;

fn four_clients(w: &Worker, inject: Inject, max: u64) {
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let cmd = client(
                &w.info,
                inject,
                &["full", &max.to_string(), &(1000 + i).to_string()],
            );
            std::thread::spawn(move || run(cmd, Duration::from_secs(300)))
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for o in &outs {
        assert_pass(o);
    }
    // Same seed ⇒ same digest: the data really went through, per client.
    let digest = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string()
    };
    let again = run(
        client(&w.info, inject, &["full", &max.to_string(), "1000"]),
        Duration::from_secs(300),
    );
    assert_pass(&again);
    assert_eq!(digest(&outs[0]), digest(&again));
    assert_ne!(digest(&outs[0]), digest(&outs[1]));
}

#[test]
fn native_four_clients_library_path_up_to_256_mib() {
    let w = Worker::native(&[]);
    four_clients(&w, Inject::LibraryPath, 256 * MIB);
}

#[test]
fn shmem_four_clients_preload_up_to_256_mib() {
    let w = Worker::shmem(256, &[]);
    four_clients(&w, Inject::Preload, 256 * MIB);
}

#[test]
fn native_preload_and_shmem_library_path() {
    let w = Worker::native(&[]);
    four_clients(&w, Inject::Preload, 16 * MIB);
    let s = Worker::shmem(64, &[]);
    four_clients(&s, Inject::LibraryPath, 16 * MIB);
}

/// A client that allocated `bytes` and keeps copying, once it said so.
fn holding(w: &Worker, bytes: &str) -> std::process::Child {
    let mut c = client(&w.info, Inject::LibraryPath, &["hold", bytes])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(c.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "holding");
    c
}

fn meminfo(w: &Worker) -> (u64, u64) {
    let o = run(
        client(&w.info, Inject::LibraryPath, &["meminfo"]),
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "{}", text(&o));
    let s = String::from_utf8_lossy(&o.stdout);
    let mut it = s.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    (it.next().unwrap(), it.next().unwrap())
}

/// SIGKILL a client in the middle of 256 MiB copies: the worker keeps
/// serving others and frees the dead client's memory within a second.
fn killed_client(w: &Worker) {
    let (free0, total) = meminfo(w);
    assert_eq!(total, 1024 * MIB, "TF_CUDA_MEMORY_LIMIT caps the total");
    assert_eq!(free0, total);
    let mut holder = holding(w, &(256 * MIB).to_string());
    std::thread::sleep(Duration::from_millis(300)); // let copies flow
    assert_eq!(meminfo(w).0, free0 - 256 * MIB);
    holder.kill().unwrap();
    let killed = Instant::now();
    holder.wait().unwrap();
    loop {
        if meminfo(w).0 == free0 {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(1),
            "memory of the killed client not freed within 1 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("freed {:?} after SIGKILL", killed.elapsed());
    assert_pass(&run(
        client(
            &w.info,
            Inject::LibraryPath,
            &["full", &MIB.to_string(), "7"],
        ),
        Duration::from_secs(60),
    ));
}

#[test]
fn killed_client_is_cleaned_up_native() {
    killed_client(&Worker::native(&[("TF_CUDA_MEMORY_LIMIT", "1024")]));
}

#[test]
fn killed_client_is_cleaned_up_shmem() {
    killed_client(&Worker::shmem(256, &[("TF_GPU_MEMORY_LIMIT", "1024")]));
}

/// Each client is served by a session process of its own, named like the
/// worker (nvidia-smi and ps show it so); session processes end with the
/// worker, and their clients get an error instead of waiting forever.
fn session_processes(mut w: Worker) {
    let mut holder = holding(&w, &MIB.to_string());
    let kids = w.wait_children(1);
    assert_eq!(kids.len(), 1, "one session process per client: {kids:?}");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", kids[0])).unwrap();
    assert_eq!(comm.trim(), "tf-test-worker", "named like the worker");
    assert!(w.wait_log("session process started", Duration::from_secs(5)));
    w.kill();
    let t = Instant::now();
    while std::path::Path::new(&format!("/proc/{}/comm", kids[0])).exists()
        && std::fs::read_to_string(format!("/proc/{}/stat", kids[0]))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the session process outlived the worker"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    loop {
        if let Some(st) = holder.try_wait().unwrap() {
            assert!(!st.success(), "the client of a dead worker must fail");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the client hangs");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn session_processes_serve_clients_and_end_with_the_worker_native() {
    session_processes(Worker::native(&[]));
}

#[test]
fn session_processes_serve_clients_and_end_with_the_worker_shmem() {
    session_processes(Worker::shmem(64, &[]));
}

/// A session process that dies (a crash in the driver, the OOM killer)
/// without freeing: its client gets an error, the worker returns what the
/// process had charged to the memory limit, and other clients are served.
#[test]
fn a_killed_session_process_returns_its_memory_to_the_limit() {
    let w = Worker::native(&[("TF_CUDA_MEMORY_LIMIT", "1024")]);
    let (free0, _) = meminfo(&w);
    let mut holder = holding(&w, &(256 * MIB).to_string());
    assert_eq!(meminfo(&w).0, free0 - 256 * MIB);
    let kids = w.wait_children(1);
    assert_eq!(kids.len(), 1, "{kids:?}");
    let st = std::process::Command::new("kill")
        .args(["-9", &kids[0].to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let t = Instant::now();
    while meminfo(&w).0 != free0 {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the dead session's memory was not returned"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(w.wait_log("killed by signal 9", Duration::from_secs(5)));
    assert!(w.wait_log("returned to the memory limit", Duration::from_secs(5)));
    let st = holder.wait().unwrap();
    assert!(!st.success(), "the client of a killed session must fail");
}

fn expect_init_error(info: &str, code: u32, stderr_needle: &str, within: Duration) {
    let start = Instant::now();
    let o = run(
        client(
            info,
            Inject::LibraryPath,
            &["expect-init-error", &code.to_string()],
        ),
        within + Duration::from_secs(5),
    );
    assert!(start.elapsed() < within, "took {:?}", start.elapsed());
    assert_pass(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(stderr_needle),
        "stderr lacks {stderr_needle:?}: {err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("tensor-fusion client"))
            .count(),
        1,
        "one line: {err}"
    );
}

#[test]
fn wrong_shmem_size_is_a_clear_error() {
    let w = Worker::shmem(64, &[]);
    let info = w.info.replace("+64+", "+128+");
    expect_init_error(&info, 46, "size mismatch", Duration::from_secs(5));
}

#[test]
fn unreachable_worker_is_a_clear_error() {
    let port = free_port();
    expect_init_error(
        &format!("native+127.0.0.1+{port}+0"),
        46,
        "cannot reach",
        Duration::from_secs(5),
    );
}

#[test]
fn malformed_connection_info_is_a_clear_error() {
    expect_init_error(
        "tcp+127.0.0.1+1+0",
        3,
        "TENSOR_FUSION_OPERATOR_CONNECTION_INFO",
        Duration::from_secs(5),
    );
    expect_init_error(
        "native+127.0.0.1+notaport+0",
        3,
        "port",
        Duration::from_secs(5),
    );
}

/// A URL that answers 404 fails at once, with the status in the message.
#[test]
fn connection_url_404_is_a_clear_error() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let mut cmd = client("", Inject::LibraryPath, &["expect-init-error", "3"]);
    cmd.env_remove("TENSOR_FUSION_OPERATOR_CONNECTION_INFO")
        .env(
            "TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL",
            format!("http://127.0.0.1:{port}/conn"),
        );
    let start = Instant::now();
    let o = run(cmd, Duration::from_secs(20));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_pass(&o);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("404"),
        "{}",
        text(&o)
    );
}

/// The URL answers the worker's connection info: the slice runs.
#[test]
fn connection_url_serves_the_worker_address() {
    use std::io::{Read, Write};
    let w = Worker::native(&[]);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = format!("{}\n", w.info);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let mut s = s.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes());
        }
    });
    let mut cmd = client("", Inject::Preload, &["full", "4096", "3"]);
    cmd.env_remove("TENSOR_FUSION_OPERATOR_CONNECTION_INFO")
        .env(
            "TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL",
            format!("http://127.0.0.1:{port}/conn"),
        );
    assert_pass(&run(cmd, Duration::from_secs(60)));
}

/// Garbage on the wire ends only that connection; other clients carry on.
#[test]
fn malformed_frames_do_not_disturb_other_clients() {
    use std::io::Write;
    let w = Worker::native(&[]);
    let addr = w
        .info
        .split('+')
        .skip(1)
        .take(2)
        .collect::<Vec<_>>()
        .join(":");
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    s.write_all(&[0xffu8; 4096]).unwrap();
    // A well-formed header announcing a payload larger than allowed.
    let mut h = tf_protocol::FrameHeader::request(1, 0, 1).encode();
    h[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut s2 = std::net::TcpStream::connect(&addr).unwrap();
    s2.write_all(&h).unwrap();
    assert_pass(&run(
        client(
            &w.info,
            Inject::LibraryPath,
            &["full", &MIB.to_string(), "5"],
        ),
        Duration::from_secs(60),
    ));
}

/// A worker that dies makes the client's calls fail (sticky), never hang.
fn dead_worker(mut w: Worker, within: Duration) {
    let mut holder = holding(&w, &MIB.to_string());
    w.kill();
    let start = Instant::now();
    loop {
        if let Some(st) = holder.try_wait().unwrap() {
            assert!(!st.success());
            break;
        }
        assert!(
            start.elapsed() < within,
            "client still running {within:?} after the worker died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn dead_worker_native() {
    dead_worker(Worker::native(&[]), Duration::from_secs(5));
}

#[test]
fn dead_worker_shmem() {
    dead_worker(Worker::shmem(64, &[]), Duration::from_secs(8));
}
