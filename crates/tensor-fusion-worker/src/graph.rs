//! Stream capture and graphs on the vendor driver: `GraphBackend` for
//! [`RealBackend`]. The worker core maps the client's graph ids to the
//! handles returned here and validates streams before a call gets here.
//! Explicit graph building is in `graph_nodes`.

use std::ffi::{c_int, c_uint, c_void};

use tf_protocol::status::cu;
use tf_worker_core::graph::{KernelSpec, NodeSpec, MODE_THREAD_LOCAL};
use tf_worker_core::{BResult, BackendCtx, GraphBackend};

use crate::graph_nodes::NodeDriver;

use crate::exec::{check, need, CuResult, Ptr};
use crate::loader::{resolve, Loaded};
use crate::real_backend::RealBackend;

type FnBegin = unsafe extern "C" fn(Ptr, c_uint) -> CuResult;
type FnEnd = unsafe extern "C" fn(Ptr, *mut Ptr) -> CuResult;
type FnInfo =
    unsafe extern "C" fn(Ptr, *mut c_int, *mut u64, *mut Ptr, *mut Ptr, *mut usize) -> CuResult;
type FnInfoV3 = unsafe extern "C" fn(
    Ptr,
    *mut c_int,
    *mut u64,
    *mut Ptr,
    *mut Ptr,
    *mut Ptr,
    *mut usize,
) -> CuResult;
type FnMode = unsafe extern "C" fn(*mut c_uint) -> CuResult;
type FnInstantiate = unsafe extern "C" fn(*mut Ptr, Ptr, u64) -> CuResult;
type FnExecStream = unsafe extern "C" fn(Ptr, Ptr) -> CuResult;
type FnHandle = unsafe extern "C" fn(Ptr) -> CuResult;
type FnNodes = unsafe extern "C" fn(Ptr, *mut Ptr, *mut usize) -> CuResult;
type FnUpdate = unsafe extern "C" fn(Ptr, Ptr, *mut UpdateInfo) -> CuResult;

/// `CUgraphExecUpdateResultInfo`.
#[repr(C)]
struct UpdateInfo {
    result: c_int,
    error_node: *mut c_void,
    error_from_node: *mut c_void,
}

pub(crate) struct GraphDriver {
    begin: Option<FnBegin>,
    end: Option<FnEnd>,
    info: Option<FnInfo>,
    info_v3: Option<FnInfoV3>,
    mode: Option<FnMode>,
    instantiate: Option<FnInstantiate>,
    launch: Option<FnExecStream>,
    upload: Option<FnExecStream>,
    exec_destroy: Option<FnHandle>,
    destroy: Option<FnHandle>,
    nodes: Option<FnNodes>,
    update: Option<FnUpdate>,
    nodes_of: NodeDriver,
}

impl GraphDriver {
    pub(crate) fn new(loaded: &Loaded) -> Self {
        let lib = loaded.lib;
        // SAFETY: for every `resolve` below, the type alias is the C
        // signature of the versioned ABI symbol it is resolved for.
        unsafe {
            GraphDriver {
                begin: resolve(lib, &["cuStreamBeginCapture_v2"]),
                end: resolve(lib, &["cuStreamEndCapture"]),
                info: resolve(lib, &["cuStreamGetCaptureInfo_v2"]),
                info_v3: resolve(lib, &["cuStreamGetCaptureInfo_v3"]),
                mode: resolve(lib, &["cuThreadExchangeStreamCaptureMode"]),
                instantiate: resolve(lib, &["cuGraphInstantiateWithFlags"]),
                launch: resolve(lib, &["cuGraphLaunch"]),
                upload: resolve(lib, &["cuGraphUpload"]),
                exec_destroy: resolve(lib, &["cuGraphExecDestroy"]),
                destroy: resolve(lib, &["cuGraphDestroy"]),
                nodes: resolve(lib, &["cuGraphGetNodes"]),
                update: resolve(lib, &["cuGraphExecUpdate_v2"]),
                nodes_of: NodeDriver::new(loaded),
            }
        }
    }
}

