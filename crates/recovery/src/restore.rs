//! The restore engine: a backup's entries back onto a POSIX file system as
//! they were — contents, folders, symbolic and hard links, modes, owners,
//! times, sparse holes, extended attributes — with nothing placed until the
//! whole backup has been read and checked.
//!
//! Three steps, each streaming the entries in archive order (memory flat in
//! the number of entries: the engine keeps a chain of open folders and a
//! bounded queue of work, never a list of entries):
//!
//! 1. **Stage.** Every selected entry is written under a staging folder
//!    `dir/.ibs-restore-<tag>/<source>/…`, which this restore creates and
//!    nothing else writes into: files are created new (`O_EXCL`), links as
//!    links, folders as folders; nothing is ever written through a link (the
//!    archive's tree rule forbids an entry under a link, and the staging tree
//!    holds only what this restore made). Every entry's SHA-256 is checked
//!    (entries of unselected sources too, unless `skip_verify`) before the
//!    staged tree is placed. On any failure the staging folder is removed:
//!    a damaged backup places nothing.
//!
//!    The work is shared out so both cores stay busy. The archive reader
//!    opens (authenticates and decompresses) the next frames on tokio's
//!    blocking pool while the current one is used (its decode-ahead: 3 MiB
//!    of frames at most, started because the restore asks for the frames in
//!    order); the restore's task takes the entries out of the frames (a
//!    small file's bytes stay the frame's own, not copied) and hands them
//!    to a writer thread, started for the restore, which makes them; each
//!    file's SHA-256 is checked beside the writer (small files in batches
//!    of 1 MiB on the blocking pool, a large one on a thread of its own as
//!    its pieces stream past), and every check has passed before step 2
//!    places anything. The task hands the writer *batches* of work in archive
//!    order (folders, whole small files, the pieces of a large one, links;
//!    at most 64 items or 2 MiB each) over a bounded queue (12 MiB in
//!    flight at most), so one core decodes while the other
//!    creates files, with one hand-off per batch and memory flat. The
//!    writer makes every entry relative to open folder handles — the
//!    staging folder, the source's folder and the chain down to the current
//!    parent, each opened once as the walk enters it, segment by segment
//!    with `O_NOFOLLOW` (a version 1 backup, which records no folders, has
//!    missing parents made there) — with `openat`/`mkdirat`/`symlinkat`/
//!    `linkat`, and applies owners, extended attributes, modes and times
//!    through the open file (one handle per level of depth is open: a tree
//!    deeper than about a thousand levels needs a higher `RLIMIT_NOFILE`
//!    than the usual soft limit of 1 024, which the `ibs` command raises to
//!    the hard one). Because it makes items in order, a hard link's
//!    file is always there before it. The writer stops at its first error,
//!    which the task reports (the path named); when the task fails it stops
//!    the writer and waits for it before the staging folder is removed.
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
//!    contents and placing files did not change the times. Then one
//!    `syncfs` of the restore folder's file system makes it all durable (no
//!    `fsync` per file).

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
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

/// Entries up to this size are handed to the staging writer whole, in one
/// work item; larger ones piece by piece (a frame at most each).
const IN_MEMORY_RESTORE: u64 = BATCH_BYTES;
/// Work items in one batch handed to the staging writer.
const BATCH_ITEMS: usize = 64;
/// Bytes of file content in one batch at most: a batch is handed over
/// before an item would take it past this (an item alone may reach it, or a
/// large file's piece be one frame, 1 MiB unless the archive chose larger).
const BATCH_BYTES: u64 = 2 << 20;
/// Batches queued for the staging writer beyond the one it is working on
/// (and the one being filled): at most 6 × [`BATCH_ITEMS`] items and
/// 6 × [`BATCH_BYTES`] = 12 MiB in flight, whatever the backup's size —
/// enough for either side to run on through the other's short stalls.
const QUEUED_BATCHES: usize = 4;
/// Folders whose metadata one blocking task applies.
const FOLDER_BATCH: usize = 256;
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

