//! Kernel launches: the parameters are packed here into one buffer by the
//! layout cached with the function, and the launch is enqueued (no reply;
//! a failure surfaces at the next synchronization).

use std::ffi::{c_uint, c_void};

use tf_protocol::exec_msgs::{
    layout_size, ExecRequest, Launch, LaunchApi, LaunchAttr, ParamSlot, Shape, LAUNCH_ATTR_VALUE,
    MAX_LAUNCH_ATTRS, MAX_PARAMS,
};
use tf_protocol::status::cu;
use tf_protocol::Request;

use super::{ctx_or_zero, read, wire_stream, CUresult};
use crate::cuda::{guard, session};

type Handle = *mut c_void;

/// `CU_LAUNCH_PARAM_*` keys of the `extra` array.
const PARAM_END: usize = 0;
const PARAM_BUFFER_POINTER: usize = 1;
const PARAM_BUFFER_SIZE: usize = 2;
/// An `extra` array longer than this is not a well-formed one.
const MAX_EXTRA: usize = 64;

/// `CUlaunchAttribute`.
#[repr(C)]
struct RawAttr {
    id: u32,
    pad: [u8; 4],
    value: [u8; LAUNCH_ATTR_VALUE],
}

/// `CUlaunchConfig`.
#[repr(C)]
struct RawConfig {
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared_mem: c_uint,
    stream: Handle,
    attrs: *const RawAttr,
    num_attrs: c_uint,
}

/// Packs a launch's parameters into the buffer the worker unpacks by the
/// same layout: `kernelParams[i]` (each parameter's own bytes) copied to
/// its offset, or the `extra` buffer taken as it is.
///
/// # Safety
/// `kernel_params` holds one readable pointer per parameter, each to at
/// least that parameter's size; `extra` is a `CU_LAUNCH_PARAM_END`-terminated
/// key/value array whose buffer is readable for the size it gives.
pub(crate) unsafe fn pack(
    layout: Option<&[ParamSlot]>,
    kernel_params: *const *const c_void,
    extra: *const *const c_void,
) -> Result<Vec<u8>, CUresult> {
    match (kernel_params.is_null(), extra.is_null()) {
        (false, false) => Err(cu::INVALID_VALUE),
        (false, true) => {
            let layout = layout.ok_or_else(|| {
                tracing::warn!("the worker's driver cannot report this kernel's parameter layout; use the `extra` form");
                cu::NOT_SUPPORTED
            })?;
            let mut buf = vec![0u8; layout_size(layout)];
            for (i, p) in layout.iter().enumerate() {
                // SAFETY: one pointer per parameter (caller's contract).
                let src = unsafe { *kernel_params.add(i) };
                if src.is_null() {
                    return Err(cu::INVALID_VALUE);
                }
                let at = p.offset as usize;
                // SAFETY: the parameter's bytes are readable for its size;
                // `buf` holds every slot of the layout.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        src.cast::<u8>(),
                        buf[at..].as_mut_ptr(),
                        p.size as usize,
                    )
                };
            }
            Ok(buf)
        }
        (true, false) => {
            let (mut ptr, mut size) = (None, None);
            for i in 0..MAX_EXTRA {
                // SAFETY: the array is END-terminated (caller's contract); we
                // stop at END and never read past MAX_EXTRA pairs.
                let key = unsafe { *extra.add(2 * i) } as usize;
                if key == PARAM_END {
                    break;
                }
                // SAFETY: every key but END is followed by its value.
                let value = unsafe { *extra.add(2 * i + 1) };
                match key {
                    PARAM_BUFFER_POINTER => ptr = Some(value.cast::<u8>()),
                    PARAM_BUFFER_SIZE if !value.is_null() => {
                        // SAFETY: the size value points at a size_t.
                        size = Some(unsafe { *value.cast::<usize>() })
                    }
                    _ => return Err(cu::INVALID_VALUE),
                }
            }
            let (Some(p), Some(n)) = (ptr, size) else {
                return Err(cu::INVALID_VALUE);
            };
            if n > MAX_PARAMS || (p.is_null() && n > 0) {
                return Err(cu::INVALID_VALUE);
            }
            if n == 0 {
                return Ok(Vec::new());
            }
            // SAFETY: the buffer is readable for the size given with it.
            Ok(unsafe { std::slice::from_raw_parts(p, n) }.to_vec())
        }
        (true, true) => match layout {
            Some(l) if layout_size(l) > 0 => Err(cu::INVALID_VALUE),
            _ => Ok(Vec::new()),
        },
    }
}

