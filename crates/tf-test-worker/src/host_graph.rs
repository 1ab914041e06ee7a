//! TEST ONLY: `GraphBackend` over host memory.
//!
//! Captures are tracked per stream (status, id, graph); work issued while
//! capturing still happens at once (nothing here can replay it), so a
//! captured graph has no nodes and its launches do nothing: those tests
//! prove the protocol, the id tables and capture-status answers.
//!
//! Explicit graphs are real: nodes (kernels, memsets, device copies, empty,
//! event record and wait) and edges are kept per graph; instantiating
//! snapshots the nodes in dependency order (creation order among ready
//! nodes), and each launch performs them in that order on host memory, the
//! `tf_test_*` kernels included (`host_kernels`). Per-node kernel updates
//! and whole-graph updates (`cuGraphExecUpdate`, nodes paired in creation
//! order, as the driver pairs them) change what later launches do. A GPU
//! proves the same on the real driver (`tests/gpu/cuda/graphs.cu`).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tf_protocol::exec_msgs::{LaunchApi, Memset, MemsetOp, Shape};
use tf_protocol::graph_msgs::{CopyNode, MemsetNode};
use tf_protocol::status::cu;
use tf_worker_core::exec::Func;
use tf_worker_core::graph::{KernelSpec, NodeSpec};
use tf_worker_core::{BResult, Backend, BackendCtx, ExecBackend, GraphBackend};

use crate::HostBackend;

/// `CUDA_ERROR_ILLEGAL_STATE`: ending a capture that never began.
const ILLEGAL_STATE: u32 = 401;
/// `CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE`.
const UPDATE_FAILURE: u32 = 910;
/// Real handles of graphs, executables and nodes start at these.
const GRAPH_BASE: u64 = 0x6000;
const EXEC_BASE: u64 = 0x7000;
const NODE_BASE: u64 = 0x8000_0000;

#[derive(Default)]
pub(crate) struct HostGraph {
    t: Mutex<Tables>,
}

/// What a node does when its graph is launched.
#[derive(Clone, Debug)]
enum Work {
    Kernel {
        func: u64,
        grid: [u32; 3],
        block: [u32; 3],
        shared_mem: u32,
        params: Vec<u8>,
    },
    Memset(MemsetNode),
    Copy(CopyNode),
    Empty,
    Record(u64),
    Wait(u64),
    /// A host node: runs the client's function (through the worker core's
    /// hook, as a GPU's host node does).
    Host(tf_worker_core::host_calls::HostHook),
}

