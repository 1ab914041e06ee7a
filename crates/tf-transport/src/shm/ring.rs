//! Single-producer single-consumer byte ring carrying whole frames.
//!
//! `head` and `tail` are byte positions that only grow (u64: at 100 GB/s
//! they wrap after 5 years); the offset in the ring is `pos % cap`. The
//! producer owns `head` and the bytes in `[head, tail + cap)`, the consumer
//! owns `tail` and the bytes in `[tail, head)`; ownership moves with a
//! release store of the index and an acquire load on the other side.
//!
//! A record is the 24-byte frame header followed by the payload, padded to
//! 8 bytes. Records never wrap: if one does not fit before the end of the
//! ring, the producer writes [`PAD_MAGIC`] there and continues at offset 0,
//! so every payload is contiguous and can be handed to the caller in place.
//!
//! Every index and header read from the ring is validated before use: a
//! corrupt ring gives an error, never an out-of-bounds access or a panic.

use std::sync::atomic::{AtomicU64, Ordering};

use tf_protocol::{FrameHeader, ProtocolError, HEADER_LEN};

/// Marks the unused end of the ring; the next record starts at offset 0.
/// Distinct from the frame magic "TFP1".
pub(crate) const PAD_MAGIC: u32 = u32::from_le_bytes(*b"PAD!");
const ALIGN: u64 = 8;

/// What went wrong in a ring operation.
#[derive(Debug)]
pub(crate) enum RingError<E> {
    /// The ring's indices or contents are inconsistent.
    Corrupt(String),
    /// A record whose header does not decode.
    Protocol(ProtocolError),
    /// The step callback gave up (peer gone, timeout...).
    Wait(E),
}

/// Why [`Producer::write`] calls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Not enough room yet: wait a little (and check that the peer lives).
    Wait,
    /// About to publish written bytes: last chance to refuse, e.g. because
    /// the slot is no longer ours and publishing would corrupt its new
    /// owner's ring.
    Publish,
}

fn record_len(payload: usize) -> u64 {
    (HEADER_LEN as u64 + payload as u64).div_ceil(ALIGN) * ALIGN
}

/// The writing end of a ring.
pub(crate) struct Producer {
    head: *const AtomicU64,
    tail: *const AtomicU64,
    data: *mut u8,
    cap: u64,
    /// Our `head`, which only we write.
    pos: u64,
    /// Last `tail` seen; re-read only when it does not leave enough room,
    /// which keeps the consumer's cache line out of the fast path.
    tail_seen: u64,
}

impl Producer {
    /// # Safety
    /// `head` and `tail` must point to atomics and `data` to `cap` writable
    /// bytes (`cap` a non-zero multiple of 8, `data` 8-aligned), all valid
    /// for as long as the producer is used, and there must be no other
    /// producer for this ring.
    pub(crate) unsafe fn new(
        head: *const AtomicU64,
        tail: *const AtomicU64,
        data: *mut u8,
        cap: usize,
    ) -> Self {
        // SAFETY: valid per this function's contract.
        let (pos, tail_seen) = unsafe {
            (
                (*head).load(Ordering::Relaxed),
                (*tail).load(Ordering::Acquire),
            )
        };
        Self {
            head,
            tail,
            data,
            cap: cap as u64,
            pos,
            tail_seen,
        }
    }

    /// Largest payload that can ever fit (a record as large as the ring).
    pub(crate) fn capacity_payload(&self) -> usize {
        self.cap as usize - HEADER_LEN
    }

    /// Writes one frame: `header` (already encoded, its length set to the
    /// parts' total `len`) then the parts, straight into the ring. Calls
    /// `step` whenever there is not enough room yet and before publishing;
    /// `step` returning an error aborts the write.
    #[cfg(test)]
    pub(crate) fn write<E>(
        &mut self,
        header: &[u8; HEADER_LEN],
        parts: &[&[u8]],
        len: usize,
        step: impl FnMut(Step) -> Result<(), E>,
    ) -> Result<(), RingError<E>> {
        self.write_with(header, len, step, |dst| {
            let mut at = 0;
            for p in parts {
                dst[at..at + p.len()].copy_from_slice(p);
                at += p.len();
            }
        })
    }

