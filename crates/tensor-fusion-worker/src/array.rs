//! CUDA arrays, copies with an array side, texture and surface objects on
//! the vendor driver: `ArrayBackend` for [`RealBackend`]. Every copy slice
//! is a `cuMemcpy3D_v2` (`cuMemcpy3DAsync_v2` on a stream) of depth 1: only
//! the 3D descriptor can name a slice (`srcZ`/`dstZ`) of a 3D array.
//!
//! The worker core checks every array id, region, device range and object
//! before a call gets here; the arrays passed in are the driver's own.

use std::ffi::{c_uint, c_void};

use tf_protocol::array_msgs::{resource, ArrayDesc, Resource, TexDesc, ViewDesc};
use tf_protocol::status::cu;
use tf_worker_core::array::{ADst, ASrc};
use tf_worker_core::{ArrayBackend, BResult, BackendCtx};

use crate::exec::{check, need, CuResult, Ptr};
use crate::loader::{resolve, Loaded};
use crate::real_backend::RealBackend;

/// `CUDA_ARRAY3D_DESCRIPTOR`.
#[repr(C)]
struct RawArray3DDesc {
    width: usize,
    height: usize,
    depth: usize,
    format: c_uint,
    channels: c_uint,
    flags: c_uint,
}

/// `CUDA_MEMCPY3D` (memory types: 1 host, 2 device, 3 array).
#[repr(C)]
struct RawCopy3D {
    src_x: usize,
    src_y: usize,
    src_z: usize,
    src_lod: usize,
    src_type: c_uint,
    src_host: *const c_void,
    src_device: u64,
    src_array: Ptr,
    reserved0: Ptr,
    src_pitch: usize,
    src_height: usize,
    dst_x: usize,
    dst_y: usize,
    dst_z: usize,
    dst_lod: usize,
    dst_type: c_uint,
    dst_host: *mut c_void,
    dst_device: u64,
    dst_array: Ptr,
    reserved1: Ptr,
    dst_pitch: usize,
    dst_height: usize,
    width: usize,
    height: usize,
    depth: usize,
}

/// `CUDA_RESOURCE_DESC`: the type, a 128-byte union, the flags. The union
/// is written as the pitch-2D member (the largest; the array member is its
/// first field, the linear member its first four).
#[repr(C)]
struct RawResourceDesc {
    kind: c_uint,
    /// `hArray` or `devPtr`.
    handle: u64,
    format: c_uint,
    channels: c_uint,
    /// `sizeInBytes` (linear) or `width` (pitch 2D).
    size_or_width: usize,
    height: usize,
    pitch: usize,
    reserved: [u8; 128 - 40],
    flags: c_uint,
}

/// `CUDA_TEXTURE_DESC`.
#[repr(C)]
struct RawTexDesc {
    address: [c_uint; 3],
    filter: c_uint,
    flags: c_uint,
    max_anisotropy: c_uint,
    mipmap_filter: c_uint,
    mipmap_bias: f32,
    min_clamp: f32,
    max_clamp: f32,
    border: [f32; 4],
    reserved: [i32; 12],
}

/// `CUDA_RESOURCE_VIEW_DESC`.
#[repr(C)]
struct RawViewDesc {
    format: c_uint,
    width: usize,
    height: usize,
    depth: usize,
    first_level: c_uint,
    last_level: c_uint,
    first_layer: c_uint,
    last_layer: c_uint,
    reserved: [c_uint; 16],
}

const _: () = assert!(std::mem::size_of::<RawArray3DDesc>() == 40);
const _: () = assert!(std::mem::size_of::<RawCopy3D>() == 200);
const _: () = assert!(std::mem::size_of::<RawResourceDesc>() == 144);
const _: () = assert!(std::mem::offset_of!(RawResourceDesc, flags) == 136);
const _: () = assert!(std::mem::size_of::<RawTexDesc>() == 104);
const _: () = assert!(std::mem::size_of::<RawViewDesc>() == 112);

type FnArrayCreate = unsafe extern "C" fn(*mut Ptr, *const RawArray3DDesc) -> CuResult;
type FnHandle = unsafe extern "C" fn(Ptr) -> CuResult;
type FnCopy3D = unsafe extern "C" fn(*const RawCopy3D) -> CuResult;
type FnCopy3DAsync = unsafe extern "C" fn(*const RawCopy3D, Ptr) -> CuResult;
type FnTexCreate = unsafe extern "C" fn(
    *mut u64,
    *const RawResourceDesc,
    *const RawTexDesc,
    *const RawViewDesc,
) -> CuResult;
type FnSurfCreate = unsafe extern "C" fn(*mut u64, *const RawResourceDesc) -> CuResult;
type FnObject = unsafe extern "C" fn(u64) -> CuResult;
type FnSync = unsafe extern "C" fn(Ptr) -> CuResult;

