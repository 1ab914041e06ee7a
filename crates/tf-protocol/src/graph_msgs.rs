//! Stream capture and CUDA graphs.
//!
//! Domain module: its requests ([`GraphRequest`]) are generated from
//! `codegen/messages.txt`; the client-minted id kinds are here.
//!
//! Graphs and executable graphs are named by ids the client mints
//! ([`handle`]), so building, launching and destroying them never waits for
//! the worker; the calls that can fail in ways the application must see at
//! once (ending a capture, instantiating, updating) are synchronous.
//!
//! Replies: `()`; `(u64, u64, u64)` for a stream's capture status, capture
//! id and the graph id being captured; `u64` for a node count or an update
//! result.

pub use crate::generated::graph_msgs::*;

/// Client-minted id kinds (top 16 bits), as in `exec_msgs::handle`.
pub mod handle {
    pub const GRAPH: u64 = 0x4752 << 48;
    pub const GRAPH_EXEC: u64 = 0x4758 << 48;
    pub use crate::exec_msgs::handle::{is, make};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Reader;
    use crate::{ProtocolError, Request};
    use tf_api::op;

    #[test]
    fn every_request_round_trips_and_prefixes_fail() {
        use GraphRequest as G;
        for g in [
            G::BeginCapture {
                ctx: 1,
                stream: 2,
                graph: 3,
                mode: 1,
            },
            G::EndCapture { ctx: 1, stream: 2 },
            G::CaptureInfo { ctx: 1, stream: 2 },
            G::CaptureMode { mode: 2 },
            G::Instantiate {
                ctx: 1,
                graph: 3,
                exec: 4,
                flags: 0,
            },
            G::Launch {
                ctx: 1,
                exec: 4,
                stream: 2,
            },
            G::Upload {
                ctx: 1,
                exec: 4,
                stream: 2,
            },
            G::ExecDestroy { exec: 4 },
            G::Destroy { graph: 3 },
            G::NodeCount { graph: 3 },
            G::ExecUpdate { exec: 4, graph: 3 },
        ] {
            let r = Request::Graph(g);
            let (mut b, bulk) = r.encode();
            assert!(bulk.is_empty());
            assert_eq!(Request::decode(r.opcode(), &b), Ok(r.clone()));
            for cut in 0..b.len() {
                assert!(
                    Request::decode(r.opcode(), &b[..cut]).is_err(),
                    "{g:?} cut at {cut}"
                );
            }
            b.push(1);
            assert!(Request::decode(r.opcode(), &b).is_err());
        }
        // The domain's decoder knows only its own opcodes.
        assert_eq!(
            GraphRequest::get(op::cuMemAlloc_v2, &mut Reader::new(&[], "graph request")),
            Err(ProtocolError::UnknownOpcode(op::cuMemAlloc_v2))
        );
    }
}
