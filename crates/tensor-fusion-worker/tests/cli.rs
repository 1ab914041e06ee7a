//! The shipped binary's command line: the guide's usage, version, usage
//! errors, and a clear, fast failure on a host without the NVIDIA driver.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tensor-fusion-worker");

fn worker(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env_remove("TF_REAL_LIBCUDA")
        .env_remove("TF_REAL_LIBNVML")
        .env_remove("TF_DRIVER_SEARCH_PATH")
        .stdin(Stdio::null());
    c
}

#[test]
fn help_prints_the_usage() {
    let out = worker(&["-h"]).output().expect("run worker");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("Usage: tensor-fusion-worker [option]"),
        "{text}"
    );
    assert!(text.contains("-n, --net"), "{text}");
}

#[test]
fn version_prints_a_version() {
    let out = worker(&["-v"]).output().expect("run worker");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "tensor-fusion-worker {}",
            env!("CARGO_PKG_VERSION")
        )),
        "{text}"
    );
}

#[test]
fn bad_flag_exits_2_with_usage() {
    let out = worker(&["--bogus"]).output().expect("run worker");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown option") && err.contains("Usage:"),
        "{err}"
    );
}

#[test]
fn no_driver_exits_1_quickly_with_the_message() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let start = Instant::now();
    let mut child = worker(&["-n", "native", "-p", &port.to_string()])
        .env("TF_REAL_LIBCUDA", "/nonexistent")
        .env("TF_DRIVER_SEARCH_PATH", "")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker");
    // Poll rather than wait: a worker that started serving must not hang the test.
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("worker still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let elapsed = start.elapsed();
    let err = std::io::read_to_string(child.stderr.take().expect("stderr")).expect("read stderr");
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "no NVIDIA driver found: looked for libcuda.so.1 in no directories (TF_DRIVER_SEARCH_PATH lists none); \
             install the NVIDIA driver on this host or set TF_REAL_LIBCUDA=/path/to/libcuda.so.1"
        ),
        "{err}"
    );
    assert!(
        err.contains("TF_REAL_LIBCUDA=/nonexistent: no such file"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
}
