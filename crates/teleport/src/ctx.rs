//! Contexts beyond the primary-context slice and what cudart needs at
//! start-up: `cuGetProcAddress`, the private export tables and their
//! integrity check (issue 3, see `runtime`).
//!
//! Context state lives in the client wherever the answer cannot change
//! behind its back, because cudart and the libraries above it ask very
//! often: `cuCtxGetDevice_v2` ~200k and `cuDevicePrimaryCtxGetState` ~60k
//! times in one short PyTorch generation. So:
//! - the per-thread context stack is client state (`cuda::CURRENT` is its
//!   top, [`STACK`] the entries below);
//! - primary contexts mirror the retain counts of `cuda.rs` (hooks) and
//!   their flags, fetched once per device;
//! - a context's facts (id, API version, flags, cache and shared-memory
//!   configuration, stream priorities) come in one [`CtxInfo`] round trip
//!   and are cached until this client changes them; limits likewise.
//!
//! Creating, destroying, resetting and the setters go to the worker.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tf_protocol::ctx_msgs::{CtxInfo, CtxRequest};
use tf_protocol::status::cu;
use tf_protocol::Request;

use crate::cuda::{
    current_ctx, current_handle, device, guard, inventory, known_ctx, out, session,
    set_current_handle,
};

type CUresult = u32;
type CUcontext = *mut c_void;
type CUdevice = c_int;

/// `CU_CTX_FLAGS_MASK`.
const CTX_FLAGS: u32 = 0xFF;
/// `CUDA_ERROR_UNSUPPORTED_LIMIT`.
const UNSUPPORTED_LIMIT: u32 = 215;

#[derive(Debug, Default)]
struct Primary {
    /// The worker's handle for it (0 until learned).
    handle: u64,
    /// Retains this process holds (mirrors `cuda.rs`).
    retains: u32,
    /// Last flags known; `None`: ask the worker.
    flags: Option<u32>,
}

#[derive(Debug, Default)]
struct Registry {
    primary: HashMap<CUdevice, Primary>,
    /// Contexts of `cuCtxCreate`: handle → device.
    created: HashMap<u64, CUdevice>,
    info: HashMap<u64, CtxInfo>,
    limits: HashMap<(u64, c_int), u64>,
}

impl Registry {
    /// Drops what is cached about a context.
    fn forget(&mut self, h: u64) {
        self.info.remove(&h);
        self.limits.retain(|(c, _), _| *c != h);
    }
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);
/// Bumped whenever a context appears or goes: invalidates [`DEVICE_OF`].
static EPOCH: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The context stack below the current context.
    static STACK: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    /// Last `(handle, device, epoch)` looked up on this thread.
    static DEVICE_OF: Cell<(u64, CUdevice, u64)> = const { Cell::new((0, 0, 0)) };
}

fn with<R>(f: impl FnOnce(&mut Registry) -> R) -> R {
    let mut g = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Registry::default))
}

fn changed() {
    EPOCH.fetch_add(1, Ordering::AcqRel);
}

/// `cuda.rs`: a primary context was retained (`count` retains now).
pub(crate) fn primary_retained(dev: CUdevice, handle: u64, count: u32) {
    with(|r| {
        let p = r.primary.entry(dev).or_default();
        p.handle = handle;
        p.retains = count;
    });
    changed();
}

/// `cuda.rs`: a primary context was released; at 0 it is gone (for this
/// process), and so is its context-local storage.
pub(crate) fn primary_released(dev: CUdevice, handle: u64, count: u32) {
    with(|r| {
        r.primary.entry(dev).or_default().retains = count;
        if count == 0 {
            r.forget(handle);
        }
    });
    changed();
    if count == 0 {
        crate::runtime::context_gone(handle);
    }
}

/// The device of a context `cuda.rs` does not track: created contexts and
/// primary contexts known but not retained (cudart learns those handles
/// before it retains them).
pub(crate) fn created_ctx_device(handle: u64) -> Option<CUdevice> {
    if handle == 0 {
        return None;
    }
    with(|r| {
        r.created.get(&handle).copied().or_else(|| {
            r.primary
                .iter()
                .find(|(_, p)| p.handle == handle)
                .map(|(d, _)| *d)
        })
    })
}

