//! CUDA arrays, the legacy array copies, texture and surface objects.
//!
//! An array is an id minted here (`array_msgs::handle::ARRAY`); its
//! descriptor is recorded so `cuArray*GetDescriptor` never leaves the
//! client. Copies with an array end go through `crate::copy` (slices of
//! `ArrayCopy`). Texture and surface objects are the driver's own values,
//! returned by the worker: kernels receive them by value, so no id can
//! stand in for them; their descriptors are recorded here for the
//! `Get*Desc` queries. Mipmapped arrays are not remoted.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{LazyLock, Mutex, MutexGuard};

use tf_protocol::array_msgs::{
    elem_size, handle, resource, ArrayDesc, ArrayRequest, Resource, TexDesc, ViewDesc,
};
use tf_protocol::status::cu;
use tf_protocol::Request;

use crate::copy::{copy, Side};
use crate::cuda::{current_ctx, guard, out, session};
use crate::exec::wire_stream;

type CUresult = u32;
type Handle = *mut c_void;

/// `CUDA_ARRAY_DESCRIPTOR`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawArrayDesc {
    width: usize,
    height: usize,
    format: u32,
    channels: u32,
}

/// `CUDA_ARRAY3D_DESCRIPTOR`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawArray3DDesc {
    width: usize,
    height: usize,
    depth: usize,
    format: u32,
    channels: u32,
    flags: u32,
}

/// `CUDA_RESOURCE_DESC`: the type, a 128-byte union, the flags. The union
/// read as its pitch-2D member (the array member is its first field, the
/// linear member its first four).
#[repr(C)]
#[derive(Clone, Copy)]
struct RawResourceDesc {
    kind: u32,
    /// `hArray`, `hMipmappedArray` or `devPtr`.
    handle: u64,
    format: u32,
    channels: u32,
    /// `sizeInBytes` (linear) or `width` (pitch 2D).
    size_or_width: usize,
    height: usize,
    pitch: usize,
    reserved: [u8; 128 - 40],
    flags: u32,
}

/// `CUDA_TEXTURE_DESC`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawTexDesc {
    address: [u32; 3],
    filter: u32,
    flags: u32,
    max_anisotropy: u32,
    mipmap_filter: u32,
    mipmap_bias: f32,
    min_clamp: f32,
    max_clamp: f32,
    border: [f32; 4],
    reserved: [i32; 12],
}

/// `CUDA_RESOURCE_VIEW_DESC`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawViewDesc {
    format: u32,
    width: usize,
    height: usize,
    depth: usize,
    first_level: u32,
    last_level: u32,
    first_layer: u32,
    last_layer: u32,
    reserved: [u32; 16],
}

const _: () = assert!(std::mem::size_of::<RawArrayDesc>() == 24);
const _: () = assert!(std::mem::size_of::<RawArray3DDesc>() == 40);
const _: () = assert!(std::mem::size_of::<RawResourceDesc>() == 144);
const _: () = assert!(std::mem::offset_of!(RawResourceDesc, flags) == 136);
const _: () = assert!(std::mem::size_of::<RawTexDesc>() == 104);
const _: () = assert!(std::mem::size_of::<RawViewDesc>() == 112);

/// What the client knows of its arrays and objects.
#[derive(Default)]
struct Records {
    arrays: HashMap<u64, ArrayDesc>,
    texes: HashMap<u64, (RawResourceDesc, RawTexDesc, Option<RawViewDesc>)>,
    surfs: HashMap<u64, RawResourceDesc>,
}

fn records() -> MutexGuard<'static, Records> {
    static R: LazyLock<Mutex<Records>> = LazyLock::new(Default::default);
    R.lock().unwrap_or_else(|e| e.into_inner())
}

fn mipmaps_refused(what: &str) -> CUresult {
    tracing::warn!(
        "{what}: mipmapped CUDA arrays are not remoted; answering CUDA_ERROR_NOT_SUPPORTED"
    );
    cu::NOT_SUPPORTED
}

fn create(p: *mut Handle, desc: ArrayDesc) -> Result<(), CUresult> {
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // Refused here too (the worker checks again): no round trip for a
    // descriptor no driver accepts.
    if desc.elem().is_none() {
        return Err(cu::INVALID_VALUE);
    }
    let ctx = current_ctx()?;
    let id = crate::exec::mint(handle::ARRAY);
    session()?.call::<()>(&Request::Array(ArrayRequest::Create { ctx, id, desc }))?;
    records().arrays.insert(id, desc);
    out(p, id as Handle)
}

