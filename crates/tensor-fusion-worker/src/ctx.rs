//! The context entry points of the vendor driver and `CtxBackend` for
//! [`RealBackend`]. Resolved like the rest of the driver (`cuda.rs`): by ABI
//! name, each optional, so an older driver fails only the calls it lacks.

use std::ffi::{c_int, c_uint, c_void};

use tf_protocol::ctx_msgs::CtxInfo;
use tf_protocol::status::cu;
use tf_worker_core::{BResult, BackendCtx, CtxBackend};

use crate::loader::{resolve, Loaded};
use crate::real_backend::RealBackend;

type CuResult = u32;
type CuContext = *mut c_void;

type FnPrimarySetFlags = unsafe extern "C" fn(c_int, c_uint) -> CuResult;
type FnCtxCreateV2 = unsafe extern "C" fn(*mut CuContext, c_uint, c_int) -> CuResult;
type FnCtxCreateV4 = unsafe extern "C" fn(*mut CuContext, *mut c_void, c_uint, c_int) -> CuResult;
type FnCtxDestroy = unsafe extern "C" fn(CuContext) -> CuResult;
type FnCtxPop = unsafe extern "C" fn(*mut CuContext) -> CuResult;
type FnGetLimit = unsafe extern "C" fn(*mut usize, c_int) -> CuResult;
type FnSetLimit = unsafe extern "C" fn(c_int, usize) -> CuResult;
type FnGetId = unsafe extern "C" fn(CuContext, *mut u64) -> CuResult;
type FnGetApiVersion = unsafe extern "C" fn(CuContext, *mut c_uint) -> CuResult;
type FnGetU32 = unsafe extern "C" fn(*mut c_uint) -> CuResult;
type FnSetU32 = unsafe extern "C" fn(c_uint) -> CuResult;
type FnPriorityRange = unsafe extern "C" fn(*mut c_int, *mut c_int) -> CuResult;
type FnGetExportTable = unsafe extern "C" fn(*mut *const c_void, *const [u8; 16]) -> CuResult;

/// Largest plausible size word of an export table (bytes): beyond it word 0
/// is taken for a pointer, not a size.
const MAX_TABLE_BYTES: u64 = 64 * 1024;

/// The driver's context entry points.
pub(crate) struct CtxDriver {
    primary_set_flags: Option<FnPrimarySetFlags>,
    create_v2: Option<FnCtxCreateV2>,
    create_v4: Option<FnCtxCreateV4>,
    destroy: Option<FnCtxDestroy>,
    pop: Option<FnCtxPop>,
    get_limit: Option<FnGetLimit>,
    set_limit: Option<FnSetLimit>,
    get_id: Option<FnGetId>,
    get_api_version: Option<FnGetApiVersion>,
    get_flags: Option<FnGetU32>,
    set_flags: Option<FnSetU32>,
    get_cache_config: Option<FnGetU32>,
    set_cache_config: Option<FnSetU32>,
    get_shared_mem_config: Option<FnGetU32>,
    priority_range: Option<FnPriorityRange>,
    get_export_table: Option<FnGetExportTable>,
}

