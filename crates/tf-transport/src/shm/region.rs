//! The shared-memory region: layout, mapping, and typed views of its
//! control words.
//!
//! ```text
//! offset 0        header page (4 KiB)      RegionHeader
//! offset 4 KiB    slot table               slot_count × 128-byte SlotEntry, rounded up to 4 KiB
//! then            slot_count channels      each `channel_size` bytes:
//!                   +0      control page (4 KiB): 4 ring indices, each on its own 128-byte line
//!                                          req.head, req.tail, resp.head, resp.tail
//!                   +4 KiB  request ring   `ring_size` bytes, client → worker
//!                   +4 KiB+ring_size  response ring   `ring_size` bytes, worker → client
//! ```
//!
//! Everything either side reads while the other may write is an
//! `AtomicU64` at an 8-byte aligned offset (the mapping is page aligned).
//! The layout is a pure function of the region size ([`Layout::for_size`]),
//! and a client refuses a region whose recorded geometry differs from what
//! that function gives, so every offset it computes is known to be in bounds
//! whatever the file contains.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU64;

use tf_protocol::{HEADER_LEN, MAX_PAYLOAD};

use crate::error::{mib_string, TransportError};

/// "TFSHMEM1" as a little-endian u64.
pub(crate) const REGION_MAGIC: u64 = u64::from_le_bytes(*b"TFSHMEM1");
/// Bumped on any incompatible change to the layout or the slot protocol.
pub(crate) const LAYOUT_VERSION: u64 = 1;

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;
/// Smallest region a worker creates or a client accepts.
pub const MIN_REGION_MB: u64 = 4;
/// At most this many clients share one region.
pub const MAX_SLOTS: u64 = 16;
/// Region bytes per slot below which fewer slots are made: a small region
/// keeps rings big enough for useful chunks rather than many useless slots.
const BYTES_PER_SLOT: u64 = 2 * MIB;
/// Rings beyond this only waste memory: no frame is larger than 64 MiB and
/// two chunks in flight are enough for full bandwidth.
const MAX_RING: u64 = 2 * (MAX_PAYLOAD as u64 + PAGE);
const SLOT_ENTRY: u64 = 128;
/// Each index on its own pair of cache lines: the producer's and the
/// consumer's writes must not invalidate each other's lines (128 rather than
/// 64 because of adjacent-line prefetching).
const INDEX_STRIDE: u64 = 128;

/// `worker_state`: a worker is serving the region.
pub(crate) const WORKER_SERVING: u64 = 1;
/// `worker_state`: the worker that initialised the region has exited.
pub(crate) const WORKER_EXITED: u64 = 2;

/// Slot states (low 8 bits of [`SlotEntry::ctl`]; the rest is the
/// generation, bumped by every claim so that a stale owner can tell).
pub(crate) mod state {
    /// Rings reset, claimable by a client.
    pub(crate) const FREE: u64 = 0;
    /// A client claimed it; the worker has not accepted it yet.
    pub(crate) const CLAIMED: u64 = 1;
    /// Both sides attached.
    pub(crate) const ACTIVE: u64 = 2;
    /// The client left; the worker resets the slot when it lets go of it.
    pub(crate) const CLIENT_CLOSED: u64 = 3;
    /// The worker left; the client resets the slot when it lets go of it.
    pub(crate) const WORKER_CLOSED: u64 = 4;
    /// Being reset by the side that won the compare-exchange into this
    /// state; FREE follows.
    pub(crate) const RESETTING: u64 = 5;
}

/// Packs a slot control word.
pub(crate) fn ctl(generation: u64, st: u64) -> u64 {
    (generation << 8) | st
}
/// Generation of a control word.
pub(crate) fn ctl_gen(c: u64) -> u64 {
    c >> 8
}
/// State of a control word.
pub(crate) fn ctl_state(c: u64) -> u64 {
    c & 0xff
}

/// The header page.
#[repr(C)]
pub(crate) struct RegionHeader {
    /// [`REGION_MAGIC`], stored last (release) by the worker once the rest
    /// is initialised; zero while it initialises.
    pub magic: AtomicU64,
    pub version: AtomicU64,
    pub total_size: AtomicU64,
    pub slot_count: AtomicU64,
    pub channel_size: AtomicU64,
    pub ring_size: AtomicU64,
    /// Changes at every worker start: a client that sees another value knows
    /// its worker is gone even if the new one already heart-beats.
    pub epoch: AtomicU64,
    /// [`WORKER_SERVING`] or [`WORKER_EXITED`].
    pub worker_state: AtomicU64,
    /// Clients turned away because every slot was taken; the worker logs
    /// a warning when it grows.
    pub refused: AtomicU64,
    _pad: [u64; 7],
    /// Bumped by the worker every ~50 ms (own cache line: written often,
    /// while the fields above are only read).
    pub heartbeat: AtomicU64,
}

