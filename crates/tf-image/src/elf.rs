//! ELF cubins: the image ends at the furthest of the ELF header, the program
//! and section header tables, every section with file contents and every
//! segment. CUDA cubins are 64-bit little-endian ELF.

use crate::{bounded, malformed, u16_at, u32_at, u64_at, ImageError, Kind, Step};

pub const EHDR_LEN: usize = 64;
const SHDR_MIN: u64 = 64;
const PHDR_MIN: u64 = 56;
const SHT_NOBITS: u32 = 8;
/// `e_phnum` value meaning "the count is in section 0's `sh_info`".
const PN_XNUM: u16 = 0xFFFF;

fn bad(why: &'static str) -> ImageError {
    malformed(Kind::Elf, why)
}

/// `start + count * size`, failing on overflow.
fn table_end(start: u64, count: u64, size: u64) -> Result<u64, ImageError> {
    count
        .checked_mul(size)
        .and_then(|n| n.checked_add(start))
        .ok_or(bad("header table overflows"))
}

fn need(n: u64) -> Result<Step, ImageError> {
    Ok(Step::Need(bounded(Kind::Elf, n)?))
}

pub(crate) fn step(prefix: &[u8]) -> Result<Step, ImageError> {
    if prefix.len() < EHDR_LEN {
        return Ok(Step::Need(EHDR_LEN));
    }
    if prefix[4] != 2 {
        return Err(bad("not 64-bit (CUDA cubins are ELF64)"));
    }
    if prefix[5] != 1 {
        return Err(bad("not little-endian"));
    }
    let phoff = u64_at(prefix, 32);
    let shoff = u64_at(prefix, 40);
    let phentsize = u16_at(prefix, 54) as u64;
    let mut phnum = u16_at(prefix, 56) as u64;
    let shentsize = u16_at(prefix, 58) as u64;
    let mut shnum = u16_at(prefix, 60) as u64;

    // Extended numbering: counts too large for the header live in section 0.
    let extended = shoff != 0 && (shnum == 0 || phnum == PN_XNUM as u64);
    if extended {
        if shentsize < SHDR_MIN {
            return Err(bad("section header entry too small"));
        }
        let s0_end = table_end(shoff, 1, shentsize)?;
        if (prefix.len() as u64) < s0_end {
            return need(s0_end);
        }
        let s0 = shoff as usize;
        if shnum == 0 {
            shnum = u64_at(prefix, s0 + 32);
        }
        if phnum == PN_XNUM as u64 {
            phnum = u32_at(prefix, s0 + 44) as u64;
        }
    }
    if phnum > 0 && phentsize < PHDR_MIN {
        return Err(bad("program header entry too small"));
    }
    if shnum > 0 && shentsize < SHDR_MIN {
        return Err(bad("section header entry too small"));
    }
    let ph_end = if phnum > 0 {
        table_end(phoff, phnum, phentsize)?
    } else {
        0
    };
    let sh_end = if shnum > 0 {
        table_end(shoff, shnum, shentsize)?
    } else {
        0
    };
    let tables = (EHDR_LEN as u64).max(ph_end).max(sh_end);
    if (prefix.len() as u64) < tables {
        return need(tables);
    }

    let mut end = tables;
    for i in 0..shnum {
        let h = (shoff + i * shentsize) as usize;
        if u32_at(prefix, h + 4) == SHT_NOBITS {
            continue;
        }
        let off = u64_at(prefix, h + 24);
        let size = u64_at(prefix, h + 32);
        end = end.max(off.checked_add(size).ok_or(bad("section overflows"))?);
    }
    for i in 0..phnum {
        let h = (phoff + i * phentsize) as usize;
        let off = u64_at(prefix, h + 8);
        let size = u64_at(prefix, h + 32);
        end = end.max(off.checked_add(size).ok_or(bad("segment overflows"))?);
    }
    Ok(Step::Sized {
        kind: Kind::Elf,
        len: bounded(Kind::Elf, end)?,
    })
}

/// Builds a minimal ELF64 for tests: the ELF header, `sections` as
/// `(type, contents)` laid out after it, then the section header table
/// (at the end, as linkers place it), and `segments` program headers
/// covering `(offset, filesz)` placed right after the ELF header when given.
pub fn build(sections: &[(u32, &[u8])], segments: &[(u64, u64)]) -> Vec<u8> {
    let phoff = if segments.is_empty() { 0 } else { EHDR_LEN };
    let mut out = vec![0u8; EHDR_LEN + segments.len() * PHDR_MIN as usize];
    let mut placed = Vec::new();
    for (ty, data) in sections {
        let off = out.len();
        if *ty != SHT_NOBITS {
            out.extend_from_slice(data);
        }
        placed.push((*ty, off as u64, data.len() as u64));
        while !out.len().is_multiple_of(8) {
            out.push(0);
        }
    }
    let shoff = out.len();
    // Section 0 is the null section, as in every ELF file.
    out.extend_from_slice(&[0u8; SHDR_MIN as usize]);
    for (ty, off, size) in &placed {
        let mut h = [0u8; SHDR_MIN as usize];
        h[4..8].copy_from_slice(&ty.to_le_bytes());
        h[24..32].copy_from_slice(&off.to_le_bytes());
        h[32..40].copy_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&h);
    }
    out[0..4].copy_from_slice(&crate::ELF_MAGIC);
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out[18..20].copy_from_slice(&190u16.to_le_bytes()); // EM_CUDA
    out[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
    out[40..48].copy_from_slice(&(shoff as u64).to_le_bytes());
    out[52..54].copy_from_slice(&(EHDR_LEN as u16).to_le_bytes());
    out[54..56].copy_from_slice(&(PHDR_MIN as u16).to_le_bytes());
    out[56..58].copy_from_slice(&(segments.len() as u16).to_le_bytes());
    out[58..60].copy_from_slice(&(SHDR_MIN as u16).to_le_bytes());
    out[60..62].copy_from_slice(&((placed.len() + 1) as u16).to_le_bytes());
    for (i, (off, filesz)) in segments.iter().enumerate() {
        let h = EHDR_LEN + i * PHDR_MIN as usize;
        out[h..h + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        out[h + 8..h + 16].copy_from_slice(&off.to_le_bytes());
        out[h + 32..h + 40].copy_from_slice(&filesz.to_le_bytes());
    }
    out
}