    /// Like [`Producer::write`], but `fill` writes the `len` payload bytes
    /// in place, so a producer (the worker answering a device-to-host copy)
    /// can have the data copied straight into the ring with no buffer in
    /// between.
    pub(crate) fn write_with<E>(
        &mut self,
        header: &[u8; HEADER_LEN],
        len: usize,
        mut step: impl FnMut(Step) -> Result<(), E>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), RingError<E>> {
        let rec = record_len(len);
        if rec > self.cap {
            return Err(RingError::Corrupt(format!(
                "a {len}-byte frame can never fit in a {}-byte ring",
                self.cap
            )));
        }
        let off = self.pos % self.cap;
        if off + rec > self.cap {
            let pad = self.cap - off;
            self.wait_room(pad, &mut step)?;
            // SAFETY: `off` is 8-aligned and `pad >= 8`, so the 4 bytes are
            // inside the ring, in space the consumer has released.
            unsafe {
                self.data
                    .add(off as usize)
                    .cast::<u32>()
                    .write(PAD_MAGIC.to_le())
            };
            step(Step::Publish).map_err(RingError::Wait)?;
            self.publish(self.pos + pad);
        }
        self.wait_room(rec, &mut step)?;
        let off = (self.pos % self.cap) as usize;
        // SAFETY: `rec` bytes from `off` are inside the ring (the pad above
        // guarantees `off + rec <= cap`) and released by the consumer
        // (`wait_room`), so until we publish only this producer touches
        // them; `HEADER_LEN + len <= rec`. Payload sources handed to `fill`
        // are caller memory, never the ring, so they do not overlap it.
        unsafe {
            let dst = self.data.add(off);
            std::ptr::copy_nonoverlapping(header.as_ptr(), dst, HEADER_LEN);
            fill(std::slice::from_raw_parts_mut(dst.add(HEADER_LEN), len));
        }
        step(Step::Publish).map_err(RingError::Wait)?;
        self.publish(self.pos + rec);
        Ok(())
    }

    fn room(&self) -> u64 {
        self.cap - (self.pos - self.tail_seen)
    }

    fn wait_room<E>(
        &mut self,
        need: u64,
        step: &mut impl FnMut(Step) -> Result<(), E>,
    ) -> Result<(), RingError<E>> {
        while self.room() < need {
            // SAFETY: valid per `new`'s contract.
            let tail = unsafe { (*self.tail).load(Ordering::Acquire) };
            if tail > self.pos || self.pos - tail > self.cap {
                return Err(RingError::Corrupt(format!(
                    "consumer index {tail} is outside the written range [{}, {}]",
                    self.pos.saturating_sub(self.cap),
                    self.pos
                )));
            }
            self.tail_seen = tail;
            if self.room() < need {
                step(Step::Wait).map_err(RingError::Wait)?;
            }
        }
        Ok(())
    }

    fn publish(&mut self, pos: u64) {
        self.pos = pos;
        // SAFETY: valid per `new`'s contract. Release: the bytes written
        // before are visible to the consumer that acquires this value.
        unsafe { (*self.head).store(pos, Ordering::Release) };
    }
}

/// A frame found in the ring, valid until [`Consumer::consume`].
pub(crate) struct Record {
    pub header: FrameHeader,
    pub payload: *const u8,
    pub len: usize,
    size: u64,
}

/// The reading end of a ring.
pub(crate) struct Consumer {
    head: *const AtomicU64,
    tail: *const AtomicU64,
    data: *const u8,
    cap: u64,
    /// Our `tail`, which only we write.
    pos: u64,
    /// Last `head` seen; re-read only once everything up to it is consumed.
    head_seen: u64,
}

impl Consumer {
    /// # Safety
    /// As for [`Producer::new`], for the single consumer of the ring.
    pub(crate) unsafe fn new(
        head: *const AtomicU64,
        tail: *const AtomicU64,
        data: *const u8,
        cap: usize,
    ) -> Self {
        // SAFETY: valid per this function's contract.
        let pos = unsafe { (*tail).load(Ordering::Relaxed) };
        Self {
            head,
            tail,
            data,
            cap: cap as u64,
            pos,
            head_seen: pos,
        }
    }

