//! The sans-IO codec of format version 2 (FORMAT.md §14): entries, index
//! pieces, the root, the signature message and the 64-byte footer.

use std::cmp::Ordering;

use sha2::{Digest, Sha256};

use crate::bytes_io::Cursor;
use crate::entry::{
    EMPTY_SHA256, Entry, EntryKind, EntryPath, Extent, check_path_bytes, is_ancestor, parent_of, path_cmp,
};
use crate::format::{ArchiveId, MIN_SEALED_FRAME_LEN, check_source_name};
use crate::{Error, Region, Result};

/// The last eight bytes of a version 2 archive.
pub const FOOTER_MAGIC_V2: [u8; 8] = *b"\x89IBSEN2\n";
/// Length of a version 2 footer.
pub const FOOTER_LEN_V2: usize = 64;
/// A writer seals an index piece once its raw size reaches this.
pub const PIECE_TARGET_LEN: usize = 64 << 10;
/// Largest raw index piece a reader accepts.
pub const MAX_PIECE_LEN: usize = 4 << 20;
/// Largest sealed index piece.
pub const MAX_SEALED_PIECE_LEN: u64 = MAX_PIECE_LEN as u64 + 17;
/// Largest raw root a reader accepts.
pub const MAX_ROOT_LEN: usize = 256 << 20;
/// Largest sealed root.
pub const MAX_SEALED_ROOT_LEN: u64 = MAX_ROOT_LEN as u64 + 17;
/// Most sources in an archive.
pub const MAX_SOURCES: usize = 1024;
/// Longest symbolic link target.
pub const MAX_LINK_TARGET_LEN: usize = 4096;
/// Most bytes of extended attribute names and values per entry.
pub const MAX_XATTR_BYTES: usize = 64 << 10;
/// Signer algorithm byte: unsigned.
pub const SIGNER_NONE: u8 = 0;
/// Signer algorithm byte: Ed25519.
pub const SIGNER_ED25519: u8 = 1;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// What precedes the signed fields (FORMAT.md §14.7).
pub const SIGNATURE_CONTEXT: &[u8] = b"ibs-archive v2 signature\0";

const FLAG_MODE: u8 = 1;
const FLAG_OWNER_IDS: u8 = 2;
const FLAG_OWNER_NAMES: u8 = 4;
const FLAG_MTIME: u8 = 8;
const FLAG_SPARSE: u8 = 16;
const FLAG_XATTRS: u8 = 32;
const FLAGS_KNOWN: u8 = 63;

fn put_u16_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_u8_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

/// Checks what a writer must refuse and a reader must reject in an entry's
/// own fields (not its order or tree position). Returns why not.
pub fn check_entry_fields(e: &Entry) -> std::result::Result<(), String> {
    check_path_bytes(e.path.as_bytes()).map_err(|w| format!("path {}", w))?;
    if let Some(mode) = e.mode
        && mode > crate::format::MAX_MODE
    {
        return Err(format!("mode {mode:#o} has bits beyond {:#o}", crate::format::MAX_MODE));
    }
    if e.mtime_nanos >= 1_000_000_000 {
        return Err("nanoseconds of the mtime must be below 10^9".into());
    }
    if e.mtime.is_none() && e.mtime_nanos != 0 {
        return Err("nanoseconds without an mtime".into());
    }
    if let Some((u, g)) = &e.owner_names {
        for n in [u, g] {
            if n.len() > 255 || n.contains(&0) {
                return Err("owner names are at most 255 bytes, without NUL".into());
            }
        }
    }
    match &e.kind {
        EntryKind::File => {
            if let Some(extents) = &e.extents {
                let mut end = 0u64;
                for (i, x) in extents.iter().enumerate() {
                    if x.len == 0 {
                        return Err(format!("extent {i} is empty"));
                    }
                    if i > 0 && x.offset < end {
                        return Err(format!("extent {i} overlaps or precedes the one before"));
                    }
                    end = x
                        .offset
                        .checked_add(x.len)
                        .filter(|x_end| *x_end <= e.size)
                        .ok_or_else(|| format!("extent {i} ends past the size {}", e.size))?;
                }
                if extents.len() > u32::MAX as usize {
                    return Err("too many extents".into());
                }
            }
        }
        other => {
            if e.extents.is_some() || e.size != 0 {
                return Err(format!("a {} has no size or extents", other.name()));
            }
            match other {
                EntryKind::Symlink { target }
                    if target.is_empty() || target.len() > MAX_LINK_TARGET_LEN || target.contains(&0) =>
                {
                    return Err("a symbolic link's target is 1-4096 bytes without NUL".into());
                }
                EntryKind::HardLink { target } => {
                    check_path_bytes(target.as_bytes()).map_err(|w| format!("hard link target {w}"))?;
                    if path_cmp(target.as_bytes(), e.path.as_bytes()) != Ordering::Less {
                        return Err(format!("hard link to {target}, which is not an earlier entry"));
                    }
                }
                _ => {}
            }
        }
    }
    if !e.xattrs.is_empty() {
        let mut total = 0usize;
        for (i, (name, value)) in e.xattrs.iter().enumerate() {
            if name.is_empty() || name.len() > 255 || name.contains(&0) {
                return Err("an extended attribute name is 1-255 bytes without NUL".into());
            }
            if i > 0 && e.xattrs[i - 1].0 >= *name {
                return Err("extended attribute names must be strictly increasing".into());
            }
            total += name.len() + value.len();
        }
        if total > MAX_XATTR_BYTES || e.xattrs.len() > usize::from(u16::MAX) {
            return Err("extended attributes exceed 64 KiB".into());
        }
    }
    Ok(())
}

