//! Choosing, opening, verifying, reading and restoring a backup.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use ibs_archive::{ArchiveReader, Entry, ProgressFn};
use ibs_envelope::Identity;
use ibs_storage::{InstanceLayout, StorageTarget};
use tokio::io::AsyncWriteExt;

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
        }
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
            .map_err(|source| RecoveryError::Archive {
                id: backup.id.to_string(),
                source,
            })?;
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

/// How to restore.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreOptions {
    sources: Option<BTreeSet<String>>,
    overwrite: bool,
    skip_verify: bool,
}

impl RestoreOptions {
    /// Restores only these sources (default: all).
    pub fn sources<I: IntoIterator<Item = S>, S: Into<String>>(mut self, sources: I) -> Self {
        self.sources = Some(sources.into_iter().map(Into::into).collect());
        self
    }

    /// Replaces files that already exist (default: refuse). A symbolic link
    /// where a file goes is replaced by the file, never followed; a link or
    /// a non-folder where a folder goes is still refused.
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }

    /// Skips the full verification before writing anything (default: verify
    /// first, so a damaged backup writes nothing; every restored entry is still
    /// checked against its SHA-256 either way).
    pub fn skip_verify(mut self, yes: bool) -> Self {
        self.skip_verify = yes;
        self
    }
}

/// What an earlier, interrupted restore had left in a restore folder, and
/// this one removed (see [`RestoreLock::remove_leftovers`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Staging folders (`.ibs-restore-<tag>/`) removed with their contents.
    pub staging_folders: u64,
    /// Temporary files (`.ibs-restore-<tag>-<n>.tmp`) removed.
    pub temporary_files: u64,
}

impl Leftovers {
    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.staging_folders == 0 && self.temporary_files == 0
    }
}

/// Whether `name` is a staging folder's: `.ibs-restore-` and 16 hex digits.
fn is_staging_name(name: &str) -> bool {
    name.strip_prefix(".ibs-restore-")
        .is_some_and(|tag| tag.len() == 16 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Whether `name` is a temporary file's: `.ibs-restore-<16 hex>-<digits>.tmp`.
fn is_temporary_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(".ibs-restore-").and_then(|r| r.strip_suffix(".tmp")) else {
        return false;
    };
    match rest.split_once('-') {
        Some((tag, n)) => {
            tag.len() == 16
                && tag.bytes().all(|b| b.is_ascii_hexdigit())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
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
    /// left in the folder: staging folders directly in it, and temporary
    /// files anywhere under its folders `<source>` of `sources` (where a
    /// restore writes them; names that are not valid source names are
    /// skipped). Only names a restore makes are touched, symbolic links are
    /// never followed, and nothing else is changed. Blocking.
    pub fn remove_leftovers(&self, sources: &[&str]) -> Result<Leftovers> {
        remove_restore_leftovers(&self.folder, sources)
    }
}

fn remove_restore_leftovers(dir: &Path, sources: &[&str]) -> Result<Leftovers> {
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
        if is_dir && name.to_str().is_some_and(is_staging_name) {
            std::fs::remove_dir_all(entry.path()).map_err(io("cannot remove", &entry.path()))?;
            found.staging_folders += 1;
        }
    }
    // Temporary files sit beside the files of sources that existed.
    let mut stack: Vec<PathBuf> = sources
        .iter()
        .filter(|s| ibs_archive::format::check_source_name(s).is_ok())
        .map(|s| dir.join(s))
        .collect();
    while let Some(folder) = stack.pop() {
        let entries = match std::fs::read_dir(&folder) {
            Ok(e) => e,
            // Not a folder (or gone): nothing of ours inside.
            Err(_) => continue,
        };
        for entry in entries {
            let entry = entry.map_err(io("cannot list", &folder))?;
            let kind = entry.file_type().map_err(io("cannot inspect", &entry.path()))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() && entry.file_name().to_str().is_some_and(is_temporary_name) {
                std::fs::remove_file(entry.path()).map_err(io("cannot remove", &entry.path()))?;
                found.temporary_files += 1;
            }
        }
    }
    Ok(found)
}

/// What a restore wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Files written. (Which ones: the backup's
    /// [`entries`](Backup::entries) of the selected sources, in that order —
    /// not repeated here, so a restore's memory does not grow with its file
    /// count more than the backup's index does.)
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// What an earlier, interrupted restore had left in the folder and this
    /// one removed before it started.
    pub leftovers: Leftovers,
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
            "the {} archive bytes match the manifest's size and SHA-256; the header, index and footer \
             authenticate with the key; {} data frames authenticate and decompress; {} entries ({} bytes \
             of data) match their SHA-256",
            self.check.archive_bytes, self.frames, self.entries, self.data_len
        )
    }
}

