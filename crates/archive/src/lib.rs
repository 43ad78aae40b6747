//! The `ibs` backup archive: one self-contained, append-only byte stream per
//! backup, compressed with zstd and sealed with AES-256-GCM under a file key
//! wrapped to the operator's X.509 certificate(s), and (format version 2)
//! signed by the controller's Ed25519 key.
//!
//! ```
//! use ibs_archive::{blocking, ArchiveWriter, EntryMeta, WriterOptions};
//! use ibs_envelope::{keygen, Certificate, Identity, Password};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let password = Password::new("operator secret");
//! let pair = keygen::generate(&keygen::KeygenOptions::new("backup", 1_700_000_000), &password)?;
//!
//! // Backing up needs only the certificate.
//! let cert = Certificate::parse(&pair.cer)?;
//! let mut writer = ArchiveWriter::new(Vec::new(), &[&cert], WriterOptions::default().producer_version("1.2408.0"))?;
//! writer.add_entry(EntryMeta::new("ca", "root.cer").mode(0o644), &b"0\x82..."[..])?;
//! writer.add_entry(EntryMeta::new("rbac", "assignments.json"), &br#"[{"role":"Owner"}]"#[..])?;
//! let (archive, summary) = writer.finish()?;
//! assert_eq!(summary.entries, 2);
//!
//! // Recovering needs the .pfx.
//! let identity = Identity::from_pkcs12(&pair.pfx, &password)?;
//! let reader = blocking::Archive::open(archive, &[&identity])?;
//! let entry = reader.find("rbac", "assignments.json")?.expect("present");
//! assert_eq!(reader.read_entry(&entry)?, br#"[{"role":"Owner"}]"#);
//! assert_eq!(reader.verify()?.entries, 2);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! ```text
//! header | data frames and index pieces, interleaved | root | signature | footer
//! ```
//!
//! The byte layout, every derivation and every check a reader makes are in
//! `FORMAT.md` (in this crate's directory), written so that a reader can be
//! built from it alone. Writers write version 2; readers read versions 1 and 2.
//!
//! * Writing: [`ArchiveEncoder`] (sans-IO: entries in, archive bytes out),
//!   and [`ArchiveWriter`] / [`AsyncArchiveWriter`] over `std::io::Write` /
//!   `futures::io::AsyncWrite`: entries stream in, frames are compressed and
//!   sealed on all cores, output order is kept. [`WriterOptions`] and
//!   [`EntryMeta`] say how and what.
//! * Reading: [`inspect`] (keyless checks), [`check_signature`] (keyless
//!   too), [`ArchiveReader`] over any [`RangeRead`] (open, stream the entries,
//!   find one, stream one entry's data with range reads, verify everything),
//!   and [`blocking`] conveniences. A source's own errors come back typed
//!   ([`ReadError`]).
//! * The header, footer and id types the reader shows ([`Header`],
//!   [`HeaderFields`], [`Footer`], [`FooterV2`], [`ArchiveId`]); the sans-IO
//!   codec behind them is private.
//!
//! # Entries
//!
//! An [`Entry`] is a file, folder, symbolic link or hard link
//! ([`EntryKind`]) of one source, named by bytes ([`EntryPath`]: POSIX
//! names, displayed escaped), with the 12 mode bits, owner ids and names,
//! a modification time in seconds and nanoseconds, sparse [`Extent`]s and
//! extended attributes, each optional. Writers take entries **in key
//! order** ([`path_cmp`]: a depth-first walk with each folder's children
//! sorted by name bytes) and every source's entries together; an entry out
//! of order, repeated, or under a file or link is refused with both names
//! (no sort in memory: the order is what lets writer and reader find
//! duplicates and check the tree without a set of every name). A parent
//! folder the caller did not add is added without metadata.
//!
//! # Memory
//!
//! Memory does not grow with the number of entries. The writer keeps at
//! most `depth` frames in flight (default: two per worker, about
//! `depth × 2 × frame size` plus zstd's contexts), the entries of one index
//! piece (sealed at 64 KiB) and one 90-byte record per piece (about 0.1
//! byte per entry). A reader holds the root (4 bytes per data frame, the
//! piece records) and one piece at a time; reading one entry reads the root,
//! one piece and that entry's frames. Verify and restore read a window of
//! up to 8 MiB of sealed frames at once. Version 1 archives hold their whole
//! index (~150 bytes per entry) while open.
//!
//! Frames are probed before they are compressed: stored when a sample does
//! not shrink, and compressed at level 1 when the sample compresses as well
//! at level 1 as at the configured level. (Measured figures — memory at a
//! million entries, throughput — are in the workspace's `benches/RESULTS.md`.)
//!

mod bytes_io;
mod entry;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod read_ahead;
mod reader;
mod v2;
mod writer;

pub use entry::{EMPTY_SHA256, Entry, EntryKind, EntryPath, Extent, check_path_bytes, escape_bytes, path_cmp};
pub use error::{Error, ErrorKind, ReadError, Region, Result};
pub use format::{
    ArchiveId, FORMAT_VERSION, FORMAT_VERSION_1, Footer, Header, HeaderFields, MAX_PATH_LEN, MAX_RECIPIENTS,
    MAX_SOURCE_LEN, check_entry_path, check_source_name,
};
pub use read_ahead::ReadAhead;
pub use reader::{
    ArchiveFooter, ArchiveInfo, ArchiveReader, RangeRead, Signer, VerifyReport, blocking, check_signature, inspect,
    verify_signature,
};
pub use v2::FooterV2;
pub use writer::{
    ArchiveEncoder, ArchiveSummary, ArchiveWriter, AsyncArchiveWriter, EntryMeta, Progress, ProgressFn, WriterOptions,
};