/// Appends entry `e` as source index `source` to a raw index piece. Callers
/// check the fields first ([`check_entry_fields`]); tools that craft
/// archives (test vectors) may not.
pub fn encode_entry(out: &mut Vec<u8>, e: &Entry, source: u16) {
    out.push(e.kind.code());
    out.extend_from_slice(&source.to_le_bytes());
    put_u16_bytes(out, e.path.as_bytes());
    let mut flags = 0u8;
    if e.mode.is_some() {
        flags |= FLAG_MODE;
    }
    if e.owner.is_some() {
        flags |= FLAG_OWNER_IDS;
    }
    if e.owner_names.is_some() {
        flags |= FLAG_OWNER_NAMES;
    }
    if e.mtime.is_some() {
        flags |= FLAG_MTIME;
    }
    if e.extents.is_some() {
        flags |= FLAG_SPARSE;
    }
    if !e.xattrs.is_empty() {
        flags |= FLAG_XATTRS;
    }
    out.push(flags);
    if let Some(mode) = e.mode {
        out.extend_from_slice(&(mode as u16).to_le_bytes());
    }
    if let Some((uid, gid)) = e.owner {
        out.extend_from_slice(&uid.to_le_bytes());
        out.extend_from_slice(&gid.to_le_bytes());
    }
    if let Some((user, group)) = &e.owner_names {
        put_u8_bytes(out, user);
        put_u8_bytes(out, group);
    }
    if let Some(secs) = e.mtime {
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&e.mtime_nanos.to_le_bytes());
    }
    match &e.kind {
        EntryKind::File => {
            out.extend_from_slice(&e.size.to_le_bytes());
            out.extend_from_slice(&e.sha256);
            if let Some(extents) = &e.extents {
                out.extend_from_slice(&(extents.len() as u32).to_le_bytes());
                for x in extents {
                    out.extend_from_slice(&x.offset.to_le_bytes());
                    out.extend_from_slice(&x.len.to_le_bytes());
                }
            }
        }
        EntryKind::Folder => {}
        EntryKind::Symlink { target } => put_u16_bytes(out, target),
        EntryKind::HardLink { target } => put_u16_bytes(out, target.as_bytes()),
    }
    if !e.xattrs.is_empty() {
        out.extend_from_slice(&(e.xattrs.len() as u16).to_le_bytes());
        for (name, value) in &e.xattrs {
            put_u8_bytes(out, name);
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            out.extend_from_slice(value);
        }
    }
}

