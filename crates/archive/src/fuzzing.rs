//! Hooks for the fuzz targets in `fuzz/`, the test-vector generator, the
//! tests and the benches: the sans-IO codec ([`format`], [`v2`]: keys,
//! chunks, index, root, pieces), the writer's compressor policy, the index
//! piece decoder and the streaming checks, reachable without sealing an
//! archive around them. Not part of the API (hidden from the docs); they
//! may change at any time. Compiled always (not behind `cfg(fuzzing)`), so
//! that the stable replay of the seed corpora (`fuzz/replay.sh`), the tests
//! and the workspace's lints see the same code.

/// The version 1 codec and what both versions share: constants, id, keys
/// and chunks, header, footer, index, name rules.
pub mod format {
    pub use crate::format::*;
}

/// The version 2 codec: root, index pieces, entries, footer, signature.
pub mod v2 {
    pub use crate::v2::*;
}

pub use crate::writer::FrameCompressor;

/// Seals a header of `fields` with `keys` ([`Header`](crate::Header)'s
/// writer side, which takes the archive's internal keys): for test vectors,
/// fuzz targets and tests that build archives by hand.
pub fn seal_header(fields: crate::HeaderFields, keys: &format::ArchiveKeys) -> Result<crate::Header> {
    crate::Header::seal(fields, keys)
}

use crate::Result;
use crate::bytes_io::Cursor;
use crate::entry::{EntryKind, path_cmp};
use crate::format::MIN_FRAME_SIZE;
use crate::v2::{PieceRecord, TreeCheck, decode_entry, decode_piece};
use crate::{Entry, Region};

/// The record a raw index piece would need (entry count, first key) and the
/// stream length of its entries, read leniently: the entries are decoded
/// until one fails. `None` when not even the first entry decodes. Offset,
/// length, hash and "frames before" are left 0.
pub fn piece_record(raw: &[u8], sources: &[String]) -> Option<(PieceRecord, u64)> {
    let mut c = Cursor::new(raw, Region::Piece(0), 0);
    let n = c.u32("entry count").ok()?;
    let mut first = None;
    let mut len = 0u64;
    for _ in 0..n {
        let Ok((s, e)) = decode_entry(&mut c, sources, len) else {
            break;
        };
        first.get_or_insert((s, e.path.as_bytes().to_vec()));
        len = len.checked_add(e.stream_len())?;
    }
    let (first_source, first_path) = first?;
    Some((
        PieceRecord {
            offset: 0,
            sealed_len: 0,
            frames_before: 0,
            sha256: [0; 32],
            entries: n,
            stream_offset: 0,
            first_source,
            first_path,
        },
        len,
    ))
}

/// Decodes a raw index piece against the record it implies
/// ([`piece_record`]), so that the decoder's every check is reached, then
/// walks its entries as a reader does: order and tree rules
/// ([`TreeCheck`]) and each hard link's target among the entries before
/// it. Returns the entries that passed every check.
pub fn check_piece(raw: &[u8], sources: &[String]) -> Result<Vec<Entry>> {
    let Some((record, len)) = piece_record(raw, sources) else {
        return Ok(Vec::new());
    };
    let entries = decode_piece(raw, 0, &record, len, sources)?;
    let mut tree = TreeCheck::default();
    let mut out = Vec::with_capacity(entries.len());
    for (i, (s, e)) in entries.iter().enumerate() {
        if tree.check(*s, e.path.as_bytes(), e.kind == EntryKind::Folder).is_err() {
            break;
        }
        if let EntryKind::HardLink { target } = &e.kind {
            let found = entries[..i]
                .binary_search_by(|(s2, e2)| s2.cmp(s).then_with(|| path_cmp(e2.path.as_bytes(), target.as_bytes())));
            if !found.is_ok_and(|j| entries[j].1.is_file()) {
                break;
            }
        }
        let _ = e.frames(MIN_FRAME_SIZE);
        let _ = e.check_names();
        let _ = e.display_name();
        out.push(e.clone());
    }
    Ok(out)
}
