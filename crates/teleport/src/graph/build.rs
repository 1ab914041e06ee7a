//! Explicit graph building (issue 3): `cuGraphCreate`, `cuGraphClone`,
//! `cuGraphAdd{Kernel,Memset,Memcpy,Empty,EventRecord,EventWait,Host}Node`,
//! `cuGraphAddDependencies`, `cuGraphGetNodes`, `cuGraphNodeGetType` and
//! kernel node parameters (of a graph, or of an executable graph).
//!
//! Ids. Graphs and nodes get ids minted here (`graph_msgs::handle`), like
//! streams and events; the worker checks each one against the client's own
//! tables. Nodes listed by `cuGraphGetNodes` that were never added here
//! (those of a captured or cloned graph) carry ids the worker minted.
//!
//! Sync or enqueue. Creating a graph cannot fail once its arguments are
//! checked here, so it is enqueued. Adding a node, an edge or kernel
//! parameters is synchronous: the driver validates each node at the call
//! (a bad function, memset shape, event, dependency, a cycle) and cudart
//! and applications check every result; a graph is built once and
//! replayed many times, so these round trips are not on a hot path.
//!
//! Kernel parameters are packed exactly as for a launch
//! (`exec::pack`, by the layout cached with the function), so a node's
//! parameters are copied at the call, as the driver copies them.
//!
//! Host memory (see `crate::graph`): a copy node's pinned side names the
//! range's mirror in the session process; pageable host memory is refused
//! (`CUDA_ERROR_NOT_SUPPORTED`, logged), and so is a pinned side running
//! past its range. A unified address counts as host memory when it is
//! pinned memory this client tracks; any other address must be the
//! client's device memory (else `CUDA_ERROR_INVALID_VALUE` from the
//! worker). Host nodes run the application's function here when the
//! replay reaches them (ids minted by `crate::graph::host_fn_id`); their
//! parameters are kept here for `cuGraphHostNodeGetParams`.

use std::collections::HashMap;
use std::ffi::{c_uint, c_void};
use std::sync::{Arc, Mutex, MutexGuard};

use tf_protocol::exec_msgs::{layout_size, ParamSlot};
use tf_protocol::graph_msgs::{
    handle, CopyNode, CopySide, GraphRequest, KernelNode, MemsetNode, NodeList, MAX_DEPS,
};
use tf_protocol::status::cu;

use super::{call, enqueue};
use crate::copy::{sides_3d, RawCopy3D, Side};
use crate::cuda::{current_ctx, guard, out};
use crate::exec::{ctx_or_zero, mint, pack, read, wire_func};

type CUresult = u32;
type Handle = *mut c_void;

/// `CUDA_KERNEL_NODE_PARAMS` (the first ABI, `_v1`).
#[repr(C)]
struct RawKernelV1 {
    func: Handle,
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared_mem: c_uint,
    kernel_params: *mut *mut c_void,
    extra: *mut *mut c_void,
}

/// `CUDA_KERNEL_NODE_PARAMS_v2`: the first ABI plus a `CUkernel` (used when
/// `func` is null) and a context.
#[repr(C)]
struct RawKernelV2 {
    v1: RawKernelV1,
    kern: Handle,
    ctx: Handle,
}

/// `CUDA_MEMSET_NODE_PARAMS`.
#[repr(C)]
struct RawMemset {
    dst: u64,
    pitch: usize,
    value: c_uint,
    elem: c_uint,
    width: usize,
    height: usize,
}

const _: () = assert!(std::mem::size_of::<RawKernelV1>() == 56);
const _: () = assert!(std::mem::size_of::<RawKernelV2>() == 72);
const _: () = assert!(std::mem::size_of::<RawMemset>() == 40);

