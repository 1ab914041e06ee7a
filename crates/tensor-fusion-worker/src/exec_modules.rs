//! Modules, libraries, functions, kernels, attributes and occupancy on the
//! vendor driver (the rest of the domain is in `exec`).
//!
//! Parameter layouts come from `cuFuncGetParamInfo` / `cuKernelGetParamInfo`
//! (driver 12.4 and later); on an older driver they are unknown and the
//! client can only launch with the `extra` buffer form.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_uint, c_void, CString};

use libloading::Library;
use tf_protocol::exec_msgs::{
    LoadReply, Occupancy, OccupancyReply, Opt, ParamSlot, MAX_LOG, MAX_PARAMS,
};
use tf_protocol::status::cu;
use tf_worker_core::exec::{Found, Image, LoadOpts};
use tf_worker_core::BResult;

use crate::exec::{check, need, Config, CuResult, ExecDriver, Ptr, RawConfig};
use crate::loader::resolve;

type FnLoadData = unsafe extern "C" fn(*mut Ptr, *const c_void) -> CuResult;
type FnLoadDataEx =
    unsafe extern "C" fn(*mut Ptr, *const c_void, c_uint, *mut c_int, *mut Ptr) -> CuResult;
#[rustfmt::skip]
type FnLibLoad = unsafe extern "C" fn(*mut Ptr, *const c_void, *mut c_int, *mut Ptr, c_uint, *mut c_int, *mut Ptr, c_uint) -> CuResult;
type FnHandle = unsafe extern "C" fn(Ptr) -> CuResult;
type FnFuncCount = unsafe extern "C" fn(*mut c_uint, Ptr) -> CuResult;
type FnEnumerate = unsafe extern "C" fn(*mut Ptr, c_uint, Ptr) -> CuResult;
type FnFuncName = unsafe extern "C" fn(*mut *const c_char, Ptr) -> CuResult;
type FnGetNamed = unsafe extern "C" fn(*mut Ptr, Ptr, *const c_char) -> CuResult;
type FnGetGlobal = unsafe extern "C" fn(*mut u64, *mut usize, Ptr, *const c_char) -> CuResult;
type FnGetHandle = unsafe extern "C" fn(*mut Ptr, Ptr) -> CuResult;
type FnParamInfo = unsafe extern "C" fn(Ptr, usize, *mut usize, *mut usize) -> CuResult;
type FnFuncGetAttr = unsafe extern "C" fn(*mut c_int, c_int, Ptr) -> CuResult;
type FnFuncSetAttr = unsafe extern "C" fn(Ptr, c_int, c_int) -> CuResult;
type FnFuncCache = unsafe extern "C" fn(Ptr, c_uint) -> CuResult;
type FnKernelGetAttr = unsafe extern "C" fn(*mut c_int, c_int, Ptr, c_int) -> CuResult;
type FnKernelSetAttr = unsafe extern "C" fn(c_int, c_int, Ptr, c_int) -> CuResult;
type FnOccBlocks = unsafe extern "C" fn(*mut c_int, Ptr, c_int, usize) -> CuResult;
type FnOccBlocksFlags = unsafe extern "C" fn(*mut c_int, Ptr, c_int, usize, c_uint) -> CuResult;
type B2D = Option<unsafe extern "C" fn(c_int) -> usize>;
type FnOccPotential =
    unsafe extern "C" fn(*mut c_int, *mut c_int, Ptr, B2D, usize, c_int) -> CuResult;
#[rustfmt::skip]
type FnOccPotentialFlags = unsafe extern "C" fn(*mut c_int, *mut c_int, Ptr, B2D, usize, c_int, c_uint) -> CuResult;
type FnOccSmem = unsafe extern "C" fn(*mut usize, Ptr, c_int, c_int) -> CuResult;
type FnOccCluster = unsafe extern "C" fn(*mut c_int, Ptr, *const RawConfig) -> CuResult;

