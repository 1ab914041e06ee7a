//! Context, primary-context, limit and other control-plane requests that cudart needs at start-up.
//!
//! Domain module: its requests ([`CtxRequest`]) are generated from
//! `codegen/messages.txt`; its reply bodies are here.
//!
//! Replies: `()` for the setters, `u64` for a new context handle, a limit or
//! a primary-context handle, `(u64, u64, u64)` for a table's shape,
//! [`CtxInfo`] for the facts of a context (fetched once and cached by the
//! client).

use crate::codec::{Reader, Writer};
use crate::messages::Body;
use crate::ProtocolError;

pub use crate::generated::ctx_msgs::*;

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
    use tf_api::op;

    fn round_trip(req: CtxRequest) {
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
            CtxRequest::ExportTableSize { guid },
            CtxRequest::ExportTablePrimaryCtx { dev: 3 },
        ] {
            round_trip(req);
        }
    }

    #[test]
    fn unknown_sub_operation_is_refused() {
        assert_eq!(
            Request::decode(op::cuGetExportTable, &[9, 0, 0, 0, 0]),
            Err(ProtocolError::Malformed {
                what: "cuGetExportTable",
                why: "unknown sub-operation"
            })
        );
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
