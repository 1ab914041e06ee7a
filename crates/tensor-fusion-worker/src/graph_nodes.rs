//! Explicit graph building on the vendor driver: graphs, nodes, edges and
//! per-node kernel parameters. The worker core has translated every handle
//! (graphs, nodes, functions, events) to the ones the driver returned and
//! checked device ranges against the session's memory; the functions here
//! run with the right context current (`RealBackend::in_ctx`).

use std::ffi::{c_uint, c_void};

use tf_protocol::graph_msgs::{CopyNode, CopySide, MemsetNode};
use tf_protocol::status::cu;
use tf_worker_core::graph::{KernelSpec, NodeSpec};
use tf_worker_core::host_calls::HostHook;
use tf_worker_core::BResult;

use crate::exec::{check, need, CuResult, Params, Ptr};
use crate::loader::{resolve, Loaded};

type Deps = *const Ptr;
type FnCreate = unsafe extern "C" fn(*mut Ptr, c_uint) -> CuResult;
type FnClone = unsafe extern "C" fn(*mut Ptr, Ptr) -> CuResult;
type FnAddKernel =
    unsafe extern "C" fn(*mut Ptr, Ptr, Deps, usize, *const KernelParams) -> CuResult;
type FnAddMemset =
    unsafe extern "C" fn(*mut Ptr, Ptr, Deps, usize, *const MemsetParams, Ptr) -> CuResult;
type FnAddMemcpy = unsafe extern "C" fn(*mut Ptr, Ptr, Deps, usize, *const Copy3D, Ptr) -> CuResult;
type FnAddEmpty = unsafe extern "C" fn(*mut Ptr, Ptr, Deps, usize) -> CuResult;
type FnAddEvent = unsafe extern "C" fn(*mut Ptr, Ptr, Deps, usize, Ptr) -> CuResult;
type FnAddDeps = unsafe extern "C" fn(Ptr, Deps, Deps, usize) -> CuResult;
type FnAddDepsV2 = unsafe extern "C" fn(Ptr, Deps, Deps, *const c_void, usize) -> CuResult;
type FnNodes = unsafe extern "C" fn(Ptr, *mut Ptr, *mut usize) -> CuResult;
type FnNodeType = unsafe extern "C" fn(Ptr, *mut c_uint) -> CuResult;
type FnKernelSet = unsafe extern "C" fn(Ptr, *const KernelParams) -> CuResult;
type FnExecKernelSet = unsafe extern "C" fn(Ptr, Ptr, *const KernelParams) -> CuResult;
type FnAddHost = unsafe extern "C" fn(*mut Ptr, Ptr, Deps, usize, *const HostParams) -> CuResult;
type FnHostSet = unsafe extern "C" fn(Ptr, *const HostParams) -> CuResult;
type FnExecHostSet = unsafe extern "C" fn(Ptr, Ptr, *const HostParams) -> CuResult;
type FnLaunchHost = unsafe extern "C" fn(Ptr, HostFn, *mut c_void) -> CuResult;
type HostFn = unsafe extern "C" fn(*mut c_void);

/// `CUDA_HOST_NODE_PARAMS`.
#[repr(C)]
struct HostParams {
    func: HostFn,
    data: *mut c_void,
}

/// The host function the driver calls for a client's host node: runs its
/// hook, which has the client run the application's function and waits.
unsafe extern "C" fn run_hook(data: *mut c_void) {
    // SAFETY: `data` is a `HostHook` that `host_params` leaked: never freed.
    let hook = unsafe { &*(data as *const HostHook) };
    // A panic must not unwind into the driver.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook.run()));
}

/// The driver keeps the user data of host nodes and host functions for as
/// long as a graph (or any copy of it) may run: the hook is leaked. The
/// core bounds how many one session makes (`MAX_HOST_CALLS`), and a session
/// process ends with its client.
fn host_params(hook: &HostHook) -> HostParams {
    HostParams {
        func: run_hook,
        data: Box::into_raw(Box::new(hook.clone())).cast(),
    }
}

/// `CUDA_KERNEL_NODE_PARAMS_v2`.
#[repr(C)]
struct KernelParams {
    func: Ptr,
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared_mem: c_uint,
    kernel_params: *mut Ptr,
    extra: *mut Ptr,
    kern: Ptr,
    ctx: Ptr,
}

/// `CUDA_MEMSET_NODE_PARAMS`.
#[repr(C)]
struct MemsetParams {
    dst: u64,
    pitch: usize,
    value: c_uint,
    elem: c_uint,
    width: usize,
    height: usize,
}

