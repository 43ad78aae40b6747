//! The restore engine: a backup's entries back onto a POSIX file system as
//! they were — contents, folders, symbolic and hard links, modes, owners,
//! times, sparse holes, extended attributes — with nothing placed until the
//! whole backup has been read and checked.
//!
//! Three steps, each streaming the entries in archive order (memory flat in
//! the number of entries: the engine keeps a stack of open folders and a
//! bounded queue of files being written, never a list of entries):
//!
//! 1. **Stage.** Every selected entry is written under a staging folder
//!    `dir/.ibs-restore-<tag>/<source>/…`, which this restore creates and
//!    nothing else writes into: files are created new (`O_EXCL`), links as
//!    links, folders as folders; nothing is ever written through a link (the
//!    archive's tree rule forbids an entry under a link, and the staging tree
//!    holds only what this restore made). Every entry's SHA-256 is checked
//!    (entries of unselected sources too, unless `skip_verify`). On any
//!    failure the staging folder is removed: a damaged backup places nothing.
//! 2. **Place.** A source whose folder `dir/<source>` does not exist (the
//!    usual disaster-recovery case) is moved into place with one rename. A
//!    source whose folder exists is merged: first every final name is
//!    checked (an existing file is refused unless `overwrite`; a link or file
//!    where a folder goes is refused), then each item is renamed into place
//!    (`RENAME_NOREPLACE` unless `overwrite`), folders that do not exist yet
//!    moved whole.
//! 3. **Folders.** Folder modes, owners and times are applied last,
//!    innermost first, at their final names (opened with
//!    `RESOLVE_NO_SYMLINKS`), so a read-only folder never blocked its own
//!    contents and placing files did not change the times.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use futures::StreamExt;
use ibs_archive::{Entry, EntryKind, Progress, ProgressFn};
use rustix::fs::{Mode, OFlags, Timespec, Timestamps};

use crate::backup::Backup;
use crate::lock::{Leftovers, RestoreLock, blocking, remove_restore_leftovers};
use crate::{RecoveryError, Result};

/// Refuses an entry whose names a restore must not use: the rules of its
/// format version (version 1: UTF-8 without backslash or control
/// characters, FORMAT.md §7; version 2: POSIX names as bytes, §14.5).
fn check_names(e: &Entry, v1: bool) -> Result<()> {
    let checked = e.check_names().and_then(|()| {
        if v1 {
            let path = e
                .path
                .to_str()
                .ok_or_else(|| ibs_archive::Error::Usage("entry path is not UTF-8".into()))?;
            ibs_archive::check_entry_path(path)
        } else {
            Ok(())
        }
    });
    checked.map_err(|err| RecoveryError::UnsafePath {
        source_name: e.source.clone(),
        path: e.path.to_string(),
        reason: err.to_string(),
    })
}

/// Entries up to this size are restored from memory in one blocking task.
const IN_MEMORY_RESTORE: u64 = 8 << 20;
/// Small files being written at most at once.
const PLACE_AHEAD: usize = 16;
/// Bytes of small files being written at most at once (one file may exceed it).
const PLACE_AHEAD_BYTES: u64 = 16 << 20;
/// Names read from a staged folder per batch while merging.
const MERGE_BATCH: usize = 1024;

/// What a restore writes and how: which sources, whether existing files are
/// replaced, owners, progress. The default restores every source, refuses
/// to replace anything, and checks every entry of the backup.
#[derive(Clone, Default)]
pub struct RestoreOptions {
    pub(crate) sources: Option<BTreeSet<String>>,
    pub(crate) overwrite: bool,
    pub(crate) skip_verify: bool,
    pub(crate) owners: Option<bool>,
    pub(crate) progress: Option<ProgressFn>,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("sources", &self.sources)
            .field("overwrite", &self.overwrite)
            .field("skip_verify", &self.skip_verify)
            .field("owners", &self.owners)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Equal when every option is, and both have no progress callback or the same one.
impl PartialEq for RestoreOptions {
    fn eq(&self, other: &Self) -> bool {
        let same_progress = match (&self.progress, &other.progress) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
            _ => false,
        };
        self.sources == other.sources
            && self.overwrite == other.overwrite
            && self.skip_verify == other.skip_verify
            && self.owners == other.owners
            && same_progress
    }
}

