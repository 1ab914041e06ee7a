//! `ar` archives (`!<arch>\n`, e.g. from `nvcc -lib`): 60-byte member
//! headers, each followed by its data padded to an even length. Nothing
//! marks the end, so the archive ends where the next bytes are not a member
//! header, or cannot be read ([`crate::Step::Probe`]).

use crate::{bounded, ImageError, Kind, Step};

/// Length of a member header.
pub const HEADER_LEN: usize = 60;
const FMAG: &[u8; 2] = b"`\n";

/// The data size of the member header at the start of `h`, if it is one.
fn member_size(h: &[u8]) -> Option<u64> {
    if &h[58..60] != FMAG {
        return None;
    }
    let field = std::str::from_utf8(&h[48..58]).ok()?.trim_end_matches(' ');
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    field.parse().ok()
}

pub(crate) fn step(prefix: &[u8]) -> Result<Step, ImageError> {
    let mut pos = crate::AR_MAGIC.len();
    loop {
        if prefix.len() < pos + HEADER_LEN {
            return Ok(Step::Probe { end: pos });
        }
        let Some(size) = member_size(&prefix[pos..pos + HEADER_LEN]) else {
            return Ok(Step::Sized {
                kind: Kind::Archive,
                len: pos,
            });
        };
        let next = (pos as u64 + HEADER_LEN as u64)
            .checked_add(size + (size & 1))
            .ok_or(crate::malformed(Kind::Archive, "member size overflows"))?;
        pos = bounded(Kind::Archive, next)?;
    }
}

/// Builds an archive for tests from `(name, data)` members.
pub fn build(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = crate::AR_MAGIC.to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            format!("{name}/"),
            0,
            0,
            0,
            644,
            data.len()
        );
        assert_eq!(header.len(), HEADER_LEN);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}
