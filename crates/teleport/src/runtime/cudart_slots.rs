//! The implemented slots of the private export tables (see
//! `export_tables` for the map). Each slot counts its calls with
//! [`note`] and runs inside `guard` when it returns a `CUresult`.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::{Mutex, OnceLock};

use tf_api::cuda_fn;
use tf_protocol::status::cu;

use super::export_tables::{
    note, CALLBACK_HOOKS, CLS, CONTEXT_CHECKS, CTX_CREATE_BYPASS, CUDART, REQUIREMENTS,
    TOOLS_CONTEXT, TOOLS_TLS,
};
use crate::cuda::{current_ctx, device, guard, inventory, out};

type CUresult = u32;
type CUcontext = *mut c_void;
type CUmodule = *mut c_void;
type CUdevice = c_int;

/// `__fatBinC_Wrapper_t`: what nvcc emits around a fat binary.
#[repr(C)]
pub(super) struct FatbincWrapper {
    magic: u32,
    version: u32,
    data: *const c_void,
    filename_or_fatbins: *const c_void,
}
const FATBINC_MAGIC: u32 = 0x4662_43B1;
/// `CUDA_ERROR_INVALID_IMAGE`.
const INVALID_IMAGE: u32 = 200;

type LoadData = unsafe extern "C" fn(*mut CUmodule, *const c_void) -> CUresult;

/// Loads an image through this client's own `cuModuleLoadData` (the
/// modules domain's implementation), so modules cudart registers through
/// the private table and through the public API are the same kind of handle.
fn load_module(module: *mut CUmodule, image: *const c_void) -> CUresult {
    let entry = crate::cuda_table()[cuda_fn::cuModuleLoadData];
    // SAFETY: that slot holds cuModuleLoadData's implementation (or a stub
    // that ignores its arguments); both take (CUmodule *, const void *).
    let f = unsafe { std::mem::transmute::<crate::Entry, LoadData>(entry) };
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { f(module, image) }
}

/// CUDART_INTERFACE[1]: load the module of a fat-binary wrapper.
pub(super) unsafe extern "C" fn module_from_fatbinc(
    module: *mut CUmodule,
    wrapper: *const FatbincWrapper,
) -> CUresult {
    note(CUDART, 1);
    guard(|| {
        if module.is_null() || wrapper.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: non-null; nvcc's wrapper struct, read-only.
        let w = unsafe { &*wrapper };
        if w.magic != FATBINC_MAGIC || w.data.is_null() {
            return Err(INVALID_IMAGE);
        }
        match load_module(module, w.data) {
            0 => Ok(()),
            e => Err(e),
        }
    })
}

/// CUDART_INTERFACE[6]: as [1], with three more arguments that are null
/// and 0 in every call seen; anything else is refused rather than ignored.
pub(super) unsafe extern "C" fn module_from_fatbinc_ext(
    module: *mut CUmodule,
    wrapper: *const FatbincWrapper,
    arg3: *mut c_void,
    arg4: *mut c_void,
    arg5: c_uint,
) -> CUresult {
    note(CUDART, 6);
    if !arg3.is_null() || !arg4.is_null() || arg5 != 0 {
        tracing::warn!(
            ?arg3,
            ?arg4,
            arg5,
            "CUDART_INTERFACE[6] with unexpected arguments; answering CUDA_ERROR_NOT_SUPPORTED"
        );
        return cu::NOT_SUPPORTED;
    }
    // SAFETY: same contract as slot 1.
    unsafe { module_from_fatbinc(module, wrapper) }
}

/// CUDART_INTERFACE[8]: load a module from a fat binary header directly.
pub(super) unsafe extern "C" fn module_from_fatbin_ext(
    fatbin: *const c_void,
    module: *mut CUmodule,
    arg3: *mut c_void,
    arg4: *mut c_void,
    arg5: c_uint,
) -> CUresult {
    note(CUDART, 8);
    if !arg3.is_null() || !arg4.is_null() || arg5 != 0 {
        tracing::warn!(
            ?arg3,
            ?arg4,
            arg5,
            "CUDART_INTERFACE[8] with unexpected arguments; answering CUDA_ERROR_NOT_SUPPORTED"
        );
        return cu::NOT_SUPPORTED;
    }
    if module.is_null() || fatbin.is_null() {
        return cu::INVALID_VALUE;
    }
    load_module(module, fatbin)
}

