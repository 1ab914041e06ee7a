//! Stream capture and CUDA graphs (issue 3).
//!
//! Domain module of the worker: the backend methods (each `NOT_SUPPORTED`
//! by default), the per-session tables of graphs and executable graphs (by
//! the ids the client minted) and its requests (the generated `GraphCalls`
//! trait).
//!
//! Isolation. Captures always run in thread-local mode on the session's
//! thread: in global mode the driver would refuse "unsafe" calls of every
//! thread of the worker, i.e. other clients' allocations. The client's own
//! capture mode (`cuThreadExchangeStreamCaptureMode`) is applied to that
//! thread, which is the only one running its calls.
//!
//! Host memory cannot be captured: a captured host-to-device copy would
//! read the worker's staging buffer at every replay. Copies between host
//! and device on a capturing stream are refused with
//! `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED` (see `exec::streams`).
//!
//! Explicit graphs (`nodes`): every node, graph, event, function and device
//! range a node names is checked against this session's tables before the
//! backend sees it, so a client can never reach another client's objects.

mod nodes;

use std::collections::HashMap;
use std::sync::Arc;

use tf_protocol::exec_msgs::ParamSlot;
use tf_protocol::graph_msgs::{handle, CopyNode, MemsetNode};
use tf_protocol::status::cu;

use crate::backend::{BResult, BackendCtx, Status};
use crate::calls::GraphCalls;
use crate::exec::{resolve_stream, Func};
use crate::session::{reply, Outcome, Session};
use crate::worker::Worker;

fn unsupported<T>() -> BResult<T> {
    Err(cu::NOT_SUPPORTED)
}

/// `CU_STREAM_CAPTURE_MODE_THREAD_LOCAL`.
pub const MODE_THREAD_LOCAL: u32 = 1;
/// `CU_STREAM_CAPTURE_MODE_RELAXED`.
pub const MODE_RELAXED: u32 = 2;
/// `CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED`.
pub const CAPTURE_UNSUPPORTED: Status = 900;

/// `CUgraphNodeType` values of the nodes this domain adds.
pub mod node_type {
    pub const KERNEL: u32 = 0;
    pub const MEMCPY: u32 = 1;
    pub const MEMSET: u32 = 2;
    pub const HOST: u32 = 3;
    pub const EMPTY: u32 = 5;
    pub const WAIT_EVENT: u32 = 6;
    pub const EVENT_RECORD: u32 = 7;
}

/// A kernel node's launch, in backend handles: the parameter buffer is at
/// least as long as `layout` (when known) requires.
#[derive(Debug, Clone, Copy)]
pub struct KernelSpec<'a> {
    pub func: Func,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_mem: u32,
    pub params: &'a [u8],
    pub layout: Option<&'a [ParamSlot]>,
}

/// A node to add, in backend handles (events are real events; device
/// ranges were checked against the session's memory).
#[derive(Debug, Clone, Copy)]
pub enum NodeSpec<'a> {
    Kernel(KernelSpec<'a>),
    Memset(MemsetNode),
    Memcpy(CopyNode),
    Empty,
    EventRecord(u64),
    EventWait(u64),
    /// A host node: the hook asks the client to run its function.
    Host(&'a crate::host_calls::HostHook),
}

impl NodeSpec<'_> {
    /// Its `CUgraphNodeType`.
    pub fn kind(&self) -> u32 {
        match self {
            NodeSpec::Kernel(_) => node_type::KERNEL,
            NodeSpec::Memset(_) => node_type::MEMSET,
            NodeSpec::Memcpy(_) => node_type::MEMCPY,
            NodeSpec::Empty => node_type::EMPTY,
            NodeSpec::EventRecord(_) => node_type::EVENT_RECORD,
            NodeSpec::EventWait(_) => node_type::WAIT_EVENT,
            NodeSpec::Host(_) => node_type::HOST,
        }
    }
}

