//! Virtual memory management (VMM), stream-ordered memory pools, stream
//! memory operations and address-range queries.
//!
//! Domain module: owns its opcodes (from `tf_api::op`), its request enum and
//! its reply bodies. `Request::decode` asks [`MemRequest::decode`] for every
//! opcode the core messages do not know.
//!
//! Handles. Physical allocations (`CUmemGenericAllocationHandle`) and pools
//! (`CUmemoryPool`) are minted by the worker: every call that creates one is
//! synchronous anyway, because the application must learn about an
//! out-of-memory at once. Reserved and mapped addresses are device addresses
//! and pass through as values; the worker only accepts ranges inside this
//! session's own reservations and allocations.
//!
//! Replies: `u64` for a new address, handle, pool, granularity, access
//! flags or pool attribute; `(u64, u64)` for an address range; `()` else.

use crate::codec::{Reader, Writer};
use crate::ProtocolError;
use tf_api::op;

/// Handle ids minted by the worker: a kind tag in the top 16 bits.
pub mod handle {
    pub const ALLOCATION: u64 = 0x4D48 << 48;
    pub const POOL: u64 = 0x504C << 48;
    pub use crate::exec_msgs::handle::{is, make};
}

/// Most access descriptors in one `cuMemSetAccess` (one per device and the host).
pub const MAX_ACCESS_DESCS: usize = 64;
/// Most operations in one `cuStreamBatchMemOp` (the driver's own limit is 256).
pub const MAX_BATCH_OPS: usize = 256;
/// `CUstreamBatchMemOpParams` is a 48-byte union.
pub const BATCH_OP_SIZE: usize = 48;

/// Whether a `CUmemPool_attribute` holds a `cuuint64_t` (the thresholds,
/// memory counters and the maximum pool size) rather than an `int`-sized value.
pub fn pool_attr_is_wide(attr: u32) -> bool {
    matches!(attr, 4..=8 | 13)
}

/// `CUmemLocation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Location {
    pub kind: u32,
    pub id: i32,
}

/// `CUmemAllocationProp` without the Windows-only pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AllocProp {
    pub kind: u32,
    pub handle_types: u32,
    pub location: Location,
    pub compression: u8,
    pub rdma: u8,
    pub usage: u16,
}

/// `CUmemPoolProps` without the Windows-only pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolProps {
    pub kind: u32,
    pub handle_types: u32,
    pub location: Location,
    pub max_size: u64,
    pub usage: u16,
    pub rdma: u8,
}

/// `CUmemAccessDesc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access {
    pub location: Location,
    pub flags: u32,
}

/// `cuStreamWaitValue*` / `cuStreamWriteValue*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueOp {
    pub ctx: u64,
    pub stream: u64,
    pub addr: u64,
    pub value: u64,
    pub flags: u32,
    /// The 64-bit variant.
    pub wide: bool,
    /// Write (else wait).
    pub write: bool,
}

/// The device side of a 2D copy: the first byte and the row pitch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pitched {
    pub ptr: u64,
    pub pitch: u64,
}

/// A 2D copy of `rows` rows of `width` bytes. A side that is `None` is the
/// client's host memory, packed without padding: the request carries the
/// source bytes, or the reply the destination bytes. `cuMemcpy2D*` and
/// `cuMemcpy3D*` are split into these by the client (one per slice, fewer
/// rows when a frame would be too large).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy2D<'a> {
    pub ctx: u64,
    /// `None`: the synchronous entry points.
    pub stream: Option<u64>,
    pub width: u64,
    pub rows: u64,
    pub src: Option<Pitched>,
    pub dst: Option<Pitched>,
    pub data: &'a [u8],
}