/// `CUjit_option`s naming log buffers and their sizes.
const JIT_INFO_LOG: u32 = 3;
const JIT_INFO_LOG_SIZE: u32 = 4;
const JIT_ERROR_LOG: u32 = 5;
const JIT_ERROR_LOG_SIZE: u32 = 6;
const WRAPPER_MAGIC: u32 = 0x4662_43B1;

pub(crate) struct ModuleFns {
    load_data: Option<FnLoadData>,
    load_data_ex: Option<FnLoadDataEx>,
    unload: Option<FnHandle>,
    get_function: Option<FnGetNamed>,
    get_global: Option<FnGetGlobal>,
    lib_load: Option<FnLibLoad>,
    lib_unload: Option<FnHandle>,
    lib_kernel: Option<FnGetNamed>,
    lib_module: Option<FnGetHandle>,
    lib_global: Option<FnGetGlobal>,
    kernel_function: Option<FnGetHandle>,
    func_param_info: Option<FnParamInfo>,
    kernel_param_info: Option<FnParamInfo>,
    func_get_attr: Option<FnFuncGetAttr>,
    func_set_attr: Option<FnFuncSetAttr>,
    func_cache: Option<FnFuncCache>,
    kernel_get_attr: Option<FnKernelGetAttr>,
    kernel_set_attr: Option<FnKernelSetAttr>,
    occ_blocks: Option<FnOccBlocks>,
    occ_blocks_flags: Option<FnOccBlocksFlags>,
    occ_potential: Option<FnOccPotential>,
    occ_potential_flags: Option<FnOccPotentialFlags>,
    occ_smem: Option<FnOccSmem>,
    occ_cluster_size: Option<FnOccCluster>,
    occ_clusters: Option<FnOccCluster>,
    func_count: Option<FnFuncCount>,
    enumerate: Option<FnEnumerate>,
    func_name: Option<FnFuncName>,
}

impl ModuleFns {
    pub(crate) fn new(lib: &'static Library) -> Self {
        // SAFETY: for every `resolve` below, the type alias is the C
        // signature of the versioned ABI symbols it is resolved for.
        unsafe {
            ModuleFns {
                load_data: resolve(lib, &["cuModuleLoadData"]),
                load_data_ex: resolve(lib, &["cuModuleLoadDataEx"]),
                unload: resolve(lib, &["cuModuleUnload"]),
                get_function: resolve(lib, &["cuModuleGetFunction"]),
                func_count: resolve(lib, &["cuModuleGetFunctionCount"]),
                enumerate: resolve(lib, &["cuModuleEnumerateFunctions"]),
                func_name: resolve(lib, &["cuFuncGetName"]),
                get_global: resolve(lib, &["cuModuleGetGlobal_v2"]),
                lib_load: resolve(lib, &["cuLibraryLoadData"]),
                lib_unload: resolve(lib, &["cuLibraryUnload"]),
                lib_kernel: resolve(lib, &["cuLibraryGetKernel"]),
                lib_module: resolve(lib, &["cuLibraryGetModule"]),
                lib_global: resolve(lib, &["cuLibraryGetGlobal"]),
                kernel_function: resolve(lib, &["cuKernelGetFunction"]),
                func_param_info: resolve(lib, &["cuFuncGetParamInfo"]),
                kernel_param_info: resolve(lib, &["cuKernelGetParamInfo"]),
                func_get_attr: resolve(lib, &["cuFuncGetAttribute"]),
                func_set_attr: resolve(lib, &["cuFuncSetAttribute"]),
                func_cache: resolve(lib, &["cuFuncSetCacheConfig"]),
                kernel_get_attr: resolve(lib, &["cuKernelGetAttribute"]),
                kernel_set_attr: resolve(lib, &["cuKernelSetAttribute"]),
                occ_blocks: resolve(lib, &["cuOccupancyMaxActiveBlocksPerMultiprocessor"]),
                occ_blocks_flags: resolve(
                    lib,
                    &["cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags"],
                ),
                occ_potential: resolve(lib, &["cuOccupancyMaxPotentialBlockSize"]),
                occ_potential_flags: resolve(lib, &["cuOccupancyMaxPotentialBlockSizeWithFlags"]),
                occ_smem: resolve(lib, &["cuOccupancyAvailableDynamicSMemPerBlock"]),
                occ_cluster_size: resolve(lib, &["cuOccupancyMaxPotentialClusterSize"]),
                occ_clusters: resolve(lib, &["cuOccupancyMaxActiveClusters"]),
            }
        }
    }
}

