//! Explicit graph building: creating and cloning graphs, adding nodes and
//! edges, listing nodes, and per-node kernel parameters.
//!
//! Every id a request names is looked up in this session's tables: the
//! graph, each dependency (a node of that same graph), the function of a
//! kernel node, the event of an event node, the executable graph of a
//! per-node update; memset and copy nodes may only touch the session's own
//! device memory (checked now, since a graph replays later without another
//! look). A wrong id answers `CUDA_ERROR_INVALID_VALUE` as the driver does
//! for graphs and nodes, `CUDA_ERROR_INVALID_HANDLE` for functions and
//! events as launches and event calls do.

use std::sync::Arc;

use tf_protocol::exec_msgs::{layout_size, ParamSlot};
use tf_protocol::graph_msgs::{handle, CopyNode, CopySide, KernelNode, MemsetNode, NodeList};
use tf_protocol::status::cu;

use super::{find_exec, find_graph, KernelSpec, Node, NodeSpec};
use crate::backend::{BackendCtx, Status};
use crate::exec::Func;
use crate::session::Session;

/// A graph the application may add to: known, and not being captured (the
/// capture owns it until it ends).
fn editable(s: &Session, graph: u64) -> Result<(u64, BackendCtx), Status> {
    let (real, c) = find_graph(s, graph)?;
    if s.graph.capturing.contains_key(&real) {
        return Err(cu::INVALID_VALUE);
    }
    Ok((real, c))
}

pub(super) fn node(s: &Session, id: u64) -> Result<Node, Status> {
    s.graph.nodes.get(&id).copied().ok_or(cu::INVALID_VALUE)
}

/// The real handles of nodes that must belong to `graph`.
fn nodes_of(s: &Session, graph: u64, ids: &[u64]) -> Result<Vec<u64>, Status> {
    ids.iter()
        .map(|id| match s.graph.nodes.get(id) {
            Some(n) if n.graph == graph => Ok(n.real),
            _ => Err(cu::INVALID_VALUE),
        })
        .collect()
}

pub(super) fn create(s: &mut Session, ctx: u64, graph: u64, flags: u32) -> Result<(), Status> {
    if flags != 0 || !handle::is(handle::GRAPH, graph) || s.graph.graphs.contains_key(&graph) {
        return Err(cu::INVALID_VALUE);
    }
    let c = s.ctx(ctx)?;
    let real = s.worker.backend().graph_create(c)?;
    s.graph.graphs.insert(graph, (real, c));
    Ok(())
}

pub(super) fn clone(s: &mut Session, graph: u64, clone: u64) -> Result<(), Status> {
    let (real, c) = editable(s, graph)?;
    if !handle::is(handle::GRAPH, clone) || s.graph.graphs.contains_key(&clone) {
        return Err(cu::INVALID_VALUE);
    }
    let copy = s.worker.backend().graph_clone(c, real)?;
    s.graph.graphs.insert(clone, (copy, c));
    Ok(())
}

/// Adds a node whose arguments were already translated; `ctx` is the
/// context to run it in (the graph's when `None`).
pub(super) fn add(
    s: &mut Session,
    ctx: Option<BackendCtx>,
    graph: u64,
    node: u64,
    deps: &[u64],
    spec: NodeSpec<'_>,
) -> Result<(), Status> {
    let (g, gctx) = editable(s, graph)?;
    if !handle::is(handle::NODE, node) || s.graph.nodes.contains_key(&node) {
        return Err(cu::INVALID_VALUE);
    }
    let deps = nodes_of(s, graph, deps)?;
    let real = s
        .worker
        .backend()
        .add_node(ctx.unwrap_or(gctx), g, &deps, &spec)?;
    s.graph.nodes.insert(
        node,
        Node {
            real,
            graph,
            kind: spec.kind(),
        },
    );
    s.graph.node_ids.insert(real, node);
    Ok(())
}

/// A kernel node's function in backend terms: its context (a module's
/// function runs in its module's), handle and layout.
type Resolved = (Option<BackendCtx>, Func, Option<Arc<[ParamSlot]>>);

fn resolve_kernel(s: &Session, k: &KernelNode<'_>) -> Result<Resolved, Status> {
    let f = s.exec.funcs.get(&k.func).ok_or(cu::INVALID_HANDLE)?;
    if let Some(layout) = &f.layout {
        if k.params.len() < layout_size(layout) {
            return Err(cu::INVALID_VALUE);
        }
    }
    Ok((f.ctx, f.func, f.layout.clone()))
}

fn spec<'a>(k: &KernelNode<'a>, func: Func, layout: Option<&'a [ParamSlot]>) -> KernelSpec<'a> {
    KernelSpec {
        func,
        grid: k.grid,
        block: k.block,
        shared_mem: k.shared_mem,
        params: k.params,
        layout,
    }
}

pub(super) fn add_kernel(
    s: &mut Session,
    graph: u64,
    node: u64,
    deps: &[u64],
    k: &KernelNode<'_>,
) -> Result<(), Status> {
    let (fctx, func, layout) = resolve_kernel(s, k)?;
    let spec = spec(k, func, layout.as_deref());
    add(s, fctx, graph, node, deps, NodeSpec::Kernel(spec))
}

/// The context a memset or copy node names (0: the graph's).
fn node_ctx(s: &Session, ctx: u64) -> Result<Option<BackendCtx>, Status> {
    if ctx == 0 {
        Ok(None)
    } else {
        s.ctx(ctx).map(Some)
    }
}

