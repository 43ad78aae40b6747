//! Choosing, opening, verifying, reading and restoring a backup.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use ibs_archive::{ArchiveReader, Entry, ProgressFn};
use ibs_envelope::Identity;
use ibs_storage::{InstanceLayout, StorageTarget};

use crate::catalogue::{BackupInfo, BackupState, Catalogue, CheckReport, catalogue, check_integrity};
use crate::target::TargetObject;
use crate::version::{Version, VersionRule};
use crate::{RecoveryError, Result};

/// Which backup to restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Choice {
    /// The newest complete backup the version rule allows (what a restore
    /// takes by default; [`Recovery::skipped_newer`] says which newer ones
    /// were passed over and why).
    #[default]
    Newest,
    /// The newest backup at the location, whatever its state: refused, with
    /// its id and problem, when it cannot be restored — never an older one
    /// instead (what `verify` checks by default).
    Latest,
    /// This backup id.
    Id(String),
}

/// Recovery at one location: a storage target and an instance's fqdn/region.
#[derive(Clone, Debug)]
pub struct Recovery {
    target: Arc<dyn StorageTarget>,
    instance: InstanceLayout,
    rule: VersionRule,
    instance_version: Option<Version>,
    trusted: Vec<ibs_envelope::VerifyingKey>,
    allow_unsigned: bool,
}

impl Recovery {
    /// Recovery of `instance`'s backups on `target`, with no version rule
    /// until [`Recovery::instance_version`] is set.
    pub fn new(target: Arc<dyn StorageTarget>, instance: InstanceLayout) -> Self {
        Recovery {
            target,
            instance,
            rule: VersionRule::default(),
            instance_version: None,
            trusted: Vec::new(),
            allow_unsigned: false,
        }
    }

    /// Trusts these controller signing keys: [`Recovery::open`] then refuses
    /// a backup that is unsigned (unless [`allow_unsigned`](Self::allow_unsigned)),
    /// signed by another key, or whose signature does not verify, naming the
    /// signer found (FORMAT.md §14.7). With no trusted key (the default) the
    /// signature of a signed backup is still verified, but anyone's is accepted.
    pub fn trust_signers(mut self, keys: Vec<ibs_envelope::VerifyingKey>) -> Self {
        self.trusted = keys;
        self
    }

    /// Accepts unsigned backups (every backup of format version 1) even when
    /// signers are trusted.
    pub fn allow_unsigned(mut self, yes: bool) -> Self {
        self.allow_unsigned = yes;
        self
    }

    /// Checks a verified signer against the trusted keys (see
    /// [`trust_signers`](Self::trust_signers)): what [`Recovery::open`] does,
    /// for callers that checked a signature without opening (a keyless
    /// [`check_integrity`](crate::check_integrity)).
    pub fn trusts(&self, signer: &ibs_archive::Signer) -> ibs_archive::Result<()> {
        signer.check_trust(&self.trusted, self.allow_unsigned)
    }

    /// Whether signers are trusted (authenticity is checked on open).
    pub fn checks_signers(&self) -> bool {
        !self.trusted.is_empty()
    }

    /// The recovering instance's version: enables the version rule.
    pub fn instance_version(mut self, version: Version) -> Self {
        self.instance_version = Some(version);
        self
    }

    /// Replaces the default rule (at most one release newer).
    pub fn version_rule(mut self, rule: VersionRule) -> Self {
        self.rule = rule;
        self
    }

    /// The storage target.
    pub fn target(&self) -> &Arc<dyn StorageTarget> {
        &self.target
    }

    /// Lists and classifies the backups (no key needed).
    pub async fn catalogue(&self) -> Result<Catalogue> {
        catalogue(&self.target, &self.instance).await
    }

    /// Why `backup` cannot be restored here, if it cannot.
    pub fn restorable(&self, backup: &BackupInfo) -> Result<()> {
        if backup.state != BackupState::Complete {
            return Err(RecoveryError::NotRestorable {
                id: backup.id.to_string(),
                state: if backup.state == BackupState::Incomplete {
                    "incomplete"
                } else {
                    "damaged"
                },
                problem: backup.problem.clone().unwrap_or_default(),
            });
        }
        if let Some(instance) = &self.instance_version {
            let produced = backup.producer_version.as_deref().unwrap_or_default();
            let produced: Version = produced.parse().map_err(|_| RecoveryError::NotRestorable {
                id: backup.id.to_string(),
                state: "damaged",
                problem: format!("its producer version {produced:?} is not a version"),
            })?;
            self.rule.check(&produced, instance)?;
        }
        Ok(())
    }

