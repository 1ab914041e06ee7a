//! The driver's compilation cache, private table `da9151d3`, which NVRTC
//! consults when it compiles at run time (cuDNN's runtime-compiled engines
//! do, for every new attention shape PyTorch meets).
//!
//! Measured natively (`scripts/gpu/26-slot-spy.sh`, driver 580, a Qwen3
//! decode): NVRTC describes each compilation step — its input (LLVM bitcode),
//! a kind (1 or 2) and its options (`-arch=compute_90a -ftz=1 …`) — to slot 1,
//! which returns a handle; slot 3 looks the handle up and either answers
//! `CUDA_ERROR_NOT_FOUND` (500), after which NVRTC compiles and stores the
//! result with slot 4, or hands out a buffer with the cached result (PTX or
//! an ELF), which NVRTC gives back to slot 6 once it has copied it; slot 2
//! destroys the handle. Slot 5 was never called.
//!
//! Without the table (the slots answering `CUDA_ERROR_NOT_SUPPORTED`) NVRTC
//! compiles everything every time: through the client a Qwen3 decode spent
//! 84 % of its CPU in libnvrtc and ran 4–5× slower than natively. This
//! module keeps the cache in the client process (the results are host
//! code; nothing needs the GPU): entries are keyed by kind, options and the
//! whole input (compared in full, so no hash collision can return another
//! program's code), bounded to [`BUDGET`] bytes, oldest dropped first.
//!
//! Like the driver's own cache (`~/.nv/ComputeCache`), entries also persist
//! on disk, so a new process does not compile again what an earlier one
//! did: `TF_COMPILE_CACHE_PATH` (default `$XDG_CACHE_HOME/tensor-fusion/compile`
//! or `~/.cache/tensor-fusion/compile`; empty or `0` turns it off, and so does
//! the driver's `CUDA_CACHE_DISABLE=1`). One file per entry, named by a hash
//! of the key and holding the whole key, so a read is verified in full;
//! written to a temporary name and renamed, so readers never see half a
//! file; the folder is private to the user (0700) and no longer written to
//! past [`DISK_BUDGET`] bytes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::{c_char, c_void, CStr};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tf_protocol::status::cu;

/// Most bytes of cached results (inputs counted too) kept per process.
const BUDGET: usize = 256 << 20;
/// Largest input or result accepted (anything larger is not cached).
const MAX_ITEM: usize = 64 << 20;
/// Most bytes the on-disk cache grows to (the driver's default is 256 MiB).
const DISK_BUDGET: u64 = 256 << 20;

#[derive(Default)]
struct Cache {
    entries: HashMap<Arc<[u8]>, Arc<[u8]>>,
    /// Insertion order, for eviction.
    order: VecDeque<Arc<[u8]>>,
    bytes: usize,
    /// Handles handed out by slot 1 and not yet destroyed.
    handles: HashSet<usize>,
    /// Result buffers handed out by slot 3 and not yet given back.
    buffers: HashSet<usize>,
    hits: u64,
    misses: u64,
}

fn cache() -> MutexGuard<'static, Cache> {
    static C: OnceLock<Mutex<Cache>> = OnceLock::new();
    // A poisoned lock only means a panic elsewhere while it was held; the
    // maps stay consistent (every update is a single insert or remove).
    C.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// What slot 1 describes: the key of one compilation step.
struct Handle {
    key: Arc<[u8]>,
}

fn key(kind: u64, options: &[u8], input: &[u8]) -> Arc<[u8]> {
    let mut k = Vec::with_capacity(16 + options.len() + input.len());
    k.extend_from_slice(&kind.to_le_bytes());
    k.extend_from_slice(&(options.len() as u64).to_le_bytes());
    k.extend_from_slice(options);
    k.extend_from_slice(input);
    k.into()
}

impl Cache {
    fn insert(&mut self, key: Arc<[u8]>, value: &[u8]) {
        if self.entries.contains_key(&key) {
            return;
        }
        let size = key.len() + value.len();
        while self.bytes + size > BUDGET {
            let Some(old) = self.order.pop_front() else {
                return;
            };
            if let Some(v) = self.entries.remove(&old) {
                self.bytes -= old.len() + v.len();
            }
        }
        self.bytes += size;
        self.order.push_back(Arc::clone(&key));
        self.entries.insert(key, value.into());
    }
}