impl Eq for RestoreOptions {}

impl RestoreOptions {
    /// Calls `progress` as the restore goes through the backup's entries (in
    /// archive order, restored or only checked): after every entry and
    /// every piece of a large file, with
    /// [`Progress::bytes_in`](ibs_archive::Progress::bytes_in) the entries'
    /// stream bytes gone through so far and
    /// [`Progress::entries_done`](ibs_archive::Progress::entries_done) the
    /// entries done — out of the backup's
    /// [`data_len`](ibs_archive::ArchiveReader::data_len) and
    /// [`entry_count`](ibs_archive::ArchiveReader::entry_count), known before
    /// the restore starts ([`Backup::archive`]), so a caller can show an
    /// ETA — and [`Progress::bytes_out`](ibs_archive::Progress::bytes_out)
    /// the file content handed to the file system. Placing the staged
    /// sources and applying folder metadata come after the last call.
    pub fn progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

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

    /// Skips checking the entries of sources not restored (default: every
    /// entry of the backup is checked, so a restore verifies the whole
    /// backup; every restored entry is checked against its SHA-256 either way).
    pub fn skip_verify(mut self, yes: bool) -> Self {
        self.skip_verify = yes;
        self
    }

    /// Whether to give entries their recorded owners (numeric uid/gid).
    /// Default: when running as root (only root may). Without owners,
    /// setuid and setgid bits are dropped (they would apply to the wrong
    /// user).
    pub fn owners(mut self, yes: bool) -> Self {
        self.owners = Some(yes);
        self
    }
}

/// What a restore wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Regular files written.
    pub files: u64,
    /// Folders written (entries of the backup; a source's own folder not counted).
    pub folders: u64,
    /// Symbolic links made.
    pub symlinks: u64,
    /// Hard links made.
    pub hard_links: u64,
    /// Bytes of file content written (holes not counted).
    pub bytes: u64,
    /// Sources restored (with or without entries).
    pub sources: u64,
    /// What could not be applied, once per kind of thing (e.g. owners when
    /// not running as root), with how many entries it concerned.
    pub not_applied: Vec<String>,
    /// What an earlier, interrupted restore had left in the folder and this
    /// one removed before it started.
    pub leftovers: Leftovers,
}

/// Counts of what could not be applied, reported once each.
#[derive(Default)]
struct Skipped {
    owners: u64,
    setid: u64,
    capabilities: u64,
    /// Entries whose extended attributes were (partly) refused, by the first
    /// reason (attribute and error) — a handful of distinct reasons at most.
    xattrs: std::collections::BTreeMap<String, u64>,
}

impl Skipped {
    fn xattr(&mut self, why: String) {
        const MOST: usize = 8;
        if self.xattrs.len() < MOST || self.xattrs.contains_key(&why) {
            *self.xattrs.entry(why).or_default() += 1;
        } else {
            *self.xattrs.entry("other reasons".into()).or_default() += 1;
        }
    }

    fn add(&mut self, other: Skipped) {
        self.owners += other.owners;
        self.setid += other.setid;
        self.capabilities += other.capabilities;
        for (why, n) in other.xattrs {
            for _ in 0..n {
                self.xattr(why.clone());
            }
        }
    }

    /// `owners_declined`: the caller asked for no owners (nothing to report on them).
    fn into_notes(self, owners_declined: bool) -> Vec<String> {
        let mut out = Vec::new();
        if self.owners > 0 && !owners_declined {
            out.push(format!(
                "owners of {} entries not restored: only root can give files to other users (run as root, or \
                 ask for no owners — `ibs restore --no-owner` — to silence this)",
                self.owners
            ));
        }
        if self.setid > 0 {
            out.push(format!(
                "setuid/setgid bits dropped on {} files (their owners were not restored)",
                self.setid
            ));
        }
        if self.capabilities > 0 {
            out.push(format!(
                "file capabilities (security.capability) not restored on {} files (their owners were not restored)",
                self.capabilities
            ));
        }
        for (why, n) in self.xattrs {
            out.push(format!("extended attributes of {n} entries not restored ({why})"));
        }
        out
    }
}

