//! Modules, libraries, functions and kernels: loads (enqueued, with ids
//! minted here) and lookups (synchronous, cached with their parameter
//! layout). Attributes and occupancy are in `attrs`.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr};

use tf_protocol::exec_msgs::{
    handle, ExecRequest, FunctionReply, LibraryApi, Load, LoadReply, ModuleApi, Opt,
};
use tf_protocol::status::cu;
use tf_protocol::Request;

use super::image::{self, ImageData};
use super::{mint, read, write, CUresult, FuncInfo, LibraryInfo, ModuleInfo};
use crate::cuda::{guard, out, session};

type Handle = *mut c_void;

/// `CUjit_option`s whose value the driver writes back, or that name log buffers.
const JIT_THREADS_PER_BLOCK: u32 = 1;
const JIT_WALL_TIME: u32 = 2;
const JIT_INFO_LOG: u32 = 3;
const JIT_INFO_LOG_SIZE: u32 = 4;
const JIT_ERROR_LOG: u32 = 5;
const JIT_ERROR_LOG_SIZE: u32 = 6;
/// Options whose value points at host data (symbol tables, name lists):
/// they cannot cross to the worker.
const JIT_POINTER_OPTIONS: [u32; 4] = [17, 18, 25, 27];
/// `CU_LIBRARY_HOST_UNIVERSAL_FUNCTION_AND_DATA_TABLE`: a host pointer.
const LIBRARY_HOST_TABLE: u32 = 0;

fn name_arg(p: *const c_char) -> Result<String, CUresult> {
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: a NUL-terminated name by the CUDA contract.
    Ok(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Reads `(options, values)` arrays of `n` entries.
///
/// # Safety
/// `options` and `values` point to `n` readable entries when `n > 0`.
pub(super) unsafe fn options(
    n: c_uint,
    options: *const c_uint,
    values: *const *mut c_void,
) -> Result<Vec<Opt>, CUresult> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if options.is_null() || n as usize > tf_protocol::exec_msgs::MAX_JIT_OPTIONS {
        return Err(cu::INVALID_VALUE);
    }
    // A null value array is accepted by the driver (measured: cuBLAS loads
    // its libraries with one library option and no values); every value is
    // then null.
    (0..n as usize)
        .map(|i| {
            // SAFETY: `i < n`, within both arrays when they are given
            // (caller's contract); `values` is only read when non-null.
            let (option, value) = unsafe {
                (
                    *options.add(i),
                    if values.is_null() {
                        std::ptr::null_mut()
                    } else {
                        *values.add(i)
                    },
                )
            };
            Ok(Opt {
                option,
                value: value as u64,
            })
        })
        .collect()
}

pub(super) fn jit_options(opts: Vec<Opt>) -> Result<(Vec<Opt>, bool), CUresult> {
    if let Some(o) = opts
        .iter()
        .find(|o| JIT_POINTER_OPTIONS.contains(&o.option))
    {
        tracing::warn!(
            option = o.option,
            "JIT options that point at host symbol tables are not remoted"
        );
        return Err(cu::NOT_SUPPORTED);
    }
    let want_log = opts.iter().any(|o| {
        matches!(
            o.option,
            JIT_THREADS_PER_BLOCK | JIT_WALL_TIME | JIT_INFO_LOG | JIT_ERROR_LOG
        )
    });
    Ok((opts, want_log))
}

/// Writes the driver's outputs back into the application's option values
/// and log buffers.
///
/// # Safety
/// As [`options`]; `values` writable, log buffers writable for their sizes.
pub(super) unsafe fn apply_log(opts: &[Opt], values: *mut *mut c_void, r: &LoadReply) {
    let size_of = |want: u32| {
        opts.iter()
            .find(|o| o.option == want)
            .map_or(0, |o| o.value as usize)
    };
    for (i, o) in opts.iter().enumerate() {
        let log = match o.option {
            JIT_INFO_LOG => Some((&r.info_log, size_of(JIT_INFO_LOG_SIZE))),
            JIT_ERROR_LOG => Some((&r.error_log, size_of(JIT_ERROR_LOG_SIZE))),
            _ => None,
        };
        match (log, o.option) {
            (Some((text, cap)), _) if o.value != 0 && cap > 0 => {
                let n = text.len().min(cap - 1);
                let dst = o.value as usize as *mut u8;
                // SAFETY: the application gave a buffer of `cap` bytes; we write n + 1 <= cap.
                unsafe {
                    std::ptr::copy_nonoverlapping(text.as_ptr(), dst, n);
                    *dst.add(n) = 0;
                }
            }
            (
                None,
                JIT_THREADS_PER_BLOCK | JIT_WALL_TIME | JIT_INFO_LOG_SIZE | JIT_ERROR_LOG_SIZE,
            ) => {
                if let Some(v) = r.values.get(i) {
                    // SAFETY: `i` is within the values array (caller's contract).
                    unsafe { *values.add(i) = *v as usize as *mut c_void };
                }
            }
            _ => {}
        }
    }
}

/// Sends a load: leading parts as enqueued image parts, the last bytes with
/// the load itself. Waits only when the JIT outputs are wanted.
fn send_load<'a>(
    library: Option<LibraryApi>,
    api: ModuleApi,
    mut load: Load<'a>,
    image: &ImageData<'a>,
) -> Result<Option<LoadReply>, CUresult> {
    let c = session()?;
    let fixed = 64 + 12 * (load.jit.len() + load.library.len()) + 8 * image.parts.len();
    let room = c.chunk().saturating_sub(fixed).max(4096);
    let pieces: Vec<&[u8]> = image.parts.iter().flat_map(|p| p.chunks(room)).collect();
    let Some((last, rest)) = pieces.split_last() else {
        return Err(image::INVALID_IMAGE);
    };
    let mut offset = 0u64;
    for data in rest {
        c.enqueue(&Request::Exec(ExecRequest::ImagePart {
            handle: load.handle,
            offset,
            data,
        }))?;
        offset += data.len() as u64;
    }
    load.tail = last;
    let want = load.want_log;
    let req = Request::Exec(match library {
        Some(api) => ExecRequest::LibraryLoad { api, load },
        None => ExecRequest::ModuleLoad { api, load },
    });
    if want {
        c.call::<LoadReply>(&req).map(Some)
    } else {
        c.enqueue(&req).map(|()| None)
    }
}

