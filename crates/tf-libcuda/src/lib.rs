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

loader::export_layer! {
    library: "libcuda.so.1",
    table_symbol: c"teleport_cuda_table",
    api_hash: tf_api::CUDA_API_HASH,
    count: tf_api::CUDA_COUNT,
    fallback_status: 3, // CUDA_ERROR_NOT_INITIALIZED
    fallback_message: "CUDA called without libteleport.so; returning CUDA_ERROR_NOT_INITIALIZED",
}
