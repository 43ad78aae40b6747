//! Backup sources: what a backup captures.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
pub use ibs_archive::{EntryMeta, EntryPath, Extent};
use tokio::io::AsyncReadExt;

use crate::{ControllerError, Result};

/// The standard infrastructure sources. An embedding service registers one
/// [`BackupSource`] per name it has.
pub mod names {
    /// Deployment inputs (the answers the system was deployed with).
    pub const DEPLOYMENT_INPUTS: &str = "deployment-inputs";
    /// The internal identity store (users, groups, service principals).
    pub const INTERNAL_IDENTITY: &str = "identity";
    /// Federated identity configuration (AD FS / Entra ID trust).
    pub const FEDERATED_IDENTITY: &str = "federated-identity";
    /// Internal certificate authority root certificates.
    pub const CA_ROOTS: &str = "ca";
    /// Resource-manager configuration: subscriptions, plans, offers, quotas.
    pub const RESOURCE_MANAGER: &str = "resource-manager";
    /// Key vault secrets and vaults.
    pub const KEY_VAULT: &str = "key-vault";
    /// Role-based access control assignments.
    pub const RBAC: &str = "rbac";
    /// All of them, in capture order.
    pub const ALL: [&str; 7] = [
        DEPLOYMENT_INPUTS,
        INTERNAL_IDENTITY,
        FEDERATED_IDENTITY,
        CA_ROOTS,
        RESOURCE_MANAGER,
        KEY_VAULT,
        RBAC,
    ];
}

/// Where a source writes its entries (the running backup's archive).
///
/// Entries come in key order (FORMAT.md §14.5: a depth-first walk with each
/// folder's children sorted by name bytes, a folder before its contents);
/// one out of order, repeated, or under a path that is a file or link is
/// refused with both names. Parent folders not given are recorded without
/// metadata.
#[async_trait]
pub trait EntrySink: Send {
    /// Starts an entry of the current source: a file, folder or link with
    /// its metadata ([`EntryMeta`]; its source must be the current source's
    /// name). A file's data follows through [`write`](Self::write).
    async fn begin(&mut self, entry: EntryMeta) -> Result<()>;
    /// Appends data to the entry (files only; a sparse file's extents' data).
    async fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Ends the entry.
    async fn end(&mut self) -> Result<()>;
    /// Records something the source skipped or could not capture exactly;
    /// the backup goes on and the job ends "succeeded with warnings". A
    /// sink keeps a bounded number of them (see [`Warnings`]).
    fn warn(&mut self, warning: CaptureWarning);
}

/// A named source of backup data, captured while the system keeps running.
#[async_trait]
pub trait BackupSource: Send + Sync {
    /// Its name (see [`names`]).
    fn name(&self) -> &str;
    /// Writes every entry of the source to `sink`.
    async fn capture(&self, sink: &mut dyn EntrySink) -> Result<()>;
}

/// What went wrong with one item of a live source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaptureProblem {
    /// The file or folder was listed, then deleted or moved before it was
    /// read: it is not in the backup.
    Vanished,
    /// The file kept changing through every re-read: the backup holds the
    /// last read, which may not match any one moment of the file (for a file
    /// that is only appended to, it is a prefix of what was written).
    ChangedDuringCapture,
    /// The source had nothing to capture (no file at all, or every file
    /// excluded): often an unmounted or emptied folder. The backup records
    /// the source with no entries; retention may then delete older backups
    /// that hold its data, so this is worth an operator's look.
    Empty,
    /// The name cannot be recorded by archive format version 1 (it is not
    /// UTF-8, or holds a control character such as a newline or tab, or a
    /// backslash): the file (or the folder and all in it) is skipped.
    UnrecordableName,
    /// A symbolic link, FIFO, socket or device: archive format version 1
    /// records regular files only, so it is skipped.
    NotARegularFile,
}

impl fmt::Display for CaptureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaptureProblem::Vanished => "vanished during capture (deleted or moved); skipped",
            CaptureProblem::ChangedDuringCapture => {
                "changed during capture (kept changing through every re-read); captured as last read"
            }
            CaptureProblem::Empty => {
                "the source holds no file to back up (an unmounted or emptied folder, or everything excluded?)"
            }
            CaptureProblem::UnrecordableName => {
                "its name is not UTF-8 or holds a control character or backslash, which this archive format \
                 cannot record; skipped (with everything in it, for a folder)"
            }
            CaptureProblem::NotARegularFile => {
                "a symbolic link, FIFO, socket or device, which this archive format does not record; skipped"
            }
        })
    }
}