impl RealBackend {
    /// Runs `f` with this thread's capture mode relaxed: registering host
    /// memory is an "unsafe" call while a capture of this thread is under
    /// way (900), and a mirror may be made in the middle of one (a
    /// captured pinned copy names it). The mode is restored after.
    pub(crate) fn capture_relaxed<T>(&self, f: impl FnOnce() -> T) -> T {
        let Some(x) = self.gd().mode else {
            return f();
        };
        let mut m = tf_worker_core::graph::MODE_RELAXED;
        // SAFETY: `m` is a readable and writable CUstreamCaptureMode.
        let swapped = unsafe { x(&mut m) } == cu::SUCCESS;
        let r = f();
        if swapped {
            // SAFETY: as above; `m` holds the mode this thread had.
            unsafe { x(&mut m) };
        }
        r
    }

    fn gd(&self) -> &GraphDriver {
        &self.graph
    }
}

impl GraphBackend for RealBackend {
    fn begin_capture(&self, ctx: BackendCtx, stream: u64) -> BResult<u64> {
        let f = need(self.gd().begin)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: a stream of this session; the mode by value.
            check(unsafe { f(stream as Ptr, MODE_THREAD_LOCAL) })?;
            Ok(())
        })?;
        match self.capture_info(ctx, stream)? {
            (0, ..) => Err(cu::UNKNOWN),
            (_, _, graph) => Ok(graph),
        }
    }
    fn end_capture(&self, ctx: BackendCtx, stream: u64) -> BResult<u64> {
        let f = need(self.gd().end)?;
        self.cuda.in_ctx(ctx, || {
            let mut g: Ptr = std::ptr::null_mut();
            // SAFETY: `g` is a writable CUgraph slot.
            check(unsafe { f(stream as Ptr, &mut g) })?;
            Ok(g as u64)
        })
    }
    fn capture_info(&self, ctx: BackendCtx, stream: u64) -> BResult<(u32, u64, u64)> {
        let d = self.gd();
        self.cuda.in_ctx(ctx, || {
            let (mut status, mut id, mut graph): (c_int, u64, Ptr) = (0, 0, std::ptr::null_mut());
            let (mut deps, mut edges, mut n): (Ptr, Ptr, usize) =
                (std::ptr::null_mut(), std::ptr::null_mut(), 0);
            // SAFETY: every output is a writable slot of the right type.
            check(unsafe {
                match (d.info, d.info_v3) {
                    (Some(f), _) => f(
                        stream as Ptr,
                        &mut status,
                        &mut id,
                        &mut graph,
                        &mut deps,
                        &mut n,
                    ),
                    (None, Some(f)) => f(
                        stream as Ptr,
                        &mut status,
                        &mut id,
                        &mut graph,
                        &mut deps,
                        &mut edges,
                        &mut n,
                    ),
                    (None, None) => cu::NOT_SUPPORTED,
                }
            })?;
            Ok((status as u32, id, graph as u64))
        })
    }
    fn capture_mode(&self, mode: u32) -> BResult<()> {
        let f = need(self.gd().mode)?;
        let mut m = mode;
        // SAFETY: `m` is a readable and writable CUstreamCaptureMode.
        check(unsafe { f(&mut m) })
    }
    fn instantiate(&self, ctx: BackendCtx, graph: u64, flags: u64) -> BResult<u64> {
        let f = need(self.gd().instantiate)?;
        self.cuda.in_ctx(ctx, || {
            let mut e: Ptr = std::ptr::null_mut();
            // SAFETY: `e` is a writable CUgraphExec slot; the graph is this session's.
            check(unsafe { f(&mut e, graph as Ptr, flags) })?;
            Ok(e as u64)
        })
    }
    fn graph_launch(&self, ctx: BackendCtx, exec: u64, stream: u64) -> BResult<()> {
        let f = need(self.gd().launch)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: an executable graph and a stream of this session.
            check(unsafe { f(exec as Ptr, stream as Ptr) })
        })
    }
    fn graph_upload(&self, ctx: BackendCtx, exec: u64, stream: u64) -> BResult<()> {
        let f = need(self.gd().upload)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: an executable graph and a stream of this session.
            check(unsafe { f(exec as Ptr, stream as Ptr) })
        })
    }
    fn exec_destroy(&self, ctx: BackendCtx, exec: u64) -> BResult<()> {
        let f = need(self.gd().exec_destroy)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: an executable graph of this session, destroyed once.
            check(unsafe { f(exec as Ptr) })
        })
    }
    fn graph_destroy(&self, ctx: BackendCtx, graph: u64) -> BResult<()> {
        let f = need(self.gd().destroy)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: a graph of this session, destroyed once.
            check(unsafe { f(graph as Ptr) })
        })
    }
    fn node_count(&self, ctx: BackendCtx, graph: u64) -> BResult<u64> {
        let f = need(self.gd().nodes)?;
        self.cuda.in_ctx(ctx, || {
            let mut n = 0usize;
            // SAFETY: a null node array asks for the count only.
            check(unsafe { f(graph as Ptr, std::ptr::null_mut(), &mut n) })?;
            Ok(n as u64)
        })
    }
    fn exec_update(&self, ctx: BackendCtx, exec: u64, graph: u64) -> BResult<u64> {
        let f = need(self.gd().update)?;
        self.cuda.in_ctx(ctx, || {
            let mut info = UpdateInfo {
                result: 0,
                error_node: std::ptr::null_mut(),
                error_from_node: std::ptr::null_mut(),
            };
            // SAFETY: `info` is a writable CUgraphExecUpdateResultInfo.
            check(unsafe { f(exec as Ptr, graph as Ptr, &mut info) })?;
            Ok(info.result as u64)
        })
    }
    fn graph_create(&self, ctx: BackendCtx) -> BResult<u64> {
        self.cuda.in_ctx(ctx, || self.gd().nodes_of.create())
    }
    fn graph_clone(&self, ctx: BackendCtx, graph: u64) -> BResult<u64> {
        self.cuda.in_ctx(ctx, || self.gd().nodes_of.clone(graph))
    }
    fn add_node(
        &self,
        ctx: BackendCtx,
        graph: u64,
        deps: &[u64],
        node: &NodeSpec<'_>,
    ) -> BResult<u64> {
        self.cuda
            .in_ctx(ctx, || self.gd().nodes_of.add(ctx, graph, deps, node))
    }
    fn add_dependencies(
        &self,
        ctx: BackendCtx,
        graph: u64,
        from: &[u64],
        to: &[u64],
    ) -> BResult<()> {
        self.cuda
            .in_ctx(ctx, || self.gd().nodes_of.add_dependencies(graph, from, to))
    }
    fn graph_nodes(&self, ctx: BackendCtx, graph: u64) -> BResult<Vec<(u64, u32)>> {
        self.cuda.in_ctx(ctx, || self.gd().nodes_of.list(graph))
    }
    fn kernel_node_set_params(
        &self,
        ctx: BackendCtx,
        node: u64,
        k: &KernelSpec<'_>,
    ) -> BResult<()> {
        self.cuda
            .in_ctx(ctx, || self.gd().nodes_of.kernel_set(node, k))
    }
    fn exec_kernel_node_set_params(
        &self,
        ctx: BackendCtx,
        exec: u64,
        node: u64,
        k: &KernelSpec<'_>,
    ) -> BResult<()> {
        self.cuda
            .in_ctx(ctx, || self.gd().nodes_of.exec_kernel_set(exec, node, k))
    }
    fn launch_host_func(
        &self,
        ctx: BackendCtx,
        stream: u64,
        hook: &tf_worker_core::host_calls::HostHook,
    ) -> BResult<()> {
        self.cuda
            .in_ctx(ctx, || self.gd().nodes_of.launch_host(stream, hook))
    }
    fn host_node_set_params(
        &self,
        ctx: BackendCtx,
        exec: Option<u64>,
        node: u64,
        hook: &tf_worker_core::host_calls::HostHook,
    ) -> BResult<()> {
        self.cuda
            .in_ctx(ctx, || self.gd().nodes_of.host_set(exec, node, hook))
    }
}