/// Decodes one entry at the cursor; `offset` is its stream offset. Returns
/// its source index and the entry (its fields checked).
pub(crate) fn decode_entry(c: &mut Cursor<'_>, sources: &[String], offset: u64) -> Result<(u16, Entry)> {
    let at = c.offset();
    let kind = c.u8("entry kind")?;
    let source = c.u16("entry source")?;
    let source_name = sources
        .get(usize::from(source))
        .ok_or_else(|| {
            Error::malformed(
                c_region(c),
                at,
                format!("entry source {source} is not in the source table"),
            )
        })?
        .clone();
    let plen = usize::from(c.u16("path length")?);
    let path = EntryPath::new(c.take(plen, "path")?.to_vec());
    let flags = c.u8("entry flags")?;
    if flags & !FLAGS_KNOWN != 0 {
        return Err(c.error(format!("unknown entry flags {flags:#04x}")));
    }
    let mode = if flags & FLAG_MODE != 0 {
        Some(u32::from(c.u16("mode")?))
    } else {
        None
    };
    let owner = if flags & FLAG_OWNER_IDS != 0 {
        Some((c.u32("uid")?, c.u32("gid")?))
    } else {
        None
    };
    let owner_names = if flags & FLAG_OWNER_NAMES != 0 {
        let n = usize::from(c.u8("user name length")?);
        let user = c.take(n, "user name")?.to_vec();
        let n = usize::from(c.u8("group name length")?);
        let group = c.take(n, "group name")?.to_vec();
        Some((user, group))
    } else {
        None
    };
    let (mtime, mtime_nanos) = if flags & FLAG_MTIME != 0 {
        (Some(c.i64("mtime")?), c.u32("mtime nanoseconds")?)
    } else {
        (None, 0)
    };
    let sparse = flags & FLAG_SPARSE != 0;
    let (kind, size, sha256, extents) = match kind {
        0 => {
            let size = c.u64("size")?;
            let sha = c.array("SHA-256")?;
            let extents = if sparse {
                let n = c.u32("extent count")? as usize;
                if n > c.remaining() / 16 {
                    return Err(c.error(format!("{n} extents cannot fit in the piece")));
                }
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(Extent {
                        offset: c.u64("extent offset")?,
                        len: c.u64("extent length")?,
                    });
                }
                Some(v)
            } else {
                None
            };
            (EntryKind::File, size, sha, extents)
        }
        1..=3 if sparse => return Err(Error::malformed(c_region(c), at, "only a file can be sparse")),
        1 => (EntryKind::Folder, 0, EMPTY_SHA256, None),
        2 => {
            let n = usize::from(c.u16("link target length")?);
            let target = c.take(n, "link target")?.to_vec();
            (EntryKind::Symlink { target }, 0, EMPTY_SHA256, None)
        }
        3 => {
            let n = usize::from(c.u16("hard link target length")?);
            let target = EntryPath::new(c.take(n, "hard link target")?.to_vec());
            (EntryKind::HardLink { target }, 0, EMPTY_SHA256, None)
        }
        other => return Err(Error::malformed(c_region(c), at, format!("unknown entry kind {other}"))),
    };
    let mut xattrs = Vec::new();
    if flags & FLAG_XATTRS != 0 {
        let n = usize::from(c.u16("extended attribute count")?);
        if n == 0 {
            return Err(c.error("extended attributes flagged but none given"));
        }
        for _ in 0..n {
            let len = usize::from(c.u8("xattr name length")?);
            let name = c.take(len, "xattr name")?.to_vec();
            let len = c.u32("xattr value length")? as usize;
            if len > MAX_XATTR_BYTES {
                return Err(c.error("extended attribute value over 64 KiB"));
            }
            let value = c.take(len, "xattr value")?.to_vec();
            xattrs.push((name, value));
        }
    }
    let entry = Entry {
        source: source_name,
        path,
        kind,
        size,
        sha256,
        mode,
        owner,
        owner_names,
        mtime,
        mtime_nanos,
        extents,
        xattrs,
        offset,
    };
    check_entry_fields(&entry)
        .map_err(|why| Error::malformed(c_region(c), at, format!("entry {}: {why}", entry.display_name())))?;
    Ok((source, entry))
}

fn c_region(c: &Cursor<'_>) -> Region {
    c.region()
}

/// The order and tree rules of FORMAT.md §14.5, checked entry by entry with
/// the previous key and a stack of the open folders (bounded by the depth).
#[derive(Clone, Debug, Default)]
pub struct TreeCheck {
    prev: Option<(u16, Vec<u8>)>,
    stack: Vec<Vec<u8>>,
}

impl TreeCheck {
    /// The key of the last entry accepted.
    pub fn last(&self) -> Option<(u16, &[u8])> {
        self.prev.as_ref().map(|(s, p)| (*s, p.as_slice()))
    }