fn spec(image: &ImageData<'_>) -> tf_protocol::exec_msgs::ImageSpec {
    tf_protocol::exec_msgs::ImageSpec {
        wrapper: image.wrapper,
        parts: image.parts.iter().map(|p| p.len() as u64).collect(),
    }
}

/// Loads a module from `image` under a new id; returns the id.
fn load_module(
    api: ModuleApi,
    image: &ImageData<'_>,
    jit: Vec<Opt>,
    want_log: bool,
) -> Result<(u64, Option<LoadReply>), CUresult> {
    let ctx = crate::cuda::current_ctx()?;
    let id = mint(handle::MODULE);
    let _span = tracing::debug_span!(
        "module load",
        kind = image.kind.name(),
        bytes = image.total()
    )
    .entered();
    let load = Load {
        ctx,
        handle: id,
        image: spec(image),
        jit,
        library: Vec::new(),
        want_log,
        tail: &[],
    };
    let log = send_load(None, api, load, image)?;
    write().modules.insert(id, ModuleInfo::default());
    Ok((id, log))
}

unsafe extern "C" fn cu_module_load_data(m: *mut Handle, img: *const c_void) -> CUresult {
    guard(|| {
        let image = image::read(img)?;
        let (id, _) = load_module(ModuleApi::Data, &image, Vec::new(), false)?;
        out(m, id as Handle)
    })
}

unsafe extern "C" fn cu_module_load_fat_binary(m: *mut Handle, img: *const c_void) -> CUresult {
    guard(|| {
        let image = image::read(img)?;
        let (id, _) = load_module(ModuleApi::FatBinary, &image, Vec::new(), false)?;
        out(m, id as Handle)
    })
}