/// A kernel node's parameters as this client sent them, kept so that
/// `cuGraphKernelNodeGetParams` can answer with pointers that stay valid
/// until the node's parameters change or its graph is destroyed (as the
/// driver's do).
struct Kept {
    graph: u64,
    func: u64,
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared_mem: c_uint,
    /// The packed buffer, 8-aligned; `pointers[i]` is parameter `i` in it.
    _storage: Vec<u64>,
    pointers: Vec<*mut c_void>,
}

// SAFETY: `pointers` point into `_storage`, which the entry owns; they are
// only handed to the application, never dereferenced here.
unsafe impl Send for Kept {}

static KEPT: Mutex<Option<HashMap<u64, Kept>>> = Mutex::new(None);

fn kept() -> MutexGuard<'static, Option<HashMap<u64, Kept>>> {
    KEPT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets what was kept for the nodes of a destroyed graph.
pub(super) fn forget_graph(graph: u64) {
    if let Some(m) = kept().as_mut() {
        m.retain(|_, k| k.graph != graph);
    }
}

/// A kernel node's parameters read from the application's struct: the
/// function id, geometry, packed parameters and the function's layout.
struct Kernel {
    func: u64,
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared_mem: c_uint,
    params: Vec<u8>,
    layout: Option<Arc<[ParamSlot]>>,
}

impl Kernel {
    /// # Safety
    /// `p` is null or points at a `CUDA_KERNEL_NODE_PARAMS` (`_v2` when
    /// `v2`) whose parameter arrays follow the launch contract.
    unsafe fn read(p: *const c_void, v2: bool) -> Result<Kernel, CUresult> {
        if p.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: non-null; the struct of the calling export (caller's contract).
        let k = unsafe { &*p.cast::<RawKernelV1>() };
        let func = if !k.func.is_null() {
            k.func as u64
        } else if v2 {
            // SAFETY: as above, the `_v2` struct.
            let k2 = unsafe { &*p.cast::<RawKernelV2>() };
            k2.kern as u64
        } else {
            0
        };
        if func == 0 {
            return Err(cu::INVALID_VALUE);
        }
        let func = wire_func(func);
        // An unknown function fails here, at the call, as it does natively.
        let layout = read()
            .funcs
            .get(&func)
            .ok_or(cu::INVALID_HANDLE)?
            .layout
            .clone();
        // SAFETY: the parameter arrays of the application's struct.
        let params = unsafe {
            pack(
                layout.as_deref(),
                k.kernel_params as *const *const c_void,
                k.extra as *const *const c_void,
            )
        }?;
        Ok(Kernel {
            func,
            grid: k.grid,
            block: k.block,
            shared_mem: k.shared_mem,
            params,
            layout,
        })
    }

    fn wire(&self) -> KernelNode<'_> {
        KernelNode {
            func: self.func,
            grid: self.grid,
            block: self.block,
            shared_mem: self.shared_mem,
            params: &self.params,
        }
    }

    /// Keeps the parameters of node `node` of `graph` (kernelParams form only).
    fn keep(&self, graph: u64, node: u64) {
        let mut g = kept();
        let m = g.get_or_insert_with(HashMap::new);
        let Some(layout) = &self.layout else {
            m.remove(&node);
            return;
        };
        let mut storage = vec![0u64; self.params.len().div_ceil(8).max(1)];
        let base = storage.as_mut_ptr().cast::<u8>();
        // SAFETY: `storage` holds at least `params.len()` bytes; disjoint.
        unsafe { std::ptr::copy_nonoverlapping(self.params.as_ptr(), base, self.params.len()) };
        let pointers = layout
            .iter()
            // SAFETY: every slot lies within the packed buffer (`pack` sized
            // it by the layout), hence within `storage`.
            .map(|p| unsafe { base.add(p.offset as usize) }.cast::<c_void>())
            .collect();
        debug_assert!(layout_size(layout) <= self.params.len());
        m.insert(
            node,
            Kept {
                graph,
                func: self.func,
                grid: self.grid,
                block: self.block,
                shared_mem: self.shared_mem,
                _storage: storage,
                pointers,
            },
        );
    }
}

