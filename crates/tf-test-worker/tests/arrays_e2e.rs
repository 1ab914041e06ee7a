//! End to end, without a GPU: CUDA arrays, copies with an array end (2D,
//! 3D and the legacy forms), texture and surface objects (tests/c/arrays.c)
//! through our libcuda.so.1 against `tf-test-worker` over NATIVE and SHMEM;
//! arrays charged to the memory limit; one session cannot name another's
//! array or texture object. On a GPU: tests/gpu/cuda/arrays.cu.

mod common;

use std::io::{BufRead, Write};
use std::time::Duration;

use common::*;

fn arrays(w: &Worker, inject: Inject, args: &[&str]) -> std::process::Command {
    client_of(&c_program("arrays"), &w.info, inject, args)
}

fn pass(w: &Worker, inject: Inject, mode: &str) {
    assert_pass(&run(arrays(w, inject, &[mode]), Duration::from_secs(120)));
}

#[test]
fn arrays_native() {
    let w = Worker::native(&[]);
    pass(&w, Inject::LibraryPath, "full");
    pass(&w, Inject::Preload, "full");
}

#[test]
fn arrays_shmem() {
    let w = Worker::shmem(64, &[]);
    pass(&w, Inject::LibraryPath, "full");
}

#[test]
fn arrays_are_charged_to_the_memory_limit() {
    let w = Worker::native(&[("TF_CUDA_MEMORY_LIMIT", "64")]);
    pass(&w, Inject::LibraryPath, "limit");
}

/// A session holds an array and a texture object; another session names
/// them (the ids and values it printed) and is refused, then works on its
/// own; the holder finds its array intact.
#[test]
fn another_sessions_array_and_texture_object_are_refused() {
    let w = Worker::native(&[]);
    let mut holder = arrays(&w, Inject::LibraryPath, &["hold"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(holder.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let held: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        held.first(),
        Some(&"holding"),
        "the holder did not start: {line}"
    );
    assert_eq!(held.len(), 3, "{line}");
    assert_pass(&run(
        arrays(&w, Inject::LibraryPath, &["intrude", held[1], held[2]]),
        Duration::from_secs(60),
    ));
    holder.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(holder.wait().unwrap().success(), "holder: {rest}");
    assert!(rest.contains("PASS"), "holder: {rest}");
}