/// What this domain needs from a backend. Graphs, executable graphs, nodes
/// and streams are the backend's own handles.
#[allow(unused_variables)]
pub trait GraphBackend {
    /// Begins a thread-local capture; returns the graph being captured.
    fn begin_capture(&self, ctx: BackendCtx, stream: u64) -> BResult<u64> {
        unsupported()
    }
    /// Ends the capture; returns the graph (the one `begin_capture` returned).
    fn end_capture(&self, ctx: BackendCtx, stream: u64) -> BResult<u64> {
        unsupported()
    }
    /// `(status, capture id, graph)`; status 0 = not capturing.
    fn capture_info(&self, ctx: BackendCtx, stream: u64) -> BResult<(u32, u64, u64)> {
        Ok((0, 0, 0))
    }
    /// Sets the calling thread's capture mode.
    fn capture_mode(&self, mode: u32) -> BResult<()> {
        Ok(())
    }
    fn instantiate(&self, ctx: BackendCtx, graph: u64, flags: u64) -> BResult<u64> {
        unsupported()
    }
    fn graph_launch(&self, ctx: BackendCtx, exec: u64, stream: u64) -> BResult<()> {
        unsupported()
    }
    fn graph_upload(&self, ctx: BackendCtx, exec: u64, stream: u64) -> BResult<()> {
        unsupported()
    }
    fn exec_destroy(&self, ctx: BackendCtx, exec: u64) -> BResult<()> {
        unsupported()
    }
    fn graph_destroy(&self, ctx: BackendCtx, graph: u64) -> BResult<()> {
        unsupported()
    }
    fn node_count(&self, ctx: BackendCtx, graph: u64) -> BResult<u64> {
        unsupported()
    }
    /// `CUgraphExecUpdateResult` (the call's status is the error, if any).
    fn exec_update(&self, ctx: BackendCtx, exec: u64, graph: u64) -> BResult<u64> {
        unsupported()
    }
    /// An empty graph (`cuGraphCreate`).
    fn graph_create(&self, ctx: BackendCtx) -> BResult<u64> {
        unsupported()
    }
    fn graph_clone(&self, ctx: BackendCtx, graph: u64) -> BResult<u64> {
        unsupported()
    }
    /// Adds a node after `deps` (nodes of `graph`); returns the node.
    fn add_node(
        &self,
        ctx: BackendCtx,
        graph: u64,
        deps: &[u64],
        node: &NodeSpec<'_>,
    ) -> BResult<u64> {
        unsupported()
    }
    /// Edges `from[i] → to[i]` (equal lengths, nodes of `graph`).
    fn add_dependencies(
        &self,
        ctx: BackendCtx,
        graph: u64,
        from: &[u64],
        to: &[u64],
    ) -> BResult<()> {
        unsupported()
    }
    /// Every node of the graph with its `CUgraphNodeType`, in the driver's order.
    fn graph_nodes(&self, ctx: BackendCtx, graph: u64) -> BResult<Vec<(u64, u32)>> {
        unsupported()
    }
    fn kernel_node_set_params(
        &self,
        ctx: BackendCtx,
        node: u64,
        k: &KernelSpec<'_>,
    ) -> BResult<()> {
        unsupported()
    }
    fn exec_kernel_node_set_params(
        &self,
        ctx: BackendCtx,
        exec: u64,
        node: u64,
        k: &KernelSpec<'_>,
    ) -> BResult<()> {
        unsupported()
    }
    /// `cuLaunchHostFunc` running `hook` (on a capturing stream: a host node).
    fn launch_host_func(
        &self,
        ctx: BackendCtx,
        stream: u64,
        hook: &crate::host_calls::HostHook,
    ) -> BResult<()> {
        unsupported()
    }
    /// A host node's function, of a graph or (`exec`) of an executable
    /// graph's copy of the node.
    fn host_node_set_params(
        &self,
        ctx: BackendCtx,
        exec: Option<u64>,
        node: u64,
        hook: &crate::host_calls::HostHook,
    ) -> BResult<()> {
        unsupported()
    }
}

/// A node this session may name.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    pub real: u64,
    /// The client's id of its graph.
    pub graph: u64,
    /// `CUgraphNodeType`.
    pub kind: u32,
}