    /// Checks that `(source, path)` comes after the previous entry and that
    /// its parent is an open folder; then records it. Returns why not.
    pub fn check(&mut self, source: u16, path: &[u8], is_folder: bool) -> std::result::Result<(), String> {
        if let Some((ps, pp)) = &self.prev {
            let order = ps.cmp(&source).then_with(|| path_cmp(pp, path));
            if order != Ordering::Less {
                return Err(if order == Ordering::Equal {
                    format!("{} appears twice", crate::entry::escape_bytes(path))
                } else {
                    format!(
                        "{} comes after {} (entries must be in (source, path) order)",
                        crate::entry::escape_bytes(path),
                        crate::entry::escape_bytes(pp)
                    )
                });
            }
            if *ps != source {
                self.stack.clear();
            }
        }
        while self.stack.last().is_some_and(|top| !is_ancestor(top, path)) {
            self.stack.pop();
        }
        match (parent_of(path), self.stack.last()) {
            (None, _) => {}
            (Some(parent), Some(top)) if top.as_slice() == parent => {}
            (Some(parent), _) => {
                return Err(format!(
                    "{} has no folder entry for its parent {} before it (a parent that is a file or link cannot hold entries)",
                    crate::entry::escape_bytes(path),
                    crate::entry::escape_bytes(parent)
                ));
            }
        }
        if is_folder {
            self.stack.push(path.to_vec());
        }
        self.prev = Some((source, path.to_vec()));
        Ok(())
    }

    /// The open folders' paths, outermost first.
    pub fn open_folders(&self) -> &[Vec<u8>] {
        &self.stack
    }
}

/// Where one index piece is and what it holds (FORMAT.md §14.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PieceRecord {
    /// Offset of the sealed piece.
    pub offset: u64,
    /// Sealed length.
    pub sealed_len: u32,
    /// Data frames before it in the file.
    pub frames_before: u64,
    /// SHA-256 of the sealed piece.
    pub sha256: [u8; 32],
    /// Its entry count.
    pub entries: u32,
    /// Stream offset of its first entry.
    pub stream_offset: u64,
    /// Its first entry's source index.
    pub first_source: u16,
    /// Its first entry's path.
    pub first_path: Vec<u8>,
}

/// The root: frame table, sources and piece records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Root {
    /// Total stream bytes `T`.
    pub data_len: u64,
    /// Sealed length of each data frame.
    pub frame_lens: Vec<u32>,
    /// Source names, by index.
    pub sources: Vec<String>,
    /// Total entries `E`.
    pub entry_count: u64,
    /// The pieces, in file order.
    pub pieces: Vec<PieceRecord>,
}