/// Like [`errno`], for a path made only when there is an error to name it
/// in (the staging writer does not build a path per entry).
fn errno_at<'a>(
    action: &'static str,
    path: &'a dyn Fn() -> PathBuf,
) -> impl FnOnce(rustix::io::Errno) -> RecoveryError + 'a {
    move |e| RecoveryError::Io {
        action,
        path: path(),
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
fn apply_meta(fd: impl AsFd, e: &Entry, apply: Apply, path: &dyn Fn() -> PathBuf, skipped: &mut Skipped) -> Result<()> {
    let mut owned = false;
    if let Some((uid, gid)) = e.owner {
        if apply.owners {
            rustix::fs::fchown(
                &fd,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
            )
            .map_err(errno_at("cannot give an owner to", path))?;
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
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & keep)).map_err(errno_at("cannot set the mode of", path))?;
    }
    if let Some(t) = timestamps(e) {
        rustix::fs::futimens(&fd, &t).map_err(errno_at("cannot set the time of", path))?;
    }
    Ok(())
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

    /// Checks every extent was filled, sets the logical size when holes end
    /// the file, and applies the entry's metadata.
    fn finish(self, e: &Entry, apply: Apply, path: &dyn Fn() -> PathBuf, skipped: &mut Skipped) -> Result<()> {
        if !self.runs.is_empty() {
            return Err(RecoveryError::Io {
                action: "cannot write",
                path: path(),
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
            rustix::fs::ftruncate(&self.fd, self.size).map_err(errno_at("cannot write", path))?;
        }
        apply_meta(&self.fd, e, apply, path, skipped)
    }
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
    /// every write the runtime still runs has finished. (The staging
    /// writer's thread is not the runtime's: dropping the future stops it
    /// after the item it is making and waits for it.)
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
            // Every source's names are checked against the folder before any
            // source moves: a conflict in the last source must not leave the
            // first ones placed (and in the way of the next attempt).
            let placed = selected
                .iter()
                .try_for_each(|s| check_source(&d, &st, s, overwrite))
                .and_then(|()| selected.iter().try_for_each(|s| place_source(&d, &st, s, overwrite)));
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

    /// Step 1: every entry in archive order, selected ones written under
    /// `stage` by the staging writer (a thread of its own, fed batches of
    /// work in archive order) while this task reads, decrypts, decompresses
    /// and checks the next entries.
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
        let mut writer = Writer::start(stage, v1, apply)?;
        let mut checks = Checks::default();
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
                match &e.kind {
                    EntryKind::Folder => {
                        writer.push(Work::Folder(e), 0).await?;
                        report.folders += 1;
                    }
                    EntryKind::File if e.stream_len() <= IN_MEMORY_RESTORE => {
                        let len = e.stream_len();
                        // The frames' own bytes (a small file is usually one
                        // slice of one frame): nothing copied here. Their
                        // SHA-256 is checked on the blocking pool while the
                        // writer makes the file in the staging folder.
                        let mut pieces = Vec::with_capacity(1);
                        {
                            let mut stream = std::pin::pin!(self.stream_unchecked(&e));
                            while let Some(piece) = stream.next().await {
                                pieces.push(piece?);
                            }
                        }
                        tally.now.bytes_in += len;
                        tally.now.bytes_out += len;
                        checks
                            .add(&e, &pieces, len)
                            .await
                            .map_err(|err| self.content_error(err))?;
                        writer.push(Work::File(e, pieces), len).await?;
                        report.files += 1;
                        report.bytes += len;
                    }
                    EntryKind::File => {
                        let len = e.stream_len();
                        let mut stream = std::pin::pin!(self.stream_unchecked(&e));
                        let check = checks.stream(&e).map_err(|err| self.content_error(err))?;
                        writer.push(Work::LargeStart(e.clone()), 0).await?;
                        while let Some(piece) = stream.next().await {
                            let piece = piece?;
                            let n = piece.len() as u64;
                            // A check that ended early failed: its result says why.
                            let _ = check.send(piece.clone()).await;
                            writer.push(Work::LargePiece(piece), n).await?;
                            tally.read(n, n);
                        }
                        drop(check);
                        checks.bound().await.map_err(|err| self.content_error(err))?;
                        writer.push(Work::LargeEnd, 0).await?;
                        report.files += 1;
                        report.bytes += len;
                    }
                    EntryKind::Symlink { .. } => {
                        writer.push(Work::Symlink(e), 0).await?;
                        report.symlinks += 1;
                    }
                    EntryKind::HardLink { .. } => {
                        // The writer handles items in order: its file is there before it.
                        writer.push(Work::HardLink(e), 0).await?;
                        report.hard_links += 1;
                    }
                }
                tally.entry_done();
            }
            // Every content check has passed before the writer is done and
            // anything is placed.
            checks.finish().await.map_err(|err| self.content_error(err))
        }
        .await;
        match pass {
            Ok(()) => {
                skipped.add(writer.finish().await?);
                Ok(())
            }
            Err(e) => {
                // The writer stops and has finished before the caller removes the staging folder.
                writer.abort().await;
                Err(e)
            }
        }
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
        // Closed folders, in the order they closed, applied a batch at a time.
        let mut ready: Vec<Entry> = Vec::new();
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
                ready.push(folder);
                if ready.len() >= FOLDER_BATCH {
                    skipped.add(apply_folder_batch(dir, std::mem::take(&mut ready), apply).await?);
                }
            }
            let Some(e) = next else { break };
            if e.kind == EntryKind::Folder && wanted.contains(&e.source) {
                open.push(e);
            }
        }
        skipped.add(apply_folder_batch(dir, ready, apply).await?);
        Ok(())
    }
}