unsafe extern "C" fn cu_module_load(m: *mut Handle, fname: *const c_char) -> CUresult {
    guard(|| {
        let path = name_arg(fname)?;
        let (kind, bytes) = image::from_file(std::path::Path::new(&path))?;
        let image = ImageData {
            wrapper: 0,
            parts: vec![&bytes],
            kind,
        };
        let (id, _) = load_module(ModuleApi::File, &image, Vec::new(), false)?;
        out(m, id as Handle)
    })
}

unsafe extern "C" fn cu_module_load_data_ex(
    m: *mut Handle,
    img: *const c_void,
    n: c_uint,
    opts: *mut c_uint,
    values: *mut *mut c_void,
) -> CUresult {
    guard(|| {
        // SAFETY: `n` entries per the CUDA contract.
        let (jit, want_log) = jit_options(unsafe { options(n, opts, values) }?)?;
        let image = image::read(img)?;
        let (id, log) = load_module(ModuleApi::DataEx, &image, jit.clone(), want_log)?;
        if let Some(r) = log {
            // SAFETY: as above; the application's buffers per its options.
            unsafe { apply_log(&jit, values, &r) };
            if r.status != 0 {
                write().modules.remove(&id);
                // The worker keeps the failed load under the id until told.
                let _ =
                    session()?.enqueue(&Request::Exec(ExecRequest::ModuleUnload { module: id }));
                return Err(r.status);
            }
        }
        out(m, id as Handle)
    })
}

unsafe extern "C" fn cu_module_unload(m: Handle) -> CUresult {
    guard(|| {
        let id = m as u64;
        let info = write().modules.remove(&id).ok_or(cu::INVALID_HANDLE)?;
        if info.library != 0 {
            write().modules.insert(id, info);
            return Err(cu::NOT_PERMITTED);
        }
        write().forget_owner(id);
        session()?.enqueue(&Request::Exec(ExecRequest::ModuleUnload { module: id }))
    })
}

/// Records a looked-up function or kernel; returns its id.
fn remember(r: FunctionReply, kernel: bool, owner: u64) -> u64 {
    write()
        .funcs
        .entry(r.handle)
        .or_insert_with(|| FuncInfo::new(r.layout, kernel, owner));
    r.handle
}

/// A module's function by name: cached, else looked up on the worker.
pub(crate) fn function_of(id: u64, name: String) -> Result<u64, CUresult> {
    let owner = {
        let s = read();
        let info = s.modules.get(&id).ok_or(cu::INVALID_HANDLE)?;
        if let Some(h) = info.functions.get(&name) {
            return Ok(*h);
        }
        if info.library != 0 {
            info.library
        } else {
            id
        }
    };
    let r = session()?.call::<FunctionReply>(&Request::Exec(ExecRequest::ModuleGetFunction {
        module: id,
        name: name.clone(),
    }))?;
    let h = remember(r, false, owner);
    if let Some(info) = write().modules.get_mut(&id) {
        info.functions.insert(name, h);
    }
    Ok(h)
}

unsafe extern "C" fn cu_module_get_function(
    f: *mut Handle,
    m: Handle,
    name: *const c_char,
) -> CUresult {
    guard(|| {
        let h = function_of(m as u64, name_arg(name)?)?;
        out(f, h as Handle)
    })
}

/// The names of a module's functions, in the driver's order (asked once
/// per module).
pub(crate) fn function_names(id: u64) -> Result<Vec<String>, CUresult> {
    if let Some(n) = read()
        .modules
        .get(&id)
        .ok_or(cu::INVALID_HANDLE)?
        .names
        .clone()
    {
        return Ok(n);
    }
    let names = session()?
        .call::<tf_protocol::exec_msgs::Names>(&Request::Exec(ExecRequest::ModuleFunctionNames {
            module: id,
        }))?
        .0;
    if let Some(info) = write().modules.get_mut(&id) {
        info.names = Some(names.clone());
    }
    Ok(names)
}

unsafe extern "C" fn cu_module_get_function_count(count: *mut c_uint, m: Handle) -> CUresult {
    guard(|| {
        let n = function_names(m as u64)?.len();
        out(count, n as c_uint)
    })
}