/// CUDART_INTERFACE[2]: the primary context of a device *without*
/// activating it: cudart learns the handle early and retains it later with
/// `cuDevicePrimaryCtxRetain`, so `cuDevicePrimaryCtxGetState` must still
/// say inactive after this.
pub(super) unsafe extern "C" fn primary_context(pctx: *mut CUcontext, dev: CUdevice) -> CUresult {
    note(CUDART, 2);
    guard(|| {
        if pctx.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        device(dev)?;
        out(pctx, crate::ctx::primary_handle(dev)? as CUcontext)
    })
}

/// CUDART_INTERFACE[7]: takes one word, returns nothing; nothing to do
/// here (seen around module unregistration).
pub(super) unsafe extern "C" fn unregister_noop(_arg: usize) {
    note(CUDART, 7);
}

/// CUDART_INTERFACE[12]: the driver loads its JIT compilers; ours run on
/// the worker, so there is nothing to load.
pub(super) unsafe extern "C" fn load_compilers() -> CUresult {
    note(CUDART, 12);
    cu::SUCCESS
}

/// TOOLS_TLS[2]: the calling thread's current context (cuBLASLt keys its
/// kernel registry with it). A null current context is a valid answer.
pub(super) unsafe extern "C" fn tools_current_context(pctx: *mut CUcontext) -> CUresult {
    note(TOOLS_TLS, 2);
    guard(|| out(pctx, crate::cuda::current_handle() as CUcontext))
}

/// A zeroed, never-freed scratch buffer handed to cudart.
fn scratch(cell: &'static OnceLock<usize>, bytes: usize) -> *mut c_void {
    *cell.get_or_init(|| Box::leak(vec![0u64; bytes / 8].into_boxed_slice()).as_mut_ptr() as usize)
        as *mut c_void
}

/// TOOLS_RUNTIME_CALLBACK_HOOKS[2] and [6]: buffers where the runtime
/// keeps its tools-callback state. The sizes reported are those seen from
/// the real driver; the buffers are larger, whichever unit the size is in.
fn hooks_buffer(cell: &'static OnceLock<usize>, size: usize, p: *mut *mut c_void, n: *mut usize) {
    if !p.is_null() {
        // SAFETY: non-null out-pointer supplied by the runtime.
        unsafe { p.write(scratch(cell, size * 16)) };
    }
    if !n.is_null() {
        // SAFETY: as above.
        unsafe { n.write(size) };
    }
}

pub(super) unsafe extern "C" fn hooks_buffer1(p: *mut *mut c_void, n: *mut usize) {
    note(CALLBACK_HOOKS, 2);
    static B: OnceLock<usize> = OnceLock::new();
    hooks_buffer(&B, 1024, p, n);
}

pub(super) unsafe extern "C" fn hooks_buffer2(p: *mut *mut c_void, n: *mut usize) {
    note(CALLBACK_HOOKS, 6);
    static B: OnceLock<usize> = OnceLock::new();
    hooks_buffer(&B, 14, p, n);
}

/// `void (*)(CUcontext, void *key, void *value)`, run when the context goes away.
type Dtor = unsafe extern "C" fn(CUcontext, *mut c_void, *mut c_void);

/// Context-local storage: (context, key) → (value, destructor). cudart
/// keeps its per-context state here (the `get` is one of the hottest calls
/// of a PyTorch run), so it is answered entirely in the client.
type Entries = HashMap<(u64, usize), (usize, Option<Dtor>)>;
static STORAGE: Mutex<Option<Entries>> = Mutex::new(None);

/// The context a CLS call means: its argument, or the current one when null.
fn cls_ctx(ctx: CUcontext) -> Result<u64, CUresult> {
    inventory()?;
    if ctx.is_null() {
        current_ctx()
    } else {
        Ok(ctx as u64)
    }
}

