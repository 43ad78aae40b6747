//! Entries as readers see them, and the rules of their names.
//!
//! One [`Entry`] type serves both format versions: a version 1 entry is a
//! regular file with a UTF-8 name, a mode and an mtime to the second;
//! version 2 (FORMAT.md §14) adds folders, symbolic and hard links, names as
//! bytes, owners, nanoseconds, sparse extents and extended attributes.

use std::cmp::Ordering;
use std::fmt;

/// An entry's path within its source: bytes (POSIX names), `/`-separated.
///
/// A path may hold any byte but NUL — invalid UTF-8, newlines, tabs,
/// backslashes. [`Display`](fmt::Display) escapes what is not printable
/// UTF-8 (FORMAT.md §14.5): a backslash as `\\`, `\n`, `\t`, `\r`, and every
/// other control character or byte of invalid UTF-8 as `\xNN`. Compare with
/// a `&str` directly (`entry.path == "ca/root.cer"`).
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct EntryPath(Vec<u8>);

impl EntryPath {
    /// A path from its bytes (checked by the writer and reader, not here).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        EntryPath(bytes.into())
    }

    /// The path's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path as UTF-8, when it is.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The bytes, moved out.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The path as an OS string (its bytes, unchanged).
    #[cfg(unix)]
    pub fn as_os_str(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(&self.0)
    }

    /// The `/`-separated segments.
    pub fn segments(&self) -> impl Iterator<Item = &[u8]> {
        self.0.split(|b| *b == b'/')
    }

    /// The parent path (all but the last segment), if the path has one.
    pub fn parent(&self) -> Option<&[u8]> {
        parent_of(&self.0)
    }

    /// Whether `self` is a strict ancestor folder path of `other` (`a` of `a/b/c`).
    pub fn is_ancestor_of(&self, other: &[u8]) -> bool {
        is_ancestor(&self.0, other)
    }
}

pub(crate) fn parent_of(path: &[u8]) -> Option<&[u8]> {
    path.iter().rposition(|b| *b == b'/').map(|i| &path[..i])
}

pub(crate) fn is_ancestor(ancestor: &[u8], path: &[u8]) -> bool {
    path.len() > ancestor.len() && path.starts_with(ancestor) && path[ancestor.len()] == b'/'
}

/// Compares two paths in key order (FORMAT.md §14.5): segment by segment,
/// each as bytes, a path before the longer paths it is a prefix of — the
/// bytes compared with `/` as the lowest byte. `a` < `a/b` < `a-b`.
pub fn path_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let map = |x: &u8| if *x == b'/' { 0 } else { *x };
    a.iter().map(map).cmp(b.iter().map(map))
}

/// Writes `bytes` escaped for display (FORMAT.md §14.5).
pub(crate) fn write_escaped(f: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(f, "\\x{b:02x}")?;
                    }
                }
                c => f.write_char(c)?,
            }
        }
        for b in chunk.invalid() {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

/// `bytes` escaped for display, as a `String`.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    let _ = write_escaped(&mut s, bytes);
    s
}

impl fmt::Display for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(f, &self.0)
    }
}

impl fmt::Debug for EntryPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl From<&str> for EntryPath {
    fn from(s: &str) -> Self {
        EntryPath(s.as_bytes().to_vec())
    }
}

impl From<String> for EntryPath {
    fn from(s: String) -> Self {
        EntryPath(s.into_bytes())
    }
}

impl From<&String> for EntryPath {
    fn from(s: &String) -> Self {
        EntryPath(s.as_bytes().to_vec())
    }
}

impl From<Vec<u8>> for EntryPath {
    fn from(b: Vec<u8>) -> Self {
        EntryPath(b)
    }
}

