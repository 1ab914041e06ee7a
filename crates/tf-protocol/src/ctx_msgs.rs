//! Context, primary-context, limit and other control-plane requests that cudart needs at start-up.
//!
//! Domain module: owns its opcodes (from `tf_api::op`), its request enum and
//! its reply bodies. `Request::decode` asks [`CtxRequest::decode`] for every
//! opcode the core messages do not know.

use crate::ProtocolError;

/// Requests of this domain. Bulk data borrows the frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtxRequest<'a> {
    /// Placeholder until the first request of this domain exists; never sent.
    #[doc(hidden)]
    _Never(std::marker::PhantomData<&'a ()>),
}

impl<'a> CtxRequest<'a> {
    /// The frame opcode.
    pub fn opcode(&self) -> u32 {
        match self {
            Self::_Never(_) => 0,
        }
    }

    /// Encodes the fixed part into `w`; returns bulk data to gather after it.
    pub fn encode(&self, _w: &mut crate::Writer) -> &'a [u8] {
        match self {
            Self::_Never(_) => &[],
        }
    }

    /// `None` if `opcode` is not of this domain; else the validated request.
    pub fn decode(_opcode: u32, _payload: &'a [u8]) -> Option<Result<Self, ProtocolError>> {
        None
    }
}
