//! Module/library loading, kernel launches, streams, events and graphs.
//!
//! Domain module: its requests ([`ExecRequest`] and the types inside) are
//! generated from `codegen/messages.txt`; helpers, the checks the generated
//! decoder calls and the reply bodies are here.
//!
//! Handles. Streams, events, modules and libraries are named by ids the
//! client mints ([`handle`]), so creating them needs no round trip: the
//! worker maps each id to the real handle when the (enqueued) create request
//! arrives and refuses ids it never saw. Functions and kernels are minted by
//! the worker, because their lookup is synchronous anyway: it returns the
//! kernel's parameter layout, which the client caches to pack launches.
//!
//! Images larger than a frame travel as [`ExecRequest::ImagePart`]s followed
//! by the load request carrying the last bytes; all of them are enqueued.

use crate::codec::Reader;
use crate::ProtocolError;

mod replies;

pub use crate::generated::exec_msgs::*;
pub use replies::{
    Elapsed, FunctionReply, IntReply, LoadReply, Names, OccupancyReply, MAX_MODULE_FUNCTIONS,
};

/// Handle ids: a kind tag in the top 16 bits, a nonzero counter below, so a
/// stray integer or a handle of another kind is never mistaken for one.
pub mod handle {
    pub const STREAM: u64 = 0x5354 << 48;
    pub const EVENT: u64 = 0x4556 << 48;
    pub const MODULE: u64 = 0x4D4F << 48;
    pub const LIBRARY: u64 = 0x4C49 << 48;
    /// Minted by the worker.
    pub const FUNCTION: u64 = 0x464E << 48;
    /// Minted by the worker.
    pub const KERNEL: u64 = 0x4B45 << 48;
    const LOW: u64 = (1 << 48) - 1;

    pub fn make(kind: u64, n: u64) -> u64 {
        kind | (n & LOW)
    }
    pub fn is(kind: u64, h: u64) -> bool {
        h & !LOW == kind && h & LOW != 0
    }
    /// The default streams: `NULL`, `CU_STREAM_LEGACY`, `CU_STREAM_PER_THREAD`.
    pub fn is_default_stream(h: u64) -> bool {
        h <= 2
    }
}

/// Longest JIT log returned.
pub const MAX_LOG: usize = 1 << 20;

/// Bytes a packed parameter buffer must hold.
pub fn layout_size(layout: &[ParamSlot]) -> usize {
    layout
        .iter()
        .map(|p| p.offset as usize + p.size as usize)
        .max()
        .unwrap_or(0)
}

impl ImageSpec {
    pub fn total(&self) -> u64 {
        self.parts.iter().fold(0u64, |a, p| a.saturating_add(*p))
    }

    /// Called by the generated decoder: a plain image or a version 1
    /// wrapper is one part; version 2 has at least one.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        let valid = match self.wrapper {
            0 | 1 => self.parts.len() == 1,
            2 => !self.parts.is_empty(),
            _ => false,
        };
        if valid {
            Ok(())
        } else {
            Err("image parts disagree with the wrapper")
        }
    }
}

impl MemsetOp {
    /// The entry point for `elem`-byte elements, 2D when `height` is given;
    /// `None` for an element size other than 1, 2 or 4.
    pub fn new(elem: u8, height: Option<u64>) -> Option<Self> {
        Some(match (elem, height) {
            (1, None) => Self::D8,
            (2, None) => Self::D16,
            (4, None) => Self::D32,
            (1, Some(height)) => Self::D2D8 { height },
            (2, Some(height)) => Self::D2D16 { height },
            (4, Some(height)) => Self::D2D32 { height },
            _ => return None,
        })
    }

    /// Element size in bytes: 1, 2 or 4.
    pub fn elem(self) -> u8 {
        match self {
            Self::D8 | Self::D2D8 { .. } => 1,
            Self::D16 | Self::D2D16 { .. } => 2,
            Self::D32 | Self::D2D32 { .. } => 4,
        }
    }

    /// Rows; `None` for the 1D entry points.
    pub fn height(self) -> Option<u64> {
        match self {
            Self::D8 | Self::D16 | Self::D32 => None,
            Self::D2D8 { height } | Self::D2D16 { height } | Self::D2D32 { height } => Some(height),
        }
    }
}

fn bad(what: &'static str, why: &'static str) -> ProtocolError {
    ProtocolError::Malformed { what, why }
}

fn count(r: &mut Reader<'_>, max: usize, what: &'static str) -> Result<usize, ProtocolError> {
    let n = r.u32()? as usize;
    if n > max {
        return Err(bad(what, "count over limit"));
    }
    Ok(n)
}