/// `__fatBinC_Wrapper_t`, rebuilt around the worker's copies of the parts.
#[repr(C)]
struct Wrapper {
    magic: u32,
    version: u32,
    data: *const c_void,
    fatbins: *const Ptr,
}

/// What a loaded module or library may still read: 8-byte aligned copies
/// of its parts (frames give no alignment), and a rebuilt wrapper.
pub(crate) struct Keep {
    _parts: Vec<Vec<u64>>,
    _list: Vec<Ptr>,
    _wrapper: Option<Box<Wrapper>>,
}

// SAFETY: the pointers in a `Keep` point into its own heap buffers, which
// only the driver reads; nothing is shared across threads unsynchronized.
unsafe impl Send for Keep {}

/// Copies the parts and returns the address to hand the driver.
fn prepare(image: &Image<'_>) -> BResult<(Keep, *const c_void)> {
    let parts: Vec<Vec<u64>> = image
        .parts
        .iter()
        .map(|p| {
            let mut v = vec![0u64; p.len().div_ceil(8)];
            // SAFETY: `v` holds at least `p.len()` bytes; the regions are disjoint.
            unsafe {
                std::ptr::copy_nonoverlapping(p.as_ptr(), v.as_mut_ptr().cast::<u8>(), p.len())
            };
            v
        })
        .collect();
    let first = parts
        .first()
        .ok_or(cu::INVALID_VALUE)?
        .as_ptr()
        .cast::<c_void>();
    if image.wrapper == 0 {
        return Ok((
            Keep {
                _parts: parts,
                _list: Vec::new(),
                _wrapper: None,
            },
            first,
        ));
    }
    let mut list: Vec<Ptr> = parts[1..].iter().map(|p| p.as_ptr() as Ptr).collect();
    list.push(std::ptr::null_mut());
    let wrapper = Box::new(Wrapper {
        magic: WRAPPER_MAGIC,
        version: image.wrapper,
        data: first,
        fatbins: if image.wrapper == 2 {
            list.as_ptr()
        } else {
            std::ptr::null()
        },
    });
    let at = (&*wrapper as *const Wrapper).cast();
    Ok((
        Keep {
            _parts: parts,
            _list: list,
            _wrapper: Some(wrapper),
        },
        at,
    ))
}

/// JIT options for the driver, with log buffers of the worker's own.
pub(crate) struct Jit {
    options: Vec<c_int>,
    values: Vec<Ptr>,
    info: Vec<u8>,
    error: Vec<u8>,
}

impl Jit {
    pub(crate) fn new(opts: &[Opt]) -> Self {
        let size_of = |want: u32| {
            opts.iter()
                .find(|o| o.option == want)
                .map_or(0, |o| (o.value as usize).min(MAX_LOG))
        };
        let mut j = Jit {
            options: Vec::new(),
            values: Vec::new(),
            info: vec![0u8; size_of(JIT_INFO_LOG_SIZE)],
            error: vec![0u8; size_of(JIT_ERROR_LOG_SIZE)],
        };
        for o in opts {
            let v = match o.option {
                JIT_INFO_LOG => j.info.as_mut_ptr().cast(),
                JIT_ERROR_LOG => j.error.as_mut_ptr().cast(),
                JIT_INFO_LOG_SIZE => j.info.len() as Ptr,
                JIT_ERROR_LOG_SIZE => j.error.len() as Ptr,
                _ => o.value as usize as Ptr,
            };
            j.options.push(o.option as c_int);
            j.values.push(v);
        }
        j
    }

