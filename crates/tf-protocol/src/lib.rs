//! The TensorFusion wire protocol, shared by the client (libteleport) and the
//! worker. Pure data: no I/O, no unsafe. Everything is explicit little-endian
//! and every decode is validated; decoding arbitrary bytes returns an error,
//! never panics (see the property tests and `fuzz/`).
#![forbid(unsafe_code)]

pub mod codec;
pub mod ctx_msgs;
pub mod exec_msgs;
pub mod frame;
pub mod graph_msgs;
pub mod mem_msgs;
pub mod messages;
pub mod nvml_msgs;
pub mod status;

pub use codec::{Reader, Writer};
pub use frame::{encode_frame, FrameHeader, HEADER_LEN, MAGIC, MAX_PAYLOAD, PROTOCOL_VERSION};
pub use messages::*;

/// Why bytes from a peer were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// frame truncated: needed {needed} bytes, got {got}
    #[error("frame truncated: needed {needed} bytes, got {got}")]
    Truncated { needed: usize, got: usize },
    /// not a TensorFusion frame (magic {0:#010x}); is the peer a tensor-fusion-worker of this release?
    #[error("not a TensorFusion frame (magic {0:#010x}); is the peer a tensor-fusion-worker?")]
    BadMagic(u32),
    #[error("protocol version mismatch: this side speaks {ours}, the peer {theirs}; use client and worker of the same release")]
    VersionMismatch { ours: u16, theirs: u16 },
    #[error("unknown frame flags {0:#06x}")]
    UnknownFlags(u16),
    #[error("frame payload of {length} bytes exceeds the limit of {max}")]
    TooLarge { length: u32, max: u32 },
    #[error("unknown opcode {0}")]
    UnknownOpcode(u32),
    #[error("malformed {what}: {why}")]
    Malformed {
        what: &'static str,
        why: &'static str,
    },
    #[error("{0} trailing bytes after message")]
    Trailing(usize),
}