unsafe extern "C" fn cu_module_enumerate_functions(
    fns: *mut Handle,
    n: c_uint,
    m: Handle,
) -> CUresult {
    guard(|| {
        if fns.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let id = m as u64;
        let names = function_names(id)?;
        for (i, name) in names.into_iter().take(n as usize).enumerate() {
            let h = function_of(id, name)?;
            // SAFETY: the caller provides room for `n` handles.
            unsafe { fns.add(i).write(h as Handle) };
        }
        Ok(())
    })
}

unsafe extern "C" fn cu_module_get_global(
    dptr: *mut u64,
    bytes: *mut usize,
    m: Handle,
    name: *const c_char,
) -> CUresult {
    guard(|| {
        let (id, name) = (m as u64, name_arg(name)?);
        let cached = {
            let s = read();
            let info = s.modules.get(&id).ok_or(cu::INVALID_HANDLE)?;
            info.globals.get(&name).copied()
        };
        let (p, n) = match cached {
            Some(v) => v,
            None => {
                let v = session()?.call::<(u64, u64)>(&Request::Exec(
                    ExecRequest::ModuleGetGlobal {
                        module: id,
                        name: name.clone(),
                    },
                ))?;
                if let Some(info) = write().modules.get_mut(&id) {
                    info.globals.insert(name, v);
                }
                // Device memory for unified-address copies and pointer queries.
                crate::runtime::host_memory::device_allocated(
                    crate::exec::ctx_or_zero()?,
                    v.0,
                    v.1,
                );
                v
            }
        };
        // Either output may be NULL (the CUDA contract).
        if !dptr.is_null() {
            out(dptr, p)?;
        }
        if !bytes.is_null() {
            out(bytes, n as usize)?;
        }
        Ok(())
    })
}

/// `CU_MODULE_LAZY_LOADING` unless the application asked for eager loading;
/// the worker's driver loads the way its own environment says.
unsafe extern "C" fn cu_module_get_loading_mode(mode: *mut c_int) -> CUresult {
    guard(|| {
        let eager =
            std::env::var("CUDA_MODULE_LOADING").is_ok_and(|v| v.eq_ignore_ascii_case("EAGER"));
        out(mode, if eager { 1 } else { 2 })
    })
}

/// # Safety
/// The pointer arguments of `cuLibraryLoadData` after `code`.
#[allow(clippy::too_many_arguments)] // cuLibraryLoadData's own arguments
unsafe fn load_library(
    api: LibraryApi,
    image: &ImageData<'_>,
    jopts: *mut c_uint,
    jvalues: *mut *mut c_void,
    nj: c_uint,
    lopts: *mut c_uint,
    lvalues: *mut *mut c_void,
    nl: c_uint,
) -> Result<u64, CUresult> {
    // SAFETY: the counts describe the arrays (CUDA contract).
    let (jit, want_log) = jit_options(unsafe { options(nj, jopts, jvalues) }?)?;
    // SAFETY: as above.
    let mut library = unsafe { options(nl, lopts, lvalues) }?;
    library.retain(|o| {
        let keep = o.option != LIBRARY_HOST_TABLE;
        if !keep {
            tracing::debug!("dropping the host function/data table option of cuLibraryLoadData");
        }
        keep
    });
    let id = mint(handle::LIBRARY);
    let load = Load {
        ctx: 0,
        handle: id,
        image: spec(image),
        jit: jit.clone(),
        library,
        want_log,
        tail: &[],
    };
    if let Some(r) = send_load(Some(api), ModuleApi::Data, load, image)? {
        // SAFETY: the application's option values and log buffers.
        unsafe { apply_log(&jit, jvalues, &r) };
        if r.status != 0 {
            return Err(r.status);
        }
    }
    write().libraries.insert(id, LibraryInfo::default());
    Ok(id)
}

