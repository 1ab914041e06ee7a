//! Streams, events, launches, asynchronous memsets and copies on the vendor
//! driver, and `ExecBackend` for [`RealBackend`] (modules and kernels are in
//! `exec_modules`). Entry points are resolved like the rest of the driver
//! (`cuda.rs`): by ABI name, each optional, so an older driver fails only the
//! calls it lacks with `CUDA_ERROR_NOT_SUPPORTED`.
//!
//! Every handle passed in is one this driver returned (the worker core maps
//! client ids and refuses the rest), and every call that needs a context
//! runs with it current (`Cuda::in_ctx`).

use std::collections::HashMap;
use std::ffi::{c_float, c_int, c_uint, c_ushort, c_void};
use std::sync::{Mutex, MutexGuard};

use tf_protocol::exec_msgs::{
    LaunchApi, LoadReply, Memset, MemsetOp, Occupancy, OccupancyReply, ParamSlot, Shape,
    LAUNCH_ATTR_VALUE,
};
use tf_protocol::status::cu;
use tf_worker_core::exec::{Found, Func, Image, LoadOpts};
use tf_worker_core::{BResult, BackendCtx, ExecBackend};

use crate::exec_modules::Keep;
use crate::loader::{resolve, Loaded};
use crate::real_backend::RealBackend;

pub(crate) type CuResult = u32;
pub(crate) type Ptr = *mut c_void;

type FnStreamCreate = unsafe extern "C" fn(*mut Ptr, c_uint) -> CuResult;
type FnStreamCreatePrio = unsafe extern "C" fn(*mut Ptr, c_uint, c_int) -> CuResult;
type FnHandle = unsafe extern "C" fn(Ptr) -> CuResult;
type FnWaitEvent = unsafe extern "C" fn(Ptr, Ptr, c_uint) -> CuResult;
type FnGetPriority = unsafe extern "C" fn(Ptr, *mut c_int) -> CuResult;
type FnEventCreate = unsafe extern "C" fn(*mut Ptr, c_uint) -> CuResult;
type FnEventRecord = unsafe extern "C" fn(Ptr, Ptr) -> CuResult;
type FnEventRecordFlags = unsafe extern "C" fn(Ptr, Ptr, c_uint) -> CuResult;
type FnElapsed = unsafe extern "C" fn(*mut c_float, Ptr, Ptr) -> CuResult;
type FnMemsetD8 = unsafe extern "C" fn(u64, u8, usize, Ptr) -> CuResult;
type FnMemsetD16 = unsafe extern "C" fn(u64, c_ushort, usize, Ptr) -> CuResult;
type FnMemsetD32 = unsafe extern "C" fn(u64, c_uint, usize, Ptr) -> CuResult;
type FnMemset2D8 = unsafe extern "C" fn(u64, usize, u8, usize, usize, Ptr) -> CuResult;
type FnMemset2D16 = unsafe extern "C" fn(u64, usize, c_ushort, usize, usize, Ptr) -> CuResult;
type FnMemset2D32 = unsafe extern "C" fn(u64, usize, c_uint, usize, usize, Ptr) -> CuResult;
type FnHtoDAsync = unsafe extern "C" fn(u64, *const c_void, usize, Ptr) -> CuResult;
type FnDtoHAsync = unsafe extern "C" fn(*mut c_void, u64, usize, Ptr) -> CuResult;
type FnDtoDAsync = unsafe extern "C" fn(u64, u64, usize, Ptr) -> CuResult;
#[rustfmt::skip]
type FnLaunch = unsafe extern "C" fn(Ptr, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, Ptr, *mut Ptr, *mut Ptr) -> CuResult;
#[rustfmt::skip]
type FnLaunchCoop = unsafe extern "C" fn(Ptr, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, Ptr, *mut Ptr) -> CuResult;
type FnLaunchEx = unsafe extern "C" fn(*const RawConfig, Ptr, *mut Ptr, *mut Ptr) -> CuResult;

