//! The `ibs` backup archive: one self-contained, append-only byte stream per
//! backup, compressed with zstd and sealed with AES-256-GCM under a file key
//! wrapped to the operator's X.509 certificate(s).
//!
//! ```text
//! header (magic, version, parameters, recipients, MAC) | frame 0 | frame 1 | … | sealed index | footer
//! ```
//!
//! The byte layout, every derivation and every check a reader makes are in
//! [`FORMAT.md`](https://example.invalid/ibs/crates/archive/FORMAT.md) (in
//! this crate's directory), written so that a reader can be built from it alone.
//!
//! * [`format`](mod@format) — the sans-IO core: encode and decode the header, frames, index
//!   and footer on byte slices.
//! * [`writer`] — [`ArchiveEncoder`], and [`ArchiveWriter`] / [`AsyncArchiveWriter`]
//!   over `std::io::Write` / `futures::io::AsyncWrite`: entries stream in, frames
//!   are compressed and sealed on all cores, output order is kept, memory stays
//!   bounded by frame size × pipeline depth.
//! * [`reader`] — [`inspect`] (keyless checks), [`ArchiveReader`] over any
//!   [`RangeRead`] (open, list, stream one entry with range reads, verify
//!   everything), and [`blocking`] conveniences.
//!
//! # Memory and speed
//!
//! The writer keeps at most `depth` frames in flight (default: two per
//! worker), so its memory is about `depth × 2 × frame size` plus zstd's
//! contexts, whatever the archive's size, plus the index it builds: one
//! [`Entry`] per file (about 150 bytes with its names; repeated names are
//! found through indices into it, not a second copy), encoded once at the end.
//! The `ibs` benchmark at 10 GiB (130 000 files) peaks at 84 MiB for a backup
//! and 78 MiB for a restore (`benches/RESULTS-10GiB.md`).
//!
//! Frames are probed before they are compressed (see
//! [`format::FrameCompressor`]): stored when a sample does not shrink, and
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
//! writer.add_entry(EntryMeta::new("rbac", "assignments.json"), &br#"[{"role":"Owner"}]"#[..])?;
//! writer.add_entry(EntryMeta::new("ca", "root.cer").mode(0o644), &b"0\x82..."[..])?;
//! let (archive, summary) = writer.finish()?;
//! assert_eq!(summary.entries, 2);
//!
//! // Recovering needs the .pfx.
//! let identity = Identity::from_pkcs12(&pair.pfx, &password)?;
//! let reader = blocking::Archive::open(archive, &[&identity])?;
//! let entry = reader.find("rbac", "assignments.json")?.expect("present");
//! assert_eq!(reader.read_entry(entry)?, br#"[{"role":"Owner"}]"#);
//! assert_eq!(reader.verify()?.entries, 2);
//! # Ok(()) }
//! ```

mod bytes_io;
mod entry;
mod error;
pub mod format;
#[doc(hidden)]
pub mod fuzzing;
pub mod reader;
pub mod v2;
pub mod writer;

pub use entry::{EMPTY_SHA256, Entry, EntryKind, EntryPath, Extent, check_path_bytes, escape_bytes, path_cmp};
pub use error::{Error, ErrorKind, Region, Result};
pub use format::{ArchiveId, FORMAT_VERSION, FORMAT_VERSION_1, Footer, Header, HeaderFields, Index};
pub use reader::{
    ArchiveFooter, ArchiveInfo, ArchiveReader, RangeRead, Signer, VerifyReport, blocking, check_signature, inspect,
    verify_signature,
};
pub use writer::{
    ArchiveEncoder, ArchiveSummary, ArchiveWriter, AsyncArchiveWriter, EntryMeta, Progress, ProgressFn, WriterOptions,
};
