//! The archive id: 128 random bits, in the header and the footer.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// Length of an archive id.
pub const ARCHIVE_ID_LEN: usize = 16;

/// An archive's random 128-bit identifier, shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArchiveId(pub [u8; ARCHIVE_ID_LEN]);

impl ArchiveId {
    /// A fresh random id.
    pub fn generate() -> Result<Self> {
        let mut id = [0u8; ARCHIVE_ID_LEN];
        getrandom::fill(&mut id).map_err(|e| Error::Envelope(ibs_envelope::Error::Random(e.to_string())))?;
        Ok(ArchiveId(id))
    }
}

impl fmt::Display for ArchiveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for ArchiveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ArchiveId({self})")
    }
}

impl FromStr for ArchiveId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Usage(format!("{s:?} is not an archive id (32 hex digits)"));
        if s.len() != 2 * ARCHIVE_ID_LEN || !s.is_ascii() {
            return Err(bad());
        }
        let mut id = [0u8; ARCHIVE_ID_LEN];
        for (i, out) in id.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(ArchiveId(id))
    }
}