fn graph_arg(g: Handle) -> Result<u64, CUresult> {
    let g = g as u64;
    if handle::is(handle::GRAPH, g) {
        Ok(g)
    } else {
        Err(cu::INVALID_VALUE)
    }
}

fn node_arg(n: Handle) -> Result<u64, CUresult> {
    let n = n as u64;
    if handle::is_node(n) {
        Ok(n)
    } else {
        Err(cu::INVALID_VALUE)
    }
}

/// Node ids from an application array of `n` `CUgraphNode`s.
fn nodes(list: *const Handle, n: usize) -> Result<Vec<u64>, CUresult> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if list.is_null() || n > MAX_DEPS {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: non-null; `n` readable handles (the API contract).
    let list = unsafe { std::slice::from_raw_parts(list, n) };
    list.iter().map(|h| node_arg(*h)).collect()
}

/// Mints a node id, sends the request `make` builds with it and writes the
/// id to `out_node` once the worker accepted the node.
fn add(
    out_node: *mut Handle,
    make: impl FnOnce(u64) -> GraphRequest<'static>,
) -> Result<u64, CUresult> {
    if out_node.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    let node = mint(handle::NODE);
    call::<()>(make(node))?;
    out(out_node, node as Handle)?;
    Ok(node)
}

unsafe extern "C" fn cu_graph_create(g: *mut Handle, flags: c_uint) -> CUresult {
    guard(|| {
        if g.is_null() || flags != 0 {
            return Err(cu::INVALID_VALUE);
        }
        // The graph lives in the current context on the worker.
        let ctx = current_ctx()?;
        let graph = mint(handle::GRAPH);
        enqueue(GraphRequest::Create { ctx, graph, flags })?;
        out(g, graph as Handle)
    })
}

unsafe extern "C" fn cu_graph_clone(clone: *mut Handle, g: Handle) -> CUresult {
    guard(|| {
        let graph = graph_arg(g)?;
        if clone.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let id = mint(handle::GRAPH);
        call::<()>(GraphRequest::Clone { graph, clone: id })?;
        out(clone, id as Handle)
    })
}

fn add_kernel(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
    p: *const c_void,
    v2: bool,
) -> Result<(), CUresult> {
    let graph = graph_arg(g)?;
    let deps = nodes(deps, nd)?;
    // SAFETY: the arguments of the calling export, per the CUDA contract.
    let k = unsafe { Kernel::read(p, v2) }?;
    let ctx = ctx_or_zero()?;
    if n.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    let node = mint(handle::NODE);
    call::<()>(GraphRequest::AddKernelNode {
        ctx,
        graph,
        node,
        deps,
        kernel: k.wire(),
    })?;
    k.keep(graph, node);
    out(n, node as Handle)
}

unsafe extern "C" fn cu_graph_add_kernel_node_v1(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
    p: *const c_void,
) -> CUresult {
    guard(|| add_kernel(n, g, deps, nd, p, false))
}

unsafe extern "C" fn cu_graph_add_kernel_node(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
    p: *const c_void,
) -> CUresult {
    guard(|| add_kernel(n, g, deps, nd, p, true))
}

unsafe extern "C" fn cu_graph_add_memset_node(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
    p: *const RawMemset,
    ctx: Handle,
) -> CUresult {
    guard(|| {
        let graph = graph_arg(g)?;
        let deps = nodes(deps, nd)?;
        if p.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: non-null; a readable CUDA_MEMSET_NODE_PARAMS.
        let m = unsafe { &*p };
        let memset = MemsetNode {
            dst: m.dst,
            pitch: m.pitch as u64,
            value: m.value,
            elem: m.elem,
            width: m.width as u64,
            height: m.height as u64,
        };
        // A null context: the graph's (the worker's choice for 0).
        let ctx = ctx as u64;
        add(n, |node| GraphRequest::AddMemsetNode {
            ctx,
            graph,
            node,
            deps,
            memset,
        })
        .map(|_| ())
    })
}