impl Root {
    /// Encodes the raw root.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + 4 * self.frame_lens.len() + 96 * self.pieces.len());
        out.extend_from_slice(&self.data_len.to_le_bytes());
        out.extend_from_slice(&(self.frame_lens.len() as u64).to_le_bytes());
        for l in &self.frame_lens {
            out.extend_from_slice(&l.to_le_bytes());
        }
        out.extend_from_slice(&(self.sources.len() as u16).to_le_bytes());
        for s in &self.sources {
            put_u8_bytes(&mut out, s.as_bytes());
            out.push(0);
        }
        out.extend_from_slice(&self.entry_count.to_le_bytes());
        out.extend_from_slice(&(self.pieces.len() as u32).to_le_bytes());
        for p in &self.pieces {
            out.extend_from_slice(&p.offset.to_le_bytes());
            out.extend_from_slice(&p.sealed_len.to_le_bytes());
            out.extend_from_slice(&p.frames_before.to_le_bytes());
            out.extend_from_slice(&p.sha256);
            out.extend_from_slice(&p.entries.to_le_bytes());
            out.extend_from_slice(&p.stream_offset.to_le_bytes());
            out.extend_from_slice(&p.first_source.to_le_bytes());
            put_u16_bytes(&mut out, &p.first_path);
        }
        out
    }

    /// Decodes and checks a raw root against the frame size (FORMAT.md §14.6;
    /// the positions are checked by [`Root::layout`]).
    pub fn decode(body: &[u8], frame_size: u32) -> Result<Root> {
        let mut c = Cursor::new(body, Region::Root, 0);
        let data_len = c.u64("data length")?;
        let at = c.offset();
        let n = c.u64("frame count")?;
        let f = u64::from(frame_size);
        if n != data_len.div_ceil(f) {
            return Err(Error::malformed(
                Region::Root,
                at,
                format!("{n} frames for {data_len} bytes in frames of {f}"),
            ));
        }
        if n > c.remaining() as u64 / 4 {
            return Err(c.error(format!("{n} frame lengths cannot fit in the root")));
        }
        let mut frame_lens = Vec::with_capacity(n as usize);
        for i in 0..n {
            let at = c.offset();
            let l = c.u32("frame length")?;
            let plain = if i + 1 == n { data_len - i * f } else { f };
            if u64::from(l) < MIN_SEALED_FRAME_LEN as u64 || u64::from(l) > plain + 17 {
                return Err(Error::malformed(
                    Region::Root,
                    at,
                    format!("frame {i} sealed length {l} impossible for {plain} bytes"),
                ));
            }
            frame_lens.push(l);
        }
        let at = c.offset();
        let s = usize::from(c.u16("source count")?);
        if s > MAX_SOURCES {
            return Err(Error::malformed(
                Region::Root,
                at,
                format!("{s} sources, at most {MAX_SOURCES}"),
            ));
        }
        let mut sources: Vec<String> = Vec::with_capacity(s);
        for _ in 0..s {
            let at = c.offset();
            let len = usize::from(c.u8("source name length")?);
            let name = String::from_utf8(c.take(len, "source name")?.to_vec())
                .map_err(|_| Error::malformed(Region::Root, at, "source name is not UTF-8"))?;
            check_source_name(&name).map_err(|e| Error::malformed(Region::Root, at, e.to_string()))?;
            if sources.contains(&name) {
                return Err(Error::malformed(
                    Region::Root,
                    at,
                    format!("source {name} listed twice"),
                ));
            }
            if c.u8("source flags")? != 0 {
                return Err(Error::malformed(Region::Root, at, "unknown source flags"));
            }
            sources.push(name);
        }
        let entry_count = c.u64("entry count")?;
        let at = c.offset();
        let p = c.u32("piece count")? as usize;
        if p > c.remaining() / 68 {
            return Err(Error::malformed(
                Region::Root,
                at,
                format!("{p} pieces cannot fit in the root"),
            ));
        }
        let mut pieces: Vec<PieceRecord> = Vec::with_capacity(p);
        let mut total = 0u64;
        for i in 0..p {
            let at = c.offset();
            let rec = PieceRecord {
                offset: c.u64("piece offset")?,
                sealed_len: c.u32("piece length")?,
                frames_before: c.u64("frames before the piece")?,
                sha256: c.array("piece SHA-256")?,
                entries: c.u32("piece entry count")?,
                stream_offset: c.u64("piece stream offset")?,
                first_source: c.u16("first source")?,
                first_path: {
                    let len = usize::from(c.u16("first path length")?);
                    c.take(len, "first path")?.to_vec()
                },
            };
            let bad = |why: String| Err(Error::malformed(Region::Root, at, format!("piece {i}: {why}")));
            if !(MIN_SEALED_FRAME_LEN as u64..=MAX_SEALED_PIECE_LEN).contains(&u64::from(rec.sealed_len)) {
                return bad(format!("sealed length {} out of bounds", rec.sealed_len));
            }
            if rec.entries == 0 {
                return bad("no entries".into());
            }
            if rec.frames_before > n {
                return bad(format!("{} frames before it, of {n}", rec.frames_before));
            }
            if usize::from(rec.first_source) >= s {
                return bad(format!("first source {} not in the table", rec.first_source));
            }
            if rec.stream_offset > data_len {
                return bad("stream offset past the data".into());
            }
            if let Some(prev) = pieces.last() {
                if rec.frames_before < prev.frames_before {
                    return bad("frames before it decrease".into());
                }
                if rec.stream_offset < prev.stream_offset {
                    return bad("stream offset decreases".into());
                }
                let order = prev
                    .first_source
                    .cmp(&rec.first_source)
                    .then_with(|| path_cmp(&prev.first_path, &rec.first_path));
                if order != Ordering::Less {
                    return bad("first keys not increasing".into());
                }
            } else if rec.stream_offset != 0 {
                return bad("the first piece's stream offset is not 0".into());
            }
            total += u64::from(rec.entries);
            pieces.push(rec);
        }
        c.expect_end("root")?;
        if pieces.is_empty() && data_len != 0 {
            return Err(Error::malformed(
                Region::Root,
                0,
                "data but no index pieces to say whose",
            ));
        }
        if total != entry_count {
            return Err(Error::malformed(
                Region::Root,
                0,
                format!("pieces hold {total} entries, the root says {entry_count}"),
            ));
        }
        Ok(Root {
            data_len,
            frame_lens,
            sources,
            entry_count,
            pieces,
        })
    }

    /// Checks that frames and pieces tile the file from `header_len` to
    /// `root_offset` and returns each data frame's offset and chunk number.
    pub fn layout(&self, header_len: u64, root_offset: u64) -> Result<Layout> {
        let mut frame_offsets = Vec::with_capacity(self.frame_lens.len());
        let mut frame_counters = Vec::with_capacity(self.frame_lens.len());
        let mut pos = header_len;
        let mut counter = 0u64;
        let mut pieces = self.pieces.iter().enumerate().peekable();
        for (k, len) in self.frame_lens.iter().enumerate() {
            while let Some((i, p)) = pieces.next_if(|(_, p)| p.frames_before <= k as u64) {
                check_piece_at(i, p, pos)?;
                pos += u64::from(p.sealed_len);
                counter += 1;
            }
            frame_offsets.push(pos);
            frame_counters.push(counter);
            pos += u64::from(*len);
            counter += 1;
        }
        for (i, p) in pieces {
            check_piece_at(i, p, pos)?;
            pos += u64::from(p.sealed_len);
            counter += 1;
        }
        if pos != root_offset {
            return Err(Error::malformed(
                Region::Root,
                0,
                format!("frames and pieces end at byte {pos}, the root starts at {root_offset}"),
            ));
        }
        Ok(Layout {
            frame_offsets,
            frame_counters,
            root_counter: counter,
        })
    }

    /// The chunk number of piece `i`.
    pub fn piece_counter(&self, i: usize) -> u64 {
        self.pieces.get(i).map_or(0, |p| p.frames_before + i as u64)
    }
}