impl Backup {
    /// What the catalogue knows about it.
    pub fn info(&self) -> &BackupInfo {
        &self.info
    }

    /// Every entry, in archive order.
    pub fn entries(&self) -> &[Entry] {
        self.reader.entries()
    }

    /// The sources in the backup, sorted.
    pub fn sources(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.entries().iter().map(|e| e.source.as_str()).collect();
        set.into_iter().collect()
    }

    /// The entry `path` of `source`.
    pub fn find(&self, source: &str, path: &str) -> Option<&Entry> {
        self.reader.find(source, path)
    }

    /// The archive reader inside.
    pub fn archive(&self) -> &ArchiveReader<TargetObject> {
        &self.reader
    }

    fn archive_error(&self, source: ibs_archive::Error) -> RecoveryError {
        RecoveryError::Archive {
            id: self.info.id.to_string(),
            source,
        }
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

    /// Restores all (or the selected) sources to `dir/<source>/<path>`.
    ///
    /// Refuses entries whose names could escape `dir` (`..`, absolute paths,
    /// backslashes, control characters) and never follows a symbolic link
    /// found under `dir`; never overwrites an existing file unless asked
    /// (the final rename is `RENAME_NOREPLACE`).
    ///
    /// One pass over the archive, in order: every frame is decrypted once and
    /// every entry checked against its SHA-256 (entries of other sources too,
    /// unless `skip_verify`, so a restore verifies the whole backup). Selected
    /// files are written while the next entries are decrypted, out of sight:
    /// a source whose folder does not exist yet under a staging folder
    /// `dir/.ibs-restore-<tag>/`, moved into place whole at the end; a source
    /// whose folder exists file by file under temporary names beside their
    /// final ones, renamed at the end. Nothing is placed before the whole pass
    /// succeeded; on any failure the staging folder, every temporary file and
    /// every folder this restore created are removed, so a damaged backup
    /// places nothing. The file system is synced once at the end (`syncfs`),
    /// not per file. A restore killed midway leaves a `.ibs-restore-*` folder
    /// or `.ibs-restore-*.tmp` files; the next restore into the same folder
    /// removes them before it starts ([`RestoreReport::leftovers`]). One
    /// restore at a time writes into a folder (an advisory lock on it).
    pub async fn restore_to(&self, dir: &Path, options: &RestoreOptions) -> Result<RestoreReport> {
        let lock = RestoreLock::acquire(dir).await?;
        self.restore_locked(&lock, options).await
    }

    /// [`Backup::restore_to`] into the folder `lock` holds. A caller that may
    /// stop the restore (drop this future) keeps the lock until it has
    /// removed the leftovers ([`RestoreLock::remove_leftovers`]) — after
    /// every write the runtime still runs has finished.
    pub async fn restore_locked(&self, lock: &RestoreLock, options: &RestoreOptions) -> Result<RestoreReport> {
        let dir = lock.path();
        let wanted = |e: &Entry| options.sources.as_ref().is_none_or(|s| s.contains(&e.source));
        if let Some(wanted) = &options.sources {
            let present: BTreeSet<&str> = self.sources().into_iter().collect();
            if let Some(missing) = wanted.iter().find(|s| !present.contains(s.as_str())) {
                return Err(RecoveryError::Usage(format!(
                    "backup {} has no source {missing:?} (it has: {})",
                    self.info.id,
                    self.sources().join(", ")
                )));
            }
        }
        // Check every name before writing anything.
        for e in self.entries().iter().filter(|e| wanted(e)) {
            check_restore_names(e)?;
        }
        // Under the lock: whatever an interrupted restore left is removed.
        let all_sources: Vec<String> = self.sources().into_iter().map(str::to_owned).collect();
        let at = dir.to_owned();
        let leftovers = blocking(move || {
            let names: Vec<&str> = all_sources.iter().map(String::as_str).collect();
            remove_restore_leftovers(&at, &names)
        })
        .await?;
        let checked = Checked::default();
        let selected: BTreeSet<&str> = self
            .entries()
            .iter()
            .filter(|e| wanted(e))
            .map(|e| e.source.as_str())
            .collect();
        let names = StagingNames::new(dir, selected).await?;
        let mut staged = Vec::new();
        let mut report = RestoreReport {
            leftovers,
            ..RestoreReport::default()
        };
        let pass = self
            .stage_all(options, &wanted, &names, &checked, &mut staged, &mut report)
            .await;
        if let Err(e) = pass {
            self.remove_temps(&names, &staged).await;
            let (folders, root) = (checked.created(), names.root_if_used());
            blocking(move || {
                if let Some(root) = root {
                    let _ = std::fs::remove_dir_all(root);
                }
                for folder in folders.iter().rev() {
                    let _ = std::fs::remove_dir(folder);
                }
                Ok(())
            })
            .await?;
            return Err(e);
        }
        // Files of sources that already existed: renamed in batches, the
        // paths computed again from the index (a list of all pairs would be
        // the largest thing a restore holds).
        let overwrite = options.overwrite;
        for (done, batch) in staged.chunks(RENAME_BATCH).enumerate() {
            let pairs: Vec<(PathBuf, PathBuf)> = batch.iter().map(|&i| names.pair(&self.entries()[i], i)).collect();
            let renamed = blocking(move || {
                for (n, (temp, target)) in pairs.iter().enumerate() {
                    if let Err(e) = rename_sync(temp, target, overwrite) {
                        for (rest, _) in &pairs[n..] {
                            let _ = std::fs::remove_file(rest);
                        }
                        return Err(e);
                    }
                }
                Ok(())
            })
            .await;
            if let Err(e) = renamed {
                let rest = staged.get((done + 1) * RENAME_BATCH..).unwrap_or_default();
                self.remove_temps(&names, rest).await;
                if let Some(root) = names.root_if_used() {
                    let _ = tokio::fs::remove_dir_all(root).await;
                }
                return Err(e);
            }
        }
        // Sources that did not exist: each moved into place whole.
        if let Some(root) = names.root_if_used() {
            let (dir, fresh) = (dir.to_owned(), names.fresh.clone());
            blocking(move || {
                let moved = fresh.iter().try_for_each(|source| {
                    let staged = root.join(source);
                    // Every selected source has files, so its staged folder
                    // must be there: if it is gone, say so, never report success.
                    match std::fs::symlink_metadata(&staged) {
                        Ok(_) => rename_sync(&staged, &dir.join(source), false),
                        Err(e) => Err(RecoveryError::Io {
                            action: "the staged files are gone from",
                            path: staged.clone(),
                            source: e,
                        }),
                    }
                });
                let _ = std::fs::remove_dir_all(&root);
                moved
            })
            .await?;
        }
        let synced = dir.to_owned();
        tokio::task::spawn_blocking(move || {
            let d = std::fs::File::open(&synced)?;
            rustix::fs::syncfs(&d).map_err(std::io::Error::from)
        })
        .await
        .map_err(|e| RecoveryError::Usage(format!("restore task failed: {e}")))?
        .map_err(|source| RecoveryError::Io {
            action: "cannot sync",
            path: dir.to_owned(),
            source,
        })?;
        Ok(report)
    }

    /// Removes the temporary files of the `staged` entries (best effort).
    async fn remove_temps(&self, names: &StagingNames, staged: &[usize]) {
        for batch in staged.chunks(RENAME_BATCH) {
            let temps: Vec<PathBuf> = batch.iter().map(|&i| names.pair(&self.entries()[i], i).0).collect();
            let _ = blocking(move || {
                for temp in temps {
                    let _ = std::fs::remove_file(temp);
                }
                Ok(())
            })
            .await;
        }
    }

    /// The pass of [`Backup::restore_to`]: every entry (or every selected one,
    /// with `skip_verify`) decrypted and checked in archive order, selected
    /// ones written where `names` says; the indices of those written beside
    /// their final names (sources that existed) are recorded in `staged` — on
    /// failure too, so the caller can remove them. Files of fresh sources need
    /// no record: they move, or go, with the staging folder.
    async fn stage_all(
        &self,
        options: &RestoreOptions,
        wanted: &(dyn Fn(&Entry) -> bool + Sync),
        names: &StagingNames,
        checked: &Checked,
        staged: &mut Vec<usize>,
        report: &mut RestoreReport,
    ) -> Result<()> {
        // Small files are written on the blocking pool while the next ones are
        // decrypted: up to PLACE_AHEAD files / PLACE_AHEAD_BYTES at a time.
        let mut placing = Placing::new();
        let mut placing_bytes = 0u64;
        let pass: Result<()> = async {
            for (index, e) in self.entries().iter().enumerate() {
                if !wanted(e) {
                    if !options.skip_verify {
                        // Checked like the rest: the whole backup is verified.
                        let mut stream = std::pin::pin!(self.stream(e));
                        while let Some(piece) = stream.next().await {
                            piece?;
                        }
                    }
                    continue;
                }
                let rel = relative(e);
                let (temp, base) = (names.write_path(e, index), names.base(e).to_owned());
                let record = (!names.is_fresh(e)).then_some(index);
                if e.size <= IN_MEMORY_RESTORE {
                    let data = self.read(e).await?;
                    while !placing.is_empty()
                        && (placing.len() >= PLACE_AHEAD || placing_bytes + e.size > PLACE_AHEAD_BYTES)
                    {
                        placing_bytes -= finish_placing(&mut placing, staged).await?;
                    }
                    let (dir, checked) = (base, checked.clone());
                    let (source_name, path, overwrite) = (e.source.clone(), e.path.clone(), options.overwrite);
                    let (mode, mtime) = (e.mode, e.mtime);
                    let task = tokio::task::spawn_blocking(move || {
                        checked.prepare(&dir, &rel, overwrite, &source_name, &path)?;
                        write_temp_sync(&temp, &data, mode, mtime)
                    });
                    placing.push_back((record, e.size, task));
                    placing_bytes += e.size;
                } else {
                    self.stage_large(e, &base, &rel, &temp, options.overwrite, checked)
                        .await?;
                    staged.extend(record);
                }
                report.bytes += e.size;
                report.files += 1;
            }
            while !placing.is_empty() {
                finish_placing(&mut placing, staged).await?;
            }
            Ok(())
        }
        .await;
        if pass.is_err() {
            // Every write still running finishes (and is recorded) before the caller cleans up.
            while !placing.is_empty() {
                let _ = finish_placing(&mut placing, staged).await;
            }
        }
        pass
    }

    /// Writes an entry too large to hold in memory to the temporary file
    /// `temp` (streamed, checked).
    async fn stage_large(
        &self,
        entry: &Entry,
        dir: &Path,
        rel: &Path,
        temp: &Path,
        overwrite: bool,
        checked: &Checked,
    ) -> Result<()> {
        let (source_name, path) = (entry.source.clone(), entry.path.clone());
        let (dir, rel, set) = (dir.to_owned(), rel.to_owned(), checked.clone());
        blocking(move || set.prepare(&dir, &rel, overwrite, &source_name, &path)).await?;
        self.write_temp(entry, temp).await
    }

    /// Streams `entry` into the new file `temp`; removes it if writing fails.
    async fn write_temp(&self, entry: &Entry, temp: &Path) -> Result<()> {
        let io = |action: &'static str| {
            let path = temp.to_owned();
            move |source| RecoveryError::Io { action, path, source }
        };
        let mut file = tokio::fs::OpenOptions::from(new_file_options(entry.mode))
            .open(temp)
            .await
            .map_err(io("cannot create"))?;
        let written: Result<()> = async {
            let mut stream = std::pin::pin!(self.stream(entry));
            while let Some(piece) = stream.next().await {
                file.write_all(&piece?).await.map_err(io("cannot write"))?;
            }
            file.flush().await.map_err(io("cannot write"))?;
            let (mode, mtime) = (entry.mode, entry.mtime);
            let file = file.into_std().await;
            blocking(move || Ok(finish_file(&file, mode, mtime)))
                .await?
                .map_err(io("cannot write"))
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(temp).await;
        }
        written
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

/// Entries up to this size are restored from memory in one blocking task.
const IN_MEMORY_RESTORE: u64 = 8 << 20;

/// Small files being placed at most at once.
const PLACE_AHEAD: usize = 16;

/// Bytes of small files being placed at most at once (one file may exceed it).
const PLACE_AHEAD_BYTES: u64 = 16 << 20;

/// Staged files renamed (or removed) per blocking task.
const RENAME_BATCH: usize = 1024;

/// Small files being written: (entry index to record in `staged`, size, task).
type Placing = std::collections::VecDeque<(Option<usize>, u64, tokio::task::JoinHandle<Result<()>>)>;

/// Waits for the oldest write of a small file, records its entry index in
/// `staged` (if it has one to record), and returns its size.
async fn finish_placing(placing: &mut Placing, staged: &mut Vec<usize>) -> Result<u64> {
    let Some((index, size, task)) = placing.pop_front() else {
        return Ok(0);
    };
    task.await
        .map_err(|e| RecoveryError::Usage(format!("restore task failed: {e}")))??;
    staged.extend(index);
    Ok(size)
}

/// Refuses an entry whose names a restore must not use on a file system
/// (see [`Entry::check_names`]).
fn check_restore_names(e: &Entry) -> Result<()> {
    e.check_names().map_err(|err| RecoveryError::UnsafePath {
        source_name: e.source.clone(),
        path: e.path.clone(),
        reason: err.to_string(),
    })
}

/// An entry's path relative to the restore folder: its source, then its path.
fn relative(e: &Entry) -> PathBuf {
    std::iter::once(e.source.as_str()).chain(e.path.split('/')).collect()
}

/// Where a restore writes its files before they are placed, `tag` random per
/// restore (so two restores, or a killed one's leftovers, never collide):
///
/// - a source with no `dir/<source>` yet ("fresh", the usual case of a
///   disaster recovery) is written under the staging folder
///   `dir/.ibs-restore-<tag>/<source>/…` at the files' final relative paths
///   and moved into place whole at the end: one rename per source, not one
///   per file;
/// - a source whose folder exists has each file `i` written to
///   `.ibs-restore-<tag>-<i>.tmp` beside its final name and renamed at the end.
///
/// Every name follows from the entry, so the restore keeps only entry indices.
struct StagingNames {
    dir: PathBuf,
    tag: u64,
    root: PathBuf,
    fresh: BTreeSet<String>,
}

impl StagingNames {
    /// Looks up which of the `selected` sources are fresh and creates the
    /// staging folder if any is.
    async fn new(dir: &Path, selected: BTreeSet<&str>) -> Result<Self> {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(|e| RecoveryError::Usage(format!("random generator failed: {e}")))?;
        let tag = u64::from_be_bytes(r);
        let mut names = StagingNames::with_tag(dir, tag);
        let mut fresh = BTreeSet::new();
        for source in selected {
            match tokio::fs::symlink_metadata(dir.join(source)).await {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    fresh.insert(source.to_owned());
                }
                // Anything else (a folder, a link, a file) goes the per-file way and its checks.
                _ => {}
            }
        }
        if !fresh.is_empty() {
            tokio::fs::create_dir(&names.root)
                .await
                .map_err(|source| RecoveryError::Io {
                    action: "cannot create",
                    path: names.root.clone(),
                    source,
                })?;
        }
        names.fresh = fresh;
        Ok(names)
    }

    /// The names of a restore into `dir` with `tag`, no source fresh yet.
    fn with_tag(dir: &Path, tag: u64) -> Self {
        StagingNames {
            dir: dir.to_owned(),
            tag,
            root: dir.join(format!(".ibs-restore-{tag:016x}")),
            fresh: BTreeSet::new(),
        }
    }

    fn is_fresh(&self, e: &Entry) -> bool {
        self.fresh.contains(&e.source)
    }

    /// The staging folder, if this restore made one.
    fn root_if_used(&self) -> Option<PathBuf> {
        (!self.fresh.is_empty()).then(|| self.root.clone())
    }

    /// The folder entry paths are resolved under while writing.
    fn base(&self, e: &Entry) -> &Path {
        if self.is_fresh(e) { &self.root } else { &self.dir }
    }

    /// Where entry `index` is written.
    fn write_path(&self, e: &Entry, index: usize) -> PathBuf {
        if self.is_fresh(e) {
            self.root.join(relative(e))
        } else {
            self.pair(e, index).0
        }
    }

    /// (temporary, final) path of entry `index` of a source that existed.
    fn pair(&self, e: &Entry, index: usize) -> (PathBuf, PathBuf) {
        let target = self.dir.join(relative(e));
        let temp = target.with_file_name(format!(".ibs-restore-{:016x}-{index}.tmp", self.tag));
        (temp, target)
    }
}

/// Folders this restore has checked (found to be real folders, not links)
/// and the ones it created, shared by the writing tasks.
#[derive(Clone, Default)]
struct Checked(Arc<std::sync::Mutex<Folders>>);

#[derive(Default)]
struct Folders {
    checked: HashSet<PathBuf>,
    created: Vec<PathBuf>,
}

impl Checked {
    /// [`prepare`] under the lock, so two tasks never race to create or check a folder.
    fn prepare(&self, dir: &Path, rel: &Path, overwrite: bool, source_name: &str, path: &str) -> Result<()> {
        let mut folders = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Folders { checked, created } = &mut *folders;
        prepare(dir, rel, overwrite, checked, created, source_name, path)
    }

