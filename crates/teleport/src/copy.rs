//! 2D and 3D copies (`cuMemcpy2D*`, `cuMemcpy3D*`) and pitched allocation.
//!
//! The host side of a copy lives here, so the client splits every copy into
//! 2D pieces (one per slice, fewer rows when a frame would be too large):
//! host rows are packed into the request, or unpacked from the answer; the
//! worker copies between its packed buffer and device memory with the
//! driver's own 2D copy, honouring the device pitch. Host-to-host copies
//! never leave the client. A copy with a CUDA array on either end travels
//! the same way as `array_msgs::ArrayCopy` slices (the array named by the
//! client's id and the region's first byte, row and slice), which the
//! worker checks against the array's shape.

use std::ffi::c_void;

use tf_protocol::array_msgs::{ArrayCopy, ArrayRequest, ArraySide, Linear};
use tf_protocol::mem_msgs::{Copy2D, MemRequest, Pitched};
use tf_protocol::status::cu;
use tf_protocol::Request;

use crate::cuda::{current_ctx, guard, out, session};
use crate::exec::wire_stream;

type CUresult = u32;
type Handle = *mut c_void;

const HOST: u32 = 1;
const DEVICE: u32 = 2;
const ARRAY: u32 = 3;
const UNIFIED: u32 = 4;

/// `CUDA_MEMCPY2D`.
#[repr(C)]
pub(crate) struct RawCopy2D {
    src_x: usize,
    src_y: usize,
    src_type: u32,
    src_host: *const c_void,
    src_device: u64,
    src_array: Handle,
    src_pitch: usize,
    dst_x: usize,
    dst_y: usize,
    dst_type: u32,
    dst_host: *mut c_void,
    dst_device: u64,
    dst_array: Handle,
    dst_pitch: usize,
    width: usize,
    height: usize,
}

/// `CUDA_MEMCPY3D`.
#[repr(C)]
pub(crate) struct RawCopy3D {
    src_x: usize,
    src_y: usize,
    src_z: usize,
    src_lod: usize,
    src_type: u32,
    src_host: *const c_void,
    src_device: u64,
    src_array: Handle,
    reserved0: Handle,
    src_pitch: usize,
    src_height: usize,
    dst_x: usize,
    dst_y: usize,
    dst_z: usize,
    dst_lod: usize,
    dst_type: u32,
    dst_host: *mut c_void,
    dst_device: u64,
    dst_array: Handle,
    reserved1: Handle,
    dst_pitch: usize,
    dst_height: usize,
    width: usize,
    height: usize,
    depth: usize,
}

const _: () = assert!(std::mem::size_of::<RawCopy2D>() == 128);
const _: () = assert!(std::mem::size_of::<RawCopy3D>() == 200);

/// One side of a copy: the address of its first byte (offsets applied),
/// whether it is host memory, its row pitch and rows per slice; or a CUDA
/// array (`array`: its id and the region's first byte, row and slice).
#[derive(Clone, Copy)]
pub(crate) struct Side {
    pub addr: u64,
    pub host: bool,
    pub pitch: u64,
    pub slice_rows: u64,
    pub array: Option<ArraySide>,
}

impl Side {
    #[allow(clippy::too_many_arguments)]
    fn new(
        kind: u32,
        host: u64,
        device: u64,
        array: Handle,
        (x, y, z): (usize, usize, usize),
        pitch: usize,
        slice_rows: usize,
        width: usize,
    ) -> Result<Side, CUresult> {
        let is_host = match kind {
            HOST => true,
            DEVICE => false,
            // A unified address: host memory when this client tracks it.
            UNIFIED => crate::runtime::host_memory::is_host(device),
            ARRAY => {
                // The worker checks the id and that the region lies inside.
                if array.is_null() {
                    return Err(cu::INVALID_VALUE);
                }
                return Ok(Side::array(array as u64, x as u64, y as u64, z as u64));
            }
            _ => return Err(cu::INVALID_VALUE),
        };
        let base = if kind == HOST { host } else { device };
        // One row needs no pitch; CUDA lets it be anything then.
        let pitch = if pitch == 0 { width } else { pitch } as u64;
        let slice_rows = slice_rows as u64;
        let offset = tf_protocol::pitched_offset(pitch, slice_rows, x as u64, y as u64, z as u64)
            .ok_or(cu::INVALID_VALUE)?;
        if base == 0 {
            return Err(cu::INVALID_VALUE);
        }
        Ok(Side {
            addr: base.checked_add(offset).ok_or(cu::INVALID_VALUE)?,
            host: is_host,
            pitch,
            slice_rows,
            array: None,
        })
    }