    pub(crate) fn report(&self, log: &mut LoadReply) {
        let text = |b: &[u8]| b[..b.iter().position(|c| *c == 0).unwrap_or(b.len())].to_vec();
        log.values = self.values.iter().map(|v| *v as u64).collect();
        log.info_log = text(&self.info);
        log.error_log = text(&self.error);
    }

    pub(crate) fn ptrs(&mut self) -> (*mut c_int, *mut Ptr, c_uint) {
        if self.options.is_empty() {
            return (std::ptr::null_mut(), std::ptr::null_mut(), 0);
        }
        (
            self.options.as_mut_ptr(),
            self.values.as_mut_ptr(),
            self.options.len() as c_uint,
        )
    }
}

fn c_name(name: &str) -> BResult<CString> {
    CString::new(name).map_err(|_| cu::INVALID_VALUE)
}

/// The parameter layout, asking one index after another until the driver
/// says there is no such parameter. `None` when it cannot tell.
fn layout(f: Option<FnParamInfo>, h: Ptr) -> Option<Vec<ParamSlot>> {
    let f = f?;
    let mut out = Vec::new();
    for i in 0..MAX_PARAMS {
        let (mut offset, mut size) = (0usize, 0usize);
        // SAFETY: a function or kernel of this driver; both outputs writable.
        match unsafe { f(h, i, &mut offset, &mut size) } {
            cu::SUCCESS => out.push(ParamSlot {
                offset: u32::try_from(offset).ok()?,
                size: u32::try_from(size).ok()?,
            }),
            cu::INVALID_VALUE => return Some(out),
            e => {
                tracing::debug!(
                    status = e,
                    "cuFuncGetParamInfo failed; launches need the extra form"
                );
                return None;
            }
        }
    }
    None
}