    /// The folders this restore created, outermost first.
    fn created(&self) -> Vec<PathBuf> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .created
            .clone()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RecoveryError::Usage(format!("restore task failed: {e}")))?
}

/// Walks down from `dir` along `rel`'s parents, creating folders and refusing
/// symbolic links and non-folders (folders already checked in this restore are
/// skipped), then checks the final name.
fn prepare(
    dir: &Path,
    rel: &Path,
    overwrite: bool,
    checked: &mut HashSet<PathBuf>,
    created: &mut Vec<PathBuf>,
    source_name: &str,
    path: &str,
) -> Result<()> {
    let unsafe_path = |reason: String| RecoveryError::UnsafePath {
        source_name: source_name.to_owned(),
        path: path.to_owned(),
        reason,
    };
    let io = |action: &'static str, p: &Path| {
        let path = p.to_owned();
        move |source| RecoveryError::Io { action, path, source }
    };
    let components: Vec<_> = rel.components().collect();
    let (file_name, parents) = components
        .split_last()
        .ok_or_else(|| unsafe_path("empty path".into()))?;
    let mut at = dir.to_owned();
    for c in parents {
        at.push(c);
        if checked.contains(&at) {
            continue;
        }
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(unsafe_path(format!("{} is a symbolic link", at.display())));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(unsafe_path(format!("{} is not a folder", at.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&at).map_err(io("cannot create", &at))?;
                created.push(at.clone());
            }
            Err(e) => return Err(io("cannot inspect", &at)(e)),
        }
        checked.insert(at.clone());
    }
    let target = at.join(file_name);
    match std::fs::symlink_metadata(&target) {
        // Replaced by the final rename, which replaces a link itself and
        // never follows it: the file it points to is not touched.
        Ok(m) if m.file_type().is_symlink() && overwrite => {}
        Ok(m) if !m.is_file() && !m.file_type().is_symlink() => {
            return Err(unsafe_path(format!("{} is not a file", target.display())));
        }
        Ok(_) if !overwrite => return Err(RecoveryError::Exists(target)),
        _ => {}
    }
    Ok(())
}

