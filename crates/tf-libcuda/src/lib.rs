//! `libcuda.so.1` of the TensorFusion client.
//!
//! It exports every CUDA driver API symbol that real drivers export (names
//! from `cuda.h` plus the reference export lists in `codegen/reference/`) and
//! contains no CUDA logic: each export is a naked tail jump through a slot
//! table that a constructor fills from `libteleport.so`, the client core. So
//! the library is correct for every signature, including entry points without
//! a prototype, and the core can be updated without relinking applications.
//!
//! Without `libteleport.so` every call returns `CUDA_ERROR_NOT_INITIALIZED`
//! after one line on stderr saying how to fix the installation.
//!
//! The `TENSOR_FUSION_CLIENT` symbol marks this library so that a worker that
//! looks for the real driver can refuse to load it.

mod generated {
    pub mod exports;
}
mod loader;

pub(crate) use loader::trampoline;
use loader::{Client, Slot};
use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

/// Marker: "this libcuda.so.1 is the TensorFusion client, not a driver".
#[unsafe(no_mangle)]
pub static TENSOR_FUSION_CLIENT: u32 = 1;

const CUDA_ERROR_NOT_INITIALIZED: u32 = 3;

const CLIENT: Client = Client {
    library: "libcuda.so.1",
    table_symbol: c"teleport_cuda_table",
    api_hash: tf_api::CUDA_API_HASH,
    count: tf_api::CUDA_COUNT,
};

/// Jump targets of the exports, indexed like `tf_api::CUDA_NAMES`. Written
/// only by the constructor, before `dlopen` of this library returns; after
/// that only read (by the trampolines).
static mut SLOTS: [Slot; tf_api::CUDA_COUNT] = initial_slots();

const fn initial_slots() -> [Slot; tf_api::CUDA_COUNT] {
    let mut slots = [fallback as Slot; tf_api::CUDA_COUNT];
    let mut i = 0;
    while i < generated::exports::RETURNS_POINTER.len() {
        slots[generated::exports::RETURNS_POINTER[i]] = FALLBACK_POINTER;
        i += 1;
    }
    slots
}

static WARNED: AtomicBool = AtomicBool::new(false);

fn warn_once() {
    if !WARNED.swap(true, Ordering::Relaxed) {
        loader::say(format_args!(
            "CUDA called without libteleport.so; returning CUDA_ERROR_NOT_INITIALIZED"
        ));
    }
}

/// Target of every slot until libteleport provides one.
extern "C" fn fallback() -> u32 {
    warn_once();
    CUDA_ERROR_NOT_INITIALIZED
}

/// Fallback of entry points returning a string, which must not get an integer.
extern "C" fn fallback_pointer() -> *const c_char {
    warn_once();
    c"libteleport.so is not loaded".as_ptr()
}

// SAFETY: a Slot is only jumped to, never called with its Rust type; the
// caller of that entry point expects a pointer, which fallback_pointer returns.
const FALLBACK_POINTER: Slot =
    unsafe { std::mem::transmute::<extern "C" fn() -> *const c_char, Slot>(fallback_pointer) };

/// Runs when the library is loaded (before `dlopen` returns or `main` starts).
extern "C" fn init() {
    // SAFETY: the loader runs constructors once, and no export of this
    // library can be called before they finish, so nothing else touches
    // SLOTS; the pointer covers all CUDA_COUNT slots.
    unsafe {
        loader::load(
            &CLIENT,
            (&raw mut SLOTS).cast::<Slot>(),
            init as *const c_void,
        )
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = init;