/// The device of a context, from this thread's one-entry cache when
/// nothing changed since.
fn device_of(h: u64) -> Result<CUdevice, CUresult> {
    let epoch = EPOCH.load(Ordering::Acquire);
    let (ch, cd, ce) = DEVICE_OF.get();
    if ch == h && ce == epoch {
        return Ok(cd);
    }
    let d = known_ctx(h).ok_or(cu::INVALID_CONTEXT)?;
    DEVICE_OF.set((h, d, epoch));
    Ok(d)
}

/// A primary context's handle without retaining it (CUDART_INTERFACE[2]).
pub(crate) fn primary_handle(dev: CUdevice) -> Result<u64, CUresult> {
    if let Some(h) = with(|r| r.primary.get(&dev).map(|p| p.handle).filter(|h| *h != 0)) {
        return Ok(h);
    }
    let h = session()?.call::<u64>(&Request::Ctx(CtxRequest::ExportTablePrimaryCtx { dev }))?;
    with(|r| r.primary.entry(dev).or_default().handle = h);
    changed();
    Ok(h)
}

/// A context's facts, fetched once.
pub(crate) fn info(h: u64) -> Result<CtxInfo, CUresult> {
    if let Some(i) = with(|r| r.info.get(&h).copied()) {
        return Ok(i);
    }
    let i = session()?.call::<CtxInfo>(&Request::Ctx(CtxRequest::Info { ctx: h }))?;
    with(|r| r.info.insert(h, i));
    Ok(i)
}

/// The context an explicit-context call means: its argument, or the
/// current one when null.
fn ctx_or_current(ctx: CUcontext) -> Result<u64, CUresult> {
    inventory()?;
    match ctx as u64 {
        0 => current_ctx(),
        h => {
            device_of(h)?;
            Ok(h)
        }
    }
}

fn call(req: CtxRequest) -> Result<(), CUresult> {
    session()?.call::<()>(&Request::Ctx(req))
}

// --- the context stack ---------------------------------------------------

// The stack is reached with `try_with`: libraries push and pop contexts
// from their destructors while a thread (or the process) is exiting, after
// this thread's stack is gone (cuFFT's plan cache does, at exit); the stack
// then counts as empty instead of panicking.

fn push(h: u64) {
    let _ = STACK.try_with(|s| s.borrow_mut().push(current_handle()));
    set_current_handle(h);
}

/// Pops the top of this thread's stack; its new top becomes current.
fn pop() -> u64 {
    let top = current_handle();
    let below = STACK.try_with(|s| s.borrow_mut().pop()).ok().flatten();
    set_current_handle(below.unwrap_or(0));
    top
}

unsafe extern "C" fn cu_ctx_push_current(ctx: CUcontext) -> CUresult {
    guard(|| {
        inventory()?;
        let h = ctx as u64;
        if h == 0 {
            return Err(cu::INVALID_CONTEXT);
        }
        device_of(h)?;
        push(h);
        Ok(())
    })
}

unsafe extern "C" fn cu_ctx_pop_current(pctx: *mut CUcontext) -> CUresult {
    guard(|| {
        inventory()?;
        if current_handle() == 0 {
            return Err(cu::INVALID_CONTEXT);
        }
        let top = pop();
        if !pctx.is_null() {
            out(pctx, top as CUcontext)?;
        }
        Ok(())
    })
}

/// `cuCtxGetDevice_v2(CUdevice *device, CUcontext ctx)`: the hottest call
/// of a PyTorch run, answered from a per-thread cache.
unsafe extern "C" fn cu_ctx_get_device_v2(dev: *mut CUdevice, ctx: CUcontext) -> CUresult {
    guard(|| {
        if dev.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let h = match ctx as u64 {
            0 => current_ctx()?,
            h => {
                inventory()?;
                h
            }
        };
        out(dev, device_of(h)?)
    })
}

/// `cuCtxSynchronize_v2(CUcontext ctx)`.
unsafe extern "C" fn cu_ctx_synchronize_v2(ctx: CUcontext) -> CUresult {
    guard(|| {
        let h = ctx_or_current(ctx)?;
        session()?.call::<()>(&Request::CtxSynchronize { ctx: h })
    })
}

