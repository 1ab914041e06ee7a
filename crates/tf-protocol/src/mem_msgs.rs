//! Virtual memory management (VMM), stream-ordered memory pools, stream
//! memory operations, 2D copies and address-range queries.
//!
//! Domain module: its requests ([`MemRequest`] and the types inside) are
//! generated from `codegen/messages.txt`; the worker-minted id kinds,
//! helpers and the checks the generated decoder calls are here.
//!
//! Handles. Physical allocations (`CUmemGenericAllocationHandle`) and pools
//! (`CUmemoryPool`) are minted by the worker: every call that creates one is
//! synchronous anyway, because the application must learn about an
//! out-of-memory at once. Reserved and mapped addresses are device addresses
//! and pass through as values; the worker only accepts ranges inside this
//! session's own reservations and allocations.
//!
//! Replies: `u64` for a new address, handle, pool, granularity, access
//! flags or pool attribute; `(u64, u64)` for an address range or a pitched
//! allocation; the packed bytes for a 2D copy to the host; `()` else.

pub use crate::generated::mem_msgs::*;

/// Handle ids minted by the worker: a kind tag in the top 16 bits.
pub mod handle {
    pub const ALLOCATION: u64 = 0x4D48 << 48;
    pub const POOL: u64 = 0x504C << 48;
    pub use crate::exec_msgs::handle::{is, make};
}

/// Whether a `CUmemPool_attribute` holds a `cuuint64_t` (the thresholds,
/// memory counters and the maximum pool size) rather than an `int`-sized value.
pub fn pool_attr_is_wide(attr: u32) -> bool {
    matches!(attr, 4..=8 | 13)
}

impl Copy2D<'_> {
    /// Bytes of the packed host side.
    pub fn packed(&self) -> Option<u64> {
        self.width.checked_mul(self.rows)
    }

    /// Called by the generated decoder: host data travels exactly when the
    /// source is the host, and at most one side is the host.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        let want = if self.src.is_none() {
            self.packed()
        } else {
            Some(0)
        };
        if want != Some(self.data.len() as u64) || (self.src.is_none() && self.dst.is_none()) {
            return Err("copy sides and data disagree");
        }
        Ok(())
    }
}