/// How entry metadata is applied.
#[derive(Clone, Copy)]
struct Apply {
    owners: bool,
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RecoveryError + use<> {
    let path = path.to_owned();
    move |source| RecoveryError::Io { action, path, source }
}

fn errno(action: &'static str, path: &Path) -> impl FnOnce(rustix::io::Errno) -> RecoveryError + use<> {
    let path = path.to_owned();
    move |e| RecoveryError::Io {
        action,
        path,
        source: e.into(),
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The path of entry `e` under `base/<source>/`.
fn entry_path(base: &Path, e: &Entry) -> PathBuf {
    base.join(&e.source).join(e.path.as_os_str())
}

fn timestamps(e: &Entry) -> Option<Timestamps> {
    let secs = e.mtime?;
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: i64::from(e.mtime_nanos) as _,
    };
    Some(Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: t,
    })
}

/// Applies owner, extended attributes, mode and mtime to an open file or
/// folder, in that order: a change of owner clears setuid/setgid (and file
/// capabilities), so the owner comes first; extended attributes before the
/// mode, because the kernel checks write permission on the file's mode
/// (not the open descriptor) and a read-only mode would refuse them; the
/// time last.
fn apply_meta(fd: impl AsFd, e: &Entry, apply: Apply, path: &Path, skipped: &mut Skipped) -> Result<()> {
    let mut owned = false;
    if let Some((uid, gid)) = e.owner {
        if apply.owners {
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(errno("cannot give an owner to", path))?;
            owned = true;
        } else {
            skipped.owners += 1;
        }
    }
    let mut refused: Option<String> = None;
    for (name, value) in &e.xattrs {
        // A file capability is a privilege like setuid: kept only with the owner.
        if name.as_slice() == b"security.capability" && !owned {
            skipped.capabilities += 1;
            continue;
        }
        if let Err(err) = rustix::fs::fsetxattr(&fd, OsStr::from_bytes(name), value, rustix::fs::XattrFlags::empty()) {
            refused.get_or_insert_with(|| format!("{}: {err}", String::from_utf8_lossy(name)));
        }
    }
    if let Some(why) = refused {
        skipped.xattr(why);
    }
    if let Some(mode) = e.mode {
        let keep = if owned { 0o7777 } else { 0o1777 };
        if mode & !keep != 0 {
            skipped.setid += 1;
        }
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & keep)).map_err(errno("cannot set the mode of", path))?;
    }
    if let Some(t) = timestamps(e) {
        rustix::fs::futimens(&fd, &t).map_err(errno("cannot set the time of", path))?;
    }
    Ok(())
}

/// Creates the file `path` (new; readable by its owner only until its mode
/// is applied), writes the stream bytes `data` (a sparse file's extents at
/// their offsets, holes left as holes), and applies the entry's metadata.
fn write_file_sync(path: &Path, e: &Entry, data: &[u8], apply: Apply) -> Result<Skipped> {
    let fd = rustix::fs::open(
        path,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(errno("cannot create", path))?;
    let mut sink = FileSink::new(fd, e);
    sink.write(data).map_err(io_err("cannot write", path))?;
    sink.finish(path, e, apply)
}

/// Writes an entry's stream bytes into a file: at offset 0 onwards for a
/// dense file, extent by extent for a sparse one.
struct FileSink {
    fd: OwnedFd,
    /// (file offset, length) runs still to fill.
    runs: VecDeque<(u64, u64)>,
    size: u64,
}

impl FileSink {
    fn new(fd: OwnedFd, e: &Entry) -> Self {
        let runs = match &e.extents {
            None => VecDeque::from([(0, e.size)]),
            Some(x) => x.iter().map(|x| (x.offset, x.len)).collect(),
        }
        .into_iter()
        .filter(|(_, len)| *len > 0)
        .collect();
        FileSink { fd, runs, size: e.size }
    }

    fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let Some((offset, len)) = self.runs.front_mut() else {
                return Err(std::io::Error::other("more data than the entry's extents hold"));
            };
            let take = (*len).min(data.len() as u64) as usize;
            let n = rustix::io::pwrite(&self.fd, &data[..take], *offset)?;
            data = &data[n..];
            *offset += n as u64;
            *len -= n as u64;
            if *len == 0 {
                self.runs.pop_front();
            }
        }
        Ok(())
    }

    fn finish(self, path: &Path, e: &Entry, apply: Apply) -> Result<Skipped> {
        if !self.runs.is_empty() {
            return Err(RecoveryError::Io {
                action: "cannot write",
                path: path.to_owned(),
                source: std::io::Error::other("fewer bytes than the entry's extents hold"),
            });
        }
        // The logical size, when holes end the file (a dense file written
        // whole has it already: no extra system call per file).
        let end = match &e.extents {
            None => e.size,
            Some(x) => x.last().map_or(0, |x| x.offset + x.len),
        };
        if end != self.size {
            rustix::fs::ftruncate(&self.fd, self.size).map_err(errno("cannot write", path))?;
        }
        let mut skipped = Skipped::default();
        apply_meta(&self.fd, e, apply, path, &mut skipped)?;
        Ok(skipped)
    }
}