/// Reads a `CUlaunchConfig` (streams become wire ids; events in attribute
/// values stay client ids, which the worker translates).
///
/// # Safety
/// `config` points at a `CUlaunchConfig` whose `attrs` holds `numAttrs` entries.
pub(crate) unsafe fn shape_of(config: *const c_void, per_thread: bool) -> Result<Shape, CUresult> {
    if config.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // SAFETY: a CUlaunchConfig (caller's contract).
    let c = unsafe { &*config.cast::<RawConfig>() };
    let n = c.num_attrs as usize;
    if n > MAX_LAUNCH_ATTRS || (n > 0 && c.attrs.is_null()) {
        return Err(cu::INVALID_VALUE);
    }
    let attrs = (0..n)
        .map(|i| {
            // SAFETY: `i < numAttrs` entries of the array.
            let a = unsafe { &*c.attrs.add(i) };
            LaunchAttr {
                id: a.id,
                value: a.value,
            }
        })
        .collect();
    Ok(Shape {
        grid: c.grid,
        block: c.block,
        shared_mem: c.shared_mem,
        stream: wire_stream(c.stream as u64, per_thread)?,
        attrs,
    })
}

/// Packs and enqueues one launch.
///
/// # Safety
/// As [`pack`].
unsafe fn launch(
    api: LaunchApi,
    f: Handle,
    shape: Shape,
    kp: *const *const c_void,
    extra: *const *const c_void,
) -> Result<(), CUresult> {
    let ctx = ctx_or_zero()?;
    let func = super::wire_func(f as u64);
    let layout = read()
        .funcs
        .get(&func)
        .ok_or(cu::INVALID_HANDLE)?
        .layout
        .clone();
    // SAFETY: forwarded from the caller.
    let params = unsafe { pack(layout.as_deref(), kp, extra) }?;
    // Pinned host memory handed to the kernel is mirrored for it first.
    crate::mapped::note_launch(ctx, &params);
    session()?.enqueue(&Request::Exec(ExecRequest::Launch(Launch {
        api,
        ctx,
        func,
        shape,
        params: &params,
    })))
}

#[allow(clippy::too_many_arguments)]
fn kernel(
    api: LaunchApi,
    per_thread: bool,
    f: Handle,
    grid: [c_uint; 3],
    block: [c_uint; 3],
    shared_mem: c_uint,
    stream: Handle,
    kp: *const *const c_void,
    extra: *const *const c_void,
) -> CUresult {
    guard(|| {
        let shape = Shape {
            grid,
            block,
            shared_mem,
            stream: wire_stream(stream as u64, per_thread)?,
            attrs: Vec::new(),
        };
        // SAFETY: the arguments of the calling export, per the CUDA contract.
        unsafe { launch(api, f, shape, kp, extra) }
    })
}

macro_rules! launch_kernel {
    ($name:ident, $per_thread:expr) => {
        #[allow(clippy::too_many_arguments)]
        unsafe extern "C" fn $name(
            f: Handle,
            gx: c_uint,
            gy: c_uint,
            gz: c_uint,
            bx: c_uint,
            by: c_uint,
            bz: c_uint,
            shared_mem: c_uint,
            stream: Handle,
            kp: *const *const c_void,
            extra: *const *const c_void,
        ) -> CUresult {
            kernel(
                LaunchApi::Kernel,
                $per_thread,
                f,
                [gx, gy, gz],
                [bx, by, bz],
                shared_mem,
                stream,
                kp,
                extra,
            )
        }
    };
}
launch_kernel!(cu_launch_kernel, false);
launch_kernel!(cu_launch_kernel_ptsz, true);