impl MemRequest<'_> {
    /// Called by the generated decoder for the `check` variants: access
    /// lists are not empty (the count's upper bound is the decoder's), and
    /// a batch is a whole, non-zero number of operations.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        match self {
            Self::SetAccess { descs, .. } | Self::PoolSetAccess { descs, .. }
                if descs.is_empty() =>
            {
                Err("access descriptor count out of range")
            }
            Self::BatchMemOp { ops, .. }
                if ops.is_empty() || !ops.len().is_multiple_of(BATCH_OP_SIZE) =>
            {
                Err("batch size is not a whole number of operations")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod batch_tests {
    use super::*;

    #[test]
    fn batch_records_decode_by_operation() {
        let mut ops = vec![0u8; 4 * BATCH_OP_SIZE];
        let put = |ops: &mut Vec<u8>, i: usize, kind: u32, addr: u64, value: u64, flags: u32| {
            let r = &mut ops[i * BATCH_OP_SIZE..];
            r[..4].copy_from_slice(&kind.to_le_bytes());
            r[8..16].copy_from_slice(&addr.to_le_bytes());
            r[16..24].copy_from_slice(&value.to_le_bytes());
            r[24..28].copy_from_slice(&flags.to_le_bytes());
        };
        put(&mut ops, 0, 2, 0x1000, 7, 0);
        put(&mut ops, 1, 4, 0x2000, 9, 1);
        put(&mut ops, 2, 3, 0, 0, 0);
        put(&mut ops, 3, 7, 0, 0, 0);
        let got: Vec<BatchOp> = BatchOp::records(&ops).collect();
        assert_eq!(
            got[0],
            BatchOp::Value {
                addr: 0x1000,
                value: 7,
                flags: 0,
                wide: false,
                write: true
            }
        );
        assert_eq!(got[0].touches(), Some((0x1000, 4)));
        assert_eq!(
            got[1],
            BatchOp::Value {
                addr: 0x2000,
                value: 9,
                flags: 1,
                wide: true,
                write: false
            }
        );
        assert_eq!(got[1].touches(), Some((0x2000, 8)));
        assert_eq!(got[2], BatchOp::Fence);
        assert_eq!(got[3], BatchOp::Other(7));
        assert_eq!(got[3].touches(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Reader, Writer};
    use crate::{ProtocolError, Request};
    use tf_api::op;

    fn round_trip(m: MemRequest<'_>) {
        let r = Request::Mem(m.clone());
        let (fixed, bulk) = r.encode();
        let mut bytes = fixed;
        bytes.extend_from_slice(bulk);
        let back = Request::decode(r.opcode(), &bytes).expect("decodes");
        assert_eq!(back, r);
        // Every strict prefix is refused, never a panic.
        for cut in 0..bytes.len() {
            assert!(
                Request::decode(r.opcode(), &bytes[..cut]).is_err(),
                "{m:?} cut at {cut}"
            );
        }
        // A trailing byte is refused.
        bytes.push(0);
        assert!(Request::decode(r.opcode(), &bytes).is_err());
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
    fn requests_show_their_arguments() {
        let prop = AllocProp {
            kind: 1,
            handle_types: 2,
            location: Location { kind: 1, id: 0 },
            ..AllocProp::default()
        };
        assert_eq!(
            Request::Mem(MemRequest::Create {
                size: 4096,
                prop,
                flags: 0
            })
            .to_string(),
            "cuMemCreate(size=4096, prop={kind=1, handle_types=0x2, location={kind=1, id=0}, \
             compression=0, rdma=0, usage=0}, flags=0x0)"
        );
        let copy = Copy2D {
            ctx: 1,
            stream: None,
            width: 3,
            rows: 2,
            src: None,
            dst: Some(Pitched { ptr: 16, pitch: 8 }),
            data: &[0; 6],
        };
        assert_eq!(
            Request::Mem(MemRequest::Copy2D(copy)).to_string(),
            "cuMemcpy2DUnaligned_v2(ctx=0x1, width=3, rows=2, dst={ptr=0x10, pitch=8}, \
             data=<6 bytes>)"
        );
    }

    #[test]
    fn limits_are_enforced() {
        let refused =
            |opcode: u32, w: Writer| assert!(Request::decode(opcode, &w.finish()).is_err());
        // An access list with no entry, or too many.
        let mut w = Writer::new();
        w.u64(1).u64(2).u32(0);
        refused(op::cuMemSetAccess, w);
        let mut w = Writer::new();
        w.u64(1).u64(2).u32(u32::MAX);
        refused(op::cuMemSetAccess, w);
        let mut w = Writer::new();
        w.u64(4).u32(0);
        refused(op::cuMemPoolSetAccess, w);
        let mut w = Writer::new();
        w.u64(4).u32(MAX_ACCESS_DESCS as u32 + 1);
        for _ in 0..=MAX_ACCESS_DESCS {
            w.u32(1).i32(0).u32(3);
        }
        refused(op::cuMemPoolSetAccess, w);
        // A batch that is not whole operations, empty, or too long.
        let batch = |n: usize| {
            let mut w = Writer::new();
            w.u64(1).u64(2).u32(0).bytes(&vec![0; n]);
            w
        };
        refused(op::cuStreamBatchMemOp_v2, batch(47));
        refused(op::cuStreamBatchMemOp_v2, batch(0));
        refused(op::cuStreamBatchMemOp_v2, batch(BATCH_OP_SIZE + 1));
        refused(
            op::cuStreamBatchMemOp_v2,
            batch((MAX_BATCH_OPS + 1) * BATCH_OP_SIZE),
        );
        assert!(Request::decode(
            op::cuStreamBatchMemOp_v2,
            &batch(MAX_BATCH_OPS * BATCH_OP_SIZE).finish()
        )
        .is_ok());
        // The domain's decoder knows only its own opcodes.
        assert_eq!(
            MemRequest::get(op::cuMemAlloc_v2, &mut Reader::new(&[], "memory request")),
            Err(ProtocolError::UnknownOpcode(op::cuMemAlloc_v2))
        );
    }

    #[test]
    fn copy_sides_and_data_must_agree() {
        let side = Some(Pitched { ptr: 9, pitch: 16 });
        let copy = |src, dst, data: &'static [u8]| {
            let (fixed, bulk) = Request::Mem(MemRequest::Copy2D(Copy2D {
                ctx: 1,
                stream: None,
                width: 3,
                rows: 2,
                src,
                dst,
                data,
            }))
            .encode();
            let mut bytes = fixed;
            bytes.extend_from_slice(bulk);
            Request::decode(op::cuMemcpy2DUnaligned_v2, &bytes).is_ok()
        };
        const SIX: &[u8] = &[1, 2, 3, 4, 5, 6];
        assert!(copy(None, side, SIX));
        assert!(copy(side, side, &[]));
        // Host to host.
        assert!(!copy(None, None, SIX));
        assert!(!copy(None, None, &[]));
        // Host source with too little or too much data.
        assert!(!copy(None, side, &SIX[..5]));
        assert!(!copy(None, side, &[0; 7]));
        // Data with a device source.
        assert!(!copy(side, None, SIX));
        assert!(!copy(side, side, &[1]));
        // `width * rows` overflows.
        let (fixed, _) = Request::Mem(MemRequest::Copy2D(Copy2D {
            ctx: 1,
            stream: Some(2),
            width: u64::MAX,
            rows: 2,
            src: None,
            dst: side,
            data: &[],
        }))
        .encode();
        assert!(Request::decode(op::cuMemcpy2DUnaligned_v2, &fixed).is_err());
    }
}

/// One `CUstreamBatchMemOpParams` record of a batch, decoded: the worker
/// checks the memory each touches, a backend carries them out. Layout (the
/// 48-byte union): operation at 0; for waits and writes the address at 8,
/// the value at 16 and the flags at 24.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOp {
    /// `CU_STREAM_MEM_OP_WAIT_VALUE_32/64` (`wide`) and the writes (`write`).
    Value {
        addr: u64,
        value: u64,
        flags: u32,
        wide: bool,
        write: bool,
    },
    /// `CU_STREAM_MEM_OP_FLUSH_REMOTE_WRITES` and `..._BARRIER`: no memory named.
    Fence,
    /// Atomic reductions and anything newer (not forwarded).
    Other(u32),
}

impl BatchOp {
    /// The records of a batch (whole records only; the decoder's `check`
    /// guarantees a batch is a whole number of them).
    pub fn records(ops: &[u8]) -> impl Iterator<Item = BatchOp> + '_ {
        ops.chunks_exact(BATCH_OP_SIZE).map(|r| {
            let word = |at: usize| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&r[at..at + 8]);
                u64::from_le_bytes(b)
            };
            let value = |wide, write| BatchOp::Value {
                addr: word(8),
                value: word(16),
                flags: word(24) as u32,
                wide,
                write,
            };
            match u32::from_le_bytes([r[0], r[1], r[2], r[3]]) {
                1 => value(false, false),
                2 => value(false, true),
                4 => value(true, false),
                5 => value(true, true),
                3 | 6 => BatchOp::Fence,
                other => BatchOp::Other(other),
            }
        })
    }

    /// Bytes of memory the operation reads or writes at `addr` (0: none).
    pub fn touches(&self) -> Option<(u64, u64)> {
        match *self {
            BatchOp::Value { addr, wide, .. } => Some((addr, if wide { 8 } else { 4 })),
            _ => None,
        }
    }
}

/// Most bytes of one host mirror (mapped host memory is for flags,
/// semaphores and small buffers: the client pushes changes before every
/// request).
pub const MAX_HOST_MIRROR: usize = 1 << 20;

/// Bytes of a host mirror (`HostMirrorRead`'s reply).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostBytes(pub Vec<u8>);

impl crate::Body for HostBytes {
    fn put(&self, w: &mut crate::codec::Writer) {
        w.bytes(&self.0);
    }
    fn get(r: &mut crate::codec::Reader<'_>) -> Result<Self, crate::ProtocolError> {
        let b = r.bytes()?;
        if b.len() > MAX_HOST_MIRROR {
            return Err(crate::ProtocolError::Malformed {
                what: "host mirror bytes",
                why: "longer than a host mirror",
            });
        }
        Ok(Self(b.to_vec()))
    }
}
