//! The JIT linker (`cuLink*`) and tensor maps (`cuTensorMapEncode*`).
//!
//! A link is collected here: `cuLinkCreate` mints an id and keeps the
//! options (the application's option values must stay valid for the life
//! of the link, so the outputs are written back into them later, as the
//! driver does), `cuLinkAddData` copies each input and `cuLinkAddFile`
//! reads the file here, where the application's files are. Inputs are
//! checked at the call (type, size, readable bytes, the magic their type
//! implies); compiling and linking happen on the worker at
//! `cuLinkComplete`, which sends the whole link in one request (large
//! inputs staged ahead as image parts) and reads the linked image back.
//! The image lives here until `cuLinkDestroy`, as the driver's does in its
//! link state. So a PTX error is reported by `cuLinkComplete`, with its
//! error log, where the driver reports it at `cuLinkAddData`.
//!
//! Tensor maps are encoded by the worker's driver (the map holds device
//! addresses and layouts only that driver knows); the 128 bytes come back
//! and are written into the application's `CUtensorMap`.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::sync::{Mutex, MutexGuard, OnceLock};

use tf_protocol::exec_msgs::{
    handle, jit, tensor_map_rank_ok, ExecRequest, LinkBytes, LinkInput, LinkReply, Opt,
    TensorMapBytes, TensorMapEncode, TensorMapShape, JIT_INPUT_TYPES, MAX_LINKED, MAX_LINK_INPUTS,
    MAX_TENSOR_RANK, TENSOR_MAP_BYTES,
};
use tf_protocol::status::cu;
use tf_protocol::Request;

use super::module::{apply_log, jit_options, options};
use super::{image, mint, CUresult};
use crate::cuda::{guard, out, session};

type Handle = *mut c_void;

/// `CUDA_ERROR_FILE_NOT_FOUND`.
const FILE_NOT_FOUND: u32 = 301;
/// `CU_JIT_INPUT_*` values whose bytes start with a magic.
const INPUT_CUBIN: u32 = 0;
const INPUT_FATBINARY: u32 = 2;
const INPUT_OBJECT: u32 = 3;
const INPUT_LIBRARY: u32 = 4;

/// One pending link.
struct LinkState {
    ctx: u64,
    jit: Vec<Opt>,
    /// The application's `optionValues` array (kept valid by the CUDA
    /// contract while output options are used), for the outputs.
    values: usize,
    inputs: Vec<LinkInput>,
    data: Vec<u8>,
    /// Linked images handed out, alive until `cuLinkDestroy` (a second
    /// `cuLinkComplete` must not free the first one's image). Words, so
    /// the image is 8-byte aligned like the driver's.
    images: Vec<Box<[u64]>>,
}

fn links() -> MutexGuard<'static, HashMap<u64, LinkState>> {
    static L: OnceLock<Mutex<HashMap<u64, LinkState>>> = OnceLock::new();
    L.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// `cuLinkCreate`'s options: values, and the log buffers and outputs the
/// client fills from the worker's answer. Options that point at the
/// application's memory are refused (`jit_options` says so in the log).
fn create_options(opts: Vec<Opt>) -> Result<Vec<Opt>, CUresult> {
    let (opts, _) = jit_options(opts)?;
    if let Some(o) = opts.iter().find(|o| {
        !jit::by_value(o.option) && o.option != jit::INFO_LOG && o.option != jit::ERROR_LOG
    }) {
        tracing::warn!(
            option = o.option,
            "cuLinkCreate: a JIT option this client does not know; answering CUDA_ERROR_INVALID_VALUE"
        );
        return Err(cu::INVALID_VALUE);
    }
    Ok(opts)
}

/// An input's own options: values only (outputs and logs belong to
/// `cuLinkCreate`, whose options the driver reports into).
fn input_options(opts: Vec<Opt>) -> Result<Vec<Opt>, CUresult> {
    let (opts, _) = jit_options(opts)?;
    let output = |o: u32| {
        matches!(
            o,
            jit::THREADS_PER_BLOCK | jit::WALL_TIME | jit::INFO_LOG_SIZE | jit::ERROR_LOG_SIZE
        )
    };
    if let Some(o) = opts
        .iter()
        .find(|o| !jit::by_value(o.option) || output(o.option))
    {
        tracing::warn!(
            option = o.option,
            "cuLinkAddData/cuLinkAddFile: per-input output, log or unknown JIT options are not remoted (give them to cuLinkCreate); answering CUDA_ERROR_NOT_SUPPORTED"
        );
        return Err(cu::NOT_SUPPORTED);
    }
    Ok(opts)
}

