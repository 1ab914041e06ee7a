//! The TensorFusion worker's real backend: executes the CUDA driver API and
//! NVML calls that clients forward, on this host's GPUs, through the vendor
//! libraries loaded at run time (no CUDA headers or libraries at build time).
//!
//! - [`loader`] finds `libcuda.so.1` / `libnvidia-ml.so.1` by absolute path
//!   only, skipping our own client libraries that carry the same names.
//! - `cuda` and `nvml` resolve the entry points by ABI name and wrap them;
//!   a symbol the driver lacks fails only the calls that need it.
//! - [`real_backend`] implements `tf_worker_core::Backend` over them.
//!
//! Environment (read by [`real_backend::open`]):
//! - `TF_REAL_LIBCUDA`: absolute path of the CUDA driver, tried first.
//! - `TF_REAL_LIBNVML`: absolute path of NVML, tried first.
//! - `TF_DRIVER_SEARCH_PATH`: colon-separated directories replacing the
//!   default search list ([`loader::DEFAULT_DIRS`]) for both; set but empty
//!   searches no directory.

mod array;
mod ctx;
mod cuda;
mod exec;
mod exec_modules;
mod graph;
mod graph_nodes;
mod link;
pub mod loader;
mod mem;
mod nvml;
pub mod real_backend;

pub use cuda::{collect_attributes, FORCED_ZERO, MAX_ATTRIBUTE};
pub use real_backend::{open, open_with, Options, RealBackend};
