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
    Elapsed, FunctionReply, IntReply, LinkBytes, LinkReply, LoadReply, Names, OccupancyReply,
    TensorMapBytes, MAX_LINKED, MAX_MODULE_FUNCTIONS,
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
    /// A pending link (`CUlinkState`): its inputs are staged like an
    /// image's parts, under this id.
    pub const LINK: u64 = 0x4C4B << 48;
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

/// `CUjit_option` values that matter to the wire: outputs the driver
/// writes back, log buffers, and which options carry plain values.
pub mod jit {
    pub const THREADS_PER_BLOCK: u32 = 1;
    pub const WALL_TIME: u32 = 2;
    pub const INFO_LOG: u32 = 3;
    pub const INFO_LOG_SIZE: u32 = 4;
    pub const ERROR_LOG: u32 = 5;
    pub const ERROR_LOG_SIZE: u32 = 6;
    /// `CU_JIT_BINARY_LOADER_THREAD_COUNT`, the last option of CUDA 13.
    const LAST: u32 = 35;
    /// Options whose value points at the application's memory (symbol
    /// names and addresses, referenced kernel and variable names).
    pub const POINTERS: [u32; 4] = [17, 18, 25, 27];

    /// Whether `option` is one this protocol knows whose value is a plain
    /// number (or an output slot the driver writes a number into), so the
    /// worker may hand it to its driver as is. Log buffers are not: the
    /// worker substitutes its own.
    pub fn by_value(option: u32) -> bool {
        option <= LAST && !POINTERS.contains(&option) && option != INFO_LOG && option != ERROR_LOG
    }
}

/// `CU_JIT_NUM_INPUT_TYPES`: `CUjitInputType` values are below it.
pub const JIT_INPUT_TYPES: u32 = 6;

impl LinkInput {
    /// Whether the input type is a `CUjitInputType`.
    pub fn known_kind(&self) -> bool {
        self.kind < JIT_INPUT_TYPES
    }
}

impl ExecRequest<'_> {
    /// Called by the generated decoder for the `check` variants: a link has
    /// at least one input, each of a known type, whose sizes add up without
    /// overflow to at most `tf_image::MAX_IMAGE`-like bounds (the worker
    /// compares them with the bytes it received).
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        match self {
            Self::Link { inputs, .. } => {
                if inputs.is_empty() {
                    return Err("a link without inputs");
                }
                if !inputs.iter().all(LinkInput::known_kind) {
                    return Err("unknown link input type");
                }
                let total = inputs
                    .iter()
                    .try_fold(0u64, |a, i| a.checked_add(i.size))
                    .ok_or("link input sizes overflow")?;
                if total > MAX_LINKED as u64 {
                    return Err("link inputs too large");
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl TensorMapEncode {
    /// Called by the generated decoder: the rank is what the driver
    /// accepts for this encoder (1..=5, im2col 3..=5) and every array is as
    /// long as the rank says, so a backend can pass them to the driver.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        tensor_map_arrays(
            self.rank,
            self.dims.len(),
            self.strides.len(),
            self.element_strides.len(),
            &self.shape,
        )
    }
}

/// The array lengths a tensor map encoder of `rank` dimensions needs; the
/// client checks the application's arguments with it before reading them.
pub fn tensor_map_rank_ok(rank: u32, shape: &TensorMapShape) -> bool {
    let lo = match shape {
        TensorMapShape::Tiled { .. } => 1,
        TensorMapShape::Im2col { .. } | TensorMapShape::Im2colWide { .. } => 3,
    };
    (lo..=MAX_TENSOR_RANK as u32).contains(&rank)
}

fn tensor_map_arrays(
    rank: u32,
    dims: usize,
    strides: usize,
    element_strides: usize,
    shape: &TensorMapShape,
) -> Result<(), &'static str> {
    if !tensor_map_rank_ok(rank, shape) {
        return Err("tensor map rank out of range");
    }
    let r = rank as usize;
    let shape_ok = match shape {
        TensorMapShape::Tiled { box_dim } => box_dim.len() == r,
        TensorMapShape::Im2col { lower, upper, .. } => lower.len() == r - 2 && upper.len() == r - 2,
        TensorMapShape::Im2colWide { .. } => true,
    };
    if dims != r || strides != r - 1 || element_strides != r || !shape_ok {
        return Err("tensor map arrays disagree with the rank");
    }
    Ok(())
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
