//! End to end, without a GPU: the VMM API, stream-ordered pools, stream
//! memory operations, address ranges and host functions (tests/c/mem.c)
//! through our libcuda.so.1 against `tf-test-worker` over NATIVE and SHMEM,
//! the memory limit on those allocation paths, and the release of a killed
//! client's mappings, allocations and pools. The same calls on a GPU are
//! proven by tests/gpu/cuda (scripts/gpu/50-cuda-programs.sh).

mod common;

use std::io::BufRead;
use std::time::{Duration, Instant};

use common::*;

fn mem(w: &Worker, inject: Inject, args: &[&str]) -> std::process::Command {
    client_of(&c_program("mem"), &w.info, inject, args)
}

fn pass(w: &Worker, inject: Inject, mode: &str) {
    assert_pass(&run(mem(w, inject, &[mode]), Duration::from_secs(120)));
}

#[test]
fn mem_native() {
    let w = Worker::native(&[]);
    pass(&w, Inject::LibraryPath, "full");
    pass(&w, Inject::Preload, "full");
}

#[test]
fn mem_shmem() {
    let w = Worker::shmem(64, &[]);
    pass(&w, Inject::LibraryPath, "full");
}

#[test]
fn vmm_and_pools_are_charged_to_the_memory_limit() {
    let w = Worker::native(&[("TF_CUDA_MEMORY_LIMIT", "64")]);
    pass(&w, Inject::LibraryPath, "limit");
}

/// SIGKILL a client holding a mapped reservation, a pool allocation and a
/// pool: the worker releases them all and returns their bytes to the limit
/// (the `limit` run needs 48 of the 64 MB the killed client held 40 of).
#[test]
fn killed_client_vmm_memory_and_pools_are_released() {
    let w = Worker::native(&[("TF_CUDA_MEMORY_LIMIT", "64")]);
    let mut holder = mem(&w, Inject::LibraryPath, &["hold"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "holding", "the holder did not start");
    holder.kill().unwrap();
    let killed = Instant::now();
    holder.wait().unwrap();
    let line = loop {
        if let Some(l) = w
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("released the session's VMM memory and pools"))
            .cloned()
        {
            break l;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "the killed client's VMM memory was not released; log: {:?}",
            w.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for field in [
        "mappings=1",
        "allocations=1",
        "reservations=1",
        "pool_allocs=1",
        "pools=2",
        "failed=0",
    ] {
        assert!(line.contains(field), "{field} missing in: {line}");
    }
    pass(&w, Inject::LibraryPath, "limit");
}
