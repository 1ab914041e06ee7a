//! Reading a code image the application passed as a bare pointer.
//!
//! `tf_image::step` decides, from the bytes read so far, how many more to
//! read; this file only turns its answers into reads. Every read is first
//! checked against the process's mappings (`mincore`), so a corrupt header
//! or a bogus pointer is `CUDA_ERROR_INVALID_IMAGE`, never a crash.

use std::ffi::{c_void, CStr};

use tf_image::{Kind, Step, Wrapper};
use tf_protocol::status::cu;

use super::CUresult;

/// `CUDA_ERROR_INVALID_IMAGE`.
pub(crate) const INVALID_IMAGE: u32 = 200;
/// Most prelinked fatbins a version-2 wrapper may name.
const MAX_PRELINKED: usize = 4096;

/// An image ready to send: one part, or the fatbins a wrapper names.
#[derive(Debug)]
pub(crate) struct ImageData<'a> {
    /// 0, or the wrapper version (see `tf_protocol::exec_msgs::ImageSpec`).
    pub wrapper: u32,
    pub parts: Vec<&'a [u8]>,
    /// What the first part is, for logs.
    pub kind: Kind,
}

impl ImageData<'_> {
    pub fn total(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

/// Whether every page of `[addr, addr + len)` is mapped in this process.
fn mapped(addr: usize, len: usize) -> bool {
    if len == 0 {
        return true;
    }
    let page = page_size();
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let start = addr & !(page - 1);
    let stop = end.div_ceil(page) * page;
    let mut v = vec![0u8; (stop - start) / page];
    // SAFETY: mincore only reads the page table; `v` has one byte per page
    // of the page-aligned range, as it requires.
    unsafe { libc::mincore(start as *mut c_void, stop - start, v.as_mut_ptr().cast()) == 0 }
}

/// The first `n` bytes at `p`, if they are mapped.
pub(crate) fn bytes<'a>(p: *const u8, n: usize) -> Result<&'a [u8], CUresult> {
    if !mapped(p as usize, n) {
        return Err(INVALID_IMAGE);
    }
    // SAFETY: the pages are mapped (checked above) and the CUDA contract
    // makes the image readable and unchanged for the duration of the call.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

fn refuse(e: tf_image::ImageError) -> CUresult {
    tracing::warn!("refusing a code image: {e}");
    INVALID_IMAGE
}

enum Read<'a> {
    Image(Kind, &'a [u8]),
    Wrapper(Wrapper),
}

/// Sizes and borrows the self-contained image at `p`.
fn read_one<'a>(p: *const u8) -> Result<Read<'a>, CUresult> {
    let mut have = 0usize;
    loop {
        match tf_image::step(bytes(p, have)?).map_err(refuse)? {
            Step::Need(n) => have = n,
            Step::Probe { end } => {
                let more = end.saturating_add(tf_image::archive::HEADER_LEN);
                if mapped(p as usize, more) {
                    have = more;
                } else {
                    return Ok(Read::Image(Kind::Archive, bytes(p, end)?));
                }
            }
            Step::UntilNul => {
                // SAFETY: text images are NUL-terminated by the CUDA contract;
                // the first bytes were already checked to be mapped.
                let n = unsafe { CStr::from_ptr(p.cast()) }
                    .to_bytes_with_nul()
                    .len();
                return Ok(Read::Image(Kind::Ptx, bytes(p, n)?));
            }
            Step::Sized { kind, len } => return Ok(Read::Image(kind, bytes(p, len)?)),
            Step::Wrapper(w) => return Ok(Read::Wrapper(w)),
        }
    }
}

fn fatbin_at<'a>(addr: u64) -> Result<&'a [u8], CUresult> {
    match read_one(addr as usize as *const u8)? {
        Read::Image(Kind::Fatbin, b) => Ok(b),
        _ => {
            tracing::warn!("a fatbin wrapper names something that is not a fatbin");
            Err(INVALID_IMAGE)
        }
    }
}

/// Reads the image at `p` (a pointer without a size, as the load calls take).
pub(crate) fn read<'a>(p: *const c_void) -> Result<ImageData<'a>, CUresult> {
    if p.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    match read_one(p.cast())? {
        Read::Image(kind, b) => Ok(ImageData {
            wrapper: 0,
            parts: vec![b],
            kind,
        }),
        Read::Wrapper(w) => {
            let mut parts = vec![fatbin_at(w.fatbin)?];
            if w.version == 2 && w.prelinked != 0 {
                let list = w.prelinked as usize as *const u64;
                for i in 0..=MAX_PRELINKED {
                    if i == MAX_PRELINKED {
                        return Err(INVALID_IMAGE);
                    }
                    let slot = bytes(list.wrapping_add(i).cast(), 8)?;
                    let addr = u64::from_le_bytes(slot.try_into().map_err(|_| INVALID_IMAGE)?);
                    if addr == 0 {
                        break;
                    }
                    parts.push(fatbin_at(addr)?);
                }
            }
            Ok(ImageData {
                wrapper: w.version,
                parts,
                kind: Kind::Wrapper,
            })
        }
    }
}

/// An image read from a file (`cuModuleLoad`, `cuLibraryLoadFromFile`).
/// PTX files carry no NUL; the driver's loaders add one, so do we.
pub(crate) fn from_file(path: &std::path::Path) -> Result<(Kind, Vec<u8>), CUresult> {
    let mut b = std::fs::read(path).map_err(|e| {
        tracing::debug!(path = %path.display(), "cannot read module file: {e}");
        FILE_NOT_FOUND
    })?;
    match tf_image::measure(&b) {
        Ok(tf_image::Found::Image { kind, len }) => {
            b.truncate(len);
            Ok((kind, b))
        }
        Err(tf_image::ImageError::Unterminated) => {
            b.push(0);
            Ok((Kind::Ptx, b))
        }
        Ok(tf_image::Found::Wrapper(_)) => Err(INVALID_IMAGE),
        Err(e) => Err(refuse(e)),
    }
}

/// `CUDA_ERROR_FILE_NOT_FOUND`.
pub(crate) const FILE_NOT_FOUND: u32 = 301;

#[cfg(test)]
mod tests {
    use super::*;
    use tf_image::{elf, fatbin};

    #[test]
    fn reads_each_kind_from_memory() {
        let ptx = b".version 8.0\n.target sm_90\n\0tail".to_vec();
        let r = read(ptx.as_ptr().cast()).unwrap();
        assert_eq!((r.kind, r.total()), (Kind::Ptx, ptx.len() - 4));
        let cubin = elf::build(&[(1, &[3u8; 100])], &[]);
        let r = read(cubin.as_ptr().cast()).unwrap();
        assert_eq!((r.kind, r.parts[0].len()), (Kind::Elf, cubin.len()));
        let fb = fatbin::build(&[(2, 90, fatbin::FLAG_ZSTD, &[1u8; 77], 500)]);
        let r = read(fb.as_ptr().cast()).unwrap();
        assert_eq!((r.kind, r.parts[0]), (Kind::Fatbin, &fb[..]));
    }

    #[test]
    fn follows_wrappers_and_their_prelinked_fatbins() {
        let main = fatbin::build(&[(1, 90, 0, b"main\0", 0)]);
        let pre1 = fatbin::build(&[(2, 90, 0, &[9u8; 40], 0)]);
        let pre2 = fatbin::build(&[(2, 80, fatbin::FLAG_LZ4, &[8u8; 13], 64)]);
        let list: [u64; 3] = [pre1.as_ptr() as u64, pre2.as_ptr() as u64, 0];
        let mut w = Vec::new();
        w.extend_from_slice(&tf_image::WRAPPER_MAGIC.to_le_bytes());
        w.extend_from_slice(&2u32.to_le_bytes());
        w.extend_from_slice(&(main.as_ptr() as u64).to_le_bytes());
        w.extend_from_slice(&(list.as_ptr() as u64).to_le_bytes());
        let r = read(w.as_ptr().cast()).unwrap();
        assert_eq!(r.wrapper, 2);
        assert_eq!(r.parts, vec![&main[..], &pre1[..], &pre2[..]]);
        // Version 1: the second pointer is a file name, not a list.
        w[4] = 1;
        let r = read(w.as_ptr().cast()).unwrap();
        assert_eq!((r.wrapper, r.parts.len()), (1, 1));
    }

    #[test]
    fn unmapped_or_bogus_memory_is_an_invalid_image() {
        assert_eq!(read(std::ptr::null()).unwrap_err(), cu::INVALID_VALUE);
        // A wrapper naming an unmapped address.
        let mut w = Vec::new();
        w.extend_from_slice(&tf_image::WRAPPER_MAGIC.to_le_bytes());
        w.extend_from_slice(&1u32.to_le_bytes());
        w.extend_from_slice(&0x10u64.to_le_bytes());
        w.extend_from_slice(&0u64.to_le_bytes());
        assert_eq!(read(w.as_ptr().cast()).unwrap_err(), INVALID_IMAGE);
        // A fatbin header claiming far more than is mapped.
        let mut fb = fatbin::build(&[]);
        fb[8..16].copy_from_slice(&(1u64 << 30).to_le_bytes());
        assert_eq!(read(fb.as_ptr().cast()).unwrap_err(), INVALID_IMAGE);
        assert!(!mapped(0x10, 8));
    }

    #[test]
    fn files_get_their_nul() {
        let dir = std::env::temp_dir().join(format!("tf-image-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k.ptx");
        std::fs::write(&p, ".version 8.0\n").unwrap();
        let (kind, b) = from_file(&p).unwrap();
        assert_eq!((kind, b.last()), (Kind::Ptx, Some(&0)));
        assert_eq!(from_file(&dir.join("missing")).unwrap_err(), FILE_NOT_FOUND);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