// --- creating and destroying ---------------------------------------------

fn create(pctx: *mut CUcontext, flags: c_uint, dev: CUdevice) -> Result<(), CUresult> {
    if pctx.is_null() || flags & !CTX_FLAGS != 0 {
        return Err(cu::INVALID_VALUE);
    }
    device(dev)?;
    let h = session()?.call::<u64>(&Request::Ctx(CtxRequest::Create { dev, flags }))?;
    with(|r| r.created.insert(h, dev));
    changed();
    // Like the driver: the new context becomes current on this thread.
    push(h);
    out(pctx, h as CUcontext)
}

/// `cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)`
/// (and `cuCtxCreate`, the same arguments).
pub(crate) unsafe extern "C" fn cu_ctx_create_v2(
    pctx: *mut CUcontext,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    guard(|| create(pctx, flags, dev))
}

fn affinity_unsupported() -> CUresult {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!("cuCtxCreate with execution-affinity or CIG parameters is not remoted; answering CUDA_ERROR_NOT_SUPPORTED")
    });
    cu::NOT_SUPPORTED
}

/// `cuCtxCreate_v3(CUcontext *pctx, CUexecAffinityParam *paramsArray, int
/// numParams, unsigned int flags, CUdevice dev)`.
unsafe extern "C" fn cu_ctx_create_v3(
    pctx: *mut CUcontext,
    _params: *mut c_void,
    num_params: c_int,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    guard(|| {
        if num_params != 0 {
            return Err(affinity_unsupported());
        }
        create(pctx, flags, dev)
    })
}

/// `CUctxCreateParams`.
#[repr(C)]
struct CreateParams {
    exec_affinity: *mut c_void,
    num_exec_affinity: c_int,
    cig: *mut c_void,
}

/// `cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *params, unsigned
/// int flags, CUdevice dev)`.
unsafe extern "C" fn cu_ctx_create_v4(
    pctx: *mut CUcontext,
    params: *const CreateParams,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    guard(|| {
        if !params.is_null() {
            // SAFETY: non-null; the caller passes a CUctxCreateParams.
            let p = unsafe { &*params };
            if p.num_exec_affinity != 0 || !p.cig.is_null() {
                return Err(affinity_unsupported());
            }
        }
        create(pctx, flags, dev)
    })
}

/// `cuCtxDestroy_v2(CUcontext ctx)` (and `cuCtxDestroy`). Primary
/// contexts are not destroyed this way.
unsafe extern "C" fn cu_ctx_destroy(ctx: CUcontext) -> CUresult {
    guard(|| {
        inventory()?;
        let h = ctx as u64;
        if with(|r| !r.created.contains_key(&h)) {
            return Err(cu::INVALID_CONTEXT);
        }
        // Context-local storage destructors run before the context goes.
        crate::runtime::context_gone(h);
        call(CtxRequest::Destroy { ctx: h })?;
        with(|r| {
            r.created.remove(&h);
            r.forget(h);
        });
        changed();
        // Off this thread's stack (the driver pops it if current).
        let _ = STACK.try_with(|s| s.borrow_mut().retain(|c| *c != h));
        if current_handle() == h {
            pop();
        }
        Ok(())
    })
}

// --- primary contexts ------------------------------------------------------

/// `cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int
/// *active)`: local; "active" while this process holds a retain.
unsafe extern "C" fn cu_device_primary_ctx_get_state(
    dev: CUdevice,
    flags: *mut c_uint,
    active: *mut c_int,
) -> CUresult {
    guard(|| {
        if flags.is_null() || active.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        device(dev)?;
        let (known, retained) = with(|r| {
            let p = r.primary.entry(dev).or_default();
            (p.flags, p.retains > 0)
        });
        let f = match known {
            Some(f) => f,
            None => {
                let (f, _) = session()?.call::<(u32, i32)>(&Request::PrimaryCtxGetState { dev })?;
                with(|r| r.primary.entry(dev).or_default().flags = Some(f));
                f
            }
        };
        out(flags, f)?;
        out(active, c_int::from(retained))
    })
}