/// One item a live source skipped or captured inexactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureWarning {
    /// The source.
    pub source: String,
    /// The item: for a [`DirectorySource`], the file or folder's path on disk.
    pub path: String,
    /// What happened to it.
    pub problem: CaptureProblem,
}

impl fmt::Display for CaptureWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "source {}: {}: {}", self.source, self.path, self.problem)
    }
}

/// The warnings of one backup, bounded in memory: the first
/// [`Warnings::KEPT`] are kept, the rest only counted (a million changing
/// files must not grow a job's memory).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Warnings {
    kept: Vec<CaptureWarning>,
    not_kept: u64,
}

impl Warnings {
    /// How many warnings are kept; later ones are counted only.
    pub const KEPT: usize = 100;

    /// Records one.
    pub fn push(&mut self, warning: CaptureWarning) {
        if self.kept.len() < Self::KEPT {
            self.kept.push(warning);
        } else {
            self.not_kept += 1;
        }
    }

    /// Whether there were none.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// How many there were in all.
    pub fn total(&self) -> u64 {
        self.kept.len() as u64 + self.not_kept
    }

    /// The first [`Warnings::KEPT`] of them, in the order they happened.
    pub fn kept(&self) -> &[CaptureWarning] {
        &self.kept
    }

    /// How many more there were than are kept.
    pub fn not_kept(&self) -> u64 {
        self.not_kept
    }
}

/// Files up to this size are read whole and checked for change before they
/// enter the archive (re-read if they changed); larger ones are streamed and
/// checked once the read is done.
pub const CONSISTENT_READ_MAX: u64 = 8 << 20;

/// How many times a changing small file is re-read before it is captured as
/// last read (or, in strict mode, fails the source).
const REREADS: usize = 3;

/// Files read ahead of the archive writer, on the blocking pool.
const PREFETCH_FILES: usize = 16;

/// Bytes of file data read ahead at most (a file counts by its size when listed).
const PREFETCH_BYTES: u64 = 16 << 20;

/// Every regular file under a directory, read consistently while the system
/// keeps running. Symbolic links are not followed; other special files are
/// skipped.
///
/// Live capture rules:
///
/// * a file that changes while it is read is read again (small files) or
///   checked after the read (large ones); one that keeps changing is captured
///   as last read and reported ([`CaptureProblem::ChangedDuringCapture`]);
/// * a file or folder that vanishes between the listing and its read is
///   skipped and reported ([`CaptureProblem::Vanished`]);
/// * reports go to [`EntrySink::warn`] and the job succeeds with warnings.
///   [`DirectorySource::strict`] turns each of them into a failure of the
///   source instead;
/// * any other failure (the root missing or not a folder, a folder or file
///   that cannot be read, a file replaced by a folder) fails the source with a
///   [`ControllerError::Source`] naming the path.
///
/// [`DirectorySource::exclude`] takes gitignore-style patterns, matched
/// against paths relative to the root; [`DirectorySource::exclude_folder`]
/// skips one folder by identity (how a local storage location inside the
/// source is kept out, see [`crate::Settings::prepare_source`]).
///
/// Small files are read ahead, up to 16 files and
/// 16 MiB at a time, on the blocking pool (one blocking
/// task per file: stat, read, stat), so reading overlaps with compression and
/// encryption; they still enter the archive in listing order.
#[derive(Clone, Debug)]
pub struct DirectorySource {
    name: String,
    root: PathBuf,
    strict: bool,
    excludes: Excludes,
    skip_folders: Vec<PathBuf>,
}

/// Gitignore-style exclusion patterns, compiled.
#[derive(Clone, Debug)]
struct Excludes {
    patterns: Vec<String>,
    /// Patterns that match files and folders.
    any: GlobSet,
    /// Patterns with a trailing `/`: folders only.
    folders: GlobSet,
}