unsafe extern "C" fn cu_library_load_data(
    lib: *mut Handle,
    code: *const c_void,
    jopts: *mut c_uint,
    jvalues: *mut *mut c_void,
    nj: c_uint,
    lopts: *mut c_uint,
    lvalues: *mut *mut c_void,
    nl: c_uint,
) -> CUresult {
    guard(|| {
        tracing::debug!(
            code = ?code,
            nj,
            jopts_null = jopts.is_null(),
            jvalues_null = jvalues.is_null(),
            nl,
            lopts_null = lopts.is_null(),
            lvalues_null = lvalues.is_null(),
            "cuLibraryLoadData"
        );
        let image =
            image::read(code).inspect_err(|e| tracing::debug!(status = e, "image not read"))?;
        // SAFETY: forwarded arguments of this very call.
        let id = unsafe {
            load_library(
                LibraryApi::Data,
                &image,
                jopts,
                jvalues,
                nj,
                lopts,
                lvalues,
                nl,
            )
        }?;
        out(lib, id as Handle)
    })
}

unsafe extern "C" fn cu_library_load_from_file(
    lib: *mut Handle,
    fname: *const c_char,
    jopts: *mut c_uint,
    jvalues: *mut *mut c_void,
    nj: c_uint,
    lopts: *mut c_uint,
    lvalues: *mut *mut c_void,
    nl: c_uint,
) -> CUresult {
    guard(|| {
        let path = name_arg(fname)?;
        let (kind, bytes) = image::from_file(std::path::Path::new(&path))?;
        let image = ImageData {
            wrapper: 0,
            parts: vec![&bytes],
            kind,
        };
        // SAFETY: forwarded arguments of this very call.
        let id = unsafe {
            load_library(
                LibraryApi::File,
                &image,
                jopts,
                jvalues,
                nj,
                lopts,
                lvalues,
                nl,
            )
        }?;
        out(lib, id as Handle)
    })
}

unsafe extern "C" fn cu_library_unload(lib: Handle) -> CUresult {
    guard(|| {
        let id = lib as u64;
        write().libraries.remove(&id).ok_or(cu::INVALID_HANDLE)?;
        write().forget_owner(id);
        session()?.enqueue(&Request::Exec(ExecRequest::LibraryUnload { library: id }))
    })
}

unsafe extern "C" fn cu_library_get_kernel(
    k: *mut Handle,
    lib: Handle,
    name: *const c_char,
) -> CUresult {
    guard(|| {
        let (id, name) = (lib as u64, name_arg(name)?);
        if let Some(h) = read()
            .libraries
            .get(&id)
            .ok_or(cu::INVALID_HANDLE)?
            .kernels
            .get(&name)
        {
            return out(k, *h as Handle);
        }
        let r =
            session()?.call::<FunctionReply>(&Request::Exec(ExecRequest::LibraryGetKernel {
                library: id,
                name: name.clone(),
            }))?;
        let h = remember(r, true, id);
        if let Some(info) = write().libraries.get_mut(&id) {
            info.kernels.insert(name, h);
        }
        out(k, h as Handle)
    })
}

unsafe extern "C" fn cu_library_get_module(m: *mut Handle, lib: Handle) -> CUresult {
    guard(|| {
        let id = lib as u64;
        let ctx = crate::cuda::current_ctx()?;
        if let Some(h) = read()
            .libraries
            .get(&id)
            .ok_or(cu::INVALID_HANDLE)?
            .modules
            .get(&ctx)
        {
            return out(m, *h as Handle);
        }
        let module = mint(handle::MODULE);
        session()?.call::<()>(&Request::Exec(ExecRequest::LibraryGetModule {
            ctx,
            library: id,
            module,
        }))?;
        let mut s = write();
        s.modules.insert(
            module,
            ModuleInfo {
                library: id,
                ..Default::default()
            },
        );
        if let Some(info) = s.libraries.get_mut(&id) {
            info.modules.insert(ctx, module);
        }
        out(m, module as Handle)
    })
}