/// How far a restore has got, and whom to tell.
/// Bytes of small files one content check takes (a blocking-pool task).
const CHECK_BYTES: u64 = 1 << 20;
/// Content checks running at once; the restore waits for the oldest beyond.
const CHECKS_RUNNING: usize = 4;
/// Pieces (a frame each at most) queued for a large file's check (its own thread).
const LARGE_CHECK_QUEUE: usize = 4;

/// The SHA-256 checks of small files' contents, run on the blocking pool in
/// batches beside the writer (the restore's own task would otherwise hash
/// every byte itself, one core's worth of serial work). Bounded: at most
/// [`CHECKS_RUNNING`] batches of [`CHECK_BYTES`] (the bytes are shared with
/// the writer's queue, not copied). A mismatch fails the restore before
/// anything is placed.
#[derive(Default)]
struct Checks {
    batch: Vec<(Entry, Vec<Bytes>)>,
    bytes: u64,
    running: VecDeque<Check>,
}

type CheckResult = std::result::Result<(), ibs_archive::Error>;

/// A content check under way: a batch on the blocking pool, or a large
/// file's on a thread of its own. The latter waits for its pieces, so it
/// must not hold one of the blocking pool's threads (the `ibs` command
/// runs with two): the reads and frames it waits for need them.
enum Check {
    Batch(tokio::task::JoinHandle<CheckResult>),
    Stream(tokio::sync::oneshot::Receiver<CheckResult>),
}

impl Checks {
    async fn add(&mut self, e: &Entry, pieces: &[Bytes], len: u64) -> CheckResult {
        self.batch.push((e.clone(), pieces.to_vec()));
        self.bytes += len;
        if self.bytes >= CHECK_BYTES || self.batch.len() >= BATCH_ITEMS * 4 {
            self.start();
            self.bound().await?;
        }
        Ok(())
    }

    /// Waits for the oldest checks until at most [`CHECKS_RUNNING`] run.
    async fn bound(&mut self) -> CheckResult {
        while self.running.len() > CHECKS_RUNNING {
            self.wait_oldest().await?;
        }
        Ok(())
    }

