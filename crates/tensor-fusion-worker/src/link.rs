//! Linking and tensor maps on the vendor driver.
//!
//! A link runs whole, in the client's context: `cuLinkCreate_v2` with the
//! client's options (log buffers replaced by the worker's own, as for
//! loads), one `cuLinkAddData_v2` per input, `cuLinkComplete`, a copy of
//! the linked image (the driver frees it with the link state), then
//! `cuLinkDestroy`. Tensor maps are encoded into a 128-byte aligned map of
//! the worker's and copied out.

use std::ffi::{c_char, c_int, c_uint, c_void, CString};

use libloading::Library;
use tf_protocol::exec_msgs::{
    LoadReply, Opt, TensorMapEncode, TensorMapShape, MAX_TENSOR_RANK, TENSOR_MAP_BYTES,
};
use tf_protocol::status::cu;
use tf_worker_core::exec::LinkPart;
use tf_worker_core::BResult;

use crate::exec::{check, need, CuResult, Ptr};
use crate::exec_modules::Jit;
use crate::loader::resolve;

type FnLinkCreate = unsafe extern "C" fn(c_uint, *mut c_int, *mut Ptr, *mut Ptr) -> CuResult;
#[rustfmt::skip]
type FnLinkAddData = unsafe extern "C" fn(Ptr, c_int, *mut c_void, usize, *const c_char, c_uint, *mut c_int, *mut Ptr) -> CuResult;
type FnLinkComplete = unsafe extern "C" fn(Ptr, *mut Ptr, *mut usize) -> CuResult;
type FnHandle = unsafe extern "C" fn(Ptr) -> CuResult;
#[rustfmt::skip]
type FnEncodeTiled = unsafe extern "C" fn(*mut RawMap, c_uint, u32, Ptr, *const u64, *const u64, *const u32, *const u32, c_uint, c_uint, c_uint, c_uint) -> CuResult;
#[rustfmt::skip]
type FnEncodeIm2col = unsafe extern "C" fn(*mut RawMap, c_uint, u32, Ptr, *const u64, *const u64, *const c_int, *const c_int, u32, u32, *const u32, c_uint, c_uint, c_uint, c_uint) -> CuResult;
#[rustfmt::skip]
type FnEncodeIm2colWide = unsafe extern "C" fn(*mut RawMap, c_uint, u32, Ptr, *const u64, *const u64, c_int, c_int, u32, u32, *const u32, c_uint, c_uint, c_uint, c_uint, c_uint) -> CuResult;
type FnReplaceAddress = unsafe extern "C" fn(*mut RawMap, Ptr) -> CuResult;

/// `CUtensorMap`: the driver requires 64-byte alignment, the type has 128.
#[repr(C, align(128))]
pub(crate) struct RawMap([u8; TENSOR_MAP_BYTES]);

pub(crate) struct LinkFns {
    create: Option<FnLinkCreate>,
    add_data: Option<FnLinkAddData>,
    complete: Option<FnLinkComplete>,
    destroy: Option<FnHandle>,
    tiled: Option<FnEncodeTiled>,
    im2col: Option<FnEncodeIm2col>,
    im2col_wide: Option<FnEncodeIm2colWide>,
    replace: Option<FnReplaceAddress>,
}

impl LinkFns {
    pub(crate) fn new(lib: &'static Library) -> Self {
        // SAFETY: for every `resolve` below, the type alias is the C
        // signature of the versioned ABI symbol it is resolved for.
        unsafe {
            LinkFns {
                create: resolve(lib, &["cuLinkCreate_v2"]),
                add_data: resolve(lib, &["cuLinkAddData_v2"]),
                complete: resolve(lib, &["cuLinkComplete"]),
                destroy: resolve(lib, &["cuLinkDestroy"]),
                tiled: resolve(lib, &["cuTensorMapEncodeTiled"]),
                im2col: resolve(lib, &["cuTensorMapEncodeIm2col"]),
                im2col_wide: resolve(lib, &["cuTensorMapEncodeIm2colWide"]),
                replace: resolve(lib, &["cuTensorMapReplaceAddress"]),
            }
        }
    }

