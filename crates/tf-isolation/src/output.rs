//! Capturing a session process's standard output, so that what the CUDA
//! driver prints there for the client (device `printf`, written at
//! synchronization) can be sent to the client instead.
//!
//! [`StdoutCapture::install`] keeps the original standard output on a new
//! descriptor (for the process's own log lines), and puts the write end of
//! a pipe on descriptor 1. A reader thread drains the pipe continuously
//! into a bounded buffer, so the driver's writes never block on a full pipe
//! (which would stall a synchronizing call for good); what exceeds the
//! buffer is dropped and counted. [`StdoutCapture::take`] flushes C stdio
//! and Rust's `stdout`, drains what is still in the pipe and returns
//! everything printed so far, in order.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

/// What was printed since the last [`StdoutCapture::take`].
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Captured {
    pub bytes: Vec<u8>,
    /// Bytes dropped because the buffer was full.
    pub dropped: u64,
}

impl Captured {
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty() && self.dropped == 0
    }
}

struct Inner {
    /// The pipe's read end (non-blocking).
    read: OwnedFd,
    /// Every read of the pipe happens under this lock, so bytes are appended
    /// in the order they were written, whichever thread reads them.
    state: Mutex<Captured>,
    limit: usize,
}

/// Descriptor 1 of this process redirected into a pipe (see the module).
pub struct StdoutCapture {
    inner: Arc<Inner>,
}

/// Pipe capacity asked for (best effort; the default is 64 KiB): the reader
/// thread then has more time before a writer could wait.
const PIPE_SIZE: libc::c_int = 1 << 20;

impl StdoutCapture {
    /// Redirects descriptor 1 into a pipe drained into a buffer of at most
    /// `limit` bytes. Returns the capture and the original standard output
    /// (close-on-exec), for the process's own lines. Call it early, before
    /// other threads write to standard output.
    pub fn install(limit: usize) -> io::Result<(StdoutCapture, File)> {
        // What is buffered now belongs to the original standard output.
        let _ = io::stdout().flush();
        // SAFETY: fflush(NULL) flushes every open C stdio output stream; no
        // pointer is passed.
        unsafe { libc::fflush(std::ptr::null_mut()) };
        // SAFETY: duplicates descriptor 1 onto a new descriptor ≥ 3; the
        // result is checked.
        let orig = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
        if orig < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor fcntl just returned, owned by nobody else.
        let orig = unsafe { File::from_raw_fd(orig) };
        let mut fds = [-1 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array; checked.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: descriptors pipe2 just returned, owned by nobody else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on our own descriptors; failures are harmless (a
        // smaller pipe) or checked (non-blocking reads are required).
        unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE);
            let fl = libc::fcntl(read.as_raw_fd(), libc::F_GETFL);
            if fl < 0 || libc::fcntl(read.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        let inner = Arc::new(Inner {
            read,
            state: Mutex::new(Captured::default()),
            limit,
        });
        let reader = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("tf-stdout".into())
            .spawn(move || reader.run())?;
        // SAFETY: makes descriptor 1 a copy of the pipe's write end (dup2
        // replaces it atomically; it is not close-on-exec); checked. The
        // separate write end is closed when `write` drops.
        if unsafe { libc::dup2(write.as_raw_fd(), 1) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((StdoutCapture { inner }, orig))
    }

    /// Whether anything was printed to descriptor 1 that [`Self::take`]
    /// would return (C stdio and Rust's `stdout` flushed first).
    pub fn pending(&self) -> bool {
        let _ = io::stdout().flush();
        // SAFETY: as in `install`.
        unsafe { libc::fflush(std::ptr::null_mut()) };
        let mut st = self.inner.lock();
        self.inner.drain(&mut st);
        !st.is_empty()
    }

    /// Everything printed to descriptor 1 so far (C stdio and Rust's
    /// `stdout` flushed first), and how much was dropped; resets both.
    pub fn take(&self) -> Captured {
        let _ = io::stdout().flush();
        // SAFETY: as in `install`.
        unsafe { libc::fflush(std::ptr::null_mut()) };
        let mut st = self.inner.lock();
        self.inner.drain(&mut st);
        std::mem::take(&mut *st)
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Captured> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the pipe until it is empty (the caller holds the lock).
    fn drain(&self, st: &mut Captured) -> bool {
        // Uninitialised: this runs after every synchronizing request, and
        // zeroing 64 KiB each time cost more than the read itself.
        const LEN: usize = 64 << 10;
        let mut buf = std::mem::MaybeUninit::<[u8; LEN]>::uninit();
        let p = buf.as_mut_ptr().cast::<u8>();
        loop {
            // SAFETY: reads at most LEN bytes into our buffer from our
            // non-blocking descriptor.
            let n = unsafe { libc::read(self.read.as_raw_fd(), p.cast(), LEN) };
            match n {
                0 => return false,
                n if n > 0 => {
                    let n = n as usize;
                    // SAFETY: `read` initialised the first `n` bytes.
                    let got = unsafe { std::slice::from_raw_parts(p, n) };
                    let keep = n.min(self.limit.saturating_sub(st.bytes.len()));
                    st.bytes.extend_from_slice(&got[..keep]);
                    st.dropped += (n - keep) as u64;
                }
                _ => {
                    let e = io::Error::last_os_error();
                    return match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => true,
                        _ => false,
                    };
                }
            }
        }
    }

    /// The reader thread: waits for the pipe to be readable, drains it.
    fn run(&self) {
        loop {
            let mut p = libc::pollfd {
                fd: self.read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; waits without a timeout.
            let r = unsafe { libc::poll(&mut p, 1, -1) };
            if r < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return;
            }
            let mut st = self.lock();
            if !self.drain(&mut st) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Descriptor 1 of the whole test process is redirected: one test does
    // it all, in a child process so the test harness's output is untouched.
    #[test]
    fn output_is_captured_in_order_and_bounded() {
        if std::env::var_os("TF_CAPTURE_CHILD").is_none() {
            let exe = std::env::current_exe().unwrap();
            let out = std::process::Command::new(exe)
                .args([
                    "--exact",
                    "output::tests::output_is_captured_in_order_and_bounded",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("TF_CAPTURE_CHILD", "1")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("original stdout still works"), "{text}");
            assert!(!text.contains("captured line"), "{text}");
            return;
        }
        let (cap, mut orig) = StdoutCapture::install(1 << 20).unwrap();
        println!("captured line 1");
        // C stdio, buffered because descriptor 1 is a pipe now: `take`
        // flushes it, after the raw write below.
        let line = c"captured line 2\n";
        // SAFETY: a NUL-terminated format without conversions.
        unsafe { libc::printf(line.as_ptr()) };
        // SAFETY: a raw write of a static buffer to descriptor 1.
        unsafe { libc::write(1, b"captured line 3\n".as_ptr().cast(), 16) };
        let got = cap.take();
        assert_eq!(
            String::from_utf8_lossy(&got.bytes),
            "captured line 1\ncaptured line 3\ncaptured line 2\n"
        );
        assert_eq!(got.dropped, 0);
        assert!(!cap.pending() && cap.take().is_empty());
        print!("partial");
        assert!(cap.pending());
        assert_eq!(cap.take().bytes, b"partial");
        // Far more than the pipe holds: the reader thread keeps the writer
        // going; the excess over the limit is counted, never blocks.
        let big = vec![b'x'; 3 << 20];
        io::stdout().write_all(&big).unwrap();
        let got = cap.take();
        assert_eq!(got.bytes.len(), 1 << 20);
        assert_eq!(got.dropped, 2 << 20);
        writeln!(orig, "original stdout still works").unwrap();
    }
}
