//! TensorFusion transports: move whole frames (a 24-byte
//! [`FrameHeader`] plus its payload) between a client and a
//! tensor-fusion-worker. The transport never interprets opcodes.
//!
//! Two transports, one [`Connection`] type used by both sides:
//!
//! * **NATIVE** ([`connect_native`], [`NativeListener`]): blocking TCP with
//!   TCP_NODELAY, IPv4, IPv6 or host names.
//! * **SHMEM** ([`connect_shmem`], [`ShmServer`]): rings in a shared-memory
//!   region created by the worker under /dev/shm and mapped by clients on
//!   the same host, or inside a VM through QEMU's ivshmem BAR. Payloads are
//!   written straight into the ring and handed to the receiver in place, so
//!   a bulk copy is copied once on each side of the ring and nowhere else.
//!   Liveness crosses the boundary as heartbeat counters in the region; see
//!   the [`shm`] module.
//!
//! Both transports let a side send many frames before reading any answer
//! (pipelining), but not without bound: the answers queue up in kernel
//! buffers (NATIVE) or the response ring (SHMEM), and once those are full
//! the peer blocks sending answers and stops reading requests. A caller that
//! pipelines must read answers, from the same thread between sends or from
//! another thread, or bound the answers in flight below the buffering
//! (SHMEM: [`Connection::max_payload`] is half a ring).
#![deny(unsafe_op_in_unsafe_fn)]

mod backoff;
mod error;
pub mod shm;
mod tcp;

use std::path::Path;
use std::time::Duration;

pub use error::TransportError;
pub use shm::{ShmConnection, ShmHandoff, ShmServer};
pub use tcp::{NativeListener, TcpConnection};
pub use tf_protocol::{FrameHeader, HEADER_LEN, MAX_PAYLOAD};

/// One end of a session, client or worker side, over either transport.
///
/// Not shared between threads (`Send`, every operation takes `&mut self`):
/// run one thread per connection.
#[derive(Debug)]
pub enum Connection {
    Tcp(TcpConnection),
    Shm(ShmConnection),
}

impl Connection {
    /// Sends one frame: `header` with its length field set to the parts'
    /// total, then the parts, gathered without an intermediate copy where
    /// possible (SHMEM: written straight into the ring; TCP: one buffered
    /// write for small frames, `write_vectored` for large ones).
    ///
    /// Blocks while the peer's receive side is full. Fails with
    /// [`TransportError::TooLarge`] if the parts exceed
    /// [`Connection::max_payload`], and with a peer-gone error if the peer
    /// died meanwhile.
    pub fn send(&mut self, header: FrameHeader, parts: &[&[u8]]) -> Result<(), TransportError> {
        match self {
            Self::Tcp(c) => c.send(header, parts),
            Self::Shm(c) => c.send(header, parts),
        }
    }

    /// Sends one frame of `len` payload bytes that `fill` writes in place
    /// (SHMEM: straight into the ring; TCP: into a reused buffer). Same
    /// blocking and errors as [`Connection::send`].
    pub fn send_with(
        &mut self,
        header: FrameHeader,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), TransportError> {
        match self {
            Self::Tcp(c) => c.send_with(header, len, fill),
            Self::Shm(c) => c.send_with(header, len, fill),
        }
    }

    /// Waits for the next frame and hands its header and payload to `f`.
    ///
    /// The payload may point into shared memory and is valid only during
    /// `f`: copy what must outlive it (a 64 MiB device-to-host copy is then
    /// copied exactly once, from the ring into the user's buffer). Returns a
    /// peer-gone error ([`TransportError::is_peer_gone`]) instead of waiting
    /// forever for a peer that died.
    pub fn recv<R>(
        &mut self,
        f: impl FnOnce(FrameHeader, &[u8]) -> R,
    ) -> Result<R, TransportError> {
        match self {
            Self::Tcp(c) => c.recv(f),
            Self::Shm(c) => c.recv(f),
        }
    }

    /// Like [`Connection::recv`], but returns `Ok(None)` if no frame starts
    /// arriving within `timeout`.
    pub fn recv_timeout<R>(
        &mut self,
        timeout: Duration,
        f: impl FnOnce(FrameHeader, &[u8]) -> R,
    ) -> Result<Option<R>, TransportError> {
        match self {
            Self::Tcp(c) => c.recv_timeout(timeout, f),
            Self::Shm(c) => c.recv_timeout(timeout, f),
        }
    }

    /// Largest payload one frame may carry on this connection: 64 MiB over
    /// TCP; half a ring over SHMEM (e.g. 4 MiB in a 256 MiB region). Callers
    /// chunk bulk copies to this.
    pub fn max_payload(&self) -> usize {
        match self {
            Self::Tcp(c) => c.max_payload(),
            Self::Shm(c) => c.max_payload(),
        }
    }

    /// Human-readable peer, e.g. `native 127.0.0.1:12345` or
    /// `shmem /dev/shm/x slot 3`.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(c) => c.describe(),
            Self::Shm(c) => c.describe(),
        }
    }
}

/// Connects to a worker over TCP (NATIVE), with TCP_NODELAY. `host` may be
/// an IPv4 or IPv6 literal (with or without brackets) or a host name; every
/// address it resolves to is tried, all within `timeout`.
pub fn connect_native(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Connection, TransportError> {
    TcpConnection::connect(host, port, timeout).map(Connection::Tcp)
}

/// Connects to the worker serving the shared-memory region at `path`
/// (SHMEM): `/name` means `/dev/shm/name`; inside a VM, the ivshmem BAR file
/// such as `/sys/bus/pci/devices/0000:00:04.0/resource2`. `size_mb` is the
/// connection info's SIZE_MB (the worker's -M) and must equal the region's
/// size. Claims a client slot, released when the connection is dropped (or
/// by the worker within a second if this process dies).
pub fn connect_shmem(path: &Path, size_mb: u64) -> Result<Connection, TransportError> {
    ShmConnection::connect(path, size_mb).map(Connection::Shm)
}
