//! Context, primary-context, limit and other control-plane requests that cudart needs at start-up.
//!
//! Domain module: owns its opcodes (from `tf_api::op`), its request enum and
//! its reply bodies. `Request::decode` asks [`CtxRequest::decode`] for every
//! opcode the core messages do not know.
//!
//! Replies: `()` for the setters, `u64` for a new context handle, a limit or
//! a primary-context handle, `(u64, u64, u64)` for a table's shape,
//! [`CtxInfo`] for the facts of a context (fetched once and cached by the
//! client).

use crate::codec::{Reader, Writer};
use crate::messages::Body;
use crate::ProtocolError;
use tf_api::op;

/// Services of the private export tables, all under `cuGetExportTable`'s
/// opcode (a sub-operation byte follows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTableQuery<'a> {
    /// Does the worker's driver have this table, and how is it made? The
    /// reply `(u64, u64, u64)` is its size word in bytes (0 when its slot 0
    /// is not a size), then a bit per slot 0..128 that is null.
    Size { guid: &'a [u8; 16] },
    /// The handle of a device's primary context without retaining it (the
    /// cudart interface table hands out the context before activating it).
    PrimaryCtx { dev: i32 },
}

const EXPORT_SIZE: u8 = 1;
const EXPORT_PRIMARY: u8 = 2;

/// Requests of this domain. Bulk data borrows the frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtxRequest<'a> {
    /// `cuDevicePrimaryCtxSetFlags_v2`.
    PrimaryCtxSetFlags {
        dev: i32,
        flags: u32,
    },
    /// `cuDevicePrimaryCtxReset_v2`, for this session's view of the context.
    PrimaryCtxReset {
        dev: i32,
    },
    /// `cuCtxCreate_v2` (the other ABI versions map onto it in the client).
    Create {
        dev: i32,
        flags: u32,
    },
    Destroy {
        ctx: u64,
    },
    GetLimit {
        ctx: u64,
        limit: u32,
    },
    SetLimit {
        ctx: u64,
        limit: u32,
        value: u64,
    },
    /// The context's [`CtxInfo`] (`cuCtxGetId`'s opcode).
    Info {
        ctx: u64,
    },
    SetCacheConfig {
        ctx: u64,
        config: u32,
    },
    SetFlags {
        ctx: u64,
        flags: u32,
    },
    ExportTable(ExportTableQuery<'a>),
}

impl<'a> CtxRequest<'a> {
    /// The frame opcode.
    pub fn opcode(&self) -> u32 {
        match self {
            Self::PrimaryCtxSetFlags { .. } => op::cuDevicePrimaryCtxSetFlags_v2,
            Self::PrimaryCtxReset { .. } => op::cuDevicePrimaryCtxReset_v2,
            Self::Create { .. } => op::cuCtxCreate_v2,
            Self::Destroy { .. } => op::cuCtxDestroy_v2,
            Self::GetLimit { .. } => op::cuCtxGetLimit,
            Self::SetLimit { .. } => op::cuCtxSetLimit,
            Self::Info { .. } => op::cuCtxGetId,
            Self::SetCacheConfig { .. } => op::cuCtxSetCacheConfig,
            Self::SetFlags { .. } => op::cuCtxSetFlags,
            Self::ExportTable(_) => op::cuGetExportTable,
        }
    }

    /// Encodes the fixed part into `w`; returns bulk data to gather after it.
    pub fn encode(&self, w: &mut Writer) -> &'a [u8] {
        match self {
            Self::PrimaryCtxSetFlags { dev, flags } | Self::Create { dev, flags } => {
                w.i32(*dev).u32(*flags);
            }
            Self::PrimaryCtxReset { dev } => {
                w.i32(*dev);
            }
            Self::Destroy { ctx } | Self::Info { ctx } => {
                w.u64(*ctx);
            }
            Self::GetLimit { ctx, limit } => {
                w.u64(*ctx).u32(*limit);
            }
            Self::SetLimit { ctx, limit, value } => {
                w.u64(*ctx).u32(*limit).u64(*value);
            }
            Self::SetCacheConfig { ctx, config: v } | Self::SetFlags { ctx, flags: v } => {
                w.u64(*ctx).u32(*v);
            }
            Self::ExportTable(ExportTableQuery::Size { guid }) => {
                w.u8(EXPORT_SIZE);
                w.buf.extend_from_slice(&guid[..]);
            }
            Self::ExportTable(ExportTableQuery::PrimaryCtx { dev }) => {
                w.u8(EXPORT_PRIMARY).i32(*dev);
            }
        }
        &[]
    }

    /// `None` if `opcode` is not of this domain; else the validated request.
    pub fn decode(opcode: u32, payload: &'a [u8]) -> Option<Result<Self, ProtocolError>> {
        let mut r = Reader::new(payload, "context request");
        let req = (|| {
            let req = match opcode {
                op::cuDevicePrimaryCtxSetFlags_v2 => Self::PrimaryCtxSetFlags {
                    dev: r.i32()?,
                    flags: r.u32()?,
                },
                op::cuDevicePrimaryCtxReset_v2 => Self::PrimaryCtxReset { dev: r.i32()? },
                op::cuCtxCreate_v2 => Self::Create {
                    dev: r.i32()?,
                    flags: r.u32()?,
                },
                op::cuCtxDestroy_v2 => Self::Destroy { ctx: r.u64()? },
                op::cuCtxGetLimit => Self::GetLimit {
                    ctx: r.u64()?,
                    limit: r.u32()?,
                },
                op::cuCtxSetLimit => Self::SetLimit {
                    ctx: r.u64()?,
                    limit: r.u32()?,
                    value: r.u64()?,
                },
                op::cuCtxGetId => Self::Info { ctx: r.u64()? },
                op::cuCtxSetCacheConfig => Self::SetCacheConfig {
                    ctx: r.u64()?,
                    config: r.u32()?,
                },
                op::cuCtxSetFlags => Self::SetFlags {
                    ctx: r.u64()?,
                    flags: r.u32()?,
                },
                op::cuGetExportTable => match r.u8()? {
                    EXPORT_SIZE => {
                        // Borrow the GUID from the frame: 16 bytes after the sub-op.
                        let guid = payload
                            .get(1..17)
                            .and_then(|g| <&[u8; 16]>::try_from(g).ok())
                            .ok_or(ProtocolError::Malformed {
                                what: "cuGetExportTable",
                                why: "truncated GUID",
                            })?;
                        r.fixed::<16>()?;
                        Self::ExportTable(ExportTableQuery::Size { guid })
                    }
                    EXPORT_PRIMARY => {
                        Self::ExportTable(ExportTableQuery::PrimaryCtx { dev: r.i32()? })
                    }
                    _ => {
                        return Err(ProtocolError::Malformed {
                            what: "cuGetExportTable",
                            why: "unknown sub-operation",
                        })
                    }
                },
                _ => return Ok(None),
            };
            Ok(Some(req))
        })();
        match req {
            Ok(None) => None,
            Ok(Some(req)) => Some(r.end().map(|()| req)),
            Err(e) => Some(Err(e)),
        }
    }
}