/// How a restored file is created: new (never an existing file), readable
/// by its owner only while it is written when the entry has a mode (so a
/// `0600` key is never more open, even for a moment), otherwise as the
/// process's umask says.
fn new_file_options(mode: Option<u32>) -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true)
        .create_new(true)
        .mode(if mode.is_some() { 0o600 } else { 0o666 });
    o
}

/// Gives a written file the entry's mode and modification time. The mode is
/// applied exactly as stored, without setuid and setgid: those are kept
/// only with the owner, which this format does not record (FORMAT.md §7).
fn finish_file(file: &std::fs::File, mode: Option<u32>, mtime: Option<i64>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(mode) = mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o1777))?;
    }
    if let Some(t) = mtime {
        let at = if t >= 0 {
            std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(t.unsigned_abs()))
        } else {
            std::time::UNIX_EPOCH.checked_sub(std::time::Duration::from_secs(t.unsigned_abs()))
        };
        if let Some(at) = at {
            file.set_modified(at)?;
        }
    }
    Ok(())
}

/// Writes `data` to the new file `temp` with `entry`'s mode and time;
/// removes it if writing fails.
fn write_temp_sync(temp: &Path, data: &[u8], mode: Option<u32>, mtime: Option<i64>) -> Result<()> {
    use std::io::Write;
    let io = |action: &'static str| {
        move |source| RecoveryError::Io {
            action,
            path: temp.to_owned(),
            source,
        }
    };
    let mut file = new_file_options(mode).open(temp).map_err(io("cannot create"))?;
    file.write_all(data)
        .and_then(|()| finish_file(&file, mode, mtime))
        .map_err(|e| {
            let _ = std::fs::remove_file(temp);
            io("cannot write")(e)
        })
}