/// One slot-table entry.
#[repr(C)]
pub(crate) struct SlotEntry {
    /// `generation << 8 | state`, see [`state`].
    pub ctl: AtomicU64,
    /// Bumped by the client every ~50 ms.
    pub client_heartbeat: AtomicU64,
    _pad: [u64; 14],
}

const _: () = assert!(std::mem::size_of::<RegionHeader>() <= PAGE as usize);
const _: () = assert!(std::mem::size_of::<SlotEntry>() == SLOT_ENTRY as usize);

/// The geometry of a region of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub total: u64,
    pub slots: u64,
    pub ring: u64,
}

impl Layout {
    /// The layout of a `total`-byte region, or `None` below the minimum.
    pub(crate) fn for_size(total: u64) -> Option<Self> {
        if total < MIN_REGION_MB * MIB {
            return None;
        }
        let slots = (total / BYTES_PER_SLOT).clamp(1, MAX_SLOTS);
        let per_slot = (total - PAGE - Self::table_size(slots)) / slots;
        let ring = ((per_slot - PAGE) / 2 / PAGE * PAGE).min(MAX_RING);
        Some(Self { total, slots, ring })
    }

    fn table_size(slots: u64) -> u64 {
        (slots * SLOT_ENTRY).div_ceil(PAGE) * PAGE
    }

    pub(crate) fn channel_size(&self) -> u64 {
        PAGE + 2 * self.ring
    }

    fn channel_offset(&self, slot: u64) -> u64 {
        PAGE + Self::table_size(self.slots) + slot * self.channel_size()
    }

    /// Largest payload of one frame: half a ring, so that the producer can
    /// fill one half while the consumer drains the other.
    pub(crate) fn max_payload(&self) -> usize {
        ((self.ring / 2) as usize - HEADER_LEN).min(MAX_PAYLOAD as usize)
    }
}

/// Resolves a user-given region path: `/name` (one leading slash, no other)
/// means `/dev/shm/name`, as with `shm_open`; anything else is a file path.
pub fn resolve_path(path: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let s = path.as_os_str().as_bytes();
    if s.len() > 1 && s[0] == b'/' && !s[1..].contains(&b'/') {
        Path::new("/dev/shm").join(std::ffi::OsStr::from_bytes(&s[1..]))
    } else {
        path.to_path_buf()
    }
}

/// A mapped region. Unmapped on drop; the file stays (a worker restart, or
/// QEMU's ivshmem device, keeps using the same file).
pub(crate) struct Region {
    base: NonNull<u8>,
    layout: Layout,
    path: PathBuf,
}

// SAFETY: the mapping is plain memory shared with other processes anyway;
// every word that is concurrently written is accessed through atomics, and
// ring bytes are handed between exactly one producer and one consumer by the
// acquire/release protocol of `ring.rs`. Nothing in `Region` is tied to the
// thread that created it.
unsafe impl Send for Region {}
// SAFETY: as above; `&Region` only gives out atomics and raw pointers.
unsafe impl Sync for Region {}

impl Region {
    /// Worker side: creates (or reuses) the file at `path` with `size_mb`
    /// MiB, maps it and initialises the header and every slot.
    ///
    /// An existing file is reused rather than replaced: QEMU's ivshmem
    /// device and clients still mapping it keep the same inode, so they see
    /// the new worker (through the epoch) instead of an orphaned copy, and
    /// nobody mapping it gets SIGBUS from a truncation to zero.
    pub(crate) fn create(path: &Path, size_mb: u64) -> Result<Self, TransportError> {
        let path = resolve_path(path);
        let total = size_mb.saturating_mul(MIB);
        let layout = Layout::for_size(total).ok_or(TransportError::ShmTooSmall {
            path: path.clone(),
            mib: size_mb,
            min_mib: MIN_REGION_MB,
        })?;
        let create_err = |source: io::Error, hint| TransportError::ShmOpen {
            action: "create",
            path: path.clone(),
            source,
            hint,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path)
            .map_err(|e| {
                create_err(
                    e,
                    "check that the directory exists and this user may write there",
                )
            })?;
        let current = file
            .metadata()
            .map_err(|e| create_err(e, "check the file"))?
            .len();
        if live_worker(&file, current) {
            return Err(TransportError::ShmBusy { path });
        }
        if current > total {
            file.set_len(total)
                .map_err(|e| create_err(e, "check the file"))?;
        }
        reserve(&file, total).map_err(|e| {
            create_err(e, "not enough shared memory: free space in /dev/shm (in a container: raise --shm-size) or lower -M")
        })?;
        let base = map(&file, total)
            .map_err(|e| create_err(e, "check the memory limits of this process"))?;
        let region = Self { base, layout, path };
        region.initialise();
        Ok(region)
    }