unsafe extern "C" fn cu_array_create(p: *mut Handle, d: *const RawArrayDesc) -> CUresult {
    guard(|| {
        if d.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: non-null; a readable CUDA_ARRAY_DESCRIPTOR by the API contract.
        let d = unsafe { *d };
        create(
            p,
            ArrayDesc {
                width: d.width as u64,
                height: d.height as u64,
                depth: 0,
                format: d.format,
                channels: d.channels,
                flags: 0,
            },
        )
    })
}

unsafe extern "C" fn cu_array_3d_create(p: *mut Handle, d: *const RawArray3DDesc) -> CUresult {
    guard(|| {
        if d.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: non-null; a readable CUDA_ARRAY3D_DESCRIPTOR by the API contract.
        let d = unsafe { *d };
        create(
            p,
            ArrayDesc {
                width: d.width as u64,
                height: d.height as u64,
                depth: d.depth as u64,
                format: d.format,
                channels: d.channels,
                flags: d.flags,
            },
        )
    })
}

unsafe extern "C" fn cu_array_destroy(a: Handle) -> CUresult {
    guard(|| {
        let id = a as u64;
        // Unknown ids go to the worker too, which refuses them: the
        // worker's tables are the authority.
        session()?.call::<()>(&Request::Array(ArrayRequest::Destroy { id }))?;
        records().arrays.remove(&id);
        Ok(())
    })
}

fn desc_of(a: Handle) -> Result<ArrayDesc, CUresult> {
    records()
        .arrays
        .get(&(a as u64))
        .copied()
        .ok_or(cu::INVALID_HANDLE)
}

unsafe extern "C" fn cu_array_get_descriptor(d: *mut RawArrayDesc, a: Handle) -> CUresult {
    guard(|| {
        let x = desc_of(a)?;
        out(
            d,
            RawArrayDesc {
                width: x.width as usize,
                height: x.height as usize,
                format: x.format,
                channels: x.channels,
            },
        )
    })
}

unsafe extern "C" fn cu_array_3d_get_descriptor(d: *mut RawArray3DDesc, a: Handle) -> CUresult {
    guard(|| {
        let x = desc_of(a)?;
        out(
            d,
            RawArray3DDesc {
                width: x.width as usize,
                height: x.height as usize,
                depth: x.depth as usize,
                format: x.format,
                channels: x.channels,
                flags: x.flags,
            },
        )
    })
}

unsafe extern "C" fn cu_mipmapped_array_create(
    _p: *mut Handle,
    _d: *const RawArray3DDesc,
    _levels: u32,
) -> CUresult {
    mipmaps_refused("cuMipmappedArrayCreate")
}

/// The legacy copies name a byte offset in a (1D) array: row 0, slice 0.
fn legacy(src: Side, dst: Side, n: usize, stream: Option<(Handle, bool)>) -> Result<(), CUresult> {
    let stream = stream
        .map(|(s, pt)| wire_stream(s as u64, pt))
        .transpose()?;
    copy(src, dst, (n as u64, 1, 1), stream)
}

fn host(addr: u64, n: usize) -> Result<Side, CUresult> {
    if addr == 0 {
        return Err(cu::INVALID_VALUE);
    }
    Ok(Side {
        addr,
        host: true,
        pitch: n as u64,
        slice_rows: 1,
        array: None,
    })
}

fn device(addr: u64, n: usize) -> Result<Side, CUresult> {
    Ok(Side {
        host: false,
        ..host(addr, n)?
    })
}

fn arr(a: Handle, off: usize) -> Result<Side, CUresult> {
    if a.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    Ok(Side::array(a as u64, off as u64, 0, 0))
}

