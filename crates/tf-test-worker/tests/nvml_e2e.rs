//! End to end, without a GPU: the C program of `tests/c/nvml.c` runs every
//! remoted NVML function through our libnvidia-ml.so.1 against
//! `tf-test-worker` (whose NVML answers are fixed test values) over NATIVE
//! and SHMEM, with both injection styles, with and without a memory limit,
//! and checks the failures a client can meet (no worker, a worker that
//! dies).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// `TF_TEST_DEVICE_MEM_MB`'s default: the physical memory of a test device.
const TEST_DEVICE_MIB: u64 = 16384;

fn nvml(w: &Worker, inject: Inject, args: &[&str]) -> std::process::Output {
    run(
        client_of(&c_program("nvml"), &w.info, inject, args),
        Duration::from_secs(60),
    )
}

fn all(w: &Worker, inject: Inject, total_mib: u64) {
    let o = nvml(w, inject, &["all", &total_mib.to_string()]);
    assert_pass(&o);
}

#[test]
fn native_library_path_two_devices() {
    let w = Worker::native(&[("TF_TEST_DEVICES", "2")]);
    all(&w, Inject::LibraryPath, TEST_DEVICE_MIB);
}

#[test]
fn shmem_preload() {
    let w = Worker::shmem(64, &[]);
    all(&w, Inject::Preload, TEST_DEVICE_MIB);
}

#[test]
fn native_preload_and_shmem_library_path() {
    let w = Worker::native(&[]);
    all(&w, Inject::Preload, TEST_DEVICE_MIB);
    let s = Worker::shmem(64, &[("TF_TEST_DEVICES", "2")]);
    all(&s, Inject::LibraryPath, TEST_DEVICE_MIB);
}

/// The worker's `TF_CUDA_MEMORY_LIMIT` is the total NVML reports.
#[test]
fn memory_limit_is_the_total_native() {
    let w = Worker::native(&[("TF_CUDA_MEMORY_LIMIT", "1024")]);
    all(&w, Inject::LibraryPath, 1024);
}

#[test]
fn memory_limit_is_the_total_shmem() {
    let w = Worker::shmem(64, &[("TF_CUDA_MEMORY_LIMIT", "2048")]);
    all(&w, Inject::Preload, 2048);
}

/// A limit above the physical memory does not raise the total.
#[test]
fn memory_total_is_never_above_physical() {
    let w = Worker::native(&[
        ("TF_CUDA_MEMORY_LIMIT", "99999"),
        ("TF_TEST_DEVICE_MEM_MB", "4096"),
    ]);
    all(&w, Inject::LibraryPath, 4096);
}

/// What goes to the worker: an NvLink capability once per `(link,
/// capability)` however often it is asked (a value and a refusal alike),
/// a reading on every call, a static fact never (it came with the device's
/// facts), and 150 field values as three requests of at most 64.
#[test]
fn requests_sent_for_the_nccl_and_xla_queries() {
    let w = Worker::native(&[]);
    let mut cmd = client_of(
        &c_program("nvml"),
        &w.info,
        Inject::LibraryPath,
        &["requests"],
    );
    cmd.env("TF_CALL_STATS", "1");
    let o = run(cmd, Duration::from_secs(60));
    assert_pass(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let count = |name: &str| -> u64 {
        err.lines()
            .find_map(|l| {
                let mut cols = l.split_whitespace();
                (cols.next() == Some(name)).then(|| cols.next()?.parse().ok())?
            })
            .unwrap_or(0)
    };
    assert_eq!(count("nvmlDeviceGetNvLinkCapability"), 2, "{err}");
    assert_eq!(count("nvmlDeviceGetCurrPcieLinkGeneration"), 5, "{err}");
    assert_eq!(count("nvmlDeviceGetMaxPcieLinkWidth"), 0, "{err}");
    assert_eq!(
        count("nvmlDeviceGetHandleByIndex_v2"),
        1,
        "the facts: {err}"
    );
    assert_eq!(count("nvmlDeviceGetFieldValues"), 3, "{err}");
}

/// No worker: `nvmlInit` fails with `NVML_ERROR_DRIVER_NOT_LOADED` within
/// seconds, and stderr has exactly one line saying why.
#[test]
fn unreachable_worker_is_a_clear_nvml_error() {
    let port = free_port();
    let mut cmd = client_of(
        &c_program("nvml"),
        &format!("native+127.0.0.1+{port}+0"),
        Inject::LibraryPath,
        &["expect-init-error", "9"],
    );
    cmd.env("TF_ENABLE_LOG", "0");
    let start = Instant::now();
    let o = run(cmd, Duration::from_secs(20));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_pass(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("tensor-fusion client"))
        .collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].contains("cannot reach"), "{err}");
}

/// A worker that dies after `nvmlInit`: later calls fail with
/// `NVML_ERROR_GPU_IS_LOST` (NVML's word for it), never hang.
fn lost_worker(mut w: Worker, within: Duration) {
    let mut child = client_of(&c_program("nvml"), &w.info, Inject::LibraryPath, &["lost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "{line}");
    w.kill();
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < within,
            "client hangs after the worker died"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(
        child.wait().unwrap().success() && rest.contains("PASS"),
        "{rest}"
    );
}

#[test]
fn lost_worker_native() {
    lost_worker(Worker::native(&[]), Duration::from_secs(10));
}

#[test]
fn lost_worker_shmem() {
    lost_worker(Worker::shmem(64, &[]), Duration::from_secs(15));
}