/// The driver's entry points for this domain.
pub(crate) struct ArrayDriver {
    create: Option<FnArrayCreate>,
    destroy: Option<FnHandle>,
    copy_3d: Option<FnCopy3D>,
    copy_3d_async: Option<FnCopy3DAsync>,
    tex_create: Option<FnTexCreate>,
    tex_destroy: Option<FnObject>,
    surf_create: Option<FnSurfCreate>,
    surf_destroy: Option<FnObject>,
    stream_sync: Option<FnSync>,
}

impl ArrayDriver {
    pub(crate) fn new(loaded: &Loaded) -> Self {
        let lib = loaded.lib;
        // SAFETY: for every `resolve` below, the type alias is the C
        // signature of the versioned ABI symbol it is resolved for
        // (`CUarray` and `CUstream` are pointers, `CUtexObject` and
        // `CUsurfObject` are 64-bit integers).
        unsafe {
            ArrayDriver {
                create: resolve(lib, &["cuArray3DCreate_v2"]),
                destroy: resolve(lib, &["cuArrayDestroy"]),
                copy_3d: resolve(lib, &["cuMemcpy3D_v2"]),
                copy_3d_async: resolve(lib, &["cuMemcpy3DAsync_v2"]),
                tex_create: resolve(lib, &["cuTexObjectCreate"]),
                tex_destroy: resolve(lib, &["cuTexObjectDestroy"]),
                surf_create: resolve(lib, &["cuSurfObjectCreate"]),
                surf_destroy: resolve(lib, &["cuSurfObjectDestroy"]),
                stream_sync: resolve(lib, &["cuStreamSynchronize"]),
            }
        }
    }
}

fn size(v: u64) -> BResult<usize> {
    usize::try_from(v).map_err(|_| cu::INVALID_VALUE)
}

fn raw_resource(r: &Resource) -> BResult<RawResourceDesc> {
    let mut raw = RawResourceDesc {
        kind: r.kind,
        handle: 0,
        format: 0,
        channels: 0,
        size_or_width: 0,
        height: 0,
        pitch: 0,
        reserved: [0; 128 - 40],
        flags: r.flags,
    };
    match r.kind {
        resource::ARRAY => raw.handle = r.array,
        resource::LINEAR => {
            (raw.handle, raw.format, raw.channels) = (r.ptr, r.format, r.channels);
            raw.size_or_width = size(r.size)?;
        }
        resource::PITCH2D => {
            (raw.handle, raw.format, raw.channels) = (r.ptr, r.format, r.channels);
            raw.size_or_width = size(r.width)?;
            (raw.height, raw.pitch) = (size(r.height)?, size(r.pitch)?);
        }
        _ => return Err(cu::NOT_SUPPORTED),
    }
    Ok(raw)
}

impl ArrayBackend for RealBackend {
    fn array_create(&self, ctx: BackendCtx, desc: &ArrayDesc) -> BResult<u64> {
        let f = need(self.arrays.create)?;
        let raw = RawArray3DDesc {
            width: size(desc.width)?,
            height: size(desc.height)?,
            depth: size(desc.depth)?,
            format: desc.format,
            channels: desc.channels,
            flags: desc.flags,
        };
        self.cuda.in_ctx(ctx, || {
            let mut a: Ptr = std::ptr::null_mut();
            // SAFETY: `a` is writable, `raw` a complete descriptor.
            check(unsafe { f(&mut a, &raw) })?;
            Ok(a as u64)
        })
    }

    fn array_destroy(&self, ctx: BackendCtx, array: u64) -> BResult<()> {
        let f = need(self.arrays.destroy)?;
        // SAFETY: an array this session created and has not destroyed.
        self.cuda.in_ctx(ctx, || check(unsafe { f(array as Ptr) }))
    }

