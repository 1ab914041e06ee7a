//! Recognizes and sizes CUDA code images.
//!
//! `cuModuleLoadData`, `cuModuleLoadFatBinary` and `cuLibraryLoadData` take a
//! pointer and no size: the driver finds the end of the image from its
//! contents. A client that sends the image to another machine must do the
//! same, reading no byte past the end (the next page may not be mapped). So
//! sizing is a conversation: [`step`] looks at the prefix read so far and says
//! how many bytes it needs next, until it knows the length. The caller that
//! holds a raw pointer (libteleport) grows the prefix as asked; callers that
//! hold a slice use [`measure`].
//!
//! Image kinds, by their first bytes:
//! - fatbin wrapper (`0x466243B1`, `__fatBinC_Wrapper_t`): 24 bytes naming a
//!   fatbin elsewhere; version 2 also names a NULL-terminated list of
//!   prelinked fatbins. Reported as [`Step::Wrapper`]: follow the pointers.
//! - fatbin (`0xBA55ED50`): `header_size + files_size` bytes ([`fatbin`]).
//! - ELF cubin: the furthest end of the header tables, sections and segments ([`elf`]).
//! - `!<arch>\n` archive: members while member headers follow ([`archive`]).
//! - anything else: PTX text, up to and including its NUL.
//!
//! [`ptx`] reads kernel parameter layouts and global variables from PTX text
//! (the test worker's stand-in for the driver's `cuFuncGetParamInfo`).
#![forbid(unsafe_code)]

pub mod archive;
pub mod elf;
pub mod fatbin;
pub mod ptx;

/// `__fatBinC_Wrapper_t::magic`.
pub const WRAPPER_MAGIC: u32 = 0x4662_43B1;
/// `fatBinaryHeader::magic`.
pub const FATBIN_MAGIC: u32 = 0xBA55_ED50;
pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
pub const AR_MAGIC: [u8; 8] = *b"!<arch>\n";
/// Size of `__fatBinC_Wrapper_t` on 64-bit hosts: magic, version, two pointers.
pub const WRAPPER_LEN: usize = 24;
/// Largest image accepted. Real images are at most a few hundred MiB; a
/// larger size read from a header is corruption, not an image to copy.
pub const MAX_IMAGE: u64 = 2 << 30;

/// What an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Wrapper,
    Fatbin,
    Elf,
    Archive,
    Ptx,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Wrapper => "fatbin wrapper",
            Kind::Fatbin => "fatbin",
            Kind::Elf => "cubin (ELF)",
            Kind::Archive => "archive",
            Kind::Ptx => "PTX",
        }
    }
}

/// A fatbin wrapper's fields. The pointers are addresses in the process
/// that holds the wrapper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wrapper {
    /// 1: `fatbin` only; 2: also `prelinked`.
    pub version: u32,
    /// Address of the fatbin.
    pub fatbin: u64,
    /// Version 2: address of a NULL-terminated array of fatbin addresses
    /// (version 1: a file name or NULL, meaningless here).
    pub prelinked: u64,
}

/// What to do next, given the prefix read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Read the first `n` bytes (more than given) and ask again.
    Need(usize),
    /// The image is at least `end` bytes long and goes on only if another
    /// archive member header follows: if the first `end +`
    /// [`archive::HEADER_LEN`] bytes can be read, ask again with them;
    /// otherwise the image is `end` bytes long.
    Probe { end: usize },
    /// Text whose length is not known yet: the image ends at the first NUL
    /// (inclusive).
    UntilNul,
    /// The image is `len` bytes long.
    Sized { kind: Kind, len: usize },
    /// A fatbin wrapper: the image is elsewhere, at its pointers.
    Wrapper(Wrapper),
}

/// Why an image was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The bytes end before the image does.
    #[error("the image is truncated: {needed} bytes needed, {got} available")]
    Truncated { needed: usize, got: usize },
    #[error("PTX text without a terminating NUL")]
    Unterminated,
    #[error("malformed {kind}: {why}")]
    Malformed {
        kind: &'static str,
        why: &'static str,
    },
    #[error("a {kind} of {len} bytes is larger than the {max}-byte limit")]
    TooLarge {
        kind: &'static str,
        len: u64,
        max: u64,
    },
}

