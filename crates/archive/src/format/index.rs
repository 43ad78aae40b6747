//! The version 1 index: the frame table and every entry, sealed as the
//! archive's last chunk. (Version 2's root and index pieces are in `v2.rs`.)

use std::hash::BuildHasher;

use ibs_envelope::TAG_LEN;

use super::{ArchiveKeys, Footer, Header, MAX_INDEX_LEN, MAX_PATH_LEN, MAX_SOURCE_LEN, MIN_SEALED_FRAME_LEN};
use crate::bytes_io::{Cursor, put_string};
use crate::entry::{Entry, EntryPath};
use crate::{Error, Region, Result};

const ENTRY_HAS_MODE: u8 = 1;
const ENTRY_HAS_MTIME: u8 = 2;

/// The index: the frame table and every entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    /// Total plaintext bytes of all entries (the logical data stream).
    pub data_len: u64,
    /// Sealed length of each data frame, in order.
    pub frame_lens: Vec<u32>,
    /// The entries, in the order of their data.
    pub entries: Vec<Entry>,
}

/// The (source, path) names of a list of entries, as indices into it: finds a
/// repeated name without a second copy of every name (which, at 100 000s of
/// entries, was the largest thing a writer or reader held besides the entries).
#[derive(Debug, Default)]
struct NameSet {
    table: hashbrown::HashTable<usize>,
    hasher: std::hash::RandomState,
}

impl NameSet {
    fn with_capacity(entries: usize) -> Self {
        NameSet {
            table: hashbrown::HashTable::with_capacity(entries),
            hasher: std::hash::RandomState::new(),
        }
    }

    fn hash(&self, source: &str, path: &[u8]) -> u64 {
        self.hasher.hash_one((source, path))
    }

    /// Whether one of `entries` has this source and path.
    fn contains(&self, entries: &[Entry], source: &str, path: &[u8]) -> bool {
        self.table
            .find(self.hash(source, path), |&i| {
                entries[i].source == source && entries[i].path.as_bytes() == path
            })
            .is_some()
    }

    /// Adds the last of `entries` (whose name [`contains`](Self::contains) did not find).
    fn add_last(&mut self, entries: &[Entry]) {
        let Some(last) = entries.len().checked_sub(1) else {
            return;
        };
        let hash = self.hash(&entries[last].source, entries[last].path.as_bytes());
        let hasher = &self.hasher;
        self.table.insert_unique(hash, last, |&i| {
            hasher.hash_one((entries[i].source.as_str(), entries[i].path.as_bytes()))
        });
    }
}

/// Encoded bytes of an index entry besides its two names: two name lengths,
/// size, SHA-256, flags, mode, mtime.
const ENCODED_ENTRY_FIXED: usize = 2 + 2 + 8 + 32 + 1 + 4 + 8;