impl Copy2D<'_> {
    /// Bytes of the packed host side.
    pub fn packed(&self) -> Option<u64> {
        self.width.checked_mul(self.rows)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemRequest<'a> {
    AddressReserve {
        size: u64,
        alignment: u64,
        addr: u64,
        flags: u64,
    },
    AddressFree {
        ptr: u64,
        size: u64,
    },
    /// `cuMemCreate`: the device comes from `prop.location`, not a context.
    Create {
        size: u64,
        prop: AllocProp,
        flags: u64,
    },
    Release {
        handle: u64,
    },
    Map {
        ptr: u64,
        size: u64,
        offset: u64,
        handle: u64,
        flags: u64,
    },
    Unmap {
        ptr: u64,
        size: u64,
    },
    SetAccess {
        ptr: u64,
        size: u64,
        descs: Vec<Access>,
    },
    GetAccess {
        location: Location,
        ptr: u64,
    },
    Granularity {
        prop: AllocProp,
        option: u32,
    },
    RetainHandle {
        ptr: u64,
    },
    /// `cuMemAllocAsync` (`pool` 0: the device's current pool) and
    /// `cuMemAllocFromPoolAsync`.
    AllocAsync {
        ctx: u64,
        size: u64,
        pool: u64,
        stream: u64,
    },
    FreeAsync {
        ctx: u64,
        ptr: u64,
        stream: u64,
    },
    /// `cuDeviceGetDefaultMemPool` (`current` false) or `cuDeviceGetMemPool`.
    DevicePool {
        dev: i32,
        current: bool,
    },
    DeviceSetPool {
        dev: i32,
        pool: u64,
    },
    PoolCreate {
        props: PoolProps,
    },
    PoolDestroy {
        pool: u64,
    },
    PoolSetAttribute {
        pool: u64,
        attr: u32,
        value: u64,
    },
    PoolGetAttribute {
        pool: u64,
        attr: u32,
    },
    PoolTrimTo {
        pool: u64,
        keep: u64,
    },
    PoolSetAccess {
        pool: u64,
        descs: Vec<Access>,
    },
    PoolGetAccess {
        pool: u64,
        location: Location,
    },
    Value(ValueOp),
    /// `cuStreamBatchMemOp_v2`: raw `CUstreamBatchMemOpParams` records.
    BatchMemOp {
        ctx: u64,
        stream: u64,
        flags: u32,
        ops: &'a [u8],
    },
    /// `cuMemGetAddressRange_v2`.
    AddressRange {
        ptr: u64,
    },
    Copy2D(Copy2D<'a>),
    /// `cuMemAllocPitch_v2`: the reply is `(ptr, pitch)`.
    AllocPitch {
        ctx: u64,
        width: u64,
        height: u64,
        elem: u32,
    },
}

fn bad(why: &'static str) -> ProtocolError {
    ProtocolError::Malformed {
        what: "memory request",
        why,
    }
}

fn put_loc(w: &mut Writer, l: &Location) {
    w.u32(l.kind).i32(l.id);
}

fn get_loc(r: &mut Reader<'_>) -> Result<Location, ProtocolError> {
    Ok(Location {
        kind: r.u32()?,
        id: r.i32()?,
    })
}

fn put_prop(w: &mut Writer, p: &AllocProp) {
    w.u32(p.kind).u32(p.handle_types);
    put_loc(w, &p.location);
    w.u8(p.compression).u8(p.rdma).u16(p.usage);
}

fn get_prop(r: &mut Reader<'_>) -> Result<AllocProp, ProtocolError> {
    Ok(AllocProp {
        kind: r.u32()?,
        handle_types: r.u32()?,
        location: get_loc(r)?,
        compression: r.u8()?,
        rdma: r.u8()?,
        usage: r.u16()?,
    })
}

fn put_descs(w: &mut Writer, d: &[Access]) {
    w.u32(d.len() as u32);
    for a in d {
        put_loc(w, &a.location);
        w.u32(a.flags);
    }
}

fn get_descs(r: &mut Reader<'_>) -> Result<Vec<Access>, ProtocolError> {
    let n = r.u32()? as usize;
    if n == 0 || n > MAX_ACCESS_DESCS {
        return Err(bad("access descriptor count out of range"));
    }
    (0..n)
        .map(|_| {
            Ok(Access {
                location: get_loc(r)?,
                flags: r.u32()?,
            })
        })
        .collect()
}

fn put_opt_u64(w: &mut Writer, v: Option<u64>) {
    match v {
        Some(x) => w.u8(1).u64(x),
        None => w.u8(0),
    };
}

fn get_opt_u64(r: &mut Reader<'_>) -> Result<Option<u64>, ProtocolError> {
    Ok(if get_bool(r)? { Some(r.u64()?) } else { None })
}

fn put_side(w: &mut Writer, s: Option<Pitched>) {
    match s {
        Some(p) => w.u8(1).u64(p.ptr).u64(p.pitch),
        None => w.u8(0),
    };
}

fn get_side(r: &mut Reader<'_>) -> Result<Option<Pitched>, ProtocolError> {
    Ok(if get_bool(r)? {
        Some(Pitched {
            ptr: r.u64()?,
            pitch: r.u64()?,
        })
    } else {
        None
    })
}

fn get_bool(r: &mut Reader<'_>) -> Result<bool, ProtocolError> {
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(bad("bad boolean")),
    }
}