/// Slot 1: describe a compilation step; `*out` gets a handle.
/// `(out, kind, input, input_len, options, host, build, sm)`: the last three
/// (host and build strings of the compiler, the SM version) are implied by
/// the options for our purpose and not read.
pub(crate) unsafe extern "C" fn create(
    out: *mut *mut c_void,
    kind: u64,
    input: *const u8,
    len: u64,
    options: *const c_char,
) -> u32 {
    let Ok(len) = usize::try_from(len) else {
        return cu::INVALID_VALUE;
    };
    if out.is_null() || (input.is_null() && len > 0) || len > MAX_ITEM {
        return cu::INVALID_VALUE;
    }
    let input = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller's input buffer of `len` bytes (checked non-null).
        unsafe { std::slice::from_raw_parts(input, len) }
    };
    let options = if options.is_null() {
        &[][..]
    } else {
        // SAFETY: a NUL-terminated option string from the caller.
        unsafe { CStr::from_ptr(options) }.to_bytes()
    };
    let h = Box::into_raw(Box::new(Handle {
        key: key(kind, options, input),
    }));
    cache().handles.insert(h as usize);
    // SAFETY: `out` is the caller's non-null out-pointer.
    unsafe { out.write(h.cast()) };
    0
}

/// The handle's key, if `h` is a live handle of ours.
fn handle_key(c: &Cache, h: *mut c_void) -> Option<Arc<[u8]>> {
    if !c.handles.contains(&(h as usize)) {
        return None;
    }
    // SAFETY: a live handle made by `create` (checked in the set).
    Some(Arc::clone(&unsafe { &*h.cast::<Handle>() }.key))
}

/// Slot 2: destroy a handle.
pub(crate) unsafe extern "C" fn destroy(h: *mut c_void) -> u32 {
    if cache().handles.remove(&(h as usize)) {
        // SAFETY: made by `Box::into_raw` in `create`, removed from the
        // live set just now, so dropped exactly once.
        drop(unsafe { Box::from_raw(h.cast::<Handle>()) });
        0
    } else {
        cu::INVALID_HANDLE
    }
}

/// Slot 3: look a handle up. A hit writes a buffer the caller gives back
/// through slot 6 and its length; a miss answers `CUDA_ERROR_NOT_FOUND`.
pub(crate) unsafe extern "C" fn lookup(
    h: *mut c_void,
    _flags: u64,
    out: *mut *mut u8,
    out_len: *mut u32,
) -> u32 {
    if out.is_null() || out_len.is_null() {
        return cu::INVALID_VALUE;
    }
    let mut c = cache();
    let Some(k) = handle_key(&c, h) else {
        return cu::INVALID_HANDLE;
    };
    let v = match c.entries.get(&k).cloned() {
        Some(v) => v,
        None => {
            let from_disk = disk().as_ref().and_then(|d| disk_read(&d.dir, &k));
            let Some(v) = from_disk else {
                c.misses += 1;
                return cu::NOT_FOUND;
            };
            c.insert(Arc::clone(&k), &v);
            v.into()
        }
    };
    let Ok(n) = u32::try_from(v.len()) else {
        return cu::NOT_FOUND;
    };
    // SAFETY: malloc of a nonzero size (an empty result gets one byte);
    // the result is checked before use.
    let p = unsafe { libc::malloc(v.len().max(1)) }.cast::<u8>();
    if p.is_null() {
        return cu::OUT_OF_MEMORY;
    }
    // SAFETY: `p` holds at least `v.len()` bytes; the regions are distinct.
    unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), p, v.len()) };
    c.buffers.insert(p as usize);
    c.hits += 1;
    // SAFETY: the caller's non-null out-pointers. The length is 32 bits:
    // natively it sits 4 bytes below the pointer, so a wider write would
    // clobber it.
    unsafe {
        out.write(p);
        out_len.write(n);
    }
    0
}

/// Slot 4: store the result of a compilation step that missed.
pub(crate) unsafe extern "C" fn store(
    h: *mut c_void,
    _flags: u64,
    data: *const u8,
    len: u64,
) -> u32 {
    let Ok(len) = usize::try_from(len) else {
        return cu::INVALID_VALUE;
    };
    if (data.is_null() && len > 0) || len > MAX_ITEM {
        return cu::INVALID_VALUE;
    }
    let mut c = cache();
    let Some(k) = handle_key(&c, h) else {
        return cu::INVALID_HANDLE;
    };
    let value = if len == 0 {
        &[][..]
    } else {
        // SAFETY: the caller's result buffer of `len` bytes (checked non-null).
        unsafe { std::slice::from_raw_parts(data, len) }
    };
    c.insert(Arc::clone(&k), value);
    drop(c);
    if let Some(d) = disk().as_mut() {
        disk_write(d, &k, value);
    }
    0
}