impl Excludes {
    fn new(patterns: Vec<String>) -> std::result::Result<Self, String> {
        let mut any = GlobSetBuilder::new();
        let mut folders = GlobSetBuilder::new();
        for p in &patterns {
            let (glob, folder_only) = gitignore_glob(p)?;
            if folder_only {
                folders.add(glob);
            } else {
                any.add(glob);
            }
        }
        Ok(Excludes {
            any: any.build().map_err(|e| e.to_string())?,
            folders: folders.build().map_err(|e| e.to_string())?,
            patterns,
        })
    }

    fn excludes(&self, rel: &str, is_folder: bool) -> bool {
        self.any.is_match(rel) || (is_folder && self.folders.is_match(rel))
    }
}

/// One gitignore pattern as a glob over `/`-separated paths relative to the
/// root, and whether it matches folders only. Gitignore's rules: a trailing
/// `/` matches folders only; a pattern with a `/` at its start or in its
/// middle is relative to the root, one without matches at any depth; `*`
/// and `?` never match `/`, `**` matches any number of folders. Negation
/// (`!`) is refused: an exclusion list that re-includes is easy to get wrong
/// in a backup, and nothing needs it yet.
fn gitignore_glob(pattern: &str) -> std::result::Result<(globset::Glob, bool), String> {
    if pattern.is_empty() {
        return Err("an empty pattern excludes nothing; give a gitignore-style pattern such as `**/*.tmp`".into());
    }
    if pattern.starts_with('!') {
        return Err(format!(
            "{pattern:?}: negated patterns (!) are not supported; list only what to exclude"
        ));
    }
    let (body, folder_only) = match pattern.strip_suffix('/') {
        Some(b) => (b, true),
        None => (pattern, false),
    };
    let anchored = body.contains('/');
    let body = body.trim_start_matches('/');
    if body.is_empty() {
        return Err(format!("{pattern:?} would exclude the whole source"));
    }
    // Paths are matched relative to the source root, without `./` or `..`:
    // such a pattern would silently match nothing.
    if body.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!(
            "{pattern:?}: patterns are relative to the source folder and cannot contain `.` or `..` segments \
             (write `/f1` for a file at the top, `f1` for any depth)"
        ));
    }
    if body.split('/').all(|seg| seg == "**") {
        return Err(format!("{pattern:?} would exclude the whole source"));
    }
    let glob = if anchored {
        body.to_owned()
    } else {
        format!("**/{body}")
    };
    let glob = GlobBuilder::new(&glob)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("{pattern:?} is not a valid pattern: {e}"))?;
    Ok((glob, folder_only))
}

/// Size, modification time and mode: what must not change during a read.
type Stamp = (u64, Option<std::time::SystemTime>, u32);

fn stamp_of(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::PermissionsExt;
    (m.len(), m.modified().ok(), m.permissions().mode() & 0o7777)
}

/// How close to "now" a modification time must be to count as racy: file
/// times come from the kernel's coarse clock (one tick, a few ms), so two
/// writes within a tick leave the same size and time, and an equal stamp
/// before and after a read proves nothing while the file's time is that
/// recent ("racy git"). Such files are waited for, not trusted.
const RACY_WINDOW: std::time::Duration = std::time::Duration::from_millis(50);

/// Whether the file was modified so recently that its stamp cannot tell a
/// rewrite within the same clock tick. Times far in the future were set on
/// purpose (not by a write in progress) and are not racy.
fn racy(stamp: &Stamp) -> bool {
    let Some(mtime) = stamp.1 else { return false };
    let now = std::time::SystemTime::now();
    let gap = match mtime.duration_since(now) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    gap <= RACY_WINDOW
}

/// A file's read, done on the blocking pool.
enum Read {
    /// Read whole; `changed` when it kept changing through every re-read.
    Whole { data: Vec<u8>, stamp: Stamp, changed: bool },
    /// Larger than [`CONSISTENT_READ_MAX`]: streamed by the capture instead.
    Large,
    /// Gone since the listing.
    Vanished,
}