    fn start(&mut self) {
        self.bytes = 0;
        let batch = std::mem::take(&mut self.batch);
        if batch.is_empty() {
            return;
        }
        self.running
            .push_back(Check::Batch(tokio::task::spawn_blocking(move || {
                batch.iter().try_for_each(|(e, pieces)| e.check_content(pieces))
            })));
    }

    /// A large file's check: its pieces are sent, in order, to a thread
    /// that hashes them as they come (drop the sender after the last one,
    /// then [`bound`](Self::bound)).
    fn stream(&mut self, e: &Entry) -> std::result::Result<tokio::sync::mpsc::Sender<Bytes>, ibs_archive::Error> {
        let (pieces, mut rx) = tokio::sync::mpsc::channel::<Bytes>(LARGE_CHECK_QUEUE);
        let (done, result) = tokio::sync::oneshot::channel();
        let e = e.clone();
        std::thread::Builder::new()
            .name("ibs-restore-check".into())
            .spawn(move || {
                let _ = done.send(e.check_content(std::iter::from_fn(|| rx.blocking_recv())));
            })
            .map_err(ibs_archive::Error::WorkerSpawn)?;
        self.running.push_back(Check::Stream(result));
        Ok(pieces)
    }

    async fn wait_oldest(&mut self) -> CheckResult {
        match self.running.pop_front() {
            Some(Check::Batch(task)) => task.await.map_err(|_| ibs_archive::Error::WorkerLost)?,
            Some(Check::Stream(result)) => result.await.map_err(|_| ibs_archive::Error::WorkerLost)?,
            None => Ok(()),
        }
    }

    async fn finish(&mut self) -> CheckResult {
        self.start();
        while !self.running.is_empty() {
            self.wait_oldest().await?;
        }
        Ok(())
    }
}

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

/// One thing for the staging writer to make, in archive order.
enum Work {
    /// A folder, with its staging mode.
    Folder(Entry),
    /// A file whose stream bytes (checked against its SHA-256) are all here.
    File(Entry, Vec<Bytes>),
    /// A file too large to hold: created now, its pieces follow.
    LargeStart(Entry),
    /// The next checked piece of the file started last.
    LargePiece(Bytes),
    /// The file started last is complete.
    LargeEnd,
    /// A symbolic link.
    Symlink(Entry),
    /// A hard link to an earlier file of its source.
    HardLink(Entry),
}

/// The async side of the staging writer: batches work items and hands each
/// batch to the writer thread over a bounded queue (one hand-off per batch,
/// not per file). The thread stops at its first error, which the next hand-off (or
/// [`Writer::finish`]) returns. Dropping it stops the thread and waits for it.
struct Writer {
    queue: Option<tokio::sync::mpsc::Sender<Vec<Work>>>,
    batch: Vec<Work>,
    batch_bytes: u64,
    stop: Arc<AtomicBool>,
    done: Option<tokio::sync::oneshot::Receiver<Result<Skipped>>>,
    thread: Option<std::thread::JoinHandle<()>>,
    stage: PathBuf,
}

impl Writer {
    /// Starts the writer thread for the staging folder `stage`.
    fn start(stage: &Path, v1: bool, apply: Apply) -> Result<Self> {
        let (queue, mut work) = tokio::sync::mpsc::channel::<Vec<Work>>(QUEUED_BATCHES);
        let (done_tx, done) = tokio::sync::oneshot::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stopped) = (stage.to_owned(), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("ibs-restore-writer".into())
            .spawn(move || {
                let result = StageWriter::open(st, v1, apply).and_then(|mut w| {
                    while let Some(batch) = work.blocking_recv() {
                        for item in batch {
                            if stopped.load(Ordering::Relaxed) {
                                return Ok(w.skipped);
                            }
                            w.make(item)?;
                        }
                    }
                    w.end()
                });
                // The queue closes before the result is told: a hand-off
                // that fails finds the result.
                drop(work);
                let _ = done_tx.send(result);
            })
            .map_err(io_err("cannot start the writer thread for", stage))?;
        Ok(Writer {
            queue: Some(queue),
            batch: Vec::with_capacity(BATCH_ITEMS),
            batch_bytes: 0,
            stop,
            done: Some(done),
            thread: Some(thread),
            stage: stage.to_owned(),
        })
    }