/// CONTEXT_LOCAL_STORAGE[0]: put(ctx, key, value, destructor).
pub(super) unsafe extern "C" fn cls_put(
    ctx: CUcontext,
    key: *mut c_void,
    value: *mut c_void,
    dtor: Option<Dtor>,
) -> CUresult {
    note(CLS, 0);
    guard(|| {
        let c = cls_ctx(ctx)?;
        let mut s = STORAGE.lock().unwrap_or_else(|e| e.into_inner());
        s.get_or_insert_with(HashMap::new)
            .insert((c, key as usize), (value as usize, dtor));
        Ok(())
    })
}

/// CONTEXT_LOCAL_STORAGE[1]: delete(ctx, key); the destructor does not run.
pub(super) unsafe extern "C" fn cls_delete(ctx: CUcontext, key: *mut c_void) -> CUresult {
    note(CLS, 1);
    guard(|| {
        let c = cls_ctx(ctx)?;
        let mut s = STORAGE.lock().unwrap_or_else(|e| e.into_inner());
        s.get_or_insert_with(HashMap::new)
            .remove(&(c, key as usize));
        Ok(())
    })
}

/// CONTEXT_LOCAL_STORAGE[2]: get(&value, ctx, key). A missing key is
/// `CUDA_ERROR_INVALID_HANDLE` with the value left as it was (driver 580):
/// cudart then creates its state and puts it.
pub(super) unsafe extern "C" fn cls_get(
    value: *mut *mut c_void,
    ctx: CUcontext,
    key: *mut c_void,
) -> CUresult {
    note(CLS, 2);
    guard(|| {
        if value.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let c = cls_ctx(ctx)?;
        let s = STORAGE.lock().unwrap_or_else(|e| e.into_inner());
        match s.as_ref().and_then(|m| m.get(&(c, key as usize))) {
            Some((v, _)) => out(value, *v as *mut c_void),
            None => Err(cu::INVALID_HANDLE),
        }
    })
}

/// A context was destroyed or reset: its storage goes, destructors run
/// (without any lock held: they call back into CUDA).
pub(crate) fn context_gone(handle: u64) {
    let gone: Entries = {
        let mut s = STORAGE.lock().unwrap_or_else(|e| e.into_inner());
        let Some(m) = s.as_mut() else { return };
        let keys: Vec<_> = m.keys().filter(|(c, _)| *c == handle).copied().collect();
        keys.into_iter()
            .filter_map(|k| m.remove(&k).map(|v| (k, v)))
            .collect()
    };
    for ((c, key), (value, dtor)) in gone {
        if let Some(d) = dtor {
            if super::may_log() {
                tracing::debug!(ctx = c, key, "context-local storage destructor");
            }
            // SAFETY: the destructor the runtime registered for this entry,
            // called once with the context, key and value it stored.
            unsafe { d(c as CUcontext, key as *mut c_void, value as *mut c_void) };
        }
    }
}

/// CONTEXT_CHECKS[2]: (ctx, &flags, &detail). The driver reports no
/// condition for contexts it made (flags 0), which is what we report.
pub(super) unsafe extern "C" fn context_check(
    _ctx: CUcontext,
    flags: *mut c_uint,
    _detail: *mut *const c_void,
) -> CUresult {
    note(CONTEXT_CHECKS, 2);
    if !flags.is_null() {
        // SAFETY: non-null out-pointer supplied by the runtime.
        unsafe { flags.write(0) };
    }
    cu::SUCCESS
}

/// CONTEXT_CHECKS[3]: a process-wide check; 0 means nothing to report.
pub(super) unsafe extern "C" fn context_check_global() -> c_uint {
    note(CONTEXT_CHECKS, 3);
    0
}