fn vanished(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// Reads a file whole, again while it changes under the reader (blocking).
/// A read counts only if the file's stamp was not racy before it and is the
/// same after it; after [`REREADS`] re-reads the last read is returned as
/// changed. The error is the reason (the caller names the path).
fn read_consistent(path: &Path) -> std::result::Result<Read, String> {
    let mut attempt = 0;
    loop {
        let last_try = attempt == REREADS;
        attempt += 1;
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if vanished(&e) => return Ok(Read::Vanished),
            Err(e) => return Err(format!("cannot stat the file: {e}")),
        };
        if !meta.is_file() {
            // Opening a folder fails and a FIFO would block: this is no longer the file listed.
            return Err(format!(
                "was listed as a regular file but is now a {}; it was replaced during the backup",
                kind_of(&meta)
            ));
        }
        let before = stamp_of(&meta);
        if before.0 > CONSISTENT_READ_MAX {
            return Ok(Read::Large);
        }
        if racy(&before) && !last_try {
            std::thread::sleep(RACY_WINDOW);
            continue;
        }
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if vanished(&e) => return Ok(Read::Vanished),
            Err(e) => return Err(format!("cannot read the file: {e}")),
        };
        let after = match std::fs::symlink_metadata(path) {
            Ok(m) => stamp_of(&m),
            // Deleted right after the read: what was read is what there was.
            Err(e) if vanished(&e) => before,
            Err(e) => return Err(format!("cannot stat the file: {e}")),
        };
        let settled = !racy(&before) && after == before && data.len() as u64 == after.0;
        if settled || last_try {
            return Ok(Read::Whole {
                data,
                stamp: after,
                changed: !settled,
            });
        }
    }
}

/// What a file system object is, in words.
fn kind_of(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "folder"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else {
        "file"
    }
}

impl DirectorySource {
    /// Source `name` reading the files under `root`, tolerant of a live
    /// system (see the type's docs), excluding nothing.
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> Self {
        DirectorySource {
            name: name.into(),
            root: root.into(),
            strict: false,
            excludes: Excludes {
                patterns: Vec::new(),
                any: GlobSet::empty(),
                folders: GlobSet::empty(),
            },
            skip_folders: Vec::new(),
        }
    }

    /// Strict mode: a file that vanishes or keeps changing fails the source
    /// (and so the backup) instead of being reported as a warning.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Excludes what matches a gitignore-style `pattern`, relative to the
    /// root: `*.tmp` or `**/*.tmp` (at any depth), `cache/` (folders named
    /// `cache` at any depth, with everything in them), `/logs` or
    /// `data/old` (relative to the root). An excluded folder is not read at
    /// all. Negation (`!`) is refused.
    pub fn exclude(mut self, pattern: impl Into<String>) -> Result<Self> {
        let mut patterns = self.excludes.patterns.clone();
        patterns.push(pattern.into());
        self.excludes = Excludes::new(patterns).map_err(|reason| ControllerError::InvalidSetting {
            setting: "exclude",
            reason,
        })?;
        Ok(self)
    }

    /// Skips the folder at `path` (and everything in it) wherever it appears
    /// under the root. Folders are compared by identity (device and inode,
    /// taken when a capture starts), so a spelling through a symbolic link or
    /// a bind mount matches too; a folder that does not exist skips nothing.
    #[must_use]
    pub fn exclude_folder(mut self, path: impl Into<PathBuf>) -> Self {
        self.skip_folders.push(path.into());
        self
    }

    /// The folder the source reads.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The exclusion patterns given to [`DirectorySource::exclude`].
    pub fn excludes(&self) -> &[String] {
        &self.excludes.patterns
    }

    fn meta(&self, rel: &str, stamp: &Stamp) -> EntryMeta {
        let meta = EntryMeta::new(self.name.clone(), rel).mode(stamp.2);
        match unix(stamp.1) {
            Some(t) => meta.mtime(t),
            None => meta,
        }
    }

    fn error(&self, path: &Path, reason: impl Into<String>) -> ControllerError {
        ControllerError::source(self.name.clone(), path, reason)
    }

    /// Reports a problem with one item, or fails the source in strict mode.
    fn problem(&self, sink: &mut dyn EntrySink, path: &Path, problem: CaptureProblem) -> Result<()> {
        if self.strict {
            return Err(self.error(
                path,
                match problem {
                    CaptureProblem::Vanished => "vanished during the backup (strict mode)".to_owned(),
                    CaptureProblem::ChangedDuringCapture => format!(
                        "kept changing while it was read ({REREADS} re-reads; strict mode); retry when it is quiet \
                         or exclude it"
                    ),
                    CaptureProblem::Empty => "holds no file to back up (strict mode)".to_owned(),
                    CaptureProblem::UnrecordableName => {
                        "has a name this archive format cannot record (strict mode)".to_owned()
                    }
                    CaptureProblem::NotARegularFile => "is not a regular file or folder (strict mode)".to_owned(),
                },
            ));
        }
        sink.warn(CaptureWarning {
            source: self.name.clone(),
            // Escaped: a name may hold a newline or bytes that are not UTF-8.
            path: escape_path(path),
            problem,
        });
        Ok(())
    }