    /// Picks a backup from `catalogue`.
    pub fn choose<'c>(&self, catalogue: &'c Catalogue, choice: &Choice) -> Result<&'c BackupInfo> {
        let location = self.instance.backup_root().to_string();
        match choice {
            Choice::Id(id) => {
                let b = catalogue.get(id).ok_or_else(|| RecoveryError::NotFound {
                    id: id.clone(),
                    location,
                })?;
                self.restorable(b)?;
                Ok(b)
            }
            Choice::Newest => {
                if catalogue.backups.is_empty() {
                    return Err(RecoveryError::NoBackups { location });
                }
                let mut reasons = Vec::new();
                for b in catalogue.backups.iter().rev() {
                    match self.restorable(b) {
                        Ok(()) => return Ok(b),
                        Err(e) => reasons.push(format!("{}: {e}", b.id)),
                    }
                }
                Err(RecoveryError::NoRestorable { location, reasons })
            }
            Choice::Latest => {
                let b = catalogue.backups.last().ok_or(RecoveryError::NoBackups { location })?;
                self.restorable(b)?;
                Ok(b)
            }
        }
    }

    /// Every backup in `catalogue` newer than `chosen`, newest first, with
    /// why it cannot be restored: what [`Choice::Newest`] passed over.
    pub fn skipped_newer<'c>(
        &self,
        catalogue: &'c Catalogue,
        chosen: &BackupInfo,
    ) -> Vec<(&'c BackupInfo, RecoveryError)> {
        catalogue
            .backups
            .iter()
            .rev()
            .take_while(|b| b.id != chosen.id)
            .filter_map(|b| self.restorable(b).err().map(|e| (b, e)))
            .collect()
    }

    /// Opens a backup with whichever of `identities` it is encrypted to. When
    /// none is, the error lists the thumbprints the backup needs.
    pub async fn open(&self, backup: &BackupInfo, identities: &[&Identity]) -> Result<Backup> {
        self.restorable(backup)?;
        let size = backup.manifest.as_ref().map_or(backup.size, |m| m.archive_size);
        let object = TargetObject::new(Arc::clone(&self.target), backup.paths.archive.clone(), size);
        let reader = ArchiveReader::open(object, identities)
            .await
            .map_err(|e| RecoveryError::archive(&backup.id, e))?;
        reader
            .signer()
            .check_trust(&self.trusted, self.allow_unsigned)
            .map_err(|source| RecoveryError::Archive {
                id: backup.id.to_string(),
                source,
            })?;
        // A signature proves who made a backup, not for which instance: the
        // (now authenticated) header must name this one.
        if matches!(reader.signer(), ibs_archive::Signer::Verified(_)) && !self.trusted.is_empty() {
            for (key, want) in [("fqdn", self.instance.fqdn()), ("region", self.instance.region())] {
                if reader.info().label(key) != Some(want) {
                    return Err(RecoveryError::NotRestorable {
                        id: backup.id.to_string(),
                        state: "damaged",
                        problem: format!(
                            "its signed header names {key} {:?}, not this instance's {want:?}: a backup of another \
                             instance",
                            reader.info().label(key).unwrap_or("(none)")
                        ),
                    });
                }
            }
        }
        Ok(Backup {
            info: backup.clone(),
            target: Arc::clone(&self.target),
            reader,
        })
    }

    /// Catalogue, choose and open in one step.
    pub async fn open_choice(&self, choice: &Choice, identities: &[&Identity]) -> Result<Backup> {
        let catalogue = self.catalogue().await?;
        let backup = self.choose(&catalogue, choice)?;
        self.open(backup, identities).await
    }

    /// Checks a backup's archive against its manifest's size and SHA-256 (no
    /// key; reads every byte). See [`check_integrity`](crate::check_integrity).
    pub async fn check_integrity(&self, backup: &BackupInfo) -> Result<CheckReport> {
        check_integrity(&self.target, backup).await
    }
}

/// What an earlier, interrupted restore had left in a restore folder, and
/// this one removed (see [`RestoreLock::remove_leftovers`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Staging folders (`.ibs-restore-<tag>/`, holding the marker
    /// [`STAGING_MARKER`]) removed with their contents.
    pub staging_folders: u64,
}

impl Leftovers {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.staging_folders == 0
    }
}

/// The file a restore creates first in its staging folder: only a folder
/// holding it is ever removed as a leftover (a folder of that name restored
/// from a backup, or made by someone else, is not: sources named
/// `.ibs-restore-…` are refused, so no restored source can carry it).
pub const STAGING_MARKER: &str = ".ibs-restore-staging";