/// RUNTIME_REQUIREMENTS[1]: a log callback (domain, severity, printf
/// format, va_list). The format is logged as is: its arguments cannot be
/// formatted portably from Rust, and the text already says what happened.
pub(super) unsafe extern "C" fn log_message(
    domain: *const c_char,
    severity: c_int,
    format: *const c_char,
    _args: *mut c_void,
) -> CUresult {
    note(REQUIREMENTS, 1);
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: non-null NUL-terminated strings from the caller.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    if super::may_log() {
        tracing::info!(domain = %text(domain), severity, "CUDA runtime: {}", text(format));
    }
    cu::SUCCESS
}

/// TOOLS_CONTEXT[4]: (ctx, &id), the context's unique id (as `cuCtxGetId`).
pub(super) unsafe extern "C" fn context_id(ctx: CUcontext, id: *mut u64) -> CUresult {
    note(TOOLS_CONTEXT, 4);
    guard(|| {
        if id.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let c = cls_ctx(ctx)?;
        out(id, crate::ctx::info(c)?.id)
    })
}

/// Tools stream handles handed out by TOOLS_CONTEXT[51]: (stream wire id,
/// token). A token is a stable, zeroed 512-byte block (callers may read
/// it); stream ids are never reused, so neither are tokens.
static STREAM_TOKENS: Mutex<Vec<(u64, usize)>> = Mutex::new(Vec::new());

/// TOOLS_CONTEXT[51] `StreamGetToolsHandleEx`: (ctx, stream, &token,
/// per_thread): a token naming the stream for the tools slots (cuSOLVER
/// asks it, then [39], for the id of the stream it works on).
pub(super) unsafe extern "C" fn stream_tools_handle(
    _ctx: CUcontext,
    stream: *mut c_void,
    token: *mut usize,
    per_thread: u8,
) -> CUresult {
    note(TOOLS_CONTEXT, 51);
    guard(|| {
        if token.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let wire = crate::exec::wire_stream(stream as u64, per_thread != 0)?;
        let mut t = STREAM_TOKENS.lock().unwrap_or_else(|e| e.into_inner());
        let tok = match t.iter().find(|(w, _)| *w == wire) {
            Some((_, tok)) => *tok,
            None => {
                let tok = Box::leak(Box::new([0u64; 64])).as_ptr() as usize;
                t.push((wire, tok));
                tok
            }
        };
        out(token, tok)
    })
}

/// TOOLS_CONTEXT[39] `StreamGetIdEx`: (ctx, token, &id): the id
/// `cuStreamGetId` gives for the token's stream.
pub(super) unsafe extern "C" fn stream_tools_id(
    _ctx: CUcontext,
    token: usize,
    id: *mut u64,
) -> CUresult {
    note(TOOLS_CONTEXT, 39);
    guard(|| {
        let t = STREAM_TOKENS.lock().unwrap_or_else(|e| e.into_inner());
        let wire = t
            .iter()
            .find(|(_, tok)| *tok == token)
            .map(|(w, _)| *w)
            .ok_or(cu::INVALID_HANDLE)?;
        out(id, crate::graph::stream_id(wire))
    })
}

/// The tools-module table's function visitor: `(user, function, name)`.
type Visitor = unsafe extern "C" fn(*mut c_void, *mut c_void, u64);

/// TOOLS_MODULE (`6e163fbe`) [7]: (ctx, module, visitor, user) calls the
/// visitor once per function of the module, in the driver's order, with a
/// function object whose word at offset 8 is the name, and the name; it
/// returns the number of functions (measured on driver 580 by
/// `tests/gpu/private/module_iter.c`; cuFFT iterates its modules so).
pub(super) unsafe extern "C" fn module_functions(
    _ctx: CUcontext,
    module: CUmodule,
    visit: Option<Visitor>,
    user: *mut c_void,
) -> usize {
    let r = std::panic::catch_unwind(|| -> Result<usize, CUresult> {
        let visit = visit.ok_or(cu::INVALID_VALUE)?;
        let list = crate::exec::function_objects(module as u64)?;
        for (obj, name) in &list {
            // SAFETY: the application's visitor with its own argument, a
            // function object that lives for the process, and its name.
            unsafe { visit(user, *obj as *mut c_void, *name as u64) };
        }
        Ok(list.len())
    });
    match r {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            if super::may_log() {
                tracing::debug!(status = e, "module function iteration failed");
            }
            0
        }
        Err(_) => 0,
    }
}