/// `CUDA_MEMCPY3D`; pointer fields as integers (device addresses, or host
/// mirrors of the session process).
#[repr(C)]
#[derive(Default)]
struct Copy3D {
    src_x: usize,
    src_y: usize,
    src_z: usize,
    src_lod: usize,
    src_type: c_uint,
    src_host: usize,
    src_device: u64,
    src_array: usize,
    reserved0: usize,
    src_pitch: usize,
    src_height: usize,
    dst_x: usize,
    dst_y: usize,
    dst_z: usize,
    dst_lod: usize,
    dst_type: c_uint,
    dst_host: usize,
    dst_device: u64,
    dst_array: usize,
    reserved1: usize,
    dst_pitch: usize,
    dst_height: usize,
    width: usize,
    height: usize,
    depth: usize,
}

const _: () = assert!(std::mem::size_of::<KernelParams>() == 72);
const _: () = assert!(std::mem::size_of::<MemsetParams>() == 40);
const _: () = assert!(std::mem::size_of::<Copy3D>() == 200);

/// `CU_MEMORYTYPE_HOST`, `CU_MEMORYTYPE_DEVICE`.
const HOST: c_uint = 1;
const DEVICE: c_uint = 2;

pub(crate) struct NodeDriver {
    create: Option<FnCreate>,
    clone: Option<FnClone>,
    add_kernel: Option<FnAddKernel>,
    add_memset: Option<FnAddMemset>,
    add_memcpy: Option<FnAddMemcpy>,
    add_empty: Option<FnAddEmpty>,
    add_record: Option<FnAddEvent>,
    add_wait: Option<FnAddEvent>,
    add_deps: Option<FnAddDeps>,
    add_deps_v2: Option<FnAddDepsV2>,
    nodes: Option<FnNodes>,
    node_type: Option<FnNodeType>,
    kernel_set: Option<FnKernelSet>,
    exec_kernel_set: Option<FnExecKernelSet>,
    add_host: Option<FnAddHost>,
    host_set: Option<FnHostSet>,
    exec_host_set: Option<FnExecHostSet>,
    launch_host: Option<FnLaunchHost>,
}

impl NodeDriver {
    pub(crate) fn new(loaded: &Loaded) -> Self {
        let lib = loaded.lib;
        // SAFETY: for every `resolve` below, the type alias is the C
        // signature of the versioned ABI symbol it is resolved for.
        unsafe {
            NodeDriver {
                create: resolve(lib, &["cuGraphCreate"]),
                clone: resolve(lib, &["cuGraphClone"]),
                add_kernel: resolve(lib, &["cuGraphAddKernelNode_v2"]),
                add_memset: resolve(lib, &["cuGraphAddMemsetNode"]),
                add_memcpy: resolve(lib, &["cuGraphAddMemcpyNode"]),
                add_empty: resolve(lib, &["cuGraphAddEmptyNode"]),
                add_record: resolve(lib, &["cuGraphAddEventRecordNode"]),
                add_wait: resolve(lib, &["cuGraphAddEventWaitNode"]),
                add_deps: resolve(lib, &["cuGraphAddDependencies"]),
                add_deps_v2: resolve(lib, &["cuGraphAddDependencies_v2"]),
                nodes: resolve(lib, &["cuGraphGetNodes"]),
                node_type: resolve(lib, &["cuGraphNodeGetType"]),
                kernel_set: resolve(lib, &["cuGraphKernelNodeSetParams_v2"]),
                exec_kernel_set: resolve(lib, &["cuGraphExecKernelNodeSetParams_v2"]),
                add_host: resolve(lib, &["cuGraphAddHostNode"]),
                host_set: resolve(lib, &["cuGraphHostNodeSetParams"]),
                exec_host_set: resolve(lib, &["cuGraphExecHostNodeSetParams"]),
                launch_host: resolve(lib, &["cuLaunchHostFunc"]),
            }
        }
    }

    pub(crate) fn create(&self) -> BResult<u64> {
        let f = need(self.create)?;
        let mut g: Ptr = std::ptr::null_mut();
        // SAFETY: `g` is a writable CUgraph slot; flags 0.
        check(unsafe { f(&mut g, 0) })?;
        Ok(g as u64)
    }

    pub(crate) fn clone(&self, graph: u64) -> BResult<u64> {
        let f = need(self.clone)?;
        let mut g: Ptr = std::ptr::null_mut();
        // SAFETY: `g` is a writable CUgraph slot; the graph is this session's.
        check(unsafe { f(&mut g, graph as Ptr) })?;
        Ok(g as u64)
    }