    /// Links `inputs`; run with the client's context current. `log` gets
    /// the driver's logs and option values also when the link fails.
    pub(crate) fn link(
        &self,
        jit_opts: &[Opt],
        inputs: &[LinkPart<'_>],
        log: &mut LoadReply,
    ) -> BResult<Vec<u8>> {
        let (create, add, complete, destroy) = (
            need(self.create)?,
            need(self.add_data)?,
            need(self.complete)?,
            need(self.destroy)?,
        );
        let mut jit = Jit::new(jit_opts);
        let (jo, jv, jn) = jit.ptrs();
        let mut state: Ptr = std::ptr::null_mut();
        // SAFETY: `jn` options and values in arrays `jit` owns (log buffers
        // of the sizes the options say); `state` is writable.
        let created = check(unsafe { create(jn, jo, jv, &mut state) });
        if let Err(e) = created {
            jit.report(log);
            return Err(e);
        }
        let result = (|| {
            for p in inputs {
                // The driver may want aligned input (ELF, fatbin): frames give none.
                let mut data = vec![0u64; p.data.len().div_ceil(8)];
                // SAFETY: `data` holds at least `p.data.len()` bytes; disjoint.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        p.data.as_ptr(),
                        data.as_mut_ptr().cast::<u8>(),
                        p.data.len(),
                    )
                };
                let name = CString::new(p.name).map_err(|_| cu::INVALID_VALUE)?;
                let mut o: Vec<c_int> = p.jit.iter().map(|o| o.option as c_int).collect();
                let mut v: Vec<Ptr> = p.jit.iter().map(|o| o.value as usize as Ptr).collect();
                let (op, vp) = if o.is_empty() {
                    (std::ptr::null_mut(), std::ptr::null_mut())
                } else {
                    (o.as_mut_ptr(), v.as_mut_ptr())
                };
                // SAFETY: a link state of this driver; the input's bytes,
                // its NUL-terminated name and its options (checked values,
                // no pointers) live until the call returns.
                check(unsafe {
                    add(
                        state,
                        p.kind as c_int,
                        data.as_mut_ptr().cast(),
                        p.data.len(),
                        name.as_ptr(),
                        o.len() as c_uint,
                        op,
                        vp,
                    )
                })?;
            }
            let (mut cubin, mut size): (Ptr, usize) = (std::ptr::null_mut(), 0);
            // SAFETY: a link state of this driver; both outputs writable.
            check(unsafe { complete(state, &mut cubin, &mut size) })?;
            if cubin.is_null() {
                return Err(cu::UNKNOWN);
            }
            // SAFETY: the driver's linked image, `size` bytes, valid until
            // `cuLinkDestroy` below.
            Ok(unsafe { std::slice::from_raw_parts(cubin.cast::<u8>(), size) }.to_vec())
        })();
        jit.report(log);
        // SAFETY: the link state created above, destroyed once.
        let destroyed = unsafe { destroy(state) };
        if destroyed != cu::SUCCESS {
            tracing::warn!(status = destroyed, "cuLinkDestroy failed");
        }
        result
    }

    /// Encodes a tensor map; run with the client's context current.
    pub(crate) fn encode(&self, e: &TensorMapEncode) -> BResult<[u8; TENSOR_MAP_BYTES]> {
        // Fixed arrays: always valid pointers, whatever the rank (the
        // decoder checked the lengths against it).
        let mut dims = [0u64; MAX_TENSOR_RANK];
        let mut strides = [0u64; MAX_TENSOR_RANK];
        let mut estr = [0u32; MAX_TENSOR_RANK];
        dims[..e.dims.len()].copy_from_slice(&e.dims);
        strides[..e.strides.len()].copy_from_slice(&e.strides);
        estr[..e.element_strides.len()].copy_from_slice(&e.element_strides);
        let mut map = RawMap([0; TENSOR_MAP_BYTES]);
        let addr = e.address as usize as Ptr;
        let r = match &e.shape {
            TensorMapShape::Tiled { box_dim } => {
                let f = need(self.tiled)?;
                let mut b = [0u32; MAX_TENSOR_RANK];
                b[..box_dim.len()].copy_from_slice(box_dim);
                // SAFETY: a writable aligned map; arrays of MAX_TENSOR_RANK
                // entries, at least the rank; the address is only encoded.
                unsafe {
                    f(
                        &mut map,
                        e.dtype,
                        e.rank,
                        addr,
                        dims.as_ptr(),
                        strides.as_ptr(),
                        b.as_ptr(),
                        estr.as_ptr(),
                        e.interleave,
                        e.swizzle,
                        e.l2,
                        e.oob,
                    )
                }
            }
            TensorMapShape::Im2col {
                lower,
                upper,
                channels,
                pixels,
            } => {
                let f = need(self.im2col)?;
                let (mut lo, mut up) =
                    ([0 as c_int; MAX_TENSOR_RANK], [0 as c_int; MAX_TENSOR_RANK]);
                lo[..lower.len()].copy_from_slice(lower);
                up[..upper.len()].copy_from_slice(upper);
                // SAFETY: as above.
                unsafe {
                    f(
                        &mut map,
                        e.dtype,
                        e.rank,
                        addr,
                        dims.as_ptr(),
                        strides.as_ptr(),
                        lo.as_ptr(),
                        up.as_ptr(),
                        *channels,
                        *pixels,
                        estr.as_ptr(),
                        e.interleave,
                        e.swizzle,
                        e.l2,
                        e.oob,
                    )
                }
            }
            TensorMapShape::Im2colWide {
                lower,
                upper,
                channels,
                pixels,
                mode,
            } => {
                let f = need(self.im2col_wide)?;
                // SAFETY: as above.
                unsafe {
                    f(
                        &mut map,
                        e.dtype,
                        e.rank,
                        addr,
                        dims.as_ptr(),
                        strides.as_ptr(),
                        *lower,
                        *upper,
                        *channels,
                        *pixels,
                        estr.as_ptr(),
                        e.interleave,
                        *mode,
                        e.swizzle,
                        e.l2,
                        e.oob,
                    )
                }
            }
        };
        check(r)?;
        Ok(map.0)
    }

    /// `cuTensorMapReplaceAddress` on a copy of the client's map.
    pub(crate) fn replace(
        &self,
        map: &[u8; TENSOR_MAP_BYTES],
        address: u64,
    ) -> BResult<[u8; TENSOR_MAP_BYTES]> {
        let f = need(self.replace)?;
        let mut m = RawMap(*map);
        // SAFETY: a writable aligned map; the address is only encoded.
        check(unsafe { f(&mut m, address as usize as Ptr) })?;
        Ok(m.0)
    }
}