/// Makes the symbolic link `path` → target, with its owner and time.
fn write_symlink_sync(path: &Path, e: &Entry, target: &[u8], apply: Apply) -> Result<Skipped> {
    let mut skipped = Skipped::default();
    rustix::fs::symlink(OsStr::from_bytes(target), path).map_err(errno("cannot create the link", path))?;
    if let Some((uid, gid)) = e.owner {
        if apply.owners {
            rustix::fs::chownat(
                rustix::fs::CWD,
                path,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(errno("cannot give an owner to", path))?;
        } else {
            skipped.owners += 1;
        }
    }
    if !e.xattrs.is_empty() {
        // Linux refuses user.* attributes on links; other namespaces need
        // privileges a restore should not assume.
        skipped.xattr("not restored on symbolic links".to_owned());
    }
    if let Some(t) = timestamps(e) {
        rustix::fs::utimensat(rustix::fs::CWD, path, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno("cannot set the time of", path))?;
    }
    Ok(skipped)
}

/// A folder's mode while the restore writes into it: its owner's, until
/// the folder pass applies the recorded one; a folder with no recorded mode
/// is made as the process's umask says and left so.
fn staging_folder_mode(e: &Entry) -> u32 {
    if e.mode.is_some() || e.owner.is_some() {
        0o700
    } else {
        0o777
    }
}

impl Backup {
    /// Restores all (or the selected) sources to `dir/<source>/<path>` (see
    /// the [module docs](crate::restore) for the three steps and their
    /// guarantees). One restore at a time writes into a folder (an advisory
    /// lock on it); a restore killed midway leaves a `.ibs-restore-*` folder,
    /// which the next restore into the same folder removes before it starts
    /// ([`RestoreReport::leftovers`]).
    pub async fn restore_to(&self, dir: &Path, options: &RestoreOptions) -> Result<RestoreReport> {
        let lock = RestoreLock::acquire(dir).await?;
        self.restore_locked(&lock, options).await
    }

    /// [`Backup::restore_to`] into the folder `lock` holds. A caller that may
    /// stop the restore (drop this future) keeps the lock until it has
    /// removed the leftovers ([`RestoreLock::remove_leftovers`]) — after
    /// every write the runtime still runs has finished.
    #[tracing::instrument(name = "restore", level = "info", skip_all, fields(id = %self.info().id, dir = %lock.path().display()))]
    pub async fn restore_locked(&self, lock: &RestoreLock, options: &RestoreOptions) -> Result<RestoreReport> {
        let dir = lock.path().to_owned();
        let all: Vec<String> = self.sources().into_iter().map(str::to_owned).collect();
        let selected: Vec<String> = match &options.sources {
            None => all.clone(),
            Some(wanted) => {
                if let Some(missing) = wanted.iter().find(|s| !all.contains(s)) {
                    return Err(RecoveryError::Usage(format!(
                        "backup {} has no source {missing:?} (it has: {})",
                        self.info().id,
                        all.join(", ")
                    )));
                }
                all.iter().filter(|s| wanted.contains(*s)).cloned().collect()
            }
        };
        for source in &selected {
            ibs_archive::check_source_name(source).map_err(|e| RecoveryError::UnsafePath {
                source_name: source.clone(),
                path: String::new(),
                reason: e.to_string(),
            })?;
            if source.starts_with(".ibs-restore-") {
                // The names of the restore's own staging folders.
                return Err(RecoveryError::UnsafePath {
                    source_name: source.clone(),
                    path: String::new(),
                    reason: "a source named like a restore's staging folder (.ibs-restore-…) is not restored".into(),
                });
            }
        }
        // Under the lock: whatever an interrupted restore left is removed.
        let at = dir.clone();
        let leftovers = blocking(move || remove_restore_leftovers(&at)).await?;
        let running_as_root = is_root();
        let apply = Apply {
            owners: options.owners.unwrap_or(running_as_root),
        };
        let mut tag = [0u8; 8];
        getrandom::fill(&mut tag).map_err(RecoveryError::Random)?;
        let stage = dir.join(format!(".ibs-restore-{:016x}", u64::from_be_bytes(tag)));
        let (st, sel) = (stage.clone(), selected.clone());
        blocking(move || {
            rustix::fs::mkdir(&st, Mode::from_raw_mode(0o700)).map_err(errno("cannot create", &st))?;
            // First, so that only a folder a restore made is ever removed as a leftover.
            let marker = st.join(crate::lock::STAGING_MARKER);
            std::fs::File::create_new(&marker).map_err(io_err("cannot create", &marker))?;
            for s in &sel {
                let p = st.join(s);
                rustix::fs::mkdir(&p, Mode::from_raw_mode(0o777)).map_err(errno("cannot create", &p))?;
            }
            Ok(())
        })
        .await?;
        let mut report = RestoreReport {
            leftovers,
            sources: selected.len() as u64,
            ..RestoreReport::default()
        };
        let mut skipped = Skipped::default();
        let wanted: BTreeSet<String> = selected.iter().cloned().collect();
        let staged = self
            .stage(&stage, &wanted, options, apply, &mut report, &mut skipped)
            .await;
        if let Err(e) = staged {
            let st = stage.clone();
            let _ = blocking(move || {
                let _ = std::fs::remove_dir_all(&st);
                Ok(())
            })
            .await;
            return Err(e);
        }
        let (d, st, overwrite) = (dir.clone(), stage.clone(), options.overwrite);
        let placed = blocking(move || {
            let placed = selected.iter().try_for_each(|s| place_source(&d, &st, s, overwrite));
            let _ = std::fs::remove_dir_all(&st);
            placed
        })
        .await;
        placed?;
        tracing::info!(files = report.files, bytes = report.bytes, "staged and placed");
        if self.format_version() != 1 {
            self.apply_folders(&dir, &wanted, apply, &mut skipped).await?;
        }
        report.not_applied = skipped.into_notes(options.owners == Some(false));
        let synced = dir.clone();
        blocking(move || {
            let d = std::fs::File::open(&synced).map_err(io_err("cannot sync", &synced))?;
            rustix::fs::syncfs(&d).map_err(errno("cannot sync", &synced))
        })
        .await?;
        Ok(report)
    }

    /// Step 1: every entry in archive order, selected ones written under `stage`.
    async fn stage(
        &self,
        stage: &Path,
        wanted: &BTreeSet<String>,
        options: &RestoreOptions,
        apply: Apply,
        report: &mut RestoreReport,
        skipped: &mut Skipped,
    ) -> Result<()> {
        let v1 = self.format_version() == 1;
        let skip_verify = options.skip_verify;
        let tally = &mut Tally {
            progress: options.progress.clone(),
            now: Progress::default(),
        };
        let mut writing: VecDeque<(u64, tokio::task::JoinHandle<Result<Skipped>>)> = VecDeque::new();
        let mut writing_bytes = 0u64;
        let pass: Result<()> = async {
            let mut entries = std::pin::pin!(self.entries());
            while let Some(e) = entries.next().await {
                let e = e?;
                if !wanted.contains(&e.source) {
                    if !skip_verify && e.stream_len() > 0 {
                        let mut stream = std::pin::pin!(self.stream(&e));
                        while let Some(piece) = stream.next().await {
                            tally.read(piece?.len() as u64, 0);
                        }
                    } else {
                        tally.now.bytes_in += e.stream_len();
                    }
                    tally.entry_done();
                    continue;
                }
                check_names(&e, v1)?;
                let path = entry_path(stage, &e);
                if v1 && let Some(parent) = path.parent() {
                    // Version 1 records no folders: make the parents (all
                    // under the staging folder, which holds no links).
                    std::fs::create_dir_all(parent).map_err(io_err("cannot create", parent))?;
                }
                match &e.kind {
                    EntryKind::Folder => {
                        rustix::fs::mkdir(&path, Mode::from_raw_mode(staging_folder_mode(&e)))
                            .map_err(errno("cannot create", &path))?;
                        report.folders += 1;
                    }
                    EntryKind::File if e.stream_len() <= IN_MEMORY_RESTORE => {
                        let data = self.read(&e).await?;
                        tally.now.bytes_in += data.len() as u64;
                        tally.now.bytes_out += data.len() as u64;
                        while !writing.is_empty()
                            && (writing.len() >= PLACE_AHEAD || writing_bytes + e.stream_len() > PLACE_AHEAD_BYTES)
                        {
                            writing_bytes -= finish_one(&mut writing, skipped).await?;
                        }
                        let len = e.stream_len();
                        let task = tokio::task::spawn_blocking(move || write_file_sync(&path, &e, &data, apply));
                        writing.push_back((len, task));
                        writing_bytes += len;
                        report.files += 1;
                        report.bytes += len;
                    }
                    EntryKind::File => {
                        skipped.add(self.write_large(&path, &e, apply, tally).await?);
                        report.files += 1;
                        report.bytes += e.stream_len();
                    }
                    EntryKind::Symlink { target } => {
                        let target = target.clone();
                        skipped.add(blocking(move || write_symlink_sync(&path, &e, &target, apply)).await?);
                        report.symlinks += 1;
                    }
                    EntryKind::HardLink { target } => {
                        // Its file may still be being written.
                        while !writing.is_empty() {
                            writing_bytes -= finish_one(&mut writing, skipped).await?;
                        }
                        let from = stage.join(&e.source).join(target.as_os_str());
                        blocking(move || {
                            rustix::fs::link(&from, &path).map_err(errno("cannot create the hard link", &path))
                        })
                        .await?;
                        report.hard_links += 1;
                    }
                }
                tally.entry_done();
            }
            while !writing.is_empty() {
                finish_one(&mut writing, skipped).await?;
            }
            Ok(())
        }
        .await;
        if pass.is_err() {
            // Every write still running finishes before the caller removes the staging folder.
            while !writing.is_empty() {
                let _ = finish_one(&mut writing, skipped).await;
            }
        }
        pass
    }

    /// Streams a file too large to hold in memory into `path`.
    async fn write_large(&self, path: &Path, e: &Entry, apply: Apply, tally: &mut Tally) -> Result<Skipped> {
        let p = path.to_owned();
        let fd = blocking(move || {
            rustix::fs::open(
                &p,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(errno("cannot create", &p))
        })
        .await?;
        let mut sink = Some(FileSink::new(fd, e));
        let mut stream = std::pin::pin!(self.stream(e));
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            let len = piece.len() as u64;
            let mut s = sink
                .take()
                .ok_or_else(|| RecoveryError::Usage("restore writer lost".into()))?;
            let p = path.to_owned();
            s = blocking(move || {
                s.write(&piece).map_err(io_err("cannot write", &p))?;
                Ok(s)
            })
            .await?;
            sink = Some(s);
            tally.read(len, len);
        }
        let s = sink.ok_or_else(|| RecoveryError::Usage("restore writer lost".into()))?;
        let (p, e) = (path.to_owned(), e.clone());
        blocking(move || s.finish(&p, &e, apply)).await
    }

    /// Step 3: folder metadata at the final names, innermost first.
    async fn apply_folders(
        &self,
        dir: &Path,
        wanted: &BTreeSet<String>,
        apply: Apply,
        skipped: &mut Skipped,
    ) -> Result<()> {
        let mut open: Vec<Entry> = Vec::new();
        let mut entries = std::pin::pin!(self.entries());
        loop {
            let next = match entries.next().await {
                Some(e) => Some(e?),
                None => None,
            };
            // Close the folders the next entry is not inside.
            while let Some(top) = open.last() {
                let inside = next
                    .as_ref()
                    .is_some_and(|n| n.source == top.source && top.path.is_ancestor_of(n.path.as_bytes()));
                if inside {
                    break;
                }
                let folder = open.pop().ok_or_else(|| RecoveryError::Usage("folder stack".into()))?;
                let (d, f) = (dir.to_owned(), folder);
                skipped.add(blocking(move || apply_folder_sync(&d, &f, apply)).await?);
            }
            let Some(e) = next else { break };
            if e.kind == EntryKind::Folder && wanted.contains(&e.source) {
                open.push(e);
            }
        }
        Ok(())
    }
}

/// How far a restore has got, and whom to tell.
struct Tally {
    progress: Option<ProgressFn>,
    now: Progress,
}

impl Tally {
    /// `bytes` of entry streams gone through, `written` of them handed to the file system.
    fn read(&mut self, bytes: u64, written: u64) {
        self.now.bytes_in += bytes;
        self.now.bytes_out += written;
        self.report();
    }

    fn entry_done(&mut self) {
        self.now.entries_done += 1;
        self.report();
    }

    fn report(&self) {
        if let Some(p) = &self.progress {
            p(&self.now);
        }
    }
}

async fn finish_one(
    writing: &mut VecDeque<(u64, tokio::task::JoinHandle<Result<Skipped>>)>,
    skipped: &mut Skipped,
) -> Result<u64> {
    let Some((len, task)) = writing.pop_front() else {
        return Ok(0);
    };
    let s = task.await.map_err(RecoveryError::Task)??;
    skipped.add(s);
    Ok(len)
}

/// Applies a folder entry's metadata to its final folder, opened beneath
/// `dir` without following any link.
fn apply_folder_sync(dir: &Path, e: &Entry, apply: Apply) -> Result<Skipped> {
    let mut skipped = Skipped::default();
    if e.mode.is_none() && e.owner.is_none() && e.mtime.is_none() && e.xattrs.is_empty() {
        return Ok(skipped);
    }
    let rel = Path::new(&e.source).join(e.path.as_os_str());
    let path = dir.join(&rel);
    let base = rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .map_err(errno("cannot open", dir))?;
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat2(
        &base,
        &rel,
        flags,
        Mode::empty(),
        rustix::fs::ResolveFlags::NO_SYMLINKS | rustix::fs::ResolveFlags::BENEATH,
    ) {
        Ok(fd) => fd,
        // Kernels before 5.6: check each component by hand.
        Err(rustix::io::Errno::NOSYS) => open_beneath(&base, &rel, &path)?,
        Err(e) => return Err(errno("cannot open", &path)(e)),
    };
    apply_meta(&fd, e, apply, &path, &mut skipped)?;
    Ok(skipped)
}

fn open_beneath(base: &OwnedFd, rel: &Path, path: &Path) -> Result<OwnedFd> {
    let mut at = rustix::io::dup(base).map_err(errno("cannot open", path))?;
    for c in rel.components() {
        at = rustix::fs::openat(
            &at,
            c.as_os_str(),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno("cannot open", path))?;
    }
    Ok(at)
}

/// Step 2 for one source: moved whole when `dir/<source>` does not exist,
/// merged when it does.
fn place_source(dir: &Path, stage: &Path, source: &str, overwrite: bool) -> Result<()> {
    let from = stage.join(source);
    let to = dir.join(source);
    match std::fs::symlink_metadata(&to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => rename(&from, &to, false),
        Ok(m) if m.is_dir() => {
            check_merge(&from, &to, overwrite, source)?;
            merge(&from, &to, overwrite)
        }
        Ok(m) if m.file_type().is_symlink() => Err(RecoveryError::UnsafePath {
            source_name: source.to_owned(),
            path: String::new(),
            reason: format!("{} is a symbolic link", crate::error::shown(&to)),
        }),
        Ok(_) => Err(RecoveryError::UnsafePath {
            source_name: source.to_owned(),
            path: String::new(),
            reason: format!("{} is not a folder", crate::error::shown(&to)),
        }),
        Err(e) => Err(io_err("cannot inspect", &to)(e)),
    }
}

/// Checks every final name of the staged folder `from` against `to` before
/// anything moves.
fn check_merge(from: &Path, to: &Path, overwrite: bool, source: &str) -> Result<()> {
    let unsafe_path = |reason: String| RecoveryError::UnsafePath {
        source_name: source.to_owned(),
        path: String::new(),
        reason,
    };
    for item in std::fs::read_dir(from).map_err(io_err("cannot list", from))? {
        let item = item.map_err(io_err("cannot list", from))?;
        let staged_is_dir = item
            .file_type()
            .map_err(io_err("cannot inspect", &item.path()))?
            .is_dir();
        let target = to.join(item.file_name());
        match std::fs::symlink_metadata(&target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("cannot inspect", &target)(e)),
            Ok(m) if m.file_type().is_symlink() && staged_is_dir => {
                return Err(unsafe_path(format!(
                    "{} is a symbolic link",
                    crate::error::shown(&target)
                )));
            }
            Ok(m) if staged_is_dir && !m.is_dir() => {
                return Err(unsafe_path(format!("{} is not a folder", crate::error::shown(&target))));
            }
            Ok(_) if staged_is_dir => check_merge(&item.path(), &target, overwrite, source)?,
            Ok(m) if m.is_dir() => {
                return Err(unsafe_path(format!("{} is a folder", crate::error::shown(&target))));
            }
            Ok(_) if !overwrite => return Err(RecoveryError::Exists(target)),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// Moves the staged folder `from`'s contents into the existing folder `to`,
/// a batch of names at a time (memory flat in the folder's size), and
/// removes `from`.
fn merge(from: &Path, to: &Path, overwrite: bool) -> Result<()> {
    loop {
        let batch: Vec<std::fs::DirEntry> = std::fs::read_dir(from)
            .map_err(io_err("cannot list", from))?
            .take(MERGE_BATCH)
            .collect::<std::io::Result<_>>()
            .map_err(io_err("cannot list", from))?;
        if batch.is_empty() {
            break;
        }
        for item in batch {
            let target = to.join(item.file_name());
            let is_dir = item
                .file_type()
                .map_err(io_err("cannot inspect", &item.path()))?
                .is_dir();
            if is_dir && std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                merge(&item.path(), &target, overwrite)?;
            } else {
                rename(&item.path(), &target, overwrite && !is_dir)?;
            }
        }
    }
    std::fs::remove_dir(from).map_err(io_err("cannot remove", from))
}

fn rename(from: &Path, to: &Path, overwrite: bool) -> Result<()> {
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
    /// Where it is staged first.
    pub staged: PathBuf,
    /// The staging folder of a restore with this tag.
    pub staging_root: PathBuf,
}

/// The name checks of a restore on (`source`, `path`), then, if they pass,
/// the paths a restore into `dir` with staging tag `tag` would use for it:
/// the restore's own functions, without the file system.
pub fn restore_paths(dir: &Path, source: &str, path: &[u8], tag: u64) -> Result<RestorePaths> {
    let e = Entry::file(source, path, 0, ibs_archive::EMPTY_SHA256);
    e.check_names().map_err(|err| RecoveryError::UnsafePath {
        source_name: e.source.clone(),
        path: e.path.to_string(),
        reason: err.to_string(),
    })?;
    let staging_root = dir.join(format!(".ibs-restore-{tag:016x}"));
    Ok(RestorePaths {
        relative: Path::new(&e.source).join(e.path.as_os_str()),
        target: entry_path(dir, &e),
        staged: entry_path(&staging_root, &e),
        staging_root,
    })
}