unsafe extern "C" fn cu_memcpy_htoa(
    a: Handle,
    off: usize,
    src: *const c_void,
    n: usize,
) -> CUresult {
    guard(|| legacy(host(src as u64, n)?, arr(a, off)?, n, None))
}
unsafe extern "C" fn cu_memcpy_atoh(dst: *mut c_void, a: Handle, off: usize, n: usize) -> CUresult {
    guard(|| legacy(arr(a, off)?, host(dst as u64, n)?, n, None))
}
unsafe extern "C" fn cu_memcpy_atod(dst: u64, a: Handle, off: usize, n: usize) -> CUresult {
    guard(|| legacy(arr(a, off)?, device(dst, n)?, n, None))
}
unsafe extern "C" fn cu_memcpy_dtoa(a: Handle, off: usize, src: u64, n: usize) -> CUresult {
    guard(|| legacy(device(src, n)?, arr(a, off)?, n, None))
}
unsafe extern "C" fn cu_memcpy_atoa(
    d: Handle,
    doff: usize,
    s: Handle,
    soff: usize,
    n: usize,
) -> CUresult {
    guard(|| legacy(arr(s, soff)?, arr(d, doff)?, n, None))
}
unsafe extern "C" fn cu_memcpy_htoa_async(
    a: Handle,
    off: usize,
    src: *const c_void,
    n: usize,
    st: Handle,
) -> CUresult {
    guard(|| legacy(host(src as u64, n)?, arr(a, off)?, n, Some((st, false))))
}
unsafe extern "C" fn cu_memcpy_htoa_async_ptsz(
    a: Handle,
    off: usize,
    src: *const c_void,
    n: usize,
    st: Handle,
) -> CUresult {
    guard(|| legacy(host(src as u64, n)?, arr(a, off)?, n, Some((st, true))))
}
unsafe extern "C" fn cu_memcpy_atoh_async(
    dst: *mut c_void,
    a: Handle,
    off: usize,
    n: usize,
    st: Handle,
) -> CUresult {
    guard(|| legacy(arr(a, off)?, host(dst as u64, n)?, n, Some((st, false))))
}
unsafe extern "C" fn cu_memcpy_atoh_async_ptsz(
    dst: *mut c_void,
    a: Handle,
    off: usize,
    n: usize,
    st: Handle,
) -> CUresult {
    guard(|| legacy(arr(a, off)?, host(dst as u64, n)?, n, Some((st, true))))
}

/// The wire form of an application's resource descriptor.
fn resource_of(r: &RawResourceDesc, what: &str) -> Result<Resource, CUresult> {
    let mut res = Resource {
        kind: r.kind,
        flags: r.flags,
        ..Resource::default()
    };
    match r.kind {
        resource::ARRAY => res.array = r.handle,
        resource::MIPMAPPED_ARRAY => return Err(mipmaps_refused(what)),
        resource::LINEAR | resource::PITCH2D => {
            if elem_size(r.format, r.channels).is_none() {
                return Err(cu::INVALID_VALUE);
            }
            (res.ptr, res.format, res.channels) = (r.handle, r.format, r.channels);
            if r.kind == resource::LINEAR {
                res.size = r.size_or_width as u64;
            } else {
                (res.width, res.height) = (r.size_or_width as u64, r.height as u64);
                res.pitch = r.pitch as u64;
            }
        }
        _ => return Err(cu::INVALID_VALUE),
    }
    Ok(res)
}