unsafe extern "C" fn cu_link_create(
    n: c_uint,
    opts: *mut c_uint,
    values: *mut *mut c_void,
    state: *mut Handle,
) -> CUresult {
    guard(|| {
        if state.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let ctx = crate::cuda::current_ctx()?;
        // SAFETY: `n` entries per the CUDA contract.
        let jit = create_options(unsafe { options(n, opts, values) }?)?;
        let id = mint(handle::LINK);
        links().insert(
            id,
            LinkState {
                ctx,
                jit,
                values: values as usize,
                inputs: Vec::new(),
                data: Vec::new(),
                images: Vec::new(),
            },
        );
        out(state, id as Handle)
    })
}

/// Checks an input against the link's limits and the magic its type
/// implies, then appends it.
fn add_input(
    link: u64,
    kind: u32,
    bytes: &[u8],
    name: String,
    jit: Vec<Opt>,
) -> Result<(), CUresult> {
    let magic_ok = match kind {
        INPUT_CUBIN | INPUT_OBJECT => bytes.starts_with(&tf_image::ELF_MAGIC),
        INPUT_FATBINARY => bytes.starts_with(&tf_image::FATBIN_MAGIC.to_le_bytes()),
        INPUT_LIBRARY => bytes.starts_with(&tf_image::AR_MAGIC),
        _ => true,
    };
    if !magic_ok {
        tracing::warn!(kind, %name, "cuLinkAddData: the input is not of the type given");
        return Err(image::INVALID_IMAGE);
    }
    let mut l = links();
    let s = l.get_mut(&link).ok_or(cu::INVALID_HANDLE)?;
    if s.inputs.len() >= MAX_LINK_INPUTS || s.data.len() + bytes.len() > MAX_LINKED {
        tracing::warn!(
            inputs = s.inputs.len(),
            bytes = s.data.len() + bytes.len(),
            "cuLinkAddData: a link of more than {MAX_LINK_INPUTS} inputs or {MAX_LINKED} bytes is not remoted"
        );
        return Err(cu::INVALID_VALUE);
    }
    s.inputs.push(LinkInput {
        kind,
        name,
        jit,
        size: bytes.len() as u64,
    });
    s.data.extend_from_slice(bytes);
    Ok(())
}

/// Checks what needs no reading first: the link, the type, the size.
fn check_input(link: u64, kind: u32, size: usize) -> Result<(), CUresult> {
    if !links().contains_key(&link) {
        return Err(cu::INVALID_HANDLE);
    }
    if kind >= JIT_INPUT_TYPES || size == 0 {
        return Err(cu::INVALID_VALUE);
    }
    if size > MAX_LINKED {
        tracing::warn!(
            size,
            "cuLinkAddData: an input over {MAX_LINKED} bytes is not remoted"
        );
        return Err(cu::INVALID_VALUE);
    }
    Ok(())
}