    /// Adds an item carrying `bytes` of content; hands the batch over when full.
    async fn push(&mut self, item: Work, bytes: u64) -> Result<()> {
        if self.batch_bytes + bytes > BATCH_BYTES {
            self.hand_over().await?;
        }
        self.batch.push(item);
        self.batch_bytes += bytes;
        if self.batch.len() >= BATCH_ITEMS || self.batch_bytes >= BATCH_BYTES {
            self.hand_over().await?;
        }
        Ok(())
    }

    async fn hand_over(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_ITEMS));
        self.batch_bytes = 0;
        let sent = match &self.queue {
            Some(q) => q.send(batch).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread stopped: its error says why.
        match self.wait().await {
            Err(e) => Err(e),
            Ok(_) => Err(self.lost()),
        }
    }

    /// Hands over the last batch and waits for the thread to have made everything.
    async fn finish(mut self) -> Result<Skipped> {
        self.hand_over().await?;
        self.wait().await
    }

    /// Stops the thread after the item it is making and waits for it.
    async fn abort(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.wait().await;
    }

    /// Closes the queue, waits for the thread's result and joins it.
    async fn wait(&mut self) -> Result<Skipped> {
        self.queue = None;
        let result = match self.done.take() {
            Some(done) => done.await.unwrap_or_else(|_| Err(self.lost())),
            None => Err(self.lost()),
        };
        // It has told its result: it is ending (the join is at once).
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            return Err(self.lost());
        }
        result
    }

    fn lost(&self) -> RecoveryError {
        RecoveryError::Io {
            action: "cannot write into",
            path: self.stage.clone(),
            source: std::io::Error::other("the restore's writer thread stopped unexpectedly"),
        }
    }
}

impl Drop for Writer {
    /// A restore stopped midway (its future dropped): the thread stops after
    /// its current item, and is waited for, so that nothing writes into the
    /// staging folder once the restore is gone.
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.stop.store(true, Ordering::Relaxed);
            self.queue = None;
            let _ = t.join();
        }
    }
}

/// The writer thread's side: makes work items under the staging folder,
/// relative to open folder handles ([`Folders`]).
struct StageWriter {
    stage: PathBuf,
    folders: Folders,
    v1: bool,
    apply: Apply,
    skipped: Skipped,
    /// The file being streamed in pieces.
    large: Option<(Entry, FileSink)>,
}

/// The folder handles the staging writer creates entries relative to: the
/// staging folder, the current source's folder and the chain of folders
/// below it down to the last entry's parent. Entries come in key order, so
/// consecutive entries mostly share their parent: a folder is opened once
/// when the walk enters it, one segment at a time and never through a link
/// (`O_NOFOLLOW`), not once per entry.
struct Folders {
    root: OwnedFd,
    /// The open source folder, by name.
    source: Option<(String, OwnedFd)>,
    /// The open folders below it: each segment's name and handle.
    chain: Vec<(Vec<u8>, OwnedFd)>,
}

/// Flags of the folder handles the writer creates entries relative to.
const FOLDER_HANDLE: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
/// Flags of a file the writer creates: new, never through a link.
const NEW_FILE: OFlags = OFlags::WRONLY
    .union(OFlags::CREATE)
    .union(OFlags::EXCL)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The last segment of an entry's path (its name in its folder).
fn file_name(e: &Entry) -> &OsStr {
    let p = e.path.as_bytes();
    OsStr::from_bytes(p.rsplit(|b| *b == b'/').next().unwrap_or(p))
}

