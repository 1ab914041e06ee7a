//! CUDA arrays, copies with an array side, texture and surface objects.
//!
//! Domain module: its requests ([`ArrayRequest`] and the types inside) are
//! generated from `codegen/messages.txt`; the id kind, the element sizes of
//! the remoted formats and the checks the generated decoder calls are here.
//!
//! Handles. Arrays are ids the client mints (creation is synchronous, but
//! the id lets the client answer descriptor queries itself). Texture and
//! surface objects are the driver's own 64-bit values: kernels receive them
//! by value, so the client must hand out exactly what the driver made; the
//! worker only accepts values it created for the same session.
//!
//! Replies: `u64` for a new texture or surface object; the packed bytes
//! for a copy to the host; `()` else.

pub use crate::generated::array_msgs::*;

/// Client-minted id kinds.
pub mod handle {
    pub const ARRAY: u64 = 0x4152 << 48;
    pub use crate::exec_msgs::handle::{is, make};
}

/// `CUDA_ARRAY3D_SURFACE_LDST` and the other flags the worker accepts:
/// layered, surface load/store, cubemap, texture gather, depth texture,
/// color attachment. Sparse and deferred-mapping arrays need VMM calls on
/// the array and are refused.
pub const ARRAY_FLAGS: u32 = 0x01 | 0x02 | 0x04 | 0x08 | 0x10 | 0x20;

/// `CU_RESOURCE_TYPE_*`.
pub mod resource {
    pub const ARRAY: u32 = 0;
    pub const MIPMAPPED_ARRAY: u32 = 1;
    pub const LINEAR: u32 = 2;
    pub const PITCH2D: u32 = 3;
}

/// Bytes of one element of `format` with `channels` channels, for the
/// formats that are remoted: the eight classic ones (1, 2 or 4 channels)
/// and the normalized `UNORM`/`SNORM` `INT8`/`INT16` `X1`/`X2`/`X4` ones
/// (whose channel count is part of the format). Anything else (video,
/// block-compressed, packed formats) is `None`: `CUDA_ERROR_INVALID_VALUE`.
pub fn elem_size(format: u32, channels: u32) -> Option<u64> {
    let per_channel = match format {
        0x01 | 0x08 => 1,
        0x02 | 0x09 | 0x10 => 2,
        0x03 | 0x0a | 0x20 => 4,
        0xc0..=0xcb => {
            // c0..c2 UNORM8, c3..c5 UNORM16, c6..c8 SNORM8, c9..cb SNORM16;
            // within each group X1, X2, X4.
            let i = format - 0xc0;
            let want = [1, 2, 4][(i % 3) as usize];
            if channels != want {
                return None;
            }
            return Some(if (i / 3).is_multiple_of(2) {
                want as u64
            } else {
                2 * want as u64
            });
        }
        _ => return None,
    };
    matches!(channels, 1 | 2 | 4).then_some(per_channel * channels as u64)
}

impl ArrayDesc {
    /// Bytes of one element, when the format and channels are remoted.
    pub fn elem(&self) -> Option<u64> {
        elem_size(self.format, self.channels)
    }

    /// `(row bytes, rows, slices)`: height and depth 0 count as 1.
    pub fn extent(&self) -> Option<(u64, u64, u64)> {
        Some((
            self.width.checked_mul(self.elem()?)?,
            self.height.max(1),
            self.depth.max(1),
        ))
    }

    /// Bytes the array holds at least (charged against the memory limit).
    pub fn bytes(&self) -> Option<u64> {
        let (w, h, d) = self.extent()?;
        w.checked_mul(h)?.checked_mul(d)
    }
}

impl ArrayCopy<'_> {
    /// Bytes of the packed host side.
    pub fn packed(&self) -> Option<u64> {
        self.width.checked_mul(self.rows)
    }

    /// The source is the client's host memory.
    pub fn src_host(&self) -> bool {
        self.src.is_none() && self.src_array.is_none()
    }

    /// The destination is the client's host memory.
    pub fn dst_host(&self) -> bool {
        self.dst.is_none() && self.dst_array.is_none()
    }

    /// Called by the generated decoder: one kind per end, an array on one
    /// end at least, not both ends host, host data exactly when the source
    /// is the host.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if (self.src.is_some() && self.src_array.is_some())
            || (self.dst.is_some() && self.dst_array.is_some())
        {
            return Err("a copy end is both linear and an array");
        }
        if self.src_array.is_none() && self.dst_array.is_none() {
            return Err("an array copy without an array");
        }
        if self.src_host() && self.dst_host() {
            return Err("an array copy between host memory");
        }
        let want = if self.src_host() {
            self.packed()
        } else {
            Some(0)
        };
        if want != Some(self.data.len() as u64) {
            return Err("copy sides and data disagree");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Request;

    #[test]
    fn element_sizes() {
        assert_eq!(elem_size(0x20, 1), Some(4));
        assert_eq!(elem_size(0x10, 4), Some(8));
        assert_eq!(elem_size(0x01, 2), Some(2));
        assert_eq!(elem_size(0x20, 3), None);
        assert_eq!(elem_size(0x20, 0), None);
        assert_eq!(elem_size(0x77, 1), None);
        assert_eq!(elem_size(0xc2, 4), Some(4));
        assert_eq!(elem_size(0xc2, 1), None);
        assert_eq!(elem_size(0xc5, 4), Some(8));
        assert_eq!(elem_size(0xcb, 4), Some(8));
        assert_eq!(elem_size(0xc6, 1), Some(1));
    }

    #[test]
    fn copies_round_trip_and_bad_sides_are_refused() {
        let side = ArraySide {
            array: handle::make(handle::ARRAY, 1),
            x_bytes: 4,
            y: 1,
            z: 2,
        };
        let data = [7u8; 6];
        let good = ArrayCopy {
            ctx: 1,
            stream: Some(3),
            width: 3,
            rows: 2,
            src: None,
            src_array: None,
            dst: None,
            dst_array: Some(side),
            data: &data,
        };
        let r = Request::Array(ArrayRequest::Copy(good.clone()));
        let (fixed, bulk) = r.encode();
        let mut p = fixed.clone();
        p.extend_from_slice(bulk);
        assert_eq!(Request::decode(r.opcode(), &p).unwrap(), r);
        // No array side, or both linear and array on one end, or data that
        // does not match: refused by the decoder.
        for bad in [
            ArrayCopy {
                dst_array: None,
                dst: Some(Linear { ptr: 1, pitch: 3 }),
                ..good.clone()
            },
            ArrayCopy {
                src: Some(Linear { ptr: 1, pitch: 3 }),
                src_array: Some(side),
                data: &[],
                ..good.clone()
            },
            ArrayCopy {
                data: &data[..5],
                ..good.clone()
            },
        ] {
            let r = Request::Array(ArrayRequest::Copy(bad));
            let (fixed, bulk) = r.encode();
            let mut p = fixed.clone();
            p.extend_from_slice(bulk);
            assert!(Request::decode(r.opcode(), &p).is_err());
        }
    }

    #[test]
    fn extents() {
        let d = ArrayDesc {
            width: 10,
            height: 0,
            depth: 0,
            format: 0x20,
            channels: 2,
            flags: 0,
        };
        assert_eq!(d.extent(), Some((80, 1, 1)));
        assert_eq!(d.bytes(), Some(80));
        let d = ArrayDesc {
            width: u64::MAX,
            ..d
        };
        assert_eq!(d.bytes(), None);
    }
}
