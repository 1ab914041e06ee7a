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
//! Explicit graph building: the nodes the client adds get ids it mints
//! too; nodes it never added (those of a captured or cloned graph) get
//! worker-minted ids when `cuGraphGetNodes` lists them. Adding a node is
//! synchronous (see `codegen/remoted.txt`).
//!
//! Replies: `()`; `(u64, u64, u64)` for a stream's capture status, capture
//! id and the graph id being captured; `u64` for an update result or a node
//! type; [`NodeList`] for `cuGraphGetNodes`.

use crate::codec::{Reader, Writer};
use crate::{Body, ProtocolError};

pub use crate::generated::graph_msgs::*;

/// Id kinds (top 16 bits), as in `exec_msgs::handle`.
pub mod handle {
    pub const GRAPH: u64 = 0x4752 << 48;
    pub const GRAPH_EXEC: u64 = 0x4758 << 48;
    /// A node the client added.
    pub const NODE: u64 = 0x474E << 48;
    /// A node the client never added, named when `cuGraphGetNodes` listed it
    /// (minted by the worker).
    pub const LISTED_NODE: u64 = 0x476E << 48;
    pub use crate::exec_msgs::handle::{is, make};

    /// Either kind of node id.
    pub fn is_node(h: u64) -> bool {
        is(NODE, h) || is(LISTED_NODE, h)
    }
}

/// Most nodes one `cuGraphGetNodes` answer lists.
pub const MAX_NODES: usize = 1 << 20;

/// `cuGraphGetNodes`: the node count and, when asked, `(id, CUgraphNodeType)`
/// of every node in the driver's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeList {
    pub count: u64,
    pub nodes: Vec<(u64, u32)>,
}

impl Body for NodeList {
    fn put(&self, w: &mut Writer) {
        w.u64(self.count).u32(self.nodes.len() as u32);
        for (id, kind) in &self.nodes {
            w.u64(*id).u32(*kind);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let count = r.u64()?;
        let n = r.count(MAX_NODES)?;
        let nodes = (0..n)
            .map(|_| Ok((r.u64()?, r.u32()?)))
            .collect::<Result<Vec<_>, ProtocolError>>()?;
        Ok(NodeList { count, nodes })
    }
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
            G::Nodes {
                graph: 3,
                list: true,
            },
            G::ExecUpdate { exec: 4, graph: 3 },
            G::Create {
                ctx: 1,
                graph: 3,
                flags: 0,
            },
            G::Clone { graph: 3, clone: 5 },
            G::AddEmptyNode {
                graph: 3,
                node: 6,
                deps: vec![7, 8],
            },
            G::AddMemsetNode {
                ctx: 1,
                graph: 3,
                node: 6,
                deps: vec![],
                memset: MemsetNode {
                    dst: 0x7f00,
                    pitch: 0,
                    value: 9,
                    elem: 4,
                    width: 16,
                    height: 1,
                },
            },
            G::AddMemcpyNode {
                ctx: 1,
                graph: 3,
                node: 6,
                deps: vec![7],
                copy: CopyNode {
                    src: CopySide {
                        ptr: 0x7f00,
                        pitch: 64,
                        rows: 2,
                        host: true,
                    },
                    dst: CopySide {
                        ptr: 0x8f00,
                        pitch: 128,
                        rows: 2,
                        host: false,
                    },
                    width: 64,
                    height: 2,
                    depth: 3,
                },
            },
            G::AddEventRecordNode {
                graph: 3,
                node: 6,
                deps: vec![7],
                event: 10,
            },
            G::AddEventWaitNode {
                graph: 3,
                node: 6,
                deps: vec![],
                event: 10,
            },
            G::AddDependencies {
                graph: 3,
                from: vec![6],
                to: vec![7],
            },
            G::NodeType { node: 6 },
        ] {
            let r = Request::Graph(g.clone());
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
        // Kernel nodes carry their packed parameters as bulk bytes.
        let params = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let kernel = KernelNode {
            func: 0x11,
            grid: [2, 1, 1],
            block: [64, 1, 1],
            shared_mem: 0,
            params: &params,
        };
        for g in [
            G::AddKernelNode {
                ctx: 1,
                graph: 3,
                node: 6,
                deps: vec![7],
                kernel,
            },
            G::KernelNodeSetParams {
                ctx: 1,
                node: 6,
                kernel,
            },
            G::ExecKernelNodeSetParams {
                ctx: 1,
                exec: 4,
                node: 6,
                kernel,
            },
        ] {
            let r = Request::Graph(g);
            let (head, bulk) = r.encode();
            let mut whole = head.clone();
            whole.extend_from_slice(bulk);
            assert_eq!(Request::decode(r.opcode(), &whole), Ok(r.clone()));
            for cut in 0..whole.len() {
                assert!(Request::decode(r.opcode(), &whole[..cut]).is_err());
            }
        }
        // The domain's decoder knows only its own opcodes.
        assert_eq!(
            GraphRequest::get(op::cuMemAlloc_v2, &mut Reader::new(&[], "graph request")),
            Err(ProtocolError::UnknownOpcode(op::cuMemAlloc_v2))
        );
    }

    #[test]
    fn node_lists_round_trip_and_are_bounded() {
        let l = NodeList {
            count: 2,
            nodes: vec![
                (handle::make(handle::NODE, 1), 0),
                (handle::make(handle::LISTED_NODE, 2), 7),
            ],
        };
        let mut w = Writer::default();
        l.put(&mut w);
        let b = w.finish();
        assert_eq!(NodeList::get(&mut Reader::new(&b, "nodes")), Ok(l));
        for cut in 0..b.len() {
            assert!(NodeList::get(&mut Reader::new(&b[..cut], "nodes")).is_err());
        }
        let mut w = Writer::default();
        w.u64(1).u32(MAX_NODES as u32 + 1);
        let b = w.finish();
        assert!(NodeList::get(&mut Reader::new(&b, "nodes")).is_err());
        assert!(handle::is_node(handle::make(handle::LISTED_NODE, 3)));
        assert!(!handle::is_node(handle::make(handle::GRAPH, 3)));
    }
}