impl<'a> MemRequest<'a> {
    /// The frame opcode.
    pub fn opcode(&self) -> u32 {
        use MemRequest as M;
        match self {
            M::AddressReserve { .. } => op::cuMemAddressReserve,
            M::AddressFree { .. } => op::cuMemAddressFree,
            M::Create { .. } => op::cuMemCreate,
            M::Release { .. } => op::cuMemRelease,
            M::Map { .. } => op::cuMemMap,
            M::Unmap { .. } => op::cuMemUnmap,
            M::SetAccess { .. } => op::cuMemSetAccess,
            M::GetAccess { .. } => op::cuMemGetAccess,
            M::Granularity { .. } => op::cuMemGetAllocationGranularity,
            M::RetainHandle { .. } => op::cuMemRetainAllocationHandle,
            M::AllocAsync { .. } => op::cuMemAllocAsync,
            M::FreeAsync { .. } => op::cuMemFreeAsync,
            M::DevicePool { .. } => op::cuDeviceGetMemPool,
            M::DeviceSetPool { .. } => op::cuDeviceSetMemPool,
            M::PoolCreate { .. } => op::cuMemPoolCreate,
            M::PoolDestroy { .. } => op::cuMemPoolDestroy,
            M::PoolSetAttribute { .. } => op::cuMemPoolSetAttribute,
            M::PoolGetAttribute { .. } => op::cuMemPoolGetAttribute,
            M::PoolTrimTo { .. } => op::cuMemPoolTrimTo,
            M::PoolSetAccess { .. } => op::cuMemPoolSetAccess,
            M::PoolGetAccess { .. } => op::cuMemPoolGetAccess,
            M::Value(_) => op::cuStreamWaitValue32_v2,
            M::BatchMemOp { .. } => op::cuStreamBatchMemOp_v2,
            M::AddressRange { .. } => op::cuMemGetAddressRange_v2,
            M::Copy2D(_) => op::cuMemcpy2DUnaligned_v2,
            M::AllocPitch { .. } => op::cuMemAllocPitch_v2,
        }
    }