impl Index {
    /// Encodes the index body (before compression and sealing).
    pub fn encode(&self) -> Vec<u8> {
        // Exact size (the index of a large backup is tens of MiB: no growth by doubling).
        let name = |s: &[u8]| s.len().min(usize::from(u16::MAX));
        let names: usize = self
            .entries
            .iter()
            .map(|e| name(e.source.as_bytes()) + name(e.path.as_bytes()))
            .sum();
        let mut out =
            Vec::with_capacity(24 + 4 * self.frame_lens.len() + ENCODED_ENTRY_FIXED * self.entries.len() + names);
        out.extend_from_slice(&self.data_len.to_le_bytes());
        out.extend_from_slice(&(self.frame_lens.len() as u64).to_le_bytes());
        for len in &self.frame_lens {
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            put_string(&mut out, &e.source);
            crate::bytes_io::put_bytes(&mut out, e.path.as_bytes());
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.sha256);
            let flags = (if e.mode.is_some() { ENTRY_HAS_MODE } else { 0 })
                | (if e.mtime.is_some() { ENTRY_HAS_MTIME } else { 0 });
            out.push(flags);
            out.extend_from_slice(&e.mode.unwrap_or(0).to_le_bytes());
            out.extend_from_slice(&e.mtime.unwrap_or(0).to_le_bytes());
        }
        debug_assert_eq!(
            out.len(),
            24 + 4 * self.frame_lens.len() + ENCODED_ENTRY_FIXED * self.entries.len() + names
        );
        out
    }

    /// Decodes and checks an index body for an archive with `frame_size`.
    ///
    /// Checks: the frame count matches the data length, every sealed frame
    /// length is possible for its plaintext length, entry sizes add up to the
    /// data length, names are UTF-8 and no (source, path) appears twice. Entry
    /// names are *not* checked against the path rules here (a reader can list
    /// an archive with odd names); [`Entry::check_names`] does that.
    pub fn decode(body: &[u8], frame_size: u32) -> Result<Index> {
        let mut c = Cursor::new(body, Region::Index, 0);
        let data_len = c.u64("data length")?;
        let at = c.offset();
        let frame_count = c.u64("frame count")?;
        let f = u64::from(frame_size.max(1));
        if frame_count != data_len.div_ceil(f) {
            return Err(c.error(format!(
                "{frame_count} frames for {data_len} bytes at {frame_size} bytes per frame"
            )));
        }
        if frame_count > (c.remaining() / 4) as u64 {
            return Err(Error::malformed(
                Region::Index,
                at,
                format!("{frame_count} frames do not fit"),
            ));
        }
        let mut frame_lens = Vec::with_capacity(frame_count as usize);
        for i in 0..frame_count {
            let at = c.offset();
            let len = c.u32("frame length")?;
            let plain = (data_len - i * f).min(f);
            if u64::from(len) < MIN_SEALED_FRAME_LEN as u64 || u64::from(len) > plain + 1 + TAG_LEN as u64 {
                return Err(Error::malformed(
                    Region::Index,
                    at,
                    format!("frame {i}: sealed length {len} impossible for {plain} plaintext bytes"),
                ));
            }
            frame_lens.push(len);
        }
        let at = c.offset();
        let entry_count = c.u64("entry count")?;
        // An entry takes at least 2 + 1 + 2 + 1 + 8 + 32 + 1 + 4 + 8 bytes.
        if entry_count > (c.remaining() / 59) as u64 {
            return Err(Error::malformed(
                Region::Index,
                at,
                format!("{entry_count} entries do not fit"),
            ));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(entry_count as usize);
        let mut seen = NameSet::with_capacity(entry_count as usize);
        let mut offset = 0u64;
        for _ in 0..entry_count {
            let at = c.offset();
            let source = c.string("source name", MAX_SOURCE_LEN)?;
            let path = c.string("entry path", MAX_PATH_LEN)?;
            if source.is_empty() || path.is_empty() {
                return Err(Error::malformed(Region::Index, at, "empty source name or path"));
            }
            let size = c.u64("entry size")?;
            let sha256 = c.array("entry SHA-256")?;
            let flags_at = c.offset();
            let flags = c.u8("entry flags")?;
            if flags & !(ENTRY_HAS_MODE | ENTRY_HAS_MTIME) != 0 {
                return Err(Error::malformed(Region::Index, flags_at, "unknown entry flags"));
            }
            let mode = c.u32("entry mode")?;
            let mtime = c.i64("entry mtime")?;
            let end = offset
                .checked_add(size)
                .filter(|e| *e <= data_len)
                .ok_or_else(|| Error::malformed(Region::Index, at, "entry sizes exceed the data length"))?;
            let path = EntryPath::from(path);
            if seen.contains(&entries, &source, path.as_bytes()) {
                return Err(Error::malformed(
                    Region::Index,
                    at,
                    format!("entry {source}/{path} appears twice"),
                ));
            }
            let mut entry = Entry::file(source, path, size, sha256);
            entry.mode = (flags & ENTRY_HAS_MODE != 0).then_some(mode);
            entry.mtime = (flags & ENTRY_HAS_MTIME != 0).then_some(mtime);
            entry.offset = offset;
            entries.push(entry);
            seen.add_last(&entries);
            offset = end;
        }
        if offset != data_len {
            return Err(c.error(format!("entries hold {offset} bytes, data length is {data_len}")));
        }
        c.expect_end("index")?;
        Ok(Index {
            data_len,
            frame_lens,
            entries,
        })
    }

    /// Plaintext length of data frame `i`.
    pub fn frame_plain_len(&self, i: u64, frame_size: u32) -> usize {
        let f = u64::from(frame_size);
        (self.data_len.saturating_sub(i * f)).min(f) as usize
    }

    /// Byte offset of every frame plus the end of the last one, given the header length.
    pub fn frame_offsets(&self, header_len: u64) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.frame_lens.len() + 1);
        let mut at = header_len;
        out.push(at);
        for len in &self.frame_lens {
            at += u64::from(*len);
            out.push(at);
        }
        out
    }
}

/// Opens, decompresses and decodes the sealed index, and checks it against
/// the footer and header (the frames must end exactly where the index begins).
pub fn open_index(
    keys: &ArchiveKeys,
    header: &Header,
    footer: &Footer,
    sealed: Vec<u8>,
    decompressor: &mut zstd::bulk::Decompressor<'_>,
) -> Result<Index> {
    let body = keys.open_chunk(
        &header.digest(),
        footer.frame_count,
        true,
        sealed,
        MAX_INDEX_LEN as usize,
        decompressor,
    )?;
    let index = Index::decode(&body, header.fields().frame_size)?;
    let frames_end = index.frame_lens.iter().map(|l| u64::from(*l)).sum::<u64>() + header.as_bytes().len() as u64;
    if index.frame_lens.len() as u64 != footer.frame_count || frames_end != footer.index_offset {
        return Err(Error::malformed(
            Region::Index,
            0,
            format!(
                "index lists {} frames ending at byte {frames_end}; footer says {} frames, index at {}",
                index.frame_lens.len(),
                footer.frame_count,
                footer.index_offset
            ),
        ));
    }
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::DEFAULT_FRAME_SIZE;

    fn empty_entry(source: &str, path: &str) -> Entry {
        let mut e = Entry::file(source, path, 0, [0; 32]);
        e.mode = Some(0o644);
        e
    }

    #[test]
    fn index_names_are_unique_per_source() {
        // The same path in two sources is fine, and the encoding is exactly as long as computed.
        let mut index = Index::default();
        for i in 0..2000 {
            index.entries.push(empty_entry("identity", &format!("users/{i}.json")));
            index.entries.push(empty_entry("ca", &format!("users/{i}.json")));
        }
        let body = index.encode();
        assert_eq!(Index::decode(&body, DEFAULT_FRAME_SIZE).unwrap(), index);
        // A repeated (source, path), however far apart, is refused.
        index.entries.push(empty_entry("identity", "users/7.json"));
        let err = Index::decode(&index.encode(), DEFAULT_FRAME_SIZE).unwrap_err();
        assert!(err.to_string().contains("identity/users/7.json appears twice"), "{err}");
    }
}
