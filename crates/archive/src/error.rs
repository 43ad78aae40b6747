//! The crate's one error type.

use std::fmt;
use std::io;

/// Where in an archive a structural or authentication failure was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Region {
    /// The header (magic, version, parameters, recipient stanzas, header MAC).
    Header,
    /// Data frame number `n` (counted from 0).
    Frame(u64),
    /// The sealed index (version 1).
    Index,
    /// The root (version 2): frame table, sources, index piece records.
    Root,
    /// Index piece number `n` (version 2, counted from 0).
    Piece(u64),
    /// The signature block (version 2).
    Signature,
    /// The fixed-size footer.
    Footer,
    /// The archive as a whole (its length, or bytes after the footer).
    Archive,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Region::Header => f.write_str("header"),
            Region::Frame(n) => write!(f, "frame {n}"),
            Region::Index => f.write_str("index"),
            Region::Root => f.write_str("root"),
            Region::Piece(n) => write!(f, "piece {n}"),
            Region::Signature => f.write_str("signature"),
            Region::Footer => f.write_str("footer"),
            Region::Archive => f.write_str("archive"),
        }
    }
}

/// What kind of failure an [`Error`] is, for callers that branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not a well-formed archive of a version we read: damaged,
    /// truncated, or not an archive at all.
    Malformed,
    /// The bytes are well-formed but do not authenticate: damaged, tampered
    /// with, or put together from several archives.
    Damaged,
    /// No key to open it: no identity matches a recipient, or a key is unusable.
    Key,
    /// Reading the archive, reading an entry's source, or writing the output failed.
    Io,
    /// The caller used the API in a way it does not allow (bad entry name,
    /// duplicate entry, data outside an entry, …).
    Usage,
    /// The archive is well-formed and authentic to its key, but not signed by
    /// a signer the reader trusts (unsigned, or another signer).
    Untrusted,
}

/// Every failure of this crate.
///
/// Structural errors carry the byte offset where the archive stopped making
/// sense. Authentication failures are deliberately coarse: they name the region
/// that failed, never why (a wrong key and a flipped bit look the same).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The magic bytes are missing: this is not an ibs archive.
    #[error("not an ibs archive: bad magic at byte {offset}")]
    NotAnArchive {
        /// Byte offset of the magic that did not match.
        offset: u64,
    },
    /// The archive was written in a format version this reader does not know.
    #[error(
        "archive format version {found} is not supported (this reader reads versions 1 to {supported}); use a newer ibs"
    )]
    UnsupportedVersion {
        /// Version found in the header.
        found: u16,
        /// The newest version this library reads (and the one it writes).
        supported: u16,
    },
    /// The bytes are not well-formed.
    #[error("malformed {} at byte {offset}: {reason}", malformed_what(region))]
    Malformed {
        /// Region that is malformed.
        region: Region,
        /// Byte offset in the archive (for the index: in its decrypted body).
        offset: u64,
        /// Which rule of the format the bytes break.
        reason: String,
    },
    /// A MAC, tag or key commitment did not verify.
    #[error("archive {region} failed authentication: {}", authentication_cause(region))]
    Authentication {
        /// Region that failed.
        region: Region,
    },
    /// An entry's content does not match the SHA-256 recorded in the index.
    #[error("entry {source_name}/{path}: content does not match its recorded SHA-256")]
    ContentMismatch {
        /// Source of the entry.
        source_name: String,
        /// Path of the entry within its source.
        path: String,
    },
    /// Wrapping or unwrapping the file key failed (no matching identity, bad
    /// certificate, …); see the inner error.
    #[error(transparent)]
    Envelope(#[from] ibs_envelope::Error),
    /// Reading an entry's data from its source failed while writing.
    #[error("reading entry {source_name}/{path}: {error}")]
    EntrySource {
        /// Source of the entry.
        source_name: String,
        /// Path of the entry within its source.
        path: String,
        /// What the entry's reader failed with (the file vanished, an I/O
        /// error, …).
        #[source]
        error: io::Error,
    },
    /// Writing the archive to its sink failed.
    #[error("writing the archive: {0}")]
    Sink(#[source] io::Error),
    /// A byte source answered a range read with fewer (or more) bytes than
    /// asked for. (A source that fails outright gives its own error:
    /// [`ReadError::Read`].)
    #[error("reading {len} bytes of the archive at byte {offset}: got {got} bytes")]
    ShortRead {
        /// Byte offset in the archive of the range asked for.
        offset: u64,
        /// Bytes asked for.
        len: u64,
        /// Bytes the source returned.
        got: u64,
    },
    /// The caller broke a rule of the API; the message says which.
    #[error("{0}")]
    Usage(String),
    /// Compression or decompression failed where the data had already authenticated
    /// (a producer bug, not damage).
    #[error("{region}: zstd failed: {reason}")]
    Compression {
        /// Region being (de)compressed.
        region: Region,
        /// zstd's message.
        reason: String,
    },
    /// A compression worker thread stopped unexpectedly.
    #[error("a compression worker stopped unexpectedly")]
    WorkerLost,
    /// A compression worker thread could not be started.
    #[error("cannot start a compression worker thread: {0}")]
    WorkerSpawn(#[source] io::Error),
    /// The archive's signature does not verify with the key its header names:
    /// it was altered after it was signed, or forged.
    #[error(
        "the archive's signature by signer {found} does not verify: the archive was changed after it was signed (damaged on the storage location, or forged)"
    )]
    BadSignature {
        /// The fingerprint of the key the header names.
        found: ibs_envelope::SignerFingerprint,
    },
    /// The archive is not signed by a trusted signer.
    #[error("{}", untrusted_message(found))]
    Untrusted {
        /// The signer found (`None`: the archive is not signed).
        found: Option<ibs_envelope::SignerFingerprint>,
    },
}

