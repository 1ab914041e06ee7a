//! Decoding of the exec requests other than loads (see the parent module).

use super::{
    bad, count, get_opt_u32, get_shape, ExecRequest, LaunchApi, Memset, Occupancy, MAX_BLOCK_TABLE,
    MAX_NAME, MAX_PARAMS,
};
use crate::codec::Reader;
use crate::ProtocolError;
use tf_api::op;

/// `None` if `opcode` is not an exec opcode; else the validated request.
pub(super) fn decode(
    opcode: u32,
    payload: &[u8],
) -> Option<Result<ExecRequest<'_>, ProtocolError>> {
    let mut r = Reader::new(payload, "exec request");
    let req = match request(opcode, payload, &mut r)? {
        Ok(Decoded::Done(req)) => return Some(Ok(req)),
        Ok(Decoded::Fixed(req)) => req,
        Err(e) => return Some(Err(e)),
    };
    Some(r.end().map(|()| req))
}

enum Decoded<'a> {
    /// Fully consumed (bulk data at the end was taken by length).
    Done(ExecRequest<'a>),
    /// The reader must be at its end.
    Fixed(ExecRequest<'a>),
}

fn name(r: &mut Reader<'_>) -> Result<String, ProtocolError> {
    Ok(r.str(MAX_NAME)?.to_owned())
}

fn request<'a>(
    opcode: u32,
    payload: &'a [u8],
    r: &mut Reader<'a>,
) -> Option<Result<Decoded<'a>, ProtocolError>> {
    use ExecRequest as E;
    let inner = || -> Result<Decoded<'a>, ProtocolError> {
        let req = match opcode {
            op::cuModuleUnload => E::ModuleUnload { module: r.u64()? },
            op::cuModuleGetFunction => E::ModuleGetFunction {
                module: r.u64()?,
                name: name(r)?,
            },
            op::cuModuleGetGlobal_v2 => E::ModuleGetGlobal {
                module: r.u64()?,
                name: name(r)?,
            },
            op::cuLibraryUnload => E::LibraryUnload { library: r.u64()? },
            op::cuLibraryGetKernel => E::LibraryGetKernel {
                library: r.u64()?,
                name: name(r)?,
            },
            op::cuLibraryGetModule => E::LibraryGetModule {
                ctx: r.u64()?,
                library: r.u64()?,
                module: r.u64()?,
            },
            op::cuLibraryGetGlobal => E::LibraryGetGlobal {
                ctx: r.u64()?,
                library: r.u64()?,
                name: name(r)?,
            },
            op::cuKernelGetFunction => E::KernelGetFunction {
                ctx: r.u64()?,
                kernel: r.u64()?,
            },
            op::cuFuncGetAttribute => E::FuncGetAttribute {
                ctx: r.u64()?,
                func: r.u64()?,
                attrib: r.i32()?,
            },
            op::cuFuncSetAttribute => E::FuncSetAttribute {
                ctx: r.u64()?,
                func: r.u64()?,
                attrib: r.i32()?,
                value: r.i32()?,
            },
            op::cuFuncSetCacheConfig => E::FuncSetCacheConfig {
                ctx: r.u64()?,
                func: r.u64()?,
                config: r.u32()?,
            },
            op::cuKernelGetAttribute => E::KernelGetAttribute {
                kernel: r.u64()?,
                attrib: r.i32()?,
                dev: r.i32()?,
            },
            op::cuKernelSetAttribute => E::KernelSetAttribute {
                kernel: r.u64()?,
                attrib: r.i32()?,
                value: r.i32()?,
                dev: r.i32()?,
            },
            op::cuOccupancyMaxActiveBlocksPerMultiprocessor
            | op::cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags
            | op::cuOccupancyMaxPotentialBlockSize
            | op::cuOccupancyMaxPotentialBlockSizeWithFlags
            | op::cuOccupancyAvailableDynamicSMemPerBlock
            | op::cuOccupancyMaxPotentialClusterSize
            | op::cuOccupancyMaxActiveClusters => {
                let (ctx, func) = (r.u64()?, r.u64()?);
                E::Occupancy {
                    ctx,
                    func,
                    query: occupancy(opcode, r)?,
                }
            }
            op::cuLaunchKernel | op::cuLaunchKernelEx | op::cuLaunchCooperativeKernel => {
                let api = match opcode {
                    op::cuLaunchKernel => LaunchApi::Kernel,
                    op::cuLaunchKernelEx => LaunchApi::KernelEx,
                    _ => LaunchApi::Cooperative,
                };
                let (ctx, func) = (r.u64()?, r.u64()?);
                let shape = get_shape(r)?;
                let n = r.u32()? as usize;
                if n > MAX_PARAMS || r.remaining() != n {
                    return Err(bad("launch", "parameter length disagrees with frame"));
                }
                return Ok(Decoded::Done(E::Launch(super::Launch {
                    api,
                    ctx,
                    func,
                    shape,
                    params: &payload[payload.len() - n..],
                })));
            }
            op::cuStreamCreate | op::cuStreamCreateWithPriority => {
                let (ctx, stream, flags) = (r.u64()?, r.u64()?, r.u32()?);
                let priority = get_opt_u32(r)?.map(|p| p as i32);
                if priority.is_some() != (opcode == op::cuStreamCreateWithPriority) {
                    return Err(bad("stream create", "priority disagrees with opcode"));
                }
                E::StreamCreate {
                    ctx,
                    stream,
                    flags,
                    priority,
                }
            }
            op::cuStreamDestroy_v2 => E::StreamDestroy { stream: r.u64()? },
            op::cuStreamSynchronize => E::StreamSynchronize {
                ctx: r.u64()?,
                stream: r.u64()?,
            },
            op::cuStreamQuery => E::StreamQuery {
                ctx: r.u64()?,
                stream: r.u64()?,
            },
            op::cuStreamWaitEvent => E::StreamWaitEvent {
                ctx: r.u64()?,
                stream: r.u64()?,
                event: r.u64()?,
                flags: r.u32()?,
            },
            op::cuStreamGetPriority => E::StreamGetPriority {
                ctx: r.u64()?,
                stream: r.u64()?,
            },
            op::cuEventCreate => E::EventCreate {
                ctx: r.u64()?,
                event: r.u64()?,
                flags: r.u32()?,
            },
            op::cuEventRecord | op::cuEventRecordWithFlags => {
                let (ctx, event, stream) = (r.u64()?, r.u64()?, r.u64()?);
                let flags = get_opt_u32(r)?;
                if flags.is_some() != (opcode == op::cuEventRecordWithFlags) {
                    return Err(bad("event record", "flags disagree with opcode"));
                }
                E::EventRecord {
                    ctx,
                    event,
                    stream,
                    flags,
                }
            }
            op::cuEventSynchronize => E::EventSynchronize { event: r.u64()? },
            op::cuEventQuery => E::EventQuery { event: r.u64()? },
            op::cuEventElapsedTime_v2 => E::EventElapsedTime {
                start: r.u64()?,
                end: r.u64()?,
            },
            op::cuEventDestroy_v2 => E::EventDestroy { event: r.u64()? },
            op::cuMemsetD8Async
            | op::cuMemsetD16Async
            | op::cuMemsetD32Async
            | op::cuMemsetD2D8Async
            | op::cuMemsetD2D16Async
            | op::cuMemsetD2D32Async => E::MemsetAsync(memset(opcode, r)?),
            _ => unreachable!("filtered by `knows`"),
        };
        Ok(Decoded::Fixed(req))
    };
    knows(opcode).then(inner)
}