fn check_piece_at(i: usize, p: &PieceRecord, pos: u64) -> Result<()> {
    if p.offset == pos {
        Ok(())
    } else {
        Err(Error::malformed(
            Region::Root,
            0,
            format!("piece {i} is recorded at byte {}, its place is byte {pos}", p.offset),
        ))
    }
}

/// Where every data frame lies, from [`Root::layout`].
#[derive(Clone, Debug, Default)]
pub struct Layout {
    /// Offset of each data frame.
    pub frame_offsets: Vec<u64>,
    /// Chunk number of each data frame.
    pub frame_counters: Vec<u64>,
    /// Chunk number of the root.
    pub root_counter: u64,
}

/// Decodes a raw index piece against its record: entry count, first key and
/// stream offsets; returns its entries and their source indices.
pub fn decode_piece(
    body: &[u8],
    index: usize,
    record: &PieceRecord,
    next_stream_offset: u64,
    sources: &[String],
) -> Result<Vec<(u16, Entry)>> {
    let region = Region::Piece(index as u64);
    let mut c = Cursor::new(body, region, 0);
    let n = c.u32("entry count")?;
    if n != record.entries {
        return Err(Error::malformed(
            region,
            0,
            format!("{n} entries, the root says {}", record.entries),
        ));
    }
    let mut out = Vec::with_capacity((n as usize).min(body.len() / 8));
    let mut offset = record.stream_offset;
    for _ in 0..n {
        let (s, e) = decode_entry(&mut c, sources, offset)?;
        offset = offset
            .checked_add(e.stream_len())
            .ok_or_else(|| Error::malformed(region, c.offset(), "stream offsets overflow"))?;
        out.push((s, e));
    }
    c.expect_end("index piece")?;
    if let Some((s, first)) = out.first()
        && (*s != record.first_source || first.path.as_bytes() != record.first_path.as_slice())
    {
        return Err(Error::malformed(region, 4, "first entry is not the one the root names"));
    }
    if offset != next_stream_offset {
        return Err(Error::malformed(
            region,
            0,
            format!("entries end at stream byte {offset}, the next piece starts at {next_stream_offset}"),
        ));
    }
    Ok(out)
}

