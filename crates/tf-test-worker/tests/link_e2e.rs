//! End to end, without a GPU: the JIT linker and tensor maps
//! (tests/c/link.c) through our libcuda.so.1 against `tf-test-worker` over
//! NATIVE and SHMEM, bad input included. The test backend's linker joins
//! PTX and its tensor maps are a deterministic fill (`host_link`); a real
//! link and a real map are proven on a GPU by `tests/gpu/cuda/link_jit.cu`
//! and `tensormap.cu`.

mod common;

use std::time::Duration;

use common::*;

fn full(w: &Worker, inject: Inject) {
    let o = run(
        client_of(&c_program("link"), &w.info, inject, &["full"]),
        Duration::from_secs(120),
    );
    assert_pass(&o);
}

#[test]
fn link_native() {
    let w = Worker::native(&[]);
    full(&w, Inject::LibraryPath);
    full(&w, Inject::Preload);
}

/// A small region: frames smaller than the big link's input and image, so
/// both travel in pieces.
#[test]
fn link_shmem() {
    let w = Worker::shmem(16, &[]);
    full(&w, Inject::LibraryPath);
}