    /// The region of array `id` that starts at byte `x` of row `y` of
    /// slice `z`.
    pub(crate) fn array(id: u64, x: u64, y: u64, z: u64) -> Side {
        Side {
            addr: 0,
            host: false,
            pitch: 0,
            slice_rows: 0,
            array: Some(ArraySide {
                array: id,
                x_bytes: x,
                y,
                z,
            }),
        }
    }

    fn row(&self, z: u64, y: u64) -> u64 {
        self.addr + z * self.pitch * self.slice_rows + y * self.pitch
    }
}

/// The request for `rows` rows from row `y` of slice `z`: an `ArrayCopy`
/// when an end is an array, else a `Copy2D`.
fn piece<'a>(
    ctx: u64,
    stream: Option<u64>,
    (width, rows): (u64, u64),
    (src, dst): (&Side, &Side),
    (z, y): (u64, u64),
    data: &'a [u8],
) -> Request<'a> {
    let linear = |s: &Side| {
        (!s.host && s.array.is_none()).then(|| Linear {
            ptr: s.row(z, y),
            pitch: s.pitch,
        })
    };
    let in_array = |s: &Side| {
        s.array.map(|a| ArraySide {
            y: a.y + y,
            z: a.z + z,
            ..a
        })
    };
    if src.array.is_some() || dst.array.is_some() {
        return Request::Array(ArrayRequest::Copy(ArrayCopy {
            ctx,
            stream,
            width,
            rows,
            src: linear(src),
            src_array: in_array(src),
            dst: linear(dst),
            dst_array: in_array(dst),
            data,
        }));
    }
    let pitched = |s: &Side| Pitched {
        ptr: s.row(z, y),
        pitch: s.pitch,
    };
    Request::Mem(MemRequest::Copy2D(Copy2D {
        ctx,
        stream,
        width,
        rows,
        src: (!src.host).then(|| pitched(src)),
        dst: (!dst.host).then(|| pitched(dst)),
        data,
    }))
}

/// Copies `depth` slices of `height` rows of `width` bytes.
pub(crate) fn copy(
    src: Side,
    dst: Side,
    (width, height, depth): (u64, u64, u64),
    stream: Option<u64>,
) -> Result<(), CUresult> {
    if width == 0 || height == 0 || depth == 0 {
        return Ok(());
    }
    let linear_pitch_short = |s: &Side| s.array.is_none() && s.pitch < width;
    if (height > 1 || depth > 1) && (linear_pitch_short(&src) || linear_pitch_short(&dst)) {
        return Err(cu::INVALID_VALUE);
    }
    if src.host && dst.host {
        for z in 0..depth {
            for y in 0..height {
                // SAFETY: both rows are `width` bytes of the application's
                // host memory, as the descriptor promises.
                unsafe {
                    std::ptr::copy(
                        src.row(z, y) as *const u8,
                        dst.row(z, y) as *mut u8,
                        width as usize,
                    )
                };
            }
        }
        return Ok(());
    }
    let c = session()?;
    let ctx = current_ctx()?;
    if let Some(s) = stream {
        if src.host || dst.host {
            crate::graph::refuse_in_capture(s)?;
        }
    }
    // Rows per piece: as many as fit a frame (at least one).
    let per = (c.chunk() as u64 / width).clamp(1, height);
    if width > c.chunk() as u64 {
        return Err(cu::INVALID_VALUE);
    }
    for z in 0..depth {
        let mut y = 0;
        while y < height {
            let rows = per.min(height - y);
            let request = |data| piece(ctx, stream, (width, rows), (&src, &dst), (z, y), data);
            let packed = (width * rows) as usize;
            if src.host {
                let mut buf = Vec::with_capacity(packed);
                for r in 0..rows {
                    // SAFETY: a row of `width` bytes of the application's
                    // host source, as the descriptor promises.
                    let row = unsafe {
                        std::slice::from_raw_parts(src.row(z, y + r) as *const u8, width as usize)
                    };
                    buf.extend_from_slice(row);
                }
                let req = request(&buf);
                match stream {
                    Some(_) => c.enqueue(&req)?,
                    None => c.call::<()>(&req)?,
                }
            } else if dst.host {
                let mut buf = vec![0u8; packed];
                c.call_into(&request(&[]), &mut buf)?;
                for r in 0..rows {
                    let from = &buf[(r * width) as usize..][..width as usize];
                    // SAFETY: a row of `width` writable bytes of the
                    // application's host destination.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            from.as_ptr(),
                            dst.row(z, y + r) as *mut u8,
                            width as usize,
                        )
                    };
                }
            } else {
                let req = request(&[]);
                match stream {
                    Some(_) => c.enqueue(&req)?,
                    None => c.call::<()>(&req)?,
                }
            }
            y += rows;
        }
    }
    Ok(())
}