/// Slot 6: give back a buffer slot 3 handed out.
pub(crate) unsafe extern "C" fn release(p: *mut u8) -> u32 {
    if cache().buffers.remove(&(p as usize)) {
        // SAFETY: allocated with malloc by `lookup` and removed from the
        // set just now, so freed exactly once.
        unsafe { libc::free(p.cast()) };
        0
    } else {
        cu::INVALID_VALUE
    }
}

/// The on-disk cache: where it is, and the bytes it holds (measured once
/// per process, then counted up as this process writes).
struct Disk {
    dir: std::path::PathBuf,
    bytes: u64,
}

fn disk_dir(get: &dyn Fn(&str) -> Option<String>) -> Option<std::path::PathBuf> {
    if get("CUDA_CACHE_DISABLE").is_some_and(|v| v.trim() == "1") {
        return None;
    }
    match get("TF_COMPILE_CACHE_PATH") {
        Some(v) if v.is_empty() || v == "0" => None,
        Some(v) => Some(v.into()),
        None => get("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| get("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
            .map(|d| d.join("tensor-fusion").join("compile")),
    }
}

fn disk() -> MutexGuard<'static, Option<Disk>> {
    static D: OnceLock<Mutex<Option<Disk>>> = OnceLock::new();
    D.get_or_init(|| {
        // Unit tests use the in-memory cache only: a disk entry left by an
        // earlier run would turn their expected misses into hits.
        let configured = if cfg!(test) {
            None
        } else {
            disk_dir(&|k| std::env::var(k).ok())
        };
        let dir = configured.and_then(|dir| {
            use std::os::unix::fs::DirBuilderExt;
            match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir) {
                Ok(()) => Some(dir),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "compilation cache on disk unavailable ({e}); compiling in memory only");
                    None
                }
            }
        });
        Mutex::new(dir.map(|dir| {
            let bytes = std::fs::read_dir(&dir)
                .map(|r| r.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
                .unwrap_or(0);
            Disk { dir, bytes }
        }))
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

/// File name of an entry: two independent 64-bit hashes of the key.
fn file_name(key: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let h = |salt: u64| {
        let mut s = std::collections::hash_map::DefaultHasher::new();
        salt.hash(&mut s);
        key.hash(&mut s);
        s.finish()
    };
    format!("{:016x}{:016x}.tfc", h(0x7466_6363), h(0x6b65_7973))
}

const FILE_MAGIC: &[u8; 8] = b"TFCC\x01\0\0\0";

fn disk_read(dir: &std::path::Path, key: &[u8]) -> Option<Vec<u8>> {
    let data = std::fs::read(dir.join(file_name(key))).ok()?;
    let rest = data.strip_prefix(FILE_MAGIC)?;
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let klen = usize::try_from(u64::from_le_bytes(*len)).ok()?;
    let (k, value) = (rest.get(..klen)?, rest.get(klen..)?);
    (k == key).then(|| value.to_vec())
}

fn disk_write(d: &mut Disk, key: &[u8], value: &[u8]) {
    let size = (FILE_MAGIC.len() + 8 + key.len() + value.len()) as u64;
    if d.bytes + size > DISK_BUDGET {
        return;
    }
    let name = file_name(key);
    let tmp = d.dir.join(format!("{name}.{}.tmp", std::process::id()));
    let mut buf = Vec::with_capacity(size as usize);
    buf.extend_from_slice(FILE_MAGIC);
    buf.extend_from_slice(&(key.len() as u64).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    if std::fs::write(&tmp, &buf)
        .and_then(|()| std::fs::rename(&tmp, d.dir.join(name)))
        .is_ok()
    {
        d.bytes += size;
    } else {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// `(hits, misses, entries, bytes)`, for logs and tests.
pub(crate) fn stats() -> (u64, u64, usize, usize) {
    let c = cache();
    (c.hits, c.misses, c.entries.len(), c.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_result_is_found_by_an_equal_step_only() {
        let opts = c"-arch=compute_90a -ftz=1";
        let input = b"BC\xc0\xde some bitcode";
        let mut h: *mut c_void = std::ptr::null_mut();
        // SAFETY: valid out-pointer, input and option string.
        unsafe {
            assert_eq!(
                create(&mut h, 1, input.as_ptr(), input.len() as u64, opts.as_ptr()),
                0
            );
            let (mut p, mut n) = (std::ptr::null_mut(), 0u32);
            assert_eq!(lookup(h, 0, &mut p, &mut n), cu::NOT_FOUND);
            let result = b"// Generated PTX";
            assert_eq!(store(h, 0, result.as_ptr(), result.len() as u64), 0);
            assert_eq!(destroy(h), 0);
            assert_eq!(destroy(h), cu::INVALID_HANDLE, "a handle dies once");

            // An equal step hits and gets its own copy.
            assert_eq!(
                create(&mut h, 1, input.as_ptr(), input.len() as u64, opts.as_ptr()),
                0
            );
            assert_eq!(lookup(h, 0, &mut p, &mut n), 0);
            assert_eq!(std::slice::from_raw_parts(p, n as usize), result);
            assert_eq!(release(p), 0);
            assert_eq!(release(p), cu::INVALID_VALUE, "a buffer is given back once");
            assert_eq!(destroy(h), 0);

            // Another kind, other options or another input miss.
            for (kind, o, i) in [
                (2, opts, &input[..]),
                (1, c"-arch=compute_90a -ftz=0", &input[..]),
                (1, opts, &b"BC\xc0\xde other"[..]),
            ] {
                assert_eq!(
                    create(&mut h, kind, i.as_ptr(), i.len() as u64, o.as_ptr()),
                    0
                );
                assert_eq!(lookup(h, 0, &mut p, &mut n), cu::NOT_FOUND);
                assert_eq!(destroy(h), 0);
            }
        }
    }

    #[test]
    fn foreign_handles_and_bad_arguments_are_refused() {
        let mut x = 0u64;
        let bogus = (&mut x as *mut u64).cast::<c_void>();
        let (mut p, mut n) = (std::ptr::null_mut(), 0u32);
        // SAFETY: the functions check their arguments before using them.
        unsafe {
            assert_eq!(lookup(bogus, 0, &mut p, &mut n), cu::INVALID_HANDLE);
            assert_eq!(store(bogus, 0, b"x".as_ptr(), 1), cu::INVALID_HANDLE);
            assert_eq!(destroy(bogus), cu::INVALID_HANDLE);
            assert_eq!(release(bogus.cast()), cu::INVALID_VALUE);
            assert_eq!(
                create(std::ptr::null_mut(), 1, b"x".as_ptr(), 1, c"".as_ptr()),
                cu::INVALID_VALUE
            );
            let mut h = std::ptr::null_mut();
            assert_eq!(
                create(&mut h, 1, std::ptr::null(), 5, c"".as_ptr()),
                cu::INVALID_VALUE
            );
        }
        assert_eq!(x, 0, "nothing was written through a foreign handle");
    }

    #[test]
    fn entries_persist_on_disk_and_are_verified_in_full() {
        let dir = std::env::temp_dir().join(format!("tf-cc-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut d = Disk {
            dir: dir.clone(),
            bytes: 0,
        };
        let k = key(2, b"-arch=sm_90", b"BC\xc0\xde input");
        assert!(disk_read(&dir, &k).is_none());
        disk_write(&mut d, &k, b"ELF result");
        assert_eq!(disk_read(&dir, &k).as_deref(), Some(&b"ELF result"[..]));
        assert!(d.bytes > 0);
        // A file whose stored key differs (a hash collision, or tampering)
        // is not a hit.
        let other = key(2, b"-arch=sm_90", b"BC\xc0\xde other");
        std::fs::copy(dir.join(file_name(&k)), dir.join(file_name(&other))).unwrap();
        assert!(disk_read(&dir, &other).is_none());
        // Over budget: not written.
        d.bytes = DISK_BUDGET;
        let third = key(1, b"", b"x");
        disk_write(&mut d, &third, b"y");
        assert!(disk_read(&dir, &third).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_disk_cache_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            disk_dir(&env(&[("HOME", "/home/u")])),
            Some("/home/u/.cache/tensor-fusion/compile".into())
        );
        assert_eq!(
            disk_dir(&env(&[("HOME", "/home/u"), ("XDG_CACHE_HOME", "/c")])),
            Some("/c/tensor-fusion/compile".into())
        );
        assert_eq!(
            disk_dir(&env(&[("TF_COMPILE_CACHE_PATH", "/x"), ("HOME", "/h")])),
            Some("/x".into())
        );
        assert_eq!(
            disk_dir(&env(&[("TF_COMPILE_CACHE_PATH", "0"), ("HOME", "/h")])),
            None
        );
        assert_eq!(
            disk_dir(&env(&[("CUDA_CACHE_DISABLE", "1"), ("HOME", "/h")])),
            None
        );
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let mut c = Cache::default();
        let big = vec![7u8; BUDGET / 3 - 64];
        for i in 0..5u64 {
            c.insert(key(9, b"o", &i.to_le_bytes()), &big);
        }
        assert!(c.bytes <= BUDGET);
        assert_eq!(c.entries.len(), 3, "the oldest entries were dropped");
        assert!(!c.entries.contains_key(&key(9, b"o", &0u64.to_le_bytes())));
        assert!(c.entries.contains_key(&key(9, b"o", &4u64.to_le_bytes())));
    }
}