impl Work {
    fn kernel(k: &KernelSpec<'_>) -> Self {
        Work::Kernel {
            func: k.func.real,
            grid: k.grid,
            block: k.block,
            shared_mem: k.shared_mem,
            params: k.params.to_vec(),
        }
    }
    fn same_kind(&self, other: &Work) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

#[derive(Default)]
struct Graph {
    /// Nodes in creation order.
    nodes: Vec<u64>,
    /// `(from, to)` edges.
    edges: HashSet<(u64, u64)>,
}

struct Exec {
    /// The nodes of the graph it was instantiated from, in creation order:
    /// per-node updates name them.
    nodes: Vec<u64>,
    /// `(node, work)` in launch order.
    steps: Vec<(u64, Work)>,
}

#[derive(Default)]
struct Tables {
    next: u64,
    /// stream → (capture id, graph)
    capturing: HashMap<u64, (u64, u64)>,
    graphs: HashMap<u64, Graph>,
    /// node → (graph, work)
    nodes: HashMap<u64, (u64, Work)>,
    execs: HashMap<u64, Exec>,
}

impl HostGraph {
    fn t(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.t.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tables {
    fn mint(&mut self, base: u64) -> u64 {
        self.next += 1;
        base + self.next
    }

    /// The graph's nodes in dependency order (Kahn; ready nodes in creation
    /// order), or `INVALID_VALUE` for a cycle.
    fn order(&self, graph: u64) -> BResult<Vec<u64>> {
        let g = self.graphs.get(&graph).ok_or(cu::INVALID_VALUE)?;
        let mut indegree: HashMap<u64, usize> = g.nodes.iter().map(|n| (*n, 0)).collect();
        for (_, to) in &g.edges {
            *indegree.entry(*to).or_default() += 1;
        }
        let mut done = Vec::with_capacity(g.nodes.len());
        let mut left: Vec<u64> = g.nodes.clone();
        while !left.is_empty() {
            let at = left
                .iter()
                .position(|n| indegree[n] == 0)
                .ok_or(cu::INVALID_VALUE)?;
            let n = left.remove(at);
            for (_, to) in g.edges.iter().filter(|(from, _)| *from == n) {
                if let Some(d) = indegree.get_mut(to) {
                    *d -= 1;
                }
            }
            done.push(n);
        }
        Ok(done)
    }

    fn steps(&self, graph: u64) -> BResult<Vec<(u64, Work)>> {
        Ok(self
            .order(graph)?
            .into_iter()
            .map(|n| (n, self.nodes[&n].1.clone()))
            .collect())
    }
}

impl HostBackend {
    /// Checks a node's work as the driver does when the node is added.
    fn check_work(&self, work: &Work) -> BResult<()> {
        match work {
            Work::Kernel { func, .. } => self.exec.check_func(*func),
            Work::Record(e) | Work::Wait(e) => self.exec.check_event(*e),
            Work::Memset(m) if !matches!(m.elem, 1 | 2 | 4) => Err(cu::INVALID_VALUE),
            _ => Ok(()),
        }
    }

    /// One row of a copy node: device memory, or a host mirror on a side
    /// marked `host` (the client's pinned memory at its address).
    fn copy_row(
        &self,
        ctx: BackendCtx,
        dst: &tf_protocol::graph_msgs::CopySide,
        to: u64,
        src: &tf_protocol::graph_msgs::CopySide,
        from: u64,
        n: u64,
    ) -> BResult<()> {
        if !dst.host && !src.host {
            return self.memcpy_dtod(ctx, to, from, n);
        }
        let mut buf = vec![0u8; usize::try_from(n).map_err(|_| cu::INVALID_VALUE)?];
        if src.host {
            self.mem
                .in_mirror(from, buf.len(), |m| buf.copy_from_slice(m))?;
        } else {
            self.memcpy_dtoh(ctx, &mut buf, from)?;
        }
        if dst.host {
            self.mem
                .in_mirror(to, buf.len(), |m| m.copy_from_slice(&buf))
        } else {
            self.memcpy_htod(ctx, to, &buf)
        }
    }

    /// Performs one node on `stream`.
    fn perform(&self, ctx: BackendCtx, stream: u64, work: &Work) -> BResult<()> {
        match work {
            Work::Kernel {
                func,
                grid,
                block,
                shared_mem,
                params,
            } => {
                let shape = Shape {
                    grid: *grid,
                    block: *block,
                    shared_mem: *shared_mem,
                    stream,
                    attrs: Vec::new(),
                };
                let f = Func {
                    real: *func,
                    kernel: false,
                };
                ExecBackend::launch(self, ctx, f, LaunchApi::Kernel, &shape, params, None)
            }
            Work::Memset(m) => {
                let height = (m.height > 1).then_some(m.height);
                let op = MemsetOp::new(m.elem as u8, height).ok_or(cu::INVALID_VALUE)?;
                let set = Memset {
                    ctx: 0,
                    stream,
                    dst: m.dst,
                    pitch: m.pitch,
                    value: m.value,
                    width: m.width,
                    op,
                };
                self.memset_async(ctx, stream, &set)
            }
            Work::Copy(c) => {
                for z in 0..c.depth {
                    for y in 0..c.height {
                        let row = |s: &tf_protocol::graph_msgs::CopySide| {
                            s.ptr + z * s.pitch * s.rows + y * s.pitch
                        };
                        self.copy_row(ctx, &c.dst, row(&c.dst), &c.src, row(&c.src), c.width)?;
                    }
                }
                Ok(())
            }
            Work::Host(hook) => {
                hook.run();
                Ok(())
            }
            Work::Empty => Ok(()),
            Work::Record(e) => self.event_record(ctx, *e, stream, None),
            Work::Wait(e) => self.stream_wait_event(ctx, stream, *e, 0),
        }
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
        let id = t.mint(0);
        let graph = t.mint(GRAPH_BASE);
        t.capturing.insert(stream, (id, graph));
        t.graphs.insert(graph, Graph::default());
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
        let steps = t.steps(graph)?;
        let nodes = t.graphs[&graph].nodes.clone();
        let e = t.mint(EXEC_BASE);
        t.execs.insert(e, Exec { nodes, steps });
        Ok(e)
    }
    fn graph_launch(&self, ctx: BackendCtx, exec: u64, stream: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.exec.check_stream(stream)?;
        // A snapshot: the graph lock is not held while nodes run.
        let steps = match self.graph.t().execs.get(&exec) {
            Some(e) => e.steps.clone(),
            None => return Err(cu::INVALID_VALUE),
        };
        for (_, work) in &steps {
            self.perform(ctx, stream, work)?;
        }
        Ok(())
    }
    fn graph_upload(&self, ctx: BackendCtx, exec: u64, stream: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.exec.check_stream(stream)?;
        match self.graph.t().execs.contains_key(&exec) {
            true => Ok(()),
            false => Err(cu::INVALID_VALUE),
        }
    }
    fn exec_destroy(&self, ctx: BackendCtx, exec: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        match self.graph.t().execs.remove(&exec) {
            Some(_) => Ok(()),
            None => Err(cu::INVALID_VALUE),
        }
    }
    fn graph_destroy(&self, ctx: BackendCtx, graph: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        let mut t = self.graph.t();
        let g = t.graphs.remove(&graph).ok_or(cu::INVALID_VALUE)?;
        for n in g.nodes {
            t.nodes.remove(&n);
        }
        Ok(())
    }
    fn node_count(&self, ctx: BackendCtx, graph: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let t = self.graph.t();
        let g = t.graphs.get(&graph).ok_or(cu::INVALID_VALUE)?;
        Ok(g.nodes.len() as u64)
    }
    /// Pairs the nodes of `graph` with the executable's in creation order;
    /// the kinds and edges must match (else the topology changed).
    fn exec_update(&self, ctx: BackendCtx, exec: u64, graph: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let mut t = self.graph.t();
        let steps = t.steps(graph)?;
        let g = &t.graphs[&graph];
        let e = t.execs.get(&exec).ok_or(cu::INVALID_VALUE)?;
        if g.nodes.len() != e.nodes.len() {
            return Err(UPDATE_FAILURE);
        }
        let pair: HashMap<u64, u64> = g
            .nodes
            .iter()
            .copied()
            .zip(e.nodes.iter().copied())
            .collect();
        let old: HashMap<u64, &Work> = e.steps.iter().map(|(n, w)| (*n, w)).collect();
        let mut new = Vec::with_capacity(steps.len());
        for (n, work) in steps {
            let was = pair[&n];
            if !old[&was].same_kind(&work) {
                return Err(UPDATE_FAILURE);
            }
            new.push((was, work));
        }
        // Same edges between paired nodes: the same order constraints.
        let old_graph_edges: Option<&HashSet<(u64, u64)>> = e
            .nodes
            .first()
            .and_then(|n| t.nodes.get(n))
            .and_then(|(og, _)| t.graphs.get(og))
            .map(|og| &og.edges);
        if let Some(edges) = old_graph_edges {
            let mapped: HashSet<(u64, u64)> =
                g.edges.iter().map(|(a, b)| (pair[a], pair[b])).collect();
            if &mapped != edges {
                return Err(UPDATE_FAILURE);
            }
        }
        if let Some(e) = t.execs.get_mut(&exec) {
            e.steps = new;
        }
        Ok(0)
    }
    fn graph_create(&self, ctx: BackendCtx) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let mut t = self.graph.t();
        let g = t.mint(GRAPH_BASE);
        t.graphs.insert(g, Graph::default());
        Ok(g)
    }
    fn graph_clone(&self, ctx: BackendCtx, graph: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let mut t = self.graph.t();
        let src = t.graphs.get(&graph).ok_or(cu::INVALID_VALUE)?;
        let (nodes, edges) = (src.nodes.clone(), src.edges.clone());
        let copy = t.mint(GRAPH_BASE);
        let mut map = HashMap::new();
        for n in &nodes {
            let work = t.nodes[n].1.clone();
            let m = t.mint(NODE_BASE);
            t.nodes.insert(m, (copy, work));
            map.insert(*n, m);
        }
        t.graphs.insert(
            copy,
            Graph {
                nodes: nodes.iter().map(|n| map[n]).collect(),
                edges: edges.iter().map(|(a, b)| (map[a], map[b])).collect(),
            },
        );
        Ok(copy)
    }
    fn add_node(
        &self,
        ctx: BackendCtx,
        graph: u64,
        deps: &[u64],
        node: &NodeSpec<'_>,
    ) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let work = match node {
            NodeSpec::Kernel(k) => Work::kernel(k),
            NodeSpec::Memset(m) => Work::Memset(*m),
            NodeSpec::Memcpy(c) => Work::Copy(*c),
            NodeSpec::Empty => Work::Empty,
            NodeSpec::EventRecord(e) => Work::Record(*e),
            NodeSpec::EventWait(e) => Work::Wait(*e),
            NodeSpec::Host(h) => Work::Host((*h).clone()),
        };
        self.check_work(&work)?;
        let mut t = self.graph.t();
        let g = t.graphs.get(&graph).ok_or(cu::INVALID_VALUE)?;
        let unique: HashSet<&u64> = deps.iter().collect();
        if unique.len() != deps.len() || deps.iter().any(|d| !g.nodes.contains(d)) {
            return Err(cu::INVALID_VALUE);
        }
        let n = t.mint(NODE_BASE);
        t.nodes.insert(n, (graph, work));
        if let Some(g) = t.graphs.get_mut(&graph) {
            g.nodes.push(n);
            g.edges.extend(deps.iter().map(|d| (*d, n)));
        }
        Ok(n)
    }
    fn add_dependencies(
        &self,
        ctx: BackendCtx,
        graph: u64,
        from: &[u64],
        to: &[u64],
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        let mut t = self.graph.t();
        let g = t.graphs.get_mut(&graph).ok_or(cu::INVALID_VALUE)?;
        for (a, b) in from.iter().zip(to) {
            if a == b || !g.nodes.contains(a) || !g.nodes.contains(b) || g.edges.contains(&(*a, *b))
            {
                return Err(cu::INVALID_VALUE);
            }
        }
        g.edges.extend(from.iter().copied().zip(to.iter().copied()));
        Ok(())
    }
    fn graph_nodes(&self, ctx: BackendCtx, graph: u64) -> BResult<Vec<(u64, u32)>> {
        self.check_ctx(ctx)?;
        let t = self.graph.t();
        let g = t.graphs.get(&graph).ok_or(cu::INVALID_VALUE)?;
        Ok(g.nodes
            .iter()
            .map(|n| {
                let kind = match &t.nodes[n].1 {
                    Work::Kernel { .. } => 0,
                    Work::Copy(_) => 1,
                    Work::Memset(_) => 2,
                    Work::Empty => 5,
                    Work::Wait(_) => 6,
                    Work::Record(_) => 7,
                    Work::Host(_) => 3,
                };
                (*n, kind)
            })
            .collect())
    }
    fn kernel_node_set_params(
        &self,
        ctx: BackendCtx,
        node: u64,
        k: &KernelSpec<'_>,
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        let work = Work::kernel(k);
        self.check_work(&work)?;
        match self.graph.t().nodes.get_mut(&node) {
            Some((_, w @ Work::Kernel { .. })) => {
                *w = work;
                Ok(())
            }
            _ => Err(cu::INVALID_VALUE),
        }
    }
    fn exec_kernel_node_set_params(
        &self,
        ctx: BackendCtx,
        exec: u64,
        node: u64,
        k: &KernelSpec<'_>,
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        let work = Work::kernel(k);
        self.check_work(&work)?;
        let mut t = self.graph.t();
        let e = t.execs.get_mut(&exec).ok_or(cu::INVALID_VALUE)?;
        match e.steps.iter_mut().find(|(n, _)| *n == node) {
            Some((_, w @ Work::Kernel { .. })) => {
                *w = work;
                Ok(())
            }
            _ => Err(cu::INVALID_VALUE),
        }
    }
    fn launch_host_func(
        &self,
        ctx: BackendCtx,
        stream: u64,
        hook: &tf_worker_core::host_calls::HostHook,
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.exec.check_stream(stream)?;
        // A captured graph has no nodes here (see the module docs): the
        // function is not called. Otherwise it runs on a thread of its own,
        // as on a driver's callback thread: the hook waits for the client,
        // which may be waiting for this very request.
        if !self.graph.t().capturing.contains_key(&stream) {
            let hook = hook.clone();
            std::thread::spawn(move || hook.run());
        }
        Ok(())
    }
    fn host_node_set_params(
        &self,
        ctx: BackendCtx,
        exec: Option<u64>,
        node: u64,
        hook: &tf_worker_core::host_calls::HostHook,
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        let mut t = self.graph.t();
        let w = match exec {
            None => t.nodes.get_mut(&node).map(|(_, w)| w),
            Some(e) => t
                .execs
                .get_mut(&e)
                .and_then(|e| e.steps.iter_mut().find(|(n, _)| *n == node))
                .map(|(_, w)| w),
        };
        match w {
            Some(w @ Work::Host(_)) => {
                *w = Work::Host(hook.clone());
                Ok(())
            }
            _ => Err(cu::INVALID_VALUE),
        }
    }
}