    fn array_copy(
        &self,
        ctx: BackendCtx,
        stream: Option<u64>,
        width: u64,
        rows: u64,
        src: ASrc<'_>,
        dst: ADst<'_>,
    ) -> BResult<()> {
        let d = &self.arrays;
        let (w, h) = (size(width)?, size(rows)?);
        let mut raw = RawCopy3D {
            src_x: 0,
            src_y: 0,
            src_z: 0,
            src_lod: 0,
            src_type: 1,
            src_host: std::ptr::null(),
            src_device: 0,
            src_array: std::ptr::null_mut(),
            reserved0: std::ptr::null_mut(),
            src_pitch: w,
            src_height: h,
            dst_x: 0,
            dst_y: 0,
            dst_z: 0,
            dst_lod: 0,
            dst_type: 1,
            dst_host: std::ptr::null_mut(),
            dst_device: 0,
            dst_array: std::ptr::null_mut(),
            reserved1: std::ptr::null_mut(),
            dst_pitch: w,
            dst_height: h,
            width: w,
            height: h,
            depth: 1,
        };
        let host_dst = matches!(dst, ADst::Host(_));
        match src {
            ASrc::Host(b) => raw.src_host = b.as_ptr().cast(),
            ASrc::Device(p) => {
                (raw.src_type, raw.src_device, raw.src_pitch) = (2, p.ptr, size(p.pitch)?);
            }
            ASrc::Array(a) => {
                (raw.src_type, raw.src_array) = (3, a.array as Ptr);
                (raw.src_x, raw.src_y, raw.src_z) = (size(a.x_bytes)?, size(a.y)?, size(a.z)?);
            }
        }
        match dst {
            ADst::Host(b) => raw.dst_host = b.as_mut_ptr().cast(),
            ADst::Device(p) => {
                (raw.dst_type, raw.dst_device, raw.dst_pitch) = (2, p.ptr, size(p.pitch)?);
            }
            ADst::Array(a) => {
                (raw.dst_type, raw.dst_array) = (3, a.array as Ptr);
                (raw.dst_x, raw.dst_y, raw.dst_z) = (size(a.x_bytes)?, size(a.y)?, size(a.z)?);
            }
        }
        self.cuda.in_ctx(ctx, || match stream {
            // SAFETY: `raw` describes host buffers of `width * rows` bytes
            // (the request's data or the reply buffer, alive across the
            // call), device ranges and array regions the core checked.
            None => check(unsafe { need(d.copy_3d)?(&raw) }),
            Some(s) => {
                // SAFETY: as above; the stream is this session's.
                check(unsafe { need(d.copy_3d_async)?(&raw, s as Ptr) })?;
                // A pageable host source is staged before the call returns
                // (the driver's rule), so only a host destination waits.
                if host_dst {
                    // The reply carries the data: wait for it.
                    // SAFETY: the same stream.
                    check(unsafe { need(d.stream_sync)?(s as Ptr) })?;
                }
                Ok(())
            }
        })
    }

    fn tex_create(
        &self,
        ctx: BackendCtx,
        res: &Resource,
        tex: &TexDesc,
        view: Option<&ViewDesc>,
    ) -> BResult<u64> {
        let f = need(self.arrays.tex_create)?;
        let raw_res = raw_resource(res)?;
        let raw_tex = RawTexDesc {
            address: tex.address,
            filter: tex.filter,
            flags: tex.flags,
            max_anisotropy: tex.max_anisotropy,
            mipmap_filter: tex.mipmap_filter,
            mipmap_bias: f32::from_bits(tex.mipmap_bias),
            min_clamp: f32::from_bits(tex.min_clamp),
            max_clamp: f32::from_bits(tex.max_clamp),
            border: tex.border.map(f32::from_bits),
            reserved: [0; 12],
        };
        let raw_view = match view {
            Some(v) => Some(RawViewDesc {
                format: v.format,
                width: size(v.width)?,
                height: size(v.height)?,
                depth: size(v.depth)?,
                first_level: v.first_level,
                last_level: v.last_level,
                first_layer: v.first_layer,
                last_layer: v.last_layer,
                reserved: [0; 16],
            }),
            None => None,
        };
        let view_ptr = raw_view
            .as_ref()
            .map_or(std::ptr::null(), |v| v as *const RawViewDesc);
        self.cuda.in_ctx(ctx, || {
            let mut t = 0u64;
            // SAFETY: `t` is writable; the descriptors are complete and
            // alive across the call; the view is optional (null).
            check(unsafe { f(&mut t, &raw_res, &raw_tex, view_ptr) })?;
            Ok(t)
        })
    }

    fn tex_destroy(&self, ctx: BackendCtx, tex: u64) -> BResult<()> {
        let f = need(self.arrays.tex_destroy)?;
        // SAFETY: a texture object this session created.
        self.cuda.in_ctx(ctx, || check(unsafe { f(tex) }))
    }

    fn surf_create(&self, ctx: BackendCtx, res: &Resource) -> BResult<u64> {
        let f = need(self.arrays.surf_create)?;
        let raw_res = raw_resource(res)?;
        self.cuda.in_ctx(ctx, || {
            let mut s = 0u64;
            // SAFETY: `s` is writable; the descriptor is complete.
            check(unsafe { f(&mut s, &raw_res) })?;
            Ok(s)
        })
    }

    fn surf_destroy(&self, ctx: BackendCtx, surf: u64) -> BResult<()> {
        let f = need(self.arrays.surf_destroy)?;
        // SAFETY: a surface object this session created.
        self.cuda.in_ctx(ctx, || check(unsafe { f(surf) }))
    }
}