/// A copy node's side on the wire: device memory as it is; pinned host
/// memory through its mirror in the session process (`crate::mapped`,
/// `writes`: the node writes it), the whole extent checked to lie in one
/// pinned range.
fn copy_side(s: &Side, extent: (u64, u64, u64), writes: bool) -> Result<CopySide, CUresult> {
    if s.array.is_some() {
        tracing::warn!("cuGraphAddMemcpyNode with a CUDA array side is not remoted; answering CUDA_ERROR_NOT_SUPPORTED");
        return Err(cu::NOT_SUPPORTED);
    }
    let side = CopySide {
        ptr: s.addr,
        pitch: s.pitch,
        rows: s.slice_rows,
        host: s.host,
    };
    if s.host {
        let (w, h, d) = extent;
        let bytes = tf_protocol::pitched_offset(
            s.pitch,
            s.slice_rows,
            w,
            h.saturating_sub(1),
            d.saturating_sub(1),
        )
        .ok_or(cu::INVALID_VALUE)?;
        crate::mapped::for_graph(current_ctx()?, s.addr, bytes, writes)?;
    }
    Ok(side)
}

unsafe extern "C" fn cu_graph_add_memcpy_node(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
    p: *const RawCopy3D,
    ctx: Handle,
) -> CUresult {
    guard(|| {
        let graph = graph_arg(g)?;
        let deps = nodes(deps, nd)?;
        let (src, dst, extent) = sides_3d(p)?;
        let (width, height, depth) = extent;
        let copy = CopyNode {
            src: copy_side(&src, extent, false)?,
            dst: copy_side(&dst, extent, true)?,
            width,
            height,
            depth,
        };
        let ctx = ctx as u64;
        add(n, |node| GraphRequest::AddMemcpyNode {
            ctx,
            graph,
            node,
            deps,
            copy,
        })
        .map(|_| ())
    })
}

unsafe extern "C" fn cu_graph_add_empty_node(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
) -> CUresult {
    guard(|| {
        let graph = graph_arg(g)?;
        let deps = nodes(deps, nd)?;
        add(n, |node| GraphRequest::AddEmptyNode { graph, node, deps }).map(|_| ())
    })
}

fn add_event(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
    e: Handle,
    record: bool,
) -> Result<(), CUresult> {
    let graph = graph_arg(g)?;
    let deps = nodes(deps, nd)?;
    let event = e as u64;
    add(n, |node| {
        if record {
            GraphRequest::AddEventRecordNode {
                graph,
                node,
                deps,
                event,
            }
        } else {
            GraphRequest::AddEventWaitNode {
                graph,
                node,
                deps,
                event,
            }
        }
    })
    .map(|_| ())
}

unsafe extern "C" fn cu_graph_add_event_record_node(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
    e: Handle,
) -> CUresult {
    guard(|| add_event(n, g, deps, nd, e, true))
}

unsafe extern "C" fn cu_graph_add_event_wait_node(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
    e: Handle,
) -> CUresult {
    guard(|| add_event(n, g, deps, nd, e, false))
}

/// `CUDA_HOST_NODE_PARAMS`.
#[repr(C)]
struct RawHostParams {
    f: Option<unsafe extern "C" fn(*mut c_void)>,
    data: *mut c_void,
}

fn host_params(p: *const RawHostParams) -> Result<crate::graph::HostFn, CUresult> {
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: non-null; a readable CUDA_HOST_NODE_PARAMS (the API contract).
    let p = unsafe { &*p };
    Ok(crate::graph::HostFn {
        f: p.f.ok_or(cu::INVALID_VALUE)?,
        data: p.data,
    })
}

/// Host nodes' functions, by node id (`cuGraphHostNodeGetParams`).
static HOST_NODES: Mutex<Option<HashMap<u64, crate::graph::HostFn>>> = Mutex::new(None);

fn host_nodes() -> MutexGuard<'static, Option<HashMap<u64, crate::graph::HostFn>>> {
    HOST_NODES.lock().unwrap_or_else(|e| e.into_inner())
}