/// Whether `name` is a staging folder's: `.ibs-restore-` and 16 hex digits.
pub(crate) fn is_staging_name(name: &str) -> bool {
    name.strip_prefix(".ibs-restore-")
        .is_some_and(|tag| tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An exclusive hold on a restore folder: an advisory lock (`flock`) on the
/// folder itself, released when this is dropped (or the process ends). Two
/// restores never write into one folder at once, and leftovers are removed
/// only under the lock, so a restore never removes another one's files.
/// [`Backup::restore_to`] takes one itself; a tool that may stop a restore
/// takes it first ([`Backup::restore_locked`]) and keeps it until it has
/// cleaned up ([`RestoreLock::remove_leftovers`]).
#[derive(Debug)]
pub struct RestoreLock {
    folder: PathBuf,
    _held: std::fs::File,
}

impl RestoreLock {
    /// Creates `dir` if needed and locks it; refused (not waited for) while
    /// another restore holds it.
    pub async fn acquire(dir: &Path) -> Result<Self> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|source| RecoveryError::Io {
                action: "cannot create",
                path: dir.to_owned(),
                source,
            })?;
        let held = lock_restore_folder(dir).await?;
        Ok(RestoreLock {
            folder: dir.to_owned(),
            _held: held,
        })
    }

    /// The locked folder.
    pub fn path(&self) -> &Path {
        &self.folder
    }

    /// Removes what an interrupted restore (killed, or stopped by a signal)
    /// left in the folder: its staging folders, directly in it, named
    /// `.ibs-restore-<16 hex digits>` and holding the marker
    /// [`STAGING_MARKER`] a restore creates first. Nothing else is touched;
    /// symbolic links are never followed. Blocking.
    pub fn remove_leftovers(&self) -> Result<Leftovers> {
        remove_restore_leftovers(&self.folder)
    }
}

pub(crate) fn remove_restore_leftovers(dir: &Path) -> Result<Leftovers> {
    let io = |action: &'static str, p: &Path| {
        let path = p.to_owned();
        move |source| RecoveryError::Io { action, path, source }
    };
    let mut found = Leftovers::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(io("cannot list", dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("cannot list", dir))?;
        let name = entry.file_name();
        let is_dir = entry.file_type().map_err(io("cannot inspect", &entry.path()))?.is_dir();
        let marked =
            || std::fs::symlink_metadata(entry.path().join(STAGING_MARKER)).is_ok_and(|m| m.file_type().is_file());
        if is_dir && name.to_str().is_some_and(is_staging_name) && marked() {
            std::fs::remove_dir_all(entry.path()).map_err(io("cannot remove", &entry.path()))?;
            found.staging_folders += 1;
        }
    }
    Ok(found)
}

/// An opened backup.
#[derive(Debug)]
pub struct Backup {
    info: BackupInfo,
    target: Arc<dyn StorageTarget>,
    reader: ArchiveReader<TargetObject>,
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

    /// The entry `path` of `source`.
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

    /// The archive reader inside.
    pub fn archive(&self) -> &ArchiveReader<TargetObject> {
        &self.reader
    }

    pub(crate) fn archive_error(&self, error: ibs_archive::ReadError<ibs_storage::StorageError>) -> RecoveryError {
        RecoveryError::archive(&self.info.id, error)
    }

    /// Verifies the whole backup, streaming, writing no plaintext anywhere:
    /// the archive against its manifest (size and SHA-256, as
    /// [`check_integrity`](crate::check_integrity)), then with the key every
    /// frame's tag and every entry's SHA-256 (the header, index and footer
    /// were authenticated when it was opened). The report says all of it.
    pub async fn verify(&self, progress: Option<&ProgressFn>) -> Result<VerifyReport> {
        let check = check_integrity(&self.target, &self.info).await?;
        let r = self.reader.verify(progress).await.map_err(|e| self.archive_error(e))?;
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

    /// One entry in memory.
    pub async fn read(&self, entry: &Entry) -> Result<Vec<u8>> {
        self.reader.read_entry(entry).await.map_err(|e| self.archive_error(e))
    }
}

/// Takes an exclusive advisory lock (`flock`) on the restore folder itself,
/// held until the returned file is dropped: a second restore into the same
/// folder is refused instead of removing the first one's temporary files.
async fn lock_restore_folder(dir: &Path) -> Result<std::fs::File> {
    let at = dir.to_owned();
    blocking(move || {
        let folder = std::fs::File::open(&at).map_err(|source| RecoveryError::Io {
            action: "cannot open",
            path: at.clone(),
            source,
        })?;
        match rustix::fs::flock(&folder, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(folder),
            Err(rustix::io::Errno::WOULDBLOCK) => Err(RecoveryError::Usage(format!(
                "another restore is writing into {}; wait for it to finish, or restore into another folder",
                at.display()
            ))),
            Err(e) => Err(RecoveryError::Io {
                action: "cannot lock",
                path: at,
                source: e.into(),
            }),
        }
    })
    .await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RecoveryError::Usage(format!("restore task failed: {e}")))?
}
