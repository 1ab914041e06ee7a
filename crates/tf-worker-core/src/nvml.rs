//! NVML device and system queries (issue 5).
//!
//! Domain module of the worker: the backend methods this domain needs (with
//! `NOT_SUPPORTED` defaults so backends grow one method at a time), the
//! per-session state it keeps, and its requests (the generated
//! `NvmlCalls` trait).
//!
//! Device indices are CUDA ordinals everywhere: a backend answers NVML
//! questions about the device that CUDA numbers `index`, so that a client
//! sees one order in both APIs whatever order the host's NVML uses.

use tf_protocol::nvml_msgs::{static_queries, NvmlAnswer, NvmlDeviceFacts, Query};
use tf_protocol::status::nvml;

use crate::backend::{BResult, BackendCtx};
use crate::calls::NvmlCalls;
use crate::session::{reply, Outcome, Session};
use crate::worker::Worker;

/// What this domain needs from a backend.
pub trait NvmlBackend {
    /// Answers `query` (with its scalar `arg`) about device `index`, the
    /// CUDA ordinal, in the shape documented on [`Query`]. `nvmlReturn_t`
    /// errors; a fact the device cannot give is `NVML_ERROR_NOT_SUPPORTED`,
    /// never an invented value.
    fn nvml_query(&self, _index: u32, _query: Query, _arg: u32) -> BResult<NvmlAnswer> {
        Err(nvml::NOT_SUPPORTED)
    }
}

/// Per-session state of this domain.
#[derive(Debug, Default)]
pub struct NvmlState {
    /// The client's process id from its handshake, reported as the process
    /// running on the device (in the client's own pid namespace).
    pub(crate) client_pid: u32,
}

impl NvmlState {
    /// Frees what a departed session left behind.
    pub fn cleanup(&mut self, _worker: &Worker) {}
}

/// The NVML queries. The process list is answered here (the asking client's
/// own process); every other query goes to the backend.
impl NvmlCalls for Session {
    fn nvml_device_facts(&mut self, index: u32) -> Outcome {
        let b = self.worker.backend();
        let facts = static_queries()
            .into_iter()
            .map(|(q, arg)| {
                (
                    q.opcode(),
                    arg,
                    b.nvml_query(index, q, arg).map_err(nonzero),
                )
            })
            .collect();
        reply(Ok(NvmlDeviceFacts { facts }))
    }

    fn nvml_query(&mut self, query: Query, index: u32, arg: u32) -> Outcome {
        if query == Query::ComputeProcesses {
            return reply(Ok(own_processes(self, index)));
        }
        reply(
            self.worker
                .backend()
                .nvml_query(index, query, arg)
                .map_err(nonzero),
        )
    }
}

/// A backend error of 0 would read as success without a body.
fn nonzero(s: u32) -> u32 {
    if s == 0 {
        nvml::UNKNOWN
    } else {
        s
    }
}

/// `[pid, bytes]` for this client while it holds a context on device
/// `index`, like NVML lists processes with a context; other clients of the
/// worker are not shown (they may be other tenants).
fn own_processes(s: &Session, index: u32) -> NvmlAnswer {
    let Ok(dev) = i32::try_from(index) else {
        return NvmlAnswer::default();
    };
    let holds = s.retained.get(&dev).copied().unwrap_or(0) > 0;
    let ctx: Option<BackendCtx> = s.worker.primary_ctx(dev);
    let used: u64 = s
        .allocs
        .values()
        .filter(|(_, c)| Some(*c) == ctx)
        .map(|(size, _)| size)
        .sum();
    if holds || used > 0 {
        NvmlAnswer::nums([u64::from(s.nvml.client_pid), used])
    } else {
        NvmlAnswer::default()
    }
}