/// `cuDevicePrimaryCtxSetFlags_v2(CUdevice dev, unsigned int flags)` (and v1).
unsafe extern "C" fn cu_device_primary_ctx_set_flags(dev: CUdevice, flags: c_uint) -> CUresult {
    guard(|| {
        device(dev)?;
        if flags & !CTX_FLAGS != 0 {
            return Err(cu::INVALID_VALUE);
        }
        call(CtxRequest::PrimaryCtxSetFlags { dev, flags })?;
        with(|r| {
            let p = r.primary.entry(dev).or_default();
            p.flags = Some(flags);
            let h = p.handle;
            r.info.remove(&h);
        });
        Ok(())
    })
}

/// `cuDevicePrimaryCtxReset_v2(CUdevice dev)` (and v1): this process's
/// primary context goes away with everything it held.
unsafe extern "C" fn cu_device_primary_ctx_reset(dev: CUdevice) -> CUresult {
    guard(|| {
        device(dev)?;
        let h = with(|r| r.primary.get(&dev).map_or(0, |p| p.handle));
        if h != 0 {
            crate::runtime::context_gone(h);
        }
        match crate::client::existing() {
            // After a kernel fault the worker's context cannot be reset in
            // its process; the reset "succeeds" and the device stays
            // unavailable, as the real driver answers.
            Some(c) if c.faulted() => c.reset_after_fault(),
            _ => call(CtxRequest::PrimaryCtxReset { dev })?,
        }
        crate::cuda::forget_primary(dev);
        with(|r| {
            let p = r.primary.entry(dev).or_default();
            p.retains = 0;
            p.flags = None;
            r.forget(h);
        });
        changed();
        Ok(())
    })
}

// --- facts and settings of the current context ---------------------------

unsafe extern "C" fn cu_ctx_get_flags(flags: *mut c_uint) -> CUresult {
    guard(|| out(flags, info(current_ctx()?)?.flags))
}

unsafe extern "C" fn cu_ctx_set_flags(flags: c_uint) -> CUresult {
    guard(|| {
        let h = current_ctx()?;
        call(CtxRequest::SetFlags { ctx: h, flags })?;
        with(|r| r.info.remove(&h));
        Ok(())
    })
}

unsafe extern "C" fn cu_ctx_get_api_version(ctx: CUcontext, version: *mut c_uint) -> CUresult {
    guard(|| out(version, info(ctx_or_current(ctx)?)?.api_version))
}

unsafe extern "C" fn cu_ctx_get_id(ctx: CUcontext, id: *mut u64) -> CUresult {
    guard(|| out(id, info(ctx_or_current(ctx)?)?.id))
}

unsafe extern "C" fn cu_ctx_get_stream_priority_range(
    least: *mut c_int,
    greatest: *mut c_int,
) -> CUresult {
    guard(|| {
        let i = info(current_ctx()?)?;
        if !least.is_null() {
            out(least, i.priority_least)?;
        }
        if !greatest.is_null() {
            out(greatest, i.priority_greatest)?;
        }
        Ok(())
    })
}

unsafe extern "C" fn cu_ctx_get_cache_config(config: *mut c_uint) -> CUresult {
    guard(|| out(config, info(current_ctx()?)?.cache_config))
}

unsafe extern "C" fn cu_ctx_set_cache_config(config: c_uint) -> CUresult {
    guard(|| {
        let h = current_ctx()?;
        call(CtxRequest::SetCacheConfig { ctx: h, config })?;
        with(|r| r.info.remove(&h));
        Ok(())
    })
}

unsafe extern "C" fn cu_ctx_get_shared_mem_config(config: *mut c_uint) -> CUresult {
    guard(|| out(config, info(current_ctx()?)?.shared_mem_config))
}

/// Deprecated, and without effect on current GPUs: validated, not sent.
unsafe extern "C" fn cu_ctx_set_shared_mem_config(config: c_uint) -> CUresult {
    guard(|| {
        current_ctx()?;
        if config > 2 {
            return Err(cu::INVALID_VALUE);
        }
        Ok(())
    })
}