fn rename_sync(from: &Path, to: &Path, overwrite: bool) -> Result<()> {
    let flags = if overwrite {
        rustix::fs::RenameFlags::empty()
    } else {
        rustix::fs::RenameFlags::NOREPLACE
    };
    match rustix::fs::renameat_with(rustix::fs::CWD, from, rustix::fs::CWD, to, flags) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(RecoveryError::Exists(to.to_owned())),
        Err(e) => Err(RecoveryError::Io {
            action: "cannot rename into",
            path: to.to_owned(),
            source: e.into(),
        }),
    }
}

/// Where a restore into `dir` would put an entry, for the fuzz target
/// `restore_names` (see [`crate::fuzzing`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePaths {
    /// The entry's path relative to the restore folder.
    pub relative: PathBuf,
    /// Its final path.
    pub target: PathBuf,
    /// Where it is written when its source's folder exists: a temporary
    /// file renamed to `target` at the end.
    pub temp: PathBuf,
    /// Where it is written when its source is fresh: under `staging_root`.
    pub staged: PathBuf,
    /// The staging folder of a restore with this tag.
    pub staging_root: PathBuf,
    /// The folder a fresh source is moved from at the end …
    pub moved_from: PathBuf,
    /// … and where it is moved to.
    pub moved_to: PathBuf,
}

/// The name checks of [`Backup::restore_to`] on (`source`, `path`), then, if
/// they pass, the paths a restore into `dir` with staging tag `tag` would
/// use for it as entry `index`: the restore's own functions, without the
/// file system.
pub fn restore_paths(dir: &Path, source: &str, path: &str, tag: u64, index: usize) -> Result<RestorePaths> {
    let e = Entry {
        source: source.to_owned(),
        path: path.to_owned(),
        size: 0,
        sha256: [0; 32],
        mode: None,
        mtime: None,
        offset: 0,
    };
    check_restore_names(&e)?;
    let existing = StagingNames::with_tag(dir, tag);
    let mut fresh = StagingNames::with_tag(dir, tag);
    fresh.fresh.insert(e.source.clone());
    let (temp, target) = existing.pair(&e, index);
    debug_assert_eq!(existing.write_path(&e, index), temp);
    debug_assert_eq!(fresh.base(&e), fresh.root.as_path());
    Ok(RestorePaths {
        relative: relative(&e),
        target,
        temp,
        staged: fresh.write_path(&e, index),
        moved_from: fresh.root.join(&e.source),
        moved_to: dir.join(&e.source),
        staging_root: fresh.root,
    })
}