impl Folders {
    /// Opens the chain down to `e`'s parent folder, keeping what it shares
    /// with the open one. A version 1 backup records no folders: missing
    /// ones are made (under the staging folder, which holds only what this
    /// restore made).
    fn enter(&mut self, e: &Entry, stage: &Path, v1: bool) -> Result<()> {
        if self.source.as_ref().is_none_or(|(name, _)| *name != e.source) {
            self.chain.clear();
            self.source = None;
            let fd = rustix::fs::openat(&self.root, e.source.as_str(), FOLDER_HANDLE, Mode::empty())
                .map_err(|err| errno("cannot open", &stage.join(&e.source))(err))?;
            self.source = Some((e.source.clone(), fd));
        }
        let parent = e.path.parent().unwrap_or(b"");
        let segments = || parent.split(|b| *b == b'/').filter(|s| !s.is_empty());
        let shared = self
            .chain
            .iter()
            .zip(segments())
            .take_while(|((name, _), seg)| name.as_slice() == *seg)
            .count();
        self.chain.truncate(shared);
        for seg in segments().skip(shared) {
            let at = self.top();
            let name = OsStr::from_bytes(seg);
            let opened = match rustix::fs::openat(at, name, FOLDER_HANDLE, Mode::empty()) {
                Err(rustix::io::Errno::NOENT) if v1 => {
                    match rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o777)) {
                        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                        Err(err) => return Err(self.error("cannot create", stage, e, seg, err)),
                    }
                    rustix::fs::openat(at, name, FOLDER_HANDLE, Mode::empty())
                }
                other => other,
            };
            let fd = opened.map_err(|err| self.error("cannot open", stage, e, seg, err))?;
            self.chain.push((seg.to_vec(), fd));
        }
        Ok(())
    }

    /// The deepest open folder: after [`Folders::enter`], the entry's parent.
    fn top(&self) -> &OwnedFd {
        match (self.chain.last(), &self.source) {
            (Some((_, fd)), _) | (None, Some((_, fd))) => fd,
            (None, None) => &self.root,
        }
    }

    /// The error for the folder `seg` below the open chain, on the way to `e`.
    fn error(
        &self,
        action: &'static str,
        stage: &Path,
        e: &Entry,
        seg: &[u8],
        err: rustix::io::Errno,
    ) -> RecoveryError {
        let mut path = stage.join(&e.source);
        for (name, _) in &self.chain {
            path.push(OsStr::from_bytes(name));
        }
        path.push(OsStr::from_bytes(seg));
        errno(action, &path)(err)
    }
}

impl StageWriter {
    fn open(stage: PathBuf, v1: bool, apply: Apply) -> Result<Self> {
        let root = rustix::fs::open(&stage, FOLDER_HANDLE, Mode::empty()).map_err(errno("cannot open", &stage))?;
        Ok(StageWriter {
            stage,
            folders: Folders {
                root,
                source: None,
                chain: Vec::new(),
            },
            v1,
            apply,
            skipped: Skipped::default(),
            large: None,
        })
    }

    /// Makes one item, relative to its parent folder's handle.
    fn make(&mut self, item: Work) -> Result<()> {
        match item {
            Work::Folder(e) => {
                self.folders.enter(&e, &self.stage, self.v1)?;
                rustix::fs::mkdirat(
                    self.folders.top(),
                    file_name(&e),
                    Mode::from_raw_mode(staging_folder_mode(&e)),
                )
                .map_err(|err| errno("cannot create", &entry_path(&self.stage, &e))(err))
            }
            Work::File(e, pieces) => {
                let mut sink = self.create(&e)?;
                for piece in &pieces {
                    sink.write(piece)
                        .map_err(|err| io_err("cannot write", &entry_path(&self.stage, &e))(err))?;
                }
                let path = || entry_path(&self.stage, &e);
                sink.finish(&e, self.apply, &path, &mut self.skipped)
            }
            Work::LargeStart(e) => {
                let sink = self.create(&e)?;
                self.large = Some((e, sink));
                Ok(())
            }
            Work::LargePiece(piece) => match &mut self.large {
                Some((e, sink)) => sink
                    .write(&piece)
                    .map_err(|err| io_err("cannot write", &entry_path(&self.stage, e))(err)),
                None => Err(RecoveryError::Usage("restore writer: a piece of no file".into())),
            },
            Work::LargeEnd => match self.large.take() {
                Some((e, sink)) => {
                    let path = || entry_path(&self.stage, &e);
                    sink.finish(&e, self.apply, &path, &mut self.skipped)
                }
                None => Err(RecoveryError::Usage("restore writer: the end of no file".into())),
            },
            Work::Symlink(e) => self.symlink(&e),
            Work::HardLink(e) => {
                let EntryKind::HardLink { target } = &e.kind else {
                    return Err(RecoveryError::Usage("restore writer: not a hard link".into()));
                };
                // The target's path from the staging folder (an earlier file
                // of the same source: items are made in order).
                let mut from = Vec::with_capacity(e.source.len() + 1 + target.as_bytes().len());
                from.extend_from_slice(e.source.as_bytes());
                from.push(b'/');
                from.extend_from_slice(target.as_bytes());
                self.folders.enter(&e, &self.stage, self.v1)?;
                rustix::fs::linkat(
                    &self.folders.root,
                    OsStr::from_bytes(&from),
                    self.folders.top(),
                    file_name(&e),
                    rustix::fs::AtFlags::empty(),
                )
                .map_err(|err| errno("cannot create the hard link", &entry_path(&self.stage, &e))(err))
            }
        }
    }

