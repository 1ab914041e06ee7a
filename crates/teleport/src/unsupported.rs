//! Functions that are exported but not remoted yet: they answer
//! `CUDA_ERROR_NOT_SUPPORTED` / `NVML_ERROR_NOT_SUPPORTED` and log their name
//! once, so a user sees exactly which call an application needs.

use std::sync::atomic::{AtomicBool, Ordering};

use tf_api::{CUDA_COUNT, CUDA_NAMES, NVML_COUNT, NVML_NAMES};
use tf_protocol::status::{cu, nvml as nv};

static CUDA_SEEN: [AtomicBool; CUDA_COUNT] = [const { AtomicBool::new(false) }; CUDA_COUNT];
static NVML_SEEN: [AtomicBool; NVML_COUNT] = [const { AtomicBool::new(false) }; NVML_COUNT];

pub fn cuda(index: usize) -> u32 {
    // At exit, after thread-locals are gone, logging would panic (and a
    // panic here aborts): stay silent then.
    if !CUDA_SEEN[index].swap(true, Ordering::Relaxed) && crate::runtime::may_log() {
        crate::client::ensure_logging();
        tracing::warn!(
            "{} is not remoted by this client yet; answering CUDA_ERROR_NOT_SUPPORTED",
            CUDA_NAMES[index]
        );
    }
    cu::NOT_SUPPORTED
}

pub fn nvml(index: usize) -> u32 {
    if !NVML_SEEN[index].swap(true, Ordering::Relaxed) && crate::runtime::may_log() {
        crate::client::ensure_logging();
        tracing::warn!(
            "{} is not remoted by this client yet; answering NVML_ERROR_NOT_SUPPORTED",
            NVML_NAMES[index]
        );
    }
    nv::NOT_SUPPORTED
}
