//! Stream capture and CUDA graphs.
//!
//! Domain module: owns its opcodes (from `tf_api::op`) and its request enum.
//! `Request::decode` asks [`GraphRequest::decode`] for every opcode the core
//! messages do not know.
//!
//! Graphs and executable graphs are named by ids the client mints
//! ([`handle`]), so building, launching and destroying them never waits for
//! the worker; the calls that can fail in ways the application must see at
//! once (ending a capture, instantiating, updating) are synchronous.
//!
//! Replies: `()`; `(u64, u64, u64)` for a stream's capture status, capture
//! id and the graph id being captured; `u64` for a node count or an update
//! result.

use crate::codec::{Reader, Writer};
use crate::ProtocolError;
use tf_api::op;

/// Client-minted id kinds (top 16 bits), as in `exec_msgs::handle`.
pub mod handle {
    pub const GRAPH: u64 = 0x4752 << 48;
    pub const GRAPH_EXEC: u64 = 0x4758 << 48;
    pub use crate::exec_msgs::handle::{is, make};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphRequest {
    /// `cuStreamBeginCapture_v2`; `graph` is the id the client minted for
    /// the graph being captured.
    BeginCapture {
        ctx: u64,
        stream: u64,
        graph: u64,
        mode: u32,
    },
    EndCapture {
        ctx: u64,
        stream: u64,
    },
    /// `cuStreamGetCaptureInfo*` and `cuStreamIsCapturing` while a capture
    /// is under way somewhere in the process.
    CaptureInfo {
        ctx: u64,
        stream: u64,
    },
    /// `cuThreadExchangeStreamCaptureMode`, applied to the worker thread
    /// that runs this client's calls.
    CaptureMode {
        mode: u32,
    },
    Instantiate {
        ctx: u64,
        graph: u64,
        exec: u64,
        flags: u64,
    },
    Launch {
        ctx: u64,
        exec: u64,
        stream: u64,
    },
    Upload {
        ctx: u64,
        exec: u64,
        stream: u64,
    },
    ExecDestroy {
        exec: u64,
    },
    Destroy {
        graph: u64,
    },
    /// `cuGraphGetNodes` asked for the count only.
    NodeCount {
        graph: u64,
    },
    /// `cuGraphExecUpdate_v2`: the reply is the `CUgraphExecUpdateResult`.
    ExecUpdate {
        exec: u64,
        graph: u64,
    },
}

impl GraphRequest {
    pub fn opcode(&self) -> u32 {
        use GraphRequest as G;
        match self {
            G::BeginCapture { .. } => op::cuStreamBeginCapture_v2,
            G::EndCapture { .. } => op::cuStreamEndCapture,
            G::CaptureInfo { .. } => op::cuStreamGetCaptureInfo_v2,
            G::CaptureMode { .. } => op::cuThreadExchangeStreamCaptureMode,
            G::Instantiate { .. } => op::cuGraphInstantiateWithFlags,
            G::Launch { .. } => op::cuGraphLaunch,
            G::Upload { .. } => op::cuGraphUpload,
            G::ExecDestroy { .. } => op::cuGraphExecDestroy,
            G::Destroy { .. } => op::cuGraphDestroy,
            G::NodeCount { .. } => op::cuGraphGetNodes,
            G::ExecUpdate { .. } => op::cuGraphExecUpdate_v2,
        }
    }

    pub fn encode(&self, w: &mut Writer) {
        use GraphRequest as G;
        match *self {
            G::BeginCapture {
                ctx,
                stream,
                graph,
                mode,
            } => {
                w.u64(ctx).u64(stream).u64(graph).u32(mode);
            }
            G::EndCapture { ctx, stream } | G::CaptureInfo { ctx, stream } => {
                w.u64(ctx).u64(stream);
            }
            G::CaptureMode { mode } => {
                w.u32(mode);
            }
            G::Instantiate {
                ctx,
                graph,
                exec,
                flags,
            } => {
                w.u64(ctx).u64(graph).u64(exec).u64(flags);
            }
            G::Launch { ctx, exec, stream } | G::Upload { ctx, exec, stream } => {
                w.u64(ctx).u64(exec).u64(stream);
            }
            G::ExecDestroy { exec } => {
                w.u64(exec);
            }
            G::Destroy { graph } | G::NodeCount { graph } => {
                w.u64(graph);
            }
            G::ExecUpdate { exec, graph } => {
                w.u64(exec).u64(graph);
            }
        }
    }

    /// `None` if `opcode` is not one of this domain's; else the validated request.
    pub fn decode(opcode: u32, payload: &[u8]) -> Option<Result<Self, ProtocolError>> {
        use GraphRequest as G;
        let mut r = Reader::new(payload, "graph request");
        let req = (|| -> Result<Option<Self>, ProtocolError> {
            let r = &mut r;
            Ok(Some(match opcode {
                op::cuStreamBeginCapture_v2 => G::BeginCapture {
                    ctx: r.u64()?,
                    stream: r.u64()?,
                    graph: r.u64()?,
                    mode: r.u32()?,
                },
                op::cuStreamEndCapture => G::EndCapture {
                    ctx: r.u64()?,
                    stream: r.u64()?,
                },
                op::cuStreamGetCaptureInfo_v2 => G::CaptureInfo {
                    ctx: r.u64()?,
                    stream: r.u64()?,
                },
                op::cuThreadExchangeStreamCaptureMode => G::CaptureMode { mode: r.u32()? },
                op::cuGraphInstantiateWithFlags => G::Instantiate {
                    ctx: r.u64()?,
                    graph: r.u64()?,
                    exec: r.u64()?,
                    flags: r.u64()?,
                },
                op::cuGraphLaunch => G::Launch {
                    ctx: r.u64()?,
                    exec: r.u64()?,
                    stream: r.u64()?,
                },
                op::cuGraphUpload => G::Upload {
                    ctx: r.u64()?,
                    exec: r.u64()?,
                    stream: r.u64()?,
                },
                op::cuGraphExecDestroy => G::ExecDestroy { exec: r.u64()? },
                op::cuGraphDestroy => G::Destroy { graph: r.u64()? },
                op::cuGraphGetNodes => G::NodeCount { graph: r.u64()? },
                op::cuGraphExecUpdate_v2 => G::ExecUpdate {
                    exec: r.u64()?,
                    graph: r.u64()?,
                },
                _ => return Ok(None),
            }))
        })();
        match req {
            Ok(None) => None,
            Ok(Some(g)) => Some(r.end().map(|()| g)),
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let mut w = Writer::new();
            g.encode(&mut w);
            let mut b = w.finish();
            assert_eq!(GraphRequest::decode(g.opcode(), &b), Some(Ok(g)));
            for cut in 0..b.len() {
                assert!(GraphRequest::decode(g.opcode(), &b[..cut])
                    .unwrap()
                    .is_err());
            }
            b.push(1);
            assert!(GraphRequest::decode(g.opcode(), &b).unwrap().is_err());
        }
        assert!(GraphRequest::decode(op::cuMemAlloc_v2, &[]).is_none());
    }
}