fn knows(opcode: u32) -> bool {
    matches!(
        opcode,
        op::cuModuleUnload
            | op::cuModuleGetFunction
            | op::cuModuleGetGlobal_v2
            | op::cuLibraryUnload
            | op::cuLibraryGetKernel
            | op::cuLibraryGetModule
            | op::cuLibraryGetGlobal
            | op::cuKernelGetFunction
            | op::cuFuncGetAttribute
            | op::cuFuncSetAttribute
            | op::cuFuncSetCacheConfig
            | op::cuKernelGetAttribute
            | op::cuKernelSetAttribute
            | op::cuOccupancyMaxActiveBlocksPerMultiprocessor
            | op::cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags
            | op::cuOccupancyMaxPotentialBlockSize
            | op::cuOccupancyMaxPotentialBlockSizeWithFlags
            | op::cuOccupancyAvailableDynamicSMemPerBlock
            | op::cuOccupancyMaxPotentialClusterSize
            | op::cuOccupancyMaxActiveClusters
            | op::cuLaunchKernel
            | op::cuLaunchKernelEx
            | op::cuLaunchCooperativeKernel
            | op::cuStreamCreate
            | op::cuStreamCreateWithPriority
            | op::cuStreamDestroy_v2
            | op::cuStreamSynchronize
            | op::cuStreamQuery
            | op::cuStreamWaitEvent
            | op::cuStreamGetPriority
            | op::cuEventCreate
            | op::cuEventRecord
            | op::cuEventRecordWithFlags
            | op::cuEventSynchronize
            | op::cuEventQuery
            | op::cuEventElapsedTime_v2
            | op::cuEventDestroy_v2
            | op::cuMemsetD8Async
            | op::cuMemsetD16Async
            | op::cuMemsetD32Async
            | op::cuMemsetD2D8Async
            | op::cuMemsetD2D16Async
            | op::cuMemsetD2D32Async
    )
}

