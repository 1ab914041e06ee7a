//! libteleport.so — the TensorFusion client core.
//!
//! `libcuda.so.1` and `libnvidia-ml.so.1` are thin export layers: each of
//! their exported symbols tail-jumps through a slot table that they fill, at
//! load time, from [`teleport_cuda_table`] / [`teleport_nvml_table`]. So both
//! libraries share this one library's state: one session per process, one
//! connection, one set of client-side handles.
//!
//! Entries not implemented yet point at generated stubs that log their name
//! once and answer `*_ERROR_NOT_SUPPORTED` (see `unsupported`).

mod array;
pub mod client;
mod copy;
mod ctx;
mod cuda;
pub mod error;
mod exec;
mod graph;
mod mapped;
mod mem;
mod nvml;
mod runtime;
mod stats;
mod uva_host;
mod generated {
    pub(crate) mod stubs;
}
mod unsupported;

use std::ffi::c_void;
use std::sync::OnceLock;

use tf_api::{CUDA_API_HASH, CUDA_COUNT, NVML_API_HASH, NVML_COUNT};

/// An address stored in an export slot.
pub(crate) type Entry = *const c_void;

/// Points every `(slot, function)` of a module's table at its function.
pub(crate) fn set_each(set: &mut dyn FnMut(usize, Entry), entries: &[(usize, Entry)]) {
    for &(slot, f) in entries {
        set(slot, f);
    }
}

struct Table<const N: usize>([Entry; N]);
// SAFETY: the table holds addresses of functions, immutable once built.
unsafe impl<const N: usize> Sync for Table<N> {}
// SAFETY: as above.
unsafe impl<const N: usize> Send for Table<N> {}

fn cuda_table() -> &'static [Entry; CUDA_COUNT] {
    static T: OnceLock<Table<CUDA_COUNT>> = OnceLock::new();
    &T.get_or_init(|| {
        let mut t: [Entry; CUDA_COUNT] =
            std::array::from_fn(|i| generated::stubs::CUDA_STUBS[i] as Entry);
        let mut set = |i: usize, f: Entry| t[i] = f;
        cuda::register(&mut set);
        ctx::register(&mut set);
        exec::register(&mut set);
        mem::register(&mut set);
        copy::register(&mut set);
        array::register(&mut set);
        graph::register(&mut set);
        Table(t)
    })
    .0
}

fn nvml_table() -> &'static [Entry; NVML_COUNT] {
    static T: OnceLock<Table<NVML_COUNT>> = OnceLock::new();
    &T.get_or_init(|| {
        let mut t: [Entry; NVML_COUNT] =
            std::array::from_fn(|i| generated::stubs::NVML_STUBS[i] as Entry);
        let mut set = |i: usize, f: Entry| t[i] = f;
        nvml::register(&mut set);
        Table(t)
    })
    .0
}

fn register_exit_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain extern "C" fn; atexit has no other contract.
        unsafe { libc::atexit(cuda::at_exit) };
    });
}

/// Called by libcuda.so.1 at load: the addresses its exports jump to.
/// Returns null when the two libraries were generated from different API
/// lists (mixed releases), which libcuda reports.
#[unsafe(no_mangle)]
pub extern "C" fn teleport_cuda_table(api_hash: u64, count: usize) -> *const Entry {
    if api_hash != CUDA_API_HASH || count != CUDA_COUNT {
        return std::ptr::null();
    }
    register_exit_hook();
    cuda_table().as_ptr()
}

/// Called by libnvidia-ml.so.1 at load, as [`teleport_cuda_table`].
#[unsafe(no_mangle)]
pub extern "C" fn teleport_nvml_table(api_hash: u64, count: usize) -> *const Entry {
    if api_hash != NVML_API_HASH || count != NVML_COUNT {
        return std::ptr::null();
    }
    register_exit_hook();
    nvml_table().as_ptr()
}
