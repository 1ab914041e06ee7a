//! Process-per-session plumbing for the worker.
//!
//! Why processes: a kernel fault (illegal address and the like) is sticky
//! for every CUDA context of the process it happens in, not only for the
//! faulting one (measured on an H200 with driver 580: a second context
//! created with `cuCtxCreate`, the primary context and even a context
//! created after destroying the faulted one all answer 700 from then on;
//! `scripts/gpu/15-isolation.sh`). So tenants of one worker are kept apart
//! only by giving each session its own process.
//!
//! This crate holds the unsafe parts of that: a [`SharedCounter`] in a
//! memory file that the worker and its session processes map (the memory
//! limit is the worker's, shared by all its clients), starting a session
//! process that inherits chosen descriptors and dies with its parent
//! ([`spawn_keeping`]), and taking over an inherited socket
//! ([`inherited_tcp_stream`]), and capturing the session process's standard
//! output for its client ([`StdoutCapture`]: device `printf`).
#![deny(unsafe_op_in_unsafe_fn)]

mod output;
pub use output::{Captured, StdoutCapture};

use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

/// Size of the shared page.
const PAGE: usize = 4096;

/// Counters in one shared page.
pub const COUNTERS: usize = PAGE / 8;

/// [`COUNTERS`] `u64` counters in shared memory, valid in every process that
/// maps the same memory file: the creator ([`SharedCounter::create`]) and
/// the session processes it hands the descriptor to
/// ([`SharedCounter::from_fd`]). The worker uses counter 0 for the bytes
/// charged by all sessions and one more per session process, so that what a
/// crashed session process never returned can be returned by its parent.
pub struct SharedCounter {
    ptr: NonNull<AtomicU64>,
    fd: OwnedFd,
}

// SAFETY: the mapping is shared memory accessed only through the atomic;
// it stays mapped until the counter is dropped.
unsafe impl Send for SharedCounter {}
// SAFETY: as above; `&AtomicU64` is Sync.
unsafe impl Sync for SharedCounter {}

impl SharedCounter {
    /// A new counter (0) in an anonymous memory file. Its descriptor is
    /// close-on-exec: pass it to [`spawn_keeping`] for a child to map.
    pub fn create(name: &str) -> io::Result<Self> {
        let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: a NUL-terminated name; the result is checked.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor memfd_create just returned, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: our descriptor; a size in range.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Self::map(fd)
    }

    /// Maps the counter whose descriptor `fd` this process inherited (the
    /// number comes from the parent's command line). Checks that it is a
    /// memory file of the right size before mapping it.
    pub fn from_fd(fd: RawFd) -> io::Result<Self> {
        // SAFETY: a plain struct for fstat to fill.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat only reads the descriptor number; a bad one fails.
        if unsafe { libc::fstat(fd, &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_size != PAGE as libc::off_t {
            return Err(io::Error::other(format!(
                "descriptor {fd} is not the worker's memory ledger"
            )));
        }
        // SAFETY: the descriptor was inherited for this purpose and is
        // owned by nobody else in this process.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        set_cloexec(fd.as_raw_fd(), true)?;
        Self::map(fd)
    }

    fn map(fd: OwnedFd) -> io::Result<Self> {
        // SAFETY: a shared read-write mapping of one page of a file of
        // exactly that size; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<AtomicU64>()).ok_or_else(|| io::Error::other("mmap"))?;
        Ok(Self { ptr, fd })
    }

    /// Counter `i` (0 ≤ i < [`COUNTERS`]).
    pub fn get(&self, i: usize) -> &AtomicU64 {
        assert!(i < COUNTERS, "counter {i} outside the shared page");
        // SAFETY: in bounds (checked), 8-byte aligned in a page-aligned
        // mapping that lives as long as `self`, and only ever accessed
        // atomically (by every process that maps it).
        unsafe { &*self.ptr.as_ptr().add(i) }
    }

    /// The descriptor to hand to a session process.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `map`; no reference into it
        // outlives `self` (`get` borrows `self`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), PAGE) };
    }
}

fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: fcntl on a descriptor number; a bad one fails.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Starts `cmd` with the descriptors `keep` inherited (everything else this
/// process has open stays close-on-exec, as Rust opens it), and makes the
/// child die with this process: a session process must never outlive the
/// worker that accounts for it (its shared-memory clients would otherwise
/// see a worker whose heartbeat stopped while a session still runs).
pub fn spawn_keeping(cmd: &mut Command, keep: &[RawFd]) -> io::Result<Child> {
    let keep = keep.to_vec();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (fcntl, prctl, getppid, _exit); it
    // allocates nothing (`keep` was allocated before the fork).
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        })
    };
    cmd.spawn()
}

/// Takes over the connected TCP socket `fd` this process inherited (the
/// number comes from the parent's command line), after checking it is one.
pub fn inherited_tcp_stream(fd: RawFd) -> io::Result<TcpStream> {
    // SAFETY: a plain struct for fstat to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only reads the descriptor number; a bad one fails.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(io::Error::other(format!("descriptor {fd} is not a socket")));
    }
    set_cloexec(fd, true)?;
    // SAFETY: an inherited socket that nothing else in this process owns.
    Ok(unsafe { TcpStream::from_raw_fd(fd) })
}

/// Anonymous memory at an exact address of this process, which must be
/// free: a session process mirrors its client's pinned host memory at the
/// client's own addresses (mapped host memory, so a kernel given a client's
/// host pointer reaches the mirror). Unmapped when dropped.
#[derive(Debug)]
pub struct FixedMapping {
    addr: usize,
    len: usize,
}