macro_rules! launch_cooperative {
    ($name:ident, $per_thread:expr) => {
        #[allow(clippy::too_many_arguments)]
        unsafe extern "C" fn $name(
            f: Handle,
            gx: c_uint,
            gy: c_uint,
            gz: c_uint,
            bx: c_uint,
            by: c_uint,
            bz: c_uint,
            shared_mem: c_uint,
            stream: Handle,
            kp: *const *const c_void,
        ) -> CUresult {
            let none = std::ptr::null();
            kernel(
                LaunchApi::Cooperative,
                $per_thread,
                f,
                [gx, gy, gz],
                [bx, by, bz],
                shared_mem,
                stream,
                kp,
                none,
            )
        }
    };
}
launch_cooperative!(cu_launch_cooperative_kernel, false);
launch_cooperative!(cu_launch_cooperative_kernel_ptsz, true);

macro_rules! launch_ex {
    ($name:ident, $per_thread:expr) => {
        unsafe extern "C" fn $name(
            config: *const c_void,
            f: Handle,
            kp: *const *const c_void,
            extra: *const *const c_void,
        ) -> CUresult {
            guard(|| {
                // SAFETY: the arguments of this export, per the CUDA contract.
                let shape = unsafe { shape_of(config, $per_thread) }?;
                // SAFETY: as above.
                unsafe { launch(LaunchApi::KernelEx, f, shape, kp, extra) }
            })
        }
    };
}
launch_ex!(cu_launch_kernel_ex, false);
launch_ex!(cu_launch_kernel_ex_ptsz, true);