    fn initialise(&self) {
        let h = self.header();
        // Clients that look now see "not a region" rather than a
        // half-written one; clients attached to the previous worker see the
        // epoch change and give up.
        h.magic.store(0, std::sync::atomic::Ordering::SeqCst);
        let old_epoch = h.epoch.load(std::sync::atomic::Ordering::Relaxed);
        let mut epoch = new_epoch();
        if epoch == old_epoch || epoch == 0 {
            epoch = epoch.wrapping_add(1).max(1);
        }
        let l = self.layout;
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        h.version.store(LAYOUT_VERSION, relaxed);
        h.total_size.store(l.total, relaxed);
        h.slot_count.store(l.slots, relaxed);
        h.channel_size.store(l.channel_size(), relaxed);
        h.ring_size.store(l.ring, relaxed);
        h.epoch.store(epoch, relaxed);
        h.refused.store(0, relaxed);
        h.heartbeat.store(0, relaxed);
        h.worker_state.store(WORKER_SERVING, relaxed);
        for i in 0..l.slots as usize {
            self.reset_channel(i);
            let s = self.slot(i);
            s.client_heartbeat.store(0, relaxed);
            // Keep generations increasing across worker starts so that no
            // stale owner can mistake a fresh slot for its own.
            let g = ctl_gen(s.ctl.load(relaxed)).wrapping_add(1);
            s.ctl.store(ctl(g, state::FREE), relaxed);
        }
        h.magic
            .store(REGION_MAGIC, std::sync::atomic::Ordering::Release);
    }