fn opt_name(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: a NUL-terminated name by the CUDA contract.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

#[allow(clippy::too_many_arguments)] // cuLinkAddData's own arguments
unsafe extern "C" fn cu_link_add_data(
    state: Handle,
    kind: c_uint,
    data: *mut c_void,
    size: usize,
    name: *const c_char,
    n: c_uint,
    opts: *mut c_uint,
    values: *mut *mut c_void,
) -> CUresult {
    guard(|| {
        let link = state as u64;
        check_input(link, kind, size)?;
        if data.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: `n` entries per the CUDA contract.
        let jit = input_options(unsafe { options(n, opts, values) }?)?;
        let bytes = image::bytes(data.cast(), size)?;
        add_input(link, kind, bytes, opt_name(name), jit)
    })
}

unsafe extern "C" fn cu_link_add_file(
    state: Handle,
    kind: c_uint,
    path: *const c_char,
    n: c_uint,
    opts: *mut c_uint,
    values: *mut *mut c_void,
) -> CUresult {
    guard(|| {
        let link = state as u64;
        if path.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        let path = opt_name(path);
        let len = std::fs::metadata(&path).map_err(|e| {
            tracing::debug!(%path, "cuLinkAddFile: {e}");
            FILE_NOT_FOUND
        })?;
        check_input(link, kind, len.len().try_into().unwrap_or(usize::MAX))?;
        // SAFETY: `n` entries per the CUDA contract.
        let jit = input_options(unsafe { options(n, opts, values) }?)?;
        let bytes = std::fs::read(&path).map_err(|e| {
            tracing::debug!(%path, "cuLinkAddFile: {e}");
            FILE_NOT_FOUND
        })?;
        check_input(link, kind, bytes.len())?;
        add_input(link, kind, &bytes, path, jit)
    })
}

/// Sends the link (leading bytes as staged parts) and reads the image back.
fn run_link(link: u64, s: &LinkState) -> Result<(LinkReply, Vec<u8>), CUresult> {
    let c = session()?;
    let fixed = 64
        + 12 * s.jit.len()
        + s.inputs
            .iter()
            .map(|i| 32 + i.name.len() + 12 * i.jit.len())
            .sum::<usize>();
    let room = c.chunk().saturating_sub(fixed).max(4096);
    let pieces: Vec<&[u8]> = s.data.chunks(room).collect();
    let (tail, rest) = match pieces.split_last() {
        Some((last, rest)) => (*last, rest),
        None => (&[][..], &[][..]),
    };
    let mut offset = 0u64;
    for data in rest {
        c.enqueue(&Request::Exec(ExecRequest::ImagePart {
            handle: link,
            offset,
            data,
        }))?;
        offset += data.len() as u64;
    }
    let reply = c.call::<LinkReply>(&Request::Exec(ExecRequest::Link {
        ctx: s.ctx,
        link,
        jit: s.jit.clone(),
        inputs: s.inputs.clone(),
        tail,
    }))?;
    let mut image = Vec::with_capacity(reply.size as usize);
    if reply.log.status == 0 {
        while (image.len() as u64) < reply.size {
            let want = (reply.size - image.len() as u64).min(c.chunk() as u64);
            let LinkBytes(part) = c.call::<LinkBytes>(&Request::Exec(ExecRequest::LinkRead {
                link,
                offset: image.len() as u64,
                size: want,
            }))?;
            if part.len() as u64 != want {
                return Err(cu::UNKNOWN);
            }
            image.extend_from_slice(&part);
        }
    }
    Ok((reply, image))
}

unsafe extern "C" fn cu_link_complete(
    state: Handle,
    cubin: *mut *mut c_void,
    size: *mut usize,
) -> CUresult {
    guard(|| {
        let link = state as u64;
        if cubin.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // The state leaves the table while the worker links, so the lock
        // is not held across the round trips.
        let mut s = links().remove(&link).ok_or(cu::INVALID_HANDLE)?;
        if s.inputs.is_empty() {
            links().insert(link, s);
            return Err(cu::INVALID_VALUE);
        }
        let _span = tracing::debug_span!(
            "cuLinkComplete",
            inputs = s.inputs.len(),
            bytes = s.data.len()
        )
        .entered();
        let r = run_link(link, &s);
        let result = r.map(|(reply, image)| {
            if s.values != 0 {
                // SAFETY: the application's option values, valid for the
                // life of the link by the CUDA contract, and its log
                // buffers of the sizes its options give.
                unsafe { apply_log(&s.jit, s.values as *mut *mut c_void, &reply.log) };
            }
            (reply.log.status, image)
        });
        let out_ptr = match result {
            Ok((0, image)) => {
                let mut words = vec![0u64; image.len().div_ceil(8)].into_boxed_slice();
                // SAFETY: `words` holds at least `image.len()` bytes; disjoint.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        image.as_ptr(),
                        words.as_mut_ptr().cast::<u8>(),
                        image.len(),
                    )
                };
                let p = words.as_ptr() as usize;
                s.images.push(words);
                Ok((p, image.len()))
            }
            Ok((status, _)) => Err(status),
            Err(e) => Err(e),
        };
        links().insert(link, s);
        let (p, n) = out_ptr?;
        out(cubin, p as *mut c_void)?;
        if !size.is_null() {
            out(size, n)?;
        }
        Ok(())
    })
}

unsafe extern "C" fn cu_link_destroy(state: Handle) -> CUresult {
    guard(|| {
        links()
            .remove(&(state as u64))
            .map(|_| ())
            .ok_or(cu::INVALID_HANDLE)
    })
}

/// Reads `n` entries of a tensor map argument array.
///
/// # Safety
/// `p` points to at least `n` readable `T`s when it is not null.
unsafe fn array<T: Copy>(p: *const T, n: usize) -> Result<Vec<T>, CUresult> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: `n` readable entries (caller's contract), n <= MAX_TENSOR_RANK.
    Ok(unsafe { std::slice::from_raw_parts(p, n) }.to_vec())
}

/// The common arguments of the encoders; the maps's pointer is checked for
/// the 64-byte alignment the driver requires.
struct Common {
    map: *mut c_void,
    dtype: c_uint,
    rank: u32,
    address: *mut c_void,
    dims: *const u64,
    strides: *const u64,
    element_strides: *const u32,
    interleave: c_uint,
    swizzle: c_uint,
    l2: c_uint,
    oob: c_uint,
}

