//! NATIVE transport: frames over a blocking TCP stream.
//!
//! A frame is the 24-byte header followed by exactly `length` payload bytes,
//! back to back; there is no other framing. Both directions are independent,
//! so a peer may send any number of frames before it reads an answer. The
//! only limit is the kernel's socket buffers: a caller that keeps sending
//! without ever reading answers eventually blocks in `send` once the peer
//! blocks sending those answers. Callers that pipeline must therefore read
//! answers (from the same thread between sends, or from another thread).

use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use tf_protocol::{FrameHeader, HEADER_LEN, MAX_PAYLOAD};

use crate::error::TransportError;

/// Frames up to this size (header included) are assembled into one buffer
/// and written with one `write`: one system call and, with TCP_NODELAY, one
/// segment. Larger ones are written with `write_vectored` straight from the
/// caller's slices instead of being copied.
const GATHER_LIMIT: usize = 64 << 10;

/// Read buffer: lets a burst of small pipelined frames be read with one
/// system call. Payloads larger than this bypass it.
const READ_BUFFER: usize = 64 << 10;

/// One TCP connection, client or worker side.
#[derive(Debug)]
pub struct TcpConnection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    peer: String,
    /// Reused for every payload: a stream of 64 MiB copies allocates once.
    payload: Vec<u8>,
    /// Reused to gather small frames.
    gather: Vec<u8>,
    /// Reused by `send_with`.
    fill_buf: Vec<u8>,
}

impl TcpConnection {
    /// Wraps a connected stream (sets TCP_NODELAY: request/response traffic
    /// of small frames must not wait for Nagle's algorithm).
    pub fn from_stream(stream: TcpStream) -> Result<Self, TransportError> {
        let peer = match stream.peer_addr() {
            Ok(a) => format!("native {a}"),
            Err(_) => "native (unknown peer)".to_owned(),
        };
        let io_err = |source| TransportError::Io {
            peer: peer.clone(),
            source,
        };
        stream.set_nodelay(true).map_err(io_err)?;
        let writer = stream.try_clone().map_err(io_err)?;
        Ok(Self {
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            writer,
            peer,
            payload: Vec::new(),
            gather: Vec::with_capacity(GATHER_LIMIT),
            fill_buf: Vec::new(),
        })
    }

    /// Gives up the socket, for a session process to serve it (the
    /// worker's process per session). Refused once bytes were read into this
    /// connection's buffer: they would be lost to the new owner.
    pub fn into_stream(self) -> Result<TcpStream, TransportError> {
        if !self.reader.buffer().is_empty() {
            return Err(TransportError::Io {
                peer: self.peer,
                source: std::io::Error::other("bytes already read cannot be handed over"),
            });
        }
        Ok(self.reader.into_inner())
    }

    /// See [`crate::Connection::send`].
    pub fn send(&mut self, mut header: FrameHeader, parts: &[&[u8]]) -> Result<(), TransportError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_payload() {
            return Err(TransportError::TooLarge {
                len,
                max: self.max_payload(),
            });
        }
        // Cannot truncate: len <= MAX_PAYLOAD, a u32.
        header.length = len as u32;
        let head = header.encode();
        let res = if HEADER_LEN + len <= GATHER_LIMIT {
            self.gather.clear();
            self.gather.extend_from_slice(&head);
            for p in parts {
                self.gather.extend_from_slice(p);
            }
            self.writer.write_all(&self.gather)
        } else {
            let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(parts.len() + 1);
            slices.push(IoSlice::new(&head));
            slices.extend(
                parts
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| IoSlice::new(p)),
            );
            write_all_vectored(&mut self.writer, &mut slices)
        };
        res.map_err(|source| self.io_error(source))
    }

    /// See [`crate::Connection::send_with`]: fills a reused buffer, then sends.
    pub fn send_with(
        &mut self,
        header: FrameHeader,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), TransportError> {
        let mut buf = std::mem::take(&mut self.fill_buf);
        buf.clear();
        buf.resize(len, 0);
        fill(&mut buf);
        let r = self.send(header, &[&buf]);
        self.fill_buf = buf;
        r
    }

    /// See [`crate::Connection::recv`].
    pub fn recv<R>(
        &mut self,
        f: impl FnOnce(FrameHeader, &[u8]) -> R,
    ) -> Result<R, TransportError> {
        let mut head = [0u8; HEADER_LEN];
        if self.reader.buffer().is_empty() {
            self.spin_until_readable();
        }
        // A clean close is only a clean close at a frame boundary.
        let first = loop {
            match self.reader.read(&mut head) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e)),
            }
        };
        if first == 0 {
            return Err(TransportError::PeerGone {
                peer: self.peer.clone(),
                why: "the peer closed the connection".to_owned(),
            });
        }
        self.reader
            .read_exact(&mut head[first..])
            .map_err(|e| self.io_error(e))?;
        let header = FrameHeader::decode(&head).map_err(|source| TransportError::Protocol {
            peer: self.peer.clone(),
            source,
        })?;
        // decode() has bounded the length by MAX_PAYLOAD, so this allocates
        // at most 64 MiB whatever the peer sent.
        let len = header.length as usize;
        if self.payload.len() < len {
            self.payload.resize(len, 0);
        }
        self.reader
            .read_exact(&mut self.payload[..len])
            .map_err(|e| self.io_error(e))?;
        Ok(f(header, &self.payload[..len]))
    }

    /// Polls the socket without blocking for a short while before the
    /// blocking read. A request/response round trip otherwise pays two
    /// sleeping-thread wake-ups, which cost ~50 µs each on an idle virtual
    /// CPU (measured on the 2-core build VM: 99–110 µs p50 idle, ~22 µs
    /// when the cores were busy); answers usually arrive within the spin.
    fn spin_until_readable(&self) {
        const SPIN: Duration = Duration::from_micros(60);
        let fd = self.reader.get_ref().as_raw_fd();
        let start = std::time::Instant::now();
        let mut byte = 0u8;
        loop {
            // SAFETY: `fd` is this connection's open socket; the 1-byte
            // buffer is valid; MSG_PEEK leaves the data in the socket.
            let r = unsafe {
                libc::recv(
                    fd,
                    (&mut byte as *mut u8).cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            // Data, a close (0) or an error other than "would block": let
            // the blocking read see it.
            if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                return;
            }
            if start.elapsed() >= SPIN {
                return;
            }
            std::hint::spin_loop();
        }
    }

    /// See [`crate::Connection::recv_timeout`].
    pub fn recv_timeout<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(FrameHeader, &[u8]) -> R,
    ) -> Result<Option<R>, TransportError> {
        // Only the wait for the first byte is bounded: once a frame has begun
        // the rest is read blocking, because giving up half-way through a
        // frame would lose the stream's framing.
        if self.reader.buffer().is_empty()
            && !wait_readable(self.reader.get_ref(), timeout).map_err(|e| self.io_error(e))?
        {
            return Ok(None);
        }
        self.recv(f).map(Some)
    }

    /// See [`crate::Connection::max_payload`].
    pub fn max_payload(&self) -> usize {
        MAX_PAYLOAD as usize
    }

    /// See [`crate::Connection::describe`].
    pub fn describe(&self) -> String {
        self.peer.clone()
    }

    fn io_error(&self, source: io::Error) -> TransportError {
        if crate::error::is_disconnect(&source) {
            TransportError::PeerGone {
                peer: self.peer.clone(),
                why: source.to_string(),
            }
        } else {
            TransportError::Io {
                peer: self.peer.clone(),
                source,
            }
        }
    }
}