/// `cuCtxGetLimit(size_t *pvalue, CUlimit limit)`: cached per context until
/// this client sets it.
unsafe extern "C" fn cu_ctx_get_limit(value: *mut usize, limit: c_int) -> CUresult {
    guard(|| {
        if value.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let h = current_ctx()?;
        if let Some(v) = with(|r| r.limits.get(&(h, limit)).copied()) {
            return out(value, v as usize);
        }
        let l = u32::try_from(limit).map_err(|_| UNSUPPORTED_LIMIT)?;
        let v = session()?.call::<u64>(&Request::Ctx(CtxRequest::GetLimit { ctx: h, limit: l }))?;
        with(|r| r.limits.insert((h, limit), v));
        out(value, v as usize)
    })
}

unsafe extern "C" fn cu_ctx_set_limit(limit: c_int, value: usize) -> CUresult {
    guard(|| {
        let h = current_ctx()?;
        let l = u32::try_from(limit).map_err(|_| UNSUPPORTED_LIMIT)?;
        // The driver may round the value: the next get asks again.
        with(|r| r.limits.remove(&(h, limit)));
        call(CtxRequest::SetLimit {
            ctx: h,
            limit: l,
            value: value as u64,
        })
    })
}

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    set(c::cuCtxPushCurrent, cu_ctx_push_current as Entry);
    set(c::cuCtxPushCurrent_v2, cu_ctx_push_current as Entry);
    set(c::cuCtxPopCurrent, cu_ctx_pop_current as Entry);
    set(c::cuCtxPopCurrent_v2, cu_ctx_pop_current as Entry);
    set(c::cuCtxGetDevice_v2, cu_ctx_get_device_v2 as Entry);
    set(c::cuCtxSynchronize_v2, cu_ctx_synchronize_v2 as Entry);
    set(c::cuCtxCreate, cu_ctx_create_v2 as Entry);
    set(c::cuCtxCreate_v2, cu_ctx_create_v2 as Entry);
    set(c::cuCtxCreate_v3, cu_ctx_create_v3 as Entry);
    set(c::cuCtxCreate_v4, cu_ctx_create_v4 as Entry);
    set(c::cuCtxDestroy, cu_ctx_destroy as Entry);
    set(c::cuCtxDestroy_v2, cu_ctx_destroy as Entry);
    // Supersedes cuda.rs's remoted version: the state is client state now.
    set(
        c::cuDevicePrimaryCtxGetState,
        cu_device_primary_ctx_get_state as Entry,
    );
    set(
        c::cuDevicePrimaryCtxSetFlags,
        cu_device_primary_ctx_set_flags as Entry,
    );
    set(
        c::cuDevicePrimaryCtxSetFlags_v2,
        cu_device_primary_ctx_set_flags as Entry,
    );
    set(
        c::cuDevicePrimaryCtxReset,
        cu_device_primary_ctx_reset as Entry,
    );
    set(
        c::cuDevicePrimaryCtxReset_v2,
        cu_device_primary_ctx_reset as Entry,
    );
    set(c::cuCtxGetFlags, cu_ctx_get_flags as Entry);
    set(c::cuCtxSetFlags, cu_ctx_set_flags as Entry);
    set(c::cuCtxGetApiVersion, cu_ctx_get_api_version as Entry);
    set(c::cuCtxGetId, cu_ctx_get_id as Entry);
    set(
        c::cuCtxGetStreamPriorityRange,
        cu_ctx_get_stream_priority_range as Entry,
    );
    set(c::cuCtxGetCacheConfig, cu_ctx_get_cache_config as Entry);
    set(c::cuCtxSetCacheConfig, cu_ctx_set_cache_config as Entry);
    set(
        c::cuCtxGetSharedMemConfig,
        cu_ctx_get_shared_mem_config as Entry,
    );
    set(
        c::cuCtxSetSharedMemConfig,
        cu_ctx_set_shared_mem_config as Entry,
    );
    set(c::cuCtxGetLimit, cu_ctx_get_limit as Entry);
    set(c::cuCtxSetLimit, cu_ctx_set_limit as Entry);
    crate::runtime::register(set);
}