/// Encodes on the worker and writes the 128 bytes into the application's map.
///
/// # Safety
/// The pointers of `c` are the application's arguments, each as long as
/// the rank says (checked against the rank before any read).
unsafe fn encode(c: Common, shape: TensorMapShape) -> Result<(), CUresult> {
    if c.map.is_null() || !(c.map as usize).is_multiple_of(64) {
        return Err(cu::INVALID_VALUE);
    }
    if !tensor_map_rank_ok(c.rank, &shape) {
        tracing::debug!(rank = c.rank, "cuTensorMapEncode: rank out of range");
        return Err(cu::INVALID_VALUE);
    }
    let r = c.rank as usize;
    debug_assert!(r <= MAX_TENSOR_RANK);
    let e = TensorMapEncode {
        ctx: crate::cuda::current_ctx()?,
        dtype: c.dtype,
        rank: c.rank,
        address: c.address as u64,
        // SAFETY: rank-long arrays (rank - 1 for the strides), caller's contract.
        dims: unsafe { array(c.dims, r) }?,
        // SAFETY: as above.
        strides: unsafe { array(c.strides, r - 1) }?,
        // SAFETY: as above.
        element_strides: unsafe { array(c.element_strides, r) }?,
        interleave: c.interleave,
        swizzle: c.swizzle,
        l2: c.l2,
        oob: c.oob,
        shape,
    };
    let TensorMapBytes(m) =
        session()?.call::<TensorMapBytes>(&Request::Exec(ExecRequest::TensorMapEncode(e)))?;
    // SAFETY: the application's CUtensorMap: 128 writable bytes, aligned (checked).
    unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), c.map.cast::<u8>(), TENSOR_MAP_BYTES) };
    Ok(())
}

#[allow(clippy::too_many_arguments)] // cuTensorMapEncodeTiled's own arguments
unsafe extern "C" fn cu_tensor_map_encode_tiled(
    map: *mut c_void,
    dtype: c_uint,
    rank: u32,
    address: *mut c_void,
    dims: *const u64,
    strides: *const u64,
    box_dim: *const u32,
    element_strides: *const u32,
    interleave: c_uint,
    swizzle: c_uint,
    l2: c_uint,
    oob: c_uint,
) -> CUresult {
    guard(|| {
        let n = if rank as usize <= MAX_TENSOR_RANK {
            rank as usize
        } else {
            0
        };
        // SAFETY: `rank` entries by the CUDA contract (none read when the rank is out of range).
        let box_dim = unsafe { array(box_dim, n) }?;
        let c = Common {
            map,
            dtype,
            rank,
            address,
            dims,
            strides,
            element_strides,
            interleave,
            swizzle,
            l2,
            oob,
        };
        // SAFETY: the application's arguments, as `encode` requires.
        unsafe { encode(c, TensorMapShape::Tiled { box_dim }) }
    })
}

#[allow(clippy::too_many_arguments)] // cuTensorMapEncodeIm2col's own arguments
unsafe extern "C" fn cu_tensor_map_encode_im2col(
    map: *mut c_void,
    dtype: c_uint,
    rank: u32,
    address: *mut c_void,
    dims: *const u64,
    strides: *const u64,
    lower: *const c_int,
    upper: *const c_int,
    channels: u32,
    pixels: u32,
    element_strides: *const u32,
    interleave: c_uint,
    swizzle: c_uint,
    l2: c_uint,
    oob: c_uint,
) -> CUresult {
    guard(|| {
        let n = if (3..=MAX_TENSOR_RANK).contains(&(rank as usize)) {
            rank as usize - 2
        } else {
            0
        };
        // SAFETY: `rank - 2` entries each by the CUDA contract.
        let (lower, upper) = unsafe { (array(lower, n)?, array(upper, n)?) };
        let c = Common {
            map,
            dtype,
            rank,
            address,
            dims,
            strides,
            element_strides,
            interleave,
            swizzle,
            l2,
            oob,
        };
        let shape = TensorMapShape::Im2col {
            lower,
            upper,
            channels,
            pixels,
        };
        // SAFETY: the application's arguments, as `encode` requires.
        unsafe { encode(c, shape) }
    })
}