    /// Adds a node; `ctx` is the context current for the call (memset and
    /// copy nodes run in it).
    pub(crate) fn add(
        &self,
        ctx: u64,
        graph: u64,
        deps: &[u64],
        node: &NodeSpec<'_>,
    ) -> BResult<u64> {
        let deps: Vec<Ptr> = deps.iter().map(|d| *d as Ptr).collect();
        let (g, d, n) = (graph as Ptr, deps.as_ptr(), deps.len());
        let mut out: Ptr = std::ptr::null_mut();
        let o = &mut out as *mut Ptr;
        // For every call below: `o` is a writable CUgraphNode slot, `d`
        // holds `n` nodes of `g`, and the parameter structs live until the
        // call returns (the driver copies them, kernel parameters too).
        let r = match node {
            NodeSpec::Kernel(k) => {
                let f = need(self.add_kernel)?;
                return with_kernel(k, |p| {
                    // SAFETY: as above; `p` is a live CUDA_KERNEL_NODE_PARAMS_v2.
                    check(unsafe { f(o, g, d, n, p) })?;
                    Ok(out as u64)
                });
            }
            NodeSpec::Memset(m) => {
                let (f, p) = (need(self.add_memset)?, memset_params(m));
                // SAFETY: as above; a range of this session, checked by the core.
                unsafe { f(o, g, d, n, &p, ctx as Ptr) }
            }
            NodeSpec::Memcpy(c) => {
                let (f, p) = (need(self.add_memcpy)?, copy_params(c));
                // SAFETY: as above; device ranges of this session, checked by the core.
                unsafe { f(o, g, d, n, &p, ctx as Ptr) }
            }
            NodeSpec::Empty => {
                let f = need(self.add_empty)?;
                // SAFETY: as above.
                unsafe { f(o, g, d, n) }
            }
            NodeSpec::EventRecord(e) | NodeSpec::EventWait(e) => {
                let f = match node {
                    NodeSpec::EventRecord(_) => need(self.add_record)?,
                    _ => need(self.add_wait)?,
                };
                // SAFETY: as above; an event of this session.
                unsafe { f(o, g, d, n, *e as Ptr) }
            }
            NodeSpec::Host(hook) => {
                let (f, p) = (need(self.add_host)?, host_params(hook));
                // SAFETY: as above; `p` names `run_hook` and a leaked hook.
                unsafe { f(o, g, d, n, &p) }
            }
        };
        check(r)?;
        Ok(out as u64)
    }

    pub(crate) fn add_dependencies(&self, graph: u64, from: &[u64], to: &[u64]) -> BResult<()> {
        if from.len() != to.len() {
            return Err(cu::INVALID_VALUE);
        }
        let from: Vec<Ptr> = from.iter().map(|d| *d as Ptr).collect();
        let to: Vec<Ptr> = to.iter().map(|d| *d as Ptr).collect();
        let (g, a, b, n) = (graph as Ptr, from.as_ptr(), to.as_ptr(), from.len());
        // SAFETY: `a` and `b` hold `n` nodes of `g` each; no edge data
        // (all edges are the default kind).
        check(unsafe {
            match (self.add_deps_v2, self.add_deps) {
                (Some(f), _) => f(g, a, b, std::ptr::null(), n),
                (None, Some(f)) => f(g, a, b, n),
                (None, None) => cu::NOT_SUPPORTED,
            }
        })
    }

    pub(crate) fn list(&self, graph: u64) -> BResult<Vec<(u64, u32)>> {
        let (f, t) = (need(self.nodes)?, need(self.node_type)?);
        let mut n = 0usize;
        // SAFETY: a null node array asks for the count only.
        check(unsafe { f(graph as Ptr, std::ptr::null_mut(), &mut n) })?;
        let mut nodes: Vec<Ptr> = vec![std::ptr::null_mut(); n];
        // SAFETY: `nodes` has room for `n` entries, the count given.
        check(unsafe { f(graph as Ptr, nodes.as_mut_ptr(), &mut n) })?;
        nodes.truncate(n);
        nodes
            .into_iter()
            .map(|node| {
                let mut kind: c_uint = 0;
                // SAFETY: a node the driver just listed; `kind` is writable.
                check(unsafe { t(node, &mut kind) })?;
                Ok((node as u64, kind))
            })
            .collect()
    }