fn note_host_node(node: u64, f: crate::graph::HostFn) {
    host_nodes()
        .get_or_insert_with(Default::default)
        .insert(node, f);
}

/// See the module docs: at replay the worker's node has this process run
/// the function (`crate::graph`).
unsafe extern "C" fn cu_graph_add_host_node(
    n: *mut Handle,
    g: Handle,
    deps: *const Handle,
    nd: usize,
    p: *const RawHostParams,
) -> CUresult {
    guard(|| {
        let graph = graph_arg(g)?;
        let deps = nodes(deps, nd)?;
        let f = host_params(p)?;
        let call = crate::graph::host_fn_id(f);
        let node = add(n, |node| GraphRequest::AddHostNode {
            graph,
            node,
            deps,
            call,
        })?;
        note_host_node(node, f);
        Ok(())
    })
}

unsafe extern "C" fn cu_graph_host_node_get_params(
    node: Handle,
    p: *mut RawHostParams,
) -> CUresult {
    guard(|| {
        let node = node_arg(node)?;
        if p.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let f = host_nodes()
            .as_ref()
            .and_then(|m| m.get(&node).copied())
            .ok_or(cu::INVALID_VALUE)?;
        // SAFETY: non-null; a writable CUDA_HOST_NODE_PARAMS (the API contract).
        unsafe {
            p.write(RawHostParams {
                f: Some(f.f),
                data: f.data,
            })
        };
        Ok(())
    })
}

fn set_host_params(exec: u64, node: Handle, p: *const RawHostParams) -> Result<(), CUresult> {
    let node = node_arg(node)?;
    let f = host_params(p)?;
    let id = crate::graph::host_fn_id(f);
    call::<()>(GraphRequest::HostNodeSetParams {
        exec,
        node,
        call: id,
    })?;
    if exec == 0 {
        note_host_node(node, f);
    }
    Ok(())
}

unsafe extern "C" fn cu_graph_host_node_set_params(
    node: Handle,
    p: *const RawHostParams,
) -> CUresult {
    guard(|| set_host_params(0, node, p))
}

unsafe extern "C" fn cu_graph_exec_host_node_set_params(
    e: Handle,
    node: Handle,
    p: *const RawHostParams,
) -> CUresult {
    guard(|| {
        let exec = e as u64;
        if !handle::is(handle::GRAPH_EXEC, exec) {
            return Err(cu::INVALID_VALUE);
        }
        set_host_params(exec, node, p)
    })
}

/// `CUgraphEdgeData`: ports and type, all zero for an ordinary edge.
const EDGE_DATA: usize = 8;

fn add_dependencies(
    g: Handle,
    from: *const Handle,
    to: *const Handle,
    edges: *const u8,
    n: usize,
) -> Result<(), CUresult> {
    let graph = graph_arg(g)?;
    if n == 0 {
        return Ok(());
    }
    let (from, to) = (nodes(from, n)?, nodes(to, n)?);
    if !edges.is_null() {
        // SAFETY: non-null; `n` CUgraphEdgeData records (the API contract).
        let data = unsafe { std::slice::from_raw_parts(edges, n * EDGE_DATA) };
        if data.iter().any(|b| *b != 0) {
            // Programmatic edges and ports are not remoted.
            return Err(cu::NOT_SUPPORTED);
        }
    }
    call::<()>(GraphRequest::AddDependencies { graph, from, to })
}

unsafe extern "C" fn cu_graph_add_dependencies_v1(
    g: Handle,
    from: *const Handle,
    to: *const Handle,
    n: usize,
) -> CUresult {
    guard(|| add_dependencies(g, from, to, std::ptr::null(), n))
}

unsafe extern "C" fn cu_graph_add_dependencies(
    g: Handle,
    from: *const Handle,
    to: *const Handle,
    edges: *const u8,
    n: usize,
) -> CUresult {
    guard(|| add_dependencies(g, from, to, edges, n))
}