/// `Write::write_all_vectored` is not stable yet.
fn write_all_vectored(w: &mut TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match w.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until `s` is readable (data, EOF or error) or `timeout` passes.
fn wait_readable(s: &TcpStream, timeout: Duration) -> io::Result<bool> {
    let deadline = crate::backoff::deadline_after(timeout);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // Round up so that a sub-millisecond timeout still waits.
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: s.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and
        // the count passed is 1; the fd is owned by `s`, which outlives it.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        match r {
            0 if left.is_zero() => return Ok(false),
            0 => {}
            r if r > 0 => return Ok(true),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

impl TcpConnection {
    /// See [`crate::connect_native`].
    pub fn connect(
        host: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<TcpConnection, TransportError> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let addrs: Vec<SocketAddr> = (bare, port)
            .to_socket_addrs()
            .map_err(|source| TransportError::Resolve {
                host: host.to_owned(),
                source,
            })?
            .collect();
        let deadline = crate::backoff::deadline_after(timeout);
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name has no address");
        for addr in addrs {
            // connect_timeout refuses a zero duration.
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            match TcpStream::connect_timeout(&addr, left) {
                Ok(s) => return TcpConnection::from_stream(s),
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        Err(TransportError::Unreachable {
            host: host.to_owned(),
            port,
            source: last,
        })
    }
}

/// Worker side of the NATIVE transport.
#[derive(Debug)]
pub struct NativeListener {
    listener: TcpListener,
}

impl NativeListener {
    /// Listens on `addr`, e.g. `"0.0.0.0:9997"`, `"[::]:9997"` or
    /// `"127.0.0.1:0"` (any free port; see [`NativeListener::local_addr`]).
    pub fn bind<A: ToSocketAddrs + std::fmt::Display>(addr: A) -> Result<Self, TransportError> {
        let listener = TcpListener::bind(&addr).map_err(|source| TransportError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        Ok(Self { listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.listener
            .local_addr()
            .map_err(|source| self.io_error(source))
    }

    /// Waits for the next client.
    pub fn accept(&self) -> Result<crate::Connection, TransportError> {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => return TcpConnection::from_stream(s).map(crate::Connection::Tcp),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(self.io_error(source)),
            }
        }
    }

    /// Like [`NativeListener::accept`], but returns `Ok(None)` if no client
    /// arrives within `timeout` (lets a worker loop check for shutdown).
    pub fn accept_timeout(
        &self,
        timeout: Duration,
    ) -> Result<Option<crate::Connection>, TransportError> {
        let mut pfd = libc::pollfd {
            fd: self.listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and
        // the count passed is 1; the fd is owned by the listener.
        let r = unsafe { libc::poll(&mut pfd, 1, ms) };
        match r {
            0 => Ok(None),
            r if r > 0 => self.accept().map(Some),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(None)
                } else {
                    Err(self.io_error(e))
                }
            }
        }
    }

    fn io_error(&self, source: io::Error) -> TransportError {
        let peer = match self.listener.local_addr() {
            Ok(a) => format!("native listener {a}"),
            Err(_) => "native listener".to_owned(),
        };
        TransportError::Io { peer, source }
    }
}