    /// Client side: maps an existing region (a /dev/shm file, or an ivshmem
    /// BAR such as `/sys/bus/pci/devices/…/resource2` inside a VM) and
    /// validates it against the connection info's `size_mb`.
    pub(crate) fn open(path: &Path, size_mb: u64) -> Result<Self, TransportError> {
        let path = resolve_path(path);
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|source| {
            let hint = match source.kind() {
                io::ErrorKind::NotFound => "is a tensor-fusion-worker running with -n shmem -m <this path>? (inside a VM: is the ivshmem device attached?)",
                io::ErrorKind::PermissionDenied => "run as a user that may read and write it",
                _ => "check the path in the connection info",
            };
            TransportError::ShmOpen { action: "open", path: path.clone(), source, hint }
        })?;
        let open_err = |source| TransportError::ShmOpen {
            action: "open",
            path: path.clone(),
            source,
            hint: "check the path in the connection info",
        };
        let file_size = file.metadata().map_err(open_err)?.len();
        if file_size < PAGE {
            return Err(TransportError::ShmNotARegion { path });
        }
        let base = map(&file, file_size).map_err(open_err)?;
        // A temporary view with a dummy layout, only to read the header.
        let region = Self {
            base,
            layout: Layout {
                total: file_size,
                slots: 0,
                ring: 0,
            },
            path,
        };
        region.validate(file_size, size_mb)
    }

    fn validate(mut self, file_size: u64, size_mb: u64) -> Result<Self, TransportError> {
        let acquire = std::sync::atomic::Ordering::Acquire;
        let h = self.header();
        if h.magic.load(acquire) != REGION_MAGIC {
            return Err(TransportError::ShmNotARegion {
                path: self.path.clone(),
            });
        }
        let version = h.version.load(acquire);
        if version != LAYOUT_VERSION {
            return Err(TransportError::ShmLayout {
                path: self.path.clone(),
                ours: LAYOUT_VERSION,
                theirs: version,
            });
        }
        if size_mb.checked_mul(MIB) != Some(file_size) {
            return Err(TransportError::ShmSizeMismatch {
                path: self.path.clone(),
                actual_mib: mib_string(file_size),
                expected_mib: size_mb,
            });
        }
        let recorded = h.total_size.load(acquire);
        if recorded != file_size {
            return Err(TransportError::ShmResized {
                path: self.path.clone(),
                actual_mib: mib_string(file_size),
                recorded_mib: mib_string(recorded),
            });
        }
        let Some(layout) = Layout::for_size(file_size) else {
            return Err(TransportError::ShmTooSmall {
                path: self.path.clone(),
                mib: size_mb,
                min_mib: MIN_REGION_MB,
            });
        };
        let matches = h.slot_count.load(acquire) == layout.slots
            && h.ring_size.load(acquire) == layout.ring
            && h.channel_size.load(acquire) == layout.channel_size();
        if !matches {
            // Same version number but another geometry: not our release.
            return Err(TransportError::ShmLayout {
                path: self.path.clone(),
                ours: LAYOUT_VERSION,
                theirs: version,
            });
        }
        self.layout = layout;
        Ok(self)
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn header(&self) -> &RegionHeader {
        // SAFETY: the mapping is at least one page (checked before mapping),
        // page aligned, and RegionHeader is a page or less of AtomicU64s, for
        // which every bit pattern is valid. The reference lives no longer
        // than `self`, which keeps the mapping.
        unsafe { &*(self.base.as_ptr() as *const RegionHeader) }
    }

    /// Slot `i`'s table entry. Panics if `i` is out of range (a bug here,
    /// not something a peer controls: slot numbers come from our own scan).
    pub(crate) fn slot(&self, i: usize) -> &SlotEntry {
        assert!((i as u64) < self.layout.slots, "slot {i} out of range");
        let off = PAGE + i as u64 * SLOT_ENTRY;
        // SAFETY: `off` lies in the slot table, inside the mapping (the
        // layout was validated against the mapped size), 128-byte aligned;
        // SlotEntry is made of AtomicU64s, valid for any bits.
        unsafe { &*(self.base.as_ptr().add(off as usize) as *const SlotEntry) }
    }

    /// Pointers into slot `i`'s channel.
    pub(crate) fn channel(&self, i: usize) -> Channel<'_> {
        assert!((i as u64) < self.layout.slots, "slot {i} out of range");
        let off = self.layout.channel_offset(i as u64) as usize;
        let idx = |n: u64| {
            // SAFETY: the control page of channel `i` is inside the mapping
            // (validated layout) and each index is 128-byte aligned there.
            unsafe {
                &*(self.base.as_ptr().add(off + (n * INDEX_STRIDE) as usize) as *const AtomicU64)
            }
        };
        let ring = self.layout.ring as usize;
        // SAFETY: both rings lie inside channel `i`, inside the mapping.
        let (req, resp) = unsafe {
            let req = self.base.as_ptr().add(off + PAGE as usize);
            (req, req.add(ring))
        };
        Channel {
            req_head: idx(0),
            req_tail: idx(1),
            resp_head: idx(2),
            resp_tail: idx(3),
            req,
            resp,
            ring,
        }
    }

    /// Resets slot `i`'s rings to empty. Only called by the side that owns
    /// the slot alone (initialisation, or the last side to leave it).
    pub(crate) fn reset_channel(&self, i: usize) {
        let c = self.channel(i);
        let relaxed = std::sync::atomic::Ordering::Relaxed;
        for a in [c.req_head, c.req_tail, c.resp_head, c.resp_tail] {
            a.store(0, relaxed);
        }
    }

    /// Resets slot `i` and makes it claimable again. The caller must have
    /// moved the slot to RESETTING (generation `generation`) itself, which
    /// makes it the only one touching the slot.
    pub(crate) fn free_slot(&self, i: usize, generation: u64) {
        self.reset_channel(i);
        let s = self.slot(i);
        s.client_heartbeat
            .store(0, std::sync::atomic::Ordering::Relaxed);
        // Release: the reset indices are visible to the next claimer.
        s.ctl.store(
            ctl(generation, state::FREE),
            std::sync::atomic::Ordering::Release,
        );
    }

    /// Asks the kernel to map slot `i`'s pages now, so that the first bulk
    /// copy does not take thousands of page faults. Best effort: older
    /// kernels and PCI BAR mappings may refuse, which only costs speed.
    pub(crate) fn prefault_channel(&self, i: usize) {
        let off = self.layout.channel_offset(i as u64) as usize;
        let len = self.layout.channel_size() as usize;
        // SAFETY: the range is page aligned and inside the mapping;
        // MADV_POPULATE_WRITE only faults pages in, it changes no contents.
        let _ = unsafe {
            libc::madvise(
                self.base.as_ptr().add(off).cast(),
                len,
                libc::MADV_POPULATE_WRITE,
            )
        };
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: `base`/`total` are exactly what mmap returned and was given
        // (the dummy layout of `open` and the validated one share `total`);
        // nothing refers into the mapping any more since `self` is going away
        // and every user holds the region (through an Arc) while it uses it.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.layout.total as usize);
        }
    }
}