/// `CUlaunchAttribute`.
#[repr(C)]
pub(crate) struct RawAttr {
    id: u32,
    pad: [u8; 4],
    value: [u8; LAUNCH_ATTR_VALUE],
}

/// `CUlaunchConfig`.
#[repr(C)]
pub(crate) struct RawConfig {
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared_mem: c_uint,
    stream: Ptr,
    attrs: *const RawAttr,
    num_attrs: c_uint,
}

/// A `CUlaunchConfig` and the attribute array it points into.
pub(crate) struct Config {
    attrs: Vec<RawAttr>,
    shape: Shape,
}

impl Config {
    pub(crate) fn new(shape: &Shape) -> Self {
        let attrs = shape
            .attrs
            .iter()
            .map(|a| RawAttr {
                id: a.id,
                pad: [0; 4],
                value: a.value,
            })
            .collect();
        Config {
            attrs,
            shape: shape.clone(),
        }
    }
    /// Valid while `self` lives.
    pub(crate) fn raw(&self) -> RawConfig {
        RawConfig {
            grid: self.shape.grid,
            block: self.shape.block,
            shared_mem: self.shape.shared_mem,
            stream: self.shape.stream as Ptr,
            attrs: self.attrs.as_ptr(),
            num_attrs: self.attrs.len() as c_uint,
        }
    }
}

/// The driver's entry points for this domain.
pub(crate) struct ExecDriver {
    stream_create: Option<FnStreamCreate>,
    stream_create_prio: Option<FnStreamCreatePrio>,
    stream_destroy: Option<FnHandle>,
    stream_sync: Option<FnHandle>,
    stream_query: Option<FnHandle>,
    stream_wait: Option<FnWaitEvent>,
    stream_priority: Option<FnGetPriority>,
    event_create: Option<FnEventCreate>,
    event_destroy: Option<FnHandle>,
    event_record: Option<FnEventRecord>,
    event_record_flags: Option<FnEventRecordFlags>,
    event_sync: Option<FnHandle>,
    event_query: Option<FnHandle>,
    event_elapsed: Option<FnElapsed>,
    memset_d8: Option<FnMemsetD8>,
    memset_d16: Option<FnMemsetD16>,
    memset_d32: Option<FnMemsetD32>,
    memset_2d8: Option<FnMemset2D8>,
    memset_2d16: Option<FnMemset2D16>,
    memset_2d32: Option<FnMemset2D32>,
    htod: Option<FnHtoDAsync>,
    dtoh: Option<FnDtoHAsync>,
    dtod: Option<FnDtoDAsync>,
    launch: Option<FnLaunch>,
    launch_coop: Option<FnLaunchCoop>,
    launch_ex: Option<FnLaunchEx>,
    pub(crate) m: crate::exec_modules::ModuleFns,
    /// Linking and tensor maps (`crate::link`).
    pub(crate) link: crate::link::LinkFns,
    /// Images (and wrappers) of loaded modules and libraries, by real
    /// handle: the driver may read them after the load (lazy loading,
    /// `CU_LIBRARY_BINARY_IS_PRESERVED`), so they live until the unload.
    pub(crate) kept: Mutex<HashMap<u64, Keep>>,
}

pub(crate) fn check(r: CuResult) -> BResult<()> {
    if r == cu::SUCCESS {
        Ok(())
    } else {
        Err(r)
    }
}

pub(crate) fn need<T>(f: Option<T>) -> BResult<T> {
    f.ok_or(cu::NOT_SUPPORTED)
}

/// A query's answer: done, or `CUDA_ERROR_NOT_READY`.
fn done(r: CuResult) -> BResult<bool> {
    match r {
        cu::SUCCESS => Ok(true),
        cu::NOT_READY => Ok(false),
        e => Err(e),
    }
}

fn size(v: u64) -> BResult<usize> {
    usize::try_from(v).map_err(|_| cu::INVALID_VALUE)
}