impl CtxDriver {
    pub(crate) fn new(loaded: &Loaded) -> Self {
        let lib = loaded.lib;
        // SAFETY: for every `resolve` below, the type alias is the C
        // signature of the versioned ABI symbols it is resolved for.
        unsafe {
            CtxDriver {
                primary_set_flags: resolve(
                    lib,
                    &[
                        "cuDevicePrimaryCtxSetFlags_v2",
                        "cuDevicePrimaryCtxSetFlags",
                    ],
                ),
                create_v2: resolve(lib, &["cuCtxCreate_v2"]),
                create_v4: resolve(lib, &["cuCtxCreate_v4"]),
                destroy: resolve(lib, &["cuCtxDestroy_v2"]),
                pop: resolve(lib, &["cuCtxPopCurrent_v2"]),
                get_limit: resolve(lib, &["cuCtxGetLimit"]),
                set_limit: resolve(lib, &["cuCtxSetLimit"]),
                get_id: resolve(lib, &["cuCtxGetId"]),
                get_api_version: resolve(lib, &["cuCtxGetApiVersion"]),
                get_flags: resolve(lib, &["cuCtxGetFlags"]),
                set_flags: resolve(lib, &["cuCtxSetFlags"]),
                get_cache_config: resolve(lib, &["cuCtxGetCacheConfig"]),
                set_cache_config: resolve(lib, &["cuCtxSetCacheConfig"]),
                get_shared_mem_config: resolve(lib, &["cuCtxGetSharedMemConfig"]),
                priority_range: resolve(lib, &["cuCtxGetStreamPriorityRange"]),
                get_export_table: resolve(lib, &["cuGetExportTable"]),
            }
        }
    }
}

fn check(r: CuResult) -> BResult<()> {
    if r == cu::SUCCESS {
        Ok(())
    } else {
        Err(r)
    }
}

fn need<T>(f: Option<T>) -> BResult<T> {
    f.ok_or(cu::NOT_SUPPORTED)
}

/// Reads one value through a `CUresult f(T *)` getter, 0 when the driver
/// lacks the getter (optional facts must not fail the whole query).
fn optional_u32(f: Option<FnGetU32>) -> BResult<u32> {
    let Some(f) = f else { return Ok(0) };
    let mut v: c_uint = 0;
    // SAFETY: `v` is a valid, writable unsigned int for the call.
    check(unsafe { f(&mut v) })?;
    Ok(v)
}

impl CtxBackend for RealBackend {
    fn primary_ctx_set_flags(&self, dev: i32, flags: u32) -> BResult<()> {
        let f = need(self.ctx.primary_set_flags)?;
        // SAFETY: plain values; the driver validates the device and flags.
        check(unsafe { f(dev, flags) })
    }

    fn ctx_create(&self, dev: i32, flags: u32) -> BResult<BackendCtx> {
        let mut ctx: CuContext = std::ptr::null_mut();
        if let Some(f) = self.ctx.create_v2 {
            // SAFETY: `ctx` is a valid, writable CUcontext slot.
            check(unsafe { f(&mut ctx, flags, dev) })?;
        } else {
            let f = need(self.ctx.create_v4)?;
            // SAFETY: as above; null parameters mean none (CUDA 13 API).
            check(unsafe { f(&mut ctx, std::ptr::null_mut(), flags, dev) })?;
        }
        // The driver pushed the new context on this thread; pop it so the
        // thread's current context is what `cuda.rs` believes it is.
        if let Some(pop) = self.ctx.pop {
            let mut popped: CuContext = std::ptr::null_mut();
            // SAFETY: a valid out-pointer; the stack holds the new context.
            let _ = unsafe { pop(&mut popped) };
        }
        crate::cuda::contexts_changed();
        Ok(ctx as u64)
    }

    fn ctx_destroy(&self, ctx: BackendCtx) -> BResult<()> {
        let f = need(self.ctx.destroy)?;
        // SAFETY: a context this driver created for this worker (sessions
        // only pass back handles of their own contexts).
        let r = check(unsafe { f(ctx as CuContext) });
        // It may have been current on any session thread.
        crate::cuda::contexts_changed();
        r
    }

    fn ctx_get_limit(&self, ctx: BackendCtx, limit: u32) -> BResult<u64> {
        let f = need(self.ctx.get_limit)?;
        let limit = c_int::try_from(limit).map_err(|_| cu::INVALID_VALUE)?;
        self.cuda.in_ctx(ctx, || {
            let mut v: usize = 0;
            // SAFETY: `v` is a valid, writable size_t.
            check(unsafe { f(&mut v, limit) })?;
            Ok(v as u64)
        })
    }

