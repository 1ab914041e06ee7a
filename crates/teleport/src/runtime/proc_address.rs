//! `cuGetProcAddress` and `cuGetProcAddress_v2`.
//!
//! cudart resolves nearly every driver function through these: it first
//! asks for `cuGetProcAddress` itself and then uses *that* pointer for the
//! ~440 other lookups, so the answers must be addresses of our
//! `libcuda.so.1` exports (never of functions inside libteleport: cudart
//! keeps and compares them, and other libraries may `dladdr` them). Which
//! export answers a (name, CUDA version, flags) request comes from the
//! generated table (`tf_api::procaddr`), as the real driver answers it.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use tf_api::procaddr::{self, Lookup};
use tf_api::{CUDA_COUNT, CUDA_NAMES};
use tf_protocol::status::cu;

use crate::cuda::{guard, out};

/// Addresses of our libcuda's exports, indexed like `CUDA_NAMES` (0 where
/// a name could not be resolved), or why there are none.
fn exports() -> Result<&'static [usize], u32> {
    static E: OnceLock<Result<Box<[usize]>, String>> = OnceLock::new();
    E.get_or_init(resolve_exports).as_deref().map_err(|why| {
        tracing::error!("cuGetProcAddress cannot answer: {why}");
        cu::NOT_INITIALIZED
    })
}

fn resolve_exports() -> Result<Box<[usize]>, String> {
    // Our libcuda.so.1 is loaded (that is how this call arrived); NOLOAD
    // finds it by SONAME whichever way it was loaded, without loading any
    // other library of that name.
    // SAFETY: a NUL-terminated name; RTLD_NOLOAD never loads anything.
    let h = unsafe { libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if h.is_null() {
        return Err("libcuda.so.1 is not loaded in this process".into());
    }
    // SAFETY: a live handle and a NUL-terminated name.
    if unsafe { libc::dlsym(h, c"TENSOR_FUSION_CLIENT".as_ptr()) }.is_null() {
        return Err(
            "the libcuda.so.1 loaded in this process is not the TensorFusion client".into(),
        );
    }
    let mut v = vec![0usize; CUDA_COUNT];
    for (i, name) in CUDA_NAMES.iter().enumerate() {
        let c = std::ffi::CString::new(*name).map_err(|e| e.to_string())?;
        // SAFETY: a live handle and a NUL-terminated name.
        v[i] = unsafe { libc::dlsym(h, c.as_ptr()) } as usize;
    }
    // The handle is kept: libcuda stays loaded as long as we are.
    Ok(v.into_boxed_slice())
}

/// The driver version this client advertises (`cuDriverGetVersion`).
/// Without a worker, no version is refused, so that cudart goes on to
/// `cuInit`, which reports why the worker cannot be reached.
fn advertised_version() -> i32 {
    crate::cuda::session().map_or(i32::MAX, |c| c.ack.driver_version)
}

fn lookup(symbol: *const c_char, version: c_int, flags: u64) -> (Option<usize>, Lookup, String) {
    // SAFETY: the caller checked non-null; cuGetProcAddress takes a
    // NUL-terminated name.
    let name = unsafe { CStr::from_ptr(symbol) }.to_string_lossy();
    let l = procaddr::lookup(&name, version, flags, advertised_version());
    let addr = match l {
        Lookup::Found(i) => exports().ok().map(|e| e[i]).filter(|a| *a != 0),
        _ => None,
    };
    (addr, l, name.into_owned())
}

/// Shared by both versions; `status` may be null. Drivers report "not
/// found" differently by version: `_v2` with its status (and, like driver
/// 535, `CUDA_SUCCESS`), v1 with `CUDA_ERROR_NOT_FOUND`; the table records
/// what the swept driver does.
fn get_proc_address(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut u32,
    v1: bool,
) -> Result<(), u32> {
    // (The real driver crashes on null pointers.)
    if symbol.is_null() || pfn.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    let log = super::may_log();
    if log {
        crate::client::ensure_logging();
    }
    let (addr, l, name) = lookup(symbol, version, flags);
    if l == Lookup::InvalidValue {
        // Like driver 580: neither the pointer nor the status is written.
        if log {
            tracing::debug!(symbol = %name, version, flags, "cuGetProcAddress: invalid value");
        }
        return Err(cu::INVALID_VALUE);
    }
    out(pfn, std::ptr::null_mut())?;
    let answer = match (l, addr) {
        (Lookup::Found(i), Some(a)) => {
            if log {
                tracing::debug!(symbol = %name, version, flags, answer = %CUDA_NAMES[i], "cuGetProcAddress");
            }
            if !status.is_null() {
                out(status, procaddr::STATUS_SUCCESS)?;
            }
            return out(pfn, a as *mut c_void);
        }
        (Lookup::Found(i), None) => {
            // Our library lacks an export the table names: a build mismatch.
            tracing::warn!(symbol = %name, export = CUDA_NAMES[i], "cuGetProcAddress: export missing from libcuda.so.1");
            Lookup::SymbolNotFound
        }
        (other, _) => other,
    };
    if log {
        tracing::debug!(symbol = %name, version, flags, answer = ?answer, "cuGetProcAddress");
    }
    match answer.status() {
        Some(s) => {
            if !status.is_null() {
                out(status, s)?;
            }
            match if v1 {
                procaddr::NOT_FOUND_RESULT_V1
            } else {
                procaddr::NOT_FOUND_RESULT
            } {
                0 => Ok(()),
                e => Err(e),
            }
        }
        None => Err(cu::INVALID_VALUE),
    }
}

/// `CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int
/// cudaVersion, cuuint64_t flags, CUdriverProcAddressQueryResult *symbolStatus)`.
unsafe extern "C" fn cu_get_proc_address_v2(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
    status: *mut u32,
) -> u32 {
    guard(|| get_proc_address(symbol, pfn, version, flags, status, false))
}

/// `CUresult cuGetProcAddress(const char *symbol, void **pfn, int
/// cudaVersion, cuuint64_t flags)` (CUDA 11.3–11.8).
unsafe extern "C" fn cu_get_proc_address(
    symbol: *const c_char,
    pfn: *mut *mut c_void,
    version: c_int,
    flags: u64,
) -> u32 {
    guard(|| get_proc_address(symbol, pfn, version, flags, std::ptr::null_mut(), true))
}

/// Points the export slots of the functions implemented here at them.
pub(super) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use tf_api::cuda_fn as c;
    set(
        c::cuGetProcAddress_v2,
        cu_get_proc_address_v2 as crate::Entry,
    );
    set(c::cuGetProcAddress, cu_get_proc_address as crate::Entry);
    if procaddr::PROVISIONAL {
        tracing::debug!("cuGetProcAddress table: {}", procaddr::SOURCE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_arguments_are_invalid() {
        let mut p: *mut c_void = std::ptr::dangling_mut::<c_void>();
        let r = get_proc_address(
            std::ptr::null(),
            &mut p,
            12000,
            0,
            std::ptr::null_mut(),
            false,
        );
        assert_eq!(r, Err(cu::INVALID_VALUE));
        let r = get_proc_address(
            c"cuInit".as_ptr(),
            std::ptr::null_mut(),
            12000,
            0,
            std::ptr::null_mut(),
            true,
        );
        assert_eq!(r, Err(cu::INVALID_VALUE));
    }
}
