//! The version 1 footer: where the sealed index is. (Version 2's footer,
//! which points at the root and the signature, is in `v2.rs`.)

use super::{ArchiveId, Header, MIN_SEALED_FRAME_LEN};
use crate::bytes_io::Cursor;
use crate::{Error, Region, Result};

/// The last eight bytes of every archive.
pub const FOOTER_MAGIC: [u8; 8] = *b"\x89IBSEND\n";
/// Length of the footer.
pub const FOOTER_LEN: usize = 48;
/// Largest decompressed (raw) index a reader accepts.
pub const MAX_INDEX_LEN: u64 = 256 << 20;
/// Largest sealed index: a raw index of [`MAX_INDEX_LEN`] stored (not
/// compressed) plus its encoding byte and tag.
pub const MAX_SEALED_INDEX_LEN: u64 = MAX_INDEX_LEN + 17;

/// The fixed-size footer: where the index is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// Byte offset of the sealed index (= header length + all frames).
    pub index_offset: u64,
    /// Length of the sealed index in bytes (ends where the footer starts).
    pub index_len: u64,
    /// Number of data frames (the index is chunk number `frame_count`).
    pub frame_count: u64,
    /// The archive's id, as in the header.
    pub archive_id: ArchiveId,
}

impl Footer {
    /// The 48 bytes that end a version 1 archive (what [`Footer::decode`]
    /// reads back).
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        out[0..8].copy_from_slice(&self.index_offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.index_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.frame_count.to_le_bytes());
        out[24..40].copy_from_slice(&self.archive_id.0);
        out[40..48].copy_from_slice(&FOOTER_MAGIC);
        out
    }

    /// Decodes the last [`FOOTER_LEN`] bytes of an archive of `archive_len`
    /// bytes and checks that the positions it gives fit that length exactly.
    pub fn decode(bytes: &[u8], archive_len: u64) -> Result<Footer> {
        let base = archive_len.saturating_sub(FOOTER_LEN as u64);
        let mut c = Cursor::new(bytes, Region::Footer, base);
        if bytes.len() != FOOTER_LEN {
            return Err(c.error(format!("footer is {FOOTER_LEN} bytes, got {}", bytes.len())));
        }
        let index_offset = c.u64("index offset")?;
        let index_len = c.u64("index length")?;
        let frame_count = c.u64("frame count")?;
        let archive_id = ArchiveId(c.array("archive id")?);
        if c.array::<8>("footer magic")? != FOOTER_MAGIC {
            return Err(Error::malformed(
                Region::Footer,
                base + 40,
                "no footer magic: the archive is truncated, has trailing bytes, or is not an archive",
            ));
        }
        let footer = Footer {
            index_offset,
            index_len,
            frame_count,
            archive_id,
        };
        if !(MIN_SEALED_FRAME_LEN as u64..=MAX_SEALED_INDEX_LEN).contains(&index_len) {
            return Err(Error::malformed(
                Region::Footer,
                base + 8,
                format!("index length {index_len} outside {MIN_SEALED_FRAME_LEN}..={MAX_SEALED_INDEX_LEN}"),
            ));
        }
        if index_offset
            .checked_add(index_len)
            .and_then(|e| e.checked_add(FOOTER_LEN as u64))
            != Some(archive_len)
        {
            return Err(Error::malformed(
                Region::Archive,
                archive_len,
                format!(
                    "archive is {archive_len} bytes but its footer says index at {index_offset} + {index_len} bytes + {FOOTER_LEN}"
                ),
            ));
        }
        Ok(footer)
    }

    /// Checks the footer against the header (keyless structural checks).
    pub fn check_against(&self, header: &Header) -> Result<()> {
        let at = self.index_offset + self.index_len;
        if self.archive_id != header.fields().archive_id {
            return Err(Error::malformed(
                Region::Footer,
                at + 24,
                "footer belongs to another archive (archive ids differ)",
            ));
        }
        let header_len = header.as_bytes().len() as u64;
        let body = self
            .index_offset
            .checked_sub(header_len)
            .ok_or_else(|| Error::malformed(Region::Footer, at, "index offset points inside the header"))?;
        if self.frame_count > body / MIN_SEALED_FRAME_LEN as u64 {
            return Err(Error::malformed(
                Region::Footer,
                at + 16,
                format!("{} frames cannot fit in {body} bytes", self.frame_count),
            ));
        }
        if self.frame_count == 0 && body != 0 {
            return Err(Error::malformed(
                Region::Footer,
                at + 16,
                "no frames, but bytes between header and index",
            ));
        }
        Ok(())
    }
}
