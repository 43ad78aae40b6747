//! Little-endian encoding helpers for the sans-IO codec.

use crate::{Error, Region, Result};

/// Reads fields from a byte slice, reporting where a field did not fit.
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    region: Region,
    /// Offset of `buf[0]` in the archive (or in the index body), for errors.
    base: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(buf: &'a [u8], region: Region, base: u64) -> Self {
        Cursor {
            buf,
            pos: 0,
            region,
            base,
        }
    }

    pub(crate) fn region(&self) -> Region {
        self.region
    }

    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn error(&self, reason: impl Into<String>) -> Error {
        Error::malformed(self.region, self.offset(), reason)
    }

    pub(crate) fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.error(format!("{what} needs {n} bytes, {} left", self.remaining())));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// A UTF-8 string preceded by its u16 byte length, of at most `max` bytes.
    pub(crate) fn string(&mut self, what: &str, max: usize) -> Result<String> {
        let at = self.offset();
        let len = usize::from(self.u16(what)?);
        if len > max {
            return Err(Error::malformed(
                self.region,
                at,
                format!("{what} is {len} bytes, more than {max}"),
            ));
        }
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Error::malformed(self.region, at, format!("{what} is not UTF-8")))
    }

    pub(crate) fn expect_end(&self, what: &str) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.error(format!("{} bytes after the end of the {what}", self.remaining())))
        }
    }
}

/// Appends a u16-length-prefixed string. Callers check the length first.
pub(crate) fn put_string(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

/// Appends u16-length-prefixed bytes. Callers check the length first.
pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&b[..usize::from(len)]);
}