    /// Every regular file, as (absolute path, relative `/` path, size when
    /// listed), sorted by relative path, and the folders and files that
    /// vanished while listed; one blocking task for the whole walk.
    async fn files(&self) -> Result<Walked> {
        let root = self.root.clone();
        let filter = Filter {
            excludes: self.excludes.clone(),
            skip: self.skip_folders.clone(),
        };
        tokio::task::spawn_blocking(move || walk(&root, &filter, &mut |_| {}))
            .await
            .map_err(|e| self.error(&self.root, format!("the folder walk failed: {e}")))?
            .map_err(|(path, reason)| self.error(&path, reason))
    }

    /// The stamp, or `None` when the file is gone.
    async fn stamp(&self, path: &Path) -> Result<Option<Stamp>> {
        match tokio::fs::symlink_metadata(path).await {
            Ok(m) => Ok(Some(stamp_of(&m))),
            Err(e) if vanished(&e) => Ok(None),
            Err(e) => Err(self.error(path, format!("cannot stat the file: {e}"))),
        }
    }

    /// Streams a file larger than [`CONSISTENT_READ_MAX`]; a change during
    /// the read is reported (captured as read) or, strict, fails the source.
    async fn stream_large(&self, path: &Path, rel: &str, sink: &mut dyn EntrySink) -> Result<()> {
        let Some(mut before) = self.stamp(path).await? else {
            return self.problem(sink, path, CaptureProblem::Vanished);
        };
        for _ in 0..REREADS {
            if !racy(&before) {
                break;
            }
            tokio::time::sleep(RACY_WINDOW).await;
            let Some(again) = self.stamp(path).await? else {
                return self.problem(sink, path, CaptureProblem::Vanished);
            };
            before = again;
        }
        let mut file = match tokio::fs::File::open(path).await {
            Ok(f) => f,
            Err(e) if vanished(&e) => return self.problem(sink, path, CaptureProblem::Vanished),
            Err(e) => return Err(self.error(path, format!("cannot read the file: {e}"))),
        };
        sink.begin(self.meta(rel, &before)).await?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| self.error(path, format!("cannot read the file: {e}")))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            sink.write(&buf[..n]).await?;
        }
        let after = self.stamp(path).await?;
        sink.end().await?;
        if racy(&before) || after != Some(before) || total != before.0 {
            return self.problem(sink, path, CaptureProblem::ChangedDuringCapture);
        }
        Ok(())
    }
}

/// What the walk leaves out.
struct Filter {
    excludes: Excludes,
    skip: Vec<PathBuf>,
}

/// The walk's result.
struct Walked {
    /// (absolute path, relative `/` path, size when listed), sorted by relative path.
    files: Vec<(PathBuf, String, u64)>,
    /// Folders and files listed by their parent, gone when looked at.
    vanished: Vec<PathBuf>,
    /// Skipped, with why (names that cannot be recorded, links and other
    /// non-regular files).
    skipped: Vec<(PathBuf, CaptureProblem)>,
}