    /// Encodes the request; the batch operations travel as bulk data.
    pub fn encode(&self, w: &mut Writer) -> &'a [u8] {
        use MemRequest as M;
        match self {
            M::AddressReserve {
                size,
                alignment,
                addr,
                flags,
            } => {
                w.u64(*size).u64(*alignment).u64(*addr).u64(*flags);
            }
            M::AddressFree { ptr, size } | M::Unmap { ptr, size } => {
                w.u64(*ptr).u64(*size);
            }
            M::Create { size, prop, flags } => {
                w.u64(*size);
                put_prop(w, prop);
                w.u64(*flags);
            }
            M::Release { handle } => {
                w.u64(*handle);
            }
            M::Map {
                ptr,
                size,
                offset,
                handle,
                flags,
            } => {
                w.u64(*ptr).u64(*size).u64(*offset).u64(*handle).u64(*flags);
            }
            M::SetAccess { ptr, size, descs } => {
                w.u64(*ptr).u64(*size);
                put_descs(w, descs);
            }
            M::GetAccess { location, ptr } => {
                put_loc(w, location);
                w.u64(*ptr);
            }
            M::Granularity { prop, option } => {
                put_prop(w, prop);
                w.u32(*option);
            }
            M::RetainHandle { ptr } | M::AddressRange { ptr } => {
                w.u64(*ptr);
            }
            M::AllocAsync {
                ctx,
                size,
                pool,
                stream,
            } => {
                w.u64(*ctx).u64(*size).u64(*pool).u64(*stream);
            }
            M::FreeAsync { ctx, ptr, stream } => {
                w.u64(*ctx).u64(*ptr).u64(*stream);
            }
            M::DevicePool { dev, current } => {
                w.i32(*dev).u8(u8::from(*current));
            }
            M::DeviceSetPool { dev, pool } => {
                w.i32(*dev).u64(*pool);
            }
            M::PoolCreate { props } => {
                w.u32(props.kind).u32(props.handle_types);
                put_loc(w, &props.location);
                w.u64(props.max_size).u16(props.usage).u8(props.rdma);
            }
            M::PoolDestroy { pool } => {
                w.u64(*pool);
            }
            M::PoolSetAttribute { pool, attr, value } => {
                w.u64(*pool).u32(*attr).u64(*value);
            }
            M::PoolGetAttribute { pool, attr } => {
                w.u64(*pool).u32(*attr);
            }
            M::PoolTrimTo { pool, keep } => {
                w.u64(*pool).u64(*keep);
            }
            M::PoolSetAccess { pool, descs } => {
                w.u64(*pool);
                put_descs(w, descs);
            }
            M::PoolGetAccess { pool, location } => {
                w.u64(*pool);
                put_loc(w, location);
            }
            M::Value(v) => {
                w.u64(v.ctx)
                    .u64(v.stream)
                    .u64(v.addr)
                    .u64(v.value)
                    .u32(v.flags)
                    .u8(u8::from(v.wide))
                    .u8(u8::from(v.write));
            }
            M::BatchMemOp {
                ctx,
                stream,
                flags,
                ops,
            } => {
                w.u64(*ctx).u64(*stream).u32(*flags).u32(ops.len() as u32);
                return ops;
            }
            M::Copy2D(c) => {
                w.u64(c.ctx);
                put_opt_u64(w, c.stream);
                w.u64(c.width).u64(c.rows);
                put_side(w, c.src);
                put_side(w, c.dst);
                w.u32(c.data.len() as u32);
                return c.data;
            }
            M::AllocPitch {
                ctx,
                width,
                height,
                elem,
            } => {
                w.u64(*ctx).u64(*width).u64(*height).u32(*elem);
            }
        }
        &[]
    }

    /// `None` if `opcode` is not one of this domain's; else the validated request.
    pub fn decode(opcode: u32, payload: &'a [u8]) -> Option<Result<Self, ProtocolError>> {
        let mut r = Reader::new(payload, "memory request");
        let req = (|| -> Result<Option<Self>, ProtocolError> {
            use MemRequest as M;
            let r = &mut r;
            Ok(Some(match opcode {
                op::cuMemAddressReserve => M::AddressReserve {
                    size: r.u64()?,
                    alignment: r.u64()?,
                    addr: r.u64()?,
                    flags: r.u64()?,
                },
                op::cuMemAddressFree => M::AddressFree {
                    ptr: r.u64()?,
                    size: r.u64()?,
                },
                op::cuMemCreate => M::Create {
                    size: r.u64()?,
                    prop: get_prop(r)?,
                    flags: r.u64()?,
                },
                op::cuMemRelease => M::Release { handle: r.u64()? },
                op::cuMemMap => M::Map {
                    ptr: r.u64()?,
                    size: r.u64()?,
                    offset: r.u64()?,
                    handle: r.u64()?,
                    flags: r.u64()?,
                },
                op::cuMemUnmap => M::Unmap {
                    ptr: r.u64()?,
                    size: r.u64()?,
                },
                op::cuMemSetAccess => M::SetAccess {
                    ptr: r.u64()?,
                    size: r.u64()?,
                    descs: get_descs(r)?,
                },
                op::cuMemGetAccess => M::GetAccess {
                    location: get_loc(r)?,
                    ptr: r.u64()?,
                },
                op::cuMemGetAllocationGranularity => M::Granularity {
                    prop: get_prop(r)?,
                    option: r.u32()?,
                },
                op::cuMemRetainAllocationHandle => M::RetainHandle { ptr: r.u64()? },
                op::cuMemAllocAsync => M::AllocAsync {
                    ctx: r.u64()?,
                    size: r.u64()?,
                    pool: r.u64()?,
                    stream: r.u64()?,
                },
                op::cuMemFreeAsync => M::FreeAsync {
                    ctx: r.u64()?,
                    ptr: r.u64()?,
                    stream: r.u64()?,
                },
                op::cuDeviceGetMemPool => M::DevicePool {
                    dev: r.i32()?,
                    current: get_bool(r)?,
                },
                op::cuDeviceSetMemPool => M::DeviceSetPool {
                    dev: r.i32()?,
                    pool: r.u64()?,
                },
                op::cuMemPoolCreate => M::PoolCreate {
                    props: PoolProps {
                        kind: r.u32()?,
                        handle_types: r.u32()?,
                        location: get_loc(r)?,
                        max_size: r.u64()?,
                        usage: r.u16()?,
                        rdma: r.u8()?,
                    },
                },
                op::cuMemPoolDestroy => M::PoolDestroy { pool: r.u64()? },
                op::cuMemPoolSetAttribute => M::PoolSetAttribute {
                    pool: r.u64()?,
                    attr: r.u32()?,
                    value: r.u64()?,
                },
                op::cuMemPoolGetAttribute => M::PoolGetAttribute {
                    pool: r.u64()?,
                    attr: r.u32()?,
                },
                op::cuMemPoolTrimTo => M::PoolTrimTo {
                    pool: r.u64()?,
                    keep: r.u64()?,
                },
                op::cuMemPoolSetAccess => M::PoolSetAccess {
                    pool: r.u64()?,
                    descs: get_descs(r)?,
                },
                op::cuMemPoolGetAccess => M::PoolGetAccess {
                    pool: r.u64()?,
                    location: get_loc(r)?,
                },
                op::cuStreamWaitValue32_v2 => M::Value(ValueOp {
                    ctx: r.u64()?,
                    stream: r.u64()?,
                    addr: r.u64()?,
                    value: r.u64()?,
                    flags: r.u32()?,
                    wide: get_bool(r)?,
                    write: get_bool(r)?,
                }),
                op::cuStreamBatchMemOp_v2 => {
                    let ctx = r.u64()?;
                    let stream = r.u64()?;
                    let flags = r.u32()?;
                    let n = r.u32()? as usize;
                    if n == 0
                        || n > MAX_BATCH_OPS * BATCH_OP_SIZE
                        || !n.is_multiple_of(BATCH_OP_SIZE)
                    {
                        return Err(bad("batch size is not a whole number of operations"));
                    }
                    if r.remaining() != n {
                        return Err(bad("batch length disagrees with frame"));
                    }
                    let ops = &payload[payload.len() - n..];
                    // The operations were taken by length: nothing is left.
                    *r = Reader::new(&[], "memory request");
                    M::BatchMemOp {
                        ctx,
                        stream,
                        flags,
                        ops,
                    }
                }
                op::cuMemGetAddressRange_v2 => M::AddressRange { ptr: r.u64()? },
                op::cuMemAllocPitch_v2 => M::AllocPitch {
                    ctx: r.u64()?,
                    width: r.u64()?,
                    height: r.u64()?,
                    elem: r.u32()?,
                },
                op::cuMemcpy2DUnaligned_v2 => {
                    let ctx = r.u64()?;
                    let stream = get_opt_u64(r)?;
                    let (width, rows) = (r.u64()?, r.u64()?);
                    let (src, dst) = (get_side(r)?, get_side(r)?);
                    let n = r.u32()? as usize;
                    if r.remaining() != n {
                        return Err(bad("copy data length disagrees with frame"));
                    }
                    let c = Copy2D {
                        ctx,
                        stream,
                        width,
                        rows,
                        src,
                        dst,
                        data: &payload[payload.len() - n..],
                    };
                    // Host data travels exactly when the source is the host.
                    let want = if c.src.is_none() { c.packed() } else { Some(0) };
                    if want != Some(n as u64) || (c.src.is_none() && c.dst.is_none()) {
                        return Err(bad("copy sides and data disagree"));
                    }
                    *r = Reader::new(&[], "memory request");
                    M::Copy2D(c)
                }
                _ => return Ok(None),
            }))
        })();
        match req {
            Ok(None) => None,
            Ok(Some(m)) => Some(r.end().map(|()| m)),
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(m: MemRequest<'_>) {
        let mut w = Writer::new();
        let bulk = m.encode(&mut w);
        let mut bytes = w.finish();
        bytes.extend_from_slice(bulk);
        let back = MemRequest::decode(m.opcode(), &bytes)
            .expect("a memory opcode")
            .expect("decodes");
        assert_eq!(back, m);
        // Every strict prefix is refused, never a panic.
        for cut in 0..bytes.len() {
            assert!(MemRequest::decode(m.opcode(), &bytes[..cut])
                .unwrap()
                .is_err());
        }
        // A trailing byte is refused.
        bytes.push(0);
        assert!(MemRequest::decode(m.opcode(), &bytes).unwrap().is_err());
    }

    #[test]
    fn every_request_round_trips() {
        let prop = AllocProp {
            kind: 1,
            handle_types: 1,
            location: Location { kind: 1, id: 0 },
            compression: 0,
            rdma: 1,
            usage: 0,
        };
        let descs = vec![Access {
            location: Location { kind: 1, id: 0 },
            flags: 3,
        }];
        let ops = [7u8; 2 * BATCH_OP_SIZE];
        for m in [
            MemRequest::AddressReserve {
                size: 1 << 30,
                alignment: 0,
                addr: 0,
                flags: 0,
            },
            MemRequest::AddressFree { ptr: 1, size: 2 },
            MemRequest::Create {
                size: 2 << 20,
                prop,
                flags: 0,
            },
            MemRequest::Release { handle: 9 },
            MemRequest::Map {
                ptr: 1,
                size: 2,
                offset: 3,
                handle: 4,
                flags: 0,
            },
            MemRequest::Unmap { ptr: 1, size: 2 },
            MemRequest::SetAccess {
                ptr: 1,
                size: 2,
                descs: descs.clone(),
            },
            MemRequest::GetAccess {
                location: Location { kind: 1, id: 0 },
                ptr: 5,
            },
            MemRequest::Granularity { prop, option: 1 },
            MemRequest::RetainHandle { ptr: 5 },
            MemRequest::AllocAsync {
                ctx: 1,
                size: 2,
                pool: 0,
                stream: 3,
            },
            MemRequest::FreeAsync {
                ctx: 1,
                ptr: 2,
                stream: 3,
            },
            MemRequest::DevicePool {
                dev: 0,
                current: true,
            },
            MemRequest::DeviceSetPool { dev: 0, pool: 4 },
            MemRequest::PoolCreate {
                props: PoolProps {
                    kind: 1,
                    handle_types: 0,
                    location: Location { kind: 1, id: 0 },
                    max_size: 0,
                    usage: 0,
                    rdma: 0,
                },
            },
            MemRequest::PoolDestroy { pool: 4 },
            MemRequest::PoolSetAttribute {
                pool: 4,
                attr: 4,
                value: u64::MAX,
            },
            MemRequest::PoolGetAttribute { pool: 4, attr: 5 },
            MemRequest::PoolTrimTo { pool: 4, keep: 0 },
            MemRequest::PoolSetAccess { pool: 4, descs },
            MemRequest::PoolGetAccess {
                pool: 4,
                location: Location { kind: 1, id: 0 },
            },
            MemRequest::Value(ValueOp {
                ctx: 1,
                stream: 2,
                addr: 3,
                value: 4,
                flags: 0,
                wide: true,
                write: false,
            }),
            MemRequest::BatchMemOp {
                ctx: 1,
                stream: 2,
                flags: 0,
                ops: &ops,
            },
            MemRequest::AddressRange { ptr: 8 },
            MemRequest::Copy2D(Copy2D {
                ctx: 1,
                stream: Some(2),
                width: 3,
                rows: 2,
                src: None,
                dst: Some(Pitched { ptr: 9, pitch: 16 }),
                data: &[1, 2, 3, 4, 5, 6],
            }),
            MemRequest::Copy2D(Copy2D {
                ctx: 1,
                stream: None,
                width: 3,
                rows: 2,
                src: Some(Pitched { ptr: 9, pitch: 16 }),
                dst: None,
                data: &[],
            }),
            MemRequest::AllocPitch {
                ctx: 1,
                width: 100,
                height: 3,
                elem: 4,
            },
        ] {
            round_trip(m);
        }
    }

    #[test]
    fn limits_are_enforced() {
        // An access list with no entry, or too many.
        let mut w = Writer::new();
        w.u64(1).u64(2).u32(0);
        assert!(MemRequest::decode(op::cuMemSetAccess, &w.finish())
            .unwrap()
            .is_err());
        let mut w = Writer::new();
        w.u64(1).u64(2).u32(u32::MAX);
        assert!(MemRequest::decode(op::cuMemSetAccess, &w.finish())
            .unwrap()
            .is_err());
        // A batch that is not whole operations.
        let mut w = Writer::new();
        w.u64(1).u64(2).u32(0).u32(47).bytes(&[0; 43]);
        assert!(MemRequest::decode(op::cuStreamBatchMemOp_v2, &w.finish())
            .unwrap()
            .is_err());
        assert!(MemRequest::decode(op::cuMemAlloc_v2, &[]).is_none());
    }
}