pub(crate) fn malformed(kind: Kind, why: &'static str) -> ImageError {
    ImageError::Malformed {
        kind: kind.name(),
        why,
    }
}

/// Checks a size read from a header against [`MAX_IMAGE`].
pub(crate) fn bounded(kind: Kind, len: u64) -> Result<usize, ImageError> {
    if len > MAX_IMAGE {
        return Err(ImageError::TooLarge {
            kind: kind.name(),
            len,
            max: MAX_IMAGE,
        });
    }
    Ok(len as usize)
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The binary magics. None contains a NUL byte, which is what lets [`step`]
/// read a possible text image one byte at a time without passing its NUL.
const MAGICS: [(&[u8], Kind); 4] = [
    (&WRAPPER_MAGIC.to_le_bytes(), Kind::Wrapper),
    (&FATBIN_MAGIC.to_le_bytes(), Kind::Fatbin),
    (&ELF_MAGIC, Kind::Elf),
    (&AR_MAGIC, Kind::Archive),
];

/// Decides the next step from the image's first bytes. Never asks for a byte
/// past the end of a well-formed image, and never for a byte past the NUL of
/// a text image: while the prefix could still be the start of a binary
/// magic it asks for one more byte at a time.
pub fn step(prefix: &[u8]) -> Result<Step, ImageError> {
    let kind = MAGICS
        .iter()
        .find(|(m, _)| prefix.starts_with(m))
        .map(|(_, k)| *k);
    match kind {
        Some(Kind::Wrapper) => wrapper_step(prefix),
        Some(Kind::Fatbin) => fatbin::step(prefix, Kind::Fatbin),
        Some(Kind::Elf) => elf::step(prefix),
        Some(Kind::Archive) => archive::step(prefix),
        Some(Kind::Ptx) | None => {
            if let Some(nul) = prefix.iter().position(|b| *b == 0) {
                return Ok(Step::Sized {
                    kind: Kind::Ptx,
                    len: nul + 1,
                });
            }
            if MAGICS
                .iter()
                .any(|(m, _)| prefix.len() < m.len() && m.starts_with(prefix))
            {
                return Ok(Step::Need(prefix.len() + 1));
            }
            Ok(Step::UntilNul)
        }
    }
}

fn wrapper_step(prefix: &[u8]) -> Result<Step, ImageError> {
    if prefix.len() < 8 {
        return Ok(Step::Need(8));
    }
    match u32_at(prefix, 4) {
        1 | 2 => {
            if prefix.len() < WRAPPER_LEN {
                return Ok(Step::Need(WRAPPER_LEN));
            }
            Ok(Step::Wrapper(Wrapper {
                version: u32_at(prefix, 4),
                fatbin: u64_at(prefix, 8),
                prelinked: u64_at(prefix, 16),
            }))
        }
        // Relocatable fatbin containers reuse the wrapper's magic with a
        // fatbin header after it (u16 version 1, u16 header size).
        _ if u16_at(prefix, 4) == 1 && u16_at(prefix, 6) >= 16 => {
            fatbin::step(prefix, Kind::Fatbin)
        }
        _ => Err(malformed(Kind::Wrapper, "unknown wrapper version")),
    }
}

/// What [`measure`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Image { kind: Kind, len: usize },
    Wrapper(Wrapper),
}