/// The walk behind [`DirectorySource::files`] (blocking). `before_folder`
/// runs before each folder below the root is read (tests race through it).
/// The error is the path that failed and why.
fn walk(
    root: &Path,
    filter: &Filter,
    before_folder: &mut dyn FnMut(&Path),
) -> std::result::Result<Walked, (PathBuf, String)> {
    use std::os::unix::fs::MetadataExt;
    let skip: Vec<(u64, u64)> = filter
        .skip
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect();
    let mut out = Walked {
        files: Vec::new(),
        vanished: Vec::new(),
        skipped: Vec::new(),
    };
    let mut todo = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = todo.pop() {
        let is_root = rel.is_empty();
        if !is_root {
            before_folder(&dir);
        }
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if vanished(&e) && !is_root => {
                out.vanished.push(dir);
                continue;
            }
            Err(e) if is_root && e.kind() == std::io::ErrorKind::NotADirectory => {
                return Err((
                    dir,
                    "the source root is not a folder: give the folder to back up".into(),
                ));
            }
            Err(e) if is_root && vanished(&e) => {
                return Err((dir, "the source root does not exist: check the source's path".into()));
            }
            Err(e) => return Err((dir, format!("cannot read the folder: {e}"))),
        };
        for entry in rd {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if vanished(&e) => {
                    out.vanished.push(dir.clone());
                    break;
                }
                Err(e) => return Err((dir.clone(), format!("cannot read the folder: {e}"))),
            };
            let name = match entry.file_name().to_str() {
                Some(n) if !n.chars().any(|c| c.is_control() || c == '\\') => n.to_owned(),
                _ => {
                    out.skipped.push((entry.path(), CaptureProblem::UnrecordableName));
                    continue;
                }
            };
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ft = match entry.file_type() {
                Ok(ft) => ft,
                Err(e) if vanished(&e) => {
                    out.vanished.push(entry.path());
                    continue;
                }
                Err(e) => return Err((entry.path(), format!("cannot stat: {e}"))),
            };
            if ft.is_dir() {
                if filter.excludes.excludes(&child_rel, true) {
                    continue;
                }
                if !skip.is_empty() {
                    match entry.metadata() {
                        Ok(m) if skip.contains(&(m.dev(), m.ino())) => continue,
                        Ok(_) => {}
                        Err(e) if vanished(&e) => {
                            out.vanished.push(entry.path());
                            continue;
                        }
                        Err(e) => return Err((entry.path(), format!("cannot stat the folder: {e}"))),
                    }
                }
                todo.push((entry.path(), child_rel));
            } else if ft.is_file() {
                if filter.excludes.excludes(&child_rel, false) {
                    continue;
                }
                let size = match entry.metadata() {
                    Ok(m) => m.len(),
                    Err(e) if vanished(&e) => {
                        out.vanished.push(entry.path());
                        continue;
                    }
                    // The read reports it with its reason.
                    Err(_) => 0,
                };
                out.files.push((entry.path(), child_rel, size));
            } else if !filter.excludes.excludes(&child_rel, false) {
                out.skipped.push((entry.path(), CaptureProblem::NotARegularFile));
            }
        }
    }
    // Key order (FORMAT.md §14.5): `/` sorts before every other byte.
    out.files
        .sort_by(|a, b| ibs_archive::path_cmp(a.1.as_bytes(), b.1.as_bytes()));
    Ok(out)
}

/// A path for a message: as it is when it is printable UTF-8, otherwise
/// with control characters escaped and invalid bytes as `\xNN`.
fn escape_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Unix seconds of a file time, before 1970 too (negative; whole seconds
/// toward the past, as `st_mtime` counts them).
fn unix(t: Option<std::time::SystemTime>) -> Option<i64> {
    let t = t?;
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).ok(),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).ok()?;
            Some(if d.subsec_nanos() > 0 { -secs - 1 } else { -secs })
        }
    }
}