    /// The next frame, if one has been published. Skips pad markers.
    pub(crate) fn peek(&mut self) -> Result<Option<Record>, RingError<std::convert::Infallible>> {
        loop {
            if self.head_seen == self.pos {
                // SAFETY: valid per `new`'s contract. Acquire: pairs with
                // the producer's release, making the record bytes visible.
                self.head_seen = unsafe { (*self.head).load(Ordering::Acquire) };
                if self.head_seen == self.pos {
                    return Ok(None);
                }
            }
            let avail = self.head_seen.wrapping_sub(self.pos);
            if self.head_seen < self.pos || avail > self.cap || !avail.is_multiple_of(ALIGN) {
                return Err(RingError::Corrupt(format!(
                    "producer index {} is outside [{}, {}] or unaligned",
                    self.head_seen,
                    self.pos,
                    self.pos + self.cap
                )));
            }
            let off = self.pos % self.cap;
            let contiguous = self.cap - off;
            // SAFETY: `off` is 8-aligned (positions only advance by multiples
            // of 8) and `contiguous >= 8`, so 4 bytes are inside the ring;
            // `avail >= 8` so they were published.
            let word = u32::from_le(unsafe { self.data.add(off as usize).cast::<u32>().read() });
            if word == PAD_MAGIC {
                if avail < contiguous {
                    return Err(RingError::Corrupt(format!(
                        "pad marker at offset {off} but only {avail} of the {contiguous} bytes to the ring's end are published"
                    )));
                }
                self.release(self.pos + contiguous);
                continue;
            }
            if avail < HEADER_LEN as u64 || contiguous < HEADER_LEN as u64 {
                return Err(RingError::Corrupt(format!(
                    "a frame header at offset {off} is cut short"
                )));
            }
            let mut head = [0u8; HEADER_LEN];
            // SAFETY: HEADER_LEN published bytes inside the ring (checked
            // above), copied into a local array.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.data.add(off as usize),
                    head.as_mut_ptr(),
                    HEADER_LEN,
                )
            };
            let header = FrameHeader::decode(&head).map_err(RingError::Protocol)?;
            let len = header.length as usize;
            let size = record_len(len);
            if size > avail || size > contiguous {
                return Err(RingError::Corrupt(format!(
                    "a frame of {len} bytes at offset {off} runs past the published data or the ring's end"
                )));
            }
            // SAFETY: `off + HEADER_LEN <= off + size <= cap`: in bounds.
            let payload = unsafe { self.data.add(off as usize + HEADER_LEN) };
            return Ok(Some(Record {
                header,
                payload,
                len,
                size,
            }));
        }
    }

    /// Hands the space of `rec` (from the latest [`Consumer::peek`]) back
    /// to the producer. The record's payload must not be used afterwards.
    pub(crate) fn consume(&mut self, rec: &Record) {
        self.release(self.pos + rec.size);
    }

    fn release(&mut self, pos: u64) {
        self.pos = pos;
        // SAFETY: valid per `new`'s contract. Release: our reads of the
        // freed bytes happen before the producer may overwrite them.
        unsafe { (*self.tail).store(pos, Ordering::Release) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tf_protocol::FrameHeader;

    /// A ring in ordinary memory (8-aligned through u64 storage).
    struct TestRing {
        idx: Box<[AtomicU64; 2]>,
        data: Vec<u64>,
    }

    impl TestRing {
        fn new(cap: usize) -> Self {
            Self {
                idx: Box::new([AtomicU64::new(0), AtomicU64::new(0)]),
                data: vec![0; cap / 8],
            }
        }
        fn ends(&mut self) -> (Producer, Consumer) {
            let cap = self.data.len() * 8;
            let d = self.data.as_mut_ptr().cast::<u8>();
            // SAFETY: the TestRing outlives both ends in every test, and
            // each test uses exactly one producer and one consumer.
            unsafe {
                (
                    Producer::new(&self.idx[0], &self.idx[1], d, cap),
                    Consumer::new(&self.idx[0], &self.idx[1], d, cap),
                )
            }
        }
        fn bytes(&mut self) -> &mut [u8] {
            let len = self.data.len() * 8;
            // SAFETY: the Vec<u64> owns `len` initialised bytes.
            unsafe { std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast(), len) }
        }
    }

    fn send(p: &mut Producer, id: u64, payload: &[u8]) -> Result<(), RingError<&'static str>> {
        let h = FrameHeader::request(7, payload.len() as u32, id).encode();
        p.write(&h, &[payload], payload.len(), |s| match s {
            Step::Wait => Err("full"),
            Step::Publish => Ok(()),
        })
    }

    fn take(c: &mut Consumer) -> Option<(u64, Vec<u8>)> {
        let r = c.peek().unwrap()?;
        // SAFETY: the record is valid until consume().
        let v = unsafe { std::slice::from_raw_parts(r.payload, r.len) }.to_vec();
        c.consume(&r);
        Some((r.header.request_id, v))
    }

    #[test]
    fn wraps_with_a_pad_and_keeps_frames_contiguous() {
        let mut ring = TestRing::new(256);
        let (mut p, mut c) = ring.ends();
        for round in 0..100u64 {
            let payload: Vec<u8> = (0..(round as usize * 13) % 150)
                .map(|i| (i as u8) ^ round as u8)
                .collect();
            // The ring is empty here, but a pad written to reach offset 0
            // leaves too little room until the consumer skips it.
            while let Err(e) = send(&mut p, round, &payload) {
                assert!(matches!(e, RingError::Wait(_)));
                assert_eq!(take(&mut c), None);
            }
            assert_eq!(take(&mut c), Some((round, payload)));
        }
        assert_eq!(take(&mut c), None);
    }

    #[test]
    fn full_ring_calls_wait_and_frame_larger_than_ring_fails() {
        let mut ring = TestRing::new(128);
        let (mut p, mut c) = ring.ends();
        send(&mut p, 1, &[1; 60]).unwrap();
        assert!(matches!(
            send(&mut p, 2, &[2; 60]),
            Err(RingError::Wait("full"))
        ));
        assert_eq!(take(&mut c).unwrap().0, 1);
        send(&mut p, 2, &[2; 60]).unwrap();
        assert!(matches!(
            send(&mut p, 3, &[0; 120]),
            Err(RingError::Corrupt(_))
        ));
        assert_eq!(p.capacity_payload(), 104);
    }

    #[test]
    fn corrupt_contents_give_errors() {
        let mut ring = TestRing::new(256);
        {
            let (mut p, _) = ring.ends();
            send(&mut p, 1, b"hello").unwrap();
        }
        ring.bytes()[0] ^= 0xff;
        let (_, mut c) = ring.ends();
        assert!(matches!(c.peek(), Err(RingError::Protocol(_))));

        // A length that runs past the published bytes.
        let mut ring = TestRing::new(256);
        {
            let (mut p, _) = ring.ends();
            send(&mut p, 1, b"hello").unwrap();
        }
        ring.bytes()[12..16].copy_from_slice(&1000u32.to_le_bytes());
        let (_, mut c) = ring.ends();
        assert!(matches!(c.peek(), Err(RingError::Corrupt(_))));

        // Indices that make no sense, both ways.
        let mut ring = TestRing::new(256);
        ring.idx[0].store(1 << 40, Ordering::Relaxed);
        let (_, mut c) = ring.ends();
        assert!(matches!(c.peek(), Err(RingError::Corrupt(_))));
        let mut ring = TestRing::new(256);
        let (mut p, _) = ring.ends();
        send(&mut p, 1, &[0; 8]).unwrap();
        ring.idx[1].store(1 << 40, Ordering::Relaxed);
        // Needs more room than was left at the last look: re-reads the tail.
        assert!(matches!(
            send(&mut p, 2, &[0; 256 - 24]),
            Err(RingError::Corrupt(_))
        ));
    }

    proptest! {
        /// Any interleaving of writes and reads delivers every frame intact
        /// and in order; a write that does not fit waits (here: fails and is
        /// retried after a read).
        #[test]
        fn any_sequence_round_trips(sizes in proptest::collection::vec(0usize..300, 1..60), cap_words in 42usize..80) {
            let mut ring = TestRing::new(cap_words * 8);
            let (mut p, mut c) = ring.ends();
            let mut expected = std::collections::VecDeque::new();
            for (i, &n) in sizes.iter().enumerate() {
                let n = n.min(p.capacity_payload());
                let payload: Vec<u8> = (0..n).map(|j| (i * 31 + j) as u8).collect();
                loop {
                    match send(&mut p, i as u64, &payload) {
                        Ok(()) => break,
                        Err(RingError::Wait(_)) => {
                            // None: only a pad was left, now consumed.
                            if let Some(got) = take(&mut c) {
                                prop_assert_eq!(Some(got), expected.pop_front());
                            }
                        }
                        Err(e) => panic!("{e:?}"),
                    }
                }
                expected.push_back((i as u64, payload));
            }
            while let Some(got) = take(&mut c) {
                prop_assert_eq!(Some(got), expected.pop_front());
            }
            prop_assert!(expected.is_empty());
        }
    }
}