impl ExecDriver {
    pub(crate) fn new(loaded: &Loaded) -> Self {
        let lib = loaded.lib;
        // SAFETY: for every `resolve` below, the type alias is the C
        // signature of the versioned ABI symbols it is resolved for.
        unsafe {
            ExecDriver {
                stream_create: resolve(lib, &["cuStreamCreate"]),
                stream_create_prio: resolve(lib, &["cuStreamCreateWithPriority"]),
                stream_destroy: resolve(lib, &["cuStreamDestroy_v2"]),
                stream_sync: resolve(lib, &["cuStreamSynchronize"]),
                stream_query: resolve(lib, &["cuStreamQuery"]),
                stream_wait: resolve(lib, &["cuStreamWaitEvent"]),
                stream_priority: resolve(lib, &["cuStreamGetPriority"]),
                event_create: resolve(lib, &["cuEventCreate"]),
                event_destroy: resolve(lib, &["cuEventDestroy_v2"]),
                event_record: resolve(lib, &["cuEventRecord"]),
                event_record_flags: resolve(lib, &["cuEventRecordWithFlags"]),
                event_sync: resolve(lib, &["cuEventSynchronize"]),
                event_query: resolve(lib, &["cuEventQuery"]),
                event_elapsed: resolve(lib, &["cuEventElapsedTime_v2", "cuEventElapsedTime"]),
                memset_d8: resolve(lib, &["cuMemsetD8Async"]),
                memset_d16: resolve(lib, &["cuMemsetD16Async"]),
                memset_d32: resolve(lib, &["cuMemsetD32Async"]),
                memset_2d8: resolve(lib, &["cuMemsetD2D8Async"]),
                memset_2d16: resolve(lib, &["cuMemsetD2D16Async"]),
                memset_2d32: resolve(lib, &["cuMemsetD2D32Async"]),
                htod: resolve(lib, &["cuMemcpyHtoDAsync_v2"]),
                dtoh: resolve(lib, &["cuMemcpyDtoHAsync_v2"]),
                dtod: resolve(lib, &["cuMemcpyDtoDAsync_v2"]),
                launch: resolve(lib, &["cuLaunchKernel"]),
                launch_coop: resolve(lib, &["cuLaunchCooperativeKernel"]),
                launch_ex: resolve(lib, &["cuLaunchKernelEx"]),
                m: crate::exec_modules::ModuleFns::new(lib),
                link: crate::link::LinkFns::new(lib),
                kept: Mutex::new(HashMap::new()),
            }
        }
    }

