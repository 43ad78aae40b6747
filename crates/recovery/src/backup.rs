//! An opened backup: verifying, reading, and (in `restore`) restoring it.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use ibs_archive::{ArchiveReader, Entry, ProgressFn};
use ibs_repository::{BackupInfo, CheckReport, TargetObject};
use ibs_storage::ReadTarget;

use crate::{RecoveryError, Result};

/// A backup opened with an identity by [`Recovery::open`](crate::Recovery::open):
/// its header authenticated and its signer checked, ready to list, verify
/// and restore.
#[derive(Debug)]
pub struct Backup {
    pub(crate) info: BackupInfo,
    pub(crate) target: Arc<dyn ReadTarget>,
    pub(crate) reader: ArchiveReader<TargetObject>,
}

/// What [`Backup::verify`] checked, all of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// The keyless check: the whole archive read, its size and SHA-256 equal
    /// to the manifest's.
    pub check: CheckReport,
    /// Data frames authenticated and decompressed.
    pub frames: u64,
    /// Entries whose SHA-256 matched.
    pub entries: u64,
    /// Plaintext bytes checked.
    pub data_len: u64,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; with the key, the header, the index and the footer authenticate, {} data frame(s) \
             authenticate and decompress, and {} entries ({} bytes of data) match their SHA-256",
            self.check, self.frames, self.entries, self.data_len
        )
    }
}

impl Backup {
    /// Archive bytes [`Backup::verify`] reads: the archive twice (the total
    /// its progress counts up to).
    pub fn verify_len(&self) -> u64 {
        self.reader.info().archive_len.saturating_mul(2)
    }

    /// What the catalogue knows about it.
    pub fn info(&self) -> &BackupInfo {
        &self.info
    }

    /// Every entry, in archive order, streamed (a version 2 backup's index
    /// is read one piece at a time; order, tree and hard-link rules checked).
    pub fn entries(&self) -> impl Stream<Item = Result<Entry>> + '_ {
        self.reader.entries().map(|r| r.map_err(|e| self.archive_error(e)))
    }

    /// The sources in the backup (a version 2 backup records sources that
    /// had no entries too), sorted.
    pub fn sources(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.reader.sources().iter().map(String::as_str).collect();
        set.into_iter().collect()
    }

    /// The entry `path` of `source`, if present; a version 2 backup reads
    /// only the index piece that would hold it.
    pub async fn find(&self, source: &str, path: impl AsRef<[u8]>) -> Result<Option<Entry>> {
        self.reader.find(source, path).await.map_err(|e| self.archive_error(e))
    }

    /// Who signed the backup (verified when it was opened).
    pub fn signer(&self) -> ibs_archive::Signer {
        self.reader.signer()
    }

    /// The archive format version (1 or 2).
    pub fn format_version(&self) -> u16 {
        self.reader.info().version()
    }

    /// The archive reader inside, for what this type does not wrap (entry
    /// counts and sizes, the header's fields, raw reads).
    pub fn archive(&self) -> &ArchiveReader<TargetObject> {
        &self.reader
    }

    pub(crate) fn archive_error(&self, error: ibs_archive::ReadError<ibs_storage::StorageError>) -> RecoveryError {
        RecoveryError::archive(&self.info.id, error)
    }

    /// An archive failure that did not come from reading (a content check).
    pub(crate) fn content_error(&self, error: ibs_archive::Error) -> RecoveryError {
        self.archive_error(ibs_archive::ReadError::Archive(error))
    }

    /// Verifies the whole backup, streaming, writing no plaintext anywhere:
    /// the archive against its manifest (size and SHA-256, as
    /// [`check_integrity`](ibs_repository::check_integrity)), then with the key every
    /// frame's tag and every entry's SHA-256 (the header, index and footer
    /// were authenticated when it was opened). The report says all of it.
    ///
    /// The archive is read twice (once whole, keyless; once frame by frame,
    /// with the key): `progress` is called after every piece of either pass
    /// with [`Progress::bytes_out`](ibs_archive::Progress::bytes_out) the
    /// archive bytes read over both passes — so it grows steadily to
    /// [`Backup::verify_len`], twice the archive's size — and, in the second
    /// pass, the plaintext bytes, entries and frames checked so far (out of
    /// [`ArchiveReader::data_len`] and [`ArchiveReader::entry_count`]).
    #[tracing::instrument(name = "verify", level = "info", skip_all, fields(id = %self.info.id))]
    pub async fn verify(&self, progress: Option<&ProgressFn>) -> Result<VerifyReport> {
        let check = ibs_repository::check_integrity_with_progress(&self.target, &self.info, progress).await?;
        let first = check.archive_bytes;
        let second: Option<ProgressFn> = progress.map(|p| {
            let p = Arc::clone(p);
            let offset: ProgressFn = Arc::new(move |now: &ibs_archive::Progress| {
                p(&ibs_archive::Progress {
                    bytes_out: first + now.bytes_out,
                    ..*now
                })
            });
            offset
        });
        let r = self
            .reader
            .verify(second.as_ref())
            .await
            .map_err(|e| self.archive_error(e))?;
        if let Some(p) = progress {
            // The index and footer after the last frame were authenticated
            // when the backup was opened: the count ends at the total.
            p(&ibs_archive::Progress {
                bytes_in: r.data_len,
                bytes_out: first + self.reader.info().archive_len,
                entries_done: r.entries,
                frames_done: r.frames,
            });
        }
        tracing::info!(
            frames = r.frames,
            entries = r.entries,
            data_len = r.data_len,
            "verified"
        );
        Ok(VerifyReport {
            check,
            frames: r.frames,
            entries: r.entries,
            data_len: r.data_len,
        })
    }

    /// Streams one entry (range reads of its frames only; checked against its SHA-256).
    pub fn stream<'a>(&'a self, entry: &'a Entry) -> impl Stream<Item = Result<Bytes>> + 'a {
        self.reader
            .entry_stream(entry)
            .map(|r| r.map_err(|e| self.archive_error(e)))
    }

    /// [`stream`](Self::stream) without the SHA-256 check (every piece is
    /// still authenticated): the caller checks with
    /// [`Entry::check_content`](ibs_archive::Entry::check_content) before
    /// it trusts the bytes (the restore does, on the blocking pool).
    pub(crate) fn stream_unchecked<'a>(&'a self, entry: &'a Entry) -> impl Stream<Item = Result<Bytes>> + 'a {
        self.reader
            .entry_stream_unchecked(entry)
            .map(|r| r.map_err(|e| self.archive_error(e)))
    }

    /// One entry in memory.
    pub async fn read(&self, entry: &Entry) -> Result<Vec<u8>> {
        self.reader.read_entry(entry).await.map_err(|e| self.archive_error(e))
    }
}