unsafe extern "C" fn cu_tex_object_create(
    p: *mut u64,
    r: *const RawResourceDesc,
    t: *const RawTexDesc,
    v: *const RawViewDesc,
) -> CUresult {
    guard(|| {
        if p.is_null() || r.is_null() || t.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: non-null; readable descriptors by the API contract (the
        // view is optional).
        let (r, t, v) = unsafe { (*r, *t, v.as_ref().copied()) };
        let res = resource_of(&r, "cuTexObjectCreate")?;
        let tex = TexDesc {
            address: t.address,
            filter: t.filter,
            flags: t.flags,
            max_anisotropy: t.max_anisotropy,
            mipmap_filter: t.mipmap_filter,
            mipmap_bias: t.mipmap_bias.to_bits(),
            min_clamp: t.min_clamp.to_bits(),
            max_clamp: t.max_clamp.to_bits(),
            border: t.border.map(f32::to_bits),
        };
        let view = v.map(|v| ViewDesc {
            format: v.format,
            width: v.width as u64,
            height: v.height as u64,
            depth: v.depth as u64,
            first_level: v.first_level,
            last_level: v.last_level,
            first_layer: v.first_layer,
            last_layer: v.last_layer,
        });
        let ctx = current_ctx()?;
        let obj = session()?.call::<u64>(&Request::Array(ArrayRequest::TexCreate {
            ctx,
            res,
            tex,
            view,
        }))?;
        records().texes.insert(obj, (r, t, v));
        out(p, obj)
    })
}

unsafe extern "C" fn cu_tex_object_destroy(t: u64) -> CUresult {
    guard(|| {
        session()?.call::<()>(&Request::Array(ArrayRequest::TexDestroy { tex: t }))?;
        records().texes.remove(&t);
        Ok(())
    })
}

unsafe extern "C" fn cu_tex_object_get_resource_desc(d: *mut RawResourceDesc, t: u64) -> CUresult {
    guard(|| {
        let r = records().texes.get(&t).map(|x| x.0);
        out(d, r.ok_or(cu::INVALID_VALUE)?)
    })
}

unsafe extern "C" fn cu_tex_object_get_texture_desc(d: *mut RawTexDesc, t: u64) -> CUresult {
    guard(|| {
        let r = records().texes.get(&t).map(|x| x.1);
        out(d, r.ok_or(cu::INVALID_VALUE)?)
    })
}

unsafe extern "C" fn cu_tex_object_get_view_desc(d: *mut RawViewDesc, t: u64) -> CUresult {
    guard(|| {
        let r = records().texes.get(&t).map(|x| x.2);
        // No view was given: the driver answers an error too.
        out(d, r.ok_or(cu::INVALID_VALUE)?.ok_or(cu::INVALID_VALUE)?)
    })
}

unsafe extern "C" fn cu_surf_object_create(p: *mut u64, r: *const RawResourceDesc) -> CUresult {
    guard(|| {
        if p.is_null() || r.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: non-null; a readable CUDA_RESOURCE_DESC by the API contract.
        let r = unsafe { *r };
        let res = resource_of(&r, "cuSurfObjectCreate")?;
        let ctx = current_ctx()?;
        let obj = session()?.call::<u64>(&Request::Array(ArrayRequest::SurfCreate { ctx, res }))?;
        records().surfs.insert(obj, r);
        out(p, obj)
    })
}

unsafe extern "C" fn cu_surf_object_destroy(s: u64) -> CUresult {
    guard(|| {
        session()?.call::<()>(&Request::Array(ArrayRequest::SurfDestroy { surf: s }))?;
        records().surfs.remove(&s);
        Ok(())
    })
}

unsafe extern "C" fn cu_surf_object_get_resource_desc(d: *mut RawResourceDesc, s: u64) -> CUresult {
    guard(|| {
        let r = records().surfs.get(&s).copied();
        out(d, r.ok_or(cu::INVALID_VALUE)?)
    })
}

/// Points the export slots of the functions implemented here at them. The
/// synchronous `_ptds` forms share the synchronous copies.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    let entries: &[(usize, Entry)] = &[
        (c::cuArrayCreate_v2, cu_array_create as Entry),
        (c::cuArray3DCreate_v2, cu_array_3d_create as Entry),
        (c::cuArrayDestroy, cu_array_destroy as Entry),
        (c::cuArrayGetDescriptor_v2, cu_array_get_descriptor as Entry),
        (
            c::cuArray3DGetDescriptor_v2,
            cu_array_3d_get_descriptor as Entry,
        ),
        (
            c::cuMipmappedArrayCreate,
            cu_mipmapped_array_create as Entry,
        ),
        (c::cuMemcpyHtoA_v2, cu_memcpy_htoa as Entry),
        (c::cuMemcpyHtoA_v2_ptds, cu_memcpy_htoa as Entry),
        (c::cuMemcpyAtoH_v2, cu_memcpy_atoh as Entry),
        (c::cuMemcpyAtoH_v2_ptds, cu_memcpy_atoh as Entry),
        (c::cuMemcpyAtoD_v2, cu_memcpy_atod as Entry),
        (c::cuMemcpyAtoD_v2_ptds, cu_memcpy_atod as Entry),
        (c::cuMemcpyDtoA_v2, cu_memcpy_dtoa as Entry),
        (c::cuMemcpyDtoA_v2_ptds, cu_memcpy_dtoa as Entry),
        (c::cuMemcpyAtoA_v2, cu_memcpy_atoa as Entry),
        (c::cuMemcpyAtoA_v2_ptds, cu_memcpy_atoa as Entry),
        (c::cuMemcpyHtoAAsync_v2, cu_memcpy_htoa_async as Entry),
        (
            c::cuMemcpyHtoAAsync_v2_ptsz,
            cu_memcpy_htoa_async_ptsz as Entry,
        ),
        (c::cuMemcpyAtoHAsync_v2, cu_memcpy_atoh_async as Entry),
        (
            c::cuMemcpyAtoHAsync_v2_ptsz,
            cu_memcpy_atoh_async_ptsz as Entry,
        ),
        (c::cuTexObjectCreate, cu_tex_object_create as Entry),
        (c::cuTexObjectDestroy, cu_tex_object_destroy as Entry),
        (
            c::cuTexObjectGetResourceDesc,
            cu_tex_object_get_resource_desc as Entry,
        ),
        (
            c::cuTexObjectGetTextureDesc,
            cu_tex_object_get_texture_desc as Entry,
        ),
        (
            c::cuTexObjectGetResourceViewDesc,
            cu_tex_object_get_view_desc as Entry,
        ),
        (c::cuSurfObjectCreate, cu_surf_object_create as Entry),
        (c::cuSurfObjectDestroy, cu_surf_object_destroy as Entry),
        (
            c::cuSurfObjectGetResourceDesc,
            cu_surf_object_get_resource_desc as Entry,
        ),
    ];
    crate::set_each(set, entries);
}