/// The fixed-size version 2 footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FooterV2 {
    /// Byte offset of the sealed root in the archive.
    pub root_offset: u64,
    /// Length of the sealed root in bytes.
    pub root_len: u32,
    /// Signature block length (1 or 65).
    pub signature_len: u32,
    /// Chunk count `M`.
    pub chunk_count: u64,
    /// Data frame count `N`.
    pub frame_count: u64,
    /// The archive's id, as in the header.
    pub archive_id: ArchiveId,
}

impl FooterV2 {
    /// The 64 bytes that end a version 2 archive (what its decoder reads
    /// back).
    pub fn encode(&self) -> [u8; FOOTER_LEN_V2] {
        let mut out = [0u8; FOOTER_LEN_V2];
        out[0..8].copy_from_slice(&self.root_offset.to_le_bytes());
        out[8..12].copy_from_slice(&self.root_len.to_le_bytes());
        out[12..16].copy_from_slice(&self.signature_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.chunk_count.to_le_bytes());
        out[24..32].copy_from_slice(&self.frame_count.to_le_bytes());
        out[32..48].copy_from_slice(&self.archive_id.0);
        out[56..64].copy_from_slice(&FOOTER_MAGIC_V2);
        out
    }

    /// Decodes the last 64 bytes of an archive of `archive_len` bytes and
    /// checks that its positions fit that length exactly.
    pub fn decode(bytes: &[u8], archive_len: u64) -> Result<FooterV2> {
        let base = archive_len.saturating_sub(FOOTER_LEN_V2 as u64);
        let mut c = Cursor::new(bytes, Region::Footer, base);
        if bytes.len() != FOOTER_LEN_V2 {
            return Err(c.error(format!("footer is {FOOTER_LEN_V2} bytes, got {}", bytes.len())));
        }
        let f = FooterV2 {
            root_offset: c.u64("root offset")?,
            root_len: c.u32("root length")?,
            signature_len: c.u32("signature block length")?,
            chunk_count: c.u64("chunk count")?,
            frame_count: c.u64("frame count")?,
            archive_id: ArchiveId(c.array("archive id")?),
        };
        if c.u64("reserved")? != 0 {
            return Err(Error::malformed(
                Region::Footer,
                base + 48,
                "reserved footer bytes are not 0",
            ));
        }
        if c.array::<8>("footer magic")? != FOOTER_MAGIC_V2 {
            return Err(Error::malformed(Region::Footer, base + 56, "no footer magic"));
        }
        if !(MIN_SEALED_FRAME_LEN as u64..=MAX_SEALED_ROOT_LEN).contains(&u64::from(f.root_len)) {
            return Err(Error::malformed(
                Region::Footer,
                base + 8,
                format!("root length {} out of bounds", f.root_len),
            ));
        }
        if f.signature_len != 1 && f.signature_len != 1 + SIGNATURE_LEN as u32 {
            return Err(Error::malformed(
                Region::Footer,
                base + 12,
                format!("signature block of {} bytes (1 or 65)", f.signature_len),
            ));
        }
        if f.chunk_count <= f.frame_count {
            return Err(Error::malformed(
                Region::Footer,
                base + 16,
                "fewer chunks than frames + root",
            ));
        }
        let end = f
            .root_offset
            .checked_add(u64::from(f.root_len))
            .and_then(|e| e.checked_add(u64::from(f.signature_len)))
            .and_then(|e| e.checked_add(FOOTER_LEN_V2 as u64));
        if end != Some(archive_len) {
            return Err(Error::malformed(
                Region::Archive,
                archive_len,
                format!(
                    "archive is {archive_len} bytes but its footer says root at {} + {} bytes + {} + {FOOTER_LEN_V2}",
                    f.root_offset, f.root_len, f.signature_len
                ),
            ));
        }
        Ok(f)
    }
}

/// The message an archive's signature is over (FORMAT.md §14.7).
pub fn signature_message(header_digest: &[u8; 32], sealed_root: &[u8], footer: &[u8; FOOTER_LEN_V2]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 32 + 32 + 48);
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(header_digest);
    m.extend_from_slice(&Sha256::digest(sealed_root));
    m.extend_from_slice(&footer[..48]);
    m
}