    pub(crate) fn kernel_set(&self, node: u64, k: &KernelSpec<'_>) -> BResult<()> {
        let f = need(self.kernel_set)?;
        with_kernel(k, |p| {
            // SAFETY: a kernel node of this session; parameters as in `add`.
            check(unsafe { f(node as Ptr, p) })
        })
    }

    pub(crate) fn exec_kernel_set(&self, exec: u64, node: u64, k: &KernelSpec<'_>) -> BResult<()> {
        let f = need(self.exec_kernel_set)?;
        with_kernel(k, |p| {
            // SAFETY: an executable graph and a kernel node of this
            // session; parameters as in `add`.
            check(unsafe { f(exec as Ptr, node as Ptr, p) })
        })
    }
}

impl NodeDriver {
    /// A host node's function, of a graph or (`exec`) of an executable
    /// graph's copy of the node.
    pub(crate) fn host_set(&self, exec: Option<u64>, node: u64, hook: &HostHook) -> BResult<()> {
        let p = host_params(hook);
        // SAFETY: a host node (and executable graph) of this session; `p`
        // names `run_hook` and a leaked hook.
        check(unsafe {
            match exec {
                None => need(self.host_set)?(node as Ptr, &p),
                Some(e) => need(self.exec_host_set)?(e as Ptr, node as Ptr, &p),
            }
        })
    }

    /// `cuLaunchHostFunc` on a stream of this session.
    pub(crate) fn launch_host(&self, stream: u64, hook: &HostHook) -> BResult<()> {
        let (f, p) = (need(self.launch_host)?, host_params(hook));
        // SAFETY: a stream of this session; `run_hook` with a leaked hook.
        check(unsafe { f(stream as Ptr, p.func, p.data) })
    }
}

/// Runs `call` with the `CUDA_KERNEL_NODE_PARAMS_v2` of a kernel node:
/// `kernelParams` into an aligned copy of the packed buffer when the layout
/// is known, else the buffer as `extra` (as launches do).
fn with_kernel<T>(
    k: &KernelSpec<'_>,
    call: impl FnOnce(*const KernelParams) -> BResult<T>,
) -> BResult<T> {
    let mut params = k.layout.map(|l| Params::new(k.params, l));
    let mut len = k.params.len();
    let mut extra: [Ptr; 5] = [
        1 as Ptr,
        k.params.as_ptr() as Ptr,
        2 as Ptr,
        (&mut len as *mut usize).cast(),
        std::ptr::null_mut(),
    ];
    let (kp, ex): (*mut Ptr, *mut Ptr) = match &mut params {
        Some(p) => (p.pointers.as_mut_ptr(), std::ptr::null_mut()),
        None => (std::ptr::null_mut(), extra.as_mut_ptr()),
    };
    // A library's CUkernel goes in `kern` (with `func` null) and runs in the
    // current context; a module's CUfunction in `func`.
    let (func, kern) = if k.func.kernel {
        (std::ptr::null_mut(), k.func.real as Ptr)
    } else {
        (k.func.real as Ptr, std::ptr::null_mut())
    };
    let p = KernelParams {
        func,
        grid: k.grid,
        block: k.block,
        shared_mem: k.shared_mem,
        kernel_params: kp,
        extra: ex,
        kern,
        ctx: std::ptr::null_mut(),
    };
    call(&p)
}

fn memset_params(m: &MemsetNode) -> MemsetParams {
    MemsetParams {
        dst: m.dst,
        pitch: m.pitch as usize,
        value: m.value,
        elem: m.elem,
        width: m.width as usize,
        height: m.height as usize,
    }
}

fn copy_params(c: &CopyNode) -> Copy3D {
    // A host side is a host mirror of the session process (checked by the
    // core): the driver reads or writes it at replay.
    let side = |s: &CopySide| {
        let (kind, host, dev) = if s.host {
            (HOST, s.ptr as usize, 0)
        } else {
            (DEVICE, 0, s.ptr)
        };
        (kind, host, dev, s.pitch as usize, s.rows as usize)
    };
    let (st, sh, sd, spitch, srows) = side(&c.src);
    let (dt, dh, dd, dpitch, drows) = side(&c.dst);
    Copy3D {
        src_type: st,
        src_host: sh,
        src_device: sd,
        src_pitch: spitch,
        src_height: srows,
        dst_type: dt,
        dst_host: dh,
        dst_device: dd,
        dst_pitch: dpitch,
        dst_height: drows,
        width: c.width as usize,
        height: c.height as usize,
        depth: c.depth as usize,
        ..Copy3D::default()
    }
}