impl FixedMapping {
    /// Maps `len` bytes (rounded up to pages) at `addr` (page-aligned).
    /// Fails, touching nothing, if any of that range is in use.
    pub fn new(addr: u64, len: usize) -> io::Result<Self> {
        let addr = usize::try_from(addr).map_err(io::Error::other)?;
        let len = len
            .checked_add(PAGE - 1)
            .map(|l| l & !(PAGE - 1))
            .filter(|l| *l > 0)
            .ok_or_else(|| io::Error::other("bad length"))?;
        if !addr.is_multiple_of(PAGE) || addr.checked_add(len).is_none() {
            return Err(io::Error::other("address not page-aligned"));
        }
        // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping
        // (it fails with EEXIST instead); the result is checked.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        if p as usize != addr {
            // A kernel without MAP_FIXED_NOREPLACE treats it as a hint.
            // SAFETY: exactly the mapping just made.
            unsafe { libc::munmap(p, len) };
            return Err(io::Error::other("the address is in use"));
        }
        Ok(Self { addr, len })
    }

    pub fn addr(&self) -> u64 {
        self.addr as u64
    }

    /// Bytes mapped (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn span(&self, offset: usize, n: usize) -> io::Result<*mut u8> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok((self.addr + offset) as *mut u8),
            _ => Err(io::Error::other("outside the mapping")),
        }
    }

    /// Copies `data` in at `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> io::Result<()> {
        let p = self.span(offset, data.len())?;
        // SAFETY: inside the mapping (checked), which lives as long as self;
        // the source is a distinct Rust slice.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// Copies `out.len()` bytes out from `offset`.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> io::Result<()> {
        let p = self.span(offset, out.len())?;
        // SAFETY: as in `write`, in the other direction.
        unsafe { std::ptr::copy_nonoverlapping(p, out.as_mut_ptr(), out.len()) };
        Ok(())
    }
}

impl Drop for FixedMapping {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_counter_is_shared_through_its_descriptor() {
        let a = SharedCounter::create("tf-test-ledger").unwrap();
        a.get(0).fetch_add(5, Ordering::Relaxed);
        a.get(COUNTERS - 1).fetch_add(1, Ordering::Relaxed);
        // What a session process does with the inherited number (here a
        // duplicate, so both ends own a descriptor).
        // SAFETY: dup of our own open descriptor.
        let dup = unsafe { libc::dup(a.fd()) };
        assert!(dup >= 0);
        let b = SharedCounter::from_fd(dup).unwrap();
        assert_eq!(b.get(0).load(Ordering::Relaxed), 5);
        assert_eq!(b.get(COUNTERS - 1).load(Ordering::Relaxed), 1);
        b.get(0).fetch_add(2, Ordering::Relaxed);
        assert_eq!(a.get(0).load(Ordering::Relaxed), 7);
    }

    #[test]
    fn descriptors_of_the_wrong_kind_are_refused() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        // SAFETY: dup of an open descriptor, handed to the function under test.
        let dup = unsafe { libc::dup(f.as_raw_fd()) };
        let e = SharedCounter::from_fd(dup).err().unwrap();
        assert!(
            e.to_string().contains("not the worker's memory ledger"),
            "{e}"
        );
        // SAFETY: closing the duplicate the failed call did not take.
        unsafe { libc::close(dup) };
        let e = inherited_tcp_stream(f.as_raw_fd()).unwrap_err();
        assert!(e.to_string().contains("not a socket"), "{e}");
        assert!(inherited_tcp_stream(-1).is_err());
    }

    #[test]
    fn a_fixed_mapping_lands_where_asked_and_never_replaces() {
        // Find a free page-aligned address by mapping and unmapping.
        let probe = FixedMapping::new(0x6f00_0000_0000, 8192).unwrap();
        assert_eq!(probe.addr(), 0x6f00_0000_0000);
        assert_eq!(probe.len(), 8192);
        probe.write(4090, b"abcdef").unwrap();
        let mut back = [0u8; 6];
        probe.read(4090, &mut back).unwrap();
        assert_eq!(&back, b"abcdef");
        assert!(probe.write(8190, b"xyz").is_err(), "outside");
        // The range is in use now: refused, and the first mapping intact.
        assert!(FixedMapping::new(0x6f00_0000_1000, 4096).is_err());
        probe.read(4090, &mut back).unwrap();
        assert_eq!(&back, b"abcdef");
        assert!(
            FixedMapping::new(0x6f00_0000_0001, 10).is_err(),
            "unaligned"
        );
        drop(probe);
        assert!(
            FixedMapping::new(0x6f00_0000_0000, 100).is_ok(),
            "freed on drop"
        );
    }

    #[test]
    fn a_child_inherits_only_the_kept_descriptors() {
        let kept = SharedCounter::create("kept").unwrap();
        let other = SharedCounter::create("other").unwrap();
        let script = format!(
            "test -e /proc/self/fd/{} && ! test -e /proc/self/fd/{}",
            kept.fd(),
            other.fd()
        );
        let st = spawn_keeping(Command::new("sh").args(["-c", &script]), &[kept.fd()])
            .unwrap()
            .wait()
            .unwrap();
        assert!(st.success(), "the child saw the wrong descriptors");
        // The parent's descriptor is still close-on-exec for later children.
        let st = Command::new("sh")
            .args(["-c", &format!("! test -e /proc/self/fd/{}", kept.fd())])
            .status()
            .unwrap();
        assert!(st.success());
    }
}