/// The count only (PyTorch checks that a capture recorded work), or the
/// nodes: `*n` entries are filled, the rest of them null, and `*n` becomes
/// the number filled, as the driver does.
pub(super) unsafe extern "C" fn cu_graph_get_nodes(
    g: Handle,
    list: *mut Handle,
    n: *mut usize,
) -> CUresult {
    guard(|| {
        let graph = graph_arg(g)?;
        if n.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let want = !list.is_null();
        let got = call::<NodeList>(GraphRequest::Nodes { graph, list: want })?;
        if !want {
            return out(n, got.count as usize);
        }
        // SAFETY: non-null; a readable and writable size_t.
        let room = unsafe { *n };
        // SAFETY: the application provides `room` writable slots.
        let slots = unsafe { std::slice::from_raw_parts_mut(list, room) };
        for (i, slot) in slots.iter_mut().enumerate() {
            *slot = got
                .nodes
                .get(i)
                .map_or(std::ptr::null_mut(), |(id, _)| *id as Handle);
        }
        out(n, room.min(got.nodes.len()))
    })
}

unsafe extern "C" fn cu_graph_node_get_type(node: Handle, kind: *mut c_uint) -> CUresult {
    guard(|| {
        let node = node_arg(node)?;
        if kind.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let k = call::<u64>(GraphRequest::NodeType { node })?;
        out(kind, k as c_uint)
    })
}

fn get_kernel_params(node: Handle, p: *mut c_void, v2: bool) -> Result<(), CUresult> {
    let node = node_arg(node)?;
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    let g = kept();
    let Some(k) = g.as_ref().and_then(|m| m.get(&node)) else {
        // A node of a captured graph, or one whose parameters came as an
        // `extra` buffer: its parameters are not known here.
        return Err(cu::NOT_SUPPORTED);
    };
    let v1 = RawKernelV1 {
        func: k.func as Handle,
        grid: k.grid,
        block: k.block,
        shared_mem: k.shared_mem,
        kernel_params: k.pointers.as_ptr() as *mut *mut c_void,
        extra: std::ptr::null_mut(),
    };
    if v2 {
        let v = RawKernelV2 {
            v1,
            kern: std::ptr::null_mut(),
            ctx: std::ptr::null_mut(),
        };
        out(p.cast::<RawKernelV2>(), v)
    } else {
        out(p.cast::<RawKernelV1>(), v1)
    }
}

unsafe extern "C" fn cu_graph_kernel_node_get_params_v1(node: Handle, p: *mut c_void) -> CUresult {
    guard(|| get_kernel_params(node, p, false))
}

unsafe extern "C" fn cu_graph_kernel_node_get_params(node: Handle, p: *mut c_void) -> CUresult {
    guard(|| get_kernel_params(node, p, true))
}

/// `cuGraphKernelNodeSetParams`, or with `exec` `cuGraphExecKernelNodeSetParams`.
fn set_kernel_params(
    exec: Option<Handle>,
    node: Handle,
    p: *const c_void,
    v2: bool,
) -> Result<(), CUresult> {
    let node = node_arg(node)?;
    let exec = exec.map(super::exec_arg).transpose()?;
    // SAFETY: the arguments of the calling export, per the CUDA contract.
    let k = unsafe { Kernel::read(p, v2) }?;
    let ctx = ctx_or_zero()?;
    match exec {
        None => {
            call::<()>(GraphRequest::KernelNodeSetParams {
                ctx,
                node,
                kernel: k.wire(),
            })?;
            let graph = kept().as_ref().and_then(|m| m.get(&node)).map(|k| k.graph);
            if let Some(graph) = graph {
                k.keep(graph, node);
            }
            Ok(())
        }
        Some(exec) => call::<()>(GraphRequest::ExecKernelNodeSetParams {
            ctx,
            exec,
            node,
            kernel: k.wire(),
        }),
    }
}