/// CTX_CREATE_BYPASS[1]: `cuCtxCreate_v2`'s arguments and meaning.
pub(super) unsafe extern "C" fn ctx_create_bypass(
    pctx: *mut CUcontext,
    flags: c_uint,
    dev: CUdevice,
) -> CUresult {
    note(CTX_CREATE_BYPASS, 1);
    // SAFETY: same contract as cuCtxCreate_v2.
    unsafe { crate::ctx::cu_ctx_create_v2(pctx, flags, dev) }
}

#[cfg(test)]
mod tests {
    use super::*;

    static DROPPED: Mutex<Vec<(u64, usize, usize)>> = Mutex::new(Vec::new());

    unsafe extern "C" fn record(c: CUcontext, k: *mut c_void, v: *mut c_void) {
        DROPPED
            .lock()
            .unwrap()
            .push((c as u64, k as usize, v as usize));
    }

    #[test]
    fn storage_destructors_run_once_per_entry_of_the_context() {
        {
            let mut s = STORAGE.lock().unwrap();
            let m = s.get_or_insert_with(HashMap::new);
            m.insert((0xC1, 1), (10, Some(record as Dtor)));
            m.insert((0xC1, 2), (20, None));
            m.insert((0xC2, 1), (30, Some(record as Dtor)));
        }
        context_gone(0xC1);
        context_gone(0xC1);
        assert_eq!(*DROPPED.lock().unwrap(), vec![(0xC1, 1, 10)]);
        let s = STORAGE.lock().unwrap();
        let m = s.as_ref().unwrap();
        assert!(m.contains_key(&(0xC2, 1)));
        assert!(!m.contains_key(&(0xC1, 2)));
    }

    #[test]
    fn hooks_buffers_are_stable_and_sized() {
        let (mut p1, mut n1, mut p2, mut n2) = (std::ptr::null_mut(), 0, std::ptr::null_mut(), 0);
        // SAFETY: valid out-pointers.
        unsafe {
            hooks_buffer1(&mut p1, &mut n1);
            hooks_buffer2(&mut p2, &mut n2);
        }
        assert!(!p1.is_null() && !p2.is_null() && p1 != p2);
        assert_eq!((n1, n2), (1024, 14));
        let mut again = std::ptr::null_mut();
        // SAFETY: as above; a null size pointer is allowed.
        unsafe { hooks_buffer1(&mut again, std::ptr::null_mut()) };
        assert_eq!(again, p1);
    }

    #[test]
    fn checks_report_nothing() {
        let mut flags = 7;
        // SAFETY: valid out-pointer; the other arguments are not read.
        let r = unsafe { context_check(std::ptr::null_mut(), &mut flags, std::ptr::null_mut()) };
        assert_eq!((r, flags), (0, 0));
        // SAFETY: no arguments.
        assert_eq!(unsafe { context_check_global() }, 0);
        // SAFETY: null pointers are allowed.
        assert_eq!(unsafe { load_compilers() }, 0);
    }

    #[test]
    fn fatbin_slots_validate_before_loading() {
        let mut m: CUmodule = std::ptr::null_mut();
        let bad = FatbincWrapper {
            magic: 1,
            version: 1,
            data: std::ptr::null(),
            filename_or_fatbins: std::ptr::null(),
        };
        // SAFETY: valid pointers; the wrapper is rejected before any load.
        unsafe {
            assert_eq!(module_from_fatbinc(&mut m, &bad), INVALID_IMAGE);
            assert_eq!(
                module_from_fatbinc(std::ptr::null_mut(), &bad),
                cu::INVALID_VALUE
            );
            assert_eq!(
                module_from_fatbinc_ext(&mut m, &bad, 8 as *mut c_void, std::ptr::null_mut(), 0),
                cu::NOT_SUPPORTED
            );
        }
    }
}