    /// Creates the file `e` (new; readable by its owner only until its mode
    /// is applied), ready for its stream bytes.
    fn create(&mut self, e: &Entry) -> Result<FileSink> {
        self.folders.enter(e, &self.stage, self.v1)?;
        let fd = rustix::fs::openat(self.folders.top(), file_name(e), NEW_FILE, Mode::from_raw_mode(0o600))
            .map_err(|err| errno("cannot create", &entry_path(&self.stage, e))(err))?;
        Ok(FileSink::new(fd, e))
    }

    /// Makes the symbolic link `e` → its target, with its owner and time.
    fn symlink(&mut self, e: &Entry) -> Result<()> {
        let EntryKind::Symlink { target } = &e.kind else {
            return Err(RecoveryError::Usage("restore writer: not a symbolic link".into()));
        };
        self.folders.enter(e, &self.stage, self.v1)?;
        let at = self.folders.top();
        let name = file_name(e);
        let path = || entry_path(&self.stage, e);
        rustix::fs::symlinkat(OsStr::from_bytes(target), at, name)
            .map_err(errno_at("cannot create the link", &path))?;
        if let Some((uid, gid)) = e.owner {
            if self.apply.owners {
                rustix::fs::chownat(
                    at,
                    name,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(errno_at("cannot give an owner to", &path))?;
            } else {
                self.skipped.owners += 1;
            }
        }
        if !e.xattrs.is_empty() {
            // Linux refuses user.* attributes on links; other namespaces need
            // privileges a restore should not assume.
            self.skipped.xattr("not restored on symbolic links".to_owned());
        }
        if let Some(t) = timestamps(e) {
            rustix::fs::utimensat(at, name, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
                .map_err(errno_at("cannot set the time of", &path))?;
        }
        Ok(())
    }

    /// After the last item: nothing may be left half made.
    fn end(self) -> Result<Skipped> {
        if self.large.is_some() {
            return Err(RecoveryError::Usage(
                "restore writer: a file was left unfinished".into(),
            ));
        }
        Ok(self.skipped)
    }
}

/// Applies a batch of folder entries' metadata, in order, in one blocking
/// task (the restore folder opened once for all of them).
async fn apply_folder_batch(dir: &Path, folders: Vec<Entry>, apply: Apply) -> Result<Skipped> {
    let needed = |e: &Entry| e.mode.is_some() || e.owner.is_some() || e.mtime.is_some() || !e.xattrs.is_empty();
    if !folders.iter().any(needed) {
        return Ok(Skipped::default());
    }
    let dir = dir.to_owned();
    blocking(move || {
        let base = rustix::fs::open(
            &dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno("cannot open", &dir))?;
        let mut skipped = Skipped::default();
        for e in folders.iter().filter(|e| needed(e)) {
            apply_folder_sync(&dir, &base, e, apply, &mut skipped)?;
        }
        Ok(skipped)
    })
    .await
}

/// Applies a folder entry's metadata to its final folder, opened beneath
/// `dir` (open as `base`) without following any link.
fn apply_folder_sync(dir: &Path, base: &OwnedFd, e: &Entry, apply: Apply, skipped: &mut Skipped) -> Result<()> {
    let rel = Path::new(&e.source).join(e.path.as_os_str());
    let path = dir.join(&rel);
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat2(
        base,
        &rel,
        flags,
        Mode::empty(),
        rustix::fs::ResolveFlags::NO_SYMLINKS | rustix::fs::ResolveFlags::BENEATH,
    ) {
        Ok(fd) => fd,
        // Kernels before 5.6: check each component by hand.
        Err(rustix::io::Errno::NOSYS) => open_beneath(base, &rel, &path)?,
        Err(e) => return Err(errno("cannot open", &path)(e)),
    };
    apply_meta(&fd, e, apply, &|| path.clone(), skipped)
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

/// Step 2 for one source, before any source moves: whether its staged tree
/// can be placed at `dir/<source>` (moved whole when that does not exist,
/// merged when it is a folder: every final name checked).
fn check_source(dir: &Path, stage: &Path, source: &str, overwrite: bool) -> Result<()> {
    let to = dir.join(source);
    match std::fs::symlink_metadata(&to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Ok(m) if m.is_dir() => check_merge(&stage.join(source), &to, overwrite, source, &to),
        Ok(m) => Err(not_a_source_folder(&to, source, &m)),
        Err(e) => Err(io_err("cannot inspect", &to)(e)),
    }
}

/// A source's place in the restore folder, `to`, is taken by something that
/// is not a folder.
fn not_a_source_folder(to: &Path, source: &str, m: &std::fs::Metadata) -> RecoveryError {
    let what = if m.file_type().is_symlink() {
        "is a symbolic link"
    } else {
        "is not a folder"
    };
    RecoveryError::UnsafePath {
        source_name: source.to_owned(),
        path: String::new(),
        reason: format!("{} {what}", crate::error::shown(to)),
    }
}

/// Step 2 for one source, once every source was checked
/// ([`check_source`]): moved whole when `dir/<source>` does not exist,
/// merged when it does.
fn place_source(dir: &Path, stage: &Path, source: &str, overwrite: bool) -> Result<()> {
    let from = stage.join(source);
    let to = dir.join(source);
    match std::fs::symlink_metadata(&to) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => rename(&from, &to, false),
        // Checked before: a change since (another program writing into the
        // folder) still stops at the first name in the way.
        Ok(m) if m.is_dir() => merge(&from, &to, overwrite),
        Ok(m) => Err(not_a_source_folder(&to, source, &m)),
        Err(e) => Err(io_err("cannot inspect", &to)(e)),
    }
}

/// Checks every final name of the staged folder `from` against `to` before
/// anything moves; `root` is the source's folder, which the entry named in
/// an error is relative to.
fn check_merge(from: &Path, to: &Path, overwrite: bool, source: &str, root: &Path) -> Result<()> {
    let unsafe_path = |target: &Path, reason: String| RecoveryError::UnsafePath {
        source_name: source.to_owned(),
        path: target.strip_prefix(root).map(crate::error::shown).unwrap_or_default(),
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
                return Err(unsafe_path(
                    &target,
                    format!("{} is a symbolic link", crate::error::shown(&target)),
                ));
            }
            Ok(m) if staged_is_dir && !m.is_dir() => {
                return Err(unsafe_path(
                    &target,
                    format!("{} is not a folder", crate::error::shown(&target)),
                ));
            }
            Ok(_) if staged_is_dir => check_merge(&item.path(), &target, overwrite, source, root)?,
            Ok(m) if m.is_dir() => {
                return Err(unsafe_path(
                    &target,
                    format!("{} is a folder", crate::error::shown(&target)),
                ));
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