unsafe extern "C" fn cu_graph_kernel_node_set_params_v1(
    node: Handle,
    p: *const c_void,
) -> CUresult {
    guard(|| set_kernel_params(None, node, p, false))
}

unsafe extern "C" fn cu_graph_kernel_node_set_params(node: Handle, p: *const c_void) -> CUresult {
    guard(|| set_kernel_params(None, node, p, true))
}

unsafe extern "C" fn cu_graph_exec_kernel_node_set_params_v1(
    e: Handle,
    node: Handle,
    p: *const c_void,
) -> CUresult {
    guard(|| set_kernel_params(Some(e), node, p, false))
}

unsafe extern "C" fn cu_graph_exec_kernel_node_set_params(
    e: Handle,
    node: Handle,
    p: *const c_void,
) -> CUresult {
    guard(|| set_kernel_params(Some(e), node, p, true))
}

/// Points the export slots of the functions implemented here at them.
pub(super) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    let entries: &[(usize, Entry)] = &[
        (c::cuGraphCreate, cu_graph_create as Entry),
        (c::cuGraphClone, cu_graph_clone as Entry),
        (
            c::cuGraphAddKernelNode,
            cu_graph_add_kernel_node_v1 as Entry,
        ),
        (
            c::cuGraphAddKernelNode_v2,
            cu_graph_add_kernel_node as Entry,
        ),
        (c::cuGraphAddMemsetNode, cu_graph_add_memset_node as Entry),
        (c::cuGraphAddMemcpyNode, cu_graph_add_memcpy_node as Entry),
        (c::cuGraphAddEmptyNode, cu_graph_add_empty_node as Entry),
        (
            c::cuGraphAddEventRecordNode,
            cu_graph_add_event_record_node as Entry,
        ),
        (
            c::cuGraphAddEventWaitNode,
            cu_graph_add_event_wait_node as Entry,
        ),
        (c::cuGraphAddHostNode, cu_graph_add_host_node as Entry),
        (
            c::cuGraphHostNodeGetParams,
            cu_graph_host_node_get_params as Entry,
        ),
        (
            c::cuGraphHostNodeSetParams,
            cu_graph_host_node_set_params as Entry,
        ),
        (
            c::cuGraphExecHostNodeSetParams,
            cu_graph_exec_host_node_set_params as Entry,
        ),
        (
            c::cuGraphAddDependencies,
            cu_graph_add_dependencies_v1 as Entry,
        ),
        (
            c::cuGraphAddDependencies_v2,
            cu_graph_add_dependencies as Entry,
        ),
        (c::cuGraphGetNodes, cu_graph_get_nodes as Entry),
        (c::cuGraphNodeGetType, cu_graph_node_get_type as Entry),
        (
            c::cuGraphKernelNodeGetParams,
            cu_graph_kernel_node_get_params_v1 as Entry,
        ),
        (
            c::cuGraphKernelNodeGetParams_v2,
            cu_graph_kernel_node_get_params as Entry,
        ),
        (
            c::cuGraphKernelNodeSetParams,
            cu_graph_kernel_node_set_params_v1 as Entry,
        ),
        (
            c::cuGraphKernelNodeSetParams_v2,
            cu_graph_kernel_node_set_params as Entry,
        ),
        (
            c::cuGraphExecKernelNodeSetParams,
            cu_graph_exec_kernel_node_set_params_v1 as Entry,
        ),
        (
            c::cuGraphExecKernelNodeSetParams_v2,
            cu_graph_exec_kernel_node_set_params as Entry,
        ),
    ];
    crate::set_each(set, entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_layouts_match_cuda_h() {
        assert_eq!(std::mem::offset_of!(RawKernelV1, kernel_params), 40);
        assert_eq!(std::mem::offset_of!(RawKernelV2, kern), 56);
        assert_eq!(std::mem::offset_of!(RawMemset, value), 16);
        assert_eq!(std::mem::offset_of!(RawMemset, width), 24);
    }
}
