//! Modules, kernels, streams, events and graphs (issue 3).
//!
//! Domain module of the worker: the backend methods this domain needs (with
//! `NOT_SUPPORTED` defaults so backends grow one method at a time), the
//! per-session state it keeps, and the dispatch of its requests.

use tf_protocol::exec_msgs::ExecRequest;

use crate::session::{Outcome, Session};
use crate::worker::Worker;

/// What this domain needs from a backend.
pub trait ExecBackend {}

/// Per-session state of this domain (handle tables and the like).
#[derive(Debug, Default)]
pub struct ExecState {}

impl ExecState {
    /// Frees what a departed session left behind.
    pub fn cleanup(&mut self, _worker: &Worker) {}
}

pub(crate) fn dispatch(_s: &mut Session, r: ExecRequest<'_>) -> Outcome {
    match r {
        ExecRequest::_Never(_) => Outcome::Close,
    }
}