impl std::fmt::Debug for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Region")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .finish()
    }
}

/// Raw pointers into one slot's channel.
pub(crate) struct Channel<'a> {
    pub req_head: &'a AtomicU64,
    pub req_tail: &'a AtomicU64,
    pub resp_head: &'a AtomicU64,
    pub resp_tail: &'a AtomicU64,
    pub req: *mut u8,
    pub resp: *mut u8,
    pub ring: usize,
}

/// Whether a worker is alive on `file` (of `len` bytes): a valid header
/// that says SERVING and a heartbeat that moves within a few periods. Read
/// with `pread` before the file is resized or mapped, so that a refused
/// start disturbs nothing. A worker that crashed left SERVING behind but its
/// heartbeat stands still: this then costs `PROBE` of startup time.
fn live_worker(file: &File, len: u64) -> bool {
    use std::os::unix::fs::FileExt;
    /// Five heartbeat periods: robust against a briefly descheduled worker.
    const PROBE: std::time::Duration = std::time::Duration::from_millis(250);
    if len < PAGE {
        return false;
    }
    let read = |off: usize| {
        let mut b = [0u8; 8];
        file.read_exact_at(&mut b, off as u64)
            .ok()
            .map(|()| u64::from_le_bytes(b))
    };
    let serving = read(std::mem::offset_of!(RegionHeader, magic)) == Some(REGION_MAGIC)
        && read(std::mem::offset_of!(RegionHeader, worker_state)) == Some(WORKER_SERVING);
    if !serving {
        return false;
    }
    let beat = || read(std::mem::offset_of!(RegionHeader, heartbeat));
    let first = beat();
    let start = std::time::Instant::now();
    while start.elapsed() < PROBE {
        std::thread::sleep(std::time::Duration::from_millis(10));
        if beat() != first {
            return true;
        }
    }
    false
}

/// Gives the file its full size with real pages, so that running out of
/// /dev/shm space is an error now rather than a SIGBUS on some later write.
fn reserve(file: &File, total: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(total).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain system call on an fd we own.
    let r = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    match r {
        0 => Ok(()),
        // Filesystems without fallocate: a sparse file is the best we can do.
        libc::EOPNOTSUPP | libc::EINVAL => file.set_len(total),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

fn map(file: &File, len: u64) -> io::Result<NonNull<u8>> {
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a fresh shared mapping of an fd we own; the kernel chooses the
    // address. The mapping outlives the fd, which is fine for mmap.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::from(io::ErrorKind::AddrNotAvailable))
}

/// A value that differs between worker starts: time, pid and an address
/// (ASLR), mixed. Only has to differ from the previous epoch of the region,
/// which `initialise` also checks.
fn new_epoch() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let local = 0u8;
    let mut x = t ^ (u64::from(std::process::id()) << 32) ^ (&local as *const u8 as u64);
    // splitmix64 finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_fit_and_scale() {
        assert_eq!(Layout::for_size((MIN_REGION_MB - 1) * MIB), None);
        for mb in [4u64, 5, 8, 16, 31, 32, 64, 256, 1024, 4096] {
            let l = Layout::for_size(mb * MIB).unwrap();
            let end = l.channel_offset(l.slots - 1) + l.channel_size();
            assert!(end <= l.total, "{mb} MiB: layout ends at {end}");
            assert!(l.ring >= 256 << 10, "{mb} MiB: ring {}", l.ring);
            assert_eq!(l.ring % PAGE, 0);
            assert!(l.max_payload() + HEADER_LEN <= l.ring as usize / 2);
        }
        assert_eq!(Layout::for_size(4 * MIB).unwrap().slots, 2);
        assert_eq!(Layout::for_size(32 * MIB).unwrap().slots, 16);
        assert_eq!(Layout::for_size(256 * MIB).unwrap().slots, 16);
    }

    #[test]
    fn paths_resolve_like_shm_open() {
        assert_eq!(
            resolve_path(Path::new("/my_shm")),
            Path::new("/dev/shm/my_shm")
        );
        assert_eq!(
            resolve_path(Path::new("/dev/shm/x")),
            Path::new("/dev/shm/x")
        );
        assert_eq!(
            resolve_path(Path::new("/sys/devices/pci0000:00/0000:00:04.0/resource2")),
            Path::new("/sys/devices/pci0000:00/0000:00:04.0/resource2")
        );
        assert_eq!(resolve_path(Path::new("rel")), Path::new("rel"));
    }
}