impl From<&[u8]> for EntryPath {
    fn from(b: &[u8]) -> Self {
        EntryPath(b.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for EntryPath {
    fn from(b: &[u8; N]) -> Self {
        EntryPath(b.to_vec())
    }
}

impl From<&EntryPath> for EntryPath {
    fn from(p: &EntryPath) -> Self {
        p.clone()
    }
}

impl PartialEq<str> for EntryPath {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for EntryPath {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<String> for EntryPath {
    fn eq(&self, other: &String) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<[u8]> for EntryPath {
    fn eq(&self, other: &[u8]) -> bool {
        self.0 == other
    }
}

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (its content is in the data stream).
    File,
    /// A folder: no data of its own; the entries under its path are its
    /// contents.
    Folder,
    /// A symbolic link; the target is any non-empty bytes without NUL,
    /// restored as is and never followed.
    Symlink {
        /// The link's target.
        target: Vec<u8>,
    },
    /// A second name of an earlier file entry of the same source.
    HardLink {
        /// Path of the file entry it names (same source, earlier in the
        /// archive).
        target: EntryPath,
    },
}

impl EntryKind {
    /// The kind's byte in a version 2 entry.
    pub fn code(&self) -> u8 {
        match self {
            EntryKind::File => 0,
            EntryKind::Folder => 1,
            EntryKind::Symlink { .. } => 2,
            EntryKind::HardLink { .. } => 3,
        }
    }

    /// `file`, `folder`, `symlink` or `hardlink`.
    pub fn name(&self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Folder => "folder",
            EntryKind::Symlink { .. } => "symlink",
            EntryKind::HardLink { .. } => "hardlink",
        }
    }
}

/// A run of a sparse file's data: `len` bytes at `offset`; everything
/// outside the extents is a hole (zeros).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the file.
    pub offset: u64,
    /// Length in bytes (> 0).
    pub len: u64,
}

/// SHA-256 of no bytes: what an entry without data records.
pub const EMPTY_SHA256: [u8; 32] = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41,
    0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// One named entry of one backup source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The backup source it belongs to (`identity`, `ca`, `key-vault`, …).
    pub source: String,
    /// Its path within the source: relative, `/`-separated (rules in
    /// [`check_path_bytes`]).
    pub path: EntryPath,
    /// File, folder, symbolic link or hard link.
    pub kind: EntryKind,
    /// A file's logical size in bytes (0 for the other kinds).
    pub size: u64,
    /// SHA-256 of the entry's stream bytes (a file's content, or its data
    /// extents' content when sparse; [`EMPTY_SHA256`] for the other kinds).
    pub sha256: [u8; 32],
    /// The low 12 bits of `st_mode` (permissions, sticky, setgid, setuid), if recorded.
    pub mode: Option<u32>,
    /// Owner user and group ids, if recorded.
    pub owner: Option<(u32, u32)>,
    /// Owner user and group names, if recorded (each may be empty: unknown).
    pub owner_names: Option<(Vec<u8>, Vec<u8>)>,
    /// Modification time, Unix seconds (negative before 1970), if recorded.
    pub mtime: Option<i64>,
    /// Nanoseconds of the modification time (`< 1_000_000_000`; 0 in version 1).
    pub mtime_nanos: u32,
    /// A sparse file's data extents; `None` for a dense file (one extent `[0, size)`).
    pub extents: Option<Vec<Extent>>,
    /// Extended attributes (name, value), names in increasing byte order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Offset of its first stream byte in the archive's logical data stream.
    pub offset: u64,
}

impl Entry {
    /// A regular file entry with no metadata (what version 1 holds at least).
    pub fn file(source: impl Into<String>, path: impl Into<EntryPath>, size: u64, sha256: [u8; 32]) -> Self {
        Entry {
            source: source.into(),
            path: path.into(),
            kind: EntryKind::File,
            size,
            sha256,
            mode: None,
            owner: None,
            owner_names: None,
            mtime: None,
            mtime_nanos: 0,
            extents: None,
            xattrs: Vec::new(),
            offset: 0,
        }
    }

    /// Whether `pieces`, in order, are this entry's stream bytes: their
    /// SHA-256 against the one recorded ([`Error::ContentMismatch`](crate::Error::ContentMismatch) naming
    /// the entry if not). For a reader that took the bytes unchecked
    /// ([`ArchiveReader::entry_stream_unchecked`](crate::ArchiveReader::entry_stream_unchecked))
    /// and checks them elsewhere, e.g. on another thread.
    pub fn check_content<P: AsRef<[u8]>>(&self, pieces: impl IntoIterator<Item = P>) -> crate::Result<()> {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for piece in pieces {
            hasher.update(piece.as_ref());
        }
        self.check_digest(hasher.finalize().into())
    }

    /// [`Error::ContentMismatch`](crate::Error::ContentMismatch) naming
    /// this entry unless `got` is its recorded SHA-256.
    pub(crate) fn check_digest(&self, got: [u8; 32]) -> crate::Result<()> {
        if got == self.sha256 {
            Ok(())
        } else {
            Err(crate::Error::ContentMismatch {
                source_name: self.source.clone(),
                path: self.path.to_string(),
            })
        }
    }

    /// Bytes of this entry in the data stream: a file's size, the sum of a
    /// sparse file's extents, 0 for the other kinds.
    pub fn stream_len(&self) -> u64 {
        match (&self.kind, &self.extents) {
            (EntryKind::File, None) => self.size,
            (EntryKind::File, Some(x)) => x.iter().map(|e| e.len).sum(),
            _ => 0,
        }
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        self.kind == EntryKind::File
    }

    /// The data frames holding this entry's stream bytes (empty when it has none).
    pub fn frames(&self, frame_size: u32) -> std::ops::Range<u64> {
        let len = self.stream_len();
        if len == 0 {
            return 0..0;
        }
        let f = u64::from(frame_size);
        self.offset / f..(self.offset + len - 1) / f + 1
    }

    /// `source/path`, escaped for display.
    pub fn display_name(&self) -> String {
        format!("{}/{}", self.source, self.path)
    }

    /// Checks the source name and path against the rules of the version the
    /// entry came from (a reader calls this before using a path on a file
    /// system; the decoders already have).
    pub fn check_names(&self) -> crate::Result<()> {
        crate::format::check_source_name(&self.source)?;
        check_path_bytes(self.path.as_bytes())
            .map_err(|why| crate::Error::Usage(format!("entry path {} {why}", self.path)))
    }
}

/// Longest path segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 255;

/// The version 2 path rules (FORMAT.md §14.5): 1–4096 bytes, `/`-separated,
/// no empty, `.` or `..` segment, none over 255 bytes, no NUL. Returns why not.
pub fn check_path_bytes(path: &[u8]) -> std::result::Result<(), &'static str> {
    if path.is_empty() || path.len() > crate::format::MAX_PATH_LEN {
        return Err("must be 1-4096 bytes");
    }
    if path.contains(&0) {
        return Err("contains a NUL byte");
    }
    for seg in path.split(|b| *b == b'/') {
        if seg.is_empty() || seg == b"." || seg == b".." {
            return Err("must be relative with no empty, '.' or '..' segment");
        }
        if seg.len() > MAX_SEGMENT_LEN {
            return Err("has a segment longer than 255 bytes");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn key_order_is_depth_first() {
        let mut v: Vec<&[u8]> = vec![b"a-b", b"a/c/d", b"a", b"a/b", b"b", b"a/c"];
        v.sort_by(|a, b| path_cmp(a, b));
        assert_eq!(v, vec![&b"a"[..], b"a/b", b"a/c", b"a/c/d", b"a-b", b"b"]);
    }

    #[test]
    fn display_escapes_what_is_not_printable() {
        let p = EntryPath::new(b"bad\xff\n\t\\x\x7f\xc2\x85\xc3\xa9.txt".to_vec());
        assert_eq!(p.to_string(), "bad\\xff\\n\\t\\\\x\\x7f\\xc2\\x85\u{e9}.txt");
        assert_eq!(EntryPath::from("ca/root.cer"), "ca/root.cer");
    }

    #[test]
    fn path_rules_on_bytes() {
        assert!(check_path_bytes(b"a\xff/b\nc\\d").is_ok());
        for bad in [&b""[..], b"/a", b"a//b", b"a/./b", b"..", b"a/\0", b"a/"] {
            assert!(check_path_bytes(bad).is_err(), "{bad:?}");
        }
        assert!(check_path_bytes(&[b'x'; 255]).is_ok());
        assert!(check_path_bytes(&[b'x'; 256]).is_err());
    }

    #[test]
    fn empty_sha256_is_right() {
        assert_eq!(<[u8; 32]>::from(Sha256::digest(b"")), EMPTY_SHA256);
    }
}
