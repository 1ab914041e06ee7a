//! `libnvidia-ml.so.1` of the TensorFusion client.
//!
//! It exports every NVML symbol that real drivers export (names from `nvml.h`
//! plus the reference export lists in `codegen/reference/`) and contains no
//! NVML logic: each export is a naked tail jump through a slot
//! table that a constructor fills from `libteleport.so`, the client core. So
//! the library is correct for every signature, including entry points without
//! a prototype, and the core can be updated without relinking applications.
//!
//! Without `libteleport.so` every call returns `NVML_ERROR_LIBRARY_NOT_FOUND`
//! after one line on stderr saying how to fix the installation.
//!
//! The `TENSOR_FUSION_CLIENT` symbol marks this library so that a worker that
//! looks for the real driver can refuse to load it.
//!
//! The loader and trampoline code is shared with `libcuda.so.1`.

mod generated {
    pub mod exports;
}
#[path = "../../tf-libcuda/src/loader.rs"]
mod loader;

pub(crate) use loader::trampoline;

loader::export_layer! {
    library: "libnvidia-ml.so.1",
    table_symbol: c"teleport_nvml_table",
    api_hash: tf_api::NVML_API_HASH,
    count: tf_api::NVML_COUNT,
    fallback_status: 12, // NVML_ERROR_LIBRARY_NOT_FOUND
    fallback_message: "NVML called without libteleport.so; returning NVML_ERROR_LIBRARY_NOT_FOUND",
}