/// The facts of a context that the client caches: they change only through
/// the client's own setters (which drop the cached copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtxInfo {
    /// `cuCtxGetId` (0 where the driver has no context ids).
    pub id: u64,
    /// `cuCtxGetApiVersion`.
    pub api_version: u32,
    /// `cuCtxGetFlags`.
    pub flags: u32,
    /// `cuCtxGetCacheConfig`.
    pub cache_config: u32,
    /// `cuCtxGetSharedMemConfig`.
    pub shared_mem_config: u32,
    /// `cuCtxGetStreamPriorityRange`: (least, greatest).
    pub priority_least: i32,
    pub priority_greatest: i32,
}

impl Body for CtxInfo {
    fn put(&self, w: &mut Writer) {
        w.u64(self.id)
            .u32(self.api_version)
            .u32(self.flags)
            .u32(self.cache_config)
            .u32(self.shared_mem_config)
            .i32(self.priority_least)
            .i32(self.priority_greatest);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(Self {
            id: r.u64()?,
            api_version: r.u32()?,
            flags: r.u32()?,
            cache_config: r.u32()?,
            shared_mem_config: r.u32()?,
            priority_least: r.i32()?,
            priority_greatest: r.i32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_reply, encode_reply, Request};

    fn round_trip(req: CtxRequest<'_>) {
        let r = Request::Ctx(req.clone());
        let (fixed, bulk) = r.encode();
        assert!(bulk.is_empty());
        let back = Request::decode(r.opcode(), &fixed).unwrap();
        assert_eq!(back, r);
        // Truncated or padded payloads are refused, never a panic.
        for n in 0..fixed.len() {
            assert!(
                Request::decode(r.opcode(), &fixed[..n]).is_err(),
                "{req:?} cut at {n}"
            );
        }
        let mut long = fixed.clone();
        long.push(0);
        assert!(Request::decode(r.opcode(), &long).is_err());
    }

    #[test]
    fn requests_round_trip() {
        let guid = [7u8; 16];
        for req in [
            CtxRequest::PrimaryCtxSetFlags { dev: 1, flags: 4 },
            CtxRequest::PrimaryCtxReset { dev: 0 },
            CtxRequest::Create {
                dev: 2,
                flags: 0x10,
            },
            CtxRequest::Destroy { ctx: 9 },
            CtxRequest::GetLimit { ctx: 9, limit: 2 },
            CtxRequest::SetLimit {
                ctx: 9,
                limit: 1,
                value: 1 << 40,
            },
            CtxRequest::Info { ctx: 5 },
            CtxRequest::SetCacheConfig { ctx: 5, config: 3 },
            CtxRequest::SetFlags { ctx: 5, flags: 1 },
            CtxRequest::ExportTable(ExportTableQuery::Size { guid: &guid }),
            CtxRequest::ExportTable(ExportTableQuery::PrimaryCtx { dev: 3 }),
        ] {
            round_trip(req);
        }
    }

    #[test]
    fn unknown_sub_operation_is_refused() {
        assert!(Request::decode(op::cuGetExportTable, &[9, 0, 0, 0, 0]).is_err());
        assert!(CtxRequest::decode(op::cuInit, &[]).is_none());
    }

    #[test]
    fn info_reply_round_trips() {
        let info = CtxInfo {
            id: 42,
            api_version: 3020,
            flags: 4,
            cache_config: 1,
            shared_mem_config: 1,
            priority_least: 0,
            priority_greatest: -5,
        };
        let p = encode_reply(0, Some(&info));
        assert_eq!(decode_reply::<CtxInfo>(&p).unwrap(), Ok(info));
        assert_eq!(decode_reply::<CtxInfo>(&p[..p.len() - 1]).ok(), None);
    }
}