#[async_trait]
impl BackupSource for DirectorySource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capture(&self, sink: &mut dyn EntrySink) -> Result<()> {
        // Reads run on the blocking pool ahead of the sink, bounded in files
        // and bytes, and are consumed in listing order.
        type Pending = tokio::task::JoinHandle<std::result::Result<Read, String>>;
        let walked = self.files().await?;
        if walked.files.is_empty() {
            self.problem(sink, &self.root, CaptureProblem::Empty)?;
        }
        for (path, problem) in &walked.skipped {
            self.problem(sink, path, *problem)?;
        }
        for gone in &walked.vanished {
            self.problem(sink, gone, CaptureProblem::Vanished)?;
        }
        let mut files = walked.files.into_iter().peekable();
        let mut ahead: std::collections::VecDeque<(PathBuf, String, u64, Pending)> = std::collections::VecDeque::new();
        let mut ahead_bytes = 0u64;
        loop {
            while ahead.len() < PREFETCH_FILES {
                let Some((_, _, size)) = files.peek() else { break };
                let size = (*size).min(CONSISTENT_READ_MAX);
                if !ahead.is_empty() && ahead_bytes + size > PREFETCH_BYTES {
                    break;
                }
                let Some((path, rel, _)) = files.next() else { break };
                let read_path = path.clone();
                let read = tokio::task::spawn_blocking(move || read_consistent(&read_path));
                ahead_bytes += size;
                ahead.push_back((path, rel, size, read));
            }
            let Some((path, rel, size, read)) = ahead.pop_front() else {
                break;
            };
            let read = read
                .await
                .map_err(|e| self.error(&path, format!("the read task failed: {e}")))?
                .map_err(|reason| self.error(&path, reason))?;
            match read {
                Read::Whole { data, stamp, changed } => {
                    if changed && self.strict {
                        return self.problem(sink, &path, CaptureProblem::ChangedDuringCapture);
                    }
                    sink.begin(self.meta(&rel, &stamp)).await?;
                    sink.write(&data).await?;
                    sink.end().await?;
                    if changed {
                        self.problem(sink, &path, CaptureProblem::ChangedDuringCapture)?;
                    }
                }
                Read::Large => self.stream_large(&path, &rel, sink).await?,
                Read::Vanished => self.problem(sink, &path, CaptureProblem::Vanished)?,
            }
            ahead_bytes -= size;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn filter(patterns: &[&str]) -> Filter {
        Filter {
            excludes: Excludes::new(patterns.iter().map(|p| (*p).to_owned()).collect()).unwrap(),
            skip: Vec::new(),
        }
    }

    fn rels(w: &Walked) -> Vec<&str> {
        w.files.iter().map(|f| f.1.as_str()).collect()
    }

    #[test]
    fn a_folder_that_vanishes_after_it_was_listed_is_reported_not_fatal() {
        let root = tempfile::tempdir().unwrap();
        for d in ["a", "b/c"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        std::fs::write(root.path().join("a/x"), b"x").unwrap();
        std::fs::write(root.path().join("b/c/y"), b"y").unwrap();
        let gone = root.path().join("b");
        let w = walk(root.path(), &filter(&[]), &mut |dir| {
            if dir == gone {
                std::fs::remove_dir_all(dir).unwrap();
            }
        })
        .unwrap();
        assert_eq!(rels(&w), ["a/x"]);
        assert_eq!(w.vanished, [gone]);
    }

    #[test]
    fn file_times_before_1970_are_kept() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(
            unix(Some(UNIX_EPOCH + Duration::from_secs(978_307_200))),
            Some(978_307_200)
        );
        assert_eq!(
            unix(Some(UNIX_EPOCH - Duration::from_secs(315_619_200))),
            Some(-315_619_200)
        );
        assert_eq!(unix(Some(UNIX_EPOCH - Duration::from_millis(1500))), Some(-2));
        assert_eq!(unix(None), None);
    }

    #[test]
    fn patterns_that_would_silently_match_nothing_or_everything_are_refused() {
        for p in ["./f1", "a/../b", "**/", "**", "/**/**", "."] {
            assert!(gitignore_glob(p).is_err(), "{p:?}");
        }
        for p in ["f1", "/f1", "**/*.tmp", "cache/", "a/**/b"] {
            assert!(gitignore_glob(p).is_ok(), "{p:?}");
        }
    }

    #[test]
    fn gitignore_patterns() {
        let root = tempfile::tempdir().unwrap();
        for d in ["cache", "sub/cache/deep", "sub/keep", "logs", "sub/logs"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        for f in [
            "a.tmp",
            "a.json",
            "cache/x",
            "sub/cache/deep/y",
            "sub/keep/b.tmp",
            "sub/keep/b.json",
            "sub/keep/cache",
            "logs/l",
            "sub/logs/l",
        ] {
            std::fs::write(root.path().join(f), f).unwrap();
        }
        let w = walk(root.path(), &filter(&["**/*.tmp", "cache/", "/logs"]), &mut |_| {}).unwrap();
        // `cache/` is a folder at any depth (the file named cache stays); `/logs` is anchored.
        assert_eq!(rels(&w), ["a.json", "sub/keep/b.json", "sub/keep/cache", "sub/logs/l"]);
        let w = walk(root.path(), &filter(&["*.tmp", "sub/keep"]), &mut |_| {}).unwrap();
        assert_eq!(
            rels(&w),
            ["a.json", "cache/x", "logs/l", "sub/cache/deep/y", "sub/logs/l"]
        );
        for bad in ["", "!keep", "/", "a[", "["] {
            assert!(Excludes::new(vec![bad.to_owned()]).is_err(), "{bad:?}");
        }
    }
}
