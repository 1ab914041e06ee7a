//! Context discipline: the CUDA current context is per thread, so every
//! context-taking call makes its context current on the calling thread, and
//! skips `cuCtxSetCurrent` when that thread already has it. Alone in its
//! own test binary because releases (which reset every thread's record)
//! from tests running in parallel would disturb the counts.

mod common;

use common::{fake_backend, read_fake_int};
use tensor_fusion_worker::loader::CUDA_FILE;
use tf_worker_core::Backend;

#[test]
fn each_thread_sets_its_context_once() {
    let (b, dir) = fake_backend("context");
    let lib = dir.join(CUDA_FILE);
    let calls = || read_fake_int(&lib, "fake_set_current_calls");
    b.init().expect("init");
    let ctx = b.primary_ctx_retain(0).expect("retain");
    assert_eq!(calls(), 0, "retaining does not switch contexts");

    let p = b.mem_alloc(ctx, 16).expect("alloc");
    assert_eq!(calls(), 1);
    b.memset_d8(ctx, p, 1, 16).expect("memset");
    b.ctx_synchronize(ctx).expect("sync");
    assert_eq!(calls(), 1, "already current on this thread");

    // Another thread has no current context until the backend sets it; the
    // fake driver fails calls without one, so success proves it was set.
    std::thread::scope(|s| {
        s.spawn(|| {
            b.memset_d8(ctx, p, 2, 16)
                .expect("memset on another thread");
            b.ctx_synchronize(ctx).expect("sync on another thread");
        });
    });
    assert_eq!(calls(), 2);

    // A release may destroy the context: every thread sets it again.
    let ctx2 = b.primary_ctx_retain(0).expect("retain again");
    b.primary_ctx_release(0).expect("release one of two");
    b.ctx_synchronize(ctx2).expect("sync after release");
    assert_eq!(calls(), 3);

    // A failed switch is not remembered as current.
    assert_eq!(b.ctx_synchronize(0xdead), Err(201));
    assert_eq!(calls(), 4);
    b.ctx_synchronize(ctx).expect("sync");
    assert_eq!(calls(), 5);

    b.mem_free(ctx, p).expect("free");
    b.primary_ctx_release(0).expect("release");
}