#[derive(Debug, Default)]
pub struct GraphState {
    /// Graphs: id → (real, context).
    graphs: HashMap<u64, (u64, BackendCtx)>,
    /// Executable graphs: id → (real, context).
    execs: HashMap<u64, (u64, BackendCtx)>,
    /// Graphs being captured: real → id, to name them in capture queries.
    capturing: HashMap<u64, u64>,
    /// Nodes: id (client- or worker-minted) → node.
    nodes: HashMap<u64, Node>,
    /// Real node → id, so a node listed twice keeps one id.
    node_ids: HashMap<u64, u64>,
    /// Counter of the worker-minted (`LISTED_NODE`) ids.
    next_listed: u64,
    /// Executable graph id → the graph id it was instantiated from (its
    /// nodes are the ones per-node updates may name).
    exec_graph: HashMap<u64, u64>,
}

impl GraphState {
    /// Forgets the graphs of a context the application destroyed (the
    /// driver destroyed them with it).
    pub(crate) fn forget_ctx(&mut self, ctx: BackendCtx) {
        self.execs.retain(|_, (_, c)| *c != ctx);
        self.graphs.retain(|_, (_, c)| *c != ctx);
        self.forget_orphans();
    }

    /// Forgets the nodes of graphs that are gone (the driver destroys a
    /// graph's nodes with it) and the graph of executables that are gone.
    fn forget_orphans(&mut self) {
        let graphs = &self.graphs;
        self.nodes.retain(|_, n| graphs.contains_key(&n.graph));
        let nodes = &self.nodes;
        self.node_ids.retain(|_, id| nodes.contains_key(id));
        let execs = &self.execs;
        self.exec_graph.retain(|e, _| execs.contains_key(e));
    }

    pub fn cleanup(&mut self, w: &Worker) {
        let b = w.backend();
        let (execs, graphs) = (self.execs.len(), self.graphs.len());
        let mut failed = 0u32;
        for (_, (real, ctx)) in std::mem::take(&mut self.execs) {
            failed += u32::from(b.exec_destroy(ctx, real).is_err());
        }
        for (_, (real, ctx)) in std::mem::take(&mut self.graphs) {
            // A graph still being captured belongs to its capture, which
            // ends when the session's streams are destroyed next.
            if !self.capturing.contains_key(&real) {
                failed += u32::from(b.graph_destroy(ctx, real).is_err());
            }
        }
        self.forget_orphans();
        if execs + graphs > 0 {
            tracing::info!(execs, graphs, failed, "released the session's graphs");
        }
    }
}

fn find_graph(s: &Session, id: u64) -> Result<(u64, BackendCtx), Status> {
    s.graph.graphs.get(&id).copied().ok_or(cu::INVALID_VALUE)
}

fn find_exec(s: &Session, id: u64) -> Result<(u64, BackendCtx), Status> {
    s.graph.execs.get(&id).copied().ok_or(cu::INVALID_VALUE)
}

/// Refuses host ↔ device copies on a capturing stream (see the module docs).
pub(crate) fn refuse_host_copy_in_capture(
    s: &Session,
    ctx: BackendCtx,
    stream: u64,
) -> Result<(), Status> {
    if s.graph.capturing.is_empty() {
        // No capture of this session is under way: nothing to ask the driver.
        return Ok(());
    }
    match s.worker.backend().capture_info(ctx, stream)? {
        (0, ..) => Ok(()),
        _ => Err(CAPTURE_UNSUPPORTED),
    }
}

