//! NVML device and system queries (issue 5).
//!
//! Domain module of the worker: the backend methods this domain needs (with
//! `NOT_SUPPORTED` defaults so backends grow one method at a time), the
//! per-session state it keeps, and the dispatch of its requests.

use tf_protocol::nvml_msgs::NvmlRequest;

use crate::session::{Outcome, Session};
use crate::worker::Worker;

/// What this domain needs from a backend.
pub trait NvmlBackend {}

/// Per-session state of this domain (handle tables and the like).
#[derive(Debug, Default)]
pub struct NvmlState {}

impl NvmlState {
    /// Frees what a departed session left behind.
    pub fn cleanup(&mut self, _worker: &Worker) {}
}

pub(crate) fn dispatch(_s: &mut Session, r: NvmlRequest<'_>) -> Outcome {
    match r {
        NvmlRequest::_Never(_) => Outcome::Close,
    }
}
