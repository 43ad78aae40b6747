//! The `ibs` backup archive: one self-contained, append-only byte stream per
//! backup, compressed with zstd and sealed with AES-256-GCM under a file key
//! wrapped to the operator's X.509 certificate(s), and (format version 2)
//! signed by the controller's Ed25519 key.
//!
//! ```text
//! header | data frames and index pieces, interleaved | root | signature | footer
//! ```
//!
//! The byte layout, every derivation and every check a reader makes are in
//! [`FORMAT.md`](https://example.invalid/ibs/crates/archive/FORMAT.md) (in
//! this crate's directory), written so that a reader can be built from it
//! alone. Writers write version 2; readers read versions 1 and 2.
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
//! # Memory and speed
//!
//! Memory does not grow with the number of entries. The writer keeps at
//! most `depth` frames in flight (default: two per worker, about
//! `depth × 2 × frame size` plus zstd's contexts), the entries of one index
//! piece (sealed at 64 KiB) and one 90-byte record per piece (about 0.1
//! byte per entry; the root of a million-entry archive is ~60 KiB). A reader
//! holds the root (4 bytes per data frame, the piece records) and one piece
//! at a time; reading one entry of a million-entry archive over range reads
//! reads ~105 KiB of a 35 MB archive (the `roundtrip` test
//! `one_entry_of_a_million_…`). Measured through the whole library
//! (controller job, recovery) with a counting allocator (the
//! controller's `memory` test; tiny entries, 1 000 per folder), peak heap:
//!
//! | phase | 100 000 entries | 1 000 000 entries |
//! | --- | --- | --- |
//! | backup | 2.8 MiB | 3.6 MiB |
//! | list (stream every entry) | 0.8 MiB | 0.8 MiB |
//! | verify | 3.6 MiB | 10.0 MiB |
//! | restore | 1.2 MiB | 11.4 MiB |
//!
//! The differences are not per entry but the read window: verify and restore
//! read up to 8 MiB of sealed frames (and the pieces between them) at once,
//! and the larger archive fills it. Version 1 archives hold their whole
//! index (~150 bytes per entry) while open.
//!
//! Frames are probed before they are compressed (see
//! the writer's `FrameCompressor`): stored when a sample does not shrink, and
//! compressed at level 1 when the sample compresses as well at level 1 as at
//! the configured level, which on generated infrastructure state halves the
//! compression time at the same size. Measured on the 2-core CI machine
//! (`cargo run --release -p ibs-archive --example write_large -- 2 text` under
//! `/usr/bin/time -v`): a 2 GiB archive of JSON-like text written at
//! ~418 MiB/s with 192 % CPU (both cores compressing) and a **peak RSS of
//! 52 MB**, of which 32 MiB is the example's own input block. Criterion
//! (`cargo bench -p ibs-benches --bench archive`), same machine: one 1 MiB
//! frame compressed and sealed on one core at ~410 MiB/s (text) and
//! ~1.5 GiB/s (incompressible, stored); 64 MiB archives written at ~490 MiB/s
//! (text) and ~800 MiB/s (incompressible) on both cores; verified at ~890 and
//! ~500 MiB/s, read back at ~920 MiB/s (one core: verification is sequential).
//!
//! # Example
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

mod bytes_io;
mod entry;
mod error;
mod format;
#[doc(hidden)]
pub mod fuzzing;
mod reader;
mod v2;
mod writer;

pub use entry::{EMPTY_SHA256, Entry, EntryKind, EntryPath, Extent, check_path_bytes, escape_bytes, path_cmp};
pub use error::{Error, ErrorKind, ReadError, Region, Result};
pub use format::{
    ArchiveId, FORMAT_VERSION, FORMAT_VERSION_1, Footer, Header, HeaderFields, MAX_PATH_LEN, MAX_RECIPIENTS,
    MAX_SOURCE_LEN, check_entry_path, check_source_name,
};
pub use reader::{
    ArchiveFooter, ArchiveInfo, ArchiveReader, RangeRead, Signer, VerifyReport, blocking, check_signature, inspect,
    verify_signature,
};
pub use v2::FooterV2;
pub use writer::{
    ArchiveEncoder, ArchiveSummary, ArchiveWriter, AsyncArchiveWriter, EntryMeta, Progress, ProgressFn, WriterOptions,
};