/// The capture and graph requests. Ids are the client's; every one is
/// checked against this session's tables before the backend sees it.
impl GraphCalls for Session {
    fn begin_capture(&mut self, ctx: u64, stream: u64, graph: u64, mode: u32) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            self.take_deferred()?;
            if !handle::is(handle::GRAPH, graph)
                || self.graph.graphs.contains_key(&graph)
                || mode > 2
            {
                return Err(cu::INVALID_VALUE);
            }
            let (c, st) = resolve_stream(self, ctx, stream, None)?;
            let real = w.backend().begin_capture(c, st)?;
            self.graph.graphs.insert(graph, (real, c));
            self.graph.capturing.insert(real, graph);
            Ok(())
        })())
    }

    fn end_capture(&mut self, ctx: u64, stream: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        let b = w.backend();
        reply((|| {
            let (c, st) = resolve_stream(self, ctx, stream, None)?;
            let (_, _, building) = b.capture_info(c, st)?;
            let id = self.graph.capturing.remove(&building);
            match b.end_capture(c, st) {
                Ok(real) => {
                    if let Some(id) = id {
                        self.graph.graphs.insert(id, (real, c));
                    }
                    Ok(())
                }
                Err(e) => {
                    // An invalidated capture yields no graph (the driver drops it).
                    if let Some(id) = id {
                        self.graph.graphs.remove(&id);
                    }
                    Err(e)
                }
            }
        })())
    }

    fn capture_info(&mut self, ctx: u64, stream: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            let (c, st) = resolve_stream(self, ctx, stream, None)?;
            let (status, id, real) = w.backend().capture_info(c, st)?;
            let graph = self.graph.capturing.get(&real).copied().unwrap_or(0);
            Ok((u64::from(status), id, graph))
        })())
    }

    fn capture_mode(&mut self, mode: u32) -> Outcome {
        reply((|| {
            if mode > MODE_RELAXED {
                return Err(cu::INVALID_VALUE);
            }
            self.worker.backend().capture_mode(mode)
        })())
    }

    fn graph_instantiate(&mut self, _ctx: u64, graph: u64, exec: u64, flags: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            self.take_deferred()?;
            let (real, c) = find_graph(self, graph)?;
            if !handle::is(handle::GRAPH_EXEC, exec) || self.graph.execs.contains_key(&exec) {
                return Err(cu::INVALID_VALUE);
            }
            let e = w.backend().instantiate(c, real, flags)?;
            self.graph.execs.insert(exec, (e, c));
            self.graph.exec_graph.insert(exec, graph);
            Ok(())
        })())
    }

    fn graph_launch(&mut self, ctx: u64, exec: u64, stream: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            let (e, ec) = find_exec(self, exec)?;
            let (c, st) = resolve_stream(self, ctx, stream, Some(ec))?;
            w.backend().graph_launch(c, e, st)
        })())
    }

    fn graph_upload(&mut self, ctx: u64, exec: u64, stream: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            let (e, ec) = find_exec(self, exec)?;
            let (c, st) = resolve_stream(self, ctx, stream, Some(ec))?;
            w.backend().graph_upload(c, e, st)
        })())
    }

    fn graph_exec_destroy(&mut self, exec: u64) -> Outcome {
        reply((|| {
            let (e, c) = find_exec(self, exec)?;
            self.worker.backend().exec_destroy(c, e)?;
            self.graph.execs.remove(&exec);
            self.graph.exec_graph.remove(&exec);
            Ok(())
        })())
    }

    fn graph_destroy(&mut self, graph: u64) -> Outcome {
        reply((|| {
            let (g, c) = find_graph(self, graph)?;
            if self.graph.capturing.contains_key(&g) {
                // Still being captured: the driver owns it until the capture ends.
                return Err(cu::INVALID_VALUE);
            }
            self.worker.backend().graph_destroy(c, g)?;
            self.graph.graphs.remove(&graph);
            self.graph.forget_orphans();
            Ok(())
        })())
    }

    fn graph_nodes(&mut self, graph: u64, list: bool) -> Outcome {
        reply(nodes::list(self, graph, list))
    }

    fn graph_exec_update(&mut self, exec: u64, graph: u64) -> Outcome {
        reply((|| {
            let (e, c) = find_exec(self, exec)?;
            let (g, _) = find_graph(self, graph)?;
            self.worker.backend().exec_update(c, e, g)
        })())
    }

    fn graph_create(&mut self, ctx: u64, graph: u64, flags: u32) -> Outcome {
        reply(nodes::create(self, ctx, graph, flags))
    }

    fn graph_clone(&mut self, graph: u64, clone: u64) -> Outcome {
        reply(nodes::clone(self, graph, clone))
    }

    fn add_kernel_node(
        &mut self,
        _ctx: u64,
        graph: u64,
        node: u64,
        deps: Vec<u64>,
        kernel: tf_protocol::graph_msgs::KernelNode<'_>,
    ) -> Outcome {
        reply(nodes::add_kernel(self, graph, node, &deps, &kernel))
    }

    fn add_memset_node(
        &mut self,
        ctx: u64,
        graph: u64,
        node: u64,
        deps: Vec<u64>,
        memset: MemsetNode,
    ) -> Outcome {
        reply(nodes::add_memset(self, ctx, graph, node, &deps, memset))
    }

    fn add_memcpy_node(
        &mut self,
        ctx: u64,
        graph: u64,
        node: u64,
        deps: Vec<u64>,
        copy: CopyNode,
    ) -> Outcome {
        reply(nodes::add_memcpy(self, ctx, graph, node, &deps, copy))
    }

    fn add_empty_node(&mut self, graph: u64, node: u64, deps: Vec<u64>) -> Outcome {
        reply(nodes::add(self, None, graph, node, &deps, NodeSpec::Empty))
    }

    fn add_event_record_node(
        &mut self,
        graph: u64,
        node: u64,
        deps: Vec<u64>,
        event: u64,
    ) -> Outcome {
        reply(nodes::add_event(self, graph, node, &deps, event, true))
    }

    fn add_event_wait_node(
        &mut self,
        graph: u64,
        node: u64,
        deps: Vec<u64>,
        event: u64,
    ) -> Outcome {
        reply(nodes::add_event(self, graph, node, &deps, event, false))
    }

    fn add_dependencies(&mut self, graph: u64, from: Vec<u64>, to: Vec<u64>) -> Outcome {
        reply(nodes::add_dependencies(self, graph, &from, &to))
    }

    fn node_get_type(&mut self, node: u64) -> Outcome {
        reply(nodes::node(self, node).map(|n| u64::from(n.kind)))
    }

    fn kernel_node_set_params(
        &mut self,
        _ctx: u64,
        node: u64,
        kernel: tf_protocol::graph_msgs::KernelNode<'_>,
    ) -> Outcome {
        reply(nodes::set_kernel(self, None, node, &kernel))
    }

    fn exec_kernel_node_set_params(
        &mut self,
        _ctx: u64,
        exec: u64,
        node: u64,
        kernel: tf_protocol::graph_msgs::KernelNode<'_>,
    ) -> Outcome {
        reply(nodes::set_kernel(self, Some(exec), node, &kernel))
    }

    fn add_host_node(&mut self, graph: u64, node: u64, deps: Vec<u64>, call: u64) -> Outcome {
        reply((|| {
            let hook = self.host_hook(call)?;
            nodes::add(self, None, graph, node, &deps, NodeSpec::Host(&hook))
        })())
    }

    fn launch_host_func(&mut self, ctx: u64, stream: u64, call: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            let (c, st) = resolve_stream(self, ctx, stream, None)?;
            let hook = self.host_hook(call)?;
            w.backend().launch_host_func(c, st, &hook)
        })())
    }

    fn host_node_set_params(&mut self, exec: u64, node: u64, call: u64) -> Outcome {
        reply((|| {
            let n = nodes::node(self, node)?;
            if n.kind != node_type::HOST {
                return Err(cu::INVALID_VALUE);
            }
            let (_, c) = find_graph(self, n.graph)?;
            let real_exec = match exec {
                0 => None,
                e => {
                    let (real, _) = find_exec(self, e)?;
                    if self.graph.exec_graph.get(&e) != Some(&n.graph) {
                        return Err(cu::INVALID_VALUE);
                    }
                    Some(real)
                }
            };
            let hook = self.host_hook(call)?;
            self.worker
                .backend()
                .host_node_set_params(c, real_exec, n.real, &hook)
        })())
    }
}
