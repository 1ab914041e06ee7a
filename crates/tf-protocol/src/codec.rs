//! Little-endian writer and validating reader for message payloads.

use crate::ProtocolError;

/// Appends little-endian values to a payload buffer.
#[derive(Default, Debug)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// One byte, 0 or 1.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    /// Bytes without a length (fixed-size arrays).
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// Length-prefixed (u32) bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads little-endian values, failing cleanly on truncation.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// `what` names the message in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Self { buf, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(ProtocolError::Malformed {
                what: self.what,
                why: "truncated",
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }
    pub fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, ProtocolError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, ProtocolError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        self.array()
    }
    /// The message's name, for errors.
    pub fn what(&self) -> &'static str {
        self.what
    }
    /// A `Malformed` error naming this message.
    pub fn bad(&self, why: &'static str) -> ProtocolError {
        ProtocolError::Malformed {
            what: self.what,
            why,
        }
    }
    /// A `u32` item count of at most `max`, checked before anything is
    /// allocated for the items.
    pub fn count(&mut self, max: usize) -> Result<usize, ProtocolError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(self.bad("count over limit"));
        }
        Ok(n)
    }
    /// A `u32` count of at most `max`, then that many items.
    pub fn vec<T>(
        &mut self,
        max: usize,
        mut item: impl FnMut(&mut Self) -> Result<T, ProtocolError>,
    ) -> Result<Vec<T>, ProtocolError> {
        let n = self.count(max)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(item(self)?);
        }
        Ok(v)
    }
    /// `N` items without a count.
    pub fn items<T: Copy + Default, const N: usize>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, ProtocolError>,
    ) -> Result<[T; N], ProtocolError> {
        let mut a = [T::default(); N];
        for x in &mut a {
            *x = item(self)?;
        }
        Ok(a)
    }
    /// A bool: one byte that must be 0 or 1.
    pub fn flag(&mut self) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad("bad flag")),
        }
    }
    /// The byte before an optional value: 0 (absent) or 1 (present).
    pub fn presence(&mut self) -> Result<bool, ProtocolError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.bad("bad presence flag")),
        }
    }
    /// Trailing bulk data: a `u32` length (at most `max`) that must equal
    /// what is left of the frame, then those bytes, borrowed.
    pub fn bulk(&mut self, max: usize) -> Result<&'a [u8], ProtocolError> {
        let n = self.u32()? as usize;
        if n > max || self.remaining() != n {
            return Err(self.bad("data length disagrees with frame"));
        }
        self.take(n)
    }
    /// Length-prefixed bytes, borrowed (zero-copy for bulk data).
    pub fn bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// Length-prefixed UTF-8 text of at most `max` bytes.
    pub fn str(&mut self, max: usize) -> Result<&'a str, ProtocolError> {
        let b = self.bytes()?;
        if b.len() > max {
            return Err(ProtocolError::Malformed {
                what: self.what,
                why: "string too long",
            });
        }
        std::str::from_utf8(b).map_err(|_| ProtocolError::Malformed {
            what: self.what,
            why: "invalid UTF-8",
        })
    }
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }
    /// Fails if bytes are left over: a message must be consumed exactly.
    pub fn end(self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Trailing(self.buf.len()))
        }
    }
}