#[allow(clippy::too_many_arguments)] // cuTensorMapEncodeIm2colWide's own arguments
unsafe extern "C" fn cu_tensor_map_encode_im2col_wide(
    map: *mut c_void,
    dtype: c_uint,
    rank: u32,
    address: *mut c_void,
    dims: *const u64,
    strides: *const u64,
    lower: c_int,
    upper: c_int,
    channels: u32,
    pixels: u32,
    element_strides: *const u32,
    interleave: c_uint,
    mode: c_uint,
    swizzle: c_uint,
    l2: c_uint,
    oob: c_uint,
) -> CUresult {
    guard(|| {
        let c = Common {
            map,
            dtype,
            rank,
            address,
            dims,
            strides,
            element_strides,
            interleave,
            swizzle,
            l2,
            oob,
        };
        let shape = TensorMapShape::Im2colWide {
            lower,
            upper,
            channels,
            pixels,
            mode,
        };
        // SAFETY: the application's arguments, as `encode` requires.
        unsafe { encode(c, shape) }
    })
}

unsafe extern "C" fn cu_tensor_map_replace_address(
    map: *mut c_void,
    address: *mut c_void,
) -> CUresult {
    guard(|| {
        if map.is_null() || !(map as usize).is_multiple_of(64) {
            return Err(cu::INVALID_VALUE);
        }
        let mut m = [0u8; TENSOR_MAP_BYTES];
        // SAFETY: the application's CUtensorMap: 128 readable bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(map.cast::<u8>(), m.as_mut_ptr(), TENSOR_MAP_BYTES)
        };
        let TensorMapBytes(m) = session()?.call::<TensorMapBytes>(&Request::Exec(
            ExecRequest::TensorMapReplaceAddress {
                ctx: crate::cuda::current_ctx()?,
                map: m,
                address: address as u64,
            },
        ))?;
        // SAFETY: as above, writable.
        unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), map.cast::<u8>(), TENSOR_MAP_BYTES) };
        Ok(())
    })
}

pub(super) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    set(c::cuLinkCreate, cu_link_create as Entry);
    set(c::cuLinkCreate_v2, cu_link_create as Entry);
    set(c::cuLinkAddData, cu_link_add_data as Entry);
    set(c::cuLinkAddData_v2, cu_link_add_data as Entry);
    set(c::cuLinkAddFile, cu_link_add_file as Entry);
    set(c::cuLinkAddFile_v2, cu_link_add_file as Entry);
    set(c::cuLinkComplete, cu_link_complete as Entry);
    set(c::cuLinkDestroy, cu_link_destroy as Entry);
    set(
        c::cuTensorMapEncodeTiled,
        cu_tensor_map_encode_tiled as Entry,
    );
    set(
        c::cuTensorMapEncodeIm2col,
        cu_tensor_map_encode_im2col as Entry,
    );
    set(
        c::cuTensorMapEncodeIm2colWide,
        cu_tensor_map_encode_im2col_wide as Entry,
    );
    set(
        c::cuTensorMapReplaceAddress,
        cu_tensor_map_replace_address as Entry,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(option: u32) -> Opt {
        Opt { option, value: 0 }
    }

    #[test]
    fn create_keeps_logs_and_values_and_refuses_pointers_and_unknown_options() {
        assert!(create_options(vec![
            o(jit::INFO_LOG),
            o(jit::INFO_LOG_SIZE),
            o(jit::WALL_TIME),
            o(7)
        ])
        .is_ok());
        assert_eq!(create_options(vec![o(17)]).unwrap_err(), cu::NOT_SUPPORTED);
        assert_eq!(create_options(vec![o(99)]).unwrap_err(), cu::INVALID_VALUE);
    }

    #[test]
    fn inputs_take_values_only() {
        assert!(input_options(vec![o(7), o(9)]).is_ok());
        for bad in [jit::INFO_LOG, jit::ERROR_LOG_SIZE, jit::WALL_TIME, 25, 99] {
            assert!(input_options(vec![o(bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_rank_out_of_range_is_refused_before_any_read() {
        let mut map = [0u64; 32];
        let at = map.as_mut_ptr() as usize;
        let aligned = (at.div_ceil(64) * 64) as *mut c_void;
        for rank in [0u32, 6] {
            let c = Common {
                map: aligned,
                dtype: 7,
                rank,
                address: 0x1000 as *mut c_void,
                // Null arrays: read only if the rank were accepted.
                dims: std::ptr::null(),
                strides: std::ptr::null(),
                element_strides: std::ptr::null(),
                interleave: 0,
                swizzle: 0,
                l2: 0,
                oob: 0,
            };
            // SAFETY: nothing is read: the rank is refused first.
            let r = unsafe {
                encode(
                    c,
                    TensorMapShape::Tiled {
                        box_dim: Vec::new(),
                    },
                )
            };
            assert_eq!(r.unwrap_err(), cu::INVALID_VALUE);
        }
    }
}