fn occupancy(opcode: u32, r: &mut Reader<'_>) -> Result<Occupancy, ProtocolError> {
    let with_flags = |r: &mut Reader<'_>, want: bool| -> Result<Option<u32>, ProtocolError> {
        let f = get_opt_u32(r)?;
        if f.is_some() != want {
            return Err(bad("occupancy", "flags disagree with opcode"));
        }
        Ok(f)
    };
    Ok(match opcode {
        op::cuOccupancyMaxActiveBlocksPerMultiprocessor
        | op::cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags => Occupancy::MaxActiveBlocks {
            block_size: r.i32()?,
            dynamic_smem: r.u64()?,
            flags: with_flags(
                r,
                opcode == op::cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags,
            )?,
        },
        op::cuOccupancyMaxPotentialBlockSize | op::cuOccupancyMaxPotentialBlockSizeWithFlags => {
            let dynamic_smem = r.u64()?;
            let block_size_limit = r.i32()?;
            let flags = with_flags(r, opcode == op::cuOccupancyMaxPotentialBlockSizeWithFlags)?;
            let n = count(r, MAX_BLOCK_TABLE, "occupancy table")?;
            let smem_by_block_size = (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?;
            Occupancy::MaxPotentialBlockSize {
                dynamic_smem,
                block_size_limit,
                flags,
                smem_by_block_size,
            }
        }
        op::cuOccupancyAvailableDynamicSMemPerBlock => Occupancy::AvailableDynamicSmem {
            num_blocks: r.i32()?,
            block_size: r.i32()?,
        },
        op::cuOccupancyMaxPotentialClusterSize => Occupancy::MaxPotentialClusterSize(get_shape(r)?),
        _ => Occupancy::MaxActiveClusters(get_shape(r)?),
    })
}

fn memset(opcode: u32, r: &mut Reader<'_>) -> Result<Memset, ProtocolError> {
    let (ctx, stream, dst, pitch, value, elem, width) = (
        r.u64()?,
        r.u64()?,
        r.u64()?,
        r.u64()?,
        r.u32()?,
        r.u8()?,
        r.u64()?,
    );
    let (want_elem, two_d) = match opcode {
        op::cuMemsetD8Async => (1, false),
        op::cuMemsetD16Async => (2, false),
        op::cuMemsetD32Async => (4, false),
        op::cuMemsetD2D8Async => (1, true),
        op::cuMemsetD2D16Async => (2, true),
        _ => (4, true),
    };
    if elem != want_elem {
        return Err(bad("memset", "element size disagrees with opcode"));
    }
    let height = if two_d { Some(r.u64()?) } else { None };
    Ok(Memset {
        ctx,
        stream,
        dst,
        pitch,
        value,
        elem,
        width,
        height,
    })
}
