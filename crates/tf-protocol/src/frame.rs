//! The fixed 24-byte frame header every message starts with.
//!
//! Layout (little-endian):
//! ```text
//! 0  u32 magic          "TFP1"
//! 4  u16 version        PROTOCOL_VERSION
//! 6  u16 flags          FLAG_*
//! 8  u32 opcode         explicit numbers, never reused (see `Opcode`)
//! 12 u32 length         payload bytes that follow the header
//! 16 u64 request_id     echoed in the response
//! ```

use crate::ProtocolError;

/// "TFP1" read as a little-endian u32.
pub const MAGIC: u32 = u32::from_le_bytes(*b"TFP1");
/// Bumped on any incompatible change to framing or message layouts.
pub const PROTOCOL_VERSION: u16 = 4;
/// Size of the encoded header.
pub const HEADER_LEN: usize = 24;
/// Largest payload a peer accepts. Bulk copies are chunked below this so a
/// hostile length can never make the peer allocate more than this at once.
pub const MAX_PAYLOAD: u32 = 64 << 20;

/// The frame answers a request (worker → client).
pub const FLAG_RESPONSE: u16 = 1 << 0;
/// The request is fire-and-forget (an *enqueue* call): the worker never
/// answers it; a failure is recorded as the session's deferred error and
/// reported by the next synchronous call, as CUDA reports async errors.
pub const FLAG_NO_REPLY: u16 = 1 << 1;
const KNOWN_FLAGS: u16 = FLAG_RESPONSE | FLAG_NO_REPLY;

/// A decoded, validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub flags: u16,
    pub opcode: u32,
    pub length: u32,
    pub request_id: u64,
}

impl FrameHeader {
    pub fn request(opcode: u32, length: u32, request_id: u64) -> Self {
        Self {
            flags: 0,
            opcode,
            length,
            request_id,
        }
    }

    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    pub fn is_no_reply(&self) -> bool {
        self.flags & FLAG_NO_REPLY != 0
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..12].copy_from_slice(&self.opcode.to_le_bytes());
        b[12..16].copy_from_slice(&self.length.to_le_bytes());
        b[16..24].copy_from_slice(&self.request_id.to_le_bytes());
        b
    }

    /// Decodes and validates a header: magic, version, flags and the payload
    /// limit. Never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(ProtocolError::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            })?;
        let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic(magic));
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != PROTOCOL_VERSION {
            return Err(ProtocolError::VersionMismatch {
                ours: PROTOCOL_VERSION,
                theirs: version,
            });
        }
        let flags = u16::from_le_bytes([b[6], b[7]]);
        if flags & !KNOWN_FLAGS != 0 {
            return Err(ProtocolError::UnknownFlags(flags));
        }
        let opcode = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        let length = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        if length > MAX_PAYLOAD {
            return Err(ProtocolError::TooLarge {
                length,
                max: MAX_PAYLOAD,
            });
        }
        let request_id =
            u64::from_le_bytes([b[16], b[17], b[18], b[19], b[20], b[21], b[22], b[23]]);
        Ok(Self {
            flags,
            opcode,
            length,
            request_id,
        })
    }
}

/// Encodes a whole frame (header + payload) into one buffer.
pub fn encode_frame(mut header: FrameHeader, payload: &[u8]) -> Vec<u8> {
    header.length = payload.len() as u32;
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&header.encode());
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = FrameHeader {
            flags: FLAG_NO_REPLY,
            opcode: 77,
            length: 5,
            request_id: 1 << 40,
        };
        assert_eq!(FrameHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn header_rejects_bad_input() {
        let good = FrameHeader::request(1, 0, 9).encode();
        assert!(matches!(
            FrameHeader::decode(&good[..10]),
            Err(ProtocolError::Truncated { .. })
        ));
        let mut bad = good;
        bad[0] ^= 1;
        assert!(matches!(
            FrameHeader::decode(&bad),
            Err(ProtocolError::BadMagic(_))
        ));
        let mut bad = good;
        bad[4] = 9;
        assert!(matches!(
            FrameHeader::decode(&bad),
            Err(ProtocolError::VersionMismatch { .. })
        ));
        let mut bad = good;
        bad[7] = 0x80;
        assert!(matches!(
            FrameHeader::decode(&bad),
            Err(ProtocolError::UnknownFlags(_))
        ));
        let mut bad = good;
        bad[12..16].copy_from_slice(&(MAX_PAYLOAD + 1).to_le_bytes());
        assert!(matches!(
            FrameHeader::decode(&bad),
            Err(ProtocolError::TooLarge { .. })
        ));
    }
}