unsafe extern "C" fn cu_library_get_global(
    dptr: *mut u64,
    bytes: *mut usize,
    lib: Handle,
    name: *const c_char,
) -> CUresult {
    guard(|| {
        let (id, name) = (lib as u64, name_arg(name)?);
        let ctx = crate::cuda::current_ctx()?;
        let key = (ctx, name);
        let cached = read()
            .libraries
            .get(&id)
            .ok_or(cu::INVALID_HANDLE)?
            .globals
            .get(&key)
            .copied();
        let (p, n) = match cached {
            Some(v) => v,
            None => {
                let v = session()?.call::<(u64, u64)>(&Request::Exec(
                    ExecRequest::LibraryGetGlobal {
                        ctx,
                        library: id,
                        name: key.1.clone(),
                    },
                ))?;
                if let Some(info) = write().libraries.get_mut(&id) {
                    info.globals.insert(key, v);
                }
                crate::runtime::host_memory::device_allocated(ctx, v.0, v.1);
                v
            }
        };
        if !dptr.is_null() {
            out(dptr, p)?;
        }
        if !bytes.is_null() {
            out(bytes, n as usize)?;
        }
        Ok(())
    })
}

unsafe extern "C" fn cu_kernel_get_function(f: *mut Handle, k: Handle) -> CUresult {
    guard(|| {
        let id = k as u64;
        let ctx = crate::cuda::current_ctx()?;
        let owner = {
            let s = read();
            let info = s
                .funcs
                .get(&id)
                .filter(|i| i.kernel)
                .ok_or(cu::INVALID_HANDLE)?;
            if let Some(h) = info.per_ctx.get(&ctx) {
                return out(f, *h as Handle);
            }
            info.owner
        };
        let r =
            session()?.call::<FunctionReply>(&Request::Exec(ExecRequest::KernelGetFunction {
                ctx,
                kernel: id,
            }))?;
        let h = remember(r, false, owner);
        if let Some(info) = write().funcs.get_mut(&id) {
            info.per_ctx.insert(ctx, h);
        }
        out(f, h as Handle)
    })
}

pub(super) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    set(c::cuModuleLoad, cu_module_load as Entry);
    set(
        c::cuModuleGetFunctionCount,
        cu_module_get_function_count as Entry,
    );
    set(
        c::cuModuleEnumerateFunctions,
        cu_module_enumerate_functions as Entry,
    );
    set(c::cuModuleLoadData, cu_module_load_data as Entry);
    set(c::cuModuleLoadDataEx, cu_module_load_data_ex as Entry);
    set(c::cuModuleLoadFatBinary, cu_module_load_fat_binary as Entry);
    set(c::cuModuleUnload, cu_module_unload as Entry);
    set(c::cuModuleGetFunction, cu_module_get_function as Entry);
    set(c::cuModuleGetGlobal_v2, cu_module_get_global as Entry);
    set(
        c::cuModuleGetLoadingMode,
        cu_module_get_loading_mode as Entry,
    );
    set(c::cuLibraryLoadData, cu_library_load_data as Entry);
    set(c::cuLibraryLoadFromFile, cu_library_load_from_file as Entry);
    set(c::cuLibraryUnload, cu_library_unload as Entry);
    set(c::cuLibraryGetKernel, cu_library_get_kernel as Entry);
    set(c::cuLibraryGetModule, cu_library_get_module as Entry);
    set(c::cuLibraryGetGlobal, cu_library_get_global as Entry);
    set(c::cuKernelGetFunction, cu_kernel_get_function as Entry);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_may_be_null() {
        let opts = [1u32, 0];
        // SAFETY: two readable options, no values, as cuBLAS passes them.
        let got = unsafe { options(2, opts.as_ptr(), std::ptr::null()) }.unwrap();
        assert_eq!(
            got.iter().map(|o| (o.option, o.value)).collect::<Vec<_>>(),
            [(1, 0), (0, 0)]
        );
        let values = [7usize as *mut c_void, std::ptr::null_mut()];
        // SAFETY: two readable options and values.
        let got = unsafe { options(2, opts.as_ptr(), values.as_ptr()) }.unwrap();
        assert_eq!(got[0].value, 7);
        // SAFETY: null options with a nonzero count are refused before any read.
        let refused = unsafe { options(1, std::ptr::null(), std::ptr::null()) };
        assert_eq!(refused.unwrap_err(), cu::INVALID_VALUE);
    }
}
