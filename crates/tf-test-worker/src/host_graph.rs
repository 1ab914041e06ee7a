//! TEST ONLY: `GraphBackend` bookkeeping over host memory. Captures are
//! tracked per stream (status, id, graph); work issued while capturing still
//! happens at once (nothing here can replay it), so these tests prove the
//! protocol, the id tables and capture-status answers, not graph semantics,
//! which `tests/gpu/cuda/graphs.cu` proves on a GPU.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tf_protocol::status::cu;
use tf_worker_core::{BResult, BackendCtx, GraphBackend};

use crate::HostBackend;

/// `CUDA_ERROR_ILLEGAL_STATE`: ending a capture that never began.
const ILLEGAL_STATE: u32 = 401;

#[derive(Default)]
pub(crate) struct HostGraph {
    t: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    next: u64,
    /// stream → (capture id, graph)
    capturing: HashMap<u64, (u64, u64)>,
    /// graph → number of captured "nodes" (calls made while capturing)
    graphs: HashMap<u64, u64>,
    execs: HashSet<u64>,
}

impl HostGraph {
    fn t(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.t.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl GraphBackend for HostBackend {
    fn begin_capture(&self, ctx: BackendCtx, stream: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        self.exec.check_stream(stream)?;
        if stream <= 1 {
            // The legacy stream cannot be captured.
            return Err(900);
        }
        let mut t = self.graph.t();
        if t.capturing.contains_key(&stream) {
            return Err(ILLEGAL_STATE);
        }
        t.next += 1;
        let (id, graph) = (t.next, 0x6000 + t.next);
        t.capturing.insert(stream, (id, graph));
        t.graphs.insert(graph, 0);
        Ok(graph)
    }
    fn end_capture(&self, ctx: BackendCtx, stream: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let mut t = self.graph.t();
        let (_, graph) = t.capturing.remove(&stream).ok_or(ILLEGAL_STATE)?;
        Ok(graph)
    }
    fn capture_info(&self, ctx: BackendCtx, stream: u64) -> BResult<(u32, u64, u64)> {
        self.check_ctx(ctx)?;
        Ok(match self.graph.t().capturing.get(&stream) {
            Some((id, graph)) => (1, *id, *graph),
            None => (0, 0, 0),
        })
    }
    fn instantiate(&self, ctx: BackendCtx, graph: u64, _flags: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let mut t = self.graph.t();
        if !t.graphs.contains_key(&graph) {
            return Err(cu::INVALID_VALUE);
        }
        t.next += 1;
        let e = 0x7000 + t.next;
        t.execs.insert(e);
        Ok(e)
    }
    fn graph_launch(&self, ctx: BackendCtx, exec: u64, stream: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.exec.check_stream(stream)?;
        match self.graph.t().execs.contains(&exec) {
            true => Ok(()),
            false => Err(cu::INVALID_VALUE),
        }
    }
    fn graph_upload(&self, ctx: BackendCtx, exec: u64, stream: u64) -> BResult<()> {
        self.graph_launch(ctx, exec, stream)
    }
    fn exec_destroy(&self, ctx: BackendCtx, exec: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        match self.graph.t().execs.remove(&exec) {
            true => Ok(()),
            false => Err(cu::INVALID_VALUE),
        }
    }
    fn graph_destroy(&self, ctx: BackendCtx, graph: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.graph
            .t()
            .graphs
            .remove(&graph)
            .map(|_| ())
            .ok_or(cu::INVALID_VALUE)
    }
    fn node_count(&self, ctx: BackendCtx, graph: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        self.graph
            .t()
            .graphs
            .get(&graph)
            .copied()
            .ok_or(cu::INVALID_VALUE)
    }
    fn exec_update(&self, ctx: BackendCtx, exec: u64, graph: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let t = self.graph.t();
        if !t.execs.contains(&exec) || !t.graphs.contains_key(&graph) {
            return Err(cu::INVALID_VALUE);
        }
        Ok(0)
    }
}