fn copy_2d(p: *const RawCopy2D, stream: Option<(Handle, bool)>) -> Result<(), CUresult> {
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: non-null; a readable CUDA_MEMCPY2D by the API contract.
    let d = unsafe { &*p };
    let src = Side::new(
        d.src_type,
        d.src_host as u64,
        d.src_device,
        d.src_array,
        (d.src_x, d.src_y, 0),
        d.src_pitch,
        0,
        d.width,
    )?;
    let dst = Side::new(
        d.dst_type,
        d.dst_host as u64,
        d.dst_device,
        d.dst_array,
        (d.dst_x, d.dst_y, 0),
        d.dst_pitch,
        0,
        d.width,
    )?;
    let stream = stream
        .map(|(s, pt)| wire_stream(s as u64, pt))
        .transpose()?;
    copy(src, dst, (d.width as u64, d.height as u64, 1), stream)
}

/// Bytes per row, rows per slice, slices.
pub(crate) type Extent = (u64, u64, u64);

/// The two sides and the extent of a `CUDA_MEMCPY3D`.
pub(crate) fn sides_3d(p: *const RawCopy3D) -> Result<(Side, Side, Extent), CUresult> {
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: non-null; a readable CUDA_MEMCPY3D by the API contract.
    let d = unsafe { &*p };
    if d.src_lod != 0 || d.dst_lod != 0 {
        return Err(cu::INVALID_VALUE);
    }
    // An array end ignores its pitch and height (the array has its own).
    let short = |kind: u32, rows: usize| kind != ARRAY && rows < d.height;
    if d.depth > 1 && (short(d.src_type, d.src_height) || short(d.dst_type, d.dst_height)) {
        return Err(cu::INVALID_VALUE);
    }
    let src = Side::new(
        d.src_type,
        d.src_host as u64,
        d.src_device,
        d.src_array,
        (d.src_x, d.src_y, d.src_z),
        d.src_pitch,
        d.src_height,
        d.width,
    )?;
    let dst = Side::new(
        d.dst_type,
        d.dst_host as u64,
        d.dst_device,
        d.dst_array,
        (d.dst_x, d.dst_y, d.dst_z),
        d.dst_pitch,
        d.dst_height,
        d.width,
    )?;
    Ok((src, dst, (d.width as u64, d.height as u64, d.depth as u64)))
}

fn copy_3d(p: *const RawCopy3D, stream: Option<(Handle, bool)>) -> Result<(), CUresult> {
    let (src, dst, extent) = sides_3d(p)?;
    let stream = stream
        .map(|(s, pt)| wire_stream(s as u64, pt))
        .transpose()?;
    copy(src, dst, extent, stream)
}

unsafe extern "C" fn cu_memcpy_2d(p: *const RawCopy2D) -> CUresult {
    guard(|| copy_2d(p, None))
}
unsafe extern "C" fn cu_memcpy_2d_async(p: *const RawCopy2D, s: Handle) -> CUresult {
    guard(|| copy_2d(p, Some((s, false))))
}
unsafe extern "C" fn cu_memcpy_2d_async_ptsz(p: *const RawCopy2D, s: Handle) -> CUresult {
    guard(|| copy_2d(p, Some((s, true))))
}
unsafe extern "C" fn cu_memcpy_3d(p: *const RawCopy3D) -> CUresult {
    guard(|| copy_3d(p, None))
}
unsafe extern "C" fn cu_memcpy_3d_async(p: *const RawCopy3D, s: Handle) -> CUresult {
    guard(|| copy_3d(p, Some((s, false))))
}
unsafe extern "C" fn cu_memcpy_3d_async_ptsz(p: *const RawCopy3D, s: Handle) -> CUresult {
    guard(|| copy_3d(p, Some((s, true))))
}

