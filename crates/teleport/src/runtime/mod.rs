//! What the CUDA runtime (cudart, static or shared, CUDA 12 and 13) needs
//! from the driver before and beside the public API:
//!
//! - [`proc_address`]: `cuGetProcAddress`/`_v2`. cudart resolves nearly every
//!   driver function through it, by base name, CUDA version and flags; the
//!   answers are the addresses of *our* `libcuda.so.1` exports.
//! - [`export_tables`]: `cuGetExportTable`, the private tables keyed by GUID
//!   (cudart's interface, tools hooks, context-local storage, the integrity
//!   check). Unknown tables and slots log and fail cleanly.
//! - [`integrity`]: the integrity answer cudart verifies, computed here from
//!   the values this client reports.
//! - [`host_memory`]: pinned host memory and pointer attributes, answered in
//!   the client.
//! - [`device`]: legacy device queries answered from the cached facts.
//! - [`compile_cache`]: the driver's compilation cache that NVRTC consults,
//!   kept in the client.
//!
//! Every request these modules answer is logged at debug level
//! (`TF_ENABLE_LOG=1 TF_LOG_LEVEL=debug`), and the number of calls of every
//! private-table slot is logged at exit, so one run on a GPU machine shows
//! what a runtime asked for.

pub(crate) mod compile_cache;
mod cudart_slots;
mod device;
pub(crate) mod export_tables;
pub(crate) mod host_memory;
mod integrity;
mod proc_address;

/// Whether this thread may still log. At process exit the C library
/// destroys the main thread's thread-locals *before* running `atexit`
/// handlers, and cudart's handler then calls context-local storage and
/// releases contexts; the tracing subscriber needs thread-locals, so logging
/// there would panic, and a panic in these `extern "C"` functions aborts.
/// This marker's destructor runs in the same pass, so after it the thread
/// logs nothing.
pub(crate) fn may_log() -> bool {
    struct Alive;
    impl Drop for Alive {
        fn drop(&mut self) {}
    }
    thread_local! {
        static ALIVE: Alive = const { Alive };
    }
    ALIVE.try_with(|_| ()).is_ok()
}

/// A context was destroyed or reset (or its last retain released): its
/// context-local storage destructors run, and the device memory it held is
/// no longer tracked.
pub(crate) fn context_gone(handle: u64) {
    cudart_slots::context_gone(handle);
    host_memory::context_gone(handle);
}

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    proc_address::register(set);
    export_tables::register(set);
    host_memory::register(set);
    device::register(set);
}