pub(super) fn add_memset(
    s: &mut Session,
    ctx: u64,
    graph: u64,
    node: u64,
    deps: &[u64],
    m: MemsetNode,
) -> Result<(), Status> {
    let elem = u64::from(m.elem);
    if !matches!(m.elem, 1 | 2 | 4) || !m.dst.is_multiple_of(elem) || m.width == 0 || m.height == 0
    {
        return Err(cu::INVALID_VALUE);
    }
    let row = m.width.checked_mul(elem).ok_or(cu::INVALID_VALUE)?;
    if m.height > 1 && m.pitch < row {
        return Err(cu::INVALID_VALUE);
    }
    let extent = m
        .pitch
        .checked_mul(m.height - 1)
        .and_then(|v| v.checked_add(row))
        .ok_or(cu::INVALID_VALUE)?;
    s.check_range(m.dst, extent)?;
    let c = node_ctx(s, ctx)?;
    add(s, c, graph, node, deps, NodeSpec::Memset(m))
}

/// Bytes from a copy side's first byte to the end of its last row.
fn extent(side: &CopySide, c: &CopyNode) -> Result<u64, Status> {
    if (c.height > 1 || c.depth > 1) && side.pitch < c.width {
        return Err(cu::INVALID_VALUE);
    }
    if c.depth > 1 && side.rows < c.height {
        return Err(cu::INVALID_VALUE);
    }
    tf_protocol::pitched_offset(side.pitch, side.rows, c.width, c.height - 1, c.depth - 1)
        .ok_or(cu::INVALID_VALUE)
}

pub(super) fn add_memcpy(
    s: &mut Session,
    ctx: u64,
    graph: u64,
    node: u64,
    deps: &[u64],
    c: CopyNode,
) -> Result<(), Status> {
    if c.width == 0 || c.height == 0 || c.depth == 0 {
        return Err(cu::INVALID_VALUE);
    }
    // A host side must lie in one of this session's host mirrors (the
    // client's pinned memory at its address), a device side in its memory.
    for side in [&c.src, &c.dst] {
        let n = extent(side, &c)?;
        if side.host {
            crate::mem::mirror_span(s, side.ptr, n)?;
        } else {
            s.check_range(side.ptr, n)?;
        }
    }
    let ctx = node_ctx(s, ctx)?;
    add(s, ctx, graph, node, deps, NodeSpec::Memcpy(c))
}

pub(super) fn add_event(
    s: &mut Session,
    graph: u64,
    node: u64,
    deps: &[u64],
    event: u64,
    record: bool,
) -> Result<(), Status> {
    let e = s.exec.events.get(&event).ok_or(cu::INVALID_HANDLE)?;
    let spec = if record {
        NodeSpec::EventRecord(e.real)
    } else {
        NodeSpec::EventWait(e.real)
    };
    add(s, None, graph, node, deps, spec)
}

pub(super) fn add_dependencies(
    s: &mut Session,
    graph: u64,
    from: &[u64],
    to: &[u64],
) -> Result<(), Status> {
    let (g, c) = editable(s, graph)?;
    if from.len() != to.len() {
        return Err(cu::INVALID_VALUE);
    }
    let (from, to) = (nodes_of(s, graph, from)?, nodes_of(s, graph, to)?);
    s.worker.backend().add_dependencies(c, g, &from, &to)
}

/// The count and, with `list`, every node with its id: nodes this session
/// never named (those of a captured or cloned graph) get `LISTED_NODE` ids.
pub(super) fn list(s: &mut Session, graph: u64, list: bool) -> Result<NodeList, Status> {
    let (g, c) = find_graph(s, graph)?;
    let b = s.worker.backend();
    if !list {
        return Ok(NodeList {
            count: b.node_count(c, g)?,
            nodes: Vec::new(),
        });
    }
    let found = b.graph_nodes(c, g)?;
    let st = &mut s.graph;
    let nodes: Vec<(u64, u32)> = found
        .into_iter()
        .map(|(real, kind)| {
            let id = *st.node_ids.entry(real).or_insert_with(|| {
                st.next_listed += 1;
                handle::make(handle::LISTED_NODE, st.next_listed)
            });
            st.nodes.entry(id).or_insert(Node { real, graph, kind });
            (id, kind)
        })
        .collect();
    Ok(NodeList {
        count: nodes.len() as u64,
        nodes,
    })
}

/// `cuGraphKernelNodeSetParams`, or with `exec` the executable graph's copy
/// of the node (`cuGraphExecKernelNodeSetParams`).
pub(super) fn set_kernel(
    s: &mut Session,
    exec: Option<u64>,
    id: u64,
    k: &KernelNode<'_>,
) -> Result<(), Status> {
    let n = node(s, id)?;
    if n.kind != super::node_type::KERNEL {
        return Err(cu::INVALID_VALUE);
    }
    let (_, gctx) = find_graph(s, n.graph)?;
    let (fctx, func, layout) = resolve_kernel(s, k)?;
    let spec = spec(k, func, layout.as_deref());
    let ctx = fctx.unwrap_or(gctx);
    match exec {
        None => s
            .worker
            .backend()
            .kernel_node_set_params(ctx, n.real, &spec),
        Some(e) => {
            let (real, _) = find_exec(s, e)?;
            if s.graph.exec_graph.get(&e) != Some(&n.graph) {
                // Only nodes of the graph it was instantiated from.
                return Err(cu::INVALID_VALUE);
            }
            s.worker
                .backend()
                .exec_kernel_node_set_params(ctx, real, n.real, &spec)
        }
    }
}