/// `cuMemcpy`/`cuMemcpyAsync` (unified addressing): the direction follows
/// from what the client knows of each address: device memory it allocated
/// (or mapped, or a module global) is the device; anything else is host
/// memory of this process.
fn copy_unified(
    dst: u64,
    src: u64,
    n: usize,
    stream: Option<(Handle, bool)>,
) -> Result<(), CUresult> {
    use crate::runtime::host_memory::is_device;
    if n == 0 {
        return Ok(());
    }
    let side = |addr: u64| Side {
        addr,
        host: !is_device(addr),
        pitch: n as u64,
        slice_rows: 1,
        array: None,
    };
    let (s, d) = (side(src), side(dst));
    let stream = stream
        .map(|(h, pt)| wire_stream(h as u64, pt))
        .transpose()?;
    // Host↔device copies take the chunked 1D paths (bulk streaming);
    // device↔device and host↔host are one-row copies.
    let c = session()?;
    let ctx = current_ctx()?;
    match (s.host, d.host) {
        (true, false) => {
            if let Some(st) = stream {
                if crate::graph::capture_host_copy(st, dst, src, n as u64, false)? {
                    return Ok(());
                }
            }
            c.copy_to_device(
                ctx,
                stream,
                dst,
                crate::cuda::host(src as *const c_void, n)?,
            )
        }
        (false, true) => {
            if let Some(st) = stream {
                if crate::graph::capture_host_copy(st, dst, src, n as u64, true)? {
                    return Ok(());
                }
            }
            c.copy_from_device(
                ctx,
                stream,
                src,
                crate::cuda::host_mut(dst as *mut c_void, n)?,
            )
        }
        _ => copy(s, d, (n as u64, 1, 1), stream),
    }
}

unsafe extern "C" fn cu_memcpy(dst: u64, src: u64, n: usize) -> CUresult {
    guard(|| copy_unified(dst, src, n, None))
}
unsafe extern "C" fn cu_memcpy_async(dst: u64, src: u64, n: usize, s: Handle) -> CUresult {
    guard(|| copy_unified(dst, src, n, Some((s, false))))
}
unsafe extern "C" fn cu_memcpy_async_ptsz(dst: u64, src: u64, n: usize, s: Handle) -> CUresult {
    guard(|| copy_unified(dst, src, n, Some((s, true))))
}

unsafe extern "C" fn cu_mem_alloc_pitch(
    dptr: *mut u64,
    pitch: *mut usize,
    width: usize,
    height: usize,
    elem: u32,
) -> CUresult {
    guard(|| {
        if dptr.is_null() || pitch.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let ctx = current_ctx()?;
        let (p, pt) = session()?.call::<(u64, u64)>(&Request::Mem(MemRequest::AllocPitch {
            ctx,
            width: width as u64,
            height: height as u64,
            elem,
        }))?;
        crate::runtime::host_memory::device_allocated(ctx, p, pt.saturating_mul(height as u64));
        out(pitch, pt as usize)?;
        out(dptr, p)
    })
}

/// Points the export slots of the functions implemented here at them. The
/// synchronous `_ptds` forms share the synchronous copies.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    let entries: &[(usize, Entry)] = &[
        (c::cuMemcpy2D_v2, cu_memcpy_2d as Entry),
        (c::cuMemcpy2D_v2_ptds, cu_memcpy_2d as Entry),
        (c::cuMemcpy2DUnaligned_v2, cu_memcpy_2d as Entry),
        (c::cuMemcpy2DUnaligned_v2_ptds, cu_memcpy_2d as Entry),
        (c::cuMemcpy2DAsync_v2, cu_memcpy_2d_async as Entry),
        (c::cuMemcpy2DAsync_v2_ptsz, cu_memcpy_2d_async_ptsz as Entry),
        (c::cuMemcpy3D_v2, cu_memcpy_3d as Entry),
        (c::cuMemcpy3D_v2_ptds, cu_memcpy_3d as Entry),
        (c::cuMemcpy3DAsync_v2, cu_memcpy_3d_async as Entry),
        (c::cuMemcpy3DAsync_v2_ptsz, cu_memcpy_3d_async_ptsz as Entry),
        (c::cuMemAllocPitch_v2, cu_mem_alloc_pitch as Entry),
        (c::cuMemcpy, cu_memcpy as Entry),
        (c::cuMemcpy_ptds, cu_memcpy as Entry),
        (c::cuMemcpyAsync, cu_memcpy_async as Entry),
        (c::cuMemcpyAsync_ptsz, cu_memcpy_async_ptsz as Entry),
    ];
    crate::set_each(set, entries);
}