    pub(crate) fn kept(&self) -> MutexGuard<'_, HashMap<u64, Keep>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A parameter buffer copied to 64-byte alignment (tensor maps need it in
/// parameter space; the frame payload it arrives in has none), with one
/// pointer per parameter into it, as `kernelParams` wants.
pub(crate) struct Params {
    _storage: Vec<[u64; 8]>,
    pub(crate) pointers: Vec<Ptr>,
}

impl Params {
    pub(crate) fn new(bytes: &[u8], layout: &[ParamSlot]) -> Self {
        let mut storage: Vec<[u64; 8]> = vec![[0u64; 8]; bytes.len().div_ceil(64) + 1];
        // Vec<[u64; 8]> is only 8-aligned: start at the first 64-byte boundary.
        let base = storage.as_mut_ptr().cast::<u8>();
        let skip = base.align_offset(64);
        // SAFETY: `storage` has 64 spare bytes, enough for any `skip` < 64;
        // the copy writes `bytes.len()` bytes within the allocation.
        let start = unsafe { base.add(skip) };
        // SAFETY: as above: source and destination are valid and disjoint.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start, bytes.len()) };
        let pointers = layout
            .iter()
            // SAFETY: each slot lies within `bytes` (checked by the worker
            // core against the layout), hence within the copy.
            .map(|p| unsafe { start.add(p.offset as usize) }.cast::<c_void>())
            .collect();
        Params {
            _storage: storage,
            pointers,
        }
    }
}

impl RealBackend {
    fn ed(&self) -> &ExecDriver {
        &self.exec
    }
}

impl ExecBackend for RealBackend {
    fn stream_create(&self, ctx: BackendCtx, flags: u32, priority: Option<i32>) -> BResult<u64> {
        let d = self.ed();
        self.cuda.in_ctx(ctx, || {
            let mut s: Ptr = std::ptr::null_mut();
            match priority {
                // SAFETY: `s` is a writable CUstream slot; flags and priority by value.
                Some(p) => check(unsafe { need(d.stream_create_prio)?(&mut s, flags, p) })?,
                // SAFETY: as above.
                None => check(unsafe { need(d.stream_create)?(&mut s, flags) })?,
            }
            Ok(s as u64)
        })
    }
    fn stream_destroy(&self, ctx: BackendCtx, stream: u64) -> BResult<()> {
        let f = need(self.ed().stream_destroy)?;
        // SAFETY: a stream this driver created; destroying it defers until its work is done.
        self.cuda.in_ctx(ctx, || check(unsafe { f(stream as Ptr) }))
    }
    fn stream_synchronize(&self, ctx: BackendCtx, stream: u64) -> BResult<()> {
        let f = need(self.ed().stream_sync)?;
        // SAFETY: a stream this driver created, or a default-stream value.
        self.cuda.in_ctx(ctx, || check(unsafe { f(stream as Ptr) }))
    }
    fn stream_query(&self, ctx: BackendCtx, stream: u64) -> BResult<bool> {
        let f = need(self.ed().stream_query)?;
        // SAFETY: as stream_synchronize.
        self.cuda.in_ctx(ctx, || done(unsafe { f(stream as Ptr) }))
    }
    fn stream_wait_event(
        &self,
        ctx: BackendCtx,
        stream: u64,
        event: u64,
        flags: u32,
    ) -> BResult<()> {
        let f = need(self.ed().stream_wait)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: a stream and an event of this driver, flags by value.
            check(unsafe { f(stream as Ptr, event as Ptr, flags) })
        })
    }
    fn stream_get_priority(&self, ctx: BackendCtx, stream: u64) -> BResult<i32> {
        let f = need(self.ed().stream_priority)?;
        self.cuda.in_ctx(ctx, || {
            let mut p: c_int = 0;
            // SAFETY: `p` is a writable int.
            check(unsafe { f(stream as Ptr, &mut p) })?;
            Ok(p)
        })
    }
    fn event_create(&self, ctx: BackendCtx, flags: u32) -> BResult<u64> {
        let f = need(self.ed().event_create)?;
        self.cuda.in_ctx(ctx, || {
            let mut e: Ptr = std::ptr::null_mut();
            // SAFETY: `e` is a writable CUevent slot.
            check(unsafe { f(&mut e, flags) })?;
            Ok(e as u64)
        })
    }
    fn event_destroy(&self, ctx: BackendCtx, event: u64) -> BResult<()> {
        let f = need(self.ed().event_destroy)?;
        // SAFETY: an event this driver created.
        self.cuda.in_ctx(ctx, || check(unsafe { f(event as Ptr) }))
    }
    fn event_record(
        &self,
        ctx: BackendCtx,
        event: u64,
        stream: u64,
        flags: Option<u32>,
    ) -> BResult<()> {
        let d = self.ed();
        self.cuda.in_ctx(ctx, || match flags {
            Some(fl) => {
                // SAFETY: an event and a stream of this driver; flags by value.
                check(unsafe { need(d.event_record_flags)?(event as Ptr, stream as Ptr, fl) })
            }
            // SAFETY: as above.
            None => check(unsafe { need(d.event_record)?(event as Ptr, stream as Ptr) }),
        })
    }
    fn event_synchronize(&self, ctx: BackendCtx, event: u64) -> BResult<()> {
        let f = need(self.ed().event_sync)?;
        // SAFETY: an event this driver created.
        self.cuda.in_ctx(ctx, || check(unsafe { f(event as Ptr) }))
    }
    fn event_query(&self, ctx: BackendCtx, event: u64) -> BResult<bool> {
        let f = need(self.ed().event_query)?;
        // SAFETY: an event this driver created.
        self.cuda.in_ctx(ctx, || done(unsafe { f(event as Ptr) }))
    }
    fn event_elapsed(&self, ctx: BackendCtx, start: u64, end: u64) -> BResult<f32> {
        let f = need(self.ed().event_elapsed)?;
        self.cuda.in_ctx(ctx, || {
            let mut ms: c_float = 0.0;
            // SAFETY: `ms` is a writable float; two events of this driver.
            check(unsafe { f(&mut ms, start as Ptr, end as Ptr) })?;
            Ok(ms)
        })
    }
    fn module_load(
        &self,
        ctx: BackendCtx,
        image: &Image<'_>,
        opts: &LoadOpts<'_>,
        log: &mut LoadReply,
    ) -> BResult<u64> {
        self.cuda
            .in_ctx(ctx, || self.exec.load(false, image, opts, log))
    }
    fn module_unload(&self, ctx: BackendCtx, module: u64) -> BResult<()> {
        self.cuda.in_ctx(ctx, || self.exec.unload(false, module))
    }
    fn module_get_function(&self, ctx: BackendCtx, module: u64, name: &str) -> BResult<Found> {
        self.cuda
            .in_ctx(ctx, || self.exec.get_function(module, name))
    }
    fn module_function_names(&self, ctx: BackendCtx, module: u64) -> BResult<Vec<String>> {
        self.cuda.in_ctx(ctx, || self.exec.function_names(module))
    }
    fn module_get_global(&self, ctx: BackendCtx, module: u64, name: &str) -> BResult<(u64, u64)> {
        self.cuda
            .in_ctx(ctx, || self.exec.get_global(false, module, name))
    }
    fn library_load(
        &self,
        image: &Image<'_>,
        opts: &LoadOpts<'_>,
        log: &mut LoadReply,
    ) -> BResult<u64> {
        self.exec.load(true, image, opts, log)
    }
    fn library_unload(&self, library: u64) -> BResult<()> {
        self.exec.unload(true, library)
    }
    fn library_get_kernel(&self, ctx: BackendCtx, library: u64, name: &str) -> BResult<Found> {
        self.cuda
            .in_ctx(ctx, || self.exec.get_kernel(library, name))
    }
    fn library_get_module(&self, ctx: BackendCtx, library: u64) -> BResult<u64> {
        self.cuda.in_ctx(ctx, || self.exec.library_module(library))
    }
    fn library_get_global(&self, ctx: BackendCtx, library: u64, name: &str) -> BResult<(u64, u64)> {
        self.cuda
            .in_ctx(ctx, || self.exec.get_global(true, library, name))
    }
    fn kernel_get_function(&self, ctx: BackendCtx, kernel: u64) -> BResult<u64> {
        self.cuda.in_ctx(ctx, || self.exec.kernel_function(kernel))
    }
    fn func_get_attribute(&self, ctx: BackendCtx, func: Func, attrib: i32) -> BResult<i32> {
        self.cuda
            .in_ctx(ctx, || self.exec.func_attr(func.real, attrib))
    }
    fn func_set_attribute(
        &self,
        ctx: BackendCtx,
        func: Func,
        attrib: i32,
        value: i32,
    ) -> BResult<()> {
        self.cuda
            .in_ctx(ctx, || self.exec.func_set_attr(func.real, attrib, value))
    }
    fn func_set_cache_config(&self, ctx: BackendCtx, func: Func, config: u32) -> BResult<()> {
        self.cuda
            .in_ctx(ctx, || self.exec.func_cache_config(func.real, config))
    }
    fn kernel_get_attribute(&self, kernel: u64, attrib: i32, dev: i32) -> BResult<i32> {
        self.exec.kernel_attr(kernel, attrib, dev)
    }
    fn kernel_set_attribute(&self, kernel: u64, attrib: i32, value: i32, dev: i32) -> BResult<()> {
        self.exec.kernel_set_attr(kernel, attrib, value, dev)
    }
    fn occupancy(&self, ctx: BackendCtx, func: Func, query: &Occupancy) -> BResult<OccupancyReply> {
        self.cuda
            .in_ctx(ctx, || self.exec.occupancy(func.real, query))
    }
    fn launch(
        &self,
        ctx: BackendCtx,
        func: Func,
        api: LaunchApi,
        shape: &Shape,
        params: &[u8],
        layout: Option<&[ParamSlot]>,
    ) -> BResult<()> {
        let d = self.ed();
        let f = func.real as Ptr;
        let [gx, gy, gz] = shape.grid;
        let [bx, by, bz] = shape.block;
        let stream = shape.stream as Ptr;
        // kernelParams when the layout is known; otherwise the raw buffer
        // as `extra` (CU_LAUNCH_PARAM_BUFFER_POINTER/SIZE/END).
        let mut p = layout.map(|l| Params::new(params, l));
        let mut len = params.len();
        let mut extra: [Ptr; 5] = [
            1 as Ptr,
            params.as_ptr() as Ptr,
            2 as Ptr,
            (&mut len as *mut usize).cast(),
            std::ptr::null_mut(),
        ];
        let (kp, ex): (*mut Ptr, *mut Ptr) = match &mut p {
            Some(p) => (p.pointers.as_mut_ptr(), std::ptr::null_mut()),
            None => (std::ptr::null_mut(), extra.as_mut_ptr()),
        };
        self.cuda.in_ctx(ctx, || match api {
            LaunchApi::Kernel if shape.attrs.is_empty() => {
                // SAFETY: a function of this driver; `kp` points at one
                // pointer per parameter into a live copy of the buffer, or
                // `ex` at a well-formed extra array over `params`.
                check(unsafe {
                    need(d.launch)?(f, gx, gy, gz, bx, by, bz, shape.shared_mem, stream, kp, ex)
                })
            }
            LaunchApi::Cooperative if shape.attrs.is_empty() => {
                if kp.is_null() {
                    return Err(cu::NOT_SUPPORTED);
                }
                // SAFETY: as above (cooperative launches take kernelParams only).
                check(unsafe {
                    need(d.launch_coop)?(f, gx, gy, gz, bx, by, bz, shape.shared_mem, stream, kp)
                })
            }
            _ => {
                let mut s = shape.clone();
                if api == LaunchApi::Cooperative {
                    // CU_LAUNCH_ATTRIBUTE_COOPERATIVE (2), value 1.
                    let mut value = [0u8; LAUNCH_ATTR_VALUE];
                    value[..4].copy_from_slice(&1i32.to_le_bytes());
                    s.attrs
                        .push(tf_protocol::exec_msgs::LaunchAttr { id: 2, value });
                }
                let cfg = Config::new(&s);
                let raw = cfg.raw();
                // SAFETY: `raw` and the attributes it points to live until the
                // call returns; parameters as above.
                check(unsafe { need(d.launch_ex)?(&raw, f, kp, ex) })
            }
        })
    }
    fn memset_async(&self, ctx: BackendCtx, stream: u64, m: &Memset) -> BResult<()> {
        let d = self.ed();
        let (s, w) = (stream as Ptr, size(m.width)?);
        self.cuda.in_ctx(ctx, || {
            // The device range was checked by the worker core against the
            // session's memory; every argument is passed by value.
            let (v8, v16, v32) = (m.value as u8, m.value as c_ushort, m.value);
            let r = match m.op {
                // SAFETY: see above.
                MemsetOp::D8 => unsafe { need(d.memset_d8)?(m.dst, v8, w, s) },
                // SAFETY: see above.
                MemsetOp::D16 => unsafe { need(d.memset_d16)?(m.dst, v16, w, s) },
                // SAFETY: see above.
                MemsetOp::D32 => unsafe { need(d.memset_d32)?(m.dst, v32, w, s) },
                MemsetOp::D2D8 { height }
                | MemsetOp::D2D16 { height }
                | MemsetOp::D2D32 { height } => {
                    let (p, h) = (size(m.pitch)?, size(height)?);
                    match m.op.elem() {
                        // SAFETY: see above.
                        1 => unsafe { need(d.memset_2d8)?(m.dst, p, v8, w, h, s) },
                        // SAFETY: see above.
                        2 => unsafe { need(d.memset_2d16)?(m.dst, p, v16, w, h, s) },
                        // 4 (`elem` is 1, 2 or 4). SAFETY: see above.
                        _ => unsafe { need(d.memset_2d32)?(m.dst, p, v32, w, h, s) },
                    }
                }
            };
            check(r)
        })
    }
    fn memcpy_htod_async(&self, ctx: BackendCtx, stream: u64, dst: u64, src: &[u8]) -> BResult<()> {
        let f = need(self.ed().htod)?;
        self.cuda.in_ctx(ctx, || {
            // SAFETY: `src` is pageable memory, which the driver stages before
            // this call returns, so the frame may be reused right after.
            check(unsafe { f(dst, src.as_ptr().cast(), src.len(), stream as Ptr) })
        })
    }
    fn memcpy_dtoh_async(
        &self,
        ctx: BackendCtx,
        stream: u64,
        dst: &mut [u8],
        src: u64,
    ) -> BResult<()> {
        let d = self.ed();
        let (f, sync) = (need(d.dtoh)?, need(d.stream_sync)?);
        self.cuda.in_ctx(ctx, || {
            // SAFETY: `dst` is exclusively borrowed and stays alive until the
            // stream synchronization below has completed the copy.
            check(unsafe { f(dst.as_mut_ptr().cast(), src, dst.len(), stream as Ptr) })?;
            // SAFETY: a stream of this driver.
            check(unsafe { sync(stream as Ptr) })
        })
    }
    fn memcpy_dtod_async(
        &self,
        ctx: BackendCtx,
        stream: u64,
        dst: u64,
        src: u64,
        n: u64,
    ) -> BResult<()> {
        let f = need(self.ed().dtod)?;
        let n = size(n)?;
        // SAFETY: device ranges checked by the worker core; stream of this driver.
        self.cuda
            .in_ctx(ctx, || check(unsafe { f(dst, src, n, stream as Ptr) }))
    }
    fn link(
        &self,
        ctx: BackendCtx,
        jit: &[tf_protocol::exec_msgs::Opt],
        inputs: &[tf_worker_core::exec::LinkPart<'_>],
        log: &mut LoadReply,
    ) -> BResult<Vec<u8>> {
        self.cuda
            .in_ctx(ctx, || self.exec.link.link(jit, inputs, log))
    }
    fn tensor_map_encode(
        &self,
        ctx: BackendCtx,
        e: &tf_protocol::exec_msgs::TensorMapEncode,
    ) -> BResult<[u8; tf_protocol::exec_msgs::TENSOR_MAP_BYTES]> {
        self.cuda.in_ctx(ctx, || self.exec.link.encode(e))
    }
    fn tensor_map_replace_address(
        &self,
        ctx: BackendCtx,
        map: &[u8; tf_protocol::exec_msgs::TENSOR_MAP_BYTES],
        address: u64,
    ) -> BResult<[u8; tf_protocol::exec_msgs::TENSOR_MAP_BYTES]> {
        self.cuda
            .in_ctx(ctx, || self.exec.link.replace(map, address))
    }
}