thread_local! {
    /// The client's `blockSizeToDynamicSMemSize` answers for the occupancy
    /// call running on this thread.
    static B2D_TABLE: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// The callback handed to the driver: looks the block size up in the table.
/// Never unwinds (an out-of-range size answers 0).
extern "C" fn b2d(block: c_int) -> usize {
    B2D_TABLE.with(|t| {
        t.try_borrow()
            .ok()
            .and_then(|t| {
                usize::try_from(block - 1)
                    .ok()
                    .and_then(|i| t.get(i).copied())
            })
            .unwrap_or(0) as usize
    })
}

impl ExecDriver {
    pub(crate) fn load(
        &self,
        library: bool,
        image: &Image<'_>,
        opts: &LoadOpts<'_>,
        log: &mut LoadReply,
    ) -> BResult<u64> {
        let (keep, at) = prepare(image)?;
        let mut jit = Jit::new(opts.jit);
        let (jo, jv, jn) = jit.ptrs();
        let mut h: Ptr = std::ptr::null_mut();
        let r = if library {
            let mut lo: Vec<c_int> = opts.library.iter().map(|o| o.option as c_int).collect();
            let mut lv: Vec<Ptr> = opts
                .library
                .iter()
                .map(|o| o.value as usize as Ptr)
                .collect();
            let (lop, lvp) = if lo.is_empty() {
                (std::ptr::null_mut(), std::ptr::null_mut())
            } else {
                (lo.as_mut_ptr(), lv.as_mut_ptr())
            };
            // SAFETY: the image copy and the option arrays live across the
            // call; `h` is a writable CUlibrary slot.
            unsafe { need(self.m.lib_load)?(&mut h, at, jo, jv, jn, lop, lvp, lo.len() as c_uint) }
        } else if jn == 0 {
            // SAFETY: the image copy lives across the call (and after, in `kept`).
            unsafe { need(self.m.load_data)?(&mut h, at) }
        } else {
            // SAFETY: as above, with option arrays of `jn` entries.
            unsafe { need(self.m.load_data_ex)?(&mut h, at, jn, jo, jv) }
        };
        if opts.want_log {
            jit.report(log);
        }
        check(r)?;
        self.kept().insert(h as u64, keep);
        Ok(h as u64)
    }

    pub(crate) fn unload(&self, library: bool, h: u64) -> BResult<()> {
        let f = need(if library {
            self.m.lib_unload
        } else {
            self.m.unload
        })?;
        // SAFETY: a module or library this driver loaded.
        check(unsafe { f(h as Ptr) })?;
        self.kept().remove(&h);
        Ok(())
    }

    /// The names of a module's functions (`cuModuleEnumerateFunctions`,
    /// then `cuFuncGetName` of each), in the driver's order.
    pub(crate) fn function_names(&self, module: u64) -> BResult<Vec<String>> {
        let mut n: c_uint = 0;
        // SAFETY: a module of this driver and a writable count.
        check(unsafe { need(self.m.func_count)?(&mut n, module as Ptr) })?;
        let mut fns: Vec<Ptr> = vec![std::ptr::null_mut(); n as usize];
        // SAFETY: `fns` has room for the `n` handles asked for.
        check(unsafe { need(self.m.enumerate)?(fns.as_mut_ptr(), n, module as Ptr) })?;
        let get_name = need(self.m.func_name)?;
        fns.into_iter()
            .map(|f| {
                let mut p: *const c_char = std::ptr::null();
                // SAFETY: a function the driver just listed; a writable slot.
                check(unsafe { get_name(&mut p, f) })?;
                if p.is_null() {
                    return Err(cu::UNKNOWN);
                }
                // SAFETY: the driver returns a NUL-terminated name that
                // lives as long as the module.
                Ok(unsafe { std::ffi::CStr::from_ptr(p) }
                    .to_string_lossy()
                    .into_owned())
            })
            .collect()
    }

    pub(crate) fn get_function(&self, module: u64, name: &str) -> BResult<Found> {
        let name = c_name(name)?;
        let mut f: Ptr = std::ptr::null_mut();
        // SAFETY: a module of this driver, a NUL-terminated name, a writable slot.
        check(unsafe { need(self.m.get_function)?(&mut f, module as Ptr, name.as_ptr()) })?;
        Ok((f as u64, layout(self.m.func_param_info, f)))
    }

    pub(crate) fn get_kernel(&self, library: u64, name: &str) -> BResult<Found> {
        let name = c_name(name)?;
        let mut k: Ptr = std::ptr::null_mut();
        // SAFETY: a library of this driver, a NUL-terminated name, a writable slot.
        check(unsafe { need(self.m.lib_kernel)?(&mut k, library as Ptr, name.as_ptr()) })?;
        Ok((k as u64, layout(self.m.kernel_param_info, k)))
    }

    pub(crate) fn get_global(&self, library: bool, h: u64, name: &str) -> BResult<(u64, u64)> {
        let name = c_name(name)?;
        let f = need(if library {
            self.m.lib_global
        } else {
            self.m.get_global
        })?;
        let (mut p, mut n) = (0u64, 0usize);
        // SAFETY: a module or library of this driver; writable outputs.
        check(unsafe { f(&mut p, &mut n, h as Ptr, name.as_ptr()) })?;
        Ok((p, n as u64))
    }

    pub(crate) fn library_module(&self, library: u64) -> BResult<u64> {
        let mut m: Ptr = std::ptr::null_mut();
        // SAFETY: a library of this driver; a writable slot.
        check(unsafe { need(self.m.lib_module)?(&mut m, library as Ptr) })?;
        Ok(m as u64)
    }

    pub(crate) fn kernel_function(&self, kernel: u64) -> BResult<u64> {
        let mut f: Ptr = std::ptr::null_mut();
        // SAFETY: a kernel of this driver; a writable slot.
        check(unsafe { need(self.m.kernel_function)?(&mut f, kernel as Ptr) })?;
        Ok(f as u64)
    }

    pub(crate) fn func_attr(&self, f: u64, attrib: i32) -> BResult<i32> {
        let mut v: c_int = 0;
        // SAFETY: a function (or kernel) of this driver; a writable int.
        check(unsafe { need(self.m.func_get_attr)?(&mut v, attrib, f as Ptr) })?;
        Ok(v)
    }

    pub(crate) fn func_set_attr(&self, f: u64, attrib: i32, value: i32) -> BResult<()> {
        // SAFETY: a function of this driver; values by value.
        check(unsafe { need(self.m.func_set_attr)?(f as Ptr, attrib, value) })
    }

    pub(crate) fn func_cache_config(&self, f: u64, config: u32) -> BResult<()> {
        // SAFETY: a function of this driver; the config by value.
        check(unsafe { need(self.m.func_cache)?(f as Ptr, config) })
    }

    pub(crate) fn kernel_attr(&self, k: u64, attrib: i32, dev: i32) -> BResult<i32> {
        let mut v: c_int = 0;
        // SAFETY: a kernel of this driver; a writable int; the device by value.
        check(unsafe { need(self.m.kernel_get_attr)?(&mut v, attrib, k as Ptr, dev) })?;
        Ok(v)
    }

    pub(crate) fn kernel_set_attr(&self, k: u64, attrib: i32, value: i32, dev: i32) -> BResult<()> {
        // SAFETY: a kernel of this driver; values by value.
        check(unsafe { need(self.m.kernel_set_attr)?(attrib, value, k as Ptr, dev) })
    }

    pub(crate) fn occupancy(&self, f: u64, q: &Occupancy) -> BResult<OccupancyReply> {
        let f = f as Ptr;
        let (mut a, mut b): (c_int, c_int) = (0, 0);
        match q {
            Occupancy::MaxActiveBlocks {
                block_size,
                dynamic_smem,
                flags,
            } => {
                let smem = usize::try_from(*dynamic_smem).map_err(|_| cu::INVALID_VALUE)?;
                let r = match flags {
                    // SAFETY: a function of this driver; a writable int.
                    None => unsafe { need(self.m.occ_blocks)?(&mut a, f, *block_size, smem) },
                    // SAFETY: as above.
                    Some(fl) => unsafe {
                        need(self.m.occ_blocks_flags)?(&mut a, f, *block_size, smem, *fl)
                    },
                };
                check(r)?;
                Ok(OccupancyReply(a.into(), 0))
            }
            Occupancy::MaxPotentialBlockSize {
                dynamic_smem,
                block_size_limit,
                flags,
                smem_by_block_size,
            } => {
                let smem = usize::try_from(*dynamic_smem).map_err(|_| cu::INVALID_VALUE)?;
                let cb: B2D = if smem_by_block_size.is_empty() {
                    None
                } else {
                    B2D_TABLE.with(|t| t.borrow_mut().clone_from(smem_by_block_size));
                    Some(b2d)
                };
                let r = match flags {
                    // SAFETY: writable ints; the callback only reads this thread's table.
                    None => unsafe {
                        need(self.m.occ_potential)?(&mut a, &mut b, f, cb, smem, *block_size_limit)
                    },
                    // SAFETY: as above.
                    Some(fl) => unsafe {
                        need(self.m.occ_potential_flags)?(
                            &mut a,
                            &mut b,
                            f,
                            cb,
                            smem,
                            *block_size_limit,
                            *fl,
                        )
                    },
                };
                B2D_TABLE.with(|t| t.borrow_mut().clear());
                check(r)?;
                Ok(OccupancyReply(a.into(), b.into()))
            }
            Occupancy::AvailableDynamicSmem {
                num_blocks,
                block_size,
            } => {
                let mut n = 0usize;
                // SAFETY: a function of this driver; a writable size_t.
                check(unsafe { need(self.m.occ_smem)?(&mut n, f, *num_blocks, *block_size) })?;
                Ok(OccupancyReply(n as i64, 0))
            }
            Occupancy::MaxPotentialClusterSize(shape) | Occupancy::MaxActiveClusters(shape) => {
                let g = if matches!(q, Occupancy::MaxActiveClusters(_)) {
                    self.m.occ_clusters
                } else {
                    self.m.occ_cluster_size
                };
                let cfg = Config::new(shape);
                let raw = cfg.raw();
                // SAFETY: `raw` and its attributes live across the call.
                check(unsafe { need(g)?(&mut a, f, &raw) })?;
                Ok(OccupancyReply(a.into(), 0))
            }
        }
    }
}