/// What a malformed region is called in a message ("malformed archive
/// footer", and the archive as a whole just "archive").
fn malformed_what(region: &Region) -> String {
    match region {
        Region::Archive => "archive".into(),
        r => format!("archive {r}"),
    }
}

/// Why a region fails authentication. Only the header's MAC depends on the
/// key in hand; every later region is authenticated under the file key the
/// header's commitment proved, so its failure is damage, not a wrong key.
fn authentication_cause(region: &Region) -> &'static str {
    match region {
        Region::Header => "the archive is damaged or was tampered with, or the key is wrong",
        _ => "the archive is damaged or was tampered with (the key is right: it opened the header)",
    }
}

fn untrusted_message(found: &Option<ibs_envelope::SignerFingerprint>) -> String {
    match found {
        None => "the archive is not signed, and only archives signed by a trusted signer are accepted \
                 (a backup made by someone other than the controller, by a controller not given its signing \
                 key, or — format version 1 only — by an older release)"
            .into(),
        Some(fp) => format!("the archive is signed by {fp}, which is not a trusted signer"),
    }
}

impl Error {
    /// The kind of failure, for branching.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotAnArchive { .. } | Error::UnsupportedVersion { .. } | Error::Malformed { .. } => {
                ErrorKind::Malformed
            }
            Error::Authentication { .. } | Error::ContentMismatch { .. } => ErrorKind::Damaged,
            Error::Envelope(ibs_envelope::Error::DecryptionFailed) => ErrorKind::Damaged,
            Error::Envelope(_) => ErrorKind::Key,
            Error::EntrySource { .. } | Error::Sink(_) | Error::ShortRead { .. } => ErrorKind::Io,
            Error::Usage(_) => ErrorKind::Usage,
            Error::Compression { .. } => ErrorKind::Damaged,
            Error::WorkerLost | Error::WorkerSpawn(_) => ErrorKind::Io,
            Error::BadSignature { .. } => ErrorKind::Damaged,
            Error::Untrusted { .. } => ErrorKind::Untrusted,
        }
    }

    pub(crate) fn malformed(region: Region, offset: u64, reason: impl Into<String>) -> Self {
        Error::Malformed {
            region,
            offset,
            reason: reason.into(),
        }
    }
}

/// A failure of the reader ([`ArchiveReader`](crate::ArchiveReader),
/// [`inspect`](crate::inspect), [`check_signature`](crate::check_signature))
/// over a [`RangeRead`](crate::RangeRead) source whose errors are `E`.
///
/// Either the source failed, and its error comes back as it was, typed (a
/// storage target's failure class survives without a downcast), or anything
/// else did: the archive's bytes, the key, the signer, the caller. There is
/// no third case, so the enum is exhaustive.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// Anything but the source: see [`Error`].
    #[error(transparent)]
    Archive(#[from] Error),
    /// Reading a byte range of the archive (or its size: `len` 0) failed.
    #[error("reading {len} bytes of the archive at byte {offset}: {error}")]
    Read {
        /// Byte offset in the archive of the range that failed.
        offset: u64,
        /// Bytes asked for (0 when the size was asked for).
        len: u64,
        /// The source's error, as it was.
        #[source]
        error: E,
    },
}

impl<E> ReadError<E> {
    /// The kind of failure, for branching: [`ErrorKind::Io`] when the source failed.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReadError::Archive(e) => e.kind(),
            ReadError::Read { .. } => ErrorKind::Io,
        }
    }

    /// The archive's error, when it was not the source that failed.
    pub fn archive(&self) -> Option<&Error> {
        match self {
            ReadError::Archive(e) => Some(e),
            ReadError::Read { .. } => None,
        }
    }
}

/// A reader over a source that cannot fail (a buffer in memory) fails only
/// with an [`Error`].
impl From<ReadError<std::convert::Infallible>> for Error {
    fn from(e: ReadError<std::convert::Infallible>) -> Self {
        match e {
            ReadError::Archive(e) => e,
            ReadError::Read { error, .. } => match error {},
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
