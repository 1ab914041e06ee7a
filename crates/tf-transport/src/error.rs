//! The one error type of this crate.
//!
//! Every message is one line that says what happened and, where the user can
//! do something about it, what to do. [`TransportError::is_peer_gone`] tells
//! the caller whether the session is over (clean it up) as opposed to a
//! configuration or protocol problem (report it).

use std::io;
use std::path::PathBuf;

use tf_protocol::ProtocolError;

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The worker's host name did not resolve.
    #[error("cannot resolve tensor-fusion-worker host {host}: {source}; check the host in the connection info")]
    Resolve {
        host: String,
        #[source]
        source: io::Error,
    },

    /// Connection refused, unreachable host, or the connect timeout expired.
    #[error("cannot reach tensor-fusion-worker at {host}:{port}: {source}; is the worker running with -n native -p {port} and is the port reachable?")]
    Unreachable {
        host: String,
        port: u16,
        #[source]
        source: io::Error,
    },

    /// The worker could not listen.
    #[error("cannot listen on {addr}: {source}; is another worker already using this port?")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },

    /// An I/O error on an established connection.
    #[error("connection {peer}: {source}")]
    Io {
        peer: String,
        #[source]
        source: io::Error,
    },

    /// The peer went away: closed the connection, was killed, stopped its
    /// heartbeat or was restarted.
    #[error("connection {peer} lost: {why}")]
    PeerGone { peer: String, why: String },

    /// The peer sent bytes that are not a valid frame. The connection cannot
    /// be resynchronised and must be dropped.
    #[error("corrupt frame on {peer}: {source}")]
    Protocol {
        peer: String,
        #[source]
        source: ProtocolError,
    },

    /// The shared-memory ring holds something no well-behaved peer writes.
    #[error("corrupt shared memory ring on {peer}: {why}")]
    CorruptRing { peer: String, why: String },

    /// A frame larger than this connection can ever carry.
    #[error("frame payload of {len} bytes exceeds this connection's limit of {max}; split it into chunks of at most Connection::max_payload() bytes (SHMEM: or give the worker a larger -M)")]
    TooLarge { len: usize, max: usize },

    /// The shared-memory file could not be opened (client) or created (worker).
    #[error("cannot {action} shared memory region {}: {source}; {hint}", path.display())]
    ShmOpen {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
        hint: &'static str,
    },

    /// The file's size differs from the connection info's SIZE_MB.
    #[error("shared memory size mismatch: {} is {actual_mib} MiB but the connection info says {expected_mib} MiB; use the worker's -M value", path.display())]
    ShmSizeMismatch {
        path: PathBuf,
        actual_mib: String,
        expected_mib: u64,
    },

    /// The region was initialised for another size than the file now has.
    #[error("shared memory size mismatch: {} is {actual_mib} MiB but its worker initialised it for {recorded_mib} MiB; restart the worker", path.display())]
    ShmResized {
        path: PathBuf,
        actual_mib: String,
        recorded_mib: String,
    },

    /// The file does not start with this crate's magic.
    #[error("{} is not a tensor-fusion shared memory region (no worker started with -n shmem -m ... ?)", path.display())]
    ShmNotARegion { path: PathBuf },

    /// The region was laid out by another release.
    #[error("{} uses shared memory layout version {theirs}, this side speaks {ours}; use client and worker of the same release", path.display())]
    ShmLayout {
        path: PathBuf,
        ours: u64,
        theirs: u64,
    },

    /// Region below the minimum size.
    #[error("shared memory region {} of {mib} MiB is too small: at least {min_mib} MiB is needed; give the worker a larger -M", path.display())]
    ShmTooSmall {
        path: PathBuf,
        mib: u64,
        min_mib: u64,
    },

    /// The worker that initialised the region has exited.
    #[error("no tensor-fusion-worker is serving {} (the worker that created it has exited); start the worker with -n shmem -m ...", path.display())]
    ShmNoWorker { path: PathBuf },

    /// A live worker already serves the region.
    #[error("another tensor-fusion-worker is serving {} (its heartbeat is advancing); stop it first, or give this worker another -m", path.display())]
    ShmBusy { path: PathBuf },

    /// Every client slot is taken.
    #[error("all {slots} client slots in {} are in use; start another worker or stop a client", path.display())]
    ShmSlotsFull { path: PathBuf, slots: u64 },
}

impl TransportError {
    /// True when the session is over because the other side went away
    /// (closed, crashed, stopped heart-beating, restarted). The caller should
    /// release the session's resources; reconnecting may succeed.
    pub fn is_peer_gone(&self) -> bool {
        match self {
            Self::PeerGone { .. } => true,
            Self::Io { source, .. } => is_disconnect(source),
            _ => false,
        }
    }
}

/// I/O error kinds that mean the TCP peer is gone rather than misbehaving.
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::NotConnected
    )
}

/// Formats a byte count as MiB for the size messages, exact when it is a
/// whole number of MiB (it always is for regions this crate creates).
pub(crate) fn mib_string(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes.is_multiple_of(MIB) {
        (bytes / MIB).to_string()
    } else {
        format!("{:.2}", bytes as f64 / MIB as f64)
    }
}