    fn ctx_set_limit(&self, ctx: BackendCtx, limit: u32, value: u64) -> BResult<()> {
        let f = need(self.ctx.set_limit)?;
        let limit = c_int::try_from(limit).map_err(|_| cu::INVALID_VALUE)?;
        let value = usize::try_from(value).map_err(|_| cu::INVALID_VALUE)?;
        // SAFETY: plain values, applied to the context made current.
        self.cuda.in_ctx(ctx, || check(unsafe { f(limit, value) }))
    }

    fn ctx_info(&self, ctx: BackendCtx) -> BResult<CtxInfo> {
        let d = &self.ctx;
        let mut info = CtxInfo::default();
        // Id and API version name the context explicitly, and the driver
        // answers them even after a kernel fault (cudart's cudaDeviceReset
        // asks for the id first, and must then reach the reset).
        if let Some(f) = d.get_id {
            // SAFETY: the context handle from this driver, a valid out-pointer.
            check(unsafe { f(ctx as CuContext, &mut info.id) })?;
        }
        if let Some(f) = d.get_api_version {
            // SAFETY: as above.
            check(unsafe { f(ctx as CuContext, &mut info.api_version) })?;
        }
        let current = self.cuda.in_ctx(ctx, || {
            let flags = optional_u32(d.get_flags)?;
            let cache = optional_u32(d.get_cache_config)?;
            // Deprecated; older and newer drivers may refuse it: 0 then.
            let shared = optional_u32(d.get_shared_mem_config).unwrap_or(0);
            let (mut least, mut greatest) = (0, 0);
            if let Some(f) = d.priority_range {
                // SAFETY: both out-pointers are valid for the call.
                check(unsafe { f(&mut least, &mut greatest) })?;
            }
            Ok((flags, cache, shared, least, greatest))
        });
        match current {
            Ok((flags, cache, shared, least, greatest)) => {
                info.flags = flags;
                info.cache_config = cache;
                info.shared_mem_config = shared;
                info.priority_least = least;
                info.priority_greatest = greatest;
            }
            // A context lost to a kernel fault cannot be made current; what
            // needs it is answered with defaults so the reset can proceed.
            Err(e) if tf_worker_core::worker::is_sticky_fault(e) => {}
            Err(e) => return Err(e),
        }
        Ok(info)
    }

    fn ctx_set_cache_config(&self, ctx: BackendCtx, config: u32) -> BResult<()> {
        let f = need(self.ctx.set_cache_config)?;
        // SAFETY: a plain value, applied to the context made current.
        self.cuda.in_ctx(ctx, || check(unsafe { f(config) }))
    }

    fn ctx_set_flags(&self, ctx: BackendCtx, flags: u32) -> BResult<()> {
        let f = need(self.ctx.set_flags)?;
        // SAFETY: a plain value, applied to the context made current.
        self.cuda.in_ctx(ctx, || check(unsafe { f(flags) }))
    }

    fn export_table_shape(&self, guid: &[u8; 16]) -> BResult<(u64, u128)> {
        let f = need(self.ctx.get_export_table)?;
        let mut table: *const c_void = std::ptr::null();
        // SAFETY: a valid out-pointer and a 16-byte GUID.
        check(unsafe { f(&mut table, guid) })?;
        if table.is_null() {
            return Err(cu::NOT_FOUND);
        }
        let words = table.cast::<u64>();
        // SAFETY: the driver returned a table; its first word is readable.
        let word = unsafe { words.read() };
        let size = if word > 0 && word <= MAX_TABLE_BYTES && word % 8 == 0 {
            word
        } else {
            0
        };
        // Without a size word only the first slots are known to exist.
        let slots = if size > 0 { (size / 8).min(128) } else { 4 };
        let mut nulls = 0u128;
        for i in 0..slots {
            // SAFETY: slot i < the table's own length (its size word says so).
            if unsafe { words.add(i as usize).read() } == 0 {
                nulls |= 1 << i;
            }
        }
        Ok((size, nulls))
    }
}