/// Sizes the image at the start of `buf`, treating `buf` as all the
/// readable memory there is.
pub fn measure(buf: &[u8]) -> Result<Found, ImageError> {
    let mut have = 0usize;
    loop {
        match step(&buf[..have])? {
            Step::Need(n) => {
                if n > buf.len() {
                    return Err(ImageError::Truncated {
                        needed: n,
                        got: buf.len(),
                    });
                }
                debug_assert!(n > have, "step must ask for more than it was given");
                have = n;
            }
            Step::Probe { end } => {
                let more = end.saturating_add(archive::HEADER_LEN);
                if more <= buf.len() {
                    have = more;
                } else if end <= buf.len() {
                    return Ok(Found::Image {
                        kind: Kind::Archive,
                        len: end,
                    });
                } else {
                    return Err(ImageError::Truncated {
                        needed: end,
                        got: buf.len(),
                    });
                }
            }
            Step::UntilNul => {
                let nul = buf.iter().position(|b| *b == 0);
                return match nul {
                    Some(n) => Ok(Found::Image {
                        kind: Kind::Ptx,
                        len: n + 1,
                    }),
                    None => Err(ImageError::Unterminated),
                };
            }
            Step::Sized { kind, len } => {
                if len > buf.len() {
                    return Err(ImageError::Truncated {
                        needed: len,
                        got: buf.len(),
                    });
                }
                return Ok(Found::Image { kind, len });
            }
            Step::Wrapper(w) => return Ok(Found::Wrapper(w)),
        }
    }
}

/// Checks that `image` is exactly one complete image of a self-contained
/// kind (what a worker receives after the client sized it), and returns
/// its kind.
pub fn validate(image: &[u8]) -> Result<Kind, ImageError> {
    match measure(image)? {
        Found::Image { kind, len } if len == image.len() => {
            if kind == Kind::Fatbin {
                fatbin::entries(image)?;
            }
            Ok(kind)
        }
        Found::Image { kind, .. } => Err(malformed(kind, "bytes follow the end of the image")),
        Found::Wrapper(_) => Err(malformed(
            Kind::Wrapper,
            "a wrapper only names other memory; send the fatbins it names",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_read_one_byte_at_a_time_while_it_could_be_a_magic() {
        assert_eq!(step(b""), Ok(Step::Need(1)));
        assert_eq!(step(b"\x7f"), Ok(Step::Need(2)));
        assert_eq!(step(b"!<ar"), Ok(Step::Need(5)));
        assert_eq!(step(b"!<arch>"), Ok(Step::Need(8)));
        // Not a magic: text, sized at its NUL.
        assert_eq!(step(b"!<ax"), Ok(Step::UntilNul));
        assert_eq!(step(b".ver"), Ok(Step::UntilNul));
        assert_eq!(
            step(b"\x7f\0"),
            Ok(Step::Sized {
                kind: Kind::Ptx,
                len: 2
            })
        );
        assert_eq!(
            step(b"\0"),
            Ok(Step::Sized {
                kind: Kind::Ptx,
                len: 1
            })
        );
    }

    #[test]
    fn measure_ptx_includes_the_nul() {
        let text = b"//\n.version 8.0\n.target sm_90\n\0garbage after";
        assert_eq!(
            measure(text),
            Ok(Found::Image {
                kind: Kind::Ptx,
                len: 31
            })
        );
        assert_eq!(measure(b".version 8.0"), Err(ImageError::Unterminated));
    }

    #[test]
    fn wrapper_fields_and_versions() {
        let mut w = Vec::new();
        w.extend_from_slice(&WRAPPER_MAGIC.to_le_bytes());
        w.extend_from_slice(&2u32.to_le_bytes());
        w.extend_from_slice(&0x1122_3344_5566u64.to_le_bytes());
        w.extend_from_slice(&0x7788u64.to_le_bytes());
        assert_eq!(step(&w[..4]), Ok(Step::Need(8)));
        assert_eq!(step(&w[..8]), Ok(Step::Need(24)));
        let want = Wrapper {
            version: 2,
            fatbin: 0x1122_3344_5566,
            prelinked: 0x7788,
        };
        assert_eq!(measure(&w), Ok(Found::Wrapper(want)));
        assert!(validate(&w).is_err());
        w[4] = 9;
        assert!(matches!(
            measure(&w),
            Err(ImageError::Malformed {
                kind: "fatbin wrapper",
                ..
            })
        ));
        assert!(matches!(
            measure(&w[..20]),
            Err(ImageError::Malformed { .. })
        ));
    }

    #[test]
    fn trailing_bytes_fail_validation() {
        let mut t = b"abc\0".to_vec();
        assert_eq!(validate(&t), Ok(Kind::Ptx));
        t.push(b'x');
        assert!(validate(&t).is_err());
    }
}
