//! Fatbins: a 16-byte header, then entries, each a header and a payload.
//!
//! ```text
//! header   0 u32 magic 0xBA55ED50   4 u16 version   6 u16 header_size   8 u64 files_size
//! entry    0 u16 kind (1 PTX, 2 ELF)   4 u32 header_size   8 u64 payload size
//!         16 u32 compressed size       28 u32 arch (sm_XY as XY)
//!         40 u64 flags (0x2000 LZ4, 0x8000 zstd)   56 u64 decompressed size
//! ```
//! The image is `header_size + files_size` bytes; the entries are only
//! walked to validate and describe it. The next entry starts at the entry's
//! `header_size + max(payload size, compressed size)`. Compressed payloads
//! stay compressed: the driver that finally loads the image inflates them.

use crate::{bounded, malformed, u16_at, u32_at, u64_at, ImageError, Kind, Step};

/// Length of the fatbin header.
pub const HEADER_LEN: usize = 16;
/// Smallest entry header: every field above lies within it.
pub const ENTRY_HEADER_MIN: usize = 64;
/// Entry flag: the payload is an LZ4 block.
pub const FLAG_LZ4: u64 = 0x2000;
/// Entry flag: the payload is a zstd frame (CUDA 13).
pub const FLAG_ZSTD: u64 = 0x8000;

pub(crate) fn step(prefix: &[u8], kind: Kind) -> Result<Step, ImageError> {
    if prefix.len() < HEADER_LEN {
        return Ok(Step::Need(HEADER_LEN));
    }
    let header = u16_at(prefix, 6) as u64;
    if header < HEADER_LEN as u64 {
        return Err(malformed(kind, "header size below 16"));
    }
    let len = header
        .checked_add(u64_at(prefix, 8))
        .ok_or(malformed(kind, "size overflows"))?;
    Ok(Step::Sized {
        kind,
        len: bounded(kind, len)?,
    })
}

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Ptx,
    Elf,
    Other(u16),
}

/// How an entry's payload is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

/// One fatbin entry, located within the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// `sm_XY` as `XY`.
    pub arch: u32,
    pub compression: Compression,
    /// Offset of the entry header in the image.
    pub offset: usize,
    /// Offset of the payload in the image.
    pub payload_offset: usize,
    /// Stored payload bytes (compressed size when compressed).
    pub payload_len: usize,
    /// Size once decompressed (the payload size when not compressed).
    pub decompressed_len: u64,
}

impl Entry {
    /// The payload as stored, borrowed from `image`.
    pub fn payload<'a>(&self, image: &'a [u8]) -> &'a [u8] {
        &image[self.payload_offset..self.payload_offset + self.payload_len]
    }
}

/// Walks the entries of a complete fatbin image and checks that each lies
/// within it.
pub fn entries(image: &[u8]) -> Result<Vec<Entry>, ImageError> {
    let kind = Kind::Fatbin;
    if image.len() < HEADER_LEN {
        return Err(ImageError::Truncated {
            needed: HEADER_LEN,
            got: image.len(),
        });
    }
    let start = u16_at(image, 6) as usize;
    let end = start
        .checked_add(bounded(kind, u64_at(image, 8))?)
        .ok_or(malformed(kind, "size overflows"))?;
    if end > image.len() {
        return Err(ImageError::Truncated {
            needed: end,
            got: image.len(),
        });
    }
    let mut out = Vec::new();
    let mut pos = start;
    while pos < end {
        if end - pos < ENTRY_HEADER_MIN {
            // Zero padding after the last entry is allowed; anything else is not.
            if image[pos..end].iter().all(|b| *b == 0) {
                break;
            }
            return Err(malformed(kind, "entry header truncated"));
        }
        let e = &image[pos..end];
        let header = u32_at(e, 4) as usize;
        if header == 0 && e.iter().all(|b| *b == 0) {
            break;
        }
        if header < ENTRY_HEADER_MIN {
            return Err(malformed(kind, "entry header size below 64"));
        }
        let stored = u64_at(e, 8);
        let compressed = u32_at(e, 16) as u64;
        let flags = u64_at(e, 40);
        let compression = if flags & FLAG_ZSTD != 0 {
            Compression::Zstd
        } else if flags & FLAG_LZ4 != 0 {
            Compression::Lz4
        } else {
            Compression::None
        };
        let span = bounded(kind, stored.max(compressed))?;
        let next = pos
            .checked_add(header)
            .and_then(|p| p.checked_add(span))
            .filter(|n| *n <= end)
            .ok_or(malformed(kind, "entry runs past the end of the fatbin"))?;
        let payload_len = if compression == Compression::None {
            stored
        } else {
            compressed
        } as usize;
        let decompressed = u64_at(e, 56);
        out.push(Entry {
            kind: match u16_at(e, 0) {
                1 => EntryKind::Ptx,
                2 => EntryKind::Elf,
                k => EntryKind::Other(k),
            },
            arch: u32_at(e, 28),
            compression,
            offset: pos,
            payload_offset: pos + header,
            payload_len: payload_len.min(span),
            decompressed_len: if compression == Compression::None {
                stored
            } else {
                decompressed
            },
        });
        pos = next;
    }
    Ok(out)
}

/// Builds fatbins for tests (here and in other crates): entries are
/// `(kind, arch, flags, payload, decompressed size)`; compressed payloads
/// are stored as given.
pub fn build(entries: &[(u16, u32, u64, &[u8], u64)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (kind, arch, flags, payload, decompressed) in entries {
        let compressed = flags & (FLAG_LZ4 | FLAG_ZSTD) != 0;
        let padded = payload.len().div_ceil(8) * 8;
        let mut h = [0u8; ENTRY_HEADER_MIN];
        h[0..2].copy_from_slice(&kind.to_le_bytes());
        h[2..4].copy_from_slice(&0x0101u16.to_le_bytes());
        h[4..8].copy_from_slice(&(ENTRY_HEADER_MIN as u32).to_le_bytes());
        h[8..16].copy_from_slice(&(padded as u64).to_le_bytes());
        if compressed {
            h[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        }
        h[28..32].copy_from_slice(&arch.to_le_bytes());
        h[40..48].copy_from_slice(&flags.to_le_bytes());
        h[56..64].copy_from_slice(&decompressed.to_le_bytes());
        body.extend_from_slice(&h);
        body.extend_from_slice(payload);
        body.resize(body.len() + padded - payload.len(), 0);
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&crate::FATBIN_MAGIC.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&(HEADER_LEN as u16).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out
}