pub(super) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    set(c::cuLaunchKernel, cu_launch_kernel as Entry);
    set(c::cuLaunchKernel_ptsz, cu_launch_kernel_ptsz as Entry);
    set(c::cuLaunchKernelEx, cu_launch_kernel_ex as Entry);
    set(c::cuLaunchKernelEx_ptsz, cu_launch_kernel_ex_ptsz as Entry);
    set(
        c::cuLaunchCooperativeKernel,
        cu_launch_cooperative_kernel as Entry,
    );
    set(
        c::cuLaunchCooperativeKernel_ptsz,
        cu_launch_cooperative_kernel_ptsz as Entry,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(offset: u32, size: u32) -> ParamSlot {
        ParamSlot { offset, size }
    }

    fn ptrs(v: &[*const c_void]) -> Vec<*const c_void> {
        v.to_vec()
    }

    #[test]
    fn kernel_params_go_to_their_offsets() {
        let a: u64 = 0x1111_2222_3333_4444;
        let n: u32 = 77;
        let x: f32 = 1.5;
        // (u64, u32, f32): 0, 8, 12.
        let layout = [slot(0, 8), slot(8, 4), slot(12, 4)];
        let kp = ptrs(&[
            (&a as *const u64).cast(),
            (&n as *const u32).cast(),
            (&x as *const f32).cast(),
        ]);
        // SAFETY: three parameters of the sizes above.
        let buf = unsafe { pack(Some(&layout), kp.as_ptr(), std::ptr::null()) }.unwrap();
        assert_eq!(buf.len(), 16);
        assert_eq!(&buf[0..8], &a.to_le_bytes());
        assert_eq!(&buf[8..12], &n.to_le_bytes());
        assert_eq!(&buf[12..16], &x.to_le_bytes());
    }

    #[test]
    fn by_value_structs_and_tensor_maps_keep_their_alignment() {
        #[repr(C, align(8))]
        struct Pair {
            a: u32,
            b: u64,
            c: u8,
        }
        #[repr(C, align(64))]
        struct TensorMap([u8; 128]);
        let flag: u8 = 9;
        let s = Pair { a: 1, b: 2, c: 3 };
        let mut tm = TensorMap([0; 128]);
        for (i, b) in tm.0.iter_mut().enumerate() {
            *b = i as u8 ^ 0x5A;
        }
        let k: i32 = -4;
        // u8 at 0, the 24-byte struct at 8, the 128-byte map at 64, int at 192.
        let layout = [slot(0, 1), slot(8, 24), slot(64, 128), slot(192, 4)];
        let kp = ptrs(&[
            (&flag as *const u8).cast(),
            (&s as *const Pair).cast(),
            (&tm as *const TensorMap).cast(),
            (&k as *const i32).cast(),
        ]);
        // SAFETY: four parameters of the sizes above.
        let buf = unsafe { pack(Some(&layout), kp.as_ptr(), std::ptr::null()) }.unwrap();
        assert_eq!(buf.len(), 196);
        assert_eq!(buf[0], 9);
        assert_eq!(&buf[1..8], &[0; 7], "padding stays zero");
        assert_eq!(&buf[8..12], &1u32.to_le_bytes());
        assert_eq!(&buf[16..24], &2u64.to_le_bytes());
        assert_eq!(buf[24], 3);
        assert_eq!(&buf[64..192], &tm.0[..]);
        assert_eq!(&buf[192..196], &(-4i32).to_le_bytes());
    }

    #[test]
    fn extra_buffer_is_taken_as_given() {
        let mut args = [0u8; 24];
        args[..8].copy_from_slice(&7u64.to_le_bytes());
        args[16..20].copy_from_slice(&5u32.to_le_bytes());
        let size: usize = 20;
        let extra = ptrs(&[
            PARAM_BUFFER_POINTER as *const c_void,
            args.as_ptr().cast(),
            PARAM_BUFFER_SIZE as *const c_void,
            (&size as *const usize).cast(),
            PARAM_END as *const c_void,
        ]);
        let layout = [slot(0, 8), slot(16, 4)];
        // SAFETY: a well-formed extra array over `args`.
        let buf = unsafe { pack(Some(&layout), std::ptr::null(), extra.as_ptr()) }.unwrap();
        assert_eq!(buf, args[..20].to_vec());
        // Works without a known layout too.
        // SAFETY: as above.
        let buf = unsafe { pack(None, std::ptr::null(), extra.as_ptr()) }.unwrap();
        assert_eq!(buf.len(), 20);
    }

    #[test]
    fn malformed_launch_arguments_are_refused() {
        let v: u64 = 1;
        let kp = ptrs(&[(&v as *const u64).cast()]);
        let layout = [slot(0, 8)];
        let size: usize = 8;
        let extra = ptrs(&[
            PARAM_BUFFER_POINTER as *const c_void,
            (&v as *const u64).cast(),
            PARAM_BUFFER_SIZE as *const c_void,
            (&size as *const usize).cast(),
            PARAM_END as *const c_void,
        ]);
        // SAFETY: valid arrays; the combinations are what is being refused.
        unsafe {
            assert_eq!(
                pack(Some(&layout), kp.as_ptr(), extra.as_ptr()),
                Err(cu::INVALID_VALUE),
                "both forms"
            );
            assert_eq!(
                pack(Some(&layout), std::ptr::null(), std::ptr::null()),
                Err(cu::INVALID_VALUE),
                "no parameters"
            );
            assert_eq!(
                pack(Some(&[]), std::ptr::null(), std::ptr::null()),
                Ok(vec![]),
                "none needed"
            );
            assert_eq!(
                pack(None, kp.as_ptr(), std::ptr::null()),
                Err(cu::NOT_SUPPORTED),
                "unknown layout"
            );
            let null_param = ptrs(&[std::ptr::null()]);
            assert_eq!(
                pack(Some(&layout), null_param.as_ptr(), std::ptr::null()),
                Err(cu::INVALID_VALUE)
            );
            let no_size = ptrs(&[
                PARAM_BUFFER_POINTER as *const c_void,
                (&v as *const u64).cast(),
                PARAM_END as *const c_void,
            ]);
            assert_eq!(
                pack(None, std::ptr::null(), no_size.as_ptr()),
                Err(cu::INVALID_VALUE)
            );
            let bad_key = ptrs(&[
                9 as *const c_void,
                std::ptr::null(),
                PARAM_END as *const c_void,
            ]);
            assert_eq!(
                pack(None, std::ptr::null(), bad_key.as_ptr()),
                Err(cu::INVALID_VALUE)
            );
        }
    }

    #[test]
    fn launch_config_layout_matches_cuda_h() {
        // CUlaunchConfig: 7 unsigned ints, then the stream pointer at 32.
        assert_eq!(std::mem::size_of::<RawConfig>(), 56);
        assert_eq!(std::mem::offset_of!(RawConfig, stream), 32);
        assert_eq!(std::mem::offset_of!(RawConfig, num_attrs), 48);
        // CUlaunchAttribute: id, 4 bytes of padding, a 64-byte value.
        assert_eq!(std::mem::size_of::<RawAttr>(), 72);
    }
}
